"""Where a serving artifact comes from: a `MODEL_URI` resolved, downloaded, verified, smoke-tested.

One implementation for every consumer (the API's model store, the batch export): a URI is
`models:/<name>@<alias>`, `models:/<name>/<version>` or a local artifact folder. Resolving
`models:/` needs the MLflow client (core's `registry` extra); core imports it only then.

Each step logs what it waits for and how long it took (resolving, downloading, verifying, the
smoke test), so a server that is not ready yet says why.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import math
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, overload
from urllib.parse import unquote, urlparse

import numpy as np
import yaml

from . import registry, shared
from .artifact import ArtifactError, ServingArtifact, blockwise, read_manifest
from .cli import BadInput

log = logging.getLogger(__name__)

ARTIFACT_KEY = "serving_artifact"  # the pyfunc artifact name the training package registers
MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")
SMOKE_UNKNOWN_USER = "__smoke-test-unknown-user__"


class ModelLoadError(BadInput):
    """A model could not be resolved, downloaded, verified or smoke-tested."""


@dataclass(frozen=True)
class LoadedModel:
    """A verified artifact and where it came from."""

    artifact: ServingArtifact
    version: str
    source: str
    loaded_at: str
    manifest: dict[str, Any]
    name: str | None = None
    alias: str | None = None
    run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """What `GET /v1/model` answers: version, lineage tags and the artifact's manifest."""
        manifest = self.manifest
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "source": self.source,
            "run_id": self.run_id,
            "loaded_at": self.loaded_at,
            "lineage": dict(sorted(self.tags.items())),
            "artifact": {
                key: manifest.get(key)
                for key in ("created_at", "n_users", "n_items", "top_n", "similar_n", "checksum")
            }
            | {"metadata": manifest.get("metadata", {})},
        }


# Without `unless_version` there is always a model (or an error): only an unchanged one is None.
@overload
def load_model(
    uri: str,
    tracking_uri: str | None = None,
    unless_version: None = None,
    memory_map_in: Path | None = None,
) -> LoadedModel: ...
@overload
def load_model(
    uri: str,
    tracking_uri: str | None = None,
    unless_version: str | None = None,
    memory_map_in: Path | None = None,
) -> LoadedModel | None: ...
def load_model(
    uri: str,
    tracking_uri: str | None = None,
    unless_version: str | None = None,
    memory_map_in: Path | None = None,
) -> LoadedModel | None:
    """The verified model `uri` points at; None if its version is `unless_version` (no change).

    A `models:/` URI resolves in the registry at `tracking_uri` (default: the
    MLFLOW_TRACKING_URI setting). With `memory_map_in` the arrays are memory-mapped instead of
    read (see `ServingArtifact.load`); a registry download then goes to that folder, which must
    outlive the model (a registry whose files are on this machine is read in place, no copy).
    Raises ModelLoadError, ArtifactError or an MLflow error: the caller
    decides what a failure means (the API keeps serving its previous model, a batch job stops).
    """
    match = MODELS_URI.match(uri)
    if uri.startswith("models:/") and match is None:
        raise ModelLoadError(
            f"MODEL_URI {uri!r} is neither models:/<name>@<alias> nor models:/<name>/<version>"
        )
    if match is None:
        directory = Path(uri.removeprefix("file://"))
        return _load_local(directory, unless_version, memory_map_in is not None)
    name, alias, version = match["name"], match["alias"], match["version"]
    return _load_registered(name, alias, version, tracking_uri, unless_version, memory_map_in)


# The MLflow modules a `models:/` load imports, by the tracking URI's scheme: its client, its
# artifact download and the store that talks to the registry.
CLIENT_MODULES = ("mlflow.exceptions", "mlflow.tracking", "mlflow.artifacts")
STORE_MODULES = {
    "db": (
        "mlflow.store.tracking.sqlalchemy_store",
        "mlflow.store.model_registry.sqlalchemy_store",
    ),
    "http": ("mlflow.store.tracking.rest_store", "mlflow.store.model_registry.rest_store"),
}
DB_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")


