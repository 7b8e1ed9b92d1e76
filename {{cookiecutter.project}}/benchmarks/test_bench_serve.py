"""`bench_serve` end to end, briefly: all three servers answer the same load without an error."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.slow


def test_bench_serve_measures_all_three_servers(bench):
    # 8 s a server: locust itself takes seconds to start on a busy 2-core machine.
    flags = ("--events", "20000", "--rounds", "1", "--seconds", "8", "--clients", "4")
    table = bench("bench_serve", *flags).stdout
    for label in ("this API (gunicorn)", "mlflow models serve", "bare Flask (ceiling)"):
        row = next(line for line in table.splitlines() if line.startswith(label))
        workers, rps, _p50, _p99, errors = re.findall(r"\d+", row[len(label) :])[:5]
        assert int(workers) == 2 and int(rps) > 0 and int(errors) == 0, row
    assert "API / mlflow models serve throughput" in table
    assert "API / bare Flask ceiling throughput" in table
