#!/usr/bin/env bash
# Egress proxy benchmark, side by side in one run (see shared reference/benchmarking.md):
#   direct    wrk -> upstream
#   ward      wrk -> ward agent egress proxy (injects Authorization) -> upstream
#   nginx     wrk -> nginx (proxy_set_header Authorization, keepalive upstream) -> upstream
# Throughput at 32 connections and median latency at 1 connection, interleaved rounds, and
# the proxy process's CPU time per call at 32 and at 1 connection (perf stat, when perf is
# installed; at c=1 every call wakes the proxy on its own, so it shows the per-call cost that
# the latency pays, which batching hides at c=32);
# servers pinned to CPU 0 and wrk to CPU 1. Also the agent's RSS with 10 routes and
# 10 templates. Usage: bench/egress.sh   (env: DURATION=10 ROUNDS=3)
# CARGO_TARGET_DIR is respected; AGENT_BIN=/path/to/ward-agent measures a saved build.
# A/B: AGENT_B_BIN=/path/to/other/ward-agent adds a "wardb" row (a second agent with the same
# config, e.g. a saved build of the previous revision), interleaved with the others.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
pids=()
declare -A proxy_pid=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
duration="${DURATION:-10}"
rounds="${ROUNDS:-3}"

command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx >/dev/null; }
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
target_dir="${CARGO_TARGET_DIR:-$root/target}"
ward="${WARD_BIN:-$target_dir/debug/ward}"
[ -x "$ward" ] || (cd "$root" && cargo build -q -p ward --bin ward)
(cd "$root" && cargo build -q --release -p ward-agent --examples)
agent_bin="${AGENT_BIN:-$target_dir/release/examples/ward-agent}"
upstream_bin="$target_dir/release/examples/egress_bench"

