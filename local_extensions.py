"""Jinja extension that tells the hooks where this template lives on disk, and which release and
commit of it is being rendered.

`cookiecutter._repo_dir` is relative for `cookiecutter .` and absent under `cruft`, so the
post-generation hook cannot rely on it alone to find the reusable modules (ci/, ansible/, k8s/).
The version and commit are read from the checkout being rendered (not from cookiecutter.json),
so `cruft update`, which renders the old and the new commit, sees them change.
"""

import shutil
import subprocess
from pathlib import Path

from jinja2.ext import Extension

ROOT = Path(__file__).resolve().parent


def template_commit(root: Path = ROOT) -> str:
    """The commit checked out in `root`; "" when it is not a git checkout (a zip download)."""
    git = shutil.which("git")
    if git is None or not (root / ".git").exists():
        return ""
    result = subprocess.run(
        [git, "-C", str(root), "rev-parse", "--verify", "--quiet", "HEAD"],
        capture_output=True,
        text=True,
    )
    return result.stdout.strip() if result.returncode == 0 else ""


class TemplateRootExtension(Extension):
    """Expose `template_root` (the folder holding cookiecutter.json), `template_version` (its
    VERSION file) and `template_commit`."""

    def __init__(self, environment):
        super().__init__(environment)
        environment.globals["template_root"] = str(ROOT)
        environment.globals["template_version"] = (ROOT / "VERSION").read_text().strip()
        environment.globals["template_commit"] = template_commit()
