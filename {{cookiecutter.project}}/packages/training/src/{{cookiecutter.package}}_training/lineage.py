"""Lineage facts recorded on every model version: code, data, params and who triggered it.

Nothing here is typed by hand: the commit comes from git (in an image, from the GIT_COMMIT its
build recorded), the data hash is the md5 DVC records for the validated events, the actor from
the CI environment or the local user.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import yaml

# Set in the jobs image from its GIT_COMMIT build argument: an image holds no .git and no git.
GIT_COMMIT_ENV = "GIT_COMMIT"


def git_commit(root: Path = Path(".")) -> tuple[str, bool]:
    """(commit sha, dirty) of the working tree. Without git or outside a repository (a container
    image), the commit the image was built from (env GIT_COMMIT; clean, since the image's code
    cannot change after the build), else ("unknown", True)."""
    try:
        sha = _git(root, "rev-parse", "HEAD")
        dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        built_from = os.environ.get(GIT_COMMIT_ENV, "").strip()
        if built_from and built_from != "unknown":
            return built_from, False
        return "unknown", True
    return sha, dirty


def _git(root: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=30
    )
    return result.stdout.strip()


def data_hash(path: Path, root: Path = Path(".")) -> str:
    """The DVC hash of a pipeline output: from dvc.lock when recorded, else its file md5.

    For a single file DVC's hash is the md5 of its bytes, so both agree once dvc.lock is written.
    """
    recorded = _hash_in_dvc_lock(path, root)
    return recorded or file_md5(path)


def _hash_in_dvc_lock(path: Path, root: Path) -> str | None:
    lock = root / "dvc.lock"
    if not lock.is_file():
        return None
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    wanted = Path(os.path.relpath(path, root)).as_posix()
    for stage in stages.values():
        for out in stage.get("outs", []):
            if out.get("path") == wanted and out.get("md5"):
                return out["md5"]
    return None


def file_md5(path: Path) -> str:
    """DVC's content hash of a file (md5 as a checksum, not as a security measure)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "md5").hexdigest()
