//! Auto-auth: log in with the workload's identity, keep the token alive, log in again when it
//! cannot be kept, and hand the token to the sinks and to the rest of the agent.
//!
//! Methods: `kubernetes` and `jwt` (POST `<mount>/login {role, jwt}` with the JWT read from its
//! file at each login, since projected service-account tokens rotate), `approle`
//! (`{role_id, secret_id}`, the secret ID file optionally removed after reading and the value
//! kept in memory for later logins) and `token_file` (a token handed to us; its TTL comes from
//! `lookup-self`). After a login the token is renewed with `renew-self` at about two thirds of
//! its TTL (with jitter); when a renewal fails or stops extending the TTL, the agent logs in
//! again. Failed logins are retried with bounded, jittered exponential backoff and one log line
//! each. The token is never logged.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::backoff::{jittered_fraction, Backoff};
use crate::client::{AuthToken, ClientError, VaultClient};
use crate::config::{MethodConfig, MethodKind, SinkConfig};
use crate::fsutil;
use crate::metrics::Metrics;
use crate::secret::SecretString;

/// Why a login could not even be attempted or was refused.
#[derive(Debug)]
pub enum AuthError {
    /// A credential file could not be read.
    Credential(String),
    Server(ClientError),
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::Credential(message) => f.write_str(message),
            AuthError::Server(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for AuthError {}

/// Runs auto-auth until `exit_on_err` gives up (returns the error) or forever.
pub struct AutoAuth {
    client: VaultClient,
    method: MethodConfig,
    sinks: Vec<SinkConfig>,
    token: watch::Sender<Option<Arc<SecretString>>>,
    metrics: Arc<Metrics>,
    /// The AppRole secret ID after its file was read (and maybe removed).
    cached_secret_id: Option<SecretString>,
}

impl AutoAuth {
    pub fn new(
        client: VaultClient,
        method: MethodConfig,
        sinks: Vec<SinkConfig>,
        token: watch::Sender<Option<Arc<SecretString>>>,
        metrics: Arc<Metrics>,
    ) -> AutoAuth {
        AutoAuth {
            client,
            method,
            sinks,
            token,
            metrics,
            cached_secret_id: None,
        }
    }

    pub async fn run(mut self) -> AuthError {
        let mut backoff = Backoff::new(self.method.min_backoff, self.method.max_backoff);
        loop {
            let auth = match self.authenticate().await {
                Ok(auth) => auth,
                Err(error) => {
                    self.metrics.auth_login_failures.inc();
                    if self.method.exit_on_err {
                        tracing::error!(method = self.method.kind.name(), %error, "auto-auth login failed; exit_on_err is set");
                        return error;
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        method = self.method.kind.name(),
                        attempt = backoff.attempts(),
                        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        %error,
                        "auto-auth login failed; retrying"
                    );
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            backoff.reset();
            self.metrics.auth_logins.inc();
            tracing::info!(
                method = self.method.kind.name(),
                ttl_seconds = auth.lease_duration.as_secs(),
                renewable = auth.renewable,
                accessor = %auth.accessor,
                "auto-auth: authenticated"
            );
            self.publish(&auth).await;
            self.keep_alive(auth).await;
        }
    }

    /// One login attempt (or, for `token_file`, reading and checking the token).
    async fn authenticate(&mut self) -> Result<AuthToken, AuthError> {
        let method = &self.method;
        let body = match method.kind {
            MethodKind::TokenFile => {
                let path = method
                    .token_file_path
                    .as_deref()
                    .ok_or_else(|| AuthError::Credential("no token_file_path".into()))?;
                let token = read_secret_file(path)?;
                let (ttl, renewable) = self
                    .client
                    .lookup_self(&token)
                    .await
                    .map_err(AuthError::Server)?;
                return Ok(AuthToken {
                    token,
                    accessor: String::new(),
                    lease_duration: ttl,
                    renewable,
                });
            }
            MethodKind::Kubernetes | MethodKind::Jwt => {
                let default_path = Path::new("/var/run/secrets/kubernetes.io/serviceaccount/token");
                let path = method.jwt_path.as_deref().unwrap_or(default_path);
                let jwt = read_secret_file(path)?;
                json!({ "role": method.role.clone().unwrap_or_default(), "jwt": jwt.expose() })
            }
            MethodKind::Approle => {
                let role_path = method
                    .role_id_file_path
                    .as_deref()
                    .ok_or_else(|| AuthError::Credential("no role_id_file_path".into()))?;
                let role_id = read_secret_file(role_path)?;
                let mut body = json!({ "role_id": role_id.expose() });
                if let Some(secret_path) = method.secret_id_file_path.clone() {
                    let secret_id = match read_secret_file(&secret_path) {
                        Ok(secret_id) => {
                            if method.remove_secret_id_file_after_reading {
                                let _ = std::fs::remove_file(&secret_path);
                            }
                            self.cached_secret_id = Some(secret_id.clone());
                            secret_id
                        }
                        Err(error) => self.cached_secret_id.clone().ok_or(error)?,
                    };
                    if let Some(object) = body.as_object_mut() {
                        object.insert("secret_id".into(), secret_id.expose().into());
                    }
                }
                body
            }
        };
        let result = self.client.login(&self.method.mount_path, &body).await;
        // The body held the JWT or secret ID in the clear; wipe what we can.
        drop(body);
        result.map_err(AuthError::Server)
    }

    /// Sends the token to the agent and writes it to every sink.
    async fn publish(&self, auth: &AuthToken) {
        let token = Arc::new(auth.token.clone());
        for sink in &self.sinks {
            let contents = match sink.wrap_ttl {
                Some(ttl) => match self
                    .client
                    .wrap(&json!({ "token": token.expose() }), ttl, &token)
                    .await
                {
                    Ok(wrap_info) => SecretString::new(wrap_info.to_string()),
                    Err(error) => {
                        tracing::error!(sink = %sink.path.display(), %error, "wrapping the token for a sink failed");
                        continue;
                    }
                },
                None => auth.token.clone(),
            };
            match fsutil::write_atomic(&sink.path, contents.expose().as_bytes(), sink.mode, None) {
                Ok(()) => tracing::info!(sink = %sink.path.display(), "token written to sink"),
                Err(error) => {
                    tracing::error!(sink = %sink.path.display(), %error, "writing the token sink failed")
                }
            }
        }
        self.token.send_replace(Some(token));
    }

    /// Renews the token until it cannot be kept; returns when a new login is due.
    async fn keep_alive(&self, auth: AuthToken) {
        let ttl = auth.lease_duration;
        if ttl.is_zero() {
            // A token without TTL (root, or periodic with no period reported) needs no care.
            std::future::pending::<()>().await;
        }
        let mut expires_at = Instant::now() + ttl;
        let mut current_ttl = ttl;
        if !auth.renewable {
            tokio::time::sleep(jittered_fraction(ttl, 2.0 / 3.0, 0.1)).await;
            tracing::info!(
                method = self.method.kind.name(),
                "token is not renewable; logging in again before it expires"
            );
            return;
        }
        loop {
            tokio::time::sleep(jittered_fraction(current_ttl, 2.0 / 3.0, 0.1)).await;
            match self.client.renew_self(&auth.token, Some(ttl)).await {
                Ok(renewed) => {
                    self.metrics.token_renewals.inc();
                    let now = Instant::now();
                    let new_expiry = now + renewed.lease_duration;
                    // Renewal capped by the token's max TTL no longer moves the expiry.
                    if new_expiry <= expires_at + Duration::from_secs(1)
                        || renewed.lease_duration.is_zero()
                    {
                        let remaining = expires_at.saturating_duration_since(now);
                        tracing::info!(
                            remaining_seconds = remaining.as_secs(),
                            "token renewal no longer extends its TTL; logging in again"
                        );
                        return;
                    }
                    tracing::debug!(
                        ttl_seconds = renewed.lease_duration.as_secs(),
                        "token renewed"
                    );
                    expires_at = new_expiry;
                    current_ttl = renewed.lease_duration;
                }
                Err(error) => {
                    self.metrics.token_renewal_failures.inc();
                    tracing::warn!(%error, "token renewal failed; logging in again");
                    return;
                }
            }
        }
    }
}

/// Reads a credential file, trimming surrounding whitespace.
fn read_secret_file(path: &Path) -> Result<SecretString, AuthError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| AuthError::Credential(format!("reading {}: {error}", path.display())))?;
    let value = SecretString::new(text.trim());
    drop(zeroize::Zeroizing::new(text));
    if value.is_empty() {
        return Err(AuthError::Credential(format!(
            "{} is empty",
            path.display()
        )));
    }
    Ok(value)
}
