"""`<project>-batch recommend` (`make recommend`): a few users' top-k, with the load's progress
in the log; a folder MODEL_URI needs no MLflow client."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from {{ cookiecutter.package }}_core.artifact import ServingArtifact
from {{ cookiecutter.package }}_core.shared import ExitCode

RUN = (
    "import sys\n"
    "from {{ cookiecutter.package }}_batch.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "assert 'mlflow' not in sys.modules, 'imported the MLflow client'\n"
    "sys.exit(code)\n"
)


@pytest.fixture
def model_dir(tmp_path):
    ServingArtifact(
        user_ids=np.array(["u1", "u2"]),
        item_ids=np.array(["a", "b", "c"]),
        item_categories=np.array(["x", "y", "x"]),
        user_top_items=np.array([[2, 0, 1], [1, -1, -1]], dtype=np.int32),
        user_top_scores=np.array([[0.9, 0.5, 0.1], [0.7, -np.inf, -np.inf]], dtype=np.float32),
        similar_items=np.array([[1, 2], [0, 2], [0, 1]], dtype=np.int32),
        similar_scores=np.ones((3, 2), dtype=np.float32),
        popular_items=np.array([1, 0, 2], dtype=np.int32),
        metadata={"model": "ease"},
    ).save(tmp_path / "model")
    return tmp_path / "model"


def recommend(model_uri, *args):
    env = {**os.environ, "MODEL_URI": str(model_uri), "LOG_LEVEL": "info"}
    command = [sys.executable, "-c", RUN, "recommend", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def test_a_folder_answers_and_the_log_says_what_the_load_did(model_dir):
    done = recommend(model_dir, "--user", "u1", "--user", "nobody", "--k", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "user u1 (personalized, ease): c, a",
        "user nobody (popularity, ease): b, a",
    ]
    logged = [json.loads(line) for line in done.stderr.splitlines()]
    messages = [entry["message"] for entry in logged]
    assert messages[:2] == ["verifying the artifact", "verified the artifact"]
    assert messages[-1].startswith("ready: version local-") and messages[-1].endswith(" s")


def test_a_corrupt_folder_is_bad_input(model_dir):
    (model_dir / "user_top_items.npy").write_bytes(b"not an array")
    done = recommend(model_dir)
    assert done.returncode == ExitCode.BAD_INPUT
    assert "cannot load the model" in done.stderr and "checksum mismatch" in done.stderr
