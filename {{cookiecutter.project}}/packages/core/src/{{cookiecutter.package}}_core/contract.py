"""Data contract: validate raw event and item tables and return them in canonical form.

One module although it is long: every rule (columns, ids, event types, timestamps, drop rules,
duplicates) runs through the same `_Table`, which tests each distinct value once and reports the
first failing row with its line number; read apart, the rules would each need it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from .cli import BadInput
from .shared import ID_FORBIDDEN, MAX_ID_LENGTH

EVENT_TYPES = ("view", "add_to_cart", "purchase")
ITEM_COLUMNS = ("item_id", "category", "price")
SOURCE_ROW = "source_row"
DUPLICATE_REASON = "duplicate rows"
DEFAULT_MAX_DUPLICATE_SHARE = 0.05
RULE_KINDS = ("is_missing", "startswith", "in", "less_than", "not_in")
PARAMS_FILE = "params.yaml"
_ID_COLUMNS = ("user_id", "item_id")
# Timestamps are nanoseconds since 1970 in 64 bits: 1677-09-21 00:12:43 to 2262-04-11 23:47:16.
TIMESTAMP_RANGE = (pd.Timestamp.min.ceil("us"), pd.Timestamp.max.floor("us"))
# A UTC offset after a time of day: Z, +01, +0100 or +01:00 (a date alone ends in "-05" too).
_UTC_OFFSET = r"\d:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$"


class DataContractError(BadInput, ValueError):
    """A data file (or the mapping that reads it) breaks the contract.

    `file` is the file at fault, `row` its 1-based line number in a CSV file (header = line 1) or
    its 1-based row number in a Parquet file, `column` the
    source column and `rule` what is wrong, so a user can open the file at the right place.
    """

    def __init__(
        self, file: str, rule: str, row: int | None = None, column: str | None = None
    ) -> None:
        self.file = str(file)
        self.rule = rule
        self.row = row
        self.column = column
        super().__init__(str(self))

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        location = f"{', '.join(where)}: " if where else ""
        return f"{self.file}: {location}{self.rule}"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keeps the attributes when the error crosses a process boundary (pickle).
        return (type(self), (self.file, self.rule, self.row, self.column))


@dataclass(frozen=True)
class _DropRule:
    reason: str
    column: str
    kind: str
    value: Any


def _show(value: object, limit: int = 60) -> str:
    """Quote a cell value for a message, escaping control characters and trimming long ones."""
    text = str(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return repr(text)


def _params_error(rule: str) -> DataContractError:
    return DataContractError(PARAMS_FILE, rule)


def _column_map(params: Mapping[str, Any]) -> dict[str, str | None]:
    columns = params.get("columns")
    if not isinstance(columns, Mapping):
        raise _params_error("data.columns must map user_id, item_id, event_type, timestamp")
    unknown = sorted(set(columns) - {"user_id", "item_id", "event_type", "timestamp"})
    if unknown:
        raise _params_error(f"data.columns has unknown keys {unknown}")
    mapping: dict[str, str | None] = {}
    for canonical in ("user_id", "item_id", "timestamp", "event_type"):
        value = columns.get(canonical)
        if value is None and canonical != "event_type":
            raise _params_error(f"data.columns.{canonical} must name a column of the source file")
        mapping[canonical] = None if value is None else str(value)
    return mapping


def _event_type_map(params: Mapping[str, Any], has_column: bool) -> tuple[dict[str, str], str]:
    if not has_column:
        default = params.get("default_event_type")
        if default not in EVENT_TYPES:
            raise _params_error(
                "data.columns.event_type is null, so data.default_event_type must be one of "
                f"{', '.join(EVENT_TYPES)} (got {default!r})"
            )
        return {}, str(default)
    raw_map = params.get("event_types") or {}
    if not isinstance(raw_map, Mapping) or not raw_map:
        raise _params_error("data.event_types must map source values to canonical event types")
    # YAML may read keys such as 1 or true as non-strings; the source cells are always text.
    mapping = {str(key): value for key, value in raw_map.items()}
    bad = {key: value for key, value in mapping.items() if value not in EVENT_TYPES}
    if bad:
        raise _params_error(
            f"data.event_types maps to unknown types {bad}; allowed: {', '.join(EVENT_TYPES)}"
        )
    return mapping, ""


def _drop_rules(params: Mapping[str, Any]) -> list[_DropRule]:
    rules = []
    for index, rule in enumerate(params.get("drop_rules") or []):
        where = f"data.drop_rules[{index}]"
        if not isinstance(rule, Mapping) or not rule.get("reason") or not rule.get("column"):
            raise _params_error(f"{where} needs a reason and a column")
        kinds = [kind for kind in RULE_KINDS if kind in rule]
        extra = sorted(set(rule) - {"reason", "column", *RULE_KINDS})
        if len(kinds) != 1 or extra:
            raise _params_error(f"{where} needs exactly one of {', '.join(RULE_KINDS)}")
        kind = kinds[0]
        value = rule[kind]
        if kind == "is_missing" and value is not True:
            raise _params_error(f"{where}: is_missing only takes true")
        elif kind == "startswith":
            prefixes = value if isinstance(value, list) else [value]
            value = tuple(str(prefix) for prefix in prefixes)
        elif kind in ("in", "not_in"):
            if not isinstance(value, list):
                raise _params_error(f"{where}: {kind} takes a list of values")
            value = [str(item) for item in value]
        elif kind == "less_than" and (
            isinstance(value, bool) or not isinstance(value, int | float)
        ):
            raise _params_error(f"{where}: less_than takes a number")
        rules.append(_DropRule(str(rule["reason"]), str(rule["column"]), kind, value))
    return rules


def _as_text(series: pd.Series) -> pd.Series:
    """Cells as str with missing values as empty strings (what the CSV reader produces)."""
    if series.dtype == object and not series.hasnans:
        return series
    return series.astype("string").fillna("").astype(object)


class _Table:
    """Source cells with their line numbers; checks run once per distinct value, not per row."""

    def __init__(self, raw: pd.DataFrame, columns: list[str], source: str) -> None:
        self.source = source
        self.cells = {column: _as_text(raw[column]) for column in columns}
        self.rows = (
            raw[SOURCE_ROW].to_numpy(dtype=np.int64)
            if SOURCE_ROW in raw
            else np.arange(2, len(raw) + 2, dtype=np.int64)
        )
        self._factorized: dict[str, tuple[np.ndarray, pd.Series]] = {}

    def factorize(self, column: str) -> tuple[np.ndarray, pd.Series]:
        if column not in self._factorized:
            codes, uniques = pd.factorize(self.cells[column])
            self._factorized[column] = (codes, pd.Series(uniques, dtype=object))
        return self._factorized[column]

    def by_value(self, column: str, test: Callable[[pd.Series], Any]) -> np.ndarray:
        """Apply a vectorised test to the distinct values of a column; one bool per row."""
        codes, uniques = self.factorize(column)
        return np.asarray(test(uniques), dtype=bool)[codes]

    def fail_first(self, mask: np.ndarray, column: str, message: Callable[[Any], str]) -> None:
        """Raise for the first row where mask is True; only its message is built per row."""
        hits = np.flatnonzero(mask)
        if hits.size:
            position = int(hits[0])
            raise DataContractError(
                self.source,
                message(self.cells[column].iat[position]),
                row=int(self.rows[position]),
                column=column,
            )

    def check_id(self, column: str, name: str, alive: np.ndarray) -> None:
        self.fail_first(
            self.by_value(column, lambda v: v.str.strip() == "") & alive,
            column,
            lambda v: f"empty {name}",
        )
        self.fail_first(
            self.by_value(column, lambda v: v.str.contains(ID_FORBIDDEN.pattern, regex=True))
            & alive,
            column,
            lambda v: f"{name} contains a control character (newline, tab, ...): {_show(v)}",
        )
        self.fail_first(
            self.by_value(column, lambda v: v.str.len() > MAX_ID_LENGTH) & alive,
            column,
            lambda v: f"{name} is {len(v)} characters long, more than {MAX_ID_LENGTH}: {_show(v)}",
        )


def _check_columns(
    present: list[str],
    mapping: dict[str, str | None],
    rules: list[_DropRule],
    ignore: set[str],
    source: str,
) -> None:
    listing = ", ".join(present) or "none"
    for canonical, column in mapping.items():
        if column is not None and column not in present:
            raise DataContractError(
                source,
                f"missing column (mapped to {canonical} in data.columns); the file has: {listing}",
                column=column,
            )
    for rule in rules:
        if rule.column not in present:
            raise DataContractError(
                source,
                f"missing column (used by drop rule {rule.reason!r}); the file has: {listing}",
                column=rule.column,
            )
    known = {column for column in mapping.values() if column} | {r.column for r in rules} | ignore
    for column in present:
        if column not in known:
            raise DataContractError(
                source,
                "extra column: map it in data.columns, use it in a drop rule or list it in "
                "data.ignore_columns",
                column=column,
            )


def _rule_mask(rule: _DropRule, table: _Table, alive: np.ndarray) -> np.ndarray:
    if rule.kind == "is_missing":
        return table.by_value(rule.column, lambda v: v.str.strip() == "")
    if rule.kind == "startswith":
        return table.by_value(rule.column, lambda v: v.str.startswith(rule.value))
    if rule.kind == "in":
        return table.by_value(rule.column, lambda v: v.isin(rule.value))
    if rule.kind == "not_in":
        return table.by_value(rule.column, lambda v: ~v.isin(rule.value))
    codes, uniques = table.factorize(rule.column)
    numbers = pd.to_numeric(uniques, errors="coerce").to_numpy(dtype=float)[codes]
    # Only rows that earlier rules kept must be numbers: a rule may tidy the column first.
    table.fail_first(
        np.isnan(numbers) & alive,
        rule.column,
        lambda v: f"not a number {_show(v)} (drop rule {rule.reason!r}: less_than {rule.value})",
    )
    return numbers < rule.value


def _map_event_types(
    table: _Table, column: str | None, mapping: dict[str, str], default: str, alive: np.ndarray
) -> np.ndarray:
    if column is None:
        return np.full(len(table.rows), default, dtype=object)
    codes, uniques = table.factorize(column)
    mapped = np.array([mapping.get(value) for value in uniques], dtype=object)
    unknown = np.array([value is None for value in mapped], dtype=bool)
    allowed = ", ".join(repr(key) for key in mapping)
    table.fail_first(
        unknown[codes] & alive,
        column,
        lambda v: f"unknown event type {_show(v)}; allowed values (data.event_types): {allowed}",
    )
    return mapped[codes]


def _parse_iso(
    values: pd.Series, by_value: Callable[[Callable[[pd.Series], Any]], np.ndarray]
) -> np.ndarray:
    """ISO 8601 text -> naive UTC datetime64[ns]; NaT where unparsable."""
    with warnings.catch_warnings():
        # Mixed offsets warn (and will raise in pandas 3); they take the careful path below.
        warnings.simplefilter("ignore", FutureWarning)
        try:
            parsed = pd.to_datetime(values, format="ISO8601", errors="coerce")
        except (ValueError, TypeError):
            parsed = None
    # A naive result means no value had an offset: the fast, common case.
    if parsed is not None and parsed.dtype == "datetime64[ns]":
        return parsed.to_numpy()
    # pandas 2 reads a naive value that follows an aware one with the earlier value's offset,
    # even with utc=True, so aware and naive values are parsed apart.
    aware = by_value(lambda v: v.str.contains(_UTC_OFFSET, regex=True))
    result = np.full(len(values), np.datetime64("NaT", "ns"), dtype="datetime64[ns]")
    if aware.any():
        stamps = pd.to_datetime(values[aware], format="ISO8601", utc=True, errors="coerce")
        result[aware] = stamps.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    if not aware.all():
        stamps = pd.to_datetime(values[~aware], format="ISO8601", errors="coerce")
        result[~aware] = stamps.to_numpy(dtype="datetime64[ns]")
    return result


def _parse_timestamps(
    table: _Table, column: str, fmt: str | None, now: pd.Timestamp, alive: np.ndarray
) -> np.ndarray:
    values = table.cells[column]
    if fmt:
        # A strptime format is all aware (%z) or all naive; utc=True reads naive values as UTC.
        parsed = pd.to_datetime(values, format=fmt, utc=True, errors="coerce")
        naive = parsed.dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    else:
        naive = _parse_iso(values, lambda test: table.by_value(column, test))
    expected = f"format {fmt!r}" if fmt else "ISO 8601"
    table.fail_first(
        np.isnat(naive) & alive,
        column,
        lambda v: _out_of_range(v, fmt) or f"unparsable timestamp {_show(v)} (expected {expected})",
    )
    table.fail_first(
        (naive > now.to_datetime64()) & alive,
        column,
        lambda v: f"timestamp {_show(v)} is in the future (now is {now.isoformat()} UTC)",
    )
    return naive


def _out_of_range(value: str, fmt: str | None) -> str | None:
    """Why a timestamp pandas could not read is refused, when it is a real date-time after all."""
    try:
        stamp = datetime.strptime(value, fmt) if fmt else datetime.fromisoformat(value.strip())
        if stamp.tzinfo is not None:
            stamp = stamp.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        return None
    low, high = TIMESTAMP_RANGE
    if low.to_pydatetime() <= stamp <= high.to_pydatetime():
        return None
    return (
        f"timestamp {_show(value)} is outside the supported range "
        f"{low.date().isoformat()} to {high.date().isoformat()} (UTC)"
    )


def _utc_naive(now: pd.Timestamp | None) -> pd.Timestamp:
    stamp = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp


def validate_events(
    raw: pd.DataFrame,
    params: Mapping[str, Any],
    source: str,
    now: pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Validate raw events against the `data:` params and return canonical events and a report.

    `raw` holds the source file's columns as text plus `source_row` (its line number). Expected
    messiness is dropped by `drop_rules` and counted; anything else that breaks the contract
    raises DataContractError naming the first offending row and column. `now` (default: the
    current time) bounds the timestamps.
    """
    source = str(source)
    mapping = _column_map(params)
    rules = _drop_rules(params)
    event_map, default_type = _event_type_map(params, mapping["event_type"] is not None)
    ignore = {str(column) for column in params.get("ignore_columns") or []}
    max_share = float(params.get("max_duplicate_share", DEFAULT_MAX_DUPLICATE_SHARE))

    present = [str(column) for column in raw.columns if column != SOURCE_ROW]
    _check_columns(present, mapping, rules, ignore, source)
    rows_read = len(raw)
    if rows_read == 0:
        raise DataContractError(source, "empty file: no data rows")
    table = _Table(raw, present, source)

    # Each dropped row is counted once, under the first rule (in params order) that matches it.
    alive = np.ones(rows_read, dtype=bool)
    dropped: dict[str, int] = {}
    for rule in rules:
        hit = _rule_mask(rule, table, alive) & alive
        dropped[rule.reason] = dropped.get(rule.reason, 0) + int(hit.sum())
        alive &= ~hit
    if not alive.any():
        raise DataContractError(
            source, f"no rows left after the drop rules (rows: {rows_read}, dropped: {dropped})"
        )

    user_column, item_column = str(mapping["user_id"]), str(mapping["item_id"])
    table.check_id(user_column, "user_id", alive)
    table.check_id(item_column, "item_id", alive)
    event_types = _map_event_types(table, mapping["event_type"], event_map, default_type, alive)
    now_utc = _utc_naive(now)
    timestamps = _parse_timestamps(
        table, str(mapping["timestamp"]), params.get("timestamp_format"), now_utc, alive
    )

    # Exact duplicates compare every source column, so rows that differ only in an ignored
    # column (a quantity, a price) are distinct events.
    kept = np.flatnonzero(alive)
    cells = pd.DataFrame({column: table.cells[column].to_numpy()[kept] for column in present})
    duplicate = cells.duplicated(keep="first").to_numpy()
    n_duplicates = int(duplicate.sum())
    if n_duplicates > max_share * len(kept):
        first = int(np.flatnonzero(duplicate)[0])
        same = (cells == cells.iloc[first]).all(axis=1).to_numpy()
        original = int(table.rows[kept[int(np.flatnonzero(same)[0])]])
        raise DataContractError(
            source,
            f"{n_duplicates} of {len(kept)} rows ({n_duplicates / len(kept):.1%}) are exact "
            f"duplicates, more than data.max_duplicate_share {max_share:g}; this first one "
            f"repeats row {original}",
            row=int(table.rows[kept[first]]),
        )
    dropped[DUPLICATE_REASON] = n_duplicates

    kept = kept[~duplicate]
    events = pd.DataFrame(
        {
            "user_id": table.cells[user_column].to_numpy()[kept],
            "item_id": table.cells[item_column].to_numpy()[kept],
            "event_type": event_types[kept],
            "timestamp": timestamps[kept],
            "source_row": table.rows[kept],
        }
    )
    counts = events["event_type"].value_counts()
    report = {
        "source": source,
        "rows_read": rows_read,
        "rows_valid": len(events),
        "dropped": dropped,
        "users": int(events["user_id"].nunique()),
        "items": int(events["item_id"].nunique()),
        "events_by_type": {kind: int(counts.get(kind, 0)) for kind in EVENT_TYPES},
        "time_range": [
            events["timestamp"].min().isoformat(),
            events["timestamp"].max().isoformat(),
        ],
    }
    return events, report


