"""Releases: `make test`'s tests-passed record, `make release`'s refusals and its tag, and the
real CHANGELOG.md.

Each test works in its own `git clone` of a throwaway repository holding the template's release
files (VERSION, CHANGELOG.md, Makefile, .gitignore, scripts/release.py), never in this one.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEMPLATE_ROOT

RELEASE_FILES = ("VERSION", "CHANGELOG.md", "Makefile", ".gitignore", "scripts/release.py")
RECORD = Path("build") / "tests-passed"
# The identity of every commit and tag here; no user or system git config is read.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Release Test",
    "GIT_AUTHOR_EMAIL": "release-test@example.com",
    "GIT_COMMITTER_NAME": "Release Test",
    "GIT_COMMITTER_EMAIL": "release-test@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def _load_release_module():
    path = TEMPLATE_ROOT / "scripts" / "release.py"
    spec = importlib.util.spec_from_file_location("template_release", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


release_py = _load_release_module()


def env(**extra: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("VERSION", "MAKEFLAGS")}
    return {**environment, **GIT_ENV, **extra}


def sh(args: list[str], cwd: Path, check: bool = True, **extra: str):
    result = subprocess.run(
        args, cwd=cwd, env=env(**extra), capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def git(repo: Path, *args: str) -> str:
    return sh(["git", *args], cwd=repo).stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "--all")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("release") / "origin"
    for name in RELEASE_FILES:
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(TEMPLATE_ROOT / name, repo / name)
    git(repo, "init", "-q", "-b", "main")
    commit_all(repo, "The template's release files")
    return repo


@pytest.fixture
def clone(origin: Path, tmp_path: Path) -> Path:
    sh(["git", "clone", "-q", str(origin), "clone"], cwd=tmp_path)
    return tmp_path / "clone"


def record_tests(repo: Path, *command: str):
    return sh(["python3", "scripts/release.py", "record-tests", "--", *command], repo, check=False)


def passed(repo: Path) -> Path:
    """A passing `make test` on this commit, as the Makefile records it."""
    assert record_tests(repo, "true").returncode == 0
    assert (repo / RECORD).read_text() == git(repo, "rev-parse", "HEAD") + "\n"
    return repo


def make_release(repo: Path, *version: str):
    """`make release VERSION=...`; without a version when none is given."""
    args = [f"VERSION={version[0]}"] if version else []
    return sh(["make", "--no-print-directory", "release", *args], repo, check=False)


def state(repo: Path) -> tuple[str, str, str]:
    """What a refused release must leave as it was: tags, HEAD, the tree's status."""
    return (
        git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/tags"),
        git(repo, "rev-parse", "HEAD"),
        git(repo, "status", "--porcelain", "--ignored"),
    )


def assert_refused(repo: Path, result, message: str, before: tuple[str, str, str]) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"ERROR: {message}" in result.stderr, result.stderr
    assert state(repo) == before


def next_version(repo: Path, version: str, section: str, link: bool = True) -> None:
    """Bump VERSION and put `section` (under its heading) above the newest release, then commit."""
    (repo / "VERSION").write_text(version + "\n")
    changelog = (repo / "CHANGELOG.md").read_text()
    # Right above the newest release: [Unreleased] may already list changes.
    at = changelog.index("\n## [", changelog.index("## [Unreleased]")) + 1
    changelog = f"{changelog[:at]}{section}\n\n{changelog[at:]}"
    if link:
        changelog = changelog.replace("...HEAD\n", f"...HEAD\n[{version}]: <repo>/v{version}\n", 1)
    (repo / "CHANGELOG.md").write_text(changelog)
    commit_all(repo, f"Release {version}")


# --- make release: each refusal, in the order the checks run --------------------------------


def test_release_without_a_version_is_refused(clone):
    before = state(passed(clone))
    result = make_release(clone)
    assert_refused(clone, result, "no version given: run `make release VERSION=x.y.z`", before)


@pytest.mark.parametrize("version", ["v0.1.0", "0.1", "01.1.0", "0.1.0-", "0.1.0; touch x"])
def test_release_of_a_non_semantic_version_is_refused(clone, version):
    before = state(passed(clone))
    result = make_release(clone, version)
    assert_refused(clone, result, f"{version!r} is not a semantic version", before)


