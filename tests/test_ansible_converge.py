"""The Ansible module for real: `make provision ENV=dev` converges a fresh Debian rootfs (over
the chroot connection), a second run changes nothing, and what it installed works.

After the converges the test plays systemd (tests/ansible_host.py starts each unit from its own
ExecStart) and checks what a user would: PostgreSQL takes the MLflow users' passwords and refuses
a wrong one; the MLflow server refuses anonymous writes, lets the CI user register and the API
user only read; the project's pipeline, pointed at that server as the CI user, registers and
promotes a champion; the API behind nginx answers for it, nginx refuses an oversized body and
rate-limits a burst; Prometheus scrapes the API, has the project's rules and fires the alert a
second API that cannot load its model provokes; `rollback.yml` makes the API serve the previous
version; a wrong MLflow admin password stops the play before anything changes.

Everything in the rootfs shares this machine's network: the ports below are this test's own.
"""

from __future__ import annotations

import base64
import collections
import concurrent.futures
import contextlib
import csv
import json
import os
import socket
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from ansible_host import (
    changed_tasks,
    chroot_host,
    recap,
    release_host,
    secret_values,
    start_unit,
    write_inventory,
)
from base_image import require_tools
from conftest import TEMPLATE_ROOT, make
from cookiecutter.main import cookiecutter
from image_fixtures import request as http_request
from image_fixtures import wait_for

pytestmark = pytest.mark.slow

HOST = "recsys-host"
PORTS = {
    "postgresql": 45432,
    "mlflow": 45000,
    "api": 48000,
    "nginx": 48080,
    "broken_api": 48001,
    "prometheus": 49090,
}
PROJECT = "shop-recommender"
API_UNIT = f"{PROJECT}-api.service"
MLFLOW_UNIT = "mlflow-server.service"
CI_USER, API_USER = "ci", "recsys-api"
HOSTVARS = {
    "postgresql_port": PORTS["postgresql"],
    "mlflow_server_port": PORTS["mlflow"],
    "recsys_api_port": PORTS["api"],
    "recsys_api_nginx_port": PORTS["nginx"],
    "monitoring_prometheus_port": PORTS["prometheus"],
    # The API through nginx, and a second API the test starts with a model it cannot load.
    "monitoring_api_targets": [f"127.0.0.1:{PORTS['nginx']}", f"127.0.0.1:{PORTS['broken_api']}"],
    "monitoring_scrape_interval": "5s",
    "monitoring_evaluation_interval": "5s",
    "monitoring_scrape_timeout": "4s",
    "project_mlflow_tracking_uri": f"http://127.0.0.1:{PORTS['mlflow']}",
    # The throughput comparison runs from the loopback; the burst test comes from outside it.
    "recsys_api_rate_limit_exempt": ["127.0.0.1/32"],
    "recsys_api_client_header_timeout": "5s",
    "recsys_api_client_body_timeout": "5s",
}
SECRETS = secret_values()


