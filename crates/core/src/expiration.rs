//! The expiration manager: every leased secret is registered here, expires on time, and is
//! revoked in the engine that issued it.
//!
//! Leases live in the barrier under `sys/expire/`, in four key families:
//!
//! ```text
//! id/<lease id>                               the lease entry
//! time/<unix seconds, 12 digits>/<lease id>    when the sweep must next look at the lease
//! token/<token hash>/<lease id>                the leases a token owns (revoked with it)
//! irrevocable/<lease id>                       leases whose revocation kept failing
//! ```
//!
//! Nothing is loaded at unseal. The sweep ([`Core::expire_leases`], called every second by the
//! server) walks the time index from its start up to `now` in pages, so a server holding a
//! million leases is ready at once and keeps in memory only the page being revoked. A lease
//! whose revocation fails is moved further along the time index (exponential backoff); after
//! [`MAX_ATTEMPTS`] failures it is marked irrevocable, reported through `sys/leases/count` and
//! `sys/leases?type=irrevocable`, and still retried at a slow pace, never silently dropped.
//!
//! Revocation is a downward call: the manager finds the issuing mount by its uuid in the router
//! and calls the engine's `revoke` with the lease's internal data. The manager knows no engine.
//!
//! Lease-count quotas (`sys/quotas/lease-count/<name>`) live here too, because their counters
//! move with every registration and revocation. Counts are kept in memory and computed lazily,
//! on first use after unseal, from the `id/` keys (a key scan, no decryption).
//!
//! The live count of leases by mount (the `ward_lease_count` gauge) is restored by the first
//! sweep after unseal from the `id/` keys, each resolved to its mount through the router, and
//! moved by every registration and removal from then on ([`crate::metrics::LiveCount`]).
//!
//! Tokens have no lease entries: the token store keeps its own expiry index, and
//! `auth/token/renew*` renews them.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::barrier::Barrier;
use crate::clock::rfc3339_unix;
use crate::core::{Caller, Core, State};
use crate::duration::format_seconds;
use crate::engine::{fields, EngineContext, LeaseInfo, Operation, SecretSpec};
use crate::error::Error;
use crate::mounts::{Mounted, Route, Router};
use crate::request::{LeaseResponse, Request, Response};
use crate::token::endpoints::{lifetime, LifetimeRequest};
use crate::token::{random_base62, TokenType};
use crate::view::{encode_json, StorageView, ViewOp};

/// Failed revocations before a lease is marked irrevocable.
pub(crate) const MAX_ATTEMPTS: u32 = 6;
/// Seconds before the first retry of a failed revocation; doubled at each failure.
const FIRST_BACKOFF: i64 = 10;
const MAX_BACKOFF: i64 = 300;
/// Irrevocable leases are still retried, once an hour.
const IRREVOCABLE_RETRY: i64 = 3600;
/// Keys read from an index per storage call.
const PAGE: usize = 1000;
/// Revocations in flight at once, across all engines.
const CONCURRENCY: usize = 16;
/// Leases listed by `sys/leases?type=irrevocable` unless `limit` says otherwise.
const IRREVOCABLE_LIST_LIMIT: usize = 10_000;
const LOCK_STRIPES: usize = 256;

const ID_PREFIX: &str = "id/";
const TIME_PREFIX: &str = "time/";
const TOKEN_PREFIX: &str = "token/";
const IRREVOCABLE_PREFIX: &str = "irrevocable/";

/// A lease as stored under `sys/expire/id/<lease id>`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LeaseEntry {
    pub(crate) lease_id: String,
    /// The request path that created the secret (`database/creds/readonly`).
    pub(crate) path: String,
    /// The same path relative to the mount, as the engine saw it (`creds/readonly`).
    pub(crate) relative_path: String,
    pub(crate) mount_accessor: String,
    pub(crate) mount_uuid: String,
    pub(crate) issue_time: i64,
    pub(crate) expire_time: i64,
    /// No renewal may carry the lease past this (issue time + the effective max TTL).
    pub(crate) max_expire_time: i64,
    /// The TTL a renewal without an increment gets (the engine's, or the mount default).
    pub(crate) default_ttl: u64,
    pub(crate) renewable: bool,
    /// The engine's own data, handed back to `renew` and `revoke`.
    pub(crate) internal: Value,
    /// Salted hash of the owning token; empty when no token owns the lease.
    pub(crate) token_hash: String,
    #[serde(default)]
    pub(crate) last_renewal: Option<i64>,
    #[serde(default)]
    pub(crate) revoke_attempts: u32,
    #[serde(default)]
    pub(crate) irrevocable: bool,
    /// The engine's message from the last failed revocation.
    #[serde(default)]
    pub(crate) last_error: String,
    /// Where the lease sits in the time index: its expiry, or its next revocation attempt.
    pub(crate) next_attempt: i64,
}

impl std::fmt::Debug for LeaseEntry {
    // The internal data may name credentials: it is left out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseEntry")
            .field("lease_id", &self.lease_id)
            .field("expire_time", &self.expire_time)
            .field("revoke_attempts", &self.revoke_attempts)
            .field("irrevocable", &self.irrevocable)
            .finish_non_exhaustive()
    }
}

impl LeaseEntry {
    fn ttl(&self, now: i64) -> u64 {
        (self.expire_time - now).max(0) as u64
    }

    /// Why the lease cannot be renewed now, with Vault's messages.
    fn renewal_refusal(&self, now: i64) -> Option<&'static str> {
        if self.irrevocable {
            Some("lease is irrevocable")
        } else if self.expire_time <= now {
            Some("lease expired")
        } else if !self.renewable {
            Some("lease is not renewable")
        } else {
            None
        }
    }
}

/// A `sys/quotas/lease-count/<name>` quota as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct LeaseCountQuota {
    pub(crate) name: String,
    /// A mount (`database/`) or a path prefix under one; empty means every lease.
    pub(crate) path: String,
    /// When set, only leases whose request path ends in this segment count (`creds/<role>`).
    #[serde(default)]
    pub(crate) role: String,
    pub(crate) max_leases: u64,
}

