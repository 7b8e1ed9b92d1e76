"""Registry actions by a person or a schedule: approve a waiting challenger, roll the champion
back (by hand, or `--check`: only when online quality dropped or the API cannot load it).

The API follows the `champion` alias on its next refresh. Every action is recorded on the
versions' tags (who, when, why) and in the promotion log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from {{ cookiecutter.package }}_core import registry
from {{ cookiecutter.package }}_core.api_client import ApiClient
from {{ cookiecutter.package }}_core.cli import BadInput
from {{ cookiecutter.package }}_core.feedback import online_quality, quality_drop, read_feedback
from {{ cookiecutter.package }}_core.shared import CHAMPION, PROMOTION_LOG


class ActionRefused(BadInput):
    """An approval or rollback that cannot apply; nothing was changed."""

    def __str__(self) -> str:
        return f"{super().__str__()}; nothing changed"


def approve(name: str, version: str, reason: str, log: Path = PROMOTION_LOG) -> dict[str, Any]:
    """A person lets a candidate that passed the gate (and waits as challenger) become champion."""
    mlflow_client = registry.client()
    tags = _version_tags(mlflow_client, name, version)
    if tags.get("gate.decision") != "pass":
        raise ActionRefused(
            f"version {version} did not pass the gate ({tags.get('gate.decision', 'not gated')})"
        )
    if tags.get("approval.status") != "pending":
        raise ActionRefused(
            f"version {version} is not waiting for approval "
            f"(approval.status={tags.get('approval.status', 'none')})"
        )
    if not reason.strip():
        raise ActionRefused("an approval needs a reason (REASON=...)")
    actor, _ = registry.triggered_by()
    with registry.promotion_lock(mlflow_client, name, holder=f"{actor} approve v{version}"):
        previous = registry.champion_version(mlflow_client, name)
        at = registry.now()
        record = {
            "action": "approve",
            "model_name": name,
            "version": version,
            "previous_champion": previous,
            "reason": reason.strip(),
            "decided_at": at,
            "decided_by": actor,
        }
        for key, value in (("status", "approved"), ("by", actor), ("at", at)):
            mlflow_client.set_model_version_tag(name, version, f"approval.{key}", value)
        mlflow_client.set_model_version_tag(name, version, "approval.reason", record["reason"])
        registry.make_champion(mlflow_client, name, version, previous, actor, at)
    registry.record_decision(record, log)
    return record


def rollback(
    name: str, reason: str, to_version: str | None = None, log: Path = PROMOTION_LOG
) -> dict[str, Any]:
    """Move `champion` back to the previous champion (or `to_version`) and record why.

    The version rolled back from keeps its tags and gains rollback.*; the restored one gains
    restored.*.
    """
    if not reason.strip():
        raise ActionRefused("a rollback by hand needs a reason (REASON=...)")
    mlflow_client = registry.client()
    actor, _ = registry.triggered_by()
    with registry.promotion_lock(mlflow_client, name, holder=f"{actor} rollback"):
        record = _roll_back(mlflow_client, name, reason.strip(), to_version, actor)
    registry.record_decision(record, log)
    return record


def rollback_reason(
    name: str, feedback: Path, monitoring: dict[str, Any], url: str | None = None
) -> tuple[str | None, str]:
    """(why the champion must go, or None; what was checked): online quality against the
    previous champion's, and whether the API at `url` fails to load the champion."""
    line = registry.champion_line(registry.client(), name)
    if line.champion is None:
        return None, "no champion: nothing to roll back"
    quality = online_quality(read_feedback(feedback))
    verdict = quality_drop(quality, line.champion, line.previous, monitoring)
    if verdict["drop"]:
        return f"online quality drop: {verdict['reason']}", verdict["reason"]
    if url:
        api = ApiClient(url)
        failures, served = api.reload_failures(), str(api.model().get("version"))
        if failures > 0 and served != line.champion:
            return (
                f"the API at {url} cannot load {CHAMPION} v{line.champion} ({failures:g} reload "
                f"failures) and still serves v{served}"
            ), verdict["reason"]
    return None, verdict["reason"]


def _roll_back(
    mlflow_client: Any, name: str, reason: str, to_version: str | None, actor: str
) -> dict[str, Any]:
    line = registry.champion_line(mlflow_client, name)
    current = line.champion
    if current is None:
        raise ActionRefused(f"{name} has no champion to roll back")
    target = to_version or line.previous
    if target is None:
        raise ActionRefused(f"champion v{current} has no previous champion to return to")
    if target == current:
        raise ActionRefused(f"v{target} is already the champion")
    _version_tags(mlflow_client, name, target)
    record = {
        "action": "rollback",
        "model_name": name,
        "version": target,
        "from_version": current,
        "reason": reason,
        "decided_at": registry.now(),
        "decided_by": actor,
    }
    mlflow_client.set_registered_model_alias(name, CHAMPION, target)
    for key, value in (("to", target), ("at", record["decided_at"]), ("by", actor)):
        mlflow_client.set_model_version_tag(name, current, f"rollback.{key}", value)
    mlflow_client.set_model_version_tag(name, current, "rollback.reason", reason)
    for key, value in (("from", current), ("at", record["decided_at"]), ("by", actor)):
        mlflow_client.set_model_version_tag(name, target, f"restored.{key}", value)
    return record


def _version_tags(mlflow_client: Any, name: str, version: str) -> dict[str, str]:
    try:
        return dict(mlflow_client.get_model_version(name, version).tags or {})
    except MlflowException as error:
        raise ActionRefused(f"{name} version {version} not found") from error
