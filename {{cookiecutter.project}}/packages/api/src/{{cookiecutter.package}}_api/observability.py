"""Prometheus metrics, JSON logs and the per-request hooks (request id, model version, timing).

Under gunicorn with several workers the metrics go through prometheus-client's multiprocess
mode (`PROMETHEUS_MULTIPROC_DIR`, set up by the gunicorn config), so `/metrics` sums every worker.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Request, Response, g, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .model_store import LoadedModel

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
UNMATCHED = "<unmatched>"
ACCESS_LOG = logging.getLogger(__package__ + ".access")


class Metrics:
    """The service's metrics in their own registry (one per app, so tests stay apart)."""

    def __init__(self, drift_summary: str | None = None) -> None:
        self._version: str | None = None
        # Versions this process has served: feedback for anything else is labelled "other",
        # so clients cannot grow the label set.
        self._served: set[str] = set()
        self._drift = DriftSummaryCollector(drift_summary) if drift_summary else None
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Request latency by route.",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.model_info = Gauge(
            "recommender_model_info",
            "The model version this process serves (value 1).",
            ["version"],
            registry=self.registry,
            multiprocess_mode="liveall",
        )
        self.loaded = Gauge(
            "recommender_model_loaded",
            "1 when a validated model is loaded.",
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self.fallbacks = Counter(
            "recommender_fallbacks_total",
            "Answers that fell back to popularity (unknown user or no usable session).",
            ["route"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "recommender_model_reloads_total",
            "Models loaded and swapped in.",
            registry=self.registry,
        )
        self.events = Counter(
            "recommender_events_total",
            "Feedback events accepted and written to the events log, by the version they rate.",
            ["event_type", "model_version"],
            registry=self.registry,
        )
        self.rejected_events = Counter(
            "recommender_events_rejected_total",
            "Feedback events refused: invalid (400, 413, 415) or the log unavailable (503).",
            ["reason"],
            registry=self.registry,
        )
        self.reload_failures = Counter(
            "recommender_model_reload_failures_total",
            "Model loads refused or failed; the previous model kept serving.",
            registry=self.registry,
        )
        if self._drift is not None:
            self.registry.register(self._drift)

    # The model store's listener interface.
    def model_loaded(self, model: LoadedModel) -> None:
        previous, self._version = self._version, model.version
        if previous is not None and previous != model.version:
            # Multiprocess files keep a removed series: mark it 0 there instead.
            if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                self.model_info.labels(version=previous).set(0)
            else:
                self.model_info.remove(previous)
        self._served.add(model.version)
        self.model_info.labels(version=model.version).set(1)
        self.loaded.set(1)
        self.reloads.inc()

    def model_load_failed(self, error: Exception) -> None:
        self.reload_failures.inc()

    def event_accepted(self, event_type: str, model_version: str) -> None:
        version = model_version if model_version in self._served else "other"
        self.events.labels(event_type=event_type, model_version=version).inc()

    def events_rejected(self, count: int, reason: str) -> None:
        self.rejected_events.labels(reason=reason).inc(count)

    def fallback(self) -> None:
        self.fallbacks.labels(route=_route(request)).inc()

    def exposition_registry(self) -> CollectorRegistry:
        """What `/metrics` renders: this process, or every worker in multiprocess mode."""
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            return self.registry
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        if self._drift is not None:
            registry.register(self._drift)
        return registry


class DriftSummaryCollector(Collector):
    """The last drift job's verdict, read from its JSON summary when Prometheus scrapes.

    The drift job runs elsewhere (a CronJob, a timer, CI) and writes the summary; the API only
    reads a small JSON file, so evidently never loads into the serving process. No file (or an
    unreadable one): no drift series, and the staleness alert fires instead.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with open(self.path) as handle:
                summary = json.load(handle)
            generated = datetime.fromisoformat(summary["generated_at"]).timestamp()
            checks = {kind: summary[kind] for kind in ("data_drift", "prediction_drift")}
            quality_drop = bool(summary["online_quality"].get("drop"))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return
        yield GaugeMetricFamily(
            "recommender_drift_detected",
            "1 when the last drift job flagged drift (data or prediction).",
            value=float(summary.get("verdict") == "drift"),
        )
        share = GaugeMetricFamily(
            "recommender_drift_share",
            "Share of monitored features that drifted in the last drift job, by check.",
            labels=["check"],
        )
        for kind, check in checks.items():
            if isinstance(check, dict) and "drifted_share" in check:
                share.add_metric([kind], float(check["drifted_share"]))
        yield share
        yield GaugeMetricFamily(
            "recommender_online_quality_drop",
            "1 when the champion's click-through fell below the rollback threshold.",
            value=float(quality_drop),
        )
        yield GaugeMetricFamily(
            "recommender_drift_report_timestamp_seconds",
            "When the last drift summary was written (Unix time).",
            value=generated,
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per line; structured fields come in `extra={"fields": {...}}`."""

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


def configure_logging(level: str) -> None:
    """JSON lines on stderr for the package's loggers, unless the host already set up logging."""
    logger = logging.getLogger(__package__)
    logger.setLevel(level.upper())
    if logging.getLogger().handlers or any(
        isinstance(h.formatter, JsonFormatter) for h in logger.handlers
    ):
        return  # pytest, or an app that configures logging itself, or already done
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    logger.propagate = False


def install_request_hooks(app: Flask, metrics: Metrics) -> None:
    """Request id in and out, `X-Model-Version` on every response, metrics and an access log."""

    store = app.extensions["model_store"]

    @app.before_request
    def start_request() -> None:
        g.started = time.perf_counter()
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex

    @app.after_request
    def finish_request(response: Response) -> Response:
        # The hot path of every request: the proxies `g` and `request` are resolved once.
        state, current = g._get_current_object(), request._get_current_object()
        elapsed = time.perf_counter() - getattr(state, "started", time.perf_counter())
        model = getattr(state, "model", None) or store.current
        version = model.version if model is not None else "none"
        request_id = getattr(state, "request_id", None) or uuid.uuid4().hex
        headers = response.headers
        headers["X-Model-Version"] = version
        headers["X-Request-ID"] = request_id
        route = _route(current)
        status = response.status_code
        metrics.requests.labels(route=route, method=current.method, status=status).inc()
        metrics.latency.labels(route=route).observe(elapsed)
        if ACCESS_LOG.isEnabledFor(logging.INFO):
            fields = {
                "request_id": request_id,
                "method": current.method,
                "route": route,
                "path": current.path,
                "status": status,
                "latency_ms": round(elapsed * 1000, 3),
                "model_version": version,
            }
            ACCESS_LOG.info("request", extra={"fields": fields})
        return response


def _route(current: Request) -> str:
    # The rule, not the path, so metric labels stay few whatever ids clients send.
    rule = current.url_rule
    return rule.rule if rule is not None else UNMATCHED