impl LeaseCountQuota {
    fn applies_to(&self, lease_path: &str) -> bool {
        if !lease_path.starts_with(&self.path) {
            return false;
        }
        self.role.is_empty() || lease_path.rsplit('/').next() == Some(self.role.as_str())
    }
}

/// Quotas and their counters: None until first counted after unseal.
#[derive(Default)]
struct QuotaState {
    loaded: bool,
    quotas: BTreeMap<String, (LeaseCountQuota, Option<u64>)>,
}

/// How a revocation treats an engine that fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Keep the lease and schedule a retry.
    Retry,
    /// Drop the lease anyway (`revoke-force`).
    Ignore,
}

/// One due entry of the time index.
struct Due {
    key: String,
    time: i64,
    lease_id: String,
}

/// The lease store: a plain struct owned by the unsealed state.
pub(crate) struct ExpirationManager {
    view: StorageView,
    quota_view: StorageView,
    locks: Vec<tokio::sync::Mutex<()>>,
    /// Held by the sweep, so that two ticks never walk the index at once.
    sweeping: tokio::sync::Mutex<()>,
    quotas: tokio::sync::Mutex<QuotaState>,
    /// Live leases by mount accessor (the `ward_lease_count` gauge).
    pub(crate) live: crate::metrics::LiveCount,
}

impl ExpirationManager {
    pub(crate) fn new(barrier: Arc<Barrier>) -> Self {
        ExpirationManager {
            view: StorageView::new(barrier.clone(), "sys/expire/"),
            quota_view: StorageView::new(barrier, "sys/quotas/lease-count/"),
            locks: (0..LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            sweeping: tokio::sync::Mutex::new(()),
            quotas: tokio::sync::Mutex::new(QuotaState::default()),
            live: crate::metrics::LiveCount::default(),
        }
    }

    /// Serialises every change to one lease (renew, revoke, sweep).
    async fn lock(&self, lease_id: &str) -> tokio::sync::MutexGuard<'_, ()> {
        let mut hasher = DefaultHasher::new();
        lease_id.hash(&mut hasher);
        let index = (hasher.finish() as usize) % self.locks.len().max(1);
        match self.locks.get(index) {
            Some(lock) => lock.lock().await,
            // The index is always in range; the first stripe is a safe fallback.
            None => self.locks[0].lock().await,
        }
    }

    async fn load(&self, lease_id: &str) -> Result<Option<LeaseEntry>, Error> {
        self.view.get_json(&format!("{ID_PREFIX}{lease_id}")).await
    }

    async fn create(&self, entry: &LeaseEntry) -> Result<(), Error> {
        let mut ops = vec![
            ViewOp::Put {
                key: format!("{ID_PREFIX}{}", entry.lease_id),
                value: encode_json(entry)?,
            },
            ViewOp::Put {
                key: time_key(entry.next_attempt, &entry.lease_id),
                value: Vec::new(),
            },
        ];
        if !entry.token_hash.is_empty() {
            ops.push(ViewOp::Put {
                key: token_key(&entry.token_hash, &entry.lease_id),
                value: Vec::new(),
            });
        }
        self.view.transaction(ops).await
    }

    /// Stores a changed entry and moves its time index key from `old_next_attempt`.
    async fn update(&self, old_next_attempt: i64, entry: &LeaseEntry) -> Result<(), Error> {
        let mut ops = vec![ViewOp::Put {
            key: format!("{ID_PREFIX}{}", entry.lease_id),
            value: encode_json(entry)?,
        }];
        if old_next_attempt != entry.next_attempt {
            ops.push(ViewOp::Delete {
                key: time_key(old_next_attempt, &entry.lease_id),
            });
            ops.push(ViewOp::Put {
                key: time_key(entry.next_attempt, &entry.lease_id),
                value: Vec::new(),
            });
        }
        if entry.irrevocable {
            ops.push(ViewOp::Put {
                key: format!("{IRREVOCABLE_PREFIX}{}", entry.lease_id),
                value: encode_json(&entry.mount_accessor)?,
            });
        }
        self.view.transaction(ops).await
    }

    /// Deletes a lease and every index entry pointing at it.
    async fn remove(&self, entry: &LeaseEntry) -> Result<(), Error> {
        let mut ops = vec![
            ViewOp::Delete {
                key: format!("{ID_PREFIX}{}", entry.lease_id),
            },
            ViewOp::Delete {
                key: time_key(entry.next_attempt, &entry.lease_id),
            },
            ViewOp::Delete {
                key: format!("{IRREVOCABLE_PREFIX}{}", entry.lease_id),
            },
        ];
        if !entry.token_hash.is_empty() {
            ops.push(ViewOp::Delete {
                key: token_key(&entry.token_hash, &entry.lease_id),
            });
        }
        self.view.transaction(ops).await
    }

