//! The request and response the core speaks: what the server builds from HTTP and what it
//! turns back into Vault's JSON envelope. No HTTP types here, and no wire format: the server
//! owns the conversion.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// The verb of a request as it arrives. Writes are split into create and update by the core's
/// existence check before authorisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Read,
    List,
    Write,
    Patch,
    Delete,
}

/// A client token as received: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientToken(Zeroizing<String>);

impl ClientToken {
    pub fn new(token: impl Into<String>) -> Self {
        ClientToken(Zeroizing::new(token.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientToken(***)")
    }
}

#[derive(Clone)]
pub struct Request {
    /// A UUID, echoed as `request_id`.
    pub id: String,
    pub verb: Verb,
    /// Relative to `/v1/`, no leading slash, already validated by the server (no `..`, no `//`).
    pub path: String,
    pub token: Option<ClientToken>,
    /// The JSON body for writes; the query parameters for reads and lists.
    pub data: Map<String, Value>,
    /// Seconds requested with `X-Vault-Wrap-TTL`.
    pub wrap_ttl: Option<u64>,
    pub remote_address: Option<String>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("id", &self.id)
            .field("verb", &self.verb)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Request {
    pub fn new(verb: Verb, path: impl Into<String>) -> Self {
        Request {
            id: new_request_id(),
            verb,
            path: path.into(),
            token: None,
            data: Map::new(),
            wrap_ttl: None,
            remote_address: None,
        }
    }

    pub fn with_token(mut self, token: &str) -> Self {
        self.token = Some(ClientToken::new(token));
        self
    }

    pub fn with_data(mut self, data: Value) -> Self {
        if let Value::Object(map) = data {
            self.data = map;
        }
        self
    }
}

/// A random (version 4) UUID for a request id, from the thread's user-space generator.
///
/// Request ids are not secrets, so they need not cost a `getrandom` system call per request
/// as `Uuid::new_v4` does; keys and tokens still come from the OS generator.
pub fn new_request_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

/// A lease as the client sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseResponse {
    pub lease_id: String,
    pub lease_duration: u64,
    pub renewable: bool,
}

/// The `auth` block of a login or token creation.
#[derive(Clone, PartialEq)]
pub struct AuthResponse {
    pub client_token: String,
    pub accessor: String,
    pub policies: Vec<String>,
    pub token_policies: Vec<String>,
    pub identity_policies: Vec<String>,
    pub metadata: BTreeMap<String, String>,
    pub lease_duration: u64,
    pub renewable: bool,
    pub entity_id: String,
    pub token_type: String,
    pub orphan: bool,
    pub num_uses: u64,
}

impl fmt::Debug for AuthResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthResponse")
            .field("client_token", &"***")
            .field("policies", &self.policies)
            .field("lease_duration", &self.lease_duration)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, PartialEq)]
pub struct WrapInfo {
    pub token: String,
    pub accessor: String,
    pub ttl: u64,
    /// RFC 3339 with nanoseconds.
    pub creation_time: String,
    pub creation_path: String,
    pub wrapped_accessor: String,
}

impl fmt::Debug for WrapInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrapInfo")
            .field("token", &"***")
            .field("creation_path", &self.creation_path)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Default, PartialEq)]
pub struct Response {
    pub request_id: String,
    pub data: Option<Map<String, Value>>,
    pub lease: Option<LeaseResponse>,
    pub auth: Option<AuthResponse>,
    pub wrap_info: Option<WrapInfo>,
    pub warnings: Vec<String>,
    /// `lease_duration` shown without a lease (KV v1 refresh hint).
    pub lease_duration_hint: Option<u64>,
    /// The mount type that served the request (`kv`, `system`, `token`, ...).
    pub mount_type: String,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("request_id", &self.request_id)
            .field("has_data", &self.data.is_some())
            .field("lease", &self.lease)
            .field("auth", &self.auth)
            .field("wrap_info", &self.wrap_info)
            .finish_non_exhaustive()
    }
}

impl Response {
    /// True when the response carries nothing, which HTTP answers with 204.
    pub fn is_empty(&self) -> bool {
        self.data.is_none()
            && self.lease.is_none()
            && self.auth.is_none()
            && self.wrap_info.is_none()
            && self.warnings.is_empty()
    }

    pub fn with_data(data: Map<String, Value>) -> Self {
        Response {
            data: Some(data),
            ..Self::default()
        }
    }
}

/// Raw status of the seal, as `sys/seal-status` and `sys/unseal` report it.
#[derive(Debug, Clone, PartialEq)]
pub struct SealStatus {
    pub initialized: bool,
    pub sealed: bool,
    pub threshold: u32,
    pub shares: u32,
    pub progress: u32,
    pub nonce: String,
    pub cluster_name: String,
    pub cluster_id: String,
    pub storage_type: String,
}

/// What `sys/init` returns. The keys and the root token are secrets: never logged.
#[derive(Clone)]
pub struct InitResult {
    pub keys: Vec<Zeroizing<Vec<u8>>>,
    pub root_token: Zeroizing<String>,
}

impl fmt::Debug for InitResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InitResult({} keys, root token ***)", self.keys.len())
    }
}

/// Raw `sys/health` facts; the server picks the status code from the query flags.
#[derive(Debug, Clone, PartialEq)]
pub struct Health {
    pub initialized: bool,
    pub sealed: bool,
    pub standby: bool,
    pub server_time_utc: i64,
    pub cluster_name: String,
    pub cluster_id: String,
}
