"""The reference pages, each generated from the one file it documents, so nothing is written twice:

- `make.md`: the Makefile's targets (their `## ` help, the VAR= arguments their recipe reads)
- `commands.md`: every console script and script the Makefile runs, from its argparse parser,
  and the exit codes from `core.shared.ExitCode`
- `params.md`: every params.yaml key, its default and the comment above or beside it
- `pipeline.md`: the stages of dvc.yaml
- `api.md`: the endpoints of the API's openapi.yaml, each with a curl example
- `settings.md`: the shared settings (`core.shared.SETTINGS`) and the API's own (its config.py)
- `metrics.md`: the API's Prometheus metrics and the alert rules of monitoring/prometheus/alerts.yml

Run by the project's Python (`.venv/bin/python docs/hooks/reference_pages.py --out DIR`, or
`--json`): reading the parsers imports the packages. As an mkdocs hook (`make docs`, which runs
mkdocs from a tool environment without the packages) it runs itself that way and adds the pages
under `reference/`. A source that cannot be documented (a params key without a comment, an
endpoint without a summary...) is an error naming the file and the place.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import tokenize
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "{{ cookiecutter.package }}"
FOLDER = "reference"  # where the pages go in the site


class SourceError(Exception):
    """A source file the pages are generated from is missing something they need."""


# --- Markdown helpers ---------------------------------------------------------------------


def cell(value: Any) -> str:
    """Text for a table cell: one line, pipes escaped."""
    text = " ".join(str(value).split())
    return text.replace("|", "\\|")


def code(value: Any) -> str:
    text = " ".join(str(value).split())
    return f"`{text}`" if text else ""


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return [*lines, ""]


def page(title: str, intro: str, body: list[str]) -> str:
    note = f"Generated from {intro} by `docs/hooks/reference_pages.py`: edit the source, not this."
    return "\n".join([f"# {title}", "", note, "", *body]).rstrip() + "\n"


# --- make.md: the Makefile ------------------------------------------------------------------

TARGET = re.compile(r"^([a-z0-9-]+):(?!=)([^#]*?)(?:##\s*(.*))?$")
ASSIGNMENT = re.compile(r"^(?:export\s+)?([A-Z][A-Z0-9_]*)\s*(\?=|:=|=)\s*(.*)$")
CALLED = re.compile(r"\$\(call (?:arg|text|cli),([A-Z][A-Z0-9_]*)")
MAKE_BUILTINS = {"MAKEFILE_LIST", "MAKE", "MAKEFLAGS", "CURDIR"}
REFERENCE = re.compile(
    r"\$\(([A-Z][A-Z0-9_]*)\)|\$\$([A-Z][A-Z0-9_]*)|\$\((?:if|value) \$?\(?([A-Z][A-Z0-9_]*)"
)


def makefile(root: Path) -> dict[str, Any]:
    """Targets (in order, with help, recipe and arguments) and the variables of the Makefile."""
    lines = (root / "Makefile").read_text().splitlines()
    variables: dict[str, dict[str, Any]] = {}
    targets: list[dict[str, Any]] = []
    comment: list[str] = []
    first_rule = None
    current = None
    previous = None  # the `?=` variable on the line before, whose comment a group shares
    for number, line in enumerate(lines, 1):
        if line.startswith("\t") and current is not None:
            current["recipe"].append(line.strip())
            continue
        current = None
        if line.startswith("#"):
            comment.append(line.lstrip("# ").rstrip())
            continue
        assigned = ASSIGNMENT.match(line)
        group, previous = previous, None
        target = TARGET.match(line)
        if assigned:
            name, kind, value = assigned.groups()
            origin = variables[group]["origin"] if group and kind == "?=" and not comment else name
            variables[name] = {
                "kind": kind,
                "value": value.strip(),
                "comment": " ".join(comment) or (f"see `{origin}`" if origin != name else ""),
                "origin": origin,
                "global": first_rule is None,
            }
            previous = name if kind == "?=" else None
        elif target and not line.startswith("."):
            first_rule = first_rule or number
            name, prerequisites, help_text = target.groups()
            if help_text is not None and not help_text.strip():
                raise SourceError(f"Makefile:{number}: target {name} has an empty `## ` help")
            current = {
                "name": name,
                "help": (help_text or "").strip(),
                "prerequisites": prerequisites.split("|")[0].split(),
                "recipe": [],
                "line": number,
            }
            targets.append(current)
        comment = []
    for target in targets:
        target["arguments"] = _arguments(" ".join(target["recipe"]), variables)
    return {"targets": [t for t in targets if t["help"]], "variables": variables}


def _arguments(text: str, variables: dict[str, dict[str, Any]], seen: set | None = None) -> list:
    """The variables a recipe takes from the command line or the environment: those it passes
    on with `$(call arg|text|cli,NAME)`, those the Makefile defaults with `?=` (but the ones set
    before the first rule, which every target shares) and those it reads without defining them;
    the Makefile's own `:=`/`=` variables are followed into their definitions."""
    seen = set() if seen is None else seen
    found: list[str] = []
    names = CALLED.findall(text) + [
        next(group for group in match if group) for match in REFERENCE.findall(text)
    ]
    called = CALLED.findall(text)
    for name in names:
        if name in called or (name not in variables and name not in MAKE_BUILTINS):
            found.append(name)
        if name in seen or name in MAKE_BUILTINS:
            continue
        seen.add(name)
        known = variables.get(name)
        if known is None or name in called:
            continue
        elif known["kind"] == "?=":
            if not known["global"]:
                found.append(name)
        else:
            found += _arguments(known["value"], variables, seen)
    return list(dict.fromkeys(found))


