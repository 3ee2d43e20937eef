//! The engine API: what a secrets engine or auth method sees of the core, and nothing more.
//!
//! An engine receives a request relative to its mount and a context holding its own storage
//! view, its mount's settings and the time. It never sees the barrier keys, the token store
//! or the core itself; the core registers leases and tokens from what the engine returns.
//! Routing inside an engine is a plain `match` on the operation and the path segments.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::error::Error;
use crate::view::StorageView;

/// What a request does, after the core's existence check split writes into create/update.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Create,
    Read,
    Update,
    Patch,
    Delete,
    List,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Read => "read",
            Operation::Update => "update",
            Operation::Patch => "patch",
            Operation::Delete => "delete",
            Operation::List => "list",
        }
    }

    pub fn is_write(self) -> bool {
        matches!(
            self,
            Operation::Create | Operation::Update | Operation::Patch
        )
    }
}

/// The mount an engine instance serves.
#[derive(Debug, Clone, PartialEq)]
pub struct MountInfo {
    /// With a trailing slash: `secret/`, or `auth/userpass/` for an auth method.
    pub path: String,
    /// `kv`, `cubbyhole`, `database`, `userpass`, ...
    pub kind: String,
    pub accessor: String,
    pub uuid: String,
    pub options: BTreeMap<String, String>,
    /// Effective lease TTLs in seconds (the mount's own, or the system's).
    pub default_lease_ttl: u64,
    pub max_lease_ttl: u64,
}

/// Per-request context handed to an engine.
#[derive(Clone)]
pub struct EngineContext {
    pub storage: StorageView,
    pub mount: MountInfo,
    pub now: OffsetDateTime,
    pub request_id: String,
    /// The caller's cubbyhole id (a random id bound to the token), if it has a token.
    pub cubbyhole_id: Option<String>,
    pub entity_id: Option<String>,
    /// The address the request came from, for CIDR bindings.
    pub remote_address: Option<String>,
}

impl fmt::Debug for EngineContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineContext")
            .field("mount", &self.mount.path)
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

/// A request relative to the mount. For reads and lists `data` holds the query parameters.
#[derive(Clone, Default)]
pub struct EngineRequest {
    pub operation: Option<Operation>,
    pub path: String,
    pub data: Map<String, Value>,
}

impl fmt::Debug for EngineRequest {
    // Request data may hold secrets: only the keys are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineRequest")
            .field("operation", &self.operation)
            .field("path", &self.path)
            .field("data_keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl EngineRequest {
    pub fn new(operation: Operation, path: impl Into<String>, data: Map<String, Value>) -> Self {
        EngineRequest {
            operation: Some(operation),
            path: path.into(),
            data,
        }
    }

    pub fn op(&self) -> Operation {
        self.operation.unwrap_or(Operation::Read)
    }
}

/// A secret with a lease: the core registers it with the expiration manager.
#[derive(Clone, PartialEq)]
pub struct SecretSpec {
    /// Requested TTL in seconds (0: the mount default). The core caps it by the max TTL.
    pub ttl: u64,
    /// The engine's own cap (a role's max_ttl) in seconds; 0 means the mount's.
    pub max_ttl: u64,
    pub renewable: bool,
    /// Kept with the lease and handed back to `renew` and `revoke` (e.g. the username).
    pub internal: Value,
}

impl fmt::Debug for SecretSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSpec")
            .field("ttl", &self.ttl)
            .field("max_ttl", &self.max_ttl)
            .field("renewable", &self.renewable)
            .finish_non_exhaustive()
    }
}

/// What a login produces; the core turns it into a token.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthSpec {
    pub display_name: String,
    pub policies: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    pub ttl: u64,
    pub max_ttl: u64,
    pub explicit_max_ttl: u64,
    pub period: u64,
    pub num_uses: u64,
    pub renewable: bool,
    pub no_default_policy: bool,
    /// `service` or `batch` (empty: the mount's default).
    pub token_type: String,
    pub bound_cidrs: Vec<String>,
    /// The entity alias this login maps to (name unique per auth mount).
    pub alias: Option<AliasSpec>,
    /// External group names from the identity provider.
    pub group_aliases: Vec<String>,
    pub internal: Value,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AliasSpec {
    pub name: String,
    pub metadata: BTreeMap<String, String>,
}

/// An engine's answer. No data, secret, auth or warnings means "204 No Content".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineResponse {
    pub data: Option<Map<String, Value>>,
    pub secret: Option<SecretSpec>,
    pub auth: Option<AuthSpec>,
    pub warnings: Vec<String>,
    /// A lease duration shown without a lease (KV v1's refresh hint), in seconds.
    pub lease_duration_hint: Option<u64>,
}

impl EngineResponse {
    pub fn empty() -> Self {
        Self::default()
    }

    pub fn with_data(data: Map<String, Value>) -> Self {
        EngineResponse {
            data: Some(data),
            ..Self::default()
        }
    }

    /// The Vault shape of a list: `{"keys": [...]}`, or not found when there are none.
    pub fn list(keys: Vec<String>) -> Result<Self, Error> {
        if keys.is_empty() {
            return Err(Error::not_found());
        }
        let mut data = Map::new();
        data.insert("keys".into(), Value::from(keys));
        Ok(Self::with_data(data))
    }
}

/// A lease handed back to its engine for renewal or revocation.
#[derive(Debug, Clone)]
pub struct LeaseInfo {
    pub lease_id: String,
    /// The request path (relative to the mount) that created the secret.
    pub path: String,
    pub internal: Value,
    pub issue_time: OffsetDateTime,
    pub ttl: u64,
    pub increment: u64,
}

