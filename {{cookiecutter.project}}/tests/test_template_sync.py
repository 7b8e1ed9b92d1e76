"""delivery/template_sync.py behind `make template-link`, `template-check` and `template-update`,
for real: a tiny cookiecutter template in a git repository (commit A, tagged v0.1.0, then commit
B), a project generated from A by plain cookiecutter with this project's Makefile and delivery/
scripts, cruft from its uv tool environment, branches pushed to a local bare repository and the
pull/merge request opened on a local stand-in of the GitHub and GitLab APIs.

The tests that run cookiecutter or cruft (`uv tool run`: the package index the first time, then
uv's cache) are `slow`; the refusals that stop before cruft are not.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = (PROJECT_ROOT / "Makefile").read_text()
# cruft as the Makefile runs it (the pins live there only).
CRUFT_PIN = re.search(r"^CRUFT = \$\(UV\) (.+)$", MAKEFILE, re.MULTILINE)
# The record the template writes into every project (read by the link).
RECORD = Path("packages/core/src/{{ cookiecutter.package }}_core/template.json")


def variable(name: str, spaced: bool = True) -> str:
    """A cookiecutter variable as the tiny template writes it (built here: this file is itself
    rendered by the template that made this project)."""
    inner = f" cookiecutter.{name} " if spaced else f"cookiecutter.{name}"
    return "{" * 2 + inner + "}" * 2


# The tiny template: one templated file; commit B changes one line of it and adds a file.
SETTINGS_A = f"""\
# Settings of {variable("project")}
greeting = {variable("greeting")}
retries = 3
batch = 100
queue = jobs
region = eu
log = info
timeout = 10
"""
SETTINGS_B = SETTINGS_A.replace("timeout = 10", "timeout = 30")
NEWS_B = f"Timeout raised to 30 s. {variable('greeting')}!\n"
ANSWERS = {"project": "tiny", "greeting": "bonjour"}  # not the defaults: replayed, not guessed
FORGE_VARIABLES = ("GITHUB_", "GITLAB_", "CI_", "TEMPLATE_UPDATE_TOKEN", "GIT_", "VIRTUAL_ENV")


def uv() -> str:
    found = os.environ.get("UV") or shutil.which("uv") or str(PROJECT_ROOT / ".tools/bin/uv")
    if not Path(found).exists():
        pytest.skip("uv is not installed (`make setup` installs it into .tools/)")
    return found


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


@dataclass
class Result:
    code: int  # the script's exit code (make reports it as `Error <code>`)
    out: str


def shell_env(home: Path) -> dict[str, str]:
    """A shell's environment without any CI's variables, with a git identity and a cookiecutter
    configuration of its own (no ~/.cookiecutters, no replay files in $HOME)."""
    config = home / "config.yaml"
    config.write_text(f"cookiecutters_dir: {home / 'templates'}\nreplay_dir: {home / 'replay'}\n")
    shell = {k: v for k, v in os.environ.items() if not k.startswith(FORGE_VARIABLES)}
    identity = {"GIT_AUTHOR_NAME": "Team", "GIT_AUTHOR_EMAIL": "team@example.com"}
    identity |= {"GIT_COMMITTER_NAME": "Team", "GIT_COMMITTER_EMAIL": "team@example.com"}
    return {**shell, **identity, "COOKIECUTTER_CONFIG": str(config), "UV": uv()}


@pytest.fixture
def env(tmp_path_factory) -> dict[str, str]:
    return shell_env(tmp_path_factory.mktemp("cookiecutter"))


def make(project: Path, target: str, *variables: str, env: dict[str, str]) -> Result:
    done = subprocess.run(
        ["make", "--no-print-directory", target, *variables],
        cwd=project, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL,
        timeout=600,
    )  # fmt: skip
    out = done.stdout + done.stderr
    if done.returncode == 0:
        return Result(0, out)
    error = re.search(r"\] Error (\d+)$", done.stderr, re.MULTILINE)
    return Result(int(error.group(1)) if error else done.returncode, out)


def cruft(project: Path, *args: str, env: dict[str, str]) -> str:
    assert CRUFT_PIN, "the Makefile defines CRUFT = $(UV) tool run ... cruft"
    command = [env["UV"], *CRUFT_PIN.group(1).split(), *args]
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def commit_all(repository: Path, message: str) -> str:
    git(repository, "add", "--all")
    git(repository, "-c", "user.name=Team", "-c", "user.email=team@example.com",
        "commit", "--quiet", "-m", message)  # fmt: skip
    return git(repository, "rev-parse", "HEAD")


def add_project_files(project: Path, commit: str, version: str = "0.1.0") -> None:
    """What a project of the real template holds besides the render: this project's Makefile
    and delivery scripts, the recorded answers and the template record."""
    shutil.copy(PROJECT_ROOT / "Makefile", project / "Makefile")
    (project / ".gitignore").write_text("__pycache__/\n")  # as a project's: make runs Python
    shutil.copytree(PROJECT_ROOT / "delivery", project / "delivery",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    (project / ".cookiecutter.json").write_text(json.dumps(ANSWERS, indent=2) + "\n")
    (project / RECORD).parent.mkdir(parents=True)
    record = {"name": "cookiecutter-unified-mlops", "version": version, "commit": commit}
    (project / RECORD).write_text(json.dumps(record, indent=2) + "\n")


def new_project(folder: Path, commit: str = "", **record) -> Path:
    """A project that needs no cookiecutter run (for the refusals): committed, clean."""
    project = folder / "tiny"
    project.mkdir()
    (project / "settings.txt").write_text("greeting = bonjour\n")
    add_project_files(project, commit, **record)
    git(project, "init", "--quiet", "--initial-branch=main")
    commit_all(project, "Initial commit")
    return project


def snapshot(project: Path) -> tuple[str, str]:
    return git(project, "status", "--porcelain", "--untracked-files=all"), git(
        project, "rev-parse", "HEAD"
    )


# --- Refusals before cruft runs: exit 2, nothing written ---------------------------------------


def test_link_without_template_refuses(tmp_path, env):
    project = new_project(tmp_path, "a" * 40)
    before = snapshot(project)
    result = make(project, "template-link", env=env)
    assert result.code == 2 and "give TEMPLATE=<the template's git URL>" in result.out
    assert snapshot(project) == before and not (project / ".cruft.json").exists()


def test_link_of_a_linked_project_refuses(tmp_path, env):
    project = new_project(tmp_path, "a" * 40)
    linked = '{"template": "https://example.test/t.git", "commit": "' + "b" * 40 + '"}\n'
    (project / ".cruft.json").write_text(linked)
    result = make(project, "template-link", "TEMPLATE=https://example.test/t.git", env=env)
    assert result.code == 2 and "already linked" in result.out
    assert (project / ".cruft.json").read_text() == linked


def test_link_without_the_answers_or_a_recorded_commit_or_version_refuses(tmp_path, env):
    project = new_project(tmp_path, "", version="")
    result = make(project, "template-link", "TEMPLATE=https://example.test/t.git", env=env)
    assert result.code == 2 and "names neither a commit nor a version" in result.out
    (project / ".cookiecutter.json").unlink()
    result = make(project, "template-link", "TEMPLATE=https://example.test/t.git", env=env)
    assert result.code == 2 and ".cookiecutter.json is missing" in result.out
    assert not (project / ".cruft.json").exists()


def test_check_of_an_unlinked_project_says_how_to_link(tmp_path, env):
    project = new_project(tmp_path, "a" * 40)
    result = make(project, "template-check", env=env)
    assert result.code == 0 and "make template-link TEMPLATE=" in result.out
    strict = make(project, "template-check", "STRICT=1", env=env)
    assert strict.code == 2 and "make template-link TEMPLATE=" in strict.out


def test_update_of_an_unlinked_project_refuses(tmp_path, env):
    project = new_project(tmp_path, "a" * 40)
    before = snapshot(project)
    result = make(project, "template-update", env=env)
    assert result.code == 2 and "make template-link" in result.out
    assert snapshot(project) == before


def test_update_without_the_forge_token_refuses_before_anything_changes(tmp_path, env):
    project = new_project(tmp_path, "a" * 40)
    (project / ".cruft.json").write_text('{"template": "x", "commit": "' + "a" * 40 + '"}\n')
    commit_all(project, "Link")
    before = snapshot(project)
    for forge in ({"GITHUB_REPOSITORY": "acme/shop"}, {"GITLAB_CI": "true"}):
        result = make(project, "template-update", env={**env, **forge})
        assert result.code == 2 and "TOKEN" in result.out, result.out
    assert snapshot(project) == before


# --- The template and the project, for real ---------------------------------------------------


@dataclass
class Origin:
    template: Path  # the template repository: A (tag v0.1.0), then B
    rendered: Path  # the render of A with ANSWERS, as plain cookiecutter wrote it
    a: str
    b: str


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> Origin:
    """The tiny template at A, a project rendered from it by plain cookiecutter, then B."""
    environment = shell_env(tmp_path_factory.mktemp("cookiecutter"))
    template = tmp_path_factory.mktemp("template") / "tiny-template"
    payload = template / variable("project", spaced=False)
    payload.mkdir(parents=True)
    defaults = {"project": "tiny", "greeting": "hello"}
    (template / "cookiecutter.json").write_text(json.dumps(defaults, indent=2) + "\n")
    settings = payload / "settings.txt"
    settings.write_text(SETTINGS_A)
    git(template, "init", "--quiet", "--initial-branch=main")
    a = commit_all(template, "A")
    git(template, "tag", "v0.1.0")
    output = tmp_path_factory.mktemp("rendered")
    command = [environment["UV"], "tool", "run", "--from", "cookiecutter==2.7.1", "cookiecutter"]
    extra = [f"{key}={value}" for key, value in ANSWERS.items()]
    done = subprocess.run([*command, "--no-input", "-o", str(output), str(template), *extra],
                          env=environment, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    settings.write_text(SETTINGS_B)
    (settings.parent / "NEWS.md").write_text(NEWS_B)
    b = commit_all(template, "B: timeout 30 s")
    return Origin(template, output / "tiny", a, b)


def project_from(origin: Origin, folder: Path, team_change=None, commit: str | None = None) -> Path:
    """The rendered project with the project files, committed; `team_change(project)` runs
    before that first commit (so the template's own text of a file is not in the history)."""
    project = folder / "tiny"
    shutil.copytree(origin.rendered, project)
    add_project_files(project, origin.a if commit is None else commit)
    if team_change:
        team_change(project)
    git(project, "init", "--quiet", "--initial-branch=main")
    commit_all(project, "Initial commit from the tiny template")
    return project


def link(project: Path, origin: Origin, env: dict[str, str]) -> None:
    result = make(project, "template-link", f"TEMPLATE={origin.template}", env=env)
    assert result.code == 0, result.out
    commit_all(project, "Link to the template")


def edit(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new))


