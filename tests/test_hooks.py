"""The hooks: each pre-generation rule on its own, the post-generation helpers, then both through
the cookiecutter CLI for real (a refusal is one line of ours and writes nothing; a bake says what
to run next).
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
from conftest import (
    COOKIECUTTER_JSON,
    PAYLOAD_DIR,
    TEMPLATE_ROOT,
    answers_for,
    bake,
    isolated_env,
    run,
    tool,
)

from hooks import post_gen_project, pre_gen_project
from hooks.pre_gen_project import (
    PROBE_PROJECT,
    UNSUPPORTED_COMBINATIONS,
    dependency_names,
    find_payload,
    normalize,
    read_choices,
    read_payload_pyprojects,
    refusal,
)

DEFAULTS = answers_for({})
CHOICES = read_choices(TEMPLATE_ROOT)
PYPROJECTS = read_payload_pyprojects(PAYLOAD_DIR, DEFAULTS)


def answers(**changes: str) -> dict:
    return {**DEFAULTS, **changes}


def refused(answers: dict, pyprojects: list[dict] = PYPROJECTS) -> str | None:
    return refusal(answers, CHOICES, pyprojects)


def field_of(message: str | None) -> str | None:
    """The field a refusal names (messages read `field: 'value' rule`)."""
    assert message is None or "\n" not in message, "a refusal is one line"
    return None if message is None else message.split(":", 1)[0]


# --- The pre-generation rules, one by one ----------------------------------------------------


def test_default_answers_are_accepted():
    assert refused(DEFAULTS) is None


def test_choices_are_read_from_cookiecutter_json():
    """The choice lists, not the private `_extensions` and `_copy_without_render` lists."""
    options = ["ci_provider", "default_model", "deploy_target", "license", "python_version"]
    assert sorted(CHOICES) == options
    assert all(CHOICES[option] == COOKIECUTTER_JSON[option] for option in CHOICES)


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_project_name_is_refused(name: str):
    assert field_of(refused(answers(project_name=name))) == "project_name"


@pytest.mark.parametrize("slug", ["shop", "shop-recommender", "s3-recs", "a" * 50])
def test_good_slugs_pass(slug: str):
    assert refused(answers(project=slug)) is None


@pytest.mark.parametrize(
    "slug",
    ["Shop", "1shop", "-shop", "shop-", "shop--recs", "shop_recs", "shop recs", "", "a" * 51],
)
def test_bad_slugs_are_refused(slug: str):
    assert field_of(refused(answers(project=slug))) == "project"


@pytest.mark.parametrize("package", ["shop", "shop_recs", "_shop", "s3"])
def test_good_packages_pass(package: str):
    assert refused(answers(package=package)) is None


@pytest.mark.parametrize("package", ["1shop", "shop-recs", "Shop", "shop recs", "shop.recs", ""])
def test_non_identifier_packages_are_refused(package: str):
    message = refused(answers(package=package))
    assert field_of(message) == "package"
    assert "identifier" in message


@pytest.mark.parametrize(
    ("package", "kind"),
    [
        ("class", "keyword"),
        ("import", "keyword"),
        ("lambda", "keyword"),
        ("match", "soft keyword"),
        ("case", "soft keyword"),
        ("_", "soft keyword"),
    ],
)
def test_keyword_packages_are_refused(package: str, kind: str):
    message = refused(answers(package=package))
    assert message == f"package: {package!r} is a Python {kind}"


@pytest.mark.parametrize("email", ["ops@example.com", "first.last+ml@team.example.org"])
def test_good_emails_pass(email: str):
    assert refused(answers(author_email=email)) is None


@pytest.mark.parametrize(
    "email", ["", "nobody", "a@b", "@example.com", "a b@example.com", "a@b@c.d"]
)
def test_bad_emails_are_refused(email: str):
    assert field_of(refused(answers(author_email=email))) == "author_email"


@pytest.mark.parametrize("field", sorted(CHOICES))
def test_a_replayed_unknown_choice_is_refused(field: str):
    """Only a replay file gets an unknown choice past cookiecutter (the CLI test is below)."""
    message = refused(answers(**{field: "no-such-value"}))
    assert message == f"{field}: 'no-such-value' is not one of {', '.join(CHOICES[field])}"


def test_only_the_first_broken_rule_is_reported():
    message = refused(answers(project="Bad Slug", package="class", author_email="x"))
    assert field_of(message) == "project"


# --- Names the project's dependencies already have -------------------------------------------


def requirement_name(requirement: str) -> str:
    return normalize(re.split(r"[\s\[<>=!~;@]", requirement.strip(), maxsplit=1)[0])


@pytest.fixture(scope="module")
def baked_pyprojects(tmp_path_factory: pytest.TempPathFactory, cookiecutter_config: Path):
    """The default bake's pyproject.toml files, as cookiecutter rendered them."""
    project = bake(tmp_path_factory.mktemp("dependencies"), cookiecutter_config)
    return [tomllib.loads(path.read_text()) for path in sorted(project.rglob("pyproject.toml"))]


