//! The audit entry: Vault's request/response JSON, written straight from the request, the
//! caller and the response for each device, with that device's salt and options.
//!
//! Field names follow Vault's (`internal/audit/format.go` in OpenBao). Ward adds
//! `response.lease_expire_time` (and `response.auth.lease_expire_time`), RFC 3339, whenever a
//! credential is issued or renewed, so that an entry says when the credential stops working.
//! The chain field (`prev_hash`) is added by the device when it writes the line.
//!
//! Entries are serialised by hand rather than built as a JSON tree and then hashed: strings
//! are hashed as they are written, so a device's line costs one pass and no copies of the
//! request or response data. That keeps audit cheap on the request path.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::clock::rfc3339;
use crate::core::Caller;
use crate::engine::Operation;
use crate::error::Error;
use crate::request::{Request, Response, Verb};

use super::hash::{Hasher, HASHED_LEN};

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
    /// The request entry's `auth` and `request` blocks as each device wrote them.
    pub(crate) written: Written,
}

/// The `auth` and `request` blocks of a request entry, kept per device so that the response
/// entry repeats them byte for byte (as Vault's does) instead of writing and hashing them
/// again: that is about half of a response entry's work. Reused only by the same device
/// (salt and options) and when the entry's `policy_results.allowed` is the same; the token's
/// remaining TTL is then the one at request time, which is what the request was judged by.
#[derive(Default)]
pub(crate) struct Written {
    blocks: std::sync::Mutex<Vec<WrittenBlocks>>,
}

struct WrittenBlocks {
    device: u64,
    allowed: bool,
    /// `,"auth":{...},"request":{...}` as written: hashed values, or for a `log_raw` device
    /// the token and request data themselves, hence wiped when the request ends.
    bytes: zeroize::Zeroizing<Vec<u8>>,
}

impl Written {
    fn keep(&self, device: u64, allowed: bool, bytes: &[u8]) {
        if let Ok(mut blocks) = self.blocks.lock() {
            blocks.retain(|b| b.device != device);
            blocks.push(WrittenBlocks {
                device,
                allowed,
                bytes: zeroize::Zeroizing::new(bytes.to_vec()),
            });
        }
    }

    /// Appends the kept blocks of `device` to `out`; false when there are none to reuse.
    fn repeat(&self, device: u64, allowed: bool, out: &mut Vec<u8>) -> bool {
        let Ok(blocks) = self.blocks.lock() else {
            return false;
        };
        match blocks
            .iter()
            .find(|b| b.device == device && b.allowed == allowed)
        {
            Some(kept) => {
                out.extend_from_slice(&kept.bytes);
                true
            }
            None => false,
        }
    }
}

/// A device's hashing options.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct HashOptions {
    pub(crate) log_raw: bool,
    pub(crate) hmac_accessor: bool,
    pub(crate) elide_list_responses: bool,
}

/// One entry, borrowed from the request path; each device renders it with its own salt.
pub(crate) struct RawEntry<'a> {
    now: OffsetDateTime,
    time: String,
    trail: &'a Trail,
    request: &'a Request,
    /// `None` for a request entry.
    response: Option<Result<&'a Response, &'a Error>>,
    error: Option<&'a Error>,
}

/// The request entry (written before the request runs; `error` set for a request refused
/// before dispatch, such as a denial).
pub(crate) fn request_entry<'a>(
    now: OffsetDateTime,
    trail: &'a Trail,
    request: &'a Request,
    error: Option<&'a Error>,
) -> RawEntry<'a> {
    RawEntry {
        now,
        time: rfc3339(now),
        trail,
        request,
        response: None,
        error,
    }
}

/// The response entry: every outcome, errors and denials included.
pub(crate) fn response_entry<'a>(
    now: OffsetDateTime,
    trail: &'a Trail,
    request: &'a Request,
    result: &'a Result<Response, Error>,
) -> RawEntry<'a> {
    RawEntry {
        now,
        time: rfc3339(now),
        trail,
        request,
        response: Some(result.as_ref()),
        error: result.as_ref().err(),
    }
}

