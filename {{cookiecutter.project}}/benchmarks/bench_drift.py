"""bench-drift: the drift job's time and peak memory on N reference + N current events.

    uv run --no-sync python benchmarks/bench_drift.py [flags]      # or: make bench-drift

The data is synthetic and seeded: users with a lognormal activity, items with a power-law
popularity in 24 categories with prices, sessions of views, add-to-carts and purchases; a 28-day
reference window, then a 7-day current window drawn from the same shop, a serving artifact with
random top lists and a feedback log of what it served, so all three checks run. The current week
holds as many events as the four reference weeks, so users are busier and user activity drifts:
one feature of five, below `drift_share`, so the verdict is no drift.

The files go where the job reads them: the reference as the validate stage writes it, the
current window as raw files that the data contract validates (with the default column mapping,
whatever `data:` maps, since these files are canonical). Each size runs the real `drift` command
in a fresh process, so its peak memory (VmHWM) is its own. The benchmark also times `import
evidently` alone in a fresh process (the API never pays it: see
packages/api/tests/test_no_monitoring_imports.py).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

import harness
from {{ cookiecutter.package }}_core.artifact import ServingArtifact

SEED = 11
EVENTS_PER_USER = 20  # per window
EVENTS_PER_ITEM = 50
MIN_ITEMS, MAX_ITEMS = 500, 50_000
POPULARITY_EXPONENT = 1.0  # the item at popularity rank r is drawn with weight 1 / r
N_CATEGORIES = 24
EVENT_TYPES = ("view", "add_to_cart", "purchase")
EVENT_SHARES = (0.85, 0.1, 0.05)
SESSION_EVENTS = 5  # mean events per session (geometric)
REFERENCE_START = np.datetime64("2025-03-03T00:00:00", "s")
REFERENCE_DAYS, CURRENT_DAYS = 28, 7
DAY = 86_400
IMPRESSIONS_PER_EVENT = 0.1  # feedback log: impressions per current event
LIST_LENGTH = 10  # items per list the storefront shows
CLICK_RATE, CART_RATE, PURCHASE_RATE = 0.05, 0.2, 0.3  # per impression, click, cart
# The data contract with the default mapping: the generated current window is canonical.
CANONICAL_DATA: dict[str, Any] = {
    "source": "data/raw/events.parquet",
    "items": "data/raw/items.parquet",
    "columns": {name: name for name in ("user_id", "item_id", "event_type", "timestamp")},
    "event_types": {name: name for name in EVENT_TYPES},
    "default_event_type": None,
    "timestamp_format": None,
    "ignore_columns": [],
    "drop_rules": [],
}
IMPORT_EVIDENTLY = (
    "import time; started = time.perf_counter(); import evidently; "
    "print(time.perf_counter() - started)"
)


def run_benchmark(params: dict[str, Any], args: argparse.Namespace) -> int:
    rows = []
    for size in harness.sizes(args.sizes):
        with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
            root = Path(tmp)
            started = time.perf_counter()
            shape = write_inputs(root, size, params)
            print(
                f"{size:,} + {size:,} events: generated in {time.perf_counter() - started:.1f} s",
                file=sys.stderr,
            )
            measured = harness.in_fresh_process(__file__, root)
            rows.append({"events": size, **shape, **measured})
            print(f"{size:,} + {size:,} events: {measured['job_s']} s", file=sys.stderr)
    import_s, bytecode_cached = evidently_import_seconds()
    print(_table(rows))
    print(_machine())
    cached = "cached bytecode" if bytecode_cached else "no cached bytecode: it compiles each time"
    print(f"import evidently alone, fresh process: {import_s:.1f} s ({cached})")
    return 0


# -- the data ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shop:
    """The population both windows are drawn from: users, items and the catalogue."""

    user_ids: np.ndarray
    user_weights: np.ndarray
    item_ids: np.ndarray
    item_weights: np.ndarray
    categories: np.ndarray
    prices: np.ndarray

    @property
    def catalogue(self) -> pd.DataFrame:
        return pd.DataFrame(
            {"item_id": self.item_ids, "category": self.categories, "price": self.prices}
        )


def make_shop(n_events: int, rng: np.random.Generator) -> Shop:
    """Users and items in proportion to `n_events` a window (about 20 a user, 50 an item)."""
    n_users = max(n_events // EVENTS_PER_USER, 100)
    n_items = int(np.clip(n_events // EVENTS_PER_ITEM, MIN_ITEMS, MAX_ITEMS))
    activity = rng.lognormal(0.0, 1.0, n_users)
    popularity = 1.0 / np.arange(1, n_items + 1) ** POPULARITY_EXPONENT
    popularity = popularity[rng.permutation(n_items)]  # popularity ranks spread over the ids
    category = rng.integers(0, N_CATEGORIES, n_items)
    level = rng.lognormal(3.0, 0.8, N_CATEGORIES)  # a typical price per category
    return Shop(
        user_ids=_labels("u", n_users, 7),
        user_weights=activity / activity.sum(),
        item_ids=_labels("i", n_items, 6),
        item_weights=popularity / popularity.sum(),
        categories=_labels("c", N_CATEGORIES, 2)[category],
        prices=np.round(level[category] * rng.lognormal(0.0, 0.3, n_items), 2),
    )


def _labels(prefix: str, n: int, width: int) -> np.ndarray:
    """Zero-padded ids (sorted as text as they are as numbers), as Python strings."""
    return np.array([f"{prefix}{i:0{width}d}" for i in range(n)], dtype=object)


def draw_events(
    shop: Shop, n: int, start: np.datetime64, days: int, rng: np.random.Generator
) -> pd.DataFrame:
    """`n` events in sessions: one user, about a minute between events, within the window."""
    sizes = rng.geometric(1 / SESSION_EVENTS, n // SESSION_EVENTS * 2 + 10)
    n_sessions = int(np.searchsorted(np.cumsum(sizes), n)) + 1
    sizes = sizes[:n_sessions]
    session = np.repeat(np.arange(n_sessions), sizes)[:n]
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    position = np.arange(n) - first[session]
    offset = np.minimum(position * 60 + rng.integers(0, 60, n), 3599)
    begins = rng.integers(0, days * DAY - 3600, n_sessions)
    users = rng.choice(len(shop.user_ids), n_sessions, p=shop.user_weights)
    seconds = begins[session] + offset
    return pd.DataFrame(
        {
            "user_id": shop.user_ids[users[session]],
            "item_id": shop.item_ids[rng.choice(len(shop.item_ids), n, p=shop.item_weights)],
            "event_type": np.array(EVENT_TYPES, dtype=object)[rng.choice(3, n, p=EVENT_SHARES)],
            "timestamp": (start + seconds.astype("timedelta64[s]")).astype("datetime64[ns]"),
        }
    )


def shop_artifact(
    shop: Shop, top_n: int, similar_n: int, rng: np.random.Generator
) -> ServingArtifact:
    """A serving artifact over the shop with random top lists (drawn by popularity)."""
    n_users, n_items = len(shop.user_ids), len(shop.item_ids)
    top_n, similar_n = min(top_n, n_items), min(similar_n, n_items)
    return ServingArtifact(
        user_ids=shop.user_ids.astype(str),
        item_ids=shop.item_ids.astype(str),
        item_categories=shop.categories.astype(str),
        user_top_items=rng.choice(n_items, (n_users, top_n), p=shop.item_weights).astype(np.int32),
        user_top_scores=-np.sort(-rng.random((n_users, top_n), dtype=np.float32), axis=1),
        similar_items=rng.integers(0, n_items, (n_items, similar_n), dtype=np.int32),
        similar_scores=np.ones((n_items, similar_n), dtype=np.float32),
        popular_items=np.argsort(-shop.item_weights, kind="stable").astype(np.int32),
        metadata={"model": "synthetic-benchmark"},
    )


def feedback_log(
    artifact: ServingArtifact, n: int, start: np.datetime64, days: int, rng: np.random.Generator
) -> pd.DataFrame:
    """About `n` impressions (lists of the model's top items for random users) and the clicks,
    carts and purchases that followed; version 2 replaced version 1 halfway through."""
    lists = max(n // LIST_LENGTH, 1)
    users = rng.integers(0, len(artifact.user_ids), lists)
    shown = artifact.user_top_items[users, :LIST_LENGTH]
    k = shown.shape[1]
    seconds = np.repeat(rng.integers(0, days * DAY, lists), k)
    impressions = pd.DataFrame(
        {
            "event_type": "impression",
            "user_id": np.repeat(artifact.user_ids[users], k),
            "item_id": artifact.item_ids[shown.ravel()],
            "model_version": np.where(seconds < days * DAY // 2, "1", "2"),
            "seconds": seconds,
        }
    )
    clicks = impressions[rng.random(len(impressions)) < CLICK_RATE].assign(event_type="click")
    carts = clicks[rng.random(len(clicks)) < CART_RATE].assign(event_type="add_to_cart")
    purchases = carts[rng.random(len(carts)) < PURCHASE_RATE].assign(event_type="purchase")
    log = pd.concat([impressions, clicks, carts, purchases], ignore_index=True)
    stamps = start + log.pop("seconds").to_numpy().astype("timedelta64[s]")
    log["timestamp"] = np.char.add(np.datetime_as_string(stamps, unit="s"), "Z")
    return log.sort_values("timestamp", kind="stable")


def write_inputs(root: Path, n: int, params: dict[str, Any]) -> dict[str, int]:
    """The job's inputs under `root`: validated/ (reference), incoming/ (current, raw),
    feedback.jsonl, model/ and params.yaml. Returns the shop's users and items."""
    rng = np.random.default_rng(SEED)
    shop = make_shop(n, rng)
    (root / "validated").mkdir(parents=True)
    reference = draw_events(shop, n, REFERENCE_START, REFERENCE_DAYS, rng)
    reference.to_parquet(root / "validated" / "events.parquet", index=False)
    shop.catalogue.to_parquet(root / "validated" / "items.parquet", index=False)
    del reference

    current_start = REFERENCE_START + np.timedelta64(REFERENCE_DAYS * DAY, "s")
    current = draw_events(shop, n, current_start, CURRENT_DAYS, rng)
    # Raw form: timestamps as ISO 8601 text, as an export from a shop's database has them.
    current["timestamp"] = np.datetime_as_string(current["timestamp"].to_numpy(), unit="s")
    (root / "incoming").mkdir()
    current.to_parquet(root / "incoming" / Path(CANONICAL_DATA["source"]).name, index=False)
    shop.catalogue.to_parquet(root / "incoming" / Path(CANONICAL_DATA["items"]).name, index=False)
    del current

    settings = params.get("artifact", {})
    artifact = shop_artifact(shop, settings.get("top_n", 100), settings.get("similar_n", 50), rng)
    artifact.save(root / "model")
    log = feedback_log(artifact, int(n * IMPRESSIONS_PER_EVENT), current_start, CURRENT_DAYS, rng)
    log.to_json(root / "feedback.jsonl", orient="records", lines=True)

    job_params = copy.deepcopy(params)
    duplicates = job_params.get("data", {}).get("max_duplicate_share", 0.05)
    job_params["data"] = {**CANONICAL_DATA, "max_duplicate_share": duplicates}
    (root / "params.yaml").write_text(yaml.safe_dump(job_params, sort_keys=False))
    return {"users": len(shop.user_ids), "items": len(shop.item_ids)}


# -- the measurements ----------------------------------------------------------------------


def _run_job(folder: str) -> dict[str, Any]:
    """The `drift` command on the inputs under `folder`, in this (fresh) process, with the time
    spent importing evidently, reading and validating the inputs, building the features and
    inside evidently (the data and the prediction comparisons, HTML reports included)."""
    import contextlib

    from {{ cookiecutter.package }}_core import feedback
    from {{ cookiecutter.package }}_core.shared import ExitCode
    from {{ cookiecutter.package }}_monitoring import cli, drift

    root = Path(folder)
    # The job asks the registry who is champion: a throwaway one of the benchmark's own.
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"

    phases: dict[str, float] = defaultdict(float)
    for module, name, phase in (
        (drift, "read_reference", "read"),
        (drift, "read_current", "read"),
        (feedback, "read_feedback", "read"),
        (drift, "event_features", "features"),
        (drift, "compare", "evidently"),
    ):
        setattr(module, name, _timed(getattr(module, name), phases, phase))
    argv = [
        *("--params", str(root / "params.yaml"), "drift"),
        *("--reference", str(root / "validated"), "--current", str(root / "incoming")),
        *("--feedback", str(root / "feedback.jsonl"), "--model-uri", str(root / "model")),
        *("--out", str(root / "out")),
    ]
    started = time.perf_counter()
    import evidently  # noqa: F401  (the job imports it on its first comparison: timed apart)

    imported = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the measurements only
        status = cli.main(argv)
    finished = time.perf_counter()
    if status not in (ExitCode.OK, ExitCode.CHECK_FAILED):
        raise SystemExit(f"the drift command exited with {status}")
    summary = json.loads((root / "out" / "summary.json").read_text())
    measured = sum(phases.values()) + imported - started
    return {
        "job_s": round(finished - started, 2),
        "import_s": round(imported - started, 2),
        **{f"{phase}_s": round(phases[phase], 2) for phase in ("read", "features", "evidently")},
        "other_s": round(finished - started - measured, 2),
        "peak_mb": harness.peak_memory_mb(),
        "verdict": summary["verdict"],
    }


def _timed(function: Callable[..., Any], phases: dict[str, float], phase: str) -> Callable:
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            phases[phase] += time.perf_counter() - started

    return timed


def evidently_import_seconds() -> tuple[float, bool]:
    """`import evidently` alone in a fresh interpreter, and whether its bytecode is cached."""
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_EVIDENTLY], capture_output=True, text=True, check=True
    )
    spec = importlib.util.find_spec("evidently")
    origin = spec.origin if spec is not None else None
    cached = origin is not None and Path(importlib.util.cache_from_source(origin)).is_file()
    return float(result.stdout.strip().splitlines()[-1]), cached


