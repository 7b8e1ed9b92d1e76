"""The data contract: every rejection names the file, row and column; drop rules are counted."""

import pickle

import pandas as pd
import pytest

from {{ cookiecutter.package }}_core.contract import (
    DataContractError,
    validate_events,
    validate_items,
)

SOURCE = "data/raw/events.csv"
NOW = pd.Timestamp("2026-03-01 00:00:00")
PARAMS = {
    "columns": {
        "user_id": "user_id",
        "item_id": "item_id",
        "event_type": "event_type",
        "timestamp": "timestamp",
    },
    "event_types": {"view": "view", "cart": "add_to_cart", "buy": "purchase"},
    "default_event_type": None,
    "timestamp_format": None,
    "ignore_columns": [],
    "drop_rules": [],
    "max_duplicate_share": 0.05,
}


def raw_events(rows: list[dict[str, str]]) -> pd.DataFrame:
    """Rows as the reader returns them: text cells plus their line numbers (header = 1)."""
    frame = pd.DataFrame(rows, dtype=object)
    frame["source_row"] = range(2, len(frame) + 2)
    return frame


def good_rows(n: int = 20) -> list[dict[str, str]]:
    kinds = ["view", "view", "cart", "buy"]
    return [
        {
            "user_id": f"u{i % 5}",
            "item_id": f"i{i % 7}",
            "event_type": kinds[i % 4],
            "timestamp": f"2026-01-{1 + i % 28:02d}T10:{i % 60:02d}:00",
        }
        for i in range(n)
    ]


def params(**changes: object) -> dict:
    return {**PARAMS, **changes}


def rejection(rows: list[dict[str, str]], **changes: object) -> DataContractError:
    with pytest.raises(DataContractError) as caught:
        validate_events(raw_events(rows), params(**changes), SOURCE, now=NOW)
    assert caught.value.file == SOURCE
    return caught.value


def test_happy_path_returns_canonical_events_and_a_report() -> None:
    rows = good_rows()
    rows[3]["timestamp"] = "2026-01-04T11:00:00+01:00"  # aware: converted to naive UTC
    events, report = validate_events(raw_events(rows), PARAMS, SOURCE, now=NOW)

    assert list(events.columns) == ["user_id", "item_id", "event_type", "timestamp", "source_row"]
    assert str(events["timestamp"].dtype) == "datetime64[ns]"
    assert str(events["source_row"].dtype) == "int64"
    assert events["source_row"].tolist() == list(range(2, 22))
    assert events.loc[3, "timestamp"] == pd.Timestamp("2026-01-04 10:00:00")
    assert set(events["event_type"]) == {"view", "add_to_cart", "purchase"}
    assert report == {
        "source": SOURCE,
        "rows_read": 20,
        "rows_valid": 20,
        "dropped": {"duplicate rows": 0},
        "users": 5,
        "items": 7,
        "events_by_type": {"view": 10, "add_to_cart": 5, "purchase": 5},
        "time_range": ["2026-01-01T10:00:00", "2026-01-20T10:19:00"],
    }


def test_drop_rules_drop_and_count_each_row_once_under_its_first_rule() -> None:
    rows = good_rows(10)
    for row in rows:
        row.update(invoice="100", quantity="2", code="85123A", note="x")
    rows[1]["user_id"] = ""  # no customer
    rows[2]["invoice"] = "C100"  # cancellation
    rows[3].update(invoice="C101", user_id="")  # both: counted under the first rule only
    rows[4]["quantity"] = "-1"
    rows[5]["code"] = "POST"
    rows[6]["quantity"] = "abc"
    rows[6]["user_id"] = " "  # whitespace is missing too, so the bad quantity is never read
    rules = [
        {"reason": "no customer", "column": "user_id", "is_missing": True},
        {"reason": "cancellation", "column": "invoice", "startswith": "C"},
        {"reason": "non-positive quantity", "column": "quantity", "less_than": 1},
        {"reason": "non-product", "column": "code", "in": ["POST", "M"]},
        {"reason": "wrong note", "column": "note", "not_in": ["x"]},
    ]
    events, report = validate_events(raw_events(rows), params(drop_rules=rules), SOURCE, now=NOW)

    assert report["dropped"] == {
        "no customer": 3,
        "cancellation": 1,
        "non-positive quantity": 1,
        "non-product": 1,
        "wrong note": 0,
        "duplicate rows": 0,
    }
    assert report["rows_read"] == 10
    assert report["rows_valid"] == 4
    assert events["source_row"].tolist() == [2, 9, 10, 11]


