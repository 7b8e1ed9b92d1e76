"""The drift job: the training window (reference) against new events and what the API served.

Three checks, one verdict:
- data drift: per-event features (event type, category, price, the item's popularity in the
  reference, the user's activity) compared by evidently, plus the share of unknown users/items;
- prediction drift: what was recommended (category, price, popularity of the items) as the
  storefront's impressions report it, against what the model recommends to reference users,
  plus catalogue coverage;
- online quality: click-through and purchase rate per model version from the feedback log.
The verdict is "drift" when data or prediction drift is flagged; online quality is reported (and
exported to Prometheus) for `rollback` to act on. Every threshold lives in params.yaml.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from {{ cookiecutter.package }}_core.artifact import ServingArtifact
from {{ cookiecutter.package }}_core.cli import BadInput
from {{ cookiecutter.package }}_core.contract import validate_events, validate_items
from {{ cookiecutter.package }}_core.feedback import online_quality, quality_drop
from {{ cookiecutter.package }}_core.raw_tables import read_raw_table
from {{ cookiecutter.package }}_core.registry import ChampionLine
from {{ cookiecutter.package }}_core.shared import DRIFT, NO_DRIFT, UNKNOWN_CATEGORY

log = logging.getLogger(__name__)

EVENT_NUMERICAL = ["price", "item_popularity", "user_activity"]
EVENT_CATEGORICAL = ["event_type", "category"]
RECOMMENDED_NUMERICAL = ["price", "item_popularity"]
RECOMMENDED_CATEGORICAL = ["category"]


@dataclass
class Window:
    """Canonical events (user_id, item_id, event_type, timestamp) and where they came from."""

    events: pd.DataFrame
    source: str

    def describe(self) -> dict[str, Any]:
        stamps = self.events["timestamp"]
        return {
            "source": self.source,
            "events": len(self.events),
            "users": int(self.events["user_id"].nunique()),
            "items": int(self.events["item_id"].nunique()),
            "start": stamps.min().isoformat() if len(stamps) else None,
            "end": stamps.max().isoformat() if len(stamps) else None,
        }


def read_reference(folder: Path) -> tuple[Window, pd.DataFrame]:
    """The validated training window and its catalogue, as the pipeline's validate stage wrote."""
    events_path, items_path = folder / "events.parquet", folder / "items.parquet"
    for path in (events_path, items_path):
        if not path.is_file():
            raise BadInput(f"{path} not found: run the pipeline first (make pipeline)")
    columns = ["user_id", "item_id", "event_type", "timestamp"]
    events = pd.read_parquet(events_path, columns=columns)
    return Window(events, str(events_path)), pd.read_parquet(items_path)


def read_current(folder: Path, data_params: Mapping[str, Any]) -> tuple[Window, pd.DataFrame]:
    """New raw events (and catalogue, when given) in `folder`, named like `data.source`/`items`.

    They go through the same data contract as the pipeline's input, so a malformed file is
    refused with its row and column.
    """
    events_path = folder / Path(data_params["source"]).name
    events, _ = validate_events(read_raw_table(events_path), data_params, str(events_path))
    items = pd.DataFrame(columns=["item_id", "category", "price"])
    if data_params.get("items") and (folder / Path(data_params["items"]).name).is_file():
        items_path = folder / Path(data_params["items"]).name
        items = validate_items(read_raw_table(items_path), str(items_path))
    columns = ["user_id", "item_id", "event_type", "timestamp"]
    return Window(events[columns], str(events_path)), items


def popularity_percentile(events: pd.DataFrame) -> pd.Series:
    """Item -> its popularity rank in the reference as a share: 0 the most popular, 1 the least."""
    counts = events["item_id"].value_counts()
    ranks = np.arange(len(counts), dtype=np.float64)
    return pd.Series(ranks / max(len(counts) - 1, 1), index=counts.index)


