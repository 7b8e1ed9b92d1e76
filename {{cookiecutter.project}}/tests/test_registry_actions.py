"""Approval, rollback (by hand and on an online quality drop) and the audit of a version's chain.

Against a real (SQLite) MLflow registry: v1 is registered and promoted, v2 passes the gate with
`gate.require_approval: true` and waits as challenger. That is done once for the module; each
test works on its own copy of the project folder (registry included) from that point.
"""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from {{ cookiecutter.package }}_batch.cli import main as batch_main
from {{ cookiecutter.package }}_core import registry
from {{ cookiecutter.package }}_core.shared import CHALLENGER, CHAMPION, ExitCode, model_name
from {{ cookiecutter.package }}_core.template import describe
from {{ cookiecutter.package }}_registry import actions
from {{ cookiecutter.package }}_registry.cli import main
from {{ cookiecutter.package }}_training import gate, lineage, register
from {{ cookiecutter.package }}_training.config import Paths

EXIT_BAD_INPUT = ExitCode.BAD_INPUT

pytestmark = pytest.mark.slow
STEPS = ("training run", "registered", "gate", "approved", "promoted", "export", "rolled back")


@pytest.fixture(scope="module")
def waiting_project(evaluated_project, tmp_path_factory) -> tuple[dict, Path]:
    """v1 champion; v2 passed the gate and waits for approval (params.yaml requires it)."""
    params, source = evaluated_project
    params = copy.deepcopy(params)
    root = tmp_path_factory.mktemp("registry-actions") / "project"
    shutil.copytree(source.root, root)
    # A real commit, so the audit has a sha to trace (the copy is outside any repository).
    waiting = copy.deepcopy(params)
    waiting["gate"]["require_approval"] = True
    (root / "params.yaml").write_text(yaml.safe_dump(waiting, sort_keys=False))
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run(["git", "add", "params.yaml"], cwd=root, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "params"], cwd=root, check=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        patch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        paths = Paths(root)
        register.register(params, paths)
        gate.promote_if_better(params, paths)
        register.register(waiting, paths)
        decision = gate.promote_if_better(waiting, paths)
        assert decision["decision"] == "pass" and not decision["champion_moved"]
    return waiting, root


@pytest.fixture
def project(waiting_project, tmp_path, monkeypatch) -> tuple[dict, Paths]:
    """A copy of the waiting project, with its own copy of the registry, as the cwd."""
    params, source = waiting_project
    root = tmp_path / "project"
    shutil.copytree(source, root)
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    return copy.deepcopy(params), Paths(root)


def model_version(params: dict, version: str):
    return registry.client().get_model_version(model_name(), version)


def champion(params: dict) -> str | None:
    return registry.champion_version(registry.client(), model_name())


def promotion_log(paths: Paths) -> list[dict]:
    return [json.loads(line) for line in paths.promotion_log.read_text().splitlines()]


def approve_v2(capsys) -> None:
    assert main(["approve", "--version", "2", "--reason", "offline report reviewed"]) == 0
    capsys.readouterr()


def test_a_candidate_waits_for_approval_then_becomes_champion(project, capsys):
    params, paths = project
    waiting = model_version(params, "2")
    assert CHALLENGER in waiting.aliases and CHAMPION not in waiting.aliases
    assert waiting.tags["gate.decision"] == "pass"
    assert waiting.tags["approval.status"] == "pending"
    assert champion(params) == "1"

    log_before = paths.promotion_log.read_text()
    assert main(["approve", "--version", "2", "--reason", "  "]) == EXIT_BAD_INPUT
    assert "needs a reason" in capsys.readouterr().err
    assert model_version(params, "2").tags == waiting.tags
    assert champion(params) == "1"
    assert paths.promotion_log.read_text() == log_before

    assert main(["approve", "--version", "2", "--reason", "offline report reviewed"]) == 0
    assert "approved v2" in capsys.readouterr().out
    assert champion(params) == "2"
    tags = model_version(params, "2").tags
    actor, _ = registry.triggered_by()
    assert tags["approval.status"] == "approved"
    assert tags["approval.by"] == actor == tags["promoted_by"]
    assert tags["approval.reason"] == "offline report reviewed"
    assert tags["approval.at"] == tags["promoted_at"]
    assert tags["previous_champion"] == "1"

    assert main(["approve", "--version", "2", "--reason", "again"]) == EXIT_BAD_INPUT
    assert "not waiting for approval (approval.status=approved)" in capsys.readouterr().err
    assert model_version(params, "2").tags == tags
    assert [entry["action"] for entry in promotion_log(paths)] == ["gate", "gate", "approve"]


