"""The alert rules and the Grafana dashboard use only metrics (and labels) the API exports.

A renamed metric would otherwise leave an alert that never fires and a panel that stays empty,
silently. The API is built for real, driven until every series exists, and scraped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from {{ cookiecutter.package }}_api import create_app
from {{ cookiecutter.package }}_core.artifact import ServingArtifact

MONITORING = Path(__file__).resolve().parents[1] / "monitoring"
ALERTS = MONITORING / "prometheus" / "alerts.yml"
DASHBOARD = MONITORING / "grafana" / "dashboard.json"
DATASOURCE_VARIABLE = "DS_PROMETHEUS"
DATASOURCE_UID = "$" + "{" + DATASOURCE_VARIABLE + "}"

REQUIRED_ALERTS = [
    "RecommenderHighErrorRate",
    "RecommenderHighLatencyP99",
    "RecommenderNoModelLoaded",
    "RecommenderApiAbsent",
    "RecommenderModelReloadFailing",
    "RecommenderDriftDetected",
    "RecommenderDriftReportStale",
    "RecommenderOnlineQualityDrop",
    "RecommenderClickThroughDrop",
    "RecommenderHighFallbackShare",
    "RecommenderEventsLogUnavailable",
    "RecommenderEventsRejected",
]

# --- A small PromQL name extractor -----------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


FUNCTIONS = _words(
    """abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes
    clamp clamp_max clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year
    days_in_month deg delta deriv double_exponential_smoothing exp floor histogram_avg
    histogram_count histogram_fraction histogram_quantile histogram_stddev histogram_stdvar
    histogram_sum holt_winters hour idelta increase info irate label_join label_replace
    last_over_time ln log10 log2 mad_over_time max_over_time min_over_time minute month pi
    predict_linear present_over_time quantile_over_time rad rate resets round scalar sgn sin sinh
    sort sort_by_label sort_by_label_desc sort_desc sqrt stddev_over_time stdvar_over_time
    sum_over_time tan tanh time timestamp vector year"""
)
AGGREGATIONS = _words(
    """sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk
    limit_ratio"""
)
KEYWORDS = _words(
    """by without on ignoring group_left group_right offset bool and or unless atan2 start end
    inf nan"""
)
STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`")
SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)?\s*\{([^}]*)\}")
MATCHER_LABEL = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
OFFSET = re.compile(r"\boffset\s+-?[\w$]+")
# Not after a digit or a dot, so the exponent of 1e3 or the digits of 0.99 are not names.
IDENTIFIER = re.compile(r"(?<![\w.$])([A-Za-z_:][\w:]*)(\s*\()?")


def selectors(expr: str) -> dict[str, set[str]]:
    """Metric name -> label names its matchers use, for every selector in a PromQL expression."""
    text = STRING.sub('""', expr)
    found: dict[str, set[str]] = {}
    for match in SELECTOR.finditer(text):
        if match.group(1):
            found.setdefault(match.group(1), set()).update(MATCHER_LABEL.findall(match.group(2)))
    text = SELECTOR.sub(lambda m: (m.group(1) or "") + " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries (durations, $__interval)
    text = GROUPING.sub(" ", text)
    text = OFFSET.sub(" ", text)
    text = re.sub(r"\$\w+|\$\{[^}]*\}", " ", text)  # Grafana variables
    for match in IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if name.lower() in KEYWORDS:
            continue
        if call:
            if name not in FUNCTIONS | AGGREGATIONS:
                raise ValueError(f"unknown PromQL function {name!r} in {expr!r}")
        else:
            found.setdefault(name, set())
    return found


def metric_names(expr: str) -> set[str]:
    return set(selectors(expr))


# --- The files under test --------------------------------------------------------------------


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels(panels: list[dict]) -> Iterator[dict]:
    """Every panel, those inside collapsed rows included."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def dashboard_expressions() -> dict[str, str]:
    """Where -> PromQL, for every dashboard target and annotation query."""
    found = {}
    board = dashboard()
    for panel in all_panels(board["panels"]):
        for target in panel.get("targets", []):
            found[f"panel {panel['title']!r} target {target['refId']}"] = target["expr"]
    for annotation in board["annotations"]["list"]:
        if "expr" in annotation:
            found[f"annotation {annotation['name']!r}"] = annotation["expr"]
    return found


