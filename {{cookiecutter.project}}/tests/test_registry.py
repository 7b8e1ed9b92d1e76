"""Registration with lineage and the promotion gate, against a real (SQLite) MLflow registry."""

import contextlib
import json
import logging
from collections.abc import Iterator

import numpy as np
import pytest
import yaml

from {{ cookiecutter.package }}_core.artifact import ServingArtifact
from {{ cookiecutter.package }}_core.model_source import load_model
from {{ cookiecutter.package }}_core.registry import champion_version, client
from {{ cookiecutter.package }}_core.shared import (
    CHALLENGER,
    CHAMPION,
    model_name,
    registered_model_uri,
    tracking_uri,
)
from {{ cookiecutter.package }}_core.template import describe
from {{ cookiecutter.package }}_training.cli import main
from {{ cookiecutter.package }}_training.gate import GateFailed, promote_if_better
from {{ cookiecutter.package }}_training.lineage import file_md5
from {{ cookiecutter.package }}_training.register import register

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def mlflow_warnings() -> Iterator[list[str]]:
    """MLflow's own warnings while the block runs (its loggers do not propagate to the root)."""
    found: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: found.append(f"{record.name}: {record.getMessage()}")
    logger = logging.getLogger("mlflow")
    logger.addHandler(handler)
    try:
        yield found
    finally:
        logger.removeHandler(handler)


def test_register_creates_a_challenger_with_lineage(registry_project):
    params, paths = registry_project
    with mlflow_warnings() as warned:
        record = register(params, paths)
    # No pickle warning (the model is logged from code) and no guess at pip's version (the
    # environment is given): nothing to clutter every register step.
    assert warned == []
    name = model_name()
    version = client().get_model_version(name, record["version"])
    assert CHALLENGER in version.aliases
    tags = version.tags
    assert tags["dvc_data_hash"] == file_md5(paths.validated / "events.parquet")
    assert len(tags["params_hash"]) == 16
    assert tags["model"] == params["model"]["name"]
    assert tags["triggered_by"] and tags["trigger"]
    assert tags["git_commit"]
    assert tags["template"] == describe()  # the template release the project came from
    assert float(tags["metric.ndcg_at_10"]) > 0
    assert tags["training_run_id"] == version.run_id
    # The registered model serves the same arrays that training wrote.
    served = load_model(registered_model_uri(name, record["version"]), tracking_uri()).artifact
    trained = ServingArtifact.load(paths.models / params["model"]["name"])
    assert np.array_equal(served.user_top_items, trained.user_top_items)
    assert served.metadata["model"] == params["model"]["name"]


def test_promotion_passes_then_a_failed_gate_leaves_the_champion(registry_project):
    params, paths = registry_project
    name = model_name()
    first = register(params, paths)
    decision = promote_if_better(params, paths)
    assert decision["decision"] == "pass"
    assert champion_version(client(), name) == first["version"]

    second = register(params, paths)
    params["gate"]["min_lift_over_popularity"] = 100.0
    with pytest.raises(GateFailed, match=r"below the required 100\.0x") as failure:
        promote_if_better(params, paths)
    # It says by how much, the numbers on both sides, every candidate and what to try.
    message = str(failure.value)
    assert message.startswith("GATE FAILED: ") and "short by" in message
    assert f"vs champion v{first['version']}:" in message and "re-scored on this split" in message
    assert "candidates on this split, best first:" in message
    assert "what to try:" in message and "gate.min_lift_over_popularity (100.0)" in message
    assert champion_version(client(), name) == first["version"]
    failed = client().get_model_version(name, second["version"])
    assert failed.tags["gate.decision"] == "fail"
    assert "short by" in failed.tags["gate.reason"]
    assert "gate.min_lift_over_popularity (100.0)" in failed.tags["gate.advice"]
    assert failed.tags["gate.min_lift_over_popularity"] == "100.0"
    assert float(failed.tags["gate.candidate"]) > float(failed.tags["gate.popularity"]) > 0
    assert failed.tags["gate.best_candidate"] in params["model"]["candidates"]
    assert CHAMPION not in failed.aliases
    log = [json.loads(line) for line in paths.promotion_log.read_text().splitlines()]
    assert [entry["decision"] for entry in log] == ["pass", "fail"]
    assert log[1]["previous_champion"] == first["version"]
    [lift, versus] = log[1]["checks"]
    assert lift["check"] == "lift_over_popularity" and not lift["passed"] and lift["margin"] < 0
    assert versus["check"] == "vs_champion" and versus["passed"]
    assert any("gate.min_lift_over_popularity" in tip for tip in log[1]["advice"])


def test_promote_prints_what_it_compared_and_a_pass_waiting_for_approval_is_no_promotion(
    registry_project, capsys
):
    params, paths = registry_project
    record = register(params, paths)
    params["gate"]["require_approval"] = True
    params_file = paths.root / "params.yaml"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    assert main(["--params", str(params_file), "promote"]) == 0
    printed = capsys.readouterr().out
    assert "vs popularity:" in printed and "required 1.25x" in printed
    assert "vs champion: there is none yet" in printed
    assert "promoted version" not in printed
    assert f"version {record['version']} passed the gate and waits for approval" in printed
    assert f"make approve VERSION={record['version']}" in printed
    assert champion_version(client(), model_name()) is None


def test_a_candidate_worse_than_the_champion_is_refused(registry_project):
    params, paths = registry_project
    if params["model"]["name"] == "popularity":
        pytest.skip("the default model is the popularity baseline: no candidate is worse")
    name = model_name()
    register(params, paths)
    promote_if_better(params, paths)
    champion = champion_version(client(), name)
    # Register the popularity model as the next candidate: it passes a relaxed lift gate but
    # is clearly worse than the champion on the same split.
    params["model"]["name"] = "popularity"
    params["gate"]["min_lift_over_popularity"] = 1.0
    register(params, paths)
    with pytest.raises(GateFailed, match=f"below champion v{champion}"):
        promote_if_better(params, paths)
    assert champion_version(client(), name) == champion


def test_registered_version_loads_and_predicts_as_a_pyfunc_model(registry_project):
    import mlflow
    import pandas as pd

    params, paths = registry_project
    record = register(params, paths)
    model = mlflow.pyfunc.load_model(record["model_uri"])
    known = str(ServingArtifact.load(paths.models / params["model"]["name"]).user_ids[0])
    answer = model.predict(pd.DataFrame({"user_id": [known, "nobody"], "k": [5, 3]}))
    assert answer.groupby("user_id")["rank"].max().to_dict() == {known: 5, "nobody": 3}
    strategies = answer.drop_duplicates("user_id").set_index("user_id")["strategy"].to_dict()
    assert strategies == {known: "personalized", "nobody": "popularity"}
    assert model.metadata.get_input_schema().input_names() == ["user_id", "k"]
