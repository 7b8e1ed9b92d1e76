"""A local Debian base for the image tests: no container registry is reachable here.

`debootstrap_rootfs` makes a bookworm minbase root filesystem with python3, python3-venv and
ca-certificates (Debian's python3 is 3.11, the default python_version), the machine's CA bundle
and resolv.conf copied in; the Ansible tests converge into the same rootfs. `base_image` imports
it into buildah with the CA settings pip and uv need inside a build (SSL_CERT_FILE, PIP_CERT,
UV_SYSTEM_CERTS: uv 0.13's name for the deprecated UV_NATIVE_TLS), so the project's unmodified
Dockerfiles build FROM it with `--build-arg BASE_IMAGE=<name>`. The rootfs is cached as a
tarball under `${XDG_CACHE_HOME:-~/.cache}/cookiecutter-unified-mlops/` when that folder can be
written; the cache only saves the 40 s of debootstrap, nothing needs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Bump when the rootfs recipe changes, so a stale cached tarball is not reused.
RECIPE = f"{SUITE}-minbase-{'-'.join(PACKAGES)}-v1"
BASE_ENV = {
    "SSL_CERT_FILE": str(CA_BUNDLE),
    "PIP_CERT": str(CA_BUNDLE),
    "UV_SYSTEM_CERTS": "1",
}


def require_tools(*names: str) -> None:
    """Skip (or fail when REQUIRE_IMAGES=1) when a tool the image tests need is missing."""
    missing = [name for name in names if shutil.which(name) is None]
    if not missing:
        return
    reason = f"{', '.join(missing)} not installed (apt-get install {' '.join(missing)})"
    if os.environ.get("REQUIRE_IMAGES") == "1":
        pytest.fail(f"REQUIRE_IMAGES=1 but {reason}")
    pytest.skip(reason)


def cache_dir() -> Path | None:
    """Where the rootfs tarball is kept between runs, or None when that cannot be written."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = base / "cookiecutter-unified-mlops"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK) else None


def _mirror() -> str | None:
    """The Debian mirror the machine's apt sources name (debootstrap's default otherwise)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            words = line.split()
            if words[:1] == ["deb"] and "security" not in line:
                urls = [w for w in words[1:] if "://" in w]
                if urls:
                    return urls[0]
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    return None


def _debootstrap(target: Path) -> None:
    command = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(target),
    ]
    mirror = _mirror()
    if mirror:
        command.append(mirror)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        log = target / "debootstrap" / "debootstrap.log"
        detail = log.read_text()[-3000:] if log.is_file() else result.stderr[-3000:]
        raise RuntimeError(f"debootstrap failed ({result.returncode}):\n{detail}")


def _excluded(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
    # Device nodes and the kernel's filesystems are the runtime's business, not the image's.
    parts = Path(member.name).parts
    if len(parts) > 2 and parts[1] in {"dev", "proc", "sys"}:
        return None
    if member.ischr() or member.isblk() or member.isfifo():
        return None
    return member


def rootfs_tarball(workdir: Path) -> Path:
    """The bookworm minbase rootfs packed as a tarball: the cached one, else debootstrapped now
    (into `workdir`) and cached when the cache folder can be written."""
    cache = cache_dir()
    tarball = (cache or Path(workdir)) / f"{RECIPE}.tar"
    if tarball.is_file():
        return tarball
    with tempfile.TemporaryDirectory(prefix="debootstrap-", dir=workdir) as folder:
        target = Path(folder) / "rootfs"
        _debootstrap(target)
        shutil.rmtree(target / "var/cache/apt/archives", ignore_errors=True)
        (target / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(f".partial-{os.getpid()}")
        with tarfile.open(partial, "w") as archive:
            archive.add(target, arcname=".", filter=_excluded)
        partial.replace(tarball)
    return tarball


def debootstrap_rootfs(target: Path) -> Path:
    """A fresh bookworm minbase rootfs at `target` (from the cached tarball when there is one),
    with the machine's CA bundle and resolv.conf copied in; returns `target`."""
    target = Path(target)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    tarball = rootfs_tarball(target.parent)
    subprocess.run(["tar", "-C", str(target), "-xpf", str(tarball)], check=True)
    shutil.copyfile(CA_BUNDLE, target / CA_BUNDLE.relative_to("/"))
    resolv = Path("/etc/resolv.conf")
    if resolv.is_file():
        (target / "etc/resolv.conf").unlink(missing_ok=True)
        shutil.copyfile(resolv, target / "etc/resolv.conf")
    return target


class Buildah:
    """buildah with its own storage under one folder, so a test session can remove all it made."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.root = self.folder / "storage"
        self.runroot = self.folder / "run"
        self.root.mkdir(parents=True, exist_ok=True)
        self.runroot.mkdir(parents=True, exist_ok=True)

    def command(self, *args: str) -> list[str]:
        return [
            "buildah",
            "--root",
            str(self.root),
            "--runroot",
            str(self.runroot),
            *args,
        ]

    def run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        """Run buildah; raise with its output when it fails."""
        started = time.monotonic()
        result = subprocess.run(
            self.command(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"buildah {' '.join(args)} exited {result.returncode} after "
                f"{time.monotonic() - started:.0f} s\n--- stdout\n{result.stdout[-6000:]}\n"
                f"--- stderr\n{result.stderr[-6000:]}"
            )
        return result

    def cleanup(self) -> None:
        """Remove every container and image of this storage, then the storage itself."""
        subprocess.run(self.command("rm", "--all"), capture_output=True)
        subprocess.run(self.command("rmi", "--all", "--force"), capture_output=True)
        # Containers' mounts must be gone before the files can be deleted.
        subprocess.run(["umount", "-R", str(self.root)], capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)


def base_image(buildah: Buildah, name: str = "localhost/debian-python3-base:bookworm") -> str:
    """Import the rootfs into `buildah`'s storage as image `name`, with the machine's CA bundle
    and the settings that make pip and uv trust it; return `name`."""
    with tempfile.TemporaryDirectory(prefix="base-image-", dir=buildah.folder) as workdir:
        context = Path(workdir)
        tarball = rootfs_tarball(context)
        try:
            os.link(tarball, context / "rootfs.tar")
        except OSError:
            shutil.copyfile(tarball, context / "rootfs.tar")
        shutil.copyfile(CA_BUNDLE, context / "ca-certificates.crt")
        env = " ".join(f"{key}={value}" for key, value in BASE_ENV.items())
        (context / "Containerfile").write_text(
            "FROM scratch\n"
            "ADD rootfs.tar /\n"
            f"COPY ca-certificates.crt {CA_BUNDLE}\n"
            f"ENV {env}\n"
            'CMD ["/usr/bin/python3"]\n'
        )
        buildah.run("bud", "--isolation", "chroot", "--layers=false", "-t", name, str(context))
    return name