    /// Entries of the time index at or before `now`, strictly after `after`, oldest first.
    /// The flag tells whether the index may hold more due entries past this page.
    async fn due(&self, now: i64, after: &str, limit: usize) -> Result<(Vec<Due>, bool), Error> {
        let keys = self.view.scan(TIME_PREFIX, after, limit).await?;
        let full_page = keys.len() >= limit;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let Some((time, lease_id)) = parse_time_key(&key) else {
                // Not ours to interpret: skip it rather than stall the sweep.
                tracing::warn!(%key, "malformed lease time index key");
                continue;
            };
            if time > now {
                return Ok((out, false));
            }
            out.push(Due {
                key: key.clone(),
                time,
                lease_id,
            });
        }
        Ok((out, full_page))
    }

    /// Lease ids below a prefix of the `id/` family, in pages.
    async fn ids_below(
        &self,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<String>, Error> {
        let family = format!("{ID_PREFIX}{prefix}");
        let after = if after.is_empty() {
            String::new()
        } else {
            format!("{ID_PREFIX}{after}")
        };
        let keys = self.view.scan(&family, &after, limit).await?;
        Ok(keys
            .into_iter()
            .filter_map(|k| k.strip_prefix(ID_PREFIX).map(str::to_string))
            .collect())
    }

    /// Live leases by mount accessor: each `id/` key (the lease id starts with the request
    /// path) resolved to its mount. Keys only, no decryption.
    async fn count_by_mount(&self, router: &Router) -> Result<BTreeMap<String, u64>, Error> {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        let mut after = String::new();
        loop {
            let keys = self.view.scan(ID_PREFIX, &after, PAGE).await?;
            for key in &keys {
                let lease_id = key.strip_prefix(ID_PREFIX).unwrap_or(key);
                let accessor = router
                    .resolve(lease_id)
                    .map(|route| route.mounted.entry.accessor)
                    .unwrap_or_default();
                *counts.entry(accessor).or_default() += 1;
            }
            match keys.last() {
                Some(last) if keys.len() >= PAGE => after = last.clone(),
                _ => break,
            }
        }
        Ok(counts)
    }

    async fn count_keys(&self, family: &str, filter: impl Fn(&str) -> bool) -> Result<u64, Error> {
        let mut count = 0;
        let mut after = String::new();
        loop {
            let keys = self.view.scan(family, &after, PAGE).await?;
            let Some(last) = keys.last().cloned() else {
                break;
            };
            count += keys
                .iter()
                .filter(|k| filter(k.strip_prefix(family).unwrap_or(k)))
                .count() as u64;
            if keys.len() < PAGE {
                break;
            }
            after = last;
        }
        Ok(count)
    }

    async fn load_quotas(&self, quotas: &mut QuotaState) -> Result<(), Error> {
        if quotas.loaded {
            return Ok(());
        }
        for name in self.quota_view.list("").await? {
            if let Some(quota) = self.quota_view.get_json::<LeaseCountQuota>(&name).await? {
                quotas.quotas.insert(name, (quota, None));
            }
        }
        quotas.loaded = true;
        Ok(())
    }

    /// Counts the leases a quota covers, from the `id/` keys.
    async fn count_for(&self, quota: &LeaseCountQuota) -> Result<u64, Error> {
        let family = format!("{ID_PREFIX}{}", quota.path);
        let path = quota.path.clone();
        let role = quota.role.clone();
        self.count_keys(&family, move |rest| {
            if role.is_empty() {
                return true;
            }
            // `rest` is the lease id below the quota path: `<...>/<role>/<random>`.
            let lease_path = format!("{path}{rest}");
            lease_path
                .rsplit_once('/')
                .map(|(p, _)| p.rsplit('/').next() == Some(role.as_str()))
                .unwrap_or(false)
        })
        .await
    }

    /// Reserves one lease in every quota covering `lease_path`, or refuses.
    async fn acquire_quota(&self, lease_path: &str) -> Result<Vec<String>, Error> {
        let mut quotas = self.quotas.lock().await;
        self.load_quotas(&mut quotas).await?;
        let names: Vec<String> = quotas
            .quotas
            .iter()
            .filter(|(_, (q, _))| q.applies_to(lease_path))
            .map(|(n, _)| n.clone())
            .collect();
        for name in &names {
            let Some((quota, count)) = quotas.quotas.get(name).cloned() else {
                continue;
            };
            let current = match count {
                Some(c) => c,
                None => self.count_for(&quota).await?,
            };
            if current >= quota.max_leases {
                if let Some(slot) = quotas.quotas.get_mut(name) {
                    slot.1 = Some(current);
                }
                tracing::warn!(quota = %name, max_leases = quota.max_leases, "lease count quota exceeded");
                return Err(Error::RateLimited {
                    message: "lease count quota exceeded".into(),
                    retry_after_seconds: 0,
                });
            }
            if let Some(slot) = quotas.quotas.get_mut(name) {
                slot.1 = Some(current);
            }
        }
        for name in &names {
            if let Some((_, Some(count))) = quotas.quotas.get_mut(name) {
                *count += 1;
            }
        }
        Ok(names)
    }

    /// Gives back what `acquire_quota` reserved, or a revoked lease's place.
    async fn release_quota(&self, lease_path: &str) {
        let mut quotas = self.quotas.lock().await;
        for (quota, count) in quotas.quotas.values_mut() {
            if quota.applies_to(lease_path) {
                if let Some(count) = count {
                    *count = count.saturating_sub(1);
                }
            }
        }
    }
}

impl Core {
    /// Registers the lease of a secret an engine just issued. On any failure the secret is
    /// revoked again through its engine, so nothing is left without a lease.
    pub(crate) async fn register_lease(
        &self,
        state: &State,
        route: &Route,
        request: &Request,
        caller: Option<&Caller>,
        spec: SecretSpec,
        ctx: &EngineContext,
    ) -> Result<(LeaseResponse, Vec<String>), Error> {
        let now = ctx.now.unix_timestamp();
        let computed = lifetime(&LifetimeRequest {
            now,
            ttl: spec.ttl,
            max_ttl: spec.max_ttl,
            explicit_max_ttl: 0,
            period: 0,
            default_ttl: ctx.mount.default_lease_ttl,
            system_max_ttl: ctx.mount.max_lease_ttl,
            never_expires: false,
        });
        let mut expire_time = computed.expire_time.unwrap_or(now);
        let mut max_expire_time = computed.max_expire_time.unwrap_or(expire_time);
        // A batch token's leases belong to its parent and end with the batch token.
        let (token_hash, token_end) = match caller.map(|c| &c.entry) {
            Some(entry) if entry.token_type == TokenType::Batch => {
                (entry.parent.clone().unwrap_or_default(), entry.expire_time)
            }
            Some(entry) => (entry.hash.clone(), None),
            None => (String::new(), None),
        };
        if let Some(end) = token_end {
            expire_time = expire_time.min(end);
            max_expire_time = max_expire_time.min(end);
        }
        let path = request.path.trim_end_matches('/').to_string();
        let lease_id = format!("{path}/{}", random_base62(24));
        let entry = LeaseEntry {
            lease_id: lease_id.clone(),
            path: path.clone(),
            relative_path: route.relative.clone(),
            mount_accessor: route.mounted.entry.accessor.clone(),
            mount_uuid: route.mounted.entry.uuid.clone(),
            issue_time: now,
            expire_time,
            max_expire_time,
            default_ttl: if spec.ttl > 0 {
                spec.ttl
            } else {
                ctx.mount.default_lease_ttl
            },
            renewable: spec.renewable,
            internal: spec.internal,
            token_hash,
            last_renewal: None,
            revoke_attempts: 0,
            irrevocable: false,
            last_error: String::new(),
            next_attempt: expire_time,
        };
        let stored = match state.expiration.acquire_quota(&path).await {
            Ok(_) => {
                let _change = state.expiration.live.change().await;
                match state.expiration.create(&entry).await {
                    Ok(()) => {
                        state.expiration.live.add(&entry.mount_accessor);
                        Ok(())
                    }
                    Err(e) => {
                        state.expiration.release_quota(&path).await;
                        Err(e)
                    }
                }
            }
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            if let Some(engine) = &route.mounted.engine {
                if let Err(undo) = engine.revoke(ctx, &lease_info(&entry, now, 0, 0)).await {
                    tracing::error!(lease_id = %lease_id, error = %undo, "could not revoke a secret whose lease was not registered");
                }
            }
            return Err(e);
        }
        let lease = LeaseResponse {
            lease_id,
            lease_duration: entry.ttl(now),
            renewable: entry.renewable,
        };
        Ok((lease, computed.warnings))
    }

