"""The template repository's own CI (root .github/workflows/template-*.yml and .gitlab-ci.yml,
what a fork of the golden path runs), checked statically: both files validate against their
schemas offline, the workflows pass actionlint (with shellcheck) and the hardening rules of
tests/test_ci_github.py (the same functions), and both run what the README and `.ci/run` run:
the fast tier (`make lint`, `make test-fast`) on every push and merge/pull request on each
Python a project may ask for, every tier (`.ci/run`) nightly, by hand and on `v*` tags, with the
caches where the tests look for them. Each checker is also shown to fail on a broken copy.
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
from base_image import cache_dir
from conftest import TEMPLATE_ROOT, choices, run, tool
from test_ci_github import (
    USES_LINE,
    actionlint,
    job_problems,
    load,
    permission_problems,
    pin_problems,
    script_problems,
    scripts_of,
    trigger_problems,
    triggers,
)
from test_ci_github import jobs as github_jobs
from test_ci_github import steps as github_steps
from test_ci_gitlab import gitlab_ci_local
from test_ci_gitlab import jobs as gitlab_jobs

WORKFLOWS = TEMPLATE_ROOT / ".github" / "workflows"
GITLAB_CI = TEMPLATE_ROOT / ".gitlab-ci.yml"
FAST, FULL = ("template-ci.yml", "fast"), ("template-nightly.yml", "full")
# Every Python a generated project may ask for; the full tier runs on the default.
PYTHONS = choices("python_version")
# The folder tests/base_image.py keeps the rootfs tarball in, under $XDG_CACHE_HOME.
ROOTFS_CACHE = "cookiecutter-unified-mlops"
# Any request through a proxy fails: the schema checks must not need the network.
OFFLINE = {
    **os.environ,
    **dict.fromkeys(
        ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"], "http://127.0.0.1:9"
    ),
    "NO_PROXY": "",
    "no_proxy": "",
}
# A `make` command in a script (a line's first word, or after `;`, `&&`, `||`, `|`, `(`): its
# targets, up to the first option, variable or redirection.
MAKE_CALL = re.compile(r"(?:^|[;&|(])\s*make((?:[ \t]+[a-z][\w-]*)+)", re.MULTILINE)


@pytest.fixture(scope="module")
def workflows() -> dict[str, dict]:
    found = {path.name: load(path) for path in sorted(WORKFLOWS.glob("*.yml"))}
    assert set(found) == {FAST[0], FULL[0]}
    return found


@pytest.fixture(scope="module")
def pipeline() -> dict:
    return yaml.safe_load(GITLAB_CI.read_text())


def job(workflows: dict[str, dict], where: tuple[str, str]) -> dict:
    return workflows[where[0]]["jobs"][where[1]]


def runs(job: dict) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def uses(job: dict, action: str) -> list[dict]:
    return [step for step in job["steps"] if step.get("uses", "").startswith(f"{action}@")]


def make_targets(scripts: list[str]) -> set[str]:
    return {t for s in scripts for m in MAKE_CALL.finditer(s) for t in m[1].split()}


def minutes(timeout: str) -> int:
    """GitLab's `85m`, `1h 25m` as minutes."""
    units = {"h": 60, "m": 1}
    parts = re.fullmatch(r"\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*", timeout)
    assert parts and any(parts.groups()), timeout
    return sum(int(n) * units[u] for n, u in zip(parts.groups(), "hm", strict=True) if n)


def check_jsonschema(schema: str, *paths: Path):
    args = [tool("check-jsonschema"), "--builtin-schema", schema, *map(str, paths)]
    return run(args, cwd=TEMPLATE_ROOT, env=OFFLINE, check=False)


# --- Schemas (check-jsonschema's vendored ones: no network) ----------------------------------


def test_the_workflows_validate_against_the_github_schema_offline():
    result = check_jsonschema("vendor.github-workflows", *sorted(WORKFLOWS.glob("*.yml")))
    assert (result.returncode, result.stderr) == (0, ""), result.stdout


