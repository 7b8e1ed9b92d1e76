"""`model-card`: what a registered version is, what it was trained on, how it scored and why it
was promoted, as Markdown (plots as SVG files beside it) and as one self-contained HTML page.

Everything comes from the registry and the version's training run: the version's tags (lineage,
`metric.*`, `gate.*`, promotion), the run's params and its logged artifacts
(`reports/evaluation.json`, `reports/validation.json`, `reports/split.json`, `reports/train.json`,
`plots/*.svg`). Nothing is read from the workspace, so the card describes the registered version
even after the workspace's data and params moved on.
"""

from __future__ import annotations

import ast
import html
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from {{ cookiecutter.package }}_core.registry import client
from {{ cookiecutter.package }}_core.shared import CHAMPION, tracking_uri

from .audit import AuditError, _model_version, _prefixed, audit_version

K = 10
# Column title -> (group of users in evaluation.json, figure in that group).
COLUMNS = {
    f"NDCG@{K}": ("warm", f"ndcg_at_{K}"),
    f"Recall@{K}": ("warm", f"recall_at_{K}"),
    f"MAP@{K}": ("warm", f"map_at_{K}"),
    f"coverage@{K}": ("warm", f"coverage_at_{K}"),
    f"cold NDCG@{K}": ("cold_start", f"ndcg_at_{K}"),
    f"cold Recall@{K}": ("cold_start", f"recall_at_{K}"),
    "warm users": ("warm", "n_users_evaluated"),
    "cold users": ("cold_start", "n_users_evaluated"),
}
POPULARITY = "popularity"
REPORTS = ("evaluation.json", "validation.json", "split.json", "train.json")
PLOTS = ("ndcg_at_k.svg", "recall_at_k.svg")
MISSING = "-"


class CardError(AuditError):
    """No champion to describe, or no such version (exit 2, bad input)."""


def build(name: str, version: str | None = None) -> dict[str, Any]:
    """The card's facts for `version` (a number or an alias; default `champion`)."""
    mlflow_client = client()
    wanted = str(version or CHAMPION)
    try:
        model_version = _model_version(mlflow_client, name, wanted)
    except AuditError as error:
        if wanted == CHAMPION:
            raise CardError(
                f"{name} has no champion in the registry at {tracking_uri()}: nothing has "
                "passed the gate yet; give --version N for a version that did not"
            ) from error
        raise CardError(str(error)) from error
    number = str(model_version.version)
    record = audit_version(mlflow_client, name, number)
    tags = dict(model_version.tags or {})
    run_id = record["training_run"]["run_id"]
    reports, plots = _run_artifacts(mlflow_client, run_id)
    evaluation = reports.get("evaluation.json") or {}
    model = tags.get("model") or "?"
    params = record["params"]["logged"]
    return {
        "model": {
            "name": name,
            "version": number,
            "aliases": record["model_version"]["aliases"],
            "created_at": record["model_version"]["created_at"],
            "type": model,
            "params": {
                key: value
                for key, value in params.items()
                if key.startswith((f"model.{model}.", "matrix.", "artifact."))
            },
            "params_hash": tags.get("params_hash"),
            "template": tags.get("template"),
            "git_commit": tags.get("git_commit"),
            "git_dirty": tags.get("git_dirty"),
            "run_id": run_id,
            "registered_at": tags.get("registered_at"),
            "triggered_by": tags.get("triggered_by"),
            "trigger": tags.get("trigger"),
        },
        "data": _data(tags, params, reports),
        "metric_tags": _prefixed(tags, "metric."),
        "evaluation": _evaluation(model, evaluation, _prefixed(tags, "metric.")),
        "plots": plots,
        "gate": record["gate"],
        "approval": record["approval"],
        "promotion": record["promotion"],
        "rollback": record["rollback"],
        "run_found": record["training_run"]["status"] != "not found",
    }


