"""The WSGI middleware around the Flask app (request id, `X-Model-Version`, request metrics,
access log) and the WSGI environ keys through which the app's modules hand it what it reports.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Iterable
from typing import Any

from {{ cookiecutter.package }}_core.shared import MAX_ID_LENGTH

from .access_log import ACCESS_LOG, AccessLog
from .metrics import Metrics, route_label

# An incoming X-Request-ID is echoed only if it is this safe to put in headers and logs.
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1," + str(MAX_ID_LENGTH) + "}$")
# WSGI environ keys: the request's id (set here) and the model that answered it (set by routes).
REQUEST_ID_KEY = "recommender.request_id"
MODEL_KEY = "recommender.model"


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
            route = route_label(request)
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
