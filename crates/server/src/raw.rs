//! The raw `sys/` endpoints: `sys/init`, `sys/seal-status`, `sys/unseal`, `sys/health`,
//! `sys/leader`, and (in `operator`) `sys/generate-root/*` and `sys/rekey/*`.
//!
//! They answer while the core is sealed and without a token, with a bare JSON object instead
//! of the envelope, so they call the core's lifecycle methods directly instead of
//! `handle_request`. Bodies are decoded by hand so that a malformed field never echoes a
//! value (a key share) back in an error message.

use std::sync::Arc;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;
use serde::Serialize;
use serde_json::{Map, Value};
use ward_api::{HealthResponse, InitResponse, InitStatus, LeaderResponse, SealStatusResponse};
use ward_core::request::SealStatus;
use ward_core::Core;

use crate::body;
use crate::handler::{error_body, json_response, parse_bool, Failure, HttpResponse};
use crate::uri;

/// Set at build time by release tooling; empty when unknown.
const BUILD_DATE: &str = match option_env!("WARD_BUILD_DATE") {
    Some(date) => date,
    None => "",
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Init,
    SealStatus,
    Unseal,
    Health,
    Leader,
    GenerateRoot(crate::operator::Endpoint),
}

impl Endpoint {
    /// The raw endpoint at this (validated) path, if any. Exact matches, as Vault's mux.
    pub(crate) fn from_path(path: &str) -> Option<Endpoint> {
        Some(match path {
            "sys/init" => Endpoint::Init,
            "sys/seal-status" => Endpoint::SealStatus,
            "sys/unseal" => Endpoint::Unseal,
            "sys/health" => Endpoint::Health,
            "sys/leader" => Endpoint::Leader,
            other => Endpoint::GenerateRoot(crate::operator::Endpoint::from_path(other)?),
        })
    }
}

pub(crate) async fn handle<B>(
    core: &Arc<Core>,
    endpoint: Endpoint,
    request: http::Request<B>,
    limit: Option<u64>,
) -> HttpResponse
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let method = request.method().clone();
    let result = match (endpoint, &method) {
        (Endpoint::Init, &Method::GET) => init_status(core).await,
        (Endpoint::Init, &Method::PUT | &Method::POST) => match read_object(request, limit).await {
            Ok(data) => init(core, &data).await,
            Err(failure) => Err(failure),
        },
        (Endpoint::SealStatus, &Method::GET) => seal_status(core).await,
        (Endpoint::Unseal, &Method::PUT | &Method::POST) => match read_object(request, limit).await
        {
            Ok(data) => unseal(core, &data).await,
            Err(failure) => Err(failure),
        },
        (Endpoint::Health, &Method::GET | &Method::HEAD) => {
            health(core, request.uri().query()).await
        }
        (Endpoint::Leader, &Method::GET) => Ok(leader()),
        (Endpoint::GenerateRoot(op), _) => crate::operator::handle(core, op, request, limit).await,
        _ => return error_body(StatusCode::METHOD_NOT_ALLOWED, &[]),
    };
    let mut response = result.unwrap_or_else(Failure::into_response);
    if method == Method::HEAD {
        *response.body_mut() = Full::new(Bytes::new());
    }
    response
}

pub(crate) async fn read_object<B>(
    request: http::Request<B>,
    limit: Option<u64>,
) -> Result<Map<String, Value>, Failure>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let content_length = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let bytes = body::read(request.into_body(), content_length, limit).await?;
    Ok(body::parse_object(&bytes)?)
}

pub(crate) fn ok_json<T: Serialize>(
    status: StatusCode,
    value: &T,
) -> Result<HttpResponse, Failure> {
    let body = serde_json::to_vec(value)
        .map_err(|e| core_failure(ward_core::Error::internal(e.to_string())))?;
    Ok(json_response(status, body))
}

pub(crate) fn core_failure(error: ward_core::Error) -> Failure {
    Failure::Core {
        error,
        request_id: String::new(),
    }
}

pub(crate) fn bad_request(message: impl Into<String>) -> Failure {
    Failure::Status(StatusCode::BAD_REQUEST, message.into())
}

async fn init_status(core: &Core) -> Result<HttpResponse, Failure> {
    let initialized = core.is_initialized().await.map_err(core_failure)?;
    ok_json(StatusCode::OK, &InitStatus { initialized })
}