def make_page(root: Path) -> str:
    parsed = makefile(root)
    rows = [
        [
            code(f"make {t['name']}"),
            t["help"],
            ", ".join(code(f"{name}=") for name in t["arguments"]),
        ]
        for t in parsed["targets"]
    ]
    shared = [
        [code(name), code(v["value"]), v["comment"]]
        for name, v in parsed["variables"].items()
        if v["kind"] == "?="
    ]
    body = [
        "`make help` lists the same targets. A target's arguments are make variables given on "
        "the command line (`make recommend USER=u00042`); each target is one command, listed "
        "in [Commands](commands.md).",
        "",
        "## Targets",
        "",
        *table(["Target", "What it does", "Arguments"], rows),
        "## Variables with a default",
        "",
        "Set on the command line or in the environment; those at the top of the Makefile apply "
        "to every target.",
        "",
        *table(["Variable", "Default", "Meaning"], shared),
    ]
    return page("Make targets", "the Makefile's `## ` comments", body)


# --- commands.md: the parsers ---------------------------------------------------------------


def console_scripts(root: Path) -> list[tuple[str, str]]:
    """(command, module) of every `[project.scripts]` entry of the workspace members."""
    import tomllib

    found = []
    members = [*sorted(root.glob("packages/*/pyproject.toml")), root / "monitoring/pyproject.toml"]
    for pyproject in members:
        if pyproject.is_file():
            scripts = tomllib.loads(pyproject.read_text()).get("project", {}).get("scripts", {})
            found += [(name, target.split(":")[0]) for name, target in scripts.items()]
    return found


def makefile_scripts(root: Path) -> list[str]:
    """The Python files the Makefile runs (`python path.py`, `$(PYTHON) path.py`), in order."""
    text = (root / "Makefile").read_text()
    paths = re.findall(r"(?:python|\$\(PYTHON\)) ([\w./-]+\.py)", text)
    return list(dict.fromkeys(path for path in paths if (root / path).is_file()))


