"""`<project>-batch export`: the export equals the API's answers, is idempotent, is logged to
MLflow, and bad input (unknown model, corrupt artifact, unknown category, settings that leave no
rows, bad date or catalog) and failures (unwritable path, full disk) change nothing."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from {{ cookiecutter.package }}_api import create_app
from {{ cookiecutter.package }}_batch.cli import main
from {{ cookiecutter.package }}_core.artifact import ServingArtifact, sha256_file
from {{ cookiecutter.package }}_core.shared import ExitCode, model_name
from {{ cookiecutter.package }}_registry.cli import main as registry_main

EXIT_BAD_INPUT, EXIT_FAILED = ExitCode.BAD_INPUT, ExitCode.FAILED

pytestmark = pytest.mark.slow
N_USERS, N_ITEMS, TOP_N = 300, 80, 40
DAY = "2026-03-02"
UNAVAILABLE = ["i0003", "i0010", "i0042"]


@pytest.fixture
def model_dir(tmp_path) -> Path:
    """A random but valid artifact: 300 users, 80 items in 4 categories, top-40 lists."""
    rng = np.random.default_rng(11)
    top = np.array([rng.permutation(N_ITEMS)[:TOP_N] for _ in range(N_USERS)], dtype=np.int32)
    top[:5, 30:] = -1  # a few short lists, padded as training pads them
    scores = -np.sort(-rng.random((N_USERS, TOP_N)), axis=1).astype(np.float32)
    ServingArtifact(
        user_ids=np.array([f"u{i:04d}" for i in range(N_USERS)]),
        item_ids=np.array([f"i{i:04d}" for i in range(N_ITEMS)]),
        item_categories=np.array(["shoes", "hats", "bags", "toys"] * (N_ITEMS // 4)),
        user_top_items=top,
        user_top_scores=np.where(top >= 0, scores, -np.inf).astype(np.float32),
        similar_items=np.array(
            [[(i + j) % N_ITEMS for j in range(1, 6)] for i in range(N_ITEMS)], np.int32
        ),
        similar_scores=np.ones((N_ITEMS, 5), dtype=np.float32),
        popular_items=rng.permutation(N_ITEMS).astype(np.int32),
        metadata={"model": "batch-test"},
    ).save(tmp_path / "model")
    return tmp_path / "model"


@pytest.fixture
def workdir(tmp_path, monkeypatch, project_params) -> Path:
    """The project folder the CLI runs in, with its own MLflow registry."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(project_params))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    catalog = pd.DataFrame({"item_id": [f"i{i:04d}" for i in range(N_ITEMS)]})
    catalog["available"] = ~catalog["item_id"].isin(UNAVAILABLE)
    catalog.to_csv(tmp_path / "catalog.csv", index=False)
    return tmp_path


def export(model: Path, *extra: str) -> int:
    args = ["export", "--model-uri", str(model), "--date", DAY, "--quiet"]
    return main([*args, "--out", "exports", "--catalog", "catalog.csv", *extra])


def partition(workdir: Path) -> Path:
    return workdir / "exports" / f"date={DAY}"


def read_export(workdir: Path) -> pd.DataFrame:
    return pd.concat(
        pd.read_parquet(path) for path in sorted(partition(workdir).glob("part-*.parquet"))
    )


