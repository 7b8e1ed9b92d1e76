"""Compose the generated monorepo: vendor the selected modules, prune the rest, record the
answers for `cruft update`, and make the first git commit."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

MODULES = ("ci", "ansible", "k8s")
ANSWERS_FILE = ".cookiecutter.json"


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


def vendor_module(source: Path, target: Path) -> None:
    """Copy a module folder verbatim (no Jinja), merging into what the payload rendered."""
    shutil.copytree(source, target, dirs_exist_ok=True)


def vendor_ci(template_root: Path, provider: str) -> None:
    if provider == "github":
        vendor_module(template_root / "ci" / "github", Path(".github"))
    elif provider == "gitlab":
        shutil.copyfile(template_root / "ci" / "gitlab" / "gitlab-ci.yml", ".gitlab-ci.yml")


def remove_unselected(deploy_target: str) -> None:
    if "kubernetes" not in deploy_target:
        shutil.rmtree("k8s")
    if "ansible" not in deploy_target:
        shutil.rmtree("ansible")


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


def main() -> None:
    answers = json.loads(r"""{{ cookiecutter | jsonify }}""")
    root = find_template_root(answers.get("_repo_dir", ""), "{{ template_root }}")
    for module in ("ansible", "k8s"):
        vendor_module(root / module, Path(module))
    vendor_ci(root, answers["ci_provider"])
    remove_unselected(answers["deploy_target"])
    remove_license_if_proprietary(answers["license"])
    record_answers(answers)
    git_init_and_commit(answers["author_name"], answers["author_email"])


if __name__ == "__main__":
    main()
