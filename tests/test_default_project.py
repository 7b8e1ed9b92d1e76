"""The default bake, for real: `make setup test`, the golden path, a no-op rerun, lineage, and a
failing gate that leaves the champion alone. Slow: it installs and trains.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest
import yaml
from browser import serve
from conftest import free_port, kubectl_without_a_cluster, make, run, tool

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(default_project) -> Path:
    return default_project  # conftest's session bake: the image tests build from it too


def test_generated_project_tests_pass(project):
    # `make ci` is what code CI runs on a pull request (lint, typecheck, the fast tests,
    # security, wheels, docs); `make test-slow` adds the rest of `make test`.
    result = make(project, "ci", "test-slow")
    assert " passed" in result.stdout
    assert " failed" not in result.stdout
    assert "Success: no issues found" in result.stdout  # mypy
    assert list((project / "dist" / "wheels").glob("*.whl"))


@pytest.fixture(scope="module")
def golden_path(project) -> subprocess.CompletedProcess:
    return make(project, "demo")


def test_golden_path_recommends_from_the_champion(project, golden_path):
    lines = [line for line in golden_path.stdout.splitlines() if line.startswith("user ")]
    assert len(lines) == 3
    for line in lines:
        assert "(personalized" in line
        assert len(line.split(": ", 1)[1].split(", ")) == 10
    assert "promoted version 1 to champion" in golden_path.stdout


def test_golden_path_serves_load_tests_checks_drift_and_audits(golden_path):
    output = golden_path.stdout + golden_path.stderr
    assert "serves model version 1" in output
    assert "GET /v1/users/u00042/recommendations?k=5 (personalized)" in output
    assert "GET /v1/users/a-new-visitor/recommendations?k=5 (popularity)" in output
    assert "SLO met" in output
    assert "verdict: NO_DRIFT" in output  # a fresh week of the same shop
    assert "== shop-recommender v1 (champion) ==" in output
    assert "TIMELINE" in output


def test_smoke_checks_a_running_api_at_its_url(project, golden_path):
    """`make smoke URL=` as every deploy job runs it, against a server it did not start."""
    port = free_port()
    env = {"PORT": str(port), "HOST": "127.0.0.1", "LOG_LEVEL": "warning"}
    server = subprocess.Popen(
        ["make", "--no-print-directory", "serve"], cwd=project, env={**os.environ, **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        result = make(project, "smoke", f"URL=http://127.0.0.1:{port}")
        assert "serves model version 1" in result.stdout
        assert "(personalized)" in result.stdout and "SLO met" in result.stdout + result.stderr
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    # Nothing answers there now: a clear error, not a hang.
    failed = make(project, "smoke", f"URL=http://127.0.0.1:{port}", "READY_WITHIN=3", check=False)
    assert failed.returncode != 0 and "did not get ready" in failed.stderr


def test_smoke_refuses_a_port_another_server_holds(project, golden_path):
    """Serving its own API, smoke refuses a busy port: the API already there would answer."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        smoke = [".tools/bin/uv", "run", "--no-sync", "python", "loadtest/smoke.py"]
        refused = run([*smoke, "--port", str(port)], cwd=project, check=False)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"port {port} is in use" in refused.stdout


def test_second_repro_is_a_no_op(project, golden_path):
    result = make(project, "pipeline")
    assert "Running stage" not in result.stdout
    assert "Data and pipelines are up to date" in result.stdout + result.stderr


def champion(project: Path) -> dict:
    return json.loads(make(project, "-s", "lineage", "ARGS=--json").stdout)


def test_champion_carries_its_lineage(project, golden_path):
    record = champion(project)
    assert record["version"] == "1"
    assert "champion" in record["aliases"]
    tags = record["tags"]
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert tags["git_commit"] == head
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    outs = {out["path"]: out["md5"] for out in lock["stages"]["validate"]["outs"]}
    assert tags["dvc_data_hash"] == outs["data/validated/events.parquet"]
    assert tags["gate.decision"] == "pass"
    assert float(tags["gate.lift_over_popularity"]) >= 1.25
    assert tags["model"] == "rp3beta"
    for key in ("params_hash", "triggered_by", "trigger", "training_run_id", "promoted_by"):
        assert tags[key]


