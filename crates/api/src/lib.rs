//! Wire types of Ward's Vault-compatible HTTP API, shared by the server, the client and the
//! agent.
//!
//! Only this crate knows the JSON shapes, with exactly Vault's field names (Vault 1.16,
//! `sdk/logical/translate_response.go` and `http/sys_*.go`): the response envelope and its
//! `auth` and `wrap_info` blocks, the error body, and the raw bodies of the endpoints that
//! answer without the envelope (`sys/init`, `sys/seal-status`, `sys/unseal`, `sys/health`,
//! `sys/leader`). What the fields mean, and HTTP status codes, are the server's business.
//!
//! Every type both serialises and deserialises, so that the client reads what the server
//! writes. Deserialisation is lenient about missing fields (`#[serde(default)]`) because a
//! real Vault or an older Ward may leave some out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The Vault API version Ward follows, as reported in `version` fields. Clients such as the
/// Terraform provider gate features on it, so it must parse as a Vault semantic version;
/// Ward's own version rides in the build metadata.
pub const VAULT_API_VERSION: &str = "1.16.0";

/// The version string reported by `sys/seal-status` and `sys/health`: `1.16.0+ward.<version>`.
pub fn server_version() -> String {
    format!("{VAULT_API_VERSION}+ward.{}", env!("CARGO_PKG_VERSION"))
}

/// The envelope of every logical response (Vault's `HTTPResponse`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResponseEnvelope {
    pub request_id: String,
    pub lease_id: String,
    pub renewable: bool,
    pub lease_duration: u64,
    pub data: Option<Map<String, Value>>,
    pub wrap_info: Option<WrapInfo>,
    pub warnings: Option<Vec<String>>,
    pub auth: Option<Auth>,
    pub mount_type: String,
}

/// The `auth` block of a login or token creation (Vault's `HTTPAuth`).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Auth {
    pub client_token: String,
    pub accessor: String,
    pub policies: Vec<String>,
    pub token_policies: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identity_policies: Vec<String>,
    /// `null` when empty, as Go's nil map.
    pub metadata: Option<BTreeMap<String, String>>,
    pub lease_duration: u64,
    pub renewable: bool,
    pub entity_id: String,
    pub token_type: String,
    pub orphan: bool,
    pub mfa_requirement: Option<Value>,
    pub num_uses: u64,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("client_token", &"***")
            .field("policies", &self.policies)
            .field("lease_duration", &self.lease_duration)
            .finish_non_exhaustive()
    }
}

/// The `wrap_info` block of a wrapped response (Vault's `HTTPWrapInfo`).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WrapInfo {
    pub token: String,
    pub accessor: String,
    pub ttl: u64,
    /// RFC 3339 with nanoseconds.
    pub creation_time: String,
    pub creation_path: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub wrapped_accessor: String,
}

impl std::fmt::Debug for WrapInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrapInfo")
            .field("token", &"***")
            .field("ttl", &self.ttl)
            .field("creation_path", &self.creation_path)
            .finish_non_exhaustive()
    }
}

/// The body of every error response: `{"errors": [...]}`, possibly empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ErrorBody {
    pub errors: Vec<String>,
}

/// `PUT sys/init` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InitRequest {
    pub secret_shares: u32,
    pub secret_threshold: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pgp_keys: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub root_token_pgp_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_shares: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_shares: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_threshold: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recovery_pgp_keys: Vec<String>,
}

/// `PUT sys/init` response. Holds every key share and the root token: never logged.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InitResponse {
    pub keys: Vec<String>,
    pub keys_base64: Vec<String>,
    pub root_token: String,
}

impl std::fmt::Debug for InitResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "InitResponse({} keys, root token ***)", self.keys.len())
    }
}

/// `GET sys/init` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InitStatus {
    pub initialized: bool,
}

/// `PUT sys/unseal` request: one key share (hex or base64), or `reset`.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct UnsealRequest {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub reset: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub migrate: bool,
}

impl std::fmt::Debug for UnsealRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnsealRequest")
            .field("key", &"***")
            .field("reset", &self.reset)
            .finish_non_exhaustive()
    }
}

/// `GET sys/seal-status` and `PUT sys/unseal` response (Vault's `SealStatusResponse`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SealStatusResponse {
    #[serde(rename = "type")]
    pub kind: String,
    pub initialized: bool,
    pub sealed: bool,
    pub t: u32,
    pub n: u32,
    pub progress: u32,
    pub nonce: String,
    pub version: String,
    pub build_date: String,
    pub migration: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster_id: String,
    pub recovery_seal: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub storage_type: String,
}

/// `GET sys/health` response (Vault's `HealthResponse`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HealthResponse {
    pub initialized: bool,
    pub sealed: bool,
    pub standby: bool,
    pub performance_standby: bool,
    pub replication_performance_mode: String,
    pub replication_dr_mode: String,
    pub server_time_utc: i64,
    pub version: String,
    pub enterprise: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cluster_id: String,
    pub echo_duration_ms: i64,
    pub clock_skew_ms: i64,
    pub replication_primary_canary_age_ms: i64,
}

/// `GET sys/leader` response (Vault's `LeaderResponse`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LeaderResponse {
    pub ha_enabled: bool,
    pub is_self: bool,
    /// RFC 3339; Go's zero time when HA is off.
    pub active_time: String,
    pub leader_address: String,
    pub leader_cluster_address: String,
    pub performance_standby: bool,
    pub performance_standby_last_remote_wal: u64,
}

/// Go's zero `time.Time`, which Vault prints for `active_time` when HA is off.
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn envelope_has_every_vault_field_with_nulls() {
        let value = serde_json::to_value(ResponseEnvelope::default()).expect("serialises");
        assert_eq!(
            value,
            json!({
                "request_id": "", "lease_id": "", "renewable": false, "lease_duration": 0,
                "data": null, "wrap_info": null, "warnings": null, "auth": null, "mount_type": ""
            })
        );
    }

    #[test]
    fn seal_status_omits_cluster_fields_while_sealed() {
        let status = SealStatusResponse {
            kind: "shamir".into(),
            sealed: true,
            ..Default::default()
        };
        let value = serde_json::to_value(status).expect("serialises");
        assert_eq!(value["type"], "shamir");
        assert!(value.get("cluster_name").is_none());
        assert!(value.get("cluster_id").is_none());
        assert_eq!(value["recovery_seal"], false);
    }

    #[test]
    fn secrets_are_not_debug_printed() {
        let auth = Auth {
            client_token: "hvs.secret".into(),
            ..Default::default()
        };
        assert!(!format!("{auth:?}").contains("hvs.secret"));
        let init = InitResponse {
            root_token: "hvs.root".into(),
            keys: vec!["k".into()],
            ..Default::default()
        };
        assert!(!format!("{init:?}").contains("hvs.root"));
        let unseal = UnsealRequest {
            key: "abcd".into(),
            ..Default::default()
        };
        assert!(!format!("{unseal:?}").contains("abcd"));
    }

    #[test]
    fn version_is_a_vault_semver_with_ward_metadata() {
        assert!(server_version().starts_with("1.16.0+ward."));
    }
}
