"""Request parsing that turns every malformed input into a 4xx naming what is wrong."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable
from typing import Any

from flask import abort, current_app, request
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

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
    MAX_CONTENT_LENGTH), 400 for invalid JSON."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(
            f"Content-Type must be application/json, not {request.mimetype or 'missing'}"
        )
    if max_length is not None:
        request.max_content_length = max_length
    raw = request.get_data(cache=False)  # 413 past the limit
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise BadRequest(f"invalid JSON: {error}") from None


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
