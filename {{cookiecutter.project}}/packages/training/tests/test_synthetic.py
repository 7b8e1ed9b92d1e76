"""The synthetic generator: seeded, realistic enough, valid under the contract, and driftable."""

from pathlib import Path

import pandas as pd
import pytest

from {{ cookiecutter.package }}_core.contract import EVENT_TYPES, validate_events, validate_items
from {{ cookiecutter.package }}_core.raw_tables import read_raw_table
from {{ cookiecutter.package }}_training.synthetic import generate, write_dataset

SMALL = {"n_users": 300, "n_items": 120, "n_events": 5_000, "n_categories": 6, "days": 14}
# Large enough for stable category shares (measured: TV between drift=0 seeds <= 0.035 over
# 19 seed pairs; 0.27-0.30 at drift=0.8), small enough to generate in about 0.2 s.
MIX = {"n_users": 5_000, "n_items": 400, "n_events": 100_000, "n_categories": 8, "days": 14}
START = "2026-01-05"
DATA_PARAMS = {
    "columns": {
        "user_id": "user_id",
        "item_id": "item_id",
        "event_type": "event_type",
        "timestamp": "timestamp",
    },
    "event_types": {kind: kind for kind in EVENT_TYPES},
    "drop_rules": [],
    "max_duplicate_share": 0.05,
}


def small(seed: int = 7, drift: float = 0.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    return generate(**SMALL, start=START, seed=seed, drift=drift)


def category_shares(seed: int, drift: float = 0.0, start: str = START) -> pd.Series:
    events, items = generate(**MIX, start=start, seed=seed, drift=drift)
    category = events["item_id"].map(items.set_index("item_id")["category"])
    return category.value_counts(normalize=True)


def total_variation(a: pd.Series, b: pd.Series) -> float:
    return 0.5 * float(a.sub(b, fill_value=0).abs().sum())


def test_same_seed_same_data_and_another_seed_differs() -> None:
    events, items = small()
    again, items_again = small()
    pd.testing.assert_frame_equal(events, again)
    pd.testing.assert_frame_equal(items, items_again)
    assert not events.equals(small(seed=8)[0])


def test_sizes_columns_and_types() -> None:
    events, items = small()
    assert len(events) == SMALL["n_events"]
    assert list(events.columns) == ["user_id", "item_id", "event_type", "timestamp"]
    assert str(events["timestamp"].dtype) == "datetime64[ns]"
    assert set(events["event_type"]) == set(EVENT_TYPES)
    assert events["timestamp"].is_monotonic_increasing
    assert events["timestamp"].min() >= pd.Timestamp(START)
    assert events["timestamp"].max() < pd.Timestamp(START) + pd.Timedelta(SMALL["days"], unit="D")
    assert events["user_id"].nunique() <= SMALL["n_users"]
    assert len(items) == SMALL["n_items"] and items["item_id"].is_unique
    assert set(events["item_id"]) <= set(items["item_id"])
    assert items["category"].nunique() == SMALL["n_categories"]
    assert (items["price"] > 0).all() and str(items["price"].dtype) == "float64"


def test_structure_is_realistic() -> None:
    events, items = small()
    shares = events["event_type"].value_counts(normalize=True)
    assert shares["view"] > shares["add_to_cart"] > shares["purchase"] > 0.01
    # Power-law popularity: the top 10% of items take a large share of the views.
    counts = events["item_id"].value_counts()
    assert counts.iloc[: len(counts) // 10].sum() / counts.sum() > 0.3
    # Focused users: a user's events concentrate in a few categories.
    category = events["item_id"].map(items.set_index("item_id")["category"])
    top_share = category.groupby(events["user_id"]).agg(
        lambda c: c.value_counts(normalize=True).iloc[0]
    )
    assert top_share.median() > 0.5
    # Weekly rhythm: weekends are busier than weekdays.
    weekend = events["timestamp"].dt.dayofweek >= 5
    assert weekend.mean() > 2 / 7


def test_output_passes_the_contract_through_the_files(tmp_path: Path) -> None:
    events, items = small()
    events_path, items_path = write_dataset(events, items, tmp_path / "raw")
    assert (events_path.name, items_path.name) == ("events.parquet", "items.parquet")
    valid, report = validate_events(
        read_raw_table(events_path), DATA_PARAMS, str(events_path), now=pd.Timestamp("2027-01-01")
    )
    assert report["rows_read"] == SMALL["n_events"]
    assert report["rows_valid"] + report["dropped"]["duplicate rows"] == SMALL["n_events"]
    expected = events.drop_duplicates().reset_index(drop=True)
    pd.testing.assert_frame_equal(valid.drop(columns="source_row"), expected)
    catalogue = validate_items(read_raw_table(items_path), str(items_path))
    pd.testing.assert_frame_equal(catalogue, items)


def test_undrifted_samples_share_the_category_mix_and_drift_moves_it() -> None:
    reference = category_shares(seed=1)
    assert total_variation(reference, category_shares(seed=2)) < 0.06
    assert total_variation(reference, category_shares(seed=1, start="2026-03-02")) < 0.06
    drifted = total_variation(reference, category_shares(seed=1, drift=0.8))
    assert drifted > 0.2


def test_drift_moves_prices_and_the_event_mix() -> None:
    events, items = small()
    drifted_events, drifted_items = small(drift=0.8)
    assert drifted_items["price"].median() > items["price"].median() * 1.05
    carts = (events["event_type"] == "add_to_cart").mean()
    assert (drifted_events["event_type"] == "add_to_cart").mean() > carts * 1.3
    assert list(drifted_items["item_id"]) == list(items["item_id"])  # the same shop


@pytest.mark.parametrize(
    "change",
    [{"drift": 1.5}, {"n_events": 0}, {"n_items": 3, "n_categories": 6}],
)
def test_bad_arguments(change: dict) -> None:
    with pytest.raises(ValueError):
        generate(**{**SMALL, "start": START, "seed": 1, **change})
