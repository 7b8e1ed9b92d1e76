"""The drift summary as a person reads it on the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def print_summary(summary: dict[str, Any], path: Path) -> None:
    data, predictions = summary["data_drift"], summary["prediction_drift"]
    current = summary["current"]
    print(f"current window: {current['events']:,} events {current['start']} .. {current['end']}")
    print(
        f"data drift: {'DRIFT' if data['drifted'] else 'ok'} "
        f"(drifted share {data['drifted_share']:.2f}, threshold {data['drift_share_threshold']})"
    )
    for column, check in data["columns"].items():
        flag = "DRIFT" if check["drifted"] else "ok"
        print(f"  {column:<18}{check['method']:<32}{check['score']:>10.4f}  {flag}")
    for kind, check in data["unknown"].items():
        flag = "DRIFT" if check["drifted"] else "ok"
        print(f"  unknown {kind:<10}share{check['share']:>33.4f}  {flag} (max {check['max']})")
    if "skipped" in predictions:
        print(f"prediction drift: skipped ({predictions['skipped']})")
    else:
        print(
            f"prediction drift: {'DRIFT' if predictions['drifted'] else 'ok'} "
            f"(drifted share {predictions['drifted_share']:.2f}, coverage ratio "
            f"{predictions['coverage']['ratio']})"
        )
    quality = summary["online_quality"]
    for version, entry in quality["versions"].items():
        print(
            f"online quality v{version}: {entry['impressions']:,} impressions, "
            f"ctr {entry['ctr']}, purchase rate {entry['purchase_rate']}"
        )
    print(f"quality: {'DROP' if quality['drop'] else 'ok'} ({quality['reason']})")
    print(f"verdict: {summary['verdict'].upper()}; summary in {path}")
