//! `ward server`: the configuration file, the HTTP front of the core, TLS listeners, and
//! start-up and shutdown.
//!
//! The pieces, in the order `main` uses them: [`config::Config`] (loaded once, passed down),
//! [`serve::BoundListener::bind`] (bind before anything slow), [`open_storage`] and
//! [`build_core`], [`serve::start`] (accept loops and the token expiry sweeper),
//! [`serve::shutdown_signal`] and [`serve::Running::shutdown`] (drain). [`handler::Handler`]
//! is the whole HTTP API and can be driven without a socket, which is how the HTTP tests run.
//!
//! This crate is the only one that knows HTTP status codes; the core answers with
//! `ward_core::Error` kinds and `handler` maps them in one `match`.

pub mod alert_webhook;
pub mod audit_socket;
mod body;
pub mod config;
pub mod gatekeeper;
pub mod handler;
pub mod mlock;
mod operator;
mod raw;
pub mod serve;
pub mod tls;
pub mod ui;
mod uri;

use std::fmt;
use std::sync::Arc;

use ward_core::{Core, CoreConfig};
use ward_storage::Physical;

pub use handler::Handler;

/// A failure to start the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub message: String,
}

impl ServerError {
    pub fn new(message: impl Into<String>) -> ServerError {
        ServerError {
            message: message.into(),
        }
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ServerError {}

impl From<tls::TlsError> for ServerError {
    fn from(e: tls::TlsError) -> ServerError {
        ServerError::new(e.message)
    }
}

impl From<config::ConfigError> for ServerError {
    fn from(e: config::ConfigError) -> ServerError {
        ServerError::new(e.message)
    }
}

/// Opens the configured storage backend. SQLite opening blocks (it may recover a WAL), so
/// it runs on the blocking pool.
pub async fn open_storage(storage: &config::Storage) -> Result<Arc<dyn Physical>, ServerError> {
    match storage {
        config::Storage::InMemory => Ok(Arc::new(ward_storage::InMemory::new())),
        config::Storage::Sqlite { path } => {
            let path = path.clone();
            let display = path.display().to_string();
            let opened =
                tokio::task::spawn_blocking(move || ward_storage::sqlite::Sqlite::open(path))
                    .await
                    .map_err(|e| ServerError::new(format!("opening {display} failed: {e}")))?;
            let sqlite = opened.map_err(|e| {
                ServerError::new(format!("cannot open sqlite storage {display}: {e}"))
            })?;
            Ok(Arc::new(sqlite))
        }
    }
}

/// The core, with the built-in engines, configured from the server configuration.
pub fn build_core(config: &config::Config, physical: Arc<dyn Physical>) -> Arc<Core> {
    let defaults = CoreConfig::default();
    let core_config = CoreConfig {
        default_lease_ttl: config
            .default_lease_ttl
            .unwrap_or(defaults.default_lease_ttl),
        max_lease_ttl: config.max_lease_ttl.unwrap_or(defaults.max_lease_ttl),
        cluster_name: config.cluster_name.clone().unwrap_or(defaults.cluster_name),
        storage_type: config.storage.kind().to_string(),
    };
    let core = Core::new(core_config, physical, ward_engines::registry());
    // Access-request gatekeeper webhooks; without the client such roles deny every request.
    match gatekeeper::HttpGatekeeper::new() {
        Ok(client) => core.set_gatekeeper(Arc::new(client)),
        Err(e) => tracing::warn!(error = %e, "access-request gatekeeper webhooks are unavailable"),
    }
    // Socket audit devices need sockets, which the core never opens; registered before any
    // unseal so that devices restored from storage find their factory.
    core.register_audit_factory("socket", Arc::new(audit_socket::SocketSinkFactory));
    // Alert delivery starts a background task, so it needs the runtime the server runs on.
    if tokio::runtime::Handle::try_current().is_ok() {
        match alert_webhook::WebhookTransport::new() {
            Ok(transport) => core.set_alert_transport(Arc::new(transport)),
            Err(e) => {
                tracing::warn!(error = %e, "alert webhooks are unavailable; alerts stay pending")
            }
        }
    }
    core
}
