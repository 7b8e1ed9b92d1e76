"""The GitLab pipeline (ci/gitlab/gitlab-ci.yml, a bake's .gitlab-ci.yml): it validates against
GitLab's schema, checkov's GitLab checks find nothing, every job is bounded in time, the rules
give each kind of pipeline its jobs, and the code-CI and model-CI jobs run for real.

They run with gitlab-ci-local 4.52 (npm; `make test` installs it into .tools/node). What it does,
read in its source (src/utils.js, job.js, commander.js) and seen here:

- A job without `image` runs in its shell executor: bash on this machine. No container runtime
  works here, so the test runs a copy of .gitlab-ci.yml with only the `image` keys removed.
  With `--shell-isolation` each job starts from a fresh copy of the git-TRACKED files (rsync of
  the work tree minus `git ls-files -o`, so rsync must be installed) in
  .gitlab-ci-local/builds/<job>, like a runner's checkout: nothing reaches a job but its `needs`'
  artifacts and the `cache:` entries (copied in and out of .gitlab-ci-local/cache under their
  keys; a `key: files:` entry that does not exist stops the whole run). Hence uv.lock is
  committed first, as a user is told to.
- Rules: `if` is evaluated over the job's variables; `changes` is
  `git diff --name-only origin/<default branch>`, the work tree against the remote's default
  branch whatever the pipeline source (`compare_to` is ignored), so the bake gets an origin/main
  ref at its first commit and a params.yaml change on a branch. `workflow:` is not evaluated.
- The predefined variables are a push pipeline's (CI_PIPELINE_SOURCE=push, CI_COMMIT_BRANCH the
  checked-out branch, GITLAB_CI=false). A merge-request pipeline is made with `--variable`
  (CI_PIPELINE_SOURCE=merge_request_event, CI_MERGE_REQUEST_IID, ..._DIFF_BASE_SHA) and
  `--unset-variable CI_COMMIT_BRANCH`, as GitLab sets them; `--variable` wins over the file's
  variables, as a project's CI/CD variables do on GitLab.
- Jobs named on the command line run whatever their rules say, so the test runs the whole
  pipeline (rules, `when: never`, stage order and needs honoured) and switches off, through the
  pipeline's own switches, the two jobs this machine cannot run, IMAGES_DISABLED (no container
  runtime) and DEPS_AUDIT_DISABLED (PyPI's vulnerability API is out of reach), and the whole
  project suite, TEST_DISABLED (test_default_project.py runs the default bake for real; here it
  would cost the suite minutes for nothing new).
- `timeout`, `resource_group`, `environment` and `interruptible` are read, not enforced: the
  fast tests below check them in the file.
- The machine's uv cache stands in for the restored GitLab cache (UV_CACHE_DIR; a cold
  in-project cache would download a GB per job), the template venv's uv (the same pin) for the
  one `make setup` would pip-install into each job's .tools/, and a fake GitLab API on localhost
  (CI_API_V4_URL, GITLAB_TOKEN) records the merge-request note.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from conftest import TEMPLATE_ROOT, bake, make, run, tool

CI_FILE = TEMPLATE_ROOT / "ci" / "gitlab" / "gitlab-ci.yml"
GITLAB_CI_LOCAL = TEMPLATE_ROOT / ".tools" / "node" / "node_modules" / ".bin" / "gitlab-ci-local"
CHECKOV_PIN = next(
    line
    for line in (TEMPLATE_ROOT / "requirements-checkov.txt").read_text().splitlines()
    if line.startswith("checkov==")
)
# Keys of the top level that are not jobs.
GLOBAL_KEYWORDS = {"default", "include", "stages", "variables", "workflow", "image", "cache"}
STAGES = [
    "code-ci",
    "model-ci",
    "deploy-dev",
    "deploy-staging",
    "verify-staging",
    "deploy-prod",
    "operate",
]
CODE_CI = {
    "lint",
    "typecheck",
    "test-package",
    "test",
    "wheels",
    "docs",
    "template-check",
    "images",
    "security",
    "deps-audit",
}
MODEL_CI = {"model-ci", "model-comment"}
# The code-CI and model-CI jobs the real run must pass (the matrix expanded as GitLab names it).
RUN_HERE = [
    "lint",
    "typecheck",
    "test-package: [api]",
    "test-package: [core]",
    "test-package: [training]",
    "wheels",
    "docs",
    "template-check",
    "security",
    "model-ci",
    "model-comment",
]
IMAGE_KEY = re.compile(r"^\s*image: \S+\s*$")


def load(text: str) -> dict:
    return yaml.safe_load(text)


def merged(base: dict, override: dict) -> dict:
    """GitLab's `extends`: hashes merged key by key, anything else replaced."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = value
    return result


