"""Prometheus metrics of the API: requests, the served model, feedback events and the drift
job's last verdict.

Under gunicorn with several workers the metrics go through prometheus-client's multiprocess
mode (`PROMETHEUS_MULTIPROC_DIR`, set up by the gunicorn config), so `/metrics` sums every worker.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flask import Request, request
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from {{ cookiecutter.package }}_core.shared import (
    EVENTS_METRIC,
    LATENCY_METRIC,
    MODEL_INFO_METRIC,
    RELOAD_FAILURES_METRIC,
    REQUESTS_METRIC,
    read_drift_gauges,
)

from .model_store import LoadedModel

UNMATCHED = "<unmatched>"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Metrics:
    """The service's metrics in their own registry (one per app, so tests stay apart)."""

    def __init__(self, drift_summary: Path | None = None) -> None:
        self._version: str | None = None
        # Versions this process has served: feedback for anything else is labelled "other",
        # so clients cannot grow the label set.
        self._served: set[str] = set()
        self._drift = DriftSummaryCollector(drift_summary) if drift_summary else None
        self._request_series: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            REQUESTS_METRIC,
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            LATENCY_METRIC,
            "Request latency by route.",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.model_info = Gauge(
            MODEL_INFO_METRIC,
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
            EVENTS_METRIC,
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
            RELOAD_FAILURES_METRIC,  # `rollback --check` reads it from /metrics
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
        self.fallbacks.labels(route=route_label(request)).inc()

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
    reads a small JSON file (`core.shared.read_drift_gauges`), so evidently never loads into the
    serving process. No file (or an unreadable one): no drift series, and the staleness alert
    fires instead.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauges = read_drift_gauges(self.path)
        if gauges is None:
            return
        yield GaugeMetricFamily(
            "recommender_drift_detected",
            "1 when the last drift job flagged drift (data or prediction).",
            value=float(gauges.drifted),
        )
        share = GaugeMetricFamily(
            "recommender_drift_share",
            "Share of monitored features that drifted in the last drift job, by check.",
            labels=["check"],
        )
        for check, drifted_share in gauges.drifted_share.items():
            share.add_metric([check], drifted_share)
        yield share
        yield GaugeMetricFamily(
            "recommender_online_quality_drop",
            "1 when the champion's click-through fell below the rollback threshold.",
            value=float(gauges.quality_drop),
        )
        yield GaugeMetricFamily(
            "recommender_drift_report_timestamp_seconds",
            "When the last drift summary was written (Unix time).",
            value=gauges.generated_at,
        )


def route_label(current: Request | None) -> str:
    """The route a request matched, as the metrics and the access log label it: the rule, not
    the path, so labels stay few whatever ids clients send."""
    rule = current.url_rule if current is not None else None
    return rule.rule if rule is not None else UNMATCHED