def test_rollback_by_hand_restores_the_previous_champion(project, capsys):
    params, paths = project
    approve_v2(capsys)
    assert main(["rollback", "--reason", "complaints about stale items"]) == 0
    assert "rolled back from v2 to v1" in capsys.readouterr().out
    assert champion(params) == "1"
    actor, _ = registry.triggered_by()
    left, restored = model_version(params, "2").tags, model_version(params, "1").tags
    assert left["rollback.to"] == "1"
    assert left["rollback.reason"] == "complaints about stale items"
    assert left["rollback.by"] == actor
    assert restored["restored.from"] == "2"
    assert restored["restored.at"] == left["rollback.at"]
    assert restored["restored.by"] == actor
    log = promotion_log(paths)
    assert [(entry["action"], entry["version"]) for entry in log] == [
        ("gate", "1"),
        ("gate", "2"),
        ("approve", "2"),
        ("rollback", "1"),
    ]
    assert log[-1]["from_version"] == "2"
    assert all(entry["decided_at"] and entry["decided_by"] for entry in log)

    # v1 was the first champion: there is nothing before it to return to.
    assert main(["rollback", "--reason", "again"]) == EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert "ERROR: champion v1 has no previous champion to return to; nothing changed" in error
    assert champion(params) == "1"
    assert len(promotion_log(paths)) == 4


def feedback_log(path: Path, counts: dict[str, tuple[int, int]]) -> Path:
    """The API's events log: per version, (impressions, clicks) for distinct users."""
    lines = []
    for hour, (version, (impressions, clicks)) in enumerate(counts.items()):
        at = f"2026-11-27T{hour:02d}:00:00.000Z"
        for user in range(impressions):
            for kind in ("impression", "click") if user < clicks else ("impression",):
                event = {
                    "event_type": kind,
                    "user_id": f"u{user}",
                    "item_id": f"i{user % 7}",
                    "model_version": version,
                    "timestamp": at,
                    "received_at": at,
                }
                lines.append(json.dumps(event))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("counts", "rolls_back", "says"),
    [
        ({"1": (400, 40), "2": (400, 4)}, True, "0.10x v1's 0.1000: below the 0.7x floor"),
        ({"1": (400, 40), "2": (400, 40)}, False, "1.00x v1's 0.1000: within the 0.7x floor"),
        ({"1": (100, 10), "2": (100, 1)}, False, "v2 has 100 impressions (< 200)"),
    ],
    ids=["ctr-drop", "same-ctr", "too-few-impressions"],
)
def test_rollback_check_acts_on_an_online_quality_drop(project, capsys, counts, rolls_back, says):
    params, paths = project
    approve_v2(capsys)
    feedback = feedback_log(paths.root / "logs" / "feedback-events.jsonl", counts)
    assert main(["rollback", "--check", "--feedback", str(feedback)]) == 0
    out = capsys.readouterr().out
    assert says in out
    if rolls_back:
        assert champion(params) == "1"
        reason = model_version(params, "2").tags["rollback.reason"]
        assert reason.startswith("online quality drop: click-through of v2 is 0.0100, 0.10x")
        assert promotion_log(paths)[-1]["reason"] == reason
    else:
        assert out.startswith("no rollback needed: ")
        assert champion(params) == "2"
        assert "rollback.reason" not in model_version(params, "2").tags
        assert [entry["action"] for entry in promotion_log(paths)][-1] == "approve"


