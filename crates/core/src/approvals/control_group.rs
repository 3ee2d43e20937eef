//! Control groups: a request that hits a `control_group` stanza is held back, not executed.
//!
//! The requester gets a wrapping token whose accessor names the pending request. Approvers
//! (members of a factor's identity groups, never the requester, each entity once) call
//! `sys/control-group/authorize`; anyone with the default policy can read the status with
//! `sys/control-group/request`. Once every factor has its approvals, the requester unwraps the
//! token and only then is the original request routed, authorised again with the requester's
//! current policies, and dispatched as the requester, so a dynamic secret is generated at
//! that moment and not before. The record (the request's path, verb and body, the requester
//! and the approvals with who gave them) is stored through the barrier; the wrapping token
//! carries no response of its own.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use ward_policy::ControlGroup;

use super::{is_requester, Authorization, HistoryEvent, Requester};
use crate::core::{Caller, Core, State};
use crate::engine::{fields, Operation};
use crate::error::Error;
use crate::request::{Request, Response, Verb};
use crate::token::TokenEntry;

/// The lifetime of a pending request when the policy gives no `ttl` (Vault: 24h).
const DEFAULT_TTL: u64 = 24 * 3600;
/// Marks a wrapping token that stands for a pending control-group request.
pub(crate) const TOKEN_MARKER: &str = "control_group";
const RECORD_PREFIX: &str = "control-group/";
const CONFIG_KEY: &str = "config/control-group";

/// True when a control group on the ACL decision holds this request back. The endpoints
/// that drive control groups and wrapping are never held, or a `path "*"` stanza with a
/// control group would make its own requests unapprovable.
pub(crate) fn applies(path: &str) -> bool {
    !(path.starts_with("sys/control-group/") || path.starts_with("sys/wrapping/"))
}

/// A pending control-group request, as stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct PendingRequest {
    /// Accessor of the wrapping token that stands for the request.
    pub(crate) accessor: String,
    pub(crate) path: String,
    pub(crate) verb: String,
    pub(crate) data: Map<String, Value>,
    pub(crate) requester: Requester,
    pub(crate) factors: Vec<Factor>,
    #[serde(default)]
    pub(crate) authorizations: Vec<Authorization>,
    pub(crate) creation_time: i64,
    pub(crate) expire_time: i64,
    /// Set once the wrapping token has been unwrapped: the request ran (or was attempted).
    #[serde(default)]
    pub(crate) executed: bool,
    #[serde(default)]
    pub(crate) history: Vec<HistoryEvent>,
}

/// One factor of the control group, copied from the policy when the request was held.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Factor {
    pub(crate) name: String,
    pub(crate) group_names: Vec<String>,
    #[serde(default)]
    pub(crate) group_ids: Vec<String>,
    pub(crate) approvals: u32,
}

impl Factor {
    fn required(&self) -> usize {
        self.approvals.max(1) as usize
    }
}

impl PendingRequest {
    /// Approvals counted for a factor.
    pub(crate) fn count(&self, factor: &str) -> usize {
        self.authorizations
            .iter()
            .filter(|a| a.factors.iter().any(|f| f == factor))
            .count()
    }

    /// Every factor has its approvals.
    pub(crate) fn approved(&self) -> bool {
        self.factors
            .iter()
            .all(|f| self.count(&f.name) >= f.required())
    }

    pub(crate) fn expired(&self, now: i64) -> bool {
        now >= self.expire_time
    }

