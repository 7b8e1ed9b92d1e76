"""`<project>-registry canary-check`: a canary deployment against the stable one, from their
/metrics. Edge cases against canned /metrics pages on a local http.server; promote and roll back
against two real API servers (gunicorn, as deployed) fed requests and feedback events."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from {{ cookiecutter.package }}_core.artifact import ServingArtifact
from {{ cookiecutter.package }}_core.shared import ExitCode
from {{ cookiecutter.package }}_registry.canary import histogram_quantile, parse_metrics
from {{ cookiecutter.package }}_registry.cli import main

ROUTE = "/v1/users/<user_id>/recommendations"
BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def sample(name: str, value: float, **labels: str) -> str:
    """One line of the Prometheus text format."""
    shown = ",".join(f'{key}="{text}"' for key, text in labels.items())
    return f"{name}{'{' + shown + '}' if labels else ''} {float(value)}"


def page(
    version: str = "1",
    ok: int = 1000,
    errors: int = 0,
    latency: float = 0.004,
    impressions: int = 2000,
    clicks: int = 200,
) -> str:
    """A /metrics page as the API writes it: `ok` 200s and `errors` 500s on one route, every
    request taking `latency` s, feedback for `version`, plus probes that must not count."""
    requests = ok + errors
    lines = [
        "# HELP http_requests_total HTTP requests by route, method and status.",
        "# TYPE http_requests_total counter",
        sample("http_requests_total", ok, method="GET", route=ROUTE, status="200"),
        sample("http_requests_total", errors, method="GET", route=ROUTE, status="500"),
        sample("http_requests_total", 5000, method="GET", route="/readyz", status="503"),
        "# TYPE http_request_duration_seconds histogram",
    ]
    for bound in (*BOUNDS, math.inf):
        le = "+Inf" if math.isinf(bound) else str(bound)
        count = requests if latency <= bound else 0
        lines.append(sample("http_request_duration_seconds_bucket", count, le=le, route=ROUTE))
        slow = 5000 if bound >= 2.5 else 0  # slow probes: not API routes, never counted
        lines.append(sample("http_request_duration_seconds_bucket", slow, le=le, route="/healthz"))
    events = "recommender_events_total"
    lines += [
        sample("http_request_duration_seconds_count", requests, route=ROUTE),
        sample("recommender_model_info", 1, version=version),
        sample("recommender_model_info", 0, version="0"),  # served before a reload
        sample(events, impressions, event_type="impression", model_version=version),
        sample(events, clicks, event_type="click", model_version=version),
        sample(events, 999, event_type="click", model_version="other"),
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def pages():
    """A local HTTP server answering `pages[path]` (a /metrics text, or (status, body))."""
    served: dict[str, object] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            answer = served.get(self.path, (404, "not found"))
            status, body = answer if isinstance(answer, tuple) else (200, answer)
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    served["base"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield served
    server.shutdown()
    server.server_close()


def canary_check(pages, stable, canary, *extra: str) -> int:
    pages["/stable/metrics"], pages["/canary/metrics"] = stable, canary
    base = pages["base"]
    argv = ["--stable", f"{base}/stable", "--canary", f"{base}/canary", *extra]
    return main(["canary-check", *argv])


def verdict(capsys) -> tuple[str, dict[str, str]]:
    out = capsys.readouterr().out
    first, *rest = out.splitlines()
    rows = [re.match(r"  (.+?) +(pass|fail|hold)  ", line) for line in rest]
    return first, {row.group(1): row.group(2) for row in rows if row}


def test_the_prometheus_text_is_parsed_with_its_escapes():
    text = 'a_total{x="a\\"b,c}",y="\\\\n"} 3.5 1700000000\n# comment\nb 1e3\nc{} +Inf\n'
    assert parse_metrics(text, "t") == [
        ("a_total", {"x": 'a"b,c}', "y": "\\n"}, 3.5),
        ("b", {}, 1000.0),
        ("c", {}, math.inf),
    ]


def test_p99_is_interpolated_within_its_bucket_as_prometheus_does():
    buckets = {0.01: 50.0, 0.1: 90.0, 1.0: 100.0, math.inf: 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.01)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.1 + 0.9 * 0.9)
    assert histogram_quantile(0.99, {0.1: 0.0, math.inf: 10.0}) == 0.1  # in +Inf: the last bound
    assert histogram_quantile(0.99, {0.1: 0.0, math.inf: 0.0}) is None


def test_a_canary_as_good_as_stable_is_promoted(pages, capsys):
    assert canary_check(pages, page("1"), page("2", clicks=195)) == ExitCode.OK
    first, statuses = verdict(capsys)
    assert first.startswith("canary-check: PROMOTE (canary v2 vs stable v1")
    assert statuses == {"5xx ratio": "pass", "p99 latency": "pass", "click-through": "pass"}


@pytest.mark.parametrize(
    ("canary", "failed", "says"),
    [
        (page("2", errors=30), "5xx ratio", "canary 2.91% (30 of 1,030) vs stable 0.00%"),
        (page("2", latency=0.08), "p99 latency", "above 1.25x stable + 5 ms"),
        (page("2", clicks=100), "click-through", "0.50x, below the 0.9x floor"),
    ],
    ids=["errors", "latency", "ctr"],
)
def test_a_worse_canary_is_rolled_back_with_the_reason(pages, capsys, canary, failed, says):
    assert canary_check(pages, page("1"), canary) == ExitCode.CHECK_FAILED
    out = capsys.readouterr().out
    assert out.startswith("canary-check: ROLL BACK")
    [line] = [line for line in out.splitlines() if line.strip().startswith(failed)]
    assert "fail" in line and says in line, out


def test_too_little_traffic_holds_and_strict_makes_a_hold_fail(pages, capsys):
    quiet = page("2", ok=50, impressions=100, clicks=0)
    assert canary_check(pages, page("1"), quiet) == ExitCode.OK
    first, statuses = verdict(capsys)
    assert first.startswith("canary-check: HOLD")
    assert set(statuses.values()) == {"hold"}
    assert canary_check(pages, page("1"), quiet, "--strict") == ExitCode.CHECK_FAILED
    capsys.readouterr()
    assert canary_check(pages, page("1"), quiet, "--min-requests", "10", "--min-impressions", "50")
    assert verdict(capsys)[1]["click-through"] == "fail"  # 0 clicks of 100, now counted


def test_a_failure_wins_over_a_hold_and_json_has_every_criterion(pages, capsys):
    bad = page("2", errors=500, impressions=10)
    assert canary_check(pages, page("1"), bad, "--json") == ExitCode.CHECK_FAILED
    result = json.loads(capsys.readouterr().out)
    assert result["verdict"] == "roll back"
    assert [(c["name"], c["status"]) for c in result["criteria"]] == [
        ("5xx ratio", "fail"),
        ("p99 latency", "pass"),
        ("click-through", "hold"),
    ]
    assert result["criteria"][2]["reason"] == "canary has 10 impressions (< 500)"
    assert result["thresholds"]["max_5xx_increase"] == 0.01


def test_the_same_version_on_both_sides_is_a_hold(pages, capsys):
    assert canary_check(pages, page("3"), page("3")) == ExitCode.OK
    assert "both serve v3: nothing to compare" in capsys.readouterr().out


def test_several_urls_per_side_are_summed(pages, capsys):
    base = pages["base"]
    pages["/a/metrics"], pages["/b/metrics"] = page("2", ok=150, errors=0), page("2", ok=150)
    pages["/stable/metrics"] = page("1")
    argv = ["canary-check", "--stable", f"{base}/stable", "--json"]
    assert main([*argv, "--canary", f"{base}/a", "--canary", f"{base}/b/metrics"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["canary"]["requests"] == 300 and result["verdict"] == "promote"


def test_interval_compares_the_window_between_two_scrapes(pages, capsys):
    """The canary was bad before the window (totals say roll back) and fine within it."""
    base, calls = pages["base"], []
    before, after = page("2", ok=1000, errors=100), page("2", ok=2000, errors=100)
    pages["/stable/metrics"] = page("1")

    original = urllib.request.urlopen

    def urlopen(url, *args, **kwargs):
        if url.endswith("/canary/metrics"):
            calls.append(url)
            pages["/canary/metrics"] = before if len(calls) == 1 else after
        if url.endswith("/stable/metrics") and calls:
            pages["/stable/metrics"] = page("1", ok=2000)
        return original(url, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(urllib.request, "urlopen", urlopen)
        argv = ["canary-check", "--stable", f"{base}/stable", "--canary", f"{base}/canary"]
        assert main([*argv, "--interval", "0.1", "--min-requests", "100", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["window"] == "the last 0.1 s"
    assert result["canary"]["requests"] == 1000 and result["criteria"][0]["status"] == "pass"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (None, "cannot reach http://127.0.0.1:"),
        ((404, "no such page"), "/canary/metrics answered 404"),
        ("<html><body>a login page</body></html>", "is not Prometheus metrics text (line 1"),
        ('{"status": "ok"}', "is not Prometheus metrics text"),
        ("", "holds no metrics"),
        ("# only comments\nprocess_cpu_seconds_total 3.0\n", "has no http_requests_total or"),
        (page("2").replace(" 1.0\n", " 0.0\n"), "serves no model"),
    ],
    ids=["unreachable", "404", "html", "json", "empty", "other-metrics", "no-model"],
)
def test_bad_input_is_exit_2_with_the_reason(pages, capsys, answer, says):
    if answer is None:
        argv = [
            "--stable",
            f"{pages['base']}/stable",
            "--canary",
            f"http://127.0.0.1:{free_port()}",
        ]
        pages["/stable/metrics"] = page("1")
        code = main(["canary-check", *argv])
    else:
        code = canary_check(pages, page("1"), answer)
    assert code == ExitCode.BAD_INPUT
    error = capsys.readouterr().err
    assert error.startswith("ERROR: ") and says in error, error


@pytest.mark.parametrize("flag", [("--min-requests", "0"), ("--max-p99-ratio", "x")])
def test_bad_thresholds_are_exit_2(pages, flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        canary_check(pages, page("1"), page("2"), *flag)
    assert exit_info.value.code == ExitCode.BAD_INPUT


# --- Against two real API servers ---------------------------------------------------------------


def artifact(path: Path, seed: int) -> Path:
    """A small serving artifact; another seed, other lists: another version."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 50, 30
    top = np.array([rng.permutation(n_items)[:10] for _ in range(n_users)], dtype=np.int32)
    ServingArtifact(
        user_ids=np.array([f"u{i:03d}" for i in range(n_users)]),
        item_ids=np.array([f"i{i:03d}" for i in range(n_items)]),
        item_categories=np.array(["a", "b", "c"] * (n_items // 3)),
        user_top_items=top,
        user_top_scores=-np.sort(-rng.random((n_users, 10)), axis=1).astype(np.float32),
        similar_items=np.array([[(i + j) % n_items for j in (1, 2)] for i in range(n_items)]),
        similar_scores=np.ones((n_items, 2), dtype=np.float32),
        popular_items=np.arange(n_items, dtype=np.int32),
        metadata={"model": f"canary-test-{seed}"},
    ).save(path)
    return path


@contextlib.contextmanager
def api_server(model: Path, tmp_path: Path, name: str):
    """`<project>-api serve` (gunicorn, 2 workers: /metrics sums them) on a free port."""
    port = free_port()
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "MODEL_URI": str(model)}
    env |= {"MODEL_REFRESH_SECONDS": "0", "WEB_CONCURRENCY": "2", "LOG_LEVEL": "warning"}
    env |= {"EVENTS_LOG": str(tmp_path / f"{name}.jsonl"), "DRIFT_REPORT_DIR": str(tmp_path)}
    for variable in ("PROMETHEUS_MULTIPROC_DIR", "RELOAD_SIGNAL_DIR", "ADMIN_TOKEN_FILE"):
        env.pop(variable, None)
    command = Path(sys.executable).with_name("{{ cookiecutter.project }}-api")  # the console script
    log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen([str(command), "serve"], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / f"{name}.log").read_text()
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{base}/readyz", timeout=2).status == 200:
                    break
            assert time.monotonic() < deadline, "the API did not become ready in 60 s"
            time.sleep(0.2)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def drive(base: str, requests: int, impressions: int, clicks: int, tag: str) -> str:
    """GET recommendations, then POST their feedback (event ids unique per `tag`): the version."""
    version = json.load(urllib.request.urlopen(f"{base}/v1/model"))["version"]
    for n in range(requests):
        urllib.request.urlopen(f"{base}/v1/users/u{n % 50:03d}/recommendations?k=5").read()
    events = [
        {"event_type": kind, "user_id": f"u{n % 50:03d}", "item_id": f"i{n % 30:03d}",
         "model_version": version, "event_id": f"{tag}-{kind}-{n}"}
        for kind, count in (("impression", impressions), ("click", clicks))
        for n in range(count)
    ]  # fmt: skip
    for start in range(0, len(events), 500):
        body = json.dumps({"events": events[start : start + 500]}).encode()
        request = urllib.request.Request(
            f"{base}/v1/events", body, {"Content-Type": "application/json"}
        )
        assert urllib.request.urlopen(request).status == 202
    return version


@pytest.mark.slow
def test_two_real_api_deployments_are_compared_from_their_metrics(tmp_path, capsys):
    stable_model = artifact(tmp_path / "stable-model", 1)
    canary_model = artifact(tmp_path / "canary-model", 2)
    with (
        api_server(stable_model, tmp_path, "stable") as stable,
        api_server(canary_model, tmp_path, "canary") as canary,
    ):
        versions = (
            drive(stable, 120, 600, 60, "s1"),
            drive(canary, 120, 600, 57, "c1"),
        )
        assert versions[0] != versions[1]
        # Latency on a shared test machine is noise: p99 gets a wide margin here (the canned
        # pages above test that criterion).
        argv = ["canary-check", "--stable", stable, "--canary", canary, "--min-requests", "100"]
        argv += ["--p99-slack-ms", "2000"]
        assert main(argv) == ExitCode.OK
        first, statuses = verdict(capsys)
        assert first.startswith(f"canary-check: PROMOTE (canary v{versions[1]} vs stable v")
        assert statuses == {"5xx ratio": "pass", "p99 latency": "pass", "click-through": "pass"}

        drive(canary, 0, 600, 0, "c2")  # the canary's later impressions get no clicks
        assert main([*argv, "--json"]) == ExitCode.CHECK_FAILED
        result = json.loads(capsys.readouterr().out)
        assert result["verdict"] == "roll back"
        ctr = result["criteria"][2]
        assert ctr["status"] == "fail" and ctr["canary"] == pytest.approx(57 / 1200)
        assert ctr["stable"] == pytest.approx(0.1)

    assert main(argv) == ExitCode.BAD_INPUT  # both stopped: nothing answers
    assert "cannot reach" in capsys.readouterr().err
