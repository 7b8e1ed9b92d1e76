"""`{{ cookiecutter.project }}-monitor`: the drift job, as CI, a CronJob, a timer and the tests run it.

Exit status: 0 no drift, 3 drift detected, 2 bad input or the job could not run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import pandas as pd
import yaml

from {{ cookiecutter.package }}_core.artifact import ArtifactError, ServingArtifact
from {{ cookiecutter.package }}_core.contract import DataContractError
from {{ cookiecutter.package }}_core.feedback import read_feedback

from .drift import read_current, read_reference, run_drift_job

EXIT_NO_DRIFT, EXIT_ERROR, EXIT_DRIFT = 0, 2, 3


def drift(args: argparse.Namespace) -> int:
    params = yaml.safe_load(args.params.read_text())
    settings = params["monitoring"]
    model = args.model or Path("models") / params["model"]["name"]
    try:
        reference = read_reference(args.reference)
        current = read_current(args.current or Path(params["retrain"]["incoming"]), params["data"])
        since = pd.Timestamp(args.since).tz_localize(None) if args.since else None
        feedback = read_feedback(args.feedback, since)
        artifact = ServingArtifact.load(model) if model.is_dir() else None
        summary = run_drift_job(reference, current, feedback, artifact, settings, args.out)
    except (DataContractError, ArtifactError, FileNotFoundError, ValueError) as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return EXIT_ERROR
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "summary.json"
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(summary, indent=2) + "\n")
    temporary.replace(path)  # the API may read it at any moment: never half-written
    print_summary(summary, path)
    return EXIT_DRIFT if summary["verdict"] == "drift" else EXIT_NO_DRIFT


def print_summary(summary: dict, path: Path) -> None:
    data, predictions = summary["data_drift"], summary["prediction_drift"]
    current = summary["current"]
    print(f"current window: {current['events']:,} events {current['start']} .. {current['end']}")
    print(
        f"data drift: {'DRIFT' if data['drifted'] else 'ok'} "
        f"(drifted share {data['drifted_share']:.2f}, threshold {data['drift_share_threshold']})"
    )
    for column, check in data["columns"].items():
        flag = "DRIFT" if check["drifted"] else "ok"
        print(f"  {column:<18}{check['method']:<32}{check['score']:>10.4f}  {flag}")
    for kind, check in data["unknown"].items():
        flag = "DRIFT" if check["drifted"] else "ok"
        print(f"  unknown {kind:<10}share{check['share']:>33.4f}  {flag} (max {check['max']})")
    if "skipped" in predictions:
        print(f"prediction drift: skipped ({predictions['skipped']})")
    else:
        print(
            f"prediction drift: {'DRIFT' if predictions['drifted'] else 'ok'} "
            f"(drifted share {predictions['drifted_share']:.2f}, coverage ratio "
            f"{predictions['coverage']['ratio']})"
        )
    quality = summary["online_quality"]
    for version, entry in quality["versions"].items():
        print(
            f"online quality v{version}: {entry['impressions']:,} impressions, "
            f"ctr {entry['ctr']}, purchase rate {entry['purchase_rate']}"
        )
    print(f"quality: {'DROP' if quality['drop'] else 'ok'} ({quality['reason']})")
    print(f"verdict: {summary['verdict'].upper()}; summary in {path}")


def bench_drift(args: argparse.Namespace) -> int:
    from .bench import run_benchmark  # the benchmark's data generator: not for the drift job

    return run_benchmark(yaml.safe_load(args.params.read_text()), args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="{{ cookiecutter.project }}-monitor", description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    commands = parser.add_subparsers(dest="command", required=True)
    job = commands.add_parser("drift", help="data, prediction and online-quality drift")
    job.add_argument(
        "--reference",
        type=Path,
        default=Path("data/validated"),
        help="the training window: validated events.parquet and items.parquet",
    )
    job.add_argument(
        "--current", type=Path, help="folder with the new raw events (default retrain.incoming)"
    )
    job.add_argument(
        "--feedback",
        type=Path,
        default=Path("logs/feedback-events.jsonl"),
        help="the API's feedback events log",
    )
    job.add_argument("--since", help="only feedback at or after this ISO time")
    job.add_argument("--model", type=Path, help="serving artifact (default models/<model.name>)")
    job.add_argument("--out", type=Path, default=Path("reports/drift"))
    job.set_defaults(run=drift)
    bench = commands.add_parser("bench-drift", help="the drift job's time and peak memory")
    bench.add_argument("--sizes", default="100000,1000000", help="events per window (each side)")
    bench.set_defaults(run=bench_drift)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
