"""`{{ cookiecutter.project }}-batch`: score users with the model the API serves (`MODEL_URI`).

Exit status (one convention for every command: the README's "Exit codes"):
  0  written, or already complete (a rerun with the same model and settings)
  1  failed: the export could not be written (previous exports are untouched)
  2  bad input: arguments, the model cannot be loaded, an unreadable catalog, an unknown
     category or settings that leave no rows (previous exports are untouched)
"""

from __future__ import annotations

import argparse
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
    )
    result = _loading(lambda: run(args.model_uri or model_uri(), settings, not args.quiet))
    version = result["request"]["model_version"]
    if result["status"] == "unchanged":
        print(
            f"export for {result['date']} with model {version} is already complete: nothing to do"
        )
    else:
        print(
            f"wrote {result['rows']:,} rows for {result['users']:,} users to {result['path']} "
            f"in {result['seconds']}s (model {version})"
        )


def recommend(args: argparse.Namespace) -> None:
    import logging
    import time

    from {{ cookiecutter.package }}_core.artifact import ArtifactError
    from {{ cookiecutter.package }}_core.model_source import ModelLoadError, load_model, prepare
    from {{ cookiecutter.package }}_core.shared import tracking_uri

    started = time.perf_counter()
    uri = registered_model_uri(model_name(), args.model) if args.model else model_uri()
    if uri.startswith("models:/"):
        prepare(uri, tracking_uri())  # the MLflow client's imports, logged with their duration
        model = _loading(lambda: load_model(uri, tracking_uri()))
    else:  # a folder: `_loading` would import the MLflow client only to catch its errors
        try:
            model = load_model(uri)
        except (ModelLoadError, ArtifactError) as error:
            raise cli.BadInput(f"cannot load the model: {error}") from error
    seconds = time.perf_counter() - started
    logging.getLogger(__name__).info(f"ready: version {model.version} in {seconds:.1f} s")
    artifact = model.artifact
    users = args.user or [str(user) for user in artifact.user_ids[: args.sample_users]]
    version = artifact.metadata.get("model", "?")
    for user in users:
        answer = artifact.recommend(user, k=args.k)
        print(f"user {user} ({answer.strategy}, {version}): {', '.join(answer.items)}")


def _loading(load):
    """Run `load`; a model that cannot be resolved, read or verified is bad input."""
    from mlflow.exceptions import MlflowException

    from {{ cookiecutter.package }}_core.artifact import ArtifactError
    from {{ cookiecutter.package }}_core.model_source import ModelLoadError

    try:
        return load()
    except (ModelLoadError, ArtifactError, MlflowException) as error:
        raise cli.BadInput(f"cannot load the model: {error}") from error


def partition_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


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
