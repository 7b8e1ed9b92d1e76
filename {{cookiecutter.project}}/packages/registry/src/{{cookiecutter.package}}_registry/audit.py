"""`audit`: the whole chain behind a model version, or behind what a running API serves.

API (version served, when it was loaded) -> model version (aliases, status) -> training run ->
git commit -> DVC data hash and source -> params -> metrics -> gate decision -> approval ->
promotion -> rollback / restore -> batch exports, then every dated step as one timeline with
who did it. Nothing is typed by hand: each value is read from the MLflow registry and tracking
store (the tags `register`, the gate, `approve` and `rollback` write) or from the API's answer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from {{ cookiecutter.package }}_core.api_client import ApiClient
from {{ cookiecutter.package }}_core.cli import BadInput
from {{ cookiecutter.package }}_core.registry import champion_version, client, exports_of
from {{ cookiecutter.package }}_core.shared import CHAMPION, tracking_uri

# Version tags that are lineage written at register time, by section.
CODE_TAGS = ("git_commit", "git_dirty", "template")
DATA_TAGS = ("dvc_data_hash", "data_source")
PROMOTION_TAGS = ("promoted_at", "promoted_by", "previous_champion")
# Order of the steps that share a timestamp (the tags have one-second resolution).
STEP_ORDER = (
    "training run",
    "registered",
    "gate",
    "approved",
    "promoted",
    "rolled back",
    "restored",
    "export",
)


class AuditError(BadInput):
    """The version, alias or API asked about cannot be found or reached."""


def build(
    name: str,
    version: str | None = None,
    url: str | None = None,
    every: bool = False,
) -> dict[str, Any] | list[dict[str, Any]]:
    """The audit of `version` (a number or an alias; default `champion`), of the version the
    API at `url` serves, or (`every`) of every version of the registered model, oldest first."""
    if sum((version is not None, url is not None, every)) > 1:
        raise AuditError("give one of --version, --url or --all")
    mlflow_client = client()
    if every:
        numbers = versions_of(mlflow_client, name)
        return [audit_version(mlflow_client, name, number) for number in numbers]
    if url is not None:
        return audit_served(mlflow_client, name, url)
    return audit_version(mlflow_client, name, version or CHAMPION)


def versions_of(mlflow_client: MlflowClient, name: str) -> list[str]:
    """Every version number of the registered model `name`, oldest first."""
    try:
        mlflow_client.get_registered_model(name)
        found = mlflow_client.search_model_versions(f"name = '{name}'")
    except MlflowException as error:
        raise AuditError(f"no registered model {name!r} in {tracking_uri()}") from error
    return sorted((str(entry.version) for entry in found), key=int)


def audit_served(mlflow_client: MlflowClient, name: str, url: str) -> dict[str, Any]:
    """The chain behind what the API at `url` serves, with what the API says about it."""
    served = ApiClient(url).model()
    version = str(served.get("version") or "")
    if not version.isdigit():
        raise AuditError(
            f"the API at {url} serves {version or 'no model'} ({served.get('source')}), "
            "not a registered model version"
        )
    record = audit_version(mlflow_client, served.get("name") or name, version)
    artifact = served.get("artifact") or {}
    record["api"] = {  # first in the record, as audit_version leaves it
        "url": url,
        "version_served": version,
        "model_uri_alias": served.get("alias"),
        "source": served.get("source"),
        "loaded_at": served.get("loaded_at"),
        "artifact_created_at": artifact.get("created_at"),
        "artifact_checksum": artifact.get("checksum"),
        "run_id": served.get("run_id"),
        "run_id_matches_registry": served.get("run_id") == record["training_run"]["run_id"],
        "registry_champion": champion_version(mlflow_client, record["model_version"]["name"]),
    }
    return record


def audit_version(mlflow_client: MlflowClient, name: str, version: str) -> dict[str, Any]:
    """Every link of the chain for one version (a number, or an alias such as `champion`)."""
    model_version = _model_version(mlflow_client, name, str(version))
    number = str(model_version.version)
    tags = dict(model_version.tags or {})
    run_id = tags.get("training_run_id") or model_version.run_id
    run = _training_run(mlflow_client, run_id)
    record: dict[str, Any] = {
        "api": None,
        "model_version": {
            "name": model_version.name,
            "version": number,
            "aliases": sorted(model_version.aliases or []),
            "created_at": _from_millis(model_version.creation_timestamp),
            "status": model_version.status,
            "model": tags.get("model"),
        },
        "training_run": {
            "run_id": run_id,
            "run_name": run["run_name"],
            "status": run["status"],
            "start_time": run["start_time"],
            "end_time": run["end_time"],
            "triggered_by": tags.get("triggered_by"),
            "trigger": tags.get("trigger"),
            "registered_at": tags.get("registered_at"),
        },
        "code": {key: tags.get(key) for key in CODE_TAGS},
        "data": {key: tags.get(key) for key in DATA_TAGS},
        "params": {"params_hash": tags.get("params_hash"), "logged": run["params"]},
        "metrics": {
            "tags": _prefixed(tags, "metric."),
            # The primary (warm-user) metrics of the registered model as the run logged them;
            # the per-candidate ones are named <candidate>.<group>.<metric>.
            "run": {key: value for key, value in run["metrics"].items() if "." not in key},
        },
        "gate": _prefixed(tags, "gate."),
        "approval": _prefixed(tags, "approval."),
        "promotion": {key: tags[key] for key in PROMOTION_TAGS if key in tags},
        "rollback": _prefixed(tags, "rollback."),
        "restored": _prefixed(tags, "restored."),
        "exports": [
            {**export, **_export_run(mlflow_client, export["run_id"])}
            for export in exports_of(mlflow_client, model_version.name, number)
        ],
    }
    record["timeline"] = timeline(record)
    return record


def timeline(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Every dated step of the record, oldest first, each with who did it."""
    run, gate = record["training_run"], record["gate"]
    approval, promotion = record["approval"], record["promotion"]
    rollback, restored = record["rollback"], record["restored"]
    steps = [
        ("training run", run["start_time"], run["triggered_by"], f"run {run['run_id']}"),
        (
            "registered",
            run["registered_at"],
            run["triggered_by"],
            f"v{record['model_version']['version']} ({record['model_version']['model']}), "
            f"trigger {run['trigger']}",
        ),
        (
            "gate",
            gate.get("decided_at"),
            gate.get("decided_by"),
            f"{gate.get('decision')}: {gate.get('reason')}",
        ),
        ("approved", approval.get("at"), approval.get("by"), approval.get("reason")),
        (
            "promoted",
            promotion.get("promoted_at"),
            promotion.get("promoted_by"),
            "champion"
            + (
                f", replacing v{promotion['previous_champion']}"
                if promotion.get("previous_champion")
                else ""
            ),
        ),
        (
            "rolled back",
            rollback.get("at"),
            rollback.get("by"),
            f"champion back to v{rollback.get('to')}: {rollback.get('reason')}",
        ),
        (
            "restored",
            restored.get("at"),
            restored.get("by"),
            f"champion again, rolled back from v{restored.get('from')}",
        ),
    ]
    steps += [
        (
            "export",
            export["started_at"],
            export["by"],
            f"{export['date']}: {export['rows']:,} rows in {export['path']}",
        )
        for export in record["exports"]
    ]
    dated = [
        {"at": _normalised(at), "step": step, "by": by, "detail": detail}
        for step, at, by, detail in steps
        if at
    ]
    return sorted(dated, key=lambda step: (_sort_time(step["at"]), STEP_ORDER.index(step["step"])))


