"""The template release and commit this project was generated from (or last updated to by
`cruft update`): shown by every CLI's `--version`, tagged on every registered model version, and
read by `make template-link` to link a plain-cookiecutter project at the right commit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TEMPLATE: dict[str, Any] = json.loads(Path(__file__).with_name("template.json").read_text())


def describe() -> str:
    """`cookiecutter-unified-mlops 0.1.0 (commit 0123456789ab)`; "commit unknown" for a copy
    made without git."""
    commit = TEMPLATE["commit"]
    suffix = f" (commit {commit[:12]})" if commit else " (commit unknown)"
    return f"{TEMPLATE['name']} {TEMPLATE['version']}{suffix}"
