"""Feedback events: validated whole, appended to the durable log, counted; never a 500."""

import fcntl
import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from {{ cookiecutter.package }}_api.events_log import append_events
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


# --- A full disk: a failed append leaves the log as it was, the 503 says nothing was stored,
# and after space comes back every acknowledged event is readable. -----------------------------
# Posts batches of 7 events under a file size limit (writes past it fail part-way with EFBIG, as
# on a full disk), then lifts the limit ("space came back") and posts single events; prints every
# answer and the events it carried.
FULL_DISK = """
import json, resource, signal, sys
from {{ cookiecutter.package }}_api import create_app

config, limit = json.loads(sys.argv[1]), int(sys.argv[2])
client = create_app(config).test_client()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

def event(name):
    return {"event_type": "click", "user_id": name, "item_id": "i" * 50, "model_version": "v1"}

answers, unavailable, n = [], 0, 0
while unavailable < 3 and n < 1000:
    batch = [event(f"u{n}-{j}") for j in range(7)]
    response = client.post("/v1/events", json={"events": batch})
    unavailable += response.status_code == 503
    answers.append((response.status_code, response.get_json(), [e["user_id"] for e in batch]))
    n += 1
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
for k in range(5):
    response = client.post("/v1/events", json=event(f"after-{k}"))
    answers.append((response.status_code, response.get_json(), [f"after-{k}"]))
print(json.dumps(answers))
"""


def test_a_full_disk_loses_no_acknowledged_event_and_keeps_no_refused_one(app, events_log):
    config = {key: app.config[key] for key in ("MODEL_URI", "EVENTS_LOG", "DRIFT_REPORT_DIR")}
    config["MODEL_REFRESH_SECONDS"] = 0
    result = subprocess.run(
        [sys.executable, "-c", FULL_DISK, json.dumps(config), "20000"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    acknowledged = {name for status, _, names in answers if status == 202 for name in names}
    refused = [(body, names) for status, body, names in answers if status == 503]
    assert len(refused) == 3 and len(acknowledged) > 50
    assert {status for status, _, _ in answers} == {202, 503}
    assert all(status == 202 for status, _, _ in answers[-5:])  # space came back

    readable = set(read_feedback(events_log)["user_id"])
    assert acknowledged - readable == set(), "acknowledged events were lost"
    assert readable - acknowledged == set(), "events of a refused batch were stored"
    lines = events_log.read_bytes().split(b"\n")
    assert lines.pop() == b""
    assert len(lines) == len(acknowledged)
    assert all(json.loads(line) for line in lines), "a torn line is left in the log"
    for body, _ in refused:
        assert "none of the 7 event(s) were stored" in body["error"]["message"]


def test_an_append_waits_for_another_writers_lock(events_log):
    """Another worker appending holds the lock: this append (and a rollback it might need)
    waits for it, so a truncation can never cut off that worker's line."""
    events_log.parent.mkdir(parents=True)
    other = {"event_type": "click", "user_id": "other", "item_id": "a", "model_version": "v1"}
    mine = {**other, "user_id": "mine"}
    with open(events_log, "ab") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        writer = threading.Thread(target=append_events, args=(events_log, [mine]))
        writer.start()
        time.sleep(0.3)
        assert writer.is_alive() and events_log.read_bytes() == b""
        handle.write(json.dumps(other).encode() + b"\n")
        handle.flush()
        fcntl.flock(handle, fcntl.LOCK_UN)
    writer.join(5)
    assert [json.loads(line)["user_id"] for line in events_log.read_text().splitlines()] == [
        "other",
        "mine",
    ]


def test_an_append_after_a_torn_line_starts_a_new_line(client, events_log):
    """A writer killed in the middle of a write leaves a half line; the next event is still
    a line of its own."""
    events_log.parent.mkdir(parents=True)
    events_log.write_bytes(b'{"event_type":"click","user_id":"to')
    event = {"event_type": "click", "user_id": "u9", "item_id": "a", "model_version": "v1"}
    assert client.post("/v1/events", json=event).status_code == 202
    torn, line = events_log.read_bytes().split(b"\n")[:2]
    assert torn == b'{"event_type":"click","user_id":"to'
    assert json.loads(line)["user_id"] == "u9"
    assert list(read_feedback(events_log)["user_id"]) == ["u9"]
