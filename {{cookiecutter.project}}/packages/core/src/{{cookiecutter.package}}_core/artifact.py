"""The serving artifact: precomputed recommendations as compact numpy arrays plus a JSON manifest.

It needs numpy only, so the API can load it without the training stack. Every array file is
checksummed in the manifest; `load` refuses an artifact whose files do not match. Every ranking
that serves from it (a user, a session, similar items; the API and the batch export) is a method
here, next to the consistency checks whose invariants (sorted ids, -1 padding, indices inside
`item_ids`) it relies on: that is why this module runs past 300 lines.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .cli import BadInput

# 2 added `popular_scores`. An artifact of format 1 still loads: its popularity answers carry
# score 0.0, as they did when it was written.
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
MANIFEST = "manifest.json"
# name -> (dtype kind, number of dimensions); dtype kind "U" is a fixed-width unicode string.
ARRAYS: dict[str, tuple[str, int]] = {
    "user_ids": ("U", 1),
    "item_ids": ("U", 1),
    "item_categories": ("U", 1),
    "user_top_items": ("i", 2),
    "user_top_scores": ("f", 2),
    "similar_items": ("i", 2),
    "similar_scores": ("f", 2),
    "popular_items": ("i", 1),
    "popular_scores": ("f", 1),
}
# Arrays a format before the one named does not have.
ADDED_IN_FORMAT = {"popular_scores": 2}


class ArtifactError(BadInput, ValueError):
    """The artifact is missing, corrupt or inconsistent."""


@dataclass(frozen=True)
class Recommendations:
    """Top-k for one request: item ids, their scores and which strategy produced them."""

    items: list[str]
    scores: list[float]
    strategy: str


@dataclass(frozen=True)
class ServingArtifact:
    """Top-N per known user, similar items per item, a popularity fallback, and the id maps.

    Item indices everywhere refer to positions in `item_ids`; -1 pads rows with fewer items.
    `user_ids` and `item_ids` are sorted so that lookups are binary searches.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    item_categories: np.ndarray
    user_top_items: np.ndarray
    user_top_scores: np.ndarray
    similar_items: np.ndarray
    similar_scores: np.ndarray
    popular_items: np.ndarray
    # The popularity model's score of each of `popular_items`; None (an artifact of format 1,
    # or one built without them): 0.0 for each.
    popular_scores: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # id -> position, once `index_ids` has built them; binary searches until then.
    _user_rows: dict[str, int] | None = field(default=None, init=False, repr=False, compare=False)
    _item_positions: dict[str, int] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.popular_scores is None:
            zeros = np.zeros(len(self.popular_items), dtype=np.float32)
            object.__setattr__(self, "popular_scores", zeros)
        self.check_consistency()

    # -- lookups -------------------------------------------------------------------------

    def index_ids(self) -> None:
        """Build dicts from user and item id to position, for the one-id lookups below.

        A dict lookup keeps the GIL; numpy's binary search releases it, and under gunicorn
        threads getting it back behind busy threads took about 0.4 ms per lookup (measured with
        one busy thread). It costs about 100 bytes per id, so the API, which answers one user
        at a time from threads, builds it; the batch export (memory-mapped, bulk lookups) does
        not.
        """
        object.__setattr__(self, "_user_rows", _positions(self.user_ids))
        object.__setattr__(self, "_item_positions", _positions(self.item_ids))

    def user_row(self, user_id: str) -> int:
        """Row of one user in `user_top_items`, -1 for a user the model has not seen."""
        if self._user_rows is not None:
            return self._user_rows.get(user_id, -1)
        return _position(self.user_ids, user_id)

    def item_position(self, item_id: str) -> int:
        """Position of one item in `item_ids`, -1 for an unknown item."""
        if self._item_positions is not None:
            return self._item_positions.get(item_id, -1)
        return _position(self.item_ids, item_id)

    def user_index(self, user_ids: np.ndarray) -> np.ndarray:
        """Row of each user in `user_top_items`, -1 for users the model has not seen."""
        return _lookup(self.user_ids, np.asarray(user_ids, dtype=str))

    def item_index(self, item_ids: np.ndarray) -> np.ndarray:
        """Position of each item in `item_ids`, -1 for unknown items."""
        return _lookup(self.item_ids, np.asarray(item_ids, dtype=str))

    def top_items_for_users(self, user_ids: np.ndarray, k: int) -> np.ndarray:
        """Item indices [n_users, k]: the precomputed top-k, or popularity for unknown users."""
        rows = self.user_index(user_ids)
        k_user = min(k, self.user_top_items.shape[1])
        out = np.full((len(rows), k), -1, dtype=np.int32)
        known = rows >= 0
        out[known, :k_user] = self.user_top_items[rows[known], :k_user]
        k_pop = min(k, len(self.popular_items))
        out[~known, :k_pop] = self.popular_items[:k_pop]
        return out

    def recommend(
        self,
        user_id: str,
        k: int = 10,
        exclude: frozenset[str] | set[str] = frozenset(),
        category: str | None = None,
        unavailable: np.ndarray | None = None,
    ) -> Recommendations:
        """Top-k item ids for one user (popularity for an unknown one), without the `exclude`d
        items and the `unavailable` ones (a boolean mask over `item_ids`), and only items of
        `category` if one is given. The API answers through here, the batch export through
        `rank_row`: one ranking for both."""
        row = self.user_row(user_id)
        items, scores, strategy = self.rank_row(row, k, exclude, category, unavailable)
        return Recommendations(self.item_ids[items].tolist(), scores.tolist(), strategy)

    def rank_row(
        self,
        row: int,
        k: int = 10,
        exclude: frozenset[str] | set[str] = frozenset(),
        category: str | None = None,
        unavailable: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, str]:
        """The ranking behind `recommend`, for the user at `row` of `user_ids` (-1: a user the
        model has not seen): positions in `item_ids`, their scores (for popularity, the
        popularity model's) and the strategy. Batch jobs use it to build columns without Python
        strings."""
        scores: np.ndarray
        if row >= 0:
            candidates, scores = self.user_top_items[row], self.user_top_scores[row]
            strategy = "personalized"
        else:
            assert self.popular_scores is not None  # filled in by __post_init__
            candidates, scores = self.popular_items, self.popular_scores
            strategy = "popularity"
        if len(candidates) and candidates[-1] < 0:  # a short list, padded with -1
            candidates = candidates[: int(np.argmax(candidates < 0))]
            scores = scores[: len(candidates)]
        chosen: slice | np.ndarray
        if not exclude and category is None and unavailable is None:
            chosen = slice(0, k)  # the API's hot path: no filter, the first k are the answer
        else:
            keep = np.ones(len(candidates), dtype=bool)
            if exclude:
                excluded = [self.item_position(item) for item in exclude]
                keep &= ~np.isin(candidates, [position for position in excluded if position >= 0])
            if category is not None:
                keep &= self.item_categories[candidates] == category
            if unavailable is not None:
                keep &= ~unavailable[candidates]
            chosen = np.flatnonzero(keep)[:k]
        return candidates[chosen], scores[chosen], strategy

    def recommend_session(
        self, items: Sequence[str], k: int = 10, user_id: str | None = None
    ) -> Recommendations:
        """Top-k for a session of recent `items`: the similarity scores of their neighbours
        summed, without the session's own items (strategy "session"); unknown items are ignored,
        repeated ones count once. When that leaves nothing (no known item, or no neighbour outside
        the session), `user_id`'s top-k without the session items: popularity for no user or an
        unknown one."""
        rows = np.unique([row for row in map(self.item_position, items) if row >= 0]).astype(int)
        candidates = self.similar_items[rows].ravel()
        scores = self.similar_scores[rows].ravel().astype(np.float64)
        keep = (candidates >= 0) & np.isfinite(scores) & ~np.isin(candidates, rows)
        unique, inverse = np.unique(candidates[keep], return_inverse=True)
        if len(unique) == 0:
            return self.recommend(user_id or "", k, frozenset(items))  # no id is empty
        totals = np.bincount(inverse, weights=scores[keep], minlength=len(unique))
        # Highest total first; ties broken by catalogue position, so answers are deterministic.
        order = np.lexsort((unique, -totals))[:k]
        return Recommendations(
            self.item_ids[unique[order]].tolist(), totals[order].tolist(), "session"
        )

    def similar(self, item_id: str, k: int = 10) -> Recommendations | None:
        """The k items most similar to `item_id`, best first (strategy "similar"); None for an
        item not in `item_ids`."""
        row = self.item_position(item_id)
        if row < 0:
            return None
        neighbours = self.similar_items[row]
        picked = np.flatnonzero(neighbours >= 0)[:k]  # lists shorter than the width end in -1
        return Recommendations(
            self.item_ids[neighbours[picked]].tolist(),
            self.similar_scores[row][picked].tolist(),
            "similar",
        )

    def release_memory(self) -> None:
        """Give back the pages of memory-mapped arrays read so far (no-op for loaded ones)."""
        for name in ARRAYS:
            _release(getattr(self, name))

    # -- persistence ---------------------------------------------------------------------

    def save(self, directory: Path) -> dict[str, Any]:
        """Write the arrays and the manifest atomically (a temp folder renamed into place)."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
        files = {}
        for name in ARRAYS:
            path = staging / f"{name}.npy"
            np.save(path, getattr(self, name), allow_pickle=False)
            array = getattr(self, name)
            files[path.name] = {
                "sha256": sha256_file(path),
                "dtype": array.dtype.str,
                "shape": list(array.shape),
            }
        manifest = {
            "format_version": FORMAT_VERSION,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "n_users": len(self.user_ids),
            "n_items": len(self.item_ids),
            "top_n": int(self.user_top_items.shape[1]),
            "similar_n": int(self.similar_items.shape[1]),
            "metadata": self.metadata,
            "files": files,
            "checksum": _files_checksum(files),
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        # Readable by every user, whatever the umask: the API may run as another user than the
        # pipeline (a container mounting the folder); mkdtemp alone would leave it 0700.
        for path in staging.iterdir():
            path.chmod(0o644)
        staging.chmod(0o755)
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(staging, directory)
        return manifest

    @classmethod
    def load(cls, directory: Path, memory_map: bool = False) -> ServingArtifact:
        """Read and verify an artifact; raise ArtifactError naming what is wrong.

        `memory_map` maps the arrays from their files instead of reading them: a job that
        walks every user (the batch export) then holds only the rows it is working on, if it
        calls `release_memory` as it goes. The files must stay until the artifact is dropped.
        """
        directory = Path(directory)
        manifest = read_manifest(directory)
        arrays = {}
        for name in ARRAYS:
            filename = f"{name}.npy"
            expected = manifest["files"].get(filename)
            if expected is None and manifest["format_version"] < ADDED_IN_FORMAT.get(name, 1):
                continue  # written before this array existed
            path = directory / filename
            if expected is None or not path.is_file():
                raise ArtifactError(f"{directory}: missing array file {filename}")
            if sha256_file(path) != expected["sha256"]:
                raise ArtifactError(f"{directory}: checksum mismatch for {filename}")
            try:
                array = np.load(path, allow_pickle=False, mmap_mode="r" if memory_map else None)
                # A plain view of the mapping: indexing an np.memmap row by row is slow.
                arrays[name] = np.asarray(array)
            except ValueError as error:
                raise ArtifactError(f"{directory}: cannot read {filename}: {error}") from error
        return cls(**arrays, metadata=manifest.get("metadata", {}))

    def check_consistency(self) -> None:
        """Raise ArtifactError when array kinds or shapes disagree with each other."""
        for name, (kind, ndim) in ARRAYS.items():
            array = getattr(self, name)
            if array.dtype.kind != kind or array.ndim != ndim:
                raise ArtifactError(
                    f"array {name} is {array.dtype}/{array.ndim}-d, expected kind {kind}/{ndim}-d"
                )
        n_users, n_items = len(self.user_ids), len(self.item_ids)
        checks = [
            (self.user_top_items.shape[0] == n_users, "user_top_items rows != number of users"),
            (self.user_top_scores.shape == self.user_top_items.shape, "user scores shape"),
            (self.similar_items.shape[0] == n_items, "similar_items rows != number of items"),
            (self.similar_scores.shape == self.similar_items.shape, "similar scores shape"),
            (len(self.item_categories) == n_items, "item_categories length != number of items"),
            (len(self.popular_items) > 0 or n_items == 0, "empty popularity fallback"),
            (
                self.popular_scores is not None
                and self.popular_scores.shape == self.popular_items.shape,
                "popular_scores length != length of popular_items",
            ),
            (_is_sorted_unique(self.user_ids), "user_ids must be sorted and unique"),
            (_is_sorted_unique(self.item_ids), "item_ids must be sorted and unique"),
        ]
        for index_array in (self.user_top_items, self.similar_items, self.popular_items):
            low = min(blockwise(index_array, np.min), default=-1)
            high = max(blockwise(index_array, np.max), default=-1)
            if low < -1 or high >= n_items:
                checks.append((False, "an item index points outside item_ids"))
        for ok, message in checks:
            if not ok:
                raise ArtifactError(f"inconsistent artifact: {message}")


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of an artifact folder, with its own checksum verified."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{directory}: no {MANIFEST}; not a serving artifact")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ArtifactError(f"{path}: invalid JSON: {error}") from error
    if manifest.get("format_version") not in READABLE_FORMATS:
        raise ArtifactError(
            f"{path}: format_version {manifest.get('format_version')!r}, this code reads "
            f"formats {', '.join(map(str, READABLE_FORMATS))}"
        )
    if _files_checksum(manifest.get("files", {})) != manifest.get("checksum"):
        raise ArtifactError(f"{path}: manifest checksum does not match its file list")
    return manifest


def _lookup(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    if len(sorted_ids) == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    positions = np.searchsorted(sorted_ids, ids)
    positions = np.minimum(positions, len(sorted_ids) - 1)
    return np.where(sorted_ids[positions] == ids, positions, -1)


def _position(sorted_ids: np.ndarray, value: str) -> int:
    """`_lookup` for one id: a scalar binary search, without building arrays."""
    position = int(np.searchsorted(sorted_ids, value))
    if position < len(sorted_ids) and sorted_ids[position] == value:
        return position
    return -1


def _positions(ids: np.ndarray) -> dict[str, int]:
    return {value: position for position, value in enumerate(ids.tolist())}


BLOCK_ROWS = 65_536


def blockwise(array: np.ndarray, reduce: Any) -> list[Any]:
    """`reduce` applied to blocks of rows; a memory-mapped array gives back each block's pages,
    so a scan of a large artifact holds one block, not the whole file, in memory."""
    results = []
    for start in range(0, len(array), BLOCK_ROWS):
        block = array[start : start + BLOCK_ROWS]
        if block.size:
            results.append(reduce(block))
        _release(array)
    return results


def _release(array: np.ndarray) -> None:
    base = array.base
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    if base is not None:  # file-backed and read-only: the pages are read again if needed
        base.madvise(mmap.MADV_DONTNEED)


def _is_sorted_unique(ids: np.ndarray) -> bool:
    return bool(len(ids) < 2 or np.all(ids[1:] > ids[:-1]))


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, read in blocks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _files_checksum(files: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
