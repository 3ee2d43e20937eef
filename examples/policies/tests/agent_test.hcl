case "agent reads db creds" {
  policies = ["agent"]
  path = "database/creds/read-only"
  operation = "read"
  expect = "allow"
}

case "agent cannot write creds" {
  policies = ["agent"]
  path = "database/creds/read-only"
  operation = "update"
  expect = "deny"
}

case "alice writes her own secrets" {
  role = "agent"
  identity = {
    entity_name = "alice"
  }
  path = "secret/data/apps/alice/db"
  operation = "update"
  expect = "allow"
}

case "alice cannot read bob's secrets" {
  role = "agent"
  identity = {
    entity_name = "alice"
  }
  path = "secret/data/apps/bob/db"
  operation = "read"
  expect = "deny"
}

case "changing shared config needs approval" {
  policies = ["agent"]
  path = "secret/data/shared/feature-flags"
  operation = "update"
  expect = "approval"
}

case "reading shared config does not" {
  policies = ["agent"]
  path = "secret/data/shared/feature-flags"
  operation = "read"
  expect = "allow"
}
