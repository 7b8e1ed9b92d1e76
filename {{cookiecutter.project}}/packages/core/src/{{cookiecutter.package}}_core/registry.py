"""The model registry as every deployable reads it: who is champion, who came before it.

One answer for the drift job's online-quality verdict, `rollback --check` and `audit`. The MLflow
client is imported on first use (core's `registry` extra installs it), so core stays importable
without it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .shared import CHAMPION, PREVIOUS_CHAMPION_TAG, tracking_uri

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient


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
