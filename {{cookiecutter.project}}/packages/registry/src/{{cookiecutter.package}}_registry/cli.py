"""`{{ cookiecutter.project }}-registry`: look at and act on the registered model's versions.

Exit status (one convention for every command: the README's "Exit codes"):
  0  done, or nothing to do (`rollback --check` found no reason to roll back)
  1  failed: the registry or a file could not be written
  2  bad input: unknown version, a refused action (nothing changed), an API that does not answer
     (canary-check: a URL that does not answer, or answers no metrics of the API)
  3  check failed: canary-check says roll back (with --strict: or hold)

canary-check prints promote, hold or roll back with the reason for each criterion; promote and
hold (too little traffic yet, or nothing to compare) exit 0, so automation that promotes must read
the verdict (--json) or use --strict, where only promote exits 0.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any

from {{ cookiecutter.package }}_core import cli
from {{ cookiecutter.package }}_core.shared import (
    CHAMPION,
    ExitCode,
    model_name,
    setting,
    tracking_uri,
)

from . import actions, audit, audit_text, model_card


def lineage(args: argparse.Namespace) -> None:
    from mlflow.exceptions import MlflowException

    from {{ cookiecutter.package }}_core.registry import client, exports_of

    name, mlflow_client = model_name(), client()
    try:
        if args.version:
            version = mlflow_client.get_model_version(name, args.version)
        else:
            version = mlflow_client.get_model_version_by_alias(name, args.alias)
    except MlflowException as error:
        wanted = f"version {args.version}" if args.version else f"alias {args.alias!r}"
        raise cli.BadInput(f"{name} has no {wanted} in the registry") from error
    record: dict[str, Any] = {
        "model_name": name,
        "version": str(version.version),
        "aliases": list(version.aliases),
        "run_id": version.run_id,
        "tags": dict(sorted(version.tags.items())),
        "exports": exports_of(mlflow_client, name, str(version.version)),
    }
    if args.json:
        print(json.dumps(record, indent=2))
        return
    print(f"{name} v{record['version']} aliases={','.join(record['aliases'])}")
    print(f"  training run      {record['run_id']}")
    for key, value in record["tags"].items():
        print(f"  {key:<28}{value}")
    for export in record["exports"]:
        print(f"  export {export['date']}: {export['rows']:,} rows in {export['path']}")


def approve(args: argparse.Namespace) -> None:
    record = actions.approve(model_name(), args.version, args.reason)
    print(f"approved v{record['version']} by {record['decided_by']}: it is the champion")


def rollback(args: argparse.Namespace) -> None:
    reason = args.reason
    if args.check:
        params = cli.load_params(args.params)
        reason, checked = actions.rollback_reason(
            model_name(), args.feedback, params["monitoring"], args.url
        )
        if reason is None:
            print(f"no rollback needed: {checked}")
            return
    record = actions.rollback(model_name(), reason or "", args.to)
    print(f"rolled back from v{record['from_version']} to v{record['version']}: {reason}")


def show_audit(args: argparse.Namespace) -> None:
    report = audit.build(model_name(), args.version, args.url, args.all)
    print(json.dumps(report, indent=2) if args.json else audit_text.render(report))


def show_model_card(args: argparse.Namespace) -> None:
    card = model_card.build(model_name(), args.version)
    written = model_card.write(card, args.out, with_html=not args.no_html)
    aliases = ",".join(card["model"]["aliases"]) or "no alias"
    print(f"model card of {card['model']['name']} v{card['model']['version']} ({aliases}):")
    for path in written:
        print(f"  {path}")


def _databases(args: argparse.Namespace):
    """The registry database (default: MLFLOW_TRACKING_URI) and the auth database, if given."""
    from .backup import database

    if args.database:
        registry_db = database(args.database)
    else:
        registry_db = database(tracking_uri(), named_by="MLFLOW_TRACKING_URI")
    auth = database(args.auth_database, "--auth-database") if args.auth_database else None
    return registry_db, auth


def _versions(model: dict[str, Any]) -> str:
    champion = f"champion v{model['champion']}" if model["champion"] else "no champion"
    return f"{model['name']}: versions {', '.join(model['versions']) or 'none'}, {champion}"


def back_up(args: argparse.Namespace) -> None:
    from .backup import backup

    registry_db, auth = _databases(args)
    manifest = backup(args.out, registry_db, args.artifacts, model_name(), auth)
    model = manifest["model"]
    print(f"backed up {manifest['database']['uri']} and {manifest['artifacts']['root']}")
    if auth is not None:
        print(f"  and the auth database {auth.shown}")
    print(f"  {_versions(model)}")
    for name in manifest["files"]:
        print(f"  {args.out / name}")


def restore(args: argparse.Namespace) -> None:
    from .backup import restore as restore_backup

    registry_db, auth = _databases(args)
    done = restore_backup(args.source, registry_db, args.artifacts, auth)
    manifest, state = done["manifest"], done["state"]
    print(f"restored the backup of {manifest['created_at']} from {args.source}")
    print(f"  database   {manifest['database']['uri']} -> {registry_db.shown}")
    saved_auth = manifest.get("auth_database")
    if auth is not None:
        print(f"  auth       {saved_auth['uri']} -> {auth.shown}")
    elif saved_auth:
        print("  auth       not restored (it is in the backup: pass --auth-database)")
    for path in done["moved_aside"]:
        print(f"  the database it replaced is now {path}")
    print(f"  artifacts  {done['root']}")
    print(f"  {_versions(state)}")


def canary_check(args: argparse.Namespace) -> int:
    from .canary import HOLD, ROLL_BACK, Thresholds, check, render

    limits = Thresholds(
        min_requests=args.min_requests,
        min_impressions=args.min_impressions,
        max_5xx_increase=args.max_5xx_increase,
        max_p99_ratio=args.max_p99_ratio,
        p99_slack_ms=args.p99_slack_ms,
        min_ctr_ratio=args.min_ctr_ratio,
    )
    result = check(args.stable, args.canary, limits, args.interval, args.timeout)
    print(json.dumps(result, indent=2) if args.json else render(result))
    if result["verdict"] == ROLL_BACK or (args.strict and result["verdict"] == HOLD):
        return ExitCode.CHECK_FAILED
    return ExitCode.OK


def _number(kind: type, minimum: float, text: str) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= minimum:  # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least {minimum}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser, command = cli.parser("{{ cookiecutter.project }}-registry", __doc__)

    lin = command("lineage", lineage, "a model version and its lineage tags and exports")
    lin.add_argument("--alias", default=CHAMPION, help="alias to show")
    lin.add_argument("--version", help="version number to show (instead of --alias)")
    lin.add_argument("--json", action="store_true", help="print JSON instead of a table")

    ok = command("approve", approve, "make a challenger that waits for approval the champion")
    ok.add_argument("--version", required=True, help="the version waiting for approval")
    ok.add_argument("--reason", required=True, help="why (recorded with who and when)")

    back = command("rollback", rollback, "move champion back to the previous champion")
    back.add_argument("--reason", help="why (required by hand; --check gives its own)")
    back.add_argument("--to", help="version to return to (default: the previous champion)")
    back.add_argument(
        "--check",
        action="store_true",
        help="roll back only if online quality dropped or the API (--url) cannot load it",
    )
    back.add_argument(
        "--feedback",
        type=Path,
        default=Path(setting("EVENTS_LOG")),
        help="the API's feedback events log, or a folder: every *.jsonl in it ($EVENTS_LOG)",
    )
    back.add_argument("--url", help="a running API to ask for reload failures (with --check)")
    back.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="thresholds (monitoring:)"
    )

    chain = command("audit", show_audit, "the chain behind a version: run, code, data, gate")
    chain.add_argument("--version", help="version number or alias (default: champion)")
    chain.add_argument("--url", help="a running API: audit the version it serves")
    chain.add_argument("--all", action="store_true", help="every version of the model")
    chain.add_argument("--json", action="store_true", help="print JSON instead of a table")

    card = command(
        "model-card",
        show_model_card,
        "a model card from the registry: data, metrics vs the baselines, plots, gate, limits",
    )
    card.add_argument("--version", default=CHAMPION, help="version number or alias")
    card.add_argument(
        "--out",
        type=Path,
        default=Path("reports/model-card.md"),
        help="the Markdown card; its plots go to <stem>-plots/, the HTML page to <stem>.html",
    )
    card.add_argument("--no-html", action="store_true", help="write the Markdown card only")

    database = (
        "the registry database: sqlite:///<file> or postgresql://<user>:<password>@<host>/<db> "
        "when not given: MLFLOW_TRACKING_URI, if it names one)"
    )
    auth_database = (
        "an MLflow server's auth database (users and permissions: basic_auth.ini's database_uri), "
        "saved and restored with the registry"
    )
    save = command(
        "backup", back_up, "back up the registry: its database and artifacts, with a manifest"
    )
    save.add_argument("--out", type=Path, required=True, help="a new (or empty) folder")
    save.add_argument("--database", help=database)
    save.add_argument("--auth-database", help=auth_database)
    save.add_argument(
        "--artifacts",
        type=Path,
        help="the artifacts folder (when not given, for SQLite: the experiments' artifact root; "
        "for an MLflow server, required: its --artifacts-destination)",
    )
    load = command(
        "restore", restore, "restore a backup: check its manifest, then database and artifacts"
    )
    load.add_argument("--from", dest="source", type=Path, required=True, help="a backup folder")
    load.add_argument("--database", help=database)
    load.add_argument("--auth-database", help=auth_database)
    load.add_argument(
        "--artifacts", type=Path, help="where the artifacts go (when not given: where they were)"
    )

    canary = command(
        "canary-check",
        canary_check,
        "compare a canary API deployment with the stable one from their /metrics: promote, "
        "hold or roll back",
    )
    base = "the API's base URL (or its /metrics URL); repeat for several pods (summed)"
    canary.add_argument("--stable", action="append", required=True, metavar="URL", help=base)
    canary.add_argument("--canary", action="append", required=True, metavar="URL", help=base)
    count = functools.partial(_number, int, 1)
    ratio = functools.partial(_number, float, 0)
    limits = canary_limits()
    canary.add_argument(
        "--min-requests", type=count, default=limits.min_requests,
        help="/v1 requests each side needs before 5xx ratio and p99 count (else hold)",
    )  # fmt: skip
    canary.add_argument(
        "--min-impressions", type=count, default=limits.min_impressions,
        help="impressions each side needs before click-through counts (else hold)",
    )  # fmt: skip
    canary.add_argument(
        "--max-5xx-increase", type=ratio, default=limits.max_5xx_increase,
        help="roll back when the canary's 5xx ratio exceeds the stable one by more (0.01 = 1 pp)",
    )  # fmt: skip
    canary.add_argument(
        "--max-p99-ratio", type=ratio, default=limits.max_p99_ratio,
        help="roll back when the canary's p99 exceeds this x the stable p99 (+ --p99-slack-ms)",
    )  # fmt: skip
    canary.add_argument(
        "--p99-slack-ms", type=ratio, default=limits.p99_slack_ms,
        help="milliseconds added to the p99 ceiling (bucket resolution, noise at low latency)",
    )  # fmt: skip
    canary.add_argument(
        "--min-ctr-ratio", type=ratio, default=limits.min_ctr_ratio,
        help="roll back when the canary's click-through is below this x the stable one",
    )  # fmt: skip
    canary.add_argument(
        "--interval", type=ratio, default=0.0,
        help="seconds between two scrapes, to compare that window (0: totals since start)",
    )  # fmt: skip
    canary.add_argument(
        "--timeout", type=ratio, default=10.0, help="seconds to wait for each /metrics"
    )
    canary.add_argument("--strict", action="store_true", help="hold exits 3 too")
    canary.add_argument("--json", action="store_true", help="print JSON instead of text")
    return parser


def canary_limits():
    from .canary import Thresholds

    return Thresholds()


def main(argv: list[str] | None = None) -> int:
    return cli.run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