wait_for() { for _ in $(seq 1 400); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done; echo "timeout: $2" >&2; cat "$1" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

taskset -c 0 "$ward" server -dev -dev-listen-address=127.0.0.1:0 >"$work/server.log" 2>&1 &
pids+=($!)
wait_for "$work/server.log" "Root Token:"
addr="$(awk '/Api Address:/ {print $3}' "$work/server.log")"
root_token="$(awk '/Root Token:/ {print $3}' "$work/server.log")"
api() { curl -fsS -H "X-Vault-Token: $root_token" "$@" >/dev/null; }
key="sk-bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
api -X POST "$addr/v1/secret/data/bench/llm" -d "{\"data\":{\"api_key\":\"$key\"}}"
for i in $(seq 0 9); do api -X POST "$addr/v1/secret/data/bench/t$i" -d "{\"data\":{\"user\":\"u$i\",\"password\":\"p$i-$key\"}}"; done
printf '%s' "$root_token" >"$work/token"

BENCH_KEY="$key" taskset -c 0 "$upstream_bin" "$work/upstream-port" &
pids+=($!)
wait_for "$work/upstream-port" "[0-9]"
up_port="$(cat "$work/upstream-port")"

# The agent: ten routes (r0 is measured) and ten templates.
mkdir -p "$work/secrets"
{
  echo "vault { address = \"$addr\" }"
  echo "auto_auth { method \"token_file\" { config { token_file_path = \"$work/token\" } } }"
  for i in $(seq 0 9); do
    echo "template {"
    echo "  destination = \"t$i.txt\""
    echo "  contents = \"{{ with secret \\\"secret/data/bench/t$i\\\" }}{{ .Data.data.user }}:{{ .Data.data.password }}{{ end }}\""
    echo "}"
  done
  echo "egress {"
  echo "  listener = \"127.0.0.1:0\""
  for i in $(seq 0 9); do
    echo "  route \"r$i\" {"
    echo "    upstream = \"http://127.0.0.1:$up_port\""
    echo "    credential = \"secret/data/bench/llm\""
    echo "    inject { header = \"Authorization\"  value = \"Bearer {{ .Data.data.api_key }}\" }"
    echo "    allow { methods = [\"POST\"]  paths = [\"/v1/chat/completions\"] }"
    echo "  }"
  done
  echo "}"
} >"$work/agent.hcl"
WARD_LOG=${BENCH_AGENT_LOG:-info} taskset -c 0 "$agent_bin" -config="$work/agent.hcl" -secrets-dir="$work/secrets" >"$work/agent.log" 2>&1 &
agent_pid=$!
pids+=($agent_pid)
wait_for "$work/agent.log" "Egress Listener:"
for i in $(seq 0 9); do for _ in $(seq 1 200); do [ -s "$work/secrets/t$i.txt" ] && break; sleep 0.05; done; done
egress="$(awk '/Egress Listener:/ {sub("http://", "", $3); print $3}' "$work/agent.log")"
targets=(direct ward nginx)
if [ -n "${AGENT_B_BIN:-}" ]; then
  mkdir -p "$work/secrets-b"
  WARD_LOG=${BENCH_AGENT_LOG:-info} taskset -c 0 "$AGENT_B_BIN" -config="$work/agent.hcl" -secrets-dir="$work/secrets-b" >"$work/agent-b.log" 2>&1 &
  pids+=($!)
  proxy_pid[wardb]=$!
  wait_for "$work/agent-b.log" "Egress Listener:"
  egress_b="$(awk '/Egress Listener:/ {sub("http://", "", $3); print $3}' "$work/agent-b.log")"
  until [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://$egress_b/r0/v1/chat/completions" -d '{}')" = 200 ]; do sleep 0.05; done
  targets=(direct ward wardb nginx)
fi
until [ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://$egress/r0/v1/chat/completions" -d '{}')" = 200 ]; do sleep 0.05; done
rss_idle_kb="$(awk '/VmRSS/ {print $2}' /proc/$agent_pid/status)"

nginx_port="$(free_port)"
mkdir -p "$work/nginx"
cat >"$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log $work/nginx/access.log;
  client_body_temp_path $work/nginx;
  proxy_temp_path $work/nginx;
  upstream llm { server 127.0.0.1:$up_port; keepalive 64; }
  server {
    listen 127.0.0.1:$nginx_port;
    location /r0/ {
      proxy_pass http://llm/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer $key";
      proxy_buffering off;
    }
  }
}
NGINX
taskset -c 0 nginx -c "$work/nginx.conf" -p "$work/nginx" &
nginx_master=$!
pids+=($nginx_master)
until curl -s -o /dev/null "http://127.0.0.1:$nginx_port/r0/v1/chat/completions"; do sleep 0.05; done
nginx_worker="$(pgrep -P "$nginx_master" | head -n 1)"
# CPU time per call of the proxy process itself (perf stat task-clock over each run), which
# the other processes on the machine disturb far less than req/s.
proxy_pid[ward]=$agent_pid
proxy_pid[nginx]=$nginx_worker
perf_bin="$(command -v perf || true)"
[ -x /usr/bin/perf ] && perf_bin=/usr/bin/perf

body='{"model":"gpt-bench","messages":[{"role":"system","content":"You are a helpful assistant that answers briefly."},{"role":"user","content":"Summarise the benefits of short-lived credentials for AI agents in two sentences, please, and mention leases, renewal and revocation so that the prompt is realistic in size for a benchmark of a proxy."}],"max_tokens":64,"temperature":0,"stream":false,"user":"bench"}'
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = [[$body]]
wrk.headers["Content-Type"] = "application/json"
LUA

declare -A url=(
  [direct]="http://127.0.0.1:$up_port/v1/chat/completions"
  [ward]="http://$egress/r0/v1/chat/completions"
  [nginx]="http://127.0.0.1:$nginx_port/r0/v1/chat/completions"
  [wardb]="http://${egress_b:-}/r0/v1/chat/completions"
)
# The direct run sends the key itself, as the application would without a proxy.
run() { # target connections -> "rps p50_us non2xx cpu_us_per_call"
  local extra=()
  [ "$1" = direct ] && extra=(-H "Authorization: Bearer $key")
  local out perf_pid="" pid="${proxy_pid[$1]:-}"
  if [ -n "$perf_bin" ] && [ -n "$pid" ]; then
    "$perf_bin" stat -x, -e task-clock -p "$pid" -o "$work/perf.csv" -- sleep "$duration" 2>/dev/null &
    perf_pid=$!
  fi
  out="$(taskset -c 1 wrk -t1 -c"$2" -d"${duration}s" --latency -s "$work/post.lua" "${extra[@]}" "${url[$1]}")"
  local rps p50 non2xx n cpu=0
  rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  p50="$(awk '$1=="50%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); print v} else if (v ~ /ms$/) {sub(/ms/,"",v); print v*1000} else {sub(/s/,"",v); print v*1000000}}' <<<"$out")"
  non2xx="$(awk '/Non-2xx/ {print $4}' <<<"$out")"
  n="$(awk '/requests in/ {print $1}' <<<"$out")"
  if [ -n "$perf_pid" ]; then
    wait "$perf_pid" || true
    cpu="$(awk -F, -v n="$n" '$3 ~ /task-clock/ && n > 0 {printf "%.2f", $1 * 1000 / n}' "$work/perf.csv")"
  fi
  echo "$rps $p50 ${non2xx:-0} ${cpu:-0}"
}

