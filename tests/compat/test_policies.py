"""ACL policies through hvac: the sys/policies/acl and legacy sys/policy endpoints, the built-in
policies, and enforcement (paths, globs, parameter constraints) as a token holder sees it."""

import json

import hvac
import pytest

from conftest import token_with_policy, unique

HCL_POLICY = """# comments survive: the text is stored as written
path "secret/data/app/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

path "sys/mounts" {
  capabilities = ["read"]
}
"""


def test_create_read_list_delete_an_acl_policy_in_hcl(client):
    name = unique("hcl")

    created = client.sys.create_or_update_acl_policy(name=name, policy=HCL_POLICY)

    assert created.status_code == 204
    read = client.sys.read_acl_policy(name)["data"]
    assert read["name"] == name
    assert read["policy"] == HCL_POLICY
    keys = client.sys.list_acl_policies()["data"]["keys"]
    assert {name, "default", "root"} <= set(keys)

    deleted = client.sys.delete_acl_policy(name)

    assert deleted.status_code == 204
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.sys.read_acl_policy(name)
    assert name not in client.sys.list_acl_policies()["data"]["keys"]


def test_policy_names_are_lowercased(client):
    name = unique("Mixed-Case")

    client.sys.create_or_update_acl_policy(name=name, policy=HCL_POLICY)

    assert client.sys.read_acl_policy(name.lower())["data"]["name"] == name.lower()
    client.sys.delete_acl_policy(name.lower())


def test_a_json_policy(client, client_for, kv1_mount):
    name = unique("json")
    policy = {"path": {f"{kv1_mount}/json/*": {"capabilities": ["read"]}}}

    client.sys.create_or_update_acl_policy(name=name, policy=policy)

    stored = client.sys.read_acl_policy(name)["data"]["policy"]
    assert json.loads(stored) == policy
    client.secrets.kv.v1.create_or_update_secret(path="json/a", secret={"v": "1"}, mount_point=kv1_mount)
    token = client.auth.token.create(policies=[name], ttl="10m")["auth"]["client_token"]
    assert client_for(token).secrets.kv.v1.read_secret(path="json/a", mount_point=kv1_mount)["data"] == {"v": "1"}


def test_an_invalid_policy_is_refused(client):
    with pytest.raises(hvac.exceptions.InvalidRequest):
        client.sys.create_or_update_acl_policy(name=unique("bad"), policy='path "x" { capabilities = ["read"')
    with pytest.raises(hvac.exceptions.InvalidRequest):
        client.sys.create_or_update_acl_policy(
            name=unique("bad-cap"), policy='path "x" { capabilities = ["fly"] }'
        )


def test_legacy_policy_endpoints_use_rules(client):
    name = unique("legacy")

    client.sys.create_or_update_policy(name=name, policy=HCL_POLICY)

    read = client.sys.read_policy(name)
    assert read["data"]["rules"] == HCL_POLICY
    assert read["rules"] == HCL_POLICY  # also at the top level for old clients
    assert read["name"] == name
    assert client.get_policy(name) == HCL_POLICY
    listed = client.sys.list_policies()
    assert name in listed["data"]["policies"]
    assert name in listed["policies"]
    assert "root" in listed["keys"]

    client.sys.delete_policy(name)

    assert client.get_policy(name) is None


def test_built_in_policies_cannot_be_broken(client):
    with pytest.raises(hvac.exceptions.InvalidRequest):
        client.sys.delete_acl_policy("default")
    with pytest.raises(hvac.exceptions.InvalidRequest):
        client.sys.delete_acl_policy("root")
    with pytest.raises(hvac.exceptions.InvalidRequest):
        client.sys.create_or_update_acl_policy(name="root", policy=HCL_POLICY)
    assert "default" in client.sys.list_acl_policies()["data"]["keys"]
    default = client.sys.read_acl_policy("default")["data"]["policy"]
    assert "auth/token/lookup-self" in default
    assert "cubbyhole/*" in default


def test_deleting_a_missing_policy_is_idempotent(client):
    assert client.sys.delete_acl_policy(unique("never-existed")).status_code == 204


# Enforcement