impl RawEntry<'_> {
    /// The entry as one device writes it, into `out` (an empty buffer): hashed with its
    /// salt unless the device logs raw.
    ///
    /// Like Vault's, every field is left out when it is empty, zero or false (Go's
    /// `omitempty`), except `auth.policy_results.allowed`; objects Vault always sets (`auth`,
    /// `request.namespace`, `response.secret` with a lease) stay even when empty inside.
    pub(crate) fn render(&self, hasher: &Hasher, options: HashOptions, out: Vec<u8>) -> Vec<u8> {
        let mut w = Writer {
            out,
            hasher,
            options,
            recent: [None, None],
        };
        let mount = self.trail.mount.as_ref();
        let mut entry = w.object();
        w.field(&mut entry, "time");
        w.string(&self.time);
        w.field(&mut entry, "type");
        w.string(if self.response.is_some() {
            "response"
        } else {
            "request"
        });
        let allowed = !matches!(self.error, Some(Error::PermissionDenied(_)));
        let written = &self.trail.written;
        let repeated = self.response.is_some() && written.repeat(hasher.id(), allowed, &mut w.out);
        if !repeated {
            let start = w.out.len();
            w.field(&mut entry, "auth");
            self.auth(&mut w, allowed);
            w.field(&mut entry, "request");
            self.request_block(&mut w, mount);
            if self.response.is_none() {
                written.keep(hasher.id(), allowed, &w.out[start..]);
            }
        }
        // A failed request has no response: Vault leaves the block out.
        if let Some(Ok(response)) = self.response {
            w.field(&mut entry, "response");
            self.response_block(&mut w, mount, response);
        }
        w.string_field(&mut entry, "error", &error_text(self.error));
        w.end(entry);
        w.out
    }

    fn auth<'e>(&'e self, w: &mut Writer<'_, 'e>, allowed: bool) {
        let mut auth = w.object();
        if let Some(caller) = &self.trail.caller {
            let entry = &caller.entry;
            w.token_field(&mut auth, "client_token", caller.token.as_str());
            w.accessor_field(&mut auth, "accessor", &entry.accessor);
            w.string_field(&mut auth, "display_name", &entry.display_name);
            w.strings_field(&mut auth, "policies", &entry.policies);
            w.strings_field(&mut auth, "token_policies", &entry.policies);
            w.metadata_field(&mut auth, &entry.meta);
            w.string_field(&mut auth, "entity_id", &entry.entity_id);
            w.string_field(&mut auth, "token_type", entry.token_type.as_str());
            w.number_field(&mut auth, "token_ttl", entry.ttl(self.now.unix_timestamp()));
            w.field(&mut auth, "token_issue_time");
            w.string(&crate::clock::rfc3339_unix(entry.creation_time));
            w.number_field(&mut auth, "num_uses", entry.num_uses);
            w.number_field(&mut auth, "remaining_uses", entry.num_uses);
            // Vault writes `allowed` even when false.
            w.field(&mut auth, "policy_results");
            w.raw(if allowed {
                br#"{"allowed":true}"#
            } else {
                br#"{"allowed":false}"#
            });
        }
        w.end(auth);
    }

    fn request_block<'e>(&'e self, w: &mut Writer<'_, 'e>, mount: Option<&MountFacts>) {
        let request = self.request;
        let operation = self
            .trail
            .operation
            .map(Operation::as_str)
            .unwrap_or(match request.verb {
                Verb::Read => "read",
                Verb::List => "list",
                Verb::Write => "update",
                Verb::Patch => "patch",
                Verb::Delete => "delete",
            });
        let mut block = w.object();
        w.string_field(&mut block, "id", &request.id);
        w.string_field(&mut block, "operation", operation);
        mount_fields(w, &mut block, mount);
        match (&self.trail.caller, &request.token) {
            (Some(caller), _) => {
                w.token_field(&mut block, "client_token", caller.token.as_str());
                w.accessor_field(&mut block, "client_token_accessor", &caller.entry.accessor);
            }
            (None, Some(token)) => w.token_field(&mut block, "client_token", token.as_str()),
            (None, None) => {}
        }
        w.field(&mut block, "namespace");
        w.raw(br#"{"id":"root"}"#);
        w.string_field(&mut block, "path", &request.path);
        if !request.data.is_empty() {
            w.field(&mut block, "data");
            let exempt = mount
                .map(|m| m.non_hmac_request_keys.as_slice())
                .unwrap_or_default();
            w.data(&request.data, exempt, false);
        }
        w.string_field(
            &mut block,
            "remote_address",
            request.remote_address.as_deref().unwrap_or_default(),
        );
        w.number_field(&mut block, "wrap_ttl", request.wrap_ttl.unwrap_or(0));
        w.end(block);
    }

    fn response_block<'e>(
        &'e self,
        w: &mut Writer<'_, 'e>,
        mount: Option<&MountFacts>,
        response: &'e Response,
    ) {
        let mut block = w.object();
        mount_fields(w, &mut block, mount);
        if let Some(data) = response.data.as_ref().filter(|data| !data.is_empty()) {
            w.field(&mut block, "data");
            let exempt = mount
                .map(|m| m.non_hmac_response_keys.as_slice())
                .unwrap_or_default();
            let elide =
                w.options.elide_list_responses && self.trail.operation == Some(Operation::List);
            w.data(data, exempt, elide);
        }
        // `lease_duration`, `renewable` and the expiry beside `secret` are Ward's own, written
        // only for a lease (or a token with a duration), so a reader sees when it ends.
        let mut expires: Option<u64> = None;
        if let Some(lease) = &response.lease {
            w.field(&mut block, "secret");
            let mut secret = w.object();
            w.string_field(&mut secret, "lease_id", &lease.lease_id);
            w.end(secret);
            w.number_field(&mut block, "lease_duration", lease.lease_duration);
            w.bool_field(&mut block, "renewable", lease.renewable);
            expires = Some(lease.lease_duration);
        }
        if let Some(auth) = &response.auth {
            w.field(&mut block, "auth");
            let mut out = w.object();
            w.token_field(&mut out, "client_token", &auth.client_token);
            w.accessor_field(&mut out, "accessor", &auth.accessor);
            w.strings_field(&mut out, "policies", &auth.policies);
            w.strings_field(&mut out, "token_policies", &auth.token_policies);
            w.strings_field(&mut out, "identity_policies", &auth.identity_policies);
            w.metadata_field(&mut out, &auth.metadata);
            w.string_field(&mut out, "entity_id", &auth.entity_id);
            w.string_field(&mut out, "token_type", &auth.token_type);
            w.number_field(&mut out, "lease_duration", auth.lease_duration);
            if auth.lease_duration > 0 {
                w.field(&mut out, "lease_expire_time");
                w.string(&expire_time(self.now, auth.lease_duration));
            }
            w.bool_field(&mut out, "renewable", auth.renewable);
            w.bool_field(&mut out, "orphan", auth.orphan);
            w.number_field(&mut out, "num_uses", auth.num_uses);
            w.end(out);
            if expires.is_none() && auth.lease_duration > 0 {
                w.field(&mut block, "lease_duration");
                w.number(auth.lease_duration);
                expires = Some(auth.lease_duration);
            }
        }
        if let Some(duration) = expires.filter(|d| *d > 0) {
            w.field(&mut block, "lease_expire_time");
            w.string(&expire_time(self.now, duration));
        }
        if let Some(wrap) = &response.wrap_info {
            w.field(&mut block, "wrap_info");
            let mut out = w.object();
            w.token_field(&mut out, "token", &wrap.token);
            w.accessor_field(&mut out, "accessor", &wrap.accessor);
            w.number_field(&mut out, "ttl", wrap.ttl);
            w.string_field(&mut out, "creation_time", &wrap.creation_time);
            w.string_field(&mut out, "creation_path", &wrap.creation_path);
            w.accessor_field(&mut out, "wrapped_accessor", &wrap.wrapped_accessor);
            w.end(out);
        }
        w.strings_field(&mut block, "warnings", &response.warnings);
        w.end(block);
    }
}

