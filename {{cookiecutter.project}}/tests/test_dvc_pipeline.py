"""The DVC pipeline for real: `dvc repro` end to end in a scratch copy of this project.

Small synthetic data keeps it to about a minute. Covers the no-op rerun, a malformed data file
rejected by the validate stage with nothing registered and the last good validated data kept,
and push/pull to the local remote.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from {{ cookiecutter.package }}_core.shared import VALIDATED_DIR

pytestmark = pytest.mark.slow
PROJECT_ROOT = Path(__file__).resolve().parents[1]
MODEL_NAME = "{{ cookiecutter.project }}"
TRAIN = "{{ cookiecutter.project }}-train"
SMALL = {"n_users": 3000, "n_items": 1000, "n_events": 150_000}


def run(command: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    # The venv's commands (dvc, the project CLI) first; MLflow's default: cwd's mlflow.db.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{command} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def scratch_project(tmp_path_factory) -> Path:
    """This project's tracked files in a new git repository, with small synthetic data."""
    root = tmp_path_factory.mktemp("scratch") / "project"
    files = run(["git", "ls-files", "-co", "--exclude-standard"], PROJECT_ROOT).stdout.split()
    for name in files:
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / name, target)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["synthetic"].update(SMALL)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], root)
    run(["git", "add", "-A"], root)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "x"], root)
    run([TRAIN, "generate-data"], root)
    return root


def registry(root: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")


def registry_versions(root: Path) -> list[str]:
    versions = registry(root).search_model_versions(f"name='{MODEL_NAME}'")
    return sorted(str(version.version) for version in versions)


def test_repro_runs_end_to_end_and_a_second_run_is_a_no_op(scratch_project):
    first = run(["dvc", "repro"], scratch_project)
    assert "Running stage 'promote'" in first.stdout
    assert (scratch_project / "dvc.lock").is_file()
    second = run(["dvc", "repro"], scratch_project)
    assert "Running stage" not in second.stdout
    status = run(["dvc", "status"], scratch_project)
    assert "up to date" in status.stdout
    assert registry_versions(scratch_project) == ["1"]
    # The version's data hash is the one DVC recorded for the validated events.
    lock = yaml.safe_load((scratch_project / "dvc.lock").read_text())
    outs = {out["path"]: out["md5"] for out in lock["stages"]["validate"]["outs"]}
    champion = registry(scratch_project).get_model_version_by_alias(MODEL_NAME, "champion")
    assert champion.tags["dvc_data_hash"] == outs["data/validated/events.parquet"]
    # What the run changed that belongs in git is named, with the command to record it.
    hint = run([TRAIN, "pipeline"], scratch_project).stderr
    assert "to record this run in git: git add dvc.lock reports/evaluation.json" in hint


def candidates(root: Path) -> list[str]:
    return yaml.safe_load((root / "params.yaml").read_text())["model"]["candidates"]


def evaluation(root: Path) -> dict:
    return json.loads((root / "reports" / "evaluation.json").read_text())


def test_evaluate_prints_one_row_per_candidate_with_the_figures_of_its_report(scratch_project):
    printed = run([TRAIN, "evaluate"], scratch_project).stdout.splitlines()
    models = candidates(scratch_project)
    header, *rows = printed[: 1 + len(models)]
    assert re.split(r"\s{2,}", header) == [
        *("model", "NDCG@10", "Recall@10", "MAP@10", "coverage@10", "cold NDCG@10"),
        *("warm users", "cold users"),
    ]
    figures = evaluation(scratch_project)["models"]
    for model, row in zip(models, rows, strict=True):
        warm, cold = figures[model]["warm"], figures[model]["cold_start"]
        assert row.split() == [
            model,
            *(f"{warm[key]:.4f}" for key in ("ndcg_at_10", "recall_at_10", "map_at_10")),
            f"{warm['coverage_at_10']:.4f}",
            f"{cold['ndcg_at_10']:.4f}",
            f"{warm['n_users_evaluated']:,}",
            f"{cold['n_users_evaluated']:,}",
        ]
    assert "reports/evaluation.json" in printed[-1]
    # The same figures and the same SVG bytes again: nothing for DVC (or git) to record.
    assert "up to date" in run(["dvc", "status"], scratch_project).stdout


def test_metrics_show_is_one_row_per_model_with_the_headline_figures(scratch_project):
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], scratch_project).stdout)
    files = shown[""]["data"]
    models = candidates(scratch_project)
    assert sorted(files) == sorted(f"reports/metrics/{model}.json" for model in models)
    for model, report in evaluation(scratch_project)["models"].items():
        row = files[f"reports/metrics/{model}.json"]["data"]
        assert set(row) == {
            *("ndcg_at_10", "recall_at_10", "map_at_10", "coverage_at_10", "cold_ndcg_at_10"),
            *("warm_users", "cold_users"),
        }
        assert row["ndcg_at_10"] == report["warm"]["ndcg_at_10"]
        assert row["cold_users"] == report["cold_start"]["n_users_evaluated"]
    table = run(["dvc", "metrics", "show"], scratch_project).stdout.strip().splitlines()
    assert len(table) == 1 + len(models)  # the header and a row a model, nothing else


