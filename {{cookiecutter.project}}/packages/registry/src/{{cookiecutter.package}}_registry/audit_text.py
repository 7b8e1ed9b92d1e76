"""The audit as a person reads it: sections of key/value rows, then the timeline."""

from __future__ import annotations

from typing import Any

MISSING = "-"


def render(report: dict[str, Any] | list[dict[str, Any]]) -> str:
    """The audit as sections of key/value rows, then the timeline (one block per version)."""
    if isinstance(report, list):
        return "\n\n".join(render(record) for record in report)
    version, params = report["model_version"], report["params"]
    sections = [
        ("API", report["api"] or {}, None),
        ("MODEL VERSION", version, "no record"),
        ("TRAINING RUN", report["training_run"], "no record"),
        ("CODE", report["code"], "no record"),
        ("DATA", report["data"], "no record"),
        ("PARAMS", {"params_hash": params["params_hash"], **params["logged"]}, "no record"),
        ("METRICS (version tags)", _metric_rows(report["metrics"]["tags"]), "no record"),
        ("GATE", report["gate"], "not gated"),
        ("APPROVAL", report["approval"], "no approval record"),
        ("PROMOTION", report["promotion"], "never champion"),
        ("ROLLBACK", report["rollback"], "never rolled back"),
        ("RESTORED", report["restored"], "never restored"),
    ]
    width = 2 + max(len(key) for _, rows, _ in sections for key in rows)
    aliases = ", ".join(version["aliases"]) or "no alias"
    lines = [f"== {version['name']} v{version['version']} ({aliases}) =="]
    for title, rows, empty in sections:
        if not rows and empty is None:
            continue
        lines.append(title)
        if not rows:
            lines.append(f"  ({empty})")
        for key, value in rows.items():
            lines.append(f"  {key:<{width}}{_text(value)}")
    lines.append("BATCH EXPORTS")
    if not report["exports"]:
        lines.append("  (no export)")
    for export in report["exports"]:
        lines.append(
            f"  {export['date']}  {export['rows']:>12,} rows  {export['path']}  "
            f"(run {export['run_id']})"
        )
    lines.append("TIMELINE")
    for step in report["timeline"]:
        by, detail = _text(step["by"]), _text(step["detail"])
        lines.append(f"  {step['at']:<26}{step['step']:<13}{by:<30}{detail}")
    return "\n".join(lines)


def _metric_rows(metrics: dict[str, str]) -> dict[str, str]:
    """`ndcg_at_1`, `ndcg_at_5`... as one row `ndcg@k` with `1: ... 5: ...`, by increasing k."""
    rows: dict[str, str] = {}
    by_k: dict[str, list[tuple[int, str]]] = {}
    for key, value in metrics.items():
        base, _, k = key.rpartition("_at_")
        if base and k.isdigit():
            by_k.setdefault(f"{base}@k", []).append((int(k), value))
        else:
            rows[key] = value
    for key, values in sorted(by_k.items()):
        rows[key] = "  ".join(f"{k}: {value}" for k, value in sorted(values))
    return rows


def _text(value: Any) -> str:
    if value is None or value == "":
        return MISSING
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value) or MISSING
    return str(value)