async fn init(core: &Core, data: &Map<String, Value>) -> Result<HttpResponse, Failure> {
    for unsupported in ["pgp_keys", "root_token_pgp_key", "recovery_pgp_keys"] {
        let given = match data.get(unsupported) {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            Some(_) => true,
        };
        if given {
            return Err(bad_request(format!(
                "{unsupported} is not supported by Ward"
            )));
        }
    }
    let shares = count(data, "secret_shares")?;
    let threshold = count(data, "secret_threshold")?;
    let result = core.init(shares, threshold).await.map_err(core_failure)?;
    tracing::info!(shares, threshold, "vault initialized");
    let response = InitResponse {
        keys: result
            .keys
            .iter()
            .map(|k| hex::encode(k.as_slice()))
            .collect(),
        keys_base64: result
            .keys
            .iter()
            .map(|k| STANDARD.encode(k.as_slice()))
            .collect(),
        root_token: result.root_token.to_string(),
    };
    ok_json(StatusCode::OK, &response)
}

/// A non-negative integer field (absent: 0, which the core refuses with its own message).
fn count(data: &Map<String, Value>, key: &str) -> Result<u32, Failure> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(value) => value
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| bad_request(format!("{key} must be a non-negative integer"))),
    }
}

async fn seal_status(core: &Core) -> Result<HttpResponse, Failure> {
    let status = core.seal_status().await.map_err(core_failure)?;
    ok_json(StatusCode::OK, &seal_status_body(status))
}

pub(crate) fn seal_status_body(status: SealStatus) -> SealStatusResponse {
    SealStatusResponse {
        kind: "shamir".into(),
        initialized: status.initialized,
        sealed: status.sealed,
        t: status.threshold,
        n: status.shares,
        progress: status.progress,
        nonce: status.nonce,
        version: ward_api::server_version(),
        build_date: BUILD_DATE.into(),
        migration: false,
        cluster_name: status.cluster_name,
        cluster_id: status.cluster_id,
        recovery_seal: false,
        storage_type: status.storage_type,
    }
}

async fn unseal(core: &Core, data: &Map<String, Value>) -> Result<HttpResponse, Failure> {
    let reset = match data.get("reset") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad_request("'reset' must be a boolean")),
    };
    if reset {
        core.unseal_reset();
        return seal_status(core).await;
    }
    let key = match data.get("key") {
        Some(Value::String(key)) if !key.trim().is_empty() => key.trim(),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            return Err(bad_request(
                "'key' must be specified in request body as JSON, or 'reset' set to true",
            ))
        }
        Some(_) => return Err(bad_request("'key' must be a string")),
    };
    let share =
        decode_key(key).ok_or_else(|| bad_request("'key' must be a valid hex or base64 string"))?;
    let status = core.unseal(share).await.map_err(core_failure)?;
    ok_json(StatusCode::OK, &seal_status_body(status))
}

/// A key share as hex (tried first, as Vault does) or base64 (standard or URL-safe, padded
/// or not).
pub(crate) fn decode_key(key: &str) -> Option<Vec<u8>> {
    hex::decode(key)
        .ok()
        .or_else(|| STANDARD.decode(key).ok())
        .or_else(|| URL_SAFE.decode(key).ok())
        .or_else(|| STANDARD_NO_PAD.decode(key).ok())
        .or_else(|| URL_SAFE_NO_PAD.decode(key).ok())
        .filter(|bytes| !bytes.is_empty())
}

/// The status codes `sys/health` answers with, after the query's overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HealthCodes {
    standby_ok: bool,
    perf_standby_ok: bool,
    active: StatusCode,
    standby: StatusCode,
    dr_secondary: StatusCode,
    performance_standby: StatusCode,
    sealed: StatusCode,
    uninit: StatusCode,
}

