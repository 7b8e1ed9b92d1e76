"""The docs build strictly and the options table matches cookiecutter.json."""

import subprocess
import sys

from tests.conftest import TEMPLATE_ROOT, VENV_BIN


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