def load_script(root: Path, path: str) -> Any:
    """Import a script by its path (its folder first on sys.path, as when it runs)."""
    folder = str((root / path).parent)
    sys.path.insert(0, folder)
    try:
        spec = importlib.util.spec_from_file_location(f"_reference_{Path(path).stem}", root / path)
        module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        sys.modules[spec.name] = module  # type: ignore[union-attr]  # dataclasses look it up
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    finally:
        sys.path.remove(folder)
    return module


def build(module: Any, where: str) -> argparse.ArgumentParser:
    for name in ("build_parser", "parser"):
        factory = getattr(module, name, None)
        if callable(factory):
            return factory()
    raise SourceError(f"{where}: no build_parser() (or parser()) that returns its argparse parser")


def subcommands(
    parser: argparse.ArgumentParser,
) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """(name, help, parser) of each subcommand; the parser itself when it has none."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name, ""), sub
            return
    yield "", "", parser


def flag_rows(parser: argparse.ArgumentParser) -> list[list[str]]:
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        name = ", ".join(action.option_strings) or (action.metavar or action.dest)
        if action.option_strings and action.nargs != 0:
            name += f" {action.metavar or action.dest.upper()}"
        help_text = action.help or ""
        if "%(" in help_text:
            help_text = help_text % {**vars(action), "prog": parser.prog}
        default = action.default
        # `is`, not `in`: a default of 0 equals False and is shown.
        unset = default is None or default is False or default in (argparse.SUPPRESS, "")
        shown = "" if unset or action.nargs == 0 else str(default)
        choices = ", ".join(str(choice) for choice in action.choices or ())
        required = "yes" if action.required else ""
        rows.append(
            [code(name), help_text, code(shown), code(choices) if choices else "", required]
        )
    return rows


def command_section(title: str, parser: argparse.ArgumentParser) -> list[str]:
    lines = [f"## {title}", ""]
    if parser.description:
        lines += ["```text", parser.description.strip(), "```", ""]
    if any(isinstance(a, argparse._SubParsersAction) for a in parser._actions):
        rows = flag_rows(parser)
        if rows:
            lines += [f"Flags before the command (`{title} [flags] COMMAND`):", ""]
            lines += table(["Flag", "Help", "Default", "Choices", "Required"], rows)
    for name, summary, sub in subcommands(parser):
        if name:
            lines += [f"### {title} {name}", "", summary or "", ""]
        rows = flag_rows(sub)
        if rows:
            lines += table(["Flag", "Help", "Default", "Choices", "Required"], rows)
        if sub.epilog:
            lines += ["```text", sub.epilog.strip(), "```", ""]
    return lines


def exit_codes(root: Path) -> list[list[str]]:
    """`ExitCode`'s members with the comment beside each, read from core/shared.py."""
    from importlib import import_module

    shared = import_module(f"{PACKAGE}_core.shared")
    comments = source_comments(Path(shared.__file__).read_text(), "ExitCode")
    rows = []
    for member in shared.ExitCode:
        meaning = comments.get(member.name)
        if not meaning:
            raise SourceError(f"core shared.py: ExitCode.{member.name} has no comment beside it")
        rows.append([code(int(member)), code(member.name), meaning])
    return rows


def source_comments(source: str, class_name: str) -> dict[str, str]:
    """Per assignment in the body of `class_name`: the comment beside it, else the comment
    lines right above it."""
    tree = ast.parse(source)
    body = next(
        node.body
        for node in tree.body
        if isinstance(node, ast.ClassDef) and node.name == class_name
    )
    beside: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            beside[token.start[0]] = token.string.lstrip("# ").strip()
    lines = source.splitlines()
    found = {}
    for node in body:
        target = getattr(node, "target", None) or (getattr(node, "targets", None) or [None])[0]
        if not isinstance(target, ast.Name):
            continue
        text = beside.get(node.end_lineno or node.lineno)
        if text and not lines[node.lineno - 1].lstrip().startswith("#"):
            found[target.id] = text
            continue
        above, number = [], node.lineno - 1
        while number >= 1 and lines[number - 1].lstrip().startswith("#"):
            above.insert(0, lines[number - 1].lstrip().lstrip("#").strip())
            number -= 1
        if above:
            found[target.id] = " ".join(above)
    return found


