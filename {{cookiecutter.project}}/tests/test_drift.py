"""The drift job for real (evidently): a drifted week is flagged, a fresh undrifted week is not,
with margins; what the API served and heard back is judged too; bad input is exit 2.

Slow: it trains on the default synthetic data and runs evidently on 1M + 250k events.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from {{ cookiecutter.package }}_core import registry
from {{ cookiecutter.package }}_core.artifact import ServingArtifact
from {{ cookiecutter.package }}_core.shared import CHAMPION, PREVIOUS_CHAMPION_TAG, ExitCode, model_name
from {{ cookiecutter.package }}_monitoring.cli import main
from {{ cookiecutter.package }}_training.synthetic import generate, write_dataset

pytestmark = pytest.mark.slow
EXIT_NO_DRIFT, EXIT_ERROR, EXIT_DRIFT = ExitCode.OK, ExitCode.BAD_INPUT, ExitCode.CHECK_FAILED


@pytest.fixture(autouse=True)
def own_registry(tmp_path, monkeypatch):
    """An empty registry of the test's own (the drift job asks it who is champion)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")


def champion_after(previous: str, champion: str) -> None:
    """Register versions up to `champion` (no artifacts needed) and make it the champion that
    replaced `previous`, as the gate records it."""
    client, name = registry.client(), model_name()
    client.create_registered_model(name)
    for _ in range(int(champion)):
        client.create_model_version(name, source="models/unused", run_id=None)
    client.set_registered_model_alias(name, CHAMPION, champion)
    client.set_model_version_tag(name, champion, PREVIOUS_CHAMPION_TAG, previous)


@pytest.fixture(scope="module")
def monitored(evaluated_project, tmp_path_factory):
    """The evaluated project (the training window) with two candidate next weeks."""
    params, paths = evaluated_project
    root = tmp_path_factory.mktemp("monitored")
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    artifact = ServingArtifact.load(paths.models / params["model"]["name"])
    settings = {**params["synthetic"], "start": "2026-02-02", "days": 7, "n_events": 250_000}
    for name, drift in (("fresh", 0.0), ("drifted", 0.8)):
        write_dataset(*generate(**{**settings, "drift": drift}), root / name)
    return params, paths, root, artifact


def feedback_log(path, artifact: ServingArtifact, versions: dict[str, float], rng, users=None):
    """Impressions of what the model recommends to random users, clicked at each version's rate."""
    lines = []
    for minute, (version, ctr) in enumerate(versions.items()):
        rows = rng.integers(0, len(artifact.user_ids), 1000) if users is None else users
        for row in rows:
            for item in artifact.item_ids[artifact.user_top_items[row, :10]]:
                base = {"user_id": str(artifact.user_ids[row]), "item_id": str(item)}
                stamp = {"model_version": version, "timestamp": f"2026-11-27T07:{minute:02d}:00Z"}
                lines.append({"event_type": "impression", **base, **stamp})
                if rng.random() < ctr:
                    lines.append({"event_type": "click", **base, **stamp})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def drift_job(params, paths, root, current, feedback, out, capsys):
    code = main(
        [
            "--params", str(root / "params.yaml"),
            "drift",
            "--reference", str(paths.validated),
            "--current", str(root / current),
            "--feedback", str(feedback),
            "--model-uri", str(paths.models / params["model"]["name"]),
            "--out", str(out),
        ]
    )  # fmt: skip
    return code, capsys.readouterr()


def test_a_fresh_week_is_quiet_with_margin(monitored, tmp_path, capsys):
    params, paths, root, artifact = monitored
    log = feedback_log(tmp_path / "f.jsonl", artifact, {"1": 0.1}, np.random.default_rng(1))
    code, output = drift_job(params, paths, root, "fresh", log, tmp_path / "out", capsys)
    assert code == EXIT_NO_DRIFT, output.out + output.err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["verdict"] == "no_drift"
    data = summary["data_drift"]
    assert data["drifted_share"] == 0.0
    for column, check in data["columns"].items():
        assert check["score"] < 0.5 * check["threshold"], column  # far from the edge
    predictions = summary["prediction_drift"]
    assert predictions["drifted"] is False and predictions["drifted_share"] == 0.0
    assert predictions["coverage"]["ratio"] > 0.8
    assert (tmp_path / "out" / "data_drift.html").stat().st_size > 100_000
    assert (tmp_path / "out" / "prediction_drift.html").is_file()
    assert "verdict: NO_DRIFT" in output.out


def test_a_drifted_week_is_flagged_with_margin(monitored, tmp_path, capsys):
    params, paths, root, artifact = monitored
    # What was served collapsed onto a few users' lists: the catalogue coverage falls.
    few = np.arange(5)
    versions = {"1": 0.1, "2": 0.01}
    champion_after(previous="1", champion="2")
    rng = np.random.default_rng(2)
    log = feedback_log(tmp_path / "f.jsonl", artifact, versions, rng, users=np.repeat(few, 600))
    code, output = drift_job(params, paths, root, "drifted", log, tmp_path / "out", capsys)
    assert code == EXIT_DRIFT, output.out + output.err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["verdict"] == "drift"
    data = summary["data_drift"]
    assert data["drifted"] is True
    assert data["drifted_share"] >= 0.6  # the rule needs 0.4
    columns = data["columns"]
    assert columns["item_popularity"]["score"] > 3 * columns["item_popularity"]["threshold"]
    assert columns["category"]["score"] > 1.5 * columns["category"]["threshold"]
    assert summary["prediction_drift"]["coverage"]["drifted"] is True
    quality = summary["online_quality"]
    assert (quality["champion"], quality["previous"], quality["drop"]) == ("2", "1", True)
    assert "verdict: DRIFT" in output.out


def test_bad_input_is_exit_2_and_keeps_the_last_summary(monitored, tmp_path, capsys):
    params, paths, root, _ = monitored
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text('{"verdict": "no_drift"}')
    feedback = tmp_path / "none.jsonl"
    code, output = drift_job(params, paths, root, "missing-week", feedback, out, capsys)
    assert code == EXIT_ERROR
    assert "file not found" in output.err
    bad = tmp_path / "bad"
    shutil.copytree(root / "fresh", bad)
    frame = pd.read_parquet(bad / "events.parquet")
    frame.loc[10, "user_id"] = ""
    frame.to_parquet(bad / "events.parquet", index=False)
    code, output = drift_job(params, paths, root, bad, feedback, out, capsys)
    assert code == EXIT_ERROR
    assert "row 11" in output.err and "user_id" in output.err
    assert (out / "summary.json").read_text() == '{"verdict": "no_drift"}'
