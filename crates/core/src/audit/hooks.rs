//! The request path's calls into audit, quotas, metrics and alerts, kept out of `core.rs` so
//! that `handle_request` stays a short read: `limit` (rate-limit quotas), `audit_request`
//! (before dispatch, fail closed), `audit_response` (every outcome) and `observe` (metrics
//! and login alerts).

use std::time::Duration;

use serde_json::Value;

use crate::core::{Caller, Core, State, Target};
use crate::error::Error;
use crate::mounts::Table;
use crate::quotas::Subject;
use crate::request::{Request, Response};

use super::{request_entry, response_entry, MountFacts, Trail};

/// When a quota is counted: by address before authentication (so floods with bad tokens are
/// limited too), by entity or token after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QuotaPhase {
    BeforeAuthentication,
    AfterAuthentication,
}

impl Core {
    /// Applies the most specific rate-limit quota of the request, if it counts in `phase`.
    pub(crate) fn limit(
        &self,
        state: &State,
        request: &Request,
        caller: Option<&Caller>,
        phase: QuotaPhase,
        trail: &mut Trail,
    ) -> Result<(), Error> {
        let role = request.data.get("role").and_then(Value::as_str);
        let Some(quota) = state.quotas.select(&request.path, role) else {
            return Ok(());
        };
        if quota.counts_callers() != (phase == QuotaPhase::AfterAuthentication) {
            return Ok(());
        }
        let subject = Subject {
            address: request.remote_address.as_deref(),
            entity_id: caller
                .map(|c| c.entry.entity_id.as_str())
                .filter(|e| !e.is_empty()),
            accessor: caller
                .map(|c| c.entry.accessor.as_str())
                .filter(|a| !a.is_empty()),
        };
        let now = self.clock.now();
        match state
            .quotas
            .check(&quota, subject, now.unix_timestamp_nanos())
        {
            Ok(()) => Ok(()),
            Err(refusal) => {
                self.metrics.rate_limited(&refusal.quota, &refusal.identity);
                self.alerts
                    .rate_limited(&refusal.quota, &refusal.identity, now);
                trail.unaudited = !state.quotas.config().enable_rate_limit_audit_logging;
                Err(refusal.into_error())
            }
        }
    }

    /// Records the request entry before anything of the request runs. Fails the request when
    /// devices are enabled and none recorded it, with one exception so that a broken audit
    /// setup never locks operators out: an authorised (sudo) request to `sys/audit/<path>`
    /// may proceed to disable a broken device or enable a working one. That bypass is logged
    /// and raises an alert.
    pub(crate) async fn audit_request(
        &self,
        state: &State,
        trail: &Trail,
        request: &Request,
        error: Option<&Error>,
    ) -> Result<(), Error> {
        if trail.unaudited || state.audit.is_empty() {
            return Ok(());
        }
        let entry = request_entry(self.clock.now(), trail, request, error);
        match state.audit.log(&entry).await {
            Ok(()) => Ok(()),
            Err(_) if error.is_none() && is_audit_repair(request, trail) => {
                self.audit_bypassed(trail, request);
                Ok(())
            }
            Err(e) => {
                self.metrics.audit_refusal();
                Err(e)
            }
        }
    }

    /// Records the response entry of every outcome. The operation has run; if no device
    /// recorded the entry, the client still gets the audit error (as in Vault).
    pub(crate) async fn audit_response(
        &self,
        state: &State,
        trail: &Trail,
        request: &Request,
        result: Result<Response, Error>,
    ) -> Result<Response, Error> {
        if trail.unaudited || state.audit.is_empty() {
            return result;
        }
        let entry = response_entry(self.clock.now(), trail, request, &result);
        match state.audit.log(&entry).await {
            Ok(()) => result,
            Err(_) if is_audit_repair(request, trail) => result,
            Err(e) => {
                self.metrics.audit_refusal();
                Err(e)
            }
        }
    }

    fn audit_bypassed(&self, trail: &Trail, request: &Request) {
        let actor = crate::alerts::actor(trail.caller.as_ref(), request);
        tracing::error!(path = %request.path, request_id = %request.id, display_name = %actor.display_name, "no audit device could record an audit repair request; it proceeds unaudited");
        self.alerts.raise(
            crate::alerts::Severity::Critical,
            "audit-bypass",
            format!(
                "{} changed audit devices while no device could record it",
                actor.display_name
            ),
            serde_json::json!({ "path": request.path, "request_id": request.id }),
            self.clock.now(),
        );
    }