def event_features(
    events: pd.DataFrame, items: pd.DataFrame, popularity: pd.Series, window_days: int
) -> pd.DataFrame:
    """One row per event: what happened, to what kind of item, by how active a user.

    User activity is the user's events per active day within stretches of `window_days` (the
    current window's length), so a 28-day reference compares like with like with a 7-day week.
    Items the reference never saw rank as the least popular (1.0).
    """
    features = _item_features(events["item_id"], items, popularity)
    features["event_type"] = events["event_type"].to_numpy()
    day = events["timestamp"].dt.floor("D")
    stretch = ((day - day.min()).dt.days // window_days).to_numpy()
    keys = [events["user_id"].to_numpy(), stretch]
    per_user = day.groupby(keys, sort=False)
    activity = per_user.transform("size") / per_user.transform("nunique")
    features["user_activity"] = activity.to_numpy(dtype=np.float64)
    return features


def window_days(events: pd.DataFrame) -> int:
    """The number of calendar days a window spans (at least 1)."""
    days = events["timestamp"].dt.floor("D")
    return max(int((days.max() - days.min()).days) + 1, 1)


def _item_features(item_ids: pd.Series, items: pd.DataFrame, popularity: pd.Series) -> pd.DataFrame:
    catalogue = items.drop_duplicates("item_id", keep="last").set_index("item_id")
    ids = pd.Index(item_ids)
    category = catalogue["category"].reindex(ids).fillna(UNKNOWN_CATEGORY).astype(str)
    return pd.DataFrame(
        {
            "category": category.to_numpy(),
            "price": catalogue["price"].reindex(ids).astype(np.float64).to_numpy(),
            "item_popularity": popularity.reindex(ids).fillna(1.0).to_numpy(),
        }
    )


def compare(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numerical: list[str],
    categorical: list[str],
    drift_share: float,
    html: Path,
) -> dict[str, Any]:
    """evidently's per-column drift tests and the drifted share; the HTML report goes to `html`.

    evidently picks each column's test by type and size (e.g. Wasserstein distance for numbers
    and Jensen-Shannon for categories above 1,000 rows) with its default thresholds.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    columns = numerical + categorical
    # Columns with no values on one side (e.g. no prices in the catalogue) cannot be tested.
    usable = [c for c in columns if reference[c].notna().any() and current[c].notna().any()]
    definition = DataDefinition(
        numerical_columns=[c for c in numerical if c in usable],
        categorical_columns=[c for c in categorical if c in usable],
    )
    report = Report([DataDriftPreset(columns=usable, drift_share=drift_share)])
    snapshot = report.run(
        Dataset.from_pandas(current[usable], data_definition=definition),
        Dataset.from_pandas(reference[usable], data_definition=definition),
    )
    html.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(html))
    return _drift_result(snapshot.dict(), drift_share, html)


def _drift_result(snapshot: dict[str, Any], drift_share: float, html: Path) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    share = 0.0
    for metric in snapshot["metrics"]:
        config = metric["config"]
        if config["type"].endswith("DriftedColumnsCount"):
            share = float(metric["value"]["share"])
        elif config["type"].endswith("ValueDrift"):
            method, threshold, score = config["method"], config["threshold"], metric["value"]
            # p-value tests flag drift below the threshold, distances above it.
            drifted = score < threshold if "p_value" in method else score >= threshold
            columns[config["column"]] = {
                "method": method,
                "score": round(float(score), 6),
                "threshold": threshold,
                "drifted": bool(drifted),
            }
    return {
        "drifted": share >= drift_share,
        "drifted_share": round(share, 4),
        "drift_share_threshold": drift_share,
        "columns": columns,
        "report": str(html),
    }


def unknown_shares(
    reference: pd.DataFrame, current: pd.DataFrame, settings: Mapping[str, Any]
) -> dict[str, Any]:
    """Share of current events by users / on items that the reference window never saw."""
    shares = {}
    for kind, column in (("users", "user_id"), ("items", "item_id")):
        share = float((~current[column].isin(reference[column].unique())).mean())
        limit = float(settings[f"max_unknown_{kind[:-1]}_share"])
        shares[kind] = {"share": round(share, 4), "max": limit, "drifted": share > limit}
    return shares


def prediction_drift(
    reference: Window,
    impressions: pd.DataFrame,
    artifact: ServingArtifact | str,
    items: pd.DataFrame,
    popularity: pd.Series,
    settings: Mapping[str, Any],
    html: Path,
) -> dict[str, Any]:
    """What the storefront showed (impressions) against what the model recommends to the
    reference window's users; skipped, with the reason, when either side is missing (`artifact`
    is then why the model could not be loaded)."""
    minimum = int(settings["prediction_min_impressions"])
    if isinstance(artifact, str):
        return {"drifted": False, "skipped": artifact}
    if len(impressions) < minimum:
        return {
            "drifted": False,
            "skipped": f"{len(impressions)} impressions in the feedback log (< {minimum})",
        }
    rng = np.random.default_rng(0)
    # As str, not object: numpy's isin compares object arrays pair by pair (minutes at 50k).
    active = reference.events["user_id"].unique().astype(str)
    users = np.flatnonzero(np.isin(artifact.user_ids, active))
    users = rng.choice(users, min(len(users), int(settings["sample_users"])), replace=False)
    top = artifact.user_top_items[users, : int(settings["top_k"])].ravel()
    recommended = pd.Series(artifact.item_ids[top[top >= 0]])
    served = impressions["item_id"]
    result = compare(
        _item_features(recommended, items, popularity),
        _item_features(served, items, popularity),
        RECOMMENDED_NUMERICAL,
        RECOMMENDED_CATEGORICAL,
        float(settings["drift_share"]),
        html,
    )
    # Coverage at the same number of recommendations on both sides (it grows with the count).
    n = min(len(recommended), len(served))
    coverage = {
        "recommendations": n,
        "reference": int(recommended.sample(n, random_state=0).nunique()),
        "current": int(served.sample(n, random_state=0).nunique()),
        "min_ratio": float(settings["min_coverage_ratio"]),
    }
    coverage["ratio"] = round(coverage["current"] / max(coverage["reference"], 1), 4)
    coverage["drifted"] = coverage["ratio"] < coverage["min_ratio"]
    result["coverage"] = coverage
    result["drifted"] = result["drifted"] or coverage["drifted"]
    return result


def run_drift_job(
    reference: tuple[Window, pd.DataFrame],
    current: tuple[Window, pd.DataFrame],
    feedback: pd.DataFrame,
    artifact: ServingArtifact | str,
    champions: ChampionLine,
    settings: Mapping[str, Any],
    out: Path,
) -> dict[str, Any]:
    """All three checks; the summary (also the content of summary.json) with the verdict.

    `artifact` is the model the API serves (or why it could not be loaded); `champions` the
    registry's champion and the one before it, whose online quality is compared.
    """
    (reference_window, reference_items), (current_window, current_items) = reference, current
    items = pd.concat([reference_items, current_items], ignore_index=True)
    popularity = popularity_percentile(reference_window.events)
    drift_share = float(settings["drift_share"])
    log.info(
        "comparing %d current with %d reference events",
        len(current_window.events),
        len(reference_window.events),
    )
    days = window_days(current_window.events)
    data = compare(
        event_features(reference_window.events, items, popularity, days),
        event_features(current_window.events, items, popularity, days),
        EVENT_NUMERICAL,
        EVENT_CATEGORICAL,
        drift_share,
        out / "data_drift.html",
    )
    data["unknown"] = unknown_shares(reference_window.events, current_window.events, settings)
    data["drifted"] = data["drifted"] or any(u["drifted"] for u in data["unknown"].values())
    impressions = feedback[feedback["event_type"] == "impression"]
    predictions = prediction_drift(
        reference_window,
        impressions,
        artifact,
        items,
        popularity,
        settings,
        out / "prediction_drift.html",
    )
    quality = online_quality(feedback)
    drifted = data["drifted"] or predictions["drifted"]
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "verdict": DRIFT if drifted else NO_DRIFT,
        "reference": reference_window.describe(),
        "current": current_window.describe(),
        "data_drift": data,
        "prediction_drift": predictions,
        "online_quality": {
            "versions": quality,
            **quality_drop(quality, champions.champion, champions.previous, settings),
        },
    }
