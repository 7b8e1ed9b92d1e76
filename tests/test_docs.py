"""The docs build strictly, the options table matches cookiecutter.json and the refusals quoted
in the options page are the hook's. A generated project's `make docs` (which needs its .venv
for the reference pages) is tested on the default bake, in test_default_project.py."""

import re
import subprocess
import sys

from hooks.pre_gen_project import read_choices, read_payload_pyprojects, refusal
from tests.conftest import PAYLOAD_DIR, TEMPLATE_ROOT, VENV_BIN, answers_for


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
