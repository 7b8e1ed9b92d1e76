"""The default project's images, built once a session by its own `make image-api image-jobs`
with buildah FROM the local Debian base (base_image.py); the image and contract tests share them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from base_image import Buildah, base_image, require_tools

PROJECT = "shop-recommender"
VERSION = "0.1.0"


def timed(label: str, started: float) -> None:
    print(f"[images] {label}: {time.monotonic() - started:.1f} s")


@pytest.fixture(scope="session")
def buildah(tmp_path_factory) -> Iterator[Buildah]:
    require_tools("buildah", "debootstrap")
    store = Buildah(tmp_path_factory.mktemp("buildah"))
    yield store
    store.cleanup()


@pytest.fixture(scope="session")
def base(buildah) -> str:
    started = time.monotonic()
    name = base_image(buildah)
    timed("base image (debootstrap or cached rootfs, import)", started)
    return name


def build(project: Path, buildah: Buildah, base: str, target: str) -> subprocess.CompletedProcess:
    """`make <target>` with buildah (chroot isolation, the session's storage) FROM `base`."""
    started = time.monotonic()
    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            target,
            f"CONTAINER_BUILD={' '.join(buildah.command())}",
            f"BASE_IMAGE={base}",
        ],
        cwd=project,
        env={**os.environ, "BUILDAH_ISOLATION": "chroot"},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=1200,
    )
    timed(f"make {target}", started)
    if result.returncode != 0:
        pytest.fail(f"make {target} failed:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}")
    return result


@pytest.fixture(scope="session")
def api_image(default_project, buildah, base) -> str:
    build(default_project, buildah, base, "image-api")
    return f"localhost/{PROJECT}-api:{VERSION}"


@pytest.fixture(scope="session")
def jobs_image(default_project, buildah, base) -> str:
    build(default_project, buildah, base, "image-jobs")
    return f"localhost/{PROJECT}-jobs:{VERSION}"


def stop(server: subprocess.Popen) -> None:
    """Stop a server started in a session of its own (buildah run and what it started)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=40)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def request(url: str, data: bytes | None = None, headers: dict | None = None, timeout=30.0):
    """(status, body) of a GET, or of a POST when `data` is given; HTTP errors are answers.

    The timeout is generous: on two loaded cores a server's first logged-in answer has taken
    over 5 s (MLflow hashing the password while a converge ran beside it)."""
    call = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(call, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_for(
    url: str,
    server: subprocess.Popen,
    log: Path,
    timeout: float,
    label: str = "",
    headers: dict | None = None,
) -> None:
    """Until `url` answers 200 (timed as `label`); fail with the server's log when it exits or
    `timeout` seconds pass."""
    started = time.monotonic()
    while time.monotonic() - started < timeout and server.poll() is None:
        with contextlib.suppress(OSError):
            if request(url, headers=headers, timeout=2)[0] == 200:
                if label:
                    timed(label, started)
                return
        time.sleep(0.2)
    pytest.fail(
        f"{url} did not answer 200 in {timeout} s (exit {server.poll()}):\n"
        f"{log.read_text()[-4000:]}"
    )
