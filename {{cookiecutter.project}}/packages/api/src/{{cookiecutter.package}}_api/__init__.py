"""Recommendation API: `create_app()` builds the Flask app that serves the champion model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["create_app"]


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The Flask app; see `app.create_app`."""
    # Imported on call: gunicorn's master imports this package to read `gunicorn_conf`, and must
    # not import prometheus-client before the config has chosen its multiprocess folder.
    from .app import create_app as build

    return build(config)
