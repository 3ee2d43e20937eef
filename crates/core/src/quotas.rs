//! Rate-limit quotas: Vault's `sys/quotas/rate-limit/<name>` and `sys/quotas/config`, plus
//! Ward's `identity` option, which counts per entity or per token instead of per address.
//!
//! A quota applies to every path under its `path` (empty: everything); among the quotas that
//! match a request the most specific wins (the longest path, and a role-specific login quota
//! over the plain mount one), as in Vault. Each (quota, identity) pair has a token bucket of
//! `rate` requests per `interval`; a client over the limit is refused until a token refills,
//! or for `block_interval` when one is set. Buckets are in memory only and bounded in number:
//! a restart or a seal forgets them, which errs on the side of letting clients in.
//! Lease-count quotas live with the expiration manager.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::engine::{fields, EngineResponse, Operation};
use crate::error::Error;
use crate::request::Response;
use crate::view::StorageView;

/// The message Vault sends with a 429.
pub const RATE_LIMITED_MESSAGE: &str = "rate limit quota exceeded";
/// Buckets kept at most; idle ones are dropped first when the map is full.
const MAX_BUCKETS: usize = 100_000;
const CONFIG_KEY: &str = "config";
const QUOTA_PREFIX: &str = "rate-limit/";

/// Whom a quota counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Identity {
    /// The client's address (Vault's behaviour).
    #[default]
    Address,
    /// The caller's entity, falling back to its token accessor, then to its address.
    Entity,
    /// The caller's token accessor, falling back to its address.
    Token,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RateQuota {
    pub(crate) name: String,
    pub(crate) path: String,
    #[serde(default)]
    pub(crate) role: String,
    pub(crate) rate: f64,
    /// Seconds.
    pub(crate) interval: u64,
    /// Seconds; 0: refuse only until a token refills.
    #[serde(default)]
    pub(crate) block_interval: u64,
    #[serde(default)]
    pub(crate) identity: Identity,
}

impl RateQuota {
    /// Whether Ward counts this quota before authentication (by address) or after.
    pub(crate) fn counts_callers(&self) -> bool {
        self.identity != Identity::Address
    }

    fn matches(&self, path: &str, role: Option<&str>) -> bool {
        (self.path.is_empty() || path.starts_with(&self.path))
            && (self.role.is_empty() || role == Some(self.role.as_str()))
    }

