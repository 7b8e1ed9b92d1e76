"""The admin endpoints' bearer token: a constant-time check and a back-off per client address.

After `ADMIN_MAX_FAILURES` wrong tokens from one address within `ADMIN_FAILURE_WINDOW_SECONDS`,
that address gets 429 with `Retry-After` (even with the right token) until its oldest failure
leaves the window. The count lives in each worker process: with W workers an address gets at
most W x ADMIN_MAX_FAILURES guesses per window. Behind a proxy every client shares the proxy's
address, so a flood of guesses through it locks the admin endpoints for everyone there: keep
them off the public route (the proxy should not forward /v1/admin/).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from collections import deque
from collections.abc import Callable

from flask import abort, current_app, request
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import TooManyRequests, Unauthorized

# Addresses remembered at most: beyond this, the quietest are forgotten first.
MAX_TRACKED_ADDRESSES = 10_000


class FailureLimiter:
    """Wrong-token failures per client address in a sliding window."""

    def __init__(
        self,
        max_failures: int,
        window_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window = window_seconds
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, address: str) -> int:
        """Seconds until `address` may try again; 0 when it may now."""
        with self._lock:
            failures = self._recent(address)
            if failures is None or len(failures) < self.max_failures:
                return 0
            return max(1, math.ceil(failures[0] + self.window - self.clock()))

    def failed(self, address: str) -> None:
        with self._lock:
            failures = self._recent(address)
            if failures is None:
                if len(self._failures) >= MAX_TRACKED_ADDRESSES:
                    self._forget_oldest()
                failures = self._failures[address] = deque(maxlen=self.max_failures)
            failures.append(self.clock())

    def _recent(self, address: str) -> deque[float] | None:
        failures = self._failures.get(address)
        if failures is None:
            return None
        horizon = self.clock() - self.window
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        return failures

    def _forget_oldest(self) -> None:
        oldest = min(self._failures, key=lambda address: self._failures[address][-1])
        del self._failures[oldest]


def same_token(given: str, expected: str) -> bool:
    """Constant time, whatever the lengths: the digests compared always have the same size."""
    digest = hashlib.sha256
    return hmac.compare_digest(digest(given.encode()).digest(), digest(expected.encode()).digest())


def require_admin() -> None:
    """Abort unless the request carries the admin bearer token (and its address may try)."""
    token = current_app.config["ADMIN_TOKEN"]
    if not token:
        disabled = "admin endpoints are disabled: ADMIN_TOKEN is not set (nor ADMIN_TOKEN_FILE)"
        abort(403, description=disabled)
    limiter: FailureLimiter = current_app.extensions["admin_limiter"]
    address = request.remote_addr or "-"
    wait = limiter.retry_after(address)
    if wait:
        message = f"too many wrong admin tokens from this address; retry in {wait} s"
        raise TooManyRequests(message, retry_after=wait)
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized(
            "an 'Authorization: Bearer <token>' header is required",
            www_authenticate=WWWAuthenticate("Bearer", {"realm": "admin"}),
        )
    if not same_token(given.strip(), token):
        limiter.failed(address)
        abort(403, description="the bearer token is not valid")
