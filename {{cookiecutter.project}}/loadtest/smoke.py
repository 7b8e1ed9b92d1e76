"""The API part of `make demo`: serve the champion, ask it over HTTP, load-test it, stop it.

    uv run python loadtest/smoke.py [--port 8765] [--run-time 10s]

It runs `make serve` and `make loadtest` exactly as a person would, and exits non-zero if the
API does not get ready, answers an error, or the load test breaches its SLO.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

from {{ cookiecutter.package }}_core.api_client import ApiClient


def wait_until_ready(api: ApiClient, server: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and server.poll() is None:
        if api.ready():
            return
        time.sleep(0.5)
    raise SystemExit(f"ERROR: the API at {api.url} did not get ready; see logs/smoke-serve.log")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--run-time", default="10s")
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.port}"
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(args.port), "LOG_LEVEL": "warning"}
    os.makedirs("logs", exist_ok=True)
    with open("logs/smoke-serve.log", "wb") as log:
        server = subprocess.Popen(
            ["make", "--no-print-directory", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # gunicorn and its workers stop together below
        )
    try:
        api = ApiClient(url)
        wait_until_ready(api, server)
        model = api.model()
        # flush: locust's output follows on the same terminal
        print(f"API at {url} serves model version {model['version']}", flush=True)
        for user in ("u00042", "a-new-visitor"):
            answer = api.recommendations(user, k=5)
            items = ", ".join(entry["item_id"] for entry in answer["items"])
            answered = f"({answer['strategy']}): {items}"
            print(f"GET /v1/users/{user}/recommendations?k=5 {answered}", flush=True)
        load = ["make", "--no-print-directory", "loadtest", f"URL={url}"]
        return subprocess.run([*load, f"RUN_TIME={args.run_time}", "USERS=10"]).returncode
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(main())