def validate_items(raw: pd.DataFrame, source: str) -> pd.DataFrame:
    """Validate an item catalogue: unique non-empty item_id, a category and a price >= 0.

    Columns other than item_id, category and price are not used and are left out of the result.
    """
    source = str(source)
    present = [str(column) for column in raw.columns if column != SOURCE_ROW]
    for column in ITEM_COLUMNS:
        if column not in present:
            raise DataContractError(
                source,
                f"missing column; the file has: {', '.join(present) or 'none'}",
                column=column,
            )
    if len(raw) == 0:
        raise DataContractError(source, "empty file: no data rows")
    table = _Table(raw, list(ITEM_COLUMNS), source)
    everywhere = np.ones(len(raw), dtype=bool)
    table.check_id("item_id", "item_id", everywhere)

    ids = table.cells["item_id"]
    repeated = ids.duplicated(keep="first").to_numpy()
    if repeated.any():
        first = ids.iat[int(np.flatnonzero(repeated)[0])]
        original = int(table.rows[int(np.flatnonzero((ids == first).to_numpy())[0])])
        table.fail_first(
            repeated,
            "item_id",
            lambda v: f"duplicate item_id {_show(v)} (first at row {original})",
        )
    table.fail_first(
        table.by_value("category", lambda v: v.str.strip() == ""),
        "category",
        lambda v: "empty category",
    )
    prices = pd.to_numeric(table.cells["price"], errors="coerce").to_numpy(dtype=float)
    table.fail_first(~np.isfinite(prices), "price", lambda v: f"unparsable price {_show(v)}")
    table.fail_first(prices < 0, "price", lambda v: f"negative price {_show(v)}")
    return pd.DataFrame(
        {
            "item_id": ids.to_numpy(),
            "category": table.cells["category"].to_numpy(),
            "price": prices.astype(np.float64),
        }
    )
