# Identity groups: members get the group's policies on top of their token's.

group "ops" {
  policies = ["ops"]

  metadata = {
    team = "platform"
  }
}

group "leads" {
  policies = ["agent"]
}
