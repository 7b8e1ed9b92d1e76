"""Shared helpers for the template tests: the option matrix, baking, and what a bake should hold.

The matrix follows cookiecutter-data-science: the product of the options that interact
(`ci_provider` x `deploy_target`), with the independent options cycled across it so that every
value of every option is baked at least once.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cookiecutter.environment import StrictEnvironment
from cookiecutter.generate import generate_context
from cookiecutter.main import cookiecutter
from cookiecutter.prompt import prompt_for_config

# The image fixtures (buildah storage, base, api_image, jobs_image), one build per session.
pytest_plugins = ("image_fixtures",)

TEMPLATE_ROOT = Path(__file__).resolve().parents[1]
PAYLOAD_DIR = TEMPLATE_ROOT / "{{cookiecutter.project}}"
COOKIECUTTER_JSON = json.loads((TEMPLATE_ROOT / "cookiecutter.json").read_text())
# The template venv's tools (ruff, check-jsonschema, cookiecutter, cruft): the ones running pytest.
VENV_BIN = Path(sys.executable).parent

INTERACTING_OPTIONS = ("ci_provider", "deploy_target")
CYCLED_OPTIONS = ("python_version", "default_model", "license")
ANSWERS_FILE = ".cookiecutter.json"
LICENSE_FILE = "LICENSE"


def choices(option: str) -> list[str]:
    """The values cookiecutter offers for a choice option, default first."""
    return list(COOKIECUTTER_JSON[option])


def config_generator() -> Iterator[dict[str, str]]:
    """Yield the extra_context of every configuration the template is baked with."""
    cyclers = {option: itertools.cycle(choices(option)) for option in CYCLED_OPTIONS}
    for combination in itertools.product(*(choices(o) for o in INTERACTING_OPTIONS)):
        config = dict(zip(INTERACTING_OPTIONS, combination, strict=True))
        config.update({option: next(cycler) for option, cycler in cyclers.items()})
        yield config


def config_id(config: dict[str, str]) -> str:
    """A readable test id, e.g. `github-kubernetes+ansible-py3.11-rp3beta-MIT`."""
    return "-".join(
        [
            config["ci_provider"],
            config["deploy_target"],
            f"py{config['python_version']}",
            config["default_model"],
            config["license"],
        ]
    )


CONFIGS = list(config_generator())
CONFIG_IDS = [config_id(config) for config in CONFIGS]


def answers_for(extra_context: dict[str, str]) -> dict:
    """The full cookiecutter context a no-input bake with these answers gets (derived names too)."""
    context = generate_context(
        context_file=str(TEMPLATE_ROOT / "cookiecutter.json"), extra_context=extra_context
    )
    return dict(prompt_for_config(context, no_input=True))


def public_answers(answers: dict) -> dict:
    """The answers without cookiecutter's private `_` keys: what the project records."""
    return {key: value for key, value in answers.items() if not key.startswith("_")}


def write_cookiecutter_config(folder: Path) -> Path:
    """A user config whose clone and replay folders live in `folder`, not in ~/."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "cookiecutter-config.yaml"
    config.write_text(
        f'cookiecutters_dir: "{folder / "cookiecutters"}"\nreplay_dir: "{folder / "replay"}"\n'
    )
    return config


@pytest.fixture(scope="module")
def browser():
    """Headless chromium for a module's page checks (tests/browser.py); skips without it, or
    fails under REQUIRE_CHROMIUM=1."""
    from browser import Browser, require_chromium  # playwright only where a page is opened

    require_chromium()
    with Browser() as opened:
        yield opened


@pytest.fixture(scope="session")
def cookiecutter_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cookiecutter_config(tmp_path_factory.mktemp("cookiecutter-home"))


def bake(
    output_dir: Path, config_file: Path, template: Path | str = TEMPLATE_ROOT, **extra_context
) -> Path:
    """Generate a project with cookiecutter's Python API; return the project folder."""
    project = cookiecutter(
        str(template),
        no_input=True,
        extra_context=extra_context,
        output_dir=str(output_dir),
        config_file=str(config_file),
    )
    return Path(project)


@dataclass(frozen=True)
class Bake:
    """A generated project and the answers it was generated from."""

    path: Path
    config: dict[str, str]
    answers: dict

    def files(self) -> set[str]:
        """Every file in the project (POSIX paths relative to it), git's own folder aside."""
        return {
            path.relative_to(self.path).as_posix()
            for path in self.path.rglob("*")
            if path.is_file() and ".git" not in path.relative_to(self.path).parts[:1]
        }

    def read(self, relative: str) -> str:
        return (self.path / relative).read_text()


@pytest.fixture(scope="module", params=CONFIGS, ids=CONFIG_IDS)
def baked(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    cookiecutter_config: Path,
) -> Bake:
    """One bake per configuration, shared by every check in a test module."""
    config = request.param
    output = tmp_path_factory.mktemp(config_id(config).replace("+", "_"))
    return Bake(bake(output, cookiecutter_config, **config), config, answers_for(config))


