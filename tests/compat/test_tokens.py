"""The token auth method through hvac: create, lookup, renew, revoke, roles, TTL rules, use counts,
batch tokens."""

import hvac
import pytest

from conftest import unique

TOKEN_LOOKUP_FIELDS = {
    "accessor", "creation_time", "creation_ttl", "display_name", "entity_id", "expire_time",
    "explicit_max_ttl", "id", "issue_time", "meta", "num_uses", "orphan", "path", "policies",
    "renewable", "ttl", "type",
}


@pytest.fixture(scope="module")
def creator(dev_server):
    """A policy that lets a token create child tokens (the default policy does not)."""
    name = unique("token-creator")
    dev_server.client(dev_server.root_token).sys.create_or_update_acl_policy(
        name=name, policy='path "auth/token/create" { capabilities = ["create", "update"] }'
    )
    return name


@pytest.fixture
def two_policies(client):
    names = sorted([unique("zeta"), unique("alpha")], reverse=True)
    for name in names:
        client.sys.create_or_update_acl_policy(name=name, policy='path "nothing/*" { capabilities = ["read"] }')
    return names


def test_create_sorts_policies_and_adds_default(client, two_policies):
    auth = client.auth.token.create(policies=two_policies, ttl="1h", meta={"team": "a"})["auth"]

    assert auth["policies"] == sorted(two_policies + ["default"])
    assert auth["token_policies"] == sorted(two_policies + ["default"])
    assert auth["client_token"] and auth["accessor"]
    assert auth["client_token"] != auth["accessor"]
    assert auth["lease_duration"] == 3600
    assert auth["renewable"] is True
    assert auth["token_type"] == "service"
    assert auth["orphan"] is False
    assert auth["metadata"] == {"team": "a"}


def test_create_with_no_default_policy(client, two_policies):
    auth = client.auth.token.create(policies=two_policies, no_default_policy=True, ttl="1h")["auth"]

    assert auth["policies"] == sorted(two_policies)


def test_create_orphan_and_no_parent(client):
    orphan = client.auth.token.create_orphan(policies=["default"], ttl="1h")["auth"]
    no_parent = client.auth.token.create(policies=["default"], no_parent=True, ttl="1h")["auth"]

    assert orphan["orphan"] is True
    assert no_parent["orphan"] is True
    assert client.auth.token.lookup(orphan["client_token"])["data"]["orphan"] is True


def test_create_with_a_chosen_id(client):
    chosen = unique("my-token")

    auth = client.auth.token.create(id=chosen, policies=["default"], ttl="1h")["auth"]

    assert auth["client_token"] == chosen
    assert client.auth.token.lookup(chosen)["data"]["id"] == chosen


def test_lookup_self_of_the_root_token(client, dev_server):
    data = client.auth.token.lookup_self()["data"]

    assert TOKEN_LOOKUP_FIELDS <= data.keys()
    assert data["id"] == dev_server.root_token
    assert data["policies"] == ["root"]
    assert data["ttl"] == 0
    assert data["expire_time"] is None
    assert data["orphan"] is True
    # The legacy client method goes to the same endpoint.
    assert client.lookup_token()["data"]["id"] == dev_server.root_token


def test_lookup_a_token_and_by_accessor(client, client_for):
    auth = client.auth.token.create(policies=["default"], ttl="1h", display_name="ci")["auth"]

    by_token = client.auth.token.lookup(auth["client_token"])["data"]
    by_accessor = client.auth.token.lookup_accessor(auth["accessor"])["data"]
    by_self = client_for(auth["client_token"]).auth.token.lookup_self()["data"]

    assert TOKEN_LOOKUP_FIELDS <= by_token.keys()
    assert by_token["id"] == auth["client_token"]
    assert by_token["accessor"] == auth["accessor"]
    assert by_token["policies"] == ["default"]
    assert by_token["creation_ttl"] == 3600
    assert 3590 <= by_token["ttl"] <= 3600
    assert by_token["expire_time"]
    assert by_token["display_name"] == "token-ci"
    assert by_token["path"] == "auth/token/create"
    assert by_token["type"] == "service"
    assert by_token["num_uses"] == 0
    assert by_token["renewable"] is True
    # Lookup by accessor never reveals the token itself.
    assert by_accessor["id"] == ""
    assert by_accessor["accessor"] == auth["accessor"]
    assert by_accessor["policies"] == ["default"]
    assert by_self["id"] == auth["client_token"]
    assert client.lookup_token(auth["accessor"], accessor=True)["data"]["id"] == ""


