"""The KV secrets engine (v1 and v2), the `generic` alias and cubbyhole, through hvac."""

import hvac
import pytest

from conftest import canary, unique


def read_version(client, mount, path, version=None):
    return client.secrets.kv.v2.read_secret_version(
        path=path, version=version, mount_point=mount, raise_on_deleted_version=True
    )


# KV v1


def test_kv1_write_read_delete(client, kv1_mount):
    password = canary("kv1-password")
    written = client.secrets.kv.v1.create_or_update_secret(
        path="app/db", secret={"username": "u", "password": password, "port": 5432}, mount_point=kv1_mount
    )

    assert written.status_code == 204
    read = client.secrets.kv.v1.read_secret(path="app/db", mount_point=kv1_mount)
    assert read["data"] == {"username": "u", "password": password, "port": 5432}
    assert read["lease_id"] == ""
    assert read["renewable"] is False
    # KV v1 reports the mount's default TTL as a refresh hint (768h in dev mode).
    assert read["lease_duration"] == 2764800

    deleted = client.secrets.kv.v1.delete_secret(path="app/db", mount_point=kv1_mount)

    assert deleted.status_code == 204
    with pytest.raises(hvac.exceptions.InvalidPath) as missing:
        client.secrets.kv.v1.read_secret(path="app/db", mount_point=kv1_mount)
    assert missing.value.errors == []


def test_kv1_write_replaces_the_whole_secret(client, kv1_mount):
    client.secrets.kv.v1.create_or_update_secret(path="s", secret={"a": "1", "b": "2"}, mount_point=kv1_mount)
    client.secrets.kv.v1.create_or_update_secret(path="s", secret={"c": "3"}, mount_point=kv1_mount)

    assert client.secrets.kv.v1.read_secret(path="s", mount_point=kv1_mount)["data"] == {"c": "3"}


def test_kv1_lease_duration_follows_the_mount_and_the_ttl_key(client):
    mount = unique("kv1-ttl")
    client.sys.enable_secrets_engine("kv", path=mount, options={"version": "1"}, config={"default_lease_ttl": "1h"})
    client.secrets.kv.v1.create_or_update_secret(path="plain", secret={"v": "1"}, mount_point=mount)
    client.secrets.kv.v1.create_or_update_secret(path="timed", secret={"v": "1", "ttl": "30m"}, mount_point=mount)

    assert client.secrets.kv.v1.read_secret(path="plain", mount_point=mount)["lease_duration"] == 3600
    timed = client.secrets.kv.v1.read_secret(path="timed", mount_point=mount)
    assert timed["lease_duration"] == 1800
    assert timed["data"]["ttl"] == "30m"
    client.sys.disable_secrets_engine(mount)


def test_kv1_list_sorted_with_folders(client, kv1_mount):
    for path in ("foo", "bar/baz", "bar/qux/deep", "aaa"):
        client.secrets.kv.v1.create_or_update_secret(path=path, secret={"v": "1"}, mount_point=kv1_mount)

    assert client.secrets.kv.v1.list_secrets(path="", mount_point=kv1_mount)["data"]["keys"] == ["aaa", "bar/", "foo"]
    assert client.secrets.kv.v1.list_secrets(path="bar", mount_point=kv1_mount)["data"]["keys"] == ["baz", "qux/"]
    # The legacy client.list uses GET with ?list=true.
    assert client.list(f"{kv1_mount}/bar")["data"]["keys"] == ["baz", "qux/"]


def test_kv1_list_of_nothing_is_404(client, kv1_mount):
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.secrets.kv.v1.list_secrets(path="empty", mount_point=kv1_mount)
    assert client.list(f"{kv1_mount}/empty") is None


def test_kv1_legacy_client_read_write(client, kv1_mount):
    client.write(f"{kv1_mount}/legacy", value="v", other="o")

    assert client.read(f"{kv1_mount}/legacy")["data"] == {"value": "v", "other": "o"}
    assert client.read(f"{kv1_mount}/missing") is None


