"""Top-k for a user, for a session of recent items, and for a batch of users."""

from __future__ import annotations

from typing import Any

import numpy as np
from flask import Blueprint, abort, current_app

from {{ cookiecutter.package }}_core.artifact import Recommendations, ServingArtifact

from ..validation import check_id, check_ids, check_k, current_model, json_body, query_args

bp = Blueprint("recommendations", __name__, url_prefix="/v1")
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
        for user_id in user_ids:
            answer = model.artifact.recommend(user_id, k)
            results.append({"user_id": user_id, **_answer(answer, None)})
        return {"model_version": model.version, "k": k, "results": results}
    items = check_ids(body["items"], "items")
    user_id = check_id(body["user_id"], "user_id") if body.get("user_id") is not None else None
    model = current_model()
    answer = session_recommendations(model.artifact, items, k)
    if not answer.items:  # no known item in the session: the user's list, else popularity
        answer = model.artifact.recommend(user_id or "", k, frozenset(items))
    return {"user_id": user_id, **_answer(answer, model.version)}


def session_recommendations(artifact: ServingArtifact, items: list[str], k: int) -> Recommendations:
    """Sum the similarity scores of the session items' neighbours, minus the session items."""
    rows = np.unique([row for row in map(artifact.item_position, items) if row >= 0]).astype(int)
    if len(rows) == 0:
        return Recommendations([], [], "session")
    candidates = artifact.similar_items[rows].ravel()
    scores = artifact.similar_scores[rows].ravel().astype(np.float64)
    keep = (candidates >= 0) & np.isfinite(scores) & ~np.isin(candidates, rows)
    unique, inverse = np.unique(candidates[keep], return_inverse=True)
    totals = np.bincount(inverse, weights=scores[keep], minlength=len(unique))
    # Highest total first; ties broken by catalogue position, so answers are deterministic.
    order = np.lexsort((unique, -totals))[:k]
    return Recommendations(
        [str(artifact.item_ids[i]) for i in unique[order]],
        [float(s) for s in totals[order]],
        "session",
    )


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
