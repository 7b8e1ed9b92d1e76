"""The model store against a real MLflow registry (SQLite): alias, version, refresh, outage.

The registered versions are pyfunc models laid out as the training package registers them: the
serving artifact under the `serving_artifact` artifact key, its path recorded in MLmodel.
"""

from __future__ import annotations

import pytest

from {{ cookiecutter.package }}_api import create_app

pytestmark = pytest.mark.slow
NAME = "api-test-model"


@pytest.fixture
def registry(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("api-test", (tmp_path / "artifacts").as_uri())

    class Recommender(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input: list[str], params=None) -> list[str]:
            return model_input

    def register(artifact_dir, tags: dict[str, str]) -> str:
        with mlflow.start_run(experiment_id=experiment) as run:
            info = mlflow.pyfunc.log_model(
                name="recommender",
                python_model=Recommender(),
                artifacts={"serving_artifact": str(artifact_dir)},
                pip_requirements=["numpy"],
                registered_model_name=NAME,
            )
        version = str(info.registered_model_version)
        for key, value in {**tags, "training_run_id": run.info.run_id}.items():
            client.set_model_version_tag(NAME, version, key, value)
        client.set_registered_model_alias(NAME, "champion", version)
        return version

    yield uri, register
    mlflow.set_tracking_uri(None)


def test_serves_the_champion_and_follows_the_alias(registry, tmp_path, new_artifact, admin_headers):
    uri, register = registry
    new_artifact(name="v1").save(tmp_path / "v1")
    tags = {"git_commit": "abc123", "metric.ndcg_at_10": "0.3", "triggered_by": "alice@host"}
    assert register(tmp_path / "v1", tags) == "1"

    app = create_app(
        {
            "MODEL_URI": f"models:/{NAME}@champion",
            "MLFLOW_TRACKING_URI": uri,
            "MODEL_REFRESH_SECONDS": 0,
            "ADMIN_TOKEN": admin_headers["Authorization"].removeprefix("Bearer "),
        }
    )
    client = app.test_client()
    model = client.get("/v1/model").get_json()
    assert "alice" not in str(model) and model["lineage"]["git_commit"] == "abc123"
    model = client.get("/v1/model?detail=full", headers=admin_headers).get_json()
    assert model["version"] == "1" and model["alias"] == "champion" and model["name"] == NAME
    assert model["lineage"]["git_commit"] == "abc123"
    assert model["lineage"]["triggered_by"] == "alice@host"
    assert model["lineage"]["metric.ndcg_at_10"] == "0.3"
    assert model["run_id"] == model["lineage"]["training_run_id"]
    response = client.get("/v1/users/u1/recommendations?k=2")
    assert response.headers["X-Model-Version"] == "1"
    assert [i["item_id"] for i in response.get_json()["items"]] == ["c", "b"]

    store = app.extensions["model_store"]
    assert store.reload().status == "unchanged"  # the alias still points at version 1
    new_artifact(popular=[3, 2, 1, 0], name="v2").save(tmp_path / "v2")
    assert register(tmp_path / "v2", {"git_commit": "def456"}) == "2"
    result = store.reload()
    assert (result.status, result.version) == ("loaded", "2")
    response = client.get("/v1/users/nobody/recommendations?k=2")
    assert response.headers["X-Model-Version"] == "2"
    assert [i["item_id"] for i in response.get_json()["items"]] == ["d", "c"]

    # The registry goes away: the refresh fails, is counted, and version 2 keeps serving.
    store.tracking_uri = "http://127.0.0.1:9"
    assert store.reload().status == "failed"
    assert client.get("/readyz").status_code == 200
    assert client.get("/v1/users/u1/recommendations").headers["X-Model-Version"] == "2"
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "recommender_model_reload_failures_total 1.0" in metrics


def test_a_pinned_version_is_served(registry, tmp_path, new_artifact):
    uri, register = registry
    new_artifact().save(tmp_path / "v1")
    register(tmp_path / "v1", {})
    app = create_app(
        {"MODEL_URI": f"models:/{NAME}/1", "MLFLOW_TRACKING_URI": uri, "MODEL_REFRESH_SECONDS": 0}
    )
    assert app.test_client().get("/readyz").get_json()["model_version"] == "1"


def test_an_unknown_model_leaves_the_app_unready(registry):
    uri, _ = registry
    app = create_app({"MODEL_URI": "models:/no-such-model@champion", "MLFLOW_TRACKING_URI": uri})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert "no model is loaded" in response.get_json()["error"]["message"]
    app.extensions["model_store"].stop()


def test_a_registry_on_this_machine_is_read_in_place(registry, tmp_path, new_artifact, monkeypatch):
    """Its files are the version's own: served without copying the model first."""
    import mlflow.artifacts

    uri, register = registry
    new_artifact().save(tmp_path / "v1")
    register(tmp_path / "v1", {})

    def no_download(**kwargs):
        raise AssertionError(f"downloaded {kwargs}")

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", no_download)
    app = create_app(
        {
            "MODEL_URI": f"models:/{NAME}@champion",
            "MLFLOW_TRACKING_URI": uri,
            "MODEL_REFRESH_SECONDS": 0,
        }
    )
    assert app.test_client().get("/readyz").get_json()["model_version"] == "1"
