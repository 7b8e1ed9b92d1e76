"""Has a workshop lab's outcome been reached? `make check-lab N=<1..6>` (the template's
docs/workshop/ pages are the labs).

    python3 workshop/check_lab.py 2

It reads what the lab leaves behind (the virtualenv, dvc.lock, the reports, the MLflow tracking
store, logs/promotions.jsonl) and prints each thing it verified, or each thing missing with the
command that produces it. Exit 0: reached; 3: not yet (something is missing); 2: no such lab.
The standard library only, so it runs before `make setup` too (lab 1 checks that setup).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

PROJECT = "{{ cookiecutter.project }}"
REACHED, NOT_YET, BAD_INPUT = 0, 3, 2
K8S_ENVS = ("dev", "staging", "prod")


@dataclass
class Check:
    """What a lab's check found: lines verified, and (missing thing, command that produces it)."""

    root: Path
    ok: list[str] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)

    def expect(self, condition: bool, verified: str, missing: str, command: str) -> bool:
        if condition:
            self.ok.append(verified)
        else:
            self.missing.append((missing, command))
        return condition


def promotions(root: Path) -> list[dict]:
    """The decisions of logs/promotions.jsonl (gate, approve, rollback), oldest first."""
    path = root / "logs" / "promotions.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


class Store:
    """The MLflow tracking store when it is the project's SQLite file (the default
    MLFLOW_TRACKING_URI), read with plain SQL: runs, model versions, their tags, the aliases."""

    def __init__(self, root: Path):
        uri = os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
        self.uri = uri
        self.path: Path | None = None
        if uri.startswith("sqlite:///"):
            path = Path(uri.removeprefix("sqlite:///"))
            self.path = path if path.is_absolute() else root / path

    @property
    def readable(self) -> bool:
        return self.path is not None and self.path.is_file()

    def rows(self, sql: str, *args: object) -> list[tuple]:
        if not self.readable:
            return []
        connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        try:
            return connection.execute(sql, args).fetchall()
        except sqlite3.Error:  # no such table yet: nothing tracked
            return []
        finally:
            connection.close()

    def run_models(self) -> set[str]:
        """The models the finished runs trained (their `model` tag or parameter)."""
        tagged = "SELECT value FROM tags t JOIN runs r ON r.run_uuid = t.run_uuid"
        logged = "SELECT value FROM params p JOIN runs r ON r.run_uuid = p.run_uuid"
        where = " WHERE key = 'model' AND r.status = 'FINISHED'"
        return {row[0] for row in self.rows(tagged + where + " UNION " + logged + where)}

    def versions(self, name: str) -> list[int]:
        return sorted(
            int(row[0])
            for row in self.rows("SELECT version FROM model_versions WHERE name = ?", name)
        )

    def champion(self, name: str) -> int | None:
        rows = self.rows(
            "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = 'champion'",
            name,
        )
        return int(rows[0][0]) if rows else None

    def tags(self, name: str, version: int) -> dict[str, str]:
        rows = self.rows(
            "SELECT key, value FROM model_version_tags WHERE name = ? AND version = ?",
            name,
            version,
        )
        return dict(rows)


def model_name() -> str:
    return os.environ.get("MODEL_NAME") or PROJECT


def store_note(check: Check, store: Store) -> bool:
    """False (and a missing line) when the tracking store cannot be read here."""
    if store.path is None:
        check.missing.append(
            (
                f"the tracking store {store.uri} is not this project's SQLite file: "
                "the labs use the default MLFLOW_TRACKING_URI",
                "unset MLFLOW_TRACKING_URI",
            )
        )
        return False
    return check.expect(
        store.readable,
        f"MLflow tracking store {store.path.name}",
        f"no MLflow tracking store ({store.path.name})",
        "make pipeline",
    )


def lab_1(check: Check) -> None:
    """A generated project, installed: a git repository, its answers, the locked virtualenv."""
    root = check.root
    check.expect(
        (root / ".cookiecutter.json").is_file(),
        "a generated project (.cookiecutter.json records the answers)",
        "not a generated project: no .cookiecutter.json",
        ".venv/bin/cookiecutter . --no-input --output-dir ~/projects (at the template)",
    )
    head = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", "HEAD"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    check.expect(
        head.returncode == 0,
        f"a git repository at commit {head.stdout.strip()[:12]}",
        "no git repository with a commit",
        "git init && git add -A && git commit -m 'Initial commit'",
    )
    check.expect(
        (root / "uv.lock").is_file(),
        "uv.lock (the locked dependencies)",
        "no uv.lock",
        "make setup",
    )
    scripts = [f"{PROJECT}-{tool}" for tool in ("train", "registry", "api", "monitor", "batch")]
    absent = [s for s in scripts if not (root / ".venv" / "bin" / s).exists()]
    check.expect(
        not absent,
        "the virtualenv .venv with every deployable's command (" + ", ".join(scripts) + ")",
        "the virtualenv lacks " + (", ".join(absent) or "nothing"),
        "make setup",
    )