def this_machines_address() -> str:
    """A non-loopback address of this machine: connections from it are not local to nginx."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.254", 9))  # no packet is sent for a UDP connect
        return probe.getsockname()[0]


@dataclass
class Host:
    project: Path
    rootfs: Path
    inventory: Path
    logs: Path

    def provision(self, target: str = "provision", *args: str) -> subprocess.CompletedProcess:
        """`make provision` (the README's command) on the test's inventory: its one host and
        the dev inventory's group_vars."""
        started = time.monotonic()
        result = make(self.project, target, f"INVENTORY={self.inventory}", *args, check=False)
        result.seconds = time.monotonic() - started
        return result

    def url(self, service: str, path: str = "") -> str:
        return f"http://127.0.0.1:{PORTS[service]}{path}"


def request(url, body=None, user=None, password=None, headers=None, timeout=30):
    """(status, parsed JSON or text) of a GET, or of a POST of `body` (JSON; bytes as they
    are), with basic auth when `user` is given; HTTP errors are answers too."""
    headers = dict(headers or {})
    if user:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    status, raw = http_request(url, data=data, headers=headers, timeout=timeout)
    text = raw.decode(errors="replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def mlflow_env() -> dict[str, str]:
    """The CI user's view of the test's MLflow server, for the project's commands."""
    return {
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{PORTS['mlflow']}",
        "MLFLOW_TRACKING_USERNAME": CI_USER,
        "MLFLOW_TRACKING_PASSWORD": SECRETS["MLFLOW_CI_PASSWORD"],
    }


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory):
    require_tools("debootstrap", "chroot", "psql")
    folder = tmp_path_factory.mktemp("ansible-converge")
    project = Path(cookiecutter(str(TEMPLATE_ROOT), no_input=True, output_dir=str(folder)))
    make(project, "setup")
    rootfs = chroot_host(folder / HOST)
    inventory = folder / "inventory"
    write_inventory(inventory / "hosts.yml", rootfs, HOSTVARS)
    (inventory / "group_vars").symlink_to(project / "ansible/inventories/dev/group_vars")
    saved = {key: os.environ.get(key) for key in SECRETS}
    os.environ.update(SECRETS)  # secrets.yml reads them from the environment
    try:
        yield Host(project, rootfs, inventory, logs=folder)
    finally:
        release_host(rootfs)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def first_converge(host: Host):
    result = host.provision()
    print(f"first converge: {result.seconds:.0f} s")
    return result


def test_first_converge_succeeds(first_converge):
    assert first_converge.returncode == 0, first_converge.stdout[-8000:]
    assert HOST in first_converge.stdout
    assert "failed=0" in first_converge.stdout


@pytest.fixture(scope="module")
def second_converge(host: Host, first_converge):
    assert first_converge.returncode == 0, "the first converge failed"
    result = host.provision()
    print(f"second converge: {result.seconds:.0f} s")
    return result


def test_second_converge_changes_nothing(second_converge):
    assert second_converge.returncode == 0, second_converge.stdout[-8000:]
    counts = recap(second_converge.stdout)[HOST]
    assert counts["failed"] == 0
    assert counts["changed"] == 0, changed_tasks(second_converge.stdout)


def test_provision_check_on_the_converged_host_reports_no_change(host: Host, second_converge):
    result = host.provision("provision-check")
    assert result.returncode == 0, result.stdout[-8000:]
    assert recap(result.stdout)[HOST]["changed"] == 0, changed_tasks(result.stdout)


# --- The services, started as systemd would start them ----------------------------------------


@pytest.fixture(scope="module")
def services(host: Host, second_converge):
    """MLflow, Prometheus and a second API that cannot load its model (the provoked alert),
    then the pipeline as the CI user, then the API behind nginx."""
    assert second_converge.returncode == 0, "the second converge failed"
    started = {}
    started["mlflow"] = start_unit(host.rootfs, MLFLOW_UNIT, log=host.logs / "mlflow.log")
    wait_for(host.url("mlflow", "/health"), started["mlflow"], host.logs / "mlflow.log", 180)
    started["prometheus"] = start_unit(
        host.rootfs, "prometheus.service", log=host.logs / "prometheus.log"
    )
    started["broken_api"] = start_unit(
        host.rootfs,
        API_UNIT,
        env={"PORT": str(PORTS["broken_api"]), "MODEL_URI": f"models:/{PROJECT}/404"},
        log=host.logs / "broken-api.log",
    )
    provoked_at = time.monotonic()
    pipeline = make(host.project, "data", "pipeline", env=mlflow_env())
    started["api"] = start_unit(host.rootfs, API_UNIT, log=host.logs / "api.log")
    started["nginx"] = start_unit(host.rootfs, "nginx.service", log=host.logs / "nginx.log")
    # nginx forks into the background: the API is what takes its time (and may fail).
    wait_for(host.url("nginx", "/readyz"), started["api"], host.logs / "api.log", 180)
    return {"pipeline": pipeline, "provoked_at": provoked_at}


def psql(user: str, password: str, database: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(PORTS["postgresql"]), "-U", user, "-d", database,
         "-tAc", "select current_user"],
        env={**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "10"},
        capture_output=True, text=True,
    )  # fmt: skip


def test_postgresql_takes_the_mlflow_users_and_refuses_a_wrong_password(services):
    users = {
        ("mlflow", "mlflow"): SECRETS["POSTGRES_MLFLOW_PASSWORD"],
        ("mlflow_auth", "mlflow_auth"): SECRETS["POSTGRES_MLFLOW_AUTH_PASSWORD"],
    }
    for (user, database), password in users.items():
        result = psql(user, password, database)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == user
        wrong = psql(user, password + "-wrong", database)
        assert wrong.returncode != 0
        assert "password authentication failed" in wrong.stderr


def test_mlflow_refuses_anonymous_writes_and_the_api_user_only_reads(host: Host, services):
    search = host.url("mlflow", "/api/2.0/mlflow/registered-models/search")
    create = host.url("mlflow", "/api/2.0/mlflow/registered-models/create")
    assert request(host.url("mlflow", "/health"))[0] == 200  # open, for probes
    assert request(search)[0] == 401
    assert request(create, {"name": "anonymous-model"})[0] == 401
    api = {"user": API_USER, "password": SECRETS["MLFLOW_API_PASSWORD"]}
    status, found = request(search, **api)
    assert status == 200
    assert PROJECT in [model["name"] for model in found["registered_models"]]
    alias = host.url("mlflow", "/api/2.0/mlflow/registered-models/alias")
    assert request(alias, {"name": PROJECT, "alias": "x", "version": "1"}, **api)[0] == 403
    new_version = host.url("mlflow", "/api/2.0/mlflow/model-versions/create")
    assert request(new_version, {"name": PROJECT, "source": "/tmp/x"}, **api)[0] == 403
    wrong = {"user": CI_USER, "password": "not-the-password"}
    assert request(search, **wrong)[0] == 401


