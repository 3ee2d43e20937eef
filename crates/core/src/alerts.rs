//! Alerts: the built-in rules, the sinks (`sys/alerts/sinks/<name>`), and the outbox that a
//! background task delivers with retries.
//!
//! Rules: every policy write or deletion (high, at once, with who did it and a unified diff);
//! failed logins over a threshold within a window, per auth mount and per source address;
//! rate-limit refusals over a threshold per identity; an audit device failing; the barrier
//! being sealed. Thresholds are set at `sys/alerts/config`.
//!
//! Raising an alert never waits: it is put in the outbox and the delivery task is woken.
//! The core opens no sockets, so delivery goes through an [`AlertTransport`] that the server
//! installs (an HTTP client). Without one, alerts stay pending. Undelivered alerts are listed
//! at `sys/alerts/pending` and counted in the metrics; a webhook sink with a `secret` gets an
//! `X-Ward-Signature: sha256=<hex>` header, an HMAC-SHA256 of the body. The secret is never
//! returned on read. The outbox is bounded; when full, the oldest alert is dropped and counted.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::Sha256;

use crate::engine::{fields, EngineResponse, Operation};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::request::Response;
use crate::view::StorageView;

/// The header that carries the body's signature.
pub const SIGNATURE_HEADER: &str = "X-Ward-Signature";
const OUTBOX_LIMIT: usize = 10_000;
const RECENT_LIMIT: usize = 100;
const CONFIG_KEY: &str = "config";
const SINK_PREFIX: &str = "sinks/";

/// Delivers one alert body to a URL. Implemented by the server with an HTTP client.
#[async_trait]
pub trait AlertTransport: Send + Sync {
    /// POSTs `body` (JSON) with the given extra headers; `Err` with a short reason when the
    /// receiver did not accept it (connection refused, non-2xx status).
    async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<(), String>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    fn parse(text: &str) -> Option<Severity> {
        Some(match text {
            "info" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

/// One alert as sinks receive it.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub id: String,
    pub time: String,
    pub severity: Severity,
    pub rule: String,
    pub summary: String,
    pub details: Value,
}

/// Who did something, for alerts: never the token itself.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub display_name: String,
    pub entity_id: String,
    pub accessor: String,
    pub remote_address: String,
}

impl Actor {
    fn json(&self) -> Value {
        json!({
            "display_name": self.display_name,
            "entity_id": self.entity_id,
            "accessor": self.accessor,
            "remote_address": self.remote_address,
        })
    }
}

#[derive(Clone, Serialize, Deserialize)]
struct SinkRecord {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    url: String,
    #[serde(default)]
    secret: crate::secret::Secret,
    #[serde(default)]
    min_severity: Severity,
}

impl fmt::Debug for SinkRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkRecord")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Thresholds of the rules and the retry schedule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AlertConfig {
    pub failed_login_threshold: u64,
    /// Seconds.
    pub failed_login_window: u64,
    pub rate_limit_threshold: u64,
    /// Seconds.
    pub rate_limit_window: u64,
    pub retry_initial_backoff_ms: u64,
    pub retry_max_backoff_ms: u64,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            failed_login_threshold: 10,
            failed_login_window: 300,
            rate_limit_threshold: 100,
            rate_limit_window: 60,
            retry_initial_backoff_ms: 1000,
            retry_max_backoff_ms: 300_000,
        }
    }
}

struct Pending {
    alert: Arc<Alert>,
    sink: String,
    attempts: u32,
    due: tokio::time::Instant,
    last_error: String,
}

/// A sliding window of event times for one rule key.
#[derive(Default)]
struct Window {
    events: VecDeque<i64>,
    last_alert: Option<i64>,
}

