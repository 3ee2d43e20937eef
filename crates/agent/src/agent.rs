//! The agent's lifecycle: build the parts from a config, bind the listeners, run until a signal
//! or a fatal condition, and clean up.
//!
//! [`Agent::start`] returns a [`RunningAgent`] with the bound addresses, so tests can run an
//! agent in-process on port 0; `run_from_args` in the crate root drives the same path for
//! `ward agent`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::api_proxy::{self, ApiProxy};
use crate::auth::AutoAuth;
use crate::client::VaultClient;
use crate::config::{AgentConfig, ListenerConfig};
use crate::egress::{self, EgressProxy};
use crate::http_util;
use crate::metrics::Metrics;
use crate::runner::{self, RunnerContext};
use crate::secrets::{Fatal, SecretManager, SecretSettings};
use crate::tls::{self, TlsOptions};

/// Why the agent could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// Builds and starts agents.
pub struct Agent;

/// A started agent.
pub struct RunningAgent {
    /// Where the egress proxy listens, if configured.
    pub egress_address: Option<SocketAddr>,
    /// Where each TCP listener (API proxy) is bound, in config order.
    pub listener_addresses: Vec<SocketAddr>,
    pub metrics: Arc<Metrics>,
    fatal: mpsc::UnboundedReceiver<Fatal>,
    shutdown: watch::Sender<bool>,
    exit_after_auth: Option<ExitAfterAuth>,
    pid_file: Option<PathBuf>,
    unix_sockets: Vec<PathBuf>,
    /// Keeps the token channel open for the secret tasks when there is no auto-auth.
    _token_sender: Option<watch::Sender<Option<Arc<crate::secret::SecretString>>>>,
}

struct ExitAfterAuth {
    token: crate::secrets::TokenReceiver,
    rendered: mpsc::UnboundedReceiver<usize>,
    n_templates: usize,
}

