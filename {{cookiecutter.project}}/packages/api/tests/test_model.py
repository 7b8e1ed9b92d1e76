"""The served model: description, admin reload with hot swap, corrupt artifacts refused."""

import dataclasses
import subprocess
import sys
import threading
import time

import pytest

from {{ cookiecutter.package }}_api import create_app


def test_model_describes_version_and_artifact(client):
    response = client.get("/v1/model")
    assert response.status_code == 200
    body = response.get_json()
    assert body["version"] == response.headers["X-Model-Version"]
    assert body["artifact"]["n_users"] == 2
    assert body["artifact"]["n_items"] == 4
    assert body["artifact"]["metadata"] == {"model": "v1"}
    assert body["run_id"] is None and body["lineage"] == {}


def test_reload_needs_a_bearer_token(client, admin_headers):
    response = client.post("/v1/admin/reload")
    assert response.status_code == 401
    assert response.get_json()["error"]["status"] == 401
    assert response.headers["WWW-Authenticate"].lower().startswith("bearer")
    response = client.post("/v1/admin/reload", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 403
    assert response.get_json()["error"]["message"] == "the bearer token is not valid"
    response = client.post(
        "/v1/admin/reload", headers={"Authorization": admin_headers["Authorization"][7:]}
    )
    assert response.status_code == 401


LINEAGE = {
    "model": "ease",
    "training_run_id": "run-1",
    "registered_at": "2025-01-06T03:00:00Z",
    "promoted_at": "2025-01-06T03:05:00Z",
    "gate.decision": "pass",
    "metric.ndcg_at_10": "0.31",
    "triggered_by": "alice@build-host-7",
    "promoted_by": "github:alice",
    "gate.decided_by": "alice@build-host-7",
    "gate.reason": "passed all gates",
    "approval.approved_by": "bob@laptop",
    "git_commit": "abc123",
    "dvc_data_hash": "d41d8cd9",
    "data_source": "s3://internal-bucket/events.csv",
    "previous_champion": "3",
}


@pytest.fixture
def model_with_lineage(app):
    """The served model as a registry version with every kind of lineage tag."""
    store = app.extensions["model_store"]
    current = store.current
    store._current = dataclasses.replace(
        current,
        version="4",
        name="shop",
        alias="champion",
        run_id="run-1",
        source="/srv/models/downloads/4",
        tags=LINEAGE,
        manifest={**current.manifest, "metadata": {"model": "ease", "params": {"l2": 100}}},
    )
    return store._current


def test_the_public_model_leaves_out_actors_and_provenance(client, model_with_lineage):
    body = client.get("/v1/model").get_json()
    assert (body["name"], body["version"], body["alias"], body["run_id"]) == (
        "shop",
        "4",
        "champion",
        "run-1",
    )
    public = ("model", "git_commit", "training_run_id", "registered_at", "promoted_at")
    public += ("gate.decision",)
    assert body["lineage"] == {key: LINEAGE[key] for key in (*public, "metric.ndcg_at_10")}
    assert body["source"] is None  # a file path of the server
    assert body["artifact"]["metadata"] == {"model": "ease"}
    assert body["artifact"]["n_items"] == 4 and body["artifact"]["checksum"]
    text = client.get("/v1/model").get_data(as_text=True)
    for secret in ("alice", "bob", "build-host", "d41d8cd9", "internal-bucket", "/srv/", "l2"):
        assert secret not in text


def test_the_admin_model_has_the_whole_lineage(client, model_with_lineage, admin_headers):
    assert client.get("/v1/model?detail=full").status_code == 401
    assert client.get("/v1/model?detail=everything").status_code == 400
    response = client.get("/v1/model?detail=full", headers=admin_headers)
    assert response.status_code == 200
    body = response.get_json()
    assert body["lineage"] == LINEAGE and body["source"] == "/srv/models/downloads/4"
    assert body["artifact"]["metadata"]["params"] == {"l2": 100}


def test_wrong_admin_tokens_back_off_per_address(app, admin_headers):
    """1,200 guesses from one address: 10 are checked (403), the rest get 429 with Retry-After,
    even the right token; another address is not affected; the window passing lifts it."""
    now = [1000.0]
    limiter = app.extensions["admin_limiter"]
    limiter.clock = lambda: now[0]
    client = app.test_client()
    wrong = {"Authorization": "Bearer wrong"}
    statuses = [client.post("/v1/admin/reload", headers=wrong).status_code for _ in range(1200)]
    assert statuses.count(403) == 10 and statuses.count(429) == 1190
    response = client.post("/v1/admin/reload", headers=admin_headers)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "60"
    assert "too many wrong admin tokens" in response.get_json()["error"]["message"]

    other = client.post(
        "/v1/admin/reload", headers=admin_headers, environ_base={"REMOTE_ADDR": "10.0.0.9"}
    )
    assert other.status_code == 200
    now[0] += 30
    assert client.get("/v1/model?detail=full", headers=admin_headers).headers["Retry-After"] == "30"
    now[0] += 30
    assert client.post("/v1/admin/reload", headers=admin_headers).status_code == 200


def test_a_reload_reaches_every_process_sharing_the_signal_folder(
    tmp_path, artifact_dir, admin_headers, new_artifact
):
    """Two apps as two gunicorn workers: a reload asked of one reaches the other."""
    settings = {
        "MODEL_URI": str(artifact_dir),
        "MODEL_REFRESH_SECONDS": 0,
        "ADMIN_TOKEN": admin_headers["Authorization"][7:],
        "RELOAD_SIGNAL_DIR": str(tmp_path),
    }
    asked, other = create_app(settings), create_app(settings)
    try:
        old = other.extensions["model_store"].current.version
        new_artifact(popular=[3, 2, 1, 0], name="v2").save(artifact_dir)
        answer = asked.test_client().post("/v1/admin/reload", headers=admin_headers).get_json()
        assert answer["scope"] == "all_workers" and answer["model_version"] != old
        deadline = time.monotonic() + 3
        store = other.extensions["model_store"]
        while store.current.version == old and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.current.version == answer["model_version"]
    finally:
        for app in (asked, other):
            app.extensions["model_store"].stop()


def test_admin_is_disabled_without_a_token(artifact_dir, admin_headers):
    app = create_app({"MODEL_URI": str(artifact_dir), "MODEL_REFRESH_SECONDS": 0})
    response = app.test_client().post("/v1/admin/reload", headers=admin_headers)
    assert response.status_code == 403
    assert "ADMIN_TOKEN is not set" in response.get_json()["error"]["message"]


def test_hot_swap_through_admin_reload(client, artifact_dir, admin_headers, new_artifact):
    old = client.get("/v1/model").get_json()["version"]
    response = client.post("/v1/admin/reload", headers=admin_headers)
    # No folder shared with other workers (no gunicorn): the reload reaches this process.
    assert response.get_json() == {
        "status": "loaded",
        "model_version": old,
        "scope": "this_process",
    }

    new_artifact(popular=[3, 2, 1, 0], name="v2").save(artifact_dir)
    response = client.post("/v1/admin/reload", headers=admin_headers)
    assert response.status_code == 200
    new = response.get_json()["model_version"]
    assert new != old and new.startswith("local-")

    response = client.get("/v1/users/nobody/recommendations?k=2")
    assert response.headers["X-Model-Version"] == new
    assert [i["item_id"] for i in response.get_json()["items"]] == ["d", "c"]
    assert client.get("/v1/model").get_json()["artifact"]["metadata"] == {"model": "v2"}
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "recommender_model_info{" + f'version="{new}"' + "} 1.0" in metrics
    assert f'version="{old}"' not in metrics
    assert "recommender_model_reloads_total 3.0" in metrics


def test_background_check_only_reloads_a_changed_artifact(app, artifact_dir, new_artifact):
    store = app.extensions["model_store"]
    assert store.reload().status == "unchanged"
    new_artifact(popular=[3, 2, 1, 0], name="v2").save(artifact_dir)
    assert store.reload().status == "loaded"


@pytest.mark.parametrize("filename", ["user_top_items.npy", "item_ids.npy"])
def test_corrupt_artifact_is_refused_and_the_old_model_keeps_serving(
    client, artifact_dir, admin_headers, filename
):
    old = client.get("/v1/model").get_json()["version"]
    path = artifact_dir / filename
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))

    response = client.post("/v1/admin/reload", headers=admin_headers)
    assert response.status_code == 502
    message = response.get_json()["error"]["message"]
    assert f"still serving {old}" in message and f"checksum mismatch for {filename}" in message

    response = client.get("/v1/users/u1/recommendations?k=1")
    assert response.status_code == 200
    assert response.headers["X-Model-Version"] == old
    assert [i["item_id"] for i in response.get_json()["items"]] == ["c"]
    assert client.get("/readyz").status_code == 200
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "recommender_model_reload_failures_total 1.0" in metrics
    assert "recommender_model_reloads_total 1.0" in metrics


