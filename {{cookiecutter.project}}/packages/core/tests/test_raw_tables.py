"""Reading raw tables: every column as text, with the line number of each row."""

import gzip
from pathlib import Path

import pandas as pd
import pytest

from {{ cookiecutter.package }}_core.contract import DataContractError
from {{ cookiecutter.package }}_core.raw_tables import read_raw_table

CSV = (
    "user_id,item_id,event_type,timestamp\n"
    "007,i1,view,2026-01-05T10:00:00\n"
    "u2,,purchase,2026-01-05T11:00:00\n"
)
EXPECTED = {
    "user_id": ["007", "u2"],
    "item_id": ["i1", ""],
    "event_type": ["view", "purchase"],
    "timestamp": ["2026-01-05T10:00:00", "2026-01-05T11:00:00"],
    "source_row": [2, 3],
}


def test_csv_keeps_text_and_empty_cells(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(CSV)
    frame = read_raw_table(path)
    assert frame.to_dict("list") == EXPECTED
    assert str(frame["source_row"].dtype) == "int64"
    assert all(frame[column].dtype == object for column in EXPECTED if column != "source_row")


def test_gzipped_csv(tmp_path: Path) -> None:
    path = tmp_path / "events.csv.gz"
    path.write_bytes(gzip.compress(CSV.encode()))
    assert read_raw_table(path).to_dict("list") == EXPECTED


def test_parquet_round_trip_reads_typed_columns_as_text(tmp_path: Path) -> None:
    path = tmp_path / "events.parquet"
    pd.DataFrame(
        {
            "user_id": ["007", "u2"],
            "item_id": ["i1", None],
            "event_type": ["view", "purchase"],
            "timestamp": pd.to_datetime(["2026-01-05 10:00:00", "2026-01-05 11:00:00"]),
            "quantity": [3, 4],
        }
    ).to_parquet(path, index=False)
    frame = read_raw_table(path)
    assert frame["user_id"].tolist() == ["007", "u2"]
    assert frame["item_id"].tolist() == ["i1", ""]
    assert frame["quantity"].tolist() == ["3", "4"]
    assert pd.to_datetime(frame["timestamp"]).tolist() == [
        pd.Timestamp("2026-01-05 10:00:00"),
        pd.Timestamp("2026-01-05 11:00:00"),
    ]
    assert frame["source_row"].tolist() == [1, 2]  # 1-based row numbers


def test_source_row_is_the_line_number_across_blank_lines_and_multiline_values(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.csv"
    path.write_text('a,b\n1,x\n\n2,"two\nlines"\n3,y\n\n')
    frame = read_raw_table(path)
    assert frame["a"].tolist() == ["1", "2", "3"]
    assert frame["source_row"].tolist() == [2, 4, 6]


@pytest.mark.parametrize(
    ("line", "rule"),
    [("u3,i3,view,2026-01-05T12:00:00,extra", "expected 4 fields, found 5"),
     ("u3,i3,view", "expected 4 fields, found 3")],
)  # fmt: skip
def test_ragged_line_is_named(tmp_path: Path, line: str, rule: str) -> None:
    path = tmp_path / "events.csv"
    path.write_text(CSV + 'u4,"a\nb",view,2026-01-05T12:00:00\n' + line + "\n")
    with pytest.raises(DataContractError) as caught:
        read_raw_table(path)
    # Lines: header, two rows, a row spanning lines 4-5, then the ragged line 6.
    assert (caught.value.file, caught.value.row) == (str(path), 6)
    assert caught.value.rule.startswith(rule)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(DataContractError) as caught:
        read_raw_table(path)
    assert str(caught.value) == f"{path}: file not found"


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "events.xlsx"
    path.write_text("x")
    with pytest.raises(DataContractError, match=r"unsupported file type: expected one of \.csv"):
        read_raw_table(path)


def test_empty_and_header_only_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataContractError, match="empty file: no header line"):
        read_raw_table(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("user_id,item_id\n")
    frame = read_raw_table(header_only)
    assert list(frame.columns) == ["user_id", "item_id", "source_row"]
    assert len(frame) == 0


def test_duplicate_header_name(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("a,b,a\n1,2,3\n")
    with pytest.raises(DataContractError) as caught:
        read_raw_table(path)
    assert (caught.value.row, caught.value.column) == (1, "a")
    assert caught.value.rule == "duplicate column name"


def rejected(path: Path, text: str) -> DataContractError:
    path.write_text(text)
    with pytest.raises(DataContractError) as caught:
        read_raw_table(path)
    assert "straddl" not in caught.value.rule, caught.value.rule
    return caught.value


def test_a_value_over_the_block_size_names_its_row_and_column(tmp_path: Path) -> None:
    huge = "x" * 3_000_000  # pyarrow reads values of a block or two (1 MB each), not more
    text = CSV + f'u3,"{huge}\nmore",view,2026-01-05T12:00:00\n' + CSV.split("\n", 1)[1]
    error = rejected(tmp_path / "events.csv", text)
    assert (error.row, error.column) == (4, "item_id"), str(error)
    assert "longer than 1 MB" in error.rule and "unterminated quote" in error.rule


def test_an_unterminated_quote_names_where_it_starts(tmp_path: Path) -> None:
    rest = "".join(f"u{i},i{i},view,2026-01-05T12:00:00\n" for i in range(60_000))
    error = rejected(tmp_path / "events.csv", CSV + 'u3,i3,view,"2026-01-05T12:00:00\n' + rest)
    assert (error.row, error.column) == (4, "timestamp"), str(error)
    assert "unterminated quote" in error.rule


def test_an_unterminated_quote_at_the_end_of_a_big_file(tmp_path: Path) -> None:
    rows = "".join(f"u{i},i{i},view,2026-01-05T12:00:00\n" for i in range(60_000))
    huge = "y" * 2_500_000
    error = rejected(tmp_path / "events.csv", CSV + rows + f'u3,i3,"{huge},2026\n')
    assert (error.row, error.column) == (60_004, "event_type"), str(error)
    assert "unterminated quote" in error.rule


def test_an_unterminated_quote_in_a_small_file(tmp_path: Path) -> None:
    text = CSV + 'u3,"i3,view,2026-01-05T12:00:00\nu4,i4,view,2026-01-05T12:00:00\n'
    error = rejected(tmp_path / "events.csv", text)
    assert error.row == 4 and "unterminated quote" in error.rule, str(error)
