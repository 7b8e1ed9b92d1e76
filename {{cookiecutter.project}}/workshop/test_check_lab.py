"""`make check-lab N=...`: a bad lab number is bad input, an empty project misses every lab's
outcome (each missing thing named with its command), and each lab passes on what it leaves."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SPEC = importlib.util.spec_from_file_location("check_lab", HERE / "check_lab.py")
assert SPEC and SPEC.loader
check_lab = importlib.util.module_from_spec(SPEC)
sys.modules["check_lab"] = check_lab  # dataclasses look their module up
SPEC.loader.exec_module(check_lab)


@pytest.mark.parametrize("argv", [[], ["0"], ["7"], ["two"], ["1", "2"]])
def test_a_bad_lab_number_exits_2_naming_the_labs(argv, tmp_path, capsys):
    assert check_lab.main(argv, root=tmp_path) == 2
    assert "N=1, 2, 3, 4, 5, 6" in capsys.readouterr().err


@pytest.mark.parametrize("lab", [1, 2, 3, 4, 5, 6])
def test_an_empty_project_has_not_done_any_lab(lab, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "k8s" / "overlays").mkdir(parents=True)  # lab 6: the module is there
    assert check_lab.main([str(lab)], root=tmp_path) == 3
    out = capsys.readouterr().out
    assert f"lab {lab} (" in out and "not done yet" in out
    missing = [line for line in out.splitlines() if "MISSING" in line]
    commands = [line for line in out.splitlines() if line.strip().startswith("run: ")]
    assert missing and len(commands) == len(missing)


def test_lab_6_without_the_kubernetes_module_says_so(tmp_path, capsys):
    assert check_lab.main(["6"], root=tmp_path) == 3
    assert "no Kubernetes module" in capsys.readouterr().out


def test_the_make_target_passes_n_and_fails_on_a_missing_lab():
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", "check-lab", "N=4"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert done.stdout.strip().endswith("workshop/check_lab.py 4")
    bad = subprocess.run(
        ["make", "--no-print-directory", "check-lab"], cwd=ROOT, capture_output=True, text=True
    )
    assert bad.returncode != 0 and "give the lab's number" in bad.stderr


def tracking_store(path: Path, champion: int, version_tags: dict[int, dict[str, str]]) -> None:
    """The tables of MLflow's SQLite store the checks read, with two tracked models."""
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE runs (run_uuid TEXT, status TEXT);
        CREATE TABLE tags (key TEXT, value TEXT, run_uuid TEXT);
        CREATE TABLE params (key TEXT, value TEXT, run_uuid TEXT);
        CREATE TABLE model_versions (name TEXT, version INTEGER);
        CREATE TABLE model_version_tags (name TEXT, version INTEGER, key TEXT, value TEXT);
        CREATE TABLE registered_model_aliases (alias TEXT, version INTEGER, name TEXT);
        INSERT INTO runs VALUES ('a', 'FINISHED'), ('b', 'FINISHED');
        INSERT INTO tags VALUES ('model', 'rp3beta', 'a');
        INSERT INTO params VALUES ('model', 'itemknn', 'b');
        """
    )
    name = check_lab.PROJECT
    for version, tags in version_tags.items():
        db.execute("INSERT INTO model_versions VALUES (?, ?)", (name, version))
        for key, value in tags.items():
            db.execute(
                "INSERT INTO model_version_tags VALUES (?, ?, ?, ?)", (name, version, key, value)
            )
    db.execute("INSERT INTO registered_model_aliases VALUES ('champion', ?, ?)", (champion, name))
    db.commit()
    db.close()


def test_labs_4_and_5_pass_on_what_they_leave(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    gate = {"gate.decision": "pass", "gate.lift_over_popularity": "2.2"}
    tracking_store(
        tmp_path / "mlflow.db",
        champion=2,
        version_tags={
            1: gate,
            2: {**gate, "approval.status": "approved", "trigger": "manual"},
            3: {**gate, "trigger": "drift"},
        },
    )
    (tmp_path / "logs").mkdir()
    records = [
        {"action": "approve", "version": "2", "reason": "looks good"},
        {"action": "rollback", "version": "2", "from_version": "3", "reason": "lab"},
    ]
    (tmp_path / "logs" / "promotions.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records)
    )
    (tmp_path / "reports" / "drift").mkdir(parents=True)
    (tmp_path / "reports" / "drift" / "summary.json").write_text(json.dumps(dict(verdict="drift")))
    (tmp_path / "reports" / "model-card.md").write_text("# card\n")
    assert check_lab.main(["4"], root=tmp_path) == 0
    assert check_lab.main(["5"], root=tmp_path) == 0
    out = capsys.readouterr().out
    assert "lab 4 (promote through the gate and audit): done" in out
    assert "'looks good'" in out and "v3 -> v2: 'lab'" in out


def test_a_tracking_server_elsewhere_is_named(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert check_lab.main(["4"], root=tmp_path) == 3
    assert "http://mlflow.example:5000" in capsys.readouterr().out


def test_it_runs_with_the_standard_library_alone(tmp_path):
    """Lab 1 is checked before `make setup`: no import outside the standard library."""
    result = subprocess.run(
        [sys.executable, "-I", "-S", str(HERE / "check_lab.py"), "1"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "run: make setup" in result.stdout
