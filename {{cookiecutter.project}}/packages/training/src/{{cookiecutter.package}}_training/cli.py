"""`{{ cookiecutter.project }}-train`: the pipeline stages and the tasks around them.

dvc.yaml, the Makefile, CI, Kubernetes Jobs, systemd units and the tests call these commands.

Exit status (one convention for every command: the README's "Exit codes"):
  0  done (for `retrain`: promoted, waiting for approval, or nothing new to train)
  1  failed: something that should have worked did not (a stage crashed, a write failed)
  2  bad input: params, data contract, arguments or missing files; nothing was changed
  3  the promotion gate failed: the candidate is recorded, the champion is unchanged
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

from {{ cookiecutter.package }}_core import cli
from {{ cookiecutter.package }}_core.cli import load_params
from {{ cookiecutter.package }}_core.shared import ExitCode, setting

from .config import Paths

# Stage -> (module, function, summary). Modules are imported only for the command that runs:
# importing scikit-learn or MLflow costs seconds, and the data stages need neither.
STAGES = {
    "ingest": ("data_stages", "ingest", "copy the raw events into the workspace"),
    "validate": ("data_stages", "validate", "apply the data contract"),
    "split": ("data_stages", "split", "temporal hold-out split"),
    "train": ("model_stages", "train", "fit every candidate, write serving artifacts"),
    "evaluate": ("model_stages", "evaluate", "compare the candidates on the same split"),
    "register": ("register", "register", "log the run and register a challenger"),
}
PROJECT = Paths(Path("."))


def run_stage(args: argparse.Namespace) -> None:
    module, function, _ = STAGES[args.command]
    stage = getattr(importlib.import_module(f".{module}", __package__), function)
    report = stage(load_params(args.params), PROJECT)
    if args.command == "evaluate":
        from .evaluation_report import table

        # Hundreds of figures are too many to read: the table, and where the rest are.
        print(table(report))
    else:
        print(json.dumps(report, indent=2, default=str))


def promote(args: argparse.Namespace) -> None:
    from .gate import promote_if_better
    from .gate_report import explain, outcome

    decision = promote_if_better(load_params(args.params), PROJECT)
    print("\n".join([*explain(decision), outcome(decision)]))


def pipeline(args: argparse.Namespace) -> int:
    from .pipeline import run_pipeline, uncommitted_outputs

    code = run_pipeline(load_params(args.params), PROJECT, args.trigger)
    if code == ExitCode.OK:
        _name_uncommitted(uncommitted_outputs(PROJECT))
    return code


def _name_uncommitted(changed: list[str]) -> None:
    if changed:
        print(
            f"to record this run in git: git add {' '.join(changed)} && "
            "git commit -m 'Pipeline run'",
            file=sys.stderr,
        )


def retrain(args: argparse.Namespace) -> int:
    from .pipeline import run_pipeline, uncommitted_outputs
    from .retrain import NothingToIngest, ingest_incoming, outcome

    params = load_params(args.params)
    registered = PROJECT.reports / "registered.json"
    before = json.loads(registered.read_text())["version"] if registered.is_file() else None
    try:
        report = ingest_incoming(params, PROJECT)
        print(
            f"ingested {report['new_rows']:,} new rows from {report['incoming']}: "
            f"{report['rows']:,} rows from {report['window_start'][:10]} to "
            f"{report['window_end'][:10]}; moved the folder to {report['archived_to']}"
        )
    except NothingToIngest as nothing:
        print(f"{nothing}; the pipeline runs on the data it has")
    code = run_pipeline(params, PROJECT, args.trigger)
    decision = outcome(PROJECT, before)
    if code not in (ExitCode.OK, ExitCode.CHECK_FAILED):
        return code
    if decision is None:
        print("no new model version: data and params are unchanged")
    elif decision["decision"] == "fail":
        return code  # the gate printed why
    elif decision["champion_moved"]:
        print(f"v{decision['version']} passed the gate and is the champion")
    else:
        print(
            f"v{decision['version']} passed the gate and waits for approval as challenger: "
            f"make approve VERSION={decision['version']} REASON=..."
        )
    _name_uncommitted(uncommitted_outputs(PROJECT))
    return code


def generate_data(args: argparse.Namespace) -> None:
    from .synthetic import generate, write_dataset

    settings = {**load_params(args.params)["synthetic"]}
    overrides = {
        "seed": args.seed,
        "start": args.start,
        "days": args.days,
        "n_events": args.events,
        "drift": args.drift,
    }
    settings.update({key: value for key, value in overrides.items() if value is not None})
    started = time.perf_counter()
    events, items = generate(**settings)
    write_dataset(events, items, args.out)
    print(
        f"wrote {len(events):,} events, {events['user_id'].nunique():,} users, "
        f"{len(items):,} items to {args.out} in {time.perf_counter() - started:.1f}s"
    )


def tune(args: argparse.Namespace) -> None:
    from .tune import TUNED_PARAMS, tune

    models = args.models.split(",") if args.models else None
    report = tune(load_params(args.params), PROJECT, models, args.trials, args.timeout)
    print(f"{report['metric']} on the validation window, settings in use -> best:")
    for name, result in report["models"].items():
        if "best" in result:
            print(f"  {name:<10} {result['current']:.4f} -> {result['best']:.4f}")
        else:
            print(f"  {name:<10} not tuned: {result['skipped']}")
    print(f"wrote {TUNED_PARAMS}; `make pipeline` retrains with it (git add it to keep it)")


def apply_params(args: argparse.Namespace) -> None:
    from .config import merge_params_file

    overlay = load_params(args.overlay)
    load_params(args.params)  # a missing or malformed params file is bad input, as everywhere
    merge_params_file(args.params, overlay)
    print(f"merged {', '.join(overlay)} from {args.overlay} into {args.params}")


def build_parser() -> argparse.ArgumentParser:
    parser, command = cli.parser("{{ cookiecutter.project }}-train", __doc__)
    parser.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="the pipeline's settings"
    )

    for name, (_, _, summary) in STAGES.items():
        command(name, run_stage, summary)
    command("promote", promote, "the promotion gate: champion only if the candidate is better")

    trigger = {
        "default": setting("PIPELINE_TRIGGER"),
        "help": "why it runs (schedule, drift, manual): recorded on the new version "
        "($PIPELINE_TRIGGER)",
    }
    run_all = command("pipeline", pipeline, "dvc repro: every stage that is out of date")
    run_all.add_argument("--trigger", **trigger)
    again = command("retrain", retrain, "ingest new events, then the pipeline and the gate")
    again.add_argument("--trigger", **trigger)

    data = command("generate-data", generate_data, "write seeded synthetic e-commerce events")
    data.add_argument("--out", type=Path, default=Path("data/raw"), help="folder to write")
    data.add_argument("--seed", type=int, help="random seed (default: synthetic.seed)")
    data.add_argument("--start", help="first day, e.g. 2026-02-02 (default: synthetic.start)")
    data.add_argument("--days", type=int, help="length of the window (default: synthetic.days)")
    data.add_argument("--events", type=int, help="events in the window (synthetic.n_events)")
    data.add_argument(
        "--drift", type=float, help="0 = same distribution, 1 = strongly shifted (synthetic.drift)"
    )

    search = command("tune", tune, "search each model's settings on a validation window (Optuna)")
    search.add_argument("--models", help="comma-separated (default: tune.models)")
    search.add_argument("--trials", type=int, help="per model (default: tune.trials)")
    search.add_argument(
        "--timeout", type=float, help="seconds per model (default: tune.timeout_seconds)"
    )

    overlay = command("apply-params", apply_params, "merge a params file (e.g. an example) in")
    overlay.add_argument("overlay", type=Path, help="the params file to merge into --params")
    return parser


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
