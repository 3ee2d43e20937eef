"""Response wrapping through hvac: sys/wrapping/{wrap,lookup,unwrap,rewrap}, wrapped reads and wrapped
token creation."""

import hvac
import pytest

from conftest import unique

NOT_VALID = "wrapping token is not valid or does not exist"


def test_wrap_returns_only_wrap_info(client):
    wrapped = client.sys.wrap(payload={"secret": "s3cr3t", "n": 1}, ttl=60)

    info = wrapped["wrap_info"]
    assert info["token"] and info["accessor"]
    assert info["ttl"] == 60
    assert info["creation_path"] == "sys/wrapping/wrap"
    assert info["creation_time"]
    assert wrapped["data"] is None
    assert wrapped["auth"] is None


def test_lookup_is_unauthenticated(client, dev_server):
    token = client.sys.wrap(payload={"k": "v"}, ttl="5m")["wrap_info"]["token"]

    anonymous = dev_server.client()
    looked_up = anonymous.write_data("sys/wrapping/lookup", data={"token": token})["data"]

    assert looked_up["creation_path"] == "sys/wrapping/wrap"
    assert looked_up["creation_ttl"] == 300
    assert looked_up["creation_time"]


def test_unwrap_once_only(client):
    token = client.sys.wrap(payload={"secret": "s3cr3t"}, ttl=60)["wrap_info"]["token"]

    unwrapped = client.sys.unwrap(token)

    assert unwrapped["data"] == {"secret": "s3cr3t"}
    with pytest.raises(hvac.exceptions.InvalidRequest, match=NOT_VALID):
        client.sys.unwrap(token)
    with pytest.raises(hvac.exceptions.InvalidRequest, match=NOT_VALID):
        client.write_data("sys/wrapping/lookup", data={"token": token})


def test_unwrap_with_the_wrapping_token_as_the_client_token(client, client_for):
    token = client.sys.wrap(payload={"a": "b"}, ttl=60)["wrap_info"]["token"]

    assert client_for(token).sys.unwrap()["data"] == {"a": "b"}


def test_unwrap_of_a_bogus_token(client):
    with pytest.raises(hvac.exceptions.InvalidRequest, match=NOT_VALID):
        client.sys.unwrap("s.notawrappingtokenatall1234")


def test_a_default_policy_token_can_wrap_and_unwrap(client, client_for):
    plain = client_for(client.auth.token.create(policies=["default"], ttl="10m")["auth"]["client_token"])

    token = plain.sys.wrap(payload={"from": "plain"}, ttl=30)["wrap_info"]["token"]

    assert plain.sys.unwrap(token)["data"] == {"from": "plain"}


def test_rewrap(client):
    old = client.sys.wrap(payload={"keep": "me"}, ttl=120)["wrap_info"]["token"]

    rewrapped = client.write_data("sys/wrapping/rewrap", data={"token": old})["wrap_info"]

    assert rewrapped["token"] != old
    assert rewrapped["ttl"] == 120
    assert rewrapped["creation_path"] == "sys/wrapping/wrap"
    with pytest.raises(hvac.exceptions.InvalidRequest, match=NOT_VALID):
        client.sys.unwrap(old)
    assert client.sys.unwrap(rewrapped["token"])["data"] == {"keep": "me"}


def test_wrap_ttl_as_a_duration_string(client):
    response = client.adapter.post("/v1/sys/wrapping/wrap", json={"x": "y"}, headers={"X-Vault-Wrap-TTL": "5m"})

    assert response["wrap_info"]["ttl"] == 300


def test_wrapped_kv1_read(client, kv1_mount):
    client.secrets.kv.v1.create_or_update_secret(path="w", secret={"pw": "hunter2"}, mount_point=kv1_mount)

    wrapped = client.read(f"{kv1_mount}/w", wrap_ttl="30s")

    assert wrapped["data"] is None
    assert wrapped["wrap_info"]["ttl"] == 30
    assert wrapped["wrap_info"]["creation_path"] == f"{kv1_mount}/w"
    unwrapped = client.sys.unwrap(wrapped["wrap_info"]["token"])
    assert unwrapped["data"] == {"pw": "hunter2"}


def test_wrapped_kv2_read(client, kv2_mount):
    client.secrets.kv.v2.create_or_update_secret(path="w", secret={"pw": "hunter2"}, mount_point=kv2_mount)

    wrapped = client.adapter.get(f"/v1/{kv2_mount}/data/w", headers={"X-Vault-Wrap-TTL": "1m"})

    assert wrapped["wrap_info"]["ttl"] == 60
    assert wrapped["wrap_info"]["creation_path"] == f"{kv2_mount}/data/w"
    assert client.sys.unwrap(wrapped["wrap_info"]["token"])["data"]["data"] == {"pw": "hunter2"}


def test_wrapped_token_create(client, client_for):
    policy = unique("wrapped-token")
    client.sys.create_or_update_acl_policy(name=policy, policy='path "nothing" { capabilities = ["read"] }')

    wrapped = client.auth.token.create(policies=[policy], ttl="10m", wrap_ttl="60s")

    info = wrapped["wrap_info"]
    assert wrapped["auth"] is None
    assert info["ttl"] == 60
    assert info["creation_path"] == "auth/token/create"
    assert info["wrapped_accessor"]
    auth = client.sys.unwrap(info["token"])["auth"]
    assert auth["accessor"] == info["wrapped_accessor"]
    assert auth["policies"] == sorted(["default", policy])
    looked_up = client_for(auth["client_token"]).auth.token.lookup_self()["data"]
    assert looked_up["policies"] == sorted(["default", policy])


def test_wrapped_lookup_self(client):
    wrapped = client.lookup_token(wrap_ttl="30s")

    assert wrapped["wrap_info"]["creation_path"] == "auth/token/lookup-self"
    assert client.sys.unwrap(wrapped["wrap_info"]["token"])["data"]["policies"] == ["root"]


def test_auth_cubbyhole_logs_in_with_a_wrapped_token(client, dev_server):
    wrapped = client.auth.token.create(policies=["default"], ttl="10m", wrap_ttl="60s")["wrap_info"]["token"]
    fresh = dev_server.client()

    fresh.auth_cubbyhole(wrapped)

    assert fresh.is_authenticated() is True
    assert fresh.auth.token.lookup_self()["data"]["policies"] == ["default"]
