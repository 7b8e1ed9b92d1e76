"""The events log when the disk fills up: a failed append leaves the log as it was, the 503 says
nothing was stored, and after space comes back every acknowledged event is readable."""

import fcntl
import json
import subprocess
import sys
import threading
import time

from {{ cookiecutter.package }}_api.events_log import append_events
from {{ cookiecutter.package }}_core.feedback import read_feedback

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
