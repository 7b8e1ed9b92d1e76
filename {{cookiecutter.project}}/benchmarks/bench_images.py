"""bench-images: size and build time of both images, and how fast the API image gets ready.

    uv run --no-sync python benchmarks/bench_images.py [flags]     # or: make bench-images

Builds `docker/api.Dockerfile` and `docker/jobs.Dockerfile` with buildah (chroot isolation) in
a throw-away storage: cold (no layers yet), then again with the layer cache and nothing changed.
Then it trains the configured model on `--events` synthetic events by the real stages, mounts the
serving artifact into the API image, runs the image's own command and times start to the first
200 from /readyz (median of `--rounds`). `--debootstrap` builds FROM a local Debian bookworm base
made with debootstrap (python3 3.11 and the machine's CA bundle), for a machine that reaches no
container registry; the time to make that base is not counted. Needs buildah (and root for
debootstrap). Targets: API <= 300 MB, jobs <= 1.4 GB, ready < 10 s on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import harness

PROJECT = "{{ cookiecutter.project }}"
ROOT = Path(__file__).resolve().parents[1]
IMAGES = {"api": "docker/api.Dockerfile", "jobs": "docker/jobs.Dockerfile"}
TARGET_MB = {"api": 300, "jobs": 1400}
TARGET_READY_S = 10.0
SLIM_BASE_MB = 130  # python:X.Y-slim unpacked, for the estimate under a --debootstrap table
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# The template's tests cache the same rootfs here; reusing it saves debootstrap's 40 s.
ROOTFS_CACHE = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "cookiecutter-unified-mlops/bookworm-minbase-python3-python3-venv-ca-certificates-v1.tar"
)
UNITS = {"B": 1e-6, "kB": 1e-3, "KB": 1e-3, "MB": 1, "GB": 1e3, "TB": 1e6}


class Buildah:
    """buildah with its own storage, removed when the benchmark ends."""

    def __init__(self, folder: Path) -> None:
        self.options = ["--root", str(folder / "storage"), "--runroot", str(folder / "run")]

    def command(self, *args: str) -> list[str]:
        return ["buildah", *self.options, *args]

    def run(self, *args: str) -> str:
        result = subprocess.run(self.command(*args), capture_output=True, text=True)
        if result.returncode != 0:
            failed = " ".join(args[:2])
            raise SystemExit(f"ERROR: buildah {failed} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    def size_mb(self, image: str) -> float:
        number, unit = json.loads(self.run("images", "--json", image))[0]["size"].split()
        return float(number) * UNITS[unit]

    def cleanup(self) -> None:
        for args in (("rm", "--all"), ("rmi", "--all", "--force")):
            subprocess.run(self.command(*args), capture_output=True)


def run_benchmark(params: dict[str, Any], args: argparse.Namespace) -> int:
    if shutil.which("buildah") is None:
        print("bench-images needs buildah (apt-get install buildah)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-images-", dir=args.workdir) as tmp:
        root = Path(tmp)
        buildah = Buildah(root)
        try:
            base = _debootstrap_base(buildah, root) if args.debootstrap else args.base_image
            rows = {}
            for image, dockerfile in IMAGES.items():
                name = f"localhost/{PROJECT}-{image}:bench"
                cold = _build(buildah, dockerfile, name, base)
                cached = _build(buildah, dockerfile, name, base)
                rows[image] = {
                    "image": f"{PROJECT}-{image}",
                    "size_mb": buildah.size_mb(name),
                    "cold_s": cold,
                    "cached_s": cached,
                    "ready_s": None,
                }
                print(f"{image}: cold {cold:.0f} s, cached {cached:.0f} s", file=sys.stderr)
            model = _train_model(params, root, args.events)
            readies = [
                _start_to_ready(buildah, f"localhost/{PROJECT}-api:bench", model)
                for _ in range(args.rounds)
            ]
            print(f"api ready: {', '.join(f'{s:.1f}' for s in readies)} s", file=sys.stderr)
            rows["api"]["ready_s"] = statistics.median(readies)
            base_mb = buildah.size_mb(base)  # pulled or made by now
            for row in rows.values():
                row["over_base_mb"] = row["size_mb"] - base_mb
        finally:
            buildah.cleanup()
    print(_table(rows, base, base_mb, args))
    return 0


def _build(buildah: Buildah, dockerfile: str, name: str, base: str) -> float:
    started = time.perf_counter()
    buildah.run(
        "bud", "--isolation", "chroot", "--layers", "--format", "docker",
        "--build-arg", f"BASE_IMAGE={base}", "-f", dockerfile, "-t", name, str(ROOT),
    )  # fmt: skip
    return time.perf_counter() - started


def _debootstrap_base(buildah: Buildah, root: Path) -> str:
    """A Debian bookworm base with python3 and the machine's CA bundle (pip and uv trust it)."""
    context = root / "base"
    context.mkdir()
    if ROOTFS_CACHE.is_file():
        shutil.copyfile(ROOTFS_CACHE, context / "rootfs.tar")
    else:
        rootfs = root / "rootfs"
        print("debootstrap bookworm (about 40 s)...", file=sys.stderr)
        subprocess.run(
            [
                *("debootstrap", "--variant=minbase"),
                "--include=python3,python3-venv,ca-certificates",
                *("bookworm", str(rootfs)),
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["tar", "-C", str(rootfs), "--exclude=./dev/*", "--exclude=./proc/*",
             "--exclude=./sys/*", "-cf", str(context / "rootfs.tar"), "."],
            check=True,
        )  # fmt: skip
        shutil.rmtree(rootfs)
    shutil.copyfile(CA_BUNDLE, context / "ca-certificates.crt")
    (context / "Containerfile").write_text(
        "FROM scratch\nADD rootfs.tar /\n"
        f"COPY ca-certificates.crt {CA_BUNDLE}\n"
        f"ENV SSL_CERT_FILE={CA_BUNDLE} PIP_CERT={CA_BUNDLE} UV_SYSTEM_CERTS=1\n"
    )
    name = "localhost/bench-debian-python3:bookworm"
    buildah.run("bud", "--isolation", "chroot", "-t", name, str(context))
    return name


def _train_model(params: dict[str, Any], root: Path, n_events: int) -> Path:
    """The configured model trained on synthetic events by the real stages: its artifact."""
    from {{ cookiecutter.package }}_training import data_stages, model_stages
    from {{ cookiecutter.package }}_training.config import Paths
    from {{ cookiecutter.package }}_training.synthetic import generate, write_dataset

    params = copy.deepcopy(params)
    model = params["model"]["name"]
    params["model"]["candidates"] = [model]
    paths = Paths(root / "project")
    settings = {**params["synthetic"], "n_events": n_events}
    print(f"training {model} on {n_events:,} events...", file=sys.stderr)
    write_dataset(*generate(**settings), paths.raw)
    for stage in (data_stages.ingest, data_stages.validate, data_stages.split):
        stage(params, paths)
    model_stages.train(params, paths)
    return paths.models / model


def _start_to_ready(buildah: Buildah, image: str, model: Path) -> float:
    """Seconds from starting the image's own command to the first 200 from /readyz."""
    container = buildah.run("from", "--pull-never", image).strip().splitlines()[-1]
    command = json.loads(buildah.run("inspect", "--type", "image", image))["Docker"]["config"]
    port = _free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        buildah.command(
            "run", "--isolation", "chroot", "-v", f"{model}:/model:ro",
            "--env", "MODEL_URI=/model", "--env", f"PORT={port}", container, "--", *command["Cmd"],
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the whole group (gunicorn's workers too) is stopped below
    )  # fmt: skip
    try:
        while time.perf_counter() - started < 120:
            if process.poll() is not None:
                raise SystemExit("ERROR: the API container exited before it was ready")
            with contextlib.suppress(OSError):
                url = f"http://127.0.0.1:{port}/readyz"
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return time.perf_counter() - started
            time.sleep(0.1)
        raise SystemExit("ERROR: the API container was not ready after 120 s")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        subprocess.run(buildah.command("rm", container), capture_output=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


COLUMNS = [
    ("image", "image", "<24"),
    ("size MB", "size_mb", ">9.0f"),
    ("over base MB", "over_base_mb", ">14.0f"),
    ("cold build s", "cold_s", ">14.0f"),
    ("cached build s", "cached_s", ">16.1f"),
    ("start to /readyz s", "ready", ">20"),
    ("targets", "targets", ""),
]


def _table(
    rows: dict[str, dict[str, Any]], base: str, base_mb: float, args: argparse.Namespace
) -> str:
    verdict = {True: "met", False: "MISSED"}
    for image, row in rows.items():
        ready = row["ready_s"]
        row["ready"] = "-" if ready is None else f"{ready:.1f}"
        targets = [f"<= {TARGET_MB[image]:,} MB {verdict[row['size_mb'] <= TARGET_MB[image]]}"]
        if ready is not None:
            targets.append(f"ready < {TARGET_READY_S:.0f} s {verdict[ready < TARGET_READY_S]}")
        row["targets"] = ", ".join(targets)
    title = (
        f"bench-images: FROM {base} ({base_mb:.0f} MB), {os.cpu_count()} cores; API ready with a "
        f"{args.events:,}-event model, median of {args.rounds}"
    )
    lines = [harness.table(COLUMNS, list(rows.values()), title)]
    if args.debootstrap:  # the targets are for the Dockerfiles' default base
        estimate = ", ".join(
            f"{image} {row['over_base_mb'] + SLIM_BASE_MB:,.0f} MB" for image, row in rows.items()
        )
        lines.append(
            f"FROM {args.base_image} (about {SLIM_BASE_MB} MB) instead of this base: {estimate}"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = harness.parser(__doc__)
    parser.add_argument(
        "--base-image",
        default="python:{{ cookiecutter.python_version }}-slim",
        help="the images' BASE_IMAGE build argument",
    )
    parser.add_argument(
        "--debootstrap",
        action="store_true",
        help="build FROM a local Debian base made with debootstrap instead of --base-image",
    )
    parser.add_argument(
        "--events", type=int, default=1_000_000, help="synthetic events the served model learns"
    )
    parser.add_argument("--rounds", type=int, default=3, help="API starts to time")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where the throw-away storage goes (a tmp dir)"
    )
    return parser


if __name__ == "__main__":
    harness.main(build_parser(), run_benchmark)
