"""The system backend through hvac: seal status, health, leader, init and unseal, seal, mounts,
auth listing, keyring rotation and capabilities."""

import hvac
import pytest

from conftest import token_with_policy, unique, wait_until

SEAL_STATUS_FIELDS = {
    "type", "initialized", "sealed", "t", "n", "progress", "nonce", "version",
    "build_date", "migration", "recovery_seal", "storage_type",
}
HEALTH_FIELDS = {
    "initialized", "sealed", "standby", "performance_standby", "replication_performance_mode",
    "replication_dr_mode", "server_time_utc", "version",
}


# Seal status, health, leader


def test_seal_status_of_an_unsealed_dev_server(client):
    status = client.sys.read_seal_status()

    assert SEAL_STATUS_FIELDS <= status.keys()
    assert status["type"] == "shamir"
    assert status["initialized"] is True
    assert status["sealed"] is False
    assert status["t"] == 1 and status["n"] == 1
    assert status["progress"] == 0
    assert status["cluster_name"] and status["cluster_id"]
    assert client.sys.is_sealed() is False
    assert client.sys.is_initialized() is True


def test_health_of_the_active_node(client):
    response = client.sys.read_health_status(method="GET")

    # hvac's JSON adapter returns the decoded body for a 200, the raw response otherwise.
    assert isinstance(response, dict), f"expected 200, got {response.status_code}: {response.text}"
    assert HEALTH_FIELDS <= response.keys()
    assert response["initialized"] is True
    assert response["sealed"] is False
    assert response["standby"] is False
    assert isinstance(response["server_time_utc"], int)


def test_health_head_answers_200_without_body(client):
    response = client.sys.read_health_status(method="HEAD")

    assert response.status_code == 200
    assert response.content == b""


def test_health_with_standbyok_and_a_custom_active_code(client):
    with_standby_ok = client.sys.read_health_status(method="GET", standby_ok=True)
    custom = client.sys.read_health_status(method="GET", active_code=299)

    assert isinstance(with_standby_ok, dict)
    assert custom.status_code == 299
    assert custom.json()["sealed"] is False


def test_leader_without_ha(client):
    leader = client.sys.read_leader_status()

    assert leader["ha_enabled"] is False


# Init, unseal, restart: the config server (TLS, SQLite, not initialised)


def test_config_server_initialise_unseal_and_keep_data_across_a_restart(config_server):
    anonymous = config_server.client()
    assert config_server.address.startswith("https://")
    assert anonymous.sys.is_initialized() is False

    initialised = anonymous.sys.initialize(secret_shares=5, secret_threshold=3)
    keys, root_token = initialised["keys"], initialised["root_token"]
    assert len(keys) == 5 and len(initialised["keys_base64"]) == 5
    assert root_token
    assert anonymous.sys.is_initialized() is True
    assert anonymous.sys.is_sealed() is True
    status = anonymous.sys.read_seal_status()
    assert (status["t"], status["n"], status["progress"]) == (3, 5, 0)

    for n_submitted, key in enumerate(keys[:3], start=1):
        status = anonymous.sys.submit_unseal_key(key=key)
        if n_submitted < 3:
            assert status["sealed"] is True
            assert status["progress"] == n_submitted
    assert status["sealed"] is False
    assert status["progress"] == 0
    assert anonymous.sys.is_sealed() is False

    root = config_server.client(root_token)
    mount = unique("persist")
    root.sys.enable_secrets_engine("kv", path=mount, options={"version": "2"})
    root.secrets.kv.v2.create_or_update_secret(path="app", secret={"password": "p1"}, mount_point=mount)
    root.sys.create_or_update_acl_policy(name="persisted", policy='path "x/*" { capabilities = ["read"] }')
    child_token = root.auth.token.create(policies=["persisted"], ttl="1h")["auth"]["client_token"]

    config_server.restart()

    anonymous = config_server.client()
    assert anonymous.sys.is_initialized() is True
    assert anonymous.sys.is_sealed() is True
    with pytest.raises(hvac.exceptions.VaultDown):
        config_server.client(root_token).auth.token.lookup_self()
    # Base64 keys are accepted as well as hex.
    status = anonymous.sys.submit_unseal_keys(initialised["keys_base64"][2:5])
    assert status["sealed"] is False

    root = config_server.client(root_token)
    secret = root.secrets.kv.v2.read_secret_version(path="app", mount_point=mount, raise_on_deleted_version=True)
    assert secret["data"]["data"] == {"password": "p1"}
    assert "persisted" in root.sys.list_acl_policies()["data"]["keys"]
    assert config_server.client(child_token).auth.token.lookup_self()["data"]["policies"] == ["default", "persisted"]


def test_initialise_twice_is_refused(config_server):
    anonymous = config_server.client()
    anonymous.sys.initialize(secret_shares=1, secret_threshold=1)

    with pytest.raises(hvac.exceptions.InvalidRequest):
        anonymous.sys.initialize(secret_shares=1, secret_threshold=1)


