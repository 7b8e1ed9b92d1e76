"""Every option combination bakes into exactly the expected project, with nothing left over.

One bake per configuration (module-scoped `baked` fixture); every check below runs on it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from conftest import (
    ANSWERS_FILE,
    CONFIGS,
    COOKIECUTTER_JSON,
    CYCLED_OPTIONS,
    INTERACTING_OPTIONS,
    LICENSE_FILE,
    TEMPLATE_ROOT,
    Bake,
    answers_for,
    bake,
    file_sources,
    public_answers,
    run,
    tool,
)
from expected_files import BY_OPTION, expected_files

# Jinja left unrendered: `{{` (but not GitHub's `${{`), `{%`, or a cookiecutter variable.
# `.cookiecutter.json`, the answers file, is a name that may be mentioned.
TEMPLATE_VARIABLE = re.compile(r"\bcookiecutter\.(?!json\b)\w+")
RESIDUE = re.compile(rf"(?<!\$)\{{\{{|\{{%|{TEMPLATE_VARIABLE.pattern}")
# A payload file that wraps foreign `{{ }}` (Ansible, Prometheus, Grafana) in `{% raw %}`.
RAW_BLOCK = re.compile(r"\{%-?\s*raw\s*-?%\}")

CI_FILES = {"github": ".github/workflows/ci.yml", "gitlab": ".gitlab-ci.yml"}
CI_SCHEMAS = {"github": "vendor.github-workflows", "gitlab": "vendor.gitlab-ci"}
LICENSE_MARKERS = {"MIT": "MIT License", "Apache-2.0": "Apache License"}


class _AnyTagLoader(yaml.SafeLoader):
    """Safe YAML loading that accepts application tags (GitLab `!reference`, Ansible `!vault`)."""


def _construct_tagged(loader: yaml.SafeLoader, _suffix: str, node: yaml.Node):
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_scalar(node)


_AnyTagLoader.add_multi_constructor("!", _construct_tagged)


def text_files(baked: Bake) -> dict[str, str]:
    """The bake's text files (binary ones aside), by relative path."""
    texts = {}
    for relative in sorted(baked.files()):
        try:
            texts[relative] = (baked.path / relative).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
    return texts


# --- The matrix itself ---------------------------------------------------------------------


def test_matrix_exercises_every_value_of_every_option():
    for option in (*INTERACTING_OPTIONS, *CYCLED_OPTIONS):
        baked_values = {config[option] for config in CONFIGS}
        assert baked_values == set(COOKIECUTTER_JSON[option]), option


def test_matrix_covers_the_product_of_interacting_options():
    combinations = {tuple(config[o] for o in INTERACTING_OPTIONS) for config in CONFIGS}
    expected = len(COOKIECUTTER_JSON["ci_provider"]) * len(COOKIECUTTER_JSON["deploy_target"])
    assert len(combinations) == len(CONFIGS) == expected


# --- Shape of the bake -----------------------------------------------------------------------


def test_expected_files_cover_every_choice_of_every_option():
    """tests/expected_files.py names the files of every value cookiecutter.json offers."""
    choice_options = {
        key: value
        for key, value in COOKIECUTTER_JSON.items()
        if isinstance(value, list) and not key.startswith("_")
    }
    assert {option: list(values) for option, values in BY_OPTION.items()} == choice_options


def test_file_set_is_exactly_the_expected_list(baked: Bake):
    """The files of tests/expected_files.py, written out by hand, and no others."""
    expected = expected_files(baked.config)
    actual = baked.files()
    unexpected, missing = sorted(actual - expected), sorted(expected - actual)
    assert (unexpected, missing) == ([], []), (
        "update tests/expected_files.py if the change is meant\n"
        + "".join(f"  unexpected: {path}\n" for path in unexpected)
        + "".join(f"  missing:    {path}\n" for path in missing)
    )


def test_every_file_has_a_source(baked: Bake):
    """Each file comes from the payload, a module or the hook (the checks below look it up)."""
    sources = file_sources(baked.answers)
    assert sorted(baked.files() - set(sources)) == []


def test_no_template_residue(baked: Bake):
    sources = file_sources(baked.answers)
    found = []
    for relative, text in text_files(baked).items():
        source = sources.get(relative)
        if source is None:  # a file of no known source: reported by the test above
            continue
        foreign_braces = not source.rendered or RAW_BLOCK.search(source.path.read_text())
        pattern = TEMPLATE_VARIABLE if foreign_braces else RESIDUE
        found += [f"{relative}: {match.group()!r}" for match in pattern.finditer(text)]
    assert found == []


def test_vendored_module_files_are_verbatim_copies(baked: Bake):
    sources = file_sources(baked.answers)
    for relative in sorted(baked.files()):
        source = sources.get(relative)
        if source is not None and source.vendored:
            assert (baked.path / relative).read_bytes() == source.path.read_bytes(), relative


def test_structured_files_parse(baked: Bake):
    parsers = {
        ".json": json.loads,
        ".toml": tomllib.loads,
        ".yaml": lambda text: list(yaml.load_all(text, Loader=_AnyTagLoader)),
        ".yml": lambda text: list(yaml.load_all(text, Loader=_AnyTagLoader)),
    }
    for relative, text in text_files(baked).items():
        parse = parsers.get(Path(relative).suffix)
        if parse is None:
            continue
        try:
            parse(text)
        except (ValueError, yaml.YAMLError) as error:  # JSON and TOML errors are ValueErrors
            pytest.fail(f"{relative} does not parse: {error}")


