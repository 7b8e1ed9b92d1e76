"""Ranking metrics on examples small enough to check by hand."""

import math

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from {{ cookiecutter.package }}_core.metrics import (
    catalog_coverage,
    hit_rate_at_k,
    map_at_k,
    ndcg_at_k,
    precision_at_k,
    ranking_report,
    recall_at_k,
)


def relevant_of(rows, n_items=6):
    """Binary users x items matrix from one list of relevant items per user."""
    dense = np.zeros((len(rows), n_items), dtype=np.float32)
    for user, items in enumerate(rows):
        dense[user, items] = 1.0
    return csr_matrix(dense)


# User 0: [hit, miss, hit] with 2 relevant items. User 1: [miss, hit, miss] with 3 relevant.
# User 2 has nothing relevant and must not count.
RECOMMENDED = np.array([[0, 1, 2], [3, 4, 5], [0, 1, 2]])
RELEVANT = relevant_of([[0, 2], [0, 1, 4], []])


def test_ndcg_hit_miss_hit_with_two_relevant():
    expected = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(RECOMMENDED[:1], RELEVANT[:1], 3) == pytest.approx(expected)
    assert expected == pytest.approx(0.9197, abs=1e-4)


def test_metrics_average_over_users_with_relevant_items():
    user0_ndcg = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    user1_ndcg = (1 / math.log2(3)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
    assert ndcg_at_k(RECOMMENDED, RELEVANT, 3) == pytest.approx((user0_ndcg + user1_ndcg) / 2)
    assert recall_at_k(RECOMMENDED, RELEVANT, 3) == pytest.approx((2 / 2 + 1 / 3) / 2)
    assert precision_at_k(RECOMMENDED, RELEVANT, 3) == pytest.approx((2 / 3 + 1 / 3) / 2)
    # AP@3: user 0 (1/1 + 2/3) / 2, user 1 (1/2) / 3.
    assert map_at_k(RECOMMENDED, RELEVANT, 3) == pytest.approx(((1 + 2 / 3) / 2 + 0.5 / 3) / 2)
    assert hit_rate_at_k(RECOMMENDED, RELEVANT, 3) == pytest.approx(1.0)


def test_truncation_at_smaller_k():
    # k=1: user 0 hits, user 1 misses.
    assert ndcg_at_k(RECOMMENDED, RELEVANT, 1) == pytest.approx(0.5)
    assert hit_rate_at_k(RECOMMENDED, RELEVANT, 1) == pytest.approx(0.5)
    # k=2: user 1's hit at rank 2; recall divides by all 3 relevant, MAP by min(k, 3) = 2.
    assert recall_at_k(RECOMMENDED, RELEVANT, 2) == pytest.approx((1 / 2 + 1 / 3) / 2)
    assert map_at_k(RECOMMENDED, RELEVANT, 2) == pytest.approx((1 / 2 + (1 / 2) / 2) / 2)


def test_padding_is_never_a_hit():
    # User 0's last item (5) is relevant; user 1's padding -1 must not be read as that pair.
    recommended = np.array([[5, -1], [-1, -1]])
    relevant = relevant_of([[5], [0]])
    assert hit_rate_at_k(recommended, relevant, 2) == pytest.approx(0.5)
    assert precision_at_k(recommended, relevant, 2) == pytest.approx((1 / 2 + 0) / 2)


def test_k_beyond_the_recommended_width_counts_missing_slots_as_misses():
    assert precision_at_k(RECOMMENDED[:1], RELEVANT[:1], 4) == pytest.approx(2 / 4)
    assert ndcg_at_k(RECOMMENDED[:1], RELEVANT[:1], 4) == pytest.approx(
        ndcg_at_k(RECOMMENDED[:1], RELEVANT[:1], 3)
    )


def test_catalog_coverage():
    recommended = np.array([[0, 1, -1], [0, 2, 3]])
    assert catalog_coverage(recommended, n_items=10, k=1) == pytest.approx(0.1)
    assert catalog_coverage(recommended, n_items=10, k=3) == pytest.approx(0.4)


def test_ranking_report_keys_and_values():
    report = ranking_report(RECOMMENDED, RELEVANT, ks=[1, 3], n_items=6)
    assert report["n_users_evaluated"] == 2
    assert set(report) == {
        f"{name}_at_{k}"
        for name in ("ndcg", "recall", "precision", "map", "hit_rate", "coverage")
        for k in (1, 3)
    } | {"n_users_evaluated"}
    assert report["ndcg_at_3"] == pytest.approx(ndcg_at_k(RECOMMENDED, RELEVANT, 3))
    assert report["coverage_at_1"] == pytest.approx(2 / 6)
    assert report["coverage_at_3"] == pytest.approx(1.0)


def test_no_user_with_relevant_items_reports_zero():
    report = ranking_report(np.array([[0, 1]]), relevant_of([[]]), ks=[2], n_items=6)
    assert report["n_users_evaluated"] == 0
    assert report["ndcg_at_2"] == 0.0


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="users"):
        ndcg_at_k(RECOMMENDED[:2], RELEVANT, 3)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        recall_at_k(RECOMMENDED, RELEVANT, 0)
    with pytest.raises(ValueError, match="n_items"):
        ndcg_at_k(np.array([[0, 9], [0, 1], [0, 1]]), RELEVANT, 2)
