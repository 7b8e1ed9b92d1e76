"""Recommenders as scikit-learn estimators: fit on a users x items matrix, rank items per user."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from scipy.linalg import lapack
from scipy.sparse import coo_matrix, csr_matrix
from sklearn.base import BaseEstimator
from sklearn.preprocessing import normalize
from sklearn.utils.validation import check_array, check_is_fitted

from .ranking import top_k

# Rows scored at once: a 2048 x 5000 float32 block is ~40 MB (one per thread).
CHUNK_ROWS = 2048
MAX_THREADS = 4
GIB = 2**30


class ModelTooLarge(ValueError):
    """The model would need more memory than the machine has: raised before allocating it."""


def available_memory() -> int:
    """Bytes this process can still allocate: the least of free RAM, the cgroup's headroom and
    the address-space limit (RLIMIT_AS), whichever are known."""
    import resource

    limits = []
    try:
        meminfo = Path("/proc/meminfo").read_text()
        limits.append(int(meminfo.split("MemAvailable:")[1].split()[0]) * 1024)
    except (OSError, IndexError, ValueError):
        pass
    try:
        cgroup = Path("/sys/fs/cgroup")
        maximum = (cgroup / "memory.max").read_text().strip()
        if maximum != "max":
            limits.append(int(maximum) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append(soft)
    return min(limits) if limits else 2**62


def _check_fits(model: str, needed: int) -> None:
    available = available_memory()
    if needed > available:
        raise ModelTooLarge(
            f"{model} cannot fit: needs ~{needed / GIB:.1f} GiB, "
            f"{available / GIB:.1f} GiB available"
        )


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
        width = min(k, self.n_items_)

        def block(start: int) -> tuple[np.ndarray, np.ndarray]:
            chunk = X_rows[start : start + CHUNK_ROWS]
            return top_k(self.predict_scores(chunk), k, exclude=chunk if exclude_seen else None)

        return _in_chunks(X_rows.shape[0], width, block)

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

        def block(start: int) -> tuple[np.ndarray, np.ndarray]:
            chunk = items[start : start + CHUNK_ROWS]
            one_hot = csr_matrix(
                (np.ones(len(chunk), dtype=np.float32), (np.arange(len(chunk)), chunk)),
                shape=(len(chunk), self.n_items_),
            )
            return top_k(self._similar_scores(one_hot), k, exclude=one_hot)

        return _in_chunks(len(items), width, block)

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
            # Each target item (a column) keeps its most similar source items.
            targets, sources, values = _strongest(sim.T, start, n_keep)
            rows.append(sources)
            cols.append(targets)
            vals.append(values)
        # S[i, j] = similarity of item i to target item j, so scores = X_rows @ S.
        self.similarity_ = _sparse_items(rows, cols, vals, n_items)

    def _scores(self, X_rows: csr_matrix) -> np.ndarray:
        return (X_rows.astype(np.float32, copy=False) @ self.similarity_).toarray()

    def _similar_scores(self, one_hot: csr_matrix) -> np.ndarray:
        # Items outside the kept neighbourhood are not similar at all: pad instead of
        # filling the list with arbitrary zero-score items.
        scores = self.predict_scores(one_hot)
        scores[scores <= 0] = -np.inf
        return scores


class RP3betaRecommender(BaseRecommender):
    """RP3beta (Paudel et al. 2017): three-step random walks user -> item -> user -> item on the
    interaction graph, with each target item's probability divided by its degree ** beta so
    that popular items stop dominating.

    W[i, j] = sum_u P(u | i) ** alpha * P(j | u) ** alpha / degree(j) ** beta, of which each
    item keeps its `n_neighbors` largest; scores = X_rows @ W. W is sparse, so memory grows
    with the catalogue times n_neighbors, not with its square.
    """

    def __init__(self, alpha: float = 1.0, beta: float = 0.5, n_neighbors: int = 200) -> None:
        self.alpha = alpha
        self.beta = beta
        self.n_neighbors = n_neighbors

    def _fit(self, X: csr_matrix) -> None:
        if not isinstance(self.n_neighbors, int | np.integer) or self.n_neighbors < 1:
            raise ValueError(f"n_neighbors must be a positive integer, got {self.n_neighbors!r}")
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha!r}")
        if not self.beta >= 0:
            raise ValueError(f"beta must be >= 0, got {self.beta!r}")
        n_items = X.shape[1]
        n_keep = min(int(self.n_neighbors), n_items - 1)
        X = X.astype(np.float64)
        item_to_user = normalize(X.T.tocsr(), norm="l1", axis=1)  # P(u | i)
        user_to_item = normalize(X, norm="l1", axis=1)  # P(j | u)
        if self.alpha != 1:
            item_to_user = item_to_user.power(self.alpha)
            user_to_item = user_to_item.power(self.alpha)
        degree = np.diff(X.tocsc().indptr).astype(np.float64)
        penalty = np.power(np.maximum(degree, 1.0), -float(self.beta))
        rows, cols, vals = [], [], []
        # Row blocks of the dense item x item walk matrix, one at a time (~4M cells each).
        block = max(1, min(n_items, 4_000_000 // max(n_items, 1)))
        for start in range(0, n_items, block):
            stop = min(start + block, n_items)
            walk = (item_to_user[start:stop] @ user_to_item).toarray() * penalty
            walk[np.arange(stop - start), np.arange(start, stop)] = 0.0  # no self-loop
            if n_keep == 0:
                continue
            sources, targets, values = _strongest(walk, start, n_keep)
            rows.append(sources)
            cols.append(targets)
            vals.append(values)
        self.walk_ = _sparse_items(rows, cols, vals, n_items)

    def _scores(self, X_rows: csr_matrix) -> np.ndarray:
        return (X_rows.astype(np.float32, copy=False) @ self.walk_).toarray()

    def _similar_scores(self, one_hot: csr_matrix) -> np.ndarray:
        scores = self.predict_scores(one_hot)
        scores[scores <= 0] = -np.inf  # outside the walk's reach: pad, as item-kNN does
        return scores


class ALSRecommender(BaseRecommender):
    """Matrix factorisation by alternating least squares for implicit feedback (Hu, Koren and
    Volinsky 2008), fitted by the `implicit` library: a user's interaction weight w becomes
    the confidence 1 + alpha * w that the user likes the item.

    Users given by their rows get factors by one least-squares step against the item factors,
    so any row (a training user or a new one) is scored the same way; similar items are the
    nearest item factors by cosine.
    """

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.01,
        alpha: float = 1.0,
        iterations: int = 15,
        random_state: int = 0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state

    def _fit(self, X: csr_matrix) -> None:
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        for name in ("factors", "iterations"):
            value = getattr(self, name)
            if not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.regularization >= 0 or not self.alpha > 0:
            raise ValueError(
                f"regularization must be >= 0 and alpha > 0, got {self.regularization!r}, "
                f"{self.alpha!r}"
            )
        # implicit runs its own threads; a multithreaded BLAS under them only contends.
        with threadpool_limits(1, "blas"):
            self.als_ = AlternatingLeastSquares(
                factors=int(self.factors),
                regularization=float(self.regularization),
                alpha=float(self.alpha),
                iterations=int(self.iterations),
                random_state=self.random_state,
            )
            self.als_.fit(X.astype(np.float32), show_progress=False)
        factors = self.als_.item_factors
        self.item_unit_ = normalize(factors).astype(np.float32)

    def _scores(self, X_rows: csr_matrix) -> np.ndarray:
        if X_rows.shape[0] == 0:
            return np.zeros((0, self.n_items_), dtype=np.float32)
        rows = X_rows.astype(np.float32, copy=False)
        users = self.als_.recalculate_user(np.arange(rows.shape[0]), rows)
        return np.atleast_2d(users) @ self.als_.item_factors.T

    def _similar_scores(self, one_hot: csr_matrix) -> np.ndarray:
        return self.item_unit_[one_hot.indices] @ self.item_unit_.T


class EASERecommender(BaseRecommender):
    """EASE (Steck 2019): a closed-form item-item linear model with a zero diagonal.

    B = -P / diag(P) with P = (X^T X + lambda * I)^-1. `l2` is relative to the data's scale:
    lambda = l2 * mean(x^2) over the stored interactions, so one value means the same on a 0/1
    matrix (where lambda = l2) and on one weighted 1..5 by event type; larger regularises more.
    B is a dense items x items matrix: memory grows with the square of the catalogue (about
    24 bytes per cell while fitting, 4 once fitted), checked before it is allocated.
    """

    def __init__(self, l2: float = 50.0) -> None:
        self.l2 = l2

    def _fit(self, X: csr_matrix) -> None:
        if not self.l2 > 0:
            raise ValueError(f"l2 must be > 0, got {self.l2!r}")
        n_items = X.shape[1]
        _check_fits("EASE", 24 * n_items * n_items)
        X = X.astype(np.float64)
        scale = float(np.mean(X.data**2)) if X.nnz else 1.0
        gram = (X.T @ X).toarray()
        gram[np.diag_indices_from(gram)] += self.l2 * scale
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


def _in_chunks(
    n_rows: int, width: int, block: Callable[[int], tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (indices, scores) for n_rows rows, computed CHUNK_ROWS rows at a time by
    `block(start)`. Chunks bound memory (dense scores for every user at once would be
    n_users x n_items) and run on one thread per core: the sparse products and numpy's
    partition release the GIL, and selecting the top k is most of building an artifact."""
    indices = np.empty((n_rows, width), dtype=np.int32)
    scores = np.empty((n_rows, width), dtype=np.float32)

    def fill(start: int) -> None:
        indices[start : start + CHUNK_ROWS], scores[start : start + CHUNK_ROWS] = block(start)

    starts = range(0, n_rows, CHUNK_ROWS)
    workers = min(len(starts), len(os.sched_getaffinity(0)), MAX_THREADS)
    if workers <= 1:
        for start in starts:
            fill(start)
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(fill, starts))  # list(): re-raise a block's exception here
    return indices, scores