def test_failing_gate_leaves_the_champion_unchanged(project, golden_path):
    params_file = project / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params["model"]["rp3beta"]["beta"] = 0.6  # a new candidate version...
    params["gate"]["min_lift_over_popularity"] = 100.0  # ...that cannot pass
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        result = make(project, "pipeline", check=False)
        # make exits 2 for any failed recipe and names the command's own code: the gate's 3,
        # not DVC's 255 (the project README's "Exit codes")...
        assert result.returncode == 2, result.stdout + result.stderr
        assert re.search(r"\bpipeline\] Error 3$", result.stderr, re.M), result.stderr
        assert "GATE FAILED" in result.stderr and "what to try:" in result.stderr
        assert "gate.min_lift_over_popularity (100.0)" in result.stderr
        # ...and the command it runs (`make -n` prints it), as CI and Jobs run it, exits 3.
        command = make(project, "-n", "pipeline").stdout.strip()
        # The shell conftest's `make` gives the project: not this run's venv or registry.
        shell = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
        shell.pop("MLFLOW_TRACKING_URI", None)
        shell["DVC_NO_ANALYTICS"] = "1"
        direct = subprocess.run(
            command, shell=True, cwd=project, env=shell, capture_output=True, text=True
        )
        assert direct.returncode == 3, direct.stdout + direct.stderr
        assert "GATE FAILED" in direct.stderr
        record = champion(project)
        assert record["version"] == "1"
        log = (project / "logs" / "promotions.jsonl").read_text().splitlines()
        assert json.loads(log[-1])["decision"] == "fail"
        assert json.loads(log[-1])["version"] == "2"
    finally:
        params_file.write_text(original)


def test_deploy_rollback_moves_the_champion_and_the_overlay_follows(project, golden_path, tmp_path):
    """`make deploy-rollback` as the rollback workflow runs it: the registry's champion moves
    (recorded with the reason), the overlay is re-pinned to it and applied. There is no cluster
    here: kubectl's `apply` keeps what it was given."""
    # v2: the candidate test_failing_gate_leaves_the_champion_unchanged registered (it runs first).
    assert make(project, "-s", "lineage", "ARGS=--version 2", check=False).returncode == 0
    env = kubectl_without_a_cluster(tmp_path, tmp_path)
    reason = 'drill: "v1" back, then forward, again'
    try:
        make(project, "deploy-rollback", "ENV=staging", f"REASON={reason}", "TO=2", env=env)
        record = champion(project)
        assert record["version"] == "2" and record["tags"]["restored.from"] == "1"
        v1 = json.loads(make(project, "-s", "lineage", "ARGS=--json --version 1").stdout)
        assert v1["tags"]["rollback.reason"] == reason
        applied = [d for d in yaml.safe_load_all((tmp_path / "applied.yaml").read_text()) if d]
        settings = next(d for d in applied if d["metadata"]["name"].startswith("settings-"))
        assert settings["data"]["MODEL_URI"] == "models:/shop-recommender/2"
        assert "rollout status deployment/api" in (tmp_path / "kubectl.log").read_text()
    finally:
        make(project, "rollback", "REASON=the test's drill is over", "TO=1", check=False)
        subprocess.run(["git", "checkout", "--", "k8s"], cwd=project, check=True)


# --- The reference pages (docs/hooks/reference_pages.py) ----------------------------------------


def test_the_template_sites_reference_pages_are_the_default_projects(project):
    """docs/reference/project/ holds what the default bake generates: a change to a source
    (the Makefile, a parser, params.yaml, openapi.yaml...) without `--write` fails here."""
    template = Path(__file__).resolve().parents[1]
    checked = subprocess.run(
        ["python3", "scripts/reference_pages.py", "--check", str(project)],
        cwd=template,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def text_of(page: Path) -> str:
    """A built page's text, as a reader sees it (no tags, no entities)."""
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))


def test_the_docs_site_has_the_reference_pages_and_catches_a_broken_link(project):
    """`make docs`: every README and .md of the project becomes a page, the reference pages are
    generated into reference/, and a link to a page that does not exist fails the build."""
    uv = f"UV={tool('uv')}"
    make(project, "docs", uv)
    site = project / "site"
    for page in ("index.html", "delivery/index.html", "k8s/index.html", "ansible/index.html"):
        assert (site / page).is_file()
    api = text_of(site / "reference" / "api" / "index.html")
    assert """curl -sS -X POST -H 'Content-Type: application/json' "$API/v1/events" -d""" in api
    commands = text_of(site / "reference" / "commands" / "index.html")
    assert "shop-recommender-batch export" in commands and "CHECK_FAILED" in commands
    readme = project / "loadtest" / "README.md"
    original = readme.read_text()
    try:
        readme.write_text(original + "\nSee [the old guide](../guides/old.md).\n")
        broken = make(project, "docs", uv, check=False)
        assert broken.returncode != 0
        assert "guides/old.md" in broken.stderr + broken.stdout
    finally:
        readme.write_text(original)