def test_the_pipeline_registers_and_promotes_a_champion_as_the_ci_user(host: Host, services):
    assert "promoted version 1 to champion" in services["pipeline"].stdout
    status, model = request(
        host.url(
            "mlflow", f"/api/2.0/mlflow/registered-models/alias?name={PROJECT}&alias=champion"
        ),
        user=CI_USER,
        password=SECRETS["MLFLOW_CI_PASSWORD"],
    )
    assert status == 200
    assert model["model_version"]["version"] == "1"


# --- The API behind nginx ----------------------------------------------------------------------


def test_the_api_behind_nginx_serves_the_champion(host: Host, services):
    status, ready = request(host.url("nginx", "/readyz"))
    assert status == 200, ready
    status, answer = request(host.url("nginx", "/v1/users/u00042/recommendations?k=5"))
    assert status == 200, answer
    assert answer["model_version"] == "1"
    assert len(answer["items"]) == 5


def test_nginx_refuses_an_oversized_body(host: Host, services):
    body = json.dumps({"user_id": "u00042", "session_items": ["x" * 100] * 20_000}).encode()
    status, _ = request(host.url("nginx", "/v1/recommendations"), body)
    assert status == 413


def test_nginx_rate_limits_a_burst_from_one_client(host: Host, services):
    # From this machine's network address: nginx exempts loopback (local probes, Prometheus).
    url = f"http://{this_machines_address()}:{PORTS['nginx']}/v1/users/u00042/recommendations"
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(lambda _: request(url, timeout=10)[0], range(200)))
    assert statuses.count(429) > 0, statuses
    assert statuses.count(200) > 0, statuses


def test_metrics_are_only_for_the_monitoring_network(host: Host, services):
    assert request(host.url("nginx", "/metrics"))[0] == 200
    outside = f"http://{this_machines_address()}:{PORTS['nginx']}/metrics"
    assert request(outside)[0] == 403


# --- Prometheus ---------------------------------------------------------------------------------


def prometheus(host: Host, path: str) -> dict:
    status, answer = request(host.url("prometheus", path))
    assert status == 200, answer
    return answer["data"]


def test_prometheus_scrapes_the_api_and_loads_the_projects_rules(host: Host, services):
    deadline = time.monotonic() + 60
    while True:
        targets = prometheus(host, "/api/v1/targets")["activeTargets"]
        api = [
            t for t in targets if t["scrapeUrl"].startswith(f"http://127.0.0.1:{PORTS['nginx']}")
        ]
        if (api and api[0]["health"] == "up") or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert api and api[0]["health"] == "up", targets
    alerts_file = host.project / "monitoring" / "prometheus" / "alerts.yml"
    expected = {
        rule["alert"]
        for group in yaml.safe_load(alerts_file.read_text())["groups"]
        for rule in group["rules"]
    }
    loaded = {
        rule["name"]
        for group in prometheus(host, "/api/v1/rules")["groups"]
        for rule in group["rules"]
    }
    assert loaded == expected


# --- Rollback and a wrong admin password ----------------------------------------------------------


@pytest.fixture(scope="module")
def second_champion(host: Host, services):
    """A second week of events retrained into v2, the new champion, served by the API."""
    make(host.project, "next-week", "retrain", env=mlflow_env())
    token = {"Authorization": f"Bearer {SECRETS['API_ADMIN_TOKEN']}"}
    request(host.url("api", "/v1/admin/reload"), {}, headers=token)
    wait_model(host, "2")


