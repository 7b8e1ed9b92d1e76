"""The environment the documentation's commands run in: a reader's shell with a home of its own
(the pages write to ~/projects), sharing the machine's uv cache so installs stay offline-fast."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def reader_env(home: Path) -> dict[str, str]:
    """A copy of this shell's environment with HOME in `home`: no virtualenv active, no
    cookiecutter or git configuration of the machine's, the uv cache of the real home."""
    real_cache = os.environ.get("UV_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "uv"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("VIRTUAL_ENV", "COOKIECUTTER_", "GIT_", "MLFLOW_", "PYTEST"))
        and key not in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "PYTHONPATH")
    }
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        UV_CACHE_DIR=real_cache,
        GIT_CONFIG_NOSYSTEM="1",
        DVC_NO_ANALYTICS="1",
    )
    return env


def check_lab(project: Path, number: int, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`make check-lab N=<number>` in the project, as the lab pages run it."""
    return subprocess.run(
        ["make", "--no-print-directory", "check-lab", f"N={number}"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
