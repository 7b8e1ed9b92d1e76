"""The promotion gate's decision in words: the numbers it compared and on which split, what
happened to the registry, and after a failure what to try. Light on imports: `retrain` reads it
without loading MLflow.
"""

from __future__ import annotations

from typing import Any

POPULARITY = "popularity"


def advice(decision: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """What to try after a failed gate, naming the settings in params.yaml that move it."""
    model, metric, best = decision["model"], decision["metric"], decision["best_candidate"]
    failed = {check["check"] for check in decision["checks"] if not check["passed"]}
    tips = []
    value = decision["candidates"][best]
    if best != model and value > decision["candidate"]:
        lift = value / decision["popularity"] if decision["popularity"] else float("inf")
        required = [check["required"] for check in decision["checks"]]
        passes = all(value >= bar for bar in required)
        verdict = "would pass this gate" if passes else "would fail this gate too"
        tips.append(
            f"another candidate: {best} scored {value:.4f} ({lift:.2f}x popularity) on this "
            f"split and {verdict}; set model.name: {best} in params.yaml"
        )
    settings = params["model"].get(model) or {}
    listed = ", ".join(f"{key}={value}" for key, value in settings.items()) or "its defaults"
    tips.append(
        f"the model's settings: `make tune` searches model.{model} (now {listed}) and its "
        "matrix weighting (matrix.weighting: sum, log1p or binary, matrix.half_life_days) on "
        "a validation window before this test period, then make pipeline; or set them (and "
        "matrix.event_weights) in params.yaml by hand"
    )
    if "lift_over_popularity" in failed:
        tips.append(
            "the threshold: gate.min_lift_over_popularity "
            f"({decision['min_lift_over_popularity']}) in params.yaml: {metric} must beat the "
            "popularity baseline by this factor, so a model no better than popularity is not "
            "served; lower it only if a smaller lift is worth serving"
        )
    if "vs_champion" in failed:
        tips.append(
            f"the threshold: gate.max_drop_vs_champion ({decision['max_drop_vs_champion']}) in "
            f"params.yaml: how far below champion v{decision['previous_champion']} (re-scored "
            "on the same split) a candidate may score; raising it lets a worse model replace "
            "the champion"
        )
    return tips


def explain(decision: dict[str, Any]) -> list[str]:
    """The gate's decision as the lines `promote` prints: each number compared, on which split,
    and for a failure the best candidate and what to try."""
    metric, version = decision["metric"], decision["version"]
    checks = {check["check"]: check for check in decision.get("checks", [])}
    cutoff = _day(decision.get("split_cutoff"))
    users = decision.get("split_warm_users")
    on = f"this run's test split (events from {cutoff} on" if cutoff else "this run's test split ("
    on += f", {users:,} warm users)" if users else ")"
    lines = [f"gate: {decision['model_name']} v{version} ({decision['model']}), {metric} on {on}"]
    lift = checks.get("lift_over_popularity")
    if lift is not None:
        lines.append(
            f"  vs popularity: {decision['candidate']:.4f} vs {decision['popularity']:.4f} = "
            f"{decision['lift_over_popularity']:.2f}x, required "
            f"{decision['min_lift_over_popularity']}x (>= {lift['required']:.4f}): {_verdict(lift)}"
        )
    champion = decision.get("previous_champion")
    if champion is None:
        lines.append("  vs champion: there is none yet, nothing to compare")
    elif champion == version:
        lines.append(f"  vs champion: v{version} is the champion already")
    else:
        versus = checks["vs_champion"]
        trained = decision.get("champion_training_value")
        own_cutoff = _day(decision.get("champion_split_cutoff"))
        if trained is None:
            then = "its figure at registration is not recorded"
        elif own_cutoff and own_cutoff != cutoff:
            then = f"{trained:.4f} on its own training split, events from {own_cutoff} on"
        elif own_cutoff:
            then = f"{trained:.4f} at registration, on the same split"
        else:
            then = f"{trained:.4f} at registration, on the split it was trained with"
        lines.append(
            f"  vs champion v{champion}: {decision['champion_value']:.4f} re-scored on this split "
            f"({then}); allowed drop {decision['max_drop_vs_champion']} "
            f"(>= {versus['required']:.4f}): {_verdict(versus)}"
        )
    if decision["decision"] == "fail":
        ranked = sorted(decision.get("candidates", {}).items(), key=lambda item: -item[1])
        popularity = decision["popularity"]
        listed = ", ".join(
            f"{name} {value:.4f}" + (f" ({value / popularity:.2f}x)" if popularity > 0 else "")
            for name, value in ranked
            if name != POPULARITY
        )
        lines.append(
            f"  candidates on this split, best first: {listed}; popularity {popularity:.4f}"
        )
        lines.append("what to try:")
        lines += [f"  - {tip}" for tip in decision.get("advice") or []]
        keeps = f"champion v{champion} keeps serving" if champion else "there is no champion yet"
        lines.append(
            f"{keeps}; the decision is in logs/promotions.jsonl and on v{version}'s gate.* tags"
        )
    return lines


def outcome(decision: dict[str, Any]) -> str:
    """One line: what the gate's decision did to the registry."""
    version = decision["version"]
    if decision["decision"] == "fail":
        return f"version {version} failed the gate: {decision['reason']}; the champion is unchanged"
    if decision.get("champion_moved"):
        return f"promoted version {version} to champion: passed all gates"
    if decision.get("previous_champion") == version:
        return f"version {version} passed the gate and is the champion already"
    return (
        f"version {version} passed the gate and waits for approval as challenger (the champion "
        f'is unchanged): make approve VERSION={version} REASON="..."'
    )


def _verdict(check: dict[str, Any]) -> str:
    if check["passed"]:
        return f"pass, {check['margin']:.4f} to spare"
    return f"FAIL, short by {-check['margin']:.4f}"


def _day(timestamp: str | None) -> str | None:
    return str(timestamp)[:10] if timestamp else None
