"""`pipeline`: `dvc repro` with the stages' own exit codes, and what to commit afterwards.

DVC exits 255 whenever a stage fails; the stages write their code (gate failed, bad input) to a
file named by `PIPELINE_EXIT_STATUS_FILE`, and this returns it, so `make pipeline`, CI and a
Kubernetes Job see the documented exit code.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from {{ cookiecutter.package }}_core.cli import EXIT_STATUS_FILE
from {{ cookiecutter.package }}_core.shared import ExitCode

from .config import Paths
from .data_stages import check_source

# What a run changes that belongs in git: DVC's lock (data hashes), the metrics and plots.
COMMITTED_OUTPUTS = ("dvc.lock", "reports", "uv.lock")


def run_pipeline(params: dict, paths: Paths, trigger: str | None = None) -> int:
    """`dvc repro` in the project; the exit code of the stage that failed, else 0."""
    check_source(params, paths)
    with tempfile.TemporaryDirectory(prefix="pipeline-") as folder:
        status_file = Path(folder) / "exit-status"
        env = {**os.environ, "DVC_NO_ANALYTICS": "1", EXIT_STATUS_FILE: str(status_file)}
        if trigger:
            env["PIPELINE_TRIGGER"] = trigger
        command = [sys.executable, "-m", "dvc", "repro"]
        returncode = subprocess.run(command, cwd=paths.root, env=env).returncode
        if returncode == 0:
            return ExitCode.OK
        if status_file.is_file():
            return int(status_file.read_text())
    return ExitCode.FAILED


def uncommitted_outputs(paths: Paths) -> list[str]:
    """The pipeline's outputs that git has not recorded yet (empty outside a repository)."""
    try:
        result = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=all", "--", *COMMITTED_OUTPUTS],
            cwd=paths.root,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except OSError:
        return []
    if result.returncode != 0:
        return []
    return sorted({line[3:].strip() for line in result.stdout.splitlines() if line.strip()})
