//! A small typed client for the Vault-compatible API: the calls the agent makes itself (login,
//! token renewal, secret reads, lease renewal, the KV version preflight, response wrapping).
//!
//! The wire shapes come from `ward_api`; this module owns the transport (reqwest over rustls,
//! with the server's CA) and turns Vault's `{"errors": [...]}` into [`ClientError`]. Tokens go
//! in `X-Vault-Token` and are held as [`SecretString`]; nothing here logs a token.

use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value};
use ward_api::ResponseEnvelope;

use crate::config::VaultConfig;
use crate::secret::SecretString;
use crate::tls::{self, TlsOptions};

/// What went wrong talking to the server.
#[derive(Debug)]
pub enum ClientError {
    /// Could not connect or the connection broke: the server may be down.
    Transport(String),
    /// The server answered with an error status.
    Status {
        status: u16,
        errors: Vec<String>,
    },
    /// The answer was not what the endpoint should return.
    Decode(String),
    Setup(String),
}

impl ClientError {
    /// Errors worth retrying (the server being down or overloaded), as opposed to a denial.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Transport(_) => true,
            ClientError::Status { status, .. } => *status >= 500 || *status == 429,
            ClientError::Decode(_) | ClientError::Setup(_) => false,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Transport(message) => write!(f, "server unreachable: {message}"),
            ClientError::Status { status, errors } if errors.is_empty() => {
                write!(f, "server answered {status}")
            }
            ClientError::Status { status, errors } => {
                write!(f, "server answered {status}: {}", errors.join("; "))
            }
            ClientError::Decode(message) => write!(f, "unexpected answer: {message}"),
            ClientError::Setup(message) => write!(f, "client setup: {message}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A token from a login or a renewal.
#[derive(Debug, Clone)]
pub struct AuthToken {
    pub token: SecretString,
    pub accessor: String,
    pub lease_duration: Duration,
    pub renewable: bool,
}

/// A secret as read, with its lease.
#[derive(Debug, Clone)]
pub struct SecretResponse {
    /// The whole envelope as JSON (`.Data`, `.LeaseID`... in templates).
    pub envelope: Value,
    pub lease_id: String,
    pub lease_duration: Duration,
    pub renewable: bool,
}

/// A renewed lease.
#[derive(Debug, Clone, Copy)]
pub struct RenewedLease {
    pub lease_duration: Duration,
    pub renewable: bool,
}

/// The client. Cheap to clone (reqwest pools connections inside).
#[derive(Clone)]
pub struct VaultClient {
    http: reqwest::Client,
    address: String,
}

impl fmt::Debug for VaultClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultClient")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

const TOKEN_HEADER: &str = "X-Vault-Token";
const REQUEST_HEADER: &str = "X-Vault-Request";

impl VaultClient {
    pub fn new(config: &VaultConfig) -> Result<VaultClient, ClientError> {
        let tls = tls::client_config(TlsOptions {
            ca_cert: config.ca_cert.as_deref(),
            danger_skip_verify: config.danger_tls_skip_verify,
            http2: true,
        })
        .map_err(|error| ClientError::Setup(error.to_string()))?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|error| ClientError::Setup(error.to_string()))?;
        Ok(VaultClient {
            http,
            address: config.address.trim_end_matches('/').to_owned(),
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// One API call. `Ok(None)` for a 204.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&SecretString>,
        body: Option<&Value>,
        wrap_ttl: Option<Duration>,
    ) -> Result<Option<Value>, ClientError> {
        let url = format!("{}/v1/{}", self.address, path.trim_start_matches('/'));
        let mut request = self
            .http
            .request(method, url)
            .header(REQUEST_HEADER, "true");
        if let Some(token) = token {
            request = request.header(TOKEN_HEADER, token.expose());
        }
        if let Some(ttl) = wrap_ttl {
            request = request.header("X-Vault-Wrap-TTL", ttl.as_secs().max(1).to_string());
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|error| ClientError::Transport(error_chain(&error)))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| ClientError::Transport(error_chain(&error)))?;
        if status >= 400 {
            let errors = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|value| {
                    value.get("errors").and_then(Value::as_array).map(|list| {
                        list.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                })
                .unwrap_or_default();
            return Err(ClientError::Status { status, errors });
        }
        if status == 204 || bytes.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| ClientError::Decode(format!("{path}: {error}")))
    }

    async fn envelope(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&SecretString>,
        body: Option<&Value>,
    ) -> Result<ResponseEnvelope, ClientError> {
        let value = self
            .call(method, path, token, body, None)
            .await?
            .ok_or_else(|| ClientError::Decode(format!("{path}: empty response")))?;
        serde_json::from_value(value)
            .map_err(|error| ClientError::Decode(format!("{path}: {error}")))
    }

    /// `POST <mount>/login` with the method's body.
    pub async fn login(&self, mount_path: &str, body: &Value) -> Result<AuthToken, ClientError> {
        let path = format!("{}/login", mount_path.trim_matches('/'));
        let envelope = self
            .envelope(reqwest::Method::POST, &path, None, Some(body))
            .await?;
        auth_token(envelope, &path)
    }

    /// `POST auth/token/renew-self`.
    pub async fn renew_self(
        &self,
        token: &SecretString,
        increment: Option<Duration>,
    ) -> Result<AuthToken, ClientError> {
        let body = match increment {
            Some(increment) => serde_json::json!({ "increment": increment.as_secs() }),
            None => serde_json::json!({}),
        };
        let envelope = self
            .envelope(
                reqwest::Method::POST,
                "auth/token/renew-self",
                Some(token),
                Some(&body),
            )
            .await?;
        auth_token(envelope, "auth/token/renew-self")
    }

    /// `GET auth/token/lookup-self`: the remaining TTL and renewability of a token handed to us.
    pub async fn lookup_self(&self, token: &SecretString) -> Result<(Duration, bool), ClientError> {
        let envelope = self
            .envelope(
                reqwest::Method::GET,
                "auth/token/lookup-self",
                Some(token),
                None,
            )
            .await?;
        let data = envelope.data.unwrap_or_default();
        let ttl = data.get("ttl").and_then(Value::as_u64).unwrap_or(0);
        let renewable = data
            .get("renewable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok((Duration::from_secs(ttl), renewable))
    }

    /// Reads a secret (GET), or writes parameters to it (PUT) as `secret "path" "k=v"` does.
    pub async fn read_secret(
        &self,
        path: &str,
        params: &Map<String, Value>,
        token: &SecretString,
    ) -> Result<Option<SecretResponse>, ClientError> {
        let result = if params.is_empty() {
            self.call(reqwest::Method::GET, path, Some(token), None, None)
                .await
        } else {
            let body = Value::Object(params.clone());
            self.call(reqwest::Method::PUT, path, Some(token), Some(&body), None)
                .await
        };
        let value = match result {
            Ok(Some(value)) => value,
            Ok(None) => return Ok(None),
            Err(ClientError::Status { status: 404, .. }) => return Ok(None),
            Err(error) => return Err(error),
        };
        let lease_id = value
            .get("lease_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let lease_duration = value
            .get("lease_duration")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let renewable = value
            .get("renewable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(Some(SecretResponse {
            envelope: value,
            lease_id,
            lease_duration: Duration::from_secs(lease_duration),
            renewable,
        }))
    }

    /// `PUT sys/leases/renew`.
    pub async fn renew_lease(
        &self,
        lease_id: &str,
        increment: Option<Duration>,
        token: &SecretString,
    ) -> Result<RenewedLease, ClientError> {
        let mut body = serde_json::json!({ "lease_id": lease_id });
        if let (Some(increment), Some(object)) = (increment, body.as_object_mut()) {
            object.insert("increment".into(), Value::from(increment.as_secs()));
        }
        let envelope = self
            .envelope(
                reqwest::Method::PUT,
                "sys/leases/renew",
                Some(token),
                Some(&body),
            )
            .await?;
        Ok(RenewedLease {
            lease_duration: Duration::from_secs(envelope.lease_duration),
            renewable: envelope.renewable,
        })
    }

    /// The KV version of the mount holding `path` (`sys/internal/ui/mounts/<path>`): `Some(2)`
    /// with the mount's path for KV v2, `None` when unknown (the caller then assumes KV v1).
    pub async fn kv_mount(&self, path: &str, token: &SecretString) -> Option<(String, u8)> {
        let value = self
            .call(
                reqwest::Method::GET,
                &format!("sys/internal/ui/mounts/{path}"),
                Some(token),
                None,
                None,
            )
            .await
            .ok()
            .flatten()?;
        // Vault answers with the envelope; some servers copy `data` to the top level.
        let data = value
            .get("data")
            .filter(|data| data.is_object())
            .unwrap_or(&value);
        let mount = data.get("path").and_then(Value::as_str)?.to_owned();
        let engine = data.get("type").and_then(Value::as_str).unwrap_or_default();
        let version = data
            .get("options")
            .and_then(|options| options.get("version"))
            .and_then(Value::as_str)
            .unwrap_or("1");
        if (engine == "kv" || engine == "generic") && version == "2" {
            Some((mount, 2))
        } else {
            Some((mount, 1))
        }
    }

    /// `POST sys/wrapping/wrap`: wraps `data` in a single-use token; returns `wrap_info` JSON.
    pub async fn wrap(
        &self,
        data: &Value,
        ttl: Duration,
        token: &SecretString,
    ) -> Result<Value, ClientError> {
        let value = self
            .call(
                reqwest::Method::POST,
                "sys/wrapping/wrap",
                Some(token),
                Some(data),
                Some(ttl),
            )
            .await?
            .ok_or_else(|| ClientError::Decode("sys/wrapping/wrap: empty response".into()))?;
        value
            .get("wrap_info")
            .filter(|info| info.is_object())
            .cloned()
            .ok_or_else(|| ClientError::Decode("sys/wrapping/wrap: no wrap_info".into()))
    }
}

fn auth_token(mut envelope: ResponseEnvelope, path: &str) -> Result<AuthToken, ClientError> {
    let mut auth = envelope
        .auth
        .take()
        .ok_or_else(|| ClientError::Decode(format!("{path}: no auth block")))?;
    let token = SecretString::from(std::mem::take(&mut auth.client_token));
    if token.is_empty() {
        return Err(ClientError::Decode(format!("{path}: empty client_token")));
    }
    Ok(AuthToken {
        token,
        accessor: std::mem::take(&mut auth.accessor),
        lease_duration: Duration::from_secs(auth.lease_duration),
        renewable: auth.renewable,
    })
}

/// The error and its sources on one line (reqwest hides the cause otherwise).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Splits `secret "path" "k=v" "k2=v2"` parameters into a JSON object.
pub fn parse_params(params: &[String]) -> Result<Map<String, Value>, String> {
    let mut map = Map::new();
    for param in params {
        let (key, value) = param
            .split_once('=')
            .ok_or_else(|| format!("secret parameter `{param}` is not key=value"))?;
        map.insert(key.to_owned(), Value::String(value.to_owned()));
    }
    Ok(map)
}

/// Inserts `data/` after a KV v2 mount unless the path already addresses `data/` or
/// `metadata/` (Vault Agent's rule).
pub fn kv2_data_path(path: &str, mount: &str) -> String {
    let mount = mount.trim_end_matches('/');
    let path = path.trim_start_matches('/');
    let Some(rest) = path.strip_prefix(mount) else {
        return path.to_owned();
    };
    let rest = rest.trim_start_matches('/');
    if rest.starts_with("data/") || rest.starts_with("metadata/") || rest == "data" {
        path.to_owned()
    } else {
        format!("{mount}/data/{rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv2_paths_get_data_inserted_once() {
        assert_eq!(kv2_data_path("secret/app", "secret/"), "secret/data/app");
        assert_eq!(
            kv2_data_path("secret/data/app", "secret/"),
            "secret/data/app"
        );
        assert_eq!(
            kv2_data_path("secret/metadata/app", "secret/"),
            "secret/metadata/app"
        );
        assert_eq!(kv2_data_path("kv/a/b", "kv"), "kv/data/a/b");
    }

    #[test]
    fn params_parse() {
        let map = parse_params(&["common_name=x.example".into(), "ttl=1h".into()]).expect("ok");
        assert_eq!(map["common_name"], "x.example");
        assert!(parse_params(&["nokey".into()]).is_err());
    }
}
