"""Ranking metrics (NDCG, recall, precision, MAP, hit rate, coverage) over full top-k lists."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

import numpy as np

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix


def _hits(recommended: np.ndarray, relevant: csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Boolean hits [n_eval, k_max] and relevant counts [n_eval] for users with relevance."""
    recommended = np.asarray(recommended)
    if recommended.ndim != 2:
        raise ValueError(f"recommended must be 2-D [n_users, k], got shape {recommended.shape}")
    if recommended.shape[0] != relevant.shape[0]:
        raise ValueError(
            f"recommended has {recommended.shape[0]} users, relevant has {relevant.shape[0]}"
        )
    relevant = relevant.tocsr()
    n_users, n_items = relevant.shape
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(relevant.indptr))
    positive = relevant.data != 0
    # One int64 key per (user, item) pair turns the membership test into a sorted search.
    relevant_keys = np.unique(rows[positive] * n_items + relevant.indices[positive])
    n_relevant = np.bincount(relevant_keys // max(n_items, 1), minlength=n_users)

    if recommended.size and recommended.max() >= n_items:
        raise ValueError(f"recommended holds item index {recommended.max()} >= n_items {n_items}")
    evaluated = n_relevant > 0
    recs = recommended[evaluated].astype(np.int64)
    keys = np.arange(n_users, dtype=np.int64)[evaluated, np.newaxis] * n_items + recs
    if len(relevant_keys):
        positions = np.minimum(np.searchsorted(relevant_keys, keys), len(relevant_keys) - 1)
        hits = (relevant_keys[positions] == keys) & (recs >= 0)
    else:
        hits = np.zeros(recs.shape, dtype=bool)
    return hits, n_relevant[evaluated]


def _check_k(k: int) -> None:
    if not isinstance(k, int | np.integer) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def _mean(values: np.ndarray) -> float:
    # No user with relevant items: report 0 rather than NaN (n_users_evaluated tells why).
    return float(values.mean()) if len(values) else 0.0


def _ndcg(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> float:
    hits = hits[:, :k]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = hits @ discounts[: hits.shape[1]]
    ideal = np.cumsum(discounts)[np.minimum(k, n_relevant) - 1]
    return _mean(dcg / ideal)


def _recall(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> float:
    return _mean(hits[:, :k].sum(axis=1) / n_relevant)


def _precision(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> float:
    # Divide by k even when fewer items were recommended: empty slots are misses.
    return _mean(hits[:, :k].sum(axis=1) / k)


def _map(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> float:
    hits = hits[:, :k]
    precision_at_rank = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
    average_precision = (precision_at_rank * hits).sum(axis=1) / np.minimum(k, n_relevant)
    return _mean(average_precision)


def _hit_rate(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> float:
    # any(axis=1) of a 2-D array is a 1-D array; numpy's stubs allow a scalar for any axis.
    return _mean(cast(np.ndarray, hits[:, :k].any(axis=1)))


_METRICS = {
    "ndcg": _ndcg,
    "recall": _recall,
    "precision": _precision,
    "map": _map,
    "hit_rate": _hit_rate,
}


def ndcg_at_k(recommended: np.ndarray, relevant: csr_matrix, k: int) -> float:
    """Mean binary-relevance NDCG@k (log2 discounts, ideal DCG over min(k, n_relevant))."""
    _check_k(k)
    return _ndcg(*_hits(recommended, relevant), k)


def recall_at_k(recommended: np.ndarray, relevant: csr_matrix, k: int) -> float:
    """Mean share of a user's relevant items found in the top k (hits / n_relevant)."""
    _check_k(k)
    return _recall(*_hits(recommended, relevant), k)


def precision_at_k(recommended: np.ndarray, relevant: csr_matrix, k: int) -> float:
    """Mean share of the top k slots that hold a relevant item (hits / k)."""
    _check_k(k)
    return _precision(*_hits(recommended, relevant), k)


def map_at_k(recommended: np.ndarray, relevant: csr_matrix, k: int) -> float:
    """Mean average precision truncated at k, normalised by min(k, n_relevant)."""
    _check_k(k)
    return _map(*_hits(recommended, relevant), k)


def hit_rate_at_k(recommended: np.ndarray, relevant: csr_matrix, k: int) -> float:
    """Share of users with at least one relevant item in their top k."""
    _check_k(k)
    return _hit_rate(*_hits(recommended, relevant), k)


def catalog_coverage(recommended: np.ndarray, n_items: int, k: int) -> float:
    """Share of the catalogue that appears in at least one user's top k."""
    _check_k(k)
    if n_items <= 0:
        raise ValueError(f"n_items must be positive, got {n_items}")
    top = np.asarray(recommended)[:, :k]
    shown = np.unique(top[top >= 0])
    return len(shown) / n_items


def ranking_report(
    recommended: np.ndarray, relevant: csr_matrix, ks: Iterable[int], n_items: int
) -> dict[str, float]:
    """All metrics at every k, keyed like "ndcg_at_10", plus "n_users_evaluated".

    Rows of `recommended` are users' distinct item indices best first (-1 = padding);
    `relevant` is the binary users x items matrix of held-out items. Accuracy metrics average
    over users with at least one relevant item; coverage counts every row.
    """
    ks = list(ks)
    for k in ks:
        _check_k(k)
    hits, n_relevant = _hits(recommended, relevant)
    report: dict[str, float] = {}
    for k in ks:
        for name, metric in _METRICS.items():
            report[f"{name}_at_{k}"] = metric(hits, n_relevant, k)
        report[f"coverage_at_{k}"] = catalog_coverage(recommended, n_items, k)
    report["n_users_evaluated"] = len(n_relevant)
    return report
