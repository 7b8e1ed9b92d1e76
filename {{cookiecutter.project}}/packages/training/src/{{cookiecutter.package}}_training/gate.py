"""`promote`: the promotion gate. The candidate becomes `champion` only if it beats popularity
by the required lift AND is no worse than the current champion re-scored on the same split.

Every decision (pass or fail, with the numbers compared, and on a failure what to try) goes to
the version's `gate.*` tags, `reports/promotion.json` and the promotion log; `gate_report` turns
it into the lines `promote` prints.
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
from .gate_report import POPULARITY, advice, explain

# The decision's keys that also go on the version as `gate.<key>` tags (None values are skipped).
TAGGED = (
    "decision",
    "reason",
    "metric",
    "candidate",
    "popularity",
    "lift_over_popularity",
    "min_lift_over_popularity",
    "max_drop_vs_champion",
    "champion_value",
    "champion_training_value",
    "split_cutoff",
    "best_candidate",
    "advice",
    "decided_at",
)


class GateFailed(CheckFailed):
    """The candidate did not pass the promotion gate; the champion is unchanged."""


def promote_if_better(params: dict[str, Any], paths: Paths) -> dict[str, Any]:
    """Apply the gate to the version `register` wrote; raise GateFailed (after recording the
    decision) when it does not pass."""
    gate = params["gate"]
    registered = read_json(paths.reports / "registered.json")
    metrics = read_json(paths.reports / "evaluation.json")
    name, version = registered["model_name"], registered["version"]
    mlflow_client = client()
    actor, _ = triggered_by()
    # Read the champion, compare and move the alias as one step: two pipelines promoting into
    # one registry at once would otherwise both compare with the same old champion.
    with promotion_lock(mlflow_client, name, holder=f"{actor} gate v{version}"):
        decision = _decide(params, paths, mlflow_client, registered, metrics)
        _hold_for_tests()
        _record(mlflow_client, decision, bool(gate.get("require_approval")), actor)
    write_json(paths.reports / "promotion.json", decision)
    record_decision(decision, paths.promotion_log)
    if decision["decision"] == "fail":
        lines = "\n".join(explain(decision))
        raise GateFailed(f"GATE FAILED: {decision['reason']}; the champion is unchanged\n{lines}")
    return decision


def _decide(
    params: dict[str, Any],
    paths: Paths,
    mlflow_client: Any,
    registered: dict[str, Any],
    metrics: dict[str, Any],
) -> dict[str, Any]:
    """The gate's verdict on the registered version against popularity and the champion of this
    moment (re-scored on this run's split)."""
    name, version, metric = (
        registered["model_name"],
        registered["version"],
        params["gate"]["metric"],
    )
    champion = champion_version(mlflow_client, name)
    figures = None
    if champion is not None and champion != version:
        tags = mlflow_client.get_model_version(name, champion).tags
        figures = {
            "value": _rescore_champion(name, champion, paths, params)[metric],
            "training_value": _float_or_none(tags.get(f"metric.{metric}")),
            "split_cutoff": tags.get("split_cutoff"),
        }
    return judge(params, registered, metrics, champion, figures)


def judge(
    params: dict[str, Any],
    registered: dict[str, Any],
    metrics: dict[str, Any],
    champion: str | None,
    figures: dict[str, Any] | None,
) -> dict[str, Any]:
    """The decision from the numbers alone: the candidate's and popularity's metric on this
    split (`metrics`, the evaluate stage's full report, reports/evaluation.json) and the
    champion's `figures` (its value re-scored on this split, the value it was registered with
    and that split's cutoff; None when there is no other champion). Every number compared goes
    into the decision."""
    gate, metric = params["gate"], params["gate"]["metric"]
    name, version, model = registered["model_name"], registered["version"], registered["model"]
    scores = {
        candidate: float(report["warm"][metric]) for candidate, report in metrics["models"].items()
    }
    candidate, popularity = scores[model], scores[POPULARITY]
    min_lift = float(gate["min_lift_over_popularity"])
    max_drop = float(gate["max_drop_vs_champion"])
    split = metrics.get("split") or {}
    figures = figures or {}
    champion_value = figures.get("value")
    lift = candidate / popularity if popularity > 0 else float("inf")
    checks = [_check("lift_over_popularity", candidate, popularity * min_lift)]
    if champion_value is not None:
        checks.append(_check("vs_champion", candidate, champion_value - max_drop))
    reasons = []
    if not checks[0]["passed"]:
        reasons.append(
            f"{metric} {candidate:.4f} is {lift:.2f}x popularity's {popularity:.4f}, "
            f"below the required {gate['min_lift_over_popularity']}x "
            f"(needs {checks[0]['required']:.4f}, short by {-checks[0]['margin']:.4f})"
        )
    if champion_value is not None and not checks[1]["passed"]:
        reasons.append(
            f"{metric} {candidate:.4f} is below champion v{champion}'s "
            f"{champion_value:.4f} by more than {gate['max_drop_vs_champion']} "
            f"(needs {checks[1]['required']:.4f}, short by {-checks[1]['margin']:.4f})"
        )
    others = {key: value for key, value in scores.items() if key != POPULARITY} or scores
    decision: dict[str, Any] = {
        "model_name": name,
        "version": version,
        "model": model,
        "decision": "fail" if reasons else "pass",
        "reason": "; ".join(reasons) or "passed all gates",
        "metric": metric,
        "candidate": round(candidate, 6),
        "popularity": round(popularity, 6),
        "lift_over_popularity": round(lift, 4),
        "min_lift_over_popularity": min_lift,
        "max_drop_vs_champion": max_drop,
        "checks": checks,
        "split_cutoff": split.get("cutoff"),
        "split_warm_users": split.get("test_users_warm"),
        "previous_champion": champion,
        "champion_value": None if champion_value is None else round(champion_value, 6),
        "champion_training_value": figures.get("training_value"),
        "champion_split_cutoff": figures.get("split_cutoff"),
        "candidates": {key: round(value, 6) for key, value in scores.items()},
        "best_candidate": max(others, key=lambda key: others[key]),
        "advice": None,
        "decided_at": now(),
    }
    if reasons:
        decision["advice"] = advice(decision, params)
    return decision


def _check(check: str, value: float, required: float) -> dict[str, Any]:
    return {
        "check": check,
        "passed": value >= required,
        "value": round(value, 6),
        "required": round(required, 6),
        "margin": round(value - required, 6),
    }


def _float_or_none(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def _record(mlflow_client: Any, decision: dict[str, Any], needs_approval: bool, actor: str) -> None:
    """The decision on the version's tags; the champion moved when it passed (and needs no
    approval)."""
    name, version = decision["model_name"], decision["version"]
    passed = decision["decision"] == "pass"
    already = decision["previous_champion"] == version  # the gate ran again on the champion
    decision["decided_by"] = actor
    for key in TAGGED:
        value = decision[key]
        if value is not None:  # e.g. no champion yet: no champion_value tag
            text = " | ".join(value) if isinstance(value, list) else str(value)
            mlflow_client.set_model_version_tag(name, version, f"gate.{key}", text)
    mlflow_client.set_model_version_tag(name, version, "gate.decided_by", actor)
    decision["action"] = "gate"
    decision["champion_moved"] = passed and not needs_approval and not already
    if decision["champion_moved"]:
        previous = decision["previous_champion"]
        make_champion(mlflow_client, name, version, previous, actor, decision["decided_at"])
    elif passed and needs_approval and not already:
        mlflow_client.set_model_version_tag(name, version, "approval.status", "pending")


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