def lab_2(check: Check) -> None:
    """Models trained, tracked and compared: the pipeline's lock and plots, tuning runs."""
    root = check.root
    lock = root / "dvc.lock"
    text = lock.read_text() if lock.is_file() else ""
    stages = ("train", "evaluate", "register", "promote")
    absent = [stage for stage in stages if f"\n  {stage}:" not in text]
    check.expect(
        not absent,
        "dvc.lock records the stages " + ", ".join(stages),
        "dvc.lock lacks the stages " + ", ".join(absent),
        "make pipeline",
    )
    metrics = sorted(p.stem for p in (root / "reports" / "metrics").glob("*.json"))
    check.expect(
        len(metrics) >= 2,
        "metrics for " + ", ".join(metrics) + " (.venv/bin/dvc metrics show)",
        "no metrics for two or more models in reports/metrics/",
        "make pipeline",
    )
    plots = [root / "reports" / "plots" / f"{m}_at_k.svg" for m in ("ndcg", "recall")]
    check.expect(
        all(p.is_file() for p in plots),
        "the evaluation plots reports/plots/ndcg_at_k.svg and recall_at_k.svg",
        "no evaluation plots in reports/plots/",
        "make pipeline",
    )
    check.expect(
        (root / "dvc_plots" / "index.html").is_file(),
        "the plots page dvc_plots/index.html",
        "no dvc_plots/index.html",
        ".venv/bin/dvc plots show",
    )
    store = Store(root)
    if store_note(check, store):
        models = sorted(store.run_models())
        check.expect(
            len(models) >= 2,
            "MLflow runs for the models " + ", ".join(models),
            "MLflow runs for fewer than two models (" + (", ".join(models) or "none") + ")",
            "make tune MODELS=rp3beta,itemknn TRIALS=3",
        )


def lab_3(check: Check) -> None:
    """The API served and load-tested: locust's report within the SLO, feedback events."""
    root = check.root
    stats = root / "reports" / "loadtest" / "locust_stats.csv"
    total: dict[str, str] = {}
    if stats.is_file():
        with stats.open(newline="") as handle:
            total = next((r for r in csv.DictReader(handle) if r.get("Name") == "Aggregated"), {})
    requests = int(total.get("Request Count") or 0)
    failures = int(total.get("Failure Count") or 0)
    check.expect(
        requests > 0 and failures == 0,
        f"a load test: {requests} requests, no failure (reports/loadtest/locust_stats.csv)",
        (
            f"the load test had {failures} failed requests of {requests}"
            if requests
            else "no load-test report (reports/loadtest/locust_stats.csv)"
        ),
        "make serve & then make loadtest RUN_TIME=20s",
    )
    check.expect(
        (root / "reports" / "loadtest" / "locust.html").is_file(),
        "locust's HTML report reports/loadtest/locust.html",
        "no reports/loadtest/locust.html",
        "make loadtest",
    )
    events = root / "logs" / "feedback-events.jsonl"
    count = len(events.read_text().splitlines()) if events.is_file() else 0
    check.expect(
        count > 0,
        f"{count} feedback events the API logged (logs/feedback-events.jsonl)",
        "no feedback events logged by the API (logs/feedback-events.jsonl)",
        "make serve PORT=8000 & then make smoke URL=http://127.0.0.1:8000",
    )


def lab_4(check: Check) -> None:
    """A challenger through the gate and an approval: the champion's gate tags and the audit
    trail, and its model card."""
    root = check.root
    store, name = Store(root), model_name()
    if not store_note(check, store):
        return
    versions = store.versions(name)
    check.expect(
        len(versions) >= 2,
        f"{len(versions)} registered versions of {name}",
        f"fewer than two registered versions of {name} ({len(versions)})",
        "make pipeline (after a change to params.yaml or params.tuned.yaml)",
    )
    champion = store.champion(name)
    if not check.expect(
        champion is not None,
        f"champion: version {champion}",
        f"no champion for {name}",
        "make pipeline",
    ):
        return
    tags = store.tags(name, champion)
    check.expect(
        tags.get("gate.decision") == "pass" and "gate.lift_over_popularity" in tags,
        f"the gate's decision on v{champion}: pass, lift {tags.get('gate.lift_over_popularity')}",
        f"champion v{champion} carries no passing gate decision (gate.* tags)",
        "make pipeline",
    )
    approvals = [r for r in promotions(root) if r.get("action") == "approve" and r.get("reason")]
    check.expect(
        tags.get("approval.status") == "approved" and bool(approvals),
        f"an approval with a reason in logs/promotions.jsonl: {approvals[-1]['reason']!r}"
        if approvals
        else "",
        "no approved challenger (gate.require_approval: true, then an approval with a reason)",
        'make approve VERSION=<n> REASON="..."',
    )
    check.expect(
        (root / "reports" / "model-card.md").is_file(),
        "the champion's model card reports/model-card.md",
        "no model card (reports/model-card.md)",
        "make model-card",
    )