def resolved(document: dict, name: str) -> dict:
    job = document[name]
    parents = job.get("extends", [])
    parents = [parents] if isinstance(parents, str) else parents
    result: dict = {}
    for parent in parents:
        result = merged(result, resolved(document, parent))
    return merged(result, {k: v for k, v in job.items() if k != "extends"})


def jobs(document: dict) -> dict[str, dict]:
    """Every job of the pipeline, `extends` applied; hidden (`.name`) keys are templates."""
    return {
        name: resolved(document, name)
        for name, value in document.items()
        if name not in GLOBAL_KEYWORDS and not name.startswith(".") and isinstance(value, dict)
    }


def without_images(text: str) -> str:
    """The file with only its `image:` lines removed (every image key here is one line)."""
    return "".join(line for line in text.splitlines(keepends=True) if not IMAGE_KEY.match(line))


@pytest.fixture(scope="module")
def document() -> dict:
    return load(CI_FILE.read_text())


@pytest.fixture(scope="module")
def gitlab_bake(tmp_path_factory: pytest.TempPathFactory, cookiecutter_config: Path) -> Path:
    """A default bake with ci_provider=gitlab (cookiecutter makes it a git repo, one commit)."""
    return bake(tmp_path_factory.mktemp("gitlab-bake"), cookiecutter_config, ci_provider="gitlab")


def gitlab_ci_local(isolated: bool = False) -> str:
    if not GITLAB_CI_LOCAL.exists():
        # .ci/run sets REQUIRE_GITLAB_CI_LOCAL=1: there a missing runner fails, never skips.
        reason = f"{GITLAB_CI_LOCAL} is missing: `make test` installs it when npm is there"
        if os.environ.get("REQUIRE_GITLAB_CI_LOCAL") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    if isolated and not shutil.which("rsync"):
        pytest.fail("gitlab-ci-local's --shell-isolation needs rsync (apt-get install rsync)")
    return str(GITLAB_CI_LOCAL)


def git(project: Path, *args: str) -> str:
    return run(["git", *args], cwd=project).stdout.strip()


