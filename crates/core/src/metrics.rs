//! Counters, gauges and latency histograms of the core, and their two renderings: the
//! Prometheus text format (`/v1/sys/metrics?format=prometheus`) and Vault's JSON shape.
//!
//! The core and the server update them on the request path, so an update is one short
//! uncontended lock and a hash-map bump; rendering builds the text from a snapshot. Labels
//! never carry secrets: mounts, operations, outcome kinds, role names, quota names and the
//! identity a quota counted (an address, an entity id or a token accessor, never a token).
//! Gauges that belong to other parts (seal status, barrier key term, pending alerts) are
//! read when rendering, and so are the live counts [`LiveCount`] the token store and the
//! expiration manager keep: `ward_token_count{mount}` (service tokens by issuing auth mount)
//! and `ward_lease_count{mount}` (leases by secrets mount), kept by accessor and shown by the
//! mount's current path.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};

/// Histogram bucket bounds of request latency, in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Label sets kept per family; past this, new ones are counted under `other`.
const MAX_SERIES: usize = 10_000;

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bucket, bound) in self.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Default)]
struct Inner {
    counters: BTreeMap<&'static str, HashMap<Labels, u64>>,
    histograms: BTreeMap<&'static str, HashMap<Labels, Histogram>>,
}

impl Inner {
    fn add(&mut self, name: &'static str, labels: Labels, n: u64) {
        let family = self.counters.entry(name).or_default();
        let labels = if family.len() >= MAX_SERIES && !family.contains_key(&labels) {
            overflow(&labels)
        } else {
            labels
        };
        *family.entry(labels).or_default() += n;
    }
}

fn overflow(labels: &Labels) -> Labels {
    labels
        .iter()
        .map(|(k, _)| (*k, "other".to_string()))
        .collect()
}

/// What a renderer adds from outside the registry.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    pub sealed: bool,
    pub barrier_key_term: u64,
    pub alerts_pending: u64,
    pub audit_devices: u64,
    /// Live service tokens by auth mount path; None until counted after unseal.
    pub tokens_by_mount: Option<BTreeMap<String, u64>>,
    /// Live leases by secrets mount path; None until counted after unseal.
    pub leases_by_mount: Option<BTreeMap<String, u64>>,
}

/// A live count by key (tokens by auth mount, leases by mount): kept up to date by every
/// create and remove, and counted once from storage after unseal (`restore`), so a scrape
/// reads memory only.
///
/// Exactness: a change holds [`LiveCount::change`] (shared) across its storage write and its
/// `add` or `sub`; `restore` holds the same gate exclusively while it scans. So a change is
/// seen either by the scan (made before it) or as a delta (made after), never both, never
/// neither. Until restored, `add` and `sub` do nothing: the scan will see those changes.
/// The price is that creations wait while the restore scan runs, once per unseal.
#[derive(Debug, Default)]
pub(crate) struct LiveCount {
    gate: tokio::sync::RwLock<()>,
    counts: Mutex<Option<BTreeMap<String, u64>>>,
}

impl LiveCount {
    /// Held across one storage change and its `add` or `sub`.
    pub(crate) async fn change(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().await
    }

    pub(crate) fn add(&self, key: &str) {
        // Allocates the key only the first time a mount is seen (this runs per token created).
        self.with(|counts| match counts.get_mut(key) {
            Some(n) => *n += 1,
            None => {
                counts.insert(key.to_string(), 1);
            }
        });
    }

