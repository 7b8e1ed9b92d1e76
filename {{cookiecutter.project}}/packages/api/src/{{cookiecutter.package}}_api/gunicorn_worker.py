"""gunicorn's gthread worker, reading each request whole before a thread serves it.

gunicorn 26's gthread worker gives a connection a thread as soon as its first byte arrives (it
waits 5 s for that byte, then parks the connection); from then on the thread reads headers and
body with blocking reads and no deadline, and `--timeout` never fires because the worker's main
loop keeps its heartbeat. So a client that sends its headers slowly, or declares a body longer
than it sends, holds one of the WEB_CONCURRENCY x GUNICORN_THREADS slots for as long as it
likes. This worker reads in the main loop instead (non-blocking, as nginx does): a connection
gets a thread only once its request line, headers and body are all here, and a request not
complete within GUNICORN_READ_TIMEOUT seconds of its first byte (or of the connection) is
answered 408 and closed. Slow clients then cost a file descriptor and a buffer, not a thread;
what bounds them is worker_connections (1000 per worker), which the proxy in front must keep
far away with its own per-client connection limits.

Not buffered (the thread reads them, each read bounded by what is left of the same deadline):
bodies over `max_buffered_body` (the app answers 413 from the Content-Length alone), requests
with `Expect: 100-continue` (the client waits for gunicorn's 100 before it sends the body),
and TLS connections (gunicorn's TLS is not used here: the proxy terminates it).

gunicorn's own refusals (request line, header count and size, bad framing) are answered in
JSON, `{"error": {"status": ..., "message": ...}}`, like the app's, instead of an HTML page.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import socket
import time
from functools import partial
from typing import Any

from gunicorn import util
from gunicorn.workers import gthread

from .config import Settings

# Seconds from a request's first byte (a new connection: from its accept) until all of it must
# have arrived; configurable because a client on a slow link may need more.
READ_TIMEOUT_SECONDS = float(os.environ.get("GUNICORN_READ_TIMEOUT", "10"))
# The biggest body the app accepts: buffering more would only feed a 413.
_settings = Settings.from_env()
MAX_BUFFERED_BODY = max(_settings.MAX_CONTENT_LENGTH, _settings.MAX_EVENTS_CONTENT_LENGTH)
# A header block bigger than gunicorn's limits allow is handed to its parser, which refuses it.
MAX_BUFFERED_HEAD = 64 * 1024
RECV_BYTES = 64 * 1024


def request_complete(data: bytes, max_body: int = MAX_BUFFERED_BODY) -> bool:
    """Whether `data` holds a whole request (or enough for gunicorn's parser to refuse it)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return len(data) > MAX_BUFFERED_HEAD
    headers: dict[bytes, bytes] = {}
    for line in data[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers.setdefault(name.strip().lower(), value.strip().lower())
    body = memoryview(data)[end + 4 :]
    if headers.get(b"expect") == b"100-continue":
        return True
    if b"transfer-encoding" in headers:
        return len(body) > max_body or chunked_complete(bytes(body))
    length = headers.get(b"content-length", b"0")
    if not length.isdigit():
        return True  # the parser refuses it
    return len(body) >= min(int(length), max_body + 1)


def chunked_complete(body: bytes) -> bool:
    """Whether a chunked body has arrived up to its last chunk and trailers (True as well when
    it is malformed: the parser says what is wrong)."""
    position = 0
    while True:
        line_end = body.find(b"\r\n", position)
        if line_end < 0:
            return False
        size = body[position:line_end].split(b";", 1)[0].strip()
        try:
            length = int(size, 16)
        except ValueError:
            return True
        if length == 0:
            return body.find(b"\r\n\r\n", line_end) >= 0  # the end of the trailers
        position = line_end + 2 + length + 2
        if position > len(body):
            return False


class DeadlineSocket:
    """The socket as gunicorn's parser reads it in a thread: every `recv` bounded by what is
    left until `deadline` (`TimeoutError` after it), or by a shorter timeout gunicorn set."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        self._deadline = deadline

    def recv(self, size: int) -> bytes:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive in time")
        previous = self._sock.gettimeout()
        self._sock.settimeout(remaining if previous is None else min(previous, remaining))
        try:
            return self._sock.recv(size)
        finally:
            self._sock.settimeout(previous)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's `util.write_error`, in the app's JSON error format."""
    message = f"{reason}: {mesg}" if mesg else reason
    body = json.dumps({"error": {"status": status_int, "message": message}}).encode()
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


TIMEOUT_ANSWER = b"".join(
    (
        b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n",
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n",
    )
)
TIMEOUT_BODY = json.dumps(
    {"error": {"status": 408, "message": "the request did not arrive in time"}}
).encode()


class BufferingThreadWorker(gthread.ThreadWorker):
    """gthread, with each request read whole in the main loop before a thread serves it."""

    def init_process(self) -> None:
        util.write_error = write_json_error  # gunicorn's refusals in this process answer JSON
        self.reading: dict[gthread.TConn, tuple[bytearray, float]] = {}
        super().init_process()

    def enqueue_req(self, conn: gthread.TConn) -> None:
        """A connection with something to read: serve what is buffered, or buffer it first."""
        if getattr(conn, "buffered", None) is not None or self.cfg.is_ssl:
            super().enqueue_req(conn)
            return
        conn.sock.setblocking(False)
        self.reading[conn] = (bytearray(), time.monotonic() + READ_TIMEOUT_SECONDS)
        # Mostly the whole request is already here (a keepalive connection that turned
        # readable): read it now, sparing a round through the poller.
        self.on_request_bytes(conn, conn.sock)
        if conn in self.reading:
            callback = partial(self.on_request_bytes, conn)
            self.poller.register(conn.sock, selectors.EVENT_READ, callback)

    def on_request_bytes(self, conn: gthread.TConn, client: socket.socket) -> None:
        data, deadline = self.reading[conn]
        try:
            chunk = client.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:  # the client went away
            self._stop_reading(conn)
            self.nr_conns -= 1
            conn.close()
            return
        data += chunk
        if request_complete(bytes(data)):
            self._stop_reading(conn)
            conn.buffered, conn.deadline = bytes(data), deadline
            conn.data_ready = True
            super().enqueue_req(conn)

    def _stop_reading(self, conn: gthread.TConn) -> None:
        del self.reading[conn]
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)

    def murder_pending(self) -> None:
        """Also answer 408 to requests that did not arrive in time (checked every loop, at
        least once a second)."""
        super().murder_pending()
        now = time.monotonic()
        for conn, (data, deadline) in list(self.reading.items()):
            if deadline > now:
                continue
            self._stop_reading(conn)
            self.nr_conns -= 1
            if data:
                with contextlib.suppress(OSError):
                    conn.sock.send(TIMEOUT_ANSWER % len(TIMEOUT_BODY) + TIMEOUT_BODY)
            conn.close()

    def handle(self, conn: gthread.TConn) -> Any:
        data = getattr(conn, "buffered", None)
        if data is not None:
            conn.buffered = None
            conn.sock.setblocking(True)
            conn.init()  # the parser, once per connection: no read, no TLS here
            unreader = conn.parser.unreader
            unreader.unread(unreader.take_buffered() + data)  # after what it already holds
            unreader.sock = DeadlineSocket(conn.sock, conn.deadline)
        return super().handle(conn)