def _run_artifacts(
    mlflow_client: MlflowClient, run_id: str | None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The run's reports (parsed JSON) and SVG plots (text); what is missing is left out."""
    reports: dict[str, Any] = {}
    plots: dict[str, str] = {}
    if not run_id:
        return reports, plots
    with tempfile.TemporaryDirectory() as folder:
        for path, into in [(f"reports/{r}", reports) for r in REPORTS] + [
            (f"plots/{p}", plots) for p in PLOTS
        ]:
            try:
                local = Path(mlflow_client.download_artifacts(run_id, path, folder))
            except (MlflowException, OSError):
                continue
            text = local.read_text(encoding="utf-8")
            into[local.name] = json.loads(text) if local.suffix == ".json" else text
    return reports, plots


def _data(tags: dict[str, str], params: dict[str, str], reports: dict[str, Any]) -> dict[str, Any]:
    validation = reports.get("validation.json") or {}
    split = reports.get("split.json") or {}
    train = reports.get("train.json") or {}
    window = validation.get("time_range") or [None, None]
    return {
        "dvc_data_hash": tags.get("dvc_data_hash"),
        "data_source": tags.get("data_source"),
        "window_start": window[0],
        "window_end": window[1],
        "split_cutoff": split.get("cutoff") or tags.get("split_cutoff"),
        "holdout_days": params.get("split.holdout_days"),
        "relevant_events": _listed(params.get("split.relevant_events")),
        "events": validation.get("rows_valid"),
        "events_by_type": validation.get("events_by_type"),
        "users": validation.get("users"),
        "items": validation.get("items"),
        "train_events": split.get("train_events"),
        "train_users": train.get("n_users"),
        "train_items": train.get("n_items"),
        "test_pairs": split.get("test_pairs"),
        "test_users_warm": split.get("test_users_warm"),
        "test_users_cold_start": split.get("test_users_cold_start"),
    }


def _evaluation(
    model: str, evaluation: dict[str, Any], metric_tags: dict[str, str]
) -> dict[str, Any]:
    """One row per candidate of the run's evaluation, the registered model first; without
    the run's evaluation.json, the registered model's row from its metric tags alone."""
    models = evaluation.get("models") or {}
    rows: dict[str, dict[str, Any]] = {}
    for candidate in sorted(models, key=lambda name: name != model):
        report = models[candidate]
        rows[candidate] = {
            title: (report.get(group) or {}).get(key) for title, (group, key) in COLUMNS.items()
        }
    if model not in rows:
        rows = {
            model: {
                title: _float(metric_tags.get(key)) if group == "warm" else None
                for title, (group, key) in COLUMNS.items()
            },
            **rows,
        }
    return {"rows": rows, "ks": evaluation.get("ks"), "lift": _lift(model, rows)}


def _lift(model: str, rows: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """The registered model's warm figures divided by popularity's."""
    if POPULARITY not in rows or model == POPULARITY:
        return {}
    lift: dict[str, float | None] = {}
    for title in (f"NDCG@{K}", f"Recall@{K}", f"MAP@{K}"):
        mine, base = rows[model].get(title), rows[POPULARITY].get(title)
        lift[title] = mine / base if mine is not None and base else None
    return lift


def _listed(value: str | None) -> Any:
    """A list param as MLflow logged it (its repr) back to a list; other text unchanged."""
    try:
        return ast.literal_eval(value) if value and value.startswith("[") else value
    except (ValueError, SyntaxError):
        return value


def _float(value: str | None) -> float | None:
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def _cell(value: Any) -> str:
    if value is None or value == "":
        return MISSING
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value) or MISSING
    if isinstance(value, dict):
        return ", ".join(f"{key} {_cell(item)}" for key, item in value.items()) or MISSING
    return str(value)


# The card as sections: (title, either key/value rows or text paragraphs, or a table).


def sections(card: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    """The card's sections, each a title and blocks: ("rows", dict), ("table", header, rows),
    ("text", paragraph) or ("plot", file name)."""
    model, data, evaluation = card["model"], card["data"], card["evaluation"]
    rows = evaluation["rows"]
    mine = rows.get(model["type"]) or {}
    gate, promotion = card["gate"], card["promotion"]
    header = ["model", *COLUMNS]
    table = [
        [f"**{name}** (this version)" if name == model["type"] else name]
        + [_cell(figures.get(title)) for title in COLUMNS]
        for name, figures in rows.items()
    ]
    lift = evaluation["lift"]
    lift_text = ", ".join(f"{title} x{value:.2f}" for title, value in lift.items() if value)
    out: list[tuple[str, list[Any]]] = [
        (
            "Model",
            [
                (
                    "rows",
                    {
                        "registered model": model["name"],
                        "version": model["version"],
                        "aliases": model["aliases"] or ["no alias"],
                        "model type": model["type"],
                        "registered at": model["registered_at"] or model["created_at"],
                        "trigger": f"{_cell(model['trigger'])} by {_cell(model['triggered_by'])}",
                        "training run": model["run_id"],
                        "git commit": f"{_cell(model['git_commit'])}"
                        + (" (uncommitted changes)" if model["git_dirty"] == "true" else ""),
                        "template release": model["template"],
                        "params hash": model["params_hash"],
                    },
                ),
                ("rows", {f"`{key}`": value for key, value in model["params"].items()}),
            ],
        ),
        (
            "Data",
            [
                (
                    "rows",
                    {
                        "DVC data hash": data["dvc_data_hash"],
                        "source": data["data_source"],
                        "window": f"{_day(data['window_start'])} to {_day(data['window_end'])}",
                        "test cutoff": f"{_cell(data['split_cutoff'])} (train before it, "
                        f"test {_cell(data['holdout_days'])} days from it)",
                        "relevant test events": data["relevant_events"],
                        "events": data["events"],
                        "events by type": data["events_by_type"],
                        "users / items": f"{_cell(data['users'])} / {_cell(data['items'])}",
                        "train events": data["train_events"],
                        "train users x items": f"{_cell(data['train_users'])} x "
                        f"{_cell(data['train_items'])}",
                        "test pairs": data["test_pairs"],
                        "test users warm / cold": f"{_cell(data['test_users_warm'])} / "
                        f"{_cell(data['test_users_cold_start'])}",
                    },
                )
            ],
        ),
        (
            "Evaluation",
            [
                (
                    "text",
                    "Every candidate of the training run on the same temporal split (test "
                    f"events from {_cell(data['split_cutoff'])} on). Warm users are known to "
                    "the model; cold users are new and get the popularity fallback. "
                    + (f"Lift over popularity: {lift_text}." if lift_text else ""),
                ),
                ("table", header, table),
                (
                    "rows",
                    {
                        f"`metric.{key}` (version tag)": value
                        for key, value in card["metric_tags"].items()
                        if key.endswith(f"_at_{K}")
                    },
                ),
                *[("plot", name) for name in PLOTS if name in card["plots"]],
            ],
        ),
        ("Gate decision", [_gate_block(gate, promotion, card["approval"], card["rollback"])]),
        ("Intended use", [("text", paragraph) for paragraph in _intended_use(model)]),
        ("Limits", [("text", paragraph) for paragraph in _limits(model, data, mine)]),
        (
            "Cold-start behaviour",
            [("text", paragraph) for paragraph in _cold_start(model, data, rows)],
        ),
    ]
    if not card["run_found"]:
        out.insert(0, ("Warning", [("text", "The training run was not found: no figures.")]))
    return out


def _gate_block(
    gate: dict[str, str],
    promotion: dict[str, str],
    approval: dict[str, str],
    rollback: dict[str, str],
) -> tuple[str, dict[str, Any]]:
    rows: dict[str, Any] = {"decision": "not gated (registered, never through the gate)"}
    if gate:
        rows = {
            "decision": gate.get("decision"),
            "reason": gate.get("reason"),
            "metric": gate.get("metric"),
            "candidate / popularity": f"{_cell(gate.get('candidate'))} / "
            f"{_cell(gate.get('popularity'))}",
            "lift over popularity": f"{_cell(gate.get('lift_over_popularity'))} (required "
            f"{_cell(gate.get('min_lift_over_popularity'))})",
            "champion then": _champion_then(gate),
            "max drop vs champion": gate.get("max_drop_vs_champion"),
            "split": gate.get("split_cutoff"),
            "decided": f"{_cell(gate.get('decided_at'))} by {_cell(gate.get('decided_by'))}",
        }
    if gate.get("advice"):
        rows["advice"] = gate["advice"]
    if approval:
        rows["approval"] = ", ".join(f"{key} {value}" for key, value in approval.items())
    if promotion:
        rows["promoted"] = (
            f"{_cell(promotion.get('promoted_at'))} by {_cell(promotion.get('promoted_by'))}"
            + (
                f", replacing v{promotion['previous_champion']}"
                if promotion.get("previous_champion")
                else ""
            )
        )
    else:
        rows["promoted"] = "never champion"
    if rollback:
        rows["rolled back"] = f"{rollback.get('at')} to v{rollback.get('to')}: " + _cell(
            rollback.get("reason")
        )
    return ("rows", rows)


def _champion_then(gate: dict[str, str]) -> str:
    """The champion's figure the gate compared with (re-scored on this split), if any."""
    if not gate.get("champion_value"):
        return "none (first champion)"
    text = f"{gate['champion_value']} re-scored on this split"
    if gate.get("champion_training_value"):
        text += f" ({gate['champion_training_value']} at its registration)"
    return text


def _intended_use(model: dict[str, Any]) -> list[str]:
    return [
        f"Top-k product recommendations ({model['type']}) for the shop's users, served by the "
        "recommendation API and the batch export: a ranked list of items per user, and similar "
        "items per item.",
        "Ranking items the shop sells to people it has seen: not a prediction of purchases, "
        "prices or demand, and not for decisions about people (credit, eligibility).",
    ]


def _limits(model: dict[str, Any], data: dict[str, Any], mine: dict[str, Any]) -> list[str]:
    coverage = mine.get(f"coverage@{K}")
    return [
        "Personalised for warm users only: users with events before the test cutoff "
        f"({_cell(data['train_users'])} users). Anyone else gets the popularity ranking.",
        f"Catalogue: the {_cell(data['train_items'])} items seen in the training window; an "
        "item added later is never recommended until a retrain. "
        + (
            f"The top-{K} lists of warm users reach {coverage:.1%} of the catalogue."
            if isinstance(coverage, float)
            else ""
        ),
        f"List length: the artifact stores each warm user's top "
        f"{_cell(model['params'].get('artifact.top_n'))} and each item's "
        f"{_cell(model['params'].get('artifact.similar_n'))} most similar items; a request "
        "for more gets at most that many. Memory grows with the catalogue: "
        "the README (Models and metrics) says which model fits past which size.",
        f"Data window: {_day(data['window_start'])} to {_day(data['window_end'])} "
        f"({_cell(data['data_source'])}). Tastes, prices and the catalogue drift after it; the "
        "drift job and a retrain keep the champion current.",
        "The figures are offline ones, from one temporal split of this window; online "
        "click-through is measured by the API's feedback and the canary check.",
    ]


def _cold_start(
    model: dict[str, Any], data: dict[str, Any], rows: dict[str, dict[str, Any]]
) -> list[str]:
    mine = rows.get(model["type"]) or {}
    cold_users = mine.get("cold users")
    figures = (
        f"Measured on the {_cell(cold_users)} cold test users: NDCG@{K} "
        f"{_cell(mine.get(f'cold NDCG@{K}'))}, Recall@{K} {_cell(mine.get(f'cold Recall@{K}'))}"
    )
    popularity = rows.get(POPULARITY)
    if popularity and model["type"] != POPULARITY:
        figures += (
            f" (the popularity model on warm users: NDCG@{K} {_cell(popularity.get(f'NDCG@{K}'))})"
        )
    return [
        "A user the model has not seen (no event before the cutoff) gets the popularity "
        "ranking stored in the artifact: the most interacted-with items of the training "
        "window, the same list for every new user, minus what the request excludes.",
        figures + ".",
        "An item the model has not seen has no similar items and is not recommended.",
    ]


def _day(value: str | None) -> str:
    return MISSING if not value else str(value)[:10]


# Renderings.


def markdown(card: dict[str, Any], plots_folder: str) -> str:
    """The card as Markdown; each plot an image link into `plots_folder` (relative)."""
    model = card["model"]
    aliases = ", ".join(model["aliases"]) or "no alias"
    lines = [f"# Model card: {model['name']} v{model['version']} ({aliases})", ""]
    lines.append(
        "Filled from the MLflow registry and the version's training run "
        f"(`{model['run_id']}`), not from the workspace."
    )
    for title, blocks in sections(card):
        lines += ["", f"## {title}", ""]
        for block in blocks:
            kind = block[0]
            if kind == "rows" and block[1]:
                lines += ["| | |", "|---|---|"]
                lines += [f"| {key} | {_md(_cell(value))} |" for key, value in block[1].items()]
                lines.append("")
            elif kind == "table":
                header, table = block[1], block[2]
                lines.append("| " + " | ".join(header) + " |")
                lines.append("|---|" + "---:|" * (len(header) - 1))
                lines += ["| " + " | ".join(row) + " |" for row in table]
                lines.append("")
            elif kind == "text":
                lines += [block[1], ""]
            elif kind == "plot":
                name = block[1]
                lines += [f"![{_plot_title(name)}]({plots_folder}/{name})", ""]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).rstrip() + "\n"


def page(card: dict[str, Any]) -> str:
    """The card as one HTML page, its SVG plots inline: no file or network beside it."""
    model = card["model"]
    aliases = ", ".join(model["aliases"]) or "no alias"
    title = f"Model card: {model['name']} v{model['version']} ({aliases})"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<p>Filled from the MLflow registry and the version's training run "
        f"(<code>{html.escape(str(model['run_id']))}</code>), not from the workspace.</p>",
    ]
    for heading, blocks in sections(card):
        slug = re.sub(r"[^a-z]+", "-", heading.lower()).strip("-")
        parts.append(f'<section id="{slug}"><h2>{html.escape(heading)}</h2>')
        for block in blocks:
            kind = block[0]
            if kind == "rows" and block[1]:
                parts.append('<table class="rows">')
                parts += [
                    f"<tr><th>{_inline(key)}</th><td>{_inline(_cell(value))}</td></tr>"
                    for key, value in block[1].items()
                ]
                parts.append("</table>")
            elif kind == "table":
                header, table = block[1], block[2]
                parts.append('<table class="figures"><tr>')
                parts += [f"<th>{html.escape(cell)}</th>" for cell in header]
                parts.append("</tr>")
                for row in table:
                    parts.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>")
                parts.append("</table>")
            elif kind == "text":
                parts.append(f"<p>{_inline(block[1])}</p>")
            elif kind == "plot":
                name = block[1]
                parts.append(
                    f'<figure id="plot-{name.removesuffix(".svg")}">{_svg(card["plots"][name])}'
                    f"<figcaption>{html.escape(_plot_title(name))}</figcaption></figure>"
                )
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
    "color:#222}table{border-collapse:collapse;margin:.5rem 0}th,td{padding:.2rem .6rem;"
    "border-bottom:1px solid #ddd;text-align:left;vertical-align:top}"
    "table.figures td:not(:first-child){text-align:right;font-variant-numeric:tabular-nums}"
    "code{background:#f4f4f4;padding:0 .2rem}figure{margin:1rem 0}svg{max-width:100%;"
    "height:auto}"
)


