"""The Makefile stays a list of aliases: every target runs at most one command, so CI steps,
Kubernetes Jobs and systemd units can run exactly what a target runs (`make -n <target>`)."""

from __future__ import annotations

import os
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
        "{{ cookiecutter.project }}-registry approve --version '3' --reason \"$REASON\""
    )


def test_free_text_from_the_environment_reaches_the_command_as_it_is(tmp_path):
    """A rollback reason typed into a CI form: CI passes it in the environment, and neither make
    nor the shell runs anything written in it."""
    marker = tmp_path / "ran"
    reason = f'it\'s "bad", so; `touch {marker}` $(touch {marker}) $(shell touch {marker}) $$H'
    fake_uv = tmp_path / "uv"  # prints the arguments it gets, one per line
    fake_uv.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    fake_uv.chmod(0o755)
    printed = subprocess.run(
        ["make", "-s", "--no-print-directory", "rollback", f"UV={fake_uv}"],
        cwd=ROOT, env={**os.environ, "REASON": reason, "TO": "2"},
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert printed.splitlines()[-4:] == ["--reason", reason, "--to", "2"]
    assert not marker.exists()
