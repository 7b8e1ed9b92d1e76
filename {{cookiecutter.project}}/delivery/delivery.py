"""The delivery steps the CI/CD pipelines run (`make data-pull`, `scheduled`, `model-report`,
`pr-comment`, `image-push`, `deploy`, `deploy-rollback`), runnable on a laptop the same way.

    uv run python delivery/delivery.py <command> --help

Each step calls the project's own `make` targets and CLIs, so nothing here is CI-only logic.
Exit codes as every command of the project: 0 done (or skipped, saying why), 2 bad input or
missing configuration (nothing was changed), 3 a check said no; other codes are passed on from
the command that failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "{{ cookiecutter.project }}"
BAD_INPUT = 2
MARKER = "<!-- model-ci-report -->"  # finds our one comment among a PR's comments
IMAGES_ENV = ROOT / "dist" / "images.env"
HEADLINE = ("ndcg_at_10", "recall_at_20", "map_at_10", "coverage_at_10")


class BadInput(Exception):
    """Missing configuration or a bad argument; nothing was changed."""


def make(*args: str, text: dict[str, str] | None = None) -> int:
    """`make <args>`; `text` (free text such as a reason) goes in the environment, never on
    make's command line, where make would expand a `$(shell ...)` in it."""
    shown = " ".join([*(f"{k}={v!r}" for k, v in (text or {}).items()), "make", *args])
    print(f"+ {shown}", flush=True)
    env = {**os.environ, **(text or {})}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, env=env).returncode


def output(*command: str) -> str:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout


# --- Data: the DVC remote, or the synthetic events when there is none -------------------------


def dvc_remote() -> str:
    found = subprocess.run(["dvc", "remote", "default"], cwd=ROOT, capture_output=True, text=True)
    return found.stdout.strip() if found.returncode == 0 else ""


def data_pull(args: argparse.Namespace) -> int:
    """The tracked data from the DVC remote; without it (no remote, or nothing pushed yet) the
    synthetic events, unless the caller needs the team's own data."""
    remote = dvc_remote()
    if remote:
        print(f"pulling the tracked data from DVC remote {remote!r}", flush=True)
        # Outputs nobody pushed yet (a stage added on this branch) are rebuilt by the pipeline.
        pulled = subprocess.run(["dvc", "pull", "--allow-missing"], cwd=ROOT).returncode
        if pulled:
            return pulled
    if any((ROOT / "data" / "raw").glob("*")):
        return 0
    if args.require_data:
        raise BadInput(
            "data/raw is not in a DVC remote (`dvc remote add -d <name> <url>`, then `dvc add` "
            "and `dvc push` your data): a scheduled job runs on the team's data, not made-up events"
        )
    print("no tracked data in a DVC remote: generating the synthetic events (`make data`)")
    return make("data")


def data_push(_args: argparse.Namespace) -> int:
    remote = dvc_remote()
    if not remote:
        print("no DVC remote is configured: nothing to push")
        return 0
    return subprocess.run(["dvc", "push"], cwd=ROOT).returncode


# --- Scheduled jobs against the team's registry -----------------------------------------------


def scheduled(args: argparse.Namespace) -> int:
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        print(
            f"skipped: the scheduled {args.job} runs against the team's MLflow registry, and "
            "MLFLOW_TRACKING_URI is not set. Set it (with MLFLOW_TRACKING_USERNAME and "
            "MLFLOW_TRACKING_PASSWORD) as CI secrets to switch the job on."
        )
        return 0
    pulled = data_pull(argparse.Namespace(require_data=True))
    if pulled:
        return pulled
    code = make("retrain", "TRIGGER=schedule") if args.job == "retrain" else make("monitor")
    # The new data and reports go back to the remote whatever the gate said: the next run and
    # the audit trail start from them.
    pushed = data_push(args)
    return code or pushed


# --- The model-CI report: metrics against the base branch and the registry's champion ---------


def headline(metrics: dict, model: str) -> dict[str, float]:
    warm = metrics.get("models", {}).get(model, {}).get("warm", {})
    return {key: warm[key] for key in HEADLINE if key in warm}


def champion_figures(registry: str) -> tuple[str, dict[str, float]] | None:
    """The champion's version and its headline metrics (`metric.*` tags), or None."""
    from mlflow.exceptions import MlflowException

    from {{ cookiecutter.package }}_core.registry import client
    from {{ cookiecutter.package }}_core.shared import model_name

    try:
        version = client(registry).get_model_version_by_alias(model_name(), "champion")
    except MlflowException:
        return None
    figures = {
        key.removeprefix("metric."): float(value)
        for key, value in version.tags.items()
        if key.removeprefix("metric.") in HEADLINE and key.startswith("metric.")
    }
    return str(version.version), figures


