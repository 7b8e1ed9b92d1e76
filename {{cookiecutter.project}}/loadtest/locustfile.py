"""A storefront's traffic against the recommendation API, checked against SLOs from a YAML file.

    locust -f loadtest/locustfile.py --headless -H http://127.0.0.1:8000 --slo loadtest/slo.yaml

`make loadtest` runs exactly this (see the Makefile). The mix (task weights), the think time and
the thresholds come from the SLO file; when locust quits, the totals (and any per-route
thresholds) are compared with it, each breach is printed by name with the measured value, and
the exit code is set to 3 (`ExitCode.CHECK_FAILED`, as for every check that says no).
"""

from __future__ import annotations

import os
import random
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml
from locust import FastHttpUser, between, events, task

from {{ cookiecutter.package }}_core.shared import ExitCode

DEFAULT_SLO = "loadtest/slo.yaml"
# What a shopper does with each recommended item shown: the chance of a click, a cart, a buy.
REACTIONS = {"click": 0.1, "add_to_cart": 0.03, "purchase": 0.01}

# Request names: stats aggregate per route, not per id.
KNOWN_USER = "GET /v1/users/[id]/recommendations (known)"
UNKNOWN_USER = "GET /v1/users/[id]/recommendations (new)"
SIMILAR = "GET /v1/items/[id]/similar"
SESSION = "POST /v1/recommendations (session)"
BATCH = "POST /v1/recommendations (batch)"
EVENTS = "POST /v1/events"
MODEL = "GET /v1/model"
# Mix entry (in the SLO file) -> request name; the Shopper method is the entry's name, except
# events -> feedback.
REQUEST_NAMES = {
    "known_user": KNOWN_USER,
    "unknown_user": UNKNOWN_USER,
    "similar_items": SIMILAR,
    "session": SESSION,
    "batch": BATCH,
    "events": EVENTS,
}

METHODS = {"events": "feedback"}


def load_slo(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The SLO file with defaults filled in; a missing or malformed file is an error."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    thresholds = data.get("thresholds") or {}
    mix = {name: 0 for name in REQUEST_NAMES} | (data.get("mix") or {})
    unknown = sorted(set(mix) - set(REQUEST_NAMES))
    if unknown:
        raise ValueError(f"{path}: unknown mix entries {unknown}; known: {sorted(REQUEST_NAMES)}")
    if not any(weight > 0 for weight in mix.values()):
        raise ValueError(f"{path}: every mix weight is 0")
    wait = data.get("wait_seconds") or {}
    return {
        "total": thresholds.get("total") or {},
        "routes": thresholds.get("routes") or {},
        "mix": {name: int(weight) for name, weight in mix.items()},
        "wait": (float(wait.get("min", 0.01)), float(wait.get("max", 0.1))),
    }


def synthetic_ids(prefix: str, n: int) -> list[str]:
    """The synthetic data's ids: u00001..u20000, i0001..i5000 (as `make data` writes them)."""
    width = max(4, len(str(n)))
    return [prefix + str(index).zfill(width) for index in range(1, n + 1)]


def read_ids(file_variable: str, count_variable: str, prefix: str, default: int) -> list[str]:
    path = os.environ.get(file_variable)
    if path:
        ids = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
        if not ids:
            raise ValueError(f"{file_variable}={path}: no ids in the file")
        return ids
    return synthetic_ids(prefix, int(os.environ.get(count_variable, default)))


USER_IDS = read_ids("LOADTEST_USERS_FILE", "LOADTEST_N_USERS", "u", 20000)
ITEM_IDS = read_ids("LOADTEST_ITEMS_FILE", "LOADTEST_N_ITEMS", "i", 5000)


@events.init_command_line_parser.add_listener
def _add_arguments(parser) -> None:
    parser.add_argument(
        "--slo",
        default=os.environ.get("LOADTEST_SLO", DEFAULT_SLO),
        help="YAML file with the SLO thresholds, the traffic mix and the think time",
    )


@events.init.add_listener
def _configure(environment, **_kwargs) -> None:
    """Read the SLO file once; set the shoppers' task weights and think time from it."""
    path = getattr(environment.parsed_options, "slo", None) or DEFAULT_SLO
    slo = load_slo(path)
    environment.slo = slo
    weighted = [
        getattr(Shopper, METHODS.get(name, name))
        for name, weight in slo["mix"].items()
        for _ in range(weight)
    ]
    Shopper.tasks = weighted
    Shopper.wait_time = between(*slo["wait"])


@events.quitting.add_listener
def _check_slo(environment, **_kwargs) -> None:
    slo = getattr(environment, "slo", None)
    if slo is None or type(environment.runner).__name__ == "WorkerRunner":
        return
    breaches = check(environment.stats.total, slo["total"], "total")
    for name, limits in slo["routes"].items():
        entries = [entry for (entry_name, _), entry in environment.stats.entries.items()]
        entry = next((e for e in entries if e.name == name), None)
        if entry is None:
            breaches.append(f"{name}: no requests (the route has thresholds in the SLO file)")
            continue
        breaches.extend(check(entry, limits or {}, name))
    if breaches:
        for breach in breaches:
            print(f"SLO breach: {breach}", file=sys.stderr, flush=True)
        environment.process_exit_code = ExitCode.CHECK_FAILED
    else:
        total = environment.stats.total
        print(
            f"SLO met: {total.num_requests} requests, {total.num_failures} failures, "
            f"p95 {total.get_response_time_percentile(0.95):.0f} ms, "
            f"p99 {total.get_response_time_percentile(0.99):.0f} ms",
            file=sys.stderr,
            flush=True,
        )


def check(entry, limits: dict[str, Any], label: str) -> list[str]:
    """Each threshold of `limits` that `entry` (locust StatsEntry) breaks, as a sentence."""
    breaches = []
    count = entry.num_requests
    if "min_requests" in limits and count < limits["min_requests"]:
        breaches.append(f"{label} requests = {count} < min_requests {limits['min_requests']}")
    if "max_failures" in limits and entry.num_failures > limits["max_failures"]:
        breaches.append(
            f"{label} failures = {entry.num_failures} > max_failures {limits['max_failures']}"
        )
    for key, quantile in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)):
        if key in limits and count:
            measured = entry.get_response_time_percentile(quantile)
            if measured > limits[key]:
                breaches.append(f"{label} {key[:3]} = {measured:g} ms > {key} {limits[key]:g}")
    return breaches


