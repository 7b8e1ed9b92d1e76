"""`{{ cookiecutter.project }}-batch`: score users with the model the API serves (`MODEL_URI`).

Exit status (one convention for every command: the README's "Exit codes"):
  0  written, or already complete (a rerun with the same model and settings); with --shard: the
     shard is written (the partition is complete once every shard is)
  1  failed: the export could not be written (previous exports are untouched)
  2  bad input: arguments (a --shard that is not i/N with 0 <= i < N), the model cannot be
     loaded, an unreadable catalog, an unknown category or settings that leave no rows
     (previous exports are untouched)
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, date, datetime
from pathlib import Path

from {{ cookiecutter.package }}_core import cli
from {{ cookiecutter.package }}_core.shared import model_name, model_uri, registered_model_uri


def export(args: argparse.Namespace) -> None:
    from .export import ExportSettings, run

    settings = ExportSettings(
        out=args.out,
        day=args.date or datetime.now(UTC).date(),
        k=args.k,
        chunk_size=args.chunk_size,
        category=args.category,
        catalog=args.catalog,
        csv=args.csv,
        shard=args.shard,
    )
    result = _loading(lambda: run(args.model_uri or model_uri(), settings, not args.quiet))
    version = result["request"]["model_version"]
    if "shard" in result:
        _print_shard(result, version)
    elif result["status"] == "unchanged":
        print(
            f"export for {result['date']} with model {version} is already complete: nothing to do"
        )
    else:
        print(
            f"wrote {result['rows']:,} rows for {result['users']:,} users to {result['path']} "
            f"in {result['seconds']}s (model {version})"
        )


def _print_shard(result: dict, version: str) -> None:
    shard, partition = result["shard"], result["partition"]
    if result["status"] == "shard-unchanged":
        print(f"shard {shard} of {result['date']} with model {version} is already written")
    else:
        print(
            f"wrote shard {shard}: {result['rows']:,} rows for {result['users']:,} users to "
            f"{result['path']} in {result['seconds']}s (model {version})"
        )
    if partition is None:
        print(f"the partition is complete when every shard of {shard.split('/')[1]} is written")
    else:
        print(
            f"all {partition['shards']['count']} shards are written: "
            f"{result['path']}/manifest.json lists {partition['rows']:,} rows for "
            f"{partition['users']:,} users"
        )


def recommend(args: argparse.Namespace) -> None:
    import logging
    import time

    from {{ cookiecutter.package }}_core.model_source import load_model, prepare
    from {{ cookiecutter.package }}_core.shared import tracking_uri

    started = time.perf_counter()
    uri = registered_model_uri(model_name(), args.model) if args.model else model_uri()
    if uri.startswith("models:/"):
        prepare(uri, tracking_uri())  # the MLflow client's imports, logged with their duration
    model = _loading(lambda: load_model(uri, tracking_uri()))
    seconds = time.perf_counter() - started
    logging.getLogger(__name__).info(f"ready: version {model.version} in {seconds:.1f} s")
    artifact = model.artifact
    users = args.user or [str(user) for user in artifact.user_ids[: args.sample_users]]
    version = artifact.metadata.get("model", "?")
    for user in users:
        answer = artifact.recommend(user, k=args.k)
        print(f"user {user} ({answer.strategy}, {version}): {', '.join(answer.items)}")


def _loading(load):
    """Run `load`; a model that cannot be resolved, read or verified is bad input. The MLflow
    client's errors count only once it is imported: a folder MODEL_URI never imports it."""
    from {{ cookiecutter.package }}_core.artifact import ArtifactError
    from {{ cookiecutter.package }}_core.model_source import ModelLoadError

    try:
        return load()
    except Exception as error:
        expected = (ModelLoadError, ArtifactError)
        mlflow_errors = sys.modules.get("mlflow.exceptions")
        if mlflow_errors is not None:
            expected += (mlflow_errors.MlflowException,)
        if isinstance(error, expected):
            raise cli.BadInput(f"cannot load the model: {error}") from error
        raise


def partition_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def shard(text: str):
    """`i/N`: shard i of N, 0 <= i < N."""
    from .export import Shard

    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shard i/N (e.g. 0/4)")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or index >= count:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a shard: need N >= 1 and 0 <= i < N (shards 0/{max(count, 1)} .. "
            f"{max(count, 1) - 1}/{max(count, 1)})"
        )
    return Shard(index, count)


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser, command = cli.parser("{{ cookiecutter.project }}-batch", __doc__)

    out = command("export", export, "every user's top-k as a date-partitioned Parquet export")
    out.add_argument(
        "--model-uri", help="as the API's MODEL_URI (default: $MODEL_URI, else the champion)"
    )
    out.add_argument("--date", type=partition_date, help="partition date (default: today, UTC)")
    out.add_argument("--out", type=Path, default=Path("exports/recommendations"), help="folder")
    out.add_argument("--k", type=positive, default=20, help="items per user")
    out.add_argument("--chunk-size", type=positive, default=50_000, help="users per Parquet part")
    out.add_argument("--category", help="only items of this category")
    out.add_argument(
        "--catalog", type=Path, help="items file (Parquet/CSV) with item_id and available"
    )
    out.add_argument("--csv", action="store_true", help="a CSV beside each Parquet part")
    out.add_argument(
        "--shard",
        type=shard,
        metavar="i/N",
        help="only the users of shard i of N (a stable hash of user_id); N processes, one per "
        "shard, write the same partition, complete when all N are (e.g. a Kubernetes Indexed "
        "Job: --shard $(JOB_COMPLETION_INDEX)/N)",
    )
    out.add_argument("--quiet", action="store_true", help="no progress bar")

    rec = command("recommend", recommend, "top-k from a registered model for a few users")
    rec.add_argument("--user", action="append", help="user id (repeatable)")
    rec.add_argument(
        "--sample-users", type=positive, default=3, help="without --user: the first N users"
    )
    rec.add_argument("--k", type=positive, default=10, help="items per user")
    rec.add_argument(
        "--model", help="alias or version number (default: $MODEL_URI, else the champion)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
