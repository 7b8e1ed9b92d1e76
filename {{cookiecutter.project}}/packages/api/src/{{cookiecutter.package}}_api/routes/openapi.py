"""The OpenAPI 3.1 description of this API (`openapi.yaml` in the package), served as JSON."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml
from flask import Blueprint

bp = Blueprint("openapi", __name__)


@cache
def spec() -> dict[str, Any]:
    text = resources.files(__package__.rpartition(".")[0]).joinpath("openapi.yaml").read_text()
    return yaml.safe_load(text)


@bp.get("/openapi.json")
def openapi() -> dict[str, Any]:
    return spec()