@pytest.mark.slow
def test_link_records_the_commit_made_from_and_update_brings_the_newer_one(origin, tmp_path, env):
    project = project_from(origin, tmp_path)
    before = snapshot(project)[1]
    result = make(project, "template-link", f"TEMPLATE={origin.template}", env=env)
    assert result.code == 0, result.out
    state = json.loads((project / ".cruft.json").read_text())
    assert state["commit"] == origin.a != origin.b
    assert state["checkout"] is None  # nothing pins later updates to A
    assert state["context"]["cookiecutter"]["greeting"] == "bonjour"
    assert git(project, "rev-parse", "HEAD") == before  # the link commits nothing itself
    commit_all(project, "Link to the template")
    # A later `cruft update` (no --checkout) goes to the default branch's head: B.
    cruft(project, "update", "--skip-apply-ask", env=env)
    assert json.loads((project / ".cruft.json").read_text())["commit"] == origin.b
    assert "timeout = 30" in (project / "settings.txt").read_text()
    assert (project / "NEWS.md").read_text() == "Timeout raised to 30 s. bonjour!\n"
    commit_all(project, "Update")
    check = make(project, "template-check", "STRICT=1", env=env)
    assert check.code == 0 and "up to date" in check.out
    ran = make(project, "template-update", env=env)
    assert ran.code == 0 and "up to date" in ran.out
    assert git(project, "branch", "--list", "template-update/*") == ""


