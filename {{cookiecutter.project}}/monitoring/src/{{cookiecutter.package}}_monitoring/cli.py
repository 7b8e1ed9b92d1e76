"""`{{ cookiecutter.project }}-monitor`: the drift job, as CI, a CronJob, a timer and the tests
run it, and `monitor`: the drift job, then a retrain when it finds drift.

Exit status (one convention for every command: the README's "Exit codes"):
  0  no drift (for `monitor`: no drift, or drift and the retrained model passed the gate)
  1  failed: the job could not write its reports, or the retrain failed
  2  bad input: missing or malformed data, params or feedback; the last summary is kept
  3  drift detected (for `monitor`: drift, and the retrained model failed the gate)
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

import pandas as pd

from {{ cookiecutter.package }}_core import cli
from {{ cookiecutter.package }}_core.shared import (
    DRIFT,
    DRIFT_SUMMARY_FILE,
    PROJECT,
    VALIDATED_DIR,
    ExitCode,
    model_name,
    model_uri,
    setting,
    tracking_uri,
    write_drift_summary,
)

from .report import print_summary

log = logging.getLogger(__name__)
# `monitor` retrains through the training package's own command (no import: monitoring depends
# on core only).
TRAIN = f"{PROJECT}-train"


def drift(args: argparse.Namespace) -> int:
    from {{ cookiecutter.package }}_core.feedback import read_feedback

    from .drift import read_current, read_reference, run_drift_job

    params = cli.load_params(args.params)
    reference = read_reference(args.reference)
    current = read_current(args.current or Path(params["retrain"]["incoming"]), params["data"])
    feedback = read_feedback(args.feedback, args.since)
    summary = run_drift_job(
        reference,
        current,
        feedback,
        _served_model(args.model_uri or model_uri()),
        _champions(),
        params["monitoring"],
        args.out,
    )
    path = args.out / DRIFT_SUMMARY_FILE
    try:
        write_drift_summary(path, summary)
    except OSError as error:
        raise cli.Failed(f"cannot write {path}: {error}") from error
    print_summary(summary, path)
    return ExitCode.CHECK_FAILED if summary["verdict"] == DRIFT else ExitCode.OK


def monitor(args: argparse.Namespace) -> int:
    code = drift(args)
    if code != ExitCode.CHECK_FAILED:
        return code
    retrain = [TRAIN, "--params", str(args.params), "retrain", "--trigger", "drift"]
    print(f"drift detected: {' '.join(retrain)}", flush=True)
    return subprocess.run(retrain).returncode


def moment(text: str) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date-time") from None
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp


def _served_model(uri: str):
    """The model the API serves, loaded by the same rules; or why it cannot be."""
    from {{ cookiecutter.package }}_core.model_source import load_model

    try:
        return load_model(uri, tracking_uri()).artifact
    except Exception as error:  # any failure: prediction drift is skipped with the reason
        log.warning("prediction drift skipped: cannot load %s: %s", uri, error)
        return f"cannot load the model {uri}: {type(error).__name__}: {error}"


def _champions():
    from {{ cookiecutter.package }}_core.registry import champion_line, client

    return champion_line(client(), model_name())


def build_parser() -> argparse.ArgumentParser:
    parser, command = cli.parser("{{ cookiecutter.project }}-monitor", __doc__)
    parser.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="thresholds (monitoring:)"
    )
    for name, run, summary in (
        ("drift", drift, "data, prediction and online-quality drift"),
        ("monitor", monitor, "the drift job, then `retrain --trigger drift` if it finds drift"),
    ):
        job = command(name, run, summary)
        job.add_argument(
            "--reference",
            type=Path,
            default=VALIDATED_DIR,
            help="the training window: validated events.parquet and items.parquet",
        )
        job.add_argument(
            "--current", type=Path, help="folder with the new raw events (default retrain.incoming)"
        )
        job.add_argument(
            "--feedback",
            type=Path,
            default=Path(setting("EVENTS_LOG")),
            help="the API's feedback events log, or a folder: every *.jsonl in it ($EVENTS_LOG)",
        )
        job.add_argument(
            "--since", type=moment, help="only feedback at or after this ISO date-time (UTC)"
        )
        job.add_argument(
            "--model-uri",
            help="the model to recommend from, as the API's MODEL_URI (default: $MODEL_URI, "
            "else the registry's champion)",
        )
        job.add_argument(
            "--out",
            type=Path,
            default=Path(setting("DRIFT_REPORT_DIR")),
            help="reports folder ($DRIFT_REPORT_DIR)",
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