def test_lookup_of_an_unknown_token_is_forbidden_and_of_an_unknown_accessor_invalid(client):
    with pytest.raises(hvac.exceptions.Forbidden):
        client.auth.token.lookup("s.doesnotexistdoesnotexist12")
    with pytest.raises(hvac.exceptions.InvalidRequest):
        client.auth.token.lookup_accessor("doesnotexistdoesnotexist1234")


def test_renew_with_and_without_increment(client):
    token = client.auth.token.create(policies=["default"], ttl="1h")["auth"]["client_token"]

    with_increment = client.auth.token.renew(token, increment="2h")["auth"]
    without_increment = client.auth.token.renew(token)["auth"]
    legacy = client.renew_token(token, increment=600)["auth"]

    assert with_increment["lease_duration"] == 7200
    assert with_increment["client_token"] == token
    assert without_increment["lease_duration"] == 3600
    assert legacy["lease_duration"] == 600
    assert 590 <= client.auth.token.lookup(token)["data"]["ttl"] <= 600


def test_renew_self(client, client_for):
    token = client.auth.token.create(policies=["default"], ttl="1h")["auth"]["client_token"]

    renewed = client_for(token).auth.token.renew_self(increment="30m")["auth"]

    assert renewed["lease_duration"] == 1800


def test_a_non_renewable_token_cannot_be_renewed(client):
    token = client.auth.token.create(policies=["default"], ttl="1h", renewable=False)["auth"]["client_token"]

    with pytest.raises(hvac.exceptions.InvalidRequest):
        client.auth.token.renew(token)


def test_revoke_revokes_the_children(client, client_for, creator):
    parent = client.auth.token.create(policies=[creator], ttl="1h")["auth"]["client_token"]
    child = client_for(parent).auth.token.create(policies=[creator], ttl="1h")["auth"]["client_token"]
    grandchild = client_for(child).auth.token.create(policies=["default"], ttl="1h")["auth"]["client_token"]

    response = client.auth.token.revoke(parent)

    assert response.status_code == 204
    for token in (parent, child, grandchild):
        with pytest.raises(hvac.exceptions.Forbidden):
            client.auth.token.lookup(token)
        assert client_for(token).is_authenticated() is False


def test_revoke_self(client, client_for):
    token = client.auth.token.create(policies=["default"], ttl="1h")["auth"]["client_token"]
    own = client_for(token)
    assert own.is_authenticated() is True

    response = own.auth.token.revoke_self()

    assert response.status_code == 204
    assert own.is_authenticated() is False
    with pytest.raises(hvac.exceptions.Forbidden):
        own.auth.token.lookup_self()


def test_revoke_accessor(client):
    auth = client.auth.token.create(policies=["default"], ttl="1h")["auth"]

    response = client.auth.token.revoke_accessor(auth["accessor"])

    assert response.status_code == 204
    with pytest.raises(hvac.exceptions.Forbidden):
        client.auth.token.lookup(auth["client_token"])


def test_revoke_and_orphan_children(client, client_for, creator):
    parent = client.auth.token.create(policies=[creator], ttl="1h")["auth"]["client_token"]
    child = client_for(parent).auth.token.create(policies=["default"], ttl="1h")["auth"]["client_token"]

    client.auth.token.revoke_and_orphan_children(parent)

    with pytest.raises(hvac.exceptions.Forbidden):
        client.auth.token.lookup(parent)
    looked_up = client.auth.token.lookup(child)["data"]
    assert looked_up["orphan"] is True
    assert client_for(child).is_authenticated() is True


def test_a_child_cannot_get_policies_its_parent_lacks(client, client_for, two_policies, creator):
    parent = client.auth.token.create(policies=[creator, two_policies[0]], ttl="1h")["auth"]["client_token"]

    # Vault: 400 "child policies must be subset of parent".
    with pytest.raises(hvac.exceptions.InvalidRequest):
        client_for(parent).auth.token.create(policies=[two_policies[1]], ttl="1h")


# Token roles


def test_token_role_lifecycle(client, two_policies):
    role = unique("role")

    created = client.auth.token.create_or_update_role(role, allowed_policies=[two_policies[0]], orphan=True)

    assert created.status_code == 204
    read = client.auth.token.read_role(role)["data"]
    assert read["name"] == role
    assert read["allowed_policies"] == [two_policies[0]]
    assert read["orphan"] is True
    assert read["renewable"] is True
    assert role in client.auth.token.list_roles()["data"]["keys"]

    auth = client.auth.token.create(role_name=role, policies=[two_policies[0]], ttl="1h")["auth"]
    assert auth["policies"] == sorted(["default", two_policies[0]])
    assert auth["orphan"] is True
    looked_up = client.auth.token.lookup(auth["client_token"])["data"]
    assert looked_up["path"] == f"auth/token/create/{role}"
    assert looked_up["role"] == role

    with pytest.raises(hvac.exceptions.InvalidRequest):
        client.auth.token.create(role_name=role, policies=[two_policies[1]], ttl="1h")

    deleted = client.auth.token.delete_role(role)
    assert deleted.status_code == 204
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.auth.token.read_role(role)


