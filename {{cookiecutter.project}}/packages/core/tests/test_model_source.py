"""Model sources without a registry: local folders, the MLmodel file, malformed URIs."""

import pytest
import yaml

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