class Shopper(FastHttpUser):
    """One storefront visitor; the task weights and think time are set from the SLO file."""

    wait_time = between(0.01, 0.1)

    def on_start(self) -> None:
        # The last personalized list shown: feedback rates it, with the version that made it.
        self.shown: tuple[str, list[str], str] | None = None
        self.client.get("/v1/model", name=MODEL)

    def known_user(self) -> None:
        user = random.choice(USER_IDS)
        response = self.client.get(f"/v1/users/{user}/recommendations?k=10", name=KNOWN_USER)
        if response.status_code == 200:
            items = [entry["item_id"] for entry in response.json()["items"]]
            self.shown = (user, items, response.headers.get("X-Model-Version", "unknown"))

    def unknown_user(self) -> None:
        user = "visitor-" + uuid.uuid4().hex[:12]
        self.client.get(f"/v1/users/{user}/recommendations?k=10", name=UNKNOWN_USER)

    def similar_items(self) -> None:
        item = random.choice(ITEM_IDS)
        self.client.get(f"/v1/items/{item}/similar?k=10", name=SIMILAR)

    def session(self) -> None:
        body = {"items": random.sample(ITEM_IDS, min(len(ITEM_IDS), random.randint(1, 5))), "k": 10}
        if random.random() < 0.5:
            body["user_id"] = random.choice(USER_IDS)
        self.client.post("/v1/recommendations", json=body, name=SESSION)

    def batch(self) -> None:
        users = random.sample(USER_IDS, min(len(USER_IDS), 10))
        self.client.post("/v1/recommendations", json={"user_ids": users, "k": 5}, name=BATCH)

    def feedback(self) -> None:
        """The storefront reports the last list it showed: impressions, then reactions."""
        if self.shown is None:
            self.known_user()
            return
        (user, items, version), self.shown = self.shown, None
        reactions = [
            (kind, item)
            for item in items
            for kind, chance in REACTIONS.items()
            if random.random() < chance
        ]
        feedback = [
            {"event_type": kind, "user_id": user, "item_id": item, "model_version": version}
            for kind, item in [("impression", item) for item in items] + reactions
        ]
        self.client.post("/v1/events", json={"events": feedback}, name=EVENTS)

    # Locust refuses a user class without a task at import; `_configure` then replaces the task
    # list with the SLO file's weighted mix before any user starts.
    @task
    def _until_the_mix_is_read(self) -> None:
        self.known_user()
