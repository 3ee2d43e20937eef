//! Access requests (Ward's own API, `sys/access/*`): an identity asks for a named elevation
//! for a reason and an event, a gatekeeper validates it, approvers approve, and the
//! requester receives a short-lived child token with the role's policies.
//!
//! States: `pending-gatekeeper` → `denied` | `pending-approval` → `approved` → `active` →
//! `expired` | `revoked` (`pending-approval` may also end `denied` or `expired`). Roles
//! (`sys/access/roles/<name>`) are ordinary ACL-protected configuration. The request
//! endpoints check the caller themselves: a role names who may ask (`allowed_requesters`) and
//! who approves (`approvals.group_names`, `count`, and with `from_each_group` at least one
//! approver from each group: the two-team rule), and each answer shows only the caller's own
//! requests or those they can act on. The grant's token is minted when the requester first
//! reads an approved request with the token that asked, returned that once, and revoked when
//! the grant ends or an approver revokes it. Every transition is audited (each is a request)
//! and raised as an alert.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::gatekeeper::{signed_headers, verdict, Verdict};
use super::time_window::TimeWindow;
use super::{is_requester, Authorization, HistoryEvent, Requester};
use crate::alerts::Severity;
use crate::core::{Caller, Core, State};
use crate::engine::{fields, Operation};
use crate::error::Error;
use crate::request::{Request, Response};
use crate::token::TokenEntry;

const ROLE_PREFIX: &str = "access/roles/";
const REQUEST_PREFIX: &str = "access/requests/";
/// A request not decided within a day expires.
const PENDING_TTL: i64 = 24 * 3600;
const DEFAULT_MAX_TTL: u64 = 3600;
const DEFAULT_WEBHOOK_TIMEOUT: u64 = 10;
/// Ended requests are kept this long for the history, then removed when listing.
const RETENTION: i64 = 7 * 24 * 3600;

/// `sys/access/roles/<name>`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct AccessRole {
    pub(crate) name: String,
    pub(crate) policies: Vec<String>,
    pub(crate) max_ttl: u64,
    #[serde(default)]
    pub(crate) allowed_entity_ids: Vec<String>,
    #[serde(default)]
    pub(crate) allowed_group_names: Vec<String>,
    #[serde(default)]
    pub(crate) webhook: Option<Webhook>,
    #[serde(default)]
    pub(crate) rules: Rules,
    #[serde(default)]
    pub(crate) approvals: Approvals,
}

