"""The API under real gunicorn, started by `{{ cookiecutter.project }}-api serve` exactly as
`make serve` does."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, headers: dict[str, str] | None = None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


# 2 workers x 2 threads: the 4 request slots of the default settings; no periodic refresh.
SERVER_DEFAULTS = {"WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "2", "MODEL_REFRESH_SECONDS": "0"}


@pytest.fixture
def serve(artifact_dir, tmp_path):
    """Start `serve` with these environment variables on top of the defaults; yields
    (base URL, process) once /readyz answers, stops it afterwards."""
    processes = []

    def start(extra: dict[str, str] | None = None):
        port = free_port()
        where = {"HOST": "127.0.0.1", "PORT": str(port), "MODEL_URI": str(artifact_dir)}
        env = {**os.environ, **SERVER_DEFAULTS, **where, **(extra or {})}
        for variable in ("PROMETHEUS_MULTIPROC_DIR", "RELOAD_SIGNAL_DIR"):
            env.pop(variable, None)
        command = Path(sys.executable).with_name("{{ cookiecutter.project }}-api")  # the script
        log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115 - closed below
        process = subprocess.Popen([str(command), "serve"], env=env, stdout=log, stderr=log)
        processes.append((process, log))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"gunicorn exited: {(tmp_path / 'gunicorn.log').read_text()}")
            try:
                if get(f"{base}/readyz")[0] == 200:
                    return base, process
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("gunicorn did not become ready in 30 s")
            time.sleep(0.2)

    yield start
    for process, log in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


@pytest.fixture
def server(serve):
    return serve()


def test_gunicorn_serves_recommendations_and_stops_cleanly(server, tmp_path):
    base, process = server
    status, headers, body = get(
        f"{base}/v1/users/u1/recommendations?k=2", {"X-Request-ID": "over-http"}
    )
    assert status == 200
    answer = json.loads(body)
    assert answer["strategy"] == "personalized"
    assert [item["item_id"] for item in answer["items"]] == ["c", "b"]
    assert headers["X-Request-ID"] == "over-http"
    assert headers["X-Model-Version"] == answer["model_version"]

    status, _, body = get(f"{base}/v1/users/u1/recommendations?k=0")
    assert status == 400 and json.loads(body)["error"]["status"] == 400

    for _ in range(10):
        get(f"{base}/healthz")
    status, _, body = get(f"{base}/metrics")
    assert status == 200
    text = body.decode()
    # Multiprocess mode: the counts of both workers add up in one exposition.
    assert 'http_requests_total{method="GET",route="/healthz",status="200"} 10.0' in text
    assert "recommender_model_info" in text

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    log = (tmp_path / "gunicorn.log").read_text()
    assert "Shutting down" in log
    # The access log is written in batches; the workers write what is left when they stop.
    lines = [json.loads(line) for line in log.splitlines() if line.startswith('{"ts"')]
    access = [line for line in lines if line["logger"].endswith(".access")]
    assert sum(line["route"] == "/healthz" for line in access) == 10
    (answer_line,) = [line for line in access if line["request_id"] == "over-http"]
    assert answer_line["route"] == "/v1/users/<user_id>/recommendations"


TOKEN = "gunicorn-test-admin-token"


def served_version(base: str) -> str | None:
    status, headers, _ = get(f"{base}/v1/users/nobody/recommendations?k=2")
    return headers.get("X-Model-Version") if status == 200 else None


def test_one_reload_reaches_every_worker(serve, artifact_dir, new_artifact):
    """Three workers, no periodic refresh: after the model changes and ONE reload call, every
    answer a second later comes from the new version, whichever worker gives it."""
    base, _ = serve({"WEB_CONCURRENCY": "3", "ADMIN_TOKEN": TOKEN})
    old = served_version(base)
    new_artifact(popular=[3, 2, 1, 0], name="v2").save(artifact_dir)
    request = urllib.request.Request(
        f"{base}/v1/admin/reload", method="POST", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["status"] == "loaded" and answer["scope"] == "all_workers"
    assert answer["model_version"] != old
    time.sleep(1.0)  # the bound: the stamp is read every 0.2 s, then a small local load
    # Concurrent requests, so that every worker answers some (one client in a row mostly
    # reaches the same worker); and each worker's own `recommender_model_info`.
    with ThreadPoolExecutor(8) as pool:
        versions = list(pool.map(lambda _: served_version(base), range(40)))
    assert versions.count(old) == 0, f"{versions.count(old)} of 40 answers still from {old}"
    assert set(versions) == {answer["model_version"]}
    metrics = get(f"{base}/metrics")[2].decode()
    info = re.findall(r"^recommender_model_info\{(.*)\} 1\.0$", metrics, re.MULTILINE)
    by_worker = {re.search(r'pid="(\d+)"', labels)[1]: labels for labels in info}
    assert len(by_worker) == 3, by_worker
    assert all(f'version="{answer["model_version"]}"' in labels for labels in by_worker.values())


def raw_request(port: int, data: bytes, timeout: float = 10) -> tuple[int, str, bytes]:
    """Send `data`, read the answer until the server closes: (status, content type, body);
    status 0 when the connection was lost without an answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        # The server may refuse before reading everything: its answer is what counts.
        with contextlib.suppress(OSError):
            sock.sendall(data)
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except OSError:
            pass
    if not answer.startswith(b"HTTP/1.1 "):
        return 0, "", answer
    head, _, body = answer.partition(b"\r\n\r\n")
    types = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-type:")]
    content_type = types[0].split(b":", 1)[1].strip().decode() if types else ""
    return int(head[9:12]), content_type, body