/// The alert rules, sinks and outbox of a core. Outlives seals, so a seal alert still goes out.
pub struct Alerts {
    metrics: Arc<Metrics>,
    view: Mutex<Option<StorageView>>,
    sinks: RwLock<Arc<Vec<SinkRecord>>>,
    config: RwLock<AlertConfig>,
    outbox: Mutex<VecDeque<Pending>>,
    recent: Mutex<VecDeque<Arc<Alert>>>,
    windows: Mutex<HashMap<String, Window>>,
    wake: tokio::sync::Notify,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Alerts {
    pub fn new(metrics: Arc<Metrics>) -> Alerts {
        Alerts {
            metrics,
            view: Mutex::new(None),
            sinks: RwLock::new(Arc::new(Vec::new())),
            config: RwLock::new(AlertConfig::default()),
            outbox: Mutex::new(VecDeque::new()),
            recent: Mutex::new(VecDeque::new()),
            windows: Mutex::new(HashMap::new()),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Loads sinks and thresholds from the barrier (at unseal).
    pub(crate) async fn load(&self, view: StorageView) -> Result<(), Error> {
        let mut sinks = Vec::new();
        for name in view.list(SINK_PREFIX).await? {
            if let Some(sink) = view
                .get_json::<SinkRecord>(&format!("{SINK_PREFIX}{name}"))
                .await?
            {
                sinks.push(sink);
            }
        }
        let config: AlertConfig = view.get_json(CONFIG_KEY).await?.unwrap_or_default();
        if let Ok(mut guard) = self.sinks.write() {
            *guard = Arc::new(sinks);
        }
        if let Ok(mut guard) = self.config.write() {
            *guard = config;
        }
        *lock(&self.view) = Some(view);
        Ok(())
    }

    pub fn config(&self) -> AlertConfig {
        self.config.read().map(|c| c.clone()).unwrap_or_default()
    }

    /// Alerts waiting for delivery.
    pub fn pending_count(&self) -> usize {
        lock(&self.outbox).len()
    }

    /// Queues an alert for every sink whose threshold it meets, and wakes the delivery task.
    pub fn raise(
        &self,
        severity: Severity,
        rule: &str,
        summary: String,
        details: Value,
        now: time::OffsetDateTime,
    ) {
        let alert = Arc::new(Alert {
            id: uuid::Uuid::new_v4().to_string(),
            time: crate::clock::rfc3339(now),
            severity,
            rule: rule.to_string(),
            summary,
            details,
        });
        self.metrics.alert_raised(rule, severity.as_str());
        tracing::warn!(rule, severity = severity.as_str(), summary = %alert.summary, "alert");
        {
            let mut recent = lock(&self.recent);
            if recent.len() >= RECENT_LIMIT {
                recent.pop_front();
            }
            recent.push_back(alert.clone());
        }
        let sinks = self.sinks.read().map(|s| s.clone()).unwrap_or_default();
        let mut outbox = lock(&self.outbox);
        for sink in sinks.iter().filter(|s| severity >= s.min_severity) {
            if outbox.len() >= OUTBOX_LIMIT {
                outbox.pop_front();
                self.metrics.alert_dropped();
            }
            outbox.push_back(Pending {
                alert: alert.clone(),
                sink: sink.name.clone(),
                attempts: 0,
                due: tokio::time::Instant::now(),
                last_error: String::new(),
            });
        }
        drop(outbox);
        self.wake.notify_one();
    }

    /// A policy was written or deleted.
    pub(crate) fn policy_changed(
        &self,
        name: &str,
        operation: &str,
        actor: &Actor,
        before: Option<&str>,
        after: Option<&str>,
        now: time::OffsetDateTime,
    ) {
        self.metrics.policy_changed(operation);
        let diff = unified_diff(name, before.unwrap_or_default(), after.unwrap_or_default());
        self.raise(
            Severity::High,
            "policy-change",
            format!(
                "policy {name:?} {operation} by {}",
                if actor.display_name.is_empty() {
                    "unknown"
                } else {
                    &actor.display_name
                }
            ),
            json!({ "policy": name, "operation": operation, "actor": actor.json(), "diff": diff }),
            now,
        );
    }

    /// A login failed: counts per mount, per source address, and per identity on the mount
    /// (the role or user the login named; empty when it named none).
    pub(crate) fn login_failed(
        &self,
        mount: &str,
        identity: &str,
        address: &str,
        now: time::OffsetDateTime,
    ) {
        let config = self.config();
        let on_mount = format!("{mount}{identity}");
        let mut scopes = vec![
            (format!("login-mount:{mount}"), "mount", mount),
            (format!("login-source:{address}"), "source", address),
        ];
        if !identity.is_empty() {
            scopes.push((format!("login-identity:{on_mount}"), "identity", &on_mount));
        }
        for (key, scope, value) in scopes {
            if let Some(count) = self.count(
                &key,
                now.unix_timestamp(),
                config.failed_login_threshold,
                config.failed_login_window,
            ) {
                self.raise(
                    Severity::Medium,
                    "failed-logins",
                    format!("{count} failed logins in {}s for {scope} {value}", config.failed_login_window),
                    json!({ "scope": scope, scope: value, "count": count, "window_seconds": config.failed_login_window }),
                    now,
                );
            }
        }
    }

    /// A rate-limit quota refused a request.
    pub(crate) fn rate_limited(&self, quota: &str, identity: &str, now: time::OffsetDateTime) {
        let config = self.config();
        let key = format!("rate:{quota}:{identity}");
        if let Some(count) = self.count(
            &key,
            now.unix_timestamp(),
            config.rate_limit_threshold,
            config.rate_limit_window,
        ) {
            self.raise(
                Severity::Medium,
                "rate-limit",
                format!("{count} requests refused by quota {quota:?} in {}s for {identity}", config.rate_limit_window),
                json!({ "quota": quota, "identity": identity, "count": count, "window_seconds": config.rate_limit_window }),
                now,
            );
        }
    }

    /// An audit device failed to record an entry: one alert per device per minute.
    pub(crate) fn audit_failed(&self, device: &str, reason: &str, now: time::OffsetDateTime) {
        if self
            .count(&format!("audit:{device}"), now.unix_timestamp(), 1, 60)
            .is_some()
        {
            self.raise(
                Severity::High,
                "audit-device-failure",
                format!("audit device {device} failed: {reason}"),
                json!({ "device": device, "reason": reason }),
                now,
            );
        }
    }

    pub(crate) fn sealed(&self, actor: &Actor, now: time::OffsetDateTime) {
        self.raise(
            Severity::High,
            "sealed",
            "the vault was sealed".into(),
            json!({ "actor": actor.json() }),
            now,
        );
    }

    /// Records an event for `key`; returns the count when it reaches the threshold within
    /// the window and no alert for this key was raised in the window yet.
    fn count(&self, key: &str, now: i64, threshold: u64, window: u64) -> Option<u64> {
        let window = i64::try_from(window.max(1)).unwrap_or(i64::MAX);
        let mut windows = lock(&self.windows);
        if windows.len() > 50_000 {
            windows.retain(|_, w| w.events.back().is_some_and(|t| now - t < window));
        }
        let entry = windows.entry(key.to_string()).or_default();
        entry.events.push_back(now);
        while entry.events.front().is_some_and(|t| now - t >= window) {
            entry.events.pop_front();
        }
        let count = entry.events.len() as u64;
        if count >= threshold.max(1) && entry.last_alert.is_none_or(|t| now - t >= window) {
            entry.last_alert = Some(now);
            return Some(count);
        }
        None
    }

    /// Runs the delivery loop until the transport's owner drops the returned task.
    pub fn spawn_delivery(
        self: &Arc<Self>,
        transport: Arc<dyn AlertTransport>,
    ) -> tokio::task::JoinHandle<()> {
        let alerts = self.clone();
        tokio::spawn(async move { alerts.deliver_forever(transport).await })
    }

    async fn deliver_forever(&self, transport: Arc<dyn AlertTransport>) {
        loop {
            let now = tokio::time::Instant::now();
            let due: Vec<Pending> = {
                let mut outbox = lock(&self.outbox);
                let (ready, waiting): (VecDeque<Pending>, VecDeque<Pending>) =
                    outbox.drain(..).partition(|p| p.due <= now);
                *outbox = waiting;
                ready.into_iter().collect()
            };
            for mut pending in due {
                let outcome = self.deliver_one(transport.as_ref(), &pending).await;
                match outcome {
                    Ok(()) => self.metrics.alert_delivery(&pending.sink, true),
                    Err(reason) => {
                        self.metrics.alert_delivery(&pending.sink, false);
                        pending.attempts += 1;
                        pending.last_error = reason;
                        let config = self.config();
                        let factor = 1u64 << pending.attempts.min(20);
                        let backoff = config
                            .retry_initial_backoff_ms
                            .saturating_mul(factor / 2)
                            .min(config.retry_max_backoff_ms.max(1));
                        pending.due =
                            tokio::time::Instant::now() + Duration::from_millis(backoff.max(1));
                        lock(&self.outbox).push_back(pending);
                    }
                }
            }
            let next = lock(&self.outbox).iter().map(|p| p.due).min();
            match next {
                Some(due) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(due) => {}
                        _ = self.wake.notified() => {}
                    }
                }
                None => self.wake.notified().await,
            }
        }
    }

    /// Sends one alert to its sink; a sink deleted since the alert was queued drops it.
    async fn deliver_one(
        &self,
        transport: &dyn AlertTransport,
        pending: &Pending,
    ) -> Result<(), String> {
        let sinks = self.sinks.read().map(|s| s.clone()).unwrap_or_default();
        let Some(sink) = sinks.iter().find(|s| s.name == pending.sink) else {
            return Ok(());
        };
        let body = match sink.kind.as_str() {
            "slack" => serde_json::to_vec(&json!({ "text": format!("[{}] {}", pending.alert.severity.as_str(), pending.alert.summary) })),
            _ => serde_json::to_vec(pending.alert.as_ref()),
        }
        .map_err(|e| e.to_string())?;
        let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        if !sink.secret.is_empty() {
            headers.push((
                SIGNATURE_HEADER.to_string(),
                signature(sink.secret.expose(), &body),
            ));
        }
        transport.post(&sink.url, &headers, body).await
    }

    /// `sys/alerts/...`; `path` relative to `sys/alerts/`.
    pub(crate) async fn handle(
        &self,
        path: &str,
        operation: Operation,
        data: &Map<String, Value>,
    ) -> Result<Response, Error> {
        let path = path.trim_matches('/');
        match (path, operation) {
            ("config", Operation::Read) => {
                let config = serde_json::to_value(self.config())
                    .map_err(|e| Error::internal(e.to_string()))?;
                Ok(Response::with_data(crate::core::Core::data_map(config)))
            }
            ("config", op) if op.is_write() => {
                let mut config = self.config();
                for (key, slot) in [
                    ("failed_login_threshold", &mut config.failed_login_threshold),
                    ("rate_limit_threshold", &mut config.rate_limit_threshold),
                    (
                        "retry_initial_backoff_ms",
                        &mut config.retry_initial_backoff_ms,
                    ),
                    ("retry_max_backoff_ms", &mut config.retry_max_backoff_ms),
                ] {
                    if let Some(v) = fields::integer(data, key)? {
                        *slot = u64::try_from(v)
                            .map_err(|_| Error::invalid(format!("{key} must not be negative")))?;
                    }
                }
                for (key, slot) in [
                    ("failed_login_window", &mut config.failed_login_window),
                    ("rate_limit_window", &mut config.rate_limit_window),
                ] {
                    if let Some(v) = fields::duration(data, key)? {
                        *slot = v;
                    }
                }
                self.store().await?.put_json(CONFIG_KEY, &config).await?;
                if let Ok(mut guard) = self.config.write() {
                    *guard = config;
                }
                Ok(Response::default())
            }
            ("pending", Operation::Read) => {
                let outbox = lock(&self.outbox);
                let items: Vec<Value> = outbox
                    .iter()
                    .map(|p| json!({ "alert": p.alert.as_ref(), "sink": p.sink, "attempts": p.attempts, "last_error": p.last_error }))
                    .collect();
                Ok(Response::with_data(crate::core::Core::data_map(
                    json!({ "count": items.len(), "pending": items }),
                )))
            }
            ("recent", Operation::Read) => {
                let recent: Vec<Value> = lock(&self.recent)
                    .iter()
                    .map(|a| json!(a.as_ref()))
                    .collect();
                Ok(Response::with_data(crate::core::Core::data_map(
                    json!({ "alerts": recent }),
                )))
            }
            ("sinks", Operation::List | Operation::Read) => {
                let mut names: Vec<String> = self
                    .sinks
                    .read()
                    .map(|s| s.iter().map(|s| s.name.clone()).collect())
                    .unwrap_or_default();
                names.sort();
                EngineResponse::list(names).map(|r| Response {
                    data: r.data,
                    ..Response::default()
                })
            }
            _ => match path.strip_prefix(SINK_PREFIX) {
                Some(name) if !name.is_empty() && !name.contains('/') => {
                    self.sink_endpoint(name, operation, data).await
                }
                _ => Err(Error::UnsupportedPath(format!("sys/alerts/{path}"))),
            },
        }
    }

    async fn sink_endpoint(
        &self,
        name: &str,
        operation: Operation,
        data: &Map<String, Value>,
    ) -> Result<Response, Error> {
        let existing = self
            .sinks
            .read()
            .ok()
            .and_then(|s| s.iter().find(|s| s.name == name).cloned());
        match operation {
            Operation::Read => {
                let sink = existing.ok_or_else(Error::not_found)?;
                Ok(Response::with_data(crate::core::Core::data_map(json!({
                    "name": sink.name,
                    "type": sink.kind,
                    "url": sink.url,
                    "min_severity": sink.min_severity.as_str(),
                    "has_secret": !sink.secret.is_empty(),
                }))))
            }
            op if op.is_write() => {
                let kind = fields::string(data, "type")?
                    .or(existing.as_ref().map(|s| s.kind.clone()))
                    .unwrap_or_else(|| "webhook".into());
                if !matches!(kind.as_str(), "webhook" | "slack") {
                    return Err(Error::invalid("type must be \"webhook\" or \"slack\""));
                }
                let url = fields::string(data, "url")?
                    .or(existing.as_ref().map(|s| s.url.clone()))
                    .unwrap_or_default();
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(Error::invalid("url must be an http:// or https:// URL"));
                }
                let secret = match fields::string(data, "secret")? {
                    Some(text) => crate::secret::Secret::from(text),
                    None => existing
                        .as_ref()
                        .map(|s| s.secret.clone())
                        .unwrap_or_default(),
                };
                let min_severity = match fields::string(data, "min_severity")? {
                    Some(text) => Severity::parse(&text).ok_or_else(|| {
                        Error::invalid("min_severity must be info, low, medium, high or critical")
                    })?,
                    None => existing
                        .as_ref()
                        .map(|s| s.min_severity)
                        .unwrap_or_default(),
                };
                let record = SinkRecord {
                    name: name.to_string(),
                    kind,
                    url,
                    secret,
                    min_severity,
                };
                self.store()
                    .await?
                    .put_json(&format!("{SINK_PREFIX}{name}"), &record)
                    .await?;
                self.replace_sinks(|sinks| {
                    sinks.retain(|s| s.name != name);
                    sinks.push(record);
                });
                Ok(Response::default())
            }
            Operation::Delete => {
                self.store()
                    .await?
                    .delete(&format!("{SINK_PREFIX}{name}"))
                    .await?;
                self.replace_sinks(|sinks| sinks.retain(|s| s.name != name));
                lock(&self.outbox).retain(|p| p.sink != name);
                Ok(Response::default())
            }
            _ => Err(Error::UnsupportedOperation(format!(
                "sys/alerts/sinks/{name}"
            ))),
        }
    }

