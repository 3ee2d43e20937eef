# Token roles: what a token created with `ward token create -role=NAME` may carry.

token_role "agent" {
  allowed_policies = ["agent"]
  orphan = true
  token_period = "24h"
}