def _strongest(
    block: np.ndarray, start: int, n_keep: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, column, value) of the n_keep largest positive entries in each row of `block`,
    rows start, start + 1, ... of an items x items matrix."""
    n_items = block.shape[1]
    top = np.argpartition(block, n_items - n_keep, axis=1)[:, n_items - n_keep :]
    values = np.take_along_axis(block, top, axis=1)
    keep = values > 0
    rows = np.broadcast_to(np.arange(start, start + len(block))[:, None], top.shape)
    return rows[keep], top[keep], values[keep]


def _sparse_items(rows: list, cols: list, vals: list, n_items: int) -> csr_matrix:
    """An items x items float32 CSR matrix from per-block (row, column, value) pieces."""
    empty = np.empty(0, dtype=np.int64)
    return coo_matrix(
        (
            np.concatenate(vals).astype(np.float32) if vals else np.empty(0, np.float32),
            (np.concatenate(rows) if rows else empty, np.concatenate(cols) if cols else empty),
        ),
        shape=(n_items, n_items),
    ).tocsr()


MODELS: dict[str, type[BaseRecommender]] = {
    "popularity": PopularityRecommender,
    "itemknn": ItemKNNRecommender,
    "rp3beta": RP3betaRecommender,
    "als": ALSRecommender,
    "ease": EASERecommender,
}


def build_model(name: str, params: Mapping[str, Any] | None = None) -> BaseRecommender:
    """A fresh, unfitted model from the registry, e.g. build_model("ease", {"l2": 300.0})."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    model = MODELS[name]()
    # set_params rejects unknown parameter names with a ValueError listing the valid ones.
    return model.set_params(**dict(params or {}))
