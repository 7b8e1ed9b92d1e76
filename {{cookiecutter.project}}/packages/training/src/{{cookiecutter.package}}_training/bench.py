"""`bench-train`: training time, peak memory and accuracy per model, against data size.

Each dataset goes through the real stages (ingest, validate, split) once; each model is then
trained and evaluated by the real `train`/`evaluate` stages in a fresh process, so its peak
memory (ru_maxrss) is its own.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from {{ cookiecutter.package }}_core.peak_memory import peak_memory_mb

from . import data_stages, model_stages
from .config import Paths, merge_params

EXAMPLE_MAPPING = Path("examples/online_retail.params.yaml")
# Users grow with the events (about 50 events a user, as in the default data set).
EVENTS_PER_USER = 50


def run_benchmark(params: dict[str, Any], args: argparse.Namespace) -> int:
    models = list(params["model"]["candidates"])
    rows = []
    for size in [int(size) for size in args.sizes.split(",") if size]:
        rows += _bench_dataset(f"synthetic {size:,}", params, models, synthetic_events=size)
    if args.online_retail:
        rows += _bench_dataset("UCI Online Retail", params, models, csv=Path(args.online_retail))
    print(_table(rows))
    return 0


def _bench_dataset(
    label: str,
    params: dict[str, Any],
    models: list[str],
    synthetic_events: int | None = None,
    csv: Path | None = None,
) -> list[dict[str, Any]]:
    params = copy.deepcopy(params)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        paths = Paths(Path(tmp))
        paths.raw.mkdir(parents=True)
        if csv is not None:
            params = merge_params(params, yaml.safe_load(EXAMPLE_MAPPING.read_text()))
            (paths.root / params["data"]["source"]).symlink_to(csv.resolve())
        else:
            from .synthetic import generate, write_dataset

            settings = {
                **params["synthetic"],
                "n_events": synthetic_events,
                "n_users": max(1000, synthetic_events // EVENTS_PER_USER),
            }
            write_dataset(*generate(**settings), paths.raw)
        started = time.perf_counter()
        data_stages.ingest(params, paths)
        data_stages.validate(params, paths)
        split = data_stages.split(params, paths)
        prepare_seconds = time.perf_counter() - started
        print(f"{label}: prepared in {prepare_seconds:.1f}s; split {split}", file=sys.stderr)
        rows = []
        for model in models:
            params["model"]["candidates"] = [model]
            (paths.root / "params.yaml").write_text(yaml.safe_dump(params))
            result = subprocess.run(
                [sys.executable, "-m", __name__, str(paths.root)],
                capture_output=True,
                text=True,
                check=True,
            )
            rows.append({"data": label, "model": model, **json.loads(result.stdout)})
    return rows


def _train_and_evaluate(root: Path) -> dict[str, Any]:
    params = yaml.safe_load((root / "params.yaml").read_text())
    paths = Paths(root)
    model = params["model"]["candidates"][0]
    started = time.perf_counter()
    train_report = model_stages.train(params, paths)
    trained = time.perf_counter()
    metrics = model_stages.evaluate(params, paths)["models"][model]["warm"]
    return {
        "events": train_report["nnz"],
        "users": train_report["n_users"],
        "items": train_report["n_items"],
        "fit_s": train_report[model]["fit_seconds"],
        "train_s": round(trained - started, 2),
        "evaluate_s": round(time.perf_counter() - trained, 2),
        "peak_mb": peak_memory_mb(),
        "ndcg_at_10": metrics.get("ndcg_at_10", 0.0),
        "recall_at_20": metrics.get("recall_at_20", 0.0),
    }


def _table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'data':<22}{'model':<12}{'users':>8}{'items':>7}{'pairs':>10}{'fit s':>8}"
        f"{'train s':>9}{'eval s':>8}{'peak MB':>9}{'NDCG@10':>9}{'Recall@20':>10}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['data']:<22}{row['model']:<12}{row['users']:>8}{row['items']:>7}"
            f"{row['events']:>10}{row['fit_s']:>8.2f}{row['train_s']:>9.2f}"
            f"{row['evaluate_s']:>8.2f}{row['peak_mb']:>9}{row['ndcg_at_10']:>9.4f}"
            f"{row['recall_at_20']:>10.4f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(json.dumps(_train_and_evaluate(Path(sys.argv[1]))))