def test_default_event_type_and_timestamp_format() -> None:
    rows = [{"customer": "c1", "sku": "s1", "when": "05/01/2026 08:26"}]
    mapping = {"user_id": "customer", "item_id": "sku", "timestamp": "when", "event_type": None}
    events, report = validate_events(
        raw_events(rows),
        params(columns=mapping, default_event_type="purchase", timestamp_format="%d/%m/%Y %H:%M"),
        SOURCE,
        now=NOW,
    )
    assert events.loc[0, "event_type"] == "purchase"
    assert events.loc[0, "timestamp"] == pd.Timestamp("2026-01-05 08:26")
    assert report["events_by_type"] == {"view": 0, "add_to_cart": 0, "purchase": 1}


def test_offsets_are_converted_per_value() -> None:
    rows = good_rows(5)
    stamps = [
        "2026-01-02T12:00:00+02:00",
        "2026-01-02T10:00:00",  # naive after aware: pandas 2 alone would apply +02:00 here
        "2026-01-02T10:00:00Z",
        "2026-01-02 05:00:00-0500",
        "2026-01-02",
    ]
    for row, stamp in zip(rows, stamps, strict=True):
        row["timestamp"] = stamp
    events, _ = validate_events(raw_events(rows), PARAMS, SOURCE, now=NOW)
    assert events["timestamp"].tolist() == [pd.Timestamp("2026-01-02 10:00")] * 4 + [
        pd.Timestamp("2026-01-02")
    ]


def test_missing_column() -> None:
    rows = [{k: v for k, v in row.items() if k != "item_id"} for row in good_rows()]
    error = rejection(rows)
    assert (error.row, error.column) == (None, "item_id")
    assert "missing column (mapped to item_id in data.columns)" in str(error)
    assert str(error).startswith(f"{SOURCE}: column 'item_id': missing column")


def test_extra_column() -> None:
    rows = [{**row, "price": "1.0"} for row in good_rows()]
    error = rejection(rows)
    assert (error.row, error.column) == (None, "price")
    assert "extra column" in error.rule and "data.ignore_columns" in error.rule
    # Listed in ignore_columns, the same column is fine.
    validate_events(raw_events(rows), params(ignore_columns=["price"]), SOURCE, now=NOW)


def test_unparsable_timestamp() -> None:
    rows = good_rows()
    rows[15]["timestamp"] = "2026-13-01"
    error = rejection(rows)
    assert (error.row, error.column) == (17, "timestamp")
    assert str(error).startswith(
        "data/raw/events.csv: row 17, column 'timestamp': unparsable timestamp '2026-13-01'"
    )


@pytest.mark.parametrize(
    ("value", "timestamp_format"),
    [("9999-12-31", None), ("1500-01-01T00:00:00", None), ("31/12/9999", "%d/%m/%Y")],
)
def test_a_timestamp_outside_the_supported_range_says_so(
    value: str, timestamp_format: str | None
) -> None:
    rows = good_rows()
    if timestamp_format:
        for row in rows:
            row["timestamp"] = "01/01/2026"
    rows[3]["timestamp"] = value
    error = rejection(rows, timestamp_format=timestamp_format)
    assert (error.row, error.column) == (5, "timestamp")
    assert f"timestamp {value!r} is outside the supported range" in error.rule, error.rule
    assert "1677-09-21" in error.rule and "2262-04-11" in error.rule
    assert "unparsable" not in error.rule


def test_future_timestamp() -> None:
    rows = good_rows()
    rows[4]["timestamp"] = "2026-03-01T00:00:01"
    rows[9]["timestamp"] = "2030-01-01T00:00:00"
    error = rejection(rows)
    assert (error.row, error.column) == (6, "timestamp")
    assert "timestamp '2026-03-01T00:00:01' is in the future" in error.rule


def test_unknown_event_type() -> None:
    rows = good_rows()
    rows[7]["event_type"] = "click"
    rows[8]["event_type"] = "wishlist"
    error = rejection(rows)
    assert (error.row, error.column) == (9, "event_type")
    assert error.rule.startswith("unknown event type 'click'; allowed values")
    assert "'view', 'cart', 'buy'" in error.rule


def test_empty_file() -> None:
    header_only = pd.DataFrame(
        columns=["user_id", "item_id", "event_type", "timestamp", "source_row"], dtype=object
    )
    with pytest.raises(DataContractError) as caught:
        validate_events(header_only, PARAMS, SOURCE, now=NOW)
    error = caught.value
    assert (error.file, error.row, error.column) == (SOURCE, None, None)
    assert str(error) == f"{SOURCE}: empty file: no data rows"


