"""The API under real gunicorn reads its model over HTTP from an MLflow server on PostgreSQL.

The test starts PostgreSQL (Debian's binaries), `mlflow server` on it with the artifacts served by
the server, and gunicorn with the package config, all on loopback. It proves that the champion is
served with its lineage, that moving the alias reaches every gunicorn worker, and that an MLflow
outage is counted while the last model keeps serving.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import {{ cookiecutter.package }}_api as api_package

pytestmark = pytest.mark.slow
NAME = "server-test-model"
DB = "mlflow"  # the database and its (trusted, loopback-only) owner
WORKERS = 2  # gunicorn workers: each one refreshes its model on its own


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def wait_until(check, seconds: float, what: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            pytest.fail(f"{what}: the process exited:\n{log.read_text()[-5000:]}")
        try:
            if check():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {seconds} s:\n{log.read_text()[-5000:]}")
        time.sleep(0.2)


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        # A session of its own, so `stop` also reaches the children (mlflow's web server).
        return subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def unavailable(reason: str):
    """Skip, unless CI requires PostgreSQL (REQUIRE_POSTGRES=1): there it must never skip."""
    if os.environ.get("REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{reason}, and REQUIRE_POSTGRES=1")
    pytest.skip(reason)


def postgres_bin() -> Path | None:
    """The newest of Debian's versioned binaries, else the initdb on PATH."""
    debian = [initdb.parent for initdb in Path("/usr/lib/postgresql").glob("*/bin/initdb")]
    if debian:
        return max(debian, key=lambda b: int(b.parent.name) if b.parent.name.isdigit() else 0)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@pytest.fixture
