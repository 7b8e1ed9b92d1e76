"""`retrain`: ingest the new events, then the whole pipeline (`dvc repro`) up to the gate.

New raw events arrive in the incoming folder (`retrain.incoming`, files named like
`data.source` and `data.items`). They pass the data contract first, so a malformed file is
refused with its row and column before anything changes. Then they are merged into
`data.source`, which keeps the last `retrain.window_days` days, and the folder is moved to
data/archive/. The weekly schedule and a drift verdict both run this one command.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from {{ cookiecutter.package }}_core.contract import SOURCE_ROW, DataContractError, validate_events
from {{ cookiecutter.package }}_core.raw_tables import read_raw_table

from .config import Paths, read_json


class NothingToIngest(Exception):
    """The incoming folder holds no events file."""


def ingest_incoming(params: dict[str, Any], paths: Paths) -> dict[str, Any]:
    """Merge the incoming events (and catalogue) into the raw data; return what changed."""
    data, settings = params["data"], params["retrain"]
    incoming = paths.root / settings["incoming"]
    source = paths.root / data["source"]
    new_path = incoming / Path(data["source"]).name
    if not new_path.is_file():
        raise NothingToIngest(f"no new events: {new_path} not found")
    old, new = read_raw_table(source), read_raw_table(new_path)
    if set(old.columns) != set(new.columns):
        raise DataContractError(
            str(new_path),
            f"columns {sorted(set(new.columns) - {SOURCE_ROW})} differ from "
            f"{source}'s {sorted(set(old.columns) - {SOURCE_ROW})}",
        )
    new_events, _ = validate_events(new, data, str(new_path))
    old_events, _ = validate_events(old, data, str(source))
    last = max(new_events["timestamp"].max(), old_events["timestamp"].max())
    window_start = last.normalize() - pd.Timedelta(int(settings["window_days"]) - 1, unit="D")
    kept = [
        _rows_since(raw, events, window_start)
        for raw, events in ((old, old_events), (new, new_events))
    ]
    merged = pd.concat(kept, ignore_index=True).drop_duplicates(ignore_index=True)
    _write_raw(merged, source)
    report = {
        "incoming": str(new_path),
        "new_rows": len(new),
        "window_start": window_start.isoformat(),
        "window_end": last.isoformat(),
        "rows": len(merged),
    }
    items_name = Path(data["items"]).name if data.get("items") else None
    if items_name and (incoming / items_name).is_file():
        items_source = paths.root / data["items"]
        both = [read_raw_table(path) for path in (items_source, incoming / items_name)]
        items = pd.concat(both, ignore_index=True).drop(columns=SOURCE_ROW)
        # The newest catalogue row of an item wins (a new price, a new category).
        _write_raw(items.drop_duplicates("item_id", keep="last", ignore_index=True), items_source)
        report["items"] = int(items["item_id"].nunique())
    archive = paths.root / "data" / "archive" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    archive.parent.mkdir(parents=True, exist_ok=True)
    incoming.rename(archive)
    report["archived_to"] = str(archive.relative_to(paths.root))
    return report


def _rows_since(raw: pd.DataFrame, events: pd.DataFrame, start: pd.Timestamp) -> pd.DataFrame:
    """The raw rows whose validated event falls on or after `start` (dropped rows go too)."""
    rows = events.loc[events["timestamp"] >= start, SOURCE_ROW]
    return raw[raw[SOURCE_ROW].isin(rows)].drop(columns=SOURCE_ROW)


def _write_raw(table: pd.DataFrame, path: Path) -> None:
    """Write all-text raw rows in the file's own format, atomically (temp file + rename)."""
    temporary = path.with_name(path.name + ".tmp")
    if path.name.lower().endswith(".parquet"):
        table.to_parquet(temporary, index=False)
    else:
        gzipped = path.name.lower().endswith(".gz")
        table.to_csv(temporary, index=False, compression="gzip" if gzipped else None)
    temporary.replace(path)


def outcome(paths: Paths, registered_before: str | None) -> dict[str, Any] | None:
    """The gate's decision on the version this retrain registered (None: none registered)."""
    registered = paths.reports / "registered.json"
    promotion = paths.reports / "promotion.json"
    if not registered.is_file() or not promotion.is_file():
        return None
    version = read_json(registered)["version"]
    decision = read_json(promotion)
    if version == registered_before or decision.get("version") != version:
        return None
    return decision
