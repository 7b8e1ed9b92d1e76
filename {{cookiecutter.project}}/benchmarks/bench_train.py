"""bench-train: training time, peak memory and accuracy per model, against data size.

    uv run --no-sync python benchmarks/bench_train.py [flags]      # or: make bench-train

Each dataset goes through the real stages (ingest, validate, split) once; each model is then
trained and evaluated by the real `train`/`evaluate` stages in a fresh process, so its peak
memory is its own.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

import harness
from {{ cookiecutter.package }}_training import data_stages, model_stages
from {{ cookiecutter.package }}_training.config import Paths, merge_params

EXAMPLE_MAPPING = Path(__file__).resolve().parents[1] / "examples" / "online_retail.params.yaml"
# Users grow with the events (about 50 events a user, as in the default data set).
EVENTS_PER_USER = 50


def run_benchmark(params: dict[str, Any], args: argparse.Namespace) -> int:
    models = list(params["model"]["candidates"])
    rows = []
    for size in harness.sizes(args.sizes):
        rows += _bench_dataset(f"synthetic {size:,}", params, models, synthetic_events=size)
    if args.online_retail:
        rows += _bench_dataset("UCI Online Retail", params, models, csv=Path(args.online_retail))
    print(harness.table(COLUMNS, rows))
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
            from {{ cookiecutter.package }}_training.synthetic import generate, write_dataset

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
            measured = harness.in_fresh_process(__file__, paths.root)
            rows.append({"data": label, "model": model, **measured})
    return rows


def _train_and_evaluate(root: str) -> dict[str, Any]:
    """Train and evaluate the one candidate of `root`/params.yaml (in a fresh process)."""
    params = yaml.safe_load((Path(root) / "params.yaml").read_text())
    paths = Paths(Path(root))
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
        "peak_mb": harness.peak_memory_mb(),
        "ndcg_at_10": metrics.get("ndcg_at_10", 0.0),
        "recall_at_20": metrics.get("recall_at_20", 0.0),
    }


COLUMNS = [
    ("data", "data", "<22"),
    ("model", "model", "<12"),
    ("users", "users", ">8"),
    ("items", "items", ">7"),
    ("pairs", "events", ">10"),
    ("fit s", "fit_s", ">8.2f"),
    ("train s", "train_s", ">9.2f"),
    ("eval s", "evaluate_s", ">8.2f"),
    ("peak MB", "peak_mb", ">9"),
    ("NDCG@10", "ndcg_at_10", ">9.4f"),
    ("Recall@20", "recall_at_20", ">10.4f"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = harness.parser(__doc__)
    parser.add_argument(
        "--sizes", default="100000,1000000,3000000", help="synthetic events, comma-separated"
    )
    parser.add_argument(
        "--online-retail", help="also the UCI Online Retail set: path of its online_retail.csv.gz"
    )
    return parser


if __name__ == "__main__":
    harness.main(build_parser(), run_benchmark, measure=_train_and_evaluate)