def test_the_pipeline_validates_against_the_gitlab_schema_offline():
    result = check_jsonschema("vendor.gitlab-ci", GITLAB_CI)
    assert (result.returncode, result.stderr) == (0, ""), result.stdout


def test_the_schemas_reject_broken_copies(tmp_path: Path):
    workflow = tmp_path / FULL[0]
    text = (WORKFLOWS / FULL[0]).read_text()
    workflow.write_text(text.replace("timeout-minutes: 85", "timeout-minutes: soon", 1))
    pipeline = tmp_path / ".gitlab-ci.yml"
    text = GITLAB_CI.read_text()
    pipeline.write_text(text.replace("  interruptible: true\n", "  interruptable: true\n", 1))
    assert workflow.read_text() != (WORKFLOWS / FULL[0]).read_text()
    assert pipeline.read_text() != GITLAB_CI.read_text()
    checks = [("vendor.github-workflows", workflow, "'timeout-minutes': 'soon'"),
              ("vendor.gitlab-ci", pipeline, "'interruptable' was unexpected")]  # fmt: skip
    for schema, path, finding in checks:
        result = check_jsonschema(schema, path)
        assert result.returncode == 1, result.stdout + result.stderr
        assert finding in result.stdout


# --- actionlint (with shellcheck) --------------------------------------------------------------


def test_actionlint_finds_nothing():
    result = actionlint(TEMPLATE_ROOT, sorted(WORKFLOWS.glob("*.yml")))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_actionlint_reports_a_broken_copy(tmp_path: Path):
    """An unquoted variable (shellcheck's SC2086), an untrusted expression in a script and a
    `needs` of a job that does not exist."""
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    run(["git", "init", "--quiet"], cwd=tmp_path)
    text = (WORKFLOWS / FULL[0]).read_text()
    broken = text.replace('tee "$RUNNER_TEMP/template-test.log"', "tee $RUNNER_TEMP/test.log")
    broken = broken.replace(
        ".ci/run 2>&1 |", '.ci/run "${{ github.event.head_commit.message }}" 2>&1 |'
    )
    broken = broken.replace("    runs-on:", "    needs: nosuchjob\n    runs-on:", 1)
    path = tmp_path / ".github" / "workflows" / FULL[0]
    path.write_text(broken)
    result = actionlint(tmp_path, [path])
    assert result.returncode == 1
    for finding in ("SC2086", "potentially untrusted", "nosuchjob"):
        assert finding in result.stdout, result.stdout


# --- The hardening rules (tests/test_ci_github.py's, for the projects' workflows) -------------


def test_every_action_is_pinned_by_sha_with_its_version():
    paths = sorted(WORKFLOWS.glob("*.yml"))
    problems = [p for path in paths for p in pin_problems(path.read_text(), path.name)]
    assert problems == []


def test_the_pins_are_the_ci_modules_pins():
    """The same action at the same commit as ci/github/workflows/: one pin to bump per action."""

    def pins(paths) -> set[str]:
        return {f"{m['ref']} # {m['comment']}" for path in paths
                for line in path.read_text().splitlines()
                if (m := USES_LINE.match(line)) and not m["ref"].startswith("./")}  # fmt: skip

    ours = pins(WORKFLOWS.glob("*.yml"))
    assert ours
    assert ours <= pins((TEMPLATE_ROOT / "ci" / "github" / "workflows").glob("*.yml"))


def test_permissions_are_empty_at_the_top_and_read_only_per_job(workflows):
    assert permission_problems(workflows) == []
    scopes = {(name, job_id): job["permissions"] for name, job_id, job in github_jobs(workflows)}
    assert scopes == {FAST: {"contents": "read"}, FULL: {"contents": "read"}}


def test_jobs_have_timeouts_concurrency_and_credential_free_checkouts(workflows):
    assert job_problems(workflows) == []
    for name, _, step in github_steps(workflows):
        if "uses" in step and step["uses"].startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False, name


