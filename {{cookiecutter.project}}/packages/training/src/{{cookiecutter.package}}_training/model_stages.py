"""The model stages of dvc.yaml: train every candidate, evaluate them all on the same split."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from {{ cookiecutter.package }}_core.artifact import ServingArtifact
from {{ cookiecutter.package }}_core.cli import BadInput
from {{ cookiecutter.package }}_core.matrix import InteractionMatrix, build_interaction_matrix
from {{ cookiecutter.package }}_core.models import PopularityRecommender, build_model
from {{ cookiecutter.package }}_core.shared import UNKNOWN_CATEGORY
from {{ cookiecutter.package }}_core.weighting import apply_weighting

from .config import Paths, read_json, write_json
from .evaluation import evaluate_artifact
from .evaluation_report import CURVES, HEADLINE_K, curve_svg, headline

log = logging.getLogger(__name__)


def train(params: dict[str, Any], paths: Paths) -> dict[str, Any]:
    """Fit every candidate model and write its serving artifact to models/<name>/."""
    events = pd.read_parquet(paths.split / "train.parquet")
    items = pd.read_parquet(paths.validated / "items.parquet")
    matrices = MatrixCache(events)
    report: dict[str, Any] = {}
    for name in params["model"]["candidates"]:
        started = time.perf_counter()
        interactions = matrices.get(matrix_settings(params, name))
        X = interactions.matrix
        model = build_model(name, params["model"].get(name) or {})
        model.fit(X)
        fitted = time.perf_counter()
        categories = _categories_for(interactions.items.ids, items)
        popular = _popularity_ranking(X)
        artifact = build_artifact(name, model, interactions, categories, popular, params)
        artifact.save(paths.models / name)
        # Weighting changes values, never the users, items or stored pairs.
        report.update(n_users=X.shape[0], n_items=X.shape[1], nnz=X.nnz)
        report[name] = {
            "fit_seconds": round(fitted - started, 3),
            "artifact_seconds": round(time.perf_counter() - fitted, 3),
            "params": model.get_params(),
            "matrix": matrix_settings(params, name),
        }
        log.info("trained %s in %.1fs", name, time.perf_counter() - started)
    write_json(paths.reports / "train.json", report)
    return report


def matrix_settings(params: dict[str, Any], model: str) -> dict[str, Any]:
    """How `model`'s matrix is built: the matrix section with its `per_model` override."""
    settings = {key: value for key, value in params["matrix"].items() if key != "per_model"}
    overrides = (params["matrix"].get("per_model") or {}).get(model) or {}
    unknown = set(overrides) - {"weighting", "half_life_days", "event_weights"}
    if unknown:
        raise BadInput(
            f"matrix.per_model.{model} may set weighting, half_life_days or event_weights, "
            f"not {', '.join(sorted(unknown))}"
        )
    return {"weighting": "sum", "half_life_days": None, **settings, **overrides}


class MatrixCache:
    """Interaction matrices of one event table, built once per distinct setting."""

    def __init__(self, events: pd.DataFrame) -> None:
        self.events = events
        self._built: dict[str, InteractionMatrix] = {}

    def get(self, settings: dict[str, Any]) -> InteractionMatrix:
        key = json.dumps(settings, sort_keys=True)
        if key not in self._built:
            interactions = build_interaction_matrix(
                self.events, settings["event_weights"], settings.get("half_life_days")
            )
            weighted = apply_weighting(interactions.matrix, settings.get("weighting", "sum"))
            self._built[key] = replace(interactions, matrix=weighted)
        return self._built[key]