impl HealthCodes {
    fn from_query(query: Option<&str>) -> Result<HealthCodes, Failure> {
        let code = |n: u16| StatusCode::from_u16(n).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut codes = HealthCodes {
            standby_ok: false,
            perf_standby_ok: false,
            active: StatusCode::OK,
            standby: code(429),
            dr_secondary: code(472),
            performance_standby: code(473),
            sealed: StatusCode::SERVICE_UNAVAILABLE,
            uninit: StatusCode::NOT_IMPLEMENTED,
        };
        let pairs =
            uri::parse_query(query.unwrap_or("")).map_err(|e| bad_request(e.to_string()))?;
        for (key, value) in pairs {
            let flag = || {
                parse_bool(&value)
                    .ok_or_else(|| bad_request(format!("bad value for {key} parameter")))
            };
            let status = || {
                value
                    .parse::<u16>()
                    .ok()
                    .and_then(|n| StatusCode::from_u16(n).ok())
                    .ok_or_else(|| {
                        bad_request(format!("unable to parse {key} parameter as a status code"))
                    })
            };
            match key.as_str() {
                "standbyok" => codes.standby_ok = flag()?,
                "perfstandbyok" => codes.perf_standby_ok = flag()?,
                "activecode" => codes.active = status()?,
                "standbycode" => codes.standby = status()?,
                "drsecondarycode" => codes.dr_secondary = status()?,
                "performancestandbycode" => codes.performance_standby = status()?,
                "sealedcode" => codes.sealed = status()?,
                "uninitcode" => codes.uninit = status()?,
                // Newer Vault flags with no meaning for a single node; accepted and checked.
                "haunhealthycode" | "removedcode" => {
                    status()?;
                }
                _ => {}
            }
        }
        Ok(codes)
    }

    fn pick(&self, health: &ward_core::request::Health) -> StatusCode {
        if !health.initialized {
            self.uninit
        } else if health.sealed {
            self.sealed
        } else if health.standby && !self.standby_ok {
            self.standby
        } else {
            self.active
        }
    }
}

async fn health(core: &Core, query: Option<&str>) -> Result<HttpResponse, Failure> {
    let codes = HealthCodes::from_query(query)?;
    let health = core.health().await.map_err(core_failure)?;
    let status = codes.pick(&health);
    let body = HealthResponse {
        initialized: health.initialized,
        sealed: health.sealed,
        standby: health.standby,
        performance_standby: false,
        replication_performance_mode: "disabled".into(),
        replication_dr_mode: "disabled".into(),
        server_time_utc: health.server_time_utc,
        version: ward_api::server_version(),
        enterprise: false,
        cluster_name: health.cluster_name,
        cluster_id: health.cluster_id,
        echo_duration_ms: 0,
        clock_skew_ms: 0,
        replication_primary_canary_age_ms: 0,
    };
    ok_json(status, &body)
}

fn leader() -> HttpResponse {
    let body = LeaderResponse {
        ha_enabled: false,
        is_self: false,
        active_time: ward_api::GO_ZERO_TIME.into(),
        leader_address: String::new(),
        leader_cluster_address: String::new(),
        performance_standby: false,
        performance_standby_last_remote_wal: 0,
    };
    ok_json(StatusCode::OK, &body).unwrap_or_else(|f| f.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_decode_from_hex_and_every_base64_alphabet() {
        let bytes = vec![0xfb, 0xff, 0x01, 0x02];
        assert_eq!(decode_key("fbff0102"), Some(bytes.clone()));
        assert_eq!(decode_key("+/8BAg=="), Some(bytes.clone()));
        assert_eq!(decode_key("-_8BAg=="), Some(bytes.clone()));
        assert_eq!(decode_key("+/8BAg"), Some(bytes.clone()));
        assert_eq!(decode_key("-_8BAg"), Some(bytes));
        assert_eq!(decode_key("not a key!"), None);
    }

    #[test]
    fn health_codes_follow_the_query() {
        let health = |initialized, sealed, standby| ward_core::request::Health {
            initialized,
            sealed,
            standby,
            server_time_utc: 0,
            cluster_name: String::new(),
            cluster_id: String::new(),
        };
        let defaults = HealthCodes::from_query(None).expect("defaults");
        assert_eq!(defaults.pick(&health(true, false, false)), StatusCode::OK);
        assert_eq!(defaults.pick(&health(true, false, true)).as_u16(), 429);
        assert_eq!(defaults.pick(&health(true, true, false)).as_u16(), 503);
        assert_eq!(defaults.pick(&health(false, true, false)).as_u16(), 501);
        let ok = HealthCodes::from_query(Some("standbyok=true")).expect("valid");
        assert_eq!(ok.pick(&health(true, false, true)), StatusCode::OK);
        let custom =
            HealthCodes::from_query(Some("standbycode=299&activecode=204")).expect("valid");
        assert_eq!(custom.pick(&health(true, false, true)).as_u16(), 299);
        assert_eq!(custom.pick(&health(true, false, false)).as_u16(), 204);
        assert!(HealthCodes::from_query(Some("standbyok")).is_err());
        assert!(HealthCodes::from_query(Some("sealedcode=abc")).is_err());
        assert!(HealthCodes::from_query(Some("sealedcode=99")).is_err());
    }
}
