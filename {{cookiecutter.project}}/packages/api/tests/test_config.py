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
