"""MLflow registry: log and register a model version with its lineage, and the promotion gate.

Aliases, not stages: a new version is `challenger`; it becomes `champion` only through
`promote_if_better`. Every decision is written to the version's tags and the promotion log.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models.model import ModelInfo
from mlflow.tracking import MlflowClient

from {{ cookiecutter.package }}_core.artifact import ServingArtifact
from {{ cookiecutter.package }}_core.model_source import ARTIFACT_KEY, load_model

from . import lineage
from .config import Paths, params_hash, read_json, tracking_uri, write_json
from .evaluation import evaluate_artifact
from .pyfunc import INPUT_EXAMPLE, SIGNATURE, RecommenderModel

log = logging.getLogger(__name__)
CHAMPION, CHALLENGER = "champion", "challenger"


class GateFailed(Exception):
    """The candidate did not pass the promotion gate; the champion is unchanged."""


def client() -> MlflowClient:
    mlflow.set_tracking_uri(tracking_uri())
    return MlflowClient()


def register(params: dict[str, Any], paths: Paths) -> dict[str, Any]:
    """Log a training run (params, metrics, plots, artifact) and register it as `challenger`."""
    name = params["registry"]["model_name"]
    model_name = params["model"]["name"]
    metrics = read_json(paths.reports / "metrics.json")
    if model_name not in metrics["models"]:
        raise SystemExit(f"ERROR: model.name {model_name!r} is not among the evaluated candidates")
    mlflow_client = client()
    mlflow.set_experiment(name)
    commit, dirty = lineage.git_commit(paths.root)
    actor, trigger = lineage.triggered_by()
    data_hash = lineage.data_hash(paths.validated / "events.parquet", paths.root)
    model_params = {key: params[key] for key in ("matrix", "model", "artifact", "split")}
    primary = metrics["models"][model_name]["warm"]
    tags = {
        "git_commit": commit,
        "git_dirty": str(dirty).lower(),
        "dvc_data_hash": data_hash,
        "data_source": params["data"]["source"],
        "params_hash": params_hash(model_params),
        "model": model_name,
        "triggered_by": actor,
        "trigger": trigger,
    }
    with mlflow.start_run(run_name=f"{model_name}-{data_hash[:8]}") as run:
        mlflow.set_tags(tags)
        mlflow.log_params(_flatten(model_params))
        for candidate, report in metrics["models"].items():
            for group, values in report.items():
                mlflow.log_metrics(
                    {f"{candidate}.{group}.{key}": value for key, value in values.items()}
                )
        mlflow.log_metrics(primary)
        for report in ("validation.json", "split.json", "train.json", "metrics.json"):
            mlflow.log_artifact(str(paths.reports / report), artifact_path="reports")
        mlflow.log_artifacts(str(paths.reports / "plots"), artifact_path="plots")
        mlflow.log_figure(_curves_figure(paths.reports / "plots"), "plots/ranking_curves.png")
        info = log_serving_model(paths.models / model_name, name)
    version = str(info.registered_model_version)
    version_tags = {
        **tags,
        "training_run_id": run.info.run_id,
        "registered_at": _now(),
        **{f"metric.{key}": f"{value:.6f}" for key, value in primary.items()},
    }
    for key, value in version_tags.items():
        mlflow_client.set_model_version_tag(name, version, key, value)
    mlflow_client.set_registered_model_alias(name, CHALLENGER, version)
    record = {
        "model_name": name,
        "version": version,
        "run_id": run.info.run_id,
        "model_uri": f"models:/{name}/{version}",
        "model": model_name,
        "dvc_data_hash": data_hash,
        "git_commit": commit,
    }
    write_json(paths.reports / "registered.json", record)
    log.info("registered %s version %s as %s", name, version, CHALLENGER)
    return record


def log_serving_model(artifact_path: Path, name: str) -> ModelInfo:
    """Log a serving artifact as a pyfunc model in the active run and register it as `name`."""
    return mlflow.pyfunc.log_model(
        name="recommender",
        python_model=RecommenderModel(),
        artifacts={ARTIFACT_KEY: str(artifact_path)},
        signature=SIGNATURE,
        input_example=INPUT_EXAMPLE,
        registered_model_name=name,
        code_paths=_package_dirs(),
        pip_requirements=_pip_requirements(),
    )


def promote_if_better(params: dict[str, Any], paths: Paths) -> dict[str, Any]:
    """The gate: lift over popularity AND no regression vs the champion on the same split.

    Raises GateFailed (after recording the decision) when the candidate does not pass.
    """
    gate = params["gate"]
    registered = read_json(paths.reports / "registered.json")
    metrics = read_json(paths.reports / "metrics.json")
    name, version = registered["model_name"], registered["version"]
    metric = gate["metric"]
    candidate = metrics["models"][registered["model"]]["warm"][metric]
    popularity = metrics["models"]["popularity"]["warm"][metric]
    mlflow_client = client()
    champion = champion_version(mlflow_client, name)
    champion_value = None
    if champion is not None and champion != version:
        champion_value = _evaluate_champion(name, champion, paths, params)[metric]
    lift = candidate / popularity if popularity > 0 else float("inf")
    reasons = []
    if lift < float(gate["min_lift_over_popularity"]):
        reasons.append(
            f"{metric} {candidate:.4f} is {lift:.2f}x popularity's {popularity:.4f}, "
            f"below the required {gate['min_lift_over_popularity']}x"
        )
    if champion_value is not None and candidate < champion_value - float(
        gate["max_drop_vs_champion"]
    ):
        reasons.append(
            f"{metric} {candidate:.4f} is below champion v{champion}'s "
            f"{champion_value:.4f} by more than {gate['max_drop_vs_champion']}"
        )
    actor, _ = lineage.triggered_by()
    decision = {
        "model_name": name,
        "version": version,
        "decision": "fail" if reasons else "pass",
        "reason": "; ".join(reasons) or "passed all gates",
        "metric": metric,
        "candidate": round(candidate, 6),
        "popularity": round(popularity, 6),
        "lift_over_popularity": round(lift, 4),
        "previous_champion": champion,
        "champion_value": None if champion_value is None else round(champion_value, 6),
        "decided_at": _now(),
        "decided_by": actor,
    }
    for key in ("decision", "reason", "lift_over_popularity", "champion_value", "decided_at"):
        if decision[key] is not None:  # no champion yet: no champion_value tag
            mlflow_client.set_model_version_tag(name, version, f"gate.{key}", str(decision[key]))
    mlflow_client.set_model_version_tag(name, version, "gate.decided_by", actor)
    waits = not reasons and bool(gate.get("require_approval"))
    decision["action"] = "gate"
    decision["champion_moved"] = not reasons and not waits
    if waits:
        mlflow_client.set_model_version_tag(name, version, "approval.status", "pending")
    elif not reasons:
        _make_champion(mlflow_client, name, version, champion, actor, decision["decided_at"])
    write_json(paths.reports / "promotion.json", decision)
    _append_promotion_log(paths.promotion_log, decision)
    if reasons:
        raise GateFailed(decision["reason"])
    return decision


def _make_champion(
    mlflow_client: MlflowClient, name: str, version: str, champion: str | None, actor: str, at: str
) -> None:
    mlflow_client.set_registered_model_alias(name, CHAMPION, version)
    # `challenger` names a candidate still waiting; the new champion no longer is one.
    if str(mlflow_client.get_registered_model(name).aliases.get(CHALLENGER)) == version:
        mlflow_client.delete_registered_model_alias(name, CHALLENGER)
    mlflow_client.set_model_version_tag(name, version, "promoted_at", at)
    mlflow_client.set_model_version_tag(name, version, "promoted_by", actor)
    if champion is not None and champion != version:
        mlflow_client.set_model_version_tag(name, version, "previous_champion", champion)


class RegistryActionRefused(Exception):
    """An approval or rollback that cannot apply; nothing was changed."""


def approve(params: dict[str, Any], paths: Paths, version: str, reason: str) -> dict[str, Any]:
    """A person lets a candidate that passed the gate (and waits as challenger) become champion."""
    name = params["registry"]["model_name"]
    mlflow_client = client()
    try:
        tags = mlflow_client.get_model_version(name, version).tags
    except MlflowException as error:
        raise RegistryActionRefused(f"{name} version {version} not found") from error
    if tags.get("gate.decision") != "pass":
        raise RegistryActionRefused(
            f"version {version} did not pass the gate ({tags.get('gate.decision', 'not gated')})"
        )
    if tags.get("approval.status") != "pending":
        raise RegistryActionRefused(
            f"version {version} is not waiting for approval "
            f"(approval.status={tags.get('approval.status', 'none')})"
        )
    if not reason.strip():
        raise RegistryActionRefused("an approval needs a reason (REASON=...)")
    actor, _ = lineage.triggered_by()
    record = {
        "action": "approve",
        "model_name": name,
        "version": version,
        "previous_champion": champion_version(mlflow_client, name),
        "reason": reason.strip(),
        "decided_at": _now(),
        "decided_by": actor,
    }
    for key, value in (("status", "approved"), ("by", actor), ("at", record["decided_at"])):
        mlflow_client.set_model_version_tag(name, version, f"approval.{key}", value)
    mlflow_client.set_model_version_tag(name, version, "approval.reason", record["reason"])
    _make_champion(
        mlflow_client, name, version, record["previous_champion"], actor, record["decided_at"]
    )
    _append_promotion_log(paths.promotion_log, record)
    return record


def rollback(
    params: dict[str, Any], paths: Paths, reason: str, to_version: str | None = None
) -> dict[str, Any]:
    """Move `champion` back to the previous champion (or `to_version`) and record why.

    The API follows the alias on its next refresh. The version rolled back from keeps its
    tags and gains rollback.*; the restored one gains restored_*.
    """
    name = params["registry"]["model_name"]
    mlflow_client = client()
    current = champion_version(mlflow_client, name)
    if current is None:
        raise RegistryActionRefused(f"{name} has no champion to roll back")
    tags = mlflow_client.get_model_version(name, current).tags
    target = to_version or tags.get("previous_champion")
    if target is None:
        raise RegistryActionRefused(f"champion v{current} has no previous champion to return to")
    if target == current:
        raise RegistryActionRefused(f"v{target} is already the champion")
    try:
        mlflow_client.get_model_version(name, target)
    except MlflowException as error:
        raise RegistryActionRefused(f"{name} version {target} not found") from error
    actor, _ = lineage.triggered_by()
    record = {
        "action": "rollback",
        "model_name": name,
        "version": target,
        "from_version": current,
        "reason": reason,
        "decided_at": _now(),
        "decided_by": actor,
    }
    mlflow_client.set_registered_model_alias(name, CHAMPION, target)
    for key, value in (("to", target), ("at", record["decided_at"]), ("by", actor)):
        mlflow_client.set_model_version_tag(name, current, f"rollback.{key}", value)
    mlflow_client.set_model_version_tag(name, current, "rollback.reason", reason)
    for key, value in (("from", current), ("at", record["decided_at"]), ("by", actor)):
        mlflow_client.set_model_version_tag(name, target, f"restored.{key}", value)
    _append_promotion_log(paths.promotion_log, record)
    return record


def champion_version(mlflow_client: MlflowClient, name: str) -> str | None:
    """The version number (as a string) that holds the champion alias, or None."""
    try:
        return str(mlflow_client.get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def download_artifact(name: str, alias_or_version: str) -> ServingArtifact:
    """A registered version (alias or number), verified and smoke-tested as the API loads it."""
    separator = "/" if str(alias_or_version).isdigit() else "@"
    uri = f"models:/{name}{separator}{alias_or_version}"
    return load_model(uri, tracking_uri()).artifact


def _evaluate_champion(
    name: str, version: str, paths: Paths, params: dict[str, Any]
) -> dict[str, float]:
    """Re-score the champion on today's split, against today's catalogue."""
    artifact = download_artifact(name, version)
    pairs = pd.read_parquet(paths.split / "test.parquet")
    catalogue = ServingArtifact.load(paths.models / params["model"]["name"]).item_ids
    ks = sorted(int(k) for k in params["evaluate"]["ks"])
    return evaluate_artifact(artifact, pairs, catalogue, ks)["warm"]


def _append_promotion_log(path: Path, decision: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps(decision, sort_keys=True) + "\n")


def _curves_figure(folder: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, metric in zip(axes, ("ndcg", "recall"), strict=True):
        curves = pd.read_csv(folder / f"{metric}_at_k.csv").set_index("k")
        curves.plot(ax=axis, marker="o", title=f"{metric.upper()}@k (warm users)")
        axis.set_xlabel("k")
    figure.tight_layout()
    plt.close(figure)
    return figure


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _package_dirs() -> list[str]:
    """The core and training packages travel with the model, so pyfunc loads anywhere."""
    from {{ cookiecutter.package }}_core import __file__ as core_init

    return [str(Path(core_init).parent), str(Path(__file__).parent)]


def _pip_requirements() -> list[str]:
    # Listed explicitly: MLflow's inference would load the model in a subprocess to find them.
    import yaml

    return [
        f"mlflow=={mlflow.__version__}",
        f"numpy=={np.__version__}",
        f"pandas=={pd.__version__}",
        f"pyyaml=={yaml.__version__}",
    ]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
