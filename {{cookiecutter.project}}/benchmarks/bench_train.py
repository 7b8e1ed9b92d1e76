"""bench-train: training time, peak memory and accuracy per model, against data size, against
catalogue size, and on the UCI Online Retail set.

    uv run --no-sync python benchmarks/bench_train.py [flags]      # or: make bench-train

Up to three tables (--tables):
  sizes          seeded synthetic events (--sizes) over the params' catalogue, ~50 events a user
  catalogues     synthetic catalogues of --catalogues items, each with the same --events
  online-retail  the UCI Online Retail set with examples/online_retail.params.yaml's mapping,
                 whenever its file is found: --online-retail PATH, else $ONLINE_RETAIL_CSV,
                 else ../shared/data/online_retail.csv.gz relative to the project root

Each data set goes through the real stages (ingest, validate, split) once; each model is then
trained and evaluated by the real `train`/`evaluate` stages in a fresh process, so its peak
memory is its own. That process gets at most --memory-limit of address space: a model that does
not fit fails there and its row says "cannot fit (...)" ("failed (...)" for any other error,
with the last line of the error), and the benchmark goes on with the next one.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import re
import signal
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

import harness
from {{ cookiecutter.package }}_training.config import Paths, merge_params

PROJECT = Path(__file__).resolve().parents[1]
EXAMPLE_MAPPING = PROJECT / "examples" / "online_retail.params.yaml"
ONLINE_RETAIL_VARIABLE = "ONLINE_RETAIL_CSV"
# Where the file is looked for last, relative to the project root.
ONLINE_RETAIL_DEFAULT = Path("../shared/data/online_retail.csv.gz")
TABLES = ("sizes", "catalogues", "online-retail")
# Users grow with the events (about 50 events a user, as in the default data set).
EVENTS_PER_USER = 50
GIB = 1024**3


def run_benchmark(params: dict[str, Any], args: argparse.Namespace) -> int:
    tables = [name for name in args.tables.split(",") if name]
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        sys.exit(f"bench_train.py: --tables {','.join(unknown)}: known are {','.join(TABLES)}")
    online_retail = _online_retail_file(args.online_retail) if "online-retail" in tables else None
    _memory_limit(args.memory_limit)  # a bad value fails now, not after the first data set
    bench = _Bench(params, args.memory_limit)
    printed = []
    if "sizes" in tables:
        n_items = params["synthetic"]["n_items"]
        rows = []
        for events in harness.sizes(args.sizes):
            rows += bench.synthetic(f"{events:,} events", events, n_items)
        printed.append(_table(rows, f"Data size: synthetic events, {n_items:,} items"))
    if "catalogues" in tables:
        rows = []
        for n_items in harness.sizes(args.catalogues):
            rows += bench.synthetic(f"{n_items:,} items", args.events, n_items)
        title = f"Catalogue size: synthetic catalogues, {args.events:,} events"
        printed.append(_table(rows, title))
    if online_retail is not None:
        rows = bench.online_retail(online_retail)
        printed.append(_table(rows, f"UCI Online Retail ({online_retail})"))
    print("\n\n".join([*printed, _machine(args.memory_limit)]))
    return 0


def _online_retail_file(flag: str) -> Path | None:
    """The Online Retail file to benchmark, None (with a note) when there is none to be found; a
    path given by the flag or the variable that does not exist ends the benchmark."""
    if flag == "none":
        return None
    if flag != "auto":
        given, where = Path(flag), f"--online-retail {flag}"
    elif os.environ.get(ONLINE_RETAIL_VARIABLE):
        value = os.environ[ONLINE_RETAIL_VARIABLE]
        given, where = Path(value), f"${ONLINE_RETAIL_VARIABLE}={value}"
    else:
        found = PROJECT / ONLINE_RETAIL_DEFAULT
        if found.is_file():
            return found.resolve()
        print(
            f"No Online Retail table: no file at {found} and ${ONLINE_RETAIL_VARIABLE} is not set "
            "(give --online-retail PATH; shared/data/README.md says where the file comes from).",
            file=sys.stderr,
        )
        return None
    if not given.is_file():
        sys.exit(f"bench_train.py: {where}: no such file (the UCI online_retail.csv.gz)")
    return given.resolve()


def _memory_limit(flag: str) -> int | None:
    """--memory-limit in bytes: a number of GiB, "available" (MemAvailable now) or "none"."""
    if flag == "none":
        return None
    if flag == "available":
        return harness.available_memory_bytes()
    try:
        return int(float(flag) * GIB)
    except ValueError:
        sys.exit(f"bench_train.py: --memory-limit {flag}: a number of GiB, available or none")


class _Bench:
    """The rows of each data set, a model at a time in a fresh process; a data set measured
    once (at the defaults, the 1M-events rows of the sizes table are the 5,000-items rows of the
    catalogues table) is not measured again."""

    def __init__(self, params: dict[str, Any], memory_limit: str) -> None:
        self.params = params
        self.memory_limit = memory_limit
        self.measured: dict[tuple[int, int, int], list[dict[str, Any]]] = {}

    def synthetic(self, label: str, n_events: int, n_items: int) -> list[dict[str, Any]]:
        settings = {
            **self.params["synthetic"],
            "n_events": n_events,
            "n_users": max(1000, n_events // EVENTS_PER_USER),
            "n_items": n_items,
        }
        key = (settings["n_events"], settings["n_users"], settings["n_items"])
        if key not in self.measured:
            self.measured[key] = self._dataset(label, self.params, synthetic=settings)
        return [{**row, "data": label} for row in self.measured[key]]

    def online_retail(self, csv: Path) -> list[dict[str, Any]]:
        params = merge_params(self.params, yaml.safe_load(EXAMPLE_MAPPING.read_text()))
        return self._dataset("Online Retail", params, csv=csv)

    def _dataset(
        self,
        label: str,
        params: dict[str, Any],
        synthetic: dict[str, Any] | None = None,
        csv: Path | None = None,
    ) -> list[dict[str, Any]]:
        params = copy.deepcopy(params)
        models = list(params["model"]["candidates"])
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            paths = Paths(Path(tmp))
            paths.raw.mkdir(parents=True)
            # Imported here, not at the top: `--help` and a bad flag answer at once.
            from {{ cookiecutter.package }}_training import data_stages

            if csv is not None:
                (paths.root / params["data"]["source"]).symlink_to(csv)
            else:
                from {{ cookiecutter.package }}_training.synthetic import generate, write_dataset

                write_dataset(*generate(**synthetic), paths.raw)
            started = time.perf_counter()
            data_stages.ingest(params, paths)
            data_stages.validate(params, paths)
            split = data_stages.split(params, paths)
            prepare_seconds = time.perf_counter() - started
            print(f"{label}: prepared in {prepare_seconds:.1f}s; split {split}", file=sys.stderr)
            rows = []
            for model in models:
                params["model"]["candidates"] = [model]
                (paths.root / "params.yaml").write_text(yaml.safe_dump(params))
                rows.append({"data": label, "model": model, **self._measure(paths.root)})
                print(f"{label}, {model}: {_progress(rows[-1])}", file=sys.stderr)
        return rows

    def _measure(self, root: Path) -> dict[str, Any]:
        limit = _memory_limit(self.memory_limit)  # what is available now
        try:
            return {**harness.in_fresh_process(__file__, root, memory_limit=limit), "note": ""}
        except harness.FreshProcessFailed as error:
            return {**dict.fromkeys(MEASURED), "note": failure_note(error)}


def failure_note(error: harness.FreshProcessFailed) -> str:
    """A failed model's row: "cannot fit (...)" when it ran out of memory (ModelTooLarge, a
    MemoryError, killed by SIGKILL: the kernel's OOM killer), else "failed (...)"."""
    if error.returncode < 0:
        try:
            name = signal.Signals(-error.returncode).name
        except ValueError:
            name = f"signal {-error.returncode}"
        if -error.returncode == signal.SIGKILL:
            return f"cannot fit (killed by {name}: out of memory?)"
        return f"failed (killed by {name})"
    # "shop.models.ModelTooLarge: cannot fit: needs ..." -> "ModelTooLarge: cannot fit: needs ..."
    last = re.sub(r"^(?:[A-Za-z_]\w*\.)+(?=\w+:)", "", error.last_line)
    last = last or f"exit status {error.returncode}"
    if "cannot fit" in last:
        return f"cannot fit ({last.split('cannot fit', 1)[1].lstrip(':').strip()})"
    if re.match(r"\w*MemoryError\b", last):
        return f"cannot fit ({last})"
    return f"failed ({last})"


