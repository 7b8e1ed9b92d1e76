"""The benchmarks' tests run each benchmark as a person does: the script, from the project root."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent


@pytest.fixture
def bench() -> Callable[..., subprocess.CompletedProcess]:
    """`bench("bench_train", "--sizes", "20000")`: the script's run; it must exit 0."""

    def run(name: str, *flags: str, timeout: float = 600) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, str(BENCHMARKS / f"{name}.py"), *flags],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    return run