def test_generic_mount_behaves_as_kv1(client):
    mount = unique("generic")
    client.sys.enable_secrets_engine("generic", path=mount)

    client.secrets.kv.v1.create_or_update_secret(path="k", secret={"v": "1"}, mount_point=mount)

    assert client.secrets.kv.v1.read_secret(path="k", mount_point=mount)["data"] == {"v": "1"}
    assert client.secrets.kv.v1.list_secrets(path="", mount_point=mount)["data"]["keys"] == ["k"]
    client.sys.disable_secrets_engine(mount)


# KV v2


def test_kv2_configure_and_read_configuration(client, kv2_mount):
    configured = client.secrets.kv.v2.configure(max_versions=5, cas_required=False, mount_point=kv2_mount)

    assert configured.status_code == 204
    config = client.secrets.kv.v2.read_configuration(mount_point=kv2_mount)["data"]
    assert config["max_versions"] == 5
    assert config["cas_required"] is False
    assert config["delete_version_after"] == "0s"


def test_kv2_versions_and_check_and_set(client, kv2_mount):
    first = client.secrets.kv.v2.create_or_update_secret(path="app", secret={"a": "1"}, mount_point=kv2_mount)

    assert first["data"]["version"] == 1
    assert first["data"]["created_time"]
    assert first["data"]["deletion_time"] == ""
    assert first["data"]["destroyed"] is False

    second = client.secrets.kv.v2.create_or_update_secret(path="app", secret={"a": "2"}, cas=1, mount_point=kv2_mount)
    assert second["data"]["version"] == 2

    with pytest.raises(hvac.exceptions.InvalidRequest, match="check-and-set"):
        client.secrets.kv.v2.create_or_update_secret(path="app", secret={"a": "3"}, cas=1, mount_point=kv2_mount)
    with pytest.raises(hvac.exceptions.InvalidRequest):
        client.secrets.kv.v2.create_or_update_secret(path="app", secret={"a": "3"}, cas=0, mount_point=kv2_mount)
    created_only = client.secrets.kv.v2.create_or_update_secret(
        path=unique("fresh"), secret={"a": "1"}, cas=0, mount_point=kv2_mount
    )
    assert created_only["data"]["version"] == 1

    latest = read_version(client, kv2_mount, "app")
    assert latest["data"]["data"] == {"a": "2"}
    assert latest["data"]["metadata"]["version"] == 2
    assert read_version(client, kv2_mount, "app", version=1)["data"]["data"] == {"a": "1"}
    # hvac's default read helper is the same call.
    assert client.secrets.kv.v2.read_secret(path="app", mount_point=kv2_mount)["data"]["data"] == {"a": "2"}


def test_kv2_cas_required(client, kv2_mount):
    client.secrets.kv.v2.configure(cas_required=True, mount_point=kv2_mount)

    with pytest.raises(hvac.exceptions.InvalidRequest):
        client.secrets.kv.v2.create_or_update_secret(path="c", secret={"a": "1"}, mount_point=kv2_mount)
    assert client.secrets.kv.v2.create_or_update_secret(
        path="c", secret={"a": "1"}, cas=0, mount_point=kv2_mount
    )["data"]["version"] == 1


def test_kv2_patch(client, kv2_mount):
    client.secrets.kv.v2.create_or_update_secret(path="p", secret={"keep": "k", "change": "old"}, mount_point=kv2_mount)

    patched = client.secrets.kv.v2.patch(path="p", secret={"change": "new", "add": "a"}, mount_point=kv2_mount)

    assert patched["data"]["version"] == 2
    assert read_version(client, kv2_mount, "p")["data"]["data"] == {"keep": "k", "change": "new", "add": "a"}
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.secrets.kv.v2.patch(path="absent", secret={"a": "1"}, mount_point=kv2_mount)


