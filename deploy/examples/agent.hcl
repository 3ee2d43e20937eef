# ward agent configuration for a Kubernetes sidecar (Vault Agent's format plus Ward's egress block).
# Mounted from the ConfigMap in kubernetes/configmap.yaml; run as
#   ward agent -config=/etc/ward/agent.hcl -secrets-dir=/secrets

pid_file = "/tmp/ward-agent.pid"

vault {
  address = "https://ward.ward-system.svc:8200"
  ca_cert = "/etc/ward/tls/ca.pem"
  retry { num_retries = 12 }
}

auto_auth {
  method "kubernetes" {
    mount_path = "auth/kubernetes"
    config {
      role       = "ai-agent-role"
      token_path = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    }
  }
  # The token stays on the in-memory volume shared with nothing but the sidecar.
  sink "file" {
    config {
      path = "/home/ward/.ward-token"
      mode = 0600
    }
  }
}

template_config {
  static_secret_render_interval = "5m"
  # A lease that cannot be renewed ends the pod, so Kubernetes restarts it.
  exit_on_retry_failure = true
}

# A database credential for the agent's tools: renewed while the server is reachable,
# removed from the volume when its lease expires unrenewed.
template {
  destination          = "db.env"
  perms                = "0640"
  error_on_missing_key = true
  contents             = <<EOT
{{ with secret "database/creds/ai-agent-ro" }}PGUSER={{ .Data.username }}
PGPASSWORD={{ .Data.password }}
{{ end }}
EOT
}

# The Vault API on localhost for an application using hvac, with the agent's token injected.
api_proxy { use_auto_auth_token = true }
listener "tcp" {
  address     = "127.0.0.1:8200"
  tls_disable = true
}

# The LLM key never reaches the application: it calls http://127.0.0.1:8100/openai/...
egress {
  listener = "127.0.0.1:8100"

  route "openai" {
    upstream   = "https://api.openai.com"
    credential = "secret/data/ai-agent/openai"
    inject { header = "Authorization"  value = "Bearer {{ .Data.data.api_key }}" }
    allow {
      methods = ["POST", "GET"]
      paths   = ["/v1/chat/completions", "/v1/embeddings", "/v1/responses", "/v1/models"]
    }
    rate_limit     = "60/minute"
    max_body_bytes = 4194304
  }

  route "anthropic" {
    upstream   = "https://api.anthropic.com"
    credential = "secret/data/ai-agent/anthropic"
    inject { header = "x-api-key"  value = "{{ .Data.data.api_key }}" }
    allow {
      methods = ["POST"]
      paths   = ["/v1/messages"]
    }
    rate_limit = "60/minute"
  }
}
