"""The getting-started page's commands, run as a reader runs them (slow: a bake, `make setup`
and the golden path): the page cannot promise what the template no longer does."""

from __future__ import annotations

import json
import time

import pytest
from conftest import TEMPLATE_ROOT
from doc_commands import run_page
from doc_session import check_lab, reader_env

PAGE = TEMPLATE_ROOT / "docs" / "getting-started.md"


@pytest.mark.slow
def test_the_getting_started_commands_make_a_project_with_a_served_champion(tmp_path):
    env = reader_env(tmp_path / "home")
    started = time.monotonic()
    output = run_page(PAGE, cwd=TEMPLATE_ROOT, env=env, timeout=1200)
    print(f"getting-started: {time.monotonic() - started:.0f} s")
    project = tmp_path / "home" / "projects" / "shop-recommender"
    # What the page says you get: a champion with its audit trail, the smoke test's load test,
    # the drift report on the next week.
    assert "== shop-recommender v1 (champion) ==" in output
    assert (project / "reports" / "loadtest" / "locust.html").is_file()
    summary = json.loads((project / "reports" / "drift" / "summary.json").read_text())
    assert summary["verdict"] in ("drift", "no_drift")
    assert (project / "data" / "incoming").is_dir()
    installed = check_lab(project, 1, env)
    assert installed.returncode == 0, installed.stdout + installed.stderr


def test_the_page_names_only_targets_the_makefile_has():
    """Every `make <target>` the page runs is a target of the payload or template Makefile."""
    import re

    from doc_commands import bash_blocks

    targets = set()
    for makefile in (
        TEMPLATE_ROOT / "Makefile",
        TEMPLATE_ROOT / "{{cookiecutter.project}}" / "Makefile",
    ):
        targets |= set(re.findall(r"^([a-z][a-z0-9-]*):", makefile.read_text(), re.M))
    pages = [PAGE, *sorted((TEMPLATE_ROOT / "docs" / "workshop").glob("lab-*.md"))]
    used = {
        word
        for page in pages
        for block in bash_blocks(page.read_text())
        for line in block.text.splitlines()
        for match in re.finditer(
            r"\bmake (?:--no-print-directory )?([a-z0-9-]+(?: [a-z0-9-]+)*)", line
        )
        for word in match[1].split()
    }
    assert used and used <= targets, used - targets
