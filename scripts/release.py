"""Releases of the template: the tests-passed record and the release tag (stdlib only).

python3 scripts/release.py record-tests -- <command...>   # what `make test` runs
python3 scripts/release.py release <x.y.z>                 # what `make release VERSION=x.y.z` runs

record-tests removes build/tests-passed, runs the command, and when the working tree was clean
at the start and the command exits 0 writes the HEAD commit it tested into build/tests-passed.
It exits with the command's exit code.

release checks that the version is a semantic version, equals the VERSION file, has a dated
CHANGELOG.md section with at least one bullet and a link reference, that the working tree is
clean, that the tag v<x.y.z> does not exist and that build/tests-passed names HEAD; then it
creates the annotated tag v<x.y.z> whose message is the changelog section. Any refusal prints
`ERROR: ...` and exits 2 with nothing changed. It never pushes.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = Path("build") / "tests-passed"
REFUSED = 2

# semver.org 2.0.0's regular expression (named groups), anchored.
SEMVER = re.compile(
    r"^(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<prerelease>(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)"
    r"(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+(?P<buildmetadata>[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
# `## [1.2.3] - 2026-12-01` or `## [Unreleased]`; anything else after `## ` is malformed.
HEADING = re.compile(r"^## \[(?P<name>[^\]]+)\](?: - (?P<date>\d{4}-\d{2}-\d{2}))?\s*$")
LINK = re.compile(r"^\[(?P<name>[^\]]+)\]:\s+\S+", re.MULTILINE)
BULLET = re.compile(r"^\s*[-*] \S", re.MULTILINE)


class Refusal(Exception):
    """A check failed: the message says what is wrong and what to do."""


# --- semantic versions ---------------------------------------------------------------------


def is_semver(text: str) -> bool:
    return SEMVER.match(text) is not None


def precedence(version: str) -> tuple:
    """A sort key with semver 2.0's precedence (build metadata ignored; 1.0.0-rc.1 < 1.0.0)."""
    match = SEMVER.match(version)
    if match is None:
        raise ValueError(f"not a semantic version: {version!r}")
    core = (int(match["major"]), int(match["minor"]), int(match["patch"]))
    if match["prerelease"] is None:
        return (*core, 1, ())
    # Numeric identifiers sort before alphanumeric ones, numbers numerically, text in ASCII.
    identifiers = tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in match["prerelease"].split(".")
    )
    return (*core, 0, identifiers)


def is_date(text: str | None) -> bool:
    """A real calendar date in ISO form (YYYY-MM-DD)."""
    try:
        return text is not None and date.fromisoformat(text).isoformat() == text
    except ValueError:
        return False


# --- CHANGELOG.md --------------------------------------------------------------------------


@dataclass
class Section:
    name: str  # a version or "Unreleased"
    date: str | None
    text: str  # the heading line and its body, as in the file (trailing blank lines removed)
    line: int  # 1-based line number of the heading


@dataclass
class Changelog:
    sections: list[Section] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)
    malformed: list[str] = field(default_factory=list)  # `## ` headings that do not parse

    def section(self, name: str) -> Section | None:
        return next((s for s in self.sections if s.name == name), None)


def parse_changelog(text: str) -> Changelog:
    changelog = Changelog()
    lines = text.splitlines()
    headings = [number for number, line in enumerate(lines) if line.startswith("## ")]
    for index, number in enumerate(headings):
        match = HEADING.match(lines[number])
        if match is None:
            changelog.malformed.append(f"line {number + 1}: {lines[number]}")
            continue
        # A section runs to the next `## ` heading; the last one stops at the link references.
        body = lines[number : headings[index + 1] if index + 1 < len(headings) else len(lines)]
        while body and (not body[-1].strip() or LINK.match(body[-1])):
            body.pop()
        changelog.sections.append(
            Section(match["name"], match["date"], "\n".join(body), number + 1)
        )
    for match in LINK.finditer(text):
        changelog.links[match["name"]] = match.group(0).split(None, 1)[1]
    return changelog


def changelog_problems(changelog: Changelog) -> list[str]:
    """What is wrong with a changelog as a whole (the real repository's test runs this)."""
    problems = [
        f"a `## ` heading that is not `## [x.y.z] - YYYY-MM-DD`: {m}" for m in changelog.malformed
    ]
    versions = []
    for index, section in enumerate(changelog.sections):
        if section.name == "Unreleased":
            if index != 0:
                problems.append("[Unreleased] must be the first section")
            if section.date:
                problems.append("[Unreleased] must not have a date")
        elif not is_semver(section.name):
            problems.append(f"[{section.name}] is not a semantic version")
            continue
        else:
            if not is_date(section.date):
                problems.append(f"[{section.name}] has no date (`## [x.y.z] - YYYY-MM-DD`)")
            if not BULLET.search(section.text):
                problems.append(f"[{section.name}] has no bullet")
            versions.append(section.name)
        if section.name not in changelog.links:
            problems.append(f"[{section.name}] has no link reference at the bottom")
    if [precedence(v) for v in versions] != sorted((precedence(v) for v in versions), reverse=True):
        problems.append(f"versions are not newest first: {', '.join(versions)}")
    if len(set(versions)) != len(versions):
        problems.append("a version has two sections")
    return problems


# --- git -----------------------------------------------------------------------------------


def git(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=check,
        stdin=subprocess.DEVNULL,
    )


