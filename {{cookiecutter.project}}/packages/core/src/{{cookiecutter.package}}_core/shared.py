"""What the deployables agree on, defined once: settings (environment names and defaults), the
registered model's name and aliases, file locations, the feedback event vocabulary, the id rule,
the drift summary's schema, the log format and the exit codes.

The API, the pipeline, the batch export and the drift job read these names from here; the
Kubernetes manifests, systemd units and CI workflows set the same environment variables.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import Any

PROJECT = "{{ cookiecutter.project }}"


class ExitCode(IntEnum):
    """One convention for every command of every package (the README's "Exit codes")."""

    # done, or nothing to do: a stage ran, no drift, the export is already complete
    OK = 0
    # something that should have worked did not: a stage crashed, a write failed, a service down
    FAILED = 1
    # bad input, nothing was changed: arguments, params, the data contract (file, row and column
    # named), missing files, a refused approval or rollback, an API that does not answer
    BAD_INPUT = 2
    # the command ran and its check says no: the promotion gate failed (promote, pipeline,
    # retrain, monitor), drift detected (drift), an SLO breached (make loadtest), canary-check
    # says roll back (a hold exits 0, or 3 with --strict)
    CHECK_FAILED = 3


# --- Settings: environment variable -> default ---------------------------------------------


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str


SETTINGS = {
    setting.name: setting
    for setting in (
        Setting(
            "MLFLOW_TRACKING_URI",
            "sqlite:///mlflow.db",
            "MLflow tracking server and model registry (the embedded SQLite file by default)",
        ),
        Setting("MODEL_NAME", PROJECT, "name of the registered model"),
        Setting(
            "MODEL_URI",
            "",
            "what serving and scoring load: models:/<name>@<alias>, models:/<name>/<version> "
            "or an artifact folder (default: models:/<MODEL_NAME>@champion)",
        ),
        Setting(
            "EVENTS_LOG",
            "logs/feedback-events.jsonl",
            "the API's feedback events log (JSON lines), read by the drift job and rollback; "
            "for those two it may be a folder: every *.jsonl in it (one log per API pod)",
        ),
        Setting(
            "DRIFT_REPORT_DIR",
            "reports/drift",
            "the drift job's reports; the API exports its summary.json on /metrics",
        ),
        Setting(
            "PIPELINE_TRIGGER",
            "manual",
            "why a pipeline run started (schedule, drift, manual); recorded on the model version",
        ),
        Setting("LOG_LEVEL", "info", "log level of every command and the API (debug .. error)"),
    )
}


def setting(name: str, environ: Mapping[str, str] | None = None) -> str:
    """The environment's value of a shared setting, or its default (an empty value = unset)."""
    environ = os.environ if environ is None else environ
    return environ.get(name) or SETTINGS[name].default


def tracking_uri(environ: Mapping[str, str] | None = None) -> str:
    return setting("MLFLOW_TRACKING_URI", environ)


def model_name(environ: Mapping[str, str] | None = None) -> str:
    return setting("MODEL_NAME", environ)


def model_uri(environ: Mapping[str, str] | None = None) -> str:
    """`MODEL_URI`, or the champion of `MODEL_NAME` in the registry."""
    return setting("MODEL_URI", environ) or registered_model_uri(model_name(environ), CHAMPION)


def registered_model_uri(name: str, version_or_alias: str) -> str:
    """`models:/<name>/<version>` for a version number, `models:/<name>@<alias>` otherwise."""
    separator = "/" if str(version_or_alias).isdigit() else "@"
    return f"models:/{name}{separator}{version_or_alias}"


# --- The registry -----------------------------------------------------------------------------

CHAMPION, CHALLENGER = "champion", "challenger"
PREVIOUS_CHAMPION_TAG = "previous_champion"

# --- Files that one deployable writes and another reads --------------------------------------

VALIDATED_DIR = Path("data/validated")  # the training window: the drift job's reference
PROMOTION_LOG = Path("logs/promotions.jsonl")  # every gate, approval and rollback decision
DRIFT_SUMMARY_FILE = "summary.json"


def drift_summary_path(environ: Mapping[str, str] | None = None) -> Path:
    return Path(setting("DRIFT_REPORT_DIR", environ)) / DRIFT_SUMMARY_FILE


# --- Feedback events: what the storefront reports, the API logs and monitoring reads ----------

IMPRESSION, CLICK, ADD_TO_CART, PURCHASE = "impression", "click", "add_to_cart", "purchase"
FEEDBACK_EVENT_TYPES = (IMPRESSION, CLICK, ADD_TO_CART, PURCHASE)
FEEDBACK_REQUIRED = ("event_type", "user_id", "item_id", "model_version")
# The idempotency key: a client-chosen id (the id rule) for one event, sent again unchanged with
# every retry of it. The log may then hold the event twice (a retry after a timeout or a worker
# killed before it answered); every reader counts an event_id once, the first line that has it.
FEEDBACK_KEY = "event_id"
FEEDBACK_OPTIONAL = ("request_id", "timestamp", FEEDBACK_KEY)
FEEDBACK_LOGGED = (*FEEDBACK_REQUIRED, "timestamp")  # every logged line has these
# Rates per impression of the online-quality check.
FEEDBACK_RATES = {"ctr": CLICK, "add_to_cart_rate": ADD_TO_CART, "purchase_rate": PURCHASE}

# --- Ids: users, items, model versions, request ids ------------------------------------------

MAX_ID_LENGTH = 128
# Control characters (C0, DEL, C1) and lone surrogates are never part of an id: they break CSV
# exports, logs and URLs. The same rule for the data contract and the API.
ID_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
UNKNOWN_CATEGORY = "unknown"  # an item without a catalogue entry


def id_problem(value: str) -> str | None:
    """Why `value` cannot be an id, or None when it can."""
    if not 1 <= len(value) <= MAX_ID_LENGTH:
        return f"must be 1 to {MAX_ID_LENGTH} characters long"
    if ID_FORBIDDEN.search(value):
        return "contains control characters"
    return None


# --- The drift job's summary: written by monitoring, read by the API -------------------------

DRIFT = "drift"
NO_DRIFT = "no_drift"
DRIFT_CHECKS = ("data_drift", "prediction_drift")
# Every summary has these top-level keys.
DRIFT_SUMMARY_KEYS = (
    "generated_at",
    "verdict",
    "reference",
    "current",
    *DRIFT_CHECKS,
    "online_quality",
)


@dataclass(frozen=True)
class DriftGauges:
    """What `/metrics` exports of the last summary."""

    drifted: bool
    drifted_share: dict[str, float]  # by check
    quality_drop: bool
    generated_at: float  # Unix time


def write_drift_summary(path: Path, summary: Mapping[str, Any]) -> None:
    """Write the summary atomically: the API may read it at any moment."""
    missing = [key for key in DRIFT_SUMMARY_KEYS if key not in summary]
    if missing or summary["verdict"] not in (DRIFT, NO_DRIFT):
        raise ValueError(f"not a drift summary: missing {missing} or verdict not drift/no_drift")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(summary, indent=2) + "\n")
    temporary.replace(path)


