"""The smoke test of `make demo` and of every deploy: ask the API over HTTP, load-test it.

    uv run python loadtest/smoke.py [--port N] [--run-time 10s]   # serves the champion
    uv run python loadtest/smoke.py --url https://api.staging.example  # a deployed API

Without --url it runs `make serve` and stops it afterwards; with --url it checks that API as it
is. Either way it runs `make loadtest` exactly as a person would, and exits non-zero if the API
does not get ready, answers an error, or the load test breaches its SLO.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

from {{ cookiecutter.package }}_core.api_client import ApiClient
from {{ cookiecutter.package }}_core.shared import ExitCode


def wait_until_ready(api: ApiClient, server: subprocess.Popen | None, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (server is None or server.poll() is None):
        if api.ready():
            return
        time.sleep(0.5)
    where = "; see logs/smoke-serve.log" if server else f" within {seconds:.0f} s"
    raise SystemExit(f"ERROR: the API at {api.url} did not get ready{where}")


def check(url: str, server: subprocess.Popen | None, run_time: str, ready_within: float) -> int:
    """Readiness, two recommendation calls (a known and an unknown user), then the load test."""
    api = ApiClient(url)
    wait_until_ready(api, server, ready_within)
    model = api.model()
    # flush: locust's output follows on the same terminal
    print(f"API at {url} serves model version {model['version']}", flush=True)
    for user in ("u00042", "a-new-visitor"):
        answer = api.recommendations(user, k=5)
        items = ", ".join(entry["item_id"] for entry in answer["items"])
        print(
            f"GET /v1/users/{user}/recommendations?k=5 ({answer['strategy']}): {items}", flush=True
        )
    load = ["make", "--no-print-directory", "loadtest", f"URL={url}"]
    return subprocess.run([*load, f"RUN_TIME={run_time}", "USERS=10"]).returncode


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="", help="a running API to check instead of serving one")
    parser.add_argument(
        "--port", type=int, default=0, help="where to serve the champion (0: a free port)"
    )
    parser.add_argument("--run-time", default="10s", help="the load test's length (locust -t)")
    parser.add_argument("--ready-within", type=float, default=120, help="seconds")
    return parser


def claim_port(port: int) -> int:
    """A free loopback port (port 0), or `port` when nothing listens there: an API already on
    it would answer the checks instead of the one started here."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            print(f"ERROR: port {port} is in use; stop what serves there, or pick another --port")
            raise SystemExit(ExitCode.BAD_INPUT) from None
        return sock.getsockname()[1]


def main() -> int:
    args = build_parser().parse_args()
    if args.url:
        return check(args.url.rstrip("/"), None, args.run_time, args.ready_within)
    port = claim_port(args.port)
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "LOG_LEVEL": "warning"}
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
        return check(url, server, args.run_time, args.ready_within)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(main())
