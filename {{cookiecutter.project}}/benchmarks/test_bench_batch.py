"""`bench_batch` end to end at tiny sizes: a row per size, every user exported."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_bench_batch_exports_each_size(bench):
    table = bench("bench_batch", "--sizes", "2000,5000", "--k", "5", "--chunk-size", "1000").stdout
    assert "top-5, 1,000 users per chunk" in table
    for users in (2000, 5000):
        row = next(line for line in table.splitlines() if line.split()[:1] == [f"{users:,}"])
        _, rows, _model_mb, _load_s, _seconds, per_s, peak_mb, _out_mb = row.split()
        assert int(rows.replace(",", "")) == users * 5, row
        assert int(per_s.replace(",", "")) > 0 and int(peak_mb) > 0, row