    async fn store(&self) -> Result<StorageView, Error> {
        lock(&self.view).clone().ok_or(Error::Sealed)
    }

    fn replace_sinks(&self, change: impl FnOnce(&mut Vec<SinkRecord>)) {
        if let Ok(mut guard) = self.sinks.write() {
            let mut sinks: Vec<SinkRecord> = guard.iter().cloned().collect();
            change(&mut sinks);
            *guard = Arc::new(sinks);
        }
    }
}

/// Who made a request, for an alert.
pub(crate) fn actor(
    caller: Option<&crate::core::Caller>,
    request: &crate::request::Request,
) -> Actor {
    Actor {
        display_name: caller
            .map(|c| c.entry.display_name.clone())
            .unwrap_or_default(),
        entity_id: caller
            .map(|c| c.entry.entity_id.clone())
            .unwrap_or_default(),
        accessor: caller.map(|c| c.entry.accessor.clone()).unwrap_or_default(),
        remote_address: request.remote_address.clone().unwrap_or_default(),
    }
}

impl crate::core::Core {
    /// Installs the transport that delivers alerts (the server's HTTP client) and starts the
    /// delivery task. A second call replaces the first transport.
    pub fn set_alert_transport(&self, transport: Arc<dyn AlertTransport>) {
        let task = self.alerts.spawn_delivery(transport);
        let mut slot = lock(&self.alert_delivery);
        if let Some(previous) = slot.replace(task) {
            previous.abort();
        }
    }

