"""Keeping the project up with the template it was generated from, through cruft:
`make template-link`, `template-check` and `template-update` (delivery/README.md).

    python3 delivery/template_sync.py <command> --help

Stdlib only, like delivery.py (whose forge API helper it uses); cruft runs from a uv tool
environment of its own (`--cruft`, the Makefile's CRUFT), never from the project's .venv.
Exit codes as every command of the project: 0 done (or nothing to do, saying so), 2 bad input or
missing configuration (nothing was changed), 3 the check said no (`check --strict`: the project
is behind); other codes are passed on from the command that failed.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shlex
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

# delivery.py sits beside this file, however this file was loaded (script, test, import).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from delivery import BAD_INPUT, BadInput, api

ROOT = Path(__file__).resolve().parents[1]
CHECK_FAILED = 3
CRUFT_FILE = ".cruft.json"
ANSWERS_FILE = ".cookiecutter.json"  # the answers, written by the template's hook
# The template release and commit the project was rendered from (the template writes it).
TEMPLATE_RECORD = Path("packages/core/src/{{ cookiecutter.package }}_core/template.json")
BRANCH_PREFIX = "template-update/"
FULL_SHA = re.compile(r"[0-9a-f]{40}")
CONFLICT_MARKER = re.compile(r"^(<{7}|>{7})( |$)", re.MULTILINE)
NOT_WALKED = {".git", ".venv", ".tools", "node_modules", ".gitlab-ci-local"}


def short(commit: str) -> str:
    return commit[:12] if commit else "unknown"


def run(*command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


def git(*args: str, env: dict[str, str] | None = None) -> str:
    """A git command that must work; its output."""
    done = run("git", *args, env=env)
    if done.returncode:
        raise GitFailed(done.returncode, f"git {args[0]}: {(done.stderr or done.stdout).strip()}")
    return done.stdout


class GitFailed(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def cruft(args: argparse.Namespace, *words: str, shown: str = "") -> subprocess.CompletedProcess:
    """cruft, its output shown as it would be on a terminal (after it ends)."""
    command = [*shlex.split(args.cruft), *words]
    print(f"+ cruft {shown or shlex.join(words)}", flush=True)
    done = run(*command)
    print((done.stdout + done.stderr).rstrip(), flush=True)
    return done


def tail(done: subprocess.CompletedProcess, lines: int = 3) -> str:
    text = (done.stderr.strip() or done.stdout.strip()).splitlines()
    return " / ".join(line.strip() for line in text[-lines:]) or f"exit {done.returncode}"


def read_json(path: Path, what: str) -> dict:
    try:
        found = json.loads(path.read_text())
    except FileNotFoundError as error:
        raise BadInput(f"{path.relative_to(ROOT)} is missing: {what}") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadInput(f"{path.relative_to(ROOT)} is not valid JSON ({error})") from error
    if not isinstance(found, dict):
        raise BadInput(f"{path.relative_to(ROOT)} holds no JSON object")
    return found


def cruft_state() -> dict | None:
    """.cruft.json (None when the project is not linked)."""
    path = ROOT / CRUFT_FILE
    if not path.exists():
        return None
    state = read_json(path, "")
    if not isinstance(state.get("template"), str) or not isinstance(state.get("commit"), str):
        raise BadInput(f"{CRUFT_FILE} names no template URL and commit: is it cruft's?")
    return state


def newest_commit(template: str) -> str:
    """The commit the template's default branch points at ("" when it cannot be read)."""
    found = run("git", "ls-remote", template, "HEAD")
    return found.stdout.split()[0] if found.returncode == 0 and found.stdout.strip() else ""


def annotate(text: str) -> None:
    """A warning the CI shows on the run: GitHub's annotation line (GitLab shows the log line)."""
    if os.environ.get("GITHUB_ACTIONS") == "true":
        escaped = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        print(f"::warning title=Template update::{escaped}", flush=True)


