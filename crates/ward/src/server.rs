//! `ward server`: runs the vault, in dev mode (`-dev`: in memory, unsealed, root token
//! printed) or from a configuration file (`-config=FILE`: starts uninitialised and sealed,
//! as Vault does).
//!
//! [`run`] reads like the server's lifecycle: parse flags and config → init tracing → lock
//! memory → bind listeners → open storage and build the core → (dev) initialise → print
//! addresses → serve → wait for a signal → drain. Everything it uses lives in `ward_server`;
//! this module only sequences it and prints what an operator needs to see.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine as _;
use ward_server::config::Config;
use ward_server::serve::{self, BoundListener};

use crate::args::{Args, Kind};

const FLAGS: &[(&str, Kind)] = &[
    ("dev", Kind::Bool),
    ("dev-listen-address", Kind::Value),
    ("dev-root-token-id", Kind::Value),
    ("config", Kind::Value),
    ("log-level", Kind::Value),
];

/// How long in-flight requests may take to finish after SIGINT or SIGTERM.
const DRAIN_GRACE: Duration = Duration::from_secs(30);

struct Options {
    config: Config,
    dev: Option<Dev>,
    log_level: String,
}

struct Dev {
    root_token_id: Option<String>,
}

pub(crate) fn run(argv: &[String]) -> ExitCode {
    let started = Instant::now();
    let options = match options(argv) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("Error: {message}");
            return ExitCode::from(1);
        }
    };
    init_tracing(&options.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(serve(options, started)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn options(argv: &[String]) -> Result<Options, String> {
    let args = Args::parse(argv, FLAGS)?;
    if let Some(extra) = args.positional.first() {
        return Err(format!("unexpected argument {extra:?}"));
    }
    let (config, dev) = match (args.flag("dev"), args.value("config")) {
        (true, _) => {
            let address = args
                .value("dev-listen-address")
                .map(str::to_string)
                .or_else(|| {
                    crate::env_var(&["WARD_DEV_LISTEN_ADDRESS", "VAULT_DEV_LISTEN_ADDRESS"])
                })
                .unwrap_or_else(|| ward_server::config::DEFAULT_ADDRESS.to_string());
            let root_token_id = args
                .value("dev-root-token-id")
                .map(str::to_string)
                .or_else(|| crate::env_var(&["WARD_DEV_ROOT_TOKEN_ID", "VAULT_DEV_ROOT_TOKEN_ID"]));
            (Config::dev(&address), Some(Dev { root_token_id }))
        }
        (false, Some(path)) => (
            Config::load(&PathBuf::from(path)).map_err(|e| e.message)?,
            None,
        ),
        (false, None) => {
            return Err(
                "ward server needs -config=FILE, or -dev for an in-memory development server"
                    .into(),
            )
        }
    };
    let log_level = args
        .value("log-level")
        .map(str::to_string)
        .or_else(|| crate::env_var(&["WARD_LOG_LEVEL", "VAULT_LOG_LEVEL"]))
        .or_else(|| config.log_level.clone())
        .unwrap_or_else(|| "info".into());
    Ok(Options {
        config,
        dev,
        log_level,
    })
}

/// Logs go to stderr so that stdout holds only the start-up report.
fn init_tracing(level: &str) {
    let level = match level.to_ascii_lowercase().as_str() {
        "err" | "error" => "error",
        "warn" | "warning" => "warn",
        "debug" => "debug",
        "trace" => "trace",
        _ => "info",
    };
    // Ward's own crates log at the chosen level; dependencies (hyper, rustls) only warnings,
    // unless RUST_LOG says otherwise.
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| {
        let crates = [
            "ward",
            "ward_server",
            "ward_core",
            "ward_engines",
            "ward_storage",
            "ward_policy",
        ];
        let own: Vec<String> = crates.iter().map(|c| format!("{c}={level}")).collect();
        format!("warn,{}", own.join(","))
    });
    let filter = tracing_subscriber::EnvFilter::try_new(directives)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

async fn serve(options: Options, started: Instant) -> anyhow::Result<()> {
    let Options {
        config,
        dev,
        log_level,
    } = options;
    let mlock = lock_memory(&config, dev.is_some());
    let mut listeners = Vec::new();
    for listener in &config.listeners {
        listeners.push(BoundListener::bind(listener).await?.with_ui(config.ui));
    }
    let physical = ward_server::open_storage(&config.storage).await?;
    let core = ward_server::build_core(&config, physical);
    let dev_keys = match &dev {
        Some(dev) => Some(
            core.dev_init(dev.root_token_id.as_deref())
                .await
                .context("dev mode initialisation failed")?,
        ),
        None => None,
    };

    let mut out = std::io::stdout().lock();
    print_configuration(&mut out, &config, &listeners, &log_level, mlock)?;
    if let Some(keys) = &dev_keys {
        let api_address = listeners
            .first()
            .map(BoundListener::url)
            .unwrap_or_default();
        print_dev_banner(&mut out, &api_address, keys)?;
        if let Err(e) = crate::client::store_token(&keys.root_token) {
            tracing::warn!(error = %e, "cannot write the root token to ~/.ward-token");
        }
    }
    if let Some(pid_file) = &config.pid_file {
        std::fs::write(pid_file, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write pid_file {}", pid_file.display()))?;
    }
    writeln!(
        out,
        "==> Ward server started! Log data will stream in below:\n"
    )?;
    out.flush()?;
    drop(out);
    tracing::info!(
        startup_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "ready to serve"
    );

    serve::reopen_audit_on_sighup(Arc::clone(&core));
    let running = serve::start(Arc::clone(&core), listeners);
    serve::shutdown_signal().await;
    tracing::info!("shutdown signal received; draining connections");
    running.shutdown(DRAIN_GRACE).await;
    if let Some(pid_file) = &config.pid_file {
        let _ = std::fs::remove_file(pid_file);
    }
    tracing::info!("server stopped");
    Ok(())
}

/// Locks memory unless disabled (dev mode never locks). Returns whether memory is locked.
fn lock_memory(config: &Config, dev: bool) -> bool {
    if dev || config.disable_mlock {
        return false;
    }
    match ward_server::mlock::lock_all_memory() {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(
                error = %e,
                "mlockall failed: secrets may be swapped to disk. Grant CAP_IPC_LOCK, raise RLIMIT_MEMLOCK, or set disable_mlock = true"
            );
            false
        }
    }
}

fn print_configuration(
    out: &mut impl Write,
    config: &Config,
    listeners: &[BoundListener],
    log_level: &str,
    mlock: bool,
) -> std::io::Result<()> {
    let api_address = config
        .api_addr
        .clone()
        .or_else(|| listeners.first().map(BoundListener::url))
        .unwrap_or_default();
    writeln!(out, "==> Ward server configuration:\n")?;
    writeln!(out, "{:>24}: {api_address}", "Api Address")?;
    if let Some(cluster_addr) = &config.cluster_addr {
        writeln!(out, "{:>24}: {cluster_addr}", "Cluster Address")?;
    }
    for (i, (listener, settings)) in listeners.iter().zip(&config.listeners).enumerate() {
        let max_request_size = settings
            .max_request_size
            .map_or_else(|| "unlimited".to_string(), |n| n.to_string());
        let tls = if listener.is_tls() {
            "enabled"
        } else {
            "disabled"
        };
        writeln!(
            out,
            "{:>24}: tcp (addr: \"{}\", max_request_size: \"{max_request_size}\", tls: \"{tls}\")",
            format!("Listener {}", i + 1),
            listener.local_addr()
        )?;
    }
    writeln!(out, "{:>24}: {log_level}", "Log Level")?;
    writeln!(out, "{:>24}: supported: true, enabled: {mlock}", "Mlock")?;
    writeln!(out, "{:>24}: {}", "Storage", config.storage.kind())?;
    writeln!(
        out,
        "{:>24}: Ward v{} (Vault API {})",
        "Version",
        env!("CARGO_PKG_VERSION"),
        ward_api::VAULT_API_VERSION
    )?;
    writeln!(out)
}

fn print_dev_banner(
    out: &mut impl Write,
    api_address: &str,
    keys: &ward_core::request::InitResult,
) -> std::io::Result<()> {
    let unseal_key = keys
        .keys
        .first()
        .map(|k| base64::engine::general_purpose::STANDARD.encode(k.as_slice()))
        .unwrap_or_default();
    writeln!(
        out,
        "WARNING! dev mode is enabled! In this mode, Ward runs entirely in-memory"
    )?;
    writeln!(
        out,
        "and starts unsealed with a single unseal key. The root token is already"
    )?;
    writeln!(
        out,
        "authenticated to the CLI, so you can immediately begin using Ward."
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "You may need to set the following environment variables:\n"
    )?;
    writeln!(out, "    $ export WARD_ADDR='{api_address}'")?;
    writeln!(out, "    $ export VAULT_ADDR='{api_address}'\n")?;
    writeln!(
        out,
        "The unseal key and root token are displayed below in case you want to"
    )?;
    writeln!(out, "seal/unseal the Vault or re-authenticate.\n")?;
    writeln!(out, "Unseal Key: {unseal_key}")?;
    writeln!(out, "Root Token: {}\n", keys.root_token.as_str())?;
    writeln!(
        out,
        "Development mode should NOT be used in production installations!"
    )?;
    writeln!(
        out,
        "Everything is kept in memory and lost when the server stops.\n"
    )
}
