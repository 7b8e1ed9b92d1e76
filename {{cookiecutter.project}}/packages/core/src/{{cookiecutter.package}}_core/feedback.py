"""Online quality from the API's feedback events log: click-through and purchase rate per version.

The drift job reports it and `rollback` acts on it; the rule that calls a drop is here, once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from .shared import FEEDBACK_KEY, FEEDBACK_LOGGED, FEEDBACK_RATES, IMPRESSION

_DECODER = json.JSONDecoder()


def feedback_files(path: Path) -> list[Path]:
    """The log files behind `EVENTS_LOG`: the file itself, or for a folder (one log per API pod
    on a shared volume, as on Kubernetes) every `*.jsonl` in it, sorted by name (hidden files
    and subfolders skipped). A missing file or folder, or an empty folder, gives none."""
    path = Path(path)
    if path.is_dir():
        logs = (log for log in path.glob("*.jsonl") if not log.name.startswith("."))
        return sorted(log for log in logs if log.is_file())
    return [path] if path.is_file() else []


def read_feedback(path: Path, since: pd.Timestamp | None = None) -> pd.DataFrame:
    """The events log as a table (timestamps in UTC, naive), each event once.

    `path` is a log file or a folder of them (`feedback_files`): the files are read in name
    order as one stream, so the event_id rule below holds across them (a retry that reached
    another pod counts once).

    An event with an `event_id` (the idempotency key) counts once however often it was logged:
    the first line that has the key stands, later ones are retries. Lines that do not parse are
    skipped, and a torn fragment in front of a valid event (a write cut short by a full disk or a
    killed writer, then the next event appended after it) does not hide that event. `since`
    keeps the events at or after that moment. A missing log (or an empty folder) is an empty
    table.
    """
    rows = []
    keys: set[str] = set()
    for log in feedback_files(path):
        with open(log, "rb") as handle:
            for event in _events(handle):
                try:
                    row = tuple(str(event[column]) for column in FEEDBACK_LOGGED)
                except KeyError:
                    continue
                if event.get(FEEDBACK_KEY) is not None:
                    key = str(event[FEEDBACK_KEY])
                    if key in keys:
                        continue
                    keys.add(key)
                rows.append(row)
    table = pd.DataFrame(rows, columns=list(FEEDBACK_LOGGED))
    table["timestamp"] = pd.to_datetime(table["timestamp"], utc=True, format="ISO8601")
    table["timestamp"] = table["timestamp"].dt.tz_localize(None)
    if since is not None:
        table = table[table["timestamp"] >= since]
    return table.reset_index(drop=True)


def _events(lines: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    """The JSON objects of the log's lines; from a line that does not parse, the first object
    that fills the rest of it (what follows a torn fragment), if any."""
    for raw in lines:
        try:
            line = raw.decode()
            event = json.loads(line)
        except ValueError:  # UnicodeDecodeError is a ValueError
            event = _after_torn_fragment(raw.decode(errors="replace"))
        if isinstance(event, dict):
            yield event


def _after_torn_fragment(line: str) -> Any:
    line = line.rstrip()
    start = line.find("{", 1)
    while start != -1:
        try:
            event, end = _DECODER.raw_decode(line, start)
            if end == len(line):
                return event
        except ValueError:
            pass
        start = line.find("{", start + 1)
    return None


def online_quality(feedback: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per model version: event counts and rates per impression, in the order versions appeared."""
    quality: dict[str, dict[str, Any]] = {}
    first_seen = feedback.groupby("model_version", sort=False)["timestamp"].min().sort_values()
    counts = feedback.groupby(["model_version", "event_type"]).size()
    for version, first in first_seen.items():
        by_type = counts.loc[version].to_dict() if version in counts.index else {}
        impressions = int(by_type.get(IMPRESSION, 0))
        entry: dict[str, Any] = {
            "first_seen": first.isoformat(),
            "impressions": impressions,
            **{f"{kind}s": int(by_type.get(kind, 0)) for kind in FEEDBACK_RATES.values()},
        }
        for rate, kind in FEEDBACK_RATES.items():
            entry[rate] = round(by_type.get(kind, 0) / impressions, 6) if impressions else None
        quality[str(version)] = entry
    return quality


def quality_drop(
    quality: Mapping[str, Mapping[str, Any]],
    champion: str | None,
    previous: str | None,
    settings: Mapping[str, Any],
) -> dict[str, Any]:
    """Has the champion's click-through fallen below `min_ctr_ratio` x the previous champion's?

    Both need `min_impressions` impressions first: with fewer, the verdict is "no drop" and the
    reason says why, so a quiet hour never triggers a rollback.
    """
    minimum, ratio_floor = int(settings["min_impressions"]), float(settings["min_ctr_ratio"])
    verdict: dict[str, Any] = {
        "champion": champion,
        "previous": previous,
        "min_impressions": minimum,
        "min_ctr_ratio": ratio_floor,
        "ratio": None,
        "drop": False,
    }
    if champion is None or previous is None:
        return {**verdict, "reason": "no previous champion to compare with"}
    now, before = quality.get(champion, {}), quality.get(previous, {})
    for version, entry in ((champion, now), (previous, before)):
        if entry.get("impressions", 0) < minimum:
            seen = entry.get("impressions", 0)
            return {**verdict, "reason": f"v{version} has {seen} impressions (< {minimum})"}
    if not before["ctr"]:
        return {**verdict, "reason": f"v{previous} has no clicks to compare with"}
    ratio = now["ctr"] / before["ctr"]
    drop = ratio < ratio_floor
    relation = "below" if drop else "within"
    return {
        **verdict,
        "ratio": round(ratio, 4),
        "drop": drop,
        "reason": f"click-through of v{champion} is {now['ctr']:.4f}, {ratio:.2f}x "
        f"v{previous}'s {before['ctr']:.4f}: {relation} the {ratio_floor}x floor",
    }
