"""`registry backup` and `registry restore` of a real SQLite registry and its artifacts.

v1 is registered and made champion by the gate, backed up, then the registry moves on (v2
becomes champion, a tag of v1 is deleted) and is restored; then the database and the artifacts
are deleted and restored from nothing. After each restore the champion is loaded as the API
loads it, in a new process: this one's MLflow client keeps its connections to the file that the
restore moved aside, as a running API would (the runbook restarts it).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from {{ cookiecutter.package }}_core import registry
from {{ cookiecutter.package }}_core.model_source import load_model
from {{ cookiecutter.package }}_core.shared import CHAMPION, ExitCode, model_name
from {{ cookiecutter.package }}_registry.cli import main
from {{ cookiecutter.package }}_training import gate, register

pytestmark = pytest.mark.slow

LOAD_CHAMPION = """
import hashlib, json
from {{ cookiecutter.package }}_core.model_source import load_model
from {{ cookiecutter.package }}_core.shared import model_name
loaded = load_model(f"models:/{model_name()}@champion")
print(json.dumps([loaded.version, loaded.tags, loaded.artifact.user_top_items.tolist()]))
"""


@pytest.fixture
def champion_project(registry_project):
    """The evaluated project with v1 registered and promoted by the gate."""
    params, paths = registry_project
    register.register(params, paths)
    assert gate.promote_if_better(params, paths)["champion_moved"]
    return params, paths


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def registry_rows(database: Path) -> dict[str, list]:
    """The versions, aliases and version tags in the database file, read with SQL."""
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return {
            table: sorted(connection.execute(query).fetchall())
            for table, query in (
                ("versions", "SELECT name, version, current_stage, source FROM model_versions"),
                ("aliases", "SELECT name, alias, version FROM registered_model_aliases"),
                ("tags", "SELECT name, version, key, value FROM model_version_tags"),
            )
        }
    finally:
        connection.close()


def champion_in_a_new_process() -> list:
    result = subprocess.run(
        [sys.executable, "-c", LOAD_CHAMPION], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_a_restore_brings_back_the_champion_its_tags_and_its_artifact(
    champion_project, tmp_path, capsys
):
    params, paths = champion_project
    database, name = paths.root / "mlflow.db", model_name()
    before = registry_rows(database)
    loaded = load_model(f"models:/{name}@{CHAMPION}")
    assert loaded.version == "1"
    served = [loaded.version, loaded.tags, loaded.artifact.user_top_items.tolist()]

    out = tmp_path / "backups" / "before-v2"
    code, printed, _ = cli(capsys, "backup", "--out", str(out))
    assert code == ExitCode.OK, printed
    assert f"{name}: versions 1, champion v1" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["database"]["kind"] == "sqlite"
    assert manifest["model"] == {"name": name, "versions": ["1"], "champion": "1"}
    assert manifest["artifacts"]["root"] == str(paths.root / "mlruns")
    assert sorted(manifest["files"]) == ["artifacts.tar.gz", "mlflow.db"]

    # The registry moves on: v2 becomes champion and v1 loses a tag.
    register.register(params, paths)
    mlflow_client = registry.client()
    mlflow_client.set_registered_model_alias(name, CHAMPION, "2")
    mlflow_client.delete_model_version_tag(name, "1", "git_commit")
    moved_on = registry_rows(database)
    assert moved_on != before

    code, printed, _ = cli(capsys, "restore", "--from", str(out))
    assert code == ExitCode.OK, printed
    assert f"{name}: versions 1, champion v1" in printed
    assert registry_rows(database) == before
    # Nothing is lost: the database the restore replaced is beside it, v2 and all.
    (aside,) = paths.root.glob("mlflow.db.before-restore-*")
    assert str(aside.name) in printed
    assert registry_rows(aside) == moved_on
    assert champion_in_a_new_process() == served

    # From nothing: no database, no artifacts.
    database.unlink()
    shutil.rmtree(paths.root / "mlruns")
    code, printed, _ = cli(capsys, "restore", "--from", str(out))
    assert code == ExitCode.OK, printed
    assert "the database it replaced" not in printed
    assert registry_rows(database) == before
    assert champion_in_a_new_process() == served


def test_bad_inputs_exit_2_and_change_nothing(champion_project, tmp_path, capsys, monkeypatch):
    _, paths = champion_project
    database = paths.root / "mlflow.db"
    original = database.read_bytes()

    def unchanged() -> None:
        assert database.read_bytes() == original
        assert not list(paths.root.glob("mlflow.db.*"))

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me")
    code, _, error = cli(capsys, "backup", "--out", str(busy))
    assert code == ExitCode.BAD_INPUT and "not an empty folder" in error
    assert [path.name for path in busy.iterdir()] == ["notes.txt"]

    code, _, error = cli(capsys, "restore", "--from", str(tmp_path / "nowhere"))
    assert code == ExitCode.BAD_INPUT and "manifest.json not found" in error
    unchanged()

    good = tmp_path / "good"
    assert cli(capsys, "backup", "--out", str(good))[0] == ExitCode.OK
    for file, damage in (("mlflow.db", "corrupt"), ("artifacts.tar.gz", "missing")):
        broken = tmp_path / f"broken-{file}"
        shutil.copytree(good, broken)
        if damage == "corrupt":
            data = bytearray((broken / file).read_bytes())
            data[len(data) // 2] ^= 0xFF
            (broken / file).write_bytes(bytes(data))
        else:
            (broken / file).unlink()
        code, _, error = cli(capsys, "restore", "--from", str(broken))
        assert code == ExitCode.BAD_INPUT, error
        assert f"{broken / file}" in error and damage in error
        unchanged()

    auth = f"sqlite:///{paths.root / 'basic_auth.db'}"
    code, _, error = cli(capsys, "restore", "--from", str(good), "--auth-database", auth)
    assert code == ExitCode.BAD_INPUT and "holds no auth database" in error
    unchanged()

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://mlflow.example.com")
    for command in (["backup", "--out", str(tmp_path / "new")], ["restore", "--from", str(good)]):
        code, _, error = cli(capsys, *command)
        assert code == ExitCode.BAD_INPUT
        assert "is an MLflow server" in error
        assert "--database <the server's backend store URI>" in error and "--artifacts" in error
    assert not (tmp_path / "new").exists()
    unchanged()
