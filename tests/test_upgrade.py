"""The upgrade path of a generated project, for real: a project made with `cruft create` from an
older commit of the template (a fixture tag in a temporary template repository), changed the way
its team would change it, is brought to the template's newest commit by `cruft update`. The
update applies cleanly, the team's changes survive, no `.rej` file is left, the changes to the
payload and to the vendored modules (k8s, ansible, ci) arrive, and the upgraded project passes
its fast tests. A project made by plain `cookiecutter` at the same tag is linked with
`make template-link` at the commit it records, and the same update then reaches it. Slow: it
installs the project.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import (
    PAYLOAD_DIR,
    TEMPLATE_ROOT,
    answers_for,
    isolated_env,
    make,
    run,
    tool,
    write_cookiecutter_config,
)
from test_generation_sources import (
    PROJECT,
    cruft_create,
    git,
    head,
    make_template_repository,
    recorded_template,
)

pytestmark = pytest.mark.slow

PACKAGE = answers_for({})["package"]
PAYLOAD = PAYLOAD_DIR.name
OLD_TAG = "fixture-old"


def edit(path: Path, old: str, new: str) -> None:
    """Replace `old` (found exactly once) by `new`: the edit must still fit the file."""
    text = path.read_text()
    assert text.count(old) == 1, f"{path}: {old!r} found {text.count(old)} times"
    path.write_text(text.replace(old, new))


K8S_README_FIRST_LINE = (TEMPLATE_ROOT / "k8s" / "README.md").read_text().splitlines(True)[0]
K8S_README_ADDED = "\n(template 0.1.1) The module's README, vendored by the hook.\n"
# A template release after the fixture: (file in the template, old text, new text). One change
# to the payload's params, a model module and a manifest, one to each vendored module.
TEMPLATE_CHANGES = [
    (
        f"{PAYLOAD}/params.yaml",
        "monitoring:\n",
        "monitoring:\n  # (template 0.1.1) Every threshold below is read by `make drift`.\n",
    ),
    (
        f"{PAYLOAD}/packages/core/src/{{{{cookiecutter.package}}}}_core/models.py",
        "B = -P / diag(P) with P = (X^T X + lambda * I)^-1. `l2`",
        "B = -P / diag(P) with P = (X^T X + lambda * I)^-1 (template 0.1.1: the same closed form,\n"
        "    reworded). `l2`",
    ),
    (
        f"{PAYLOAD}/k8s/base/kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1beta1\n",
        "# (template 0.1.1) Render an environment with `make k8s-render ENV=<env>`.\n"
        "apiVersion: kustomize.config.k8s.io/v1beta1\n",
    ),
    ("k8s/README.md", K8S_README_FIRST_LINE, K8S_README_FIRST_LINE + K8S_README_ADDED),
    (
        "ansible/roles/recsys_api/defaults/main.yml",
        "---\n# The recommendation API on a serving host:",
        "---\n# (template 0.1.1) Converge with `make provision`.\n"
        "# The recommendation API on a serving host:",
    ),
    (
        "ci/github/workflows/code-ci.yml",
        "  lint:\n    runs-on: ubuntu-latest\n    timeout-minutes: 20\n",
        "  lint:\n    runs-on: ubuntu-latest\n    timeout-minutes: 25\n",
    ),
]
# Where each template change lands in the project, and the line that proves it arrived.
ARRIVED = {
    "params.yaml": "# (template 0.1.1) Every threshold below",
    f"packages/core/src/{PACKAGE}_core/models.py": "(template 0.1.1: the same closed form",
    "k8s/base/kustomization.yaml": "# (template 0.1.1) Render an environment",
    "k8s/README.md": K8S_README_ADDED.strip(),
    "ansible/roles/recsys_api/defaults/main.yml": "# (template 0.1.1) Converge",
    ".github/workflows/code-ci.yml": "    timeout-minutes: 25\n",
}

# What a team changes in its project: a new param, an edited model, an extra endpoint test and a
# changed overlay (project file, old text, new text).
USER_CHANGES = [
    (
        "params.yaml",
        "  similar_n: 50\n",
        "  similar_n: 50\n  # Ours: how many items the product page explains.\n  explain_top: 3\n",
    ),
    (
        f"packages/core/src/{PACKAGE}_core/models.py",
        "    def __init__(self, n_neighbors: int = 200, shrink: float = 0.0) -> None:\n",
        "    def __init__(self, n_neighbors: int = 150, shrink: float = 0.0) -> None:\n",
    ),
    (
        "k8s/overlays/dev/kustomization.yaml",
        "        path: /spec/maxReplicas\n        value: 2\n",
        "        path: /spec/maxReplicas\n        value: 3\n",
    ),
]
USER_TEST = "packages/api/tests/test_ours.py"
USER_TEST_TEXT = '''"""Ours: the model endpoint names the version it serves."""


def test_model_endpoint_names_the_served_version(client):
    response = client.get("/v1/model")
    assert response.status_code == 200
    assert response.get_json()["version"] == response.headers["X-Model-Version"]
'''


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template repository: the fixture tag, then one release on top of it."""
    repository = make_template_repository(tmp_path_factory.mktemp("upgrade") / "template")
    git("tag", OLD_TAG, cwd=repository)
    for relative, old, new in TEMPLATE_CHANGES:
        edit(repository / relative, old, new)
    (repository / "VERSION").write_text("0.1.1\n")
    git("commit", "--quiet", "--all", "-m", "Template 0.1.1", cwd=repository)
    return repository


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory: pytest.TempPathFactory, template: Path, env) -> Path:
    """A project made at the fixture tag, changed by its team, then `cruft update`d."""
    output = tmp_path_factory.mktemp("upgrade-project")
    project = cruft_create(template, output, env, checkout=OLD_TAG)
    assert json.loads((project / ".cruft.json").read_text())["commit"] == head(template, OLD_TAG)
    for relative, old, new in USER_CHANGES:
        edit(project / relative, old, new)
    (project / USER_TEST).write_text(USER_TEST_TEXT)
    git("add", "--all", cwd=project)
    git("commit", "--quiet", "-m", "Our changes", cwd=project)

    result = run([tool("cruft"), "update", "--skip-apply-ask"], cwd=project, env=env)
    assert "conflict" not in (result.stdout + result.stderr).lower()
    return project


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    workspace = tmp_path_factory.mktemp("upgrade-env")
    return isolated_env(workspace / "home", write_cookiecutter_config(workspace / "cookiecutter"))


