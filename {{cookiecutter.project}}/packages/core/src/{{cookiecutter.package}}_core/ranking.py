"""Top-k selection over score matrices, with seen-item exclusion and -1/-inf padding."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    # Only for type hints: this module stays numpy-only so the serving artifact can use it.
    from scipy.sparse import csr_matrix

PAD_INDEX = -1


def top_k(
    scores: np.ndarray, k: int, exclude: csr_matrix | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Return the k best items per row as (indices int32, scores float32), best first.

    `scores` is [n_rows, n_items]. The nonzeros of `exclude` (same shape, e.g. the items each
    user has already seen) are never returned. The result has min(k, n_items) columns; slots
    that no eligible item fills (excluded, -inf or NaN scores) hold index -1 and score -inf. Equal
    scores within the returned k are ordered by item index.
    """
    if k <= 0:
        raise ValueError(f"k must be a positive integer, got {k}")
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D [n_rows, n_items], got shape {scores.shape}")
    n_rows, n_items = scores.shape
    if exclude is not None:
        if exclude.shape != scores.shape:
            raise ValueError(f"exclude has shape {exclude.shape}, scores have shape {scores.shape}")
        # Copy: the caller's scores must not be changed by masking.
        scores = np.array(scores, dtype=np.float32)
        exclude = exclude.tocsr()
        rows = np.repeat(np.arange(n_rows), np.diff(exclude.indptr))
        nonzero = exclude.data != 0
        scores[rows[nonzero], exclude.indices[nonzero]] = -np.inf
    else:
        scores = np.asarray(scores, dtype=np.float32)
    if np.isnan(scores).any():
        # argpartition ranks NaN above everything; treat it as "not recommendable" instead.
        scores = np.where(np.isnan(scores), np.float32(-np.inf), scores)

    k = min(k, n_items)
    if n_rows == 0 or k == 0:
        return np.empty((n_rows, k), dtype=np.int32), np.empty((n_rows, k), dtype=np.float32)
    if k < n_items:
        # argpartition is O(n_items); only the k survivors are sorted afterwards. Selecting
        # the k smallest of the negated scores is several times faster than the n - k largest
        # when most scores tie (a sparse model's zeros).
        candidates = np.argpartition(np.negative(scores), k - 1, axis=1)[:, :k]
    else:
        candidates = np.broadcast_to(np.arange(n_items), (n_rows, n_items))
    values = np.take_along_axis(scores, candidates, axis=1)
    # Sort by descending score, then ascending index, so equal scores rank deterministically.
    order = np.lexsort((candidates, -values), axis=1)
    indices = np.take_along_axis(candidates, order, axis=1).astype(np.int32)
    values = np.take_along_axis(values, order, axis=1)
    missing = values == -np.inf
    indices[missing] = PAD_INDEX
    values[missing] = -np.inf
    return indices, values
