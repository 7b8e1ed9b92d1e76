"""The pre-generation hook: each rule on its own, then bad answers through cookiecutter for real.

A bad answer must stop generation with a message naming the field, and leave nothing behind.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import COOKIECUTTER_JSON, TEMPLATE_ROOT, answers_for, isolated_env, run, tool

from hooks.pre_gen_project import CHOICES, validate_answers

DEFAULTS = answers_for({})


def answers(**changes: str) -> dict:
    return {**DEFAULTS, **changes}


def fields_in(errors: list[str]) -> list[str]:
    """The field each error message names (messages read `field: what is wrong`)."""
    return [error.split(":", 1)[0] for error in errors]


# --- validate_answers, rule by rule ----------------------------------------------------------


def test_default_answers_are_valid():
    assert validate_answers(DEFAULTS) == []


def test_choices_match_cookiecutter_json():
    """The hook's allowed values and the prompts' choice lists must not drift apart."""
    for field, allowed in CHOICES.items():
        assert list(allowed) == COOKIECUTTER_JSON[field], field
    listed = {key for key, value in COOKIECUTTER_JSON.items() if isinstance(value, list)}
    assert listed - {"_extensions", "_copy_without_render"} == set(CHOICES)


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_project_name_is_rejected(name: str):
    assert fields_in(validate_answers(answers(project_name=name))) == ["project_name"]


@pytest.mark.parametrize("slug", ["shop", "shop-recommender", "s3-recs", "a" * 50])
def test_good_slugs_pass(slug: str):
    assert validate_answers(answers(project=slug)) == []


@pytest.mark.parametrize(
    "slug",
    ["Shop", "1shop", "-shop", "shop-", "shop--recs", "shop_recs", "shop recs", "", "a" * 51],
)
def test_bad_slugs_are_rejected(slug: str):
    assert fields_in(validate_answers(answers(project=slug))) == ["project"]


@pytest.mark.parametrize("package", ["shop", "shop_recs", "_shop", "s3"])
def test_good_packages_pass(package: str):
    assert validate_answers(answers(package=package)) == []


@pytest.mark.parametrize("package", ["1shop", "shop-recs", "Shop", "shop recs", "shop.recs", ""])
def test_non_identifier_packages_are_rejected(package: str):
    errors = validate_answers(answers(package=package))
    assert fields_in(errors) == ["package"]
    assert "identifier" in errors[0]


@pytest.mark.parametrize("package", ["class", "import", "lambda", "match", "case", "_"])
def test_keyword_packages_are_rejected(package: str):
    errors = validate_answers(answers(package=package))
    assert fields_in(errors) == ["package"]
    assert "keyword" in errors[0]


@pytest.mark.parametrize("email", ["ops@example.com", "first.last+ml@team.example.org"])
def test_good_emails_pass(email: str):
    assert validate_answers(answers(author_email=email)) == []


@pytest.mark.parametrize(
    "email", ["", "nobody", "a@b", "@example.com", "a b@example.com", "a@b@c.d"]
)
def test_bad_emails_are_rejected(email: str):
    assert fields_in(validate_answers(answers(author_email=email))) == ["author_email"]


@pytest.mark.parametrize("field", sorted(CHOICES))
def test_unknown_choice_values_are_rejected(field: str):
    errors = validate_answers(answers(**{field: "no-such-value"}))
    assert fields_in(errors) == [field]
    assert all(value in errors[0] for value in CHOICES[field]), "the message lists the choices"


def test_every_broken_rule_is_reported_at_once():
    errors = validate_answers(answers(project="Bad Slug", package="class", author_email="x"))
    assert fields_in(errors) == ["project", "package", "author_email"]


# --- Through cookiecutter: stop with the field named, write nothing --------------------------


@pytest.mark.parametrize(
    ("field", "answer"),
    [
        ("project", "project=Bad Slug"),
        ("package", "package=class"),
        ("package", "package=my-package"),
        ("author_email", "author_email=nobody"),
        # cookiecutter rejects an unknown choice itself, before the hook runs.
        ("license", "license=GPL-3.0"),
    ],
    ids=["bad-slug", "keyword-package", "non-identifier-package", "bad-email", "unknown-choice"],
)
def test_bad_answer_stops_generation_and_writes_nothing(
    tmp_path: Path, cookiecutter_config: Path, field: str, answer: str
):
    output = tmp_path / "out"
    output.mkdir()
    command = [tool("cookiecutter"), "--no-input", "-o", str(output), str(TEMPLATE_ROOT), answer]
    result = run(
        command,
        cwd=tmp_path,
        env=isolated_env(tmp_path / "home", cookiecutter_config),
        check=False,
    )
    assert result.returncode != 0
    if field == "license":  # cookiecutter's own message names the variable and the value
        assert re.search(r"\blicense\b.*GPL-3\.0|GPL-3\.0.*\blicense\b", result.stderr)
    else:  # the hook's message
        assert f"ERROR: {field}:" in result.stderr
    assert list(output.iterdir()) == []
