"""Settings: the shared ones read as every deployable reads them, the API's own on top."""

from dataclasses import fields
from pathlib import Path

import pytest

from {{ cookiecutter.package }}_api.config import Settings
from {{ cookiecutter.package }}_core import shared


def test_shared_settings_have_core_names_and_defaults():
    settings = Settings.from_env(environ={})
    shared_fields = [setting for setting in fields(Settings) if "shared" in setting.metadata]
    assert {setting.name for setting in shared_fields} <= set(shared.SETTINGS)
    for setting in shared_fields:
        assert setting.metadata["shared"] == setting.name
        if setting.name != "MODEL_URI":
            assert getattr(settings, setting.name) == shared.setting(setting.name, {})
    assert settings.MODEL_URI == shared.model_uri({}) == f"models:/{shared.PROJECT}@champion"
    assert settings.drift_summary == shared.drift_summary_path({})


def test_the_default_model_uri_follows_the_model_name():
    assert Settings.from_env(environ={"MODEL_NAME": "shop"}).MODEL_URI == "models:/shop@champion"
    settings = Settings.from_env(environ={"MODEL_NAME": "shop"}, overrides={"MODEL_URI": "/m"})
    assert settings.MODEL_URI == "/m"


def test_environment_then_overrides_and_an_empty_value_is_unset():
    environ = {"DRIFT_REPORT_DIR": "/srv/drift", "EVENTS_LOG": "", "MAX_K": "7"}
    settings = Settings.from_env(environ=environ, overrides={"MAX_K": 9})
    assert settings.drift_summary == Path("/srv/drift/summary.json")
    assert shared.setting("EVENTS_LOG", {}) == settings.EVENTS_LOG  # the default
    assert settings.MAX_K == 9


def test_bad_numbers_and_limits_are_refused():
    with pytest.raises(ValueError, match="MAX_K='many' is not a number"):
        Settings.from_env(environ={"MAX_K": "many"})
    with pytest.raises(ValueError, match="must be >= 1"):
        Settings.from_env(environ={}, overrides={"MAX_K": 0})


def test_gunicorn_binds_loopback_unless_host_says_otherwise(monkeypatch):
    import importlib

    from {{ cookiecutter.package }}_api import gunicorn_conf

    monkeypatch.delenv("HOST", raising=False)
    monkeypatch.setenv("PORT", "8123")
    assert importlib.reload(gunicorn_conf).bind == "127.0.0.1:8123"
    monkeypatch.setenv("HOST", "0.0.0.0")
    assert importlib.reload(gunicorn_conf).bind == "0.0.0.0:8123"


def test_gunicorn_heartbeats_go_to_dev_shm_when_it_exists(monkeypatch):
    """A read-only root filesystem leaves gunicorn no writable default for its heartbeat files."""
    import importlib
    import os

    from {{ cookiecutter.package }}_api import gunicorn_conf

    real_isdir = os.path.isdir
    monkeypatch.setattr(os.path, "isdir", lambda path: path == "/dev/shm" or real_isdir(path))
    assert importlib.reload(gunicorn_conf).worker_tmp_dir == "/dev/shm"
    monkeypatch.setattr(os.path, "isdir", lambda path: path != "/dev/shm" and real_isdir(path))
    assert importlib.reload(gunicorn_conf).worker_tmp_dir is None  # gunicorn's default
    monkeypatch.undo()
    importlib.reload(gunicorn_conf)


def test_the_worker_tmp_dir_can_be_overridden(monkeypatch, tmp_path):
    """gunicorn reads GUNICORN_CMD_ARGS and the command line after the config file."""
    from gunicorn.app.wsgiapp import WSGIApplication

    package = Settings.__module__.split(".")[0]
    argv = ["gunicorn", "--config", f"python:{package}.gunicorn_conf", f"{package}.wsgi:app"]
    monkeypatch.setattr("sys.argv", argv)
    monkeypatch.delenv("GUNICORN_CMD_ARGS", raising=False)
    default = WSGIApplication().cfg.worker_tmp_dir
    assert default == ("/dev/shm" if Path("/dev/shm").is_dir() else None)
    monkeypatch.setenv("GUNICORN_CMD_ARGS", f"--worker-tmp-dir {tmp_path}")
    assert WSGIApplication().cfg.worker_tmp_dir == str(tmp_path)
