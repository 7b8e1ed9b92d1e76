"""How summed interaction weights become matrix values, with scikit-learn's transformers.

`sum` keeps them as they are; `log1p` saturates heavy repeat interactions (a customer who bought
an item forty times is not forty times as informative); `binary` keeps only who touched what.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.preprocessing import Binarizer, FunctionTransformer

WEIGHTINGS = {
    "sum": None,
    "log1p": FunctionTransformer(np.log1p, accept_sparse=True),
    "binary": Binarizer(threshold=0.0),
}


def apply_weighting(matrix: csr_matrix, weighting: str) -> csr_matrix:
    """The matrix with `weighting` applied to its stored values; the sparsity pattern is kept."""
    if weighting not in WEIGHTINGS:
        known = ", ".join(sorted(WEIGHTINGS))
        raise ValueError(f"unknown matrix weighting {weighting!r}; known: {known}")
    transformer = WEIGHTINGS[weighting]
    if transformer is None:
        return matrix
    return csr_matrix(transformer.fit_transform(matrix), dtype=np.float32)