def commands_page(root: Path) -> str:
    body = [
        "Every console script of the workspace and every script the Makefile runs, with its "
        "subcommands and flags, read from its argparse parser (`<command> --help` prints the "
        "same). The [Make targets](make.md) run them.",
        "",
    ]
    for command, module in console_scripts(root):
        body += command_section(command, build(importlib.import_module(module), module))
    for path in makefile_scripts(root):
        body += command_section(f"python {path}", build(load_script(root, path), path))
    body += [
        "## Exit codes",
        "",
        "One convention for every command of every package (`ExitCode` in the core package's "
        "`shared.py`). `make` itself exits 2 whenever a command fails and prints the command's "
        "own code (`make: *** [Makefile:NN: drift] Error 3`).",
        "",
        *table(["Code", "Name", "Meaning"], exit_codes(root)),
    ]
    return page("Commands and exit codes", "the commands' argparse parsers", body)


# --- params.md: params.yaml ---------------------------------------------------------------


def params_keys(path: Path) -> list[dict[str, Any]]:
    """Every key of params.yaml (dotted, in file order) with its default and its comment: the
    comment lines right above it or the comment beside it. A key without one takes its
    section's; a top-level key must have its own."""
    import yaml

    text = path.read_text()
    lines = text.splitlines()
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as error:
        raise SourceError(f"{path.name} is not valid YAML: {error}") from error
    if not isinstance(root, yaml.MappingNode):
        raise SourceError(f"{path.name} must be a mapping")
    keys: list[dict[str, Any]] = []

    def comment_for(key_node: Any, value_node: Any) -> str:
        number = key_node.start_mark.line  # 0-based
        rest = (
            lines[number][value_node.end_mark.column :]
            if value_node.end_mark.line == number
            else ""
        )
        if isinstance(value_node, yaml.ScalarNode | yaml.SequenceNode) and "#" in rest:
            return rest.split("#", 1)[1].strip()
        above = []
        while number >= 1 and lines[number - 1].lstrip().startswith("#"):
            above.insert(0, lines[number - 1].lstrip().lstrip("#").strip())
            number -= 1
        return " ".join(above)

    def walk(node: Any, prefix: str, inherited: str) -> None:
        group = None  # the sibling right above whose comment (above it) goes on to this key
        for key_node, value_node in node.value:
            dotted = f"{prefix}{key_node.value}"
            own = comment_for(key_node, value_node)
            line = key_node.start_mark.line
            leaf = not isinstance(value_node, yaml.MappingNode)
            if not own and leaf and group and group[1] == line - 1:
                own = f"see `{group[0]}`"
            elif own and not (lines[line - 1].lstrip().startswith("#") if line else False):
                group = None  # a comment beside a value is that key's alone
            if own and leaf:
                group = (group[0] if group and own.startswith("see `") else dotted, line)
            else:
                group = None
            if not prefix and not own:
                raise SourceError(
                    f"{path.name}:{key_node.start_mark.line + 1}: key {dotted} has no comment "
                    "(a line starting with # right above it, or beside its value)"
                )
            value = yaml.safe_load(yaml.serialize(value_node))
            mapping = isinstance(value_node, yaml.MappingNode) and value_node.value
            keys.append(
                {
                    "key": dotted,
                    "section": mapping,
                    "default": None if mapping else value,
                    "comment": own,
                    "inherited": "" if own else inherited,
                }
            )
            if mapping:
                walk(value_node, dotted + ".", dotted if own else inherited)

    walk(root, "", "")
    return keys