def _progress(row: dict[str, Any]) -> str:
    if row["note"]:
        return row["note"]
    return (
        f"train {row['train_s']:.1f}s, peak {row['peak_mb']:,} MB, NDCG@10 {row['ndcg_at_10']:.4f}"
    )


def _train_and_evaluate(root: str) -> dict[str, Any]:
    """Train and evaluate the one candidate of `root`/params.yaml (in a fresh process)."""
    import pandas as pd

    from {{ cookiecutter.package }}_core.artifact import ServingArtifact
    from {{ cookiecutter.package }}_training import model_stages
    from {{ cookiecutter.package }}_training.evaluation import evaluate_artifact

    params = yaml.safe_load((Path(root) / "params.yaml").read_text())
    paths = Paths(Path(root))
    model = params["model"]["candidates"][0]
    started = time.perf_counter()
    train_report = model_stages.train(params, paths)
    trained = time.perf_counter()
    # The evaluate stage's scoring without its SVG charts: vl-convert's V8 engine reserves
    # more address space than the RLIMIT_AS cap allows, and drawing is not what is measured.
    ks = sorted(int(k) for k in params["evaluate"]["ks"])
    artifact = ServingArtifact.load(paths.models / model)
    pairs = pd.read_parquet(paths.split / "test.parquet")
    metrics = evaluate_artifact(artifact, pairs, artifact.item_ids, ks)["warm"]
    return {
        "events": train_report["nnz"],
        "users": train_report["n_users"],
        "items": train_report["n_items"],
        "fit_s": train_report[model]["fit_seconds"],
        "train_s": round(trained - started, 2),
        "evaluate_s": round(time.perf_counter() - trained, 2),
        "peak_mb": harness.peak_memory_mb(),
        "ndcg_at_10": metrics.get("ndcg_at_10", 0.0),
        "recall_at_20": metrics.get("recall_at_20", 0.0),
    }


