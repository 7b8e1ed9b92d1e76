"""Settings of the API: environment variables with defaults that work on a laptop."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

PROJECT = "{{ cookiecutter.project }}"


@dataclass(frozen=True)
class Settings:
    """Every knob of the service; `from_env` reads them, `create_app(config)` may override."""

    MODEL_URI: str = f"models:/{PROJECT}@champion"
    MODEL_REFRESH_SECONDS: float = 60.0
    MLFLOW_TRACKING_URI: str = "sqlite:///mlflow.db"
    ADMIN_TOKEN: str | None = None  # unset: the admin endpoints are disabled
    MAX_CONTENT_LENGTH: int = 64 * 1024
    MAX_K: int = 100
    MAX_IDS_PER_REQUEST: int = 100  # session items, batch users, excluded items
    EVENTS_LOG: str = "logs/feedback-events.jsonl"  # relative to the working directory
    MAX_EVENTS_PER_REQUEST: int = 500
    MAX_EVENTS_CONTENT_LENGTH: int = 512 * 1024  # POST /v1/events only; batches are bigger
    LOG_LEVEL: str = "INFO"
    # The drift job's JSON summary, exported on /metrics as recommender_drift_* gauges.
    DRIFT_SUMMARY: str = "reports/drift/summary.json"

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Settings:
        """Defaults, then environment variables, then explicit overrides (tests)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = environ.get(field.name)
            if raw is not None and raw != "":
                values[field.name] = _convert(field.name, raw, cls.__dataclass_fields__)
        values.update({k: v for k, v in (overrides or {}).items() if k in cls.__dataclass_fields__})
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if self.MODEL_REFRESH_SECONDS < 0:
            raise ValueError("MODEL_REFRESH_SECONDS must be >= 0 (0 disables the refresh)")
        limits = ("MAX_K", "MAX_CONTENT_LENGTH", "MAX_IDS_PER_REQUEST", "MAX_EVENTS_PER_REQUEST")
        limits += ("MAX_EVENTS_CONTENT_LENGTH",)
        if any(getattr(self, name) < 1 for name in limits):
            raise ValueError(f"{', '.join(limits)} must be >= 1")


def _convert(name: str, raw: str, known: Mapping[str, Any]) -> Any:
    default = known[name].default
    try:
        if isinstance(default, bool):
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError as error:
        raise ValueError(f"environment variable {name}={raw!r} is not a number") from error
    return raw
