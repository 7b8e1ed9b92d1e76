"""The template generates a complete project however it is given, and stays updatable by cruft.

The post-generation hook must find the reusable modules (ci/, ansible/, k8s/) whether the
template is a relative path, an absolute path, a git URL, or a cruft checkout; each case runs the
real CLI in a subprocess with a temporary HOME and cookiecutter config.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import (
    ANSWERS_FILE,
    TEMPLATE_ROOT,
    answers_for,
    isolated_env,
    run,
    tool,
    write_cookiecutter_config,
)
from cookiecutter.repository import is_repo_url

VENDORED = (".github/workflows/code-ci.yml", "k8s/README.md", "ansible/README.md")
PROJECT = answers_for({})["project"]
# Appended to a module file in the temporary template repository, to prove that a bake took its
# modules from the checkout it was given and not from this working tree.
CLONE_MARKER = "\n<!-- from the temporary template repository -->\n"
GIT_IDENTITY = ["-c", "user.name=Template Tests", "-c", "user.email=tests@example.com"]


def git(*args: str, cwd: Path) -> str:
    return run(["git", *GIT_IDENTITY, "-c", "commit.gpgsign=false", *args], cwd=cwd).stdout


def copy_working_tree(destination: Path) -> None:
    """Copy the template's tracked and untracked-but-not-ignored files, as they are now."""
    listed = run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=TEMPLATE_ROOT).stdout
    for relative in filter(None, listed.split("\0")):
        source = TEMPLATE_ROOT / relative
        if source.is_file():  # a tracked file deleted from the working tree is skipped
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def make_template_repository(destination: Path) -> Path:
    """A git repository holding the template's working tree in one commit."""
    destination.mkdir(parents=True)
    copy_working_tree(destination)
    with (destination / "k8s" / "README.md").open("a") as readme:
        readme.write(CLONE_MARKER)
    git("init", "--quiet", "--initial-branch=main", cwd=destination)
    git("add", "--all", cwd=destination)
    git("commit", "--quiet", "-m", "Template under test", cwd=destination)
    return destination


def recorded_template(project: Path) -> dict:
    """The template release and commit the project says it was made from."""
    package = answers_for({})["package"]
    return json.loads((project / f"packages/core/src/{package}_core/template.json").read_text())


def assert_composed(project: Path, from_clone: bool, commit: str) -> None:
    """The hook ran: modules vendored, answers recorded; the project names the template release
    and the commit it was rendered from."""
    for relative in VENDORED:
        assert (project / relative).is_file(), f"{relative} was not vendored"
    assert (project / ANSWERS_FILE).is_file()
    readme = (project / "k8s" / "README.md").read_text()
    assert readme.endswith(CLONE_MARKER) == from_clone
    version = (TEMPLATE_ROOT / "VERSION").read_text().strip()
    assert recorded_template(project) == {
        "name": "cookiecutter-unified-mlops",
        "version": version,
        "commit": commit,
    }


def head(repository: Path, ref: str = "HEAD") -> str:
    """The commit `ref` (a branch, a tag) names in `repository`."""
    return git("rev-parse", f"{ref}^{{commit}}", cwd=repository).strip()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sources")


@pytest.fixture(scope="module")
def env(workspace: Path) -> dict[str, str]:
    return isolated_env(workspace / "home", write_cookiecutter_config(workspace / "cookiecutter"))


@pytest.fixture(scope="module")
def template_repository(workspace: Path) -> Path:
    return make_template_repository(workspace / "template")


def cookiecutter_cli(template: str, output: Path, cwd: Path, env: dict[str, str]) -> Path:
    run([tool("cookiecutter"), "--no-input", "--output-dir", str(output), template], cwd, env)
    return output / PROJECT


def test_relative_path_from_the_template_root(tmp_path: Path, env: dict[str, str]):
    """`cookiecutter .` gives the hook a relative `_repo_dir`."""
    project = cookiecutter_cli(".", tmp_path, cwd=TEMPLATE_ROOT, env=env)
    assert_composed(project, from_clone=False, commit=head(TEMPLATE_ROOT))
    assert git("rev-list", "--count", "HEAD", cwd=project).strip() == "1"