#[derive(Clone, Default, Serialize, Deserialize)]
pub(crate) struct Webhook {
    pub(crate) url: String,
    /// The HMAC key of the signature. Never returned by a read.
    pub(crate) secret: String,
    pub(crate) timeout: u64,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("secret", &"***")
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Rules {
    #[serde(default)]
    pub(crate) time_windows: Vec<TimeWindow>,
    #[serde(default)]
    pub(crate) required_event_types: Vec<String>,
    /// 0: no limit.
    #[serde(default)]
    pub(crate) max_concurrent: u64,
}

impl Rules {
    fn is_empty(&self) -> bool {
        self.time_windows.is_empty()
            && self.required_event_types.is_empty()
            && self.max_concurrent == 0
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Approvals {
    #[serde(default)]
    pub(crate) group_names: Vec<String>,
    /// 0: no approval needed.
    #[serde(default)]
    pub(crate) count: u64,
    /// Two-team approval: besides `count` approvals in all, at least one from a member of
    /// each named group (one person in two of the groups counts for both).
    #[serde(default)]
    pub(crate) from_each_group: bool,
}

impl Approvals {
    /// The named groups no approval has come from yet (empty unless `from_each_group`).
    fn groups_missing(&self, authorizations: &[Authorization]) -> Vec<String> {
        if !self.from_each_group {
            return Vec::new();
        }
        self.group_names
            .iter()
            .filter(|group| !authorizations.iter().any(|a| a.factors.contains(group)))
            .cloned()
            .collect()
    }

    fn satisfied_by(&self, authorizations: &[Authorization]) -> bool {
        authorizations.len() as u64 >= self.count && self.groups_missing(authorizations).is_empty()
    }
}

/// The life of an access request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum AccessState {
    #[default]
    PendingGatekeeper,
    Denied,
    PendingApproval,
    Approved,
    Active,
    Expired,
    Revoked,
}

impl AccessState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AccessState::PendingGatekeeper => "pending-gatekeeper",
            AccessState::Denied => "denied",
            AccessState::PendingApproval => "pending-approval",
            AccessState::Approved => "approved",
            AccessState::Active => "active",
            AccessState::Expired => "expired",
            AccessState::Revoked => "revoked",
        }
    }

    fn is_granted(self) -> bool {
        matches!(self, AccessState::Approved | AccessState::Active)
    }

    fn is_pending(self) -> bool {
        matches!(
            self,
            AccessState::PendingGatekeeper | AccessState::PendingApproval
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Event {
    #[serde(rename = "type", default)]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) id: String,
}

/// One access request, as stored. Holds the granted token's hash, never the token.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct AccessRequest {
    pub(crate) id: String,
    pub(crate) role: String,
    pub(crate) reason: String,
    pub(crate) event: Event,
    pub(crate) ttl: u64,
    pub(crate) requester: Requester,
    pub(crate) state: AccessState,
    pub(crate) creation_time: i64,
    #[serde(default)]
    pub(crate) gatekeeper_reason: String,
    /// The role's approval rule when the request was made.
    #[serde(default)]
    pub(crate) approvals: Approvals,
    #[serde(default)]
    pub(crate) authorizations: Vec<Authorization>,
    #[serde(default)]
    pub(crate) granted_time: Option<i64>,
    #[serde(default)]
    pub(crate) expire_time: Option<i64>,
    #[serde(default)]
    pub(crate) token_hash: Option<String>,
    #[serde(default)]
    pub(crate) token_accessor: String,
    #[serde(default)]
    pub(crate) history: Vec<HistoryEvent>,
}

impl AccessRequest {
    /// Moves to `state`, with a history line.
    fn transition(
        &mut self,
        state: AccessState,
        now: i64,
        actor: Option<(&str, &str)>,
        note: &str,
    ) {
        self.state = state;
        self.history.push(HistoryEvent {
            time: now,
            event: state.as_str().into(),
            actor_entity_id: actor.map(|a| a.0.to_string()).unwrap_or_default(),
            actor_name: actor.map(|a| a.1.to_string()).unwrap_or_default(),
            note: note.to_string(),
        });
    }

    /// Grants: approved now, until `now + ttl`.
    fn grant(&mut self, now: i64, actor: Option<(&str, &str)>, note: &str) {
        self.granted_time = Some(now);
        self.expire_time = Some(now.saturating_add(i64::try_from(self.ttl).unwrap_or(i64::MAX)));
        self.transition(AccessState::Approved, now, actor, note);
    }

    /// Expires a grant past its end or a request left pending too long. True when it changed.
    fn refresh(&mut self, now: i64) -> bool {
        let ended = match self.state {
            s if s.is_granted() => self.expire_time.is_some_and(|t| now >= t),
            s if s.is_pending() => now >= self.creation_time + PENDING_TTL,
            _ => false,
        };
        if ended {
            self.transition(AccessState::Expired, now, None, "");
        }
        ended
    }

    fn approval_count(&self) -> u64 {
        self.authorizations.len() as u64
    }

    /// The request as the API and the UI show it: no token, no secret.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "role": self.role,
            "state": self.state.as_str(),
            "reason": self.reason,
            "event": { "type": self.event.kind, "id": self.event.id },
            "ttl": self.ttl,
            "requester": {
                "entity_id": self.requester.entity_id,
                "entity_name": self.requester.entity_name,
                "display_name": self.requester.display_name,
            },
            "creation_time": crate::clock::rfc3339_unix(self.creation_time),
            "creation_unix": self.creation_time,
            "granted_time": self.granted_time.map(crate::clock::rfc3339_unix),
            "expire_time": self.expire_time.map(crate::clock::rfc3339_unix),
            "gatekeeper_reason": self.gatekeeper_reason,
            "approvals": {
                "group_names": self.approvals.group_names,
                "required": self.approvals.count,
                "received": self.approval_count(),
                "from_each_group": self.approvals.from_each_group,
                "groups_missing": self.approvals.groups_missing(&self.authorizations),
            },
            "authorizations": self.authorizations.iter().map(|a| json!({
                "entity_id": a.entity_id, "entity_name": a.entity_name, "time": crate::clock::rfc3339_unix(a.time),
            })).collect::<Vec<_>>(),
            "token_accessor": self.token_accessor,
            "history": self.history.iter().map(|h| json!({
                "time": crate::clock::rfc3339_unix(h.time), "event": h.event,
                "actor_entity_id": h.actor_entity_id, "actor_name": h.actor_name, "note": h.note,
            })).collect::<Vec<_>>(),
        })
    }
}

