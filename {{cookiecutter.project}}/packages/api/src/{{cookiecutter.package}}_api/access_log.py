"""The access log: one JSON line per request on stderr, in the log format every command writes
(`core.shared.JsonFormatter`), batched by a thread.

Importing this module starts no thread and registers nothing: the process's batches writer is
made by the first app's middleware (`stderr_batches`).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
import time
from datetime import UTC, datetime

ACCESS_LOG = logging.getLogger(__package__ + ".access")


class AccessLog:
    """One JSON line per request on stderr, with the fields and layout `JsonFormatter` writes.

    Formatted directly rather than through `logging` (a LogRecord with its formatter and handler
    took about 50 us per request on a 2-core machine, more than finding the recommendations)
    and written in batches by a `StderrBatches`. The `<package>.access` logger's level still
    decides (the middleware asks it): `LOG_LEVEL=warning` turns it off.
    """

    def __init__(self, batches: StderrBatches | None = None) -> None:
        self._batches = batches if batches is not None else stderr_batches()
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
        self._batches.add(
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


_json_string = json.encoder.encode_basestring_ascii  # a str as a JSON string literal, in C
# JsonFormatter's `ts`, `level`, `logger`, `message`, then the request's fields.
_ACCESS_LINE = (
    '%s.%03d+00:00", "level": "info", "logger": %s, "message": "request", '
    '"request_id": %s, "method": %s, "route": %s, "path": %s, "status": %d, '
    '"latency_ms": %.3f, "model_version": %s}\n'
)
_ACCESS_LOGGER_NAME = _json_string(ACCESS_LOG.name)


class StderrBatches:
    """Lines for stderr, written together every `interval` seconds by a thread, and at exit.

    A write per request is a system call per request; batching them gave about 6% more requests
    per second under gunicorn. The cost: a process killed with SIGKILL loses its last
    `interval` of access log (feedback events have their own durable log). Past `max_pending`
    lines (stderr blocked) the request that adds one writes them itself, so memory stays bounded.
    The thread starts with the first line.
    """

    def __init__(self, interval: float = 0.5, max_pending: int = 10_000) -> None:
        self.interval = interval
        self.max_pending = max_pending
        self._reset()
        # A forked child has no flush thread and its parent's lines are the parent's to write.
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


_shared: StderrBatches | None = None
_shared_lock = threading.Lock()


def stderr_batches() -> StderrBatches:
    """The process's one batches writer (stderr is one per process), made on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = StderrBatches()
        return _shared