def lab_5(check: Check) -> None:
    """Drift found, a retrain it triggered, a rollback with its reason."""
    root = check.root
    summary_path = root / "reports" / "drift" / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    check.expect(
        summary.get("verdict") == "drift",
        "a drift report that found drift (reports/drift/summary.json, data_drift.html)",
        (
            f"the last drift report says {summary.get('verdict')!r}, not 'drift'"
            if summary
            else "no drift report (reports/drift/summary.json)"
        ),
        "make data OUT=data/incoming START=2026-02-02 DAYS=7 EVENTS=100000 DRIFT=0.8 "
        "then make monitor",
    )
    store, name = Store(root), model_name()
    if not store_note(check, store):
        return
    retrained = [v for v in store.versions(name) if store.tags(name, v).get("trigger") == "drift"]
    check.expect(
        bool(retrained),
        f"version {retrained[-1] if retrained else ''} retrained because of drift (trigger=drift)",
        "no version retrained because of drift (trigger=drift)",
        "make monitor (after drifted data in data/incoming)",
    )
    rollbacks = [r for r in promotions(root) if r.get("action") == "rollback"]
    check.expect(
        bool(rollbacks),
        (
            f"a rollback v{rollbacks[-1].get('from_version')} -> v{rollbacks[-1].get('version')}: "
            f"{rollbacks[-1].get('reason')!r}"
        )
        if rollbacks
        else "",
        "no rollback recorded in logs/promotions.jsonl",
        'make rollback REASON="..."',
    )


def lab_6(check: Check) -> None:
    """The Kubernetes manifests rendered for every environment and validated by checkov."""
    root = check.root
    if not (root / "k8s" / "overlays").is_dir():
        check.missing.append(
            (
                "this project has no Kubernetes module (deploy_target without kubernetes): "
                "lab 6 renders its overlays",
                "bake with deploy_target=kubernetes+ansible",
            )
        )
        return
    for env in K8S_ENVS:
        path = root / "reports" / "k8s" / f"{env}.yaml"
        text = path.read_text() if path.is_file() else ""
        check.expect(
            "kind: Deployment" in text,
            f"the {env} overlay rendered: reports/k8s/{env}.yaml",
            f"no rendered {env} overlay with a Deployment (reports/k8s/{env}.yaml)",
            "make checkov",
        )
    report = root / "reports" / "k8s" / "checkov.txt"
    text = report.read_text() if report.is_file() else ""
    passed = "Passed checks:" in text and "Failed checks: 0," in text
    check.expect(
        passed,
        "checkov passed the manifests (reports/k8s/checkov.txt)",
        "no passing checkov report (reports/k8s/checkov.txt)"
        if not text
        else "checkov failed checks (reports/k8s/checkov.txt)",
        "mkdir -p reports/k8s && make checkov | tee reports/k8s/checkov.txt",
    )


LABS: dict[int, tuple[str, Callable[[Check], None]]] = {
    1: ("generate a project", lab_1),
    2: ("train, track and compare models", lab_2),
    3: ("serve and load-test", lab_3),
    4: ("promote through the gate and audit", lab_4),
    5: ("drift, retrain, rollback", lab_5),
    6: ("deploy: render and validate the Kubernetes manifests", lab_6),
}


def report(number: int, check: Check) -> Iterator[str]:
    title = LABS[number][0]
    for line in check.ok:
        yield f"  ok       {line}"
    for missing, command in check.missing:
        yield f"  MISSING  {missing}\n           run: {command}"
    if check.missing:
        yield f"lab {number} ({title}): not done yet, {len(check.missing)} missing"
    else:
        yield f"lab {number} ({title}): done"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    # Any number of words, so that a wrong count gets the message naming the labs, not usage.
    parser.add_argument("lab", nargs="*", help="the lab's number, 1 to 6")
    return parser


def main(argv: list[str] | None = None, root: Path | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv).lab
    choices = ", ".join(str(n) for n in LABS)
    if len(args) != 1 or not args[0].strip().isdigit() or int(args[0]) not in LABS:
        given = " ".join(args) or "nothing"
        print(f"check-lab: give the lab's number N={choices} (got {given})", file=sys.stderr)
        return BAD_INPUT
    number = int(args[0])
    check = Check(root or Path.cwd())
    LABS[number][1](check)
    print("\n".join(report(number, check)))
    return NOT_YET if check.missing else REACHED


if __name__ == "__main__":
    sys.exit(main())