def test_no_trigger_runs_untrusted_code_and_no_expression_is_pasted_into_a_script(workflows):
    assert trigger_problems(workflows) == []
    assert script_problems(scripts_of(TEMPLATE_ROOT, workflows)) == []


def test_the_rules_flag_a_broken_copy(workflows):
    broken = copy.deepcopy(workflows)
    nightly = broken[FULL[0]]
    nightly["permissions"] = "write-all"
    job(broken, FAST)["permissions"] = {"contents": "write"}
    del job(broken, FULL)["timeout-minutes"]
    del broken[FAST[0]]["concurrency"]
    uses(job(broken, FAST), "actions/checkout")[0]["with"] = {}
    job(broken, FULL)["steps"].append({"run": 'echo "${{ github.head_ref }}"'})
    triggers_of = nightly.get("on", nightly.get(True))
    triggers_of["pull_request_target"] = None
    assert len(permission_problems(broken)) == 2
    assert {p.split(": ", 1)[1] for p in job_problems(broken)} == {
        "no timeout-minutes",
        "no concurrency group (job or workflow)",
        "a checkout keeps its credentials",
    }
    assert trigger_problems(broken) == [f"{FULL[0]}: triggered by pull_request_target"]
    assert len(script_problems(scripts_of(TEMPLATE_ROOT, broken))) == 1
    text = (WORKFLOWS / FAST[0]).read_text()
    unpinned = re.sub(r"actions/checkout@[0-9a-f]{40}", "actions/checkout@v7", text)
    assert [p.split(": ", 2)[1] for p in pin_problems(unpinned, "x")] == [
        "actions/checkout@v7 is not pinned by a commit SHA"
    ]


# --- What runs: the README's and .ci/run's commands, the make targets exist -------------------


def test_the_fast_tier_runs_lint_and_test_fast_on_each_python(workflows, pipeline):
    fast = job(workflows, FAST)
    assert runs(fast) == ["make lint", "make test-fast"]
    assert fast["strategy"]["matrix"] == {"python": PYTHONS}
    (setup,) = uses(fast, "actions/setup-python")
    assert setup["with"] == {"python-version": "${{ matrix.python }}"}
    assert fast["env"]["PYTHON"] == "python"

    gitlab = gitlab_jobs(pipeline)["fast"]
    assert gitlab["script"] == ["make lint", "make test-fast"]
    assert gitlab["parallel"]["matrix"] == [{"PYTHON_VERSION": PYTHONS}]
    assert gitlab["image"] == "python:${PYTHON_VERSION}-slim-bookworm"
    assert gitlab["variables"]["PYTHON"] == "python"


def test_the_full_tier_runs_ci_run_as_root_on_the_default_python(workflows, pipeline):
    full = job(workflows, FULL)
    (setup,) = uses(full, "actions/setup-python")
    assert setup["with"] == {"python-version": PYTHONS[0]}
    assert full["env"]["CI"] == "true"
    (call,) = [step for step in full["steps"] if ".ci/run" in step.get("run", "")]
    preserved = re.search(r"sudo --preserve-env=(\S+)\s+(?:\\\s+)?\.ci/run\b", call["run"])
    assert preserved, call["run"]
    assert {"CI", "XDG_CACHE_HOME", "PYTHON"} <= set(preserved[1].split(","))
    # sudo's PATH has the system python3: the Makefile gets setup-python's by its path.
    assert call["env"]["PYTHON"] == "${{ steps.python.outputs.python-path }}"
    assert setup["id"] == "python"

    gitlab = gitlab_jobs(pipeline)["full"]
    assert gitlab["image"] == f"python:{PYTHONS[0]}-slim-bookworm"
    assert gitlab["variables"]["CI"] == "true"
    assert [line for line in gitlab["script"] if ".ci/run" in line] == [
        ".ci/run 2>&1 | tee template-test.log"
    ]
    assert "set -o pipefail" in gitlab["script"]