impl Core {
    /// `sys/access/...`.
    pub(crate) async fn handle_access(
        &self,
        state: &Arc<State>,
        path: &str,
        operation: Operation,
        request: &Request,
        caller: Option<&Caller>,
    ) -> Result<Response, Error> {
        let segments: Vec<&str> = path.split('/').collect();
        let data = &request.data;
        match (segments.as_slice(), operation) {
            (["access", "roles"], Operation::List | Operation::Read) => {
                let names = self.approvals_view().list(ROLE_PREFIX).await?;
                if names.is_empty() && operation == Operation::List {
                    return Err(Error::not_found());
                }
                Ok(Response::with_data(Core::data_map(
                    json!({ "keys": names }),
                )))
            }
            (["access", "roles", name], Operation::Read) => {
                let role = self.access_role(name).await?.ok_or_else(Error::not_found)?;
                Ok(Response::with_data(Core::data_map(role_json(&role))))
            }
            (["access", "roles", name], op) if op.is_write() => {
                let role = parse_role(name, data)?;
                self.approvals_view()
                    .put_json(&format!("{ROLE_PREFIX}{name}"), &role)
                    .await?;
                Ok(Response::default())
            }
            (["access", "roles", name], Operation::Delete) => {
                self.approvals_view()
                    .delete(&format!("{ROLE_PREFIX}{name}"))
                    .await?;
                Ok(Response::default())
            }
            (["access", "requests"], op) if op.is_write() => {
                let caller = caller.ok_or_else(Error::denied)?;
                self.create_access_request(state, caller, data).await
            }
            (["access", "requests"], Operation::Read | Operation::List) => {
                let caller = caller.ok_or_else(Error::denied)?;
                self.list_access_requests(state, caller, operation).await
            }
            (["access", "requests", id], Operation::Read) => {
                let caller = caller.ok_or_else(Error::denied)?;
                // `peek=true` reads without issuing the grant's token (the web UI's view).
                let peek = fields::boolean(data, "peek")?.unwrap_or(false);
                self.read_access_request(state, caller, id, peek).await
            }
            (["access", "requests", id, action], op) if op.is_write() => {
                let caller = caller.ok_or_else(Error::denied)?;
                let note = fields::string(data, "reason")?.unwrap_or_default();
                self.act_on_access_request(state, caller, id, action, &note)
                    .await
            }
            _ => Err(Error::UnsupportedPath(format!("sys/{path}"))),
        }
    }

    async fn access_role(&self, name: &str) -> Result<Option<AccessRole>, Error> {
        self.approvals_view()
            .get_json(&format!("{ROLE_PREFIX}{name}"))
            .await
    }

    async fn create_access_request(
        &self,
        state: &State,
        caller: &Caller,
        data: &Map<String, Value>,
    ) -> Result<Response, Error> {
        let role_name = fields::string(data, "role")?
            .filter(|r| !r.is_empty())
            .ok_or_else(|| Error::invalid("missing role"))?;
        let role = self
            .access_role(&role_name)
            .await?
            .ok_or_else(|| Error::invalid(format!("no access role named {role_name:?}")))?;
        let allowed = (!caller.entry.entity_id.is_empty()
            && role.allowed_entity_ids.contains(&caller.entry.entity_id))
            || (!caller.entry.entity_id.is_empty()
                && !role.allowed_group_names.is_empty()
                && self
                    .membership(state, caller)
                    .await?
                    .in_any(&role.allowed_group_names, &[]));
        if !allowed {
            return Err(Error::PermissionDenied(format!(
                "permission denied: not allowed to request role {role_name:?}"
            )));
        }
        let reason = fields::string(data, "reason")?.unwrap_or_default();
        if reason.trim().is_empty() {
            return Err(Error::invalid("missing reason"));
        }
        let event = match data.get("event") {
            None | Some(Value::Null) => Event::default(),
            Some(Value::Object(event)) => Event {
                kind: fields::string(event, "type")?.unwrap_or_default(),
                id: fields::string(event, "id")?.unwrap_or_default(),
            },
            Some(_) => {
                return Err(Error::invalid(
                    "field \"event\" must be an object with \"type\" and \"id\"",
                ))
            }
        };
        let mut warnings = Vec::new();
        let mut ttl = fields::duration(data, "ttl")?
            .filter(|t| *t > 0)
            .unwrap_or(role.max_ttl);
        if ttl > role.max_ttl {
            warnings.push(format!(
                "ttl of {ttl}s exceeded the role's max_ttl of {}s; capped",
                role.max_ttl
            ));
            ttl = role.max_ttl;
        }
        let now = self.now_unix();
        let requester = self.requester(state, caller).await?;
        let mut record = AccessRequest {
            id: uuid::Uuid::new_v4().to_string(),
            role: role.name.clone(),
            reason,
            event,
            ttl,
            state: AccessState::PendingGatekeeper,
            creation_time: now,
            approvals: role.approvals.clone(),
            ..AccessRequest::default()
        };
        let actor = (requester.entity_id.clone(), requester.entity_name.clone());
        record.requester = requester;
        record.transition(
            AccessState::PendingGatekeeper,
            now,
            Some((&actor.0, &actor.1)),
            "requested",
        );
        self.save_access_request(&record).await?;
        self.access_alert(&record);
        // The webhook is called without the record lock: a slow gatekeeper holds up no one else.
        let decision = self.gatekeep(&role, &record).await?;
        let record = {
            let _guard = self.approvals.records.lock().await;
            let mut record = self.load_access_request(&record.id).await?;
            let now = self.now_unix();
            match decision {
                Verdict::Deny(reason) => {
                    record.gatekeeper_reason = reason.clone();
                    record.transition(AccessState::Denied, now, None, &reason);
                }
                Verdict::Allow(reason) => {
                    record.gatekeeper_reason = reason.clone();
                    if role.approvals.count > 0 {
                        record.transition(AccessState::PendingApproval, now, None, &reason);
                    } else {
                        record.grant(now, None, &reason);
                    }
                }
            }
            self.save_access_request(&record).await?;
            record
        };
        self.access_alert(&record);
        let mut response = Response::with_data(Core::data_map(record.to_json()));
        response.warnings = warnings;
        Ok(response)
    }

