"""bench-serve: this API vs `mlflow models serve` vs a bare Flask ceiling, same load, same run.

    uv run --no-sync python benchmarks/bench_serve.py [flags]      # or: make bench-serve

One model is trained on synthetic data by the real stages and registered in a throw-away MLflow
registry. Each server gets the same number of workers and is driven in turn by the same locust
load (top-10 for a random known user, closed loop), round after round, so the three share the
machine's conditions; the table shows the median of the rounds. Locust runs on the same machine
and takes CPU from the servers alike.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import harness
from {{ cookiecutter.package }}_training import data_stages, model_stages
from {{ cookiecutter.package }}_training.config import Paths

MODEL_NAME = "bench-recommender"
API_PACKAGE = "{{ cookiecutter.package }}_api"
HERE = Path(__file__).resolve().parent
LOCUSTFILE = HERE / "bench_serve_locustfile.py"
# The ceiling app, by import string from this folder (gunicorn --pythonpath).
CEILING_APP = "bench_serve_ceiling:app"
SERVERS = {
    "api": "this API (gunicorn)",
    "mlflow": "mlflow models serve",
    "ceiling": "bare Flask (ceiling)",
}
# Targets from the issue that asked for this benchmark.
MIN_SPEEDUP_VS_MLFLOW = 3.0
MIN_SHARE_OF_CEILING = 0.8


def run_benchmark(params: dict[str, Any], args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        root = Path(tmp)
        users = _register_model(params, root, args.events)
        users_file = root / "users.txt"
        users_file.write_text("\n".join(users[:5000]))
        runs: dict[str, list[dict[str, float]]] = {server: [] for server in SERVERS}
        for round_number in range(1, args.rounds + 1):
            for server in SERVERS:
                with _serving(server, root, args.workers, args.threads) as url:
                    _warm_up(server, url, users)
                    result = _drive(server, url, root, users_file, args.clients, args.seconds)
                runs[server].append(result)
                print(
                    f"round {round_number} {server}: {result['rps']:.0f} RPS, "
                    f"p99 {result['p99']:.0f} ms, {result['errors']:.0f} errors",
                    file=sys.stderr,
                )
        print(_table(runs, args))
    return 0


def _register_model(params: dict[str, Any], root: Path, n_events: int) -> list[str]:
    """Train the configured model on synthetic events; register it as version 1 (champion)."""
    import mlflow

    from {{ cookiecutter.package }}_training.register import log_serving_model
    from {{ cookiecutter.package }}_training.synthetic import generate, write_dataset

    params = copy.deepcopy(params)
    model = params["model"]["name"]
    params["model"]["candidates"] = [model]
    paths = Paths(root)
    settings = {**params["synthetic"], "n_events": n_events, "n_users": max(1000, n_events // 50)}
    write_dataset(*generate(**settings), paths.raw)
    for stage in (data_stages.ingest, data_stages.validate, data_stages.split):
        stage(params, paths)
    model_stages.train(params, paths)

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    experiment = mlflow.create_experiment("bench-serve", (root / "mlruns").as_uri())
    with mlflow.start_run(experiment_id=experiment):
        info = log_serving_model(paths.models / model, MODEL_NAME)
    client = mlflow.MlflowClient()
    client.set_registered_model_alias(MODEL_NAME, "champion", str(info.registered_model_version))

    from {{ cookiecutter.package }}_core.artifact import ServingArtifact

    return [str(user) for user in ServingArtifact.load(paths.models / model).user_ids]


def _command(server: str, port: int, workers: int) -> list[str]:
    if server == "mlflow":
        return [
            *(sys.executable, "-m", "mlflow", "models", "serve"),
            *("--model-uri", f"models:/{MODEL_NAME}/1", "--env-manager", "local"),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)),
        ]
    # Both under the API's own gunicorn settings; the ceiling is imported from this folder.
    gunicorn = [sys.executable, "-m", "gunicorn", "--config", f"python:{API_PACKAGE}.gunicorn_conf"]
    if server == "api":
        return [*gunicorn, f"{API_PACKAGE}.wsgi:app"]
    return [*gunicorn, "--pythonpath", str(HERE), CEILING_APP]


@contextlib.contextmanager
def _serving(server: str, root: Path, workers: int, threads: int) -> Iterator[str]:
    """Start one server on a free loopback port; yield its URL once it is ready; stop it."""
    port = _free_port()
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": str(workers),
        "GUNICORN_THREADS": str(threads),
        "MODEL_URI": f"models:/{MODEL_NAME}@champion",
        "MODEL_REFRESH_SECONDS": "0",
        "EVENTS_LOG": str(root / "events.jsonl"),
        # `mlflow models serve` starts `uvicorn` by name: it must be found next to this Python.
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log_path = root / f"{server}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            _command(server, port, workers),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the whole group (workers too) is stopped below
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(process, f"{url}/ping" if server == "mlflow" else f"{url}/readyz", log_path)
        yield url
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the whole process group (the workers too), SIGKILL after 30 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _wait_ready(process: subprocess.Popen, url: str, log_path: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"ERROR: the server exited; its log:\n{log_path.read_text()[-3000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.5)
    raise SystemExit(f"ERROR: {url} was not ready after 180 s; see {log_path}")


def _warm_up(server: str, url: str, users: list[str]) -> None:
    """A few requests per worker, so first-request costs stay out of the measurement."""
    for user in users[:50]:
        if server == "mlflow":
            body = b'{"dataframe_split": {"columns": ["user_id", "k"], "data": [["%s", 10]]}}'
            request = urllib.request.Request(
                f"{url}/invocations",
                data=body % user.encode(),
                headers={"Content-Type": "application/json"},
            )
        else:
            request = urllib.request.Request(f"{url}/v1/users/{user}/recommendations?k=10")
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()


def _drive(
    server: str, url: str, root: Path, users_file: Path, clients: int, seconds: int
) -> dict[str, float]:
    prefix = root / f"locust-{server}"
    subprocess.run(
        [
            *(sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)),
            *("--headless", "--only-summary"),
            *("-H", url, "-u", str(clients), "-r", str(clients), "-t", f"{seconds}s"),
            *("--csv", str(prefix)),
        ],
        env={**os.environ, "BENCH_TARGET": server, "BENCH_USERS_FILE": str(users_file)},
        capture_output=True,  # locust exits 1 when a request failed; the CSV has the counts
        check=False,
        timeout=seconds + 120,
    )
    with open(f"{prefix}_stats.csv", newline="") as handle:
        total = next(row for row in csv.DictReader(handle) if row["Name"] == "Aggregated")
    if int(total["Request Count"]) == 0:  # locust reports the percentiles as N/A then
        raise SystemExit(
            f"ERROR: no request to {server} completed in {seconds} s (a busy machine starts "
            f"locust slowly: raise --seconds); see {prefix}_stats.csv"
        )
    return {
        "rps": float(total["Requests/s"]),
        "p50": float(total["50%"]),
        "p99": float(total["99%"]),
        "errors": float(total["Failure Count"]),
        "requests": float(total["Request Count"]),
    }


COLUMNS = [
    ("server", "server", "<24"),
    ("workers", "workers", ">8"),
    ("RPS", "rps", ">9.0f"),
    ("p50 ms", "p50", ">8.0f"),
    ("p99 ms", "p99", ">8.0f"),
    ("errors", "errors", ">8.0f"),
    ("RPS by round", "by_round", ""),
]


def _table(runs: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> str:
    median = {
        server: {key: statistics.median(run[key] for run in results) for key in results[0]}
        for server, results in runs.items()
    }
    rows = [
        {
            **median[server],
            "server": label,
            "workers": args.workers,
            "errors": sum(run["errors"] for run in runs[server]),
            "by_round": ", ".join(f"{run['rps']:.0f}" for run in runs[server]),
        }
        for server, label in SERVERS.items()
    ]
    title = (
        f"bench-serve: {args.rounds} rounds x {args.seconds} s, {args.clients} locust users, "
        f"median of the rounds"
    )
    lines = [harness.table(COLUMNS, rows, title)]
    api, mlflow, ceiling = median["api"], median["mlflow"], median["ceiling"]
    speedup = api["rps"] / mlflow["rps"] if mlflow["rps"] else float("inf")
    share = api["rps"] / ceiling["rps"] if ceiling["rps"] else 0.0
    verdict = {True: "met", False: "MISSED"}
    lines += [
        "",
        f"API / mlflow models serve throughput: {speedup:.1f}x "
        f"(target >= {MIN_SPEEDUP_VS_MLFLOW:.0f}x: {verdict[speedup >= MIN_SPEEDUP_VS_MLFLOW]})",
        f"API p99 vs mlflow models serve p99:   {api['p99']:.0f} ms vs {mlflow['p99']:.0f} ms "
        f"(target lower: {verdict[api['p99'] < mlflow['p99']]})",
        f"API / bare Flask ceiling throughput:  {share:.0%} "
        f"(target >= {MIN_SHARE_OF_CEILING:.0%}: {verdict[share >= MIN_SHARE_OF_CEILING]})",
    ]
    return "\n".join(lines)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_parser() -> argparse.ArgumentParser:
    parser = harness.parser(__doc__)
    parser.add_argument("--events", type=int, default=200_000, help="synthetic training events")
    parser.add_argument("--workers", type=int, default=2, help="server processes, for each server")
    parser.add_argument("--threads", type=int, default=2, help="threads per gunicorn worker")
    parser.add_argument("--clients", type=int, default=16, help="concurrent locust users")
    parser.add_argument("--seconds", type=int, default=15, help="load per server per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three servers")
    return parser


if __name__ == "__main__":
    harness.main(build_parser(), run_benchmark)
