//! The audit entry: Vault's request/response JSON, built once per request and then hashed
//! for each device with that device's salt and options.
//!
//! Field names follow Vault's (`internal/audit/format.go` in OpenBao). Ward adds
//! `response.lease_expire_time` (and `response.auth.lease_expire_time`), RFC 3339, whenever a
//! credential is issued or renewed, so that an entry says when the credential stops working.
//! The chain field (`prev_hash`) is added by the device when it writes the line.

use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use crate::clock::rfc3339;
use crate::core::Caller;
use crate::engine::Operation;
use crate::error::Error;
use crate::request::{Request, Response};

use super::hash::Hasher;

/// The mount a request went to, as far as the core resolved it.
#[derive(Debug, Clone, Default)]
pub(crate) struct MountFacts {
    pub(crate) point: String,
    pub(crate) kind: String,
    pub(crate) accessor: String,
    pub(crate) non_hmac_request_keys: Vec<String>,
    pub(crate) non_hmac_response_keys: Vec<String>,
}

/// What the core knows about a request when it audits it.
#[derive(Default)]
pub(crate) struct Trail {
    pub(crate) operation: Option<Operation>,
    pub(crate) mount: Option<MountFacts>,
    pub(crate) caller: Option<Caller>,
    /// A login attempt (an unauthenticated request to an auth method).
    pub(crate) login: bool,
    /// Set for requests that are not audited (rate-limit refusals, unless configured).
    pub(crate) unaudited: bool,
}

/// A device's hashing options.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HashOptions {
    pub(crate) log_raw: bool,
    pub(crate) hmac_accessor: bool,
    pub(crate) elide_list_responses: bool,
}

/// An entry before any device hashed it. Kept as a JSON tree because every device needs its
/// own hashed copy; the tree is built once per request.
pub(crate) struct RawEntry {
    value: Value,
    is_list: bool,
}

/// The request entry (written before the request runs; `error` set for a request refused
/// before dispatch, such as a denial).
pub(crate) fn request_entry(now: OffsetDateTime, trail: &Trail, request: &Request, error: Option<&Error>) -> RawEntry {
    let mut entry = Map::new();
    entry.insert("time".into(), json!(rfc3339(now)));
    entry.insert("type".into(), json!("request"));
    entry.insert("auth".into(), auth_block(now, trail));
    entry.insert("request".into(), request_block(trail, request));
    entry.insert("error".into(), error_text(error));
    RawEntry { value: Value::Object(entry), is_list: trail.operation == Some(Operation::List) }
}

/// The response entry: every outcome, errors and denials included.
pub(crate) fn response_entry(now: OffsetDateTime, trail: &Trail, request: &Request, result: &Result<Response, Error>) -> RawEntry {
    let mut entry = Map::new();
    entry.insert("time".into(), json!(rfc3339(now)));
    entry.insert("type".into(), json!("response"));
    entry.insert("auth".into(), auth_block(now, trail));
    entry.insert("request".into(), request_block(trail, request));
    let (response, error) = match result {
        Ok(response) => (response_block(now, trail, response), Value::String(String::new())),
        Err(error) => (Value::Null, error_text(Some(error))),
    };
    entry.insert("response".into(), response);
    entry.insert("error".into(), error);
    RawEntry { value: Value::Object(entry), is_list: trail.operation == Some(Operation::List) }
}

impl RawEntry {
    /// The entry as one device writes it: hashed with its salt unless the device logs raw.
    pub(crate) fn render(&self, hasher: &Hasher, options: HashOptions, mount: Option<&MountFacts>) -> Result<Vec<u8>, Error> {
        let mut value = self.value.clone();
        if options.elide_list_responses && self.is_list {
            elide_list(&mut value);
        }
        if !options.log_raw {
            hash_entry(&mut value, hasher, options, mount);
        }
        serde_json::to_vec(&value).map_err(|e| Error::internal(format!("audit entry serialisation: {e}")))
    }
}

fn auth_block(now: OffsetDateTime, trail: &Trail) -> Value {
    let Some(caller) = &trail.caller else { return json!({}) };
    let entry = &caller.entry;
    json!({
        "client_token": caller.token.as_str(),
        "accessor": entry.accessor,
        "display_name": entry.display_name,
        "policies": entry.policies,
        "token_policies": entry.policies,
        "metadata": entry.meta,
        "entity_id": entry.entity_id,
        "token_type": entry.token_type.as_str(),
        "token_ttl": entry.ttl(now.unix_timestamp()),
        "token_issue_time": crate::clock::rfc3339_unix(entry.creation_time),
        "num_uses": entry.num_uses,
        "remaining_uses": entry.num_uses,
        "policy_results": { "allowed": true },
    })
}

fn request_block(trail: &Trail, request: &Request) -> Value {
    let mount = trail.mount.clone().unwrap_or_default();
    let operation = trail.operation.map(Operation::as_str).unwrap_or(match request.verb {
        crate::request::Verb::Read => "read",
        crate::request::Verb::List => "list",
        crate::request::Verb::Write => "update",
        crate::request::Verb::Patch => "patch",
        crate::request::Verb::Delete => "delete",
    });
    let (client_token, accessor) = match (&trail.caller, &request.token) {
        (Some(caller), _) => (caller.token.as_str().to_string(), caller.entry.accessor.clone()),
        (None, Some(token)) => (token.as_str().to_string(), String::new()),
        (None, None) => (String::new(), String::new()),
    };
    let mut block = json!({
        "id": request.id,
        "operation": operation,
        "mount_point": mount.point,
        "mount_type": mount.kind,
        "mount_accessor": mount.accessor,
        "client_token": client_token,
        "client_token_accessor": accessor,
        "namespace": { "id": "root" },
        "path": request.path,
        "data": if request.data.is_empty() { Value::Null } else { Value::Object(request.data.clone()) },
        "remote_address": request.remote_address.clone().unwrap_or_default(),
    });
    if let Some(ttl) = request.wrap_ttl {
        block["wrap_ttl"] = json!(ttl);
    }
    block
}