def test_the_export_is_what_the_api_answers_item_for_item(workdir, model_dir):
    assert export(model_dir, "--chunk-size", "70") == 0
    rows = read_export(workdir)
    assert rows["user_id"].nunique() == N_USERS
    assert len(list(partition(workdir).glob("part-*.parquet"))) == 5  # 300 users / 70

    api = create_app({"MODEL_URI": str(model_dir), "MODEL_REFRESH_SECONDS": 0}).test_client()
    exclude = ",".join(UNAVAILABLE)
    for user in [f"u{i:04d}" for i in (0, 3, 4, 7, 100, 157, 299)]:
        answer = api.get(f"/v1/users/{user}/recommendations?k=20&exclude={exclude}").get_json()
        mine = rows[rows["user_id"] == user].sort_values("rank")
        assert mine["item_id"].tolist() == [item["item_id"] for item in answer["items"]], user
        scores = [item["score"] for item in answer["items"]]  # the API rounds to 6 places
        assert mine["score"].to_numpy() == pytest.approx(scores, abs=1e-6)
        assert mine["rank"].tolist() == list(range(1, len(mine) + 1))
        assert set(mine["model_version"]) == {answer["model_version"]}
    assert not rows["item_id"].isin(UNAVAILABLE).any()

    fallback = pd.read_parquet(partition(workdir) / "fallback.parquet")
    unknown = api.get(f"/v1/users/nobody/recommendations?k=20&exclude={exclude}").get_json()
    assert fallback["item_id"].tolist() == [item["item_id"] for item in unknown["items"]]


def test_the_manifest_counts_and_checksums_every_file(workdir, model_dir):
    assert export(model_dir, "--csv") == 0
    manifest = json.loads((partition(workdir) / "manifest.json").read_text())
    assert manifest["users"] == N_USERS
    assert manifest["rows"] == len(read_export(workdir))
    for name, entry in manifest["files"].items():
        assert sha256_file(partition(workdir) / name) == entry["sha256"], name
    csv = pd.read_csv(partition(workdir) / "part-00000.csv", dtype={"run_id": str})
    assert len(csv) == manifest["files"]["part-00000.parquet"]["rows"]


def test_a_rerun_is_a_no_op_and_new_settings_replace_the_partition(workdir, model_dir, capsys):
    assert export(model_dir) == 0
    manifest = partition(workdir) / "manifest.json"
    first = manifest.stat().st_mtime_ns
    assert export(model_dir) == 0
    assert "already complete" in capsys.readouterr().out
    assert manifest.stat().st_mtime_ns == first

    assert export(model_dir, "--k", "5", "--category", "hats") == 0
    rows = read_export(workdir)
    assert rows.groupby("user_id").size().max() == 5
    assert (rows["item_id"].str[1:].astype(int) % 4 == 1).all()  # hats: items 1, 5, 9, ...
    assert not list((workdir / "exports").glob(".*")), "no staging folder is left behind"


def test_the_export_is_logged_to_mlflow_with_its_model_version(workdir, model_dir):
    import mlflow

    assert export(model_dir) == 0
    manifest = json.loads((partition(workdir) / "manifest.json").read_text())
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    try:
        version = manifest["request"]["model_version"]
        runs = mlflow.search_runs(
            experiment_names=["local-model-batch"],
            filter_string=f"tags.kind = 'batch_export' and tags.model_version = '{version}'",
        )
    finally:
        mlflow.set_tracking_uri(None)
    assert len(runs) == 1
    assert runs.iloc[0]["tags.export.checksum"] == manifest["checksum"]
    assert runs.iloc[0]["metrics.rows"] == manifest["rows"]


