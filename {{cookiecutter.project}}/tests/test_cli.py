"""The commands on bad input: a clear message naming file, row and column, exit status 2, no
output; and every command and flag of every console script explains itself."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import pytest
import yaml

from {{ cookiecutter.package }}_api import cli as api_cli
from {{ cookiecutter.package }}_batch import cli as batch_cli
from {{ cookiecutter.package }}_core.shared import ExitCode
from {{ cookiecutter.package }}_core.template import TEMPLATE
from {{ cookiecutter.package }}_monitoring import cli as monitoring_cli
from {{ cookiecutter.package }}_registry import cli as registry_cli
from {{ cookiecutter.package }}_training import cli as training_cli
from {{ cookiecutter.package }}_training.cli import main

EXIT_BAD_INPUT = ExitCode.BAD_INPUT

GOOD_ROWS = [
    "user_id,item_id,event_type,timestamp",
    "u1,i1,view,2026-01-05T10:00:00",
    "u1,i2,purchase,2026-01-05T10:05:00",
    "u2,i1,add_to_cart,2026-01-06T09:00:00",
]


@pytest.fixture
def tiny_project(tmp_path, monkeypatch, project_params) -> Path:
    params = copy.deepcopy(project_params)
    params["data"]["source"] = "data/raw/events.csv"
    params["data"]["items"] = None
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "data" / "raw").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_events(project: Path, rows: list[str]) -> None:
    (project / "data" / "raw" / "events.csv").write_text("\n".join(rows) + "\n")


def test_valid_events_pass_ingest_and_validate(tiny_project):
    write_events(tiny_project, GOOD_ROWS)
    assert main(["ingest"]) == 0
    assert main(["validate"]) == 0
    assert (tiny_project / "data" / "validated" / "events.parquet").is_file()


@pytest.mark.parametrize(
    ("line", "replacement", "expected"),
    [
        (2, "u1,i1,view,2026-13-45T10:00:00", ["row 3", "'timestamp'"]),
        (3, "u2,i1,wishlist,2026-01-06T09:00:00", ["row 4", "'event_type'", "wishlist"]),
        (1, "u1,i2,view,2099-01-01T00:00:00", ["row 2", "'timestamp'", "future"]),
    ],
)
def test_malformed_rows_are_rejected_with_row_and_column(
    tiny_project, capsys, line, replacement, expected
):
    rows = list(GOOD_ROWS)
    rows[line] = replacement
    write_events(tiny_project, rows)
    assert main(["ingest"]) == 0
    assert main(["validate"]) == EXIT_BAD_INPUT
    message = capsys.readouterr().err
    assert "data/raw/events.csv" in message
    for fragment in expected:
        assert fragment in message
    assert not (tiny_project / "data" / "validated").exists()


def test_missing_column_is_named(tiny_project, capsys):
    write_events(tiny_project, [row.rsplit(",", 1)[0] for row in GOOD_ROWS])
    assert main(["ingest"]) == 0
    assert main(["validate"]) == EXIT_BAD_INPUT
    assert "timestamp" in capsys.readouterr().err


def test_missing_source_file_is_a_clear_error(tiny_project, capsys):
    assert main(["ingest"]) == EXIT_BAD_INPUT
    assert "events.csv" in capsys.readouterr().err


def test_promote_before_register_says_what_to_run(tiny_project, capsys):
    assert main(["promote"]) == EXIT_BAD_INPUT
    assert "registered.json not found; run the earlier pipeline stages first" in (
        capsys.readouterr().err
    )


def test_pipeline_before_make_data_names_the_command(tiny_project, capsys):
    assert main(["pipeline"]) == EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert "data/raw/events.csv not found: `make data` writes synthetic events there" in error
    assert "data.source" in error


def test_a_missing_params_file_is_bad_input(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["validate"]) == EXIT_BAD_INPUT
    assert "params.yaml not found; run from the project root" in capsys.readouterr().err


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


@pytest.mark.parametrize(
    "module", [training_cli, registry_cli, batch_cli, monitoring_cli], ids=lambda m: m.__name__
)
def test_every_command_and_flag_has_help(module):
    parser = module.build_parser()
    assert "Exit status" in parser.description
    for name, command in subcommands(parser).items():
        assert command.description, f"{name} has no description"
        for action in command._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.option_strings or action.dest} has no help"


@pytest.mark.parametrize(
    "module",
    [training_cli, registry_cli, batch_cli, monitoring_cli, api_cli],
    ids=lambda m: m.__name__,
)
def test_every_console_script_names_its_template_release(module, capsys):
    with pytest.raises(SystemExit) as exit_:
        module.build_parser().parse_args(["--version"])
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    assert f"cookiecutter-unified-mlops {TEMPLATE['version']}" in printed
    assert TEMPLATE["commit"][:12] in printed


def test_a_split_that_leaves_no_test_period_is_bad_input(tiny_project, capsys):
    write_events(tiny_project, GOOD_ROWS)
    params = yaml.safe_load((tiny_project / "params.yaml").read_text())
    params["split"]["cutoff"] = "2030-01-01"
    (tiny_project / "params.yaml").write_text(yaml.safe_dump(params))
    assert main(["ingest"]) == 0
    assert main(["validate"]) == 0
    assert main(["split"]) == EXIT_BAD_INPUT
    assert "a split at 2030-01-01 leaves 3 train events and 0 test pairs" in capsys.readouterr().err
    assert not (tiny_project / "data" / "split").exists()
