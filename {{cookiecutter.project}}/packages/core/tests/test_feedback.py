"""Online quality from the feedback log, and the rule that calls a drop (used by rollback)."""

import json

import pandas as pd

from {{ cookiecutter.package }}_core.feedback import online_quality, quality_drop, read_feedback
from {{ cookiecutter.package }}_core.shared import FEEDBACK_LOGGED

SETTINGS = {"min_impressions": 100, "min_ctr_ratio": 0.7}


def write_log(path, counts: dict[str, dict[str, int]], start_minute: int = 0) -> None:
    """`counts`: version -> event type -> how many; each version logged one minute later."""
    with open(path, "a") as handle:
        for offset, (version, kinds) in enumerate(counts.items(), start=start_minute):
            for kind, n in kinds.items():
                for i in range(n):
                    event = {
                        "event_type": kind,
                        "user_id": f"u{i}",
                        "item_id": f"i{i % 7}",
                        "model_version": version,
                        "timestamp": f"2026-11-27T07:{offset:02d}:00.000Z",
                        "received_at": f"2026-11-27T07:{offset:02d}:00.100Z",
                    }
                    handle.write(json.dumps(event) + "\n")


def test_rates_per_version_in_the_order_they_appeared(tmp_path):
    log = tmp_path / "events.jsonl"
    write_log(log, {"2": {"impression": 200, "click": 10, "purchase": 2}})
    write_log(log, {"1": {"impression": 100, "click": 20}}, start_minute=5)
    with open(log, "a") as handle:
        handle.write('{"event_type": "click", "user_id": "torn')  # a torn last line
    quality = online_quality(read_feedback(log))
    assert list(quality) == ["2", "1"]
    assert quality["2"]["impressions"] == 200
    assert quality["2"]["ctr"] == 0.05
    assert quality["2"]["purchase_rate"] == 0.01
    assert quality["1"]["ctr"] == 0.2
    assert quality["1"]["add_to_cart_rate"] == 0.0


def test_since_keeps_only_recent_feedback(tmp_path):
    log = tmp_path / "events.jsonl"
    write_log(log, {"1": {"impression": 10}, "2": {"impression": 20}})
    recent = read_feedback(log, since=pd.Timestamp("2026-11-27T07:01:00"))
    assert set(recent["model_version"]) == {"2"}
    assert read_feedback(tmp_path / "missing.jsonl").empty


def test_a_drop_needs_a_lower_ratio_and_enough_impressions():
    quality = {
        "1": {"impressions": 400, "ctr": 0.10},
        "2": {"impressions": 400, "ctr": 0.01},
        "3": {"impressions": 400, "ctr": 0.09},
        "4": {"impressions": 50, "ctr": 0.0},
    }
    dropped = quality_drop(quality, "2", "1", SETTINGS)
    assert dropped["drop"] is True
    assert dropped["ratio"] == 0.1
    assert "0.10x v1" in dropped["reason"]
    fine = quality_drop(quality, "3", "1", SETTINGS)
    assert (fine["drop"], fine["ratio"]) == (False, 0.9)
    quiet = quality_drop(quality, "4", "1", SETTINGS)
    assert quiet["drop"] is False
    assert "50 impressions" in quiet["reason"]
    assert quality_drop(quality, "2", None, SETTINGS)["drop"] is False


def test_a_torn_fragment_does_not_hide_the_event_glued_after_it(tmp_path):
    """A write cut short, then the next event appended onto the half line: the event counts."""
    log = tmp_path / "events.jsonl"
    write_log(log, {"1": {"impression": 3}})
    valid = log.read_bytes().splitlines(keepends=True)
    torn = b'{"event_type":"click","user_id":"u\xc3'  # cut inside a UTF-8 character, too
    log.write_bytes(valid[0] + torn + valid[1] + torn[:9] + torn + valid[2] + b'{"oops"}\n')
    assert list(read_feedback(log)["user_id"]) == ["u0", "u1", "u2"]