def head() -> str | None:
    result = git("rev-parse", "--verify", "-q", "HEAD", check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def dirty() -> list[str] | None:
    """Modified, staged or untracked (not ignored) paths; None when this is not a git checkout."""
    result = git("status", "--porcelain", check=False)
    if result.returncode != 0:
        return None
    return [line for line in result.stdout.splitlines() if line.strip()]


# --- record-tests --------------------------------------------------------------------------


def note(message: str) -> None:
    print(f"release.py: {message}", file=sys.stderr)


def record_tests(command: list[str]) -> int:
    record = ROOT / RECORD
    record.unlink(missing_ok=True)
    changed = dirty()
    tested = head() if changed == [] else None
    if changed:
        reason = f"the working tree was not clean at the start ({len(changed)} paths)"
    elif tested is None:
        reason = "this is not a git checkout with a commit"
    # Ctrl-C reaches the whole foreground group: the command handles it, we report its exit
    # code. A handler (not SIG_IGN, which the command would inherit) keeps this process waiting.
    previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        returncode = subprocess.call(command)
    except OSError as error:
        print(f"ERROR: cannot run {command[0]!r}: {error}", file=sys.stderr)
        return 127
    finally:
        signal.signal(signal.SIGINT, previous)
    if returncode < 0:  # killed by a signal: report it the way a shell does
        returncode = 128 - returncode
    if returncode != 0:
        note(f"tests failed (exit {returncode}); {RECORD} not written")
    elif tested is None:
        note(f"tests passed, but {reason}: {RECORD} not written")
    elif head() != tested:
        note(f"HEAD moved during the run: {RECORD} not written")
    else:
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(tested + "\n")
        note(f"tests passed on {tested[:12]}: recorded in {RECORD}")
    return returncode


# --- release -------------------------------------------------------------------------------


def check_release(version: str) -> Section:
    """Every check, in order; the first failure raises Refusal. Returns the changelog section."""
    if not version:
        raise Refusal("no version given: run `make release VERSION=x.y.z`")
    if not is_semver(version):
        raise Refusal(
            f"{version!r} is not a semantic version (x.y.z, e.g. 1.2.0 or 1.2.0-rc.1; no leading "
            "'v', see https://semver.org)"
        )
    version_file = ROOT / "VERSION"
    current = version_file.read_text().strip() if version_file.is_file() else ""
    if version != current:
        raise Refusal(
            f"VERSION holds {current!r}, not {version!r}: write {version} into VERSION, commit, "
            "and run `make test` again"
        )
    changelog_file = ROOT / "CHANGELOG.md"
    changelog = parse_changelog(changelog_file.read_text() if changelog_file.is_file() else "")
    section = changelog.section(version)
    if section is None or not is_date(section.date):
        raise Refusal(
            f"CHANGELOG.md has no `## [{version}] - YYYY-MM-DD` section: rename [Unreleased] to "
            f"[{version}] with today's date (and open a new empty [Unreleased] above it)"
        )
    if not BULLET.search(section.text):
        raise Refusal(f"CHANGELOG.md's [{version}] section has no bullet: say what changed")
    if version not in changelog.links:
        raise Refusal(
            f"CHANGELOG.md has no link reference for [{version}]: add `[{version}]: "
            f"<repo>/compare/v<previous>...v{version}` at the bottom (and point [Unreleased] at "
            f"v{version}...HEAD)"
        )
    changed = dirty()
    if changed is None:
        raise Refusal(f"{ROOT} is not a git checkout: releases are tags of a git repository")
    if changed:
        shown = "\n  ".join(changed[:10])
        raise Refusal(
            "the working tree is not clean: commit or remove these first, then `make test`:"
            f"\n  {shown}"
        )
    tag = f"v{version}"
    if git("rev-parse", "-q", "--verify", f"refs/tags/{tag}", check=False).returncode == 0:
        raise Refusal(
            f"the tag {tag} exists already: a released version is never moved; bump VERSION and "
            "the changelog to a new version"
        )
    record = ROOT / RECORD
    tested = record.read_text().strip() if record.is_file() else ""
    commit = head()
    if not tested or tested != commit:
        found = f"it names {tested[:12]}" if tested else "it does not exist"
        raise Refusal(
            f"{RECORD} does not name HEAD {(commit or '')[:12]} ({found}): run `make test` on this "
            "commit first"
        )
    return section


def release(version: str) -> int:
    try:
        section = check_release(version)
    except Refusal as refusal:
        print(f"ERROR: {refusal}", file=sys.stderr)
        return REFUSED
    tag = f"v{version}"
    # verbatim: git's default cleanup would drop the `## [x.y.z]` and `### Added` lines.
    created = subprocess.run(
        ["git", "tag", "--annotate", "--cleanup=verbatim", "--file=-", tag],
        cwd=ROOT,
        input=section.text + "\n",
        text=True,
    )
    if created.returncode != 0:
        print(f"ERROR: git tag {tag} failed (exit {created.returncode})", file=sys.stderr)
        return 1
    print(f"Tagged {tag} on {(head() or '')[:12]} with its CHANGELOG.md section.")
    print(f"Publish it with: git push origin {tag}")
    return 0


def main(argv: list[str]) -> int:
    usage = __doc__.split("\n\n")[1]
    if argv[:1] == ["record-tests"]:
        command = argv[2:] if argv[1:2] == ["--"] else argv[1:]
        if not command:
            print(f"usage:\n{usage}", file=sys.stderr)
            return REFUSED
        return record_tests(command)
    if argv[:1] == ["release"] and len(argv) <= 2:
        return release(argv[1] if len(argv) == 2 else "")
    print(f"usage:\n{usage}", file=sys.stderr)
    return REFUSED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
