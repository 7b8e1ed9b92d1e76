"""The app factory: settings, model store, metrics, error handlers and blueprints."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from flask import Flask

from {{ cookiecutter.package }}_core import model_source
from {{ cookiecutter.package }}_core.shared import configure_logging

from .admin import FailureLimiter
from .config import Settings
from .errors import install_error_handlers
from .json_provider import OrjsonProvider
from .metrics import Metrics
from .middleware import RequestObserver
from .model_store import ModelStore, ReloadSignal
from .routes import events, health, items, metrics, model, openapi, recommendations


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The app with its settings (environment, then `config`), model store, metrics and routes.

    The model store loads the model now and refreshes it in a thread of this process, so create
    the app in each gunicorn worker (the config does not preload), never before a fork.
    """
    settings = Settings.from_env(overrides=config)
    app = Flask(__name__)
    app.json = OrjsonProvider(app)
    app.config.update(asdict(settings))
    app.config.update({k: v for k, v in (config or {}).items() if k not in app.config})
    configure_logging(__package__, settings.LOG_LEVEL)  # JSON lines, as every command writes
    # The model source (core) logs each step of a load: resolving, downloading, verifying.
    configure_logging(model_source.__name__, settings.LOG_LEVEL)

    app_metrics = Metrics(settings.drift_summary)
    store = ModelStore(
        settings.MODEL_URI,
        tracking_uri=settings.MLFLOW_TRACKING_URI,
        refresh_seconds=settings.MODEL_REFRESH_SECONDS,
        listener=app_metrics,
        signal=ReloadSignal(settings.RELOAD_SIGNAL_DIR) if settings.RELOAD_SIGNAL_DIR else None,
    )
    app.extensions["metrics"] = app_metrics
    app.extensions["model_store"] = store
    app.extensions["admin_limiter"] = FailureLimiter(
        settings.ADMIN_MAX_FAILURES, settings.ADMIN_FAILURE_WINDOW_SECONDS
    )

    # Flask's documented way to wrap the WSGI app; mypy refuses any assignment to a method.
    app.wsgi_app = RequestObserver(app.wsgi_app, app_metrics, store)  # type: ignore[method-assign]
    install_error_handlers(app)
    blueprints = (recommendations.bp, items.bp, events.bp, model.bp, health.bp, metrics.bp)
    for blueprint in (*blueprints, openapi.bp):
        app.register_blueprint(blueprint)

    store.start()
    return app
