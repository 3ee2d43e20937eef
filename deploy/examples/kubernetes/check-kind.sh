#!/usr/bin/env bash
# Checks Ward's Kubernetes auth against a real cluster made with kind (run it on a machine
# with docker, kind and kubectl; Ward itself runs on the host):
#
#   ward server -dev -dev-root-token-id=root -dev-listen-address=0.0.0.0:8200 &
#   deploy/examples/kubernetes/check-kind.sh
#
# It creates a kind cluster, the token reviewer account (ward-token-reviewer.yaml), an
# agent service account in namespace "agents", configures auth/kubernetes with the cluster's
# API address, CA and reviewer token, and logs in with a projected token of the agent account.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export WARD_ADDR=${WARD_ADDR:-http://127.0.0.1:8200} WARD_TOKEN=${WARD_TOKEN:-root}
cluster=${CLUSTER:-ward-check}

kind get clusters | grep -qx "$cluster" || kind create cluster --name "$cluster"
kubectl config use-context "kind-$cluster" >/dev/null
kubectl create namespace ward-system --dry-run=client -o yaml | kubectl apply -f -
kubectl create namespace agents --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -f "$here/ward-token-reviewer.yaml"
kubectl -n agents create serviceaccount ai-agent --dry-run=client -o yaml | kubectl apply -f -

host=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d >/tmp/kind-ca.crt
for _ in $(seq 1 30); do
  reviewer=$(kubectl -n ward-system get secret ward-token-reviewer -o jsonpath='{.data.token}' | base64 -d || true)
  [ -n "$reviewer" ] && break
  sleep 1
done

ward auth enable kubernetes 2>/dev/null || true
ward write auth/kubernetes/config kubernetes_host="$host" kubernetes_ca_cert=@/tmp/kind-ca.crt \
  token_reviewer_jwt="$reviewer"
ward write auth/kubernetes/role/ai-agent-role bound_service_account_names=ai-agent \
  bound_service_account_namespaces=agents token_policies=default token_ttl=15m

jwt=$(kubectl -n agents create token ai-agent --duration=10m)
ward write -format=json auth/kubernetes/login role=ai-agent-role jwt="$jwt" |
  python3 -c 'import json,sys; a=json.load(sys.stdin)["auth"]; print("login ok:", a["metadata"]["service_account_namespace"] + "/" + a["metadata"]["service_account_name"], "entity", a["entity_id"])'

# The wrong namespace must be refused.
kubectl -n default create serviceaccount ai-agent --dry-run=client -o yaml | kubectl apply -f -
wrong=$(kubectl -n default create token ai-agent --duration=10m)
if ward write auth/kubernetes/login role=ai-agent-role jwt="$wrong" >/dev/null 2>&1; then
  echo "FAILED: a service account from the wrong namespace logged in" >&2
  exit 1
fi
echo "wrong namespace refused: ok"