def postgres():
    """A throwaway PostgreSQL on 127.0.0.1 with the database `mlflow`; yields its port."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        unavailable("PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin or PATH)")
    try:
        import psycopg2  # noqa: F401 - the driver of the server's backend store
    except ImportError:
        unavailable("psycopg2 is not installed (the dev dependency group)")
    run_as, owner = [], None
    if os.geteuid() == 0:
        # initdb refuses root: run PostgreSQL as its system user, in a directory it owns
        # (pytest's tmp_path is under a directory only root may enter).
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            unavailable("running as root, and there is no `postgres` user to run PostgreSQL")
        run_as = ["runuser", "-u", "postgres", "--"]
    directory = Path(tempfile.mkdtemp(prefix="pytest-postgres-"))
    if owner is not None:
        os.chown(directory, owner.pw_uid, owner.pw_gid)
    data, port = directory / "data", free_port()

    def pg(program: str, *args: str) -> None:
        command = [*run_as, str(bin_dir / program), *args]
        result = subprocess.run(command, cwd=directory, capture_output=True, text=True)
        if result.returncode != 0:
            log = directory / "server.log"
            server_log = log.read_text() if log.exists() else ""
            pytest.fail(f"{program} failed:\n{result.stdout}{result.stderr}{server_log}")

    try:
        pg("initdb", "-D", str(data), "-U", DB, "--auth=trust", "--locale=C", "-E", "UTF8", "-N")
        # fsync off: a throwaway database need not survive a power cut, and migrations go faster.
        options = f"-h 127.0.0.1 -p {port} -k {directory} -c fsync=off"
        pg("pg_ctl", "-D", str(data), "-l", str(directory / "server.log"), "-o", options, "start")
        pg("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", DB, DB)
        yield port
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                [*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                cwd=directory,
                capture_output=True,
                check=False,
            )
        shutil.rmtree(directory, ignore_errors=True)


def backend_store_uri(postgres: int) -> str:
    return f"postgresql+psycopg2://{DB}@127.0.0.1:{postgres}/{DB}"


def start_mlflow_server(postgres: int, tmp_path: Path) -> tuple[str, subprocess.Popen]:
    """`mlflow server` on the PostgreSQL at port `postgres`, proxying tmp_path/mlartifacts."""
    port, log = free_port(), tmp_path / "mlflow-server.log"
    process = start(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            backend_store_uri(postgres),
            "--artifacts-destination",
            str(tmp_path / "mlartifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        # No job runner: the registry needs none, and its worker processes slow the start.
        {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        # The first start creates the schema (alembic migrations): allow it time.
        wait_until(lambda: get(f"{url}/health")[0] == 200, 120, "mlflow /health", process, log)
    except BaseException:
        stop(process)
        raise
    return url, process


@pytest.fixture
def mlflow_server(postgres, tmp_path):
    """`mlflow server` on the PostgreSQL above, proxying artifacts; yields (url, process)."""
    url, process = start_mlflow_server(postgres, tmp_path)
    try:
        yield url, process
    finally:
        stop(process)


@pytest.fixture
def register(mlflow_server, tmp_path, monkeypatch):
    """Registers a serving artifact as the next version of NAME over HTTP; moves `champion`."""
    import mlflow
    from mlflow.tracking import MlflowClient

    url, _ = mlflow_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    mlflow.set_tracking_uri(url)
    client = MlflowClient(tracking_uri=url)
    experiment = client.create_experiment("server-test")

    class Recommender(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input: list[str], params=None) -> list[str]:
            return model_input

    def register(artifact_dir: Path, tags: dict[str, str]) -> str:
        with mlflow.start_run(experiment_id=experiment):
            info = mlflow.pyfunc.log_model(
                name="recommender",
                python_model=Recommender(),
                artifacts={"serving_artifact": str(artifact_dir)},
                pip_requirements=["numpy"],
                registered_model_name=NAME,
            )
        version = str(info.registered_model_version)
        for key, value in tags.items():
            client.set_model_version_tag(NAME, version, key, value)
        client.set_registered_model_alias(NAME, "champion", version)
        return version

    yield register
    mlflow.set_tracking_uri(None)


@pytest.fixture
def gunicorn(tmp_path):
    """Starts the API under gunicorn with the package config and `env`; yields (url, process)."""
    started: list[subprocess.Popen] = []

    def start_api(env: dict[str, str]) -> tuple[str, subprocess.Popen]:
        port, log = free_port(), tmp_path / "gunicorn.log"
        environ = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port)}
        environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        environ["WEB_CONCURRENCY"] = str(WORKERS)
        package = api_package.__name__
        process = start(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--config",
                f"python:{package}.gunicorn_conf",
                f"{package}.wsgi:app",
            ],
            {**environ, **env},
            log,
        )
        started.append(process)
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: get(f"{base}/readyz")[0] == 200, 60, "gunicorn /readyz", process, log)
        return base, process

    yield start_api
    for process in started:
        stop(process)


def registered_models(port: int) -> list[str]:
    import psycopg2

    connection = psycopg2.connect(host="127.0.0.1", port=port, user=DB, dbname=DB)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT name FROM registered_models ORDER BY name")
            return [row[0] for row in cursor.fetchall()]
    finally:
        connection.close()


def worker_versions(base: str) -> dict[str, str]:
    """The model version each gunicorn worker serves, by pid (its `recommender_model_info`)."""
    text = get(f"{base}/metrics")[2].decode()
    versions = {}
    for labels in re.findall(r"^recommender_model_info\{(.*)\} 1\.0$", text, re.MULTILINE):
        label = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        versions[label["pid"]] = label["version"]
    return versions


def reload_failures(base: str) -> float:
    text = get(f"{base}/metrics")[2].decode()
    match = re.search(r"^recommender_model_reload_failures_total (\S+)$", text, re.MULTILINE)
    return float(match[1]) if match else 0.0


def test_serves_the_champion_from_the_server_follows_the_alias_and_survives_an_outage(
    postgres, mlflow_server, register, gunicorn, tmp_path, new_artifact
):
    tracking_uri, mlflow_process = mlflow_server
    new_artifact(name="v1").save(tmp_path / "v1")
    assert register(tmp_path / "v1", {"git_commit": "abc123"}) == "1"
    assert registered_models(postgres) == [NAME]  # the registry really is in PostgreSQL

    base, process = gunicorn(
        {
            "MODEL_URI": f"models:/{NAME}@champion",
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MODEL_REFRESH_SECONDS": "1",
        }
    )
    log = tmp_path / "gunicorn.log"
    status, _, body = get(f"{base}/readyz")
    assert status == 200 and json.loads(body)["model_version"] == "1"
    # From a server, only MLmodel and the folder it names are downloaded, not the whole model.
    logged = log.read_text()
    assert '"message": "downloaded the artifact"' in logged and "whole model" not in logged
    model = json.loads(get(f"{base}/v1/model")[2])
    assert (model["name"], model["version"], model["alias"]) == (NAME, "1", "champion")
    assert model["source"] == f"models:/{NAME}/1"
    assert model["lineage"]["git_commit"] == "abc123" and model["run_id"]
    status, headers, body = get(f"{base}/v1/users/u1/recommendations?k=2")
    assert status == 200 and headers["X-Model-Version"] == "1"
    assert [item["item_id"] for item in json.loads(body)["items"]] == ["c", "b"]

    new_artifact(popular=[3, 2, 1, 0], name="v2").save(tmp_path / "v2")
    assert register(tmp_path / "v2", {"git_commit": "def456"}) == "2"

    def served_version() -> str | None:
        status, headers, _ = get(f"{base}/v1/users/nobody/recommendations?k=2")
        return headers.get("X-Model-Version") if status == 200 else None

    # The outage below must find every worker on version 2, not only the one that answers.
    wait_until(
        lambda: list(worker_versions(base).values()) == ["2"] * WORKERS,
        30,
        "version 2 in every worker",
        process,
        log,
    )
    assert served_version() == "2"
    model = json.loads(get(f"{base}/v1/model")[2])
    assert model["version"] == "2" and model["lineage"]["git_commit"] == "def456"
    status, _, body = get(f"{base}/v1/users/nobody/recommendations?k=2")
    assert [item["item_id"] for item in json.loads(body)["items"]] == ["d", "c"]

    stop(mlflow_process)  # the outage: refreshes fail, are counted, and version 2 keeps serving
    wait_until(lambda: reload_failures(base) >= 1, 60, "a reload failure", process, log)
    for _ in range(10):
        status, _, body = get(f"{base}/readyz")
        assert status == 200 and json.loads(body)["model_version"] == "2"
        assert served_version() == "2"


def sql(port: int, dbname: str, *statements: str) -> list[tuple]:
    """Run statements (autocommit) in `dbname`; the rows of the last one that returns any."""
    import psycopg2

    connection = psycopg2.connect(host="127.0.0.1", port=port, user=DB, dbname=dbname)
    connection.autocommit = True
    rows: list[tuple] = []
    try:
        with connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)
                if cursor.description is not None:
                    rows = cursor.fetchall()
    finally:
        connection.close()
    return rows


def test_a_backup_restores_the_champion_into_a_new_database(
    postgres, mlflow_server, register, tmp_path, new_artifact
):
    """`registry backup` with pg_dump, the databases dropped and recreated empty, the artifacts
    deleted, `registry restore` with pg_restore: the restarted server resolves the champion, and
    the auth database (a stand-in with one user) is back too."""
    import psycopg2
    from mlflow.tracking import MlflowClient

    from {{ cookiecutter.package }}_core.model_source import load_model

    url, process = mlflow_server
    new_artifact(name="v1").save(tmp_path / "v1")
    assert register(tmp_path / "v1", {"git_commit": "abc123"}) == "1"
    new_artifact(popular=[3, 2, 1, 0], name="v2").save(tmp_path / "v2")
    assert register(tmp_path / "v2", {"git_commit": "def456"}) == "2"
    MlflowClient(tracking_uri=url).set_registered_model_alias(NAME, "champion", "1")
    sql(postgres, "postgres", "CREATE DATABASE mlflow_auth")
    sql(postgres, "mlflow_auth", "CREATE TABLE users (name text)", "INSERT INTO users SELECT 'ci'")
    artifacts, backup = tmp_path / "mlartifacts", tmp_path / "backups" / "nightly"
    # As the runbook runs it on the tracking host: the server's backend store URI (psycopg2
    # driver and all) and its artifacts directory; MODEL_NAME says whose champion to record.
    registry_cli = [sys.executable, "-m", "{{ cookiecutter.package }}_registry.cli"]
    auth = f"postgresql://{DB}@127.0.0.1:{postgres}/mlflow_auth"
    where = [
        *("--database", backend_store_uri(postgres), "--artifacts", str(artifacts)),
        *("--auth-database", auth),
    ]
    env = {**os.environ, "MODEL_NAME": NAME, "MLFLOW_TRACKING_URI": url}

    def registry(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*registry_cli, *args, *where], env=env, capture_output=True, text=True, check=False
        )

    done = registry("backup", "--out", str(backup))
    assert done.returncode == 0, done.stderr
    assert f"{NAME}: versions 1, 2, champion v1" in done.stdout
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["database"]["kind"] == "postgresql"
    assert sorted(manifest["files"]) == ["artifacts.tar.gz", "mlflow.dump", "mlflow_auth.dump"]

    stop(process)  # the disaster: the database and the artifacts are gone
    for name in (DB, "mlflow_auth"):
        sql(postgres, "postgres", f"DROP DATABASE {name} WITH (FORCE)", f"CREATE DATABASE {name}")
    shutil.rmtree(artifacts)
    with pytest.raises(psycopg2.errors.UndefinedTable):
        registered_models(postgres)  # an empty database: no MLflow schema

    done = registry("restore", "--from", str(backup))
    assert done.returncode == 0, done.stderr
    assert f"{NAME}: versions 1, 2, champion v1" in done.stdout
    assert registered_models(postgres) == [NAME]
    assert sql(postgres, "mlflow_auth", "SELECT name FROM users") == [("ci",)]

    url, process = start_mlflow_server(postgres, tmp_path)
    try:
        champion = MlflowClient(tracking_uri=url).get_model_version_by_alias(NAME, "champion")
        assert (champion.version, champion.tags["git_commit"]) == ("1", "abc123")
        loaded = load_model(f"models:/{NAME}@champion", url)  # downloads from the artifacts
        assert loaded.version == "1" and loaded.tags["git_commit"] == "abc123"
    finally:
        stop(process)
