"""What people read of an evaluation: one headline row per model (the printed table and the
DVC metrics files) and the metric@k curves as SVG plots.

Everything here reads the evaluate stage's full report (`reports/evaluation.json`: models ->
warm / cold_start -> every metric at every k), so the table, `dvc metrics show` and the plots
always agree with it.
"""

from __future__ import annotations

from typing import Any

HEADLINE_K = 10
# Headline key -> (column title, group of users, figure in that group's report).
HEADLINE = {
    f"ndcg_at_{HEADLINE_K}": (f"NDCG@{HEADLINE_K}", "warm", f"ndcg_at_{HEADLINE_K}"),
    f"recall_at_{HEADLINE_K}": (f"Recall@{HEADLINE_K}", "warm", f"recall_at_{HEADLINE_K}"),
    f"map_at_{HEADLINE_K}": (f"MAP@{HEADLINE_K}", "warm", f"map_at_{HEADLINE_K}"),
    f"coverage_at_{HEADLINE_K}": (f"coverage@{HEADLINE_K}", "warm", f"coverage_at_{HEADLINE_K}"),
    f"cold_ndcg_at_{HEADLINE_K}": (
        f"cold NDCG@{HEADLINE_K}",
        "cold_start",
        f"ndcg_at_{HEADLINE_K}",
    ),
    "warm_users": ("warm users", "warm", "n_users_evaluated"),
    "cold_users": ("cold users", "cold_start", "n_users_evaluated"),
}
CURVES = {"ndcg": "NDCG@k", "recall": "Recall@k"}


def _models(evaluation: dict[str, Any]) -> dict[str, Any]:
    models = evaluation.get("models") or {}
    if not models:
        raise ValueError("the evaluation holds no model: model.candidates must name at least one")
    return models


def headline(evaluation: dict[str, Any]) -> dict[str, dict[str, float | int | None]]:
    """Model -> the headline figures; None where a group had no user (nothing to measure)."""
    return {
        model: {key: report.get(group, {}).get(name) for key, (_, group, name) in HEADLINE.items()}
        for model, report in _models(evaluation).items()
    }


def table(evaluation: dict[str, Any]) -> str:
    """The headline figures as an aligned text table, one row per model, in candidate order."""
    header = ["model", *(title for title, _, _ in HEADLINE.values())]
    rows = [
        [model, *(_cell(value) for value in figures.values())]
        for model, figures in headline(evaluation).items()
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [_aligned(row, widths) for row in [header, *rows]]
    cutoff = str((evaluation.get("split") or {}).get("cutoff"))[:10]
    notes = [
        f"Test events from {cutoff} on; users with a test item in the catalogue: warm ones are",
        "known to the model, cold ones are new and get the popularity fallback.",
        "Every metric at every k: reports/evaluation.json; curves: reports/plots/*.svg",
    ]
    return "\n".join([*lines, "", *notes])


def _aligned(row: list[str], widths: list[int]) -> str:
    """Model names flush left, figures flush right (their decimal points line up)."""
    (name, *figures), (first, *rest) = row, widths
    return "  ".join([name.ljust(first), *(f.rjust(w) for f, w in zip(figures, rest, strict=True))])


def _cell(value: float | int | None) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:.4f}"


def curve_spec(evaluation: dict[str, Any], metric: str) -> dict[str, Any]:
    """A Vega-Lite line chart of `metric`@k on warm users: one line and colour per model."""
    title = CURVES[metric]
    models = _models(evaluation)
    values = [
        {"model": model, "k": k, "value": report["warm"][f"{metric}_at_{k}"]}
        for model, report in models.items()
        for k in evaluation["ks"]
        if f"{metric}_at_{k}" in report.get("warm", {})
    ]
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": f"{title} per model, warm users",
        "data": {"values": values},
        "mark": {"type": "line", "point": True},
        "encoding": {
            "x": {"field": "k", "type": "quantitative", "title": "k (length of the top-k list)"},
            "y": {"field": "value", "type": "quantitative", "title": title},
            # The legend in candidate order (params.yaml), not alphabetical.
            "color": {"field": "model", "type": "nominal", "title": "model", "sort": list(models)},
        },
    }


def curve_svg(evaluation: dict[str, Any], metric: str) -> str:
    """The chart rendered to SVG in-process (vl-convert bundles Vega): no browser, no network,
    and `dvc plots show` shows it as an image, so its HTML needs no script from a CDN."""
    import vl_convert

    return vl_convert.vegalite_to_svg(curve_spec(evaluation, metric))
