"""`register`: log the training run (params, metrics, plots, artifact) and register the model
as a new version with its lineage, aliased `challenger`.

Aliases, not stages: the new version becomes `champion` only through the gate (`gate.py`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models.model import ModelInfo

from {{ cookiecutter.package }}_core.cli import BadInput
from {{ cookiecutter.package }}_core.model_source import ARTIFACT_KEY
from {{ cookiecutter.package }}_core.registry import client, now, triggered_by
from {{ cookiecutter.package }}_core.shared import CHALLENGER, model_name, tracking_uri
from {{ cookiecutter.package }}_core.template import describe

from . import lineage
from .config import Paths, params_hash, read_json, write_json
from .evaluation_report import headline
from .pyfunc import INPUT_EXAMPLE, SIGNATURE

log = logging.getLogger(__name__)


def register(params: dict[str, Any], paths: Paths) -> dict[str, Any]:
    """Log a training run (params, metrics, plots, artifact) and register it as `challenger`."""
    name = model_name()
    model = params["model"]["name"]
    evaluation = read_json(paths.reports / "evaluation.json")
    if model not in evaluation["models"]:
        raise BadInput(f"model.name {model!r} is not among the evaluated candidates")
    mlflow_client = client()
    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_experiment(name)
    commit, dirty = lineage.git_commit(paths.root)
    actor, trigger = triggered_by()
    data_hash = lineage.data_hash(paths.validated / "events.parquet", paths.root)
    model_params = {key: params[key] for key in ("matrix", "model", "artifact", "split")}
    primary = evaluation["models"][model]["warm"]
    split = evaluation.get("split") or {}
    tags = {
        "git_commit": commit,
        "git_dirty": str(dirty).lower(),
        "template": describe(),
        "dvc_data_hash": data_hash,
        "data_source": params["data"]["source"],
        "params_hash": params_hash(model_params),
        "model": model,
        "triggered_by": actor,
        "trigger": trigger,
        # The test split the metric.* tags were scored on: the gate names it when it compares
        # a later candidate with this version re-scored on the later split.
        "split_cutoff": str(split.get("cutoff")),
    }
    with mlflow.start_run(run_name=f"{model}-{data_hash[:8]}") as run:
        mlflow.set_tags(tags)
        mlflow.log_params(_flatten(model_params))
        # The registered model's figures at every k, and every candidate's headline ones
        # (all figures are in reports/evaluation.json): MLflow links each run metric to the
        # logged model one by one, ~15 ms each, so every candidate at every k cost ~5 s.
        mlflow.log_metrics(primary)
        mlflow.log_metrics(
            {
                f"{candidate}.{key}": value
                for candidate, figures in headline(evaluation).items()
                for key, value in figures.items()
                if value is not None
            }
        )
        for report in ("validation.json", "split.json", "train.json", "evaluation.json"):
            mlflow.log_artifact(str(paths.reports / report), artifact_path="reports")
        # The evaluate stage's SVG charts (MLflow shows them as images) and their CSV data.
        mlflow.log_artifacts(str(paths.reports / "plots"), artifact_path="plots")
        info = log_serving_model(paths.models / model, name)
    version = str(info.registered_model_version)
    version_tags = {
        **tags,
        "training_run_id": run.info.run_id,
        "registered_at": now(),
        **{f"metric.{key}": f"{value:.6f}" for key, value in primary.items()},
    }
    for key, value in version_tags.items():
        mlflow_client.set_model_version_tag(name, version, key, value)
    mlflow_client.set_registered_model_alias(name, CHALLENGER, version)
    record = {
        "model_name": name,
        "version": version,
        "run_id": run.info.run_id,
        "model_uri": f"models:/{name}/{version}",
        "model": model,
        "dvc_data_hash": data_hash,
        "git_commit": commit,
    }
    write_json(paths.reports / "registered.json", record)
    log.info("registered %s version %s as %s", name, version, CHALLENGER)
    return record


def log_serving_model(artifact_path: Path, name: str) -> ModelInfo:
    """Log a serving artifact as a pyfunc model in the active run and register it as `name`.

    The model is logged from code (`model_code.py`), not as a pickled object, and with its
    environment spelled out (`conda_env`), so MLflow neither warns about pickle nor guesses
    pip's version (pip is not installed in a uv environment)."""
    return mlflow.pyfunc.log_model(
        name="recommender",
        python_model=str(Path(__file__).with_name("model_code.py")),
        artifacts={ARTIFACT_KEY: str(artifact_path)},
        signature=SIGNATURE,
        input_example=INPUT_EXAMPLE,
        registered_model_name=name,
        code_paths=_package_dirs(),
        conda_env=_environment(),
    )


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _package_dirs() -> list[str]:
    """The core and training packages travel with the model, so pyfunc loads anywhere."""
    from {{ cookiecutter.package }}_core import __file__ as core_init

    return [str(Path(core_init).parent), str(Path(__file__).parent)]


def _environment() -> dict[str, Any]:
    """The model's environment as MLflow records it (conda.yaml, requirements.txt).

    Listed explicitly: MLflow's inference would load the model in a subprocess to find the
    packages, and left to itself it asks pip for its version, which a uv environment does not
    have (a warning on every register). pip comes unpinned, as MLflow writes it then."""
    import platform

    import yaml

    return {
        "name": "mlflow-env",
        "channels": ["conda-forge"],
        "dependencies": [
            f"python={platform.python_version()}",
            "pip",
            {
                "pip": [
                    f"mlflow=={mlflow.__version__}",
                    f"numpy=={np.__version__}",
                    f"pandas=={pd.__version__}",
                    f"pyyaml=={yaml.__version__}",
                ]
            },
        ],
    }
