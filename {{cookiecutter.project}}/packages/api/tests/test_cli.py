"""`{{ cookiecutter.project }}-api serve`: what it runs (test_gunicorn.py runs it for real)."""

import subprocess
import sys

import pytest

from {{ cookiecutter.package }}_api import cli


def test_serve_runs_gunicorn_with_the_package_config_and_app():
    package = cli.__package__
    assert cli.gunicorn_command() == [
        sys.executable,
        *("-m", "gunicorn", "--config", f"python:{package}.gunicorn_conf", f"{package}.wsgi:app"),
    ]


def test_serve_replaces_the_process_with_gunicorn(monkeypatch):
    replaced = []
    monkeypatch.setattr(cli.os, "execv", lambda path, args: replaced.append((path, args)))
    cli.main(["serve"])
    assert replaced == [(sys.executable, cli.gunicorn_command())]


def test_the_command_and_serve_have_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    assert cli.SERVE_HELP in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    text = capsys.readouterr().out
    assert "gunicorn config" in text
    for variable in ("PORT", "WEB_CONCURRENCY", "GUNICORN_THREADS", "LOG_LEVEL"):
        assert variable in text


def test_without_a_command_it_says_so():
    result = subprocess.run(
        [sys.executable, "-m", cli.__name__], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "serve" in result.stderr