    /// `pending`, `approved`, `expired` or `used`.
    pub(crate) fn status(&self, now: i64) -> &'static str {
        if self.executed {
            "used"
        } else if self.expired(now) {
            "expired"
        } else if self.approved() {
            "approved"
        } else {
            "pending"
        }
    }

    /// "factor \"ops\": 1 of 2 approvals; ..."
    pub(crate) fn progress(&self) -> String {
        self.factors
            .iter()
            .map(|f| {
                format!(
                    "factor \"{}\": {} of {} approvals",
                    f.name,
                    self.count(&f.name).min(f.required()),
                    f.required()
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The record as the API and the UI show it (no token, no request body).
    pub(crate) fn to_json(&self, now: i64) -> Value {
        json!({
            "accessor": self.accessor,
            "approved": self.approved(),
            "status": self.status(now),
            "request_path": self.path,
            "request_operation": self.verb,
            "request_entity": { "id": self.requester.entity_id, "name": self.requester.entity_name },
            "requester_display_name": self.requester.display_name,
            "authorizations": self.authorizations.iter().map(|a| json!({
                "entity_id": a.entity_id, "entity_name": a.entity_name,
                "time": crate::clock::rfc3339_unix(a.time), "factors": a.factors,
            })).collect::<Vec<_>>(),
            "factors": self.factors.iter().map(|f| json!({
                "name": f.name, "group_names": f.group_names, "group_ids": f.group_ids,
                "approvals": f.required(), "approved_by": self.count(&f.name),
            })).collect::<Vec<_>>(),
            "creation_time": crate::clock::rfc3339_unix(self.creation_time),
            "creation_unix": self.creation_time,
            "expire_time": crate::clock::rfc3339_unix(self.expire_time),
            "history": self.history.iter().map(|h| json!({
                "time": crate::clock::rfc3339_unix(h.time), "event": h.event,
                "actor_entity_id": h.actor_entity_id, "actor_name": h.actor_name, "note": h.note,
            })).collect::<Vec<_>>(),
        })
    }
}

/// `sys/config/control-group`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Config {
    /// Upper bound of a control group's TTL, in seconds; 0 means no bound beyond the system's.
    max_ttl: u64,
}

impl Core {
    /// Holds a request back: stores it and answers with a wrapping token standing for it.
    pub(crate) async fn defer_to_control_group(
        &self,
        state: &Arc<State>,
        request: &Request,
        caller: Option<Caller>,
        group: ControlGroup,
    ) -> Result<Response, Error> {
        let caller = caller.ok_or_else(Error::denied)?;
        // The held request spends a use of the token, like any authenticated request.
        let (entry, last_use) = state.tokens.use_once(&caller.entry).await?;
        if last_use {
            self.revoke_token_tree(state, &entry).await?;
        }
        let config: Config = self
            .approvals_view()
            .get_json(CONFIG_KEY)
            .await?
            .unwrap_or_default();
        let mut ttl = group
            .ttl
            .map(|d| d.as_secs())
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_TTL);
        if config.max_ttl > 0 {
            ttl = ttl.min(config.max_ttl);
        }
        let (minted, wrap_info) = self
            .mint_wrapping_token(state, ttl, &request.path, Some(TOKEN_MARKER))
            .await?;
        let now = self.now_unix();
        let requester = self.requester(state, &caller).await?;
        let record = PendingRequest {
            accessor: minted.entry.accessor.clone(),
            path: request.path.clone(),
            verb: verb_name(request.verb).into(),
            data: request.data.clone(),
            factors: group
                .factors
                .iter()
                .map(|f| Factor {
                    name: f.name.clone(),
                    group_names: f.group_names.clone(),
                    group_ids: f.group_ids.clone(),
                    approvals: f.approvals,
                })
                .collect(),
            authorizations: Vec::new(),
            creation_time: now,
            expire_time: minted.entry.expire_time.unwrap_or(now + ttl as i64),
            executed: false,
            history: vec![HistoryEvent {
                time: now,
                event: "requested".into(),
                actor_entity_id: requester.entity_id.clone(),
                actor_name: requester.entity_name.clone(),
                note: String::new(),
            }],
            requester,
        };
        self.approvals_view()
            .put_json(&self.record_key(state, &record.accessor), &record)
            .await?;
        tracing::info!(path = %request.path, factors = record.factors.len(), "request held for control-group approval");
        Ok(Response {
            request_id: request.id.clone(),
            wrap_info: Some(wrap_info),
            ..Response::default()
        })
    }

    /// `sys/control-group/*` and `sys/config/control-group`.
    pub(crate) async fn handle_control_group(
        &self,
        state: &Arc<State>,
        path: &str,
        operation: Operation,
        request: &Request,
        caller: Option<&Caller>,
    ) -> Result<Response, Error> {
        let data = &request.data;
        match (path, operation) {
            ("control-group/request", op) if op.is_write() || op == Operation::Read => {
                let record = self.pending_by_accessor(state, data).await?;
                Ok(Response::with_data(Core::data_map(
                    record.to_json(self.now_unix()),
                )))
            }
            ("control-group/authorize", op) if op.is_write() => {
                let caller = caller.ok_or_else(Error::denied)?;
                let accessor = accessor_field(data)?;
                let approved = self
                    .authorize_control_group(state, &accessor, caller)
                    .await?;
                Ok(Response::with_data(Core::data_map(
                    json!({ "approved": approved }),
                )))
            }
            ("control-group/pending", Operation::Read | Operation::List) => {
                let caller = caller.ok_or_else(Error::denied)?;
                self.pending_for_approver(state, caller).await
            }
            ("config/control-group", Operation::Read) => {
                let config: Config = self
                    .approvals_view()
                    .get_json(CONFIG_KEY)
                    .await?
                    .unwrap_or_default();
                Ok(Response::with_data(Core::data_map(
                    json!({ "max_ttl": config.max_ttl }),
                )))
            }
            ("config/control-group", op) if op.is_write() => {
                let max_ttl = fields::duration(data, "max_ttl")?.unwrap_or(0);
                self.approvals_view()
                    .put_json(CONFIG_KEY, &Config { max_ttl })
                    .await?;
                Ok(Response::default())
            }
            ("config/control-group", Operation::Delete) => {
                self.approvals_view().delete(CONFIG_KEY).await?;
                Ok(Response::default())
            }
            _ => Err(Error::UnsupportedOperation(format!("sys/{path}"))),
        }
    }

    /// Records an approval; answers whether the request is now approved.
    async fn authorize_control_group(
        &self,
        state: &State,
        accessor: &str,
        caller: &Caller,
    ) -> Result<bool, Error> {
        let membership = self.membership(state, caller).await?;
        let _guard = self.approvals.records.lock().await;
        let key = self.record_key(state, accessor);
        let mut record: PendingRequest =
            self.approvals_view().get_json(&key).await?.ok_or_else(|| {
                Error::invalid("no control group request exists for this accessor")
            })?;
        let now = self.now_unix();
        if record.executed {
            return Err(Error::invalid(
                "this control group request has already been used",
            ));
        }
        if record.expired(now) {
            return Err(Error::invalid("this control group request has expired"));
        }
        if is_requester(&record.requester, caller) {
            return Err(Error::PermissionDenied(
                "permission denied: the requester cannot approve their own request".into(),
            ));
        }
        if record
            .authorizations
            .iter()
            .any(|a| a.entity_id == membership.entity_id)
        {
            // One person counts once: a second approval changes nothing.
            return Ok(record.approved());
        }
        let factors: Vec<String> = record
            .factors
            .iter()
            .filter(|f| membership.in_any(&f.group_names, &f.group_ids))
            .map(|f| f.name.clone())
            .collect();
        if factors.is_empty() {
            return Err(Error::PermissionDenied(
                "permission denied: not a member of a group that can approve this request".into(),
            ));
        }
        record.authorizations.push(Authorization {
            entity_id: membership.entity_id.clone(),
            entity_name: membership.entity_name.clone(),
            time: now,
            factors: factors.clone(),
        });
        record.history.push(HistoryEvent {
            time: now,
            event: "authorized".into(),
            actor_entity_id: membership.entity_id.clone(),
            actor_name: membership.entity_name.clone(),
            note: format!("counted for {}", factors.join(", ")),
        });
        let approved = record.approved();
        if approved {
            record.history.push(HistoryEvent {
                time: now,
                event: "approved".into(),
                ..HistoryEvent::default()
            });
        }
        self.approvals_view().put_json(&key, &record).await?;
        tracing::info!(approver_entity = %membership.entity_id, approved, "control-group approval recorded");
        Ok(approved)
    }

    /// The unwrap of a control-group wrapping token: 403 with the status before approval;
    /// afterwards the token is spent and the original request runs as the requester.
    pub(crate) async fn unwrap_control_group(
        &self,
        state: &Arc<State>,
        wrapping: &TokenEntry,
        request: &Request,
        caller: Option<&Caller>,
    ) -> Result<Response, Error> {
        let key = self.record_key(state, &wrapping.accessor);
        let record = {
            let _guard = self.approvals.records.lock().await;
            let mut record: PendingRequest = self
                .approvals_view()
                .get_json(&key)
                .await?
                .ok_or_else(|| Error::invalid(crate::wrapping::INVALID))?;
            let now = self.now_unix();
            if record.executed || record.expired(now) {
                return Err(Error::invalid(crate::wrapping::INVALID));
            }
            if !record.approved() {
                return Err(Error::PermissionDenied(format!(
                    "request is not yet approved: {}",
                    record.progress()
                )));
            }
            let caller = caller.ok_or_else(Error::denied)?;
            if caller.entry.hash != record.requester.token_hash {
                let requester_alive = state
                    .tokens
                    .lookup_hash(&record.requester.token_hash, now)
                    .await?
                    .is_some();
                return Err(Error::PermissionDenied(if requester_alive {
                    "permission denied: only the requesting token can unwrap a control group request".into()
                } else {
                    "permission denied: the requesting token has been revoked".into()
                }));
            }
            // Spent before the request runs: whatever happens next, it runs at most once.
            self.remove_token(state, wrapping).await?;
            record.executed = true;
            record.history.push(HistoryEvent {
                time: now,
                event: "executed".into(),
                actor_entity_id: record.requester.entity_id.clone(),
                actor_name: record.requester.entity_name.clone(),
                note: String::new(),
            });
            self.approvals_view().put_json(&key, &record).await?;
            record
        };
        let caller = caller.ok_or_else(Error::denied)?;
        let original = Request {
            id: request.id.clone(),
            verb: parse_verb(&record.verb)?,
            path: record.path.clone(),
            token: Some(caller.token.clone()),
            data: record.data.clone(),
            wrap_ttl: None,
            remote_address: request.remote_address.clone(),
        };
        tracing::info!(path = %record.path, "executing an approved control-group request");
        // Boxed: the held request may itself be a `sys/` request, which makes this recursive.
        let mut response = Box::pin(self.execute_approved(state, &original, caller)).await?;
        response.request_id = request.id.clone();
        Ok(response)
    }

    /// `sys/control-group/pending`: the pending requests the caller can approve and has not.
    async fn pending_for_approver(
        &self,
        state: &State,
        caller: &Caller,
    ) -> Result<Response, Error> {
        let membership = self.membership(state, caller).await?;
        let now = self.now_unix();
        let mut keys = Vec::new();
        let mut info = Map::new();
        for record in self.pending_records(now).await? {
            let can_act = record
                .factors
                .iter()
                .any(|f| membership.in_any(&f.group_names, &f.group_ids));
            let acted = record
                .authorizations
                .iter()
                .any(|a| a.entity_id == membership.entity_id);
            if record.status(now) == "pending"
                && can_act
                && !acted
                && !is_requester(&record.requester, caller)
            {
                keys.push(Value::from(record.accessor.clone()));
                info.insert(record.accessor.clone(), record.to_json(now));
            }
        }
        Ok(Response::with_data(Core::data_map(
            json!({ "keys": keys, "key_info": info }),
        )))
    }

    /// Every stored record, with those long past expiry removed on the way.
    pub(crate) async fn pending_records(&self, now: i64) -> Result<Vec<PendingRequest>, Error> {
        let view = self.approvals_view();
        let mut out = Vec::new();
        for key in view.list(RECORD_PREFIX).await? {
            let full = format!("{RECORD_PREFIX}{key}");
            let Some(record) = view.get_json::<PendingRequest>(&full).await? else {
                continue;
            };
            // Kept a day past expiry or use so that its status can still be read.
            if (record.expired(now) || record.executed) && now > record.expire_time + 24 * 3600 {
                view.delete(&full).await?;
                continue;
            }
            out.push(record);
        }
        Ok(out)
    }

    async fn pending_by_accessor(
        &self,
        state: &State,
        data: &Map<String, Value>,
    ) -> Result<PendingRequest, Error> {
        let accessor = accessor_field(data)?;
        self.approvals_view()
            .get_json(&self.record_key(state, &accessor))
            .await?
            .ok_or_else(|| Error::invalid("no control group request exists for this accessor"))
    }

    /// Records are keyed by the salted hash of the accessor, as the token store keys its index.
    fn record_key(&self, state: &State, accessor: &str) -> String {
        format!("{RECORD_PREFIX}{}", state.tokens.hash(accessor))
    }
}

fn accessor_field(data: &Map<String, Value>) -> Result<String, Error> {
    fields::string(data, "accessor")?
        .filter(|a| !a.is_empty())
        .ok_or_else(|| Error::invalid("missing accessor"))
}

fn verb_name(verb: Verb) -> &'static str {
    match verb {
        Verb::Read => "read",
        Verb::List => "list",
        Verb::Write => "write",
        Verb::Patch => "patch",
        Verb::Delete => "delete",
    }
}

