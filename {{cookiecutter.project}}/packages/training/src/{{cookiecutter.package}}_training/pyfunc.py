"""The MLflow pyfunc face of a serving artifact, so any MLflow tool can load and serve it.

The API does not use this wrapper: it reads the artifact's arrays directly (no DataFrame round
trip per request). `mlflow models serve` and batch jobs that speak pyfunc do use it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types import ColSpec, Schema

from {{ cookiecutter.package }}_core.artifact import ServingArtifact
from {{ cookiecutter.package }}_core.model_source import ARTIFACT_KEY

SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "user_id"), ColSpec("long", "k", required=False)]),
    outputs=Schema(
        [
            ColSpec("string", "user_id"),
            ColSpec("long", "rank"),
            ColSpec("string", "item_id"),
            ColSpec("double", "score"),
            ColSpec("string", "strategy"),
        ]
    ),
)
INPUT_EXAMPLE = pd.DataFrame({"user_id": ["u000001"], "k": [10]})


class RecommenderModel(PythonModel):
    """predict(DataFrame[user_id, k]) -> one row per recommended item."""

    def load_context(self, context: PythonModelContext) -> None:
        self.artifact = ServingArtifact.load(Path(context.artifacts[ARTIFACT_KEY]))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        rows = []
        ks = model_input["k"] if "k" in model_input else np.full(len(model_input), 10)
        for user_id, k in zip(model_input["user_id"].astype(str), ks, strict=True):
            answer = self.artifact.recommend(user_id, int(k) if pd.notna(k) else 10)
            for rank, (item, score) in enumerate(zip(answer.items, answer.scores, strict=True)):
                rows.append((user_id, rank + 1, item, score, answer.strategy))
        return pd.DataFrame(rows, columns=["user_id", "rank", "item_id", "score", "strategy"])