def champion_table(candidate: dict[str, float], champion: tuple | None, registry: str) -> str:
    if champion is None:
        return f"No champion in the registry ({redact(registry)}): nothing to compare with.\n"
    version, figures = champion
    rows = ["| metric | candidate | champion v" + version + " | change |", "|---|---|---|---|"]
    for key, value in candidate.items():
        if key in figures:
            change = round(value - figures[key], 4) + 0.0  # no "-0.0000"
            rows.append(f"| {key} | {value:.4f} | {figures[key]:.4f} | {change:+.4f} |")
        else:
            rows.append(f"| {key} | {value:.4f} | - | - |")
    return "\n".join(rows) + "\n"


def redact(uri: str) -> str:
    """A tracking URI without the password a user may have put in it."""
    return re.sub(r"//[^/@]+@", "//***@", uri)


def candidates_table(metrics: dict) -> str:
    """Every candidate's headline figures on warm users, one row per model."""
    rows = ["| model | " + " | ".join(HEADLINE) + " |", "|---" * (len(HEADLINE) + 1) + "|"]
    for model in metrics.get("models", {}):
        figures = headline(metrics, model)
        rows.append(
            f"| {model} | " + " | ".join(f"{figures.get(k, 0):.4f}" for k in HEADLINE) + " |"
        )
    return "\n".join(rows) + "\n"


def curves_table(plots: Path) -> str:
    """NDCG@k per model from the evaluate stage's plot data, as a table a comment can show."""
    path = plots / "ndcg_at_k.csv"
    if not path.is_file():
        return ""
    header, *rows = [line.split(",") for line in path.read_text().splitlines() if line]
    table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    table += [
        "| " + " | ".join([row[0], *(f"{float(v):.4f}" for v in row[1:])]) + " |" for row in rows
    ]
    return "NDCG@k per candidate (`dvc plots show` draws these):\n\n" + "\n".join(table) + "\n"


def git_commit_exists(ref: str) -> bool:
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", ref + "^{commit}"],
        cwd=ROOT, capture_output=True,
    )  # fmt: skip
    return found.returncode == 0


def model_report(args: argparse.Namespace) -> int:
    import yaml

    # The full figures (every k): the headline files under reports/metrics/ hold k=10 only.
    metrics_path = ROOT / "reports" / "evaluation.json"
    if not metrics_path.is_file():
        raise BadInput("reports/evaluation.json is missing: run `make pipeline` first")
    metrics = json.loads(metrics_path.read_text())
    model = yaml.safe_load((ROOT / "params.yaml").read_text())["model"]["name"]
    candidate = headline(metrics, model)
    base = args.base if args.base and git_commit_exists(args.base) else ""
    if args.base and not base:
        # A first push (GitLab's all-zero "before" SHA) or a shallow clone: nothing to diff.
        print(f"base {args.base!r} is not a commit here: the metrics are shown without a diff")
    diff_command = ["dvc", "metrics", "diff", "--md", base] if base else None
    diff = output(*diff_command) if diff_command else output("dvc", "metrics", "show", "--md")
    registry = args.registry or os.environ.get("CHAMPION_TRACKING_URI", "")
    from {{ cookiecutter.package }}_core.shared import tracking_uri

    registry = registry or tracking_uri()
    against = f"against `{base}`" if base else "(no base commit to compare with)"
    report = "\n".join(
        [
            MARKER,
            f"## Model CI: {model}",
            "",
            f"Candidate vs the registry's champion ({redact(registry)}), warm users:",
            "",
            champion_table(candidate, champion_figures(registry), registry),
            "Every candidate of this run, warm users:",
            "",
            candidates_table(metrics),
            curves_table(ROOT / "reports" / "plots"),
            f"<details><summary>dvc metrics diff {against}</summary>",
            "",
            diff.strip() if diff.count("\n") > 2 else "No metric changed.",
            "",
            "</details>",
            "",
        ]
    )
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    print(report)
    if summary := os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(summary, "a") as file:
            file.write(report)
    return 0


# --- One pull/merge-request comment, updated in place -----------------------------------------


