"""Jinja extension that tells the hooks where this template lives on disk.

`cookiecutter._repo_dir` is relative for `cookiecutter .` and absent under `cruft`, so the
post-generation hook cannot rely on it alone to find the reusable modules (ci/, ansible/, k8s/).
"""

from pathlib import Path

from jinja2.ext import Extension


class TemplateRootExtension(Extension):
    """Expose `template_root`: the absolute path of the folder holding cookiecutter.json."""

    def __init__(self, environment):
        super().__init__(environment)
        environment.globals["template_root"] = str(Path(__file__).resolve().parent)