def test_the_hook_finds_the_payload_as_cookiecutter_does():
    assert find_payload(TEMPLATE_ROOT) == PAYLOAD_DIR


def test_dependency_names_hold_the_pins_and_every_members_dependencies(baked_pyprojects):
    """What the hook reads from the payload covers the bake's root `constraint-dependencies` and
    each workspace member's dependencies, and none of the project's own packages."""
    own = {normalize(p["project"]["name"]) for p in baked_pyprojects}
    root = next(p for p in baked_pyprojects if "workspace" in p["tool"].get("uv", {}))
    pinned = {requirement_name(r) for r in root["tool"]["uv"]["constraint-dependencies"]}
    members = {
        requirement_name(requirement)
        for pyproject in baked_pyprojects
        for requirement in pyproject["project"].get("dependencies", [])
    }
    names = dependency_names(PYPROJECTS)
    assert len(pinned) > 100, "the root pins every dependency, transitive ones too"
    assert sorted((pinned | members) - own - names) == []
    assert {"numpy", "flask", "scikit-learn", "mlflow-skinny", "evidently", "hatchling"} <= names
    assert [name for name in names if PROBE_PROJECT in name or "shop-recommender" in name] == []


@pytest.mark.parametrize("slug", ["numpy", "flask", "scikit-learn", "mlflow", "pyyaml", "dvc"])
def test_a_slug_that_is_a_dependency_is_refused(slug: str):
    message = refused(answers(project=slug, package=slug.replace("-", "_")))
    assert message == f"project: {slug!r} is taken: the project depends on a package of that name"


def test_a_slug_whose_package_names_are_a_dependency_is_refused():
    # graphql-core and pydantic-core are pinned dependencies; `<slug>-core` is the core package.
    message = refused(answers(project="graphql", package="graphql"))
    assert message == (
        "project: 'graphql' is taken: the project's package graphql-core would have the name "
        "of one of its dependencies"
    )


def test_names_are_compared_pep503_normalised():
    assert normalize("Zope.Event") == normalize("zope_event") == "zope-event"
    pins = [{"tool": {"uv": {"constraint-dependencies": ["Zope.Event==6.2"]}}}]
    assert field_of(refused(answers(project="zope-event"), pins)) == "project"


@pytest.mark.parametrize("suffix", ["core", "api", "training", "monitoring", "registry", "batch"])
def test_every_derived_distribution_name_is_checked(suffix: str):
    pins = [{"project": {"dependencies": [f"acme-{suffix}>=1"]}}]
    message = refused(answers(project="acme", package="acme"), pins)
    assert f"package acme-{suffix} would have the name" in message


def test_a_package_the_payload_declares_is_checked():
    """A member the payload grows (`<project>-extras`) is checked without a change to the hook."""
    pyprojects = [
        {"project": {"name": f"{PROBE_PROJECT}-extras"}},
        {"project": {"dependencies": ["acme-extras"]}},
    ]
    assert "acme-extras" in refused(answers(project="acme", package="acme"), pyprojects)


# --- Unsupported combinations (none today; the shape is tested with a made-up one) ------------


def test_unsupported_combinations_name_real_options_and_values():
    for combination, reason in UNSUPPORTED_COMBINATIONS:
        assert reason
        for field, value in combination.items():
            assert value in COOKIECUTTER_JSON[field], (field, value)