def test_release_of_another_version_than_the_version_file_is_refused(clone):
    before = state(passed(clone))
    result = make_release(clone, "0.2.0")
    assert_refused(clone, result, "VERSION holds '0.1.0', not '0.2.0': write 0.2.0 into", before)


def test_release_without_a_changelog_section_is_refused(clone):
    (clone / "VERSION").write_text("0.2.0\n")
    commit_all(clone, "VERSION 0.2.0 without its changelog")
    before = state(passed(clone))
    result = make_release(clone, "0.2.0")
    message = "CHANGELOG.md has no `## [0.2.0] - YYYY-MM-DD` section"
    assert_refused(clone, result, message, before)


@pytest.mark.parametrize("heading", ["## [0.2.0]", "## [0.2.0] - 2026-13-01"])
def test_release_of_an_undated_section_is_refused(clone, heading):
    next_version(clone, "0.2.0", f"{heading}\n\n### Fixed\n\n- Something.\n")
    before = state(passed(clone))
    result = make_release(clone, "0.2.0")
    message = "CHANGELOG.md has no `## [0.2.0] - YYYY-MM-DD` section"
    assert_refused(clone, result, message, before)


def test_release_of_a_section_without_a_bullet_is_refused(clone):
    next_version(clone, "0.2.0", "## [0.2.0] - 2026-12-02\n\n### Fixed\n")
    before = state(passed(clone))
    result = make_release(clone, "0.2.0")
    message = "CHANGELOG.md's [0.2.0] section has no bullet"
    assert_refused(clone, result, message, before)


def test_release_without_a_link_reference_is_refused(clone):
    next_version(clone, "0.2.0", "## [0.2.0] - 2026-12-02\n\n### Fixed\n\n- One.\n", link=False)
    before = state(passed(clone))
    result = make_release(clone, "0.2.0")
    message = "CHANGELOG.md has no link reference for [0.2.0]"
    assert_refused(clone, result, message, before)


@pytest.mark.parametrize("change", ["modified", "staged", "untracked"])
def test_release_from_a_dirty_tree_is_refused(clone, change):
    passed(clone)
    if change == "untracked":
        (clone / "notes.txt").write_text("draft\n")
    else:
        (clone / "CHANGELOG.md").write_text((clone / "CHANGELOG.md").read_text() + "\n- more\n")
        if change == "staged":
            git(clone, "add", "CHANGELOG.md")
    before = state(clone)
    result = make_release(clone, "0.1.0")
    assert_refused(clone, result, "the working tree is not clean: commit or remove", before)
    assert ("notes.txt" if change == "untracked" else "CHANGELOG.md") in result.stderr


def test_release_of_an_existing_tag_is_refused(clone):
    git(clone, "tag", "v0.1.0")  # a lightweight tag someone made by hand
    before = state(passed(clone))
    result = make_release(clone, "0.1.0")
    assert_refused(clone, result, "the tag v0.1.0 exists already", before)
    assert git(clone, "cat-file", "-t", "v0.1.0") == "commit"


def test_release_without_a_test_record_is_refused(clone):
    before = state(clone)
    result = make_release(clone, "0.1.0")
    assert_refused(clone, result, "build/tests-passed does not name HEAD", before)
    assert "run `make test` on this commit first" in result.stderr


def test_release_with_a_record_of_another_commit_is_refused(clone):
    passed(clone)
    (clone / "README.md").write_text("A change after the tests passed.\n")
    commit_all(clone, "A later commit")
    before = state(clone)
    result = make_release(clone, "0.1.0")
    assert_refused(clone, result, "build/tests-passed does not name HEAD", before)
    assert "run `make test` on this commit first" in result.stderr


def test_release_checks_in_order(clone):
    """A dirty tree without a record: the tree is reported (it comes first), not the record."""
    (clone / "notes.txt").write_text("draft\n")
    before = state(clone)
    result = make_release(clone, "0.1.0")
    assert_refused(clone, result, "the working tree is not clean", before)
    assert "tests-passed" not in result.stderr


