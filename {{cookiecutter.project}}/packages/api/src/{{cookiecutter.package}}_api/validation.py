"""Request parsing that turns every malformed input into a 4xx naming what is wrong."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

from flask import abort, current_app, request
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    RequestEntityTooLarge,
    UnsupportedMediaType,
)

from {{ cookiecutter.package }}_core.shared import id_problem

from .middleware import MODEL_KEY
from .model_store import LoadedModel

DIGITS = re.compile(r"^[0-9]{1,6}$")


def check_id(value: Any, what: str) -> str:
    """`value` if it is an id by the shared rule (`core.shared.id_problem`), else a 400."""
    if not isinstance(value, str):
        abort(400, description=f"{what} must be a string")
    problem = id_problem(value)
    if problem is not None:
        abort(400, description=f"{what} {problem}")
    return value


def path_ids(endpoint: str | None, values: dict[str, Any] | None) -> None:
    """A blueprint's `url_value_preprocessor`: the path's ids as the client spelled them in
    UTF-8, raw or percent-encoded alike; a 400 when they are not UTF-8.

    WSGI hands the path over as PATH_INFO, its bytes decoded as latin-1, percent escapes
    already undone, and Flask reads those bytes as UTF-8. gunicorn gets that right for
    `%F0%9F%98%80` but not for the same bytes sent raw: it encodes its latin-1 reading of them
    as UTF-8 once more, so Flask sees one latin-1 character per byte (an emoji's continuation
    bytes are C1 control characters, which the id rule refuses). The request line as received
    (RAW_URI, or REQUEST_URI) has the bytes: an id that is not plain ASCII is read from there.
    """
    if not values or all(value.isascii() for value in values.values()):
        return  # the common case: nothing to repair
    try:
        path = _sent_path().decode()
    except UnicodeDecodeError:
        abort(400, description="the path is not valid UTF-8")
    if path != request.path:
        try:
            matched, args = current_app.url_map.bind("localhost").match(path, request.method)
        except HTTPException:  # no route for it after all: keep what Flask matched
            return
        if matched == endpoint:
            values.update(args)


def _sent_path() -> bytes:
    """The request's path (below SCRIPT_NAME) as the bytes the client sent, percent-decoded."""
    environ = request.environ
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw is None:
        return environ.get("PATH_INFO", "").encode("latin-1")
    sent = unquote_to_bytes(urlsplit(raw).path.encode("latin-1"))
    script = environ.get("SCRIPT_NAME", "").encode("latin-1")
    return sent[len(script) :] if script and sent.startswith(script) else sent


def check_ids(values: Any, what: str, allow_empty: bool = True) -> list[str]:
    limit = current_app.config["MAX_IDS_PER_REQUEST"]
    if not isinstance(values, list):
        abort(400, description=f"{what} must be a list of strings")
    if not values and not allow_empty:
        abort(400, description=f"{what} must not be empty")
    if len(values) > limit:
        abort(400, description=f"{what} has {len(values)} entries; at most {limit} are allowed")
    return [check_id(value, f"{what}[{i}]") for i, value in enumerate(values)]


def check_k(value: Any, from_query: bool = False) -> int:
    """k from a query string (digits only) or from JSON (an integer, not a string or bool)."""
    max_k = current_app.config["MAX_K"]
    message = f"k must be an integer between 1 and {max_k}"
    if from_query and isinstance(value, str):
        if not DIGITS.match(value):
            abort(400, description=message)
        value = int(value)
    # bool is an int subclass: `true` is not a k.
    if type(value) is not int or not 1 <= value <= max_k:
        abort(400, description=message)
    return value


def query_args(allowed: set[str]) -> dict[str, str]:
    """The query string as single values; unknown or repeated parameters are refused."""
    args = {}
    for name, values in request.args.lists():
        if name not in allowed:
            refuse_unknown(request.args, allowed, "unknown query parameter(s)")
        if len(values) > 1:
            abort(400, description=f"query parameter {name} is given more than once")
        args[name] = values[0]
    return args


def read_json(max_length: int | None = None) -> Any:
    """The request's JSON value; 415 for another content type, 413 past `max_length` (default
    MAX_CONTENT_LENGTH) whether the body has a Content-Length or is chunked, 400 for invalid
    JSON or an object that repeats a key."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, not {request.mimetype or 'missing'}"
        )
    limit = current_app.config["MAX_CONTENT_LENGTH"] if max_length is None else max_length
    # A Content-Length past the limit is a 413 before anything is read. A chunked body has none:
    # the stream then stops quietly at the limit, so read one byte more to tell a body that fits
    # from one that was cut there.
    request.max_content_length = limit + 1
    try:
        raw = request.get_data(cache=False)
    except RequestEntityTooLarge:
        raw = None
    if raw is None or len(raw) > limit:
        raise RequestEntityTooLarge(f"the body is larger than {limit} bytes")
    try:
        return json.loads(raw, object_pairs_hook=_object_without_repeats)
    except DuplicateKey as error:
        raise BadRequest(f"invalid JSON: the key {error.key!r} is given more than once") from None
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise BadRequest(f"invalid JSON: {error}") from None


class DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _object_without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, unless a key repeats: which value would count is a guess, so refuse it."""
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return value


def json_body(allowed: set[str]) -> dict[str, Any]:
    """The request's JSON object; 415 for another content type, 400 for invalid JSON or fields."""
    body = read_json()
    if not isinstance(body, dict):
        abort(400, description="the JSON body must be an object")
    refuse_unknown(body, allowed, "unknown field(s)")
    return body


def refuse_unknown(names: Iterable[str], allowed: Collection[str], problem: str) -> None:
    """A 400 when some of `names` are not `allowed`: `<problem> <them>; allowed: <allowed>`."""
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        abort(
            400,
            description=f"{problem} {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}",
        )


def current_model() -> LoadedModel:
    """The model for this request (taken once, so a swap cannot mix two models); 503 if none."""
    model = current_app.extensions["model_store"].current
    if model is None:
        abort(503, description="no model is loaded yet; retry later")
    request.environ[MODEL_KEY] = model  # for X-Model-Version and the access log
    return model