    /// Metrics of the finished request, and the failed-login rule.
    pub(crate) fn observe(
        &self,
        trail: &Trail,
        request: &Request,
        result: &Result<Response, Error>,
        elapsed: Duration,
    ) {
        let mount = trail.mount.as_ref().map_or("unknown", |m| m.point.as_str());
        let operation = trail.operation.map_or("unknown", |o| o.as_str());
        self.metrics
            .request(mount, operation, outcome(result), elapsed);
        match result {
            Ok(response) => {
                if response.auth.is_some() {
                    self.metrics.token_created(mount);
                }
                if response.lease.is_some() && !request.path.starts_with("sys/") {
                    self.metrics.lease_created(mount);
                }
                if trail.login && response.auth.is_some() {
                    self.metrics.login(mount, login_role(request), true);
                }
            }
            Err(Error::RateLimited { .. }) => {}
            Err(_) if trail.login => {
                self.metrics.login(mount, login_role(request), false);
                let address = request.remote_address.as_deref().unwrap_or("unknown");
                let identity = login_identity(request, mount);
                self.alerts
                    .login_failed(mount, &identity, address, self.clock.now());
            }
            Err(_) => {}
        }
    }
}

/// Whether a request changes audit devices (`sys/audit/<path>`), the one kind of request
/// allowed through when no device can record.
fn is_audit_repair(request: &Request, trail: &Trail) -> bool {
    trail.caller.is_some() && request.path.starts_with("sys/audit/")
}

/// The outcome label of a request: the core's error kind, not an HTTP status.
fn outcome(result: &Result<Response, Error>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(Error::Sealed) => "sealed",
        Err(Error::PermissionDenied(_)) => "permission_denied",
        Err(Error::InvalidRequest(_)) => "invalid_request",
        Err(Error::NotFound { .. }) => "not_found",
        Err(Error::UnsupportedPath(_)) => "unsupported_path",
        Err(Error::UnsupportedOperation(_)) => "unsupported_operation",
        Err(Error::RateLimited { .. }) => "rate_limited",
        Err(Error::Unavailable(_)) => "unavailable",
        Err(Error::TooLarge) => "too_large",
        Err(Error::Internal(_)) => "internal",
        Err(Error::AuditFailed) => "audit_failed",
    }
}

/// Who a failed login claimed to be, for the per-identity failed-login rule: the role it
/// named (`role:<name>`), or the user in the path (`user:<name>` for `login/<name>`, lower
/// case as userpass matches it); never a role id, secret id or password.
fn login_identity(request: &Request, mount: &str) -> String {
    let role = login_role(request);
    if !role.is_empty() {
        return format!("role:{role}");
    }
    request
        .path
        .strip_prefix(mount)
        .and_then(|rest| rest.strip_prefix("login/"))
        .filter(|user| !user.is_empty())
        .map_or_else(String::new, |user| format!("user:{}", user.to_lowercase()))
}

/// The role a login names (`role`), for labels; never a role or secret id.
fn login_role(request: &Request) -> &str {
    request
        .data
        .get("role")
        .and_then(Value::as_str)
        .unwrap_or("")
}

impl Target {
    /// The mount facts an audit entry and the metrics name.
    pub(crate) fn audit_mount(&self) -> MountFacts {
        let builtin = |point: &str, kind: &str| MountFacts {
            point: point.into(),
            kind: kind.into(),
            ..MountFacts::default()
        };
        match self {
            Target::System(_) => builtin("sys/", "system"),
            Target::Token(_) => builtin("auth/token/", "token"),
            Target::Identity(_) => builtin("identity/", "identity"),
            Target::Engine(route) => {
                let entry = &route.mounted.entry;
                MountFacts {
                    point: entry.route_path(),
                    kind: entry.kind.clone(),
                    accessor: entry.accessor.clone(),
                    non_hmac_request_keys: entry.config.audit_non_hmac_request_keys.clone(),
                    non_hmac_response_keys: entry.config.audit_non_hmac_response_keys.clone(),
                }
            }
        }
    }

    /// Whether an unauthenticated request here is a login (an auth method's own path).
    pub(crate) fn is_login(&self, caller: Option<&Caller>) -> bool {
        caller.is_none()
            && matches!(self, Target::Engine(route) if route.mounted.entry.table == Table::Auth)
    }
}

impl Core {
    /// What a device failure does: a metric and an alert (rate-limited per device).
    pub(crate) fn audit_failure_hook(&self) -> super::FailureHook {
        let metrics = self.metrics.clone();
        let alerts = self.alerts.clone();
        std::sync::Arc::new(move |device: &str, reason: &str| {
            metrics.audit_failure(device);
            // The device task has no clock of its own; an alert's time is informational.
            alerts.audit_failed(device, reason, time::OffsetDateTime::now_utc());
        })
    }
}
