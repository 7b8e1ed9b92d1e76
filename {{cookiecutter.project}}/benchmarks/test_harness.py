"""The tables every benchmark prints: headers over their columns, a free-text column last."""

from __future__ import annotations

import importlib.util
from pathlib import Path

# The benchmarks are scripts, not a package: load the helper module from its file.
_spec = importlib.util.spec_from_file_location("harness", Path(__file__).with_name("harness.py"))
harness = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(harness)


def test_table_puts_each_header_over_its_column():
    columns = [("data", "data", "<6"), ("users", "users", ">8,"), ("s", "seconds", ">6.2f")]
    columns.append(("verdict", "verdict", ""))
    rows = [{"data": "a", "users": 12000, "seconds": 1.5, "verdict": "no_drift"}]
    assert harness.table(columns, rows, "title").splitlines() == [
        "title",
        "data     users     s  verdict",
        "-" * 29,
        "a       12,000  1.50  no_drift",
    ]


def test_sizes_reads_a_comma_separated_list():
    assert harness.sizes("20000,200000,") == [20000, 200000]
