"""Turn canonical events into a weighted users x items sparse matrix and id <-> index maps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix, csr_matrix

# The canonical events' columns the matrix reads (the data contract's events carry more).
_MATRIX_COLUMNS = ("user_id", "item_id", "event_type", "timestamp")


class IdMap:
    """Bidirectional map between string ids and contiguous indices, in sorted id order."""

    def __init__(self, ids: np.ndarray | Sequence[str]) -> None:
        # Fixed-width unicode: np.save stores it without pickle, and searchsorted on it is fast.
        ids = np.array(ids, dtype=str)
        if ids.ndim != 1:
            raise ValueError(f"ids must be 1-D, got shape {ids.shape}")
        if len(ids) > 1 and not np.all(ids[1:] > ids[:-1]):
            raise ValueError("ids must be sorted and unique; use IdMap.from_values for raw values")
        ids.setflags(write=False)
        self._ids = ids

    @classmethod
    def from_values(cls, values: np.ndarray | Sequence[str] | pd.Series) -> IdMap:
        """Build the map from raw values that may repeat and come in any order."""
        uniques = pd.unique(pd.Series(values, dtype=object).dropna())
        return cls(np.sort(np.asarray(uniques, dtype=str)))

    @property
    def ids(self) -> np.ndarray:
        """The ids in index order (read-only)."""
        return self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and np.array_equal(self._ids, other._ids)

    # Equality is by content, like numpy arrays, so maps are not hashable. None is how Python
    # says so (typeshed's own unhashable classes do the same); mypy wants object's method type.
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"IdMap(n={len(self)})"

    def index_of(self, ids: np.ndarray | Sequence[str] | pd.Series) -> np.ndarray:
        """Indices (int64) of `ids`; -1 where an id is unknown."""
        query = np.asarray(ids, dtype=str)
        if len(self._ids) == 0:
            return np.full(query.shape, -1, dtype=np.int64)
        positions = np.searchsorted(self._ids, query)
        clipped = np.minimum(positions, len(self._ids) - 1)
        return np.where(self._ids[clipped] == query, clipped, -1).astype(np.int64)


@dataclass(frozen=True)
class InteractionMatrix:
    """Users x items interaction weights with the maps that give rows and columns their ids."""

    matrix: csr_matrix
    users: IdMap
    items: IdMap


def _encode(values: pd.Series, id_map: IdMap | None) -> tuple[np.ndarray, IdMap]:
    """Indices of `values` in `id_map` (built from the values when None); -1 = unknown/null."""
    # Factorize first so the string work happens once per distinct id, not once per event.
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    uniques = np.asarray(uniques, dtype=str)
    if id_map is None:
        order = np.argsort(uniques, kind="stable")
        id_map = IdMap(uniques[order])
        lookup = np.empty(len(order), dtype=np.int64)
        lookup[order] = np.arange(len(order))
    else:
        lookup = id_map.index_of(uniques)
    # A trailing -1 makes the null code (-1) map to "unknown" without a branch.
    return np.append(lookup, -1)[codes], id_map


def _check_columns(events: pd.DataFrame, required: Sequence[str]) -> None:
    missing = [c for c in required if c not in events.columns]
    if missing:
        raise ValueError(f"events are missing columns {missing}; have {list(events.columns)}")


def _event_type_weights(event_types: pd.Series, event_weights: Mapping[str, float]) -> np.ndarray:
    codes, uniques = pd.factorize(event_types, use_na_sentinel=True)
    unknown = sorted(str(u) for u in uniques if u not in event_weights)
    if unknown or (codes < 0).any():
        raise ValueError(
            f"event types without a weight: {unknown or ['<null>']}; "
            f"weights are defined for {sorted(event_weights)}"
        )
    per_type = np.array([float(event_weights[u]) for u in uniques], dtype=np.float64)
    return per_type[codes]


def build_interaction_matrix(
    events: pd.DataFrame,
    event_weights: Mapping[str, float],
    half_life_days: float | None,
    user_map: IdMap | None = None,
    item_map: IdMap | None = None,
    now: pd.Timestamp | None = None,
) -> InteractionMatrix:
    """Sum event weights per (user, item), optionally decayed by age, into a float32 CSR matrix.

    Weight of one event = event_weights[event_type] * 0.5 ** (age_days / half_life_days), with
    age measured back from `now` (default: the latest event) and no decay when half_life_days
    is None. Maps that are given fix the rows/columns (events with other ids are dropped);
    maps that are not given are built from the events. Rows with null ids are dropped.
    """
    _check_columns(events, _MATRIX_COLUMNS)
    if half_life_days is not None and not half_life_days > 0:
        raise ValueError(f"half_life_days must be positive or None, got {half_life_days}")
    users_idx, users = _encode(events["user_id"], user_map)
    items_idx, items = _encode(events["item_id"], item_map)
    weights = _event_type_weights(events["event_type"], event_weights)

    if half_life_days is not None and len(events) > 0:
        timestamps = pd.to_datetime(events["timestamp"])
        reference = timestamps.max() if now is None else pd.Timestamp(now)
        age_days = (reference - timestamps).to_numpy() / np.timedelta64(1, "D")
        # Events after `now` are not boosted above full weight.
        weights = weights * 0.5 ** (np.clip(age_days, 0.0, None) / half_life_days)

    keep = (users_idx >= 0) & (items_idx >= 0)
    # Sum in float64, store float32: duplicates add up without rounding drift.
    matrix = coo_matrix(
        (weights[keep], (users_idx[keep], items_idx[keep])), shape=(len(users), len(items))
    ).tocsr()
    matrix = csr_matrix(matrix, dtype=np.float32)
    matrix.eliminate_zeros()  # event types weighted 0 must not look like interactions
    matrix.sort_indices()
    return InteractionMatrix(matrix=matrix, users=users, items=items)


def relevance_matrix(events: pd.DataFrame, users: IdMap, items: IdMap) -> csr_matrix:
    """Binary users x items matrix of the (user, item) pairs in `events`; unknown ids dropped."""
    _check_columns(events, ("user_id", "item_id"))
    users_idx, _ = _encode(events["user_id"], users)
    items_idx, _ = _encode(events["item_id"], items)
    keep = (users_idx >= 0) & (items_idx >= 0)
    matrix = coo_matrix(
        (np.ones(int(keep.sum()), dtype=np.float32), (users_idx[keep], items_idx[keep])),
        shape=(len(users), len(items)),
    ).tocsr()
    matrix.data[:] = 1.0  # repeated pairs were summed; relevance is yes/no
    matrix.sort_indices()
    return matrix