def params_page(root: Path) -> str:
    keys = params_keys(root / "params.yaml")
    body = [
        "Every knob of the pipeline. DVC tracks them: change one and `dvc repro` reruns the "
        "stages that read it ([Pipeline](pipeline.md)). A key without a comment of its own is "
        'described by its section\'s ("see").',
        "",
    ]
    for top in [key for key in keys if "." not in key["key"]]:
        name = top["key"]
        body += [f"## `{name}`", "", top["comment"], ""]
        inside = [key for key in keys if key["key"].startswith(name + ".") and not key["section"]]
        if not top["section"]:
            body += [f"Default: `{json.dumps(top['default'])}`", ""]
        elif inside:
            rows = [
                [
                    code(key["key"]),
                    code(json.dumps(key["default"])),
                    key["comment"] or f"see `{key['inherited']}`",
                ]
                for key in inside
            ]
            sections = [k for k in keys if k["key"].startswith(name + ".") and k["section"]]
            body += table(["Key", "Default", "Meaning"], rows)
            for section in sections:
                if section["comment"]:
                    body += [f"`{section['key']}`: {section['comment']}", ""]
    return page("params.yaml", "params.yaml's own comments", body)


# --- pipeline.md: dvc.yaml ------------------------------------------------------------------


def _entries(items: list[Any] | None) -> str:
    names = []
    for item in items or []:
        if isinstance(item, dict):
            for name, options in item.items():
                flags = [f"{k}: {str(v).lower()}" for k, v in (options or {}).items()]
                names.append(code(name) + (f" ({', '.join(flags)})" if flags else ""))
        else:
            names.append(code(item))
    return ", ".join(names)


def pipeline_page(root: Path) -> str:
    import yaml

    stages = (yaml.safe_load((root / "dvc.yaml").read_text()) or {}).get("stages") or {}
    if not stages:
        raise SourceError("dvc.yaml has no stages")
    rows = []
    for name, stage in stages.items():
        if "cmd" not in stage:
            raise SourceError(f"dvc.yaml: stage {name} has no cmd")
        outputs = [_entries(stage.get(kind)) for kind in ("outs", "metrics", "plots")]
        rows.append(
            [
                code(name),
                code(stage["cmd"]),
                _entries(stage.get("deps")),
                _entries(stage.get("params")),
                "; ".join(o for o in outputs if o),
            ]
        )
    body = [
        "`make pipeline` runs `dvc repro`: each stage below runs when a dependency or a "
        "parameter it reads changed ([params.yaml](params.md)); every stage is a command you "
        "can run alone ([Commands](commands.md)). The jobs that run on a promoted model "
        "(`make batch-recommend`, `make drift`, the `bench-*` benchmarks) are "
        "[Make targets](make.md) outside dvc.yaml.",
        "",
        *table(["Stage", "Command", "Reads", "Parameters", "Writes"], rows),
    ]
    return page("Pipeline stages", "dvc.yaml", body)


# --- api.md: openapi.yaml ------------------------------------------------------------------


def openapi_path(root: Path) -> Path:
    return root / "packages/api/src" / f"{PACKAGE}_api" / "openapi.yaml"


