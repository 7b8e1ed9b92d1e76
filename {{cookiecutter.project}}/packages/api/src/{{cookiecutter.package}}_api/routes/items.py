"""Similar items: "customers who viewed this also viewed"."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort

from ..validation import check_id, check_k, current_model, path_ids, query_args
from .recommendations import DEFAULT_K, scored_items

bp = Blueprint("items", __name__, url_prefix="/v1")
bp.url_value_preprocessor(path_ids)  # raw UTF-8 path ids read as percent-encoded ones


@bp.get("/items/<item_id>/similar")
def similar(item_id: str) -> dict[str, Any]:
    check_id(item_id, "item_id")
    k = check_k(query_args({"k"}).get("k", DEFAULT_K), from_query=True)
    model = current_model()
    answer = model.artifact.similar(item_id, k)
    if answer is None:
        abort(404, description=f"item {item_id!r} is not in the model's catalogue")
    return {
        "item_id": item_id,
        "model_version": model.version,
        "items": scored_items(answer.items, answer.scores),
    }
