"""`model-card`: the card of a registered version, filled from the registry and its training run.

Against a real (SQLite) MLflow registry: v1 is registered and promoted by the gate, v2 only
registered (never gated). Then the workspace's reports are deleted, so every figure on the card
has to come from the registry and the run's artifacts.
"""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import pytest

from {{ cookiecutter.package }}_core import registry
from {{ cookiecutter.package }}_core.shared import ExitCode, model_name
from {{ cookiecutter.package }}_registry.cli import main
from {{ cookiecutter.package }}_training import gate, register
from {{ cookiecutter.package }}_training.config import Paths

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def carded_project(evaluated_project, tmp_path_factory) -> tuple[dict, Path]:
    """v1 champion (through the gate), v2 registered only; no reports left in the workspace."""
    params, source = evaluated_project
    params = copy.deepcopy(params)
    root = tmp_path_factory.mktemp("model-card") / "project"
    shutil.copytree(source.root, root)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        patch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        paths = Paths(root)
        register.register(params, paths)
        gate.promote_if_better(params, paths)
        register.register(params, paths)
    shutil.rmtree(root / "reports")
    return params, root


@pytest.fixture
def project(carded_project, monkeypatch) -> tuple[dict, Path]:
    params, root = carded_project
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    return params, root


def test_the_champions_card_is_filled_from_the_registry(project, capsys):
    params, root = project
    assert main(["model-card"]) == 0
    assert "v1 (champion)" in capsys.readouterr().out
    card = (root / "reports/model-card.md").read_text()
    tags = registry.client().get_model_version(model_name(), "1").tags
    model = params["model"]["name"]

    assert card.startswith(f"# Model card: {model_name()} v1 (champion)")
    assert tags["dvc_data_hash"] in card
    assert tags["template"] in card
    # The registered model's row holds its metric tags (4 decimals), then the other candidates.
    row = next(line for line in card.splitlines() if line.startswith(f"| **{model}**"))
    for key in ("ndcg_at_10", "recall_at_10", "map_at_10", "coverage_at_10"):
        assert f"| {float(tags[f'metric.{key}']):.4f} |" in row, key
        assert f"| `metric.{key}` (version tag) | {tags[f'metric.{key}']} |" in card
    for candidate in params["model"]["candidates"]:
        assert re.search(rf"^\| (\*\*)?{candidate}\b", card, re.MULTILINE), candidate
    # The gate's decision as the gate tagged it, and who promoted it.
    assert f"| decision | {tags['gate.decision']} |" in card
    assert tags["gate.reason"] in card
    assert f"{tags['promoted_at']} by {tags['promoted_by']}" in card
    for section in ("Data", "Evaluation", "Gate decision", "Intended use", "Limits"):
        assert f"\n## {section}\n" in card
    assert "## Cold-start behaviour" in card and "popularity" in card
    # The plots: files beside the Markdown card, inline SVG in the HTML page.
    for plot in ("ndcg_at_k.svg", "recall_at_k.svg"):
        assert f"](model-card-plots/{plot})" in card
        assert (root / "reports/model-card-plots" / plot).read_text().lstrip().startswith("<")
    page = (root / "reports/model-card.html").read_text()
    assert page.count("<svg") == 2 and "<img" not in page
    assert tags["dvc_data_hash"] in page and "<?xml" not in page


def test_a_version_never_gated_says_so(project, capsys, tmp_path):
    out = tmp_path / "v2.md"
    assert main(["model-card", "--version", "2", "--out", str(out), "--no-html"]) == 0
    card = out.read_text()
    assert card.startswith(f"# Model card: {model_name()} v2 (challenger)")
    assert "not gated" in card and "never champion" in card
    assert not out.with_suffix(".html").exists()


def test_an_unknown_version_is_bad_input(project, capsys):
    assert main(["model-card", "--version", "9"]) == ExitCode.BAD_INPUT
    assert "no version '9'" in capsys.readouterr().err


def test_without_a_champion_the_card_asks_for_a_version(registry_project, capsys):
    params, paths = registry_project
    register.register(params, paths)
    assert main(["model-card"]) == ExitCode.BAD_INPUT
    assert "no champion" in capsys.readouterr().err
    assert not (paths.root / "reports/model-card.md").exists()
