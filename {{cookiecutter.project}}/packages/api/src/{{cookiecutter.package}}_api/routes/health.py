"""Liveness (the process answers) and readiness (a validated model is loaded)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> dict[str, Any]:
    store = current_app.extensions["model_store"]
    model = store.current
    if model is None:
        # The load error names the registry (an internal URL) and files: the model store logs
        # it with every failed load; the answer only says what kind of trouble it is.
        reason = "; the last load failed (see the server log)" if store.last_error else ""
        abort(503, description=f"no model is loaded{reason}")
    return {"status": "ready", "model_version": model.version}
