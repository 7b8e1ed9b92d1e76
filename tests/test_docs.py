"""The docs build strictly, the options table matches cookiecutter.json and the refusals quoted
in the options page are the hook's."""

import re
import subprocess
import sys

import pytest

from hooks.pre_gen_project import read_choices, read_payload_pyprojects, refusal
from tests.conftest import PAYLOAD_DIR, TEMPLATE_ROOT, VENV_BIN, answers_for, bake, run, tool


def test_options_table_is_generated_from_cookiecutter_json():
    result = subprocess.run(
        [sys.executable, "scripts/options_table.py", "--check"],
        cwd=TEMPLATE_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout


def test_mkdocs_builds_strictly(tmp_path):
    result = subprocess.run(
        [str(VENV_BIN / "mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=TEMPLATE_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "decisions" / "0003-serving-artifact" / "index.html").is_file()


def test_the_refusals_in_the_options_page_are_the_hooks():
    """Each `ERROR: field: 'value' ...` line of docs/options.md is what the hook prints for it."""
    defaults = answers_for({})
    choices = read_choices(TEMPLATE_ROOT)
    pyprojects = read_payload_pyprojects(PAYLOAD_DIR, defaults)
    text = (TEMPLATE_ROOT / "docs" / "options.md").read_text()
    lines = sorted(set(re.findall(r"ERROR: (\w+): '([^']*)'([^`\n]*)", text)))
    assert len(lines) >= 8
    for field, value, rest in lines:
        message = refusal({**defaults, field: value}, choices, pyprojects)
        assert message == f"{field}: {value!r}{rest}"


@pytest.mark.slow
def test_generated_project_docs_build_and_catch_a_broken_link(tmp_path, cookiecutter_config):
    """`make docs` in a bake: every README and .md of the project becomes a page, and a link to
    a page that does not exist fails the build."""
    project = bake(tmp_path, cookiecutter_config)
    uv = f"UV={tool('uv')}"
    built = run(["make", "--no-print-directory", "docs", uv], cwd=project)
    site = project / "site"
    for page in ("index.html", "delivery/index.html", "k8s/index.html", "ansible/index.html"):
        assert (site / page).is_file(), built.stdout
    readme = project / "loadtest" / "README.md"
    readme.write_text(readme.read_text() + "\nSee [the old guide](../guides/old.md).\n")
    broken = run(["make", "--no-print-directory", "docs", uv], cwd=project, check=False)
    assert broken.returncode != 0
    assert "guides/old.md" in broken.stderr + broken.stdout