def resolve(spec: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = spec
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def schema_fields(spec: dict[str, Any], schema: Any) -> list[list[str]]:
    """(field, type, required, description) of a request body's schema (each `oneOf` shape)."""
    schema = resolve(spec, schema)
    rows: list[list[str]] = []
    for option in schema.get("oneOf", [schema]):
        shape = option.get("$ref", "").rsplit("/", 1)[-1]
        option = resolve(spec, option)
        required = set(option.get("required", []))
        for name, prop in option.get("properties", {}).items():
            described = resolve(spec, prop)
            kind = described.get("type") or " or ".join(
                resolve(spec, o).get("type", "?") for o in described.get("oneOf", [])
            )
            if "enum" in described:
                kind = f"{kind}: {', '.join(map(str, described['enum']))}"
            if "items" in described:
                kind = f"{kind} of {resolve(spec, described['items']).get('type', 'object')}"
            text = prop.get("description") or described.get("description") or ""
            row = [code(name), cell(kind), "yes" if name in required else "", text]
            rows.append([shape, *row] if "oneOf" in schema else row)
    return rows


def example_url(spec: dict[str, Any], path: str, operation: dict[str, Any], where: str) -> str:
    """`path` with each path parameter replaced by its example."""
    url = path
    for parameter in operation.get("parameters", []):
        parameter = resolve(spec, parameter)
        if parameter["in"] == "path":
            example = parameter.get(
                "example", resolve(spec, parameter.get("schema", {})).get("example")
            )
            if example is None:
                raise SourceError(f"{where}: path parameter {parameter['name']} has no example")
            url = url.replace("{" + parameter["name"] + "}", str(example))
    return url


def curl(
    spec: dict[str, Any], method: str, path: str, operation: dict[str, Any], where: str
) -> str:
    """A curl command for the operation: its path and JSON body examples, the admin token."""
    url, headers, body = example_url(spec, path, operation, where), [], None
    if operation.get("security"):
        headers.append('-H "Authorization: Bearer $ADMIN_TOKEN"')
    content = (operation.get("requestBody") or {}).get("content", {})
    if content:
        media = content.get("application/json", {})
        if "example" not in media:
            raise SourceError(
                f"{where}: the JSON request body has no example (for its curl example)"
            )
        headers.append("-H 'Content-Type: application/json'")
        body = json.dumps(media["example"])
    parts = ["curl", "-sS"] + ([] if method == "get" else ["-X", method.upper()])
    parts += [*headers, f'"$API{url}"'] + ([f"-d '{body}'"] if body else [])
    return " ".join(parts)


def api_operations(root: Path) -> list[dict[str, Any]]:
    import yaml

    spec_path = openapi_path(root)
    spec = yaml.safe_load(spec_path.read_text())
    operations = []
    for path, item in (spec.get("paths") or {}).items():
        for method, operation in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            where = f"openapi.yaml: {method.upper()} {path}"
            if not operation.get("summary"):
                raise SourceError(f"{where} has no summary")
            parameters = [resolve(spec, p) for p in operation.get("parameters", [])]
            body = (operation.get("requestBody") or {}).get("content", {}).get("application/json")
            operations.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": operation["summary"],
                    "description": operation.get("description", ""),
                    "parameters": [
                        [
                            code(p["name"]),
                            p["in"],
                            "yes" if p.get("required") else "",
                            p.get("description")
                            or resolve(spec, p.get("schema", {})).get("description", ""),
                        ]
                        for p in parameters
                    ],
                    "fields": schema_fields(spec, body["schema"]) if body else [],
                    "responses": [
                        [code(status), resolve(spec, response).get("description", "")]
                        for status, response in operation.get("responses", {}).items()
                    ],
                    "curl": curl(spec, method, path, operation, where),
                    "url": example_url(spec, path, operation, where),
                    "example": body.get("example") if body else None,
                    "token": bool(operation.get("security")),
                }
            )
    return operations


def api_page(root: Path) -> str:
    operations = api_operations(root)
    body = [
        "The API's endpoints, from the OpenAPI document it serves at `GET /openapi.json`. The "
        "curl examples run against `make serve` (the admin endpoints need the server's "
        "`ADMIN_TOKEN`, see [Settings](settings.md)):",
        "",
        "```bash",
        "API=http://127.0.0.1:8000",
        "```",
        "",
        *table(
            ["Method", "Path", "Summary"],
            [[o["method"], code(o["path"]), o["summary"]] for o in operations],
        ),
    ]
    for operation in operations:
        body += [f"## {operation['method']} `{operation['path']}`", "", operation["summary"], ""]
        if operation["description"]:
            body += [operation["description"].strip(), ""]
        if operation["parameters"]:
            body += [
                "Parameters:",
                "",
                *table(["Name", "In", "Required", "Meaning"], operation["parameters"]),
            ]
        if operation["fields"]:
            header = ["Field", "Type", "Required", "Meaning"]
            if len(operation["fields"][0]) > len(header):
                body += ["Request body (JSON), one of the shapes:", ""]
                header = ["Shape", *header]
            else:
                body += ["Request body (JSON):", ""]
            body += table(header, operation["fields"])
        body += ["Responses:", "", *table(["Status", "Meaning"], operation["responses"])]
        body += ["```bash", operation["curl"], "```", ""]
    return page("API endpoints", "the API's `openapi.yaml`", body)


