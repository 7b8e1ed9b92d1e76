"""Where the pipeline reads and writes, and how it merges and hashes params.

The paths match the `deps`/`outs` in dvc.yaml; stages resolve them against the project root
(the working directory), so a stage behaves the same under `dvc repro` and when run by hand.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from {{ cookiecutter.package }}_core.cli import BadInput
from {{ cookiecutter.package }}_core.cli import merge_params as merge_params  # for the stages
from {{ cookiecutter.package }}_core.shared import PROMOTION_LOG, VALIDATED_DIR


@dataclass(frozen=True)
class Paths:
    root: Path = Path(".")

    @property
    def raw(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def interim(self) -> Path:
        return self.root / "data" / "interim"

    @property
    def validated(self) -> Path:
        return self.root / VALIDATED_DIR

    @property
    def split(self) -> Path:
        return self.root / "data" / "split"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def promotion_log(self) -> Path:
        return self.root / PROMOTION_LOG


def merge_params_file(path: Path, overlay: dict[str, Any]) -> None:
    """Merge `overlay` into the params file at `path` as `merge_params` does, keeping the file's
    comments (where its settings are documented), key order and flow-style lists: a round trip
    through ruamel.yaml. New keys go at the end of their section; the overlay's own comments
    are not copied."""
    from ruamel.yaml import YAML
    from ruamel.yaml.representer import RoundTripRepresenter

    class Representer(RoundTripRepresenter):
        """ruamel writes None as an empty value; params.yaml spells it `null`."""

    Representer.add_representer(
        type(None), lambda dumper, _: dumper.represent_scalar("tag:yaml.org,2002:null", "null")
    )
    yaml = YAML()  # round-trip mode
    yaml.Representer = Representer
    yaml.indent(mapping=2, sequence=4, offset=2)  # params.yaml's style: "  - item" under a key
    yaml.width = 4096  # never re-wrap a long line
    yaml.preserve_quotes = True
    document = yaml.load(path.read_text())
    _merge_into(document, overlay)
    text = io.StringIO()
    yaml.dump(document, text)
    # Written whole or not at all: a crash mid-write must not leave half a params.yaml.
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(handle, "w") as stream:
        stream.write(text.getvalue())
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def _merge_into(target: Any, overlay: dict[str, Any]) -> None:
    for key, value in overlay.items():
        current = target.get(key)
        if isinstance(value, dict) and isinstance(current, dict) and value:
            _merge_into(current, value)
        else:
            target[key] = _house_style(value)


def _house_style(value: Any) -> Any:
    """Lists of plain values written `[a, b]`, as params.yaml writes them; the rest as blocks."""
    from ruamel.yaml.comments import CommentedSeq

    if isinstance(value, dict):
        return {key: _house_style(item) for key, item in value.items()}
    if isinstance(value, list):
        sequence = CommentedSeq([_house_style(item) for item in value])
        if not any(isinstance(item, dict | list) for item in value):
            sequence.fa.set_flow_style()
        return sequence
    return value


def params_hash(params: dict[str, Any]) -> str:
    """A stable hash of the params that shape a model (canonical JSON, sha256, 16 hex)."""
    canonical = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise BadInput(f"{path} not found; run the earlier pipeline stages first (make pipeline)")
    return json.loads(path.read_text())