def test_gunicorn_refusals_are_json_and_app_limits_come_first(server):
    base, _ = server
    port = int(base.rsplit(":", 1)[1])
    ids = ",".join(f"item-{n:03d}-" + "x" * 60 for n in range(90))  # 6.4 KB: the app decides
    probes = {
        "1 MB path": (b"GET /" + b"a" * 1_000_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        "10k query parameters": (
            b"GET /healthz?" + b"&".join(b"p%d=1" % n for n in range(10_000)) + b" HTTP/1.1\r\n"
            b"Host: x\r\n\r\n",
            400,
        ),
        "10 KB header": (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 10_240 + b"\r\n\r\n",
            431,
        ),
        "90 ids in exclude": (
            f"GET /v1/users/u1/recommendations?exclude={ids} HTTP/1.1\r\nHost: x\r\n"
            "Connection: close\r\n\r\n".encode(),
            200,
        ),
    }
    outcomes = {name: raw_request(port, data)[:2] for name, (data, _) in probes.items()}
    expected = {name: (status, "application/json") for name, (_, status) in probes.items()}
    assert outcomes == expected


def test_slow_clients_get_no_thread_and_a_408(serve):
    """2 workers x 2 threads = 4 request slots. 8 clients trickle their headers and 8 declare a
    longer body than they send; normal requests meanwhile keep their latency, and every slow
    client gets a JSON 408 once GUNICORN_READ_TIMEOUT has passed."""
    read_timeout = 3.0
    base, _ = serve({"GUNICORN_READ_TIMEOUT": str(read_timeout)})
    port = int(base.rsplit(":", 1)[1])
    starts = [b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "] * 8
    starts += [b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"] * 8
    slow = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in starts]
    stop = threading.Event()

    def trickle() -> None:  # one byte per client every 0.3 s, while the test runs
        while not stop.wait(0.3):
            for sock in slow:
                with contextlib.suppress(OSError):
                    sock.send(b"a")

    for sock, start in zip(slow, starts, strict=True):
        sock.sendall(start)
    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        time.sleep(0.5)

        def timed(_: int) -> tuple[str, float]:
            started = time.perf_counter()
            try:
                status = get(f"{base}/v1/users/u1/recommendations?k=2")[0]
                outcome = "ok" if status == 200 else f"{status // 100}xx"
            except TimeoutError:
                outcome = "hung"
            except OSError:
                outcome = "lost"
            return outcome, time.perf_counter() - started

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(timed, range(40)))
        outcomes = Counter(outcome for outcome, _ in results)
        latencies = sorted(seconds for _, seconds in results)
        p95 = latencies[int(0.95 * len(latencies)) - 1]
        assert outcomes == {"ok": 40}, f"normal requests: {dict(outcomes)}"
        assert p95 < 0.5, f"p95 {p95:.3f} s"
    finally:
        stop.set()
        trickler.join(timeout=5)
    answers = []
    for sock in slow:
        with sock:
            sock.settimeout(read_timeout + 3)
            try:
                answers.append(sock.recv(65536).split(b"\r\n", 1)[0])
            except OSError:
                answers.append(b"no answer")
    assert Counter(answers) == {b"HTTP/1.1 408 Request Timeout": 16}


def post_events(base: str, batch: list[dict]) -> int | None:
    """The status of one events POST; None when the connection broke (a killed worker)."""
    request = urllib.request.Request(
        f"{base}/v1/events",
        data=json.dumps({"events": batch}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def workers_of(master: subprocess.Popen) -> list[int]:
    """The pids whose parent is the gunicorn master."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == master.pid:
                children.append(int(stat.parent.name))
    return children


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find gunicorn's workers")
def test_kill_9_of_workers_mid_events_loses_no_acknowledged_event(serve, tmp_path):
    """4 clients post batches of 20 events, each with an event_id, while a worker is killed with
    SIGKILL every 0.3 s (the master starts a new one); a batch without an answer is sent again as
    it was. Every event answered 202 is in the log, and the readers count each event once."""
    from {{ cookiecutter.package }}_core.feedback import read_feedback

    log = tmp_path / "events.jsonl"
    base, master = serve({"EVENTS_LOG": str(log)})
    acknowledged: set[str] = set()
    refused: list[int] = []
    retries = Counter()
    stop = threading.Event()

    def shopper(n: int) -> None:
        sent = 0
        while not stop.is_set():
            # The item id repeats the event id, so the readers' table shows which events it holds.
            ids = [f"c{n}-b{sent}-e{j}" for j in range(20)]
            batch = [
                {"event_type": "click", "user_id": f"u{n}", "item_id": key,
                 "model_version": "v1", "event_id": key}
                for key in ids
            ]  # fmt: skip
            while True:
                status = post_events(base, batch)
                if status == 202:
                    acknowledged.update(event["event_id"] for event in batch)
                    break
                if status is not None and status < 500:
                    refused.append(status)
                    break
                retries[status] += 1
                time.sleep(0.05)
            sent += 1

    clients = [threading.Thread(target=shopper, args=(n,), daemon=True) for n in range(4)]
    for thread in clients:
        thread.start()
    kills = 0
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        time.sleep(0.3)
        workers = workers_of(master)
        if workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(workers[kills % len(workers)], signal.SIGKILL)
                kills += 1
    stop.set()
    for thread in clients:
        thread.join(timeout=60)
    assert master.poll() is None, "the gunicorn master died"
    assert refused == []
    stored = read_feedback(log)
    logged_ids = set(stored["item_id"])
    lines = log.read_bytes().count(b"\n")
    print(
        f"kills {kills}, acknowledged {len(acknowledged)}, lines {lines}, distinct logged "
        f"{len(logged_ids)}, retried posts {dict(retries)}"
    )
    assert kills >= 10 and len(acknowledged) > 0
    assert acknowledged - logged_ids == set()  # nothing acknowledged is lost
    assert len(stored) == len(logged_ids)  # a retried batch counts once