# --- settings.md: core.shared.SETTINGS and the API's config ---------------------------------


def settings_page(root: Path) -> str:
    from dataclasses import MISSING, fields

    shared = importlib.import_module(f"{PACKAGE}_core.shared")
    config = importlib.import_module(f"{PACKAGE}_api.config")
    rows = [[code(s.name), code(s.default), s.help] for s in shared.SETTINGS.values()]
    comments = source_comments(Path(config.__file__).read_text(), "Settings")
    own = []
    for field in fields(config.Settings):
        if "shared" in field.metadata:
            continue
        if field.name not in comments:
            raise SourceError(f"api config.py: setting {field.name} has no comment")
        default = "" if field.default is MISSING or field.default is None else field.default
        own.append([code(field.name), code(default), comments[field.name]])
    body = [
        "Every setting is an environment variable; an empty value counts as unset.",
        "",
        "## Shared settings",
        "",
        "What several deployables read (the API, the pipeline, the batch export, the drift job), "
        "defined once in the core package's `shared.py` (`SETTINGS`); the Kubernetes manifests, "
        "systemd units and CI workflows set the same names.",
        "",
        *table(["Variable", "Default", "Meaning"], rows),
        "## The API's own settings",
        "",
        "From the API package's `config.py` (`Settings`), read at start. Where gunicorn "
        "listens and how many workers it runs (`HOST`, `PORT`, `WEB_CONCURRENCY`, "
        "`GUNICORN_*`) are in `serve`'s help: [Commands](commands.md).",
        "",
        *table(["Variable", "Default", "Meaning"], own),
    ]
    return page("Settings and environment variables", "`SETTINGS` and the API's `Settings`", body)


# --- metrics.md: the API's metrics and alerts.yml -------------------------------------------


def api_metrics() -> list[list[str]]:
    """Name, type, labels and help of every metric the API exports, read from the objects its
    `Metrics` creates (and the drift collector, fed a summary)."""
    from prometheus_client.metrics import MetricWrapperBase

    metrics = importlib.import_module(f"{PACKAGE}_api.metrics")
    shared = importlib.import_module(f"{PACKAGE}_core.shared")
    with tempfile.TemporaryDirectory() as folder:
        summary = Path(folder) / "summary.json"
        checks = {check: {"drifted_share": 0.0} for check in shared.DRIFT_CHECKS}
        shared.write_drift_summary(
            summary,
            {
                "generated_at": "2026-01-01T00:00:00+00:00",
                "verdict": shared.NO_DRIFT,
                "reference": {},
                "current": {},
                **checks,
                "online_quality": {"drop": False},
            },
        )
        exported = metrics.Metrics(drift_summary=summary)
        rows = []
        for value in vars(exported).values():
            if isinstance(value, MetricWrapperBase):
                suffix = "_total" if value._type == "counter" else ""
                labels = ", ".join(value._labelnames)
                rows.append(
                    [
                        code(value._name + suffix),
                        value._type,
                        code(labels) if labels else "",
                        value._documentation,
                    ]
                )
        for family in metrics.DriftSummaryCollector(summary).collect():
            labels = sorted({name for sample in family.samples for name in sample.labels})
            rows.append(
                [
                    code(family.name),
                    family.type,
                    code(", ".join(labels)) if labels else "",
                    family.documentation,
                ]
            )
    return rows