@pytest.mark.slow
def test_plain_cruft_link_would_record_the_newest_commit(origin, tmp_path, env):
    """The bug the target avoids: linked without --checkout, the project looks up to date."""
    project = project_from(origin, tmp_path)
    answers = (project / ".cookiecutter.json").read_text()
    args = ["link", "--no-input", "--extra-context", answers, str(origin.template)]
    cruft(project, *args, env=env)
    assert json.loads((project / ".cruft.json").read_text())["commit"] == origin.b


@pytest.mark.slow
def test_link_without_a_commit_uses_the_release_tag(origin, tmp_path, env):
    project = project_from(origin, tmp_path, commit="")
    result = make(project, "template-link", f"TEMPLATE={origin.template}", env=env)
    assert result.code == 0 and "release tag v0.1.0" in result.out, result.out
    assert json.loads((project / ".cruft.json").read_text())["commit"] == origin.a


@pytest.mark.slow
def test_link_to_a_template_without_the_commit_or_the_tag_refuses(origin, tmp_path, env):
    project = project_from(origin, tmp_path, commit="f" * 40)
    edit(project / RECORD, '"0.1.0"', '"9.9.9"')
    commit_all(project, "A release the template never had")
    before = snapshot(project)
    result = make(project, "template-link", f"TEMPLATE={origin.template}", env=env)
    assert result.code == 2, result.out
    assert f"has no commit {'f' * 12} and no tag v9.9.9" in result.out
    assert snapshot(project) == before and not (project / ".cruft.json").exists()