    /// Revokes leases whose time has come. The server calls this every second, beside
    /// [`Core::expire_tokens`]. Returns how many leases were revoked.
    ///
    /// The time index is walked from its start up to now, a page at a time, with at most
    /// [`CONCURRENCY`] revocations in flight. A failed revocation moves the lease further along
    /// the index, so the walk never meets it twice. A tick that finds the previous one still
    /// running returns at once.
    pub async fn expire_leases(&self) -> Result<usize, Error> {
        let state = self.state()?;
        let Ok(_sweeping) = state.expiration.sweeping.try_lock() else {
            return Ok(0);
        };
        if !state.expiration.live.is_restored() {
            let router = state.router();
            state
                .expiration
                .live
                .restore(state.expiration.count_by_mount(&router))
                .await?;
        }
        let now = self.clock.unix();
        let mut revoked = 0;
        let mut after = String::new();
        loop {
            let (due, more) = state.expiration.due(now, &after, PAGE).await?;
            if let Some(last) = due.last() {
                after = last.key.clone();
            }
            let outcomes: Vec<Result<bool, Error>> =
                stream::iter(due.into_iter().map(|d| self.expire_one(&state, d, now)))
                    .buffer_unordered(CONCURRENCY)
                    .collect()
                    .await;
            for outcome in outcomes {
                match outcome {
                    Ok(true) => revoked += 1,
                    Ok(false) => {}
                    // Storage trouble: stop here; the next tick starts over from the index.
                    Err(e @ (Error::Unavailable(_) | Error::Sealed)) => return Err(e),
                    Err(_) => {}
                }
            }
            if !more {
                break;
            }
        }
        if revoked > 0 {
            tracing::info!(revoked, "expired leases revoked");
        }
        Ok(revoked)
    }

    /// Revokes one due lease; `Ok(false)` when it was not revoked (gone, moved, or failed
    /// and rescheduled).
    async fn expire_one(&self, state: &State, due: Due, now: i64) -> Result<bool, Error> {
        let manager = &state.expiration;
        let _lock = manager.lock(&due.lease_id).await;
        let entry = match manager.load(&due.lease_id).await? {
            Some(entry) if entry.next_attempt == due.time => entry,
            // A stale index key (the lease was renewed or revoked meanwhile).
            Some(_) | None => {
                manager.view.delete(&due.key).await?;
                return Ok(false);
            }
        };
        match self.revoke_locked(state, entry, now, Failure::Retry).await {
            Ok(()) => Ok(true),
            Err(Error::Unavailable(m)) => Err(Error::Unavailable(m)),
            Err(_) => Ok(false),
        }
    }

    /// Revokes a lease whose lock the caller holds: the engine first, then the entry. On an
    /// engine failure the lease is kept and rescheduled (or dropped under `Failure::Ignore`).
    async fn revoke_locked(
        &self,
        state: &State,
        mut entry: LeaseEntry,
        now: i64,
        failure: Failure,
    ) -> Result<(), Error> {
        let manager = &state.expiration;
        match self.engine_revoke(state, &entry, now).await {
            Ok(()) => {}
            Err(e) if failure == Failure::Ignore => {
                tracing::warn!(lease_id = %entry.lease_id, error = %e, "revocation failed in the engine; the lease is dropped by revoke-force");
            }
            Err(e) => {
                let old = entry.next_attempt;
                entry.revoke_attempts += 1;
                entry.last_error = e.client_messages().join(", ");
                if entry.revoke_attempts >= MAX_ATTEMPTS {
                    if !entry.irrevocable {
                        tracing::error!(lease_id = %entry.lease_id, attempts = entry.revoke_attempts, error = %e, "lease is irrevocable; it will still be retried");
                    }
                    entry.irrevocable = true;
                    entry.next_attempt = now + IRREVOCABLE_RETRY;
                } else {
                    entry.next_attempt = now + backoff(entry.revoke_attempts);
                    tracing::warn!(lease_id = %entry.lease_id, attempts = entry.revoke_attempts, retry_at = entry.next_attempt, error = %e, "lease revocation failed; will retry");
                }
                manager.update(old, &entry).await?;
                return Err(e);
            }
        }
        {
            // The caller holds the lease's lock and loaded the entry under it: it exists, and
            // no other revocation removes it meanwhile, so it is counted down once.
            let _change = manager.live.change().await;
            manager.remove(&entry).await?;
            manager.live.sub(&entry.mount_accessor);
        }
        manager.release_quota(&entry.path).await;
        tracing::debug!(lease_id = %entry.lease_id, "lease revoked");
        Ok(())
    }

    /// The downward call: the engine of the lease's mount revokes the secret.
    async fn engine_revoke(
        &self,
        state: &State,
        entry: &LeaseEntry,
        now: i64,
    ) -> Result<(), Error> {
        let router = state.router();
        let Some(mounted) = router
            .all()
            .iter()
            .find(|m| m.entry.uuid == entry.mount_uuid)
        else {
            // The mount and all its data are gone (disabling a mount revokes its leases
            // first, so this is a lease of a mount removed by an older version).
            tracing::warn!(lease_id = %entry.lease_id, "no mount for lease; nothing to revoke in an engine");
            return Ok(());
        };
        let Some(engine) = &mounted.engine else {
            return Ok(());
        };
        let ctx = self.lease_context(mounted, now);
        engine
            .revoke(&ctx, &lease_info(entry, now, entry.ttl(now), 0))
            .await
    }