def expressions() -> dict[str, str]:
    """Where -> PromQL, for every alert and everything the dashboard queries."""
    alerts = {f"alert {rule['alert']}": rule["expr"] for rule in alert_rules()}
    return alerts | dashboard_expressions()


# --- What the API exports --------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, set[str]]:
    """Sample name -> label names, scraped from the real app after every series was created."""
    root = tmp_path_factory.mktemp("monitoring-contract")
    ServingArtifact(
        user_ids=np.array(["u1", "u2"]),
        item_ids=np.array(["a", "b", "c", "d"]),
        item_categories=np.array(["shoes", "hats", "shoes", "hats"]),
        user_top_items=np.array([[2, 1, 3], [0, 3, -1]], dtype=np.int32),
        user_top_scores=np.array([[0.9, 0.5, 0.1], [0.8, 0.2, -np.inf]], dtype=np.float32),
        similar_items=np.array([[2, 1], [3, 0], [0, 1], [1, 2]], dtype=np.int32),
        similar_scores=np.array([[0.9, 0.3], [0.8, 0.4], [0.9, 0.2], [0.8, 0.1]], np.float32),
        popular_items=np.array([1, 0, 3, 2], dtype=np.int32),
        metadata={"model": "contract"},
    ).save(root / "model")
    drift_summary = root / "reports" / "drift" / "summary.json"
    drift_summary.parent.mkdir(parents=True)
    drift_summary.write_text(
        json.dumps(
            {
                "generated_at": "2026-02-09T06:00:00+00:00",
                "verdict": "drift",
                "data_drift": {"drifted": True, "drifted_share": 0.6},
                "prediction_drift": {"drifted": False, "drifted_share": 0.0},
                "online_quality": {"drop": False},
            }
        )
    )
    app = create_app(
        {
            "MODEL_URI": str(root / "model"),
            "MODEL_REFRESH_SECONDS": 0,
            "EVENTS_LOG": str(root / "logs" / "events.jsonl"),
            "DRIFT_REPORT_DIR": str(drift_summary.parent),
        }
    )
    try:
        client = app.test_client()
        version = client.get("/v1/model").get_json()["version"]
        assert client.get("/v1/users/u1/recommendations").status_code == 200
        assert client.get("/v1/users/stranger/recommendations").status_code == 200  # fallback
        assert client.get("/v1/users/u1/recommendations?k=abc").status_code == 400
        assert client.get("/v1/items/a/similar").status_code == 200
        assert client.post("/v1/recommendations", json={"items": ["a"]}).status_code == 200
        events = [
            {"event_type": kind, "user_id": "u1", "item_id": "a", "model_version": version}
            for kind in ("impression", "click", "add_to_cart", "purchase")
        ]
        assert client.post("/v1/events", json={"events": events}).status_code == 202
        assert client.post("/v1/events", json={"events": [{"event_type": "x"}]}).status_code == 400
        response = client.get("/metrics")
        assert response.status_code == 200
        text = response.get_data(as_text=True)
    finally:
        app.extensions["model_store"].stop()
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def unexported(used: dict[str, dict[str, set[str]]], exported: dict[str, set[str]]) -> list[str]:
    """Problems: metrics the API does not export, and matcher labels those metrics lack."""
    problems = []
    for where, selected in sorted(used.items()):
        for name, labels in sorted(selected.items()):
            if name not in exported:
                problems.append(f"{where}: {name} is not exported")
            elif labels - exported[name]:
                problems.append(f"{where}: {name} has no label {sorted(labels - exported[name])}")
    return problems


def test_every_metric_in_alerts_and_dashboard_is_exported(exported):
    used = {where: selectors(expr) for where, expr in expressions().items()}
    names = set().union(*(set(selected) for selected in used.values()))
    assert len(names) >= 10, names  # the extractor found the metrics, not next to nothing
    assert unexported(used, exported) == []