    /// Built-in rules first (cheap, local), then the webhook.
    async fn gatekeep(&self, role: &AccessRole, record: &AccessRequest) -> Result<Verdict, Error> {
        let now_time = self.clock.now();
        let rules = &role.rules;
        if !rules.required_event_types.is_empty()
            && !rules.required_event_types.contains(&record.event.kind)
        {
            return Ok(Verdict::Deny(format!(
                "event type {:?} is not one of the role's required event types ({})",
                record.event.kind,
                rules.required_event_types.join(", ")
            )));
        }
        if !rules.time_windows.is_empty() {
            let mut inside = false;
            for window in &rules.time_windows {
                inside |= window.contains(now_time)?;
            }
            if !inside {
                return Ok(Verdict::Deny("outside the role's time windows".into()));
            }
        }
        if rules.max_concurrent > 0 {
            let now = now_time.unix_timestamp();
            let active = self
                .access_requests()
                .await?
                .into_iter()
                .filter(|r| {
                    r.role == role.name
                        && r.id != record.id
                        && r.state.is_granted()
                        && r.expire_time.is_some_and(|t| now < t)
                })
                .count() as u64;
            if active >= rules.max_concurrent {
                return Ok(Verdict::Deny(format!(
                    "the role already has {active} active grants (max_concurrent is {})",
                    rules.max_concurrent
                )));
            }
        }
        let Some(webhook) = &role.webhook else {
            return Ok(Verdict::Allow("allowed by the role's rules".into()));
        };
        let Some(client) = self.approvals.gatekeeper() else {
            return Ok(Verdict::Deny(
                "no gatekeeper client is configured on this server".into(),
            ));
        };
        let timestamp = crate::clock::rfc3339(now_time);
        let body = json!({
            "request_id": record.id,
            "role": record.role,
            "requester": { "entity_id": record.requester.entity_id, "entity_name": record.requester.entity_name },
            "reason": record.reason,
            "event": { "type": record.event.kind, "id": record.event.id },
            "ttl": record.ttl,
            "timestamp": timestamp,
        });
        let body = serde_json::to_vec(&body)
            .map_err(|e| Error::internal(format!("gatekeeper body: {e}")))?;
        let headers = signed_headers(&webhook.secret, &body, &timestamp);
        let timeout = Duration::from_secs(webhook.timeout.max(1));
        // Bounded here as well as in the transport: a hung client still means deny.
        let answer = tokio::time::timeout(
            timeout + Duration::from_millis(500),
            client.call(&webhook.url, &headers, body, timeout),
        )
        .await;
        Ok(match answer {
            Err(_) => Verdict::Deny("gatekeeper timed out".into()),
            Ok(Err(reason)) => Verdict::Deny(format!("gatekeeper did not answer: {reason}")),
            Ok(Ok(reply)) => verdict(&reply),
        })
    }

    async fn list_access_requests(
        &self,
        state: &State,
        caller: &Caller,
        operation: Operation,
    ) -> Result<Response, Error> {
        let membership = if caller.entry.entity_id.is_empty() {
            None
        } else {
            Some(self.membership(state, caller).await?)
        };
        let now = self.now_unix();
        let mut keys = Vec::new();
        let mut info = Map::new();
        for record in self.refreshed_access_requests(now).await? {
            let mine = is_requester(&record.requester, caller);
            let can_approve = record.state == AccessState::PendingApproval
                && !mine
                && membership.as_ref().is_some_and(|m| {
                    m.in_any(&record.approvals.group_names, &[])
                        && !record
                            .authorizations
                            .iter()
                            .any(|a| a.entity_id == m.entity_id)
                });
            // Approvers keep seeing a grant while it lasts, so that they can revoke it.
            let can_revoke = record.state.is_granted()
                && (mine
                    || membership
                        .as_ref()
                        .is_some_and(|m| m.in_any(&record.approvals.group_names, &[])));
            if mine || can_approve || can_revoke {
                let mut summary = record.to_json();
                summary["can_approve"] = Value::Bool(can_approve);
                summary["can_revoke"] = Value::Bool(can_revoke);
                summary["mine"] = Value::Bool(mine);
                keys.push(Value::from(record.id.clone()));
                info.insert(record.id.clone(), summary);
            }
        }
        if keys.is_empty() && operation == Operation::List {
            return Err(Error::not_found());
        }
        Ok(Response::with_data(Core::data_map(
            json!({ "keys": keys, "key_info": info }),
        )))
    }

