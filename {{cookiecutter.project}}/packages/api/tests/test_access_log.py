"""The access log: one JSON line per request on stderr, written in batches."""

import json
import logging
import subprocess
import sys
import time
from datetime import datetime

import {{ cookiecutter.package }}_api as api_package
from {{ cookiecutter.package }}_api import create_app
from {{ cookiecutter.package }}_api.access_log import (
    ACCESS_LOG,
    AccessLog,
    StderrBatches,
    stderr_batches,
)
from {{ cookiecutter.package }}_core.shared import JsonFormatter


def access_lines(capsys) -> list[dict]:
    """The access log's JSON lines on stderr (anything else there fails the test)."""
    stderr_batches().flush()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    return [line for line in lines if line["logger"].endswith(".access")]


def test_each_request_is_logged_as_one_json_line(client, capsys):
    access_lines(capsys)
    client.get("/v1/users/u1/recommendations?k=3", headers={"X-Request-ID": "log-me"})
    (line,) = access_lines(capsys)
    assert line.pop("latency_ms") > 0
    assert datetime.fromisoformat(line.pop("ts")).tzinfo is not None
    assert line.pop("model_version").startswith("local-")
    assert line == {
        "level": "info",
        "logger": ACCESS_LOG.name,
        "message": "request",
        "request_id": "log-me",
        "method": "GET",
        "route": "/v1/users/<user_id>/recommendations",
        "path": "/v1/users/u1/recommendations",
        "status": 200,
    }


def test_the_access_log_stays_valid_json_whatever_the_path(client, capsys):
    access_lines(capsys)
    client.get('/v1/users/a"b\\c\u00e9\u2028/recommendations')
    client.get("/nowhere/%0A%22")
    paths = [(line["path"], line["route"], line["status"]) for line in access_lines(capsys)]
    route = "/v1/users/<user_id>/recommendations"
    assert paths == [
        ('/v1/users/a"b\\c\u00e9\u2028/recommendations', route, 200),
        ('/nowhere/\n"', "<unmatched>", 404),
    ]


def test_log_level_warning_turns_the_access_log_off(artifact_dir, events_log, capsys):
    app = create_app(
        {"MODEL_URI": str(artifact_dir), "MODEL_REFRESH_SECONDS": 0, "LOG_LEVEL": "WARNING"}
    )
    access_lines(capsys)
    assert app.test_client().get("/healthz").status_code == 200
    assert access_lines(capsys) == []
    create_app({"MODEL_URI": str(artifact_dir), "MODEL_REFRESH_SECONDS": 0})  # back to INFO


def test_batches_are_written_by_the_flush_thread(capsys):
    batches = StderrBatches(interval=0.05)
    batches.add("first\n")
    batches.add("second\n")
    deadline = time.monotonic() + 5
    written = ""
    while "second" not in written and time.monotonic() < deadline:
        time.sleep(0.05)
        written += capsys.readouterr().err
    assert written == "first\nsecond\n"


def test_a_blocked_flush_thread_does_not_let_lines_pile_up(capsys):
    batches = StderrBatches(interval=3600, max_pending=3)
    batches.add("a\n")
    batches.add("b\n")
    assert capsys.readouterr().err == ""
    batches.add("c\n")  # the third line: the request writes the batch itself
    assert capsys.readouterr().err == "a\nb\nc\n"


def test_pending_lines_are_written_when_the_process_exits():
    code = (
        f"from {StderrBatches.__module__} import StderrBatches\n"
        "StderrBatches(interval=3600).add('last words\\n')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stderr == "last words\n"


class Collected(list):
    """A stand-in for StderrBatches that keeps the lines."""

    add = list.append


def test_an_access_line_is_what_the_shared_json_formatter_writes():
    """Same keys in the same order, same layout: log readers need not tell the two apart."""
    lines = Collected()
    AccessLog(lines).write("r-1", "GET", "/v1/model", "/v1/model", 200, 0.001125, "7")
    (line,) = lines
    logged = json.loads(line)
    record = logging.LogRecord(ACCESS_LOG.name, logging.INFO, __file__, 1, "request", None, None)
    record.created = datetime.fromisoformat(logged["ts"]).timestamp()
    record.fields = dict(list(logged.items())[4:])  # after ts, level, logger and message
    assert line == JsonFormatter().format(record) + "\n"


def test_importing_the_app_starts_no_thread_and_registers_nothing():
    code = (
        "import atexit, logging, threading\n"  # logging registers its own shutdown
        "before = atexit._ncallbacks()\n"
        f"import {api_package.__name__}.app\n"
        f"from {api_package.__name__} import access_log\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "assert atexit._ncallbacks() == before, 'an atexit function was registered'\n"
        "assert access_log._shared is None, 'the batches writer was made at import'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
