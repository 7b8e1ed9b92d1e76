"""What the benchmarks share: their command line, a measurement in a fresh process, peak memory.

Each benchmark is a script, `uv run --no-sync python benchmarks/<name>.py [flags]`, that ends in
`harness.main(...)`. A measurement that must own its process (its peak memory is its own, its
imports are not cached) runs the same script again through `in_fresh_process`.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from {{ cookiecutter.package }}_core.cli import load_params

# argv[1] of a script started by `in_fresh_process`: take one measurement, print it as JSON.
MEASURE = "_measure"

Run = Callable[[dict[str, Any], argparse.Namespace], int]
Measure = Callable[..., dict[str, Any]]
# A table's column: (header, the row's key, format spec), e.g. ("users/s", "users_per_s", ">10,").
Column = tuple[str, str, str]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Each flag's default after its help; the description (the module's docstring) as written."""


def parser(description: str | None) -> argparse.ArgumentParser:
    """The benchmark's parser, with --params."""
    parser = argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)
    parser.add_argument(
        "--params", type=Path, default=Path("params.yaml"), help="the project's params file"
    )
    return parser


def main(parser: argparse.ArgumentParser, run: Run, measure: Measure | None = None) -> None:
    """Parse the flags, read --params and exit with `run`'s status; in a process started by
    `in_fresh_process`, print `measure(*its arguments)` as one JSON line instead."""
    if measure is not None and sys.argv[1:2] == [MEASURE]:
        print(json.dumps(measure(*sys.argv[2:])))
        sys.exit(0)
    args = parser.parse_args()
    sys.exit(run(load_params(args.params), args))


class FreshProcessFailed(RuntimeError):
    """A measurement's process exited with an error (`returncode` > 0) or was killed by a signal
    (`returncode` = -signal), with its `stderr`."""

    def __init__(self, script: str, returncode: int, stderr: str) -> None:
        super().__init__(f"{Path(script).name} {MEASURE} failed:\n{stderr[-3000:]}")
        self.returncode = returncode
        self.stderr = stderr

    @property
    def last_line(self) -> str:
        """The last non-blank line of its stderr (a traceback's exception), or ""."""
        lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else ""


def in_fresh_process(script: str, *args: object, memory_limit: int | None = None) -> dict[str, Any]:
    """Run `script`'s measure in a new interpreter; its last line of output, parsed.

    `memory_limit` (bytes) caps the process's address space (RLIMIT_AS), so an allocation past it
    fails in that process (a MemoryError) instead of swapping the machine. A failure raises
    FreshProcessFailed (a RuntimeError).
    """

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    result = subprocess.run(
        [sys.executable, script, MEASURE, *map(str, args)],
        capture_output=True,
        text=True,
        preexec_fn=limit_memory if memory_limit is not None else None,
    )
    if result.returncode != 0:
        raise FreshProcessFailed(script, result.returncode, result.stderr)
    return json.loads(result.stdout.strip().splitlines()[-1])


def available_memory_bytes() -> int | None:
    """The memory the kernel says can be used without swapping (MemAvailable), None off Linux."""
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def sizes(text: str) -> list[int]:
    """`--sizes 20000,200000` as numbers."""
    return [int(size) for size in text.split(",") if size]


def peak_memory_mb() -> int:
    """This process's peak resident memory in MB.

    Linux's VmHWM belongs to the process image, while ru_maxrss survives exec and would report
    the (larger) parent's peak for a freshly started process.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def size_mb(folder: Path) -> float:
    """The size of the files under `folder`, in MB."""
    return round(sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 1e6, 1)


def table(columns: list[Column], rows: list[dict[str, Any]], title: str | None = None) -> str:
    """`rows` in fixed-width columns under a header and a rule, `title` above them.

    A header takes its column's alignment and width (">8.2f" -> ">8"); a column whose spec has no
    width (free text, the last one) is set off by two spaces instead. A cell that is None (not
    measured) shows as "-".
    """
    layouts = [re.match(r"[<>^]?\d*", spec).group() for _, _, spec in columns]

    def line(cells: list[str]) -> str:
        return "".join(
            cell if layout[-1:].isdigit() else f"  {cell}"
            for cell, layout in zip(cells, layouts, strict=True)
        )

    def cells(row: dict[str, Any]) -> list[str]:
        return [
            f"{'-':{layout}}" if row[key] is None else f"{row[key]:{spec}}"
            for (_, key, spec), layout in zip(columns, layouts, strict=True)
        ]

    names = [name for name, _, _ in columns]
    header = line([f"{name:{layout}}" for name, layout in zip(names, layouts, strict=True)])
    lines = [*([title] if title else []), header, "-" * len(header)]
    lines += [line(cells(row)) for row in rows]
    return "\n".join(lines)