def _model_version(mlflow_client: MlflowClient, name: str, version: str):
    try:
        if version.isdigit():
            return mlflow_client.get_model_version(name, version)
        return mlflow_client.get_model_version_by_alias(name, version)
    except MlflowException as error:
        kind = "version" if version.isdigit() else "alias"
        raise AuditError(
            f"{name} has no {kind} {version!r} in the registry at {tracking_uri()}"
        ) from error


def _training_run(mlflow_client: MlflowClient, run_id: str | None) -> dict[str, Any]:
    empty = {"run_name": None, "status": "not found", "start_time": None, "end_time": None}
    if not run_id:
        return {**empty, "params": {}, "metrics": {}}
    try:
        run = mlflow_client.get_run(run_id)
    except MlflowException:
        return {**empty, "params": {}, "metrics": {}}
    return {
        "run_name": run.info.run_name,
        "status": run.info.status,
        "start_time": _from_millis(run.info.start_time),
        "end_time": _from_millis(run.info.end_time),
        "params": dict(sorted(run.data.params.items())),
        "metrics": dict(sorted(run.data.metrics.items())),
    }


def _export_run(mlflow_client: MlflowClient, run_id: str) -> dict[str, Any]:
    """When an export ran and who ran it (MLflow records the user on every run)."""
    try:
        run = mlflow_client.get_run(run_id)
    except MlflowException:
        return {"started_at": None, "by": None}
    return {
        "started_at": _from_millis(run.info.start_time),
        "by": run.data.tags.get("mlflow.user"),
    }


def _prefixed(tags: dict[str, str], prefix: str) -> dict[str, str]:
    return {
        key.removeprefix(prefix): value
        for key, value in sorted(tags.items())
        if key.startswith(prefix)
    }


def _from_millis(millis: int | None) -> str | None:
    if not millis:
        return None
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="seconds")


def _normalised(at: str) -> str:
    """One format for every timestamp (UTC, seconds); a value that does not parse is kept."""
    moment = _parsed(at)
    return at if moment is None else moment.isoformat(timespec="seconds")


def _sort_time(at: str) -> datetime:
    return _parsed(at) or datetime.max.replace(tzinfo=UTC)


def _parsed(at: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(at)
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