    fn lease_context(&self, mounted: &Mounted, now: i64) -> EngineContext {
        EngineContext {
            storage: mounted.view.clone(),
            mount: mounted
                .entry
                .info(self.config().default_lease_ttl, self.config().max_lease_ttl),
            now: OffsetDateTime::from_unix_timestamp(now).unwrap_or_else(|_| self.clock.now()),
            request_id: uuid::Uuid::new_v4().to_string(),
            cubbyhole_id: None,
            entity_id: None,
            remote_address: None,
        }
    }

    /// Revokes one lease now (`sys/leases/revoke`). A lease that does not exist is already
    /// revoked, as in Vault.
    async fn revoke_lease(
        &self,
        state: &State,
        lease_id: &str,
        failure: Failure,
    ) -> Result<bool, Error> {
        let manager = &state.expiration;
        let _lock = manager.lock(lease_id).await;
        let Some(entry) = manager.load(lease_id).await? else {
            return Ok(false);
        };
        self.revoke_locked(state, entry, self.clock.unix(), failure)
            .await?;
        Ok(true)
    }

    /// Revokes every lease under a prefix (`revoke-prefix`, `revoke-force`, mount disable).
    /// Leases whose engine fails are kept and retried; the first failure is reported after
    /// the whole prefix has been tried.
    async fn revoke_prefix(
        &self,
        state: &State,
        prefix: &str,
        failure: Failure,
    ) -> Result<usize, Error> {
        let manager = &state.expiration;
        let mut prefix = prefix.trim_start_matches('/').to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            if manager.load(&prefix).await?.is_some() {
                return Ok(usize::from(
                    self.revoke_lease(state, &prefix, failure).await?,
                ));
            }
            prefix.push('/');
        }
        let mut revoked = 0;
        let mut failed: Option<(usize, Error)> = None;
        let mut after = String::new();
        loop {
            let ids = manager.ids_below(&prefix, &after, PAGE).await?;
            let Some(last) = ids.last().cloned() else {
                break;
            };
            let page_len = ids.len();
            let outcomes: Vec<(String, Result<bool, Error>)> =
                stream::iter(ids.into_iter().map(|id| async move {
                    let outcome = self.revoke_lease(state, &id, failure).await;
                    (id, outcome)
                }))
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            for (id, outcome) in outcomes {
                match outcome {
                    Ok(true) => revoked += 1,
                    Ok(false) => {}
                    Err(e @ Error::Unavailable(_)) => return Err(e),
                    Err(e) => {
                        tracing::warn!(lease_id = %id, error = %e, "revocation under prefix failed");
                        failed = Some(match failed {
                            Some((n, first)) => (n + 1, first),
                            None => (1, e),
                        });
                    }
                }
            }
            if page_len < PAGE {
                break;
            }
            after = last;
        }
        match failed {
            None => Ok(revoked),
            Some((n, first)) => Err(Error::invalid(format!(
                "failed to revoke {n} lease(s) under \"{prefix}\"; they will be retried: {}",
                first.client_messages().join(", ")
            ))),
        }
    }

    /// Revokes every lease a token owns; called for each token of a revoked tree. An engine
    /// that fails does not stop the token's revocation: its lease is rescheduled and retried.
    pub(crate) async fn revoke_token_leases(
        &self,
        state: &State,
        token_hash: &str,
    ) -> Result<(), Error> {
        if token_hash.is_empty() {
            return Ok(());
        }
        let manager = &state.expiration;
        let family = format!("{TOKEN_PREFIX}{token_hash}/");
        let now = self.clock.unix();
        let mut after = String::new();
        loop {
            let keys = manager.view.scan(&family, &after, PAGE).await?;
            let Some(last) = keys.last().cloned() else {
                break;
            };
            let page_len = keys.len();
            let family = family.as_str();
            let outcomes: Vec<Result<(), Error>> =
                stream::iter(keys.into_iter().map(|key| async move {
                    let lease_id = key.strip_prefix(family).unwrap_or_default().to_string();
                    let _lock = manager.lock(&lease_id).await;
                    match manager.load(&lease_id).await? {
                        Some(entry) => {
                            match self.revoke_locked(state, entry, now, Failure::Retry).await {
                                Err(e @ Error::Unavailable(_)) => Err(e),
                                _ => Ok(()),
                            }
                        }
                        None => manager.view.delete(&key).await,
                    }
                }))
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            for outcome in outcomes {
                outcome?;
            }
            if page_len < PAGE {
                break;
            }
            after = last;
        }
        Ok(())
    }

    /// Revokes all leases of a mount before it is disabled. Fails (and the mount stays) when
    /// an engine cannot revoke; `revoke-force` is the way out, as in Vault.
    pub(crate) async fn revoke_mount_leases(
        &self,
        state: &State,
        mounted: &Mounted,
    ) -> Result<(), Error> {
        let prefix = mounted.entry.route_path();
        let revoked = self.revoke_prefix(state, &prefix, Failure::Retry).await?;
        if revoked > 0 {
            tracing::info!(mount = %prefix, revoked, "leases revoked before disabling the mount");
        }
        Ok(())
    }

    /// `sys/leases/renew`: the new TTL counts from now, is capped so that the lease never
    /// outlives issue time + max TTL (CVE-2021-32923), and the engine extends the secret.
    async fn renew_lease(
        &self,
        state: &State,
        lease_id: &str,
        increment: u64,
    ) -> Result<Response, Error> {
        let manager = &state.expiration;
        let _lock = manager.lock(lease_id).await;
        let mut entry = manager
            .load(lease_id)
            .await?
            .ok_or_else(|| Error::invalid("lease not found"))?;
        let now = self.clock.unix();
        if let Some(refusal) = entry.renewal_refusal(now) {
            return Err(Error::invalid(refusal));
        }
        let router = state.router();
        let mounted = router
            .all()
            .iter()
            .find(|m| m.entry.uuid == entry.mount_uuid)
            .ok_or_else(|| Error::invalid("no mount serves this lease"))?;
        let engine = mounted
            .engine
            .as_ref()
            .ok_or_else(|| Error::invalid("lease is not renewable"))?;
        let ctx = self.lease_context(mounted, now);
        // The mount may have been tuned down since issue: its current max counts too.
        let mut max_expire = entry
            .max_expire_time
            .min(entry.issue_time + ctx.mount.max_lease_ttl as i64);
        if now >= max_expire {
            return Err(Error::invalid("past the max TTL, cannot renew"));
        }
        let wanted = if increment > 0 {
            increment
        } else {
            entry.default_ttl
        };
        let (mut ttl, mut warnings) = cap_ttl(wanted, now, max_expire);
        let out = engine
            .renew(&ctx, &lease_info(&entry, now, ttl, increment))
            .await?;
        if let Some(spec) = &out.secret {
            // The engine may lower the cap (a role's max_ttl changed since issue).
            if spec.max_ttl > 0 {
                max_expire = max_expire.min(entry.issue_time + spec.max_ttl as i64);
                if now >= max_expire {
                    return Err(Error::invalid("past the max TTL, cannot renew"));
                }
                let (capped, more) = cap_ttl(ttl, now, max_expire);
                ttl = capped;
                warnings.extend(more);
            }
            if !spec.internal.is_null() {
                entry.internal = spec.internal.clone();
            }
        }
        warnings.extend(out.warnings);
        let old = entry.next_attempt;
        entry.expire_time = now + ttl as i64;
        entry.max_expire_time = max_expire;
        entry.next_attempt = entry.expire_time;
        entry.last_renewal = Some(now);
        manager.update(old, &entry).await?;
        Ok(Response {
            data: out.data,
            lease: Some(LeaseResponse {
                lease_id: entry.lease_id.clone(),
                lease_duration: ttl,
                renewable: entry.renewable,
            }),
            warnings,
            ..Response::default()
        })
    }

    /// The `sys/leases/*`, `sys/renew*`, `sys/revoke*` and `sys/quotas/lease-count/*` paths.
    /// `path` is relative to `sys/`, without a trailing slash.
    pub(crate) async fn handle_leases(
        &self,
        state: &State,
        path: &str,
        operation: Operation,
        request: &Request,
    ) -> Result<Response, Error> {
        let data = &request.data;
        let (head, rest) = match path.strip_prefix("leases/") {
            Some(inner) => inner.split_once('/').unwrap_or((inner, "")),
            None if path == "leases" => ("", ""),
            None => path.split_once('/').unwrap_or((path, "")),
        };
        let lease_from = |rest: &str| -> Result<String, Error> {
            let id = fields::string(data, "lease_id")?
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| rest.to_string());
            if id.is_empty() {
                return Err(Error::invalid("lease_id must be specified"));
            }
            Ok(id)
        };
        let write = operation.is_write();
        match (head, operation) {
            ("lookup", Operation::List) => {
                let prefix = if rest.is_empty() || rest.ends_with('/') {
                    rest.to_string()
                } else {
                    format!("{rest}/")
                };
                let keys = state
                    .expiration
                    .view
                    .list(&format!("{ID_PREFIX}{prefix}"))
                    .await?;
                crate::engine::EngineResponse::list(keys).map(|r| Response {
                    data: r.data,
                    ..Response::default()
                })
            }
            ("lookup", _) if write => {
                let lease_id = lease_from("")?;
                let entry = state
                    .expiration
                    .load(&lease_id)
                    .await?
                    .ok_or_else(|| Error::invalid("invalid lease"))?;
                Ok(Response::with_data(lookup_data(&entry, self.clock.unix())))
            }
            ("renew", _) if write => {
                let lease_id = lease_from(rest)?;
                let increment = fields::duration(data, "increment")?.unwrap_or(0);
                self.renew_lease(state, &lease_id, increment).await
            }
            ("revoke", _) if write => {
                let lease_id = lease_from(rest)?;
                self.revoke_lease(state, &lease_id, Failure::Retry)
                    .await
                    .map_err(|e| {
                        Error::invalid(format!(
                            "failed to revoke lease; it will be retried: {}",
                            e.client_messages().join(", ")
                        ))
                    })?;
                Ok(Response::default())
            }
            ("revoke-prefix", _) if write => {
                self.revoke_prefix(state, rest, Failure::Retry).await?;
                Ok(Response::default())
            }
            ("revoke-force", _) if write => {
                self.revoke_prefix(state, rest, Failure::Ignore).await?;
                Ok(Response::default())
            }
            ("tidy", _) if write => {
                let removed = self.tidy_leases(state).await?;
                tracing::info!(removed, "lease tidy finished");
                Ok(Response {
                    warnings: vec!["Tidy operation successfully started. Any information from the operation will be printed to Ward's server logs.".into()],
                    ..Response::default()
                })
            }
            ("count", Operation::Read) => self.lease_count(state, data).await,
            ("", Operation::Read) | ("", Operation::List) => {
                self.list_irrevocable(state, data).await
            }
            ("quotas", _) => {
                self.lease_count_quota(
                    state,
                    rest.trim_start_matches("lease-count")
                        .trim_start_matches('/'),
                    operation,
                    data,
                )
                .await
            }
            _ if write || operation == Operation::Read || operation == Operation::List => {
                Err(Error::UnsupportedOperation(format!("sys/{path}")))
            }
            _ => Err(Error::UnsupportedPath(format!("sys/{path}"))),
        }
    }

    async fn lease_count(
        &self,
        state: &State,
        data: &Map<String, Value>,
    ) -> Result<Response, Error> {
        let kind = fields::string(data, "type")?
            .unwrap_or_default()
            .to_ascii_lowercase();
        let manager = &state.expiration;
        let out = if kind == "irrevocable" {
            let mut counts: BTreeMap<String, u64> = BTreeMap::new();
            let mut total = 0u64;
            let mut after = String::new();
            loop {
                let keys = manager.view.scan(IRREVOCABLE_PREFIX, &after, PAGE).await?;
                let Some(last) = keys.last().cloned() else {
                    break;
                };
                for key in &keys {
                    let accessor: String = manager.view.get_json(key).await?.unwrap_or_default();
                    *counts.entry(accessor).or_default() += 1;
                    total += 1;
                }
                if keys.len() < PAGE {
                    break;
                }
                after = last;
            }
            json!({ "lease_count": total, "counts": counts })
        } else {
            json!({ "lease_count": manager.count_keys(ID_PREFIX, |_| true).await? })
        };
        Ok(Response::with_data(Core::data_map(out)))
    }

    async fn list_irrevocable(
        &self,
        state: &State,
        data: &Map<String, Value>,
    ) -> Result<Response, Error> {
        let kind = fields::string(data, "type")?
            .unwrap_or_default()
            .to_ascii_lowercase();
        if kind != "irrevocable" {
            return Err(Error::invalid("only type=irrevocable is supported"));
        }
        let limit = match fields::string(data, "limit")?.unwrap_or_default().as_str() {
            "" => IRREVOCABLE_LIST_LIMIT,
            "none" => usize::MAX,
            other => other
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| Error::invalid("limit must be 'none' or a positive integer"))?,
        };
        let manager = &state.expiration;
        let mut leases = Vec::new();
        let mut after = String::new();
        let mut warnings = Vec::new();
        'pages: loop {
            let keys = manager.view.scan(IRREVOCABLE_PREFIX, &after, PAGE).await?;
            let Some(last) = keys.last().cloned() else {
                break;
            };
            for key in &keys {
                let lease_id = key.strip_prefix(IRREVOCABLE_PREFIX).unwrap_or_default();
                if let Some(entry) = manager.load(lease_id).await? {
                    if leases.len() >= limit {
                        warnings.push(format!("Command output truncated to {limit} leases; use limit=none to see them all"));
                        break 'pages;
                    }
                    leases.push(json!({
                        "lease_id": entry.lease_id,
                        "mount_id": entry.mount_accessor,
                        "namespace": "",
                        "error": entry.last_error,
                        "expire_time": rfc3339_unix(entry.expire_time),
                        "revoke_attempts": entry.revoke_attempts,
                    }));
                }
            }
            if keys.len() < PAGE {
                break;
            }
            after = last;
        }
        let mut response = Response::with_data(Core::data_map(
            json!({ "lease_count": leases.len(), "leases": leases }),
        ));
        response.warnings = warnings;
        Ok(response)
    }

    /// Drops index keys that point at leases that no longer exist.
    async fn tidy_leases(&self, state: &State) -> Result<u64, Error> {
        let manager = &state.expiration;
        let mut removed = 0;
        for family in [TIME_PREFIX, TOKEN_PREFIX, IRREVOCABLE_PREFIX] {
            let mut after = String::new();
            loop {
                let keys = manager.view.scan(family, &after, PAGE).await?;
                let Some(last) = keys.last().cloned() else {
                    break;
                };
                for key in &keys {
                    let rest = key.strip_prefix(family).unwrap_or_default();
                    // time/<t>/<id> and token/<hash>/<id> carry one segment before the id.
                    let lease_id = if family == IRREVOCABLE_PREFIX {
                        rest
                    } else {
                        rest.split_once('/').map(|(_, id)| id).unwrap_or_default()
                    };
                    let _lock = manager.lock(lease_id).await;
                    let stale = match manager.load(lease_id).await? {
                        None => true,
                        Some(entry) => match family {
                            TIME_PREFIX => {
                                parse_time_key(key).map(|(t, _)| t) != Some(entry.next_attempt)
                            }
                            IRREVOCABLE_PREFIX => !entry.irrevocable,
                            _ => false,
                        },
                    };
                    if stale {
                        manager.view.delete(key).await?;
                        removed += 1;
                    }
                }
                if keys.len() < PAGE {
                    break;
                }
                after = last;
            }
        }
        Ok(removed)
    }

    /// `sys/quotas/lease-count[/<name>]`.
    async fn lease_count_quota(
        &self,
        state: &State,
        name: &str,
        operation: Operation,
        data: &Map<String, Value>,
    ) -> Result<Response, Error> {
        let manager = &state.expiration;
        if name.is_empty() {
            return match operation {
                Operation::List | Operation::Read => {
                    let mut quotas = manager.quotas.lock().await;
                    manager.load_quotas(&mut quotas).await?;
                    crate::engine::EngineResponse::list(quotas.quotas.keys().cloned().collect())
                        .map(|r| Response {
                            data: r.data,
                            ..Response::default()
                        })
                }
                _ => Err(Error::UnsupportedOperation("sys/quotas/lease-count".into())),
            };
        }
        if name.contains('/') {
            return Err(Error::invalid("invalid quota name"));
        }
        let mut quotas = manager.quotas.lock().await;
        manager.load_quotas(&mut quotas).await?;
        match operation {
            Operation::Read => {
                let (quota, count) = quotas
                    .quotas
                    .get(name)
                    .cloned()
                    .ok_or_else(Error::not_found)?;
                let count = match count {
                    Some(c) => c,
                    None => {
                        let c = manager.count_for(&quota).await?;
                        if let Some(slot) = quotas.quotas.get_mut(name) {
                            slot.1 = Some(c);
                        }
                        c
                    }
                };
                Ok(Response::with_data(Core::data_map(json!({
                    "name": quota.name,
                    "type": "lease-count",
                    "path": quota.path,
                    "role": quota.role,
                    "max_leases": quota.max_leases,
                    "counter": count,
                    "inheritable": false,
                }))))
            }
            op if op.is_write() => {
                let existing = quotas.quotas.get(name).map(|(q, _)| q.clone());
                let max_leases = match fields::integer(data, "max_leases")? {
                    Some(n) if n > 0 => n as u64,
                    Some(_) => return Err(Error::invalid("max_leases must be positive")),
                    None => existing
                        .as_ref()
                        .map(|q| q.max_leases)
                        .ok_or_else(|| Error::invalid("max_leases must be positive"))?,
                };
                let path = match fields::string(data, "path")? {
                    Some(p) => normalize_quota_path(state, &p)?,
                    None => existing
                        .as_ref()
                        .map(|q| q.path.clone())
                        .unwrap_or_default(),
                };
                let role = fields::string(data, "role")?
                    .or(existing.as_ref().map(|q| q.role.clone()))
                    .unwrap_or_default();
                if !role.is_empty() && (path.is_empty() || !path.ends_with('/')) {
                    return Err(Error::invalid(
                        "a role can only be set on a quota whose path is a mount",
                    ));
                }
                let quota = LeaseCountQuota {
                    name: name.to_string(),
                    path,
                    role,
                    max_leases,
                };
                manager.quota_view.put_json(name, &quota).await?;
                let count = manager.count_for(&quota).await?;
                quotas.quotas.insert(name.to_string(), (quota, Some(count)));
                Ok(Response::default())
            }
            Operation::Delete => {
                manager.quota_view.delete(name).await?;
                quotas.quotas.remove(name);
                Ok(Response::default())
            }
            _ => Err(Error::UnsupportedOperation(format!(
                "sys/quotas/lease-count/{name}"
            ))),
        }
    }

    /// Irrevocable leases right now (for metrics).
    pub async fn irrevocable_lease_count(&self) -> Result<u64, Error> {
        let state = self.state()?;
        state
            .expiration
            .count_keys(IRREVOCABLE_PREFIX, |_| true)
            .await
    }
}

