"""`bench-batch`: users scored per second, peak memory and output size of `batch-recommend`.

The serving artifacts are synthetic (random top-N lists over the configured catalogue size and
`artifact.top_n`), because the export's cost depends on the number of users and k, not on how
the lists were learnt, and training a model for a million users would take the benchmark's whole
budget. Each export runs the real command in a fresh process, so its peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from {{ cookiecutter.package }}_core.artifact import ServingArtifact
from {{ cookiecutter.package }}_core.peak_memory import peak_memory_mb

N_ITEMS = 5000


def run_benchmark(params: dict[str, Any], args: argparse.Namespace) -> int:
    rows = []
    for users in [int(size) for size in args.sizes.split(",") if size]:
        with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
            root = Path(tmp)
            synthetic_artifact(users, params["artifact"]["top_n"]).save(root / "model")
            model_mb = _size_mb(root / "model")
            result = subprocess.run(
                [sys.executable, "-m", __name__, str(root), str(args.k), str(args.chunk_size)],
                capture_output=True,
                text=True,
                check=True,
            )
            measured = json.loads(result.stdout.strip().splitlines()[-1])
            rows.append({"users": users, "model_mb": model_mb, **measured})
            print(f"{users:,} users: {measured['seconds']} s", file=sys.stderr)
    print(_table(rows, args))
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


def _export(root: Path, k: int, chunk_size: int) -> dict[str, Any]:
    """One export in this process, as `batch-recommend` does it (without the MLflow run)."""
    from datetime import date

    from {{ cookiecutter.package }}_core.model_source import load_model

    from .batch import ExportSettings, export

    started = time.perf_counter()
    model = load_model(str(root / "model"), memory_map_in=root)
    loaded = time.perf_counter()
    settings = ExportSettings(out=root / "out", day=date(2026, 1, 1), k=k, chunk_size=chunk_size)
    manifest = export(model, settings, progress=False)
    finished = time.perf_counter()
    users = manifest["users"]
    return {
        "rows": manifest["rows"],
        "load_s": round(loaded - started, 2),
        "seconds": round(finished - loaded, 2),
        "users_per_s": round(users / (finished - loaded)),
        "peak_mb": peak_memory_mb(),
        "output_mb": _size_mb(Path(manifest["path"])),
    }


def _size_mb(folder: Path) -> float:
    return round(sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 1e6, 1)


def _table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    header = (
        f"{'users':>10}{'rows':>12}{'model MB':>10}{'load s':>8}{'export s':>10}"
        f"{'users/s':>10}{'peak MB':>9}{'output MB':>11}"
    )
    lines = [f"bench-batch: top-{args.k}, {args.chunk_size:,} users per chunk", header]
    lines.append("-" * len(header))
    for row in rows:
        lines.append(
            f"{row['users']:>10,}{row['rows']:>12,}{row['model_mb']:>10}{row['load_s']:>8}"
            f"{row['seconds']:>10}{row['users_per_s']:>10,}{row['peak_mb']:>9}"
            f"{row['output_mb']:>11}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(json.dumps(_export(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))))
