"""Where the pipeline reads and writes, and how it merges and hashes params.

The paths match the `deps`/`outs` in dvc.yaml; stages resolve them against the project root
(the working directory), so a stage behaves the same under `dvc repro` and when run by hand.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from {{ cookiecutter.package }}_core.cli import BadInput
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


def merge_params(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """`base` with `overlay` merged in, section by section (nested mappings merge, rest replace)."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and value:
            merged[key] = merge_params(merged[key], value)
        else:
            merged[key] = value
    return merged


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