def as_merge_request_branch(project: Path, change: str) -> str:
    """The bake as a merge request's source branch: origin/main at the bake's commit (plus the
    lock file `make setup` wrote, committed as users are told), `change` committed on a branch.
    Returns the base commit."""
    if (project / "uv.lock").exists() and git(project, "status", "--porcelain", "uv.lock"):
        git(project, "add", "uv.lock")
        git(project, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "Lock")
    if not git(project, "remote"):
        git(project, "remote", "add", "origin", "https://gitlab.example.com/team/shop.git")
    base = git(project, "rev-parse", "HEAD")
    git(project, "update-ref", "refs/remotes/origin/main", base)
    git(project, "checkout", "-qB", "tune-model")
    path = project / change
    path.write_text(path.read_text() + "# tuned\n")
    git(project, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qam", "Tune")
    # The copy gitlab-ci-local reads: untracked, and kept out of git status.
    (project / "ci-local.yml").write_text(without_images((project / ".gitlab-ci.yml").read_text()))
    with open(project / ".git" / "info" / "exclude", "a") as exclude:
        exclude.write("ci-local.yml\n")
    return base


def merge_request_variables(base: str) -> list[str]:
    variables = {
        "CI_PIPELINE_SOURCE": "merge_request_event",
        "CI_MERGE_REQUEST_IID": "7",
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
        "CI_MERGE_REQUEST_DIFF_BASE_SHA": base,
    }
    args = [arg for key, value in variables.items() for arg in ("--variable", f"{key}={value}")]
    return [*args, "--unset-variable", "CI_COMMIT_BRANCH"]


def listed(project: Path, *args: str) -> dict[str, str]:
    """The jobs a pipeline would run, with their `when` (never-jobs left out)."""
    result = run([gitlab_ci_local(), "--file", "ci-local.yml", "--list-json", *args], cwd=project)
    return {job["name"]: job["when"] for job in json.loads(result.stdout) if job["when"] != "never"}


# --- The file ------------------------------------------------------------------------------------


def test_validates_against_gitlab_schema():
    run([tool("check-jsonschema"), "--builtin-schema", "vendor.gitlab-ci", str(CI_FILE)],
        cwd=TEMPLATE_ROOT)  # fmt: skip


@pytest.fixture(scope="module")
def checkov(gitlab_bake: Path) -> dict:
    """checkov's GitLab CI checks over the bake's .gitlab-ci.yml (run as test_k8s_manifests.py
    does: its own uv tool environment)."""
    env = {**os.environ, "CKV_SKIP_PACKAGE_UPDATE_CHECK": "true", "UV_NATIVE_TLS": "1"}
    args = [tool("uv"), "tool", "run", "--from", CHECKOV_PIN, "checkov", "--framework", "gitlab_ci"]
    args += ["-f", ".gitlab-ci.yml", "--skip-download", "--compact", "-o", "json"]
    result = run(args, cwd=gitlab_bake, env=env, check=False)
    if result.returncode not in (0, 1):
        pytest.fail(f"checkov exited {result.returncode}\n{result.stderr[-3000:]}")
    return json.loads(result.stdout)


def test_checkov_finds_nothing(checkov):
    assert checkov["check_type"] == "gitlab_ci"
    assert checkov["summary"]["passed"] > 0
    assert checkov["results"]["failed_checks"] == []


def test_every_checkov_skip_is_an_annotation_with_a_reason(checkov):
    for check in checkov["results"]["skipped_checks"]:
        assert len(check["check_result"].get("suppress_comment", "")) > 20, check["check_id"]


def test_every_job_is_bounded_in_time(document):
    assert jobs(document)
    assert [name for name, job in jobs(document).items() if "timeout" not in job] == []


def test_stages_follow_the_delivery_order(document):
    assert document["stages"] == STAGES
    stages = {name: job["stage"] for name, job in jobs(document).items()}
    assert {stages[name] for name in CODE_CI} == {"code-ci"}
    assert {stages[name] for name in MODEL_CI} == {"model-ci"}


def test_ci_jobs_are_interruptible_and_deploys_and_schedules_are_not(document):
    for name, job in jobs(document).items():
        ci = job["stage"] in ("code-ci", "model-ci")
        assert job.get("interruptible", False) is ci, name
        assert not ("environment" in job and ci), name


def test_deploys_are_serialized_per_environment_and_prod_waits_for_approval(document):
    all_jobs = jobs(document)
    deploys = {name: job for name, job in all_jobs.items() if name.startswith("deploy-")}
    assert {job["environment"]["name"] for job in deploys.values()} == {"dev", "staging", "prod"}
    for name, job in all_jobs.items():
        if name.startswith(("deploy-", "rollback-")):
            assert job["resource_group"] == f"deploy-{job['environment']['name']}", name
    prod = deploys["deploy-prod"]
    assert [rule.get("when") for rule in prod["rules"]][-1] == "manual"
    assert prod["rules"][-1]["allow_failure"] is False, "a manual prod job must block the pipeline"
    # Staging's checks gate prod; model CI (when it ran) gates staging.
    assert {"loadtest-staging", "drift-staging"} <= set(map(str, prod["needs"]))
    assert {"job": "model-ci", "optional": True} in deploys["deploy-staging"]["needs"]


def test_model_ci_reports_are_kept(document):
    job = jobs(document)["model-ci"]
    assert "reports/" in job["artifacts"]["paths"]
    assert job["artifacts"]["expire_in"]
    assert "make model-report BASE=$MODEL_BASE" in job["script"]
    assert job["rules"][1]["variables"]["MODEL_BASE"] == "$CI_MERGE_REQUEST_DIFF_BASE_SHA"


def test_the_template_is_checked_in_code_ci_and_updated_on_its_schedule(document):
    all_jobs = jobs(document)
    assert all_jobs["template-check"]["script"] == ["make template-check"]
    update = all_jobs["template-update"]
    assert update["script"] == ["make template-update"]
    assert (update["stage"], update["interruptible"]) == ("operate", False)
    # cruft's three-way merge needs the whole history, not the runner's shallow clone.
    assert update["variables"]["GIT_DEPTH"] == "0"
    assert [rule["if"] for rule in update["rules"]] == [
        '$SCHEDULE == "template-update" && '
        '($CI_PIPELINE_SOURCE == "schedule" || $CI_PIPELINE_SOURCE == "web")'
    ]


def test_caches_are_keyed_on_the_lock_files(document):
    for name, job in jobs(document).items():
        caches = job.get("cache", [])
        caches = [caches] if isinstance(caches, dict) else caches
        keys = [cache["key"] for cache in caches if isinstance(cache["key"], dict)]
        assert {"prefix": "uv", "files": ["uv.lock"]} in keys, name
    assert document["variables"]["UV_CACHE_DIR"].startswith("$CI_PROJECT_DIR/")


def test_the_local_copy_differs_only_by_its_images(document):
    copy = load(without_images(CI_FILE.read_text()))
    originals = {name for name, job in document.items() if isinstance(job, dict) and "image" in job}
    assert originals, "the jobs name their images"
    for name, job in document.items():
        expected = {k: v for k, v in job.items() if k != "image"} if isinstance(job, dict) else job
        assert copy[name] == expected, name


# --- Rules: which jobs each kind of pipeline gets (gitlab-ci-local --list, nothing runs) -----


@pytest.fixture(scope="module")
def rules_bake(gitlab_bake: Path) -> tuple[Path, str]:
    base = as_merge_request_branch(gitlab_bake, "params.yaml")
    return gitlab_bake, base


def test_a_merge_request_that_changes_the_model_gets_code_and_model_ci(rules_bake):
    project, base = rules_bake
    expected = {*RUN_HERE, "test", "images", "deps-audit"}
    assert listed(project, *merge_request_variables(base)) == dict.fromkeys(expected, "on_success")


def test_a_merge_request_without_model_changes_gets_code_ci_only(rules_bake):
    project, base = rules_bake
    git(project, "checkout", "-qB", "docs-only", base)
    try:
        readme = project / "README.md"
        readme.write_text(readme.read_text() + "\nMore words.\n")
        found = listed(project, *merge_request_variables(base))
    finally:
        git(project, "checkout", "-q", "--", "README.md")
        git(project, "checkout", "-q", "tune-model")
    assert not set(found) & MODEL_CI
    assert "lint" in found


def test_the_default_branch_deploys_through_the_environments(rules_bake):
    project, _ = rules_bake
    found = listed(project, "--variable", "CI_COMMIT_BRANCH=main")
    assert found["deploy-dev"] == found["deploy-staging"] == "on_success"
    assert found["loadtest-staging"] == found["drift-staging"] == "on_success"
    assert found["deploy-prod"] == "manual"
    assert found["images-push"] == "on_success" and "images" not in found
    assert {found[f"rollback-{env}"] for env in ("dev", "staging", "prod")} == {"manual"}
    assert "model-comment" not in found


@pytest.mark.parametrize("job", ["retrain", "monitor", "batch-recommend", "template-update"])
def test_a_schedule_runs_its_job_only(rules_bake, job):
    project, _ = rules_bake
    source = ["--variable", "CI_PIPELINE_SOURCE=schedule", "--variable", f"SCHEDULE={job}"]
    assert listed(project, *source) == {job: "on_success"}


def test_a_rollback_by_hand_runs_that_environment_s_rollback_only(rules_bake):
    project, _ = rules_bake
    args = ["--variable", "CI_PIPELINE_SOURCE=web", "--variable", "CI_COMMIT_BRANCH=main"]
    assert listed(project, *args, "--variable", "ROLLBACK_ENV=staging") == {
        "rollback-staging": "on_success"
    }


# --- The real run ----------------------------------------------------------------------------


class FakeGitLab(ThreadingHTTPServer):
    """The merge-request notes endpoint: one earlier model-CI note and one from a person, and
    every call recorded."""

    def __init__(self, marker: str):
        self.calls: list[dict] = []
        self.notes = [{"id": 1, "body": "Looks good"}, {"id": 2, "body": f"{marker}\nold"}]
        super().__init__(("127.0.0.1", 0), self.Handler)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args):
            pass

        def answer(self, status: int, payload) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def record(self) -> dict:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            call = {"method": self.command, "path": self.path, "body": body,
                    "token": self.headers.get("PRIVATE-TOKEN")}  # fmt: skip
            self.server.calls.append(call)
            return call

        def do_GET(self):
            self.record()
            self.answer(200, self.server.notes)

        def do_POST(self):
            self.answer(201, {"id": 3, **self.record()["body"]})

        def do_PUT(self):
            self.answer(200, {"id": 2, **self.record()["body"]})


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory, cookiecutter_config: Path):
    """The merge-request pipeline of a default gitlab bake, run once with gitlab-ci-local."""
    project = bake(tmp_path_factory.mktemp("gitlab-run"), cookiecutter_config, ci_provider="gitlab")
    make(project, "setup")
    base = as_merge_request_branch(project, "params.yaml")
    marker = re.search(r'MARKER = "([^"]+)"', (project / "delivery" / "delivery.py").read_text())
    assert marker, "delivery/delivery.py names the marker of its merge-request note"
    uv = tool("uv")
    server = FakeGitLab(marker.group(1))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    variables = {
        "IMAGES_DISABLED": "true",
        "DEPS_AUDIT_DISABLED": "true",
        "TEST_DISABLED": "true",
        "UV_CACHE_DIR": run([uv, "cache", "dir"], cwd=project).stdout.strip(),
        "UV": uv,
        "GITLAB_TOKEN": "glpat-test-token",
        "CI_API_V4_URL": f"http://127.0.0.1:{server.server_port}/api/v4",
    }
    args = [gitlab_ci_local(isolated=True), "--file", "ci-local.yml", "--shell-isolation"]
    args += ["--timestamps"]
    args += merge_request_variables(base)
    args += [arg for key, value in variables.items() for arg in ("--variable", f"{key}={value}")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "MLFLOW_"))}
    started = time.monotonic()
    try:
        result = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, timeout=900)  # fmt: skip
    finally:
        server.shutdown()
    # The pipeline's time and each job's, for the suite's budget (shown with `pytest -s`).
    print(f"\ngitlab-ci-local merge-request pipeline: {time.monotonic() - started:.0f} s")
    print("\n".join(re.findall(r"^ (?:PASS|FAIL|WARN) .*$", result.stdout, re.MULTILINE)))
    return project, result, server.calls, marker.group(1)