def test_unseal_reset_discards_submitted_keys(config_server):
    anonymous = config_server.client()
    keys = anonymous.sys.initialize(secret_shares=3, secret_threshold=2)["keys"]

    assert anonymous.sys.submit_unseal_key(key=keys[0])["progress"] == 1
    reset = anonymous.sys.submit_unseal_key(reset=True)
    assert reset["progress"] == 0
    assert reset["sealed"] is True

    assert anonymous.sys.submit_unseal_key(key=keys[1])["progress"] == 1
    assert anonymous.sys.submit_unseal_key(key=keys[2])["sealed"] is False


def test_a_wrong_unseal_key_does_not_unseal(config_server):
    anonymous = config_server.client()
    keys = anonymous.sys.initialize(secret_shares=3, secret_threshold=2)["keys"]
    anonymous.sys.submit_unseal_key(key=keys[0])

    # A corrupted second share: the combined key cannot decrypt the keyring, and Vault answers 400.
    corrupted = format(int(keys[1][:2], 16) ^ 0xFF, "02x") + keys[1][2:]
    with pytest.raises(hvac.exceptions.InvalidRequest):
        anonymous.sys.submit_unseal_key(key=corrupted)
    assert anonymous.sys.is_sealed() is True


def test_health_of_an_uninitialised_then_sealed_server(config_server):
    anonymous = config_server.client()

    assert anonymous.sys.read_health_status(method="GET").status_code == 501
    assert anonymous.sys.read_health_status(method="GET", uninit_code=299).status_code == 299

    anonymous.sys.initialize(secret_shares=1, secret_threshold=1)
    sealed = anonymous.sys.read_health_status(method="GET")
    assert sealed.status_code == 503
    assert sealed.json()["sealed"] is True
    assert sealed.json()["initialized"] is True
    assert anonymous.sys.read_health_status(method="GET", sealed_code=298).status_code == 298
    assert anonymous.sys.read_health_status(method="HEAD").status_code == 503


def test_requests_to_an_uninitialised_server_fail(config_server):
    with pytest.raises((hvac.exceptions.VaultDown, hvac.exceptions.VaultNotInitialized)):
        config_server.client("some-token").secrets.kv.v1.read_secret(path="x", mount_point="secret")


# Seal


def test_seal_then_requests_are_refused_until_unsealed(own_dev_server):
    root = own_dev_server.client(own_dev_server.root_token)

    response = root.sys.seal()

    assert response.status_code == 204
    assert root.sys.is_sealed() is True
    with pytest.raises(hvac.exceptions.VaultDown, match="Vault is sealed"):
        root.secrets.kv.v2.read_secret_version(path="anything", mount_point="secret", raise_on_deleted_version=True)
    with pytest.raises(hvac.exceptions.VaultDown):
        root.auth.token.lookup_self()
    assert root.sys.read_health_status(method="GET").status_code == 503

    status = root.sys.submit_unseal_key(key=own_dev_server.printed_unseal_key())
    assert status["sealed"] is False
    assert root.auth.token.lookup_self()["data"]["id"] == own_dev_server.root_token


def test_seal_needs_sudo(client, client_for):
    token = token_with_policy(client, unique("seal-no-sudo"), 'path "sys/seal" { capabilities = ["update"] }')

    with pytest.raises(hvac.exceptions.Forbidden):
        client_for(token).sys.seal()
    assert client.sys.is_sealed() is False


# Mounts


def test_enable_list_and_disable_a_secrets_engine(client):
    path = unique("mnt")

    enabled = client.sys.enable_secrets_engine(
        "kv", path=path, description="team secrets", options={"version": "2"}
    )

    assert enabled.status_code == 204
    mounts = client.sys.list_mounted_secrets_engines()
    # hvac helpers read both the top level and "data" of this legacy endpoint.
    assert f"{path}/" in mounts
    assert f"{path}/" in mounts["data"]
    entry = mounts["data"][f"{path}/"]
    assert entry["type"] == "kv"
    assert entry["description"] == "team secrets"
    assert entry["options"] == {"version": "2"}
    assert entry["accessor"]
    assert {"default_lease_ttl", "max_lease_ttl"} <= entry["config"].keys()
    assert client.sys.retrieve_mount_option(path, "version") == "2"
    for builtin in ("sys/", "cubbyhole/"):
        assert builtin in mounts["data"]

    disabled = client.sys.disable_secrets_engine(path)

    assert disabled.status_code == 204
    assert f"{path}/" not in client.sys.list_mounted_secrets_engines()["data"]


def test_enable_on_a_taken_path_is_refused(client, kv1_mount):
    with pytest.raises(hvac.exceptions.InvalidRequest):
        client.sys.enable_secrets_engine("kv", path=kv1_mount)