fn mount_fields(w: &mut Writer<'_, '_>, block: &mut Object, mount: Option<&MountFacts>) {
    if let Some(mount) = mount {
        w.string_field(block, "mount_point", &mount.point);
        w.string_field(block, "mount_type", &mount.kind);
        w.string_field(block, "mount_accessor", &mount.accessor);
    }
}

fn expire_time(now: OffsetDateTime, seconds: u64) -> String {
    let seconds = i64::try_from(seconds).unwrap_or(i64::MAX / 2);
    rfc3339(now.saturating_add(time::Duration::seconds(seconds)))
}

/// The client's message, never an internal detail.
fn error_text(error: Option<&Error>) -> String {
    match error {
        Some(Error::NotFound { .. }) => "not found".into(),
        Some(other) => other.client_messages().join("; "),
        None => String::new(),
    }
}

/// An object being written: whether the next field needs a comma.
struct Object {
    empty: bool,
}

/// A JSON writer that hashes secret-bearing strings as it writes them.
struct Writer<'h, 'e> {
    out: Vec<u8>,
    hasher: &'h Hasher,
    options: HashOptions,
    /// The last tokens and accessors hashed: each appears twice in an entry (the caller's
    /// in `auth` and in `request`), and hashing is the costly part of writing one.
    recent: [Option<(&'e str, [u8; HASHED_LEN])>; 2],
}

impl<'e> Writer<'_, 'e> {
    fn object(&mut self) -> Object {
        self.out.push(b'{');
        Object { empty: true }
    }

    /// A field of Vault's format: the key is one of this file's literals, which need no
    /// escaping.
    fn field(&mut self, object: &mut Object, key: &'static str) {
        debug_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        if !object.empty {
            self.out.push(b',');
        }
        object.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// A field whose key comes from the request or response (data, metadata).
    fn data_field(&mut self, object: &mut Object, key: &str) {
        if !object.empty {
            self.out.push(b',');
        }
        object.empty = false;
        self.string(key);
        self.out.push(b':');
    }

    fn end(&mut self, _object: Object) {
        self.out.push(b'}');
    }

    // The `_field` writers leave the field out when its value is empty, zero or false, as
    // Go's `omitempty` does in Vault's entries.

    fn string_field(&mut self, object: &mut Object, key: &'static str, value: &str) {
        if !value.is_empty() {
            self.field(object, key);
            self.string(value);
        }
    }

    fn number_field(&mut self, object: &mut Object, key: &'static str, value: u64) {
        if value != 0 {
            self.field(object, key);
            self.number(value);
        }
    }

    fn bool_field(&mut self, object: &mut Object, key: &'static str, value: bool) {
        if value {
            self.field(object, key);
            self.raw(b"true");
        }
    }

    fn strings_field(&mut self, object: &mut Object, key: &'static str, values: &[String]) {
        if !values.is_empty() {
            self.field(object, key);
            self.strings(values);
        }
    }

    fn token_field(&mut self, object: &mut Object, key: &'static str, value: &'e str) {
        if !value.is_empty() {
            self.field(object, key);
            self.token(value);
        }
    }

    fn accessor_field(&mut self, object: &mut Object, key: &'static str, value: &'e str) {
        if !value.is_empty() {
            self.field(object, key);
            self.accessor(value);
        }
    }

    /// Token metadata, written as it is (Vault does not hash it either).
    fn metadata_field(&mut self, object: &mut Object, metadata: &BTreeMap<String, String>) {
        if metadata.is_empty() {
            return;
        }
        self.field(object, "metadata");
        let mut out = self.object();
        for (key, value) in metadata {
            self.data_field(&mut out, key);
            self.string(value);
        }
        self.end(out);
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    fn string(&mut self, value: &str) {
        // Most strings (every key, ids, paths, times) need no escaping: copy those as they
        // are. JSON escapes only `"`, `\` and control characters, as serde_json does.
        let plain = value.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
        if plain {
            self.out.reserve(value.len() + 2);
            self.out.push(b'"');
            self.out.extend_from_slice(value.as_bytes());
            self.out.push(b'"');
        } else {
            // Writing a `str` into a `Vec` cannot fail.
            let _ = serde_json::to_writer(&mut self.out, value);
        }
    }

    fn number(&mut self, value: u64) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = value;
        loop {
            at -= 1;
            // A digit is below 10, so the cast keeps it.
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        self.out.extend_from_slice(&digits[at..]);
    }

    fn strings(&mut self, values: &[String]) {
        self.out.push(b'[');
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.string(value);
        }
        self.out.push(b']');
    }

    /// A token as written: hashed unless the device logs raw; empty stays empty.
    fn token(&mut self, value: &'e str) {
        if self.options.log_raw || value.is_empty() {
            self.string(value);
        } else {
            self.hashed_again(value);
        }
    }

    /// An accessor: hashed when the device's `hmac_accessor` is on (the default).
    fn accessor(&mut self, value: &'e str) {
        if self.options.hmac_accessor && !self.options.log_raw && !value.is_empty() {
            self.hashed_again(value);
        } else {
            self.string(value);
        }
    }

    /// Writes the hash of a value that the entry may write again (tokens, accessors).
    fn hashed_again(&mut self, value: &'e str) {
        let known = self
            .recent
            .iter()
            .flatten()
            .find(|(seen, _)| *seen == value)
            .map(|(_, hashed)| *hashed);
        let hashed = known.unwrap_or_else(|| {
            let hashed = self.hasher.hash_bytes(value);
            self.recent.rotate_right(1);
            self.recent[0] = Some((value, hashed));
            hashed
        });
        self.hashed(&hashed);
    }

    /// A hashed value, as a JSON string (its characters need no escaping).
    fn hashed(&mut self, hashed: &[u8; HASHED_LEN]) {
        self.out.push(b'"');
        self.out.extend_from_slice(hashed);
        self.out.push(b'"');
    }

    /// Request or response data: every string at any depth hashed, except the mount's
    /// exempt top-level keys. With `elide`, a top-level `keys` list is replaced by its length.
    fn data(&mut self, map: &Map<String, Value>, exempt: &[String], elide: bool) {
        let mut object = self.object();
        for (key, value) in map {
            self.data_field(&mut object, key);
            match value {
                Value::Array(items) if elide && key == "keys" => self.number(items.len() as u64),
                _ if exempt.iter().any(|e| e == key) => {
                    let _ = serde_json::to_writer(&mut self.out, value);
                }
                _ => self.value(value),
            }
        }
        self.end(object);
    }

    fn value(&mut self, value: &Value) {
        match value {
            Value::String(s) if !self.options.log_raw => {
                let hashed = self.hasher.hash_bytes(s);
                self.hashed(&hashed);
            }
            Value::Array(items) => {
                self.out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(b',');
                    }
                    self.value(item);
                }
                self.out.push(b']');
            }
            Value::Object(map) => {
                let mut object = self.object();
                for (key, item) in map {
                    self.data_field(&mut object, key);
                    self.value(item);
                }
                self.end(object);
            }
            other => {
                let _ = serde_json::to_writer(&mut self.out, other);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::request::WrapInfo;

    /// Entries without a caller, byte for byte: an anonymous login's request entry, the
    /// response entry of a refused request and a wrapped response. Every empty field is left
    /// out, so an empty one coming back changes the bytes.
    #[test]
    fn entries_are_written_byte_for_byte_without_empty_fields() {
        let hasher = Hasher::new("salt");
        let hash = |value: &str| {
            String::from_utf8(hasher.hash_bytes(value).to_vec()).expect("hashes are ASCII")
        };
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_800_000_000);
        let time = rfc3339(now);
        let render = |entry: RawEntry<'_>| {
            String::from_utf8(entry.render(&hasher, HashOptions::default(), Vec::new()))
                .expect("utf-8")
        };
        let trail = Trail {
            operation: Some(Operation::Update),
            mount: Some(MountFacts {
                point: "auth/userpass/".into(),
                kind: "userpass".into(),
                accessor: "auth_userpass_1".into(),
                ..MountFacts::default()
            }),
            ..Trail::default()
        };
        let mut login = Request::new(Verb::Write, "auth/userpass/login/alice")
            .with_data(json!({"password": "hunter2"}));
        login.id = "id-1".into();
        assert_eq!(
            render(request_entry(now, &trail, &login, None)),
            format!(
                r#"{{"time":"{time}","type":"request","auth":{{}},"request":{{"id":"id-1","operation":"update","mount_point":"auth/userpass/","mount_type":"userpass","mount_accessor":"auth_userpass_1","namespace":{{"id":"root"}},"path":"auth/userpass/login/alice","data":{{"password":"{}"}}}}}}"#,
                hash("hunter2")
            )
        );

        let bare = Trail::default();
        let mut read = Request::new(Verb::Read, "secret/data/app");
        read.id = "id-2".into();
        let refused: Result<Response, Error> =
            Err(Error::PermissionDenied("permission denied".into()));
        assert_eq!(
            render(response_entry(now, &bare, &read, &refused)),
            format!(
                r#"{{"time":"{time}","type":"response","auth":{{}},"request":{{"id":"id-2","operation":"read","namespace":{{"id":"root"}},"path":"secret/data/app"}},"error":"permission denied"}}"#
            )
        );

        read.wrap_ttl = Some(60);
        let wrapped: Result<Response, Error> = Ok(Response {
            wrap_info: Some(WrapInfo {
                token: "wrapping-token".into(),
                accessor: "wrapping-accessor".into(),
                ttl: 60,
                creation_time: time.clone(),
                creation_path: "secret/data/app".into(),
                wrapped_accessor: String::new(),
            }),
            data: Some(Map::new()),
            ..Response::default()
        });
        assert_eq!(
            render(response_entry(now, &bare, &read, &wrapped)),
            format!(
                r#"{{"time":"{time}","type":"response","auth":{{}},"request":{{"id":"id-2","operation":"read","namespace":{{"id":"root"}},"path":"secret/data/app","wrap_ttl":60}},"response":{{"wrap_info":{{"token":"{}","accessor":"wrapping-accessor","ttl":60,"creation_time":"{time}","creation_path":"secret/data/app"}}}}}}"#,
                hash("wrapping-token")
            )
        );
    }

    /// The response entry repeats the request entry's `auth` and `request` blocks: the bytes
    /// are those it would write itself, for the same device only, and written afresh when
    /// the outcome changes `policy_results.allowed`.
    #[test]
    fn response_entries_repeat_the_request_blocks_exactly() {
        use crate::core::Caller;
        use crate::request::ClientToken;
        use crate::token::TokenEntry;
        use std::sync::Arc;

        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_800_000_000);
        let caller = Caller {
            token: ClientToken::new("hvs.CANARY-token"),
            entry: Arc::new(TokenEntry {
                accessor: "accessor-1".into(),
                policies: vec!["app".into(), "default".into()],
                display_name: "token-app".into(),
                creation_time: 1_799_999_000,
                ..TokenEntry::default()
            }),
            acl: Arc::default(),
        };
        let facts = || Trail {
            operation: Some(Operation::Read),
            mount: Some(MountFacts {
                point: "secret/".into(),
                kind: "kv".into(),
                accessor: "kv_1".into(),
                ..MountFacts::default()
            }),
            caller: Some(caller.clone()),
            ..Trail::default()
        };
        let mut read = Request::new(Verb::Read, "secret/data/app").with_data(json!({"v": "x"}));
        read.id = "id-3".into();
        let mut data = Map::new();
        data.insert("api_key".into(), json!("CANARY-secret"));
        let outcomes: [Result<Response, Error>; 2] = [
            Ok(Response {
                data: Some(data),
                ..Response::default()
            }),
            Err(Error::PermissionDenied("permission denied".into())),
        ];
        let hasher = Hasher::new("salt");
        let other = Hasher::new("other salt");
        for outcome in &outcomes {
            let trail = facts();
            let render = |hasher: &Hasher, entry: RawEntry<'_>| {
                String::from_utf8(entry.render(hasher, HashOptions::default(), Vec::new()))
                    .expect("utf-8")
            };
            let request = render(&hasher, request_entry(now, &trail, &read, None));
            assert!(request.contains(r#""policy_results":{"allowed":true}"#));
            let repeated = render(&hasher, response_entry(now, &trail, &read, outcome));
            let afresh = render(&hasher, response_entry(now, &facts(), &read, outcome));
            assert_eq!(repeated, afresh);
            assert!(!repeated.contains("CANARY"), "{repeated}");
            let allowed = outcome.is_ok();
            assert!(repeated.contains(&format!(r#""policy_results":{{"allowed":{allowed}}}"#)));
            // Another device with the same trail writes its own hashes.
            let theirs = render(&other, response_entry(now, &trail, &read, outcome));
            assert_eq!(
                theirs,
                render(&other, response_entry(now, &facts(), &read, outcome))
            );
            assert_ne!(theirs, repeated);
        }
    }

    #[test]
    fn strings_and_numbers_are_written_as_serde_json_writes_them() {
        let hasher = Hasher::new("salt");
        let mut w = Writer {
            out: Vec::new(),
            hasher: &hasher,
            options: HashOptions::default(),
            recent: [None, None],
        };
        for text in [
            "",
            "plain/path",
            "quote\"",
            "back\\slash",
            "tab\tnew\nline\u{1}",
            "ünïcode ✓",
            "del\u{7f}",
        ] {
            w.out.clear();
            w.string(text);
            assert_eq!(w.out, serde_json::to_vec(text).expect("json"), "{text:?}");
        }
        for number in [0u64, 7, 10, 1234567890, u64::MAX] {
            w.out.clear();
            w.number(number);
            assert_eq!(w.out, number.to_string().into_bytes());
        }
    }
}