    /// The alert rules and outbox.
    pub fn alerts(&self) -> &Arc<Alerts> {
        &self.alerts
    }

    /// `sys/policy/<name>` and `sys/policies/acl/<name>`, with the policy-change alert:
    /// the text before and after are compared and a change is reported with a diff.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn policy_endpoint_alerted(
        &self,
        state: &crate::core::State,
        name: &str,
        operation: Operation,
        data: &Map<String, Value>,
        field: &str,
        caller: Option<&crate::core::Caller>,
        request: &crate::request::Request,
    ) -> Result<Response, Error> {
        if !(operation.is_write() || operation == Operation::Delete) {
            return self
                .policy_endpoint(state, name, operation, data, field)
                .await;
        }
        let normalized = crate::policy_store::normalize(name)?;
        let before = state.policies.raw(&normalized).await?;
        let response = self
            .policy_endpoint(state, name, operation, data, field)
            .await?;
        let after = state.policies.raw(&normalized).await?;
        if before != after {
            let kind = match (&before, &after) {
                (None, _) => "create",
                (_, None) => "delete",
                _ => "update",
            };
            let actor = actor(caller, request);
            self.alerts.policy_changed(
                &normalized,
                kind,
                &actor,
                before.as_deref(),
                after.as_deref(),
                self.clock.now(),
            );
        }
        Ok(response)
    }
}