def _machine() -> str:
    cpus = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        total_kb = int(meminfo.read_text().split("MemTotal:")[1].split()[0])
        memory = f", {total_kb / 1024**2:.1f} GB RAM"
    versions = ", ".join(
        f"{name} {metadata.version(name)}" for name in ("evidently", "pandas", "numpy")
    )
    return (
        f"machine: {cpus} CPUs ({usable} usable){memory}; Python {platform.python_version()}, "
        f"{versions}"
    )


COLUMNS = [
    ("events/side", "events", ">12,"),
    ("users", "users", ">9,"),
    ("items", "items", ">8,"),
    ("import s", "import_s", ">10"),
    ("read s", "read_s", ">8"),
    ("features s", "features_s", ">12"),
    ("evidently s", "evidently_s", ">13"),
    ("other s", "other_s", ">9"),
    ("job s", "job_s", ">8"),
    ("peak MB", "peak_mb", ">9,"),
    ("verdict", "verdict", ""),
]


def _table(rows: list[dict[str, Any]]) -> str:
    title = (
        f"bench-drift: the drift job on N reference ({REFERENCE_DAYS} days) + N current "
        f"({CURRENT_DAYS} days) events, each size in a fresh process"
    )
    legend = (
        "job s: the whole command, import of evidently included; read s: reading and "
        "validating the inputs; evidently s: both comparisons and their HTML reports;\n"
        "other s: the rest (popularity, unknown shares, sampling the model's lists, summary)"
    )
    return f"{harness.table(COLUMNS, rows, title)}\n{legend}"


def build_parser() -> argparse.ArgumentParser:
    parser = harness.parser(__doc__)
    parser.add_argument(
        "--sizes", default="100000,1000000", help="events per window (each side), comma-separated"
    )
    return parser


if __name__ == "__main__":
    harness.main(build_parser(), run_benchmark, measure=_run_job)
