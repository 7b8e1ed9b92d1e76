"""The API under real gunicorn, started by `{{ cookiecutter.project }}-api serve` exactly as
`make serve` does."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
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


@pytest.fixture
def server(artifact_dir, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "2",
        "MODEL_URI": str(artifact_dir),
        "MODEL_REFRESH_SECONDS": "0",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = Path(sys.executable).with_name("{{ cookiecutter.project }}-api")  # the console script
    log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [str(command), "serve"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"gunicorn exited: {(tmp_path / 'gunicorn.log').read_text()}")
            try:
                if get(f"{base}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("gunicorn did not become ready in 30 s")
            time.sleep(0.2)
        yield base, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        log.close()


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