    /// Reads one request; the requester's first read of an approved request (with the token
    /// that asked) mints the grant's token and returns it, once.
    async fn read_access_request(
        &self,
        state: &State,
        caller: &Caller,
        id: &str,
        peek: bool,
    ) -> Result<Response, Error> {
        let _guard = self.approvals.records.lock().await;
        let mut record = self.load_access_request(id).await?;
        let now = self.now_unix();
        if record.refresh(now) {
            self.save_access_request(&record).await?;
            self.access_alert(&record);
        }
        let mine = is_requester(&record.requester, caller);
        if !mine && !self.is_access_approver(state, caller, &record).await? {
            return Err(Error::denied());
        }
        let mut out = record.to_json();
        if !peek
            && record.state == AccessState::Approved
            && caller.entry.hash == record.requester.token_hash
        {
            let (token, ttl) = self.mint_grant_token(state, &mut record, now).await?;
            record.transition(
                AccessState::Active,
                now,
                Some((
                    &record.requester.entity_id.clone(),
                    &record.requester.entity_name.clone(),
                )),
                "token issued",
            );
            self.save_access_request(&record).await?;
            self.access_alert(&record);
            out = record.to_json();
            out["token"] = Value::from(token.as_str());
            out["token_ttl"] = Value::from(ttl);
            out["token_policies"] = json!(self
                .access_role(&record.role)
                .await?
                .map(|r| r.policies)
                .unwrap_or_default());
        }
        Ok(Response::with_data(Core::data_map(out)))
    }

    async fn act_on_access_request(
        &self,
        state: &State,
        caller: &Caller,
        id: &str,
        action: &str,
        note: &str,
    ) -> Result<Response, Error> {
        let membership = self.membership(state, caller).await.ok();
        let _guard = self.approvals.records.lock().await;
        let mut record = self.load_access_request(id).await?;
        let now = self.now_unix();
        if record.refresh(now) {
            self.save_access_request(&record).await?;
        }
        let mine = is_requester(&record.requester, caller);
        let approver = membership
            .as_ref()
            .filter(|m| m.in_any(&record.approvals.group_names, &[]));
        let actor_ids = membership
            .as_ref()
            .map(|m| (m.entity_id.clone(), m.entity_name.clone()))
            .unwrap_or_default();
        let actor = Some((actor_ids.0.as_str(), actor_ids.1.as_str()));
        match action {
            "approve" | "deny" => {
                if mine {
                    return Err(Error::PermissionDenied(
                        "permission denied: the requester cannot approve or deny their own request"
                            .into(),
                    ));
                }
                let Some(approver) = approver else {
                    return Err(Error::PermissionDenied(
                        "permission denied: not a member of a group that can approve this request"
                            .into(),
                    ));
                };
                if record.state != AccessState::PendingApproval {
                    return Err(Error::invalid(format!(
                        "the request is {}, not pending approval",
                        record.state.as_str()
                    )));
                }
                if action == "deny" {
                    record.transition(AccessState::Denied, now, actor, note);
                } else if !record
                    .authorizations
                    .iter()
                    .any(|a| a.entity_id == approver.entity_id)
                {
                    // The request's groups this approver belongs to, for `from_each_group`.
                    let groups = record
                        .approvals
                        .group_names
                        .iter()
                        .filter(|g| approver.in_any(std::slice::from_ref(*g), &[]))
                        .cloned()
                        .collect();
                    record.authorizations.push(Authorization {
                        entity_id: approver.entity_id.clone(),
                        entity_name: approver.entity_name.clone(),
                        time: now,
                        factors: groups,
                    });
                    record.history.push(HistoryEvent {
                        time: now,
                        event: "authorized".into(),
                        actor_entity_id: approver.entity_id.clone(),
                        actor_name: approver.entity_name.clone(),
                        note: note.to_string(),
                    });
                    if record.approvals.satisfied_by(&record.authorizations) {
                        record.grant(now, None, "all approvals received");
                    }
                }
            }
            "revoke" => {
                if !mine && approver.is_none() {
                    return Err(Error::PermissionDenied(
                        "permission denied: only the requester or an approver can revoke".into(),
                    ));
                }
                if !(record.state.is_granted() || record.state.is_pending()) {
                    return Err(Error::invalid(format!(
                        "the request is {}; nothing to revoke",
                        record.state.as_str()
                    )));
                }
                if let Some(hash) = &record.token_hash {
                    if let Some(entry) = state.tokens.entry_any(hash).await? {
                        self.revoke_token_tree(state, &entry).await?;
                    }
                }
                record.transition(AccessState::Revoked, now, actor, note);
            }
            _ => {
                return Err(Error::UnsupportedPath(format!(
                    "sys/access/requests/{id}/{action}"
                )))
            }
        }
        self.save_access_request(&record).await?;
        self.access_alert(&record);
        Ok(Response::with_data(Core::data_map(record.to_json())))
    }