def test_the_reference_pages_follow_their_sources(project, tmp_path):
    """A copy of the project's sources with a new make target, params key, endpoint and alert:
    the pages, generated with the project's .venv, show them; an endpoint without a summary
    stops the generator naming it; without a .venv, `make docs` says to run `make setup`."""
    copy = tmp_path / "copy"
    skip = shutil.ignore_patterns(
        ".venv", ".tools", "cache", "data", "models", "mlruns", "site", "reports", "dist", "logs"
    )
    shutil.copytree(project, copy, ignore=skip)
    makefile = copy / "Makefile"
    makefile.write_text(
        makefile.read_text() + "\nnightly:  ## the nightly export (WHEN=)\n\t@echo $(WHEN)\n"
    )
    params = copy / "params.yaml"
    params.write_text(params.read_text() + "\n# Shop hours.\nshop:\n  opens: 9  # o'clock\n")
    openapi = copy / "packages/api/src/shop_recommender_api/openapi.yaml"
    endpoint = "  /v1/hello:\n    get:\n      summary: Say hello\n      responses:\n"
    endpoint += '        "200":\n          description: Hello.\n'
    text = openapi.read_text()
    openapi.write_text(text.replace("\npaths:\n", "\npaths:\n" + endpoint, 1))
    alerts = copy / "monitoring/prometheus/alerts.yml"
    alerts.write_text(
        alerts.read_text()
        + "      - alert: DemoAlwaysFiring\n        expr: vector(1)\n        labels:\n"
        + "          severity: info\n        annotations:\n          summary: Always on\n"
    )
    python = str(project / ".venv" / "bin" / "python")
    generator = ["docs/hooks/reference_pages.py", "--root", str(copy)]
    run([python, *generator, "--out", str(tmp_path / "pages")], cwd=project)
    pages = {path.name: path.read_text() for path in (tmp_path / "pages").iterdir()}
    assert "| `make nightly` | the nightly export (WHEN=) | `WHEN=` |" in pages["make.md"]
    listed = [line.split("\t")[0] for line in make(copy, "-s", "help").stdout.splitlines()]
    shown = re.findall(r"^\| `make ([a-z0-9-]+)` \|", pages["make.md"], re.M)
    assert shown == listed and "nightly" in listed  # the targets `make help` lists, in order
    assert "## `shop`\n\nShop hours." in pages["params.md"]
    assert "| `shop.opens` | `9` | o'clock |" in pages["params.md"]
    assert 'curl -sS "$API/v1/hello"' in pages["api.md"]
    assert "| `DemoAlwaysFiring` | info |" in pages["metrics.md"]

    openapi.write_text(openapi.read_text().replace("      summary: Say hello\n", "", 1))
    refused = run([python, *generator, "--json"], cwd=project, check=False)
    assert refused.returncode == 2
    assert "ERROR: openapi.yaml: GET /v1/hello has no summary" in refused.stderr

    no_venv = make(copy, "docs", f"UV={tool('uv')}", check=False)
    assert no_venv.returncode != 0
    assert "run `make setup` first" in no_venv.stdout + no_venv.stderr


# --- The reports people open, in headless chromium (tests/browser.py) -------------------------


@pytest.fixture(scope="module")
def reports(project, golden_path):
    """The project's reports/ folder after `make demo` and `make model-card`, over HTTP."""
    card = make(project, "model-card")
    assert "reports/model-card.html" in card.stdout
    with serve(project / "reports") as base:
        yield base


def test_model_card_shows_the_evaluation_plots(browser, reports):
    report = browser.visit(f"{reports}/model-card.html")
    assert not report.problems(), "\n".join(report.problems())
    assert re.fullmatch(r"Model card: shop-recommender v\d+ \(champion\)", report.title)
    # The NDCG@k and recall@k plots, inline and drawn at a readable size.
    plots = [size for size in report.svgs if size[0] > 300 and size[1] > 200]
    assert len(plots) == 2, report.svgs
    assert {"plot-ndcg_at_k", "plot-recall_at_k"} <= report.ids


def test_drift_report_renders_offline(browser, reports, project):
    """evidently's HTML carries its scripts inline: nothing is fetched, its charts are drawn."""
    pages = sorted((project / "reports" / "drift").glob("*.html"))
    assert [page.name for page in pages][:1] == ["data_drift.html"], pages
    for page in pages:
        report = browser.visit(f"{reports}/drift/{page.name}")
        assert not report.problems(), "\n".join(report.problems())
        # Reference and current distribution of each column: two canvases a row.
        drawn = [size for size in report.canvases if size[0] > 50 and size[1] > 20]
        assert len(drawn) >= 2 * 3, report.canvases


def test_locust_report_renders_offline(browser, reports):
    report = browser.visit(f"{reports}/loadtest/locust.html")
    assert report.title == "Locust"
    assert not report.external_requests and not report.page_errors, report.problems()
    # Its three charts (requests/s, response times, users) are drawn.
    assert len([size for size in report.canvases if size[0] > 300 and size[1] > 100]) == 3
    # locust's saved report names its web UI's favicon at an absolute path, which no saved
    # report serves: the one missing asset (and chromium's console line for it).
    assert report.failed_requests == [f"{reports}/assets/favicon-light.png (HTTP 404)"]
    assert len(report.console_errors) == 1 and "404" in report.console_errors[0]
