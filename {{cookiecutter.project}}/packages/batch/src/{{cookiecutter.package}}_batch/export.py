"""The batch export: every known user's top-k as Parquet, from the model the API serves.

The model comes through `MODEL_URI` exactly as the API loads it (alias, version or path; checksum
and smoke test), and every answer through `ServingArtifact.rank_row`, the API's ranking and
filters. The artifact is memory-mapped and users are scored in chunks, one Parquet part per
chunk, giving back each chunk's pages: the memory is set by the chunk size, not the users. A
partition is written in a hidden staging folder beside it and renamed into place only when
complete: readers see the whole export for a date or none of it.

    <out>/date=<YYYY-MM-DD>/part-00000.parquet ...   user_id, rank, item_id, score,
                                                      model_version, run_id
                          /fallback.parquet           the list for users the model does not know
                          /manifest.json              model, settings, row counts, checksums
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from {{ cookiecutter.package }}_core.artifact import ServingArtifact, sha256_file
from {{ cookiecutter.package }}_core.cli import BadInput, Failed
from {{ cookiecutter.package }}_core.model_source import LoadedModel, load_model
from {{ cookiecutter.package }}_core.registry import BATCH_EXPORT_KIND, batch_experiment
from {{ cookiecutter.package }}_core.shared import tracking_uri

MANIFEST = "manifest.json"
PART = re.compile(r"part-\d{5}\.parquet")
FALLBACK_USER = ""  # user_id of the fallback rows: the list for any user not in the model
SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("rank", pa.int16()),
        ("item_id", pa.string()),
        ("score", pa.float32()),
        ("model_version", pa.string()),
        ("run_id", pa.string()),
    ]
)


class ExportError(Failed):
    """The export could not be written; nothing visible was changed."""

    def __str__(self) -> str:
        return f"{super().__str__()}; previous exports are untouched"


class ExportRefused(BadInput):
    """The settings would not give a usable export (exit 2); nothing visible was changed."""

    def __str__(self) -> str:
        return f"{super().__str__()}; previous exports are untouched"


@dataclass(frozen=True)
class ExportSettings:
    out: Path
    day: date
    k: int = 20
    chunk_size: int = 50_000
    category: str | None = None
    catalog: Path | None = None
    csv: bool = False


def export(model: LoadedModel, settings: ExportSettings, progress: bool = True) -> dict[str, Any]:
    """Write the partition for `settings.day`; a rerun with the same model and settings is a
    no-op that returns the existing manifest."""
    if settings.k < 1 or settings.chunk_size < 1:
        raise ExportError("k and the chunk size must be at least 1")
    artifact = model.artifact
    _check_category(artifact, settings.category)
    unavailable, catalog_digest = _unavailable_items(artifact, settings.catalog)
    request = {
        "model_source": model.source,
        "model_version": model.version,
        "run_id": model.run_id or "",
        "k": settings.k,
        "category": settings.category,
        "catalog_sha256": catalog_digest,
        "csv": settings.csv,
    }
    partition = settings.out / f"date={settings.day.isoformat()}"
    existing = _read_manifest(partition)
    if existing is not None and existing.get("request") == request:
        return {**existing, "status": "unchanged"}

    try:
        settings.out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{partition.name}.", dir=settings.out))
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the export from its readers
    except OSError as error:
        raise ExportError(f"cannot write to {settings.out}: {error}") from error
    try:
        started = time.perf_counter()
        files = _write_parts(artifact, request, unavailable, settings, staging, progress)
        rows = sum(entry["rows"] for name, entry in files.items() if PART.fullmatch(name))
        if rows == 0:
            raise ExportRefused(_empty_reason(settings, unavailable))
        manifest = {
            "date": settings.day.isoformat(),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "request": request,
            "model_name": model.name,
            "users": len(artifact.user_ids),
            "rows": rows,
            "files": files,
            "checksum": hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest(),
            "seconds": round(time.perf_counter() - started, 2),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        _swap_into_place(staging, partition)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise ExportError(f"cannot write the export to {settings.out}: {error}") from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {**manifest, "status": "written", "path": str(partition)}


def _write_parts(
    artifact: ServingArtifact,
    request: dict[str, Any],
    unavailable: np.ndarray | None,
    settings: ExportSettings,
    staging: Path,
    progress: bool,
) -> dict[str, dict[str, Any]]:
    from tqdm import tqdm

    files: dict[str, dict[str, Any]] = {}
    item_ids = pa.array(artifact.item_ids)
    n_users = len(artifact.user_ids)
    bar = tqdm(total=n_users, unit="user", disable=not progress, mininterval=1.0)
    with bar:
        for part, start in enumerate(range(0, n_users, settings.chunk_size)):
            rows = range(start, min(start + settings.chunk_size, n_users))
            ranked = [
                artifact.rank_row(row, settings.k, frozenset(), settings.category, unavailable)
                for row in rows
            ]
            users = pa.array(artifact.user_ids[start : rows.stop])
            table = _table(users, item_ids, ranked, request)
            files |= _write(table, staging / f"part-{part:05d}", settings.csv)
            artifact.release_memory()
            bar.update(len(rows))
    fallback = [artifact.rank_row(-1, settings.k, frozenset(), settings.category, unavailable)]
    table = _table(pa.array([FALLBACK_USER]), item_ids, fallback, request)
    files |= _write(table, staging / "fallback", settings.csv)
    return files


def _table(
    users: pa.Array,
    item_ids: pa.Array,
    ranked: list[tuple[np.ndarray, np.ndarray | None, str]],
    request: dict[str, Any],
) -> pa.Table:
    """One row per (user, rank), built from item positions: no Python object per row.
    `ranked` always holds at least one user (a chunk, or the fallback)."""
    counts = np.array([len(items) for items, _, _ in ranked], dtype=np.int64)
    total = int(counts.sum())
    items = np.concatenate([items for items, _, _ in ranked])
    scores = [s if s is not None else np.zeros(len(i), np.float32) for i, s, _ in ranked]
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return pa.table(
        {
            "user_id": users.take(np.repeat(np.arange(len(ranked)), counts)),
            "rank": (np.arange(total) - starts + 1).astype(np.int16),
            "item_id": item_ids.take(items),
            "score": np.concatenate(scores).astype(np.float32),
            "model_version": pa.repeat(pa.scalar(request["model_version"]), total),
            "run_id": pa.repeat(pa.scalar(request["run_id"]), total),
        },
        schema=SCHEMA,
    )


def _write(table: pa.Table, stem: Path, csv: bool) -> dict[str, dict[str, Any]]:
    paths = [stem.with_suffix(".parquet")]
    pq.write_table(table, paths[0], compression="zstd")
    if csv:
        paths.append(stem.with_suffix(".csv"))
        table.to_pandas().to_csv(paths[1], index=False)
    return {path.name: {"rows": table.num_rows, "sha256": sha256_file(path)} for path in paths}


def _check_category(artifact: ServingArtifact, category: str | None) -> None:
    """An unknown category would export nothing: name it and some the model knows."""
    if category is None:
        return
    names, counts = np.unique(artifact.item_categories.astype(str), return_counts=True)
    if category in names:
        return
    close = difflib.get_close_matches(category, names.tolist(), n=3)
    largest = names[np.argsort(-counts, kind="stable")][:5].tolist()
    shown = ", ".join(repr(name) for name in dict.fromkeys([*close, *largest]))
    more = f" (of {len(names)})" if len(names) > len(set(close) | set(largest)) else ""
    raise ExportRefused(
        f"unknown category {category!r}: the model's items have none; known categories{more}: "
        f"{shown}"
    )


def _empty_reason(settings: ExportSettings, unavailable: np.ndarray | None) -> str:
    filters = [f"k={settings.k}"]
    if settings.category is not None:
        filters.append(f"category {settings.category!r}")
    if unavailable is not None:
        filters.append(f"{int(unavailable.sum())} items unavailable in {settings.catalog}")
    return (
        f"the export for {settings.day.isoformat()} would have 0 rows: no user's top items pass "
        f"{', '.join(filters)}"
    )


def _unavailable_items(
    artifact: ServingArtifact, catalog: Path | None
) -> tuple[np.ndarray | None, str | None]:
    """A mask over the model's items: True where the catalog marks the item unavailable."""
    if catalog is None:
        return None, None
    try:
        table = pd.read_parquet(catalog) if catalog.suffix == ".parquet" else pd.read_csv(catalog)
    except (OSError, ValueError) as error:
        raise ExportRefused(f"cannot read the catalog {catalog}: {error}") from error
    missing = {"item_id", "available"} - set(table.columns)
    if missing:
        raise ExportRefused(f"the catalog {catalog} lacks column(s) {', '.join(sorted(missing))}")
    gone = table.loc[~table["available"].astype(bool), "item_id"].astype(str).to_numpy()
    positions = artifact.item_index(gone)
    mask = np.zeros(len(artifact.item_ids), dtype=bool)
    mask[positions[positions >= 0]] = True
    return mask, sha256_file(catalog)


