"""Where a serving artifact comes from: a `MODEL_URI` resolved, downloaded, verified, smoke-tested.

One implementation for every consumer (the API's model store, the batch export): a URI is
`models:/<name>@<alias>`, `models:/<name>/<version>` or a local artifact folder. Resolving
`models:/` needs the MLflow client (core's `registry` extra); core imports it only then.
"""

from __future__ import annotations

import contextlib
import math
import re
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from . import registry, shared
from .artifact import ArtifactError, ServingArtifact, blockwise, read_manifest
from .cli import BadInput

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
    outlive the model. Raises ModelLoadError, ArtifactError or an MLflow error: the caller
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


def _load_local(
    directory: Path, unless_version: str | None, memory_map: bool
) -> LoadedModel | None:
    manifest = read_manifest(directory)
    version = f"local-{manifest['checksum'][:12]}"
    if version == unless_version:
        return None
    artifact = ServingArtifact.load(directory, memory_map)
    smoke_test(artifact)
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
    client = registry.client(tracking_uri)
    if alias is not None:
        model_version = client.get_model_version_by_alias(name, alias)
        version = str(model_version.version)
    if version == unless_version:
        return None
    if alias is None:
        model_version = client.get_model_version(name, version)
    import mlflow.artifacts

    with contextlib.ExitStack() as stack:
        if memory_map_in is None:
            # The arrays are read into memory, so the download can go once they are loaded.
            target = stack.enter_context(tempfile.TemporaryDirectory(prefix="model-"))
        else:
            target = str(memory_map_in)
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{name}/{version}", dst_path=target, tracking_uri=tracking_uri
        )
        directory = locate_artifact(Path(local))
        manifest = read_manifest(directory)
        artifact = ServingArtifact.load(directory, memory_map=memory_map_in is not None)
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


def locate_artifact(model_dir: Path) -> Path:
    """The serving artifact inside a downloaded pyfunc model (its path is recorded in MLmodel)."""
    mlmodel = model_dir / "MLmodel"
    if mlmodel.is_file():
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
    for scores in (artifact.similar_scores, artifact.user_top_scores):
        if any(blockwise(scores, lambda block: bool(np.isnan(block).any()))):
            raise ArtifactError("smoke test: NaN scores in the artifact")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