def test_a_disabled_mount_loses_its_data(client):
    path = unique("gone")
    client.sys.enable_secrets_engine("kv", path=path, options={"version": "1"})
    client.secrets.kv.v1.create_or_update_secret(path="k", secret={"v": "1"}, mount_point=path)

    client.sys.disable_secrets_engine(path)
    client.sys.enable_secrets_engine("kv", path=path, options={"version": "1"})

    with pytest.raises(hvac.exceptions.InvalidPath):
        client.secrets.kv.v1.read_secret(path="k", mount_point=path)
    client.sys.disable_secrets_engine(path)


def test_tune_and_read_mount_configuration(client, kv2_mount):
    before = client.sys.read_mount_configuration(kv2_mount)
    # Untuned mounts report the system defaults from the server config (768h in dev mode).
    assert before["data"]["default_lease_ttl"] == 2764800
    assert before["data"]["max_lease_ttl"] == 2764800

    tuned = client.sys.tune_mount_configuration(
        kv2_mount, default_lease_ttl="1h", max_lease_ttl="768h", description="tuned"
    )

    assert tuned.status_code == 204
    after = client.sys.read_mount_configuration(kv2_mount)
    assert after["data"]["default_lease_ttl"] == 3600
    assert after["data"]["max_lease_ttl"] == 2764800
    assert after["data"]["description"] == "tuned"
    mount = client.sys.list_mounted_secrets_engines()["data"][f"{kv2_mount}/"]
    assert mount["config"]["default_lease_ttl"] == 3600
    assert mount["description"] == "tuned"


def test_tune_accepts_integer_seconds(client, kv1_mount):
    client.sys.tune_mount_configuration(kv1_mount, default_lease_ttl=120, max_lease_ttl=600)

    config = client.sys.read_mount_configuration(kv1_mount)["data"]
    assert (config["default_lease_ttl"], config["max_lease_ttl"]) == (120, 600)


def test_move_backend_keeps_the_data(client):
    source, destination = unique("from"), unique("to")
    client.sys.enable_secrets_engine("kv", path=source, options={"version": "1"})
    client.secrets.kv.v1.create_or_update_secret(path="k", secret={"v": "moved"}, mount_point=source)

    client.sys.move_backend(source, destination)

    # Vault >= 1.10 may finish the move asynchronously (it returns a migration id): poll for it.
    def moved():
        mounts = client.sys.list_mounted_secrets_engines()["data"]
        return f"{destination}/" in mounts and f"{source}/" not in mounts

    wait_until(moved, 10, "the remount to finish")
    assert client.secrets.kv.v1.read_secret(path="k", mount_point=destination)["data"] == {"v": "moved"}
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.secrets.kv.v1.read_secret(path="k", mount_point=source)
    client.sys.disable_secrets_engine(destination)


def test_list_auth_methods_has_the_token_method(client):
    methods = client.sys.list_auth_methods()

    assert "token/" in methods
    assert "token/" in methods["data"]
    token = methods["data"]["token/"]
    assert token["type"] == "token"
    assert token["accessor"]


# Keyring


def test_rotate_encryption_key_increments_the_term(own_dev_server):
    root = own_dev_server.client(own_dev_server.root_token)
    before = root.sys.get_encryption_key_status()
    assert before["data"]["term"] == 1
    assert before["term"] == 1  # key-status is one of the legacy "data at the top level" endpoints

    rotated = root.sys.rotate_encryption_key()

    assert rotated.status_code == 204
    after = root.sys.get_encryption_key_status()
    assert after["data"]["term"] == 2
    assert after["data"]["install_time"]
    # Data written under term 1 is still readable.
    assert root.auth.token.lookup_self()["data"]["id"] == own_dev_server.root_token


# Capabilities


def test_capabilities_of_a_token_an_accessor_and_self(client, client_for):
    mount = unique("caps")
    policy = f"""
path "{mount}/readable" {{ capabilities = ["read", "list"] }}
path "{mount}/writable/*" {{ capabilities = ["create", "update"] }}
"""
    created = client.auth.token.create(policies=[_policy(client, policy)], ttl="10m")["auth"]
    readable, writable, hidden = f"{mount}/readable", f"{mount}/writable/x", f"{mount}/hidden"

    by_token = client.sys.get_capabilities(paths=[readable, writable, hidden], token=created["client_token"])
    by_accessor = client.sys.get_capabilities(paths=[readable], accessor=created["accessor"])
    by_self = client_for(created["client_token"]).sys.get_capabilities(paths=[writable])
    root_self = client.sys.get_capabilities(paths=[readable])

    assert sorted(by_token[readable]) == ["list", "read"]
    assert sorted(by_token["data"][writable]) == ["create", "update"]
    assert by_token[hidden] == ["deny"]
    assert sorted(by_accessor["capabilities"]) == ["list", "read"]
    assert sorted(by_self["capabilities"]) == ["create", "update"]
    assert root_self["capabilities"] == ["root"]


def _policy(client, text: str) -> str:
    name = unique("pol")
    client.sys.create_or_update_acl_policy(name=name, policy=text)
    return name
