"""The data stages of dvc.yaml: ingest, validate, split (pandas only, no model code).

Each stage reads what the previous one wrote (see config.Paths) and writes its outputs whole, so
an interrupted stage leaves the earlier outputs, the registry and the champion as they were.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from {{ cookiecutter.package }}_core.cli import BadInput
from {{ cookiecutter.package }}_core.contract import (
    DataContractError,
    validate_events,
    validate_items,
)
from {{ cookiecutter.package }}_core.raw_tables import read_raw_table
from {{ cookiecutter.package }}_core.shared import UNKNOWN_CATEGORY

from .config import Paths, write_json

log = logging.getLogger(__name__)


def ingest(params: dict[str, Any], paths: Paths) -> dict[str, Any]:
    """Copy the raw events (and catalogue) into the workspace as all-string Parquet."""
    data = params["data"]
    check_source(params, paths)
    paths.interim.mkdir(parents=True, exist_ok=True)
    events = read_raw_table(paths.root / data["source"])
    write_parquet(events, paths.interim / "events.parquet")
    report = {"source": data["source"], "rows": len(events), "columns": list(events.columns)}
    if data.get("items"):
        items = read_raw_table(paths.root / data["items"])
        write_parquet(items, paths.interim / "items.parquet")
        report["item_rows"] = len(items)
    else:
        (paths.interim / "items.parquet").unlink(missing_ok=True)
    log.info("ingested %d rows from %s", len(events), data["source"])
    return report


def check_source(params: dict, paths: Paths) -> None:
    """The raw events the pipeline starts from exist; otherwise say how to get them."""
    source = paths.root / params["data"]["source"]
    if not source.is_file():
        raise BadInput(
            f"{params['data']['source']} not found: `make data` writes synthetic events there, "
            "or set data.source in params.yaml to your own events file"
        )


def validate(params: dict[str, Any], paths: Paths) -> dict[str, Any]:
    """Apply the data contract; a violation raises DataContractError and writes nothing.

    The outputs are `persist` in dvc.yaml, so the last good window stays for the drift job
    until both new files are written; they are replaced only then.
    """
    data = params["data"]
    raw = pd.read_parquet(paths.interim / "events.parquet")
    events, report = validate_events(raw, data, source=data["source"])
    items_file = paths.interim / "items.parquet"
    if items_file.is_file():
        items = validate_items(pd.read_parquet(items_file), source=data["items"])
    else:
        items = pd.DataFrame({"item_id": np.unique(events["item_id"])})
        items["category"], items["price"] = UNKNOWN_CATEGORY, np.nan
    paths.validated.mkdir(parents=True, exist_ok=True)
    outputs = {"events.parquet": events, "items.parquet": items}
    write_parquets({paths.validated / name: frame for name, frame in outputs.items()})
    write_json(paths.reports / "validation.json", report)
    return report


def split(params: dict[str, Any], paths: Paths) -> dict[str, Any]:
    """Temporal hold-out: train before the cutoff, test = items first reached after it."""
    settings = params["split"]
    events = pd.read_parquet(paths.validated / "events.parquet")
    cutoff = cutoff_for(events["timestamp"], settings)
    train, pairs = temporal_split(events, cutoff, settings["relevant_events"])
    if train.empty or pairs.empty:
        raise DataContractError(
            str(paths.validated / "events.parquet"),
            f"a split at {cutoff.date()} leaves {len(train)} train events and {len(pairs)} "
            "test pairs; adjust split.holdout_days or split.cutoff",
        )
    paths.split.mkdir(parents=True, exist_ok=True)
    write_parquet(train, paths.split / "train.parquet")
    write_parquet(pairs, paths.split / "test.parquet")
    test_users = pairs["user_id"].unique()
    # A hash lookup: np.isin sorts the string ids, ~8 s at 20,000 users.
    warm = int(pd.Index(test_users).isin(train["user_id"].unique()).sum())
    report = {
        "cutoff": cutoff.isoformat(),
        "train_events": len(train),
        "test_pairs": len(pairs),
        "test_users": len(test_users),
        "test_users_warm": warm,
        "test_users_cold_start": len(test_users) - warm,
    }
    write_json(paths.reports / "split.json", report)
    return report


def temporal_split(
    events: pd.DataFrame, cutoff: pd.Timestamp, relevant_events: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Events before `cutoff`, and the (user, item) pairs first reached after it by one of
    `relevant_events` (pairs already seen before the cutoff are not news)."""
    train = events[events["timestamp"] < cutoff]
    test = events[(events["timestamp"] >= cutoff) & events["event_type"].isin(relevant_events)]
    pairs = test[["user_id", "item_id"]].drop_duplicates()
    seen = pd.MultiIndex.from_frame(train[["user_id", "item_id"]].drop_duplicates())
    return train, pairs[~pd.MultiIndex.from_frame(pairs).isin(seen)]


def cutoff_for(timestamps: pd.Series, settings: dict[str, Any]) -> pd.Timestamp:
    if settings.get("cutoff"):
        return pd.Timestamp(settings["cutoff"])
    last_day = timestamps.max().normalize()
    # A unit, not `days=`: pandas 2.3 makes `days=` a generic timedelta, which numpy 2.5 warns on.
    return last_day - pd.Timedelta(int(settings["holdout_days"]) - 1, unit="D")


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write to a temp file and rename, so a crash never leaves a half-written output."""
    write_parquets({path: frame})


def write_parquets(frames: dict[Path, pd.DataFrame]) -> None:
    """Write every frame to a temp file, then rename them all: a failed write replaces none."""
    temporaries = {path: path.with_suffix(".parquet.tmp") for path in frames}
    try:
        for path, frame in frames.items():
            frame.to_parquet(temporaries[path], index=False)
    except BaseException:
        for temporary in temporaries.values():
            temporary.unlink(missing_ok=True)
        raise
    for path, temporary in temporaries.items():
        temporary.replace(path)
