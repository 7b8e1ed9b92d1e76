"""The model being served: load, verify, smoke-test, swap atomically; refresh in the background.

A load that fails for any reason (registry down, corrupt file, failed smoke test) leaves the
previous model serving. Readers take `store.current` once per request and use only that object,
so a swap never mixes two models inside one answer.
"""

from __future__ import annotations

import logging
import math
import os
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from {{ cookiecutter.package }}_core.artifact import ArtifactError, ServingArtifact, read_manifest

log = logging.getLogger(__name__)

ARTIFACT_KEY = "serving_artifact"  # the pyfunc artifact name the training package registers
MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")
SMOKE_UNKNOWN_USER = "__smoke-test-unknown-user__"


class ModelLoadError(Exception):
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


@dataclass(frozen=True)
class ReloadResult:
    status: str  # "loaded", "unchanged" or "failed"
    version: str | None
    error: str | None = None


class ReloadListener(Protocol):
    def model_loaded(self, model: LoadedModel) -> None: ...

    def model_load_failed(self, error: Exception) -> None: ...


class ModelStore:
    """Holds the current model for one process; `reload` checks for a new one and swaps it in."""

    def __init__(
        self,
        uri: str,
        *,
        tracking_uri: str = "sqlite:///mlflow.db",
        refresh_seconds: float = 60.0,
        listener: ReloadListener | None = None,
    ) -> None:
        self.uri = uri
        self.tracking_uri = tracking_uri
        self.refresh_seconds = refresh_seconds
        self.listener = listener
        self.last_error: str | None = None
        self._current: LoadedModel | None = None
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Load once now (a failure leaves the store empty), then refresh in the background."""
        self.reload()
        if self.refresh_seconds > 0 and self._thread is None:
            self._thread = threading.Thread(
                target=self._refresh_loop, name="model-refresh", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.refresh_seconds):
            self.reload()

    # -- loading -------------------------------------------------------------------------

    def reload(self, force: bool = False) -> ReloadResult:
        """Load the model `uri` points at if it differs from the current one (always if `force`)."""
        with self._reload_lock:
            started = time.perf_counter()
            try:
                model = self._load(force)
            except Exception as error:  # anything: the previous model must keep serving
                self.last_error = f"{type(error).__name__}: {error}"
                log.error(
                    "model load failed; keeping the current model",
                    extra={
                        "fields": {
                            "model_uri": self.uri,
                            "error": self.last_error,
                            "serving_version": self._version(),
                        }
                    },
                )
                if self.listener is not None:
                    self.listener.model_load_failed(error)
                return ReloadResult("failed", self._version(), self.last_error)
            if model is None:
                return ReloadResult("unchanged", self._version())
            self._current = model  # the swap: one reference assignment
            self.last_error = None
            log.info(
                "model loaded",
                extra={
                    "fields": {
                        "model_uri": self.uri,
                        "model_version": model.version,
                        "load_ms": round((time.perf_counter() - started) * 1000, 1),
                    }
                },
            )
            if self.listener is not None:
                self.listener.model_loaded(model)
            return ReloadResult("loaded", model.version)

    def _version(self) -> str | None:
        current = self._current
        return current.version if current is not None else None

    def _load(self, force: bool) -> LoadedModel | None:
        match = MODELS_URI.match(self.uri)
        if self.uri.startswith("models:/") and match is None:
            raise ModelLoadError(
                f"MODEL_URI {self.uri!r} is neither models:/<name>@<alias> nor "
                "models:/<name>/<version>"
            )
        if match is None:
            return self._load_local(force)
        return self._load_registered(match["name"], match["alias"], match["version"], force)

    def _load_local(self, force: bool) -> LoadedModel | None:
        directory = Path(self.uri.removeprefix("file://"))
        manifest = read_manifest(directory)
        version = f"local-{manifest['checksum'][:12]}"
        if not force and self._version() == version:
            return None
        artifact = ServingArtifact.load(directory)
        smoke_test(artifact)
        return LoadedModel(artifact, version, str(directory), _now(), manifest)

    def _load_registered(
        self, name: str, alias: str | None, version: str | None, force: bool
    ) -> LoadedModel | None:
        client = self._client()
        if alias is not None:
            model_version = client.get_model_version_by_alias(name, alias)
            version = str(model_version.version)
        if not force and self._version() == version:
            return None
        if alias is None:
            model_version = client.get_model_version(name, version)
        import mlflow.artifacts

        # The arrays are read into memory, so the download can go once they are loaded.
        with tempfile.TemporaryDirectory(prefix="model-") as target:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}",
                dst_path=target,
                tracking_uri=self.tracking_uri,
            )
            directory = locate_artifact(Path(local))
            manifest = read_manifest(directory)
            artifact = ServingArtifact.load(directory)
        smoke_test(artifact)
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

    def _client(self):
        # Imported here: the app starts and serves a local artifact without MLflow installed.
        # Bounded retries, so an MLflow outage costs a refresh seconds, not minutes.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)


def locate_artifact(model_dir: Path) -> Path:
    """The serving artifact inside a downloaded pyfunc model (its path is recorded in MLmodel)."""
    mlmodel = model_dir / "MLmodel"
    if mlmodel.is_file():
        import yaml  # a dependency of the MLflow client, present whenever this path runs

        spec = yaml.safe_load(mlmodel.read_text()) or {}
        artifacts = spec.get("flavors", {}).get("python_function", {}).get("artifacts", {})
        relative = artifacts.get(ARTIFACT_KEY, {}).get("path")
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
    if np.isnan(artifact.similar_scores).any() or np.isnan(artifact.user_top_scores).any():
        raise ArtifactError("smoke test: NaN scores in the artifact")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