@pytest.fixture(scope="session")
def default_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default bake after `make setup` (it writes uv.lock), shared by the slow tests that
    need an installed project, so it is set up once a session."""
    output = tmp_path_factory.mktemp("default-bake")
    path = Path(cookiecutter(str(TEMPLATE_ROOT), no_input=True, output_dir=str(output)))
    make(path, "setup")
    return path


# --- Where a generated file comes from (the SET of files is tests/expected_files.py) -----------


@dataclass(frozen=True)
class Source:
    """Where a generated file comes from: a payload file (rendered or copied), a module file, or
    none (`path` None: the post-generation hook wrote it)."""

    path: Path | None
    vendored: bool = False
    rendered: bool = True


# Each module's place in a project that selects it (which modules a project gets is the
# expected file list's business, not this map's).
MODULE_PLACES = {
    "ci/github": ".github",
    "ci/gitlab/gitlab-ci.yml": ".gitlab-ci.yml",
    "ci/README.md": "delivery/CI.md",
    "k8s": "k8s",
    "ansible": "ansible",
}


def _tree(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            yield path


def _copy_without_render(relative: str, answers: dict) -> bool:
    """cookiecutter's rule: a pattern matching the file or one of its parent folders."""
    patterns = answers.get("_copy_without_render", [])
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(c, p) for c in candidates for p in patterns)


def file_sources(answers: dict) -> dict[str, Source]:
    """The source of every file a bake with these answers may hold, by its path in the project:
    each payload file under its rendered name, each module file at its module's place (a module
    file wins over a payload file at the same place: the hook copies it over), the answers file.
    """
    environment = StrictEnvironment(context={"cookiecutter": answers})
    sources: dict[str, Source] = {}
    for path in _tree(PAYLOAD_DIR):
        relative = path.relative_to(PAYLOAD_DIR).as_posix()
        target = environment.from_string(relative).render(cookiecutter=answers)
        sources[target] = Source(path, rendered=not _copy_without_render(relative, answers))
    for module, place in MODULE_PLACES.items():
        source = TEMPLATE_ROOT / module
        if source.is_file():
            sources[place] = Source(source, vendored=True, rendered=False)
        for path in _tree(source) if source.is_dir() else ():
            relative = path.relative_to(source).as_posix()
            sources[f"{place}/{relative}"] = Source(path, vendored=True, rendered=False)
    sources[ANSWERS_FILE] = Source(None, rendered=False)
    return sources


# --- Running tools ---------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port nothing listens on now (the tests' servers run side by side)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tool(name: str) -> str:
    """Path of a CLI installed in the template venv."""
    path = VENV_BIN / name
    if not path.exists():
        pytest.fail(f"{name} is not installed in {VENV_BIN}: run `make setup`")
    return str(path)


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True):
    """Run a command, failing the test with its output when it does not exit 0."""
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"`{' '.join(args)}` in {cwd} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    return result


def make(
    project: Path, *targets: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`make <targets>` in a generated project, with the environment a user's shell would have
    (plus `env`)."""
    shell = {key: value for key, value in os.environ.items() if not key.startswith("VIRTUAL_ENV")}
    shell.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(
        ["make", "--no-print-directory", *targets],
        cwd=project,
        env={**shell, "DVC_NO_ANALYTICS": "1", **(env or {})},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"make {' '.join(targets)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def isolated_env(home: Path, config_file: Path) -> dict[str, str]:
    """Environment for CLI runs that must not touch the real ~/.cookiecutters or ~/.gitconfig."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GIT_", "COOKIECUTTER_"))
    }
    home.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), COOKIECUTTER_CONFIG=str(config_file), GIT_CONFIG_NOSYSTEM="1")
    return env


# `make test` runs `pytest -n 2 --dist loadgroup`: each module on one worker, so its module
# fixtures (a bake, a golden path, a converged host on fixed ports) are made once; the image and
# contract tests share a worker because they share one build of the images.
SHARED_WORKER = {"test_images.py": "images", "test_k8s_contract.py": "images"}


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Whole modules to a worker (SHARED_WORKER's pairs together). xdist's own loadgroup marks
    its groups by editing `item._nodeid`, which pytest 9 no longer reads: every test would be
    scheduled on its own and a module's fixtures made on both workers."""
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return SHARED_WORKER.get(Path(module).name, module)

    return ModuleScheduling(config, log)


def kubectl_without_a_cluster(bin_dir: Path, records: Path) -> dict[str, str]:
    """The environment for a `kubectl` first on PATH: `kustomize` runs the real one, `apply`
    keeps what it was given in `records`/applied.yaml (there is no cluster here; APPLY_EXIT=1
    fails it), every call is logged in `records`/kubectl.log."""
    script = bin_dir / "kubectl"
    script.write_text(
        "#!/bin/sh\n"
        'echo "$*" >> "$KUBECTL_LOG"\n'
        f'if [ "$1" = kustomize ]; then exec {shutil.which("kubectl")} "$@"; fi\n'
        'if [ "$1" = apply ]; then cat > "$APPLIED"; exit "${APPLY_EXIT:-0}"; fi\n'
    )
    script.chmod(0o755)
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "KUBECTL_LOG": str(records / "kubectl.log"),
        "APPLIED": str(records / "applied.yaml"),
    }