def test_an_unsupported_combination_is_refused(monkeypatch: pytest.MonkeyPatch):
    combination = {"ci_provider": "none", "deploy_target": "kubernetes"}
    monkeypatch.setattr(
        pre_gen_project, "UNSUPPORTED_COMBINATIONS", ((combination, "made up for the test"),)
    )
    assert refused(answers(**combination)) == (
        "ci_provider='none', deploy_target='kubernetes': not supported together "
        "(made up for the test)"
    )
    assert refused(answers(ci_provider="none", deploy_target="ansible")) is None


# --- The post-generation helpers --------------------------------------------------------------


@pytest.mark.parametrize(
    ("ci_provider", "deploy_target", "copied"),
    [
        (
            "github",
            "kubernetes+ansible",
            {
                "ci/github": ".github",
                "ci/README.md": "delivery/CI.md",
                "k8s": "k8s",
                "ansible": "ansible",
            },
        ),
        (
            "gitlab",
            "kubernetes",
            {
                "ci/gitlab/gitlab-ci.yml": ".gitlab-ci.yml",
                "ci/README.md": "delivery/CI.md",
                "k8s": "k8s",
            },
        ),
        ("none", "ansible", {"ansible": "ansible"}),
        ("none", "none", {}),
    ],
)
def test_only_the_selected_modules_are_copied(
    monkeypatch: pytest.MonkeyPatch, ci_provider: str, deploy_target: str, copied: dict
):
    calls = []
    monkeypatch.setattr(
        post_gen_project, "vendor_module", lambda source, target: calls.append((source, target))
    )
    post_gen_project.vendor_selected_modules(
        TEMPLATE_ROOT, answers(ci_provider=ci_provider, deploy_target=deploy_target)
    )
    assert calls == [(TEMPLATE_ROOT / source, Path(target)) for source, target in copied.items()]


def test_payload_folders_of_an_unselected_module_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    for folder in ("k8s/overlays/dev", "ansible/group_vars"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "rendered.yml").write_text("rendered: true\n")
    post_gen_project.remove_unselected_modules("kubernetes")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.yml")) == [
        "k8s/overlays/dev/rendered.yml"
    ]
    post_gen_project.remove_unselected_modules("none")  # and without the folders, no error
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("shell_dir", "cd"),
    [("made-in", "cd shop-recommender"), (".", "cd made-in/shop-recommender"), ("elsewhere", None)],
)
def test_next_commands_cd_from_the_users_shell(
    tmp_path: Path, capsys: pytest.CaptureFixture, shell_dir: str, cd: str | None
):
    project = tmp_path.resolve() / "made-in" / "shop-recommender"
    post_gen_project.print_next_commands(project, str(tmp_path / shell_dir))
    cd = cd or f"cd {project}"
    assert capsys.readouterr().out == (
        f"shop-recommender is ready. Next:\n  {cd}\n  make setup\n  make data pipeline\n"
    )


def test_next_commands_without_a_shell_folder_cd_to_the_full_path(capsys: pytest.CaptureFixture):
    post_gen_project.print_next_commands(Path("/srv/shop-recommender"), None)
    assert "  cd /srv/shop-recommender\n" in capsys.readouterr().out


def test_next_commands_are_the_readmes():
    """The template README's "Generate your own project" names the commands the hook prints."""
    readme = (TEMPLATE_ROOT / "README.md").read_text()
    section = readme.split("## Generate your own project", 1)[1].split("\n## ", 1)[0]
    for command in ("cd <project>", *post_gen_project.NEXT_COMMANDS):
        assert command in section, command


# --- Through the cookiecutter CLI --------------------------------------------------------------


def cookiecutter_cli(tmp_path: Path, cookiecutter_config: Path, *args: str, no_input=True):
    """Run the CLI from tmp_path (as a shell there would: $PWD set) into tmp_path/out."""
    output = tmp_path / "out"
    output.mkdir(exist_ok=True)
    env = {**isolated_env(tmp_path / "home", cookiecutter_config), "PWD": str(tmp_path)}
    flags = ["--no-input"] if no_input else []  # a replay takes no --no-input
    command = [tool("cookiecutter"), *flags, "-o", str(output), str(TEMPLATE_ROOT), *args]
    return run(command, cwd=tmp_path, env=env, check=False), output


