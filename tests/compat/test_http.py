"""The HTTP wire protocol as any client sees it, with plain `requests` (no hvac): error bodies and
content type, LIST, status codes, token headers, bad bodies, body size limit, path traversal, sealed.

Paths that an HTTP library would normalise (`..`, `%2e%2e`, `//`) go through `http.client`, which
sends the request target exactly as given; the oversized body goes through a raw socket so that the
test can read the server's early answer while it is still sending."""

import http.client as http_client
import json
import select
import socket
import time
from urllib.parse import urlsplit

import pytest
import requests

from conftest import unique


@pytest.fixture
def http(dev_server):
    """A requests session against the dev server, with the root token."""
    session = requests.Session()
    session.headers["X-Vault-Token"] = dev_server.root_token
    session.base_url = dev_server.address
    yield session
    session.close()


def url(session, path: str) -> str:
    return f"{session.base_url}/v1/{path}"


def raw_request(address: str, method: str, target: str, token: str, body: bytes | None = None):
    """Send `target` byte for byte (no normalisation); return (status, headers, body)."""
    parts = urlsplit(address)
    connection = http_client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        headers = {"X-Vault-Token": token}
        if body is not None:
            headers["Content-Type"] = "application/json"
        connection.request(method, target, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def assert_error_body(response: requests.Response, status: int) -> list:
    assert response.status_code == status, response.text
    # hvac parses "errors" only when the header is exactly this, without "; charset=utf-8".
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert isinstance(body["errors"], list)
    return body["errors"]


def test_errors_are_json_with_the_exact_content_type(http):
    response = http.get(url(http, "secret/data/x"), headers={"X-Vault-Token": "not-a-token"})

    errors = assert_error_body(response, 403)
    assert errors == ["permission denied"]


def test_a_missing_token_is_forbidden(http, kv1_mount):
    response = requests.get(url(http, f"{kv1_mount}/x"))

    assert "permission denied" in assert_error_body(response, 403)


def test_a_missing_key_is_404_with_empty_errors(http, kv1_mount):
    response = http.get(url(http, f"{kv1_mount}/nothing"))

    assert assert_error_body(response, 404) == []


def test_an_unknown_mount_is_404(http):
    response = http.get(url(http, f"{unique('nomount')}/x"))

    assert_error_body(response, 404)


def test_writes_answer_204_without_body(http, kv1_mount):
    response = http.post(url(http, f"{kv1_mount}/w"), json={"v": "1"})

    assert response.status_code == 204
    assert response.content == b""
    put = http.put(url(http, f"{kv1_mount}/w"), json={"v": "2"})
    assert put.status_code == 204
    assert http.get(url(http, f"{kv1_mount}/w")).json()["data"] == {"v": "2"}
    assert http.delete(url(http, f"{kv1_mount}/w")).status_code == 204


def test_successful_reads_are_json_envelopes(http, kv1_mount):
    http.post(url(http, f"{kv1_mount}/env"), json={"v": "1"})

    response = http.get(url(http, f"{kv1_mount}/env"))

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert {"request_id", "lease_id", "renewable", "lease_duration", "data", "wrap_info", "warnings", "auth"} <= body.keys()
    assert body["data"] == {"v": "1"}
    assert body["wrap_info"] is None and body["auth"] is None


def test_list_verb_and_list_query_agree(http, kv1_mount):
    for key in ("b", "a", "dir/c"):
        http.post(url(http, f"{kv1_mount}/{key}"), json={"v": key})

    by_verb = http.request("LIST", url(http, f"{kv1_mount}/"))
    by_query = http.get(url(http, f"{kv1_mount}/"), params={"list": "true"})
    without_slash = http.request("LIST", url(http, kv1_mount))

    assert by_verb.status_code == by_query.status_code == without_slash.status_code == 200
    assert by_verb.json()["data"]["keys"] == ["a", "b", "dir/"]
    assert by_query.json()["data"] == by_verb.json()["data"]
    assert without_slash.json()["data"] == by_verb.json()["data"]


def test_an_empty_list_is_404(http, kv1_mount):
    response = http.request("LIST", url(http, f"{kv1_mount}/nothing/"))

    assert assert_error_body(response, 404) == []


def test_x_vault_token_and_bearer_are_both_accepted(http, dev_server):
    by_header = requests.get(url(http, "auth/token/lookup-self"), headers={"X-Vault-Token": dev_server.root_token})
    by_bearer = requests.get(
        url(http, "auth/token/lookup-self"), headers={"Authorization": f"Bearer {dev_server.root_token}"}
    )

    assert by_header.status_code == 200
    assert by_bearer.status_code == 200
    assert by_bearer.json()["data"]["id"] == dev_server.root_token


def test_malformed_json_is_400_and_writes_nothing(http, kv1_mount):
    response = http.post(
        url(http, f"{kv1_mount}/bad"), data=b'{"v": "1",', headers={"Content-Type": "application/json"}
    )

    assert_error_body(response, 400)
    assert http.get(url(http, f"{kv1_mount}/bad")).status_code == 404


def test_a_json_body_that_is_not_an_object_is_400(http, kv1_mount):
    response = http.post(url(http, f"{kv1_mount}/arr"), data=b"[1, 2]", headers={"Content-Type": "application/json"})

    assert_error_body(response, 400)
    assert http.get(url(http, f"{kv1_mount}/arr")).status_code == 404


def test_an_empty_body_write_is_accepted(http, kv1_mount):
    # Clients (hvac's seal, revoke-self) send writes without a body.
    response = http.post(url(http, "auth/token/renew-self"), headers={"X-Vault-Token": _child_token(http)})

    assert response.status_code == 200


def _child_token(http) -> str:
    return http.post(url(http, "auth/token/create"), json={"policies": ["default"], "ttl": "10m"}).json()["auth"][
        "client_token"
    ]


def test_a_body_over_32_mib_is_413(dev_server, kv1_mount):
    size = 33 * 1024 * 1024
    status = _post_oversized_body(dev_server.address, f"/v1/{kv1_mount}/big", dev_server.root_token, size)

    assert status == 413
    listed = requests.request("LIST", f"{dev_server.address}/v1/{kv1_mount}/", headers={"X-Vault-Token": dev_server.root_token})
    assert listed.status_code == 404


def _post_oversized_body(address: str, target: str, token: str, size: int) -> int:
    """Stream a JSON body of `size` bytes, stopping as soon as the server answers (it may answer 413
    before reading everything, then close). Returns the status code the server sent."""
    parts = urlsplit(address)
    head = (
        f"POST {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nX-Vault-Token: {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
    ).encode()
    prefix = b'{"v": "'
    suffix = b'"}'
    filler = b"x" * (size - len(prefix) - len(suffix))
    body = memoryview(prefix + filler + suffix)
    received = b""
    deadline = time.monotonic() + 60
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as connection:
        connection.sendall(head)
        sent = 0
        while time.monotonic() < deadline:
            readable, writable, _ = select.select([connection], [connection] if sent < len(body) else [], [], 1.0)
            if readable:
                try:
                    chunk = connection.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                received += chunk
                if b"\r\n" in received:
                    break
            elif writable:
                try:
                    sent += connection.send(body[sent : sent + 65536])
                except (BrokenPipeError, ConnectionResetError):
                    # The server stopped reading; its answer may already be waiting.
                    readable, _, _ = select.select([connection], [], [], 5.0)
                    if readable:
                        try:
                            received += connection.recv(65536)
                        except ConnectionResetError:
                            pass
                    break
    status_line = received.split(b"\r\n", 1)[0].decode(errors="replace")
    assert status_line.startswith("HTTP/1."), f"no HTTP answer to the oversized body (got {received[:200]!r})"
    return int(status_line.split()[1])


def test_a_body_just_under_the_limit_is_accepted(http, kv1_mount):
    # 1 MiB: far from the limit, to show the limit is not set absurdly low.
    response = http.post(url(http, f"{kv1_mount}/mib"), json={"v": "x" * (1024 * 1024)})

    assert response.status_code == 204


@pytest.mark.parametrize(
    "target",
    [
        "{mount}/data/../x",
        "{mount}/a/../../sys/x",
        "{mount}/%2e%2e/x",
        "{mount}/a/%2E%2E/x",
        "{mount}/a/..%2fx",
        "{mount}//x",
    ],
)
def test_path_traversal_is_400_and_writes_nothing(dev_server, http, kv1_mount, target):
    path = "/v1/" + target.format(mount=kv1_mount)

    status, headers, body = raw_request(dev_server.address, "POST", path, dev_server.root_token, b'{"v": "evil"}')

    assert status == 400, body
    assert headers.get("Content-Type") == "application/json"
    assert "errors" in json.loads(body)
    listed = http.request("LIST", url(http, f"{kv1_mount}/"))
    assert listed.status_code == 404, f"something was written: {listed.text}"
    for candidate in ("x", "a/x", "data/x"):
        assert http.get(url(http, f"{kv1_mount}/{candidate}")).status_code == 404


def test_unsupported_operation_is_405(http):
    # sys/seal-status is read-only.
    response = http.delete(url(http, "sys/seal-status"))

    assert response.status_code == 405


def test_raw_endpoints_have_no_envelope(http):
    status = http.get(url(http, "sys/seal-status")).json()
    health = http.get(url(http, "sys/health")).json()

    assert "data" not in status and status["sealed"] is False
    assert "data" not in health and health["initialized"] is True


def test_a_sealed_server_answers_503(own_dev_server):
    root = {"X-Vault-Token": own_dev_server.root_token}
    assert requests.put(f"{own_dev_server.address}/v1/sys/seal", headers=root).status_code == 204

    response = requests.get(f"{own_dev_server.address}/v1/secret/data/x", headers=root)

    assert assert_error_body(response, 503) == ["Vault is sealed"]
    write = requests.post(f"{own_dev_server.address}/v1/secret/data/x", headers=root, json={"data": {"v": "1"}})
    assert assert_error_body(write, 503) == ["Vault is sealed"]
    # The unauthenticated status endpoints still answer.
    assert requests.get(f"{own_dev_server.address}/v1/sys/seal-status").json()["sealed"] is True
