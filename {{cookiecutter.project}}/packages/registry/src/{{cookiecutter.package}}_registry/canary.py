"""`canary-check`: compare a canary deployment of the API with the stable one from their /metrics.

Three criteria, each pass, fail or hold (too little traffic to tell):

- 5xx ratio of the API routes (`/v1/...`; /readyz answers 503 by design without a model): the
  canary fails when its ratio exceeds the stable one by more than `max_5xx_increase`;
- p99 latency of the API routes, from the histogram buckets as Prometheus' histogram_quantile
  computes it: the canary fails above `max_p99_ratio` x the stable p99 plus `p99_slack_ms`;
- click-through rate (clicks / impressions of the version each deployment serves, from the
  feedback events it accepted): the canary fails below `min_ctr_ratio` x the stable CTR.

A criterion holds until both sides have `min_requests` requests (`min_impressions` impressions
for CTR). Verdict: any fail is "roll back", else any hold is "hold", else "promote". The
counters are totals since each process started; `interval` > 0 scrapes twice and compares what
happened between the scrapes instead (the same window for both sides). Several URLs for a side
(one per pod: a Service URL reaches one pod per request) are summed.
"""

from __future__ import annotations

import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from {{ cookiecutter.package }}_core.cli import BadInput
from {{ cookiecutter.package }}_core.shared import (
    API_ROUTES_PREFIX,
    CLICK,
    EVENTS_METRIC,
    IMPRESSION,
    LATENCY_METRIC,
    MODEL_INFO_METRIC,
    REQUESTS_METRIC,
)

PROMOTE, HOLD, ROLL_BACK = "promote", "hold", "roll back"
PASS, FAIL = "pass", "fail"


@dataclass(frozen=True)
class Thresholds:
    min_requests: int = 200
    min_impressions: int = 500
    max_5xx_increase: float = 0.01  # absolute: 0.01 = one percentage point
    max_p99_ratio: float = 1.25
    p99_slack_ms: float = 5.0
    min_ctr_ratio: float = 0.9


@dataclass
class Snapshot:
    """What one deployment's /metrics say (summed over its URLs)."""

    versions: set[str] = field(default_factory=set)
    requests: float = 0.0
    errors: float = 0.0  # 5xx
    buckets: dict[float, float] = field(default_factory=lambda: defaultdict(float))
    events: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))

    def __add__(self, other: Snapshot) -> Snapshot:
        return self._combine(other, 1)

    def __sub__(self, other: Snapshot) -> Snapshot:
        return self._combine(other, -1)

    def _combine(self, other: Snapshot, sign: int) -> Snapshot:
        out = Snapshot(self.versions | other.versions)
        out.requests = self.requests + sign * other.requests
        out.errors = self.errors + sign * other.errors
        _combine_counts(self.buckets, other.buckets, out.buckets, sign)
        _combine_counts(self.events, other.events, out.events, sign)
        return out

    @property
    def version(self) -> str:
        return "+".join(sorted(self.versions))

    def count(self, event_type: str) -> float:
        """Events of `event_type` for the version(s) this deployment serves."""
        return sum(self.events.get((event_type, version), 0.0) for version in self.versions)

    def p99(self) -> float | None:
        return histogram_quantile(0.99, self.buckets)


# Any key: buckets are keyed by bound (float), events by (event type, version). A TypeVar would
# be exact, but ruff wants `def f[K]` syntax on Python 3.12+ and 3.11 has none.
def _combine_counts(
    mine: dict[Any, float], theirs: dict[Any, float], into: dict[Any, float], sign: int
) -> None:
    """`into[key] = mine[key] + sign * theirs[key]` for every key of either (missing: 0)."""
    for key in mine.keys() | theirs.keys():
        into[key] = mine.get(key, 0.0) + sign * theirs.get(key, 0.0)


# --- The Prometheus text format -----------------------------------------------------------------

