"""Top-k for a user, for a session of recent items, and for a batch of users.

The rankings are the serving artifact's (`core.artifact.ServingArtifact`); these routes parse the
request, ask the artifact and write the answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flask import Blueprint, abort, current_app

from {{ cookiecutter.package }}_core.artifact import Recommendations

from ..validation import (
    check_id,
    check_ids,
    check_k,
    current_model,
    json_body,
    path_ids,
    query_args,
)

bp = Blueprint("recommendations", __name__, url_prefix="/v1")
bp.url_value_preprocessor(path_ids)  # raw UTF-8 path ids read as percent-encoded ones
DEFAULT_K = 10


@bp.get("/users/<user_id>/recommendations")
def for_user(user_id: str) -> dict[str, Any]:
    """Known user -> precomputed top-k; unknown user -> popularity. Optional exclude/category."""
    check_id(user_id, "user_id")
    args = query_args({"k", "exclude", "category"})
    k = check_k(args.get("k", DEFAULT_K), from_query=True)
    exclude = check_ids(args["exclude"].split(","), "exclude") if args.get("exclude") else []
    category = check_id(args["category"], "category") if "category" in args else None
    model = current_model()
    answer = model.artifact.recommend(user_id, k, frozenset(exclude), category)
    return {"user_id": user_id, **_answer(answer, model.version)}


@bp.post("/recommendations")
def for_session_or_batch() -> dict[str, Any]:
    """`{"items": [...], "user_id"?, "k"?}` (session) or `{"user_ids": [...], "k"?}` (batch)."""
    body = json_body({"items", "user_id", "user_ids", "k"})
    k = check_k(body.get("k", DEFAULT_K))
    if ("items" in body) == ("user_ids" in body):
        abort(400, description="give either items (a session) or user_ids (a batch), not both")
    if "user_ids" in body:
        if "user_id" in body:
            abort(400, description="user_id belongs to the session form; use user_ids alone")
        user_ids = check_ids(body["user_ids"], "user_ids", allow_empty=False)
        model = current_model()
        results = []
        for uid in user_ids:
            answer = model.artifact.recommend(uid, k)
            results.append({"user_id": uid, **_answer(answer, None)})
        return {"model_version": model.version, "k": k, "results": results}
    items = check_ids(body["items"], "items")
    user_id = check_id(body["user_id"], "user_id") if body.get("user_id") is not None else None
    model = current_model()
    # No known item in the session: the user's list, else popularity.
    answer = model.artifact.recommend_session(items, k, user_id)
    return {"user_id": user_id, **_answer(answer, model.version)}


def _answer(answer: Recommendations, version: str | None) -> dict[str, Any]:
    if answer.strategy == "popularity":
        current_app.extensions["metrics"].fallback()
    body: dict[str, Any] = {
        "strategy": answer.strategy,
        "items": scored_items(answer.items, answer.scores),
    }
    if version is not None:
        body["model_version"] = version
    return body


def scored_items(item_ids: list[str], scores: Any) -> list[dict[str, Any]]:
    """`[{"item_id", "score"}]`, scores rounded to 6 decimals in one numpy call (per item it
    took longer than the ranking). A non-finite score is written as null by the JSON encoder."""
    rounded = np.round(np.asarray(scores, dtype=np.float64), 6).tolist()
    return [
        {"item_id": item, "score": score} for item, score in zip(item_ids, rounded, strict=True)
    ]
