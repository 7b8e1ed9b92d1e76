"""The reference pages' generator (the payload's docs/hooks/reference_pages.py) reads its
sources: what a Makefile, params.yaml or OpenAPI document holds is what the pages say, and a
source it cannot document is refused with the file and the place. Fast: the parts that need
no installed project, on small sources written here (the default bake's pages are checked in
test_default_project.py)."""

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import PAYLOAD_DIR, TEMPLATE_ROOT

GENERATOR = PAYLOAD_DIR / "docs" / "hooks" / "reference_pages.py"


@pytest.fixture(scope="module")
def generator():
    spec = importlib.util.spec_from_file_location("payload_reference_pages", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.PACKAGE = "demo"  # the payload's is a cookiecutter variable
    return module


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


MAKEFILE = """
# What every target shares.
PYTHON ?= python3
RUN := uv run
TRAIN := $(RUN) demo-train
arg = $(if $(filter command line,$(origin $(1))),$(2) '$($(1))')

help:  ## list the targets
\t@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST)

# Where the load test goes.
URL ?= http://127.0.0.1:8000
USERS ?= 20
fit: data  ## fit the model (SEED=, and ARGS= for more flags)
\t$(TRAIN) fit $(call arg,SEED,--seed) $(ARGS) --url $(URL) -u $(USERS)

internal:
\t$(PYTHON) -c pass
"""


def test_make_targets_their_help_and_arguments(tmp_path, generator):
    write(tmp_path / "Makefile", MAKEFILE)
    parsed = generator.makefile(tmp_path)
    targets = {target["name"]: target for target in parsed["targets"]}
    assert list(targets) == ["help", "fit"]  # `internal` has no `## ` help: make help skips it
    assert targets["fit"]["help"] == "fit the model (SEED=, and ARGS= for more flags)"
    # called through `arg`, read undefined, and the `?=` defaults after the first rule; not
    # PYTHON (set before the first rule, for every target) nor make's own variables
    assert targets["fit"]["arguments"] == ["SEED", "ARGS", "URL", "USERS"]
    assert targets["help"]["arguments"] == []
    variables = parsed["variables"]
    assert variables["URL"]["comment"] == "Where the load test goes."
    assert variables["USERS"]["comment"] == "see `URL`"
    page = generator.make_page(tmp_path)
    assert "| `make fit` | fit the model (SEED=, and ARGS= for more flags) |" in page
    assert "| `USERS` | `20` | see `URL` |" in page


def test_a_target_with_an_empty_help_is_refused(tmp_path, generator):
    write(tmp_path / "Makefile", "lint:  ## \n\truff check .\n")
    with pytest.raises(generator.SourceError, match=r"Makefile:1: target lint has an empty"):
        generator.makefile(tmp_path)


PARAMS = """
# Where the events come from.
data:
  # The raw events file.
  source: data/raw/events.parquet
  columns:
    user_id: user_id
  max_rows: 10  # at most this many rows
  # The first two days...
  skip_days: 2
  keep_days: 5

# The model.
model:
  name: ease
"""


def test_params_keys_defaults_and_comments(tmp_path, generator):
    keys = {key["key"]: key for key in generator.params_keys(write(tmp_path / "p.yaml", PARAMS))}
    assert keys["data.source"]["default"] == "data/raw/events.parquet"
    assert keys["data.source"]["comment"] == "The raw events file."
    assert keys["data.max_rows"]["comment"] == "at most this many rows"  # beside the value
    assert keys["data.columns.user_id"]["inherited"] == "data"  # the section's comment
    assert keys["data.keep_days"]["comment"] == "see `data.skip_days`"  # one comment, two keys
    assert keys["model.name"]["comment"] == ""
    assert keys["model.name"]["inherited"] == "model"


def test_a_section_without_a_comment_is_refused(tmp_path, generator):
    path = write(tmp_path / "params.yaml", PARAMS + "\nserving:\n  top_n: 100\n")
    with pytest.raises(generator.SourceError, match=r"params.yaml:16: key serving has no comment"):
        generator.params_keys(path)


OPENAPI = """
openapi: 3.1.0
info: {title: demo, version: "1"}
paths:
  /v1/items/{item_id}:
    get:
      summary: One item
      parameters:
        - $ref: "#/components/parameters/ItemId"
      responses:
        "200": {description: The item.}
  /v1/notes:
    post:
      summary: Leave a note
      security: [{token: []}]
      requestBody:
        content:
          application/json:
            example: {"text": "hello"}
            schema:
              type: object
              required: [text]
              properties:
                text: {type: string, description: What to say.}
      responses:
        "202": {description: Kept.}
components:
  parameters:
    ItemId: {name: item_id, in: path, required: true, example: i42, schema: {type: string}}
"""


def openapi(root: Path, text: str) -> Path:
    return write(root / "packages/api/src/demo_api/openapi.yaml", text)


def test_api_endpoints_with_a_working_curl_each(tmp_path, generator):
    openapi(tmp_path, OPENAPI)
    operations = {o["path"]: o for o in generator.api_operations(tmp_path)}
    assert operations["/v1/items/{item_id}"]["curl"] == 'curl -sS "$API/v1/items/i42"'
    note = operations["/v1/notes"]
    assert note["curl"] == (
        """curl -sS -X POST -H "Authorization: Bearer $ADMIN_TOKEN" """
        """-H 'Content-Type: application/json' "$API/v1/notes" -d '{"text": "hello"}'"""
    )
    assert note["fields"] == [["`text`", "string", "yes", "What to say."]]
    page = generator.api_page(tmp_path)
    assert "## POST `/v1/notes`" in page
    assert "| `202` | Kept. |" in page


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("      summary: Leave a note\n", ""), "openapi.yaml: POST /v1/notes has no summary"),
        (
            ('            example: {"text": "hello"}\n', ""),
            "POST /v1/notes: the JSON request body has no example",
        ),
        (("example: i42, ", ""), "GET /v1/items/{item_id}: path parameter item_id has no example"),
    ],
)
def test_an_endpoint_that_cannot_be_documented_is_refused(tmp_path, generator, change, message):
    assert change[0] in OPENAPI
    openapi(tmp_path, OPENAPI.replace(*change))
    with pytest.raises(generator.SourceError) as refused:
        generator.api_operations(tmp_path)
    assert message in str(refused.value)