def test_a_registered_champion_is_exported_and_lineage_lists_the_export(
    workdir, model_dir, project_params, capsys
):
    import mlflow

    from {{ cookiecutter.package }}_training.register import log_serving_model

    name = model_name()
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    try:
        client = mlflow.MlflowClient()
        with mlflow.start_run(experiment_id=client.create_experiment("training")) as run:
            version = str(log_serving_model(model_dir, name).registered_model_version)
        client.set_model_version_tag(name, version, "training_run_id", run.info.run_id)
        client.set_registered_model_alias(name, "champion", version)
    finally:
        mlflow.set_tracking_uri(None)

    assert export(f"models:/{name}@champion") == 0
    rows = read_export(workdir)
    assert set(rows["model_version"]) == {version}
    assert set(rows["run_id"]) == {run.info.run_id}
    capsys.readouterr()
    assert registry_main(["lineage", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    manifest = json.loads((partition(workdir) / "manifest.json").read_text())
    assert [(e["date"], e["checksum"], e["rows"]) for e in record["exports"]] == [
        (DAY, manifest["checksum"], manifest["rows"])
    ]


def test_an_unknown_model_uri_is_a_clear_error(workdir, capsys):
    assert export("models:/no-such-model@champion") == EXIT_BAD_INPUT
    assert "cannot load the model" in capsys.readouterr().err
    assert export(workdir / "missing-folder") == EXIT_BAD_INPUT
    assert not (workdir / "exports").exists()


def test_a_corrupt_artifact_is_refused_and_the_previous_export_stays(workdir, model_dir, capsys):
    assert export(model_dir) == 0
    before = sha256_file(partition(workdir) / "manifest.json")
    with open(model_dir / "user_top_items.npy", "r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\xff\xff\xff\x7f")
    assert export(model_dir, "--k", "7") == EXIT_BAD_INPUT
    assert "checksum mismatch" in capsys.readouterr().err
    assert sha256_file(partition(workdir) / "manifest.json") == before


def test_an_unwritable_output_path_is_a_clear_error(workdir, model_dir, capsys):
    (workdir / "a-file").write_text("not a folder")
    code = main(["export", "--model-uri", str(model_dir), "--quiet", "--out", "a-file/exports"])
    assert code == EXIT_FAILED
    assert "cannot write to a-file/exports" in capsys.readouterr().err


def test_a_full_disk_fails_cleanly_and_keeps_the_previous_export(workdir, model_dir):
    assert export(model_dir) == 0
    before = {path.name: sha256_file(path) for path in partition(workdir).iterdir()}

    def tiny_quota() -> None:  # files above 20 kB fail with EFBIG, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    result = subprocess.run(
        [
            *(sys.executable, "-m", main.__module__, "export", "--quiet"),
            *("--model-uri", str(model_dir), "--date", DAY, "--out", "exports", "--k", "40"),
        ],
        capture_output=True,
        text=True,
        preexec_fn=tiny_quota,
        timeout=300,
    )
    assert result.returncode == EXIT_FAILED, result.stderr
    assert "cannot write the export" in result.stderr
    assert "previous exports are untouched" in result.stderr
    after = {path.name: sha256_file(path) for path in partition(workdir).iterdir()}
    assert after == before
    assert not list((workdir / "exports").glob(".*")), "no staging folder is left behind"


def refused_over_an_export(workdir: Path, model_dir: Path, capsys, *extra: str) -> str:
    """Export, then export again with `extra`: exit 2 and the first export untouched. The error."""
    assert export(model_dir) == 0
    before = {path.name: sha256_file(path) for path in partition(workdir).iterdir()}
    capsys.readouterr()
    assert export(model_dir, *extra) == EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert "previous exports are untouched" in error, error
    assert {path.name: sha256_file(path) for path in partition(workdir).iterdir()} == before
    assert not list((workdir / "exports").glob(".*")), "no staging folder is left behind"
    return error


def test_an_unknown_category_is_bad_input_and_the_previous_export_stays(workdir, model_dir, capsys):
    error = refused_over_an_export(workdir, model_dir, capsys, "--category", "hatz")
    assert "unknown category 'hatz'" in error and "'hats'" in error, error


def test_an_export_that_would_be_empty_is_bad_input(workdir, model_dir, capsys):
    catalog = pd.read_csv(workdir / "catalog.csv")
    catalog["available"] = catalog["item_id"].str[1:].astype(int) % 4 != 1  # no hat is for sale
    catalog.to_csv(workdir / "no-hats.csv", index=False)
    extra = ("--category", "hats", "--catalog", "no-hats.csv")
    error = refused_over_an_export(workdir, model_dir, capsys, *extra)
    assert "would have 0 rows" in error and "category 'hats'" in error, error


@pytest.mark.parametrize("day", ["../x", "2026-13-01", "2026-12-1/"])
def test_a_date_that_is_not_a_calendar_day_is_bad_input(workdir, model_dir, day, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--model-uri", str(model_dir), "--date", day, "--out", "exports"])
    assert exit_info.value.code == EXIT_BAD_INPUT
    assert f"{day!r} is not a date (YYYY-MM-DD)" in capsys.readouterr().err
    assert not (workdir / "exports").exists()


def test_an_unreadable_catalog_is_bad_input(workdir, model_dir, capsys):
    (workdir / "no-available.csv").write_text("item_id\ni0001\n")
    assert export(model_dir, "--catalog", "no-available.csv") == EXIT_BAD_INPUT
    assert "lacks column(s) available" in capsys.readouterr().err
    assert export(model_dir, "--catalog", "missing.csv") == EXIT_BAD_INPUT
    assert "cannot read the catalog missing.csv" in capsys.readouterr().err
    assert not partition(workdir).exists()


# --- Sharded exports: `export --shard i/N`, N processes writing one partition -----------------


def export_shards(model: Path, count: int, *extra: str) -> list[int]:
    return [export(model, "--shard", f"{index}/{count}", *extra) for index in range(count)]


def listed_rows(folder: Path) -> pd.DataFrame:
    """The rows of a complete partition, read through the files its manifest.json lists."""
    manifest = json.loads((folder / "manifest.json").read_text())
    names = sorted(n for n in manifest["files"] if n.startswith("part-") and n.endswith("parquet"))
    return pd.concat(pd.read_parquet(folder / name) for name in names)


def test_three_shards_together_are_the_single_process_export_row_for_row(workdir, model_dir):
    from {{ cookiecutter.package }}_batch.export import shard_of

    assert export(model_dir, "--out", "single", "--chunk-size", "70") == 0
    single_dir = workdir / "single" / f"date={DAY}"
    single = listed_rows(single_dir)

    assert export(model_dir, "--shard", "0/3", "--chunk-size", "40") == 0
    assert export(model_dir, "--shard", "1/3", "--chunk-size", "40") == 0
    assert not (partition(workdir) / "manifest.json").exists(), "complete only with every shard"
    assert export(model_dir, "--shard", "2/3", "--chunk-size", "40") == 0

    folder = partition(workdir)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert len(manifest["shards"]["manifests"]) == 3
    users_by_shard = []
    for index, name in enumerate(manifest["shards"]["manifests"]):
        shard = json.loads((folder / name).read_text())
        assert shard["shard"] == {"index": index, "count": 3}
        parts = [n for n in shard["files"] if n.startswith("part-")]
        users = set(pd.concat(pd.read_parquet(folder / n) for n in parts)["user_id"])
        assert len(users) == shard["users"] > 0
        assert set(shard_of(sorted(users), 3)) == {index}
        users_by_shard.append(users)
    assert sum(len(users) for users in users_by_shard) == len(set().union(*users_by_shard))
    for name, entry in manifest["files"].items():
        assert sha256_file(folder / name) == entry["sha256"], name

    sharded = listed_rows(folder)
    key = ["user_id", "rank"]
    pd.testing.assert_frame_equal(
        sharded.sort_values(key).reset_index(drop=True),
        single.sort_values(key).reset_index(drop=True),
    )
    assert (manifest["users"], manifest["rows"]) == (N_USERS, len(single))
    fallback = [n for n in manifest["files"] if n.startswith("fallback-")]
    pd.testing.assert_frame_equal(
        pd.read_parquet(folder / fallback[0]), pd.read_parquet(single_dir / "fallback.parquet")
    )
    assert not list(folder.glob(".*")), "no staging folder or temp file is left behind"


def test_concurrent_shards_finish_the_partition_once_and_reruns_are_no_ops(workdir, model_dir):
    import mlflow

    command = [sys.executable, "-m", main.__module__, "export", "--model-uri", str(model_dir)]
    command += ["--date", DAY, "--out", "exports", "--catalog", "catalog.csv", "--quiet"]
    pods = [
        subprocess.Popen([*command, "--shard", f"{i}/3"], stdout=subprocess.PIPE, text=True)
        for i in range(3)
    ]
    outputs = [pod.communicate(timeout=300)[0] for pod in pods]
    assert [pod.returncode for pod in pods] == [0, 0, 0], outputs
    assert any("all 3 shards are written" in out for out in outputs), outputs
    manifest = json.loads((partition(workdir) / "manifest.json").read_text())
    assert manifest["users"] == N_USERS and len(manifest["shards"]["manifests"]) == 3

    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    try:
        runs = mlflow.search_runs(experiment_names=["local-model-batch"])
    finally:
        mlflow.set_tracking_uri(None)
    assert len(runs) == 1, "one MLflow run per partition, not per shard"
    assert runs.iloc[0]["tags.export.checksum"] == manifest["checksum"]

    before = {path.name: path.stat().st_mtime_ns for path in partition(workdir).iterdir()}
    assert export_shards(model_dir, 3) == [0, 0, 0]
    assert {p.name: p.stat().st_mtime_ns for p in partition(workdir).iterdir()} == before


def test_a_sharded_export_replaces_an_older_one_only_when_every_shard_is_written(
    workdir, model_dir
):
    assert export(model_dir) == 0  # the unsharded layout, k=20
    old = {path.name: sha256_file(path) for path in partition(workdir).iterdir()}
    assert export(model_dir, "--k", "5", "--shard", "0/2") == 0
    assert {name: sha256_file(partition(workdir) / name) for name in old} == old
    assert read_export_unsharded_k(workdir) == 20, "readers still see the complete old export"

    assert export(model_dir, "--k", "5", "--shard", "1/2") == 0
    rows = listed_rows(partition(workdir))
    assert rows.groupby("user_id").size().max() == 5 and rows["user_id"].nunique() == N_USERS
    manifest = json.loads((partition(workdir) / "manifest.json").read_text())
    left = {path.name for path in partition(workdir).iterdir()}
    assert left - set(manifest["files"]) - set(manifest["shards"]["manifests"]) == {
        "manifest.json",
        next(name for name in left if name.startswith("_logged-")),
    }, "the older export's files are gone"


def read_export_unsharded_k(workdir: Path) -> int:
    return int(listed_rows(partition(workdir)).groupby("user_id").size().max())


def test_sharded_settings_that_leave_no_rows_are_refused_by_the_last_shard(
    workdir, model_dir, capsys
):
    assert export(model_dir) == 0
    before = sha256_file(partition(workdir) / "manifest.json")
    catalog = pd.read_csv(workdir / "catalog.csv")
    catalog["available"] = catalog["item_id"].str[1:].astype(int) % 4 != 1  # no hat is for sale
    catalog.to_csv(workdir / "no-hats.csv", index=False)
    extra = ("--category", "hats", "--catalog", "no-hats.csv")
    capsys.readouterr()
    assert export_shards(model_dir, 2, *extra) == [0, EXIT_BAD_INPUT]
    error = capsys.readouterr().err
    assert "would have 0 rows" in error and "previous exports are untouched" in error, error
    assert sha256_file(partition(workdir) / "manifest.json") == before


def test_a_shard_with_no_user_writes_a_manifest_without_parts(workdir, model_dir):
    from {{ cookiecutter.package }}_batch.export import shard_of

    empty = min(set(range(1, 400)) - set(shard_of([f"u{i:04d}" for i in range(N_USERS)], 400)))
    assert export(model_dir, "--shard", f"{empty}/400") == 0  # more shards than users
    (name,) = [path.name for path in partition(workdir).glob("_manifest-*")]
    shard = json.loads((partition(workdir) / name).read_text())
    assert (shard["users"], shard["rows"], shard["files"]) == (0, 0, {})
    assert not (partition(workdir) / "manifest.json").exists()


@pytest.mark.parametrize("value", ["3/2", "2/2", "-1/2", "a/b", "0/0", "1", "1/2/3", ""])
def test_a_bad_shard_is_bad_input_and_writes_nothing(workdir, model_dir, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        export(model_dir, f"--shard={value}")  # `--shard -1/2` would read as another option
    assert exit_info.value.code == EXIT_BAD_INPUT
    assert f"{value!r} is not a shard" in capsys.readouterr().err
    assert not (workdir / "exports").exists()
