"""The loop on the default bake, for real, with the API running throughout:

week 1 -> pipeline -> champion v1 served -> locust traffic and feedback -> an undrifted week:
no flag, no retrain -> a drifted week: flagged -> `make monitor` retrains -> v2 passes the gate
-> the API hot-swaps to v2 while locust runs, with zero failed requests -> feedback for v2 made
poor on purpose -> `make rollback CHECK=1` returns to v1 -> `audit` shows every step.

The two weeks run in this order (the undrifted one first, against week 1's reference).
Slow: it installs, trains twice and runs evidently twice.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make
from cookiecutter.main import cookiecutter

pytestmark = pytest.mark.slow
TEMPLATE = Path(__file__).resolve().parents[1]
NEXT_WEEK = ["START=2026-02-02", "DAYS=7", "EVENTS=250000"]
# Locust shares 2 cores with training: latency limits are loose, failures are not.
LOOSE_SLO = """\
thresholds:
  total: {p99_ms: 10000, max_failures: 0, min_requests: 100}
  routes: {}
mix: {known_user: 40, unknown_user: 10, similar_items: 20, session: 15, batch: 2, events: 15}
wait_seconds: {min: 0.05, max: 0.2}
"""


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, {}


def post(url: str, body: dict) -> int:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status


def served_version(api: str) -> str:
    return get(f"{api}/v1/model")[1].get("version", "none")


def wait_for_version(api: str, version: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while served_version(api) != version:
        if time.monotonic() > deadline:
            pytest.fail(f"the API still serves v{served_version(api)}, not v{version}")
        time.sleep(0.5)


def rate_recommendations(api: str, version: str, users: int, ctr: float) -> None:
    """The storefront shows `users` lists from the API and reports clicks at rate `ctr`."""
    rng = random.Random(version)
    for _ in range(users):
        user = f"u{rng.randint(1, 20000):05d}"
        status, answer = get(f"{api}/v1/users/{user}/recommendations?k=10")
        assert status == 200 and answer["model_version"] == version
        events = []
        for entry in answer["items"]:
            base = {"user_id": user, "item_id": entry["item_id"], "model_version": version}
            events.append({"event_type": "impression", **base})
            if rng.random() < ctr:
                events.append({"event_type": "click", **base})
        assert post(f"{api}/v1/events", {"events": events}) == 202


def lineage(project: Path, version: str) -> dict:
    return json.loads(make(project, "-s", "lineage", f"ARGS=--json --version {version}").stdout)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("loop-bake")
    path = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(output)))
    make(path, "setup")
    make(path, "data", "pipeline")  # week 1 -> champion v1
    (path / "loose-slo.yaml").write_text(LOOSE_SLO)
    return path


@pytest.fixture(scope="module")
def api(project) -> Iterator[str]:
    """`make serve` following models:/<name>@champion every second, as production does."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {key: value for key, value in os.environ.items() if not key.startswith("VIRTUAL_ENV")}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(PORT=str(port), HOST="127.0.0.1", MODEL_REFRESH_SECONDS="1", LOG_LEVEL="warning")
    log = open(project / "serve.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        ["make", "--no-print-directory", "serve"],
        cwd=project,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if get(f"{url}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"make serve did not get ready: {(project / 'serve.log').read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
        log.close()


def test_an_undrifted_week_is_not_flagged_and_nothing_retrains(project, api):
    make(project, "loadtest", f"URL={api}", "RUN_TIME=10s", "USERS=8", "SLO=loose-slo.yaml")
    make(project, "data", "OUT=data/incoming", *NEXT_WEEK, "DRIFT=0")
    result = make(project, "monitor")
    assert "verdict: NO_DRIFT" in result.stdout
    assert "prediction drift: DRIFT" not in result.stdout
    assert (project / "data" / "incoming" / "events.parquet").is_file()  # not ingested
    assert lineage(project, "1")["aliases"] == ["champion"]  # no longer a challenger
    assert make(project, "-s", "lineage", "ARGS=--version 2", check=False).returncode != 0
    status, _ = get(f"{api}/v1/model")
    assert status == 200 and served_version(api) == "1"
    metrics = urllib.request.urlopen(f"{api}/metrics", timeout=10).read().decode()
    assert "recommender_drift_detected 0.0" in metrics


def test_drift_retrain_hot_swap_rollback_audit(project, api):
    assert served_version(api) == "1"
    rate_recommendations(api, "1", users=250, ctr=0.1)  # v1 does well: 10% click-through

    # A drifted week arrives; locust keeps shopping through the retrain and the swap.
    make(project, "data", "OUT=data/incoming", *NEXT_WEEK, "DRIFT=0.8")
    reports = project / "reports" / "loop-locust"
    locust = subprocess.Popen(
        ["make", "--no-print-directory", "loadtest", f"URL={api}", "RUN_TIME=900s", "USERS=4",
         "SLO=loose-slo.yaml", f"REPORTS={reports}"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        result = make(project, "monitor")
        wait_for_version(api, "2")
        time.sleep(3)  # traffic on v2 after the swap
    finally:
        os.killpg(locust.pid, signal.SIGTERM)
        locust_output = locust.communicate(timeout=60)[0]
    assert "verdict: DRIFT" in result.stdout
    assert "v2 passed the gate and is the champion" in result.stdout
    with open(reports / "locust_stats.csv") as handle:
        total = next(row for row in csv.DictReader(handle) if row["Name"] == "Aggregated")
    assert int(total["Request Count"]) > 100, locust_output
    assert int(total["Failure Count"]) == 0, locust_output
    v2 = lineage(project, "2")
    assert v2["aliases"] == ["champion"]
    assert v2["tags"]["trigger"] == "drift"
    assert v2["tags"]["gate.decision"] == "pass"
    assert v2["tags"]["previous_champion"] == "1"

    # v2's recommendations are ignored by shoppers: its click-through collapses.
    rate_recommendations(api, "2", users=250, ctr=0.01)
    result = make(project, "rollback", "CHECK=1")
    assert "rolled back from v2 to v1" in result.stdout
    assert "online quality drop" in result.stdout
    wait_for_version(api, "1")
    v2 = lineage(project, "2")
    assert v2["tags"]["rollback.to"] == "1"
    assert "click-through of v2" in v2["tags"]["rollback.reason"]
    assert lineage(project, "1")["tags"]["restored.from"] == "2"

    # The audit trail tells the whole story, for both versions and for what the API serves.
    v1, v2 = json.loads(make(project, "-s", "audit", "ARGS=--all --json").stdout)
    assert (v1["model_version"]["version"], v2["model_version"]["version"]) == ("1", "2")
    assert v2["training_run"]["trigger"] == "drift"
    assert v2["data"]["dvc_data_hash"] != v1["data"]["dvc_data_hash"]  # retrained on new data
    assert v2["gate"]["decision"] == "pass"
    assert v2["promotion"]["previous_champion"] == "1"
    assert v2["rollback"]["to"] == "1"
    assert v1["restored"]["from"] == "2"
    steps = [step["step"] for step in v2["timeline"]]
    assert steps == ["training run", "registered", "gate", "promoted", "rolled back"]
    assert [step["step"] for step in v1["timeline"]][-1] == "restored"
    for record in (v1, v2):
        assert record["code"]["git_commit"] == v1["code"]["git_commit"] != "unknown"
        assert all(step["by"] for step in record["timeline"])
    served = json.loads(make(project, "-s", "audit", f"URL={api}", "ARGS=--json").stdout)
    assert served["api"]["version_served"] == served["api"]["registry_champion"] == "1"
    table = make(project, "-s", "audit", "VERSION=2").stdout
    assert "ROLLBACK" in table and v2["rollback"]["reason"] in table