def test_a_token_reads_only_what_its_policy_allows(client, client_for, kv1_mount):
    for path in ("allowed/one", "other/two"):
        client.secrets.kv.v1.create_or_update_secret(path=path, secret={"v": path}, mount_point=kv1_mount)
    token = token_with_policy(
        client,
        unique("reader"),
        f'path "{kv1_mount}/allowed/*" {{ capabilities = ["read"] }}',
        ttl="10m",
    )
    reader = client_for(token)

    assert reader.secrets.kv.v1.read_secret(path="allowed/one", mount_point=kv1_mount)["data"] == {"v": "allowed/one"}
    with pytest.raises(hvac.exceptions.Forbidden, match="permission denied"):
        reader.secrets.kv.v1.read_secret(path="other/two", mount_point=kv1_mount)
    with pytest.raises(hvac.exceptions.Forbidden):
        reader.secrets.kv.v1.create_or_update_secret(
            path="allowed/new", secret={"v": "x"}, method="POST", mount_point=kv1_mount
        )
    # A missing key under an allowed path is a 404, not a 403.
    with pytest.raises(hvac.exceptions.InvalidPath):
        reader.secrets.kv.v1.read_secret(path="allowed/missing", mount_point=kv1_mount)
    # Listing needs "list" on the folder path with its trailing slash.
    with pytest.raises(hvac.exceptions.Forbidden):
        reader.secrets.kv.v1.list_secrets(path="allowed", mount_point=kv1_mount)


def test_policy_changes_apply_to_existing_tokens(client, client_for, kv1_mount):
    client.secrets.kv.v1.create_or_update_secret(path="later", secret={"v": "1"}, mount_point=kv1_mount)
    name = unique("changing")
    token = token_with_policy(client, name, f'path "{kv1_mount}/nothing" {{ capabilities = ["read"] }}', ttl="10m")
    with pytest.raises(hvac.exceptions.Forbidden):
        client_for(token).secrets.kv.v1.read_secret(path="later", mount_point=kv1_mount)

    client.sys.create_or_update_acl_policy(name=name, policy=f'path "{kv1_mount}/later" {{ capabilities = ["read"] }}')

    assert client_for(token).secrets.kv.v1.read_secret(path="later", mount_point=kv1_mount)["data"] == {"v": "1"}


def test_create_versus_update_capability(client, client_for, kv1_mount):
    client.secrets.kv.v1.create_or_update_secret(path="cu/existing", secret={"v": "1"}, mount_point=kv1_mount)
    token = token_with_policy(
        client, unique("create-only"), f'path "{kv1_mount}/cu/*" {{ capabilities = ["create"] }}', ttl="10m"
    )
    writer = client_for(token)

    writer.secrets.kv.v1.create_or_update_secret(path="cu/fresh", secret={"v": "1"}, method="POST", mount_point=kv1_mount)
    with pytest.raises(hvac.exceptions.Forbidden):
        writer.secrets.kv.v1.create_or_update_secret(
            path="cu/existing", secret={"v": "2"}, method="PUT", mount_point=kv1_mount
        )
    assert client.secrets.kv.v1.read_secret(path="cu/existing", mount_point=kv1_mount)["data"] == {"v": "1"}


def test_parameter_constraints_on_kv_v1_writes(client, client_for, kv1_mount):
    policy = f"""
path "{kv1_mount}/params/*" {{
  capabilities = ["create", "update"]
  allowed_parameters = {{
    "color" = ["red", "green"]
    "size"  = []
  }}
  denied_parameters = {{
    "size" = ["huge"]
  }}
}}
"""
    writer = client_for(token_with_policy(client, unique("params"), policy, ttl="10m"))

    def write(secret):
        return writer.secrets.kv.v1.create_or_update_secret(
            path=unique("params/p"), secret=secret, method="POST", mount_point=kv1_mount
        )

    assert write({"color": "red"}).status_code == 204
    assert write({"color": "green", "size": "small"}).status_code == 204
    for refused in ({"color": "blue"}, {"size": "huge"}, {"shape": "round"}, {"color": "red", "shape": "round"}):
        with pytest.raises(hvac.exceptions.Forbidden):
            write(refused)


def test_allowed_parameters_with_a_wildcard_key_in_one_line_hcl1(client, client_for, kv1_mount):
    # HCL1 allows object items without separators; Vault's docs use this form.
    policy = (
        f'path "{kv1_mount}/wild/*" {{\n'
        '  capabilities = ["create", "update"]\n'
        '  allowed_parameters = { "bar" = ["zip", "zap*"] "*" = [] }\n'
        '  denied_parameters = { "secret" = [] }\n'
        "}\n"
    )
    writer = client_for(token_with_policy(client, unique("wild"), policy, ttl="10m"))

    def write(secret):
        return writer.secrets.kv.v1.create_or_update_secret(
            path=unique("wild/p"), secret=secret, method="POST", mount_point=kv1_mount
        )

    assert write({"bar": "zip", "anything": "else"}).status_code == 204
    assert write({"bar": "zapper"}).status_code == 204
    for refused in ({"bar": "zop"}, {"secret": "x"}):
        with pytest.raises(hvac.exceptions.Forbidden):
            write(refused)


