"""Accuracy gates on the default synthetic data: personalisation must clearly beat popularity."""

import pytest

pytestmark = pytest.mark.slow


def _ndcg(metrics: dict, model: str) -> float:
    return metrics["models"][model]["warm"]["ndcg_at_10"]


def test_default_model_beats_popularity_by_the_gate_margin(evaluated_project, project_params):
    paths = evaluated_project[1]
    from {{ cookiecutter.package }}_training.config import read_json

    metrics = read_json(paths.reports / "evaluation.json")
    model = project_params["model"]["name"]
    lift = project_params["gate"]["min_lift_over_popularity"]
    assert _ndcg(metrics, model) >= lift * _ndcg(metrics, "popularity")


@pytest.mark.parametrize("model", ["itemknn", "rp3beta", "als", "ease"])
def test_personalised_models_beat_popularity(evaluated_project, model):
    from {{ cookiecutter.package }}_training.config import read_json

    metrics = read_json(evaluated_project[1].reports / "evaluation.json")
    assert _ndcg(metrics, model) >= 1.25 * _ndcg(metrics, "popularity")


def test_cold_start_users_get_the_popularity_fallback(evaluated_project):
    from {{ cookiecutter.package }}_training.config import read_json

    paths = evaluated_project[1]
    split = read_json(paths.reports / "split.json")
    metrics = read_json(paths.reports / "evaluation.json")
    cold = metrics["models"]["rp3beta"]["cold_start"]
    assert split["test_users_cold_start"] > 0
    # Cold-start users are scored by popularity whatever the model, so all models agree.
    assert cold == metrics["models"]["popularity"]["cold_start"]