    async fn is_access_approver(
        &self,
        state: &State,
        caller: &Caller,
        record: &AccessRequest,
    ) -> Result<bool, Error> {
        if caller.entry.entity_id.is_empty() {
            return Ok(false);
        }
        Ok(self
            .membership(state, caller)
            .await?
            .in_any(&record.approvals.group_names, &[]))
    }

    /// A child of the requester's token with the role's policies, ending with the grant.
    async fn mint_grant_token(
        &self,
        state: &State,
        record: &mut AccessRequest,
        now: i64,
    ) -> Result<(zeroize::Zeroizing<String>, u64), Error> {
        let role = self.access_role(&record.role).await?.ok_or_else(|| {
            Error::invalid(format!("the role {:?} no longer exists", record.role))
        })?;
        let parent = state
            .tokens
            .lookup_hash(&record.requester.token_hash, now)
            .await?
            .ok_or_else(|| {
                Error::PermissionDenied(
                    "permission denied: the requesting token no longer exists".into(),
                )
            })?;
        let expire = record.expire_time.unwrap_or(now);
        let ttl = u64::try_from(expire - now).unwrap_or(0);
        if ttl == 0 {
            return Err(Error::invalid("the grant has ended"));
        }
        let mut meta = std::collections::BTreeMap::new();
        meta.insert("access_request".to_string(), record.id.clone());
        meta.insert("access_role".to_string(), record.role.clone());
        // `default` as on every token (lookup-self, renew-self, revoke-self), plus the role's.
        let mut policies = vec!["default".to_string()];
        policies.extend(role.policies.iter().filter(|p| *p != "default").cloned());
        let entry = TokenEntry {
            parent: Some(parent.hash.clone()),
            policies,
            meta,
            display_name: format!("access-{}", record.role),
            creation_time: now,
            creation_ttl: ttl,
            expire_time: Some(expire),
            max_expire_time: Some(expire),
            path: "sys/access/requests".into(),
            entity_id: parent.entity_id.clone(),
            ..TokenEntry::default()
        };
        let minted = state.tokens.create(entry, None).await?;
        record.token_hash = Some(minted.entry.hash.clone());
        record.token_accessor = minted.entry.accessor.clone();
        Ok((minted.id, ttl))
    }

    async fn load_access_request(&self, id: &str) -> Result<AccessRequest, Error> {
        if id.is_empty() || id.contains('/') {
            return Err(Error::not_found());
        }
        self.approvals_view()
            .get_json(&format!("{REQUEST_PREFIX}{id}"))
            .await?
            .ok_or_else(Error::not_found)
    }

    async fn save_access_request(&self, record: &AccessRequest) -> Result<(), Error> {
        self.approvals_view()
            .put_json(&format!("{REQUEST_PREFIX}{}", record.id), record)
            .await
    }

    async fn access_requests(&self) -> Result<Vec<AccessRequest>, Error> {
        let view = self.approvals_view();
        let mut out = Vec::new();
        for id in view.list(REQUEST_PREFIX).await? {
            if let Some(record) = view
                .get_json::<AccessRequest>(&format!("{REQUEST_PREFIX}{id}"))
                .await?
            {
                out.push(record);
            }
        }
        Ok(out)
    }

