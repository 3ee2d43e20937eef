//! The HTTP client the CLI verbs use: address, token and TLS settings from flags and the
//! environment, Vault style, and one `send` method that returns the JSON body or an error a
//! person can act on.
//!
//! Settings, first found wins: `-address`, `WARD_ADDR`, `VAULT_ADDR`, `http://127.0.0.1:8200`;
//! `WARD_TOKEN`, `VAULT_TOKEN`, `~/.ward-token`; `-ca-cert`, `WARD_CACERT`, `VAULT_CACERT`;
//! `-tls-skip-verify`, `WARD_SKIP_VERIFY`, `VAULT_SKIP_VERIFY`; `-wrap-ttl`.
//!
//! Errors carry what to try next: a 403 names the token's policies (looked up with
//! `lookup-self`, best effort) and the capability the request needed; a sealed server says
//! how to unseal; an unreachable one names the address and `WARD_ADDR`.

use std::fmt;
use std::path::PathBuf;

use reqwest::Method;
use serde_json::Value;

use crate::args::Args;

pub(crate) const DEFAULT_ADDRESS: &str = "http://127.0.0.1:8200";

/// What a CLI command fails with. Exit codes as the issue asks, close to Vault's: 1 for a
/// local error (a file that cannot be read, a server that cannot be reached), 2 for a usage
/// error or an error answered by the server.
#[derive(Debug)]
pub(crate) enum CliError {
    Api(Box<ApiError>),
    Usage(String),
    Local(String),
}

/// An error answered by the server, with the hint worked out for it.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: u16,
    pub(crate) method: String,
    pub(crate) url: String,
    pub(crate) errors: Vec<String>,
    /// The first line a person reads: what went wrong and what to try.
    pub(crate) summary: String,
}

impl CliError {
    pub(crate) fn local(message: impl Into<String>) -> CliError {
        CliError::Local(message.into())
    }

    pub(crate) fn usage(message: impl Into<String>) -> CliError {
        CliError::Usage(message.into())
    }

    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::Api(_) | CliError::Usage(_) => 2,
            CliError::Local(_) => 1,
        }
    }

    /// The HTTP status when the server answered with an error.
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            CliError::Api(api) => Some(api.status),
            _ => None,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Api(api) => {
                write!(
                    f,
                    "Error: {}\n\nURL: {} {}\nCode: {}.",
                    api.summary, api.method, api.url, api.status
                )?;
                if !api.errors.is_empty() {
                    writeln!(f, " Errors:")?;
                    for error in &api.errors {
                        write!(f, "\n* {error}")?;
                    }
                }
                Ok(())
            }
            CliError::Usage(message) => write!(
                f,
                "Error: {message}\n\nRun the command with -help for its usage and an example."
            ),
            CliError::Local(message) => write!(f, "Error: {message}"),
        }
    }
}

/// One request: the method, the path under `/v1/`, and what goes with it.
pub(crate) struct Request<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) body: Option<&'a Value>,
    /// Sent as `application/merge-patch+json` (KV v2 patch) instead of `application/json`.
    pub(crate) merge_patch: bool,
}

impl<'a> Request<'a> {
    pub(crate) fn new(method: &'a str, path: &'a str) -> Request<'a> {
        Request {
            method,
            path,
            body: None,
            merge_patch: false,
        }
    }

    pub(crate) fn body(mut self, body: &'a Value) -> Request<'a> {
        self.body = Some(body);
        self
    }
}

pub(crate) struct Client {
    http: reqwest::Client,
    address: String,
    token: Option<String>,
    wrap_ttl: Option<String>,
}

