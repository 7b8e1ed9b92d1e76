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
    make,
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

CI_FILES = {"github": ".github/workflows", "gitlab": ".gitlab-ci.yml"}
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
# mkdocs.yml names a Python function (`!!python/name:...`): safe loading keeps it as its name.
_AnyTagLoader.add_multi_constructor(
    "tag:yaml.org,2002:python/name:", lambda _loader, suffix, _node: suffix
)


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

# The targets of the pipeline shape that both providers share (ci/README.md): code CI, model CI,
# the schedules, the deploys with their checks, the rollback.
CI_TARGETS = {
    *("setup", "lint", "typecheck", "test-package", "wheels", "docs", "image-api", "image-jobs"),
    *("security", "deps-audit", "data-pull", "pipeline", "model-report", "pr-comment"),
    *("scheduled", "batch-recommend", "image-push", "deploy", "smoke", "loadtest", "drift"),
    "deploy-rollback",
    *("template-check", "template-update"),  # keeping up with the template
}
# Shell lines of a GitHub step that are CI plumbing rather than work, each for a reason: the
# image digests that `make image-push` writes, handed to the deploy jobs as job outputs. (The
# other plumbing, the deploy credentials, is the composite action .github/actions/credentials.)
CI_PLUMBING = {'cat dist/images.env >> "$GITHUB_OUTPUT"'}
# The value a dry run gives a variable whose CI value is the CI's own (`"$API_URL"`,
# `$CI_REGISTRY_IMAGE`): a plausible one.
DRY_RUN_VALUES = {
    "URL": "https://api.example.test",
    "API_IMAGE": "registry.example.test/shop/api@sha256:" + "1" * 64,
    "JOBS_IMAGE": "registry.example.test/shop/jobs@sha256:" + "2" * 64,
    "IMAGE_REGISTRY": "registry.example.test/shop",
    "BASE": "origin/main",
    "REASON": "a dry run's reason",
    "TO": "3",
    "ENV": "staging",
    "JOB": "retrain",
    "PACKAGE": "core",
    "WITH": "kubernetes",
}
# Variables that name a choice: the dry run swaps in another valid value (a sentinel would be
# refused before the variable is used).
DRY_RUN_CHOICES = {
    "ENV": ("dev", "staging", "prod"),
    "JOB": ("retrain", "monitor"),
    "PACKAGE": ("api", "core", "training"),
    "WITH": ("kubernetes", "ansible"),
}


def ci_definition(baked: Bake) -> tuple[str, list[Path]]:
    """The provider and its CI files (GitHub: every workflow; GitLab: the one pipeline file)."""
    provider = baked.config["ci_provider"]
    if provider not in CI_FILES:
        pytest.skip(f"ci_provider={provider} vendors no CI definition")
    place = baked.path / CI_FILES[provider]
    return provider, sorted(place.glob("*.yml")) if place.is_dir() else [place]


def ci_commands(provider: str, document: dict) -> list[str]:
    """The shell commands of the steps that do the work (GitLab's before_script installs make;
    a GitHub job that calls another workflow has no steps of its own)."""
    if provider == "github":
        return [
            step["run"]
            for job in document["jobs"].values()
            for step in job.get("steps", [])
            if "run" in step
        ]
    return [
        line
        for name, job in document.items()
        if isinstance(job, dict) and "script" in job and not name.startswith(".")
        for line in job["script"]
    ]


def make_calls(command: str) -> list[tuple[list[str], dict[str, str]]]:
    """Every `make` call in a shell command: its targets and its VAR=value arguments (quotes
    removed, so `URL="$API_URL"` gives `$API_URL`); options aside."""
    calls = []
    for segment in re.split(r"&&|\|\||;|\n", command):
        words = shlex.split(segment)
        if words[:1] == ["make"]:
            arguments = [w for w in words[1:] if not w.startswith("-")]
            variables = dict(w.split("=", 1) for w in arguments if "=" in w)
            calls.append(([w for w in arguments if "=" not in w], variables))
    return calls


def make_targets(command: str) -> list[str]:
    """Targets of every `make` call in a shell command (options and VAR=value aside)."""
    return [target for targets, _ in make_calls(command) for target in targets]


def all_ci_commands(provider: str, paths: list[Path]) -> list[str]:
    return [
        command
        for path in paths
        for command in ci_commands(provider, yaml.load(path.read_text(), Loader=_AnyTagLoader))
    ]


def makefile_targets(project: Path) -> set[str]:
    """The targets the project's Makefile defines, from make's own database (`make -pq`): a
    target whose recipe needs a variable (`make -n deploy` without ENV= stops at an $(error))
    is still a target."""
    database = run(["make", "-pq", "--no-print-directory"], cwd=project, check=False).stdout
    lines = database.splitlines()
    # A file make knows of without a rule for it is printed after a "# Not a target:" line.
    return {
        rule.group(1)
        for previous, line in zip(["", *lines], lines, strict=False)
        if not previous.startswith("# Not a target")
        and (rule := re.match(r"([A-Za-z0-9][\w./%-]*):(?!=)", line))
    }


