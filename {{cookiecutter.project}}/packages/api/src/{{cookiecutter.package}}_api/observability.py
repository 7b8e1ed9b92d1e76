"""Prometheus metrics, JSON logs and the per-request hooks (request id, model version, timing).

Under gunicorn with several workers the metrics go through prometheus-client's multiprocess
mode (`PROMETHEUS_MULTIPROC_DIR`, set up by the gunicorn config), so `/metrics` sums every worker.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import random
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from flask import Request, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .model_store import LoadedModel

REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
UNMATCHED = "<unmatched>"
# WSGI environ keys: the request's id (set here) and the model that answered it (set by routes).
REQUEST_ID_KEY = "recommender.request_id"
MODEL_KEY = "recommender.model"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
ACCESS_LOG = logging.getLogger(__package__ + ".access")


class Metrics:
    """The service's metrics in their own registry (one per app, so tests stay apart)."""

    def __init__(self, drift_summary: str | None = None) -> None:
        self._version: str | None = None
        # Versions this process has served: feedback for anything else is labelled "other",
        # so clients cannot grow the label set.
        self._served: set[str] = set()
        self._drift = DriftSummaryCollector(drift_summary) if drift_summary else None
        self._request_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
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

    def request_done(self, route: str, method: str, status: int, elapsed: float) -> None:
        """Count a request and observe its latency; runs for every request, so the labelled
        series are looked up once and kept."""
        method = method if method in HTTP_METHODS else "other"  # clients choose the method
        children = self._request_series.get((route, method, status))
        if children is None:
            children = (
                self.requests.labels(route=route, method=method, status=status),
                self.latency.labels(route=route),
            )
            self._request_series[(route, method, status)] = children
        counter, histogram = children
        counter.inc()
        histogram.observe(elapsed)

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


class RequestObserver:
    """WSGI middleware around the Flask app: a request id in and out, `X-Model-Version` on
    every response, the request metrics and the access log.

    Middleware rather than Flask's before/after_request hooks, which cost about a sixth of a
    bare Flask request's CPU under gunicorn (`bench-serve`); this reads everything it needs
    from the WSGI environ and the status line. The route answering sets MODEL_KEY.
    """

    def __init__(self, wsgi_app: Any, metrics: Metrics, store: Any) -> None:
        self.wsgi_app = wsgi_app
        self.metrics = metrics
        self.store = store
        self.access_log = AccessLog()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        started = time.perf_counter()
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if REQUEST_ID.match(incoming) else new_request_id()
        environ[REQUEST_ID_KEY] = request_id

        def observed_start_response(status: str, headers: list, exc_info: Any = None) -> Any:
            elapsed = time.perf_counter() - started
            model = environ.get(MODEL_KEY) or self.store.current
            version = model.version if model is not None else "none"
            headers.append(("X-Model-Version", version))
            headers.append(("X-Request-ID", request_id))
            request = environ.get("werkzeug.request")  # Flask's request, still in context
            route = _route(request)
            method, code = environ.get("REQUEST_METHOD", ""), int(status[:3])
            self.metrics.request_done(route, method, code, elapsed)
            if ACCESS_LOG.isEnabledFor(logging.INFO):
                path = request.path if request is not None else environ.get("PATH_INFO", "")
                self.access_log.write(request_id, method, route, path, code, elapsed, version)
            return start_response(status, headers, exc_info)

        return self.wsgi_app(environ, observed_start_response)


def new_request_id() -> str:
    # 128 random bits as hex, like a uuid4. `random`, not os.urandom: that is a system call per
    # request, and ids need not be secret. Python reseeds `random` in every forked worker.
    return f"{random.getrandbits(128):032x}"


class AccessLog:
    """One JSON line per request on stderr, with the same fields as `JsonFormatter` writes.

    Formatted directly rather than through `logging` (a LogRecord with its formatter and handler
    took about 50 us per request on a 2-core machine, more than finding the recommendations)
    and written in batches by `STDERR_BATCHES`. The `<package>.access` logger's level still
    decides: `LOG_LEVEL=warning` turns it off.
    """

    def __init__(self) -> None:
        self._stamp = (-1, "")  # a second and its line prefix, swapped as one reference

    def write(
        self,
        request_id: str,
        method: str,
        route: str,
        path: str,
        status: int,
        elapsed: float,
        version: str,
    ) -> None:
        now = time.time()
        second = int(now)
        stamp_second, prefix = self._stamp
        if second != stamp_second:  # the date and time to the second change once a second
            prefix = '{"ts": "' + datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._stamp = (second, prefix)
        STDERR_BATCHES.add(
            _ACCESS_LINE  # %-format: a JSON template has no braces to escape
            % (
                prefix,
                int((now - second) * 1000),
                _ACCESS_LOGGER_NAME,
                _json_string(request_id),
                _json_string(method),
                _json_string(route),
                _json_string(path),
                status,
                elapsed * 1000,
                _json_string(version),
            )
        )


class StderrBatches:
    """Lines for stderr, written together every `interval` seconds by a thread, and at exit.

    A write per request is a system call per request; batching them gave about 6% more requests
    per second under gunicorn. The cost: a process killed with SIGKILL loses its last
    `interval` of access log (feedback events have their own durable log). Past `max_pending`
    lines (stderr blocked) the request that adds one writes them itself, so memory stays bounded.
    """

    def __init__(self, interval: float = 0.5, max_pending: int = 10_000) -> None:
        self.interval = interval
        self.max_pending = max_pending
        self._reset()
        # A forked child (a gunicorn worker) has no flush thread and its parent's lines are the
        # parent's to write.
        os.register_at_fork(after_in_child=self._reset)
        atexit.register(self.flush)

    def _reset(self) -> None:
        self._lines: list[str] = []
        self._lock = threading.Lock()  # guards _lines
        self._write_lock = threading.Lock()  # keeps batches in order
        self._flusher: threading.Thread | None = None

    def add(self, line: str) -> None:
        with self._lock:
            self._lines.append(line)
            pending = len(self._lines)
        if self._flusher is None:
            self._start_flusher()
        if pending >= self.max_pending:
            self.flush()

    def flush(self) -> None:
        with self._write_lock:
            with self._lock:
                lines, self._lines = self._lines, []
            if lines:
                sys.stderr.write("".join(lines))
                sys.stderr.flush()

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher is not None:
                return
            self._flusher = threading.Thread(target=self._flush_forever, name="stderr-batches")
            self._flusher.daemon = True
            self._flusher.start()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self.interval)
            self.flush()


STDERR_BATCHES = StderrBatches()


_json_string = json.encoder.encode_basestring_ascii  # a str as a JSON string literal, in C
_ACCESS_LINE = (
    '%s.%03d+00:00", "level": "info", "logger": %s, "message": "request", '
    '"request_id": %s, "method": %s, "route": %s, "path": %s, "status": %d, '
    '"latency_ms": %.3f, "model_version": %s}\n'
)
_ACCESS_LOGGER_NAME = _json_string(ACCESS_LOG.name)


def _route(current: Request | None) -> str:
    # The rule, not the path, so metric labels stay few whatever ids clients send.
    rule = current.url_rule if current is not None else None
    return rule.rule if rule is not None else UNMATCHED
