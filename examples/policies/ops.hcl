# Operators: seal the server in an emergency, read the audit configuration, rotate the key.

path "sys/seal" {
  capabilities = ["update", "sudo"]
}

path "sys/rotate" {
  capabilities = ["update", "sudo"]
}

path "sys/audit" {
  capabilities = ["read", "sudo"]
}

path "sys/policies/acl/*" {
  capabilities = ["read", "list"]
}

path "sys/policies/acl" {
  capabilities = ["list"]
}
