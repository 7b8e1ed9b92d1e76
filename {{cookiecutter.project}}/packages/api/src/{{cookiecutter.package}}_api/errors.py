"""Every error is JSON `{"error": {"status": ..., "message": ...}}`, and never a traceback."""

from __future__ import annotations

import json
import logging

from flask import Flask, request
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.wrappers import Response

from .middleware import REQUEST_ID_KEY

log = logging.getLogger(__name__)


def error_body(status: int, message: str) -> str:
    return json.dumps({"error": {"status": status, "message": message}})


def install_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        # Start from werkzeug's own response so headers such as Allow (405) and
        # WWW-Authenticate (401) survive; replace only the body.
        response = error.get_response()
        status = error.code or 500
        response.set_data(error_body(status, error.description or error.name))
        response.content_type = "application/json"
        return response

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception) -> Response:
        request_id = request.environ.get(REQUEST_ID_KEY, "-")
        log.exception(
            "unhandled error", extra={"fields": {"request_id": request_id, "status": 500}}
        )
        response = InternalServerError().get_response()
        response.set_data(error_body(500, f"internal server error (request id {request_id})"))
        response.content_type = "application/json"
        return response
