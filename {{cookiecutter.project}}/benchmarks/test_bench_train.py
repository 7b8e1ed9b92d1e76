"""`bench_train` end to end at a tiny size: a row per model with its times, memory and accuracy."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow
PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def test_bench_train_measures_each_candidate(bench):
    table = bench("bench_train", "--sizes", "20000").stdout
    candidates = yaml.safe_load(PARAMS.read_text())["model"]["candidates"]
    for model in candidates:
        row = next(line for line in table.splitlines() if f" {model} " in f" {line} ")
        *_, train_s, _eval_s, peak_mb, ndcg, recall = row.split()
        assert float(train_s) > 0 and int(peak_mb) > 0, row
        assert 0 <= float(ndcg) <= 1 and 0 <= float(recall) <= 1, row