def _svg(text: str) -> str:
    """An SVG file's markup without its XML declaration, to sit inside HTML."""
    return re.sub(r"^\s*<\?xml[^>]*\?>\s*", "", text)


def _plot_title(name: str) -> str:
    metric = name.split("_at_")[0]
    return f"{'NDCG' if metric == 'ndcg' else metric.title()}@k per model, warm users"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _inline(text: str) -> str:
    """Escaped text with Markdown's `code` and **bold** as HTML."""
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)


def write(card: dict[str, Any], out: Path, with_html: bool = True) -> list[Path]:
    """The Markdown card at `out`, its plots in `<out stem>-plots/` and (`with_html`) the HTML
    page beside it (`out` with .html). Returns the files written."""
    out.parent.mkdir(parents=True, exist_ok=True)
    plots_dir = out.with_name(f"{out.stem}-plots")
    written = []
    if card["plots"]:
        plots_dir.mkdir(exist_ok=True)
        for name, text in card["plots"].items():
            (plots_dir / name).write_text(text, encoding="utf-8")
            written.append(plots_dir / name)
    out.write_text(markdown(card, plots_dir.name), encoding="utf-8")
    written.insert(0, out)
    if with_html:
        html_file = out.with_suffix(".html")
        html_file.write_text(page(card), encoding="utf-8")
        written.insert(1, html_file)
    return written
