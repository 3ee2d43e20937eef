//! The secret cache shared by templates and egress routes: one task per secret that fetches
//! it, keeps its lease alive, fetches it again when due, and withdraws it at expiry.
//!
//! Scheduling follows Vault Agent: renewable leases are renewed at about two thirds of the
//! lease (with jitter); leased secrets that cannot be renewed are fetched again at about 85% of
//! their TTL; unleased secrets (KV v2) are read again every `static_secret_render_interval`.
//! A KV v2 mount is detected through `sys/internal/ui/mounts/<path>` and `data/` inserted.
//!
//! Fail fast: each secret also has an expiry watchdog, a separate task that sleeps until the
//! current value's expiry and, if no renewal or replacement has arrived by then, publishes
//! [`SecretState::Withdrawn`]. It does not depend on the fetch loop making progress (which may
//! be stuck in a retry), and consumers additionally check the expiry at the moment of use, so
//! nothing is served past its expiry even if the watchdog runs late.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::backoff::{jittered_fraction, Backoff};
use crate::client::{self, ClientError, VaultClient};
use crate::metrics::Metrics;
use crate::secret::SecretString;
use crate::template::{secret_view, SecretKey};

/// The current token from auto-auth, if any.
pub type TokenReceiver = watch::Receiver<Option<Arc<SecretString>>>;

/// What consumers see of a secret.
#[derive(Debug, Clone)]
pub enum SecretState {
    /// Not fetched yet.
    Pending,
    Ready(Arc<SecretValue>),
    /// The server has nothing at this path.
    Missing,
    /// Its lease expired before it could be renewed or replaced: do not use.
    Withdrawn,
}

/// A fetched secret.
#[derive(Debug)]
pub struct SecretValue {
    /// The template-facing view (`.Data`, `.LeaseID`, ...).
    pub view: Value,
    /// When its lease runs out; `None` for unleased secrets.
    pub expires_at: Option<Instant>,
    /// Increases with every new value or renewal.
    pub generation: u64,
}

impl SecretValue {
    /// True while the value may be used.
    pub fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|expiry| now < expiry)
    }
}

/// Why the agent must stop (sent once to the main loop).
#[derive(Debug, Clone)]
pub struct Fatal {
    pub reason: String,
}

