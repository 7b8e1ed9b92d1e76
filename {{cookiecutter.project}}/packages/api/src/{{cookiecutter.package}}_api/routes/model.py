"""The served model's version and lineage, and the admin reload (bearer token)."""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, abort, current_app, request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Unauthorized

from ..validation import current_model

bp = Blueprint("model", __name__, url_prefix="/v1")


@bp.get("/model")
def describe() -> dict[str, Any]:
    return current_model().describe()


@bp.post("/admin/reload")
def reload() -> dict[str, Any]:
    """Check the model URI now and swap in what it points at (re-verified even if unchanged)."""
    require_admin()
    store = current_app.extensions["model_store"]
    result = store.reload(force=True)
    if result.status == "failed":
        still = result.version or "no model"
        abort(502, description=f"reload failed, still serving {still}: {result.error}")
    return {"status": result.status, "model_version": result.version}


def require_admin() -> None:
    token = current_app.config["ADMIN_TOKEN"]
    if not token:
        abort(403, description="admin endpoints are disabled: ADMIN_TOKEN is not set")
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized(
            "an 'Authorization: Bearer <token>' header is required",
            www_authenticate=WWWAuthenticate("Bearer", {"realm": "admin"}),
        )
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        abort(403, description="the bearer token is not valid")
