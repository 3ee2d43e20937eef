//! `ward agent`: the sidecar beside each AI agent workload.
//!
//! It logs in with the workload's identity (auto-auth), writes the token to sinks, renders
//! secrets to files with consul-template-compatible templates, keeps leases renewed and
//! withdraws secrets that cannot be (fail fast), proxies the Vault API for applications, and
//! runs the egress credential proxy that injects keys into outbound calls so the application
//! never sees them.
//!
//! Code map: [`config`] (file and flag configuration), [`cli`] (Vault-style flags),
//! [`client`] (the server API), [`auth`] (auto-auth and token renewal), [`secrets`] (the secret
//! cache, lease renewal and expiry), [`template`] (the template language), [`runner`] (template
//! files), [`egress`] (the credential proxy), [`api_proxy`] (the Vault API proxy and
//! `/agent/v1/metrics`), [`request_framing`] (refusing requests with both framing headers), [`agent`] (the lifecycle). The agent never links the server: it speaks
//! the HTTP API only.

pub mod agent;
pub mod api_proxy;
pub mod auth;
pub mod backoff;
pub mod cli;
pub mod client;
pub mod config;
pub mod egress;
mod egress_h1;
pub mod fsutil;
pub mod http_util;
pub mod log_writer;
pub mod metrics;
pub mod request_framing;
pub mod runner;
pub mod secret;
pub mod secrets;
pub mod template;
pub mod tls;
pub mod upstream_pool;

pub use agent::{Agent, RunningAgent};

/// Runs `ward agent` with the arguments after `agent`; returns the process exit code.
pub async fn run_from_args(args: Vec<String>) -> i32 {
    let code = run(args).await;
    log_writer::flush();
    code
}

async fn run(args: Vec<String>) -> i32 {
    let options = match cli::parse(&args) {
        Ok(cli::Parsed::Help) => {
            println!("{}", usage());
            return 0;
        }
        Ok(cli::Parsed::Run(options)) => options,
        Err(message) => {
            eprintln!("ward agent: {message}\n\n{}", usage());
            return 2;
        }
    };
    init_logging(options.log_level.as_deref());
    let config = match cli::build_config(&options) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("ward agent: {message}");
            tracing::error!(error = %message, "invalid configuration");
            return 1;
        }
    };
    tracing::info!(server = %config.vault.address, "ward agent starting");
    match Agent::start(config).await {
        Ok(running) => {
            // Announce the bound addresses on stdout whatever the log level, as `ward server`
            // does, so scripts and people can find them.
            println!("==> Ward agent started");
            if let Some(address) = running.egress_address {
                println!("    Egress Listener: http://{address}");
            }
            for address in &running.listener_addresses {
                println!("       API Listener: http://{address}");
            }
            running.wait().await
        }
        Err(error) => {
            eprintln!("ward agent: {error}");
            tracing::error!(%error, "agent failed to start");
            1
        }
    }
}

/// The help text for `ward agent`.
pub fn usage() -> &'static str {
    cli::USAGE
}

/// Sets up logging to stderr unless the embedding binary already did. INFO lines (one per
/// egress call) are buffered for up to 100 ms; warnings and errors are written at once.
fn init_logging(level: Option<&str>) {
    let filter = level
        .map(str::to_owned)
        .or_else(|| std::env::var("WARD_LOG").ok())
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".to_owned());
    let installed = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(log_writer::AgentLogWriter)
        .with_ansi(false)
        .try_init();
    if installed.is_ok() {
        log_writer::enable_direct_egress_lines();
    }
}
