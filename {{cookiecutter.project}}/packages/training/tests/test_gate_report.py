"""The gate explains itself: every decision names the numbers it compared and on which split, a
failure says which threshold failed by how much and what to try, and the last line says what
happened to the registry (promoted, waiting for approval, unchanged)."""

from __future__ import annotations

import copy

from {{ cookiecutter.package }}_training.gate import judge
from {{ cookiecutter.package }}_training.gate_report import explain, outcome

PARAMS = {
    "model": {"name": "ease", "ease": {"l2": 500.0}, "itemknn": {"n_neighbors": 200}},
    "gate": {
        "metric": "ndcg_at_10",
        "min_lift_over_popularity": 1.25,
        "max_drop_vs_champion": 0.005,
    },
}
REGISTERED = {"model_name": "shop", "version": "3", "model": "ease"}


def metrics(ease: float, itemknn: float = 0.0830, popularity: float = 0.0256) -> dict:
    scores = {"popularity": popularity, "itemknn": itemknn, "ease": ease}
    return {
        "models": {name: {"warm": {"ndcg_at_10": value}} for name, value in scores.items()},
        "split": {"cutoff": "2026-02-09T00:00:00", "test_users_warm": 7651},
    }


def params(**gate) -> dict:
    changed = copy.deepcopy(PARAMS)
    changed["gate"].update(gate)
    return changed


def text(decision: dict) -> str:
    return "\n".join([*explain(decision), outcome(decision)])


def test_a_first_champion_shows_both_numbers_the_lift_and_its_threshold():
    decision = judge(PARAMS, REGISTERED, metrics(0.0836), None, None)
    decision["champion_moved"] = True
    printed = text(decision)
    assert "ndcg_at_10 on this run's test split (events from 2026-02-09 on, 7,651 warm users)" in (
        printed
    )
    assert "vs popularity: 0.0836 vs 0.0256 = 3.27x, required 1.25x (>= 0.0320): pass" in printed
    assert "vs champion: there is none yet" in printed
    assert printed.endswith("promoted version 3 to champion: passed all gates")


def test_after_a_drift_retrain_the_champion_is_re_scored_and_both_figures_are_printed():
    figures = {"value": 0.0101, "training_value": 0.0836, "split_cutoff": "2026-01-26T00:00:00"}
    decision = judge(PARAMS, REGISTERED, metrics(0.0105, 0.0099, 0.0070), "2", figures)
    assert decision["decision"] == "pass"
    decision["champion_moved"] = True
    printed = text(decision)
    assert (
        "vs champion v2: 0.0101 re-scored on this split (0.0836 on its own training split, "
        "events from 2026-01-26 on); allowed drop 0.005 (>= 0.0051): pass, 0.0054 to spare"
    ) in printed
    assert decision["champion_value"] == 0.0101 and decision["champion_training_value"] == 0.0836


def test_a_failed_lift_says_by_how_much_the_best_candidate_and_what_to_try():
    decision = judge(params(min_lift_over_popularity=4.0), REGISTERED, metrics(0.0836), None, None)
    assert decision["decision"] == "fail"
    assert decision["reason"] == (
        "ndcg_at_10 0.0836 is 3.27x popularity's 0.0256, below the required 4.0x "
        "(needs 0.1024, short by 0.0188)"
    )
    [lift] = decision["checks"]
    assert lift == {
        "check": "lift_over_popularity",
        "passed": False,
        "value": 0.0836,
        "required": 0.1024,
        "margin": -0.0188,
    }
    printed = text(decision)
    assert "required 4.0x (>= 0.1024): FAIL, short by 0.0188" in printed
    assert "candidates on this split, best first: ease 0.0836 (3.27x), itemknn 0.0830" in printed
    advice = " ".join(decision["advice"])
    assert "`make tune` searches model.ease (now l2=500.0)" in advice
    assert "matrix.weighting" in advice and "matrix.event_weights" in advice
    assert "gate.min_lift_over_popularity (4.0)" in advice
    assert "a model no better than popularity is not served" in advice
    assert "another candidate" not in advice  # ease is the best one
    assert "there is no champion yet" in printed


def test_a_better_candidate_is_named_and_a_champion_drop_names_its_threshold():
    figures = {"value": 0.0900, "training_value": 0.0900, "split_cutoff": "2026-02-09T00:00:00"}
    decision = judge(PARAMS, REGISTERED, metrics(0.0800, itemknn=0.0880), "2", figures)
    assert decision["decision"] == "fail" and decision["best_candidate"] == "itemknn"
    assert (
        "below champion v2's 0.0900 by more than 0.005 (needs 0.0850, short by 0.0050)"
        in (decision["reason"])
    )
    printed = text(decision)
    assert "(0.0900 at registration, on the same split)" in printed
    assert "itemknn scored 0.0880 (3.44x popularity) on this split and would pass" in printed
    assert "set model.name: itemknn in params.yaml" in printed
    assert "gate.max_drop_vs_champion (0.005)" in printed
    assert "champion v2 keeps serving" in printed


def test_a_pass_that_waits_for_approval_does_not_claim_a_promotion():
    decision = judge(PARAMS, REGISTERED, metrics(0.0836), None, None)
    decision["champion_moved"] = False  # gate.require_approval: true
    line = outcome(decision)
    assert "promoted" not in line
    assert "passed the gate and waits for approval" in line
    assert "make approve VERSION=3" in line


def test_a_version_gated_again_while_champion_says_so():
    decision = judge(PARAMS, REGISTERED, metrics(0.0836), "3", None)
    decision["champion_moved"] = False
    assert outcome(decision) == "version 3 passed the gate and is the champion already"
    assert "vs champion: v3 is the champion already" in text(decision)
