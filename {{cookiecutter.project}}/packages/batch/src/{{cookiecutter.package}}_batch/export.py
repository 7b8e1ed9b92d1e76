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

`--shard i/N` exports only the users with `shard_of(user_id, N) == i` (a CRC-32 of the UTF-8 id:
stable across processes and machines, unlike Python's salted `hash()`), for a Kubernetes
Indexed Job whose N pods write the same partition concurrently, possibly on a shared (NFS)
volume. The partition folder is then shared, so it cannot be staged and renamed as a whole;
instead every name a shard writes is its own, and the partition manifest is the commit point:

    <out>/date=<YYYY-MM-DD>/part-<id>-<i>-of-<N>-00000.parquet ...  shard i's users
                          /fallback-<id>.parquet                   (written by shard 0)
                          /_manifest-<id>-<i>-of-<N>.json          shard i is complete
                          /manifest.json                           the partition is complete

`<id>` is a digest of the model and settings (every pod computes the same one), so files of a
new export never overwrite the files an older, complete `manifest.json` lists. A shard stages
its files in its own hidden folder inside the partition, renames each into place (rename is
atomic within a filesystem), then writes its shard manifest (temp file + rename). Then it lists
the shard manifests of its export: if all N are there, it writes `manifest.json` naming every
shard manifest and file. This is race-free without locks: each shard writes its manifest
before it looks, so the shard whose manifest was written last sees all N (two shards finishing
together may both see all N; `manifest.json` is a pure function of the shard manifests, so both
write the same bytes, and the MLflow run is logged once, by whoever creates the `_logged-<id>-of-
<N>` marker with O_EXCL). A rerun of any shard (a Job retry) is a no-op for its own files and
finishes the partition if all shards are done, so a finalizer that died is healed by a rerun.
The finalizer then removes files of older exports (other ids, the unsharded layout). Readers
take a partition as complete when `manifest.json` exists and read the files it lists (the
hidden and `_` names are ignored by Parquet dataset readers). One export per date at a time:
the CronJob must not start a second run while one is running (`concurrencyPolicy: Forbid`).
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
import zlib
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
SHARD_PART = re.compile(r"part-[0-9a-f]+-\d+-of-\d+-\d{5}\.parquet")
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
class Shard:
    """Shard `index` of `count`: the users with `shard_of(user_id, count) == index`."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not (self.count >= 1 and 0 <= self.index < self.count):
            raise ValueError(f"shard {self.index}/{self.count}: need 0 <= i < N and N >= 1")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(user_ids: Any, count: int) -> np.ndarray:
    """The shard of every user id: CRC-32 of its UTF-8 bytes, modulo `count`. Stable across
    processes, machines and Python versions (Python's `hash()` of a str is salted per process)."""
    return np.fromiter(
        (zlib.crc32(str(user).encode("utf-8", "surrogatepass")) % count for user in user_ids),
        dtype=np.int64,
        count=len(user_ids),
    )


@dataclass(frozen=True)
class ExportSettings:
    out: Path
    day: date
    k: int = 20
    chunk_size: int = 50_000
    category: str | None = None
    catalog: Path | None = None
    csv: bool = False
    shard: Shard | None = None


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
        result = {**existing, "status": "unchanged", "path": str(partition)}
        if settings.shard is not None and "shards" in existing:
            # A finalizer that died between manifest.json and the MLflow run: log it now.
            marker = f"_logged-{_export_id(request)}-of-{existing['shards']['count']}"
            result["partition"] = {**existing, "log_run": _claim(partition / marker)}
        return result
    if settings.shard is not None:
        return _export_shard(model, settings, request, unavailable, partition, progress)

    try:
        settings.out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{partition.name}.", dir=settings.out))
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the export from its readers
    except OSError as error:
        raise ExportError(f"cannot write to {settings.out}: {error}") from error
    try:
        started = time.perf_counter()
        files = _write_parts(artifact, request, unavailable, settings, staging, progress)
        rows = _part_rows(files, PART)
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
    rows: np.ndarray | None = None,
    names: tuple[str, str | None] = ("part-", "fallback"),
) -> dict[str, dict[str, Any]]:
    """Score the users at positions `rows` (default: all) chunk by chunk; `names` are the parts'
    prefix (then the part number) and the fallback's stem (None: no fallback)."""
    from tqdm import tqdm

    files: dict[str, dict[str, Any]] = {}
    item_ids = pa.array(artifact.item_ids)
    n_users = len(artifact.user_ids) if rows is None else len(rows)
    part_prefix, fallback_name = names
    bar = tqdm(total=n_users, unit="user", disable=not progress, mininterval=1.0)
    with bar:
        for part, start in enumerate(range(0, n_users, settings.chunk_size)):
            stop = min(start + settings.chunk_size, n_users)
            chunk = range(start, stop) if rows is None else rows[start:stop]
            ranked = [
                artifact.rank_row(int(row), settings.k, frozenset(), settings.category, unavailable)
                for row in chunk
            ]
            user_ids = artifact.user_ids[start:stop] if rows is None else artifact.user_ids[chunk]
            table = _table(pa.array(user_ids), item_ids, ranked, request)
            files |= _write(table, staging / f"{part_prefix}{part:05d}", settings.csv)
            artifact.release_memory()
            bar.update(len(chunk))
    if fallback_name is not None:
        fallback = [artifact.rank_row(-1, settings.k, frozenset(), settings.category, unavailable)]
        table = _table(pa.array([FALLBACK_USER]), item_ids, fallback, request)
        files |= _write(table, staging / fallback_name, settings.csv)
    return files


# --- Sharded exports (the module docstring has the layout and why it is race-free) ------------


def _export_id(request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:12]


def _shard_manifest_name(export_id: str, index: int, count: int) -> str:
    return f"_manifest-{export_id}-{index}-of-{count}.json"


def _export_shard(
    model: LoadedModel,
    settings: ExportSettings,
    request: dict[str, Any],
    unavailable: np.ndarray | None,
    partition: Path,
    progress: bool,
) -> dict[str, Any]:
    shard = settings.shard
    assert shard is not None
    artifact = model.artifact
    export_id = _export_id(request)
    own = partition / _shard_manifest_name(export_id, shard.index, shard.count)
    manifest = _read_json(own)
    if manifest is not None and all((partition / name).is_file() for name in manifest["files"]):
        status = "shard-unchanged"  # a retry of a finished shard: only try to finish the partition
    else:
        manifest = _write_shard(
            model, settings, request, unavailable, partition, export_id, progress
        )
        status = "shard-written"
    result = {**manifest, "status": status, "path": str(partition), "shard": str(shard)}
    result["partition"] = _finalize(partition, export_id, shard.count, len(artifact.user_ids))
    if result["partition"] is not None:
        result["partition"]["log_run"] = _claim(partition / f"_logged-{export_id}-of-{shard.count}")
    return result


def _write_shard(
    model: LoadedModel,
    settings: ExportSettings,
    request: dict[str, Any],
    unavailable: np.ndarray | None,
    partition: Path,
    export_id: str,
    progress: bool,
) -> dict[str, Any]:
    shard = settings.shard
    assert shard is not None
    tag = f"{export_id}-{shard.index}-of-{shard.count}"
    try:
        partition.mkdir(parents=True, exist_ok=True)  # every shard may create it: no race
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{tag}.", dir=partition))
    except OSError as error:
        raise ExportError(f"cannot write to {partition}: {error}") from error
    try:
        started = time.perf_counter()
        rows = np.flatnonzero(shard_of(model.artifact.user_ids, shard.count) == shard.index)
        fallback = f"fallback-{export_id}" if shard.index == 0 else None
        files = _write_parts(
            model.artifact,
            request,
            unavailable,
            settings,
            staging,
            progress,
            rows=rows,
            names=(f"part-{tag}-", fallback),
        )
        for name in files:
            (staging / name).rename(partition / name)  # atomic; these names are this shard's
        manifest = {
            "date": settings.day.isoformat(),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "request": request,
            "model_name": model.name,
            "shard": {"index": shard.index, "count": shard.count},
            "users": len(rows),
            "rows": _part_rows(files, SHARD_PART),
            "files": files,
            "seconds": round(time.perf_counter() - started, 2),
        }
        # The shard's commit point: its files are all in place when this name appears.
        own = partition / _shard_manifest_name(export_id, shard.index, shard.count)
        _write_json_atomic(own, manifest, export_id)
    except OSError as error:
        raise ExportError(f"cannot write the export to {partition}: {error}") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _finalize(partition: Path, export_id: str, count: int, users: int) -> dict[str, Any] | None:
    """Write `manifest.json` when all `count` shard manifests of `export_id` are in place (else
    None). Deterministic: two shards finalizing at once write the same bytes."""
    names = [_shard_manifest_name(export_id, index, count) for index in range(count)]
    shards = [shard for name in names if (shard := _read_json(partition / name)) is not None]
    if len(shards) < len(names):  # a shard's manifest is missing
        return None
    files = {name: entry for shard in shards for name, entry in shard["files"].items()}
    rows = sum(shard["rows"] for shard in shards)
    if rows == 0:
        raise ExportRefused(
            f"the export for {shards[0]['date']} would have 0 rows: no user's top items pass "
            "the filters (k, --category, --catalog); its shard files are left unlisted"
        )
    manifest = {
        "date": shards[0]["date"],
        "created_at": max(shard["created_at"] for shard in shards),
        "request": shards[0]["request"],
        "model_name": shards[0]["model_name"],
        "users": users,
        "rows": rows,
        "files": dict(sorted(files.items())),
        "checksum": hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest(),
        "seconds": max(shard["seconds"] for shard in shards),
        "shards": {"count": count, "manifests": names},
    }
    try:
        _write_json_atomic(partition / MANIFEST, manifest, export_id)
        _remove_older_exports(partition, export_id, keep={MANIFEST, *names, *files})
    except OSError as error:
        raise ExportError(f"cannot finish the export in {partition}: {error}") from error
    return manifest


def _remove_older_exports(partition: Path, export_id: str, keep: set[str]) -> None:
    """Delete what the new `manifest.json` does not list: files of older exports of this date
    (another id, the unsharded layout) and staging folders of crashed attempts. Names with this
    export's id other than staging (a concurrent finalizer's temp file, the MLflow marker) stay."""
    for entry in partition.iterdir():
        name = entry.name
        if name in keep or (export_id in name and not name.startswith(".staging-")):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _claim(marker: Path) -> bool:
    """True for exactly one caller: O_CREAT|O_EXCL is atomic, also on NFS v3 and later."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return False
    return True


def _write_json_atomic(path: Path, data: dict[str, Any], export_id: str) -> None:
    """Write `path` whole or not at all; the temp file's name holds the export's id."""
    handle, temp = tempfile.mkstemp(
        prefix=f".{path.stem}-{export_id}.", suffix=".tmp", dir=path.parent
    )
    try:
        with os.fdopen(handle, "w") as out:
            out.write(json.dumps(data, indent=2) + "\n")
        os.chmod(temp, 0o644)  # mkstemp's 0600 would hide it from the readers
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _read_json(path: Path) -> dict[str, Any] | None:
    with contextlib.suppress(OSError, ValueError):
        return json.loads(path.read_text())
    return None


def _part_rows(files: dict[str, dict[str, Any]], pattern: re.Pattern[str]) -> int:
    return sum(entry["rows"] for name, entry in files.items() if pattern.fullmatch(name))


def _table(
    users: pa.Array,
    item_ids: pa.Array,
    ranked: list[tuple[np.ndarray, np.ndarray, str]],
    request: dict[str, Any],
) -> pa.Table:
    """One row per (user, rank), built from item positions: no Python object per row.
    `ranked` always holds at least one user (a chunk, or the fallback)."""
    counts = np.array([len(items) for items, _, _ in ranked], dtype=np.int64)
    total = int(counts.sum())
    items = np.concatenate([items for items, _, _ in ranked])
    scores = [row_scores for _, row_scores, _ in ranked]  # the fallback too: popularity's
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
        elif (result.get("partition") or {}).get("log_run"):  # the shard that finished it
            partition = {**result["partition"], "path": result["path"]}
            result["mlflow_run_id"] = _log_run(model, partition)
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