def test_the_targets_are_the_readme_s_and_ci_run_s_and_exist():
    ci_run = (TEMPLATE_ROOT / ".ci" / "run").read_text()
    assert ci_run.rstrip().splitlines()[-1] == "make test </dev/null"
    workflows_text = [s for path in WORKFLOWS.glob("*.yml") for s in runs_of(load(path))]
    gitlab_text = [line for j in gitlab_jobs(yaml.safe_load(GITLAB_CI.read_text())).values()
                   for line in j["script"]]  # fmt: skip
    called = make_targets(workflows_text) | make_targets(gitlab_text) | make_targets([ci_run])
    assert called == {"lint", "test-fast", "test"}
    # The README's test commands; the forking page names every command the tiers run.
    readme = (TEMPLATE_ROOT / "README.md").read_text()
    assert [t for t in ("test", "test-fast") if f"`make {t}`" not in readme] == []
    forking = (TEMPLATE_ROOT / "docs" / "forking.md").read_text()
    assert [c for c in [*(f"make {t}" for t in sorted(called)), ".ci/run"]
            if f"`{c}`" not in forking] == []  # fmt: skip
    result = run(["make", "-n", *sorted(called)], cwd=TEMPLATE_ROOT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert make_targets(["make lint && make  test-fast PACKAGE=x", "(make test </dev/null)"]) == {
        "lint",
        "test-fast",
        "test",
    }
    missing = run(["make", "-n", "test-nightly"], cwd=TEMPLATE_ROOT, check=False)
    assert missing.returncode != 0


def runs_of(workflow: dict) -> list[str]:
    return [s for j in workflow["jobs"].values() for s in runs(j)]


# --- When each tier runs, and for how long ------------------------------------------------------


def test_github_runs_fast_on_pushes_and_pull_requests_and_full_nightly_by_hand_and_on_tags(
    workflows,
):
    fast = triggers(workflows[FAST[0]])
    assert {"push", "pull_request"} <= set(fast)
    assert fast["push"] is None and fast["pull_request"] is None  # every branch and tag
    full = triggers(workflows[FULL[0]])
    assert set(full) == {"schedule", "workflow_dispatch", "push"}
    assert full["push"] == {"tags": ["v*"]}
    assert len(full["schedule"]) == 1
    assert full["schedule"][0]["cron"].split()[2:] == ["*", "*", "*"]  # daily
    assert job(workflows, FAST)["timeout-minutes"] <= 30
    assert 60 < job(workflows, FULL)["timeout-minutes"] < 90
    # A pull request's run gives way to a newer push; a nightly or a release run never does.
    assert "pull_request" in workflows[FAST[0]]["concurrency"]["cancel-in-progress"]
    assert workflows[FULL[0]]["concurrency"]["cancel-in-progress"] is False
    for workflow in workflows.values():
        assert "${{ github.ref }}" in workflow["concurrency"]["group"]


def test_gitlab_rules_give_fast_to_pushes_and_merge_requests_and_full_to_the_rest(pipeline):
    found = gitlab_jobs(pipeline)
    assert set(found) == {"fast", "full"}
    assert 60 < minutes(found["full"]["timeout"]) < 90
    assert minutes(found["fast"]["timeout"]) <= 30
    assert (found["fast"]["interruptible"], found["full"]["interruptible"]) == (True, False)
    full_ifs = [rule["if"] for rule in found["full"]["rules"]]
    assert full_ifs == [
        '$CI_PIPELINE_SOURCE == "schedule"',
        '$CI_PIPELINE_SOURCE == "web"',
        "$CI_COMMIT_TAG =~ /^v/",
    ]


# The pipelines gitlab-ci-local is asked about (the variables GitLab sets for each, over
# gitlab-ci-local's branch push), and the jobs each one gets.
FAST_JOBS = {f"fast: [{version}]" for version in PYTHONS}
PIPELINES = {
    "push": ({}, FAST_JOBS),
    "merge-request": ({"CI_PIPELINE_SOURCE": "merge_request_event"}, FAST_JOBS),
    "schedule": ({"CI_PIPELINE_SOURCE": "schedule"}, {"full"}),
    "web": ({"CI_PIPELINE_SOURCE": "web"}, {"full"}),
    "release-tag": ({"CI_COMMIT_TAG": "v1.2.0"}, {*FAST_JOBS, "full"}),
    "other-tag": ({"CI_COMMIT_TAG": "nightly-1"}, FAST_JOBS),
}


@pytest.fixture(scope="module")
def gitlab_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repository holding the pipeline and the files its cache keys name (gitlab-ci-local
    writes its state beside the file it reads, never in the template)."""
    folder = tmp_path_factory.mktemp("template-gitlab")
    for relative in (".gitlab-ci.yml", "requirements-dev.txt", "tests/base_image.py"):
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(TEMPLATE_ROOT / relative, folder / relative)
    run(["git", "init", "--quiet", "--initial-branch", "main"], cwd=folder)
    run(["git", "add", "-A"], cwd=folder)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "CI"],
        cwd=folder)  # fmt: skip
    return folder


@pytest.mark.parametrize("source", PIPELINES)
def test_gitlab_ci_local_gives_each_pipeline_its_jobs(gitlab_copy: Path, source: str):
    variables, expected = PIPELINES[source]
    args = [arg for item in variables.items() for arg in ("--variable", "=".join(item))]
    if source in ("merge-request", "release-tag", "other-tag"):  # no branch in those pipelines
        args += ["--unset-variable", "CI_COMMIT_BRANCH"]
    result = run([gitlab_ci_local(), "--list-json", *args], cwd=gitlab_copy)
    listed = {j["name"] for j in json.loads(result.stdout) if j["when"] != "never"}
    assert listed == expected


# --- Caches: where pip, uv and tests/base_image.py look, under sudo too ---------------------


def test_the_rootfs_cache_folder_is_base_image_s(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ROOTFS_CACHE


def test_github_caches_the_folders_root_uses(workflows):
    full = job(workflows, FULL)
    exported = [s for s in runs(full) if "XDG_CACHE_HOME=" in s]
    assert exported == ['echo "XDG_CACHE_HOME=$HOME/.cache" >> "$GITHUB_ENV"']
    caches = {step["with"]["path"].strip(): step["with"]["key"] for step in
              uses(full, "actions/cache")}  # fmt: skip
    assert caches[f"~/.cache/{ROOTFS_CACHE}"].endswith("${{ hashFiles('tests/base_image.py') }}")
    assert "~/.cache/pip\n~/.cache/uv" in caches
    fast_caches = [step["with"]["path"] for step in uses(job(workflows, FAST), "actions/cache")]
    assert fast_caches == ["~/.cache/pip\n~/.cache/uv\n"]
    # The caches are saved by the runner user after root wrote into them.
    handed_back = [s for s in runs(full) if s.startswith("sudo chown -R")]
    assert handed_back and "$XDG_CACHE_HOME" in handed_back[0]


def test_gitlab_caches_inside_the_project_where_the_tools_look(pipeline):
    variables = pipeline["variables"]
    assert variables["XDG_CACHE_HOME"] == "$CI_PROJECT_DIR/.cache"
    assert variables["PIP_CACHE_DIR"] == "$CI_PROJECT_DIR/.cache/pip"
    assert variables["UV_CACHE_DIR"] == "$CI_PROJECT_DIR/.cache/uv"
    found = gitlab_jobs(pipeline)
    for name in ("fast", "full"):
        paths = {path for cache in found[name]["cache"] for path in cache["paths"]}
        assert {".cache/pip/", ".cache/uv/"} <= paths, name
    rootfs = [c for c in found["full"]["cache"] if c["paths"] == [f".cache/{ROOTFS_CACHE}/"]]
    assert [c["key"] for c in rootfs] == [{"prefix": "rootfs", "files": ["tests/base_image.py"]}]
