"""Top-k selection: order, exclusion of seen items, padding and clipping."""

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from {{ cookiecutter.package }}_core.ranking import top_k


def test_returns_best_first_with_dtypes():
    scores = np.array([[0.1, 0.9, 0.5, 0.3], [4.0, 3.0, 2.0, 1.0]])
    indices, values = top_k(scores, 2)
    assert indices.dtype == np.int32 and values.dtype == np.float32
    assert indices.tolist() == [[1, 2], [0, 1]]
    np.testing.assert_allclose(values, [[0.9, 0.5], [4.0, 3.0]])


def test_matches_full_sort_on_random_scores():
    rng = np.random.default_rng(0)
    scores = rng.random((50, 300))
    indices, values = top_k(scores, 10)
    expected = np.argsort(-scores, axis=1)[:, :10]
    assert np.array_equal(indices, expected)
    np.testing.assert_allclose(values, np.take_along_axis(scores, expected, 1), rtol=1e-6)


def test_excluded_items_are_never_returned_and_input_is_untouched():
    scores = np.array([[0.1, 0.9, 0.5, 0.3]], dtype=np.float32)
    before = scores.copy()
    exclude = csr_matrix(np.array([[0, 1, 0, 0]]))
    indices, values = top_k(scores, 2, exclude=exclude)
    assert indices.tolist() == [[2, 3]]
    np.testing.assert_allclose(values, [[0.5, 0.3]])
    assert np.array_equal(scores, before)


def test_rows_with_too_few_items_left_are_padded():
    scores = np.array([[0.2, 0.8, 0.5], [0.3, 0.1, 0.2]])
    exclude = csr_matrix(np.array([[1, 1, 0], [0, 0, 0]]))
    indices, values = top_k(scores, 3, exclude=exclude)
    assert indices.tolist() == [[2, -1, -1], [0, 2, 1]]
    assert values[0, 0] == pytest.approx(0.5)
    assert np.isneginf(values[0, 1:]).all()


def test_k_beyond_catalogue_is_clipped():
    indices, values = top_k(np.array([[0.3, 0.1, 0.2]]), 10)
    assert indices.shape == values.shape == (1, 3)
    assert indices.tolist() == [[0, 2, 1]]


def test_ties_are_ordered_by_item_index():
    indices, _ = top_k(np.ones((2, 5)), 5)
    assert indices.tolist() == [[0, 1, 2, 3, 4]] * 2


def test_nan_scores_are_never_recommended():
    indices, values = top_k(np.array([[np.nan, 0.5, np.nan, 0.1]]), 3)
    assert indices.tolist() == [[1, 3, -1]]
    assert np.isneginf(values[0, 2])


def test_empty_rows():
    indices, values = top_k(np.zeros((0, 4)), 2)
    assert indices.shape == values.shape == (0, 2)


@pytest.mark.parametrize("k", [0, -3])
def test_non_positive_k_is_rejected(k):
    with pytest.raises(ValueError, match="k must be a positive integer"):
        top_k(np.ones((1, 3)), k)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="2-D"):
        top_k(np.ones(3), 1)
    with pytest.raises(ValueError, match="exclude has shape"):
        top_k(np.ones((2, 3)), 1, exclude=csr_matrix((1, 3)))