def test_token_role_with_a_period(client):
    role = unique("periodic-role")
    client.auth.token.create_or_update_role(role, allowed_policies=["default"], token_period="20m")

    auth = client.auth.token.create(role_name=role, policies=["default"])["auth"]

    assert auth["lease_duration"] == 1200
    client.auth.token.delete_role(role)


# TTL rules


def test_explicit_max_ttl_caps_the_ttl(client):
    auth = client.auth.token.create(policies=["default"], ttl="30m", explicit_max_ttl="5m")["auth"]

    assert auth["lease_duration"] == 300
    looked_up = client.auth.token.lookup(auth["client_token"])["data"]
    assert looked_up["explicit_max_ttl"] == 300
    # Renewal cannot go past the explicit max.
    renewed = client.auth.token.renew(auth["client_token"], increment="1h")
    assert renewed["auth"]["lease_duration"] <= 300


def test_periodic_token(client):
    auth = client.auth.token.create(policies=["default"], period="30m")["auth"]

    assert auth["lease_duration"] == 1800
    assert client.auth.token.lookup(auth["client_token"])["data"]["period"] == 1800
    # A periodic token renews to its period; the increment is ignored.
    renewed = client.auth.token.renew(auth["client_token"], increment="5m")["auth"]
    assert renewed["lease_duration"] == 1800


def test_default_ttl_comes_from_the_mount(client):
    auth = client.auth.token.create(policies=["default"])["auth"]

    # The dev server's default lease TTL is Vault's default, 768h.
    assert auth["lease_duration"] == 2764800


def test_num_uses(client, client_for):
    auth = client.auth.token.create(policies=["default"], ttl="1h", num_uses=2)["auth"]
    limited = client_for(auth["client_token"])

    first = limited.auth.token.lookup_self()["data"]
    limited.auth.token.lookup_self()

    assert first["num_uses"] in (1, 2)  # Vault shows the count after this request's use
    with pytest.raises(hvac.exceptions.Forbidden):
        limited.auth.token.lookup_self()
    with pytest.raises(hvac.exceptions.Forbidden):
        client.auth.token.lookup(auth["client_token"])


# Batch tokens


def test_batch_token(client, client_for, creator):
    auth = client.auth.token.create(policies=[creator], type="batch", ttl="10m")["auth"]
    token = auth["client_token"]
    batch = client_for(token)

    assert auth["token_type"] == "batch"
    assert auth["accessor"] == ""
    assert auth["renewable"] is False
    assert auth["lease_duration"] == 600
    looked_up = batch.auth.token.lookup_self()["data"]
    assert looked_up["type"] == "batch"
    assert looked_up["policies"] == sorted(["default", creator])
    assert 590 <= looked_up["ttl"] <= 600
    # Vault: 400 "batch tokens cannot be renewed", "batch tokens cannot create more tokens".
    with pytest.raises(hvac.exceptions.InvalidRequest):
        batch.auth.token.renew_self()
    with pytest.raises(hvac.exceptions.InvalidRequest):
        batch.auth.token.create(policies=["default"], ttl="1m")


def test_a_batch_token_dies_with_its_parent(client, client_for, creator):
    parent = client.auth.token.create(policies=[creator], ttl="1h")["auth"]["client_token"]
    batch = client_for(parent).auth.token.create(policies=["default"], type="batch", ttl="10m")["auth"]["client_token"]
    assert client_for(batch).is_authenticated() is True

    client.auth.token.revoke(parent)

    assert client_for(batch).is_authenticated() is False


def test_is_authenticated_false_for_a_revoked_or_unknown_token(client, client_for):
    token = client.auth.token.create(policies=["default"], ttl="1h")["auth"]["client_token"]
    client.auth.token.revoke(token)

    assert client_for(token).is_authenticated() is False
    assert client_for("not-a-real-token").is_authenticated() is False
    assert client.is_authenticated() is True


def test_unknown_policies_are_kept_with_a_warning(client):
    missing = unique("no-such-policy")

    response = client.auth.token.create(policies=[missing], ttl="10m")

    assert response["auth"]["policies"] == sorted(["default", missing])
    assert any(missing in warning for warning in response["warnings"] or []), response["warnings"]