def our_lines(stderr: str) -> list[str]:
    """The hook's lines in what the CLI prints (cookiecutter adds its own `ERROR: Stopping
    generation ...` line, a traceback and `Hook script failed (exit status: 1)`)."""
    return [
        line
        for line in stderr.splitlines()
        if line.startswith("ERROR: ") and "Stopping generation" not in line
    ]


@pytest.mark.parametrize(
    ("answer", "refusal_line"),
    [
        ("project=Bad Slug", "ERROR: project: 'Bad Slug' must be lowercase letters"),
        ("package=class", "ERROR: package: 'class' is a Python keyword"),
        ("package=my-package", "ERROR: package: 'my-package' must be a lowercase Python"),
        ("author_email=nobody", "ERROR: author_email: 'nobody' is not an e-mail address"),
        ("project=numpy", "ERROR: project: 'numpy' is taken: the project depends on"),
        ("project=graphql", "ERROR: project: 'graphql' is taken: the project's package"),
    ],
    ids=[
        "bad-slug",
        "keyword-package",
        "non-identifier-package",
        "bad-email",
        "dependency-slug",
        "dependency-derived-name",
    ],
)
def test_a_refusal_is_one_line_and_writes_nothing(
    tmp_path: Path, cookiecutter_config: Path, answer: str, refusal_line: str
):
    result, output = cookiecutter_cli(tmp_path, cookiecutter_config, answer)
    assert result.returncode == 1
    lines = our_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith(refusal_line), result.stderr
    assert "is ready" not in result.stdout
    assert list(output.iterdir()) == []


def test_an_unknown_choice_is_refused_by_cookiecutter_before_the_hooks(
    tmp_path: Path, cookiecutter_config: Path
):
    result, output = cookiecutter_cli(tmp_path, cookiecutter_config, "license=GPL-3.0")
    assert result.returncode == 1
    assert (
        "ValueError: GPL-3.0 provided for choice variable license, but the choices are "
        "['MIT', 'Apache-2.0', 'Proprietary']." in result.stderr
    )
    assert our_lines(result.stderr) == []
    assert list(output.iterdir()) == []


def test_an_unknown_choice_in_a_replay_file_is_refused_by_the_hook(
    tmp_path: Path, cookiecutter_config: Path
):
    replay = tmp_path / "replay.json"
    replay.write_text(json.dumps({"cookiecutter": answers(ci_provider="jenkins")}))
    result, output = cookiecutter_cli(
        tmp_path, cookiecutter_config, "--replay-file", str(replay), no_input=False
    )
    assert result.returncode == 1
    assert our_lines(result.stderr) == [
        "ERROR: ci_provider: 'jenkins' is not one of github, gitlab, none"
    ]
    assert list(output.iterdir()) == []


@pytest.mark.parametrize(
    "combination",
    [combination for combination, _reason in UNSUPPORTED_COMBINATIONS],
    ids=lambda combination: "-".join(combination.values()),
)
def test_each_unsupported_combination_fails_in_the_hook(
    tmp_path: Path, cookiecutter_config: Path, combination: dict[str, str]
):
    args = [f"{field}={value}" for field, value in combination.items()]
    result, output = cookiecutter_cli(tmp_path, cookiecutter_config, *args)
    assert result.returncode == 1
    assert len(our_lines(result.stderr)) == 1, result.stderr
    assert list(output.iterdir()) == []


def test_a_bake_prints_the_next_commands(tmp_path: Path, cookiecutter_config: Path):
    result, output = cookiecutter_cli(tmp_path, cookiecutter_config)
    assert result.returncode == 0, result.stderr
    project = DEFAULTS["project"]
    assert result.stdout.endswith(
        f"{project} is ready. Next:\n  cd out/{project}\n  make setup\n  make data pipeline\n"
    )
    for targets in (["setup"], ["data", "pipeline"]):
        dry_run = run(["make", "-n", *targets], cwd=output / project, check=False)
        assert dry_run.returncode == 0, dry_run.stderr