def test_every_api_metric_family_is_on_the_dashboard(exported):
    """The reverse direction: nothing the API exports is forgotten by the dashboard."""
    board = {name for expr in dashboard_expressions().values() for name in metric_names(expr)}
    families = {
        re.sub(r"_(total|bucket|count|sum|created)$", "", name)
        for name in exported
        if not name.endswith("_created")
    }
    shown = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in board}
    assert sorted(families - shown) == []


def test_the_check_catches_an_unexported_metric(exported):
    expr = (
        'sum by (route) (rate(recommender_does_not_exist_total{route=~"/v1/.*"}[5m]))'
        " / ignoring (x) sum(rate(http_requests_total[5m] offset 1d))"
    )
    assert metric_names(expr) == {"recommender_does_not_exist_total", "http_requests_total"}
    assert unexported({"made up": selectors(expr)}, exported) == [
        "made up: recommender_does_not_exist_total is not exported"
    ]
    wrong_label = selectors('recommender_model_loaded{route="/v1/model"}')
    assert unexported({"made up": wrong_label}, exported) == [
        "made up: recommender_model_loaded has no label ['route']"
    ]


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("histogram_quantile(0.99, sum by (le) (rate(a_bucket[$__rate_interval])))", {"a_bucket"}),
        ("time() - max(b_seconds) > 2 * 86400", {"b_seconds"}),
        ('absent(c{job="x"}) and on () count(d) > 0 or vector(1e3)', {"c", "d"}),
        ("e / ignoring (le) group_left (f) g > bool h offset 5m", {"e", "g", "h"}),
        ("j and (k > 1) or on (l) (m unless n)", {"j", "k", "m", "n"}),
        ('label_replace(i, "dst", "$1", "src", "(.*)") == Inf', {"i"}),
    ],
)
def test_extractor_skips_functions_keywords_labels_and_durations(expr, names):
    assert metric_names(expr) == names


def test_extractor_refuses_an_unknown_function():
    with pytest.raises(ValueError, match="unknown PromQL function"):
        metric_names("rates(http_requests_total[5m])")


def test_every_expression_parses_as_promql():
    promql_parser = pytest.importorskip("promql_parser")
    for where, expr in expressions().items():
        concrete = re.sub(r"\$\w+|\$\{[^}]*\}", "5m", expr)  # Grafana variables are ranges here
        try:
            tree = promql_parser.parse(concrete)
        except Exception as error:  # the parser raises its own exception types
            pytest.fail(f"{where} does not parse: {error}")
        found: set[str] = set()

        def visit(node, found=found):
            if isinstance(node, promql_parser.VectorSelector):
                found.add(node.name)

        promql_parser.walk(tree, visit)
        # The parser agrees with the extractor the contract test relies on.
        assert found == metric_names(expr), where


# --- Structure -------------------------------------------------------------------------------


def test_alert_rules_are_complete_and_uniquely_named():
    rules = alert_rules()
    for rule in rules:
        assert {"alert", "expr", "for"} <= set(rule), rule
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert rule["annotations"]["description"], rule["alert"]
        assert "job=" not in rule["expr"].replace(" ", ""), rule["alert"]
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(REQUIRED_ALERTS)


def test_dashboard_queries_go_through_the_datasource_variable():
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables[DATASOURCE_VARIABLE]["type"] == "datasource"
    assert variables[DATASOURCE_VARIABLE]["query"] == "prometheus"
    panels = list(all_panels(board["panels"]))
    queried = [panel for panel in panels if panel.get("targets")]
    assert len(queried) >= 10
    for panel in queried:
        assert panel["datasource"]["uid"] == DATASOURCE_UID, panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target.get("datasource", panel["datasource"])["uid"] == DATASOURCE_UID
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    rows = [panel["title"] for panel in panels if panel["type"] == "row"]
    assert rows == ["System health", "Model performance"]


def test_dashboard_panels_do_not_overlap():
    cells: dict[tuple[int, int], str] = {}
    for panel in all_panels(dashboard()["panels"]):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, (panel["title"], cells.get((x, y)))
                cells[(x, y)] = panel["title"]