#[async_trait]
pub trait Engine: Send + Sync {
    /// Paths (relative to the mount) served without a token, such as `login`.
    fn is_unauthenticated(&self, _path: &str) -> bool {
        false
    }

    /// Paths that need `sudo` on top of the operation's capability.
    fn requires_sudo(&self, _operation: Operation, _path: &str) -> bool {
        false
    }

    /// Whether the target of a write exists, so the core can authorise it as create or
    /// update. `None`: the engine does not distinguish (treated as update).
    async fn exists(
        &self,
        _ctx: &EngineContext,
        _request: &EngineRequest,
    ) -> Result<Option<bool>, Error> {
        Ok(None)
    }

    async fn handle(
        &self,
        ctx: &EngineContext,
        request: EngineRequest,
    ) -> Result<EngineResponse, Error>;

    /// Extends a lease this engine issued; the core has already computed the new TTL.
    async fn renew(
        &self,
        _ctx: &EngineContext,
        _lease: &LeaseInfo,
    ) -> Result<EngineResponse, Error> {
        Err(Error::invalid("lease is not renewable"))
    }

    /// Revokes a secret this engine issued (drops the database user, ...). Must be idempotent.
    async fn revoke(&self, _ctx: &EngineContext, _lease: &LeaseInfo) -> Result<(), Error> {
        Ok(())
    }

    /// Called when the mount is removed, after its leases are revoked.
    async fn cleanup(&self, _ctx: &EngineContext) -> Result<(), Error> {
        Ok(())
    }
}

/// Builds an engine instance for a mount of a given type.
pub type EngineFactory = fn(&MountInfo) -> Result<Arc<dyn Engine>, Error>;

/// The engines a core can mount, by type name.
#[derive(Clone, Default)]
pub struct EngineRegistry {
    factories: BTreeMap<String, EngineFactory>,
}

impl EngineRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, kind: &str, factory: EngineFactory) {
        self.factories.insert(kind.to_string(), factory);
    }

    pub fn build(&self, mount: &MountInfo) -> Result<Arc<dyn Engine>, Error> {
        let factory = self
            .factories
            .get(&mount.kind)
            .ok_or_else(|| Error::invalid(format!("unknown backend type: \"{}\"", mount.kind)))?;
        factory(mount)
    }

    pub fn knows(&self, kind: &str) -> bool {
        self.factories.contains_key(kind)
    }
}

/// Helpers engines share for reading typed fields out of request data.
pub mod fields {
    use serde_json::{Map, Value};

    use crate::error::Error;

    pub fn string(data: &Map<String, Value>, key: &str) -> Result<Option<String>, Error> {
        match data.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(Error::invalid(format!("field \"{key}\" must be a string"))),
        }
    }

    pub fn boolean(data: &Map<String, Value>, key: &str) -> Result<Option<bool>, Error> {
        match data.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => match s.as_str() {
                "true" | "1" | "t" | "T" | "TRUE" | "True" => Ok(Some(true)),
                "false" | "0" | "f" | "F" | "FALSE" | "False" => Ok(Some(false)),
                _ => Err(Error::invalid(format!("field \"{key}\" must be a boolean"))),
            },
            Some(Value::Number(n)) => Ok(Some(n.as_i64().unwrap_or(0) != 0)),
            Some(_) => Err(Error::invalid(format!("field \"{key}\" must be a boolean"))),
        }
    }

    pub fn integer(data: &Map<String, Value>, key: &str) -> Result<Option<i64>, Error> {
        match data.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                .map(Some)
                .ok_or_else(|| Error::invalid(format!("field \"{key}\" must be an integer"))),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| Error::invalid(format!("field \"{key}\" must be an integer"))),
            Some(_) => Err(Error::invalid(format!(
                "field \"{key}\" must be an integer"
            ))),
        }
    }

    /// A duration in seconds: an integer, or a Go duration string (`"30m"`, `"768h"`, `"1h30m"`).
    pub fn duration(data: &Map<String, Value>, key: &str) -> Result<Option<u64>, Error> {
        match data.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                .map(Some)
                .ok_or_else(|| Error::invalid(format!("field \"{key}\" must be a duration"))),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => {
                crate::duration::parse_seconds(s).map(Some).ok_or_else(|| {
                    Error::invalid(format!(
                        "field \"{key}\" must be a duration, got an invalid value"
                    ))
                })
            }
            Some(_) => Err(Error::invalid(format!(
                "field \"{key}\" must be a duration"
            ))),
        }
    }

    /// A list of strings: a JSON array, or a comma-separated string (as Vault accepts).
    pub fn strings(data: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, Error> {
        match data.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(
                s.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect(),
            )),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.trim().to_string()),
                    Value::Number(n) => Ok(n.to_string()),
                    _ => Err(Error::invalid(format!(
                        "field \"{key}\" must be a list of strings"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(Error::invalid(format!(
                "field \"{key}\" must be a list of strings"
            ))),
        }
    }

    /// A map of string to string (metadata); values that are not strings are rejected.
    pub fn string_map(
        data: &Map<String, Value>,
        key: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>, Error> {
        match data.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(Error::invalid(format!(
                        "field \"{key}\" must map strings to strings"
                    ))),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(_) => Err(Error::invalid(format!("field \"{key}\" must be a map"))),
        }
    }
}
