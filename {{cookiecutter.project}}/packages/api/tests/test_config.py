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


def test_the_admin_token_may_come_from_a_file(tmp_path):
    """A Kubernetes Secret mounted as a file: its stripped content is the token."""
    secret = tmp_path / "admin-token"
    secret.write_text("  s3cret-token\n")
    settings = Settings.from_env(environ={"ADMIN_TOKEN_FILE": str(secret), "ADMIN_TOKEN": ""})
    assert settings.ADMIN_TOKEN == "s3cret-token"
    assert Settings.from_env(environ={}).ADMIN_TOKEN is None  # neither: admin disabled


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"ADMIN_TOKEN_FILE=.*missing: cannot read the admin token: .*No such file"),
        ("", r"ADMIN_TOKEN_FILE=.*missing is empty: it must hold the admin token"),
        (" \n\t\n", r"ADMIN_TOKEN_FILE=.*missing is empty"),
        ("one\ntwo\n", r"ADMIN_TOKEN_FILE=.*missing holds more than one line"),
    ],
    ids=["missing", "empty", "blank", "two-lines"],
)
def test_an_unusable_admin_token_file_is_refused(tmp_path, content, message):
    path = tmp_path / "missing"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=message):
        Settings.from_env(environ={"ADMIN_TOKEN_FILE": str(path)})


def test_an_unreadable_admin_token_file_is_refused(tmp_path):
    folder = tmp_path / "secret"
    folder.mkdir()  # a folder where the file should be: unreadable as a token whoever runs it
    with pytest.raises(ValueError, match=r"ADMIN_TOKEN_FILE=.*secret: cannot read"):
        Settings.from_env(environ={"ADMIN_TOKEN_FILE": str(folder)})


def test_both_admin_token_settings_are_refused(tmp_path):
    secret = tmp_path / "admin-token"
    secret.write_text("from-the-file\n")
    environ = {"ADMIN_TOKEN": "from-the-env", "ADMIN_TOKEN_FILE": str(secret)}
    with pytest.raises(ValueError, match="ADMIN_TOKEN and ADMIN_TOKEN_FILE are both set"):
        Settings.from_env(environ=environ)


def test_the_app_takes_its_admin_token_from_the_file(tmp_path, artifact_dir, admin_headers):
    from {{ cookiecutter.package }}_api import create_app

    secret = tmp_path / "admin-token"
    secret.write_text(admin_headers["Authorization"].removeprefix("Bearer ") + "\n")
    config = {"MODEL_URI": str(artifact_dir), "MODEL_REFRESH_SECONDS": 0}
    app = create_app({**config, "ADMIN_TOKEN_FILE": str(secret)})
    try:
        client = app.test_client()
        assert client.get("/v1/model?detail=full", headers=admin_headers).status_code == 200
        wrong = {"Authorization": "Bearer from-the-file-not"}
        assert client.get("/v1/model?detail=full", headers=wrong).status_code == 403
    finally:
        app.extensions["model_store"].stop()


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
