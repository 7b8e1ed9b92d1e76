"""Health, readiness, headers, metrics and the request log."""

import json

from {{ cookiecutter.package }}_api import create_app


def test_healthz_and_readyz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ready",
        "model_version": response.headers["X-Model-Version"],
    }


def test_without_a_model_the_app_starts_but_is_not_ready(empty_app):
    client = empty_app.test_client()
    assert client.get("/healthz").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "no model is loaded" in response.get_json()["error"]["message"]
    assert response.headers["X-Model-Version"] == "none"
    for response in (
        client.get("/v1/users/u1/recommendations"),
        client.get("/v1/items/a/similar"),
        client.get("/v1/model"),
        client.post("/v1/recommendations", json={"items": ["a"]}),
    ):
        assert response.status_code == 503
        assert response.get_json()["error"] == {
            "status": 503,
            "message": "no model is loaded yet; retry later",
        }
    metrics = client.get("/metrics").get_data(as_text=True)
    assert "recommender_model_loaded 0.0" in metrics
    assert "recommender_model_reload_failures_total 1.0" in metrics


def test_readyz_keeps_the_load_error_in_the_log(tmp_path, caplog):
    """Where the model was looked for (a registry URL, a server path) is in the log only."""
    internal = str(tmp_path / "internal-models" / "champion")
    app = create_app(
        {
            "MODEL_URI": internal,
            "MODEL_REFRESH_SECONDS": 0,
            "EVENTS_LOG": str(tmp_path / "events.jsonl"),
        }
    )
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    message = response.get_json()["error"]["message"]
    assert message == "no model is loaded; the last load failed (see the server log)"
    assert "internal-models" not in response.get_data(as_text=True)
    logged = [record for record in caplog.records if record.getMessage().startswith("model load")]
    assert logged and "internal-models" in str(logged[0].fields)


def test_bad_input_still_gets_a_400_without_a_model(empty_app):
    response = empty_app.test_client().get("/v1/users/u1/recommendations?k=0")
    assert response.status_code == 400


def test_a_model_that_appears_later_is_picked_up(tmp_path, new_artifact):
    app = create_app({"MODEL_URI": str(tmp_path / "model"), "MODEL_REFRESH_SECONDS": 0})
    assert app.test_client().get("/readyz").status_code == 503
    new_artifact().save(tmp_path / "model")
    assert app.extensions["model_store"].reload().status == "loaded"
    assert app.test_client().get("/readyz").status_code == 200


def test_request_id_is_echoed_when_sane_and_generated_otherwise(client):
    response = client.get("/healthz", headers={"X-Request-ID": "abc-123.x:y_z"})
    assert response.headers["X-Request-ID"] == "abc-123.x:y_z"
    for bad in ("has space", "x" * 129, "semi;colon", "<script>", ""):
        response = client.get("/healthz", headers={"X-Request-ID": bad})
        generated = response.headers["X-Request-ID"]
        assert generated != bad and len(generated) == 32


def test_every_response_names_the_model_version(client):
    version = client.get("/v1/model").get_json()["version"]
    for response in (
        client.get("/healthz"),
        client.get("/metrics"),
        client.get("/missing"),
        client.post("/v1/recommendations", data="x", content_type="text/plain"),
    ):
        assert response.headers["X-Model-Version"] == version
        assert response.headers["X-Request-ID"]


def test_metrics_exposes_every_metric(client):
    client.get("/v1/users/u1/recommendations")
    client.get("/v1/users/u1/recommendations?k=0")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    text = response.get_data(as_text=True)
    for name in (
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "recommender_model_info",
        "recommender_model_loaded",
        "recommender_fallbacks_total",
        "recommender_model_reloads_total",
        "recommender_model_reload_failures_total",
    ):
        assert name in text
    labels = 'method="GET",route="/v1/users/<user_id>/recommendations",status='
    assert "http_requests_total{" + labels + '"200"} 1.0' in text
    assert "http_requests_total{" + labels + '"400"} 1.0' in text


def test_the_drift_jobs_verdict_is_exported_once_it_exists(client, drift_summary):
    assert "recommender_drift" not in client.get("/metrics").get_data(as_text=True)
    drift_summary.parent.mkdir(parents=True)
    summary = {
        "generated_at": "2026-02-09T06:00:00+00:00",
        "verdict": "drift",
        "data_drift": {"drifted": True, "drifted_share": 0.6},
        "prediction_drift": {"skipped": "no impressions in the feedback log"},
        "online_quality": {"drop": False},
    }
    drift_summary.write_text(json.dumps(summary))
    text = client.get("/metrics").get_data(as_text=True)
    assert "recommender_drift_detected 1.0" in text
    assert 'recommender_drift_share{check="data_drift"} 0.6' in text
    assert "prediction_drift" not in text
    assert "recommender_online_quality_drop 0.0" in text
    assert "recommender_drift_report_timestamp_seconds 1.7706168e+09" in text
    drift_summary.write_text("{not json")
    assert "recommender_drift" not in client.get("/metrics").get_data(as_text=True)


def test_unmatched_paths_and_unknown_methods_share_one_metric_label(client):
    client.get("/a/b/c")
    client.get("/d/e/f")
    for method in ("BREW", "PROPFIND"):
        assert client.open("/healthz", method=method).status_code == 405
    text = client.get("/metrics").get_data(as_text=True)
    assert 'http_requests_total{method="GET",route="<unmatched>",status="404"} 2.0' in text
    assert 'http_requests_total{method="other",route="<unmatched>",status="405"} 2.0' in text