/// `sys/` paths served by [`Core::handle_leases`].
pub(crate) fn is_lease_path(path: &str) -> bool {
    let head = path.split('/').next().unwrap_or_default();
    matches!(
        head,
        "leases" | "renew" | "revoke" | "revoke-prefix" | "revoke-force"
    ) || path.starts_with("quotas/lease-count")
}

fn lease_info(entry: &LeaseEntry, now: i64, ttl: u64, increment: u64) -> LeaseInfo {
    LeaseInfo {
        lease_id: entry.lease_id.clone(),
        path: entry.relative_path.clone(),
        internal: entry.internal.clone(),
        issue_time: OffsetDateTime::from_unix_timestamp(entry.issue_time)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        ttl: if ttl > 0 { ttl } else { entry.ttl(now) },
        increment,
    }
}

fn lookup_data(entry: &LeaseEntry, now: i64) -> Map<String, Value> {
    Core::data_map(json!({
        "id": entry.lease_id,
        "issue_time": rfc3339_unix(entry.issue_time),
        "expire_time": rfc3339_unix(entry.expire_time),
        "last_renewal": entry.last_renewal.map(rfc3339_unix),
        "renewable": entry.renewal_refusal(now).is_none(),
        "ttl": entry.ttl(now),
    }))
}

/// Caps a TTL counted from now so that the lease ends no later than `max_expire`, with
/// Vault's warning.
fn cap_ttl(ttl: u64, now: i64, max_expire: i64) -> (u64, Vec<String>) {
    let remaining = (max_expire - now).max(0) as u64;
    if ttl > remaining {
        let warning = format!(
            "TTL of \"{}\" exceeded the effective max_ttl of \"{}\"; TTL value is capped accordingly",
            format_seconds(ttl),
            format_seconds(remaining)
        );
        (remaining, vec![warning])
    } else {
        (ttl, Vec::new())
    }
}

