"""Bad input always gets a JSON 4xx naming the problem: never a 500, never a traceback."""

import pytest

LONG_ID = "x" * 129


def assert_json_error(response, status: int, fragment: str = "") -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    error = response.get_json()["error"]
    assert error["status"] == status
    assert fragment in error["message"]
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and 'File "' not in text
    return error


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("/v1/users/u1/recommendations?k=0", "k must be an integer between 1 and 100"),
        ("/v1/users/u1/recommendations?k=101", "between 1 and 100"),
        ("/v1/users/u1/recommendations?k=-1", "k must be"),
        ("/v1/users/u1/recommendations?k=abc", "k must be"),
        ("/v1/users/u1/recommendations?k=2.5", "k must be"),
        ("/v1/users/u1/recommendations?k=", "k must be"),
        ("/v1/users/u1/recommendations?k=99999999999999999999", "k must be"),
        ("/v1/users/u1/recommendations?k=1&k=2", "more than once"),
        ("/v1/users/u1/recommendations?top=3", "unknown query parameter(s) top"),
        ("/v1/users/u%00x/recommendations", "user_id contains control characters"),
        ("/v1/users/u%1bx/recommendations", "control characters"),
        (f"/v1/users/{LONG_ID}/recommendations", "1 to 128 characters"),
        ("/v1/users/u1/recommendations?exclude=a,,b", "exclude[1] must be 1 to 128"),
        ("/v1/users/u1/recommendations?category=%07", "category contains control"),
        ("/v1/items/a/similar?k=1000", "k must be"),
        ("/v1/items/a/similar?category=x", "unknown query parameter(s) category"),
        (f"/v1/items/{LONG_ID}/similar", "item_id must be 1 to 128"),
    ],
)
def test_bad_query_is_a_400(client, url, fragment):
    assert_json_error(client.get(url), 400, fragment)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"items": ["a"], "k": 0}, "k must be"),
        ({"items": ["a"], "k": "5"}, "k must be"),
        ({"items": ["a"], "k": True}, "k must be"),
        ({"items": ["a"], "k": 2.0}, "k must be"),
        ({"items": ["a"], "k": None}, "k must be"),
        ({"items": ["a"], "colour": "red"}, "unknown field(s) colour"),
        ({"items": "a"}, "items must be a list of strings"),
        ({"items": [1]}, "items[0] must be a string"),
        ({"items": ["a\u0000"]}, "items[0] contains control characters"),
        ({"items": [LONG_ID]}, "items[0] must be 1 to 128"),
        ({"items": ["a"] * 101}, "at most 100"),
        ({"items": ["a"], "user_id": 7}, "user_id must be a string"),
        ({"items": ["a"], "user_ids": ["u1"]}, "not both"),
        ({"k": 3}, "either items"),
        ({"user_ids": []}, "user_ids must not be empty"),
        ({"user_ids": ["u1"], "user_id": "u1"}, "user_ids alone"),
        ({"user_ids": [None]}, "user_ids[0] must be a string"),
    ],
)
def test_bad_json_fields_are_a_400(client, body, fragment):
    assert_json_error(client.post("/v1/recommendations", json=body), 400, fragment)


@pytest.mark.parametrize(
    "raw", [b"{", b"", b"[1, 2]", b'"text"', b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000]
)
def test_invalid_json_is_a_400(client, raw, app):
    app.config["MAX_CONTENT_LENGTH"] = 1_000_000  # let the deeply nested body through
    response = client.post("/v1/recommendations", data=raw, content_type="application/json")
    assert_json_error(response, 400)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_wrong_content_type_is_a_415(client, content_type):
    kwargs = {"content_type": content_type} if content_type else {}
    response = client.post("/v1/recommendations", data=b'{"items": ["a"]}', **kwargs)
    assert_json_error(response, 415, "Content-Type must be application/json")


def test_oversized_body_is_a_413(client):
    body = b'{"items": ["' + b"a" * (64 * 1024) + b'"]}'
    response = client.post("/v1/recommendations", data=body, content_type="application/json")
    assert_json_error(response, 413)


def test_unknown_route_is_a_json_404(client):
    assert_json_error(client.get("/v2/nothing/here"), 404)
    assert_json_error(client.get("/v1/users/a/b/recommendations"), 404)


def test_wrong_method_is_a_json_405_that_keeps_allow(client):
    response = client.delete("/v1/users/u1/recommendations")
    assert_json_error(response, 405)
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "HEAD", "OPTIONS"}
    response = client.get("/v1/recommendations")
    assert_json_error(response, 405)
    assert "POST" in response.headers["Allow"]


def test_unexpected_exception_is_a_json_500_without_traceback(app, caplog):
    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internal detail")

    response = app.test_client().get("/boom", headers={"X-Request-ID": "req-500"})
    error = assert_json_error(response, 500, "request id req-500")
    assert "secret" not in error["message"]
    assert response.headers["X-Request-ID"] == "req-500"
    assert any("secret internal detail" in (r.exc_text or "") for r in caplog.records)