def test_an_event_id_counts_once_however_often_it_was_logged(tmp_path):
    """Retries carry the same event_id: every reader (online quality, drift, rollback) counts
    the first line with it; events without one are all counted."""
    log = tmp_path / "events.jsonl"
    base = {"user_id": "u1", "item_id": "a", "model_version": "1"}
    lines = [
        {**base, "event_type": "impression", "event_id": "e-1", "timestamp": "2026-11-27T07:00Z"},
        {**base, "event_type": "click", "event_id": "e-2", "timestamp": "2026-11-27T07:01Z"},
        {**base, "event_type": "impression", "event_id": "e-1", "timestamp": "2026-11-27T07:02Z"},
        {**base, "event_type": "impression", "timestamp": "2026-11-27T07:03Z"},
        {**base, "event_type": "impression", "timestamp": "2026-11-27T07:03Z"},
        {**base, "event_type": "click", "event_id": "e-2", "timestamp": "2026-11-27T07:04Z"},
    ]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    feedback = read_feedback(log)
    assert list(feedback["timestamp"].dt.minute) == [0, 1, 3, 3]
    assert online_quality(feedback)["1"]["impressions"] == 3
    assert online_quality(feedback)["1"]["ctr"] == round(1 / 3, 6)
    # The retry of e-1 at 07:02 is after `since`, its first line is not: it is not counted.
    assert len(read_feedback(log, since=pd.Timestamp("2026-11-27T07:02"))) == 2


def event_lines(*events: tuple[str, str | None, str]) -> str:
    """(event_type, event_id or None, minute) -> JSON lines for user u1, version 1."""
    base = {"user_id": "u1", "item_id": "a", "model_version": "1"}
    return "".join(
        json.dumps(
            {**base, "event_type": kind, "timestamp": f"2026-11-27T07:{minute}Z"}
            | ({"event_id": key} if key else {})
        )
        + "\n"
        for kind, key, minute in events
    )


def test_a_folder_is_every_jsonl_in_it_read_in_name_order_as_one_log(tmp_path):
    """One log per API pod (EVENTS_LOG=/var/lib/feedback/<pod>.jsonl on Kubernetes): a retry
    that reached another pod counts once, as within one file."""
    folder = tmp_path / "feedback"
    folder.mkdir()
    (folder / "api-b.jsonl").write_text(
        event_lines(("impression", "e-1", "03"), ("click", "e-2", "04"), ("impression", None, "05"))
    )
    (folder / "api-a.jsonl").write_text(
        event_lines(("impression", "e-1", "00"), ("impression", None, "01"))
    )
    (folder / "api-c.jsonl").write_text("")  # a pod that has not logged yet
    (folder / "notes.txt").write_text(event_lines(("click", "x", "09")))  # not a log
    (folder / ".api-d.jsonl.swp").write_text(event_lines(("click", "y", "09")))
    (folder / ".hidden.jsonl").write_text(event_lines(("click", "z", "09")))
    (folder / "old").mkdir()
    (folder / "old" / "api-e.jsonl").write_text(event_lines(("click", "w", "09")))

    feedback = read_feedback(folder)
    assert list(feedback["timestamp"].dt.minute) == [0, 1, 4, 5]  # api-a, then api-b
    assert list(feedback["event_type"]) == ["impression", "impression", "click", "impression"]
    single = tmp_path / "all.jsonl"
    single.write_text("".join(path.read_text() for path in sorted(folder.glob("api-*.jsonl"))))
    pd.testing.assert_frame_equal(feedback, read_feedback(single))
    assert online_quality(feedback) == online_quality(read_feedback(single))
    assert len(read_feedback(folder, since=pd.Timestamp("2026-11-27T07:04"))) == 2


def test_a_missing_or_empty_folder_reads_as_a_missing_log(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "no-logs").mkdir()
    (tmp_path / "no-logs" / "readme.txt").write_text("{}\n")
    missing = read_feedback(tmp_path / "missing.jsonl")
    assert missing.empty and list(missing.columns) == list(FEEDBACK_LOGGED)
    for path in ("missing-folder", "empty", "no-logs"):
        pd.testing.assert_frame_equal(read_feedback(tmp_path / path), missing)
    assert online_quality(read_feedback(tmp_path / "empty")) == {}