/// Seconds until the next attempt after `attempts` failures: 10, 20, 40, ... up to 5 minutes.
fn backoff(attempts: u32) -> i64 {
    let shift = attempts.saturating_sub(1).min(16);
    (FIRST_BACKOFF << shift).min(MAX_BACKOFF)
}

fn time_key(time: i64, lease_id: &str) -> String {
    format!("{TIME_PREFIX}{:012}/{lease_id}", time.max(0))
}

fn token_key(token_hash: &str, lease_id: &str) -> String {
    format!("{TOKEN_PREFIX}{token_hash}/{lease_id}")
}

fn parse_time_key(key: &str) -> Option<(i64, String)> {
    let rest = key.strip_prefix(TIME_PREFIX)?;
    let (time, lease_id) = rest.split_once('/')?;
    Some((time.parse().ok()?, lease_id.to_string()))
}

/// A quota path: empty (global), a mount (`database/`) or a prefix below a mount.
fn normalize_quota_path(state: &State, path: &str) -> Result<String, Error> {
    let path = path.trim_start_matches('/');
    if path.is_empty() {
        return Ok(String::new());
    }
    let router = state.router();
    let route = router
        .resolve(path)
        .ok_or_else(|| Error::invalid(format!("no mount exists at \"{path}\"")))?;
    if route.relative.is_empty() {
        Ok(route.mount_path)
    } else {
        Ok(path.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_bounded() {
        let delays: Vec<i64> = (1..=8).map(backoff).collect();
        assert_eq!(delays, vec![10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn time_keys_sort_by_time_and_parse_back() {
        let early = time_key(99, "db/creds/r/abc");
        let late = time_key(1_000, "db/creds/r/abc");
        assert!(early < late, "zero padding keeps byte order = time order");
        assert_eq!(
            parse_time_key(&late),
            Some((1_000, "db/creds/r/abc".to_string()))
        );
        assert_eq!(parse_time_key("time/x/y"), None);
    }

    #[test]
    fn ttl_is_capped_at_the_max_with_vaults_warning() {
        let (ttl, warnings) = cap_ttl(3600, 1_000, 1_600);
        assert_eq!(ttl, 600);
        assert_eq!(
            warnings,
            vec!["TTL of \"1h0m0s\" exceeded the effective max_ttl of \"10m0s\"; TTL value is capped accordingly".to_string()]
        );
        assert_eq!(cap_ttl(60, 1_000, 1_600), (60, Vec::new()));
    }

    #[test]
    fn quotas_match_paths_and_roles() {
        let quota = LeaseCountQuota {
            name: "q".into(),
            path: "database/".into(),
            role: String::new(),
            max_leases: 1,
        };
        assert!(quota.applies_to("database/creds/ro"));
        assert!(!quota.applies_to("databases/creds/ro"));
        let by_role = LeaseCountQuota {
            role: "ro".into(),
            ..quota
        };
        assert!(by_role.applies_to("database/creds/ro"));
        assert!(!by_role.applies_to("database/creds/rw"));
    }
}