COLUMNS = [
    ("data", "data", "<18"),
    ("model", "model", "<12"),
    ("users", "users", ">8"),
    ("items", "items", ">8"),
    ("pairs", "events", ">10"),
    ("fit s", "fit_s", ">8.2f"),
    ("train s", "train_s", ">9.2f"),
    ("eval s", "evaluate_s", ">8.2f"),
    ("peak MB", "peak_mb", ">9"),
    ("NDCG@10", "ndcg_at_10", ">9.4f"),
    ("Recall@20", "recall_at_20", ">10.4f"),
    ("note", "note", ""),
]
# What a fresh process measures (all None in a failed model's row).
MEASURED = [key for _, key, _ in COLUMNS if key not in ("data", "model", "note")]


def _table(rows: list[dict[str, Any]], title: str) -> str:
    # The note column is empty in most rows: no trailing blanks.
    return "\n".join(line.rstrip() for line in harness.table(COLUMNS, rows, title).splitlines())


def _machine(memory_limit: str) -> str:
    cpu = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        cpu = f" {names[0]}" if names else ""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        total_kb = int(meminfo.read_text().split("MemTotal:")[1].split()[0])
        memory = f", {total_kb / 1024**2:.1f} GiB RAM"
    versions = ", ".join(f"{name} {metadata.version(name)}" for name in ("numpy", "scipy"))
    limit = _memory_limit(memory_limit)
    if memory_limit == "available" and limit is not None:
        limit_text = f"the memory available when it starts ({limit / GIB:.1f} GiB now)"
    else:
        limit_text = "nothing" if limit is None else f"{limit / GIB:.1f} GiB"
    return (
        f"machine: {os.cpu_count()} CPUs{cpu} ({usable} usable){memory}; "
        f"Python {platform.python_version()}, {versions}; "
        f"each model's process limited (RLIMIT_AS) to {limit_text}"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = harness.parser(__doc__)
    parser.add_argument(
        "--tables",
        default=",".join(TABLES),
        help="the tables to print, comma-separated (online-retail only when its file is found)",
    )
    parser.add_argument(
        "--sizes",
        default="100000,1000000,3000000",
        help="sizes table: synthetic events of each data set, comma-separated",
    )
    parser.add_argument(
        "--catalogues",
        default="5000,20000,50000,100000",
        help="catalogues table: items of each synthetic catalogue, comma-separated",
    )
    parser.add_argument(
        "--events",
        type=int,
        default=1_000_000,
        help="catalogues table: synthetic events of every catalogue (users: events / 50)",
    )
    parser.add_argument(
        "--online-retail",
        default="auto",
        metavar="PATH",
        help=(
            "online-retail table: the UCI online_retail.csv.gz; 'auto': "
            f"${ONLINE_RETAIL_VARIABLE} if set, else {ONLINE_RETAIL_DEFAULT} relative to the "
            "project root if it is there; 'none': no such table"
        ),
    )
    parser.add_argument(
        "--memory-limit",
        default="available",
        metavar="GB",
        help=(
            "address space each model's process may use (RLIMIT_AS), in GiB; 'available': the "
            "machine's available memory when that process starts; 'none': no limit"
        ),
    )
    return parser


if __name__ == "__main__":
    harness.main(build_parser(), run_benchmark, measure=_train_and_evaluate)
