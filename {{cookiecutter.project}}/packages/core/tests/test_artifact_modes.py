"""A saved serving artifact is readable by a user other than its writer (0755 folder, 0644
files), whatever the writer's umask: a container's serving user reads a mounted model folder."""

import os
import stat

import pytest

from {{ cookiecutter.package }}_core.artifact import ServingArtifact


@pytest.fixture
def strict_umask():
    previous = os.umask(0o077)
    yield
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_saved_artifact_is_world_readable(artifact, tmp_path, strict_umask):
    artifact.save(tmp_path / "model")
    folder = tmp_path / "model"
    assert mode(folder) == 0o755
    files = sorted(folder.iterdir())
    assert "manifest.json" in [path.name for path in files]
    assert {path.name: mode(path) for path in files} == {path.name: 0o644 for path in files}
    assert ServingArtifact.load(folder).metadata == {"model": "ease"}


def test_replacing_an_artifact_keeps_the_modes(artifact, tmp_path, strict_umask):
    artifact.save(tmp_path / "model")
    artifact.save(tmp_path / "model")
    assert mode(tmp_path / "model") == 0o755
    assert {mode(path) for path in (tmp_path / "model").iterdir()} == {0o644}
