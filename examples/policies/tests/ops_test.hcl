case "ops can seal" {
  identity = {
    groups = ["ops"]
  }
  path = "sys/seal"
  operation = "update"
  expect = "allow"
}

case "agent cannot seal" {
  policies = ["agent"]
  path = "sys/seal"
  operation = "update"
  expect = "deny"
}

case "deployer cannot touch root" {
  policies = ["deployer"]
  path = "sys/policies/acl/root"
  operation = "update"
  expect = "deny"
}

case "deployer writes policies" {
  policies = ["deployer"]
  path = "sys/policies/acl/agent"
  operation = "update"
  expect = "allow"
}
