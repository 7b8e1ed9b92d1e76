"""Bad input always gets a JSON 4xx naming the problem: never a 500, never a traceback."""

import io
import json
import os
import socket
import subprocess
import sys
import time
from urllib.parse import unquote_to_bytes

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


# --- However the request is sent: a chunked body is refused past the size limit like one with a
# Content-Length, a JSON object may not repeat a key, and a path id means the same sent raw in
# UTF-8 or percent-encoded (in-process here, under gunicorn below). ----------------------------
EVENT = {"event_type": "click", "user_id": "u1", "item_id": "a", "model_version": "v1"}
# 500 events padded with spaces to 640 KB: valid JSON, over the 512 KB events limit.
PADDED = json.dumps({"events": [EVENT] * 500}).encode().ljust(640 * 1024)
SESSION = json.dumps({"items": ["a"]}).encode().ljust(65 * 1024)  # over the 64 KB limit
EMOJI = "\N{GRINNING FACE}"


def chunked(client, url: str, body: bytes):
    """`body` without a Content-Length, as gunicorn hands a chunked body to the app."""
    return client.post(
        url,
        input_stream=io.BytesIO(body),
        content_type="application/json",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )


@pytest.mark.parametrize(
    ("url", "body"), [("/v1/events", PADDED), ("/v1/recommendations", SESSION)]
)
def test_a_body_past_the_limit_is_a_413_chunked_or_not(client, events_log, url, body):
    for response in (
        client.post(url, data=body, content_type="application/json"),
        chunked(client, url, body),
    ):
        assert response.status_code == 413, response.get_data(as_text=True)
        assert "the body is larger than" in response.get_json()["error"]["message"]
    assert not events_log.exists()


def test_a_chunked_body_within_the_limit_is_read_whole(client, events_log):
    body = json.dumps({"events": [EVENT] * 500}).encode().ljust(512 * 1024)  # exactly the limit
    assert chunked(client, "/v1/events", body).get_json() == {"accepted": 500}
    response = chunked(client, "/v1/recommendations", json.dumps({"items": ["a"], "k": 2}).encode())
    assert [item["item_id"] for item in response.get_json()["items"]] == ["c", "b"]


@pytest.mark.parametrize(
    ("url", "raw", "key"),
    [
        (
            "/v1/events",
            b'{"event_type":"click","user_id":"u1","item_id":"a","model_version":"v1",'
            b'"user_id":"u2"}',
            "user_id",
        ),
        (
            "/v1/events",
            b'{"events":[{"event_type":"click","event_type":"purchase"}]}',
            "event_type",
        ),
        ("/v1/recommendations", b'{"items":["a"],"k":2,"k":3}', "k"),
    ],
)
def test_a_repeated_json_key_is_a_400_naming_it(client, events_log, url, raw, key):
    response = client.post(url, data=raw, content_type="application/json")
    assert response.status_code == 400
    assert f"the key '{key}' is given more than once" in response.get_json()["error"]["message"]
    assert not events_log.exists()


def gunicorn_style(client, path: bytes):
    """A GET as gunicorn passes it on: RAW_URI the request line's bytes as latin-1; PATH_INFO
    them percent-decoded, where gunicorn's `unquote_to_bytes` of that latin-1 string encodes its
    non-ASCII characters (raw bytes of the request line) as UTF-8 once more."""
    raw = path.decode("latin-1")
    path_info = unquote_to_bytes(raw).decode("latin-1")
    return client.get(
        "/", environ_overrides={"PATH_INFO": path_info, "RAW_URI": raw, "REQUEST_URI": raw}
    )


@pytest.mark.parametrize(
    ("raw", "percent"),
    [(EMOJI, "%F0%9F%98%80"), ("\u00e9t\u00e9", "%C3%A9t%C3%A9"), ("u1", "%75%31")],
)
@pytest.mark.parametrize("route", ["/v1/users/{}/recommendations", "/v1/items/{}/similar"])
def test_a_path_id_means_the_same_raw_or_percent_encoded(client, route, raw, percent):
    answers = [gunicorn_style(client, route.format(spelled).encode()) for spelled in (raw, percent)]
    assert [a.status_code for a in answers] == [answers[0].status_code] * 2
    assert answers[0].get_json() == answers[1].get_json()
    assert answers[0].status_code in (200, 404)
    name = "user_id" if "users" in route else "item_id"
    if answers[0].status_code == 200:
        assert answers[0].get_json()[name] == raw


@pytest.mark.parametrize(
    "path", [b"/v1/users/%FF/recommendations", b"/v1/users/\xff/recommendations"]
)
def test_a_path_that_is_not_utf8_is_a_400(client, path):
    response = gunicorn_style(client, path)
    assert response.status_code == 400
    assert "not valid UTF-8" in response.get_json()["error"]["message"]


@pytest.mark.slow
def test_under_gunicorn_raw_paths_and_chunked_bodies_follow_the_same_rules(artifact_dir, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "MODEL_URI": str(artifact_dir), "MODEL_REFRESH_SECONDS": "0"}
    env.update(HOST="127.0.0.1", PORT=str(port), EVENTS_LOG=str(tmp_path / "events.jsonl"))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    serve = [sys.executable, "-m", "{{ cookiecutter.package }}_api.cli", "serve"]
    with subprocess.Popen(serve, env=env, stderr=subprocess.DEVNULL) as server:
        try:
            deadline = time.monotonic() + 30
            while _ask(port, b"GET /readyz HTTP/1.1\r\n\r\n")[0] != 200:
                assert time.monotonic() < deadline, "gunicorn did not become ready in 30 s"
                time.sleep(0.2)
            path = b"GET /v1/users/%s/recommendations HTTP/1.1\r\n\r\n"
            raw, percent = (
                _ask(port, path % spelled) for spelled in (EMOJI.encode(), b"%F0%9F%98%80")
            )
            assert raw == percent
            assert json.loads(percent[1])["user_id"] == EMOJI
            body = b"".join(
                b"%x\r\n%s\r\n" % (len(PADDED[i : i + 65536]), PADDED[i : i + 65536])
                for i in range(0, len(PADDED), 65536)
            )
            head = b"POST /v1/events HTTP/1.1\r\nContent-Type: application/json\r\n"
            status, answer = _ask(
                port, head + b"Transfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n"
            )
            assert status == 413, answer
            assert not (tmp_path / "events.jsonl").exists()
        finally:
            server.terminate()


def _ask(port: int, request: bytes) -> tuple[int, bytes]:
    """Send `request` (Host and Connection: close added); the status and body, or 0 and b""
    while nothing listens yet."""
    line, rest = request.split(b"\r\n", 1)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(line + b"\r\nHost: test\r\nConnection: close\r\n" + rest)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
    except ConnectionRefusedError:
        return 0, b""
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body