NOT_LINKED = (
    "the project is not linked to its template (no .cruft.json): a project made by plain "
    "cookiecutter is linked once, at the commit it was made from, with "
    "`make template-link TEMPLATE=<the template's git URL>` (then commit .cruft.json)"
)


# --- template-link ------------------------------------------------------------------------------


def link_refs(record: dict) -> list[str]:
    """The template refs to link at, best first: the recorded commit, then the release tag."""
    refs = []
    commit = str(record.get("commit") or "")
    if FULL_SHA.fullmatch(commit):
        refs.append(commit)
    if version := str(record.get("version") or ""):
        refs.append(f"v{version}")
    return refs


def link(args: argparse.Namespace) -> int:
    state = cruft_state()
    if state is not None:
        raise BadInput(
            f"already linked: {CRUFT_FILE} names {state.get('template')!r} at commit "
            f"{short(state.get('commit', ''))} (`make template-check`, `make template-update`)"
        )
    if not args.template:
        raise BadInput(
            "give TEMPLATE=<the template's git URL>, the repository of cookiecutter-unified-mlops "
            "(or of your team's fork) this project was generated from"
        )
    answers = read_json(
        ROOT / ANSWERS_FILE, "it holds the answers cookiecutter was given, which cruft replays"
    )
    record = read_json(ROOT / TEMPLATE_RECORD, "it records the template commit to link at")
    refs = link_refs(record)
    if not refs:
        raise BadInput(f"{TEMPLATE_RECORD} names neither a commit nor a version to link at")
    for ref in refs:
        # --checkout: without it cruft records the template's NEWEST commit, so check and update
        # would call the project up to date and never bring what it missed.
        words = ["link", "--no-input", "--checkout", ref, "--extra-context"]
        shown = shlex.join(words) + f' "$(cat {ANSWERS_FILE})" {shlex.quote(args.template)}'
        done = cruft(args, *words, json.dumps(answers), args.template, shown=shown)
        if done.returncode == 0 and (ROOT / CRUFT_FILE).exists():
            break
        (ROOT / CRUFT_FILE).unlink(missing_ok=True)  # nothing written on a failure
        if "Failed to check out the reference" not in done.stdout + done.stderr:
            raise BadInput(f"cruft link {args.template} failed: {tail(done)}")
        print(f"{ref} is not in {args.template}", flush=True)
    else:
        tried = [f"commit {short(r)}" if FULL_SHA.fullmatch(r) else f"tag {r}" for r in refs]
        raise BadInput(
            f"{args.template} has no {' and no '.join(tried)} (what {TEMPLATE_RECORD} "
            "records): is it the template this project was generated from?"
        )
    state = read_json(ROOT / CRUFT_FILE, "")
    # cruft stores the --checkout it was given; 2.16 reads it nowhere (check and update follow
    # the default branch unless given --checkout), but a SHA there reads as a pin, and every
    # `cruft update` writes null: the same shape as a project made by `cruft create`.
    state["checkout"] = None
    (ROOT / CRUFT_FILE).write_text(json.dumps(state, ensure_ascii=False, indent=2) + "\n")
    how = "the commit recorded in " + str(TEMPLATE_RECORD)
    if ref != refs[0]:
        how = f"the release tag {ref}: review the first update closely"
        print(f"WARNING: the recorded commit {short(refs[0])} is not in {args.template}")
    elif not FULL_SHA.fullmatch(ref):
        how = f"the release tag {ref} ({TEMPLATE_RECORD} records no commit)"
    if "://" not in args.template and not re.match(r"[\w.-]+@[\w.-]+:", args.template):
        print(f"WARNING: {args.template} is a local path: CI cannot reach it (link to a git URL)")
    print(
        f"linked to {args.template} at commit {state['commit']}, {how}.\n"
        f"Next: git add {CRUFT_FILE} && git commit -m 'Link to the template'; "
        "then `make template-check`"
    )
    return 0


# --- template-check -----------------------------------------------------------------------------


