"""Model sources without a registry: local folders, the MLmodel file, malformed URIs."""

import subprocess
import sys

import pytest
import yaml

from {{ cookiecutter.package }}_core.artifact import ARRAYS
from {{ cookiecutter.package }}_core.model_source import (
    ARTIFACT_KEY,
    ModelLoadError,
    load_model,
    locate_artifact,
)


@pytest.fixture
def saved(artifact, tmp_path):
    """The artifact inside a folder laid out like a downloaded pyfunc model."""
    artifact.save(tmp_path / "model" / "artifacts" / "serving")
    return tmp_path / "model"


def test_a_local_folder_loads_verified_and_versioned_by_checksum(saved):
    model = load_model(str(saved / "artifacts" / "serving"))
    assert model.version.startswith("local-")
    assert model.artifact.recommend("u1", 2).items == ["c", "b"]
    assert load_model(str(saved / "artifacts" / "serving"), unless_version=model.version) is None


def test_the_artifact_is_found_through_mlmodel_or_its_one_manifest(saved):
    assert locate_artifact(saved) == saved / "artifacts" / "serving"
    spec = {"flavors": {"python_function": {"artifacts": {ARTIFACT_KEY: {"path": "elsewhere"}}}}}
    (saved / "MLmodel").write_text(yaml.safe_dump(spec))
    assert locate_artifact(saved) == saved / "elsewhere"


def test_a_models_uri_that_names_no_version_or_alias_is_refused():
    with pytest.raises(ModelLoadError, match="neither models:/<name>@<alias>"):
        load_model("models:/shop/latest/1")


def test_each_step_of_a_load_is_logged_with_its_duration(saved, caplog):
    caplog.set_level("INFO", logger="{{ cookiecutter.package }}_core.model_source")
    load_model(str(saved / "artifacts" / "serving"))
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "verifying the artifact",
        "verified the artifact",
        "smoke-testing the artifact",
        "smoke test passed",
    ]
    verified = caplog.records[1].fields
    assert verified["files"] == len(ARRAYS) and verified["mb"] >= 0 and verified["ms"] >= 0


def test_a_download_uri_on_this_machine_is_read_in_place(tmp_path):
    from {{ cookiecutter.package }}_core.model_source import _local_folder

    assert _local_folder(str(tmp_path)) == tmp_path
    assert _local_folder(tmp_path.as_uri()) == tmp_path
    assert _local_folder(str(tmp_path / "missing")) is None
    for remote in ("s3://bucket/1/models/m-1/artifacts", "mlflow-artifacts:/1/m-1/artifacts"):
        assert _local_folder(remote) is None


def test_preparing_a_folder_imports_nothing_and_a_models_uri_the_mlflow_client(tmp_path):
    pytest.importorskip("mlflow")
    code = (
        "import sys\n"
        "from {{ cookiecutter.package }}_core.model_source import prepare\n"
        f"prepare({str(tmp_path)!r})\n"
        "assert 'mlflow' not in sys.modules\n"
        f"prepare('models:/shop@champion', 'sqlite:///{tmp_path}/mlflow.db')\n"
        "assert 'mlflow.tracking' in sys.modules and 'mlflow.artifacts' in sys.modules\n"
        "assert 'mlflow.store.model_registry.sqlalchemy_store' in sys.modules\n"
        "import threading; assert threading.active_count() == 1, threading.enumerate()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert not (tmp_path / "mlflow.db").exists()  # imported, never connected