    /// Every request, expired ones marked and long-ended ones removed.
    pub(crate) async fn refreshed_access_requests(
        &self,
        now: i64,
    ) -> Result<Vec<AccessRequest>, Error> {
        let _guard = self.approvals.records.lock().await;
        let mut out = Vec::new();
        for mut record in self.access_requests().await? {
            if record.refresh(now) {
                self.save_access_request(&record).await?;
                self.access_alert(&record);
            }
            let ended_at = record
                .history
                .last()
                .map(|h| h.time)
                .unwrap_or(record.creation_time);
            if !(record.state.is_granted() || record.state.is_pending())
                && now > ended_at + RETENTION
            {
                self.approvals_view()
                    .delete(&format!("{REQUEST_PREFIX}{}", record.id))
                    .await?;
                continue;
            }
            out.push(record);
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.creation_time));
        Ok(out)
    }

    /// Sends a transition to the alert sinks.
    fn access_alert(&self, record: &AccessRequest) {
        let severity = match record.state {
            AccessState::Approved | AccessState::Active | AccessState::Revoked => Severity::Medium,
            _ => Severity::Info,
        };
        self.alerts.raise(
            severity,
            "access-request",
            format!(
                "access request {} for role {:?} is {}",
                record.id,
                record.role,
                record.state.as_str()
            ),
            json!({
                "request_id": record.id,
                "role": record.role,
                "state": record.state.as_str(),
                "requester_entity_id": record.requester.entity_id,
                "event": { "type": record.event.kind, "id": record.event.id },
            }),
            self.clock.now(),
        );
    }
}

fn role_json(role: &AccessRole) -> Value {
    let mut approvals = json!({
        "group_names": role.approvals.group_names,
        "count": role.approvals.count,
    });
    // Only when set: a role declared without it (`ward policy plan`) reads back the same.
    if role.approvals.from_each_group {
        approvals["from_each_group"] = Value::Bool(true);
    }
    json!({
        "name": role.name,
        "policies": role.policies,
        "max_ttl": role.max_ttl,
        "allowed_requesters": { "entity_ids": role.allowed_entity_ids, "group_names": role.allowed_group_names },
        "gatekeeper": role.webhook.as_ref().map(|w| json!({
            "webhook_url": w.url, "timeout": w.timeout, "secret_set": !w.secret.is_empty(),
        })),
        "rules": {
            "time_windows": role.rules.time_windows.iter().map(|w| json!({
                "days": w.days, "start": w.start, "end": w.end, "time_zone": w.time_zone,
            })).collect::<Vec<_>>(),
            "required_event_types": role.rules.required_event_types,
            "max_concurrent": role.rules.max_concurrent,
        },
        "approvals": approvals,
    })
}

fn object<'a>(
    data: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>, Error> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(Error::invalid(format!("field \"{key}\" must be an object"))),
    }
}

