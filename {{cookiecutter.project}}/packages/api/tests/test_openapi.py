"""The OpenAPI spec: served, valid 3.1, and in step with the app's routes."""

import re

from {{ cookiecutter.package }}_api.routes.openapi import spec

IGNORED_METHODS = {"HEAD", "OPTIONS"}


def flask_operations(app) -> set[tuple[str, str]]:
    operations = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        operations |= {(path, method) for method in rule.methods - IGNORED_METHODS}
    return operations


def spec_operations() -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, item in spec()["paths"].items()
        for method in item
        if method in {"get", "put", "post", "delete", "patch"}
    }


def test_every_route_is_in_the_spec_and_back(app):
    assert flask_operations(app) == spec_operations()


def test_the_spec_is_served_as_json(client):
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.is_json
    body = response.get_json()
    assert body["openapi"].startswith("3.1")
    assert body == spec()
    assert "x-common-headers" in body  # the YAML anchors are spelled out
    ok = body["paths"]["/v1/events"]["post"]["responses"]["202"]
    assert set(ok["headers"]) == {"X-Model-Version", "X-Request-ID"}


def test_every_operation_documents_its_errors_and_headers():
    for path, item in spec()["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert any(code.startswith("2") for code in responses), (method, path)
            for code, response in responses.items():
                if "$ref" in response:
                    name = response["$ref"].rpartition("/")[2]
                    response = spec()["components"]["responses"][name]
                assert {"X-Model-Version", "X-Request-ID"} <= set(response["headers"]), (
                    method,
                    path,
                    code,
                )
            if "{" in path or ("parameters" in operation and len(operation["parameters"]) > 1):
                assert "400" in responses, (method, path)
            if "requestBody" in operation:
                assert {"400", "413", "415"} <= set(responses), (method, path)