def exported_variables(project: Path) -> set[str]:
    """Variables the Makefile exports: its commands read them from the environment, so a dry
    run's text need not show them (`make setup UV_PYTHON_DOWNLOADS=automatic`)."""
    text = (project / "Makefile").read_text()
    return set(re.findall(r"^export\s+([A-Z_][A-Z0-9_]*)", text, flags=re.MULTILINE))


def dry_run_value(variable: str, value: str) -> str:
    """The CI's value, or a plausible one when the CI computes it (`$X`, `${{ }}`)."""
    if "$" not in value:
        return value
    if variable not in DRY_RUN_VALUES:
        pytest.fail(f"give {variable} a value in DRY_RUN_VALUES (its CI value is {value!r})")
    return DRY_RUN_VALUES[variable]


def unread_variables(project: Path, targets: list[str], variables: dict[str, str]) -> list[str]:
    """The variables of one `make` call that its targets do not read, and the call's failures.

    A variable is read when changing it changes what `make -n` would run (a sentinel for a
    free value, another valid value for a choice such as ENV=), or when the Makefile exports it.
    `make -n` prints every recipe line with the variables expanded and runs only the lines that
    call $(MAKE), themselves as dry runs, so a variable passed on to a sub-make counts too.
    """
    values = {name: dry_run_value(name, value) for name, value in variables.items()}

    def dry_run(assignments: dict[str, str]):
        arguments = [f"{name}={value}" for name, value in assignments.items()]
        return make(project, "-n", *targets, *arguments, check=False)

    call = f"make {' '.join(targets)} " + " ".join(f"{k}={v}" for k, v in variables.items())
    base = dry_run(values)
    if base.returncode != 0:
        return [f"`{call}`: the dry run fails:\n{base.stdout[-1500:]}{base.stderr[-1500:]}"]
    exported, unread = exported_variables(project), []
    for name, value in values.items():
        choices = DRY_RUN_CHOICES.get(name)
        other = next(c for c in choices if c != value) if choices else f"ci-sentinel-{name}"
        changed = dry_run({**values, name: other})
        if name not in exported and changed.stdout + changed.stderr == base.stdout + base.stderr:
            unread.append(f"`{call}`: {' '.join(targets)} does not read {name}")
    return unread


def test_without_ci_nothing_refers_to_ci_files(baked: Bake):
    if baked.config["ci_provider"] != "none":
        pytest.skip("only ci_provider=none must not mention CI files")
    mentions = re.compile(r"\.gitlab-ci\.yml|\.github/|^\.github$|delivery/CI\.md", re.M)
    found = [path for path, text in text_files(baked).items() if mentions.search(text)]
    assert found == []


def test_ci_definition_validates_against_its_schema(baked: Bake):
    provider, paths = ci_definition(baked)
    assert paths, f"no CI file at {CI_FILES[provider]}"
    run(
        [tool("check-jsonschema"), "--builtin-schema", CI_SCHEMAS[provider], *map(str, paths)],
        cwd=baked.path,
    )


def test_every_ci_step_is_a_make_target_of_the_project(baked: Bake):
    provider, paths = ci_definition(baked)
    commands = all_ci_commands(provider, paths)
    assert commands, "the CI definition runs nothing"
    work = [c for c in commands if c.strip() not in CI_PLUMBING]
    assert [c for c in work if not c.strip().startswith("make ")] == []
    targets = sorted({t for command in work for t in make_targets(command)})
    assert sorted(CI_TARGETS - set(targets)) == [], "the pipeline shape misses these targets"
    missing = set(targets) - makefile_targets(baked.path)
    assert sorted(missing) == [], "not targets of the project's Makefile"


def test_every_variable_ci_passes_to_make_is_read_by_its_target(baked: Bake):
    """`make deploy ENV=dev API_IMAGE=...`: deploy reads ENV and API_IMAGE (a dry run shows)."""
    provider, paths = ci_definition(baked)
    if baked.config["deploy_target"] != "kubernetes+ansible":
        pytest.skip("checked on the bake with both deploy modules, where every target runs")
    calls = {
        (tuple(targets), tuple(sorted(variables.items())))
        for command in all_ci_commands(provider, paths)
        for targets, variables in make_calls(command)
        if variables
    }
    assert calls, "no make call passes a variable"
    unread = [
        problem
        for targets, variables in sorted(calls)
        for problem in unread_variables(baked.path, list(targets), dict(variables))
    ]
    assert unread == []
