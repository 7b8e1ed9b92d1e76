"""The model being served: load, verify, smoke-test, swap atomically; refresh in the background.

A load that fails for any reason (registry down, corrupt file, failed smoke test) leaves the
previous model serving. Readers take `store.current` once per request and use only that object,
so a swap never mixes two models inside one answer.

Each gunicorn worker has its own store. A reload asked of one worker reaches the others through
a `ReloadSignal`: a small stamp file in a folder every worker of one server shares, which each
store's refresh thread reads every `SIGNAL_POLL_SECONDS`.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from {{ cookiecutter.package }}_core.model_source import LoadedModel, ModelLoadError, load_model, step

__all__ = ["LoadedModel", "ModelLoadError", "ModelStore", "ReloadResult", "ReloadSignal"]

log = logging.getLogger(__name__)
# How often a store looks at the reload stamp: the bound on how late another worker follows.
SIGNAL_POLL_SECONDS = 0.2
_requests = itertools.count()


@dataclass(frozen=True)
class ReloadResult:
    status: str  # "loaded", "unchanged" or "failed"
    version: str | None
    error: str | None = None


class ReloadSignal:
    """A reload request for every process sharing `directory`: `request()` replaces the stamp
    file, `changed()` says (reading its few bytes) whether it was replaced since this process
    last looked. The folder belongs to one server (the gunicorn config makes it), so a stamp never
    outlives the workers that read it."""

    FILE = "reload-request"

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.path = Path(directory) / self.FILE
        self._seen = self._stamp()

    def _stamp(self) -> bytes | None:
        # The content, not the inode and mtime: both can repeat within a clock tick.
        try:
            return self.path.read_bytes()
        except OSError:
            return None

    def request(self) -> None:
        """Stamp a new request (write then rename: readers never see half a file); this
        process counts it as seen, since it reloads by itself."""
        temporary = self.path.with_name(f".{self.FILE}.{os.getpid()}.{threading.get_ident()}")
        temporary.write_text(f"{time.time_ns()} {os.getpid()} {next(_requests)}\n")
        os.replace(temporary, self.path)
        self._seen = self._stamp()

    def changed(self) -> bool:
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        self._seen = stamp
        return stamp is not None


class ReloadListener(Protocol):
    def model_loaded(self, model: LoadedModel) -> None: ...

    def model_load_failed(self, error: Exception) -> None: ...


class ModelStore:
    """Holds the current model for one process; `reload` checks for a new one and swaps it in.

    `uri` and `tracking_uri` are what `core.model_source.load_model` takes.
    """

    def __init__(
        self,
        uri: str,
        *,
        tracking_uri: str | None = None,  # None: the shared MLFLOW_TRACKING_URI setting
        refresh_seconds: float = 60.0,
        listener: ReloadListener | None = None,
        signal: ReloadSignal | None = None,  # None: a reload reaches this process only
    ) -> None:
        self.uri = uri
        self.tracking_uri = tracking_uri
        self.refresh_seconds = refresh_seconds
        self.listener = listener
        self.signal = signal
        self.last_error: str | None = None
        self._current: LoadedModel | None = None
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Load once now (a failure leaves the store empty), then refresh in the background and
        follow the reload signal."""
        self.reload()
        if (self.refresh_seconds > 0 or self.signal is not None) and self._thread is None:
            self._thread = threading.Thread(
                target=self._refresh_loop, name="model-refresh", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _refresh_loop(self) -> None:
        poll = self.refresh_seconds
        if self.signal is not None:
            poll = min(poll, SIGNAL_POLL_SECONDS) if poll > 0 else SIGNAL_POLL_SECONDS
        next_refresh = time.monotonic() + self.refresh_seconds
        while not self._stop.wait(poll):
            if self.signal is not None and self.signal.changed():
                self.reload(force=True)  # another worker was asked to reload
            elif self.refresh_seconds > 0 and time.monotonic() >= next_refresh:
                self.reload()
            else:
                continue
            next_refresh = time.monotonic() + self.refresh_seconds

    def request_reload_everywhere(self) -> bool:
        """Ask every process sharing the signal to reload (False: there is none, this process
        only); the caller reloads this one."""
        if self.signal is None:
            return False
        self.signal.request()
        return True

    # -- loading -------------------------------------------------------------------------

    def reload(self, force: bool = False) -> ReloadResult:
        """Load the model `uri` points at if it differs from the current one (always if `force`)."""
        with self._reload_lock:
            started = time.perf_counter()
            try:
                model = self._load(force)
            except Exception as error:  # anything: the previous model must keep serving
                self.last_error = f"{type(error).__name__}: {error}"
                log.error(
                    "model load failed; keeping the current model",
                    extra={
                        "fields": {
                            "model_uri": self.uri,
                            "error": self.last_error,
                            "serving_version": self._version(),
                        }
                    },
                )
                if self.listener is not None:
                    self.listener.model_load_failed(error)
                return ReloadResult("failed", self._version(), self.last_error)
            if model is None:
                return ReloadResult("unchanged", self._version())
            first = self._current is None
            self._current = model  # the swap: one reference assignment
            self.last_error = None
            seconds = time.perf_counter() - started
            log.info(
                # The first load is what a starting server waits for: say that it is ready.
                f"ready: version {model.version} in {seconds:.1f} s" if first else "model loaded",
                extra={
                    "fields": {
                        "model_uri": self.uri,
                        "model_version": model.version,
                        "load_ms": round(seconds * 1000, 1),
                    }
                },
            )
            if self.listener is not None:
                self.listener.model_loaded(model)
            return ReloadResult("loaded", model.version)

    def _version(self) -> str | None:
        current = self._current
        return current.version if current is not None else None

    def _load(self, force: bool) -> LoadedModel | None:
        model = load_model(self.uri, self.tracking_uri, None if force else self._version())
        if model is not None:
            artifact = model.artifact
            with step("building the id index", "built the id index") as fields:
                fields.update({"users": len(artifact.user_ids), "items": len(artifact.item_ids)})
                artifact.index_ids()  # lookups that keep the GIL; built before the swap
        return model
