"""Similar items: "customers who viewed this also viewed"."""

from __future__ import annotations

from typing import Any

import numpy as np
from flask import Blueprint, abort

from ..validation import check_id, check_k, current_model, query_args
from .recommendations import DEFAULT_K, scored_items

bp = Blueprint("items", __name__, url_prefix="/v1")


@bp.get("/items/<item_id>/similar")
def similar(item_id: str) -> dict[str, Any]:
    check_id(item_id, "item_id")
    k = check_k(query_args({"k"}).get("k", DEFAULT_K), from_query=True)
    model = current_model()
    artifact = model.artifact
    row = artifact.item_position(item_id)
    if row < 0:
        abort(404, description=f"item {item_id!r} is not in the model's catalogue")
    neighbours = artifact.similar_items[row]
    picked = np.flatnonzero(neighbours >= 0)[:k]  # lists shorter than the width end in -1
    return {
        "item_id": item_id,
        "model_version": model.version,
        "items": scored_items(
            artifact.item_ids[neighbours[picked]].tolist(), artifact.similar_scores[row][picked]
        ),
    }
