"""Similar items: "customers who viewed this also viewed"."""

from __future__ import annotations

from typing import Any

import numpy as np
from flask import Blueprint, abort

from ..validation import check_id, check_k, current_model, query_args
from .recommendations import DEFAULT_K, _score

bp = Blueprint("items", __name__, url_prefix="/v1")


@bp.get("/items/<item_id>/similar")
def similar(item_id: str) -> dict[str, Any]:
    check_id(item_id, "item_id")
    k = check_k(query_args({"k"}).get("k", DEFAULT_K), from_query=True)
    model = current_model()
    artifact = model.artifact
    row = int(artifact.item_index(np.array([item_id], dtype=str))[0])
    if row < 0:
        abort(404, description=f"item {item_id!r} is not in the model's catalogue")
    neighbours = artifact.similar_items[row]
    scores = artifact.similar_scores[row]
    picked = [i for i in range(len(neighbours)) if neighbours[i] >= 0][:k]
    return {
        "item_id": item_id,
        "model_version": model.version,
        "items": [
            {"item_id": str(artifact.item_ids[neighbours[i]]), "score": _score(float(scores[i]))}
            for i in picked
        ],
    }