fn parse_verb(name: &str) -> Result<Verb, Error> {
    Ok(match name {
        "read" => Verb::Read,
        "list" => Verb::List,
        "write" => Verb::Write,
        "patch" => Verb::Patch,
        "delete" => Verb::Delete,
        other => {
            return Err(Error::internal(format!(
                "stored control group request has unknown verb {other:?}"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(factors: &[(&str, u32)], approvals: &[(&str, &[&str])]) -> PendingRequest {
        PendingRequest {
            factors: factors
                .iter()
                .map(|(n, a)| Factor {
                    name: (*n).into(),
                    approvals: *a,
                    ..Factor::default()
                })
                .collect(),
            authorizations: approvals
                .iter()
                .map(|(e, f)| Authorization {
                    entity_id: (*e).into(),
                    factors: f.iter().map(|s| (*s).to_string()).collect(),
                    ..Authorization::default()
                })
                .collect(),
            expire_time: 100,
            ..PendingRequest::default()
        }
    }

    #[test]
    fn every_factor_needs_its_approvals() {
        assert!(!record(&[("ops", 1), ("sec", 1)], &[("a", &["ops"])]).approved());
        assert!(record(
            &[("ops", 1), ("sec", 1)],
            &[("a", &["ops"]), ("b", &["sec"])]
        )
        .approved());
        // One approval can count for several factors.
        assert!(record(&[("ops", 1), ("sec", 1)], &[("a", &["ops", "sec"])]).approved());
        assert!(!record(&[("ops", 2)], &[("a", &["ops"])]).approved());
        // Zero approvals in a policy still needs one.
        assert!(!record(&[("ops", 0)], &[]).approved());
    }

    #[test]
    fn status_follows_time_and_use() {
        let mut r = record(&[("ops", 1)], &[]);
        assert_eq!(r.status(10), "pending");
        assert_eq!(r.status(100), "expired");
        r.executed = true;
        assert_eq!(r.status(10), "used");
    }

    #[test]
    fn control_group_endpoints_are_never_held() {
        assert!(!applies("sys/control-group/authorize"));
        assert!(!applies("sys/wrapping/unwrap"));
        assert!(applies("secret/data/x"));
    }
}