def alerts(root: Path) -> list[dict[str, Any]]:
    import yaml

    path = root / "monitoring/prometheus/alerts.yml"
    found = []
    for group in (yaml.safe_load(path.read_text()) or {}).get("groups", []):
        for rule in group.get("rules", []):
            if "alert" not in rule:
                continue
            summary = (rule.get("annotations") or {}).get("summary")
            severity = (rule.get("labels") or {}).get("severity")
            if not summary or not severity:
                raise SourceError(
                    f"alerts.yml: alert {rule['alert']} needs a severity label and a summary "
                    "annotation"
                )
            found.append({**rule, "group": group["name"], "summary": summary, "severity": severity})
    return found


def metrics_page(root: Path) -> str:
    rules = alerts(root)
    body = [
        "## Metrics the API exports",
        "",
        "On `GET /metrics` (every gunicorn worker's, summed), from the API package's `metrics.py`.",
        "",
        *table(["Metric", "Type", "Labels", "Meaning"], api_metrics()),
        "## Alerts",
        "",
        "The Prometheus rules of `monitoring/prometheus/alerts.yml` (the Kubernetes "
        "PrometheusRule is made from the same file).",
        "",
        *table(
            ["Alert", "Severity", "For", "Summary"],
            [
                [code(r["alert"]), r["severity"], code(r.get("for", "")), r["summary"]]
                for r in rules
            ],
        ),
    ]
    for rule in rules:
        body += [f"### {rule['alert']}", "", rule["summary"], ""]
        description = (rule.get("annotations") or {}).get("description")
        if description:
            body += [description, ""]
        body += ["```promql", rule["expr"].strip(), "```", ""]
    return page("Metrics and alerts", "the API's `metrics.py` and `alerts.yml`", body)


# --- All pages ----------------------------------------------------------------------------

PAGES = {
    "make.md": make_page,
    "commands.md": commands_page,
    "params.md": params_page,
    "pipeline.md": pipeline_page,
    "api.md": api_page,
    "settings.md": settings_page,
    "metrics.md": metrics_page,
}
TITLES = {
    "make.md": "Make targets",
    "commands.md": "Commands and exit codes",
    "params.md": "params.yaml",
    "pipeline.md": "Pipeline stages",
    "api.md": "API endpoints",
    "settings.md": "Settings and environment variables",
    "metrics.md": "Metrics and alerts",
}


def pages(root: Path = ROOT) -> dict[str, str]:
    """Every reference page: file name -> Markdown (the defaults as documented, whatever the
    environment sets: the shared settings are unset first)."""
    shared = importlib.import_module(f"{PACKAGE}_core.shared")
    for name in shared.SETTINGS:
        os.environ.pop(name, None)
    generated = {name: make(root) for name, make in PAGES.items()}
    links = [f"- [{TITLES[name]}]({name})" for name in PAGES]
    generated["index.md"] = page(
        "Reference",
        "the project's own files",
        ["Each page is read from the file it documents:", "", *links],
    )
    return generated


def main(argv: list[str] | None = None) -> int:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--root", type=Path, default=ROOT, help="the project's folder")
    where = options.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="write the pages into this folder")
    where.add_argument("--json", action="store_true", help="print {file: markdown} as JSON")
    args = options.parse_args(argv)
    try:
        generated = pages(args.root.resolve())
    except SourceError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(generated))
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, text in generated.items():
            (args.out / name).write_text(text)
    return 0


# --- The mkdocs hook (runs in mkdocs' own environment) --------------------------------------


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.exceptions import PluginError
    from mkdocs.structure.files import File

    python = ROOT / ".venv" / "bin" / "python"
    if not python.is_file():
        raise PluginError(
            f"the reference pages read the project's parsers with {python}, which is missing: "
            "run `make setup` first"
        )
    done = subprocess.run(
        [str(python), __file__, "--json"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise PluginError(f"the reference pages could not be generated:\n{done.stderr.strip()}")
    for name, text in json.loads(done.stdout).items():
        files.append(File.generated(config, f"{FOLDER}/{name}", content=text))
    return files


if __name__ == "__main__":
    sys.exit(main())
