"""The model registry as every deployable uses it: who is champion and who came before it (one
answer for the drift job's online-quality verdict, `rollback --check` and `audit`), how the
champion moves (the gate, `approve`, `rollback`), who triggered a run, and the batch exports a
version produced. The MLflow client is imported on first use (core's `registry` extra installs
it), so core stays importable without it.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import socket
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cli import Failed
from .shared import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS_CHAMPION_TAG,
    PROMOTION_LOG,
    setting,
    tracking_uri,
)

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChampionLine:
    """The champion's version and the version it replaced (None where there is none)."""

    champion: str | None
    previous: str | None


def client(uri: str | None = None) -> MlflowClient:
    """An MLflow client for the tracking server and registry at `uri` (default: the setting)."""
    # Bounded retries, so an MLflow outage costs seconds, not minutes.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    from mlflow.tracking import MlflowClient

    uri = uri or tracking_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def champion_version(mlflow_client: MlflowClient, name: str) -> str | None:
    """The version number (as a string) that holds the champion alias, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return str(mlflow_client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def champion_line(mlflow_client: MlflowClient, name: str) -> ChampionLine:
    """The champion and, from its `previous_champion` tag, the version it replaced."""
    from mlflow.exceptions import MlflowException

    try:
        version = mlflow_client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return ChampionLine(None, None)
    previous = (version.tags or {}).get(PREVIOUS_CHAMPION_TAG)
    return ChampionLine(str(version.version), previous or None)


class PromotionLockTimeout(Failed):
    """Another promotion held the champion lock for longer than we were willing to wait."""


@contextlib.contextmanager
def promotion_lock(
    mlflow_client: MlflowClient,
    name: str,
    holder: str,
    wait_seconds: float = 900,
    stale_seconds: float = 1800,
) -> Iterator[None]:
    """Hold the one lock that every move of `champion` takes (the gate, approve, rollback), so
    that reading the champion, comparing with it and moving the alias happen as one step.

    The lock is a registered model named `<name>.promotion-lock`: creating a registered model
    whose name exists fails in the registry's database (a unique name), on SQLite and on an
    MLflow server alike, so exactly one creator wins. It is deleted on release; one left by a
    killed process is taken over after `stale_seconds`.
    """
    from mlflow.exceptions import MlflowException

    lock_name = f"{name}.promotion-lock"
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            mlflow_client.create_registered_model(
                lock_name,
                tags={"holder": holder, "acquired_at": str(time.time())},
                description=f"held while the champion of {name} moves; deleted on release",
            )
            break
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        _take_over_if_stale(mlflow_client, lock_name, stale_seconds)
        if time.monotonic() > deadline:
            raise PromotionLockTimeout(
                f"another promotion of {name} holds {lock_name!r}; waited {wait_seconds:.0f}s"
            )
        time.sleep(0.5)
    try:
        yield
    finally:
        with contextlib.suppress(MlflowException):
            mlflow_client.delete_registered_model(lock_name)


def _take_over_if_stale(mlflow_client: MlflowClient, lock_name: str, stale_seconds: float) -> None:
    from mlflow.exceptions import MlflowException

    try:
        tags = mlflow_client.get_registered_model(lock_name).tags or {}
    except MlflowException:
        return  # released meanwhile
    age = time.time() - float(tags.get("acquired_at", time.time()))
    if age > stale_seconds:
        log.warning("taking over %s held by %s for %.0fs", lock_name, tags.get("holder"), age)
        with contextlib.suppress(MlflowException):
            mlflow_client.delete_registered_model(lock_name)


def make_champion(
    mlflow_client: MlflowClient, name: str, version: str, previous: str | None, actor: str, at: str
) -> None:
    """Move `champion` to `version`, recording who, when and the champion it replaced."""
    mlflow_client.set_registered_model_alias(name, CHAMPION, version)
    # `challenger` names a candidate still waiting; the new champion no longer is one.
    if str(mlflow_client.get_registered_model(name).aliases.get(CHALLENGER)) == version:
        mlflow_client.delete_registered_model_alias(name, CHALLENGER)
    mlflow_client.set_model_version_tag(name, version, "promoted_at", at)
    mlflow_client.set_model_version_tag(name, version, "promoted_by", actor)
    if previous is not None and previous != version:
        mlflow_client.set_model_version_tag(name, version, PREVIOUS_CHAMPION_TAG, previous)


def record_decision(decision: Mapping[str, Any], path: Path = PROMOTION_LOG) -> None:
    """Append a gate, approval or rollback decision to the local promotion log (JSON lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps(decision, sort_keys=True) + "\n")


def triggered_by() -> tuple[str, str]:
    """(actor, trigger): who or what started this run, from CI variables or the local user."""
    if os.environ.get("GITHUB_ACTIONS") == "true":
        event = os.environ.get("GITHUB_EVENT_NAME", "unknown")
        return f"github:{os.environ.get('GITHUB_ACTOR', 'unknown')}", event
    if os.environ.get("GITLAB_CI") == "true":
        source = os.environ.get("CI_PIPELINE_SOURCE", "unknown")
        return f"gitlab:{os.environ.get('GITLAB_USER_LOGIN', 'unknown')}", source
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}", setting("PIPELINE_TRIGGER")


def now() -> str:
    """A decision's timestamp: UTC, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


# --- Batch exports: the batch job logs one run per export, the audit lists them ---------------

BATCH_EXPORT_KIND = "batch_export"


def batch_experiment(name: str | None) -> str:
    return f"{name or 'local-model'}-batch"


def exports_of(mlflow_client: MlflowClient, name: str, version: str) -> list[dict[str, Any]]:
    """The exports a registered version produced, newest first (from their MLflow runs)."""
    experiment = mlflow_client.get_experiment_by_name(batch_experiment(name))
    if experiment is None:
        return []
    runs = mlflow_client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.kind = '{BATCH_EXPORT_KIND}' and tags.model_version = '{version}'",
        order_by=["attributes.start_time DESC"],
    )
    return [
        {
            "date": run.data.tags["export.date"],
            "path": run.data.tags["export.path"],
            "rows": int(run.data.metrics.get("rows", 0)),
            "checksum": run.data.tags["export.checksum"],
            "run_id": run.info.run_id,
        }
        for run in runs
    ]