@pytest.mark.slow
def test_check_says_behind_naming_both_commits(origin, tmp_path, env):
    project = project_from(origin, tmp_path)
    link(project, origin, env)
    result = make(project, "template-check", env=env)
    assert result.code == 0, result.out
    assert f"at commit {origin.a[:12]}, the template's newest is {origin.b[:12]}" in result.out
    assert "::warning" not in result.out
    on_github = make(project, "template-check", env={**env, "GITHUB_ACTIONS": "true"})
    assert on_github.code == 0
    assert re.search(r"^::warning title=Template update::.*is behind its template", on_github.out,
                     re.MULTILINE)  # fmt: skip
    strict = make(project, "template-check", "STRICT=1", env=env)
    assert strict.code == 3 and "behind" in strict.out


# --- template-update against the GitHub and GitLab stand-ins ----------------------------------


class FakeForge:
    """Pull requests (GitHub) or merge requests (GitLab) of one repository behind their REST
    paths; every call recorded."""

    def __init__(self, kind: str, drafts: bool = True):
        """`drafts=False`: a repository whose plan has no draft pull requests (GitHub)."""
        self.kind, self.requests, self.calls = kind, [], []
        self.token_header, self.token = (
            ("Authorization", "Bearer t0ken") if kind == "github" else ("PRIVATE-TOKEN", "glpat-x")
        )
        forge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def reply(self, status: int, body) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def handle_call(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                sent = json.loads(self.rfile.read(length)) if length else None
                path, _, query = self.path.partition("?")
                forge.calls.append((self.command, path, sent))
                if self.headers.get(forge.token_header) != forge.token:
                    return self.reply(401, {"message": "Bad credentials"})
                asked = {key: values[0] for key, values in urllib.parse.parse_qs(query).items()}
                if forge.kind == "github" and path == "/repos/acme/shop/pulls":
                    if self.command == "GET":
                        head = asked["head"].removeprefix("acme:")
                        return self.reply(200, [r for r in forge.requests if r["head"] == head])
                    if sent["draft"] and not drafts:
                        refused = "Draft pull requests are not supported in this repository."
                        return self.reply(422, {"message": "Validation Failed",
                                                "errors": [{"message": refused}]})  # fmt: skip
                    number = len(forge.requests) + 1
                    url = f"https://github.example/acme/shop/pull/{number}"
                    forge.requests.append({**sent, "number": number, "state": "open",
                                           "html_url": url})  # fmt: skip
                    return self.reply(201, forge.requests[-1])
                if forge.kind == "gitlab" and path == "/api/v4/projects/42/merge_requests":
                    if self.command == "GET":
                        branch = asked["source_branch"]
                        found = [r for r in forge.requests if r["source_branch"] == branch]
                        return self.reply(200, found)
                    iid = len(forge.requests) + 1
                    url = f"https://gitlab.example/team/shop/-/merge_requests/{iid}"
                    forge.requests.append({**sent, "iid": iid, "state": "opened", "web_url": url})
                    return self.reply(201, forge.requests[-1])
                return self.reply(404, {"message": f"no {self.command} {path}"})

            do_GET = do_POST = handle_call

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def writes(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path, _ in self.calls if method != "GET"]


def remote(tmp_path: Path, path: str) -> tuple[str, Path]:
    """A bare repository standing in for the forge's git server: (server URL, repository)."""
    bare = tmp_path / "server" / f"{path}.git"
    bare.parent.mkdir(parents=True)
    git(tmp_path, "init", "--quiet", "--bare", str(bare))
    return (tmp_path / "server").as_uri(), bare


@pytest.fixture
def github(tmp_path, env, request):
    forge = FakeForge("github", drafts=getattr(request, "param", True))
    server, bare = remote(tmp_path, "acme/shop")
    settings = {"GITHUB_REPOSITORY": "acme/shop", "GITHUB_TOKEN": "t0ken",
                "GITHUB_API_URL": forge.url, "GITHUB_SERVER_URL": server}  # fmt: skip
    yield forge, bare, {**env, **settings}
    forge.server.shutdown()


@pytest.fixture
def gitlab(tmp_path, env):
    forge = FakeForge("gitlab")
    server, bare = remote(tmp_path, "team/shop")
    settings = {"GITLAB_CI": "true", "GITLAB_TOKEN": "glpat-x", "CI_PROJECT_ID": "42",
                "CI_API_V4_URL": f"{forge.url}/api/v4", "CI_SERVER_URL": server,
                "CI_PROJECT_PATH": "team/shop", "CI_COMMIT_BRANCH": "main"}  # fmt: skip
    yield forge, bare, {**env, **settings}
    forge.server.shutdown()


def pushed(bare: Path, branch: str, path: str) -> str:
    return git(bare, "show", f"refs/heads/{branch}:{path}")


@pytest.mark.slow
def test_update_opens_one_pull_request_and_a_second_run_reuses_it(origin, tmp_path, github):
    forge, bare, env = github
    project = project_from(origin, tmp_path, lambda p: edit(p / "settings.txt", "retries = 3",
                                                            "retries = 5"))  # fmt: skip
    link(project, origin, env)
    main_before = git(project, "rev-parse", "main")
    result = make(project, "template-update", env=env)
    branch = f"template-update/{origin.b[:12]}"
    assert result.code == 0, result.out
    assert f"opened the request #1 from {branch} into main" in result.out
    assert forge.writes() == [("POST", "/repos/acme/shop/pulls")]
    (pull,) = forge.requests
    assert (pull["head"], pull["base"], pull["draft"]) == (branch, "main", False)
    assert pull["title"] == f"Template update: cookiecutter-unified-mlops (commit {origin.b[:12]})"
    assert origin.a in pull["body"] and origin.b in pull["body"] and "cleanly" in pull["body"]
    # The branch holds the template's change, the team's own, the new file and the new state.
    settings = pushed(bare, branch, "settings.txt")
    assert "timeout = 30" in settings and "retries = 5" in settings
    assert pushed(bare, branch, "NEWS.md") == "Timeout raised to 30 s. bonjour!"
    assert json.loads(pushed(bare, branch, ".cruft.json"))["commit"] == origin.b
    # The caller's checkout is as it was.
    assert git(project, "symbolic-ref", "--short", "HEAD") == "main"
    assert git(project, "rev-parse", "main") == main_before and snapshot(project)[0] == ""
    head = git(bare, "rev-parse", f"refs/heads/{branch}")
    again = make(project, "template-update", env=env)
    assert again.code == 0 and "reused the open request #1" in again.out, again.out
    assert len(forge.requests) == 1 and forge.writes() == [("POST", "/repos/acme/shop/pulls")]
    assert git(bare, "rev-parse", f"refs/heads/{branch}") == head  # never pushed over


@pytest.mark.slow
@pytest.mark.parametrize("github", [True, False], ids=["drafts", "no-drafts"], indirect=True)
def test_an_update_that_leaves_rejected_hunks_is_a_draft_listing_them(origin, tmp_path, github):
    """The team changed the template's line before its first commit: git has no copy of the
    template's text to merge with, so cruft leaves the hunk in settings.txt.rej. Where the
    plan has no drafts, the title says it instead."""
    forge, bare, env = github
    project = project_from(origin, tmp_path, lambda p: edit(p / "settings.txt", "timeout = 10",
                                                            "timeout = 20"))  # fmt: skip
    link(project, origin, env)
    result = make(project, "template-update", env=env)
    assert result.code == 0, result.out
    branch = f"template-update/{origin.b[:12]}"
    (pull,) = forge.requests
    if pull["draft"]:
        assert f"opened the draft request #1 from {branch}" in result.out
    else:
        assert pull["title"].startswith("[conflicts] Template update:"), pull["title"]
        assert len(forge.writes()) == 2  # the draft refused, then the pull request
    assert "did not apply cleanly" in pull["body"] and "`settings.txt.rej`" in pull["body"]
    assert "+timeout = 30" in pushed(bare, branch, "settings.txt.rej")
    assert "timeout = 20" in pushed(bare, branch, "settings.txt")  # the team's line kept
    assert pushed(bare, branch, "NEWS.md")  # what applied is committed
    assert json.loads(pushed(bare, branch, ".cruft.json"))["commit"] == origin.b


@pytest.mark.slow
def test_a_conflicting_update_on_gitlab_is_a_draft_merge_request(origin, tmp_path, gitlab):
    """The team changed the template's line in a later commit: the three-way merge leaves
    conflict markers, committed as they are, and the merge request says where."""
    forge, bare, env = gitlab
    project = project_from(origin, tmp_path)
    edit(project / "settings.txt", "timeout = 10", "timeout = 20")
    commit_all(project, "A longer timeout")
    link(project, origin, env)
    # GitLab checks out a detached HEAD; the branch is CI_COMMIT_BRANCH.
    git(project, "switch", "--quiet", "--detach", "main")
    result = make(project, "template-update", env=env)
    assert result.code == 0, result.out
    branch = f"template-update/{origin.b[:12]}"
    assert forge.writes() == [("POST", "/api/v4/projects/42/merge_requests")]
    (request,) = forge.requests
    assert (request["source_branch"], request["target_branch"]) == (branch, "main")
    assert request["title"].startswith("Draft: Template update:")
    assert "`settings.txt`: conflict markers" in request["description"]
    settings = pushed(bare, branch, "settings.txt")
    assert "<<<<<<<" in settings and "timeout = 20" in settings and "timeout = 30" in settings
    assert git(project, "rev-parse", "HEAD") == git(project, "rev-parse", "main")


@pytest.mark.slow
def test_update_without_a_forge_leaves_the_branch_local(origin, tmp_path, env):
    project = project_from(origin, tmp_path)
    link(project, origin, env)
    main_before = git(project, "rev-parse", "main")
    result = make(project, "template-update", env=env)
    branch = f"template-update/{origin.b[:12]}"
    assert result.code == 0 and f"{branch} stays local" in result.out, result.out
    assert "timeout = 30" in git(project, "show", f"{branch}:settings.txt")
    assert git(project, "rev-parse", "main") == main_before
    assert git(project, "symbolic-ref", "--short", "HEAD") == "main"
