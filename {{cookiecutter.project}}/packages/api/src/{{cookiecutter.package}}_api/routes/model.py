"""The served model's public description, its full lineage and the reload (admin token)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, request

from ..admin import require_admin
from ..validation import current_model

bp = Blueprint("model", __name__, url_prefix="/v1")

# What anyone may read about the served model: what identifies it (name, version, alias, run
# id, a registry source, the git commit it was built from), its kind, quality and timestamps.
# Who triggered, approved or promoted it (user@host, CI logins), data provenance (DVC hash,
# data source), parameters, server paths and the gate's reasoning are internal:
# GET /v1/model?detail=full, with the admin token. A tag not named here is internal.
PUBLIC_FIELDS = ("name", "version", "alias", "run_id", "loaded_at")
PUBLIC_LINEAGE: tuple[str, ...]  # extended below
PUBLIC_LINEAGE = ("model", "git_commit", "training_run_id", "registered_at", "promoted_at")
PUBLIC_LINEAGE += ("gate.decision",)
PUBLIC_LINEAGE_PREFIXES = ("metric.",)
PUBLIC_METADATA = ("model", "estimator")


def public_description(full: dict[str, Any]) -> dict[str, Any]:
    """The public part of `LoadedModel.describe()`."""
    source = full.get("source") or ""
    lineage = full.get("lineage", {})
    artifact = dict(full.get("artifact", {}))
    metadata = artifact.get("metadata") or {}
    artifact["metadata"] = {key: metadata[key] for key in PUBLIC_METADATA if key in metadata}
    return {
        **{key: full.get(key) for key in PUBLIC_FIELDS},
        "source": source if source.startswith("models:/") else None,  # not a file path
        "lineage": {
            key: value
            for key, value in lineage.items()
            if key in PUBLIC_LINEAGE or key.startswith(PUBLIC_LINEAGE_PREFIXES)
        },
        "artifact": artifact,
    }


@bp.get("/model")
def describe() -> dict[str, Any]:
    """The served model. Public: name, version, alias, run id, registry source, git commit,
    model kind, metrics (`metric.*`), registration and promotion timestamps, gate decision,
    artifact sizes, creation time and checksum. Actor names (`triggered_by`, `promoted_by`,
    `gate.decided_by`, approvals), data provenance, parameters, file paths and the gate's
    reasons are internal: `?detail=full` with the admin bearer token answers everything."""
    model = current_model()
    detail = request.args.get("detail", "public")
    if detail not in ("public", "full"):
        abort(400, description="detail must be 'public' or 'full'")
    if detail == "full":
        require_admin()
        return model.describe()
    return public_description(model.describe())


@bp.post("/admin/reload")
def reload() -> dict[str, Any]:
    """Check the model URI now and swap in what it points at (re-verified even if unchanged),
    in every worker of this server: the worker answering reloads now, the others within
    `SIGNAL_POLL_SECONDS` plus their load time (`scope` says which)."""
    require_admin()
    store = current_app.extensions["model_store"]
    everywhere = store.request_reload_everywhere()
    result = store.reload(force=True)
    scope = "all_workers" if everywhere else "this_process"
    if result.status == "failed":
        still = result.version or "no model"
        abort(502, description=f"reload failed, still serving {still}: {result.error}")
    return {"status": result.status, "model_version": result.version, "scope": scope}