fn parse_role(name: &str, data: &Map<String, Value>) -> Result<AccessRole, Error> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(Error::invalid(
            "role names use letters, digits, '-', '_' and '.'",
        ));
    }
    let policies = fields::strings(data, "policies")?.unwrap_or_default();
    if policies.is_empty() {
        return Err(Error::invalid("missing policies"));
    }
    if policies.iter().any(|p| p == "root") {
        return Err(Error::invalid(
            "an access role cannot grant the root policy",
        ));
    }
    let mut role = AccessRole {
        name: name.to_string(),
        policies,
        max_ttl: fields::duration(data, "max_ttl")?
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_MAX_TTL),
        ..AccessRole::default()
    };
    if let Some(requesters) = object(data, "allowed_requesters")? {
        role.allowed_entity_ids = fields::strings(requesters, "entity_ids")?.unwrap_or_default();
        role.allowed_group_names = fields::strings(requesters, "group_names")?.unwrap_or_default();
    }
    if role.allowed_entity_ids.is_empty() && role.allowed_group_names.is_empty() {
        return Err(Error::invalid(
            "allowed_requesters must name entity_ids or group_names: nobody could ask",
        ));
    }
    if let Some(gatekeeper) = object(data, "gatekeeper")? {
        let url = fields::string(gatekeeper, "webhook_url")?.unwrap_or_default();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(Error::invalid(
                "gatekeeper.webhook_url must be an http:// or https:// URL",
            ));
        }
        let secret = fields::string(gatekeeper, "secret")?.unwrap_or_default();
        if secret.len() < 16 {
            return Err(Error::invalid(
                "gatekeeper.secret must be at least 16 characters: it signs every call",
            ));
        }
        let timeout = fields::duration(gatekeeper, "timeout")?
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_WEBHOOK_TIMEOUT);
        role.webhook = Some(Webhook {
            url,
            secret,
            timeout: timeout.min(60),
        });
    }
    if let Some(rules) = object(data, "rules")? {
        if let Some(windows) = rules.get("time_windows").filter(|v| !v.is_null()) {
            let windows: Vec<TimeWindow> = serde_json::from_value(windows.clone())
                .map_err(|e| Error::invalid(format!("rules.time_windows: {e}")))?;
            for window in &windows {
                window.validate()?;
            }
            role.rules.time_windows = windows;
        }
        role.rules.required_event_types =
            fields::strings(rules, "required_event_types")?.unwrap_or_default();
        role.rules.max_concurrent =
            u64::try_from(fields::integer(rules, "max_concurrent")?.unwrap_or(0))
                .map_err(|_| Error::invalid("rules.max_concurrent cannot be negative"))?;
    }
    if let Some(approvals) = object(data, "approvals")? {
        role.approvals.group_names = fields::strings(approvals, "group_names")?.unwrap_or_default();
        role.approvals.count = u64::try_from(fields::integer(approvals, "count")?.unwrap_or(1))
            .map_err(|_| Error::invalid("approvals.count cannot be negative"))?;
        if role.approvals.count > 0 && role.approvals.group_names.is_empty() {
            return Err(Error::invalid(
                "approvals.group_names must name the approvers' groups",
            ));
        }
        role.approvals.from_each_group =
            fields::boolean(approvals, "from_each_group")?.unwrap_or(false);
        if role.approvals.from_each_group
            && role.approvals.count < role.approvals.group_names.len() as u64
        {
            return Err(Error::invalid(
                "approvals.count must be at least the number of groups when from_each_group is set",
            ));
        }
    }
    if role.webhook.is_none() && role.rules.is_empty() && role.approvals.count == 0 {
        return Err(Error::invalid("an access role needs a gatekeeper, rules or approvals: otherwise every request would be granted"));
    }
    Ok(role)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_need_a_check_and_valid_parts() {
        let data = |v: Value| v.as_object().cloned().unwrap_or_default();
        let base =
            json!({"policies": ["billing"], "allowed_requesters": {"group_names": ["agents"]}});
        assert!(
            parse_role("r", &data(base.clone())).is_err(),
            "no gatekeeper, rules or approvals"
        );
        let mut with_rules = base.clone();
        with_rules["rules"] = json!({"required_event_types": ["nightly"], "time_windows": [{"days": ["mon"], "start": "01:00", "end": "03:00", "time_zone": "+02:00"}]});
        let role = parse_role("r", &data(with_rules)).expect("valid role");
        assert_eq!(role.rules.time_windows.len(), 1);
        let mut named_zone = base.clone();
        named_zone["rules"] = json!({"time_windows": [{"start": "01:00", "end": "03:00", "time_zone": "Europe/Berlin"}]});
        assert!(parse_role("r", &data(named_zone)).is_err());
        let mut root = base.clone();
        root["policies"] = json!(["root"]);
        root["approvals"] = json!({"group_names": ["ops"], "count": 1});
        assert!(parse_role("r", &data(root)).is_err());
        let mut short_secret = base;
        short_secret["gatekeeper"] =
            json!({"webhook_url": "http://127.0.0.1:1/", "secret": "short"});
        assert!(parse_role("r", &data(short_secret)).is_err());
    }

    #[test]
    fn two_team_approval_needs_one_approver_from_each_group() {
        let approvals = Approvals {
            group_names: vec!["mlops".into(), "secops".into()],
            count: 2,
            from_each_group: true,
        };
        let by = |name: &str, groups: &[&str]| Authorization {
            entity_id: name.into(),
            entity_name: name.into(),
            time: 0,
            factors: groups.iter().map(|g| g.to_string()).collect(),
        };
        let two_from_mlops = [by("mel", &["mlops"]), by("max", &["mlops"])];
        assert!(!approvals.satisfied_by(&two_from_mlops));
        assert_eq!(approvals.groups_missing(&two_from_mlops), ["secops"]);
        assert!(approvals.satisfied_by(&[by("mel", &["mlops"]), by("sam", &["secops"])]));
        // One person in both groups covers both, but the count still wants two people.
        assert!(!approvals.satisfied_by(&[by("kim", &["mlops", "secops"])]));
        let union = Approvals {
            from_each_group: false,
            ..approvals.clone()
        };
        assert!(union.satisfied_by(&two_from_mlops));
        let data = |v: Value| v.as_object().cloned().unwrap_or_default();
        let too_few = json!({"policies": ["p"], "allowed_requesters": {"group_names": ["a"]},
            "approvals": {"group_names": ["mlops", "secops"], "count": 1, "from_each_group": true}});
        assert!(parse_role("r", &data(too_few)).is_err());
    }

    #[test]
    fn grants_expire_and_pending_requests_time_out() {
        let mut record = AccessRequest {
            ttl: 60,
            creation_time: 0,
            ..AccessRequest::default()
        };
        record.grant(10, None, "");
        assert_eq!(record.expire_time, Some(70));
        assert!(!record.refresh(69));
        assert!(record.refresh(70));
        assert_eq!(record.state, AccessState::Expired);
        let mut pending = AccessRequest {
            state: AccessState::PendingApproval,
            ..AccessRequest::default()
        };
        assert!(pending.refresh(PENDING_TTL));
    }
}
