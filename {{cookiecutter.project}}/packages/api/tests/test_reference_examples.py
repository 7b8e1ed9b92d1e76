"""The API reference page's examples (docs/hooks/reference_pages.py, from openapi.yaml) work: each
endpoint's example path and body, sent as its curl command sends them, gets a 2xx from the app."""

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[3]


def reference_pages():
    path = PROJECT_ROOT / "docs" / "hooks" / "reference_pages.py"
    spec = importlib.util.spec_from_file_location("reference_pages", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


OPERATIONS = reference_pages().api_operations(PROJECT_ROOT)


@pytest.fixture
def artifact_dir(tmp_path, new_artifact) -> Path:
    """The fixtures' artifact with ids renamed (sorted, as the artifact keeps them) so that the
    examples' user and items are known."""
    ids = {"u00042", "i0042", "i0007"}
    urls = " ".join(operation["url"] for operation in OPERATIONS)
    bodies = json.dumps([operation["example"] for operation in OPERATIONS])
    assert all(name in urls + bodies for name in ids), "the examples' ids changed: rename here"
    artifact = dataclasses.replace(
        new_artifact(),
        user_ids=np.array(["u00042", "u2"]),
        item_ids=np.array(["i0007", "i0042", "i0100", "i0200"]),
    )
    directory = tmp_path / "model"
    artifact.save(directory)
    return directory


def test_every_endpoint_has_an_example():
    paths = {(operation["method"], operation["path"]) for operation in OPERATIONS}
    assert ("POST", "/v1/events") in paths
    assert all(operation["curl"].startswith("curl ") for operation in OPERATIONS)


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda o: f"{o['method']} {o['path']}")
def test_the_example_works(client, admin_headers, events_log, operation):
    headers = admin_headers if operation["token"] else {}
    assert ("Authorization" in operation["curl"]) == operation["token"]
    response = client.open(
        operation["url"], method=operation["method"], json=operation["example"], headers=headers
    )
    assert 200 <= response.status_code < 300, response.get_data(as_text=True)
    if operation["path"] == "/v1/events":
        sent = operation["example"]["events"]
        assert response.get_json() == {"accepted": len(sent)}
        assert len(events_log.read_text().splitlines()) == len(sent)