def test_kv2_soft_delete_undelete_destroy(client, kv2_mount):
    for value in ("1", "2", "3"):
        client.secrets.kv.v2.create_or_update_secret(path="d", secret={"v": value}, mount_point=kv2_mount)

    assert client.secrets.kv.v2.delete_latest_version_of_secret(path="d", mount_point=kv2_mount).status_code == 204

    with pytest.raises(hvac.exceptions.InvalidPath) as deleted:
        read_version(client, kv2_mount, "d")
    # The 404 body still carries the version's metadata; hvac and consul-template read it.
    assert deleted.value.json["data"]["data"] is None
    assert deleted.value.json["data"]["metadata"]["deletion_time"] != ""
    assert deleted.value.json["data"]["metadata"]["version"] == 3
    soft = client.secrets.kv.v2.read_secret_version(path="d", mount_point=kv2_mount, raise_on_deleted_version=False)
    assert soft["data"]["metadata"]["deletion_time"] != ""

    client.secrets.kv.v2.undelete_secret_versions(path="d", versions=[3], mount_point=kv2_mount)
    assert read_version(client, kv2_mount, "d")["data"]["data"] == {"v": "3"}

    client.secrets.kv.v2.delete_secret_versions(path="d", versions=[1], mount_point=kv2_mount)
    with pytest.raises(hvac.exceptions.InvalidPath):
        read_version(client, kv2_mount, "d", version=1)

    client.secrets.kv.v2.destroy_secret_versions(path="d", versions=[2], mount_point=kv2_mount)
    with pytest.raises(hvac.exceptions.InvalidPath) as destroyed:
        read_version(client, kv2_mount, "d", version=2)
    assert destroyed.value.json["data"]["metadata"]["destroyed"] is True
    # A destroyed version cannot be undeleted.
    client.secrets.kv.v2.undelete_secret_versions(path="d", versions=[2], mount_point=kv2_mount)
    with pytest.raises(hvac.exceptions.InvalidPath):
        read_version(client, kv2_mount, "d", version=2)

    versions = client.secrets.kv.v2.read_secret_metadata(path="d", mount_point=kv2_mount)["data"]["versions"]
    assert versions["1"]["deletion_time"] != "" and versions["1"]["destroyed"] is False
    assert versions["2"]["destroyed"] is True
    assert versions["3"]["deletion_time"] == "" and versions["3"]["destroyed"] is False


def test_kv2_metadata(client, kv2_mount):
    for value in ("1", "2", "3"):
        client.secrets.kv.v2.create_or_update_secret(path="m", secret={"v": value}, mount_point=kv2_mount)

    metadata = client.secrets.kv.v2.read_secret_metadata(path="m", mount_point=kv2_mount)["data"]

    assert metadata["current_version"] == 3
    assert metadata["oldest_version"] == 0
    assert metadata["max_versions"] == 0
    assert metadata["cas_required"] is False
    assert metadata["delete_version_after"] == "0s"
    assert metadata["created_time"] and metadata["updated_time"]
    assert sorted(metadata["versions"]) == ["1", "2", "3"]
    assert {"created_time", "deletion_time", "destroyed"} <= metadata["versions"]["1"].keys()

    updated = client.secrets.kv.v2.update_metadata(
        path="m", max_versions=2, custom_metadata={"owner": "team-a"}, mount_point=kv2_mount
    )

    assert updated.status_code == 204
    metadata = client.secrets.kv.v2.read_secret_metadata(path="m", mount_point=kv2_mount)["data"]
    assert metadata["max_versions"] == 2
    assert metadata["custom_metadata"] == {"owner": "team-a"}
    assert read_version(client, kv2_mount, "m")["data"]["metadata"]["custom_metadata"] == {"owner": "team-a"}

    # The next write trims the history to max_versions.
    client.secrets.kv.v2.create_or_update_secret(path="m", secret={"v": "4"}, mount_point=kv2_mount)
    metadata = client.secrets.kv.v2.read_secret_metadata(path="m", mount_point=kv2_mount)["data"]
    assert sorted(metadata["versions"]) == ["3", "4"]
    assert metadata["oldest_version"] == 3
    with pytest.raises(hvac.exceptions.InvalidPath):
        read_version(client, kv2_mount, "m", version=1)


def test_kv2_delete_metadata_and_all_versions(client, kv2_mount):
    client.secrets.kv.v2.create_or_update_secret(path="all", secret={"v": "1"}, mount_point=kv2_mount)
    client.secrets.kv.v2.create_or_update_secret(path="all", secret={"v": "2"}, mount_point=kv2_mount)

    response = client.secrets.kv.v2.delete_metadata_and_all_versions(path="all", mount_point=kv2_mount)

    assert response.status_code == 204
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.secrets.kv.v2.read_secret_metadata(path="all", mount_point=kv2_mount)
    with pytest.raises(hvac.exceptions.InvalidPath):
        read_version(client, kv2_mount, "all", version=1)
    # Writing again starts at version 1.
    assert client.secrets.kv.v2.create_or_update_secret(path="all", secret={"v": "3"}, mount_point=kv2_mount)[
        "data"
    ]["version"] == 1