def check(args: argparse.Namespace) -> int:
    state = cruft_state()
    if state is None:
        print(f"WARNING: {NOT_LINKED}")
        annotate(NOT_LINKED)
        return BAD_INPUT if args.strict else 0
    template, commit = state["template"], state["commit"]
    done = cruft(args, "check")
    if done.returncode == 0:
        print(f"up to date with {template} (commit {short(commit)})")
        return 0
    if "out of date" not in done.stdout + done.stderr:
        problem = f"could not check the template {template}: {tail(done)}"
        print(f"WARNING: {problem}")
        annotate(problem)
        return done.returncode if args.strict else 0
    notice = (
        f"the project is behind its template {template}: it is at commit {short(commit)}, the "
        f"template's newest is {short(newest_commit(template))}. `make template-update` proposes "
        "the update as a pull request (the template-update schedule does it weekly)"
    )
    print(f"WARNING: {notice}")
    annotate(notice)
    return CHECK_FAILED if args.strict else 0


# --- template-update ----------------------------------------------------------------------------


@dataclass
class Forge:
    """Where the branch is pushed and the pull/merge request opened."""

    kind: str  # "github" or "gitlab"
    api: str  # the repository's (project's) API URL
    headers: dict[str, str]
    push_url: str
    auth: dict[str, str]  # git's environment: an Authorization header for push_url only
    token: str
    owner: str = ""


def auth_env(url: str, user: str, token: str) -> dict[str, str]:
    """The token as an HTTP header git sends to `url` only, through the environment (never in a
    URL, git's output or the process list)."""
    index = int(os.environ.get("GIT_CONFIG_COUNT") or 0)
    basic = base64.b64encode(f"{user}:{token}".encode()).decode()
    return {
        "GIT_CONFIG_COUNT": str(index + 1),
        f"GIT_CONFIG_KEY_{index}": f"http.{url}.extraheader",
        f"GIT_CONFIG_VALUE_{index}": f"Authorization: Basic {basic}",
    }