def test_absolute_path(tmp_path: Path, env: dict[str, str]):
    project = cookiecutter_cli(str(TEMPLATE_ROOT), tmp_path / "out", cwd=tmp_path, env=env)
    assert_composed(project, from_clone=False, commit=head(TEMPLATE_ROOT))
    assert git("rev-list", "--count", "HEAD", cwd=project).strip() == "1"


def test_git_url(tmp_path: Path, env: dict[str, str], template_repository: Path):
    url = f"git+file://{template_repository}"
    assert is_repo_url(url)
    project = cookiecutter_cli(url, tmp_path / "out", cwd=tmp_path, env=env)
    assert_composed(project, from_clone=True, commit=head(template_repository))
    assert git("rev-list", "--count", "HEAD", cwd=project).strip() == "1"


def cruft_create(
    template_repository: Path, output: Path, env: dict[str, str], checkout: str | None = None
) -> Path:
    # cruft hands the URL to `git clone`, which has no `git+file` transport: plain file:// here.
    url = f"file://{template_repository}"
    at = ["--checkout", checkout] if checkout else []
    run([tool("cruft"), "create", "--no-input", *at, "--output-dir", str(output), url], output, env)
    return output / PROJECT


@pytest.fixture(scope="module")
def cruft_project(workspace: Path, env: dict[str, str], template_repository: Path) -> Path:
    output = workspace / "cruft"
    output.mkdir()
    return cruft_create(template_repository, output, env)


def test_a_copy_without_git_history_records_no_commit(tmp_path: Path, env: dict[str, str]):
    """A template downloaded as an archive has no commit to name; the version still says which
    release it is."""
    template = tmp_path / "archive"
    template.mkdir()
    copy_working_tree(template)
    project = cookiecutter_cli(str(template), tmp_path / "out", cwd=tmp_path, env=env)
    assert_composed(project, from_clone=False, commit="")


def test_cruft_create(cruft_project: Path, template_repository: Path):
    assert_composed(cruft_project, from_clone=True, commit=head(template_repository))
    state = json.loads((cruft_project / ".cruft.json").read_text())
    assert state["template"] == str(template_repository)
    assert state["commit"] == head(template_repository)
    # The hook makes the first commit under cruft too; `[tool.cruft] skip` keeps .git out of diffs.
    assert (cruft_project / ".git").is_dir()


def test_cruft_check_and_diff_find_the_project_up_to_date(cruft_project: Path, env: dict[str, str]):
    run([tool("cruft"), "check"], cwd=cruft_project, env=env)
    diff = run([tool("cruft"), "diff", "--exit-code"], cwd=cruft_project, env=env, check=False)
    assert (diff.returncode, diff.stdout) == (0, ""), diff.stdout[:2000]


def test_cruft_update_applies_a_template_change(tmp_path: Path, env: dict[str, str]):
    template = make_template_repository(tmp_path / "template")
    output = tmp_path / "out"
    output.mkdir()
    project = cruft_create(template, output, env)
    # cruft writes .cruft.json after the hook's first commit: commit it like a user would.
    git("add", "--all", cwd=project)
    git("commit", "--quiet", "-m", "Track .cruft.json", cwd=project)

    change = "A line added to the module after the project was generated.\n"
    with (template / "ansible" / "README.md").open("a") as readme:
        readme.write(change)
    git("commit", "--quiet", "--all", "-m", "Change the Ansible module", cwd=template)

    run([tool("cruft"), "update", "--skip-apply-ask"], cwd=project, env=env)
    assert (project / "ansible" / "README.md").read_text().endswith(change)
    state = json.loads((project / ".cruft.json").read_text())
    assert state["commit"] == head(template)
    # The recorded commit moves with the update: the old and the new render each name their own.
    assert recorded_template(project)["commit"] == head(template)