# --- make release: the tag ------------------------------------------------------------------


def changelog_section(text: str, version: str) -> str:
    """The section as a reader finds it: its heading down to the next `## ` or the links."""
    match = re.search(
        rf"^## \[{re.escape(version)}\] - .*?(?=^## |^\[[^\]]+\]: |\Z)", text, re.M | re.S
    )
    assert match, version
    return match.group(0).rstrip()


def test_release_tags_head_with_the_changelog_section(clone, origin):
    passed(clone)
    result = make_release(clone, "0.1.0")
    assert result.returncode == 0, result.stderr
    assert "git push origin v0.1.0" in result.stdout
    assert git(clone, "cat-file", "-t", "v0.1.0") == "tag"  # annotated
    assert git(clone, "rev-parse", "v0.1.0^{commit}") == git(clone, "rev-parse", "HEAD")
    message = git(clone, "tag", "-l", "--format=%(contents)", "v0.1.0")
    section = changelog_section((clone / "CHANGELOG.md").read_text(), "0.1.0")
    assert message == section
    assert "### Added" in message and "\n- " in message
    assert git(clone, "tag", "-l", "--format=%(taggername)", "v0.1.0") == "Release Test"
    assert git(origin, "tag", "-l") == ""  # never pushed
    assert git(clone, "status", "--porcelain") == ""


def test_release_of_a_prerelease_after_a_release(clone):
    passed(clone)
    assert make_release(clone, "0.1.0").returncode == 0
    section = (
        "## [0.2.0-rc.1] - 2026-12-02\n\n### Added\n\n- A new option.\n\n### Fixed\n\n- A bug."
    )
    next_version(clone, "0.2.0-rc.1", section)
    again = make_release(clone, "0.2.0-rc.1")
    assert_refused(clone, again, "build/tests-passed does not name HEAD", state(clone))
    passed(clone)
    result = make_release(clone, "0.2.0-rc.1")
    assert result.returncode == 0, result.stderr
    assert git(clone, "tag", "-l", "--format=%(contents)", "v0.2.0-rc.1") == section
    assert git(clone, "tag", "-l").split() == ["v0.1.0", "v0.2.0-rc.1"]


# --- make test: the tests-passed record -----------------------------------------------------


def test_a_pass_on_a_clean_tree_records_head(clone):
    result = record_tests(clone, "true")
    assert result.returncode == 0
    assert (clone / RECORD).read_text() == git(clone, "rev-parse", "HEAD") + "\n"
    assert "recorded in build/tests-passed" in result.stderr
    assert git(clone, "status", "--porcelain") == ""  # build/ is ignored


def test_a_failed_run_records_nothing_and_keeps_its_exit_code(clone):
    passed(clone)  # a stale record from an earlier pass
    result = record_tests(clone, "sh", "-c", "exit 5")
    assert result.returncode == 5
    assert not (clone / RECORD).exists()
    assert "tests failed (exit 5)" in result.stderr


@pytest.mark.parametrize("change", ["modified", "untracked"])
def test_a_pass_on_a_dirty_tree_records_nothing(clone, change):
    passed(clone)
    if change == "untracked":
        (clone / "notes.txt").write_text("draft\n")
    else:
        (clone / "VERSION").write_text("0.1.1\n")
    result = record_tests(clone, "true")
    assert result.returncode == 0
    assert not (clone / RECORD).exists()
    assert "the working tree was not clean at the start (1 paths)" in result.stderr


def test_ignored_files_do_not_make_the_tree_dirty(clone):
    (clone / "build").mkdir()
    (clone / "build" / "site.html").write_text("output\n")
    (clone / ".venv").mkdir()
    assert record_tests(clone, "true").returncode == 0
    assert (clone / RECORD).is_file()


def test_a_commit_during_the_run_records_nothing(clone):
    commit = "echo x > later.txt && git add later.txt && git commit -q -m later"
    result = record_tests(clone, "sh", "-c", commit)
    assert result.returncode == 0, result.stderr
    assert not (clone / RECORD).exists()
    assert "HEAD moved during the run" in result.stderr


