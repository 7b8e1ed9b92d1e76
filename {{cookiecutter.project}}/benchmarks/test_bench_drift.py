"""`bench_drift` end to end at tiny sizes: a row per size with its time and peak memory."""

from __future__ import annotations

import re

import pytest


@pytest.mark.slow
def test_bench_drift_measures_each_size(bench):
    output = bench("bench_drift", "--sizes", "10000,20000").stdout
    for size in ("10,000", "20,000"):
        row = next(line for line in output.splitlines() if line.lstrip().startswith(size))
        numbers = re.findall(r"[\d,]+(?:\.\d+)?", row)
        job_s, peak_mb = float(numbers[-2]), int(numbers[-1].replace(",", ""))
        assert job_s > 0 and peak_mb > 0, row
        assert row.split()[-1] in ("no_drift", "drift"), row
    assert re.search(r"import evidently alone, fresh process: \d+\.\d s", output)