def test_ruff_lint_passes_with_the_projects_config(baked: Bake):
    run([tool("ruff"), "check", "--no-cache", "."], cwd=baked.path)


def test_ruff_format_passes_with_the_projects_config(baked: Bake):
    run([tool("ruff"), "format", "--check", "--no-cache", "."], cwd=baked.path)


def test_is_a_git_repository_with_one_commit_and_a_clean_tree(baked: Bake):
    commits = run(["git", "rev-list", "--count", "HEAD"], cwd=baked.path).stdout.strip()
    assert commits == "1"
    status = run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=baked.path)
    assert status.stdout == ""


def test_answers_are_recorded_for_replay(baked: Bake):
    recorded = json.loads(baked.read(ANSWERS_FILE))
    assert recorded == public_answers(baked.answers)
    assert [key for key in recorded if key.startswith("_")] == []
    absolute = {k: v for k, v in recorded.items() if isinstance(v, str) and os.path.isabs(v)}
    assert absolute == {}
    assert str(baked.path.parent) not in json.dumps(recorded)
    assert str(TEMPLATE_ROOT) not in json.dumps(recorded)


# --- Each option has a visible effect --------------------------------------------------------


def test_default_model_is_the_model_the_pipeline_promotes(baked: Bake):
    params = yaml.safe_load(baked.read("params.yaml"))
    model = baked.config["default_model"]
    assert params["model"]["name"] == model
    assert model in params["model"]["candidates"]
    # The popularity model is its own baseline, so only it gets a lift gate of 1.0.
    lift = params["gate"]["min_lift_over_popularity"]
    assert lift == (1.0 if model == "popularity" else 1.25)


def test_python_version_drives_tooling(baked: Bake):
    version = baked.config["python_version"]
    assert baked.read(".python-version").strip() == version
    pyproject = tomllib.loads(baked.read("pyproject.toml"))
    assert pyproject["tool"]["ruff"]["target-version"] == "py" + version.replace(".", "")


def test_license_file_matches_the_license_answer(baked: Bake):
    license_path = baked.path / LICENSE_FILE
    answer = baked.config["license"]
    if answer == "Proprietary":
        assert not license_path.exists(), "a proprietary project must not ship an open licence"
    else:
        assert license_path.is_file(), f"license={answer} needs a {LICENSE_FILE} file"
        text = license_path.read_text()
        assert LICENSE_MARKERS[answer] in text
        if answer == "MIT":
            assert baked.answers["author_name"] in text


def test_project_name_drives_every_derived_name(tmp_path: Path, cookiecutter_config: Path):
    """A non-default name reaches every file: nothing hard-codes the default project."""
    project = bake(tmp_path, cookiecutter_config, project_name="Acme Product Recs")
    assert project.name == "acme-product-recs"
    answers = json.loads((project / ANSWERS_FILE).read_text())
    assert (answers["project"], answers["package"]) == ("acme-product-recs", "acme_product_recs")
    default = answers_for({})
    leftovers = []
    for path in project.rglob("*"):
        if ".git" in path.relative_to(project).parts[:1] or not path.is_file():
            continue
        relative = path.relative_to(project).as_posix()
        if default["project"] in relative or default["package"] in relative:
            leftovers.append(relative)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if default["project"] in text or default["package"] in text:
            leftovers.append(f"{relative} (content)")
    assert leftovers == []


# --- The vendored CI definition --------------------------------------------------------------


def ci_definition(baked: Bake) -> tuple[str, Path]:
    provider = baked.config["ci_provider"]
    if provider not in CI_FILES:
        pytest.skip(f"ci_provider={provider} vendors no CI definition")
    return provider, baked.path / CI_FILES[provider]


def ci_commands(provider: str, document: dict) -> list[str]:
    """The shell commands of the steps that do the work (GitLab's before_script installs make)."""
    if provider == "github":
        return [
            step["run"]
            for job in document["jobs"].values()
            for step in job["steps"]
            if "run" in step
        ]
    return [
        line
        for name, job in document.items()
        if isinstance(job, dict) and "script" in job and not name.startswith(".")
        for line in job["script"]
    ]


def make_targets(command: str) -> list[str]:
    """Targets of every `make` call in a shell command (options and VAR=value aside)."""
    targets = []
    for segment in re.split(r"&&|\|\||;|\n", command):
        words = shlex.split(segment)
        if words[:1] == ["make"]:
            targets += [w for w in words[1:] if not w.startswith("-") and "=" not in w]
    return targets


def test_ci_definition_validates_against_its_schema(baked: Bake):
    provider, path = ci_definition(baked)
    run(
        [tool("check-jsonschema"), "--builtin-schema", CI_SCHEMAS[provider], str(path)],
        cwd=baked.path,
    )


def test_every_ci_step_is_a_make_target_of_the_project(baked: Bake):
    provider, path = ci_definition(baked)
    commands = ci_commands(provider, yaml.safe_load(path.read_text()))
    assert commands, "the CI definition runs nothing"
    assert [c for c in commands if not c.strip().startswith("make ")] == []
    targets = sorted({t for command in commands for t in make_targets(command)})
    assert {"setup", "lint", "test", "data", "pipeline"} <= set(targets)
    for target in targets:
        result = run(["make", "-n", target], cwd=baked.path, check=False)
        assert result.returncode == 0, f"`make {target}` is not a target: {result.stderr}"
