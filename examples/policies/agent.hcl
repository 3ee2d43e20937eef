# The application agent: short-lived database credentials and its own secrets.

path "database/creds/read-only" {
  capabilities = ["read"]
}

# Each agent reads and writes only under its own entity name.
path "secret/data/apps/{{identity.entity.name}}/*" {
  capabilities = ["create", "read", "update", "patch"]
}

path "secret/metadata/apps/{{identity.entity.name}}/*" {
  capabilities = ["list"]
}

# Shared configuration: anyone with this policy reads it; changing it needs a lead's approval.
path "secret/data/shared/*" {
  capabilities = ["read", "update"]

  control_group = {
    factor "leads" {
      controlled_capabilities = ["update"]

      identity {
        group_names = ["leads"]
        approvals = 1
      }
    }
  }
}