def summary(output: str) -> dict[str, str]:
    """gitlab-ci-local's closing report: ` PASS  [1.2 min] job` per job that ran."""
    return {
        m["job"].strip(): m["status"]
        for m in re.finditer(
            r"^ (?P<status>PASS|FAIL|WARN) +\[[^\]]+\] (?P<job>.+?)\s*$", output, re.MULTILINE
        )
    }


@pytest.mark.slow
def test_the_merge_request_pipeline_passes_in_its_own_order(pipeline_run):
    _, result, _, _ = pipeline_run
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert summary(output) == dict.fromkeys(RUN_HERE, "PASS"), output[-6000:]
    # `needs: [model-ci]`: the note is written after the report exists, not beside it.
    starts = {m[1].strip(): m.start() for m in re.finditer(r"\] (\S+) +starting shell", output)}
    finished = re.search(r"\] model-ci +finished in", output)
    assert finished and starts["model-comment"] > finished.start()


@pytest.mark.slow
def test_model_ci_keeps_its_report_with_the_metrics(pipeline_run):
    project, _, _, marker = pipeline_run
    reports = project / ".gitlab-ci-local" / "artifacts" / "model-ci" / "reports"
    report = (reports / "model-ci.md").read_text()
    assert report.startswith(marker)
    assert "| metric | candidate |" in report
    assert re.search(r"^\| ndcg_at_10 \| \d\.\d{4} \|", report, re.MULTILINE)
    assert "dvc metrics diff against" in report
    assert (reports / "evaluation.json").is_file()
    assert (reports / "metrics" / "popularity.json").is_file()  # `dvc metrics`: a file a model
    assert (reports / "plots" / "ndcg_at_k.svg").is_file()


