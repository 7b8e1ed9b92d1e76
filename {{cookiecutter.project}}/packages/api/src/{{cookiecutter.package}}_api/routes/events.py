"""Feedback from the storefront: impressions, clicks, add-to-carts and purchases.

`{"events": [event, ...]}` (1 to MAX_EVENTS_PER_REQUEST events) or one event object alone. A
batch with any invalid event is refused whole (400 naming the index and the field); an accepted
batch is on disk, in the events log, before the 202 goes out; a batch that could not be written
is not in the log at all (the 503 says so).

An event may carry an `event_id` (the idempotency key, `core.shared.FEEDBACK_KEY`): the client
sends the same one again when it retries. The API cannot tell a retry from a first try (each
gunicorn worker is its own process), so it logs both; every reader of the log counts the key
once (`core.feedback.read_feedback`). Within one batch a key must not repeat.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, abort, current_app
from werkzeug.exceptions import HTTPException, ServiceUnavailable

from {{ cookiecutter.package }}_core.shared import (
    FEEDBACK_EVENT_TYPES,
    FEEDBACK_KEY,
    FEEDBACK_OPTIONAL,
    FEEDBACK_REQUIRED,
)

from ..events_log import EventsLogError, append_events
from ..validation import check_id, read_json, refuse_unknown

bp = Blueprint("events", __name__, url_prefix="/v1")
log = logging.getLogger(__name__)

FIELDS = frozenset(FEEDBACK_REQUIRED + FEEDBACK_OPTIONAL)
# The required fields besides event_type are ids; so are the optional request_id and event_id.
REQUIRED_IDS = tuple(name for name in FEEDBACK_REQUIRED if name != "event_type")
OPTIONAL_IDS = ("request_id", FEEDBACK_KEY)
MAX_CLOCK_SKEW = timedelta(minutes=5)


@bp.post("/events")
def receive() -> tuple[dict[str, Any], int]:
    metrics = current_app.extensions["metrics"]
    body: Any = None
    try:
        body = read_json(current_app.config["MAX_EVENTS_CONTENT_LENGTH"])
        events = check_events(body)
        append_events(current_app.config["EVENTS_LOG"], events)
    except EventsLogError as error:
        metrics.events_rejected(len(events) - error.stored, "unavailable")
        log.error("events not written", extra={"fields": {"error": str(error)}})
        raise ServiceUnavailable(
            f"the events log is not writable; {_stored(error.stored, len(events))}; retry later"
        ) from None
    except HTTPException:
        metrics.events_rejected(_count(body), "invalid")
        raise
    for event in events:
        metrics.event_accepted(event["event_type"], event["model_version"])
    return {"accepted": len(events)}, 202


def _stored(stored: int, total: int) -> str:
    """Which events of a failed append are in the log: none, unless rolling it back failed."""
    if stored == 0:
        return f"none of the {total} event(s) were stored"
    return f"events[0] to events[{stored - 1}] of {total} were stored, the rest were not"


def _count(body: Any) -> int:
    """How many events a refused request carried (1 when that cannot be told)."""
    if isinstance(body, dict) and isinstance(body.get("events"), list):
        return max(len(body["events"]), 1)
    return 1


def check_events(body: Any) -> list[dict[str, Any]]:
    """Every event checked and normalized; the first problem aborts with a 400 naming it."""
    if not isinstance(body, dict):
        abort(400, description="the JSON body must be an object: {events: [...]} or one event")
    if "events" not in body:
        return [check_event(body, "event")]
    refuse_unknown(body, {"events"}, "unknown field(s)")
    raw = body["events"]
    limit = current_app.config["MAX_EVENTS_PER_REQUEST"]
    if not isinstance(raw, list) or not raw:
        abort(400, description="events must be a non-empty list of event objects")
    if len(raw) > limit:
        abort(400, description=f"events has {len(raw)} entries; at most {limit} are allowed")
    received = _now()
    events = [check_event(event, f"events[{i}]", received) for i, event in enumerate(raw)]
    first: dict[str, int] = {}
    for i, event in enumerate(events):
        key = event.get(FEEDBACK_KEY)
        if key is not None and first.setdefault(key, i) != i:
            abort(400, description=f"events[{i}].{FEEDBACK_KEY} repeats events[{first[key]}]'s")
    return events


def check_event(event: Any, where: str, received: datetime | None = None) -> dict[str, Any]:
    received = received or _now()
    if not isinstance(event, dict):
        abort(400, description=f"{where} must be an object")
    refuse_unknown(event, FIELDS, f"{where} has unknown field(s)")
    for name in FEEDBACK_REQUIRED:
        if name not in event:
            abort(400, description=f"{where}.{name} is required")
    event_type = event["event_type"]
    if event_type not in FEEDBACK_EVENT_TYPES:
        allowed = ", ".join(FEEDBACK_EVENT_TYPES)
        abort(400, description=f"{where}.event_type must be one of {allowed}")
    checked = {"event_type": event_type}
    for name in REQUIRED_IDS:
        checked[name] = check_id(event[name], f"{where}.{name}")
    for name in OPTIONAL_IDS:
        if event.get(name) is not None:
            checked[name] = check_id(event[name], f"{where}.{name}")
    if event.get("timestamp") is not None:
        timestamp = check_timestamp(event["timestamp"], f"{where}.timestamp", received)
    else:
        timestamp = received
    checked["timestamp"] = _iso(timestamp)
    checked["received_at"] = _iso(received)
    return checked


def check_timestamp(value: Any, what: str, received: datetime) -> datetime:
    """An ISO 8601 date-time; without an offset it is taken as UTC; at most 5 min ahead."""
    if not isinstance(value, str) or len(value) > 64:
        abort(400, description=f"{what} must be an ISO 8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        abort(400, description=f"{what} is not an ISO 8601 date-time: {value!r}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00
        abort(400, description=f"{what} is out of range")
    if parsed > received + MAX_CLOCK_SKEW:
        abort(400, description=f"{what} is more than 5 minutes in the future")
    return parsed


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