def test_the_update_reaches_the_newest_commit(upgraded: Path, template: Path):
    assert json.loads((upgraded / ".cruft.json").read_text())["commit"] == head(template)
    assert recorded_template(upgraded) == {
        "name": "cookiecutter-unified-mlops",
        "version": "0.1.1",
        "commit": head(template),
    }


def test_the_template_changes_arrive_in_the_payload_and_the_vendored_modules(upgraded: Path):
    for relative, line in ARRIVED.items():
        assert line in (upgraded / relative).read_text(), f"{relative}: the update did not arrive"


def test_the_teams_changes_survive_and_nothing_is_left_to_resolve(upgraded: Path):
    for relative, _old, new in USER_CHANGES:
        assert new in (upgraded / relative).read_text(), f"{relative}: our change was lost"
    assert (upgraded / USER_TEST).read_text() == USER_TEST_TEXT
    status = git("status", "--porcelain", "--untracked-files=all", cwd=upgraded).splitlines()
    assert not [line for line in status if line.endswith((".rej", ".orig"))], status
    changed = [line[3:] for line in status]
    for relative in changed:
        path = upgraded / relative
        if path.is_file():
            assert "<<<<<<<" not in path.read_text(errors="replace"), f"{relative}: conflict"
    # What the update touched, and only that: the template's changes, template.json, .cruft.json.
    assert sorted(changed) == sorted(
        [*ARRIVED, f"packages/core/src/{PACKAGE}_core/template.json", ".cruft.json"]
    )


def test_the_upgraded_project_passes_its_fast_tests(upgraded: Path):
    git("add", "--all", cwd=upgraded)
    git("commit", "--quiet", "-m", "Template 0.1.1 via cruft update", cwd=upgraded)
    make(upgraded, "setup")
    result = make(upgraded, "test-fast")
    assert " passed" in result.stdout and " failed" not in result.stdout
    ours = run([".venv/bin/pytest", USER_TEST, "-q"], cwd=upgraded)
    assert "1 passed" in ours.stdout


# --- A project made with plain cookiecutter: linked at its commit, then updated -------------------


@pytest.fixture(scope="module")
def linked(tmp_path_factory: pytest.TempPathFactory, template: Path, env) -> Path:
    """A project made by plain `cookiecutter` at the fixture tag, then `make template-link`ed."""
    output = tmp_path_factory.mktemp("plain-project")
    url = f"git+file://{template}"
    run([tool("cookiecutter"), "--no-input", "--checkout", OLD_TAG, "-o", str(output), url],
        output, env)  # fmt: skip
    project = output / PROJECT
    assert recorded_template(project)["commit"] == head(template, OLD_TAG)
    # uv's own cache, so the cruft tool environment is not downloaded again under the test HOME.
    uv_cache = os.environ.get("UV_CACHE_DIR") or str(Path.home() / ".cache" / "uv")
    linking = {**env, "UV_CACHE_DIR": uv_cache}
    make(project, "template-link", f"TEMPLATE=file://{template}", env=linking)
    git("add", ".cruft.json", cwd=project)
    git("commit", "--quiet", "-m", "Link to the template", cwd=project)
    return project


def test_a_linked_project_starts_from_the_commit_it_was_made_from(linked: Path, template: Path):
    state = json.loads((linked / ".cruft.json").read_text())
    assert state["commit"] == head(template, OLD_TAG)  # not the template's newest commit
    behind = make(linked, "template-check", "STRICT=1", check=False)
    assert behind.returncode != 0 and "Error 3" in behind.stderr, behind.stdout + behind.stderr


def test_the_update_then_arrives_in_a_linked_project(linked: Path, template: Path, env):
    run([tool("cruft"), "update", "--skip-apply-ask"], cwd=linked, env=env)
    assert json.loads((linked / ".cruft.json").read_text())["commit"] == head(template)
    for relative, line in ARRIVED.items():
        assert line in (linked / relative).read_text(), f"{relative}: the update did not arrive"