def api(method: str, url: str, headers: dict[str, str], body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    if not url.startswith(("https://", "http://")):  # urlopen also reads file:// (bandit B310)
        raise BadInput(f"{url!r}: the forge's API URL must be http(s)")
    call = urllib.request.Request(url, data=data, method=method, headers=headers)
    call.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(call, timeout=30) as response:  # nosec B310
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        detail = error.read()[:300].decode(errors="replace")
        raise BadInput(f"{method} {url}: HTTP {error.code} {detail}") from error


def upsert(list_url: str, items: str, method: str, headers: dict, body: str) -> str:
    """Update the comment that carries MARKER (`<items>/<id>`), or create it; 'updated' or
    'created'."""
    page = 1
    while True:
        comments = api("GET", f"{list_url}?per_page=100&page={page}", headers)
        for comment in comments:
            if MARKER in (comment.get("body") or ""):
                api(method, f"{items}/{comment['id']}", headers, {"body": body})
                return "updated"
        if len(comments) < 100:
            break
        page += 1
    api("POST", list_url, headers, {"body": body})
    return "created"


def pr_comment(args: argparse.Namespace) -> int:
    env = os.environ
    body = (ROOT / args.file).read_text()
    if MARKER not in body:
        body = f"{MARKER}\n{body}"
    if env.get("GITLAB_CI"):
        if not env.get("CI_MERGE_REQUEST_IID"):
            print("not a merge-request pipeline: no note to write")
            return 0
        token = env.get("GITLAB_TOKEN") or ""
        if not token:
            raise BadInput("set GITLAB_TOKEN (a project access token, api scope) to post the note")
        base = f"{env['CI_API_V4_URL']}/projects/{env['CI_PROJECT_ID']}"
        notes = f"{base}/merge_requests/{env['CI_MERGE_REQUEST_IID']}/notes"
        headers = {"PRIVATE-TOKEN": token}
        done = upsert(notes, notes, "PUT", headers, body)
    else:
        number = env.get("PR_NUMBER", "")
        if not number:
            print("not a pull request (PR_NUMBER is empty): no comment to write")
            return 0
        token, repository = env.get("GITHUB_TOKEN", ""), env.get("GITHUB_REPOSITORY", "")
        if not token or not repository:
            raise BadInput("set GITHUB_TOKEN and GITHUB_REPOSITORY to comment on the pull request")
        base = f"{env.get('GITHUB_API_URL', 'https://api.github.com')}/repos/{repository}"
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}
        comments = f"{base}/issues/{number}/comments"
        done = upsert(comments, f"{base}/issues/comments", "PATCH", headers, body)
    print(f"{done} the model-CI comment")
    return 0


# --- Images, deploys and rollbacks --------------------------------------------------------------


def image_push(args: argparse.Namespace) -> int:
    if not args.registry:
        raise BadInput("give IMAGE_REGISTRY=<registry/namespace>, e.g. ghcr.io/<owner>")
    # The Makefile's CONTAINER_BUILD: docker or buildah, maybe with options (`buildah --root ..`).
    tool = shlex.split(args.builder)
    if not tool or not shutil.which(tool[0]):
        raise BadInput(f"no image builder {args.builder!r}: install docker or buildah")
    refs = {}
    for image in ("api", "jobs"):
        local = f"{PROJECT}-{image}:{args.tag}"
        remote = f"{args.registry.rstrip('/')}/{PROJECT}-{image}:{args.tag}"
        if Path(tool[0]).name == "buildah":
            digest_file = ROOT / "dist" / f"{image}.digest"
            digest_file.parent.mkdir(parents=True, exist_ok=True)
            push = [*tool, "push", "--digestfile", str(digest_file), local, f"docker://{remote}"]
            subprocess.run(push, cwd=ROOT, check=True)
            digest = digest_file.read_text().strip()
        else:
            subprocess.run([*tool, "tag", local, remote], cwd=ROOT, check=True)
            subprocess.run([*tool, "push", remote], cwd=ROOT, check=True)
            # `image inspect` prints JSON; a pushed image has a RepoDigests entry.
            pushed = json.loads(output(*tool, "image", "inspect", remote))[0]["RepoDigests"]
            digest = pushed[0].split("@", 1)[1]
        refs[f"{image.upper()}_IMAGE"] = f"{remote.rsplit(':', 1)[0]}@{digest}"
    IMAGES_ENV.parent.mkdir(parents=True, exist_ok=True)
    IMAGES_ENV.write_text("".join(f"{key}={value}\n" for key, value in refs.items()))
    print(IMAGES_ENV.read_text(), end="")
    return 0


def pushed_images(args: argparse.Namespace) -> dict[str, str]:
    """The image references to pin: given ones, else those `image-push` wrote."""
    refs = {"api": args.api_image, "jobs": args.jobs_image}
    if not any(refs.values()) and IMAGES_ENV.is_file():
        written = dict(line.split("=", 1) for line in IMAGES_ENV.read_text().split())
        refs = {"api": written.get("API_IMAGE", ""), "jobs": written.get("JOBS_IMAGE", "")}
    return {f"{PROJECT}-{image}": ref for image, ref in refs.items() if ref}


