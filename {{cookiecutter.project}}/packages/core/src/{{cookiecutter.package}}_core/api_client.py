"""A small HTTP client of a running recommendation API, for the commands that ask one what it
serves: `rollback --check --url`, `audit --url` and the demo's smoke test."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .cli import BadInput
from .shared import RELOAD_FAILURES_METRIC


class ApiUnreachable(BadInput):
    """The API did not answer, or not as the API does (a wrong URL is the usual cause)."""


class ApiClient:
    def __init__(self, url: str, timeout: float = 10) -> None:
        # Only http(s): urlopen would also read file:// and other schemes (bandit B310).
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise BadInput(f"{url!r} is not an http:// or https:// URL of the API")
        self.url = url.rstrip("/")
        self.timeout = timeout

    def get_json(self, path: str) -> Any:
        """The JSON answer of `GET <url><path>`; ApiUnreachable for anything else."""
        try:
            # The scheme was checked in __init__.
            with urllib.request.urlopen(self.url + path, timeout=self.timeout) as response:  # nosec B310
                return json.load(response)
        except urllib.error.HTTPError as error:
            raise ApiUnreachable(
                f"the API at {self.url} answered {error.code} for {path}"
            ) from error
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ApiUnreachable(f"cannot reach the API at {self.url}: {reason}") from error
        except ValueError as error:
            raise ApiUnreachable(f"the API at {self.url} did not answer JSON for {path}") from error

    def model(self) -> dict[str, Any]:
        """`GET /v1/model`: the model version the API serves and its lineage."""
        answer = self.get_json("/v1/model")
        if not isinstance(answer, dict):
            raise ApiUnreachable(f"the API at {self.url} did not describe a model on /v1/model")
        return answer

    def ready(self) -> bool:
        """`GET /readyz` answered 200."""
        try:
            self.get_json("/readyz")
        except ApiUnreachable:
            return False
        return True

    def recommendations(self, user_id: str, k: int = 10) -> dict[str, Any]:
        user = urllib.parse.quote(user_id, safe="")
        return self.get_json(f"/v1/users/{user}/recommendations?k={k}")

    def reload_failures(self) -> float:
        """How many model loads the API refused or failed (summed over its workers)."""
        try:
            metrics = f"{self.url}/metrics"  # the scheme was checked in __init__
            with urllib.request.urlopen(metrics, timeout=self.timeout) as response:  # nosec B310
                text = response.read().decode()
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ApiUnreachable(f"cannot reach the API at {self.url}: {reason}") from error
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == RELOAD_FAILURES_METRIC:
                return float(value)
        return 0.0