impl Client {
    /// Builds a client from the common flags and the environment.
    pub(crate) fn from_args(args: &Args) -> Result<Client, CliError> {
        let address = args
            .value("address")
            .map(str::to_string)
            .or_else(|| crate::env_var(&["WARD_ADDR", "VAULT_ADDR"]))
            .unwrap_or_else(|| DEFAULT_ADDRESS.to_string());
        let address = address.trim_end_matches('/').to_string();
        if !address.starts_with("http://") && !address.starts_with("https://") {
            return Err(CliError::usage(format!(
                "invalid address {address:?}: it must start with http:// or https://"
            )));
        }
        let skip_verify = args.flag("tls-skip-verify")
            || crate::env_var(&["WARD_SKIP_VERIFY", "VAULT_SKIP_VERIFY"])
                .is_some_and(|v| crate::parse_bool(&v) == Some(true));
        let mut builder = reqwest::Client::builder().use_rustls_tls();
        let ca_cert = args
            .value("ca-cert")
            .map(str::to_string)
            .or_else(|| crate::env_var(&["WARD_CACERT", "VAULT_CACERT"]));
        if let Some(path) = ca_cert {
            let pem = std::fs::read(&path)
                .map_err(|e| CliError::local(format!("cannot read CA certificate {path}: {e}")))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| CliError::local(format!("invalid CA certificate {path}: {e}")))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder
            .build()
            .map_err(|e| CliError::local(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            http,
            address,
            token: configured_token(),
            wrap_ttl: args.value("wrap-ttl").map(str::to_string),
        })
    }

    /// The same client with another token (login checks, `unwrap TOKEN`).
    pub(crate) fn with_token(mut self, token: Option<String>) -> Client {
        self.token = token;
        self
    }

    pub(crate) fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Sends `method path` with an optional JSON body. Returns the JSON body, `None` for 204.
    pub(crate) async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, CliError> {
        self.send(Request {
            method,
            path,
            body,
            merge_patch: false,
        })
        .await
    }

    /// Sends one request to `/v1/<path>`; on an error, works out the hint.
    pub(crate) async fn send(&self, request: Request<'_>) -> Result<Option<Value>, CliError> {
        match self.send_plain(&request).await {
            Err(Failure::Status {
                status,
                method,
                url,
                errors,
            }) => {
                let path = request
                    .path
                    .trim_start_matches('/')
                    .split('?')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let summary = self.summary(status, &method, &path, &errors).await;
                Err(CliError::Api(Box::new(ApiError {
                    status,
                    method,
                    url,
                    errors,
                    summary,
                })))
            }
            Err(Failure::Other(error)) => Err(error),
            Ok(body) => Ok(body),
        }
    }