def forge() -> Forge | None:
    """GitLab CI, GitHub Actions (or their variables set by hand), or None: a local branch only.
    TEMPLATE_UPDATE_TOKEN, when set, replaces the CI's token (see delivery/README.md)."""
    env = os.environ
    if env.get("GITLAB_CI") or env.get("CI_PROJECT_ID"):
        token = env.get("TEMPLATE_UPDATE_TOKEN") or env.get("GITLAB_TOKEN") or ""
        if not token:
            raise BadInput(
                "set GITLAB_TOKEN (or TEMPLATE_UPDATE_TOKEN): a project access token, role "
                "Developer, scopes api and write_repository, to push the branch and open the MR"
            )
        names = ("CI_API_V4_URL", "CI_PROJECT_ID", "CI_SERVER_URL", "CI_PROJECT_PATH")
        if missing := [name for name in names if not env.get(name)]:
            raise BadInput(f"set {', '.join(missing)} (GitLab CI sets them)")
        push_url = f"{env['CI_SERVER_URL'].rstrip('/')}/{env['CI_PROJECT_PATH']}.git"
        return Forge(
            "gitlab",
            f"{env['CI_API_V4_URL']}/projects/{env['CI_PROJECT_ID']}",
            {"PRIVATE-TOKEN": token},
            push_url,
            auth_env(push_url, "oauth2", token),
            token,
        )
    if env.get("GITHUB_ACTIONS") or env.get("GITHUB_REPOSITORY"):
        token = env.get("TEMPLATE_UPDATE_TOKEN") or env.get("GITHUB_TOKEN") or ""
        repository = env.get("GITHUB_REPOSITORY", "")
        if not token or not repository:
            raise BadInput(
                "set GITHUB_TOKEN (or TEMPLATE_UPDATE_TOKEN) and GITHUB_REPOSITORY to push the "
                "branch and open the pull request"
            )
        server = (env.get("GITHUB_SERVER_URL") or "https://github.com").rstrip("/")
        push_url = f"{server}/{repository}.git"
        return Forge(
            "github",
            f"{env.get('GITHUB_API_URL') or 'https://api.github.com'}/repos/{repository}",
            {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"},
            push_url,
            auth_env(push_url, "x-access-token", token),
            token,
            owner=repository.split("/", 1)[0],
        )
    return None


def identity(where: Forge | None) -> dict[str, str]:
    """Who commits, when git knows no one (a CI runner)."""
    configured = run("git", "config", "user.email").stdout.strip()
    if configured or os.environ.get("GIT_AUTHOR_EMAIL"):
        return {}
    if where and where.kind == "github":
        name, email = "github-actions[bot]", "41898282+github-actions[bot]@users.noreply.github.com"
    else:
        name = os.environ.get("GITLAB_USER_NAME") or "template-update"
        email = os.environ.get("GITLAB_USER_EMAIL") or "template-update@localhost"
    return {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }


def untracked() -> set[str]:
    return set(git("ls-files", "--others", "--exclude-standard", "-z").split("\0")) - {""}


def rejected_hunk_files() -> set[str]:
    """Every `*.rej` of the work tree, ignored folders too (the tools' folders aside)."""
    found = set()
    for folder, folders, files in os.walk(ROOT):
        folders[:] = [name for name in folders if name not in NOT_WALKED]
        found |= {
            str((Path(folder) / name).relative_to(ROOT)) for name in files if name.endswith(".rej")
        }
    return found


def has_markers(path: Path) -> bool:
    try:
        return bool(CONFLICT_MARKER.search(path.read_text()))
    except (OSError, UnicodeDecodeError):
        return False


def to_resolve(changed: set[str], rejects: set[str]) -> list[str]:
    """The files the update left for a person, each with what to do (markdown list items)."""
    items = [
        f"`{path}`: the hunks of `{path.removesuffix('.rej')}` that did not apply: apply them "
        "by hand, then delete this file"
        for path in sorted(rejects)
    ]
    unmerged = set(git("diff", "--name-only", "--diff-filter=U", "-z").split("\0")) - {""}
    marked = unmerged | {path for path in changed - rejects if has_markers(ROOT / path)}
    items += [
        f"`{path}`: conflict markers (`<<<<<<<` ... `>>>>>>>`): keep what belongs, drop the markers"
        for path in sorted(marked)
    ]
    return items


def current_ref() -> tuple[str, str]:
    """(branch, commit) of HEAD; branch is the CI's own name for it on a detached checkout."""
    commit = git("rev-parse", "HEAD").strip()
    branch = run("git", "symbolic-ref", "--quiet", "--short", "HEAD").stdout.strip()
    env = os.environ
    return branch or env.get("CI_COMMIT_BRANCH") or env.get("GITHUB_REF_NAME") or "", commit


def describe_template(commit: str) -> str:
    """`cookiecutter-unified-mlops 0.2.0` from the updated project's record (the version only
    when the record names `commit`; "" when it is unreadable)."""
    try:
        record = json.loads((ROOT / TEMPLATE_RECORD).read_text())
        name = str(record["name"])
        return f"{name} {record['version']}" if record.get("commit") == commit else name
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def request_text(state: dict, old: str, new: str, resolve: list[str]) -> tuple[str, str]:
    named = describe_template(new)
    title = f"Template update: {named + ' ' if named else ''}(commit {short(new)})"
    lines = [
        f"Updates the project to commit `{new}` of its template {state['template']} (from "
        f"`{old}`), with `cruft update`. Read the template's CHANGELOG.md between the two.",
        "",
    ]
    if resolve:
        lines += [
            "**The update did not apply cleanly.** What applied is committed; resolve these on "
            "this branch, run `make test-fast`, push, then mark it ready for review:",
            "",
            *(f"- {item}" for item in resolve),
        ]
    else:
        lines += ["Everything applied cleanly: review the diff, let CI run, merge."]
    lines += ["", "Made by `make template-update` (delivery/template_sync.py)."]
    return title, "\n".join(lines) + "\n"


def existing_request(where: Forge, branch: str) -> dict | None:
    """The pull/merge request from `branch`, open ones first (None when there is none)."""
    if where.kind == "github":
        query = urllib.parse.urlencode({"head": f"{where.owner}:{branch}", "state": "all"})
        found = api("GET", f"{where.api}/pulls?{query}&per_page=100", where.headers)
        found.sort(key=lambda pull: pull.get("state") != "open")
        return found[0] if found else None
    query = urllib.parse.urlencode({"source_branch": branch, "state": "all"})
    found = api("GET", f"{where.api}/merge_requests?{query}&per_page=100", where.headers)
    found.sort(key=lambda request: request.get("state") != "opened")
    return found[0] if found else None


def open_request(where: Forge, branch: str, base: str, title: str, body: str, draft: bool):
    if where.kind == "gitlab":
        made = api("POST", f"{where.api}/merge_requests", where.headers, {
            "source_branch": branch, "target_branch": base,
            "title": f"Draft: {title}" if draft else title, "description": body,
            "remove_source_branch": True,
        })  # fmt: skip
        return made["iid"], made.get("web_url", "")
    pull = {"head": branch, "base": base, "title": title, "body": body, "draft": draft}
    try:
        made = api("POST", f"{where.api}/pulls", where.headers, pull)
    except BadInput as error:
        # Draft pull requests need a public repository or a paid plan: say it in the title.
        if not (draft and "HTTP 422" in str(error) and "draft" in str(error).lower()):
            raise
        pull.update(draft=False, title=f"[conflicts] {title}")
        made = api("POST", f"{where.api}/pulls", where.headers, pull)
    return made["number"], made.get("html_url", "")


def push(where: Forge, branch: str) -> None:
    """The branch to the forge, unless it is there already: never force-pushed, so commits a
    person added to resolve the update are kept."""
    found = run("git", "ls-remote", "--heads", where.push_url, branch, env=where.auth)
    if found.returncode:
        raise GitFailed(found.returncode, redact(f"git ls-remote: {found.stderr.strip()}", where))
    if found.stdout.strip():
        print(f"{branch} is on the remote already: left as it is")
        return
    pushed = run("git", "push", "--quiet", where.push_url, f"HEAD:refs/heads/{branch}",
                 env=where.auth)  # fmt: skip
    if pushed.returncode:
        hint = (
            " (GitHub refuses a change to a workflow file from a token without the `workflows` "
            "permission: set TEMPLATE_UPDATE_TOKEN, see delivery/README.md)"
            if "workflow" in pushed.stderr
            else ""
        )
        message = redact(f"git push: {pushed.stderr.strip()}{hint}", where)
        raise GitFailed(pushed.returncode, message)


def redact(text: str, where: Forge) -> str:
    return text.replace(where.token, "***") if where.token else text


def commit_update(changed: set[str], branch: str, message: str, where: Forge | None) -> None:
    """Everything the update changed, conflicted files and `.rej` files included, as one commit
    on `branch` (made from HEAD, or reset to it)."""
    git("add", "--update")  # changed and deleted files; conflicted ones with their markers
    present = sorted(path for path in changed if (ROOT / path).exists())
    if present:
        git("add", "--force", "--", *present)  # new files and .rej files (ignored or not)
    git("switch", "--quiet", "--force-create", branch)
    git("commit", "--quiet", "--no-verify", "-m", message, env=identity(where))


def propose(where: Forge, branch: str, base: str, title: str, body: str, draft: bool) -> None:
    """ONE request from `branch`: an open one is reused; a closed one is not reopened."""
    found = existing_request(where, branch)
    if found:
        number = found.get("number", found.get("iid"))
        url = found.get("html_url", found.get("web_url", ""))
        if found.get("state") in ("open", "opened"):
            print(f"reused the open request #{number} from {branch}: {url}")
        else:
            print(f"the request #{number} from {branch} was {found.get('state')}: not reopened")
        return
    push(where, branch)
    number, url = open_request(where, branch, base, title, body, draft)
    kind = "draft request" if draft else "request"
    print(f"opened the {kind} #{number} from {branch} into {base}: {url}")


def update(args: argparse.Namespace) -> int:
    state = cruft_state()
    if state is None:
        raise BadInput(NOT_LINKED)
    where = forge()  # its settings first: a missing token stops before anything changes
    if run("git", "rev-parse", "--git-dir").returncode:
        raise BadInput("the project is not a git repository: cruft update merges with git")
    if git("status", "--porcelain", "--untracked-files=no").strip():
        raise BadInput("the work tree has uncommitted changes: commit or stash them first")
    old = state["commit"]
    checked = cruft(args, "check")
    if checked.returncode == 0:
        print(f"up to date: nothing to update ({state['template']}, commit {short(old)})")
        return 0
    if "out of date" not in checked.stdout + checked.stderr:
        print(f"ERROR: could not check the template {state['template']}: {tail(checked)}")
        return checked.returncode
    base, start = current_ref()
    if not base:
        raise BadInput("HEAD is detached: check out the branch to update first (e.g. main)")
    on_branch = run("git", "symbolic-ref", "--quiet", "HEAD").returncode == 0
    untracked_before, rejects_before = untracked(), rejected_hunk_files()
    done = cruft(args, "update", "--skip-apply-ask", "--allow-untracked-files")
    new = (cruft_state() or {}).get("commit", "")
    new = new if new != old else newest_commit(state["template"])
    rejects = rejected_hunk_files() - rejects_before
    changed = set(git("diff", "--name-only", "-z", "HEAD").split("\0")) - {""}
    changed |= (untracked() - untracked_before) | rejects
    if not changed:
        if done.returncode:
            print(f"ERROR: cruft update failed and changed nothing: {tail(done)}")
            return done.returncode
        print("up to date: the template's newer commits change nothing in this project")
        return 0
    resolve = to_resolve(changed, rejects)
    if done.returncode:
        resolve.append(
            f"cruft update stopped with an error ({tail(done)}): `cruft diff` shows what is missing"
        )
    branch = f"{BRANCH_PREFIX}{short(new)}"
    title, body = request_text(state, old, new, resolve)
    commit_update(changed | {CRUFT_FILE}, branch, f"{title}\n\n{body}", where)
    try:
        print(f"committed the update on {branch}")
        for item in resolve:
            print(f"  to resolve: {item}")
        if where is None:
            print(
                f"no GitHub or GitLab settings: {branch} stays local. Push it and open a pull "
                "request, or set GITHUB_TOKEN and GITHUB_REPOSITORY (GitLab: GITLAB_TOKEN and "
                "the CI_* variables) to let this do it"
            )
        else:
            propose(where, branch, base, title, body, draft=bool(resolve))
    finally:
        # Back where the caller was: a laptop's work tree as it was (`git switch <branch>`).
        git("switch", "--quiet", base) if on_branch else git("switch", "--quiet", "--detach", start)
    return 0


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    main.add_argument(
        "--cruft",
        default=os.environ.get("CRUFT", "cruft"),
        help="the cruft command (the Makefile's: cruft 2.16.0 from `uv tool run`)",
    )
    commands = main.add_subparsers(dest="command", required=True)
    linked = commands.add_parser("link", help="write .cruft.json at the recorded template commit")
    linked.add_argument("--template", default="", help="the template's git URL (or path)")
    linked.set_defaults(run=link)
    checked = commands.add_parser("check", help="is the project behind its template?")
    checked.add_argument("--strict", action="store_true", help="behind: exit 3; not linked: 2")
    checked.set_defaults(run=check)
    updated = commands.add_parser("update", help="cruft update on a branch, then one PR/MR")
    updated.set_defaults(run=update)
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except BadInput as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return BAD_INPUT
    except GitFailed as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return error.code


if __name__ == "__main__":
    sys.exit(main())