def prepare(uri: str, tracking_uri: str | None = None) -> None:
    """Import the modules loading `uri` will need, without connecting to anything: for a
    `models:/` URI the MLflow client, seconds of imports; nothing for a folder.

    A server calls it once before it forks its workers: they then share the imported modules
    instead of each importing them while the server is not ready. Best effort: a module that
    cannot be imported is left to the load, which reports it."""
    if not uri.startswith("models:/"):
        return
    scheme = urlparse(tracking_uri or shared.tracking_uri()).scheme.split("+")[0]
    kind = "db" if scheme in DB_SCHEMES else "http" if scheme in ("http", "https") else None
    modules = CLIENT_MODULES + (STORE_MODULES[kind] if kind is not None else ())
    with step("importing the MLflow client", "imported the MLflow client") as fields:
        fields["modules"] = len(modules)
        for module in modules:
            try:
                importlib.import_module(module)
            except ImportError as error:
                fields.setdefault("not_imported", []).append(f"{module}: {error}")


def _load_local(
    directory: Path, unless_version: str | None, memory_map: bool
) -> LoadedModel | None:
    manifest = read_manifest(directory)
    version = f"local-{manifest['checksum'][:12]}"
    if version == unless_version:
        return None
    artifact = _verify_and_load(directory, manifest, memory_map)
    return LoadedModel(artifact, version, str(directory), _now(), manifest)


def _load_registered(
    name: str,
    alias: str | None,
    version: str | None,
    tracking_uri: str | None,
    unless_version: str | None,
    memory_map_in: Path | None,
) -> LoadedModel | None:
    tracking_uri = tracking_uri or shared.tracking_uri()
    wanted = f"models:/{name}@{alias}" if alias is not None else f"models:/{name}/{version}"
    # A periodic check that finds the same version says so at debug level only.
    level = logging.INFO if unless_version is None else logging.DEBUG
    with step("resolving " + wanted, "resolved " + wanted, level) as done:
        # Seconds when the process has not imported it yet (a server imports it before forking).
        importing = logging.INFO if "mlflow.tracking" not in sys.modules else logging.DEBUG
        with step("importing the MLflow client", "imported the MLflow client", importing):
            client = registry.client(tracking_uri)
        if alias is not None:
            model_version = client.get_model_version_by_alias(name, alias)
            version = str(model_version.version)
        elif version is None:  # MODELS_URI matches an alias or a version, never neither
            raise ModelLoadError(f"{wanted}: neither an alias nor a version")
        done["model_version"] = version
        if version == unless_version:
            done["unchanged"] = True
            return None
        if alias is None:
            model_version = client.get_model_version(name, version)
        location = client.get_model_version_download_uri(name, version)

    with contextlib.ExitStack() as stack:
        in_place = _local_folder(location)
        if in_place is not None:
            # A registry on this machine (the SQLite default): its files are the version's own
            # and never change, so they are read where they are, not copied first.
            directory = locate_artifact(in_place)
            log.info(
                "reading the artifact in place",
                extra={"fields": {"path": str(directory), "mb": _megabytes(directory)}},
            )
        else:
            if memory_map_in is None:
                # The arrays are read into memory, so the download can go once they are loaded.
                target = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="model-")))
            else:
                target = Path(memory_map_in)
            directory = _download(location, name, version, tracking_uri, target)
        manifest = read_manifest(directory)
        artifact = _verify_and_load(directory, manifest, memory_map=memory_map_in is not None)
    return LoadedModel(
        artifact,
        str(version),
        f"models:/{name}/{version}",
        _now(),
        manifest,
        name=name,
        alias=alias,
        run_id=model_version.run_id,
        tags=dict(model_version.tags or {}),
    )


def _local_folder(location: str) -> Path | None:
    """The folder a registry download URI names when it is on this machine, else None."""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
    elif parsed.scheme == "":
        path = Path(location)
    else:
        return None  # s3://, gs://, mlflow-artifacts:/, dbfs:/, ...
    return path if path.is_dir() else None


