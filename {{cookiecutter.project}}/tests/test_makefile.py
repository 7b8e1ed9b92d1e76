"""The Makefile stays a list of aliases: every target runs at most one command, so CI steps,
Kubernetes Jobs and systemd units can run exactly what a target runs (`make -n <target>`)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = re.compile(r"^([a-z][a-z0-9-]*):(?!=)")


def recipes() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    current = None
    for line in (ROOT / "Makefile").read_text().splitlines():
        match = TARGET.match(line)
        if match:
            current = match.group(1)
            found[current] = []
        elif line.startswith("\t") and current is not None:
            found[current].append(line.strip())
        elif line.strip():
            current = None  # a variable or a comment: the recipe is over
    return found


def test_every_target_runs_at_most_one_command():
    long = {target: lines for target, lines in recipes().items() if len(lines) > 1}
    assert long == {}
    assert not [line for lines in recipes().values() for line in lines if line.endswith("\\")]


def test_every_target_has_a_help_line():
    text = (ROOT / "Makefile").read_text()
    missing = [target for target in recipes() if not re.search(rf"^{target}:.*## ", text, re.M)]
    assert missing == []


def test_make_n_prints_the_command_a_target_runs():
    printed = subprocess.run(
        ["make", "-n", "--no-print-directory", "approve", "VERSION=3", "REASON=ok"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert printed.split("run --no-sync ", 1)[1].strip() == (
        "{{ cookiecutter.project }}-registry approve --version '3' --reason 'ok'"
    )


def test_a_value_with_quotes_and_dollars_stays_one_word():
    reason = 'it\'s "bad", so; `id` $HOME'
    printed = subprocess.run(
        ["make", "-n", "--no-print-directory", "approve", "VERSION=3", f"REASON={reason}"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    command = printed.split("run --no-sync ", 1)[1].strip()
    echoed = subprocess.run(["sh", "-c", f"printf %s {command.split('--reason ', 1)[1]}"],
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert echoed == reason