def kubectl() -> str:
    return os.environ.get("KUBECTL", "kubectl")


def rollout(env: str) -> int:
    """Apply the overlay, then wait until the API Deployment runs the new pods."""
    applied = make("k8s-deploy", f"ENV={env}")
    if applied:
        return applied
    wait = [kubectl(), "-n", PROJECT, "rollout", "status", "deployment/api", "--timeout=10m"]
    return subprocess.run(wait, cwd=ROOT).returncode


def deploy(args: argparse.Namespace) -> int:
    if deploy_module(args) == "ansible":
        return make("provision", f"ENV={args.env}")
    images = pushed_images(args)
    if images:
        pins = [f"--image={name}={ref}" for name, ref in images.items()]
        pinned = subprocess.run(
            [sys.executable, "k8s/manifests.py", "image-pin", "--env", args.env, *pins], cwd=ROOT
        )
        if pinned.returncode:
            return pinned.returncode
    if args.model_version and (
        code := make("model-pin", f"ENV={args.env}", f"VERSION={args.model_version}")
    ):
        return code
    return rollout(args.env)


def deploy_rollback(args: argparse.Namespace) -> int:
    text = {"REASON": args.reason, "TO": args.to}
    if deploy_module(args) == "ansible":
        return make("provision-rollback", f"ENV={args.env}", text=text)
    # The registry first (recorded like `make rollback`), then the overlay follows its champion.
    if code := make("rollback", text=text):
        return code
    lineage = subprocess.run(
        ["make", "--no-print-directory", "-s", "lineage", "ARGS=--json"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    version = json.loads(lineage.stdout[lineage.stdout.index("{") :])["version"]
    if code := make("model-pin", f"ENV={args.env}", f"VERSION={version}"):
        return code
    return rollout(args.env)


def deploy_module(args: argparse.Namespace) -> str:
    """`--with`, else the project's one deploy module (kubernetes when it has both)."""
    if args.with_:
        return args.with_
    for module, folder in (("kubernetes", "k8s"), ("ansible", "ansible")):
        if (ROOT / folder).is_dir():
            return module
    raise BadInput(
        "this project has no deploy module (it was generated with deploy_target=none): "
        "regenerate with kubernetes or ansible, or deploy by your own means"
    )


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = main.add_subparsers(dest="command", required=True)

    pull = commands.add_parser("data-pull", help="dvc pull, or the synthetic events if no remote")
    pull.add_argument("--require-data", action="store_true", help="no tracked data is an error")
    pull.set_defaults(run=data_pull)
    commands.add_parser("data-push", help="dvc push when a remote is configured").set_defaults(
        run=data_push
    )

    job = commands.add_parser("scheduled", help="a scheduled job against the team's registry")
    job.add_argument("--job", choices=("retrain", "monitor"), required=True)
    job.set_defaults(run=scheduled)

    report = commands.add_parser("model-report", help="the model-CI report (markdown)")
    report.add_argument("--base", default="", help="git ref to diff the metrics against")
    report.add_argument("--registry", default="", help="tracking URI holding the champion")
    report.add_argument("--out", default="reports/model-ci.md")
    report.set_defaults(run=model_report)

    comment = commands.add_parser("pr-comment", help="create or update the one PR/MR comment")
    comment.add_argument("--file", default="reports/model-ci.md")
    comment.set_defaults(run=pr_comment)

    push = commands.add_parser("image-push", help="push both images, write dist/images.env")
    push.add_argument("--registry", required=True, help="e.g. ghcr.io/<owner>")
    push.add_argument("--tag", required=True)
    push.add_argument("--builder", default="docker", help="docker or buildah (and its options)")
    push.set_defaults(run=image_push)

    for name, run, text in (
        ("deploy", deploy, "pin images and model, apply, wait (or provision)"),
        ("deploy-rollback", deploy_rollback, "registry rollback, then the environment follows"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--env", required=True, choices=("dev", "staging", "prod"))
        command.add_argument(
            "--with", dest="with_", choices=("kubernetes", "ansible"), help="the deploy module"
        )
        command.set_defaults(run=run)
    deploy_parser = commands.choices["deploy"]
    deploy_parser.add_argument("--api-image", default="", help="<registry/name>@sha256:...")
    deploy_parser.add_argument("--jobs-image", default="", help="<registry/name>@sha256:...")
    deploy_parser.add_argument("--model-version", default="", help="pin this model version")
    back = commands.choices["deploy-rollback"]
    back.add_argument("--reason", required=True, help="why: recorded on the registry")
    back.add_argument("--to", default="", help="a version number (default: the previous one)")
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except BadInput as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
