"""Metrics scraped and parsed with the Prometheus client library's own text-format parser, and
secrets that travel with canary values (a userpass password, a KV v2 value read through response
wrapping), which the suite-wide log scan (scripts/scan-canaries) must not find in any log."""

import hvac
import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import canary, wait_until


def scrape(server, token: str) -> list:
    response = requests.get(
        f"{server.address}/v1/sys/metrics", params={"format": "prometheus"}, headers={"X-Vault-Token": token}, timeout=10
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    # The parser raises on anything that is not the Prometheus text format.
    return [sample for family in text_string_to_metric_families(response.text) for sample in family.samples]


def live_counts(server, token: str) -> dict:
    """`(family, mount) -> value` of ward_token_count and ward_lease_count."""
    return {
        (sample.name, sample.labels.get("mount")): sample.value
        for sample in scrape(server, token)
        if sample.name in ("ward_token_count", "ward_lease_count")
    }


def test_token_gauges_follow_logins_creations_and_revocations(own_dev_server):
    root = own_dev_server.root_token
    client = own_dev_server.client(root)
    # The server's sweeper counts what storage holds once after start-up (within a second or so).
    baseline = wait_until(lambda: live_counts(own_dev_server, root) or None, 10, "the token count after start-up")
    assert baseline == {("ward_token_count", "auth/token/"): 1.0}, "the root token alone"

    client.sys.enable_auth_method("userpass", path="people")
    password = canary("userpass-password")
    client.auth.userpass.create_or_update_user(username="ana", password=password, mount_point="people")
    logins = [
        own_dev_server.client().auth.userpass.login("ana", password, mount_point="people")["auth"]["client_token"]
        for _ in range(3)
    ]
    created = [client.auth.token.create(ttl="1h")["auth"]["client_token"] for _ in range(2)]
    client.auth.token.revoke(created[0])
    own_dev_server.client(logins[0]).auth.token.revoke_self()

    assert live_counts(own_dev_server, root) == {
        ("ward_token_count", "auth/token/"): 2.0,
        ("ward_token_count", "auth/people/"): 2.0,
    }
    # A wrong password is a failed login, counted by mount, and issues nothing.
    try:
        own_dev_server.client().auth.userpass.login("ana", canary("wrong-password"), mount_point="people")
        raise AssertionError("a wrong password logged in")
    except hvac.exceptions.InvalidRequest:
        pass
    samples = scrape(own_dev_server, root)
    failures = [s for s in samples if s.name == "ward_login_failures_total" and s.labels.get("mount") == "auth/people/"]
    assert failures and failures[0].value == 1.0, failures
    assert live_counts(own_dev_server, root)[("ward_token_count", "auth/people/")] == 2.0


def test_a_canary_secret_round_trips_through_response_wrapping(client, kv2_mount):
    value = canary("kv2-wrapped")
    client.secrets.kv.v2.create_or_update_secret(path="wrapped", secret={"api_key": value}, mount_point=kv2_mount)
    wrapped = client.read(f"{kv2_mount}/data/wrapped", wrap_ttl="60s")
    token = wrapped["wrap_info"]["token"]
    assert value not in str(wrapped)
    unwrapped = client.sys.unwrap(token)
    assert unwrapped["data"]["data"]["api_key"] == value
