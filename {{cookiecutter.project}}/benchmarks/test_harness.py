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


MEASURE_SCRIPT = """
import sys
sys.path.insert(0, FOLDER)
import numpy as np
import harness

def measure(gib):
    block = np.ones(int(float(gib) * 2**30) // 8)
    return dict(gib=block.nbytes / 2**30)

harness.main(harness.parser(None), lambda params, args: 0, measure=measure)
"""


def test_a_fresh_process_past_its_memory_limit_fails_with_a_memory_error(tmp_path):
    script = tmp_path / "bench_alloc.py"
    script.write_text(MEASURE_SCRIPT.replace("FOLDER", repr(str(Path(__file__).parent))))
    limit = 2**30  # 1 GiB of address space: numpy imports in ~150 MB
    assert harness.in_fresh_process(str(script), 0.25, memory_limit=limit) == {"gib": 0.25}
    try:
        harness.in_fresh_process(str(script), 2, memory_limit=limit)
    except harness.FreshProcessFailed as error:
        assert error.returncode == 1
        assert "MemoryError" in error.last_line and "Unable to allocate" in error.last_line
        assert isinstance(error, RuntimeError)  # what the other benchmarks let through
    else:
        raise AssertionError("2 GiB were allocated under a 1 GiB limit")


def test_a_cell_that_was_not_measured_shows_as_a_dash():
    columns = [("model", "model", "<6"), ("fit s", "fit_s", ">6.2f"), ("note", "note", "")]
    rows = [{"model": "ease", "fit_s": None, "note": "cannot fit (needs ~80 GiB)"}]
    last = harness.table(columns, rows).splitlines()[-1]
    assert last == "ease       -  cannot fit (needs ~80 GiB)"