def test_plots_show_draws_the_svg_curves_and_nothing_else(scratch_project, tmp_path):
    run(["dvc", "plots", "show", "-o", str(tmp_path)], scratch_project)
    page = (tmp_path / "index.html").read_text()
    assert re.findall(r'<img src="([^"]+)"', page) == [
        "static/workspace_reports_plots_ndcg_at_k.svg",
        "static/workspace_reports_plots_recall_at_k.svg",
    ]
    assert "<script" not in page and "https://" not in page  # opens offline: nothing from a CDN
    models = candidates(scratch_project)
    for metric, title in (("ndcg", "NDCG@k"), ("recall", "Recall@k")):
        svg = (scratch_project / "reports" / "plots" / f"{metric}_at_k.svg").read_text()
        texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
        assert title in texts and "k (length of the top-k list)" in texts
        assert [text for text in texts if text in models] == models  # the legend, in order


def test_push_and_pull_through_the_local_remote(scratch_project):
    run(["dvc", "push"], scratch_project)
    shutil.rmtree(scratch_project / "data" / "validated")
    run(["dvc", "pull"], scratch_project)
    assert (scratch_project / "data" / "validated" / "events.parquet").is_file()
    assert "up to date" in run(["dvc", "status"], scratch_project).stdout


@contextmanager
def malformed_event(root: Path, index: int, event_type: str):
    """The raw events with one unknown event type at `index` (a 0-based row), put back after."""
    import pandas as pd

    raw = root / "data" / "raw" / "events.parquet"
    backup = raw.read_bytes()
    events = pd.read_parquet(raw)
    events["event_type"] = events["event_type"].astype(str)
    events.loc[index, "event_type"] = event_type
    events.to_parquet(raw, index=False)
    try:
        yield
    finally:
        raw.write_bytes(backup)


def test_malformed_data_is_rejected_and_nothing_is_registered(scratch_project):
    before = registry_versions(scratch_project)
    with malformed_event(scratch_project, 41, "wishlist"):
        # `pipeline` is `dvc repro` with the stage's own exit code (DVC's would be 255).
        result = run([TRAIN, "pipeline"], scratch_project, check=False)
        assert result.returncode == 2, result.stderr
        output = result.stdout + result.stderr
        assert "row 42" in output and "'event_type'" in output and "wishlist" in output
        assert registry_versions(scratch_project) == before


def test_a_failed_validate_keeps_the_last_good_validated_data(scratch_project):
    """DVC removes a stage's outputs before it runs; the validated window must survive a
    rejected file, because the drift job reads it as its reference."""
    from {{ cookiecutter.package }}_monitoring.drift import read_reference

    validated = scratch_project / VALIDATED_DIR
    good = {path.name: path.read_bytes() for path in sorted(validated.glob("*.parquet"))}
    assert set(good) == {"events.parquet", "items.parquet"}
    with malformed_event(scratch_project, 7, "wishlist"):
        result = run([TRAIN, "pipeline"], scratch_project, check=False)
        assert result.returncode == 2, result.stderr
        assert {path.name: path.read_bytes() for path in validated.glob("*.parquet")} == good
        window, items = read_reference(validated)
        assert len(window.events) and len(items)
        # The outputs still match what dvc.lock recorded for them; only the input changed.
        status = run(["dvc", "status", "validate"], scratch_project).stdout
        assert "modified:" in status and "deleted" not in status, status
    # With the good file back, nothing needs to run again.
    again = run(["dvc", "repro"], scratch_project).stdout
    assert "Running stage 'validate'" not in again, again


def test_a_failed_gate_reaches_the_caller_as_exit_3(scratch_project):
    params_file = scratch_project / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    champion = registry(scratch_project).get_model_version_by_alias(MODEL_NAME, "champion")
    params["gate"]["min_lift_over_popularity"] = 100.0
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        result = run([TRAIN, "pipeline"], scratch_project, check=False)
        assert result.returncode == 3, result.stdout + result.stderr
        assert "GATE FAILED" in result.stderr and "below the required 100.0x" in result.stderr
        assert "what to try:" in result.stderr and "gate.min_lift_over_popularity" in result.stderr
        # `make pipeline` runs that command: make names its code (3, not DVC's 255) and exits
        # 2, as make does for any failed recipe (the README's "Exit codes").
        made = run(["make", "pipeline", f"TRAIN={TRAIN}"], scratch_project, check=False)
        assert made.returncode == 2, made.stdout + made.stderr
        assert "GATE FAILED" in made.stderr and "below the required 100.0x" in made.stderr
        assert re.search(r"\bpipeline\] Error 3$", made.stderr, re.M), made.stderr
        assert "Error 255" not in made.stderr
        after = registry(scratch_project).get_model_version_by_alias(MODEL_NAME, "champion")
        assert after.version == champion.version
    finally:
        params_file.write_text(original)
