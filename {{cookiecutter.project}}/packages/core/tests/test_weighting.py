"""Interaction weighting schemes keep the sparsity pattern and transform only the values."""

import numpy as np
import pytest
from scipy.sparse import csr_matrix

from {{ cookiecutter.package }}_core.weighting import apply_weighting

MATRIX = csr_matrix(np.array([[0.0, 3.0, 1.0], [5.0, 0.0, 0.5]], dtype=np.float32))


def test_sum_keeps_values():
    assert (apply_weighting(MATRIX, "sum") != MATRIX).nnz == 0


def test_log1p_saturates_and_keeps_the_pattern():
    weighted = apply_weighting(MATRIX, "log1p")
    assert weighted.dtype == np.float32
    assert np.allclose(weighted.toarray(), np.log1p(MATRIX.toarray()))
    assert weighted.nnz == MATRIX.nnz


def test_binary_keeps_who_touched_what():
    assert apply_weighting(MATRIX, "binary").toarray().tolist() == [[0, 1, 1], [1, 0, 1]]


def test_unknown_weighting_is_named():
    with pytest.raises(ValueError, match="unknown matrix weighting 'tfidf'; known: binary"):
        apply_weighting(MATRIX, "tfidf")