@pytest.mark.slow
def test_the_wheels_job_keeps_every_wheel(pipeline_run):
    project, _, _, _ = pipeline_run
    dist = project / ".gitlab-ci-local" / "artifacts" / "wheels" / "dist"
    built = {path.name.split("-")[0] for path in (dist / "wheels").glob("*.whl")}
    members = [*project.glob("packages/*/pyproject.toml"), project / "monitoring/pyproject.toml"]
    names = {tomllib.loads(path.read_text())["project"]["name"] for path in members}
    assert built == {name.replace("-", "_") for name in names}
    assert {path.name for path in (dist / "requirements").iterdir()} == {"api.txt", "jobs.txt"}


@pytest.mark.slow
def test_the_docs_job_keeps_the_site(pipeline_run):
    project, _, _, _ = pipeline_run
    site = project / ".gitlab-ci-local" / "artifacts" / "docs" / "site"
    assert (site / "index.html").is_file()
    assert (site / "delivery" / "CI" / "index.html").is_file()


@pytest.mark.slow
def test_the_merge_request_note_is_updated_in_place(pipeline_run):
    _, _, calls, marker = pipeline_run
    writes = [call for call in calls if call["method"] != "GET"]
    assert [(call["method"], call["path"]) for call in writes] == [
        ("PUT", "/api/v4/projects/1217/merge_requests/7/notes/2")
    ]
    assert writes[0]["body"]["body"].startswith(marker)
    assert "| metric | candidate |" in writes[0]["body"]["body"]
    assert {call["token"] for call in calls} == {"glpat-test-token"}