def wait_model(host: Host, version: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status, answer = request(host.url("nginx", "/v1/users/u00042/recommendations?k=1"))
        if status == 200 and answer["model_version"] == version:
            return
        assert time.monotonic() < deadline, f"the API still serves {answer}, not v{version}"
        time.sleep(1)


def test_rollback_playbook_serves_the_previous_version(host: Host, second_champion):
    result = host.provision("provision-rollback", 'REASON=the converge test\'s "rollback"')
    assert result.returncode == 0, result.stdout[-6000:]
    wait_model(host, "1", timeout=30)


def test_a_wrong_mlflow_admin_password_stops_the_play_before_any_change(host: Host, services):
    os.environ["MLFLOW_ADMIN_PASSWORD"] = "a-wrong-admin-password-123"
    try:
        result = host.provision()
    finally:
        os.environ["MLFLOW_ADMIN_PASSWORD"] = SECRETS["MLFLOW_ADMIN_PASSWORD"]
    assert result.returncode != 0
    assert "vault_mlflow_admin_password" in result.stdout
    assert "TASK [common" not in result.stdout
    assert recap(result.stdout)[HOST]["changed"] == 0


def test_the_provoked_alert_fires(host: Host, services):
    """The second API cannot load models:/<name>/404: RecommenderNoModelLoaded (for: 5m) fires."""
    deadline = services["provoked_at"] + 5 * 60 + 90
    while True:
        alerts = prometheus(host, "/api/v1/alerts")["alerts"]
        firing = [
            a for a in alerts
            if a["labels"]["alertname"] == "RecommenderNoModelLoaded" and a["state"] == "firing"
        ]  # fmt: skip
        if firing or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert firing, alerts
    assert firing[0]["labels"]["instance"] == f"127.0.0.1:{PORTS['broken_api']}"


def test_slow_clients_through_nginx_do_not_stall_the_api(host: Host, services):
    """Issue 12's probe through the proxy: 40 clients trickle their headers and 40 a declared
    body (the API has 4 request slots); normal requests keep answering, and nginx drops every
    slow client once its header or body timeout has passed."""
    port = PORTS["nginx"]
    starts = [b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Slow: "] * 40
    starts += [b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"] * 40
    slow = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in starts]
    stop = threading.Event()

    def trickle() -> None:  # one byte per client every 0.5 s while the test runs
        while not stop.wait(0.5):
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.send(b"a")

    for sock, start in zip(slow, starts, strict=True):
        sock.sendall(start)
    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        url = host.url("nginx", "/v1/users/u00042/recommendations?k=2")

        def timed(_: int) -> tuple[int | str, float]:
            started = time.perf_counter()
            try:
                status = request(url, timeout=10)[0]
            except OSError as error:
                status = type(error).__name__
            return status, time.perf_counter() - started

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(timed, range(40)))
    finally:
        stop.set()
        trickler.join(timeout=5)
    statuses = collections.Counter(status for status, _ in results)
    latencies = sorted(seconds for _, seconds in results)
    assert statuses == {200: 40}
    assert latencies[int(0.95 * len(latencies)) - 1] < 0.5, latencies
    # nginx ends every slow client (client_header_timeout / client_body_timeout): an answer
    # such as 408, or a closed connection, never a request slot held.
    deadline = time.monotonic() + 30
    ended = 0
    for sock in slow:
        with sock:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                while sock.recv(65536):
                    pass
                ended += 1
            except OSError:
                pass
    assert ended == len(slow)


def loadtest(host: Host, service: str, reports: Path) -> dict[str, float]:
    """The project's own load test (`make loadtest`) against one address: its aggregate row."""
    make(
        host.project,
        "loadtest",
        f"URL={host.url(service)}",
        "USERS=60",  # more than 2 workers x 2 threads can answer: a throughput ceiling
        "RUN_TIME=15s",
        f"REPORTS={reports}",
        check=False,  # an SLO breach on a busy machine still gives the figures
    )
    with (reports / "locust_stats.csv").open() as stats:
        row = next(r for r in csv.DictReader(stats) if r["Name"] == "Aggregated")
    return {
        "requests/s": float(row["Requests/s"]),
        "p50 ms": float(row["50%"]),
        "p99 ms": float(row["99%"]),
        "failures": int(row["Failure Count"]),
        "requests": int(row["Request Count"]),
    }


def test_throughput_through_nginx_against_gunicorn_alone(host: Host, services, tmp_path: Path):
    """A benchmark, not a timed assertion: the same load test straight at gunicorn and through
    nginx, alternating, twice each; the table is printed (`pytest -s`) for the notes."""
    runs = {"gunicorn": [], "nginx": []}
    for round_ in range(2):
        for service, name in (("api", "gunicorn"), ("nginx", "nginx")):
            runs[name].append(loadtest(host, service, tmp_path / f"{name}-{round_}"))
    print("\n| path | requests/s (runs) | median p50 ms | median p99 ms |")
    print("|---|---|---|---|")
    for name, results in runs.items():
        rates = [r["requests/s"] for r in results]
        print(
            f"| {name} | {' / '.join(f'{r:.0f}' for r in rates)} "
            f"| {statistics.median(r['p50 ms'] for r in results):.0f} "
            f"| {statistics.median(r['p99 ms'] for r in results):.0f} |"
        )
    ratio = statistics.median(r["requests/s"] for r in runs["nginx"]) / statistics.median(
        r["requests/s"] for r in runs["gunicorn"]
    )
    print(f"nginx / gunicorn throughput: {ratio:.2f}")
    for results in runs.values():
        assert all(r["requests"] > 0 and r["failures"] == 0 for r in results), results