def test_make_test_runs_pytest_through_the_record(clone, tmp_path):
    """The Makefile's `test` recipe, with a fake pytest: the same command line, its exit code,
    the record on a clean tree only."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "pytest").write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args\nexit "$FAKE_RC"\n')
    (fake / "pytest").chmod(0o755)
    make = [
        "make",
        "--no-print-directory",
        "test",
        f"BIN={fake}",
        "WITH_NPM=",
        "-o",
        ".venv/.installed",
    ]

    failed = sh(make, clone, check=False, FAKE_RC="3")
    assert failed.returncode != 0
    assert "tests failed (exit 3)" in failed.stderr
    assert not (clone / RECORD).exists()

    ok = sh(make, clone, check=False, FAKE_RC="0")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "args").read_text() == "tests -n 2 --dist loadgroup --durations=30\n"
    assert (clone / RECORD).read_text() == git(clone, "rev-parse", "HEAD") + "\n"

    (clone / "notes.txt").write_text("draft\n")
    dirty = sh(make, clone, check=False, FAKE_RC="0")
    assert dirty.returncode == 0
    assert not (clone / RECORD).exists()


# --- the real CHANGELOG.md ------------------------------------------------------------------


def test_the_changelog_parses():
    """Every version section has a date, a bullet and a link reference; versions descend; the
    newest one is VERSION's, under an [Unreleased] section at most."""
    text = (TEMPLATE_ROOT / "CHANGELOG.md").read_text()
    changelog = release_py.parse_changelog(text)
    assert release_py.changelog_problems(changelog) == []
    assert "https://keepachangelog.com/en/1.1.0/" in text
    assert "https://semver.org/spec/v2.0.0.html" in text

    version = (TEMPLATE_ROOT / "VERSION").read_text().strip()
    names = [section.name for section in changelog.sections]
    released = [name for name in names if name != "Unreleased"]
    assert names[0] in ("Unreleased", version)
    assert released[0] == version, f"the newest section is {released[0]}, VERSION is {version}"
    assert sorted(released, key=release_py.precedence, reverse=True) == released
    assert changelog.links["Unreleased"].endswith(f"/compare/v{version}...HEAD")
    for older, newer in zip(released[1:], released, strict=False):
        assert changelog.links[newer].endswith(f"/compare/v{older}...v{newer}")
    assert changelog.links[released[-1]].endswith(f"/releases/tag/v{released[-1]}")
    # Every dated heading, read without the parser.
    headings = re.findall(r"^## \[([^\]]+)\](.*)$", text, re.M)
    assert [name for name, _ in headings] == names
    for name, rest in headings:
        assert name == "Unreleased" or re.fullmatch(r" - \d{4}-\d{2}-\d{2}", rest), name


def test_semantic_version_precedence():
    ordered = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2"]
    ordered += ["1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "2.0.0"]
    assert sorted(reversed(ordered), key=release_py.precedence) == ordered
    assert release_py.is_semver("1.0.0-rc.1+build.5")
    for bad in ("1.0", "v1.0.0", "1.0.0-01", "1.0.0+", " 1.0.0"):
        assert not release_py.is_semver(bad), bad


def test_the_changelog_check_finds_what_is_wrong():
    """The parser behind the real changelog's test is not vacuous."""
    text = (
        "# Changelog\n\n## [0.1.0] - 2026-12-01\n\n- First.\n\n## [Unreleased]\n\n"
        "## [0.2.0] - 2026-12-02\n\n### Added\n\n## [0.3] - 2026-12-03\n\n- x\n"
        "## 0.0.1\n\n[0.1.0]: https://example.com/v0.1.0\n"
    )
    problems = release_py.changelog_problems(release_py.parse_changelog(text))
    assert problems == [
        "a `## ` heading that is not `## [x.y.z] - YYYY-MM-DD`: line 16: ## 0.0.1",
        "[Unreleased] must be the first section",
        "[Unreleased] has no link reference at the bottom",
        "[0.2.0] has no bullet",
        "[0.2.0] has no link reference at the bottom",
        "[0.3] is not a semantic version",
        "versions are not newest first: 0.1.0, 0.2.0",
    ]
