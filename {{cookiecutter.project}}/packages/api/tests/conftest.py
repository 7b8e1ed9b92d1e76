"""Fixtures: a tiny serving artifact on disk, the app serving it, and a test client."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from {{ cookiecutter.package }}_api import create_app
from {{ cookiecutter.package }}_api.access_log import stderr_batches
from {{ cookiecutter.package }}_core.artifact import ServingArtifact

ADMIN_TOKEN = "test-admin-token-0123456789"


def make_artifact(popular: list[int] | None = None, name: str = "v1") -> ServingArtifact:
    """Two users, four items; scores chosen so every expected answer is unambiguous (the
    popularity fallback's: 1.0, 0.75, 0.5, 0.25 down its ranking)."""
    popular_items = np.array(popular or [1, 0, 3, 2], dtype=np.int32)
    return ServingArtifact(
        user_ids=np.array(["u1", "u2"]),
        item_ids=np.array(["a", "b", "c", "d"]),
        item_categories=np.array(["shoes", "hats", "shoes", "hats"]),
        user_top_items=np.array([[2, 1, 3], [0, 3, -1]], dtype=np.int32),
        user_top_scores=np.array([[0.9, 0.5, 0.1], [0.8, 0.2, -np.inf]], dtype=np.float32),
        similar_items=np.array([[2, 1], [3, 0], [0, 1], [1, 2]], dtype=np.int32),
        similar_scores=np.array([[0.9, 0.3], [0.8, 0.4], [0.9, 0.2], [0.8, 0.1]], np.float32),
        popular_items=popular_items,
        popular_scores=(1 - np.arange(len(popular_items)) / len(popular_items)).astype(np.float32),
        metadata={"model": name},
    )


@pytest.fixture(autouse=True)
def access_log_in_its_test():
    """Write each test's access log lines while its output is captured, not at exit."""
    yield
    stderr_batches().flush()


@pytest.fixture
def new_artifact():
    """`make_artifact` for tests (with importlib import mode, conftest is not importable)."""
    return make_artifact


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def artifact_dir(tmp_path) -> Path:
    directory = tmp_path / "model"
    make_artifact().save(directory)
    return directory


@pytest.fixture
def events_log(tmp_path) -> Path:
    """Where the app under test appends feedback events (never the working directory)."""
    return tmp_path / "logs" / "events.jsonl"


@pytest.fixture
def drift_summary(tmp_path) -> Path:
    """Where the app under test reads the drift job's summary (absent unless a test writes it):
    `summary.json` in its DRIFT_REPORT_DIR."""
    return tmp_path / "reports" / "drift" / "summary.json"


@pytest.fixture
def app(artifact_dir, events_log, drift_summary):
    app = create_app(
        {
            "MODEL_URI": str(artifact_dir),
            "MODEL_REFRESH_SECONDS": 0,
            "ADMIN_TOKEN": ADMIN_TOKEN,
            "EVENTS_LOG": str(events_log),
            "DRIFT_REPORT_DIR": str(drift_summary.parent),
        }
    )
    yield app
    app.extensions["model_store"].stop()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def empty_app(tmp_path, events_log):
    """An app whose model URI points at nothing: it starts, but is not ready."""
    return create_app(
        {
            "MODEL_URI": str(tmp_path / "missing"),
            "MODEL_REFRESH_SECONDS": 0,
            "EVENTS_LOG": str(events_log),
        }
    )