    pub(crate) fn sub(&self, key: &str) {
        self.with(|counts| {
            if let Some(n) = counts.get_mut(key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(key);
                }
            }
        });
    }

    pub(crate) fn is_restored(&self) -> bool {
        self.lock().is_some()
    }

    /// Counts from storage with `scan`, once: changes wait meanwhile (see the type's note).
    pub(crate) async fn restore<F>(&self, scan: F) -> Result<(), crate::error::Error>
    where
        F: std::future::Future<Output = Result<BTreeMap<String, u64>, crate::error::Error>>,
    {
        let _exclusive = self.gate.write().await;
        if self.is_restored() {
            return Ok(());
        }
        let counted = scan.await?;
        *self.lock() = Some(counted);
        Ok(())
    }

    pub(crate) fn snapshot(&self) -> Option<BTreeMap<String, u64>> {
        self.lock().clone()
    }

    fn with(&self, f: impl FnOnce(&mut BTreeMap<String, u64>)) {
        if let Some(counts) = self.lock().as_mut() {
            f(counts);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<BTreeMap<String, u64>>> {
        match self.counts.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// The metrics registry of one core.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// The help line and type of each family.
fn describe(name: &str) -> (&'static str, &'static str) {
    match name {
        "ward_requests_total" => (
            "Requests handled, by mount, operation and outcome.",
            "counter",
        ),
        "ward_request_duration_seconds" => (
            "Request latency inside the core, by mount and operation.",
            "histogram",
        ),
        "ward_logins_total" => ("Successful logins, by auth mount and role.", "counter"),
        "ward_login_failures_total" => ("Failed logins, by auth mount and role.", "counter"),
        "ward_tokens_created_total" => ("Tokens issued, by mount.", "counter"),
        "ward_tokens_revoked_total" => ("Tokens revoked, by mount.", "counter"),
        "ward_leases_created_total" => ("Leases issued, by mount.", "counter"),
        "ward_leases_revoked_total" => ("Leases revoked, by mount.", "counter"),
        "ward_rate_limit_rejections_total" => (
            "Requests refused by a rate-limit quota, by quota and identity.",
            "counter",
        ),
        "ward_policy_changes_total" => ("Policy writes and deletions, by operation.", "counter"),
        "ward_audit_failures_total" => (
            "Audit entries a device failed to record, by device.",
            "counter",
        ),
        "ward_audit_refusals_total" => (
            "Requests refused because no audit device recorded them.",
            "counter",
        ),
        "ward_alerts_raised_total" => ("Alerts raised, by rule and severity.", "counter"),
        "ward_alert_deliveries_total" => {
            ("Alert delivery attempts, by sink and outcome.", "counter")
        }
        "ward_alerts_dropped_total" => ("Alerts dropped because the outbox was full.", "counter"),
        _ => ("", "counter"),
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        match self.inner.lock() {
            Ok(mut inner) => f(&mut inner),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// One request through `handle_request`.
    pub fn request(&self, mount: &str, operation: &str, status: &str, elapsed: Duration) {
        self.with(|inner| {
            inner.add(
                "ward_requests_total",
                vec![
                    ("mount", mount.into()),
                    ("operation", operation.into()),
                    ("status", status.into()),
                ],
                1,
            );
            let family = inner
                .histograms
                .entry("ward_request_duration_seconds")
                .or_default();
            let labels: Labels = vec![("mount", mount.into()), ("operation", operation.into())];
            let labels = if family.len() >= MAX_SERIES && !family.contains_key(&labels) {
                overflow(&labels)
            } else {
                labels
            };
            family
                .entry(labels)
                .or_default()
                .observe(elapsed.as_secs_f64());
        });
    }

    pub fn login(&self, mount: &str, role: &str, succeeded: bool) {
        let name = if succeeded {
            "ward_logins_total"
        } else {
            "ward_login_failures_total"
        };
        self.with(|inner| {
            inner.add(
                name,
                vec![("mount", mount.into()), ("role", role.into())],
                1,
            )
        });
    }

    pub fn token_created(&self, mount: &str) {
        self.with(|inner| {
            inner.add(
                "ward_tokens_created_total",
                vec![("mount", mount.into())],
                1,
            )
        });
    }

    /// For the token store and the expiration manager to call on revocation.
    pub fn token_revoked(&self, mount: &str) {
        self.with(|inner| {
            inner.add(
                "ward_tokens_revoked_total",
                vec![("mount", mount.into())],
                1,
            )
        });
    }

    pub fn lease_created(&self, mount: &str) {
        self.with(|inner| {
            inner.add(
                "ward_leases_created_total",
                vec![("mount", mount.into())],
                1,
            )
        });
    }

    pub fn lease_revoked(&self, mount: &str) {
        self.with(|inner| {
            inner.add(
                "ward_leases_revoked_total",
                vec![("mount", mount.into())],
                1,
            )
        });
    }

    pub fn rate_limited(&self, quota: &str, identity: &str) {
        self.with(|inner| {
            inner.add(
                "ward_rate_limit_rejections_total",
                vec![("quota", quota.into()), ("identity", identity.into())],
                1,
            )
        });
    }

    pub fn policy_changed(&self, operation: &str) {
        self.with(|inner| {
            inner.add(
                "ward_policy_changes_total",
                vec![("operation", operation.into())],
                1,
            )
        });
    }

    pub fn audit_failure(&self, device: &str) {
        self.with(|inner| {
            inner.add(
                "ward_audit_failures_total",
                vec![("device", device.into())],
                1,
            )
        });
    }

    pub fn audit_refusal(&self) {
        self.with(|inner| inner.add("ward_audit_refusals_total", Vec::new(), 1));
    }

    pub fn alert_raised(&self, rule: &str, severity: &str) {
        self.with(|inner| {
            inner.add(
                "ward_alerts_raised_total",
                vec![("rule", rule.into()), ("severity", severity.into())],
                1,
            )
        });
    }

    pub fn alert_delivery(&self, sink: &str, delivered: bool) {
        let outcome = if delivered { "delivered" } else { "failed" };
        self.with(|inner| {
            inner.add(
                "ward_alert_deliveries_total",
                vec![("sink", sink.into()), ("outcome", outcome.into())],
                1,
            )
        });
    }

    pub fn alert_dropped(&self) {
        self.with(|inner| inner.add("ward_alerts_dropped_total", Vec::new(), 1));
    }

    /// The value of one counter series (tests and the JSON rendering).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.with(|inner| {
            inner.counters.get(name).map_or(0, |family| {
                family
                    .iter()
                    .filter(|(l, _)| {
                        labels
                            .iter()
                            .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
                    })
                    .map(|(_, n)| *n)
                    .sum()
            })
        })
    }

    /// The Prometheus text exposition format, version 0.0.4.
    pub fn prometheus(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        for (name, help, value) in gauge_list(gauges) {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        for (name, help, counts) in live_gauges(gauges) {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (mount, n) in counts.iter().flatten() {
                let labels: Labels = vec![("mount", mount.clone())];
                let _ = writeln!(out, "{name}{} {n}", label_text(&labels, None));
            }
        }
        self.with(|inner| {
            for (name, family) in &inner.counters {
                let (help, kind) = describe(name);
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
                for (labels, value) in sorted(family) {
                    let _ = writeln!(out, "{name}{} {value}", label_text(labels, None));
                }
            }
            for (name, family) in &inner.histograms {
                let (help, _) = describe(name);
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
                for (labels, histogram) in sorted(family) {
                    for (bound, count) in LATENCY_BUCKETS.iter().zip(histogram.buckets) {
                        let _ = writeln!(
                            out,
                            "{name}_bucket{} {count}",
                            label_text(labels, Some(&bound.to_string()))
                        );
                    }
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {}",
                        label_text(labels, Some("+Inf")),
                        histogram.count
                    );
                    let _ = writeln!(
                        out,
                        "{name}_sum{} {}",
                        label_text(labels, None),
                        histogram.sum
                    );
                    let _ = writeln!(
                        out,
                        "{name}_count{} {}",
                        label_text(labels, None),
                        histogram.count
                    );
                }
            }
        });
        out
    }

    /// Vault's JSON shape: `Gauges`, `Counters`, `Samples`.
    pub fn json(&self, gauges: &Gauges, timestamp: &str) -> Value {
        let mut gauge_values: Vec<Value> = gauge_list(gauges)
            .into_iter()
            .map(|(name, _, value)| json!({ "Name": name, "Value": value, "Labels": {} }))
            .collect();
        for (name, _, counts) in live_gauges(gauges) {
            for (mount, n) in counts.iter().flatten() {
                gauge_values
                    .push(json!({ "Name": name, "Value": n, "Labels": { "mount": mount } }));
            }
        }
        let (counters, samples) = self.with(|inner| {
            let counters: Vec<Value> = inner
                .counters
                .iter()
                .flat_map(|(name, family)| {
                    sorted(family)
                        .into_iter()
                        .map(move |(labels, n)| json!({ "Name": name, "Count": n, "Sum": n, "Labels": label_map(labels) }))
                })
                .collect();
            let samples: Vec<Value> = inner
                .histograms
                .iter()
                .flat_map(|(name, family)| {
                    sorted(family).into_iter().map(move |(labels, h)| {
                        let mean = if h.count > 0 { h.sum / h.count as f64 } else { 0.0 };
                        json!({ "Name": name, "Count": h.count, "Sum": h.sum, "Mean": mean, "Labels": label_map(labels) })
                    })
                })
                .collect();
            (counters, samples)
        });
        json!({ "Timestamp": timestamp, "Gauges": gauge_values, "Counters": counters, "Samples": samples })
    }
}

impl crate::core::Core {
    /// The metrics registry (the server records its own figures here too).
    pub fn metrics(&self) -> &std::sync::Arc<Metrics> {
        &self.metrics
    }

    /// `/v1/sys/metrics?format=prometheus`. The server serves this without a token only when
    /// `telemetry { unauthenticated_metrics_access = true }`; otherwise it goes through
    /// `handle_request` (`sys/metrics`, which needs `read` on that path and is audited).
    pub fn metrics_prometheus(&self) -> String {
        self.metrics.prometheus(&self.gauges())
    }

    /// `/v1/sys/metrics` in Vault's JSON shape.
    pub fn metrics_json(&self) -> Value {
        self.metrics
            .json(&self.gauges(), &crate::clock::rfc3339(self.clock.now()))
    }

    fn gauges(&self) -> Gauges {
        let state = self.state().ok();
        Gauges {
            sealed: state.is_none(),
            barrier_key_term: if state.is_some() {
                self.barrier
                    .key_status()
                    .map(|s| u64::from(s.term))
                    .unwrap_or(0)
            } else {
                0
            },
            alerts_pending: self.alerts.pending_count() as u64,
            audit_devices: state.as_ref().map_or(0, |s| s.audit.len() as u64),
            tokens_by_mount: state.as_ref().and_then(|s| {
                let router = s.router();
                s.tokens
                    .live
                    .snapshot()
                    .map(|counts| by_mount_path(&router, counts))
            }),
            leases_by_mount: state.as_ref().and_then(|s| {
                let router = s.router();
                s.expiration
                    .live
                    .snapshot()
                    .map(|counts| by_mount_path(&router, counts))
            }),
        }
    }

    /// `GET sys/metrics` through `handle_request`: JSON data, or with `format=prometheus`
    /// the text under `data.prometheus`, which the server sends as `text/plain`.
    pub(crate) fn metrics_endpoint(
        &self,
        data: &serde_json::Map<String, Value>,
    ) -> crate::request::Response {
        let format = data.get("format").and_then(Value::as_str).unwrap_or("");
        let body = if format == "prometheus" {
            json!({ "format": "prometheus", "prometheus": self.metrics_prometheus() })
        } else {
            self.metrics_json()
        };
        crate::request::Response::with_data(crate::core::Core::data_map(body))
    }
}

/// Counts keyed by mount accessor, re-keyed by the mount's path as the router has it now (a
/// remounted mount keeps its accessor). Tokens of the token store itself count under
/// `auth/token/`; a mount no longer mounted, or tokens stored before the mount index
/// existed, under `unknown`.
fn by_mount_path(
    router: &crate::mounts::Router,
    counts: BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (accessor, n) in counts {
        let path = if accessor == crate::token::TOKEN_STORE_KEY {
            "auth/token/".to_string()
        } else {
            router
                .find_by_accessor(&accessor)
                .map(|mounted| mounted.entry.route_path())
                .unwrap_or_else(|| "unknown".to_string())
        };
        *out.entry(path).or_default() += n;
    }
    out
}

fn gauge_list(gauges: &Gauges) -> Vec<(&'static str, &'static str, u64)> {
    vec![
        (
            "ward_sealed",
            "1 when the barrier is sealed.",
            u64::from(gauges.sealed),
        ),
        (
            "ward_barrier_key_term",
            "Term of the barrier's active encryption key.",
            gauges.barrier_key_term,
        ),
        (
            "ward_alerts_pending",
            "Alerts waiting for delivery.",
            gauges.alerts_pending,
        ),
        (
            "ward_audit_devices",
            "Enabled audit devices.",
            gauges.audit_devices,
        ),
        (
            "ward_live_counts_ready",
            "1 when ward_token_count and ward_lease_count have been counted since the last unseal.",
            u64::from(gauges.tokens_by_mount.is_some() && gauges.leases_by_mount.is_some()),
        ),
    ]
}

/// Name, help and counts by mount of a gauge family with a `mount` label.
type LiveGauge<'a> = (
    &'static str,
    &'static str,
    &'a Option<BTreeMap<String, u64>>,
);

/// The gauges with a `mount` label; a family without series until counted after unseal.
fn live_gauges(gauges: &Gauges) -> [LiveGauge<'_>; 2] {
    [
        (
            "ward_token_count",
            "Live service tokens, by the auth mount that issued them (auth/token/ for tokens made by the token store itself: root, wrapping, access grants).",
            &gauges.tokens_by_mount,
        ),
        (
            "ward_lease_count",
            "Live leases, by the secrets mount that issued them (irrevocable ones included).",
            &gauges.leases_by_mount,
        ),
    ]
}

fn sorted<T>(family: &HashMap<Labels, T>) -> Vec<(&Labels, &T)> {
    let mut items: Vec<(&Labels, &T)> = family.iter().collect();
    items.sort_by(|a, b| a.0.cmp(b.0));
    items
}

fn label_text(labels: &Labels, le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    format!("{{{}}}", parts.join(","))
}

fn label_map(labels: &Labels) -> Value {
    Value::Object(
        labels
            .iter()
            .map(|(k, v)| ((*k).to_string(), Value::String(v.clone())))
            .collect(),
    )
}

/// Label values escape backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_help_type_and_escaped_labels() {
        let metrics = Metrics::new();
        metrics.request("secret/", "read", "ok", Duration::from_millis(3));
        metrics.rate_limited("q\"1", "10.0.0.1");
        let text = metrics.prometheus(&Gauges {
            barrier_key_term: 2,
            ..Gauges::default()
        });
        assert!(
            text.contains(
                "ward_requests_total{mount=\"secret/\",operation=\"read\",status=\"ok\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "ward_rate_limit_rejections_total{quota=\"q\\\"1\",identity=\"10.0.0.1\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("ward_request_duration_seconds_bucket{mount=\"secret/\",operation=\"read\",le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("ward_request_duration_seconds_bucket{mount=\"secret/\",operation=\"read\",le=\"0.001\"} 0"), "{text}");
        assert!(text.contains("ward_barrier_key_term 2"));
        assert_eq!(
            metrics.counter("ward_requests_total", &[("mount", "secret/")]),
            1
        );
    }
}
