"""`apply-params` merges a params file in and keeps params.yaml's comments, where its settings
are documented, with the key order and the `[a, b]` lists."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import yaml

from {{ cookiecutter.package }}_training.cli import main
from {{ cookiecutter.package }}_training.config import merge_params

PROJECT_ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = PROJECT_ROOT / "examples" / "online_retail.params.yaml"


def keys(mapping: dict, prefix: str = "") -> list[str]:
    """Every key path, in file order."""
    found = []
    for key, value in mapping.items():
        found.append(f"{prefix}{key}")
        if isinstance(value, dict):
            found += keys(value, f"{prefix}{key}.")
    return found


def test_the_example_merges_in_and_every_comment_and_the_key_order_survive(tmp_path, capsys):
    params_file = tmp_path / "params.yaml"
    shutil.copy(PROJECT_ROOT / "params.yaml", params_file)
    before = params_file.read_text()
    assert main(["--params", str(params_file), "apply-params", str(EXAMPLE)]) == 0
    assert "merged data, split" in capsys.readouterr().out
    after = params_file.read_text()

    comments = [line.strip() for line in before.splitlines() if line.strip().startswith("#")]
    kept = {line.strip() for line in after.splitlines()}
    assert comments and [line for line in comments if line not in kept] == []

    merged = yaml.safe_load(after)
    assert merged == merge_params(yaml.safe_load(before), yaml.safe_load(EXAMPLE.read_text()))
    assert merged["data"]["source"] == "data/raw/online_retail.csv.gz"
    original = yaml.safe_load(before)
    assert merged["split"]["cutoff"] == "2011-10-01"
    # The example maps data and split only: its model settings are for `make tune` to choose.
    assert merged["model"] == original["model"] and merged["matrix"] == original["matrix"]
    # Keys in both keep the file's order (keys only the example has go at the end of their
    # section; an empty mapping such as `event_types: {}` replaces the file's).
    common = set(keys(merged)) & set(keys(original))
    order = [key for key in keys(original) if key in common]
    assert [key for key in keys(merged) if key in common] == order
    assert len(order) > 60
    assert merged["synthetic"] == original["synthetic"] and merged["gate"] == original["gate"]
    # The file's own style: `null`, not an empty value; lists of plain values on one line.
    assert re.search(r"^  items: null$", after, re.M)
    assert re.search(r"^  relevant_events: \[purchase\]$", after, re.M)
    assert re.search(r"^  ignore_columns: \[Description, UnitPrice, Country\]$", after, re.M)
    assert re.search(r"^    - reason: no customer$", after, re.M)


def test_an_overlay_that_changes_nothing_leaves_the_file_as_it_was(tmp_path):
    params_file = tmp_path / "params.yaml"
    shutil.copy(PROJECT_ROOT / "params.yaml", params_file)
    overlay = tmp_path / "same.yaml"
    overlay.write_text("gate:\n  metric: ndcg_at_10\nsplit:\n  cutoff: null\n")
    assert main(["--params", str(params_file), "apply-params", str(overlay)]) == 0
    assert params_file.read_text() == (PROJECT_ROOT / "params.yaml").read_text()
