"""`{{ cookiecutter.project }}` command line: one subcommand per pipeline stage and task.

dvc.yaml, the Makefile, CI, Kubernetes Jobs and the tests all call these same commands.
Exit status: 0 success, 1 gate failed, 2 bad input (data contract, arguments, missing files).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
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
    overrides = {"seed": args.seed, "start": args.start, "drift": args.drift}
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
    data.add_argument("--drift", type=float, help="0 = same distribution, 1 = strongly shifted")
    data.set_defaults(run=generate_data)

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
    serve.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
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
