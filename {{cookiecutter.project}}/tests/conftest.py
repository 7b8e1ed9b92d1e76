"""Shared fixtures: one real pipeline run (synthetic data -> evaluated candidates) per session.

The stages run in-process in a temporary project folder, exactly as `dvc repro` runs them, with
MLflow pointed at a SQLite registry inside that folder.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml

from {{ cookiecutter.package }}_training import data_stages, model_stages
from {{ cookiecutter.package }}_training.config import Paths
from {{ cookiecutter.package }}_training.synthetic import generate, write_dataset

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def project_params() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())


@pytest.fixture(scope="session")
def evaluated_project(tmp_path_factory, project_params) -> tuple[dict, Paths]:
    """Default-size synthetic data through ingest, validate, split, train and evaluate."""
    root = tmp_path_factory.mktemp("project")
    paths = Paths(root)
    params = copy.deepcopy(project_params)
    write_dataset(*generate(**params["synthetic"]), paths.raw)
    for stage in (data_stages.ingest, data_stages.validate, data_stages.split):
        stage(params, paths)
    for stage in (model_stages.train, model_stages.evaluate):
        stage(params, paths)
    return params, paths


@pytest.fixture
def registry_project(evaluated_project, tmp_path, monkeypatch) -> tuple[dict, Paths]:
    """The evaluated project copied into a fresh folder with its own empty MLflow registry."""
    params, source = evaluated_project
    root = tmp_path / "project"
    shutil.copytree(source.root, root)
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    return copy.deepcopy(params), Paths(root)


@pytest.fixture(autouse=True)
def _no_analytics(monkeypatch):
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