def _download(location: str, name: str, version: str, tracking_uri: str, target: Path) -> Path:
    """Download the serving artifact of a version into `target`: MLmodel first, then only the
    folder it names (not the model's code, environment files and input examples); the whole
    model when MLmodel names none. Returns the artifact folder."""
    import mlflow.artifacts

    started = time.perf_counter()
    log.info(
        "downloading the artifact",
        extra={"fields": {"model_version": version, "from": location}},
    )
    base = location.rstrip("/")
    directory = None
    try:
        mlmodel = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{base}/MLmodel", dst_path=str(target), tracking_uri=tracking_uri
        )
        relative = _artifact_path(Path(mlmodel))
        if relative and not Path(relative).is_absolute() and ".." not in Path(relative).parts:
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"{base}/{relative}",
                dst_path=str((target / relative).parent),
                tracking_uri=tracking_uri,
            )
            if (target / relative / "manifest.json").is_file():
                directory = target / relative
    except Exception as error:  # the whole model below: it raises if the store is at fault
        log.warning(
            "could not download the serving artifact alone; downloading the whole model",
            extra={
                "fields": {"model_version": version, "error": f"{type(error).__name__}: {error}"}
            },
        )
    if directory is None:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version}",
            dst_path=str(target),
            tracking_uri=tracking_uri,
        )
        directory = locate_artifact(Path(local))
    log.info(
        "downloaded the artifact",
        extra={
            "fields": {
                "model_version": version,
                "mb": _megabytes(directory),
                "ms": _ms(started),
            }
        },
    )
    return directory


def _verify_and_load(
    directory: Path, manifest: dict[str, Any], memory_map: bool
) -> ServingArtifact:
    files = manifest.get("files", {})
    size = round(sum(_file_size(directory / name) for name in files) / 1e6, 1)
    with step("verifying the artifact", "verified the artifact") as fields:
        fields.update({"files": len(files), "mb": size, "memory_map": memory_map})
        artifact = ServingArtifact.load(directory, memory_map)
    with step("smoke-testing the artifact", "smoke test passed") as fields:
        fields.update({"users": len(artifact.user_ids), "items": len(artifact.item_ids)})
        smoke_test(artifact)
    return artifact


@contextlib.contextmanager
def step(waiting: str, done: str, level: int = logging.INFO) -> Iterator[dict[str, Any]]:
    """Log `waiting` now and `done` with its duration (`ms`) when the block ends; the block may
    add fields to the yielded dict. A block that raises logs nothing more: the caller reports
    the failure."""
    started = time.perf_counter()
    log.log(level, waiting)
    fields: dict[str, Any] = {}
    yield fields
    log.log(level, done, extra={"fields": {**fields, "ms": _ms(started)}})


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0  # missing: ServingArtifact.load names it


def _megabytes(directory: Path) -> float:
    return round(sum(_file_size(path) for path in directory.glob("*.npy")) / 1e6, 1)


def _artifact_path(mlmodel: Path) -> str | None:
    """The serving artifact's folder, relative to the model, as MLmodel records it."""
    spec = yaml.safe_load(mlmodel.read_text()) or {}
    artifacts = spec.get("flavors", {}).get("python_function", {}).get("artifacts", {})
    return artifacts.get(ARTIFACT_KEY, {}).get("path") or None


def locate_artifact(model_dir: Path) -> Path:
    """The serving artifact inside a downloaded pyfunc model (its path is recorded in MLmodel)."""
    mlmodel = model_dir / "MLmodel"
    if mlmodel.is_file():
        relative = _artifact_path(mlmodel)
        if relative:
            return model_dir / relative
    manifests = sorted(model_dir.rglob("manifest.json"))
    if len(manifests) != 1:
        raise ModelLoadError(
            f"{model_dir}: no {ARTIFACT_KEY!r} in MLmodel and {len(manifests)} manifest.json files"
        )
    return manifests[0].parent


def smoke_test(artifact: ServingArtifact) -> None:
    """Refuse an artifact that cannot answer: one known user, one unknown user, one item."""
    n_items = len(artifact.item_ids)
    if n_items == 0 or len(artifact.user_ids) == 0:
        raise ArtifactError("smoke test: the artifact has no users or no items")
    k = min(10, n_items)
    popular = int(np.count_nonzero(artifact.popular_items >= 0))
    checks = [
        (artifact.recommend(str(artifact.user_ids[0]), k), "personalized", 1),
        (artifact.recommend(SMOKE_UNKNOWN_USER, k), "popularity", min(k, popular)),
    ]
    for answer, strategy, at_least in checks:
        if answer.strategy != strategy or not at_least <= len(answer.items) <= k:
            raise ArtifactError(
                f"smoke test: {strategy} answer has {len(answer.items)} items, "
                f"expected {at_least}..{k}"
            )
        if not all(math.isfinite(score) for score in answer.scores):
            raise ArtifactError(f"smoke test: {strategy} answer has non-finite scores")
    for scores in (artifact.similar_scores, artifact.user_top_scores):
        if any(blockwise(scores, lambda block: bool(np.isnan(block).any()))):
            raise ArtifactError("smoke test: NaN scores in the artifact")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
