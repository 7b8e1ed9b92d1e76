"""bench-batch: users scored per second, peak memory and output size of `batch-recommend`.

    uv run --no-sync python benchmarks/bench_batch.py [flags]      # or: make bench-batch

The serving artifacts are synthetic (random top-N lists over the configured catalogue size and
`artifact.top_n`), because the export's cost depends on the number of users and k, not on how
the lists were learnt, and training a model for a million users would take the benchmark's whole
budget. Each export runs the real export in a fresh process, so its peak memory is its own.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import harness
from {{ cookiecutter.package }}_core.artifact import ServingArtifact

N_ITEMS = 5000


def run_benchmark(params: dict[str, Any], args: argparse.Namespace) -> int:
    rows = []
    for users in harness.sizes(args.sizes):
        with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
            root = Path(tmp)
            synthetic_artifact(users, params["artifact"]["top_n"]).save(root / "model")
            model_mb = harness.size_mb(root / "model")
            measured = harness.in_fresh_process(__file__, root, args.k, args.chunk_size)
            rows.append({"users": users, "model_mb": model_mb, **measured})
            print(f"{users:,} users: {measured['seconds']} s", file=sys.stderr)
    title = f"bench-batch: top-{args.k}, {args.chunk_size:,} users per chunk"
    print(harness.table(COLUMNS, rows, title))
    return 0


def synthetic_artifact(n_users: int, top_n: int, seed: int = 7) -> ServingArtifact:
    rng = np.random.default_rng(seed)
    top_n = min(top_n, N_ITEMS)
    return ServingArtifact(
        user_ids=np.char.add("u", np.char.zfill(np.arange(n_users).astype(str), 7)),
        item_ids=np.char.add("i", np.char.zfill(np.arange(N_ITEMS).astype(str), 5)),
        item_categories=np.array([f"c{i % 24:02d}" for i in range(N_ITEMS)]),
        user_top_items=rng.integers(0, N_ITEMS, (n_users, top_n), dtype=np.int32),
        user_top_scores=np.sort(rng.random((n_users, top_n), dtype=np.float32), axis=1)[:, ::-1],
        similar_items=rng.integers(0, N_ITEMS, (N_ITEMS, 10), dtype=np.int32),
        similar_scores=np.ones((N_ITEMS, 10), dtype=np.float32),
        popular_items=rng.permutation(N_ITEMS).astype(np.int32),
        metadata={"model": "synthetic-benchmark"},
    )


def _export(root: str, k: str, chunk_size: str) -> dict[str, Any]:
    """One export in this (fresh) process, as `batch-recommend` does it (without the MLflow run).
    The arguments come as text from the command line."""
    from datetime import date

    from {{ cookiecutter.package }}_batch.export import ExportSettings, export
    from {{ cookiecutter.package }}_core.model_source import load_model

    folder = Path(root)
    started = time.perf_counter()
    model = load_model(str(folder / "model"), memory_map_in=folder)
    loaded = time.perf_counter()
    settings = ExportSettings(
        out=folder / "out", day=date(2026, 1, 1), k=int(k), chunk_size=int(chunk_size)
    )
    manifest = export(model, settings, progress=False)
    finished = time.perf_counter()
    users = manifest["users"]
    return {
        "rows": manifest["rows"],
        "load_s": round(loaded - started, 2),
        "seconds": round(finished - loaded, 2),
        "users_per_s": round(users / (finished - loaded)),
        "peak_mb": harness.peak_memory_mb(),
        "output_mb": harness.size_mb(Path(manifest["path"])),
    }


COLUMNS = [
    ("users", "users", ">10,"),
    ("rows", "rows", ">12,"),
    ("model MB", "model_mb", ">10"),
    ("load s", "load_s", ">8"),
    ("export s", "seconds", ">10"),
    ("users/s", "users_per_s", ">10,"),
    ("peak MB", "peak_mb", ">9"),
    ("output MB", "output_mb", ">11"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = harness.parser(__doc__)
    parser.add_argument("--sizes", default="20000,200000,1000000", help="users, comma-separated")
    parser.add_argument("--k", type=int, default=20, help="recommendations per user")
    parser.add_argument("--chunk-size", type=int, default=50_000, help="users per Parquet part")
    return parser


if __name__ == "__main__":
    harness.main(build_parser(), run_benchmark, measure=_export)