_SAMPLE = re.compile(
    r"(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+-?\d+)?\s*"
)
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse_metrics(text: str, source: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample; BadInput if `text` is not Prometheus text."""
    samples = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _SAMPLE.fullmatch(line)
        try:
            if match is None:
                raise ValueError(line)
            labels = _labels(match.group("labels") or "")
            value = float(match.group("value"))
        except ValueError:
            shown = line if len(line) <= 80 else line[:77] + "..."
            raise BadInput(
                f"{source} is not Prometheus metrics text (line {number}: {shown!r})"
            ) from None
        samples.append((match.group("name"), labels, value))
    if not samples:
        raise BadInput(f"{source} holds no metrics")
    return samples


def _labels(text: str) -> dict[str, str]:
    labels, position = {}, 0
    while position < len(text.rstrip()):
        match = _LABEL.match(text, position)
        if match is None:
            raise ValueError(text)
        value = re.sub(r"\\[\\\"n]", lambda m: _UNESCAPE[m.group(0)], match.group(2))
        labels[match.group(1)] = value
        position = match.end()
    return labels


def snapshot(samples: Iterable[tuple[str, dict[str, str], float]], source: str) -> Snapshot:
    """The numbers canary-check compares, from one /metrics page."""
    out = Snapshot()
    found: set[str] = set()
    for name, labels, value in samples:
        route = labels.get("route", "")
        if name == MODEL_INFO_METRIC:
            found.add(name)
            if value == 1:  # a version served before a reload stays at 0 in multiprocess mode
                out.versions.add(labels.get("version", "?"))
        elif name == REQUESTS_METRIC:
            found.add(name)
            if route.startswith(API_ROUTES_PREFIX):
                out.requests += value
                out.errors += value if labels.get("status", "").startswith("5") else 0.0
        elif name == f"{LATENCY_METRIC}_bucket" and route.startswith(API_ROUTES_PREFIX):
            out.buckets[float(labels["le"])] += value  # "+Inf" parses as inf
        elif name == EVENTS_METRIC:
            out.events[(labels.get("event_type", ""), labels.get("model_version", ""))] += value
    missing = {MODEL_INFO_METRIC, REQUESTS_METRIC} - found
    if missing:
        raise BadInput(
            f"{source} has no {' or '.join(sorted(missing))}: not the recommendation API's "
            "/metrics (or it has served no request yet)"
        )
    if not out.versions:
        raise BadInput(f"{source}: the API serves no model (no {MODEL_INFO_METRIC} of 1)")
    return out


def scrape(url: str, timeout: float = 10) -> Snapshot:
    """GET `<url>/metrics` (or `url` itself when it ends in /metrics) as a Snapshot."""
    target = url if url.rstrip("/").endswith("/metrics") else url.rstrip("/") + "/metrics"
    # Only http(s): urlopen would also read file:// and other schemes (bandit B310).
    if urllib.parse.urlsplit(target).scheme not in ("http", "https"):
        raise BadInput(f"{url!r} is not an http:// or https:// URL of the API")
    try:
        with urllib.request.urlopen(target, timeout=timeout) as response:  # nosec B310
            body = response.read(32 * 1024 * 1024)
    except urllib.error.HTTPError as error:
        raise BadInput(f"{target} answered {error.code}") from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise BadInput(f"cannot reach {target}: {getattr(error, 'reason', error)}") from None
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise BadInput(f"{target} is not Prometheus metrics text (not UTF-8)") from None
    return snapshot(parse_metrics(text, target), target)


def scrape_all(urls: list[str], timeout: float) -> Snapshot:
    total = Snapshot()
    for url in urls:
        total = total + scrape(url, timeout)
    return total


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """As PromQL's histogram_quantile: linear within the bucket that holds the q-th observation;
    in the +Inf bucket, the highest finite bound. None without observations."""
    bounds = sorted(buckets)
    if not bounds or not math.isinf(bounds[-1]) or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            share = (rank - lower_count) / (count - lower_count)
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound


# --- The comparison -------------------------------------------------------------------------------


def compare(stable: Snapshot, canary: Snapshot, limits: Thresholds) -> dict[str, Any]:
    if len(stable.versions) > 1 or len(canary.versions) > 1:
        mixed = [f"{n} serves {s.version}" for n, s in (("stable", stable), ("canary", canary))]
        criteria = [_criterion("versions", HOLD, f"{'; '.join(mixed)}: a rollout in progress?")]
    elif stable.versions == canary.versions:
        reason = f"both serve v{stable.version}: nothing to compare"
        criteria = [_criterion("versions", HOLD, reason)]
    elif stable.requests < 0 or canary.requests < 0:
        criteria = [_criterion("counters", HOLD, "counters went down: a pod restarted; rerun")]
    else:
        criteria = [
            _errors(stable, canary, limits),
            _latency(stable, canary, limits),
            _ctr(stable, canary, limits),
        ]
    statuses = {criterion["status"] for criterion in criteria}
    verdict = ROLL_BACK if FAIL in statuses else HOLD if HOLD in statuses else PROMOTE
    return {
        "verdict": verdict,
        "stable": {"version": stable.version, "requests": stable.requests},
        "canary": {"version": canary.version, "requests": canary.requests},
        "criteria": criteria,
        "thresholds": vars(limits),
    }


def _criterion(name: str, status: str, reason: str, **values: Any) -> dict[str, Any]:
    return {"name": name, "status": status, "reason": reason, **values}


def _too_little(what: str, stable: float, canary: float, minimum: int) -> str | None:
    sides = (("stable", stable), ("canary", canary))
    short = [f"{side} has {value:,.0f}" for side, value in sides if value < minimum]
    return f"{' and '.join(short)} {what} (< {minimum:,})" if short else None


def _errors(stable: Snapshot, canary: Snapshot, limits: Thresholds) -> dict[str, Any]:
    name = "5xx ratio"
    low = _too_little("requests", stable.requests, canary.requests, limits.min_requests)
    if low:
        return _criterion(name, HOLD, low)
    ratios = {side: s.errors / s.requests for side, s in (("stable", stable), ("canary", canary))}
    ceiling = ratios["stable"] + limits.max_5xx_increase
    failed = ratios["canary"] > ceiling
    reason = (
        f"canary {ratios['canary']:.2%} ({canary.errors:,.0f} of {canary.requests:,.0f}) vs "
        f"stable {ratios['stable']:.2%} ({stable.errors:,.0f} of {stable.requests:,.0f}): "
        f"{'above' if failed else 'within'} stable + {limits.max_5xx_increase:.2%}"
    )
    return _criterion(name, FAIL if failed else PASS, reason, **ratios)


def _latency(stable: Snapshot, canary: Snapshot, limits: Thresholds) -> dict[str, Any]:
    name = "p99 latency"
    counts = stable.buckets.get(math.inf, 0.0), canary.buckets.get(math.inf, 0.0)
    low = _too_little("timed requests", *counts, limits.min_requests)
    if low:
        return _criterion(name, HOLD, low)
    p99 = {"stable": stable.p99(), "canary": canary.p99()}
    assert p99["stable"] is not None and p99["canary"] is not None
    ceiling = p99["stable"] * limits.max_p99_ratio + limits.p99_slack_ms / 1000
    failed = p99["canary"] > ceiling
    reason = (
        f"canary {p99['canary'] * 1000:.1f} ms vs stable {p99['stable'] * 1000:.1f} ms: "
        f"{'above' if failed else 'within'} {limits.max_p99_ratio}x stable + "
        f"{limits.p99_slack_ms:g} ms ({ceiling * 1000:.1f} ms)"
    )
    return _criterion(name, FAIL if failed else PASS, reason, **p99)


def _ctr(stable: Snapshot, canary: Snapshot, limits: Thresholds) -> dict[str, Any]:
    name = "click-through"
    shown = {"stable": stable.count(IMPRESSION), "canary": canary.count(IMPRESSION)}
    low = _too_little("impressions", shown["stable"], shown["canary"], limits.min_impressions)
    if low:
        return _criterion(name, HOLD, low)
    clicks = {"stable": stable.count(CLICK), "canary": canary.count(CLICK)}
    ctr = {side: clicks[side] / shown[side] for side in shown}
    if ctr["stable"] == 0:
        return _criterion(name, HOLD, "stable has no clicks to compare with", **ctr)
    ratio = ctr["canary"] / ctr["stable"]
    failed = ratio < limits.min_ctr_ratio
    reason = (
        f"canary {ctr['canary']:.4f} ({clicks['canary']:,.0f} clicks of {shown['canary']:,.0f}) "
        f"vs stable {ctr['stable']:.4f}: {ratio:.2f}x, "
        f"{'below' if failed else 'within'} the {limits.min_ctr_ratio}x floor"
    )
    return _criterion(name, FAIL if failed else PASS, reason, ratio=round(ratio, 4), **ctr)


def check(
    stable_urls: list[str],
    canary_urls: list[str],
    limits: Thresholds,
    interval: float = 0,
    timeout: float = 10,
) -> dict[str, Any]:
    """Scrape both sides (twice, `interval` seconds apart, when `interval` > 0) and compare."""
    stable, canary = scrape_all(stable_urls, timeout), scrape_all(canary_urls, timeout)
    if interval > 0:
        time.sleep(interval)
        stable = scrape_all(stable_urls, timeout) - stable
        canary = scrape_all(canary_urls, timeout) - canary
    result = compare(stable, canary, limits)
    result["stable"]["urls"], result["canary"]["urls"] = stable_urls, canary_urls
    result["window"] = f"the last {interval:g} s" if interval > 0 else "since each process started"
    return result


def render(result: dict[str, Any]) -> str:
    stable, canary = result["stable"], result["canary"]
    lines = [
        f"canary-check: {result['verdict'].upper()} (canary v{canary['version']} vs stable "
        f"v{stable['version']}, {result['window']})"
    ]
    width = max(len(criterion["name"]) for criterion in result["criteria"])
    for criterion in result["criteria"]:
        status = criterion["status"]
        lines.append(f"  {criterion['name']:<{width}}  {status:<4}  {criterion['reason']}")
    return "\n".join(lines)
