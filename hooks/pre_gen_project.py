"""Refuse answers that cookiecutter accepts but the generated project cannot work with.

Cookiecutter itself refuses a value outside a choice list, except from a replay file. This hook
checks what it cannot: the slug, the package name, the e-mail, a choice replayed from a file,
names already taken by the project's own dependencies, and combinations of options that are not
supported. A refusal is one line (the field, the value and the rule) and exit status 1;
cookiecutter then removes the half-made project folder.
"""

import json
import keyword
import re
import sys
import tomllib
from pathlib import Path

# The hook runs under the interpreter that runs cookiecutter, so its Jinja environment is here.
from cookiecutter.environment import StrictEnvironment

SLUG = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
SLUG_MAX_LENGTH = 50
PACKAGE = re.compile(r"^[a-z_][a-z0-9_]*$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# A requirement's name, as PEP 508 spells it (what follows is the version or the markers).
REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")
# The distribution names of the workspace's packages are `<project>-<suffix>`: the suffixes the
# payload's pyproject.toml files declare, and these, kept free for packages the workspace grows.
RESERVED_SUFFIXES = ("core", "api", "training", "monitoring", "registry", "batch")
# The slug the payload is rendered with to tell the project's own names from its dependencies.
PROBE_PROJECT = "cookiecutter-hook-probe"
# Answers that cannot be generated together: (the answers that must all match, why). None today;
# an entry reads e.g. ({"ci_provider": "none", "deploy_target": "kubernetes"}, "needs an image").
UNSUPPORTED_COMBINATIONS: tuple[tuple[dict[str, str], str], ...] = ()


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(pyproject: dict) -> set[str]:
    """Names of every requirement a rendered pyproject.toml lists, in any table uv reads."""
    project, uv = pyproject.get("project", {}), pyproject.get("tool", {}).get("uv", {})
    lists = [
        project.get("dependencies", []),
        *project.get("optional-dependencies", {}).values(),
        *pyproject.get("dependency-groups", {}).values(),
        pyproject.get("build-system", {}).get("requires", []),
        *(uv.get(key, []) for key in ("constraint-dependencies", "override-dependencies")),
        uv.get("dev-dependencies", []),
    ]
    names = set()
    for requirement in (item for items in lists for item in items if isinstance(item, str)):
        match = REQUIREMENT_NAME.match(requirement)
        if match:
            names.add(normalize(match.group(1)))
    return names


def read_payload_pyprojects(payload: Path, answers: dict) -> list[dict]:
    """Every pyproject.toml of the payload, rendered as cookiecutter renders it, with the probe
    slug in place of the project's (so its own names are told apart from its dependencies)."""
    probe = {**answers, "project": PROBE_PROJECT, "package": PROBE_PROJECT.replace("-", "_")}
    environment = StrictEnvironment(
        context={"cookiecutter": probe},
        keep_trailing_newline=True,
        **probe.get("_jinja2_env_vars", {}),
    )
    return [
        tomllib.loads(environment.from_string(path.read_text()).render(cookiecutter=probe))
        for path in sorted(payload.rglob("pyproject.toml"))
    ]


def own_distribution_names(project: str, pyprojects: list[dict]) -> set[str]:
    """The distribution names the generated workspace takes for the slug `project`."""
    declared = {normalize(p.get("project", {}).get("name", "")) for p in pyprojects}
    names = {project} | {f"{project}-{suffix}" for suffix in RESERVED_SUFFIXES}
    names |= {n.replace(PROBE_PROJECT, project, 1) for n in declared if n.startswith(PROBE_PROJECT)}
    return {normalize(name) for name in names}


def dependency_names(pyprojects: list[dict]) -> set[str]:
    """Every third-party name the workspace depends on or pins (its own packages aside)."""
    own = {normalize(p.get("project", {}).get("name", "")) for p in pyprojects}
    return set().union(*map(requirement_names, pyprojects)) - own


def refuse_slug(answers: dict) -> str | None:
    project = answers["project"]
    if not SLUG.match(project) or len(project) > SLUG_MAX_LENGTH:
        return (
            f"project: {project!r} must be lowercase letters, digits and single hyphens, "
            f"start with a letter and be at most {SLUG_MAX_LENGTH} characters"
        )
    return None


def refuse_package(answers: dict) -> str | None:
    package = answers["package"]
    if not (PACKAGE.match(package) and package.isidentifier()):
        return (
            f"package: {package!r} must be a lowercase Python identifier "
            "(letters, digits, underscores; not starting with a digit)"
        )
    if keyword.iskeyword(package):
        return f"package: {package!r} is a Python keyword"
    if keyword.issoftkeyword(package):
        return f"package: {package!r} is a Python soft keyword"
    return None


def refuse_email(answers: dict) -> str | None:
    email = answers["author_email"]
    if not EMAIL.match(email):
        return f"author_email: {email!r} is not an e-mail address"
    return None


def refuse_dependency_names(answers: dict, pyprojects: list[dict]) -> str | None:
    """A slug whose distribution names are a dependency's cannot be locked (`uv lock` fails)."""
    project = answers["project"]
    dependencies = dependency_names(pyprojects)
    taken = sorted(own_distribution_names(project, pyprojects) & dependencies)
    if normalize(project) in taken:
        return f"project: {project!r} is taken: the project depends on a package of that name"
    if taken:
        return (
            f"project: {project!r} is taken: the project's package {taken[0]} would have the "
            "name of one of its dependencies"
        )
    return None


def refuse_unknown_choice(answers: dict, choices: dict[str, list[str]]) -> str | None:
    """Cookiecutter refuses an unknown choice on the command line (the user config's it ignores;
    a prompt offers none), but takes a replay file's answers (`--replay-file`) as they are."""
    for field, allowed in choices.items():
        if answers.get(field) not in allowed:
            return f"{field}: {answers.get(field)!r} is not one of {', '.join(allowed)}"
    return None


def refuse_combination(answers: dict) -> str | None:
    for combination, reason in UNSUPPORTED_COMBINATIONS:
        if all(answers.get(field) == value for field, value in combination.items()):
            chosen = ", ".join(f"{field}={value!r}" for field, value in combination.items())
            return f"{chosen}: not supported together ({reason})"
    return None


def refusal(answers: dict, choices: dict[str, list[str]], pyprojects: list[dict]) -> str | None:
    """The first rule the answers break, as `field: value and rule`; None if they can be made."""
    if not answers["project_name"].strip():
        return "project_name: must not be empty"
    for refuse in (refuse_slug, refuse_package, refuse_email):
        message = refuse(answers)
        if message:
            return message
    return (
        refuse_unknown_choice(answers, choices)
        or refuse_dependency_names(answers, pyprojects)
        or refuse_combination(answers)
    )


def find_template_root(repo_dir: str, extension_root: str) -> Path:
    """The template's folder, from `_repo_dir` or the Jinja extension's own path
    (`_repo_dir` is relative for `cookiecutter .` and missing under cruft)."""
    for candidate in (repo_dir, extension_root):
        path = Path(candidate) if candidate else None
        if path and path.is_absolute() and (path / "cookiecutter.json").is_file():
            return path
    sys.exit(f"ERROR: cannot find the template (tried {repo_dir!r} and {extension_root!r})")


def find_payload(template_root: Path) -> Path:
    """The payload folder: as cookiecutter finds it, the one named after a cookiecutter variable
    (the name is not spelled out here, since cookiecutter renders this file with Jinja)."""
    for path in sorted(template_root.iterdir()):
        if path.is_dir() and path.name.startswith("{") and "cookiecutter" in path.name:
            return path
    sys.exit(f"ERROR: cannot find the payload folder in {str(template_root)!r}")


def read_choices(template_root: Path) -> dict[str, list[str]]:
    """The choice lists of the template's cookiecutter.json (its private `_` keys aside)."""
    config = json.loads((template_root / "cookiecutter.json").read_text())
    return {
        key: value
        for key, value in config.items()
        if isinstance(value, list) and not key.startswith("_")
    }


def main() -> None:
    answers = json.loads(r"""{{ cookiecutter | jsonify }}""")
    root = find_template_root(answers.get("_repo_dir", ""), "{{ template_root }}")
    # The payload may use the template's Jinja extensions (local_extensions.py).
    sys.path.insert(0, str(root))
    pyprojects = read_payload_pyprojects(find_payload(root), answers)
    message = refusal(answers, read_choices(root), pyprojects)
    if message:
        sys.exit(f"ERROR: {message}")


if __name__ == "__main__":
    main()
