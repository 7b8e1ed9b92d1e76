"""`{{ cookiecutter.project }}` command line: one subcommand per pipeline stage and task.

dvc.yaml, the Makefile, CI, Kubernetes Jobs and the tests all call these same commands.
Exit status: 0 success, 1 gate failed, 2 bad input (data contract, arguments, missing files).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from {{ cookiecutter.package }}_core.artifact import ArtifactError
from {{ cookiecutter.package }}_core.contract import DataContractError

from .config import Paths, load_params

EXIT_GATE_FAILED = EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        return json.dumps(entry)


# Stage -> (module, function). Modules are imported only for the command that runs: importing
# scikit-learn or MLflow costs seconds, and the data stages need neither.
STAGES = {
    "ingest": ("data_stages", "ingest", "copy the raw events into the workspace"),
    "validate": ("data_stages", "validate", "apply the data contract"),
    "split": ("data_stages", "split", "temporal hold-out split"),
    "train": ("model_stages", "train", "fit every candidate, write serving artifacts"),
    "evaluate": ("model_stages", "evaluate", "compare the candidates on the same split"),
    "register": ("registry", "register", "log the run and register a challenger"),
}


def run_stage(args: argparse.Namespace) -> int:
    module, function, _ = STAGES[args.command]
    stage: Callable[[dict[str, Any], Paths], dict[str, Any]] = getattr(
        importlib.import_module(f".{module}", __package__), function
    )
    result = stage(load_params(args.params), Paths(Path(".")))
    print(json.dumps(result, indent=2, default=str))
    return 0


def generate_data(args: argparse.Namespace) -> int:
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
    write_dataset(events, items, Path(args.out))
    print(
        f"wrote {len(events):,} events, {events['user_id'].nunique():,} users, "
        f"{len(items):,} items to {args.out} in {time.perf_counter() - started:.1f}s"
    )
    return 0


def promote(args: argparse.Namespace) -> int:
    from .registry import GateFailed, promote_if_better

    try:
        decision = promote_if_better(load_params(args.params), Paths(Path(".")))
    except GateFailed as failure:
        print(f"GATE FAILED: {failure}; the champion is unchanged", file=sys.stderr)
        return EXIT_GATE_FAILED
    print(f"promoted version {decision['version']} to champion: {decision['reason']}")
    return 0


def recommend(args: argparse.Namespace) -> int:
    from .registry import download_artifact

    params = load_params(args.params)
    artifact = download_artifact(params["registry"]["model_name"], args.model)
    users = args.user or [str(user) for user in artifact.user_ids[: args.sample_users]]
    version = artifact.metadata.get("model", "?")
    for user in users:
        answer = artifact.recommend(user, k=args.k)
        print(f"user {user} ({answer.strategy}, {version}): {', '.join(answer.items)}")
    return 0


def lineage(args: argparse.Namespace) -> int:
    from .batch import exports_of
    from .registry import client

    params = load_params(args.params)
    name = params["registry"]["model_name"]
    mlflow_client = client()
    if args.version:
        version = mlflow_client.get_model_version(name, args.version)
    else:
        version = mlflow_client.get_model_version_by_alias(name, args.alias)
    record = {
        "model_name": name,
        "version": str(version.version),
        "aliases": list(version.aliases),
        "run_id": version.run_id,
        "tags": dict(sorted(version.tags.items())),
        "exports": exports_of(mlflow_client, name, str(version.version)),
    }
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print(f"{name} v{record['version']} aliases={','.join(record['aliases'])}")
        print(f"  training run      {record['run_id']}")
        for key, value in record["tags"].items():
            print(f"  {key:<28}{value}")
        for export in record["exports"]:
            print(f"  export {export['date']}: {export['rows']:,} rows in {export['path']}")
    return 0


def apply_params(args: argparse.Namespace) -> int:
    import yaml

    from .config import merge_params

    overlay = load_params(args.overlay)
    merged = merge_params(load_params(args.params), overlay)
    args.params.write_text(yaml.safe_dump(merged, sort_keys=False))
    print(f"merged {', '.join(overlay)} from {args.overlay} into {args.params}")
    return 0


def retrain(args: argparse.Namespace) -> int:
    from .retrain import NothingToIngest, ingest_incoming, outcome, run_pipeline

    params, paths = load_params(args.params), Paths(Path("."))
    registered = paths.reports / "registered.json"
    before = json.loads(registered.read_text())["version"] if registered.is_file() else None
    try:
        report = ingest_incoming(params, paths)
        print(
            f"ingested {report['new_rows']:,} new rows from {report['incoming']}: "
            f"{report['rows']:,} rows from {report['window_start'][:10]} to "
            f"{report['window_end'][:10]}; moved the folder to {report['archived_to']}"
        )
    except NothingToIngest as nothing:
        print(f"{nothing}; the pipeline runs on the data it has")
    status = run_pipeline(paths, args.trigger)
    decision = outcome(paths, before)
    if decision is None:
        if status != 0:
            print(f"ERROR: the pipeline failed (dvc repro exit {status})", file=sys.stderr)
            return EXIT_FAILED
        print("no new model version: data and params are unchanged")
    elif decision["decision"] == "fail":
        print(f"GATE FAILED for v{decision['version']}: {decision['reason']}", file=sys.stderr)
        return EXIT_GATE_FAILED
    elif decision["champion_moved"]:
        print(f"v{decision['version']} passed the gate and is the champion")
    else:
        print(
            f"v{decision['version']} passed the gate and waits as challenger: "
            f"make approve VERSION={decision['version']} REASON=..."
        )
    return 0


def approve(args: argparse.Namespace) -> int:
    from .registry import RegistryActionRefused, approve

    try:
        record = approve(load_params(args.params), Paths(Path(".")), args.version, args.reason)
    except RegistryActionRefused as refused:
        print(f"ERROR: {refused}; nothing changed", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"approved v{record['version']} by {record['decided_by']}: it is the champion")
    return 0


def rollback(args: argparse.Namespace) -> int:
    from .registry import RegistryActionRefused, rollback

    params, paths = load_params(args.params), Paths(Path("."))
    reason = args.reason
    if args.check:
        try:
            reason = rollback_needed(params, args)
        except OSError as error:  # --url did not answer: no verdict, nothing changes
            why = getattr(error, "reason", error)
            print(f"ERROR: cannot reach the API at {args.url}: {why}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if reason is None:
            return 0
    elif not (reason or "").strip():
        print("ERROR: a rollback by hand needs a reason (REASON=...)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        record = rollback(params, paths, reason.strip(), args.to)
    except RegistryActionRefused as refused:
        print(f"ERROR: {refused}; nothing changed", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"rolled back from v{record['from_version']} to v{record['version']}: {reason}")
    return 0


def rollback_needed(params: dict[str, Any], args: argparse.Namespace) -> str | None:
    """Why the champion must go (online quality, or an API that cannot load it), or None."""
    from {{ cookiecutter.package }}_core.feedback import online_quality, quality_drop, read_feedback

    from .registry import CHAMPION, champion_version, client

    name = params["registry"]["model_name"]
    mlflow_client = client()
    champion = champion_version(mlflow_client, name)
    if champion is None:
        print("no champion: nothing to roll back")
        return None
    previous = mlflow_client.get_model_version(name, champion).tags.get("previous_champion")
    quality = online_quality(read_feedback(args.feedback))
    verdict = quality_drop(quality, champion, previous, params["monitoring"])
    if verdict["drop"]:
        return f"online quality drop: {verdict['reason']}"
    if args.url:
        failures, served = api_load_failures(args.url)
        if failures > 0 and served != champion:
            return (
                f"the API at {args.url} cannot load {CHAMPION} v{champion} ({failures:g} reload "
                f"failures) and still serves v{served}"
            )
    print(f"no rollback needed: {verdict['reason']}")
    return None


def api_load_failures(url: str) -> tuple[float, str]:
    """(reload failures counted, version served) of a running API."""
    import re
    import urllib.request

    with urllib.request.urlopen(f"{url.rstrip('/')}/metrics", timeout=10) as response:
        text = response.read().decode()
    with urllib.request.urlopen(f"{url.rstrip('/')}/v1/model", timeout=10) as response:
        served = str(json.load(response)["version"])
    found = re.search(r"^recommender_model_reload_failures_total (\S+)$", text, re.MULTILINE)
    return (float(found.group(1)) if found else 0.0), served


def audit(args: argparse.Namespace) -> int:
    from .audit import AuditError, build, render

    try:
        report = build(load_params(args.params), args.version, args.url, args.all)
    except AuditError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


# Each benchmark's module, imported when it runs: they pull in locust, MLflow or pyarrow.
BENCHMARKS = {"bench-train": "bench", "bench-serve": "bench_serve", "bench-batch": "bench_batch"}


def run_benchmark(args: argparse.Namespace) -> int:
    module = importlib.import_module(f".{BENCHMARKS[args.command]}", __package__)
    return module.run_benchmark(load_params(args.params), args)


def batch_recommend(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from {{ cookiecutter.package }}_core.model_source import ModelLoadError

    from .batch import ExportError, run

    try:
        result = run(load_params(args.params), args)
    except (ModelLoadError, MlflowException) as error:
        print(f"ERROR: cannot load the model: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ExportError as error:
        print(f"ERROR: {error}; previous exports are untouched", file=sys.stderr)
        return EXIT_FAILED
    if result["status"] == "unchanged":
        print(
            f"export for {result['date']} with model {result['request']['model_version']} "
            "is already complete: nothing to do"
        )
    else:
        print(
            f"wrote {result['rows']:,} rows for {result['users']:,} users to {result['path']} "
            f"in {result['seconds']}s (model {result['request']['model_version']})"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="{{ cookiecutter.project }}", description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("generate-data", help="write synthetic e-commerce events")
    data.add_argument("--out", default="data/raw")
    data.add_argument("--seed", type=int)
    data.add_argument("--start", help="first day, e.g. 2026-02-02")
    data.add_argument("--days", type=int, help="length of the window in days")
    data.add_argument("--events", type=int, help="number of events in the window")
    data.add_argument("--drift", type=float, help="0 = same distribution, 1 = strongly shifted")
    data.set_defaults(run=generate_data)

    again = commands.add_parser("retrain", help="ingest new events, then the pipeline and gate")
    again.add_argument(
        "--trigger",
        default=os.environ.get("PIPELINE_TRIGGER", "retrain"),
        help="why it runs (schedule, drift, manual): recorded on the new version",
    )
    again.set_defaults(run=retrain)

    ok = commands.add_parser("approve", help="make a challenger that waits for approval champion")
    ok.add_argument("--version", required=True)
    ok.add_argument("--reason", required=True, help="why (recorded with who and when)")
    ok.set_defaults(run=approve)

    back = commands.add_parser("rollback", help="move champion back to the previous version")
    back.add_argument("--reason", help="why (required by hand)")
    back.add_argument("--to", help="version to return to (default: the previous champion)")
    back.add_argument(
        "--check",
        action="store_true",
        help="roll back only if online quality dropped or the API (--url) cannot load it",
    )
    back.add_argument("--feedback", type=Path, default=Path("logs/feedback-events.jsonl"))
    back.add_argument("--url", help="a running API to ask for reload failures")
    back.set_defaults(run=rollback)

    chain = commands.add_parser("audit", help="the chain behind a version: run, code, data, gate")
    chain.add_argument("--version", help="version number or alias (default: champion)")
    chain.add_argument("--url", help="a running API: audit the version it serves")
    chain.add_argument("--json", action="store_true")
    chain.add_argument("--all", action="store_true", help="every version of the model")
    chain.set_defaults(run=audit)

    for name, (_, _, summary) in STAGES.items():
        commands.add_parser(name, help=summary).set_defaults(run=run_stage)
    commands.add_parser("promote", help="the promotion gate").set_defaults(run=promote)

    rec = commands.add_parser("recommend", help="top-k from a registered model")
    rec.add_argument("--user", action="append", help="user id (repeatable)")
    rec.add_argument("--sample-users", type=int, default=3)
    rec.add_argument("--k", type=int, default=10)
    rec.add_argument("--model", default="champion", help="alias or version number")
    rec.set_defaults(run=recommend)

    lin = commands.add_parser("lineage", help="a model version and its lineage tags")
    lin.add_argument("--alias", default="champion")
    lin.add_argument("--version")
    lin.add_argument("--json", action="store_true")
    lin.set_defaults(run=lineage)

    overlay = commands.add_parser("apply-params", help="merge a params file (e.g. an example)")
    overlay.add_argument("overlay", type=Path)
    overlay.set_defaults(run=apply_params)

    bench = commands.add_parser("bench-train", help="training time/memory/accuracy vs size")
    bench.add_argument("--sizes", default="100000,1000000,3000000")
    bench.add_argument("--online-retail", help="path of online_retail.csv.gz (optional)")
    bench.set_defaults(run=run_benchmark)

    batch = commands.add_parser("batch-recommend", help="every user's top-k as Parquet")
    batch.add_argument(
        "--model-uri",
        help="as the API's MODEL_URI (default: $MODEL_URI, else the registry's champion)",
    )
    batch.add_argument("--date", help="partition date, YYYY-MM-DD (default: today, UTC)")
    batch.add_argument("--out", default="exports/recommendations")
    batch.add_argument("--k", type=int, default=20)
    batch.add_argument("--chunk-size", type=int, default=50_000, help="users per Parquet part")
    batch.add_argument("--category", help="only items of this category")
    batch.add_argument("--catalog", help="items file (Parquet/CSV) with item_id and available")
    batch.add_argument("--csv", action="store_true", help="a CSV beside each Parquet part")
    batch.add_argument("--quiet", action="store_true", help="no progress bar")
    batch.set_defaults(run=batch_recommend)

    bench_export = commands.add_parser("bench-batch", help="batch export speed and memory")
    bench_export.add_argument("--sizes", default="20000,200000,1000000", help="users")
    bench_export.add_argument("--k", type=int, default=20)
    bench_export.add_argument("--chunk-size", type=int, default=50_000)
    bench_export.set_defaults(run=run_benchmark)

    serve = commands.add_parser("bench-serve", help="this API vs mlflow models serve vs Flask")
    serve.add_argument("--events", type=int, default=200_000, help="synthetic training events")
    serve.add_argument("--workers", type=int, default=2, help="server processes, for each server")
    serve.add_argument("--threads", type=int, default=2, help="threads per gunicorn worker")
    serve.add_argument("--clients", type=int, default=16, help="concurrent locust users")
    serve.add_argument("--seconds", type=int, default=15, help="load per server per round")
    serve.add_argument("--rounds", type=int, default=3)
    serve.set_defaults(run=run_benchmark)
    return parser


def main(argv: list[str] | None = None) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (DataContractError, ArtifactError) as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
