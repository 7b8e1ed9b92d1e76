"""Read raw tables (.csv, .csv.gz, .parquet) with every column as text plus its source line."""

from __future__ import annotations

import csv
import gzip
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from .contract import SOURCE_ROW, DataContractError

SUPPORTED_SUFFIXES = (".csv", ".csv.gz", ".parquet")
# pyarrow reads CSV in blocks of this size; a value much longer than one cannot be read.
BLOCK_SIZE = 1 << 20


def read_raw_table(path: Path) -> pd.DataFrame:
    """Read a raw table with every column as str (empty cells are "") and a `source_row` column.

    `source_row` is the 1-based line number of the row in a CSV file (header = line 1, so the
    first data row is 2; a quoted value spanning lines is accounted for). For Parquet it is the
    1-based row number (the first row is row 1), as a Parquet viewer counts. Blank lines
    are skipped. A missing file, an unsupported suffix or a malformed file raises
    DataContractError.
    """
    path = Path(path)
    name = path.name.lower()
    if not name.endswith(SUPPORTED_SUFFIXES):
        raise DataContractError(
            str(path), f"unsupported file type: expected one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if not path.is_file():
        raise DataContractError(str(path), "file not found")
    table = _read_parquet(path) if name.endswith(".parquet") else _read_csv(path)
    return table.to_pandas()


def _check_names(path: Path, names: list[str], row: int | None) -> None:
    seen: set[str] = set()
    for column in names:
        if column in seen or column == SOURCE_ROW:
            problem = "duplicate column name" if column in seen else "reserved column name"
            raise DataContractError(str(path), problem, row=row, column=column)
        seen.add(column)


def _open_text(path: Path):
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    return opener(path, "rt", encoding="utf-8-sig", newline="")


def _read_header(path: Path) -> list[str]:
    try:
        with _open_text(path) as handle:
            header = next(csv.reader(handle), None)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataContractError(str(path), f"cannot read the header: {error}", row=1) from error
    if not header:
        raise DataContractError(str(path), "empty file: no header line", row=1)
    _check_names(path, header, row=1)
    return header


def _read_csv(path: Path) -> pa.Table:
    header = _read_header(path)
    invalid: list[pa_csv.InvalidRow] = []

    def on_invalid(row: pa_csv.InvalidRow) -> str:
        # Keep reading: the line number of the first bad row needs the records before it.
        if not invalid:
            invalid.append(row)
        return "skip"

    try:
        table = pa_csv.read_csv(
            path,
            # Single-threaded parsing is what gives invalid rows their number (and is fast).
            read_options=pa_csv.ReadOptions(use_threads=False),
            parse_options=pa_csv.ParseOptions(
                newlines_in_values=True,
                ignore_empty_lines=False,
                invalid_row_handler=on_invalid,
            ),
            # Read everything as text: inference would turn the id "00123" into the number 123.
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, OSError, EOFError) as error:
        if "straddl" in str(error):
            raise _oversized_value(path, header) from error
        raise DataContractError(str(path), f"cannot read as CSV: {error}") from error

    # Record number -> line number: a quoted value with newlines takes up several lines.
    newlines = np.zeros(table.num_rows, dtype=np.int64)
    for column in table.columns:
        newlines += pc.count_substring(column, "\n").to_numpy(zero_copy_only=False)
    shift = np.concatenate([[0], np.cumsum(newlines)])
    if invalid:
        row = invalid[0]
        # The handler numbers records with the header as 1, like source_row.
        index = (row.number or 2) - 2
        line = (row.number or 0) + int(shift[min(index, table.num_rows)])
        quote = "; it has an unterminated quote" if row.text.count('"') % 2 else ""
        raise DataContractError(
            str(path),
            f"expected {row.expected_columns} fields, found {row.actual_columns}{quote}: "
            f"{row.text[:80]!r}",
            row=line if row.number else None,
        )
    lines = np.arange(2, table.num_rows + 2, dtype=np.int64) + shift[:-1]
    table = table.append_column(SOURCE_ROW, pa.array(lines, type=pa.int64()))

    # A blank line reads as a row of empty cells: it carries nothing, so skip it.
    if table.num_rows and header:
        blank = pc.equal(table.column(0), "")
        for column in table.columns[1 : len(header)]:
            blank = pc.and_(blank, pc.equal(column, ""))
        if pc.any(blank).as_py():
            table = table.filter(pc.invert(blank))
    return table


def _oversized_value(path: Path, header: list[str]) -> DataContractError:
    """Why pyarrow found a value straddling its blocks: the row and column where a value longer
    than a block, or a quote that is never closed, starts (the csv module reads up to there)."""
    limit = csv.field_size_limit(BLOCK_SIZE)
    start = 2  # the line the current record starts on (the header is line 1)
    ended: bool | None  # None: the csv module read to the end without an error
    try:
        with _open_text(path) as handle:
            reader = csv.reader(handle, strict=True)
            next(reader, None)
            for _ in reader:
                start = reader.line_num + 1
    except csv.Error as error:
        ended = "end of data" in str(error)
    else:
        ended = None
    finally:
        csv.field_size_limit(limit)
    megabytes = BLOCK_SIZE / 1e6
    if ended is None:  # not found: still say what to look for
        rule = f"a value longer than {megabytes:.0f} MB, or an unterminated quote"
        return DataContractError(str(path), f"cannot read as CSV: {rule}; fix the file")
    column = _open_field(path, header, start)
    if ended:
        rule = "unterminated quote: the quoted value that starts here never ends"
    else:
        rule = (
            f"a value longer than {megabytes:.0f} MB starts here: most likely an unterminated "
            "quote (the rest of the file reads as one value)"
        )
    return DataContractError(
        str(path), f"{rule}; close the quote or shorten the value", row=start, column=column
    )


def _open_field(path: Path, header: list[str], line: int) -> str | None:
    """The column of the value left open (or too long) on `line` of the file."""
    with _open_text(path) as handle:
        text = next(itertools.islice(handle, line - 1, None), "").rstrip("\r\n")
    limit = csv.field_size_limit(len(text) + 1)
    try:
        fields = next(csv.reader([text], strict=False), [])
    except csv.Error:
        return None
    finally:
        csv.field_size_limit(limit)
    long = [index for index, value in enumerate(fields) if len(value) > BLOCK_SIZE]
    index = long[0] if long else len(fields) - 1
    return header[index] if 0 <= index < len(header) else None


def _read_parquet(path: Path) -> pa.Table:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise DataContractError(str(path), f"cannot read as Parquet: {error}") from error
    _check_names(path, table.column_names, row=None)
    columns = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        try:
            text = pc.cast(column, pa.string())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise DataContractError(
                str(path), f"type {column.type} cannot be read as text", column=name
            ) from error
        # Nulls become "" so that Parquet and CSV look the same to the validator.
        columns.append(pc.fill_null(text, ""))
    table = pa.table(dict(zip(table.column_names, columns, strict=True)))
    rows = np.arange(1, table.num_rows + 1, dtype=np.int64)
    return table.append_column(SOURCE_ROW, pa.array(rows, type=pa.int64()))