impl Agent {
    /// Starts every part of the agent described by `config`.
    pub async fn start(config: AgentConfig) -> Result<RunningAgent, StartError> {
        let metrics = Arc::new(Metrics::default());
        let (fatal_tx, fatal_rx) = mpsc::unbounded_channel();
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        if let Some(pid_file) = &config.pid_file {
            std::fs::write(pid_file, format!("{}\n", std::process::id())).map_err(|error| {
                StartError(format!("writing pid file {}: {error}", pid_file.display()))
            })?;
        }
        let client =
            VaultClient::new(&config.vault).map_err(|error| StartError(error.to_string()))?;
        let (token_tx, token_rx) = watch::channel(None);
        let mut kept_sender = None;
        match &config.auto_auth {
            Some(auto_auth) => {
                let auth = AutoAuth::new(
                    client.clone(),
                    auto_auth.method.clone(),
                    auto_auth.sinks.clone(),
                    token_tx,
                    Arc::clone(&metrics),
                );
                let fatal = fatal_tx.clone();
                tokio::spawn(async move {
                    let error = auth.run().await;
                    let _ = fatal.send(Fatal {
                        reason: format!("auto-auth gave up: {error}"),
                    });
                });
            }
            None => {
                // Without auto-auth the secret tasks wait forever; keep the sender alive so
                // that they wait instead of seeing a closed channel.
                kept_sender = Some(token_tx);
            }
        }
        let manager = SecretManager::new(
            client.clone(),
            token_rx.clone(),
            SecretSettings {
                static_interval: config.template_config.static_secret_render_interval,
                num_retries: config.vault.num_retries,
                exit_on_retry_failure: config.template_config.exit_on_retry_failure,
                ..SecretSettings::default()
            },
            fatal_tx.clone(),
            Arc::clone(&metrics),
        );
        // Templates: parse them all before starting any, so a typo stops the agent at once.
        let mut templates = Vec::new();
        for template_config in &config.templates {
            let template = runner::load_template(template_config).map_err(StartError)?;
            templates.push((template_config.clone(), template));
        }
        let (rendered_tx, rendered_rx) = mpsc::unbounded_channel();
        let n_templates = templates.len();
        let context = RunnerContext {
            manager: manager.clone(),
            metrics: Arc::clone(&metrics),
            fatal: fatal_tx.clone(),
            exit_on_retry_failure: config.template_config.exit_on_retry_failure,
            secrets_dir: config.secrets_dir.clone(),
            rendered: rendered_tx,
        };
        for (index, (template_config, template)) in templates.into_iter().enumerate() {
            tokio::spawn(runner::run_template(
                index,
                template_config,
                template,
                context.clone(),
            ));
        }
        // The egress proxy.
        let mut egress_address = None;
        if let Some(egress_config) = &config.egress {
            let proxy = EgressProxy::new(egress_config, Some(&manager), &metrics)
                .map_err(|error| StartError(error.to_string()))?;
            let listener = tokio::net::TcpListener::bind(&egress_config.listener)
                .await
                .map_err(|error| {
                    StartError(format!(
                        "binding the egress listener {}: {error}",
                        egress_config.listener
                    ))
                })?;
            let address = listener
                .local_addr()
                .map_err(|error| StartError(error.to_string()))?;
            tracing::info!(address = %address, routes = egress_config.routes.len(), "egress proxy listening");
            egress_address = Some(address);
            egress::spawn_dedicated(Arc::new(proxy), listener, shutdown_rx.clone())
                .map_err(|error| StartError(format!("starting the egress proxy: {error}")))?;
        }
        // The API proxy listeners.
        let mut listener_addresses = Vec::new();
        let mut unix_sockets = Vec::new();
        if !config.listeners.is_empty() {
            let server: http::Uri = config.vault.address.parse().map_err(|_| {
                StartError(format!("invalid server address {}", config.vault.address))
            })?;
            let api_client = http_util::upstream_client(TlsOptions {
                ca_cert: config.vault.ca_cert.as_deref(),
                danger_skip_verify: config.vault.danger_tls_skip_verify,
                http2: true,
            })
            .map_err(|error| StartError(error.to_string()))?;
            let proxy = Arc::new(ApiProxy {
                client: api_client,
                server,
                token: token_rx.clone(),
                use_auto_auth_token: config.api_proxy.use_auto_auth_token,
                metrics: Arc::clone(&metrics),
            });
            for listener_config in &config.listeners {
                match listener_config {
                    ListenerConfig::Tcp { address, tls } => {
                        let acceptor = match tls {
                            Some(tls) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(
                                tls::server_config(&tls.cert_file, &tls.key_file)
                                    .map_err(|error| StartError(error.to_string()))?,
                            ))),
                            None => None,
                        };
                        let listener =
                            tokio::net::TcpListener::bind(address)
                                .await
                                .map_err(|error| {
                                    StartError(format!("binding listener {address}: {error}"))
                                })?;
                        let bound = listener
                            .local_addr()
                            .map_err(|error| StartError(error.to_string()))?;
                        tracing::info!(address = %bound, tls = acceptor.is_some(), "API proxy listening");
                        listener_addresses.push(bound);
                        tokio::spawn(api_proxy::serve_tcp(
                            Arc::clone(&proxy),
                            listener,
                            acceptor,
                            shutdown_rx.clone(),
                        ));
                    }
                    ListenerConfig::Unix { path } => {
                        let _ = std::fs::remove_file(path);
                        let listener = tokio::net::UnixListener::bind(path).map_err(|error| {
                            StartError(format!("binding listener {}: {error}", path.display()))
                        })?;
                        tracing::info!(path = %path.display(), "API proxy listening");
                        unix_sockets.push(path.clone());
                        tokio::spawn(api_proxy::serve_unix(
                            Arc::clone(&proxy),
                            listener,
                            shutdown_rx.clone(),
                        ));
                    }
                }
            }
        }
        let exit_after_auth = config.exit_after_auth.then(|| ExitAfterAuth {
            token: token_rx,
            rendered: rendered_rx,
            n_templates,
        });
        Ok(RunningAgent {
            egress_address,
            listener_addresses,
            metrics,
            fatal: fatal_rx,
            shutdown: shutdown_tx,
            exit_after_auth,
            pid_file: config.pid_file.clone(),
            unix_sockets,
            _token_sender: kept_sender,
        })
    }
}

impl RunningAgent {
    /// Runs until a signal (exit 0), a fatal condition (exit 1), or, with `exit_after_auth`,
    /// the first token and the first render of every template (exit 0).
    pub async fn wait(mut self) -> i32 {
        let code = tokio::select! {
            code = wait_for_signal() => code,
            fatal = self.fatal.recv() => match fatal {
                Some(fatal) => {
                    tracing::error!(reason = %fatal.reason, "agent stopping");
                    1
                }
                None => 1,
            },
            () = exit_after_auth(self.exit_after_auth.take()) => {
                tracing::info!("exit_after_auth: authenticated and rendered; exiting");
                0
            }
        };
        self.stop();
        code
    }

    /// Stops the listeners and removes the pid file and sockets.
    pub fn stop(&self) {
        self.shutdown.send_replace(true);
        if let Some(pid_file) = &self.pid_file {
            let _ = std::fs::remove_file(pid_file);
        }
        for socket in &self.unix_sockets {
            let _ = std::fs::remove_file(socket);
        }
    }
}

async fn exit_after_auth(state: Option<ExitAfterAuth>) {
    let Some(mut state) = state else {
        return std::future::pending().await;
    };
    while state.token.borrow_and_update().is_none() {
        if state.token.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
    let mut seen = std::collections::HashSet::new();
    while seen.len() < state.n_templates {
        match state.rendered.recv().await {
            Some(index) => {
                seen.insert(index);
            }
            None => return std::future::pending().await,
        }
    }
}

async fn wait_for_signal() -> i32 {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; stopping"),
        () = terminate => tracing::info!("terminated; stopping"),
    }
    0
}