def read_drift_gauges(path: Path) -> DriftGauges | None:
    """The gauges of the summary at `path`; None when there is none or it cannot be read."""
    try:
        summary = json.loads(Path(path).read_text())
        checks = {kind: summary[kind] for kind in DRIFT_CHECKS}
        return DriftGauges(
            drifted=summary["verdict"] == DRIFT,
            drifted_share={
                kind: float(check["drifted_share"])
                for kind, check in checks.items()
                if isinstance(check, dict) and "drifted_share" in check
            },
            quality_drop=bool(summary["online_quality"].get("drop")),
            generated_at=datetime.fromisoformat(summary["generated_at"]).timestamp(),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


# --- Metrics the API exports that other deployables read ---------------------------------------

RELOAD_FAILURES_METRIC = "recommender_model_reload_failures_total"
# What `<project>-registry canary-check` compares between two deployments (routes under
# API_ROUTES_PREFIX only: /readyz answers 503 by design while no model is loaded).
REQUESTS_METRIC = "http_requests_total"  # labels route, method, status
LATENCY_METRIC = "http_request_duration_seconds"  # a histogram, label route
MODEL_INFO_METRIC = "recommender_model_info"  # label version, value 1 for the one served
EVENTS_METRIC = "recommender_events_total"  # labels event_type, model_version
API_ROUTES_PREFIX = "/v1/"

# --- Logs: one JSON object per line on stderr, for every command and the API -----------------


class JsonFormatter(logging.Formatter):
    """`ts`, `level`, `logger`, `message`, then the fields given in `extra={"fields": {...}}`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(logger_name: str | None = None, level: str | None = None) -> None:
    """JSON lines on stderr for `logger_name` (default: the root logger) at `LOG_LEVEL`, unless
    the host already set up logging (pytest, an embedding app) or it was done before."""
    logger = logging.getLogger(logger_name)
    logger.setLevel((level or setting("LOG_LEVEL")).upper())
    if logging.getLogger().handlers or any(
        isinstance(handler.formatter, JsonFormatter) for handler in logger.handlers
    ):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    if logger_name is not None:
        logger.propagate = False
