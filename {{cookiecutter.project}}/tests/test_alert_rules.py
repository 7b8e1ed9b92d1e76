"""The alert rules pass promtool, and every alert has unit tests that make it fire and keep quiet.

The unit tests are monitoring/prometheus/tests/alerts_test.yml (`make alerts-test`). promtool
comes with Prometheus: `apt-get install prometheus` on Debian and Ubuntu. Without it the promtool
tests skip, unless REQUIRE_PROMTOOL=1 (as in CI): there they must never skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ALERTS = Path("monitoring/prometheus/alerts.yml")
ALERT_TESTS = Path("monitoring/prometheus/tests/alerts_test.yml")


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        reason = "promtool is not on PATH (apt-get install prometheus)"
        if os.environ.get("REQUIRE_PROMTOOL") == "1":
            pytest.fail(f"{reason}, and REQUIRE_PROMTOOL=1")
        pytest.skip(reason)
    return found


def run(promtool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """promtool in the project root, as `make alerts-test` runs it; failures print to stderr."""
    return subprocess.run(
        [promtool, *map(str, args)], cwd=ROOT, capture_output=True, text=True, check=False
    )


def alert_names() -> list[str]:
    groups = yaml.safe_load((ROOT / ALERTS).read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule]


def unit_tests() -> dict:
    return yaml.safe_load((ROOT / ALERT_TESTS).read_text())


def checked(tests: dict) -> dict[str, set[str]]:
    """Alert name -> what its test cases expect: "firing" (some alerts), "quiet" (none)."""
    found: dict[str, set[str]] = {}
    for group in tests["tests"]:
        for case in group.get("alert_rule_test", []):
            kind = "firing" if case.get("exp_alerts") else "quiet"
            found.setdefault(case["alertname"], set()).add(kind)
    return found


def coverage_problems(alerts: list[str], cases: dict[str, set[str]]) -> list[str]:
    problems = []
    for name in alerts:
        missing = sorted({"firing", "quiet"} - cases.get(name, set()))
        if missing:
            problems.append(f"{name}: no test case expecting it {' or '.join(missing)}")
    # A misspelt alertname with `exp_alerts: []` would pass promtool without testing anything.
    problems += [f"{name}: tested, but not an alert" for name in sorted(set(cases) - set(alerts))]
    return problems


def test_alert_rules_pass_promtool_check(promtool):
    result = run(promtool, "check", "rules", "--lint-fatal", ALERTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_their_unit_tests(promtool):
    result = run(promtool, "test", "rules", ALERT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_expectation_fails_the_unit_tests(promtool, tmp_path):
    """promtool compares the rendered annotations: a changed description fails the run."""
    tests = unit_tests()
    group, case = next(
        (group, case)
        for group in tests["tests"]
        for case in group.get("alert_rule_test", [])
        if case.get("exp_alerts")
    )
    annotations = case["exp_alerts"][0]["exp_annotations"]
    real = annotations["description"]
    annotations["description"] = "not what the alert says"
    # Only that test group, so the run stays short; alerts.yml beside tests/, as in the project.
    shutil.copy(ROOT / ALERTS, tmp_path / "alerts.yml")
    copy = tmp_path / "tests" / "alerts_test.yml"
    copy.parent.mkdir()
    copy.write_text(yaml.safe_dump({**tests, "tests": [group]}))
    result = run(promtool, "test", "rules", copy)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert case["alertname"] in output, output
    assert real in output, output  # what the alert really says, under `got`


def test_every_alert_has_unit_tests_that_fire_it_and_keep_it_quiet():
    assert len(alert_names()) >= 10
    assert coverage_problems(alert_names(), checked(unit_tests())) == []


def test_the_coverage_check_catches_an_untested_alert():
    cases = checked(unit_tests())
    cases["RecommenderHighErrorRate"].discard("quiet")
    cases["RecommenderHighErorRate"] = {"quiet"}
    assert coverage_problems([*alert_names(), "RecommenderNew"], cases) == [
        "RecommenderHighErrorRate: no test case expecting it quiet",
        "RecommenderNew: no test case expecting it firing or quiet",
        "RecommenderHighErorRate: tested, but not an alert",
    ]
