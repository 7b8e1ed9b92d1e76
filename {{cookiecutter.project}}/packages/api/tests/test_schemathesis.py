"""Property tests from the OpenAPI spec (schemathesis, in-process WSGI): for every operation,
generated requests, valid and invalid, never get a 5xx, and every response conforms to the spec:
a documented status code, its content type, its body schema and its headers."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from {{ cookiecutter.package }}_api.routes.openapi import spec

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# Loaded from the same dict the app serves; the app under test is passed per call, because the
# fixture-based loader of schemathesis does not work with pytest 9.
schema = schemathesis.openapi.from_dict(spec())


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=40,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_api_conforms_to_its_spec(case, app):
    case.call_and_validate(app=app, checks=CHECKS)
