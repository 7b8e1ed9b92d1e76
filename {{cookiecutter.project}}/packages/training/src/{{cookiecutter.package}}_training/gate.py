"""`promote`: the promotion gate. The candidate becomes `champion` only if it beats popularity
by the required lift AND is no worse than the current champion re-scored on the same split.

Every decision (pass or fail, with the numbers compared) goes to the version's `gate.*` tags,
`reports/promotion.json` and the promotion log.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pandas as pd

from {{ cookiecutter.package }}_core.artifact import ServingArtifact
from {{ cookiecutter.package }}_core.cli import CheckFailed
from {{ cookiecutter.package }}_core.model_source import load_model
from {{ cookiecutter.package }}_core.registry import (
    champion_version,
    client,
    make_champion,
    now,
    promotion_lock,
    record_decision,
    triggered_by,
)
from {{ cookiecutter.package }}_core.shared import registered_model_uri, tracking_uri

from .config import Paths, read_json, write_json
from .evaluation import evaluate_artifact


class GateFailed(CheckFailed):
    """The candidate did not pass the promotion gate; the champion is unchanged."""


def promote_if_better(params: dict[str, Any], paths: Paths) -> dict[str, Any]:
    """Apply the gate to the version `register` wrote; raise GateFailed (after recording the
    decision) when it does not pass."""
    gate = params["gate"]
    registered = read_json(paths.reports / "registered.json")
    metrics = read_json(paths.reports / "metrics.json")
    name, version = registered["model_name"], registered["version"]
    metric = gate["metric"]
    candidate = metrics["models"][registered["model"]]["warm"][metric]
    popularity = metrics["models"]["popularity"]["warm"][metric]
    mlflow_client = client()
    actor, _ = triggered_by()
    # Read the champion, compare and move the alias as one step: two pipelines promoting into
    # one registry at once would otherwise both compare with the same old champion.
    with promotion_lock(mlflow_client, name, holder=f"{actor} gate v{version}"):
        decision = _decide(params, paths, mlflow_client, name, version, candidate, popularity)
        _hold_for_tests()
        _record(mlflow_client, decision, bool(gate.get("require_approval")), actor)
    write_json(paths.reports / "promotion.json", decision)
    record_decision(decision, paths.promotion_log)
    if decision["decision"] == "fail":
        raise GateFailed(f"GATE FAILED: {decision['reason']}; the champion is unchanged")
    return decision


def _decide(
    params: dict[str, Any],
    paths: Paths,
    mlflow_client: Any,
    name: str,
    version: str,
    candidate: float,
    popularity: float,
) -> dict[str, Any]:
    """The gate's verdict on `version` against popularity and the champion of this moment."""
    gate, metric = params["gate"], params["gate"]["metric"]
    champion = champion_version(mlflow_client, name)
    champion_value = None
    if champion is not None and champion != version:
        champion_value = _rescore_champion(name, champion, paths, params)[metric]
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
    return {
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
        "decided_at": now(),
    }


def _record(mlflow_client: Any, decision: dict[str, Any], needs_approval: bool, actor: str) -> None:
    """The decision on the version's tags; the champion moved when it passed (and needs no
    approval)."""
    name, version = decision["model_name"], decision["version"]
    passed = decision["decision"] == "pass"
    decision["decided_by"] = actor
    for key in ("decision", "reason", "lift_over_popularity", "champion_value", "decided_at"):
        if decision[key] is not None:  # no champion yet: no champion_value tag
            mlflow_client.set_model_version_tag(name, version, f"gate.{key}", str(decision[key]))
    mlflow_client.set_model_version_tag(name, version, "gate.decided_by", actor)
    decision["action"] = "gate"
    decision["champion_moved"] = passed and not needs_approval
    if passed and needs_approval:
        mlflow_client.set_model_version_tag(name, version, "approval.status", "pending")
    elif passed:
        previous = decision["previous_champion"]
        make_champion(mlflow_client, name, version, previous, actor, decision["decided_at"])


def _hold_for_tests() -> None:
    """`GATE_HOLD_SECONDS`: a pause between the gate's read and its write, so a test can make
    two promotions overlap (the lock must still serialise them)."""
    seconds = float(os.environ.get("GATE_HOLD_SECONDS") or 0)
    if seconds > 0:
        time.sleep(seconds)


def _rescore_champion(
    name: str, version: str, paths: Paths, params: dict[str, Any]
) -> dict[str, float]:
    """Re-score the champion on today's split, against today's catalogue."""
    artifact = load_model(registered_model_uri(name, version), tracking_uri()).artifact
    pairs = pd.read_parquet(paths.split / "test.parquet")
    catalogue = ServingArtifact.load(paths.models / params["model"]["name"]).item_ids
    ks = sorted(int(k) for k in params["evaluate"]["ks"])
    return evaluate_artifact(artifact, pairs, catalogue, ks)["warm"]
