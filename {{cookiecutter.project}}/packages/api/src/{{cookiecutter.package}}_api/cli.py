"""`{{ cookiecutter.project }}-api` command line: `serve` runs the API under gunicorn, as in
production.

`make serve` runs it; a systemd unit or a container can run the same command.
"""

from __future__ import annotations

import argparse
import os
import sys

from {{ cookiecutter.package }}_core.cli import add_version
from {{ cookiecutter.package }}_core.shared import ExitCode

SERVE_HELP = "serve the recommendation API under gunicorn, as in production"
SERVE_DESCRIPTION = """\
Serve the recommendation API: gunicorn with this package's gunicorn config and WSGI app,
the command `make serve` runs."""
# What the environment sets, beyond the app's own settings (MODEL_URI, MLFLOW_TRACKING_URI,
# MODEL_REFRESH_SECONDS, ADMIN_TOKEN, LOG_LEVEL, ...): the gunicorn config reads these.
SERVE_EPILOG = """\
environment (read by the gunicorn config):
  HOST, PORT                  where gunicorn listens (127.0.0.1, 8000; containers and
                              units set HOST=0.0.0.0 or the address their proxy uses)
  WEB_CONCURRENCY             worker processes (2)
  GUNICORN_THREADS            threads per worker (2)
  GUNICORN_TIMEOUT            seconds a worker may take to boot or answer (60)
  GUNICORN_GRACEFUL_TIMEOUT   seconds to finish requests after SIGTERM (20)
  GUNICORN_READ_TIMEOUT       seconds for a request to arrive whole, else 408 (10)
  LOG_LEVEL                   debug, info, warning, error (info; warning drops the access log)

The app reads MODEL_URI, MLFLOW_TRACKING_URI, MODEL_REFRESH_SECONDS, ADMIN_TOKEN (or
ADMIN_TOKEN_FILE, a file holding it) and the rest of its settings from the environment too;
settings it refuses (both admin token settings, an unreadable or empty token file, a bad
number) stop `serve` before gunicorn starts, with the reason and exit code 2.
"""


def gunicorn_command() -> list[str]:
    """gunicorn with this package's config and WSGI app, run by this Python."""
    package = __package__
    return [
        sys.executable,
        *("-m", "gunicorn"),
        *("--config", f"python:{package}.gunicorn_conf"),
        f"{package}.wsgi:app",
    ]


def serve(args: argparse.Namespace) -> int:
    from .config import Settings

    try:  # refuse bad settings here, with the reason, rather than in every gunicorn worker
        Settings.from_env()
    except ValueError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return int(ExitCode.BAD_INPUT)
    command = gunicorn_command()
    # gunicorn replaces this process, so its master gets the signals sent to the command.
    os.execv(command[0], command)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="{{ cookiecutter.project }}-api",
        description="The recommendation API.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_version(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser(
        "serve",
        help=SERVE_HELP,
        description=SERVE_DESCRIPTION,
        epilog=SERVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve_parser.set_defaults(run=serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
