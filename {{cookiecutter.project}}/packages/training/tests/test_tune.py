"""`tune` for real on small synthetic data: Optuna trials scored on a window before the test
period, each an MLflow child run, the best settings in params.tuned.yaml, which params.yaml's
`include` merges in; bad requests are refused before anything is written."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from {{ cookiecutter.package }}_core.cli import BadInput, load_params
from {{ cookiecutter.package }}_training import data_stages
from {{ cookiecutter.package }}_training.cli import main
from {{ cookiecutter.package }}_training.config import Paths
from {{ cookiecutter.package }}_training.synthetic import generate, write_dataset
from {{ cookiecutter.package }}_training.tune import TUNED_PARAMS, Validation, tune

PROJECT_ROOT = Path(__file__).resolve().parents[3]
SMALL = {"n_users": 1500, "n_items": 300, "n_events": 40_000}


@pytest.fixture(scope="module")
def split_project(tmp_path_factory) -> Path:
    """A project folder with small synthetic data through ingest, validate and split."""
    root = tmp_path_factory.mktemp("tune") / "project"
    root.mkdir()
    shutil.copy(PROJECT_ROOT / "params.yaml", root / "params.yaml")
    shutil.copy(PROJECT_ROOT / TUNED_PARAMS, root / TUNED_PARAMS)
    params = load_params(root / "params.yaml")
    paths = Paths(root)
    write_dataset(*generate(**{**params["synthetic"], **SMALL}), paths.raw)
    for stage in (data_stages.ingest, data_stages.validate, data_stages.split):
        stage(params, paths)
    return root


@pytest.fixture
def project(split_project, tmp_path, monkeypatch) -> Path:
    root = tmp_path / "project"
    shutil.copytree(split_project, root)
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    return root


def test_the_validation_window_ends_before_the_test_period(split_project):
    params = load_params(split_project / "params.yaml")
    train = pd.read_parquet(split_project / "data" / "split" / "train.parquet")
    split = yaml.safe_load((split_project / "reports" / "split.json").read_text())
    validation = Validation(train, params)
    days = params["tune"]["validation_days"]
    assert validation.cutoff == train["timestamp"].max().normalize() - pd.Timedelta(days - 1, "D")
    assert validation.cutoff < pd.Timestamp(split["cutoff"])
    # Trials fit on the events before the window only, never on the window or the test period.
    for matrix in validation.matrices._built.values():
        assert matrix.matrix.nnz < len(train)
    assert validation.relevant.shape[0] == len(validation.rows) > 0


def test_tune_writes_the_best_settings_and_one_child_run_per_trial(project, capsys):
    from mlflow.tracking import MlflowClient

    code = main(["tune", "--models", "ease,rp3beta", "--trials", "3"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "validation window: events from" in out
    assert "ease trial 3/3: ndcg_at_10" in out and "rp3beta trial 1/3" in out
    assert f"wrote {TUNED_PARAMS}" in out

    report = yaml.safe_load((project / "reports" / "tuning.json").read_text())
    tuned_text = (project / TUNED_PARAMS).read_text()
    tuned = yaml.safe_load(tuned_text)
    for name in ("ease", "rp3beta"):
        result = report["models"][name]
        assert result["trials"] == 3 and result["best"] >= result["current"]
        assert f"#   {name}: {result['current']:.4f} -> {result['best']:.4f}" in tuned_text
        assert set(tuned["matrix"]["per_model"][name]) == {"weighting", "half_life_days"}
    assert set(tuned["model"]["ease"]) == {"l2"}
    assert set(tuned["model"]["rp3beta"]) == {"alpha", "beta", "n_neighbors"}
    # params.yaml includes the file: every command now reads the tuned settings.
    params = load_params(project / "params.yaml")
    assert params["model"]["ease"] == tuned["model"]["ease"]
    assert params["matrix"]["per_model"]["ease"] == tuned["matrix"]["per_model"]["ease"]
    assert params["matrix"]["event_weights"]["purchase"] == 5.0  # the rest is params.yaml's

    client = MlflowClient()
    experiment = client.get_experiment_by_name("{{ cookiecutter.project }}-tuning")
    runs = client.search_runs([experiment.experiment_id])
    parents = [run for run in runs if run.data.tags.get("kind") == "tuning"]
    assert len(parents) == 1 and parents[0].info.run_id == report["mlflow_run_id"]
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId")]
    assert len(children) == 6
    assert {run.data.tags["mlflow.parentRunId"] for run in children} == {report["mlflow_run_id"]}
    assert all("ndcg_at_10" in run.data.metrics for run in children)
    assert {run.data.params["model"] for run in children} == {"ease", "rp3beta"}


def test_a_second_tune_keeps_the_settings_of_models_it_did_not_tune(project, capsys):
    assert main(["tune", "--models", "rp3beta", "--trials", "1"]) == 0
    first = yaml.safe_load((project / TUNED_PARAMS).read_text())
    assert main(["tune", "--models", "itemknn", "--trials", "1"]) == 0
    second = yaml.safe_load((project / TUNED_PARAMS).read_text())
    assert second["model"]["rp3beta"] == first["model"]["rp3beta"]
    assert set(second["model"]) == {"rp3beta", "itemknn"}
    # One trial is the settings in use: the file records them, so nothing got worse.
    assert second["model"]["itemknn"] == {"n_neighbors": 200, "shrink": 0.0}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--models", "popularity"], "cannot tune popularity: the tunable models are"),
        (["--models", "svd"], "cannot tune svd"),
        (["--trials", "-1"], "tune.trials must be >= 1"),
    ],
)
def test_bad_requests_are_refused_and_write_nothing(project, capsys, argv, message):
    before = (project / TUNED_PARAMS).read_text()
    assert main(["tune", *argv]) == 2
    assert message in capsys.readouterr().err
    assert (project / TUNED_PARAMS).read_text() == before
    assert not (project / "reports" / "tuning.json").exists()


def test_a_validation_window_longer_than_the_training_period_is_bad_input(split_project):
    params = copy.deepcopy(load_params(split_project / "params.yaml"))
    params["tune"]["validation_days"] = 400
    train = pd.read_parquet(split_project / "data" / "split" / "train.parquet")
    with pytest.raises(BadInput, match=r"lower tune\.validation_days"):
        Validation(train, params)


def test_tune_before_the_data_stages_names_the_command(tmp_path, monkeypatch, capsys):
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    assert main(["tune", "--trials", "1"]) == 2
    assert "run the data stages first (make pipeline)" in capsys.readouterr().err
    with pytest.raises(BadInput):
        tune(load_params(tmp_path / "params.yaml"), Paths(tmp_path), ["ease"], 1)