fn response_block(now: OffsetDateTime, trail: &Trail, response: &Response) -> Value {
    let mount = trail.mount.clone().unwrap_or_default();
    let mut block = Map::new();
    block.insert("mount_point".into(), json!(mount.point));
    block.insert("mount_type".into(), json!(mount.kind));
    block.insert("mount_accessor".into(), json!(mount.accessor));
    if let Some(data) = &response.data {
        block.insert("data".into(), Value::Object(data.clone()));
    }
    let mut expires: Option<u64> = None;
    if let Some(lease) = &response.lease {
        block.insert("secret".into(), json!({ "lease_id": lease.lease_id }));
        block.insert("lease_duration".into(), json!(lease.lease_duration));
        block.insert("renewable".into(), json!(lease.renewable));
        expires = Some(lease.lease_duration);
    }
    if let Some(auth) = &response.auth {
        let mut auth_json = json!({
            "client_token": auth.client_token,
            "accessor": auth.accessor,
            "policies": auth.policies,
            "token_policies": auth.token_policies,
            "identity_policies": auth.identity_policies,
            "metadata": auth.metadata,
            "entity_id": auth.entity_id,
            "token_type": auth.token_type,
            "lease_duration": auth.lease_duration,
            "renewable": auth.renewable,
            "orphan": auth.orphan,
            "num_uses": auth.num_uses,
        });
        if auth.lease_duration > 0 {
            auth_json["lease_expire_time"] = json!(expire_time(now, auth.lease_duration));
        }
        block.insert("auth".into(), auth_json);
        if expires.is_none() && auth.lease_duration > 0 {
            block.insert("lease_duration".into(), json!(auth.lease_duration));
            expires = Some(auth.lease_duration);
        }
    }
    if let Some(duration) = expires.filter(|d| *d > 0) {
        block.insert("lease_expire_time".into(), json!(expire_time(now, duration)));
    }
    if let Some(wrap) = &response.wrap_info {
        block.insert(
            "wrap_info".into(),
            json!({
                "token": wrap.token,
                "accessor": wrap.accessor,
                "ttl": wrap.ttl,
                "creation_time": wrap.creation_time,
                "creation_path": wrap.creation_path,
                "wrapped_accessor": wrap.wrapped_accessor,
            }),
        );
    }
    if !response.warnings.is_empty() {
        block.insert("warnings".into(), json!(response.warnings));
    }
    Value::Object(block)
}

fn expire_time(now: OffsetDateTime, seconds: u64) -> String {
    let seconds = i64::try_from(seconds).unwrap_or(i64::MAX / 2);
    rfc3339(now.saturating_add(time::Duration::seconds(seconds)))
}

fn error_text(error: Option<&Error>) -> Value {
    match error {
        // The client's message, never an internal detail.
        Some(error) => Value::String(match error {
            Error::NotFound { .. } => "not found".into(),
            other => other.client_messages().join("; "),
        }),
        None => Value::String(String::new()),
    }
}

fn elide_list(value: &mut Value) {
    if let Some(keys) = value.pointer_mut("/response/data/keys") {
        if let Value::Array(items) = keys {
            *keys = json!(items.len());
        }
    }
}

/// Hashes the secret-bearing parts of an entry in place.
fn hash_entry(value: &mut Value, hasher: &Hasher, options: HashOptions, mount: Option<&MountFacts>) {
    let empty: Vec<String> = Vec::new();
    let (request_exempt, response_exempt) = match mount {
        Some(m) => (&m.non_hmac_request_keys, &m.non_hmac_response_keys),
        None => (&empty, &empty),
    };
    if let Some(auth) = value.get_mut("auth") {
        hash_token_fields(auth, hasher, options, &["client_token"], &["accessor"]);
    }
    if let Some(request) = value.get_mut("request") {
        hash_token_fields(request, hasher, options, &["client_token"], &["client_token_accessor"]);
        if let Some(Value::Object(data)) = request.get_mut("data") {
            hasher.hash_map(data, request_exempt);
        }
    }
    if let Some(response) = value.get_mut("response") {
        if let Some(Value::Object(data)) = response.get_mut("data") {
            hasher.hash_map(data, response_exempt);
        }
        if let Some(auth) = response.get_mut("auth") {
            hash_token_fields(auth, hasher, options, &["client_token"], &["accessor"]);
        }
        if let Some(wrap) = response.get_mut("wrap_info") {
            hash_token_fields(wrap, hasher, options, &["token"], &["accessor", "wrapped_accessor"]);
        }
    }
}

fn hash_token_fields(block: &mut Value, hasher: &Hasher, options: HashOptions, tokens: &[&str], accessors: &[&str]) {
    let Value::Object(map) = block else { return };
    for key in tokens {
        if let Some(v) = map.get_mut(*key) {
            if v.as_str().is_some_and(|s| !s.is_empty()) {
                hasher.hash_in_place(v);
            }
        }
    }
    if options.hmac_accessor {
        for key in accessors {
            if let Some(v) = map.get_mut(*key) {
                if v.as_str().is_some_and(|s| !s.is_empty()) {
                    hasher.hash_in_place(v);
                }
            }
        }
    }
}
