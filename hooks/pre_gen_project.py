"""Validate the answers before anything is written.

A bad answer prints one line naming the field and the rule, and exits 1; cookiecutter then
removes the half-made project folder, so nothing is left behind.
"""

import json
import keyword
import re
import sys

SLUG = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
PACKAGE = re.compile(r"^[a-z_][a-z0-9_]*$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CHOICES = {
    "python_version": ("3.11", "3.12", "3.13"),
    "ci_provider": ("github", "gitlab", "none"),
    "deploy_target": ("kubernetes+ansible", "kubernetes", "ansible", "none"),
    "default_model": ("ease", "itemknn", "popularity"),
    "license": ("MIT", "Apache-2.0", "Proprietary"),
}


def validate_answers(answers: dict[str, str]) -> list[str]:
    """Return one message per broken rule, empty when the answers can be generated."""
    errors = []
    if not answers["project_name"].strip():
        errors.append("project_name: must not be empty")
    project = answers["project"]
    if not SLUG.match(project) or len(project) > 50:
        errors.append(
            f"project: {project!r} must be lowercase letters, digits and single hyphens, "
            "start with a letter and be at most 50 characters"
        )
    package = answers["package"]
    if not (PACKAGE.match(package) and package.isidentifier()):
        errors.append(
            f"package: {package!r} must be a lowercase Python identifier "
            "(letters, digits, underscores; not starting with a digit)"
        )
    elif keyword.iskeyword(package) or keyword.issoftkeyword(package):
        errors.append(f"package: {package!r} is a Python keyword")
    if not EMAIL.match(answers["author_email"]):
        errors.append(f"author_email: {answers['author_email']!r} is not an e-mail address")
    for field, allowed in CHOICES.items():
        if answers[field] not in allowed:
            errors.append(f"{field}: {answers[field]!r} is not one of {', '.join(allowed)}")
    return errors


def main() -> None:
    answers = json.loads(r"""{{ cookiecutter | jsonify }}""")
    errors = validate_answers(answers)
    for error in errors:
        print(f"ERROR: {error}", file=sys.stderr)
    if errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
