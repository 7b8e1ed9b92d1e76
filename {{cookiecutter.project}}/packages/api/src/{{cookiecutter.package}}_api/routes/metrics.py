"""Prometheus exposition."""

from __future__ import annotations

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    registry = current_app.extensions["metrics"].exposition_registry()
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