echo "load: $(cat /proc/loadavg)"
declare -A rps p50 errs cpu cpu1
for round in $(seq 1 "$rounds"); do
  for target in "${targets[@]}"; do
    read -r r _ e c <<<"$(run "$target" 32)"
    read -r _ l e1 c1 <<<"$(run "$target" 1)"
    rps[$target]+="$r "; p50[$target]+="$l "; cpu[$target]+="$c "; cpu1[$target]+="$c1 "
    errs[$target]=$(( ${errs[$target]:-0} + ${e:-0} + ${e1:-0} ))
    echo "round $round $target: c32 ${r} req/s (${c} us CPU per call), c1 p50 ${l} us (${c1} us CPU per call)"
  done
done
rss_after_kb="$(awk '/VmRSS/ {print $2}' /proc/$agent_pid/status)"
if [ -n "${AGENT_B_BIN:-}" ]; then
  for target in ward wardb; do
    tr ' ' '\n' <<<"${rps[$target]}" | grep -v '^$' | sort -g | awk -v t="$target" '{a[NR]=$1} END {printf "%s c=32 req/s median %s [%s-%s]\n", t, a[int((NR+1)/2)], a[1], a[NR]}'
    tr ' ' '\n' <<<"${p50[$target]}" | grep -v '^$' | sort -g | awk -v t="$target" '{a[NR]=$1} END {printf "%s c=1 p50 us median %s [%s-%s]\n", t, a[int((NR+1)/2)], a[1], a[NR]}'
    tr ' ' '\n' <<<"${cpu[$target]}" | grep -v '^$' | sort -g | awk -v t="$target" '{a[NR]=$1} END {printf "%s c=32 CPU us per call median %s [%s-%s]\n", t, a[int((NR+1)/2)], a[1], a[NR]}'
    tr ' ' '\n' <<<"${cpu1[$target]}" | grep -v '^$' | sort -g | awk -v t="$target" '{a[NR]=$1} END {printf "%s c=1 CPU us per call median %s [%s-%s]\n", t, a[int((NR+1)/2)], a[1], a[NR]}'
  done
fi
median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
python3 - "$(median "${rps[direct]}")" "$(median "${rps[ward]}")" "$(median "${rps[nginx]}")" \
  "$(median "${p50[direct]}")" "$(median "${p50[ward]}")" "$(median "${p50[nginx]}")" \
  "${errs[direct]}" "${errs[ward]}" "${errs[nginx]}" "$rss_idle_kb" "$rss_after_kb" "$duration" "$rounds" \
  "$(median "${cpu[ward]}")" "$(median "${cpu[nginx]}")" \
  "$(median "${cpu1[ward]}")" "$(median "${cpu1[nginx]}")" <<'PY'
import sys
d_rps, w_rps, n_rps, d_p50, w_p50, n_p50 = map(float, sys.argv[1:7])
e_d, e_w, e_n = sys.argv[7:10]
rss_idle, rss_after = int(sys.argv[10]), int(sys.argv[11])
w_cpu, n_cpu = float(sys.argv[14] or 0), float(sys.argv[15] or 0)
w_cpu1, n_cpu1 = float(sys.argv[16] or 0), float(sys.argv[17] or 0)
w_add, n_add = w_p50 - d_p50, n_p50 - d_p50
print(f"\nmedian of {sys.argv[13]} rounds, {sys.argv[12]} s each; servers on CPU 0, wrk on CPU 1; POST 433-byte JSON")
print(f"{'':8} {'c=32 req/s':>12} {'c=1 p50 us':>12} {'added p50 us':>13} {'non-2xx':>8}")
print(f"{'direct':8} {d_rps:12.0f} {d_p50:12.0f} {'':>13} {e_d:>8}")
print(f"{'ward':8} {w_rps:12.0f} {w_p50:12.0f} {w_add:13.0f} {e_w:>8}")
print(f"{'nginx':8} {n_rps:12.0f} {n_p50:12.0f} {n_add:13.0f} {e_n:>8}")
print(f"throughput ward/nginx = {w_rps/n_rps:.2f} (target >= 1.0); ward/direct = {w_rps/d_rps:.2f}; nginx/direct = {n_rps/d_rps:.2f}")
if w_cpu > 0 and n_cpu > 0:
    print(f"proxy CPU per call at c=32 (perf stat): ward {w_cpu:.1f} us, nginx {n_cpu:.1f} us; nginx/ward = {n_cpu/w_cpu:.2f}")
if w_cpu1 > 0 and n_cpu1 > 0:
    print(f"proxy CPU per call at c=1 (perf stat): ward {w_cpu1:.1f} us, nginx {n_cpu1:.1f} us; nginx/ward = {n_cpu1/w_cpu1:.2f}")
print(f"added p50 ward/nginx = {w_add/n_add:.2f} (target <= 1.2)" if n_add > 0 else "added p50: nginx adds nothing measurable")
print(f"agent RSS with 10 routes + 10 templates: {rss_idle/1024:.1f} MiB idle, {rss_after/1024:.1f} MiB after the load (target < 20 MiB)")
PY
