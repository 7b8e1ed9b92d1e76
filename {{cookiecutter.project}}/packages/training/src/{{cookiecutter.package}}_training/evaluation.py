"""Offline evaluation of a serving artifact on a temporal split, over the full item ranking.

The artifact itself is evaluated (what the API would serve), so a candidate and the current
champion are compared on exactly the same test pairs and the same item catalogue.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from {{ cookiecutter.package }}_core.artifact import ServingArtifact
from {{ cookiecutter.package }}_core.matrix import IdMap, relevance_matrix
from {{ cookiecutter.package }}_core.metrics import ranking_report


def evaluate_artifact(
    artifact: ServingArtifact,
    test_pairs: pd.DataFrame,
    catalogue: np.ndarray,
    ks: list[int],
) -> dict[str, Any]:
    """Ranking metrics for users known to the model ("warm") and for cold-start users.

    `test_pairs` holds user_id/item_id pairs first reached in the test period; `catalogue` is
    the train item catalogue that defines relevance for every artifact compared.
    """
    users = IdMap(np.unique(test_pairs["user_id"].to_numpy(dtype=str)))
    items = IdMap(np.asarray(catalogue, dtype=str))
    relevant = relevance_matrix(test_pairs, users, items)
    k_max = max(ks)
    recommended = artifact.top_items_for_users(users.ids, k_max)
    # Map the artifact's item positions into the shared catalogue (unknown items never hit).
    to_catalogue = items.index_of(artifact.item_ids)
    mapped = np.where(recommended >= 0, to_catalogue[np.maximum(recommended, 0)], -1)
    warm = artifact.user_index(users.ids) >= 0
    report: dict[str, Any] = {}
    for name, mask in (("warm", warm), ("cold_start", ~warm)):
        if mask.any():
            report[name] = ranking_report(mapped[mask], relevant[mask], ks, len(catalogue))
        else:
            report[name] = {"n_users_evaluated": 0}
    return report
