"""The frame every console script shares: JSON logs, errors turned into the documented exit
codes (`shared.ExitCode`), and the code passed on to `<project>-train pipeline` under DVC.

Domain code raises `BadInput`, `CheckFailed` or `Failed` (or a subclass); the commands only parse,
call and print.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from .shared import ExitCode, configure_logging
from .template import describe

# Set by `<project>-train pipeline` around `dvc repro`: a stage that fails writes its exit code
# here, because DVC itself exits 255 whatever the stage returned.
EXIT_STATUS_FILE = "PIPELINE_EXIT_STATUS_FILE"


class BadInput(Exception):
    """Arguments, params, data or files at fault; nothing was changed (exit 2)."""


class CheckFailed(Exception):
    """The command ran and its check says no: a gate, a drift check, an SLO (exit 3)."""


class Failed(Exception):
    """Something that should have worked did not; nothing visible was changed (exit 1)."""


def load_params(path: Path = Path("params.yaml")) -> dict[str, Any]:
    """params.yaml as a dict, with the files its `include` list names merged over it in order
    (paths relative to it; `make tune` writes one, and one not written yet is skipped). A
    missing or malformed params file is BadInput."""
    params = _read_mapping(path)
    for name in params.get("include") or []:
        if (path.parent / name).is_file():
            params = merge_params(params, _read_mapping(path.parent / name))
    return params


def _read_mapping(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BadInput(f"{path} not found; run from the project root")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise BadInput(f"{path} is not valid YAML: {error}") from error
    if not isinstance(params, dict):
        raise BadInput(f"{path} must be a YAML mapping")
    return params


def merge_params(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overlay` merged in, section by section (nested mappings merge, rest replace)."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and value:
            merged[key] = merge_params(merged[key], value)
        else:
            merged[key] = value
    return merged


Command = Callable[[argparse.Namespace], "int | None"]


def parser(prog: str, description: str | None) -> tuple[argparse.ArgumentParser, Callable]:
    """A parser whose help shows every default, and a function that adds a subcommand."""
    main = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_version(main)
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Command, summary: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=summary,
            description=summary,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        sub.set_defaults(run=run)
        return sub

    return main, command


def add_version(main: argparse.ArgumentParser) -> None:
    """`--version`: the template release and commit the project was generated from."""
    main.add_argument(
        "--version", action="version", version=f"%(prog)s: generated from {describe()}"
    )


def run(main: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse, run the chosen command and turn its outcome into an exit code."""
    configure_logging()
    args = main.parse_args(argv)
    try:
        code = int(args.run(args) or ExitCode.OK)
    except BadInput as error:
        code = _fail(f"ERROR: {error}", ExitCode.BAD_INPUT)
    except CheckFailed as error:
        code = _fail(str(error), ExitCode.CHECK_FAILED)
    except Failed as error:
        code = _fail(f"ERROR: {error}", ExitCode.FAILED)
    status_file = os.environ.get(EXIT_STATUS_FILE)
    if status_file and code != ExitCode.OK:
        Path(status_file).write_text(f"{code}\n")
    return code


def _fail(message: str, code: ExitCode) -> int:
    print(message, file=sys.stderr)
    return int(code)
