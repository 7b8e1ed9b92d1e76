"""Compose the generated monorepo: vendor the selected modules, prune what was not selected,
record the answers for `cruft update`, make the first git commit and say what to run next."""

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

MODULES = ("ci", "ansible", "k8s")
ANSWERS_FILE = ".cookiecutter.json"
# The deployment modules by the word that selects them in `deploy_target` ("kubernetes+ansible").
DEPLOY_MODULES = {"kubernetes": "k8s", "ansible": "ansible"}
# What the user runs first; the template README's "Generate your own project" says the same.
NEXT_COMMANDS = ("make setup", "make data pipeline")


def find_template_root(repo_dir: str, extension_root: str) -> Path:
    """Locate the template checkout that holds the reusable modules.

    `_repo_dir` is absolute for git URLs and absolute paths, relative for `cookiecutter .`
    and missing under cruft; the Jinja extension's own path covers those two cases.
    """
    for candidate in (repo_dir, extension_root):
        path = Path(candidate) if candidate else None
        if path and path.is_absolute() and all((path / m).is_dir() for m in MODULES):
            return path
    sys.exit(
        "ERROR: cannot find the template's ci/, ansible/ and k8s/ modules "
        f"(tried {repo_dir!r} and {extension_root!r})"
    )


def select_modules(answers: dict) -> dict[str, str]:
    """The module paths (in the template) to vendor, mapped to their place in the project."""
    modules = {}
    if answers["ci_provider"] == "github":
        modules["ci/github"] = ".github"
    elif answers["ci_provider"] == "gitlab":
        modules["ci/gitlab/gitlab-ci.yml"] = ".gitlab-ci.yml"
    if answers["ci_provider"] in ("github", "gitlab"):
        modules["ci/README.md"] = "delivery/CI.md"  # how the pipeline works, for its users
    for word in answers["deploy_target"].split("+"):
        if word in DEPLOY_MODULES:
            modules[DEPLOY_MODULES[word]] = DEPLOY_MODULES[word]
    return modules


def vendor_module(source: Path, target: Path) -> None:
    """Copy a module file or folder verbatim (no Jinja), merging into what the payload rendered."""
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    else:
        shutil.copyfile(source, target)


def vendor_selected_modules(template_root: Path, answers: dict) -> None:
    for source, target in select_modules(answers).items():
        vendor_module(template_root / source, Path(target))


def remove_unselected_modules(deploy_target: str) -> None:
    """Remove the payload's rendered files of a deployment module that was not selected."""
    selected = deploy_target.split("+")
    for word, folder in DEPLOY_MODULES.items():
        if word not in selected and Path(folder).exists():
            shutil.rmtree(folder)


def remove_license_if_proprietary(license_name: str) -> None:
    if license_name == "Proprietary":
        Path("LICENSE").unlink()


def record_answers(answers: dict[str, str]) -> None:
    public = {key: value for key, value in answers.items() if not key.startswith("_")}
    Path(ANSWERS_FILE).write_text(json.dumps(public, indent=2, sort_keys=True) + "\n")


def git_init_and_commit(author_name: str, author_email: str) -> None:
    if shutil.which("git") is None:
        print("WARNING: git not found; skipped `git init` (DVC experiments need a repository)")
        return
    # Fall back to the author's identity only where the user has none configured.
    identity = {
        "GIT_AUTHOR_NAME": author_name,
        "GIT_AUTHOR_EMAIL": author_email,
        "GIT_COMMITTER_NAME": author_name,
        "GIT_COMMITTER_EMAIL": author_email,
    }
    configured = subprocess.run(
        ["git", "config", "user.email"], capture_output=True, text=True
    ).stdout.strip()
    env = os.environ if configured else {**os.environ, **identity}
    run = lambda *args: subprocess.run(["git", *args], check=True, env=env, capture_output=True)  # noqa: E731
    run("init", "--quiet", "--initial-branch=main")
    run("add", "--all")
    run("commit", "--quiet", "--no-verify", "-m", "Initial commit from cookiecutter-unified-mlops")


def print_next_commands(project_dir: Path, shell_dir: str | None) -> None:
    """Say what to run first, starting with a `cd` from the user's shell folder (its $PWD):
    a relative path when the project was made below it, else the full path."""
    folder = project_dir
    if shell_dir and project_dir.is_relative_to(Path(shell_dir).resolve()):
        folder = project_dir.relative_to(Path(shell_dir).resolve())
    print(f"{project_dir.name} is ready. Next:")
    for command in (f"cd {shlex.quote(str(folder))}", *NEXT_COMMANDS):
        print(f"  {command}")


def main() -> None:
    answers = json.loads(r"""{{ cookiecutter | jsonify }}""")
    root = find_template_root(answers.get("_repo_dir", ""), "{{ template_root }}")
    remove_unselected_modules(answers["deploy_target"])
    vendor_selected_modules(root, answers)
    remove_license_if_proprietary(answers["license"])
    record_answers(answers)
    git_init_and_commit(answers["author_name"], answers["author_email"])
    # cruft (whose context has `_commit`) also renders the template into a temporary folder
    # for every check, diff and update, where a `cd` would only mislead.
    if "_commit" not in answers:
        print_next_commands(Path.cwd().resolve(), os.environ.get("PWD"))


if __name__ == "__main__":
    main()
