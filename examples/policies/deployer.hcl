# What `ward policy apply` needs, and nothing else: the CI pipeline's token gets this policy.

path "sys/policies/acl" {
  capabilities = ["list"]
}

path "sys/policies/acl/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

# The root policy cannot be changed, and granting it is never a pipeline's job.
path "sys/policies/acl/root" {
  capabilities = ["deny"]
}

path "identity/group/name" {
  capabilities = ["list"]
}

path "identity/group/name/*" {
  capabilities = ["create", "read", "update", "delete"]
}

path "auth/token/roles" {
  capabilities = ["list"]
}

path "auth/token/roles/*" {
  capabilities = ["create", "read", "update", "delete"]
}