def _read_manifest(partition: Path) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, ValueError):
        return json.loads((partition / MANIFEST).read_text())
    return None


def _swap_into_place(staging: Path, partition: Path) -> None:
    """Rename the finished staging folder to the partition; an older export is removed after."""
    old = None
    if partition.exists():
        old = partition.with_name(f".{partition.name}.replaced-{os.getpid()}")
        partition.rename(old)
    try:
        staging.rename(partition)
    except OSError:
        if old is not None:
            old.rename(partition)  # put the previous export back
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def run(uri: str, settings: ExportSettings, progress: bool = True) -> dict[str, Any]:
    """Resolve the model as the API does, export, and log the export as an MLflow run."""
    # Memory-mapped: the export holds the chunk it works on, not every user's arrays.
    with tempfile.TemporaryDirectory(prefix="batch-model-") as download:
        model = load_model(uri, tracking_uri(), memory_map_in=Path(download))
        result = export(model, settings, progress=progress)
        if result["status"] == "written":
            result["mlflow_run_id"] = _log_run(model, result)
        del model  # the mapped files go with the folder
    return result


def _log_run(model: LoadedModel, result: dict[str, Any]) -> str:
    """An MLflow run per export, tagged with the model version it used (for the audit trail)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_experiment(batch_experiment(model.name))
    with mlflow.start_run(run_name=f"export-{result['date']}") as run:
        mlflow.set_tags(
            {
                "kind": BATCH_EXPORT_KIND,
                "model_name": model.name or "",
                "model_version": model.version,
                "model_source": model.source,
                "training_run_id": model.run_id or "",
                "export.date": result["date"],
                "export.path": result["path"],
                "export.checksum": result["checksum"],
            }
        )
        mlflow.log_metrics(
            {"users": result["users"], "rows": result["rows"], "seconds": result["seconds"]}
        )
        mlflow.log_dict(result, "export_manifest.json")
    return run.info.run_id