    fn specificity(&self) -> (usize, bool) {
        (self.path.len(), !self.role.is_empty())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct QuotaConfig {
    #[serde(default)]
    pub(crate) enable_rate_limit_audit_logging: bool,
    #[serde(default)]
    pub(crate) enable_rate_limit_response_headers: bool,
    #[serde(default)]
    pub(crate) rate_limit_exempt_paths: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: i128,
    blocked_until: i128,
}

/// The caller as a quota sees it.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Subject<'a> {
    pub(crate) address: Option<&'a str>,
    pub(crate) entity_id: Option<&'a str>,
    pub(crate) accessor: Option<&'a str>,
}

/// A refusal: which quota, whom it counted, and when to retry.
#[derive(Debug, Clone)]
pub(crate) struct Refusal {
    pub(crate) quota: String,
    pub(crate) identity: String,
    pub(crate) retry_after_seconds: u64,
}

impl Refusal {
    pub(crate) fn into_error(self) -> Error {
        Error::RateLimited {
            message: RATE_LIMITED_MESSAGE.into(),
            retry_after_seconds: self.retry_after_seconds,
        }
    }
}

/// The rate-limit quotas of an unsealed core.
pub(crate) struct RateLimits {
    view: StorageView,
    quotas: RwLock<Arc<Vec<Arc<RateQuota>>>>,
    config: RwLock<Arc<QuotaConfig>>,
    buckets: Mutex<HashMap<(String, String), Bucket>>,
}

impl RateLimits {
    pub(crate) async fn load(view: StorageView) -> Result<RateLimits, Error> {
        let mut quotas = Vec::new();
        for name in view.list(QUOTA_PREFIX).await? {
            if let Some(quota) = view
                .get_json::<RateQuota>(&format!("{QUOTA_PREFIX}{name}"))
                .await?
            {
                quotas.push(Arc::new(quota));
            }
        }
        let config: QuotaConfig = view.get_json(CONFIG_KEY).await?.unwrap_or_default();
        Ok(RateLimits {
            view,
            quotas: RwLock::new(Arc::new(quotas)),
            config: RwLock::new(Arc::new(config)),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn config(&self) -> Arc<QuotaConfig> {
        self.config.read().map(|c| c.clone()).unwrap_or_default()
    }

    /// The quota that governs a request path (and login role), if any.
    pub(crate) fn select(&self, path: &str, role: Option<&str>) -> Option<Arc<RateQuota>> {
        let quotas = self.quotas.read().map(|q| q.clone()).ok()?;
        if quotas.is_empty() {
            return None;
        }
        if self
            .config()
            .rate_limit_exempt_paths
            .iter()
            .any(|p| path.starts_with(p.as_str()))
        {
            return None;
        }
        quotas
            .iter()
            .filter(|q| q.matches(path, role))
            .max_by_key(|q| q.specificity())
            .cloned()
    }

    /// Takes one token from the caller's bucket of `quota` at `now` (Unix nanoseconds).
    pub(crate) fn check(
        &self,
        quota: &RateQuota,
        subject: Subject<'_>,
        now: i128,
    ) -> Result<(), Refusal> {
        let address = subject.address.unwrap_or("unknown");
        let identity = match quota.identity {
            Identity::Address => address,
            Identity::Entity => subject.entity_id.or(subject.accessor).unwrap_or(address),
            Identity::Token => subject.accessor.unwrap_or(address),
        };
        let mut buckets = match self.buckets.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if buckets.len() >= MAX_BUCKETS {
            prune(&mut buckets, now);
        }
        let bucket = buckets
            .entry((quota.name.clone(), identity.to_string()))
            .or_insert(Bucket {
                tokens: quota.rate,
                updated: now,
                blocked_until: 0,
            });
        take(bucket, quota, now).map_err(|retry_after_seconds| Refusal {
            quota: quota.name.clone(),
            identity: identity.to_string(),
            retry_after_seconds,
        })
    }

    /// `sys/quotas/config` and `sys/quotas/rate-limit[/<name>]`; `path` relative to `sys/quotas/`.
    pub(crate) async fn handle(
        &self,
        path: &str,
        operation: Operation,
        data: &Map<String, Value>,
        mount_of: impl Fn(&str) -> Option<String>,
    ) -> Result<Response, Error> {
        if path == "config" {
            return self.handle_config(operation, data).await;
        }
        let name = path
            .strip_prefix("rate-limit")
            .unwrap_or_default()
            .trim_matches('/');
        if name.is_empty() {
            return match operation {
                Operation::List | Operation::Read => {
                    let mut names: Vec<String> =
                        self.all().iter().map(|q| q.name.clone()).collect();
                    names.sort();
                    EngineResponse::list(names).map(|r| Response {
                        data: r.data,
                        ..Response::default()
                    })
                }
                _ => Err(Error::UnsupportedOperation("sys/quotas/rate-limit".into())),
            };
        }
        if name.contains('/') {
            return Err(Error::invalid("invalid quota name"));
        }
        match operation {
            Operation::Read => {
                let quota = self
                    .all()
                    .iter()
                    .find(|q| q.name == name)
                    .cloned()
                    .ok_or_else(Error::not_found)?;
                Ok(Response::with_data(quota_json(&quota)))
            }
            op if op.is_write() => {
                let existing = self.all().iter().find(|q| q.name == name).cloned();
                let quota = parse_quota(name, data, existing.as_deref(), mount_of)?;
                self.view
                    .put_json(&format!("{QUOTA_PREFIX}{name}"), &quota)
                    .await?;
                self.replace(|quotas| {
                    quotas.retain(|q| q.name != name);
                    quotas.push(Arc::new(quota));
                });
                self.forget_buckets(name);
                Ok(Response::default())
            }
            Operation::Delete => {
                self.view.delete(&format!("{QUOTA_PREFIX}{name}")).await?;
                self.replace(|quotas| quotas.retain(|q| q.name != name));
                self.forget_buckets(name);
                Ok(Response::default())
            }
            _ => Err(Error::UnsupportedOperation(format!(
                "sys/quotas/rate-limit/{name}"
            ))),
        }
    }

    async fn handle_config(
        &self,
        operation: Operation,
        data: &Map<String, Value>,
    ) -> Result<Response, Error> {
        match operation {
            Operation::Read => {
                let config = self.config();
                Ok(Response::with_data(crate::core::Core::data_map(json!({
                    "enable_rate_limit_audit_logging": config.enable_rate_limit_audit_logging,
                    "enable_rate_limit_response_headers": config.enable_rate_limit_response_headers,
                    "rate_limit_exempt_paths": config.rate_limit_exempt_paths,
                }))))
            }
            op if op.is_write() => {
                let mut config = (*self.config()).clone();
                if let Some(v) = fields::boolean(data, "enable_rate_limit_audit_logging")? {
                    config.enable_rate_limit_audit_logging = v;
                }
                if let Some(v) = fields::boolean(data, "enable_rate_limit_response_headers")? {
                    config.enable_rate_limit_response_headers = v;
                }
                if let Some(v) = fields::strings(data, "rate_limit_exempt_paths")? {
                    config.rate_limit_exempt_paths = v
                        .into_iter()
                        .map(|p| p.trim_start_matches('/').to_string())
                        .collect();
                }
                self.view.put_json(CONFIG_KEY, &config).await?;
                if let Ok(mut guard) = self.config.write() {
                    *guard = Arc::new(config);
                }
                Ok(Response::default())
            }
            _ => Err(Error::UnsupportedOperation("sys/quotas/config".into())),
        }
    }

    fn all(&self) -> Arc<Vec<Arc<RateQuota>>> {
        self.quotas.read().map(|q| q.clone()).unwrap_or_default()
    }

    fn replace(&self, change: impl FnOnce(&mut Vec<Arc<RateQuota>>)) {
        let mut quotas: Vec<Arc<RateQuota>> = self.all().iter().cloned().collect();
        change(&mut quotas);
        if let Ok(mut guard) = self.quotas.write() {
            *guard = Arc::new(quotas);
        }
    }

    fn forget_buckets(&self, name: &str) {
        if let Ok(mut buckets) = self.buckets.lock() {
            buckets.retain(|(quota, _), _| quota != name);
        }
    }
}

impl crate::core::Core {
    /// `sys/quotas/config` and `sys/quotas/rate-limit[/<name>]`; `path` relative to `sys/`.
    pub(crate) async fn handle_rate_limit_quotas(
        &self,
        state: &crate::core::State,
        path: &str,
        operation: Operation,
        data: &Map<String, Value>,
    ) -> Result<Response, Error> {
        let router = state.router();
        let mount_of = |p: &str| {
            router
                .resolve(&format!("{}/", p.trim_end_matches('/')))
                .map(|route| route.mounted.entry.route_path())
        };
        state
            .quotas
            .handle(
                path.trim_start_matches("quotas/"),
                operation,
                data,
                mount_of,
            )
            .await
    }
}

/// The token bucket step: refill for the time passed, then take one token.
/// Returns the seconds to wait when refused (at least 1).
fn take(bucket: &mut Bucket, quota: &RateQuota, now: i128) -> Result<(), u64> {
    const NANOS: f64 = 1e9;
    if bucket.blocked_until > now {
        return Err(ceil_seconds(bucket.blocked_until - now));
    }
    let per_second = quota.rate / quota.interval.max(1) as f64;
    let elapsed = (now - bucket.updated).max(0) as f64 / NANOS;
    bucket.tokens = (bucket.tokens + elapsed * per_second).min(quota.rate);
    bucket.updated = now;
    if bucket.tokens >= 1.0 {
        bucket.tokens -= 1.0;
        return Ok(());
    }
    if quota.block_interval > 0 {
        bucket.blocked_until = now + i128::from(quota.block_interval) * 1_000_000_000;
        return Err(quota.block_interval);
    }
    let wait = (1.0 - bucket.tokens) / per_second.max(f64::MIN_POSITIVE);
    Err((wait.ceil() as u64).max(1))
}

fn ceil_seconds(nanos: i128) -> u64 {
    u64::try_from((nanos + 999_999_999) / 1_000_000_000)
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Drops the buckets that are full again (their clients have been quiet); if that frees
/// nothing, drops everything, which lets clients in rather than growing without bound.
fn prune(buckets: &mut HashMap<(String, String), Bucket>, now: i128) {
    buckets.retain(|_, b| b.blocked_until > now || now - b.updated < 1_000_000_000);
    if buckets.len() >= MAX_BUCKETS {
        tracing::warn!("rate-limit bucket table full; resetting it");
        buckets.clear();
    }
}

fn parse_quota(
    name: &str,
    data: &Map<String, Value>,
    existing: Option<&RateQuota>,
    mount_of: impl Fn(&str) -> Option<String>,
) -> Result<RateQuota, Error> {
    let rate = match data.get("rate") {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        None | Some(Value::Null) => existing.map(|q| q.rate),
        Some(_) => None,
    }
    .filter(|r| r.is_finite() && *r > 0.0)
    .ok_or_else(|| Error::invalid("rate must be positive"))?;
    let interval = fields::duration(data, "interval")?
        .or(existing.map(|q| q.interval))
        .unwrap_or(1)
        .max(1);
    let block_interval = fields::duration(data, "block_interval")?
        .or(existing.map(|q| q.block_interval))
        .unwrap_or(0);
    let path = match fields::string(data, "path")? {
        Some(p) => {
            let p = p.trim_start_matches('/').to_string();
            // A bare mount name means the mount: `secret` → `secret/`.
            match mount_of(&p) {
                Some(mount) if mount.trim_end_matches('/') == p.trim_end_matches('/') => mount,
                _ => p,
            }
        }
        None => existing.map(|q| q.path.clone()).unwrap_or_default(),
    };
    let role = fields::string(data, "role")?
        .or(existing.map(|q| q.role.clone()))
        .unwrap_or_default();
    if !role.is_empty() && !path.starts_with("auth/") {
        return Err(Error::invalid(
            "a role can only be set on a quota for an auth mount",
        ));
    }
    let identity = match fields::string(data, "identity")?.as_deref() {
        None => existing.map(|q| q.identity).unwrap_or_default(),
        Some("" | "address") => Identity::Address,
        Some("entity") => Identity::Entity,
        Some("token") => Identity::Token,
        Some(other) => {
            return Err(Error::invalid(format!(
                "identity must be \"entity\", \"token\" or \"address\", not {other:?}"
            )))
        }
    };
    Ok(RateQuota {
        name: name.to_string(),
        path,
        role,
        rate,
        interval,
        block_interval,
        identity,
    })
}

fn quota_json(quota: &RateQuota) -> Map<String, Value> {
    crate::core::Core::data_map(json!({
        "name": quota.name,
        "type": "rate-limit",
        "path": quota.path,
        "role": quota.role,
        "rate": quota.rate,
        "interval": quota.interval,
        "block_interval": quota.block_interval,
        "identity": match quota.identity { Identity::Address => "address", Identity::Entity => "entity", Identity::Token => "token" },
        "inheritable": false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(rate: f64, interval: u64, block: u64) -> RateQuota {
        RateQuota {
            name: "q".into(),
            path: String::new(),
            role: String::new(),
            rate,
            interval,
            block_interval: block,
            identity: Identity::Address,
        }
    }

    #[test]
    fn a_bucket_refills_at_rate_per_interval() {
        let q = quota(2.0, 1, 0);
        let mut bucket = Bucket {
            tokens: 2.0,
            updated: 0,
            blocked_until: 0,
        };
        assert!(take(&mut bucket, &q, 0).is_ok());
        assert!(take(&mut bucket, &q, 0).is_ok());
        assert_eq!(take(&mut bucket, &q, 0), Err(1));
        assert!(
            take(&mut bucket, &q, 500_000_000).is_ok(),
            "half a second refills one token at 2/s"
        );
    }

    #[test]
    fn block_interval_refuses_for_its_whole_length() {
        let q = quota(1.0, 1, 30);
        let mut bucket = Bucket {
            tokens: 1.0,
            updated: 0,
            blocked_until: 0,
        };
        assert!(take(&mut bucket, &q, 0).is_ok());
        assert_eq!(take(&mut bucket, &q, 0), Err(30));
        assert_eq!(take(&mut bucket, &q, 10_000_000_000), Err(20));
        assert!(take(&mut bucket, &q, 31_000_000_000).is_ok());
    }

    #[test]
    fn the_most_specific_quota_wins() {
        let global = RateQuota {
            name: "g".into(),
            ..quota(1.0, 1, 0)
        };
        let mount = RateQuota {
            name: "m".into(),
            path: "secret/".into(),
            ..quota(1.0, 1, 0)
        };
        let deep = RateQuota {
            name: "p".into(),
            path: "secret/app/".into(),
            ..quota(1.0, 1, 0)
        };
        let role = RateQuota {
            name: "r".into(),
            path: "auth/approle/".into(),
            role: "ci".into(),
            ..quota(1.0, 1, 0)
        };
        let all = [global, mount, deep, role];
        let pick = |path: &str, role: Option<&str>| {
            all.iter()
                .filter(|q| q.matches(path, role))
                .max_by_key(|q| q.specificity())
                .map(|q| q.name.clone())
        };
        assert_eq!(pick("secret/app/x", None).as_deref(), Some("p"));
        assert_eq!(pick("secret/other", None).as_deref(), Some("m"));
        assert_eq!(pick("kv/x", None).as_deref(), Some("g"));
        assert_eq!(pick("auth/approle/login", Some("ci")).as_deref(), Some("r"));
        assert_eq!(
            pick("auth/approle/login", Some("other")).as_deref(),
            Some("g")
        );
    }
}
