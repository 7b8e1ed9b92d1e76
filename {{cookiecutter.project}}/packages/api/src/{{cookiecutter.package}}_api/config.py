"""Settings of the API: environment variables with defaults that work on a laptop.

The settings every deployable reads (tracking URI, model name and URI, events log, drift reports,
log level) take their names and defaults from `core.shared.SETTINGS`; the knobs below them are
the API's own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from {{ cookiecutter.package }}_core import shared


def _shared(name: str) -> Any:
    """A field for the shared setting `name`, with its default from core."""
    return field(default=shared.SETTINGS[name].default, metadata={"shared": name})


@dataclass(frozen=True)
class Settings:
    """Every knob of the service; `from_env` reads them, `create_app(config)` may override."""

    MLFLOW_TRACKING_URI: str = _shared("MLFLOW_TRACKING_URI")
    MODEL_NAME: str = _shared("MODEL_NAME")
    MODEL_URI: str = _shared("MODEL_URI")  # empty: the champion of MODEL_NAME
    EVENTS_LOG: str = _shared("EVENTS_LOG")  # relative to the working directory
    # The drift job's reports: its summary.json is exported on /metrics (recommender_drift_*).
    DRIFT_REPORT_DIR: str = _shared("DRIFT_REPORT_DIR")
    LOG_LEVEL: str = _shared("LOG_LEVEL")

    # How often each worker checks MODEL_URI and swaps in a new version (0: never).
    MODEL_REFRESH_SECONDS: float = 60.0
    ADMIN_TOKEN: str | None = None  # unset: the admin endpoints are disabled
    # A file whose content (stripped) is the token: a Kubernetes Secret mounted as a file. Read
    # once at start (a rotated secret takes effect on the next restart); not with ADMIN_TOKEN.
    ADMIN_TOKEN_FILE: str = ""
    # Wrong admin tokens from one client address: after this many within the window, 429 with
    # Retry-After until the oldest failure leaves the window (counted in each worker).
    ADMIN_MAX_FAILURES: int = 10
    ADMIN_FAILURE_WINDOW_SECONDS: float = 60.0  # the window of ADMIN_MAX_FAILURES
    # A folder every worker of this server shares: POST /v1/admin/reload stamps a file there and
    # every worker reloads. The gunicorn config makes one; empty: a reload reaches one process.
    RELOAD_SIGNAL_DIR: str = ""
    MAX_CONTENT_LENGTH: int = 64 * 1024  # bytes of a request body (413 above)
    MAX_K: int = 100  # the largest k a request may ask for
    MAX_IDS_PER_REQUEST: int = 100  # session items, batch users, excluded items
    MAX_EVENTS_PER_REQUEST: int = 500  # events in one POST /v1/events
    MAX_EVENTS_CONTENT_LENGTH: int = 512 * 1024  # POST /v1/events only; batches are bigger

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Settings:
        """Defaults, then environment variables, then explicit overrides (tests)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in fields(cls):
            raw = environ.get(setting.name)
            if raw is not None and raw != "":
                values[setting.name] = _convert(setting.name, raw, cls.__dataclass_fields__)
        values.update({k: v for k, v in (overrides or {}).items() if k in cls.__dataclass_fields__})
        if values.get("ADMIN_TOKEN_FILE"):
            values["ADMIN_TOKEN"] = _token_from_file(values.get("ADMIN_TOKEN"), values)
        settings = cls(**values)
        settings.check()
        return settings

    def __post_init__(self) -> None:
        if not self.MODEL_URI:  # what every deployable loads by default: shared.model_uri
            object.__setattr__(self, "MODEL_URI", shared.model_uri(self._shared_values()))

    @property
    def drift_summary(self) -> Path:
        """The drift job's JSON summary, `<DRIFT_REPORT_DIR>/summary.json`."""
        return shared.drift_summary_path(self._shared_values())

    def _shared_values(self) -> dict[str, str]:
        """The shared settings as core.shared's functions read them (like an environment)."""
        return {
            setting.metadata["shared"]: getattr(self, setting.name)
            for setting in fields(self)
            if "shared" in setting.metadata
        }

    def check(self) -> None:
        if self.MODEL_REFRESH_SECONDS < 0:
            raise ValueError("MODEL_REFRESH_SECONDS must be >= 0 (0 disables the refresh)")
        if self.ADMIN_FAILURE_WINDOW_SECONDS <= 0:
            raise ValueError("ADMIN_FAILURE_WINDOW_SECONDS must be > 0")
        limits: tuple[str, ...]  # extended below
        limits = ("MAX_K", "MAX_CONTENT_LENGTH", "MAX_IDS_PER_REQUEST", "MAX_EVENTS_PER_REQUEST")
        limits += ("MAX_EVENTS_CONTENT_LENGTH", "ADMIN_MAX_FAILURES")
        if any(getattr(self, name) < 1 for name in limits):
            raise ValueError(f"{', '.join(limits)} must be >= 1")


def _token_from_file(token: str | None, values: Mapping[str, Any]) -> str:
    """The stripped content of ADMIN_TOKEN_FILE; both settings, or a file that cannot be read, is
    empty or holds more than one line, is refused (the service does not start)."""
    path = values["ADMIN_TOKEN_FILE"]
    if token:
        raise ValueError(
            "ADMIN_TOKEN and ADMIN_TOKEN_FILE are both set: set one of them (ADMIN_TOKEN_FILE "
            "for a secret mounted as a file)"
        )
    try:
        content = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"ADMIN_TOKEN_FILE={path}: cannot read the admin token: {error}") from None
    if not content:
        raise ValueError(f"ADMIN_TOKEN_FILE={path} is empty: it must hold the admin token")
    if any(char in content for char in "\r\n"):
        raise ValueError(f"ADMIN_TOKEN_FILE={path} holds more than one line: one token expected")
    return content


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