    async fn send_plain(&self, request: &Request<'_>) -> Result<Option<Value>, Failure> {
        let method = Method::from_bytes(request.method.as_bytes())
            .map_err(|e| Failure::Other(CliError::local(e.to_string())))?;
        let url = format!(
            "{}/v1/{}",
            self.address,
            request.path.trim_start_matches('/')
        );
        let mut builder = self
            .http
            .request(method.clone(), &url)
            .header("X-Vault-Request", "true");
        if let Some(token) = &self.token {
            builder = builder.header("X-Vault-Token", token);
        }
        if let Some(wrap_ttl) = &self.wrap_ttl {
            builder = builder.header("X-Vault-Wrap-TTL", wrap_ttl);
        }
        if let Some(body) = request.body {
            let bytes = serde_json::to_vec(body)
                .map_err(|e| Failure::Other(CliError::local(e.to_string())))?;
            let content_type = if request.merge_patch {
                "application/merge-patch+json"
            } else {
                "application/json"
            };
            builder = builder.header("Content-Type", content_type).body(bytes);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| Failure::Other(self.unreachable(&e)))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| {
            Failure::Other(CliError::local(format!(
                "error reading the response from {url}: {e}"
            )))
        })?;
        let json: Option<Value> = if bytes.is_empty() {
            None
        } else {
            serde_json::from_slice(&bytes).ok()
        };
        if status.is_client_error() || status.is_server_error() {
            let errors = json
                .as_ref()
                .and_then(|v| serde_json::from_value::<ward_api::ErrorBody>(v.clone()).ok())
                .map(|b| b.errors)
                .unwrap_or_default();
            return Err(Failure::Status {
                status: status.as_u16(),
                method: method.to_string(),
                url,
                errors,
            });
        }
        Ok(json)
    }

    /// The line a person reads first for an error response.
    async fn summary(&self, status: u16, method: &str, path: &str, errors: &[String]) -> String {
        let joined = errors.join("; ");
        let sealed = errors
            .iter()
            .any(|e| e.to_ascii_lowercase().contains("sealed"));
        match status {
            503 if sealed => "Ward is sealed; unseal it with: ward operator unseal".into(),
            403 => self.permission_hint(method, path).await,
            _ if errors
                .iter()
                .any(|e| e.to_ascii_lowercase().contains("not initialized")) =>
            {
                "Ward is not initialized; initialize it with: ward operator init".into()
            }
            400 if errors.iter().any(|e| e.contains("missing client token")) => {
                format!("{joined}; log in with: ward login (or set WARD_TOKEN)")
            }
            404 if joined.is_empty() || joined.contains("unsupported path") => format!(
                "nothing at {path} (no such secret, or no secrets engine mounted there); see the mounts with: ward secrets list"
            ),
            405 => format!("{path} does not support {method}{}", suffix(&joined)),
            429 => format!("rate limited at {path}{}; wait and try again", suffix(&joined)),
            _ if joined.is_empty() => format!("the server answered {status} for {path}"),
            _ => format!("{joined} (at {path})"),
        }
    }

    async fn permission_hint(&self, method: &str, path: &str) -> String {
        let capability = match method {
            "GET" => "read",
            "LIST" => "list",
            "DELETE" => "delete",
            "PATCH" => "patch",
            _ => "update",
        };
        if self.token.is_none() {
            return "permission denied: no token was given; log in with: ward login (or set WARD_TOKEN)"
                .into();
        }
        let lookup = self
            .send_plain(&Request::new("GET", "auth/token/lookup-self"))
            .await;
        match lookup {
            Ok(Some(body)) => {
                let mut policies: Vec<String> = body["data"]["policies"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .chain(body["data"]["identity_policies"].as_array().into_iter().flatten())
                    .filter_map(|p| p.as_str().map(str::to_string))
                    .collect();
                policies.dedup();
                format!(
                    "permission denied: the token's policies [{}] do not grant {capability} on {path}; try: ward token capabilities {path}",
                    policies.join(", ")
                )
            }
            Err(Failure::Status { status: 403, .. }) => {
                "permission denied: the token is not valid (expired, revoked or mistyped); log in again with: ward login"
                    .into()
            }
            _ => format!(
                "permission denied: the token does not grant {capability} on {path}; try: ward token capabilities {path}"
            ),
        }
    }

    fn unreachable(&self, error: &reqwest::Error) -> CliError {
        let chain = error_chain(error);
        let lower = chain.to_ascii_lowercase();
        let address = &self.address;
        if lower.contains("connection refused") {
            CliError::local(format!(
                "cannot reach Ward at {address}: connection refused; is the server running? (set WARD_ADDR)"
            ))
        } else if lower.contains("certificate") || lower.contains("tls") {
            CliError::local(format!(
                "cannot reach Ward at {address}: {chain}; if the server uses a private CA, pass -ca-cert=FILE or set WARD_CACERT"
            ))
        } else {
            CliError::local(format!(
                "cannot reach Ward at {address}: {chain}; check the address (set WARD_ADDR)"
            ))
        }
    }
}

enum Failure {
    Status {
        status: u16,
        method: String,
        url: String,
        errors: Vec<String>,
    },
    Other(CliError),
}

fn suffix(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = inner.source();
    }
    message
}

/// The token the CLI uses: `WARD_TOKEN`, `VAULT_TOKEN`, then the token helper file.
pub(crate) fn configured_token() -> Option<String> {
    crate::env_var(&["WARD_TOKEN", "VAULT_TOKEN"]).or_else(read_token_file)
}

fn token_file() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".ward-token"))
}

fn read_token_file() -> Option<String> {
    let text = std::fs::read_to_string(token_file()?).ok()?;
    let token = text.trim();
    (!token.is_empty()).then(|| token.to_string())
}

/// Writes `~/.ward-token` (mode 0600), as Vault's token helper does after a login.
pub(crate) fn store_token(token: &str) -> std::io::Result<()> {
    let path = token_file().ok_or_else(|| std::io::Error::other("HOME is not set"))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path)?;
    // An existing file keeps its mode on open: tighten it in case it was created looser.
    #[cfg(unix)]
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    std::io::Write::write_all(&mut file, token.as_bytes())
}
