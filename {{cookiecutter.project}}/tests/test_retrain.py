"""`retrain`'s ingest: new events merged into the raw data within the window, or refused whole."""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from {{ cookiecutter.package }}_core.contract import DataContractError
from {{ cookiecutter.package }}_training.config import Paths
from {{ cookiecutter.package }}_training.retrain import NothingToIngest, ingest_incoming


def events(start: str, days: int, users: int = 4) -> pd.DataFrame:
    stamps = pd.date_range(start, periods=days * users, freq=f"{24 // users}h")
    return pd.DataFrame(
        {
            "user_id": [f"u{i % users}" for i in range(len(stamps))],
            "item_id": [f"i{i % 5}" for i in range(len(stamps))],
            "event_type": "view",
            "timestamp": stamps,
        }
    )


@pytest.fixture
def project(tmp_path, project_params) -> tuple[dict, Paths]:
    params = copy.deepcopy(project_params)
    params["retrain"]["window_days"] = 10
    paths = Paths(tmp_path)
    paths.raw.mkdir(parents=True)
    events("2026-01-01", 10).to_parquet(paths.raw / "events.parquet", index=False)
    items = pd.DataFrame({"item_id": ["i0", "i1"], "category": ["a", "b"], "price": [1.0, 2.0]})
    items.to_parquet(paths.raw / "items.parquet", index=False)
    (tmp_path / "data" / "incoming").mkdir()
    return params, paths


def test_new_events_join_and_the_window_moves(project):
    params, paths = project
    incoming = paths.root / "data" / "incoming"
    events("2026-01-11", 3).to_parquet(incoming / "events.parquet", index=False)
    new_items = pd.DataFrame({"item_id": ["i1", "i9"], "category": ["c", "d"], "price": [3.0, 4.0]})
    new_items.to_parquet(incoming / "items.parquet", index=False)

    report = ingest_incoming(params, paths)

    merged = pd.read_parquet(paths.raw / "events.parquet")
    stamps = pd.to_datetime(merged["timestamp"])
    assert stamps.min() == pd.Timestamp("2026-01-04")  # 10 days ending 2026-01-13
    assert stamps.max() == pd.Timestamp("2026-01-13 18:00")
    assert len(merged) == report["rows"] == 40
    catalogue = pd.read_parquet(paths.raw / "items.parquet").set_index("item_id")
    assert catalogue.loc["i1", "category"] == "c"  # the newest row of an item wins
    assert sorted(catalogue.index) == ["i0", "i1", "i9"]
    assert not incoming.exists()
    assert (paths.root / report["archived_to"] / "events.parquet").is_file()


def test_a_bad_incoming_file_changes_nothing(project):
    params, paths = project
    incoming = paths.root / "data" / "incoming"
    bad = events("2026-01-11", 3)
    bad.loc[5, "event_type"] = "teleport"
    bad.to_parquet(incoming / "events.parquet", index=False)
    before = (paths.raw / "events.parquet").read_bytes()
    with pytest.raises(DataContractError) as error:
        ingest_incoming(params, paths)
    assert error.value.row == 6 and error.value.column == "event_type"
    assert (paths.raw / "events.parquet").read_bytes() == before
    assert (incoming / "events.parquet").is_file()  # still there to fix and retry

    bad.drop(columns="event_type").to_parquet(incoming / "events.parquet", index=False)
    with pytest.raises(DataContractError, match="differ from"):
        ingest_incoming(params, paths)
    assert (paths.raw / "events.parquet").read_bytes() == before


def test_nothing_incoming_is_said_plainly(project):
    params, paths = project
    with pytest.raises(NothingToIngest, match="no new events"):
        ingest_incoming(params, paths)


def test_a_csv_source_stays_csv(project):
    params, paths = project
    params["data"]["source"] = "data/raw/events.csv.gz"
    events("2026-01-01", 10).to_csv(paths.raw / "events.csv.gz", index=False)
    incoming = paths.root / "data" / "incoming"
    events("2026-01-11", 1).to_csv(incoming / "events.csv.gz", index=False)
    ingest_incoming(params, paths)
    merged = pd.read_csv(paths.raw / "events.csv.gz")
    assert list(merged.columns) == ["user_id", "item_id", "event_type", "timestamp"]
    assert len(merged) == 40
