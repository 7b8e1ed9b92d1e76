"""Feedback events: validated whole, appended to the durable log, counted; never a 500."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from {{ cookiecutter.package }}_core.feedback import read_feedback


def event(**overrides) -> dict:
    base = {"event_type": "click", "user_id": "u1", "item_id": "a", "model_version": "local-1"}
    return {**base, **overrides}


def logged(path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_batch_is_appended_exactly(client, events_log):
    batch = [
        event(),
        event(event_type="impression", request_id="req-1", timestamp="2026-01-02T03:04:05Z"),
        event(event_type="purchase", user_id="u2", item_id="d", timestamp="2026-01-02T04:04:05"),
        event(event_type="add_to_cart", timestamp="2026-01-02T05:04:05.5+02:00"),
    ]
    response = client.post("/v1/events", json={"events": batch})
    assert response.status_code == 202, response.get_data(as_text=True)
    assert response.get_json() == {"accepted": 4}
    assert response.headers["X-Request-ID"]

    lines = logged(events_log)
    assert len(lines) == 4
    received = {line["received_at"] for line in lines}
    assert len(received) == 1  # one batch, one arrival time
    stamped = datetime.fromisoformat(received.pop())
    assert abs(stamped - datetime.now(UTC)) < timedelta(minutes=1)
    assert [{k: v for k, v in line.items() if k != "received_at"} for line in lines[1:]] == [
        {**batch[1], "timestamp": "2026-01-02T03:04:05.000Z"},
        {**batch[2], "timestamp": "2026-01-02T04:04:05.000Z"},  # no offset: UTC
        {**batch[3], "timestamp": "2026-01-02T03:04:05.500Z"},  # converted to UTC
    ]
    assert lines[0]["timestamp"] == lines[0]["received_at"]  # default: now
    assert {k: lines[0][k] for k in batch[0]} == batch[0]


def test_a_single_event_and_later_batches_append(client, events_log):
    assert client.post("/v1/events", json=event()).get_json() == {"accepted": 1}
    response = client.post("/v1/events", json={"events": [event(item_id="b")] * 3})
    assert response.get_json() == {"accepted": 3}
    assert [line["item_id"] for line in logged(events_log)] == ["a", "b", "b", "b"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"events": [event(), event(user_id=7)]}, "events[1].user_id must be a string"),
        ({"events": [event(), event(item_id="")]}, "events[1].item_id must be 1 to 128"),
        ({"events": [event(event_type="view")]}, "events[0].event_type must be one of"),
        ({"events": [event(colour="red")]}, "events[0] has unknown field(s) colour"),
        ({"events": [{"event_type": "click"}]}, "events[0].user_id is required"),
        ({"events": [event(), "click"]}, "events[1] must be an object"),
        ({"events": [event(model_version="v\u0000")]}, "events[0].model_version contains control"),
        ({"events": [event(request_id=5)]}, "events[0].request_id must be a string"),
        ({"events": [event(timestamp="yesterday")]}, "events[0].timestamp is not an ISO 8601"),
        ({"events": [event(timestamp=1700000000)]}, "events[0].timestamp must be an ISO 8601"),
        ({"events": []}, "events must be a non-empty list"),
        ({"events": event()}, "events must be a non-empty list"),
        ({"events": [event()] * 501}, "at most 500"),
        ({"events": [event()], "extra": 1}, "unknown field(s) extra"),
        (event(user_id=None), "event.user_id must be a string"),
        ([event()], "the JSON body must be an object"),
    ],
)
def test_an_invalid_batch_is_refused_whole(client, events_log, body, fragment):
    response = client.post("/v1/events", json=body)
    assert response.status_code == 400
    assert fragment in response.get_json()["error"]["message"]
    assert not events_log.exists()


def test_future_timestamps_are_refused(client, events_log):
    soon = (datetime.now(UTC) + timedelta(minutes=4)).isoformat()
    later = (datetime.now(UTC) + timedelta(minutes=6)).isoformat()
    assert client.post("/v1/events", json=event(timestamp=soon)).status_code == 202
    response = client.post("/v1/events", json={"events": [event(), event(timestamp=later)]})
    assert response.status_code == 400
    assert "events[1].timestamp is more than 5 minutes in the future" in response.get_data(
        as_text=True
    )
    assert len(logged(events_log)) == 1


def test_wrong_content_type_and_bad_json(client, events_log):
    assert client.post("/v1/events", data=json.dumps(event())).status_code == 415
    response = client.post("/v1/events", data=b"{", content_type="application/json")
    assert response.status_code == 400 and "invalid JSON" in response.get_json()["error"]["message"]
    assert not events_log.exists()


def test_a_full_batch_fits_the_events_body_limit(client, events_log):
    batch = [event(user_id="u" * 40, item_id="i" * 40, request_id="r" * 40)] * 500
    assert client.post("/v1/events", json={"events": batch}).status_code == 202
    assert len(logged(events_log)) == 500
    huge = {"events": [event(user_id="u" * 128, item_id="i" * 128)] * 500}
    huge["events"][0] = event(user_id="x" * 600_000)
    assert client.post("/v1/events", json=huge).status_code == 413


def test_an_unwritable_log_is_a_json_503_and_writes_nothing(app, client, tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    app.config["EVENTS_LOG"] = str(blocker / "events.jsonl")
    response = client.post("/v1/events", json={"events": [event(), event()]})
    assert response.status_code == 503
    assert response.is_json
    assert "events log is not writable" in response.get_json()["error"]["message"]
    assert blocker.read_text() == ""
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'recommender_events_rejected_total{reason="unavailable"} 2.0' in metrics


def test_events_are_counted_by_type_and_the_version_they_rate(client):
    served = client.get("/v1/model").get_json()["version"]
    rated = [event(model_version=served), event(model_version=served), event(event_type="purchase")]
    client.post("/v1/events", json={"events": rated})
    client.post("/v1/events", json={"events": [event(), event(user_id="")]})
    client.post("/v1/events", json={"events": [event()], "x": 1})
    metrics = client.get("/metrics").get_data(as_text=True)
    labels = f'event_type="click",model_version="{served}"'
    assert "recommender_events_total{" + labels + "} 2.0" in metrics
    # A version this process never served is "other": clients cannot grow the label set.
    assert 'recommender_events_total{event_type="purchase",model_version="other"} 1.0' in metrics
    # Counted in events: the refused batch of 2, then the refused batch of 1.
    assert 'recommender_events_rejected_total{reason="invalid"} 3.0' in metrics


def test_events_need_no_model(empty_app, events_log):
    response = empty_app.test_client().post("/v1/events", json=event())
    assert response.status_code == 202
    assert response.headers["X-Model-Version"] == "none"
    assert len(logged(events_log)) == 1


def test_a_retry_with_the_same_event_id_is_counted_once(client, events_log):
    """The API logs a retry (another worker may have logged the first try); readers count the
    event_id once."""
    keyed = event(event_id="0b5e8c2a-retry")
    for _ in range(2):
        assert client.post("/v1/events", json={"events": [keyed, event()]}).status_code == 202
    assert [line.get("event_id") for line in logged(events_log)] == [keyed["event_id"], None] * 2
    assert len(read_feedback(events_log)) == 3


@pytest.mark.parametrize(
    ("events", "fragment"),
    [
        ([event(event_id="")], "events[0].event_id must be 1 to 128"),
        ([event(event_id=7)], "events[0].event_id must be a string"),
        ([event(event_id="e\n1")], "events[0].event_id contains control characters"),
        (
            [event(event_id="e1"), event(), event(event_id="e1")],
            "events[2].event_id repeats events[0]'s",
        ),
    ],
)
def test_a_bad_event_id_is_refused(client, events_log, events, fragment):
    response = client.post("/v1/events", json={"events": events})
    assert response.status_code == 400
    assert fragment in response.get_json()["error"]["message"]
    assert not events_log.exists()
