#!/usr/bin/env bash
# Local demo of the egress credential proxy: a dev server, a KV secret, `ward agent` with an
# egress route to a fake LLM on loopback, and an "agent" script that calls the LLM through
# http://127.0.0.1:8100/openai/... without ever holding the key.
#
# Usage: examples/agent-demo/run.sh      (from the repository root; needs cargo and python3)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

ward="${WARD_BIN:-$root/target/debug/ward}"
[ -x "$ward" ] || (cd "$root" && cargo build -q -p ward --bin ward)
# `ward agent` once the binary has the subcommand; until then the crate's example binary.
if "$ward" agent -help >/dev/null 2>&1; then
  agent=("$ward" agent)
else
  (cd "$root" && cargo build -q -p ward-agent --example ward-agent)
  agent=("$root/target/debug/examples/ward-agent")
fi

wait_for() { # file pattern
  for _ in $(seq 1 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "timed out waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1
}

echo "==> ward server -dev"
"$ward" server -dev -dev-listen-address=127.0.0.1:0 >"$work/server.log" 2>&1 &
pids+=($!)
wait_for "$work/server.log" "Root Token:"
addr="$(awk '/Api Address:/ {print $3}' "$work/server.log")"
root_token="$(awk '/Root Token:/ {print $3}' "$work/server.log")"
api() { curl -fsS -H "X-Vault-Token: $root_token" "$@"; }

echo "==> the key goes into the vault, and only there"
key="sk-demo-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
api -X POST "$addr/v1/secret/data/agents/openai" -d "{\"data\":{\"api_key\":\"$key\"}}" >/dev/null
api -X PUT "$addr/v1/sys/policies/acl/llm-agent" \
  -d '{"policy":"path \"secret/data/agents/openai\" { capabilities = [\"read\"] }"}'
api -X POST "$addr/v1/auth/token/create" -d '{"policies":["llm-agent"],"ttl":"1h"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["auth"]["client_token"])' >"$work/agent-token"

echo "==> fake LLM upstream (accepts only that key)"
FAKE_LLM_KEY="$key" python3 "$here/fake_llm.py" "$work/llm-port" 2>"$work/llm.log" &
pids+=($!)
wait_for "$work/llm-port" "[0-9]"
llm_port="$(cat "$work/llm-port")"

cat >"$work/agent.hcl" <<HCL
vault { address = "$addr" }
auto_auth {
  method "token_file" { config { token_file_path = "$work/agent-token" } }
}
egress {
  listener = "127.0.0.1:8100"
  route "openai" {
    upstream   = "http://127.0.0.1:$llm_port"
    credential = "secret/data/agents/openai"
    inject { header = "Authorization"  value = "Bearer {{ .Data.data.api_key }}" }
    allow  { methods = ["POST"]  paths = ["/v1/chat/completions"] }
    rate_limit = "60/minute"
  }
}
HCL

echo "==> ward agent -config=agent.hcl"
"${agent[@]}" -config="$work/agent.hcl" >"$work/agent.log" 2>&1 &
pids+=($!)
wait_for "$work/agent.log" "Egress Listener:"
wait_for "$work/agent.log" "secret fetched"

echo "==> the agent calls the LLM without a key"
env -u OPENAI_API_KEY python3 "$here/agent.py"

echo "==> what the sidecar logged (no key in it):"
grep "egress call" "$work/agent.log" | tail -n 2
if grep -q "$key" "$work/agent.log"; then echo "the key leaked into the log" >&2; exit 1; fi
echo "==> done"
