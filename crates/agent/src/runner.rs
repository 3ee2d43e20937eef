//! Renders each `template` block to its file and keeps it current.
//!
//! A template's task renders against the secret cache, subscribes to every secret the render
//! used, and renders again whenever one of them changes. A complete render that differs from
//! the file's content is written atomically with the template's `perms`, and then its
//! `command` runs (`sh -c`, bounded by `command_timeout`). When a secret the template uses is
//! withdrawn (its lease expired unrenewed), the file is removed at once: an application must
//! not go on reading a credential the server has already revoked.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::config::{TemplateConfig, TemplateSource};
use crate::fsutil;
use crate::metrics::Metrics;
use crate::secrets::{Fatal, SecretManager, SecretState};
use crate::template::{Lookup, RenderOptions, SecretKey, SecretSource, Template};

/// Shared context of the template tasks.
#[derive(Clone)]
pub struct RunnerContext {
    pub manager: SecretManager,
    pub metrics: Arc<Metrics>,
    pub fatal: mpsc::UnboundedSender<Fatal>,
    pub exit_on_retry_failure: bool,
    /// The allowed base directory (canonical).
    pub secrets_dir: std::path::PathBuf,
    /// Told the template's index after its first successful write.
    pub rendered: mpsc::UnboundedSender<usize>,
}

/// Parses a template's text (reading its `source` file if needed).
pub fn load_template(config: &TemplateConfig) -> Result<Template, String> {
    let text = match &config.source {
        TemplateSource::Inline(text) => text.clone(),
        TemplateSource::File(path) => std::fs::read_to_string(path)
            .map_err(|error| format!("reading template {}: {error}", path.display()))?,
    };
    Template::parse(&text, &config.left_delimiter, &config.right_delimiter)
        .map_err(|error| format!("template for {}: {error}", config.destination.display()))
}

/// Reads the cache for a render, noting withdrawn secrets.
struct CacheSource<'a> {
    manager: &'a SecretManager,
    withdrawn: bool,
    now: Instant,
}

impl SecretSource for CacheSource<'_> {
    fn lookup(&mut self, key: &SecretKey) -> Lookup {
        match self.manager.current(key) {
            SecretState::Ready(value) if value.is_live(self.now) => {
                Lookup::Ready(value.view.clone())
            }
            SecretState::Ready(_) | SecretState::Withdrawn => {
                self.withdrawn = true;
                Lookup::Pending
            }
            SecretState::Pending => Lookup::Pending,
            SecretState::Missing => Lookup::Missing,
        }
    }
}

/// Runs one template for as long as the agent runs.
pub async fn run_template(
    index: usize,
    config: TemplateConfig,
    template: Template,
    context: RunnerContext,
) {
    let notify = Arc::new(Notify::new());
    let mut watchers: HashMap<SecretKey, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut last: Option<Zeroizing<String>> = std::fs::read_to_string(&config.destination)
        .ok()
        .map(Zeroizing::new);
    let mut reported = false;
    let options = RenderOptions {
        error_on_missing_key: config.error_on_missing_key,
    };
    let destination = config.destination.display().to_string();
    loop {
        let mut source = CacheSource {
            manager: &context.manager,
            withdrawn: false,
            now: Instant::now(),
        };
        let result = template.render(&mut source, options);
        let withdrawn = source.withdrawn;
        match result {
            Ok(rendered) => {
                for key in &rendered.dependencies {
                    if !watchers.contains_key(key) {
                        let receiver = context.manager.subscribe(key);
                        watchers.insert(
                            key.clone(),
                            tokio::spawn(forward_changes(receiver, Arc::clone(&notify))),
                        );
                    }
                }
                let text = Zeroizing::new(rendered.text);
                if withdrawn {
                    if last.is_some() || config.destination.exists() {
                        match fsutil::remove(&config.destination) {
                            Ok(()) => {
                                tracing::error!(destination = %destination, "a secret this template uses was withdrawn; file removed")
                            }
                            Err(error) => {
                                tracing::error!(destination = %destination, %error, "removing the withdrawn file failed")
                            }
                        }
                    }
                    last = None;
                } else if !rendered.incomplete {
                    let changed = last
                        .as_ref()
                        .is_none_or(|previous| previous.as_str() != text.as_str());
                    if changed {
                        match fsutil::write_atomic(
                            &config.destination,
                            text.as_bytes(),
                            config.perms,
                            Some(&context.secrets_dir),
                        ) {
                            Ok(()) => {
                                context.metrics.template_renders.inc();
                                tracing::info!(destination = %destination, "template rendered");
                                last = Some(text);
                                if let Some(command) = &config.command {
                                    run_command(command, config.command_timeout, &destination)
                                        .await;
                                }
                            }
                            Err(error) => {
                                context.metrics.template_render_failures.inc();
                                tracing::error!(destination = %destination, %error, "writing the rendered template failed");
                            }
                        }
                    }
                    if !reported && last.is_some() {
                        reported = true;
                        let _ = context.rendered.send(index);
                    }
                }
            }
            Err(error) => {
                context.metrics.template_render_failures.inc();
                tracing::error!(destination = %destination, %error, "rendering the template failed");
                if config.error_on_missing_key && context.exit_on_retry_failure {
                    let _ = context.fatal.send(Fatal {
                        reason: format!("template {destination}: {error}"),
                    });
                }
            }
        }
        notify.notified().await;
    }
}

/// Wakes the template whenever the secret's state changes.
async fn forward_changes(mut receiver: watch::Receiver<SecretState>, notify: Arc<Notify>) {
    receiver.borrow_and_update();
    while receiver.changed().await.is_ok() {
        notify.notify_one();
    }
}

/// Runs a template's `command` with `sh -c`, killed after `timeout`.
async fn run_command(command: &str, timeout: Duration, destination: &str) {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            tracing::error!(destination = %destination, %error, "starting the template command failed");
            return;
        }
    };
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => {
            tracing::info!(destination = %destination, "template command ran");
        }
        Ok(Ok(status)) => {
            tracing::warn!(destination = %destination, code = status.code().unwrap_or(-1), "template command failed");
        }
        Ok(Err(error)) => {
            tracing::warn!(destination = %destination, %error, "template command failed")
        }
        Err(_) => {
            let _ = child.kill().await;
            tracing::warn!(destination = %destination, timeout_seconds = timeout.as_secs(), "template command timed out and was killed");
        }
    }
}