def test_required_parameters(client, client_for, kv1_mount):
    policy = f"""
path "{kv1_mount}/req/*" {{
  capabilities = ["create"]
  required_parameters = ["owner"]
}}
"""
    writer = client_for(token_with_policy(client, unique("req"), policy, ttl="10m"))

    writer.secrets.kv.v1.create_or_update_secret(
        path="req/a", secret={"owner": "me", "v": "1"}, method="POST", mount_point=kv1_mount
    )
    with pytest.raises(hvac.exceptions.Forbidden):
        writer.secrets.kv.v1.create_or_update_secret(path="req/b", secret={"v": "1"}, method="POST", mount_point=kv1_mount)


def test_plus_and_star_globs(client, client_for, kv1_mount):
    paths = ["a/teamb", "a/b/teamb", "zip-zap/zong", "zip", "zi", "a/teamc"]
    for path in paths:
        client.secrets.kv.v1.create_or_update_secret(path=path, secret={"v": path}, mount_point=kv1_mount)
    policy = f"""
path "{kv1_mount}/+/teamb" {{ capabilities = ["read"] }}
path "{kv1_mount}/zip-*" {{ capabilities = ["read"] }}
"""
    reader = client_for(token_with_policy(client, unique("globs"), policy, ttl="10m"))

    readable = set()
    for path in paths:
        try:
            reader.secrets.kv.v1.read_secret(path=path, mount_point=kv1_mount)
            readable.add(path)
        except hvac.exceptions.Forbidden:
            pass

    assert readable == {"a/teamb", "zip-zap/zong"}


def test_most_specific_path_wins_and_deny_overrides(client, client_for, kv1_mount):
    for path in ("team/open", "team/closed", "team/deep/x"):
        client.secrets.kv.v1.create_or_update_secret(path=path, secret={"v": path}, mount_point=kv1_mount)
    policy = f"""
path "{kv1_mount}/team/*" {{ capabilities = ["read", "list"] }}
path "{kv1_mount}/team/closed" {{ capabilities = ["deny"] }}
path "{kv1_mount}/team/deep/*" {{ capabilities = ["create"] }}
"""
    reader = client_for(token_with_policy(client, unique("specific"), policy, ttl="10m"))

    assert reader.secrets.kv.v1.read_secret(path="team/open", mount_point=kv1_mount)["data"]["v"] == "team/open"
    with pytest.raises(hvac.exceptions.Forbidden):
        reader.secrets.kv.v1.read_secret(path="team/closed", mount_point=kv1_mount)
    # team/deep/* is the longer (more specific) glob: it grants create only, no read.
    with pytest.raises(hvac.exceptions.Forbidden):
        reader.secrets.kv.v1.read_secret(path="team/deep/x", mount_point=kv1_mount)
    assert set(reader.secrets.kv.v1.list_secrets(path="team", mount_point=kv1_mount)["data"]["keys"]) == {
        "open", "closed", "deep/"
    }


def test_same_pattern_in_two_policies_merges(client, client_for, kv1_mount):
    client.secrets.kv.v1.create_or_update_secret(path="merge/x", secret={"v": "1"}, mount_point=kv1_mount)
    read_name, update_name = unique("merge-read"), unique("merge-update")
    client.sys.create_or_update_acl_policy(name=read_name, policy=f'path "{kv1_mount}/merge/*" {{ capabilities = ["read"] }}')
    client.sys.create_or_update_acl_policy(
        name=update_name, policy=f'path "{kv1_mount}/merge/*" {{ capabilities = ["update"] }}'
    )
    token = client.auth.token.create(policies=[read_name, update_name], ttl="10m")["auth"]["client_token"]
    both = client_for(token)

    both.secrets.kv.v1.create_or_update_secret(path="merge/x", secret={"v": "2"}, method="PUT", mount_point=kv1_mount)
    assert both.secrets.kv.v1.read_secret(path="merge/x", mount_point=kv1_mount)["data"] == {"v": "2"}


def test_a_token_without_policies_but_default_uses_cubbyhole_only(client, client_for, kv1_mount):
    client.secrets.kv.v1.create_or_update_secret(path="x", secret={"v": "1"}, mount_point=kv1_mount)
    plain = client_for(client.auth.token.create(policies=["default"], ttl="10m")["auth"]["client_token"])

    with pytest.raises(hvac.exceptions.Forbidden):
        plain.secrets.kv.v1.read_secret(path="x", mount_point=kv1_mount)
    with pytest.raises(hvac.exceptions.Forbidden):
        plain.sys.list_mounted_secrets_engines()
    plain.write_data("cubbyhole/mine", data={"v": "1"})
    assert plain.read("cubbyhole/mine")["data"] == {"v": "1"}
