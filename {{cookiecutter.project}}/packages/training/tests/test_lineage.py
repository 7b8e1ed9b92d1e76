"""The commit a model version records: git's HEAD in a repository, the image's GIT_COMMIT in a
container (no .git, no git), "unknown" otherwise."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from {{ cookiecutter.package }}_training import lineage

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_outside_a_repository_the_image_build_commit_counts(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_COMMIT", SHA)
    assert lineage.git_commit(tmp_path) == (SHA, False)


def test_without_git_installed_the_image_build_commit_counts(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_COMMIT", SHA)
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools-here"))  # `git` cannot be found
    assert lineage.git_commit(tmp_path) == (SHA, False)


@pytest.mark.parametrize("value", [None, "", "unknown"])
def test_no_repository_and_no_build_commit_is_unknown(tmp_path, monkeypatch, value):
    if value is None:
        monkeypatch.delenv("GIT_COMMIT", raising=False)
    else:
        monkeypatch.setenv("GIT_COMMIT", value)
    assert lineage.git_commit(tmp_path) == ("unknown", True)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_in_a_repository_git_wins_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_COMMIT", SHA)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(tmp_path)]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "file.txt").write_text("x\n")
    subprocess.run([*git, "add", "file.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert lineage.git_commit(tmp_path) == (head, False)
    (tmp_path / "file.txt").write_text("changed\n")
    assert lineage.git_commit(tmp_path) == (head, True)