def test_kv2_list(client, kv2_mount):
    for path in ("svc/b", "svc/a/x", "top"):
        client.secrets.kv.v2.create_or_update_secret(path=path, secret={"v": "1"}, mount_point=kv2_mount)

    assert client.secrets.kv.v2.list_secrets(path="", mount_point=kv2_mount)["data"]["keys"] == ["svc/", "top"]
    assert client.secrets.kv.v2.list_secrets(path="svc", mount_point=kv2_mount)["data"]["keys"] == ["a/", "b"]
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.secrets.kv.v2.list_secrets(path="nothing-here", mount_point=kv2_mount)


def test_kv2_missing_secret_is_404(client, kv2_mount):
    with pytest.raises(hvac.exceptions.InvalidPath):
        read_version(client, kv2_mount, "never-written")
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.secrets.kv.v2.read_secret_metadata(path="never-written", mount_point=kv2_mount)


def test_kv2_is_detected_through_the_ui_mounts_endpoint(client, kv2_mount):
    # The Vault CLI and Vault Agent templates use this preflight to switch to the v2 paths.
    detected = client.read(f"sys/internal/ui/mounts/{kv2_mount}/some/secret")["data"]

    assert detected["path"] == f"{kv2_mount}/"
    assert detected["type"] == "kv"
    assert detected["options"]["version"] == "2"


# Cubbyhole


def test_cubbyhole_is_private_to_each_token(client, client_for):
    first = client_for(client.auth.token.create(policies=["default"], ttl="10m")["auth"]["client_token"])
    second = client_for(client.auth.token.create(policies=["default"], ttl="10m")["auth"]["client_token"])

    written = first.write_data("cubbyhole/note", data={"msg": "mine"})

    assert written.status_code == 204
    assert first.read("cubbyhole/note")["data"] == {"msg": "mine"}
    assert second.read("cubbyhole/note") is None
    assert client.read("cubbyhole/note") is None
    assert first.list("cubbyhole")["data"]["keys"] == ["note"]
    assert second.list("cubbyhole") is None

    first.delete("cubbyhole/note")
    assert first.read("cubbyhole/note") is None


def test_cubbyhole_goes_with_its_token(client, client_for):
    # A custom id (no '.', as Vault requires of chosen ids) so it can be chosen again below.
    chosen = unique("cubby-owner").replace(".", "-")
    auth = client.auth.token.create(id=chosen, policies=["default"], ttl="10m")["auth"]
    owner = client_for(auth["client_token"])
    owner.write_data("cubbyhole/temp", data={"v": "1"})

    client.auth.token.revoke(auth["client_token"])
    # A token created later never sees it, even one with a chosen id equal to the old one.
    reborn = client.auth.token.create(id=chosen, policies=["default"], ttl="10m")["auth"]["client_token"]

    assert client_for(reborn).read("cubbyhole/temp") is None


def test_dev_mode_mounts_kv2_at_secret(client):
    # hvac's KV helpers default to mount_point="secret", as Vault's dev server mounts KV v2 there.
    path = unique("dev-default")

    written = client.secrets.kv.v2.create_or_update_secret(path=path, secret={"v": "1"})

    assert written["data"]["version"] == 1
    assert client.secrets.kv.v2.read_secret_version(path=path, raise_on_deleted_version=True)["data"]["data"] == {"v": "1"}
    assert client.sys.list_mounted_secrets_engines()["data"]["secret/"]["options"]["version"] == "2"
    client.secrets.kv.v2.delete_metadata_and_all_versions(path=path)


def test_strict_http_client_lists_with_get(dev_server, client, kv1_mount):
    # strict_http=True makes hvac send GET ...?list=true instead of the LIST verb.
    for path in ("s/b", "s/a"):
        client.secrets.kv.v1.create_or_update_secret(path=path, secret={"v": "1"}, mount_point=kv1_mount)
    strict = hvac.Client(url=dev_server.address, token=dev_server.root_token, strict_http=True)

    assert strict.secrets.kv.v1.list_secrets(path="s", mount_point=kv1_mount)["data"]["keys"] == ["a", "b"]