def audit_json(capsys, *args: str):
    capsys.readouterr()
    assert main(["audit", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def drift_quality(paths: Paths, feedback: Path, capsys) -> dict:
    """The drift job's online-quality verdict (the real job, evidently included)."""
    from {{ cookiecutter.package }}_monitoring.cli import main as monitor_main
    from {{ cookiecutter.package }}_training.synthetic import generate, write_dataset

    incoming = paths.root / "data" / "incoming"
    if not incoming.is_dir():
        params = yaml.safe_load((paths.root / "params.yaml").read_text())["synthetic"]
        week = {"n_events": 20_000, "start": "2026-02-02", "days": 7}
        write_dataset(*generate(**{**params, **week}), incoming)
    out = paths.root / "reports" / "drift"
    code = monitor_main(["drift", "--feedback", str(feedback), "--out", str(out)])
    capsys.readouterr()
    assert code in (0, 3)
    return json.loads((out / "summary.json").read_text())["online_quality"]


def test_after_a_rollback_drift_and_rollback_judge_the_same_champion(project, capsys):
    """Both ask the registry who is champion and who came before it, so a rollback that makes
    v1 champion again changes both verdicts alike (the feedback log alone would say v2)."""
    params, paths = project
    approve_v2(capsys)
    feedback = feedback_log(paths.root / "logs" / "f.jsonl", {"1": (400, 40), "2": (400, 4)})
    before = drift_quality(paths, feedback, capsys)
    assert (before["champion"], before["previous"], before["drop"]) == ("2", "1", True)

    assert main(["rollback", "--check", "--feedback", str(feedback)]) == 0
    assert before["reason"] in capsys.readouterr().out
    assert champion(params) == "1"

    after = drift_quality(paths, feedback, capsys)
    assert (after["champion"], after["previous"], after["drop"]) == ("1", None, False)
    assert main(["rollback", "--check", "--feedback", str(feedback)]) == 0
    assert capsys.readouterr().out == f"no rollback needed: {after['reason']}\n"
    assert champion(params) == "1"


def pod_logs(single: Path, folder: Path, pods: int = 3) -> Path:
    """`single` spread over one log per API pod, as on Kubernetes, with every click also logged
    again by the next pod (a client retry after a timeout: the same event_id)."""
    folder.mkdir(parents=True)
    logs = [[] for _ in range(pods)]
    for n, line in enumerate(single.read_text().splitlines()):
        event = {**json.loads(line), "event_id": f"e-{n}"}
        logs[n % pods].append(json.dumps(event))
        if event["event_type"] == "click":
            logs[(n + 1) % pods].append(json.dumps(event))
    for pod, lines in enumerate(logs):
        (folder / f"api-{pod}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_drift_and_rollback_read_every_pod_log_of_an_events_log_folder(
    project, capsys, monkeypatch
):
    params, paths = project
    approve_v2(capsys)
    single = feedback_log(paths.root / "logs" / "f.jsonl", {"1": (400, 40), "2": (400, 4)})
    folder = pod_logs(single, paths.root / "feedback")
    quality = drift_quality(paths, folder, capsys)  # each event once: the retries do not count
    assert (quality["champion"], quality["previous"], quality["drop"]) == ("2", "1", True)
    assert "0.0100, 0.10x v1's 0.1000: below the 0.7x floor" in quality["reason"]

    monkeypatch.setenv("EVENTS_LOG", str(folder))  # what the drift and rollback Jobs set
    assert main(["rollback", "--check"]) == 0
    assert quality["reason"] in capsys.readouterr().out
    assert champion(params) == "1"


@pytest.mark.parametrize("log", ["none.jsonl", "no-folder", "empty-folder"])
def test_a_missing_or_empty_events_log_folder_is_no_feedback(project, capsys, monkeypatch, log):
    params, paths = project
    approve_v2(capsys)
    (paths.root / "empty-folder").mkdir()
    monkeypatch.setenv("EVENTS_LOG", str(paths.root / log))
    assert main(["rollback", "--check"]) == 0
    assert capsys.readouterr().out == "no rollback needed: v2 has 0 impressions (< 200)\n"
    assert champion(params) == "2"


def test_audit_traces_every_link_of_a_version(project, capsys, tmp_path):
    params, paths = project
    name = model_name()
    approve_v2(capsys)
    exports = tmp_path / "exports"
    batch = ["export", "--model-uri", f"models:/{name}/2", "--date", "2026-11-27"]
    assert batch_main([*batch, "--out", str(exports), "--quiet"]) == 0
    time.sleep(1.1)  # the registry's tags have one-second resolution: keep the steps apart
    assert main(["rollback", "--reason", "complaints about stale items"]) == 0

    report = audit_json(capsys, "--version", "2")
    version = model_version(params, "2")
    tags = version.tags
    run = registry.client().get_run(version.run_id)
    assert report["api"] is None
    assert report["model_version"]["name"] == name
    assert report["model_version"]["version"] == "2"
    assert report["model_version"]["aliases"] == sorted(version.aliases) == []
    assert report["model_version"]["status"] == version.status == "READY"
    assert report["training_run"]["run_id"] == version.run_id == tags["training_run_id"]
    assert report["training_run"]["status"] == run.info.status == "FINISHED"
    assert report["training_run"]["start_time"] and report["training_run"]["end_time"]
    assert report["training_run"]["triggered_by"] == tags["triggered_by"]
    commit, dirty = lineage.git_commit(paths.root)
    assert len(commit) == 40 and not dirty
    assert report["code"] == {"git_commit": commit, "git_dirty": "false", "template": describe()}
    data_hash = lineage.data_hash(paths.validated / "events.parquet", paths.root)
    assert report["data"] == {"dvc_data_hash": data_hash, "data_source": params["data"]["source"]}
    assert report["params"]["params_hash"] == tags["params_hash"]
    assert report["params"]["logged"] == run.data.params
    assert report["params"]["logged"]["model.name"] == params["model"]["name"]
    assert report["metrics"]["tags"]["ndcg_at_10"] == tags["metric.ndcg_at_10"]
    assert report["metrics"]["run"]["ndcg_at_10"] == run.data.metrics["ndcg_at_10"]
    gate = {key[5:]: value for key, value in tags.items() if key.startswith("gate.")}
    assert report["gate"] == gate and gate["decision"] == "pass" and gate["champion_value"]
    actor, _ = registry.triggered_by()
    assert report["approval"] == {
        "at": tags["approval.at"],
        "by": actor,
        "reason": "offline report reviewed",
        "status": "approved",
    }
    assert report["promotion"]["previous_champion"] == "1"
    assert report["rollback"]["to"] == "1"
    assert report["rollback"]["reason"] == "complaints about stale items"
    assert report["restored"] == {}
    [export] = report["exports"]
    assert export["date"] == "2026-11-27" and export["rows"] > 0
    assert export["path"] == str(exports / "date=2026-11-27")

    timeline = report["timeline"]
    assert [entry["at"] for entry in timeline] == sorted(entry["at"] for entry in timeline)
    assert [entry["step"] for entry in timeline] == list(STEPS)
    assert all(entry["by"] for entry in timeline)
    at = {entry["step"]: entry["at"] for entry in timeline}
    assert at["registered"] == tags["registered_at"]
    assert at["gate"] == tags["gate.decided_at"]
    assert at["approved"] == tags["approval.at"] == at["promoted"]
    assert at["rolled back"] == tags["rollback.at"]

    restored = audit_json(capsys)  # the champion: v1, restored from v2
    assert restored["model_version"]["version"] == "1"
    assert restored["restored"]["from"] == "2"
    assert "restored" in [entry["step"] for entry in restored["timeline"]]

    assert main(["audit", "--version", "2"]) == 0
    table = capsys.readouterr().out
    for value in (
        commit,
        data_hash,
        tags["params_hash"],
        version.run_id,
        tags["gate.reason"],
        tags["approval.at"],
        "offline report reviewed",
        "complaints about stale items",
        "TIMELINE",
    ):
        assert value in table
    assert table.index("GATE") < table.index("APPROVAL") < table.index("ROLLBACK")

    every = audit_json(capsys, "--all")
    assert [entry["model_version"]["version"] for entry in every] == ["1", "2"]
    assert every[1] == report

    assert main(["audit", "--version", "7"]) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert f"ERROR: {name} has no version '7' in the registry at sqlite:///" in captured.err
    assert "Traceback" not in captured.err and captured.out == ""
    assert main(["audit", "--version", "nightly"]) == EXIT_BAD_INPUT
    assert f"ERROR: {name} has no alias 'nightly'" in capsys.readouterr().err


@contextlib.contextmanager
def serving_champion(paths: Paths, name: str, tmp_path: Path):
    """The API following the registry's champion, on a free local port: (url, app)."""
    from werkzeug.serving import make_server

    from {{ cookiecutter.package }}_api import create_app

    app = create_app(
        {
            "MODEL_URI": f"models:/{name}@champion",
            "MLFLOW_TRACKING_URI": f"sqlite:///{paths.root / 'mlflow.db'}",
            "MODEL_REFRESH_SECONDS": 0,
            "EVENTS_LOG": str(tmp_path / "events.jsonl"),
            "DRIFT_REPORT_DIR": str(tmp_path),
        }
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", app
    finally:
        server.shutdown()
        thread.join(timeout=10)
        app.extensions["model_store"].stop()


@pytest.fixture
def running_api(project, tmp_path):
    """The API serving v2, approved as champion."""
    _, paths = project
    actions.approve(model_name(), "2", "offline report reviewed")
    with serving_champion(paths, model_name(), tmp_path) as served:
        yield served


def test_audit_of_what_a_running_api_serves(project, capsys, running_api):
    params, _ = project
    url, app = running_api
    report = audit_json(capsys, "--url", url)
    served = app.extensions["model_store"].current
    version = model_version(params, "2")
    assert report["api"]["url"] == url
    assert report["api"]["version_served"] == "2" == served.version
    assert report["api"]["loaded_at"] == served.loaded_at
    assert report["api"]["model_uri_alias"] == "champion"
    assert report["api"]["run_id_matches_registry"] is True
    assert report["api"]["registry_champion"] == "2"
    assert report["model_version"]["version"] == "2"
    assert report["training_run"]["run_id"] == version.run_id
    assert report["code"]["git_commit"] == version.tags["git_commit"]
    assert report["gate"]["decision"] == "pass"
    assert report["approval"]["status"] == "approved"
    assert [entry["step"] for entry in report["timeline"]] == list(STEPS[:5])
    assert report == {**audit_json(capsys, "--version", "2"), "api": report["api"]}

    assert main(["audit", "--url", url]) == 0
    table = capsys.readouterr().out
    assert table.startswith(f"== {model_name()} v2 ")
    assert "API" in table and served.loaded_at in table and version.run_id in table


def test_an_unreachable_api_is_a_clear_error(project, capsys):
    with socket.socket() as probe:  # a port nothing listens on once it is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["audit", "--url", f"http://127.0.0.1:{port}"]) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert f"ERROR: cannot reach the API at http://127.0.0.1:{port}: " in captured.err
    assert "Traceback" not in captured.err and captured.out == ""

    params, paths = project
    approve_v2(capsys)
    check = ["rollback", "--check", "--feedback", str(paths.root / "none.jsonl")]
    assert main([*check, "--url", f"http://127.0.0.1:{port}"]) == EXIT_BAD_INPUT
    assert f"ERROR: cannot reach the API at http://127.0.0.1:{port}: " in capsys.readouterr().err
    assert champion(params) == "2"


def test_rollback_check_acts_when_the_api_cannot_load_the_champion(project, capsys, tmp_path):
    """v2 is approved but its stored artifact is corrupt: the API keeps serving v1 and counts
    the failed loads; `rollback --check --url` then moves the alias back to what is served."""
    from urllib.parse import urlparse

    params, paths = project
    name = model_name()
    stored = Path(urlparse(registry.client().get_model_version_download_uri(name, "2")).path)
    with open(next(stored.rglob("user_top_items.npy")), "r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\xff\xff\xff\x7f")
    with serving_champion(paths, name, tmp_path) as (url, app):
        approve_v2(capsys)
        assert app.extensions["model_store"].reload().status == "failed"  # checksum mismatch
        feedback = ["--feedback", str(paths.root / "none.jsonl")]
        assert main(["rollback", "--check", *feedback, "--url", url]) == 0
        out = capsys.readouterr().out
        assert "rolled back from v2 to v1" in out
        assert "cannot load champion v2 (1 reload failures) and still serves v1" in out
        assert champion(params) == "1"
        assert "cannot load" in model_version(params, "2").tags["rollback.reason"]
