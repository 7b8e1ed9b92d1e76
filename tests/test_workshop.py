"""The workshop's six labs run in order on a fresh default bake, as a participant runs them
(slow): each lab's `make check-lab N=k` fails (Error 3, naming what is missing) before its
steps and passes after them, and every ```bash block of its page runs."""

from __future__ import annotations

import time

import pytest
from conftest import TEMPLATE_ROOT, bake, free_port, write_cookiecutter_config
from doc_commands import run_page
from doc_session import check_lab, reader_env

LABS = TEMPLATE_ROOT / "docs" / "workshop"


def assert_not_done(result, lab: int) -> None:
    text = result.stdout + result.stderr
    assert result.returncode != 0, f"lab {lab}'s check passed before its steps:\n{text}"
    assert "Error 3" in result.stderr, text  # the checker's own code, through make
    assert f"lab {lab} (" in result.stdout and "not done yet" in result.stdout, text
    assert "MISSING" in result.stdout and "run: " in result.stdout, text


@pytest.mark.slow
def test_each_lab_is_not_done_before_its_steps_and_done_after(tmp_path):
    home = tmp_path / "home"
    env = reader_env(home)
    project = home / "projects" / "shop-recommender"
    # Lab 1 makes the project: its "before" is a project generated but not set up.
    generated = bake(tmp_path / "before", write_cookiecutter_config(tmp_path / "cc"))
    assert_not_done(check_lab(generated, 1, env), 1)
    # The labs' API and MLflow UI ports (8000, 5000) are also those of the dev overlay's pods in
    # tests/test_k8s_contract.py, which may run at the same time: the session gets free ones.
    ports = {8000: free_port(), 5000: free_port()}
    timings = {}
    for lab in range(1, 7):
        if lab > 1:
            assert_not_done(check_lab(project, lab, env), lab)
        started = time.monotonic()
        run_page(LABS / f"lab-{lab}.md", cwd=TEMPLATE_ROOT, env=env, timeout=900, ports=ports)
        timings[lab] = time.monotonic() - started
        done = check_lab(project, lab, env)
        assert done.returncode == 0, f"lab {lab} done, its check says:\n{done.stdout}{done.stderr}"
        assert f"lab {lab} (" in done.stdout and "): done" in done.stdout
    print("workshop timings: " + ", ".join(f"lab {n} {s:.0f} s" for n, s in timings.items()))


def test_the_schedule_lists_every_lab():
    index = (LABS / "index.md").read_text()
    for lab in range(1, 7):
        assert f"(lab-{lab}.md)" in index
        assert "make check-lab N=" in (LABS / f"lab-{lab}.md").read_text()
