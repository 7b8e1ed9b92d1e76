"""Fixtures shared by the core tests: a tiny serving artifact."""

from collections.abc import Callable

import numpy as np
import pytest

from {{ cookiecutter.package }}_core.artifact import ServingArtifact


@pytest.fixture(params=["binary search", "id index"])
def with_lookups(request) -> Callable[[ServingArtifact], ServingArtifact]:
    """Every artifact test runs with both kinds of one-id lookups (`index_ids` is what the API
    uses): this prepares an artifact for the one of this run."""

    def prepare(artifact: ServingArtifact) -> ServingArtifact:
        if request.param == "id index":
            artifact.index_ids()
        return artifact

    return prepare


@pytest.fixture
def artifact(with_lookups) -> ServingArtifact:
    return with_lookups(
        ServingArtifact(
            user_ids=np.array(["u1", "u2"]),
            item_ids=np.array(["a", "b", "c", "d"]),
            item_categories=np.array(["shoes", "hats", "shoes", "hats"]),
            user_top_items=np.array([[2, 1, 3], [0, 3, -1]], dtype=np.int32),
            user_top_scores=np.array([[0.9, 0.5, 0.1], [0.8, 0.2, -np.inf]], dtype=np.float32),
            similar_items=np.array([[2, 1], [3, 0], [0, 1], [1, 2]], dtype=np.int32),
            similar_scores=np.ones((4, 2), dtype=np.float32),
            popular_items=np.array([1, 0, 3, 2], dtype=np.int32),
            popular_scores=np.array([1.0, 0.75, 0.5, 0.25], dtype=np.float32),
            metadata={"model": "ease"},
        )
    )
