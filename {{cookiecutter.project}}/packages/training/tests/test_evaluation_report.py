"""What evaluate shows people: one table row and one metrics file per model, and SVG curves with
labelled axes and one legend entry per model, all read from the full evaluation report."""

from __future__ import annotations

import re

import pytest
import yaml

from {{ cookiecutter.package }}_core.cli import BadInput
from {{ cookiecutter.package }}_training import cli
from {{ cookiecutter.package }}_training.config import Paths
from {{ cookiecutter.package }}_training.evaluation_report import (
    HEADLINE,
    curve_spec,
    curve_svg,
    headline,
    table,
)
from {{ cookiecutter.package }}_training.model_stages import evaluate

KS = [1, 5, 10]


def group(scale: float, users: int) -> dict:
    figures = {
        f"{name}_at_{k}": round(scale * k / 100, 6)
        for name in ("ndcg", "recall", "map", "coverage")
        for k in KS
    }
    return {**figures, "n_users_evaluated": users}


EVALUATION = {
    "models": {
        "popularity": {"warm": group(1.0, 1200), "cold_start": group(0.5, 300)},
        "rp3beta": {"warm": group(2.0, 1200), "cold_start": group(0.5, 300)},
        "ease": {"warm": group(3.0, 1200), "cold_start": {"n_users_evaluated": 0}},
    },
    "split": {"cutoff": "2026-02-09T00:00:00"},
    "ks": KS,
}


def test_headline_is_one_entry_per_model_with_the_figures_at_10():
    figures = headline(EVALUATION)
    assert list(figures) == ["popularity", "rp3beta", "ease"]
    assert all(list(row) == list(HEADLINE) for row in figures.values())
    assert figures["rp3beta"]["ndcg_at_10"] == EVALUATION["models"]["rp3beta"]["warm"]["ndcg_at_10"]
    assert figures["popularity"]["cold_ndcg_at_10"] == 0.05
    assert figures["rp3beta"]["warm_users"] == 1200 and figures["rp3beta"]["cold_users"] == 300
    # No cold-start user to measure: no figure, rather than a made-up 0.
    assert figures["ease"]["cold_ndcg_at_10"] is None and figures["ease"]["cold_users"] == 0


def test_table_has_a_header_and_one_aligned_row_per_model():
    lines = table(EVALUATION).splitlines()
    assert lines[0].split()[:4] == ["model", "NDCG@10", "Recall@10", "MAP@10"]
    assert [line.split()[0] for line in lines[1:4]] == ["popularity", "rp3beta", "ease"]
    assert lines[2].split() == ["rp3beta", *["0.2000"] * 4, "0.0500", "1,200", "300"]
    assert lines[3].split()[-3:] == ["-", "1,200", "0"]
    assert len({len(line) for line in lines[:4]}) == 1  # the columns line up
    assert "2026-02-09" in table(EVALUATION) and "reports/evaluation.json" in table(EVALUATION)


def test_curves_have_one_colour_per_model_and_labelled_axes():
    spec = curve_spec(EVALUATION, "recall")
    encoding = spec["encoding"]
    assert encoding["color"]["field"] == "model"
    assert encoding["color"]["sort"] == ["popularity", "rp3beta", "ease"]
    assert encoding["x"]["title"].startswith("k") and encoding["y"]["title"] == "Recall@k"
    assert {(row["model"], row["k"]) for row in spec["data"]["values"]} == {
        (model, k) for model in EVALUATION["models"] for k in KS
    }


def test_the_svg_is_rendered_offline_with_axis_titles_and_a_legend():
    svg = curve_svg(EVALUATION, "ndcg")
    assert svg.startswith("<svg") and "<script" not in svg
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    assert "NDCG@k" in texts and "k (length of the top-k list)" in texts
    assert re.search(r"legend[^>]*with 3 values: popularity, rp3beta, ease", svg)


def test_no_model_is_a_clear_error():
    empty = {**EVALUATION, "models": {}}
    for show in (headline, table, lambda evaluation: curve_spec(evaluation, "ndcg")):
        with pytest.raises(ValueError, match="holds no model"):
            show(empty)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": {"candidates": []}}, "model.candidates is empty"),
        ({"evaluate": {"ks": [5, 20]}}, r"evaluate.ks \[5, 20\] must include 10"),
    ],
)
def test_evaluate_refuses_bad_params_before_reading_anything(tmp_path, change, message):
    params = {"model": {"candidates": ["ease"]}, "evaluate": {"ks": [10]}, **change}
    with pytest.raises(BadInput, match=message):
        evaluate(params, Paths(tmp_path))
    assert not (tmp_path / "reports").exists()


def test_the_evaluate_command_names_an_empty_candidate_list_and_exits_2(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"model": {"candidates": []}, "evaluate": {"ks": [10]}}))
    assert cli.main(["--params", str(params), "evaluate"]) == 2
    assert "model.candidates is empty" in capsys.readouterr().err
