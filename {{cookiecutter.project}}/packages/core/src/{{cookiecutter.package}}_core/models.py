"""Recommenders as scikit-learn estimators: fit on a users x items matrix, rank items per user."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.linalg import lapack
from scipy.sparse import coo_matrix, csr_matrix
from sklearn.base import BaseEstimator
from sklearn.preprocessing import normalize
from sklearn.utils.validation import check_array, check_is_fitted

from .ranking import top_k

# Rows scored at once: a 2048 x 5000 float32 block is ~40 MB.
CHUNK_ROWS = 2048


def _as_csr(X: Any, name: str, min_rows: int = 1) -> csr_matrix:
    """Validate an interaction matrix (finite, numeric, 2-D) and return it as float CSR."""
    X = check_array(
        X,
        accept_sparse="csr",
        dtype=[np.float32, np.float64],
        ensure_min_samples=min_rows,
        input_name=name,
    )
    return csr_matrix(X)


class BaseRecommender(BaseEstimator, ABC):
    """Shared prediction, top-k and similar-items logic; subclasses implement `_fit`/`_scores`."""

    def fit(self, X: csr_matrix, y: None = None) -> BaseRecommender:
        """Learn from X, a users x items matrix of interaction weights (y is ignored)."""
        X = _as_csr(X, "X")
        self._fit(X)
        self.n_items_ = X.shape[1]
        self.n_features_in_ = X.shape[1]
        return self

    def predict_scores(self, X_rows: csr_matrix) -> np.ndarray:
        """Dense float32 scores [n_rows, n_items] for users given by their interaction rows."""
        check_is_fitted(self)
        X_rows = _as_csr(X_rows, "X_rows", min_rows=0)
        if X_rows.shape[1] != self.n_items_:
            raise ValueError(
                f"X_rows has {X_rows.shape[1]} item columns, the model was fit on {self.n_items_}"
            )
        return np.asarray(self._scores(X_rows), dtype=np.float32)

    def recommend(
        self, X_rows: csr_matrix, k: int = 10, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (item indices int32, scores float32) per row; -1/-inf pad missing slots.

        With `exclude_seen`, items with a nonzero in a user's row are never recommended.
        """
        if not isinstance(k, int | np.integer) or k <= 0:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        check_is_fitted(self)
        X_rows = _as_csr(X_rows, "X_rows", min_rows=0)
        n_rows = X_rows.shape[0]
        width = min(k, self.n_items_)
        indices = np.empty((n_rows, width), dtype=np.int32)
        scores = np.empty((n_rows, width), dtype=np.float32)
        # Chunks bound memory: dense scores for all users at once would be n_users x n_items.
        for start in range(0, n_rows, CHUNK_ROWS):
            chunk = X_rows[start : start + CHUNK_ROWS]
            block = self.predict_scores(chunk)
            indices[start : start + len(block)], scores[start : start + len(block)] = top_k(
                block, k, exclude=chunk if exclude_seen else None
            )
        return indices, scores

    def similar_items(self, item_indices: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items to show next to each given item, never the item itself.

        "Similar" is what the model would recommend to a user who interacted with that item
        alone, so every model answers it from what it learned.
        """
        if not isinstance(k, int | np.integer) or k <= 0:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        check_is_fitted(self)
        items = np.asarray(item_indices)
        if items.ndim != 1 or not np.issubdtype(items.dtype, np.integer):
            raise ValueError("item_indices must be a 1-D array of integers")
        if len(items) and (items.min() < 0 or items.max() >= self.n_items_):
            raise ValueError(f"item_indices must lie in [0, {self.n_items_})")
        width = min(k, self.n_items_)
        indices = np.empty((len(items), width), dtype=np.int32)
        scores = np.empty((len(items), width), dtype=np.float32)
        for start in range(0, len(items), CHUNK_ROWS):
            chunk = items[start : start + CHUNK_ROWS]
            one_hot = csr_matrix(
                (np.ones(len(chunk), dtype=np.float32), (np.arange(len(chunk)), chunk)),
                shape=(len(chunk), self.n_items_),
            )
            block = self._similar_scores(one_hot)
            indices[start : start + len(chunk)], scores[start : start + len(chunk)] = top_k(
                block, k, exclude=one_hot
            )
        return indices, scores

    def _similar_scores(self, one_hot: csr_matrix) -> np.ndarray:
        return self.predict_scores(one_hot)

    @abstractmethod
    def _fit(self, X: csr_matrix) -> None:
        """Set the learned attributes from a validated CSR matrix."""

    @abstractmethod
    def _scores(self, X_rows: csr_matrix) -> np.ndarray:
        """Scores [n_rows, n_items] for validated rows with the fitted number of columns."""


class PopularityRecommender(BaseRecommender):
    """Recommends the items most users interacted with; the baseline every model must beat."""

    def _fit(self, X: csr_matrix) -> None:
        if not X.has_canonical_format:
            X = X.copy()
            X.sum_duplicates()
        # One stored entry per (user, item) pair, so counting entries counts distinct users.
        self.item_users_ = np.bincount(X.indices[X.data > 0], minlength=X.shape[1])
        self.item_weights_ = np.asarray(X.sum(axis=0, dtype=np.float64)).ravel()
        # Score = dense rank mapped into (0, 1]: exact in float32 however close the weight sums
        # are, and the weight sum only breaks ties between equal user counts.
        order = np.lexsort((-self.item_weights_, -self.item_users_))
        users_sorted, weights_sorted = self.item_users_[order], self.item_weights_[order]
        new_rank = np.ones(len(order), dtype=bool)
        new_rank[1:] = (np.diff(users_sorted) != 0) | (np.diff(weights_sorted) != 0)
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.cumsum(new_rank) - 1
        self.popularity_ = (1.0 - rank / len(order)).astype(np.float32)

    def _scores(self, X_rows: csr_matrix) -> np.ndarray:
        return np.tile(self.popularity_, (X_rows.shape[0], 1))


class ItemKNNRecommender(BaseRecommender):
    """Item-based collaborative filtering with cosine similarity between item columns.

    Each item keeps its `n_neighbors` most similar items; `shrink` damps similarities that rest
    on few co-interactions: sim = dot / (norm_i * norm_j + shrink).
    """

    def __init__(self, n_neighbors: int = 200, shrink: float = 0.0) -> None:
        self.n_neighbors = n_neighbors
        self.shrink = shrink

    def _fit(self, X: csr_matrix) -> None:
        if not isinstance(self.n_neighbors, int | np.integer) or self.n_neighbors < 1:
            raise ValueError(f"n_neighbors must be a positive integer, got {self.n_neighbors!r}")
        if not self.shrink >= 0:
            raise ValueError(f"shrink must be >= 0, got {self.shrink!r}")
        n_items = X.shape[1]
        n_keep = min(int(self.n_neighbors), n_items - 1)
        X = X.astype(np.float64)
        norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=0)).ravel())
        unit = normalize(X, axis=0).tocsc()  # columns of unit length: products are cosines
        unit_t = unit.T.tocsr()
        rows, cols, vals = [], [], []
        # Column blocks of the item x item cosine matrix, densified one block at a time so
        # memory stays ~n_items x block whatever the catalogue size.
        block = max(1, min(n_items, 4_000_000 // max(n_items, 1)))
        for start in range(0, n_items, block):
            stop = min(start + block, n_items)
            sim = (unit_t @ unit[:, start:stop]).toarray()
            if self.shrink > 0:
                both = np.outer(norms, norms[start:stop])
                sim *= both / (both + self.shrink)
            sim[np.arange(start, stop), np.arange(stop - start)] = 0.0  # no self-similarity
            if n_keep == 0:
                continue
            top = np.argpartition(sim, n_items - n_keep, axis=0)[n_items - n_keep :]
            top_vals = np.take_along_axis(sim, top, axis=0)
            keep = top_vals > 0
            rows.append(top[keep])
            cols.append(np.broadcast_to(np.arange(start, stop), top.shape)[keep])
            vals.append(top_vals[keep])
        rows_all = np.concatenate(rows) if rows else np.empty(0, dtype=np.int64)
        cols_all = np.concatenate(cols) if cols else np.empty(0, dtype=np.int64)
        vals_all = np.concatenate(vals) if vals else np.empty(0)
        # S[i, j] = similarity of item i to target item j, so scores = X_rows @ S.
        self.similarity_ = coo_matrix(
            (vals_all.astype(np.float32), (rows_all, cols_all)), shape=(n_items, n_items)
        ).tocsr()

    def _scores(self, X_rows: csr_matrix) -> np.ndarray:
        return (X_rows.astype(np.float32, copy=False) @ self.similarity_).toarray()

    def _similar_scores(self, one_hot: csr_matrix) -> np.ndarray:
        # Items outside the kept neighbourhood are not similar at all: pad instead of
        # filling the list with arbitrary zero-score items.
        scores = self.predict_scores(one_hot)
        scores[scores <= 0] = -np.inf
        return scores


class EASERecommender(BaseRecommender):
    """EASE (Steck 2019): a closed-form item-item linear model with a zero diagonal.

    B = -P / diag(P) with P = (X^T X + l2 * I)^-1; larger `l2` regularises more.
    """

    def __init__(self, l2: float = 500.0) -> None:
        self.l2 = l2

    def _fit(self, X: csr_matrix) -> None:
        if not self.l2 > 0:
            raise ValueError(f"l2 must be > 0, got {self.l2!r}")
        X = X.astype(np.float64)
        gram = (X.T @ X).toarray()
        gram[np.diag_indices_from(gram)] += self.l2
        # Cholesky inverse: the Gram matrix plus l2 * I is symmetric positive definite, and
        # potrf/potri is ~2.5x faster than a general inverse.
        factor, info = lapack.dpotrf(gram, lower=False, overwrite_a=True)
        if info != 0:
            raise ValueError(f"Cholesky factorisation failed (LAPACK info={info})")
        inverse, info = lapack.dpotri(factor, lower=False, overwrite_c=True)
        if info != 0:
            raise ValueError(f"matrix inversion failed (LAPACK info={info})")
        # potri fills the upper triangle only (dpotrf zeroed the lower one): mirror it.
        inverse += np.triu(inverse, 1).T
        weights = inverse / -np.diag(inverse)
        np.fill_diagonal(weights, 0.0)
        self.item_weights_ = weights.astype(np.float32)

    def _scores(self, X_rows: csr_matrix) -> np.ndarray:
        return np.asarray(X_rows.astype(np.float32, copy=False) @ self.item_weights_)


MODELS: dict[str, type[BaseRecommender]] = {
    "popularity": PopularityRecommender,
    "itemknn": ItemKNNRecommender,
    "ease": EASERecommender,
}


def build_model(name: str, params: Mapping[str, Any] | None = None) -> BaseRecommender:
    """A fresh, unfitted model from the registry, e.g. build_model("ease", {"l2": 300.0})."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    model = MODELS[name]()
    # set_params rejects unknown parameter names with a ValueError listing the valid ones.
    return model.set_params(**dict(params or {}))