/// Settings for the scheduler.
#[derive(Debug, Clone)]
pub struct SecretSettings {
    pub static_interval: Duration,
    pub num_retries: u32,
    pub exit_on_retry_failure: bool,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for SecretSettings {
    fn default() -> SecretSettings {
        SecretSettings {
            static_interval: Duration::from_secs(300),
            num_retries: 12,
            exit_on_retry_failure: false,
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// The cache. Clone it freely.
#[derive(Clone)]
pub struct SecretManager {
    inner: Arc<Inner>,
}

struct Inner {
    client: VaultClient,
    token: TokenReceiver,
    settings: SecretSettings,
    entries: Mutex<HashMap<SecretKey, watch::Receiver<SecretState>>>,
    fatal: mpsc::UnboundedSender<Fatal>,
    metrics: Arc<Metrics>,
}

impl SecretManager {
    pub fn new(
        client: VaultClient,
        token: TokenReceiver,
        settings: SecretSettings,
        fatal: mpsc::UnboundedSender<Fatal>,
        metrics: Arc<Metrics>,
    ) -> SecretManager {
        SecretManager {
            inner: Arc::new(Inner {
                client,
                token,
                settings,
                entries: Mutex::new(HashMap::new()),
                fatal,
                metrics,
            }),
        }
    }

    /// A receiver of the secret's state; the first subscription starts its tasks.
    pub fn subscribe(&self, key: &SecretKey) -> watch::Receiver<SecretState> {
        let mut entries = match self.inner.entries.lock() {
            Ok(entries) => entries,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(receiver) = entries.get(key) {
            return receiver.clone();
        }
        let (sender, receiver) = watch::channel(SecretState::Pending);
        let sender = Arc::new(sender);
        entries.insert(key.clone(), receiver.clone());
        drop(entries);
        tokio::spawn(fetch_loop(
            Arc::clone(&self.inner),
            key.clone(),
            Arc::clone(&sender),
        ));
        tokio::spawn(expiry_watchdog(
            Arc::clone(&self.inner),
            key.clone(),
            sender,
        ));
        receiver
    }

    /// The current state without subscribing anew (templates read through this after
    /// subscribing).
    pub fn current(&self, key: &SecretKey) -> SecretState {
        self.subscribe(key).borrow().clone()
    }
}

/// What to do next with a fetched secret, decided from its lease alone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Plan {
    /// Renew the lease after this long.
    Renew(Duration),
    /// Fetch a new value after this long.
    Refetch(Duration),
}

/// Vault Agent's schedule: renewable leases at ~2/3 (jittered down by up to 10%),
/// non-renewable leases at ~85%, unleased secrets at the static interval.
pub fn plan(
    lease_id: &str,
    lease_duration: Duration,
    renewable: bool,
    static_interval: Duration,
) -> Plan {
    if lease_id.is_empty() || lease_duration.is_zero() {
        return Plan::Refetch(static_interval);
    }
    if renewable {
        Plan::Renew(jittered_fraction(lease_duration, 2.0 / 3.0, 0.1))
    } else {
        Plan::Refetch(jittered_fraction(lease_duration, 0.85, 0.05))
    }
}

async fn wait_for_token(token: &mut TokenReceiver) -> Arc<SecretString> {
    loop {
        if let Some(current) = token.borrow_and_update().clone() {
            return current;
        }
        if token.changed().await.is_err() {
            // Auto-auth is gone for good; nothing will ever arrive.
            std::future::pending::<()>().await;
        }
    }
}

struct Fetched {
    view: Value,
    lease_id: String,
    lease_duration: Duration,
    renewable: bool,
}

/// Reads the secret, doing the KV v2 preflight once per key.
async fn fetch(
    inner: &Inner,
    key: &SecretKey,
    resolved_path: &mut Option<String>,
    token: &SecretString,
) -> Result<Option<Fetched>, ClientError> {
    let path = match resolved_path {
        Some(path) => path.clone(),
        None => {
            let path = match inner.client.kv_mount(&key.path, token).await {
                Some((mount, 2)) => client::kv2_data_path(&key.path, &mount),
                _ => key.path.clone(),
            };
            *resolved_path = Some(path.clone());
            path
        }
    };
    let params = client::parse_params(&key.params).map_err(ClientError::Decode)?;
    let Some(response) = inner.client.read_secret(&path, &params, token).await? else {
        return Ok(None);
    };
    // A deleted or destroyed KV v2 version counts as missing.
    let deleted = response
        .envelope
        .pointer("/data/metadata/deletion_time")
        .and_then(Value::as_str)
        .is_some_and(|time| !time.is_empty());
    if deleted {
        return Ok(None);
    }
    Ok(Some(Fetched {
        view: secret_view(&response.envelope),
        lease_id: response.lease_id,
        lease_duration: response.lease_duration,
        renewable: response.renewable,
    }))
}

/// Fetches, renews and refetches one secret for as long as the agent runs.
async fn fetch_loop(inner: Arc<Inner>, key: SecretKey, sender: Arc<watch::Sender<SecretState>>) {
    let settings = inner.settings.clone();
    let mut token_rx = inner.token.clone();
    let mut backoff = Backoff::new(settings.min_backoff, settings.max_backoff);
    let mut resolved_path: Option<String> = None;
    let mut generation: u64 = 0;
    let mut failures: u32 = 0;
    loop {
        let token = wait_for_token(&mut token_rx).await;
        let fetched = fetch(&inner, &key, &mut resolved_path, &token).await;
        let fetched = match fetched {
            Ok(Some(fetched)) => fetched,
            Ok(None) => {
                failures = 0;
                backoff.reset();
                tracing::warn!(secret = %key, "no secret at this path; checking again later");
                sender.send_replace(SecretState::Missing);
                wait_or_token_change(&mut token_rx, settings.static_interval).await;
                continue;
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                inner.metrics.secret_fetch_failures.inc();
                let delay = capped_delay(&mut backoff, &sender);
                tracing::warn!(
                    secret = %key,
                    attempt = failures,
                    budget = settings.num_retries,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    %error,
                    "fetching secret failed"
                );
                if failures > settings.num_retries && settings.exit_on_retry_failure {
                    let unleased_or_none = match &*sender.borrow() {
                        SecretState::Ready(value) => value.expires_at.is_none(),
                        _ => true,
                    };
                    // A leased value stays usable until its expiry; the watchdog ends the
                    // agent then. Anything else has spent its budget now.
                    if unleased_or_none {
                        let _ = inner.fatal.send(Fatal {
                            reason: format!("secret {key}: retries exhausted ({error})"),
                        });
                    }
                }
                if !error.is_retryable() && error.status() == Some(403) {
                    resolved_path = None;
                }
                wait_or_token_change(&mut token_rx, delay).await;
                continue;
            }
        };
        failures = 0;
        backoff.reset();
        inner.metrics.secret_fetches.inc();
        let now = Instant::now();
        let mut expires_at = (!fetched.lease_id.is_empty() && !fetched.lease_duration.is_zero())
            .then(|| now + fetched.lease_duration);
        generation += 1;
        tracing::info!(
            secret = %key,
            lease_seconds = fetched.lease_duration.as_secs(),
            renewable = fetched.renewable,
            "secret fetched"
        );
        let view = fetched.view;
        sender.send_replace(SecretState::Ready(Arc::new(SecretValue {
            view: view.clone(),
            expires_at,
            generation,
        })));
        let mut next = plan(
            &fetched.lease_id,
            fetched.lease_duration,
            fetched.renewable,
            settings.static_interval,
        );
        let original_lease = fetched.lease_duration;
        // Keep this value alive until it must be replaced.
        loop {
            match next {
                Plan::Refetch(delay) => {
                    let token_changed =
                        wait_or_token_change(&mut token_rx, delay).await && expires_at.is_some();
                    if token_changed {
                        tracing::info!(secret = %key, "new auto-auth token; fetching the secret again");
                    }
                    break;
                }
                Plan::Renew(delay) => {
                    if wait_or_token_change(&mut token_rx, delay).await {
                        tracing::info!(secret = %key, "new auto-auth token; fetching the secret again");
                        break;
                    }
                    let current_token = match token_rx.borrow().clone() {
                        Some(current) => current,
                        None => break,
                    };
                    match inner
                        .client
                        .renew_lease(&fetched.lease_id, Some(original_lease), &current_token)
                        .await
                    {
                        Ok(renewed) if !renewed.lease_duration.is_zero() => {
                            inner.metrics.lease_renewals.inc();
                            let renewed_at = Instant::now();
                            let new_expiry = renewed_at + renewed.lease_duration;
                            expires_at = Some(new_expiry);
                            generation += 1;
                            sender.send_replace(SecretState::Ready(Arc::new(SecretValue {
                                view: view.clone(),
                                expires_at,
                                generation,
                            })));
                            tracing::debug!(secret = %key, lease_seconds = renewed.lease_duration.as_secs(), "lease renewed");
                            // Near the lease's max TTL a renewal stops extending: fetch a new
                            // secret in time instead of renewing into the wall.
                            next = if renewed.renewable
                                && renewed.lease_duration * 3 >= original_lease
                            {
                                Plan::Renew(jittered_fraction(
                                    renewed.lease_duration,
                                    2.0 / 3.0,
                                    0.1,
                                ))
                            } else {
                                Plan::Refetch(jittered_fraction(
                                    renewed.lease_duration,
                                    2.0 / 3.0,
                                    0.1,
                                ))
                            };
                        }
                        Ok(_) => {
                            tracing::warn!(secret = %key, "lease renewal returned no lease; fetching a new secret");
                            break;
                        }
                        Err(error) => {
                            inner.metrics.lease_renewal_failures.inc();
                            tracing::warn!(secret = %key, %error, "lease renewal failed; fetching a new secret");
                            break;
                        }
                    }
                }
            }
        }
    }
}

/// The next backoff delay, but never past the current value's expiry, so a retry can still
/// land before it.
fn capped_delay(backoff: &mut Backoff, sender: &watch::Sender<SecretState>) -> Duration {
    let delay = backoff.next_delay();
    if let SecretState::Ready(value) = &*sender.borrow() {
        if let Some(expiry) = value.expires_at {
            let remaining = expiry.saturating_duration_since(Instant::now());
            if remaining > Duration::from_millis(50) {
                return delay.min(remaining / 2).max(Duration::from_millis(50));
            }
        }
    }
    delay
}

/// Sleeps for `delay`; returns true early if the auto-auth token changed.
async fn wait_or_token_change(token: &mut TokenReceiver, delay: Duration) -> bool {
    let deadline = Instant::now() + delay;
    token.borrow_and_update();
    tokio::select! {
        () = tokio::time::sleep_until(deadline) => false,
        changed = token.changed() => {
            if changed.is_err() {
                tokio::time::sleep_until(deadline).await;
                return false;
            }
            true
        }
    }
}

/// Withdraws the secret at its expiry unless a renewal or a new value arrived first.
async fn expiry_watchdog(
    inner: Arc<Inner>,
    key: SecretKey,
    sender: Arc<watch::Sender<SecretState>>,
) {
    let mut receiver = sender.subscribe();
    loop {
        let current = receiver.borrow_and_update().clone();
        let deadline = match &current {
            SecretState::Ready(value) => value.expires_at.map(|expiry| (expiry, value.generation)),
            _ => None,
        };
        match deadline {
            Some((expiry, generation)) => {
                tokio::select! {
                    () = tokio::time::sleep_until(expiry) => {
                        let still_same = matches!(
                            &*sender.borrow(),
                            SecretState::Ready(value) if value.generation == generation
                        );
                        if still_same {
                            inner.metrics.secrets_withdrawn.inc();
                            tracing::error!(
                                secret = %key,
                                "lease expired before it could be renewed or replaced; secret withdrawn"
                            );
                            sender.send_replace(SecretState::Withdrawn);
                            if inner.settings.exit_on_retry_failure {
                                let _ = inner.fatal.send(Fatal {
                                    reason: format!("secret {key} expired and could not be renewed or replaced"),
                                });
                            }
                        }
                    }
                    changed = receiver.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                }
            }
            None => {
                if receiver.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_vault_agent() {
        let interval = Duration::from_secs(300);
        assert_eq!(
            plan("", Duration::ZERO, false, interval),
            Plan::Refetch(interval)
        );
        assert_eq!(
            plan("", Duration::from_secs(60), false, interval),
            Plan::Refetch(interval)
        );
        match plan("l1", Duration::from_secs(300), true, interval) {
            Plan::Renew(delay) => {
                assert!(delay <= Duration::from_secs(200) && delay >= Duration::from_secs(180))
            }
            other => panic!("{other:?}"),
        }
        match plan("l1", Duration::from_secs(100), false, interval) {
            Plan::Refetch(delay) => {
                assert!(delay <= Duration::from_secs(85) && delay >= Duration::from_secs(80))
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn watchdog_withdraws_at_expiry_not_before() {
        let (fatal_tx, mut fatal_rx) = mpsc::unbounded_channel();
        let (_token_tx, token_rx) = watch::channel(None);
        let client = VaultClient::new(&crate::config::VaultConfig {
            address: "http://127.0.0.1:9".into(),
            ca_cert: None,
            danger_tls_skip_verify: false,
            num_retries: 1,
        })
        .expect("client");
        let inner = Arc::new(Inner {
            client,
            token: token_rx,
            settings: SecretSettings {
                exit_on_retry_failure: true,
                ..SecretSettings::default()
            },
            entries: Mutex::new(HashMap::new()),
            fatal: fatal_tx,
            metrics: Arc::new(Metrics::default()),
        });
        let (sender, mut receiver) = watch::channel(SecretState::Pending);
        let sender = Arc::new(sender);
        let key = SecretKey {
            path: "database/creds/ro".into(),
            params: vec![],
        };
        let start = Instant::now();
        sender.send_replace(SecretState::Ready(Arc::new(SecretValue {
            view: Value::Null,
            expires_at: Some(start + Duration::from_secs(30)),
            generation: 1,
        })));
        tokio::spawn(expiry_watchdog(
            Arc::clone(&inner),
            key,
            Arc::clone(&sender),
        ));
        receiver.borrow_and_update();
        // A renewal at 20 s moves the expiry to 50 s.
        tokio::time::sleep(Duration::from_secs(20)).await;
        sender.send_replace(SecretState::Ready(Arc::new(SecretValue {
            view: Value::Null,
            expires_at: Some(start + Duration::from_secs(50)),
            generation: 2,
        })));
        receiver.borrow_and_update();
        receiver.changed().await.expect("withdrawal");
        assert!(matches!(*receiver.borrow(), SecretState::Withdrawn));
        assert_eq!(Instant::now() - start, Duration::from_secs(50));
        assert!(fatal_rx.recv().await.is_some());
    }
}