/// `sha256=<hex>`: HMAC-SHA256 of the body with the sink's secret.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A unified diff of two texts (one hunk with full context; policies are short).
pub fn unified_diff(name: &str, before: &str, after: &str) -> String {
    let old: Vec<&str> = before.lines().collect();
    let new: Vec<&str> = after.lines().collect();
    // Longest common subsequence table, from the ends.
    let mut table = vec![vec![0u32; new.len() + 1]; old.len() + 1];
    for i in (0..old.len()).rev() {
        for j in (0..new.len()).rev() {
            table[i][j] = if old[i] == new[j] {
                table[i + 1][j + 1] + 1
            } else {
                table[i + 1][j].max(table[i][j + 1])
            };
        }
    }
    let mut out = format!(
        "--- a/{name}\n+++ b/{name}\n@@ -{},{} +{},{} @@\n",
        u32::from(!old.is_empty()),
        old.len(),
        u32::from(!new.is_empty()),
        new.len()
    );
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        if i < old.len() && j < new.len() && old[i] == new[j] {
            out.push_str(&format!(" {}\n", old[i]));
            i += 1;
            j += 1;
        } else if j < new.len() && (i == old.len() || table[i][j + 1] >= table[i + 1][j]) {
            out.push_str(&format!("+{}\n", new[j]));
            j += 1;
        } else {
            out.push_str(&format!("-{}\n", old[i]));
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_diff_marks_removed_and_added_lines() {
        let diff = unified_diff("p", "a\nb\nc\n", "a\nc\nd\n");
        assert_eq!(diff, "--- a/p\n+++ b/p\n@@ -1,3 +1,3 @@\n a\n-b\n c\n+d\n");
        assert!(unified_diff("p", "", "x").contains("@@ -0,0 +1,1 @@\n+x\n"));
    }

    #[test]
    fn thresholds_fire_once_per_window() {
        let alerts = Alerts::new(Arc::new(Metrics::new()));
        assert_eq!(alerts.count("k", 0, 3, 60), None);
        assert_eq!(alerts.count("k", 1, 3, 60), None);
        assert_eq!(alerts.count("k", 2, 3, 60), Some(3));
        assert_eq!(
            alerts.count("k", 3, 3, 60),
            None,
            "already alerted in this window"
        );
        assert_eq!(
            alerts.count("k", 100, 3, 60),
            None,
            "old events left the window"
        );
    }

    #[test]
    fn the_signature_is_an_hmac_of_the_body() {
        assert_eq!(
            signature("key", b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }
}