def build_artifact(
    name: str,
    model: Any,
    interactions: InteractionMatrix,
    categories: np.ndarray,
    popular: tuple[np.ndarray, np.ndarray],
    params: dict[str, Any],
) -> ServingArtifact:
    X = interactions.matrix
    settings = params["artifact"]
    top_n = min(int(settings["top_n"]), X.shape[1])
    similar_n = min(int(settings["similar_n"]), max(X.shape[1] - 1, 1))
    top_items, top_scores = model.recommend(X, k=top_n, exclude_seen=True)
    similar_items, similar_scores = model.similar_items(np.arange(X.shape[1]), k=similar_n)
    return ServingArtifact(
        user_ids=np.asarray(interactions.users.ids, dtype=str),
        item_ids=np.asarray(interactions.items.ids, dtype=str),
        item_categories=categories,
        user_top_items=top_items.astype(np.int32),
        user_top_scores=top_scores.astype(np.float32),
        similar_items=similar_items.astype(np.int32),
        similar_scores=similar_scores.astype(np.float32),
        popular_items=popular[0],
        popular_scores=popular[1],
        metadata={
            "model": name,
            "estimator": type(model).__name__,
            "params": model.get_params(),
        },
    )


def evaluate(params: dict[str, Any], paths: Paths) -> dict[str, Any]:
    """Compare every candidate on the same split. Writes the full figures (every metric at every
    k) to reports/evaluation.json, one headline file per model to reports/metrics/ (what `dvc
    metrics show` reads, one row per model) and the metric@k curves to reports/plots/."""
    candidates = params["model"]["candidates"]
    ks = sorted(int(k) for k in params["evaluate"]["ks"])
    if not candidates:
        raise BadInput("model.candidates is empty: there is no model to evaluate")
    if HEADLINE_K not in ks:
        raise BadInput(f"evaluate.ks {ks} must include {HEADLINE_K}: the headline figures' k")
    pairs = pd.read_parquet(paths.split / "test.parquet")
    results: dict[str, Any] = {}
    catalogue = None
    for name in candidates:
        artifact = ServingArtifact.load(paths.models / name)
        catalogue = artifact.item_ids if catalogue is None else catalogue
        results[name] = evaluate_artifact(artifact, pairs, catalogue, ks)
    split_report = read_json(paths.reports / "split.json")
    evaluation = {"models": results, "split": split_report, "ks": ks}
    write_json(paths.reports / "evaluation.json", evaluation)
    _write_headlines(evaluation, paths.reports / "metrics")
    _write_curves(evaluation, paths.reports / "plots")
    return evaluation


def _write_headlines(evaluation: dict[str, Any], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    # A model dropped from the candidates must not linger as a row of `dvc metrics show`.
    for stale in folder.glob("*.json"):
        stale.unlink()
    for name, figures in headline(evaluation).items():
        write_json(folder / f"{name}.json", figures)


def _write_curves(evaluation: dict[str, Any], folder: Path) -> None:
    """Per metric: the curves' numbers as CSV (k, one column per model) and the SVG chart."""
    folder.mkdir(parents=True, exist_ok=True)
    for metric in CURVES:
        rows = {"k": evaluation["ks"]}
        for name, report in evaluation["models"].items():
            rows[name] = [report["warm"].get(f"{metric}_at_{k}", 0.0) for k in evaluation["ks"]]
        pd.DataFrame(rows).to_csv(folder / f"{metric}_at_k.csv", index=False)
        (folder / f"{metric}_at_k.svg").write_text(curve_svg(evaluation, metric))


def _categories_for(item_ids: np.ndarray, items: pd.DataFrame) -> np.ndarray:
    lookup = items.drop_duplicates("item_id").set_index("item_id")["category"]
    categories = lookup.reindex(item_ids).fillna(UNKNOWN_CATEGORY).astype(str)
    return categories.to_numpy(dtype=str)


def _popularity_ranking(X: sparse.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Every item, most popular first, with the popularity model's scores: the fallback for
    users the model has not seen, answered with those scores."""
    model = PopularityRecommender().fit(X)
    empty = sparse.csr_matrix((1, X.shape[1]), dtype=X.dtype)
    ranked, scores = model.recommend(empty, k=X.shape[1], exclude_seen=False)
    keep = ranked[0] >= 0
    return ranked[0][keep].astype(np.int32), scores[0][keep].astype(np.float32)
