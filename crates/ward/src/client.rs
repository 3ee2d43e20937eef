//! The HTTP client the CLI verbs use: address, token and TLS settings from flags and the
//! environment, Vault style, and one `request` method that returns the JSON body or the
//! server's error messages.
//!
//! Settings, first found wins: `-address`, `WARD_ADDR`, `VAULT_ADDR`, `http://127.0.0.1:8200`;
//! `WARD_TOKEN`, `VAULT_TOKEN`, `~/.ward-token`; `-ca-cert`, `WARD_CACERT`, `VAULT_CACERT`;
//! `-tls-skip-verify`, `WARD_SKIP_VERIFY`, `VAULT_SKIP_VERIFY`. A typed client shared with the
//! agent is expected in its own crate later; this one is deliberately small.

use std::fmt;
use std::path::PathBuf;

use reqwest::Method;
use serde_json::Value;

use crate::args::Args;

pub(crate) const DEFAULT_ADDRESS: &str = "http://127.0.0.1:8200";

/// What a CLI command fails with: the server said no (exit code 2) or something went wrong
/// locally (exit code 1), as with Vault's CLI.
#[derive(Debug)]
pub(crate) enum CliError {
    Api {
        status: u16,
        method: String,
        url: String,
        errors: Vec<String>,
    },
    Local(String),
}

impl CliError {
    pub(crate) fn local(message: impl Into<String>) -> CliError {
        CliError::Local(message.into())
    }

    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            CliError::Api { .. } => 2,
            CliError::Local(_) => 1,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Api {
                status,
                method,
                url,
                errors,
            } => {
                write!(
                    f,
                    "Error making API request.\n\nURL: {method} {url}\nCode: {status}."
                )?;
                if errors.is_empty() {
                    Ok(())
                } else {
                    writeln!(f, " Errors:")?;
                    for error in errors {
                        write!(f, "\n* {error}")?;
                    }
                    Ok(())
                }
            }
            CliError::Local(message) => f.write_str(message),
        }
    }
}

pub(crate) struct Client {
    http: reqwest::Client,
    address: String,
    token: Option<String>,
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
        let token = crate::env_var(&["WARD_TOKEN", "VAULT_TOKEN"]).or_else(read_token_file);
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
            token,
        })
    }

    /// Sends one request to `/v1/<path>`. Returns the JSON body, `None` for 204, or the
    /// server's error.
    pub(crate) async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, CliError> {
        let method =
            Method::from_bytes(method.as_bytes()).map_err(|e| CliError::local(e.to_string()))?;
        let url = format!("{}/v1/{}", self.address, path.trim_start_matches('/'));
        let mut request = self
            .http
            .request(method.clone(), &url)
            .header("X-Vault-Request", "true");
        if let Some(token) = &self.token {
            request = request.header("X-Vault-Token", token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            CliError::local(format!(
                "error making API request to {url}: {}",
                error_chain(&e)
            ))
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| CliError::local(format!("error reading the response from {url}: {e}")))?;
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
            return Err(CliError::Api {
                status: status.as_u16(),
                method: method.to_string(),
                url,
                errors,
            });
        }
        Ok(json)
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        message.push_str(": ");
        message.push_str(&inner.to_string());
        source = inner.source();
    }
    message
}

fn token_file() -> Option<PathBuf> {
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".ward-token"))
}

fn read_token_file() -> Option<String> {
    let text = std::fs::read_to_string(token_file()?).ok()?;
    let token = text.trim();
    (!token.is_empty()).then(|| token.to_string())
}

/// Writes `~/.ward-token` (mode 0600), as Vault's token helper does after a dev start.
pub(crate) fn store_token(token: &str) -> std::io::Result<()> {
    let path = token_file().ok_or_else(|| std::io::Error::other("HOME is not set"))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(path)?, token.as_bytes())
}