def test_the_template_script_needs_a_set_up_bake(tmp_path):
    script = [sys.executable, "scripts/reference_pages.py", "--check"]
    not_a_bake = subprocess.run(
        [*script, str(tmp_path)], cwd=TEMPLATE_ROOT, capture_output=True, text=True
    )
    assert not_a_bake.returncode == 2
    assert "is not a bake of this template" in not_a_bake.stderr
    write(tmp_path / "docs/hooks/reference_pages.py", "")
    not_set_up = subprocess.run(
        [*script, str(tmp_path)], cwd=TEMPLATE_ROOT, capture_output=True, text=True
    )
    assert not_set_up.returncode == 2
    assert "run `make setup`" in not_set_up.stderr


def test_the_template_script_names_a_stale_page(tmp_path):
    """A bake whose generator gives another api.md and no metrics.md: --check fails naming
    both, and writes nothing."""
    sys.path.insert(0, str(TEMPLATE_ROOT / "scripts"))
    try:
        import reference_pages as script
    finally:
        sys.path.pop(0)
    committed = TEMPLATE_ROOT / "docs" / "reference" / "project"
    pages = {path.name: path.read_text() for path in committed.glob("*.md")}
    generated = {
        name: text.replace(f"\n\n{script.BANNER}\n", "\n", 1)
        for name, text in pages.items()
        if name not in script.COPIED and name != "metrics.md"
    }
    generated["api.md"] += "\nAn endpoint more.\n"
    source = json.dumps(json.dumps(generated))
    write(tmp_path / "docs/hooks/reference_pages.py", f"print({source})\n")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(sys.executable)
    checked = subprocess.run(
        [sys.executable, "scripts/reference_pages.py", "--check", str(tmp_path)],
        cwd=TEMPLATE_ROOT,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 1, checked.stdout + checked.stderr
    where = "docs/reference/project"
    assert f"stale: {where}/api.md" in checked.stdout
    assert f"not generated any more: {where}/metrics.md" in checked.stdout
    assert f"stale: {where}/make.md" not in checked.stdout  # the same page
    assert {path.name: path.read_text() for path in committed.glob("*.md")} == pages
