"""`{{ cookiecutter.project }}-api serve`: what it runs (test_gunicorn.py runs it for real)."""

import os
import subprocess
import sys
from pathlib import Path

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


def test_serve_refuses_bad_settings_before_gunicorn_starts(tmp_path, monkeypatch, capsys):
    replaced = []
    monkeypatch.setattr(cli.os, "execv", lambda path, args: replaced.append((path, args)))
    (tmp_path / "token").write_text("from-the-file\n")
    monkeypatch.setenv("ADMIN_TOKEN", "from-the-env")
    monkeypatch.setenv("ADMIN_TOKEN_FILE", str(tmp_path / "token"))
    assert cli.main(["serve"]) == 2
    assert "ERROR: ADMIN_TOKEN and ADMIN_TOKEN_FILE are both set" in capsys.readouterr().err
    monkeypatch.delenv("ADMIN_TOKEN")
    monkeypatch.setenv("ADMIN_TOKEN_FILE", str(tmp_path / "no-such-file"))
    assert cli.main(["serve"]) == 2
    assert "cannot read the admin token" in capsys.readouterr().err
    assert replaced == []


def test_the_serve_command_exits_2_on_an_empty_token_file(tmp_path):
    """The console script itself, as a container starts it: no gunicorn, the reason, exit 2."""
    (tmp_path / "token").write_text("\n")
    command = Path(sys.executable).with_name("{{ cookiecutter.project }}-api")
    env = {**os.environ, "ADMIN_TOKEN_FILE": str(tmp_path / "token")}
    env.pop("ADMIN_TOKEN", None)
    result = subprocess.run(
        [str(command), "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert "is empty: it must hold the admin token" in result.stderr
    assert "gunicorn" not in result.stderr.lower()
