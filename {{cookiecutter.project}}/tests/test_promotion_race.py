"""Two pipelines promoting into one MLflow server at once end with the better model as champion
and a truthful record of both decisions, whatever the interleaving.

Each round registers two candidates (the two best models of the evaluated project, one per
project copy) under a fresh model name, then runs both `promote` steps at once with a pause
between each gate's read of the champion and its write (`GATE_HOLD_SECONDS`), started in a
different order each round. Without the promotion lock both gates compare with "no champion"
and the last writer wins, whichever it is.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow
TRAIN = [sys.executable, "-m", "{{ cookiecutter.package }}_training.cli"]
# (seconds before the better model's promote starts, before the worse one's starts), per round.
STARTS = [(0.0, 0.0), (0.0, 0.6), (0.6, 0.0)]
HOLD_SECONDS = "1.5"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on SQLite with proxied artifacts, on loopback; yields its URL."""
    root = tmp_path_factory.mktemp("race-server")
    port = free_port()
    command = [
        *(sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)),
        *("--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--workers", "1"),
        *("--artifacts-destination", str(root / "artifacts")),
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(root / "server.log", "wb") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()}")
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def contenders(evaluated_project, tmp_path_factory) -> dict[str, tuple[Path, float]]:
    """Two project copies whose registered model is the best and the second-best candidate,
    with no tolerance below the champion: the worse one must lose to the better one."""
    params, paths = evaluated_project
    metric = params["gate"]["metric"]
    scores = json.loads((paths.reports / "evaluation.json").read_text())["models"]
    ranked = sorted(
        (name for name in scores if name != "popularity"),
        key=lambda name: scores[name]["warm"][metric],
        reverse=True,
    )
    if len(ranked) < 2 or scores[ranked[0]]["warm"][metric] == scores[ranked[1]]["warm"][metric]:
        pytest.skip("needs two candidates with different scores")
    copies = {}
    for role, model in (("better", ranked[0]), ("worse", ranked[1])):
        root = tmp_path_factory.mktemp(role) / "project"
        shutil.copytree(paths.root, root)
        own = copy.deepcopy(params)
        own["model"]["name"] = model
        own["gate"]["max_drop_vs_champion"] = 0.0
        own["gate"]["min_lift_over_popularity"] = 1.0
        (root / "params.yaml").write_text(yaml.safe_dump(own, sort_keys=False))
        copies[role] = (root, scores[model]["warm"][metric])
    return copies


def run_both(command: str, copies, env: dict, starts=(0.0, 0.0)) -> dict[str, tuple[int, str]]:
    """`command` in both project copies at once (each after its start delay)."""
    processes, began = {}, time.monotonic()
    delays = zip(copies.items(), starts, strict=True)
    for (role, (root, _)), delay in sorted(delays, key=lambda pair: pair[1]):
        time.sleep(max(0.0, began + delay - time.monotonic()))
        processes[role] = subprocess.Popen(
            [*TRAIN, command],
            cwd=root,
            env={**env, "PYTHONUNBUFFERED": "1"},  # the output in the order it was written
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    return {role: (p.wait(timeout=600), p.stdout.read().decode()) for role, p in processes.items()}


@pytest.mark.parametrize("round_", range(len(STARTS)))
def test_racing_promotions_end_with_the_better_model_and_a_truthful_record(
    mlflow_server, contenders, round_
):
    from mlflow.tracking import MlflowClient

    name = f"race-{round_}"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": mlflow_server,
        "MODEL_NAME": name,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    registered = run_both("register", contenders, env)
    # The whole output of each (a dict's repr would be cut in the middle, where the error is).
    assert all(code == 0 for code, _ in registered.values()), "\n".join(
        f"--- {role} exited {code}:\n{output}" for role, (code, output) in registered.items()
    )
    version = {
        role: json.loads((root / "reports" / "registered.json").read_text())["version"]
        for role, (root, _) in contenders.items()
    }
    starts = STARTS[round_]
    promoted = run_both("promote", contenders, {**env, "GATE_HOLD_SECONDS": HOLD_SECONDS}, starts)

    client = MlflowClient(tracking_uri=mlflow_server)
    assert str(client.get_model_version_by_alias(name, "champion").version) == version["better"]
    assert promoted["better"][0] == 0, promoted["better"][1]
    better = client.get_model_version(name, version["better"]).tags
    worse = client.get_model_version(name, version["worse"]).tags
    if worse["gate.decision"] == "fail":  # the better model moved first: the worse one lost to it
        assert promoted["worse"][0] == 3, promoted["worse"][1]
        assert f"below champion v{version['better']}'s" in worse["gate.reason"]
        assert "previous_champion" not in better
    else:  # the worse model moved first, then the better one replaced it
        assert promoted["worse"][0] == 0
        assert better["previous_champion"] == version["worse"]
        rescored = float(better["gate.champion_value"])  # recorded to 6 decimals
        assert rescored == pytest.approx(contenders["worse"][1], abs=1e-6)
    for role, (root, _) in contenders.items():
        last = json.loads((root / "logs" / "promotions.jsonl").read_text().splitlines()[-1])
        tags = better if role == "better" else worse
        assert (last["version"], last["decision"]) == (version[role], tags["gate.decision"])
    locks = client.search_registered_models(f"name = '{name}.promotion-lock'")
    assert locks == [], "the promotion lock is released"
