"""delivery/delivery.py, the steps CI/CD runs: the one PR/MR comment against a local stand-in of
the GitHub and GitLab APIs, the scheduled jobs' skip and refusal, and the model-CI report from a
real evaluate run."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from {{ cookiecutter.package }}_training.gate import promote_if_better
from {{ cookiecutter.package }}_training.register import register

PROJECT_ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("delivery", PROJECT_ROOT / "delivery" / "delivery.py")
delivery = importlib.util.module_from_spec(spec)
spec.loader.exec_module(delivery)


class FakeForge:
    """Comments (GitHub) or notes (GitLab) of one pull/merge request, behind their REST paths."""

    def __init__(self, token_header: str, token: str, others: int = 0):
        self.comments = [
            {"id": 1000 + n, "body": f"a reviewer's comment {n}"} for n in range(others)
        ]
        self.calls: list[tuple[str, str]] = []
        self.token_header, self.token = token_header, token
        forge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def reply(self, status: int, body) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def handle_call(self) -> None:
                forge.calls.append((self.command, self.path))
                if self.headers.get(forge.token_header) != forge.token:
                    return self.reply(401, {"message": "Bad credentials"})
                length = int(self.headers.get("Content-Length") or 0)
                sent = json.loads(self.rfile.read(length)) if length else {}
                path, _, query = self.path.partition("?")
                if self.command == "GET":
                    page = int(dict(p.split("=") for p in query.split("&"))["page"])
                    return self.reply(200, forge.comments[(page - 1) * 100 : page * 100])
                if self.command == "POST":
                    forge.comments.append({"id": len(forge.comments) + 1, "body": sent["body"]})
                    return self.reply(201, forge.comments[-1])
                wanted = int(path.rsplit("/", 1)[1])
                comment = next(c for c in forge.comments if c["id"] == wanted)
                comment["body"] = sent["body"]
                return self.reply(200, comment)

            do_GET = do_POST = do_PATCH = do_PUT = handle_call

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def ours(self) -> list[dict]:
        return [c for c in self.comments if delivery.MARKER in c["body"]]


@pytest.fixture
def report(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(delivery, "ROOT", tmp_path)
    (tmp_path / "reports").mkdir()
    path = tmp_path / "reports" / "model-ci.md"
    path.write_text(f"{delivery.MARKER}\n## Model CI\nNDCG@10 0.0836\n")
    return path


def github(monkeypatch, forge: FakeForge, number: str = "7") -> None:
    for name in ("GITLAB_CI", "CI_MERGE_REQUEST_IID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GITHUB_API_URL", forge.url)
    monkeypatch.setenv("GITHUB_REPOSITORY", "acme/shop")
    monkeypatch.setenv("GITHUB_TOKEN", "t0ken")
    monkeypatch.setenv("PR_NUMBER", number)


def test_github_pr_gets_one_comment_updated_in_place(report, monkeypatch):
    # 150 reviewer comments: ours is on the second page the second time round.
    forge = FakeForge("Authorization", "Bearer t0ken", others=150)
    github(monkeypatch, forge)
    assert delivery.main(["pr-comment"]) == 0
    report.write_text(report.read_text().replace("0.0836", "0.0901"))
    assert delivery.main(["pr-comment"]) == 0
    assert len(forge.ours()) == 1 and "0.0901" in forge.ours()[0]["body"]
    assert len(forge.comments) == 151
    assert ("PATCH", f"/repos/acme/shop/issues/comments/{forge.ours()[0]['id']}") in forge.calls


def test_gitlab_mr_gets_one_note_updated_in_place(report, monkeypatch):
    forge = FakeForge("PRIVATE-TOKEN", "glpat-x")
    for name, value in {
        "GITLAB_CI": "true",
        "CI_API_V4_URL": f"{forge.url}/api/v4",
        "CI_PROJECT_ID": "42",
        "CI_MERGE_REQUEST_IID": "3",
        "GITLAB_TOKEN": "glpat-x",
    }.items():
        monkeypatch.setenv(name, value)
    assert delivery.main(["pr-comment"]) == 0
    assert delivery.main(["pr-comment"]) == 0
    assert len(forge.ours()) == 1
    assert ("PUT", "/api/v4/projects/42/merge_requests/3/notes/1") in forge.calls


def test_outside_a_pull_request_nothing_is_posted(report, monkeypatch, capsys):
    forge = FakeForge("Authorization", "Bearer t0ken")
    github(monkeypatch, forge, number="")
    assert delivery.main(["pr-comment"]) == 0
    assert "not a pull request" in capsys.readouterr().out and forge.calls == []


def test_a_refused_token_is_a_clear_error(report, monkeypatch, capsys):
    forge = FakeForge("Authorization", "Bearer another")
    github(monkeypatch, forge)
    assert delivery.main(["pr-comment"]) == 2
    assert "HTTP 401" in capsys.readouterr().err and forge.comments == []


def test_a_missing_token_is_a_clear_error(report, monkeypatch, capsys):
    forge = FakeForge("Authorization", "Bearer t0ken")
    github(monkeypatch, forge)
    monkeypatch.delenv("GITHUB_TOKEN")
    assert delivery.main(["pr-comment"]) == 2
    assert "GITHUB_TOKEN" in capsys.readouterr().err and forge.calls == []


def test_scheduled_job_without_a_registry_is_skipped_saying_why(monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(delivery, "make", lambda *args: pytest.fail(f"ran make {args}"))
    assert delivery.main(["scheduled", "--job", "retrain"]) == 0
    out = capsys.readouterr().out
    assert "skipped" in out and "MLFLOW_TRACKING_URI is not set" in out


def test_scheduled_job_without_tracked_data_refuses_and_runs_nothing(tmp_path, monkeypatch, capsys):
    # No DVC remote holds the data: a scheduled job must not retrain on made-up events.
    monkeypatch.setattr(delivery, "ROOT", tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    monkeypatch.setattr(delivery, "make", lambda *args: pytest.fail(f"ran make {args}"))
    assert delivery.main(["scheduled", "--job", "monitor"]) == 2
    assert "data/raw is not in a DVC remote" in capsys.readouterr().err


def test_data_pull_without_tracked_data_generates_the_synthetic_events(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(delivery, "ROOT", tmp_path)
    ran = []
    monkeypatch.setattr(delivery, "make", lambda *args: ran.append(args) or 0)
    assert delivery.main(["data-pull"]) == 0
    assert ran == [("data",)] and "synthetic" in capsys.readouterr().out


@pytest.fixture
def dvc_project(registry_project, monkeypatch):
    """The evaluated project as a git and DVC repository with the project's stages and params:
    what `dvc metrics` needs to read reports/metrics/."""
    params, paths = registry_project
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy(PROJECT_ROOT / name, paths.root / name)
    for init in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(init, cwd=paths.root, check=True)
    monkeypatch.setattr(delivery, "ROOT", paths.root)
    return params, paths


@pytest.mark.slow
def test_model_report_compares_the_candidate_with_the_champion(dvc_project, monkeypatch):
    """After the register and promote stages: the report's tables carry the figures of
    reports/evaluation.json and the champion's tags, and `dvc metrics` reads the headline files
    written from it (reports/metrics/<model>.json)."""
    params, paths = dvc_project
    register(params, paths)
    promote_if_better(params, paths)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(paths.root / "summary.md"))
    assert delivery.main(["model-report"]) == 0
    written = (paths.reports / "model-ci.md").read_text()
    metrics = json.loads((paths.reports / "evaluation.json").read_text())
    model = params["model"]["name"]
    ndcg = metrics["models"][model]["warm"]["ndcg_at_10"]
    assert f"| ndcg_at_10 | {ndcg:.4f} | {ndcg:.4f} | +0.0000 |" in written
    assert "| itemknn |" in written and "| popularity |" in written
    assert f"reports/metrics/{model}.json" in written  # dvc metrics show's table, a row a model
    assert (paths.root / "summary.md").read_text() == written


@pytest.mark.slow
def test_model_report_without_its_base_commit_shows_the_metrics(dvc_project):
    """GitLab's first push to a branch names the all-zero SHA as the commit before it."""
    _params, paths = dvc_project
    assert delivery.main(["model-report", "--base", "0" * 40]) == 0
    written = (paths.reports / "model-ci.md").read_text()
    assert "(no base commit to compare with)" in written
    assert "reports/metrics/popularity.json" in written


def test_model_report_before_the_pipeline_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(delivery, "ROOT", tmp_path)
    assert delivery.main(["model-report"]) == 2
    assert "run `make pipeline` first" in capsys.readouterr().err