def test_no_rows_left_after_drop_rules() -> None:
    rule = {"reason": "all views", "column": "event_type", "in": ["view", "cart", "buy"]}
    error = rejection(good_rows(), drop_rules=[rule])
    assert "no rows left after the drop rules" in error.rule and "'all views': 20" in error.rule


def test_duplicates_beyond_threshold_are_rejected() -> None:
    rows = good_rows()
    rows[10] = dict(rows[2])
    rows[12] = dict(rows[3])  # 2 of 20 rows = 10% > 5%
    error = rejection(rows)
    assert (error.row, error.column) == (12, None)
    assert "2 of 20 rows (10.0%) are exact duplicates" in error.rule
    assert "repeats row 4" in error.rule


def test_duplicates_below_threshold_are_dropped_and_counted() -> None:
    rows = good_rows()
    rows[10] = dict(rows[2])
    events, report = validate_events(
        raw_events(rows), params(max_duplicate_share=0.1), SOURCE, now=NOW
    )
    assert report["dropped"]["duplicate rows"] == 1
    assert report["rows_valid"] == 19
    assert 12 not in events["source_row"].tolist()


def test_id_with_a_newline() -> None:
    rows = good_rows()
    rows[5]["item_id"] = "i1\ni2"
    error = rejection(rows)
    assert (error.row, error.column) == (7, "item_id")
    assert error.rule == "item_id contains a control character (newline, tab, ...): 'i1\\ni2'"


def test_empty_id() -> None:
    rows = good_rows()
    rows[2]["user_id"] = ""
    error = rejection(rows)
    assert (error.row, error.column) == (4, "user_id")
    assert str(error) == f"{SOURCE}: row 4, column 'user_id': empty user_id"


def test_too_long_id() -> None:
    rows = good_rows()
    rows[0]["user_id"] = "u" * 129
    error = rejection(rows)
    assert (error.row, error.column) == (2, "user_id")
    assert "129 characters long, more than 128" in error.rule


def test_less_than_rule_rejects_a_value_that_is_not_a_number() -> None:
    rows = [{**row, "quantity": "3"} for row in good_rows()]
    rows[4]["quantity"] = "three"
    rule = {"reason": "returns", "column": "quantity", "less_than": 1}
    error = rejection(rows, drop_rules=[rule])
    assert (error.row, error.column) == (6, "quantity")
    assert error.rule.startswith("not a number 'three'")


def test_bad_params_are_reported() -> None:
    rule = {"reason": "r", "column": "user_id", "is_missing": True, "in": ["x"]}
    with pytest.raises(DataContractError) as caught:
        validate_events(raw_events(good_rows()), params(drop_rules=[rule]), SOURCE, now=NOW)
    assert caught.value.file == "params.yaml"
    assert caught.value.rule.startswith("data.drop_rules[0] needs exactly one of is_missing")


def test_error_survives_pickling() -> None:
    error = DataContractError(SOURCE, "empty user_id", row=4, column="user_id")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.file, copy.row, copy.column, copy.rule) == (SOURCE, 4, "user_id", error.rule)
    assert isinstance(copy, ValueError)


def items_frame(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["item_id", "category", "price"], dtype=object)
    frame["source_row"] = range(2, len(frame) + 2)
    return frame


def test_items_are_validated() -> None:
    items = validate_items(items_frame([("i1", "books", "12.5"), ("i2", "toys", "0")]), "it.csv")
    assert items.to_dict("list") == {
        "item_id": ["i1", "i2"],
        "category": ["books", "toys"],
        "price": [12.5, 0.0],
    }
    assert str(items["price"].dtype) == "float64"


@pytest.mark.parametrize(
    ("rows", "row", "column", "rule"),
    [
        ([("i1", "books", "1"), ("i1", "toys", "2")], 3, "item_id", "duplicate item_id 'i1'"),
        ([("i1", "books", "1"), ("", "toys", "2")], 3, "item_id", "empty item_id"),
        ([("i1", "", "1")], 2, "category", "empty category"),
        ([("i1", "books", "cheap")], 2, "price", "unparsable price 'cheap'"),
        ([("i1", "books", "-2")], 2, "price", "negative price '-2'"),
    ],
)
def test_item_rejections(
    rows: list[tuple[str, str, str]], row: int, column: str, rule: str
) -> None:
    with pytest.raises(DataContractError) as caught:
        validate_items(items_frame(rows), "data/raw/items.csv")
    error = caught.value
    assert (error.file, error.row, error.column) == ("data/raw/items.csv", row, column)
    assert error.rule.startswith(rule)


def test_items_missing_column() -> None:
    frame = items_frame([("i1", "books", "1")]).drop(columns="price")
    with pytest.raises(DataContractError, match="column 'price': missing column"):
        validate_items(frame, "data/raw/items.csv")