def test_an_artifact_that_fails_the_smoke_test_is_refused(
    client, artifact_dir, admin_headers, new_artifact
):
    empty = new_artifact()
    # Every user's row empty: the personalized answer has no item.
    empty.user_top_items[:] = -1
    empty.save(artifact_dir)
    response = client.post("/v1/admin/reload", headers=admin_headers)
    assert response.status_code == 502
    assert "smoke test" in response.get_json()["error"]["message"]
    assert client.get("/v1/users/u1/recommendations").status_code == 200


def test_the_refresh_thread_swaps_in_a_changed_artifact(artifact_dir, new_artifact):
    app = create_app({"MODEL_URI": str(artifact_dir), "MODEL_REFRESH_SECONDS": 0.05})
    store = app.extensions["model_store"]
    try:
        old = store.current.version
        new_artifact(popular=[3, 2, 1, 0], name="v2").save(artifact_dir)
        deadline = time.monotonic() + 5
        while store.current.version == old and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.current.version != old
        assert store.current.artifact.metadata == {"model": "v2"}
    finally:
        store.stop()


def test_serving_a_local_artifact_does_not_import_mlflow(artifact_dir):
    # The API image may leave the MLflow client out when it serves a mounted artifact.
    settings = {"MODEL_URI": str(artifact_dir), "MODEL_REFRESH_SECONDS": 0}
    code = (
        "import sys\n"
        f"from {create_app.__module__} import create_app\n"
        f"app = create_app({settings!r})\n"
        "assert app.test_client().get('/readyz').status_code == 200\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('mlflow', 'pandas')], "
        "sorted(m for m in sys.modules if m.startswith(('mlflow', 'pandas')))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_hot_swaps_under_concurrent_requests_fail_none(
    app, artifact_dir, admin_headers, new_artifact
):
    """Each answer comes whole from one model: its body and header name the same version."""
    versions = [
        new_artifact(popular=order, name=str(order)) for order in ([1, 0, 3, 2], [3, 2, 1, 0])
    ]
    stop = threading.Event()
    problems: list[str] = []
    answered = []

    def hammer() -> None:
        client = app.test_client()
        while not stop.is_set():
            response = client.get("/v1/users/nobody/recommendations?k=4")
            body = response.get_json()
            if response.status_code != 200:
                problems.append(f"{response.status_code}: {body}")
            elif body["model_version"] != response.headers["X-Model-Version"]:
                problems.append(f"body {body['model_version']} != header")
            answered.append(1)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    # The hammering threads never wait: without a short switch interval the reloading thread
    # would get the GIL back only every 5 ms per thread after each file operation.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)
    for thread in threads:
        thread.start()
    admin = app.test_client()
    try:
        for swap in range(10):
            versions[swap % 2].save(artifact_dir)
            assert admin.post("/v1/admin/reload", headers=admin_headers).status_code == 200
            time.sleep(0.01)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        sys.setswitchinterval(switch_interval)
    assert problems == []
    assert len(answered) > 10
