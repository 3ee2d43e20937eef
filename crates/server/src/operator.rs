//! `sys/generate-root/*` and `sys/rekey/*`: raw endpoints driven by unseal key holders.
//!
//! Like Vault's, they need no token (a quorum of key shares is the authority), answer with a
//! bare JSON object, and decode key shares without echoing them in errors. Unlike Vault's,
//! cancelling an attempt needs its nonce (`?nonce=` or a `nonce` body field), so nobody
//! outside the attempt can cancel it.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{json, Map, Value};
use ward_core::operator::{GenerateRootStatus, RekeyStatus};
use ward_core::Core;

use crate::handler::{error_body, no_content, Failure, HttpResponse};
use crate::raw::{bad_request, core_failure, decode_key, ok_json, read_object};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    RootAttempt,
    RootUpdate,
    RekeyInit,
    RekeyUpdate,
    RekeyVerify,
}

impl Endpoint {
    pub(crate) fn from_path(path: &str) -> Option<Endpoint> {
        Some(match path {
            "sys/generate-root/attempt" => Endpoint::RootAttempt,
            "sys/generate-root/update" => Endpoint::RootUpdate,
            "sys/rekey/init" => Endpoint::RekeyInit,
            "sys/rekey/update" => Endpoint::RekeyUpdate,
            "sys/rekey/verify" => Endpoint::RekeyVerify,
            _ => return None,
        })
    }
}

pub(crate) async fn handle<B>(
    core: &Arc<Core>,
    endpoint: Endpoint,
    request: http::Request<B>,
    limit: Option<u64>,
) -> Result<HttpResponse, Failure>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let method = request.method().clone();
    let query_nonce = query_value(request.uri().query(), "nonce");
    match (endpoint, method) {
        (Endpoint::RootAttempt, Method::GET) => root(core.generate_root_status().await),
        (Endpoint::RootAttempt, Method::PUT | Method::POST) => {
            let data = read_object(request, limit).await?;
            if string(&data, "pgp_key")?.is_some_and(|k| !k.is_empty()) {
                return Err(bad_request(
                    "PGP-encrypted root tokens are not supported; use an OTP",
                ));
            }
            root(
                core.generate_root_start(string(&data, "otp")?.filter(|o| !o.is_empty()))
                    .await,
            )
        }
        (Endpoint::RootAttempt, Method::DELETE) => {
            let nonce = nonce(query_nonce, request, limit).await?;
            core.generate_root_cancel(&nonce)
                .await
                .map_err(core_failure)?;
            Ok(no_content())
        }
        (Endpoint::RootUpdate, Method::PUT | Method::POST) => {
            let data = read_object(request, limit).await?;
            let (share, nonce) = share_and_nonce(&data)?;
            root(core.generate_root_update(share, &nonce).await)
        }
        (Endpoint::RekeyInit, Method::GET) => rekey(core.rekey_status().await),
        (Endpoint::RekeyInit, Method::PUT | Method::POST) => {
            let data = read_object(request, limit).await?;
            if data
                .get("pgp_keys")
                .is_some_and(|v| !v.is_null() && v != &json!([]))
            {
                return Err(bad_request("PGP-encrypted key shares are not supported"));
            }
            if data.get("backup").and_then(Value::as_bool).unwrap_or(false) {
                return Err(bad_request(
                    "key backup is not supported (it needs PGP keys)",
                ));
            }
            let shares = number(&data, "secret_shares")?;
            let threshold = number(&data, "secret_threshold")?;
            let verify = data
                .get("require_verification")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            rekey(core.rekey_start(shares, threshold, verify).await)
        }
        (Endpoint::RekeyInit, Method::DELETE) | (Endpoint::RekeyVerify, Method::DELETE) => {
            let nonce = nonce(query_nonce, request, limit).await?;
            core.rekey_cancel(&nonce).await.map_err(core_failure)?;
            Ok(no_content())
        }
        (Endpoint::RekeyUpdate, Method::PUT | Method::POST) => {
            let data = read_object(request, limit).await?;
            let (share, nonce) = share_and_nonce(&data)?;
            rekey(core.rekey_update(share, &nonce).await)
        }
        (Endpoint::RekeyVerify, Method::GET) => rekey(core.rekey_status().await),
        (Endpoint::RekeyVerify, Method::PUT | Method::POST) => {
            let data = read_object(request, limit).await?;
            let (share, nonce) = share_and_nonce(&data)?;
            rekey(core.rekey_verify(share, &nonce).await)
        }
        _ => Ok(error_body(StatusCode::METHOD_NOT_ALLOWED, &[])),
    }
}

fn root(result: Result<GenerateRootStatus, ward_core::Error>) -> Result<HttpResponse, Failure> {
    let status = result.map_err(core_failure)?;
    ok_json(
        StatusCode::OK,
        &json!({
            "started": status.started,
            "nonce": status.nonce,
            "progress": status.progress,
            "required": status.required,
            "complete": status.complete,
            "encoded_token": status.encoded_token,
            "encoded_root_token": status.encoded_token,
            "pgp_fingerprint": "",
            "otp": status.otp,
            "otp_length": status.otp_length,
        }),
    )
}

fn rekey(result: Result<RekeyStatus, ward_core::Error>) -> Result<HttpResponse, Failure> {
    let status = result.map_err(core_failure)?;
    let mut body = json!({
        "nonce": status.nonce,
        "started": status.started,
        "t": status.new_threshold,
        "n": status.new_shares,
        "progress": status.progress,
        "required": status.required,
        "pgp_fingerprints": null,
        "backup": false,
        "verification_required": status.verification_required,
        "complete": status.complete,
    });
    if !status.keys.is_empty() {
        body["keys"] = json!(status
            .keys
            .iter()
            .map(|k| hex::encode(k.as_slice()))
            .collect::<Vec<_>>());
        body["keys_base64"] = json!(status
            .keys
            .iter()
            .map(|k| STANDARD.encode(k.as_slice()))
            .collect::<Vec<_>>());
    }
    if !status.verification_nonce.is_empty() {
        body["verification_nonce"] = json!(status.verification_nonce);
        body["verification_progress"] = json!(status.verification_progress);
    }
    ok_json(StatusCode::OK, &body)
}

fn string(data: &Map<String, Value>, key: &str) -> Result<Option<String>, Failure> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(bad_request(format!("'{key}' must be a string"))),
    }
}

fn number(data: &Map<String, Value>, key: &str) -> Result<u32, Failure> {
    data.get(key)
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| bad_request(format!("'{key}' must be a positive integer")))
}

fn share_and_nonce(data: &Map<String, Value>) -> Result<(Vec<u8>, String), Failure> {
    let key = string(data, "key")?
        .filter(|k| !k.is_empty())
        .ok_or_else(|| bad_request("'key' must be specified"))?;
    let share = decode_key(&key)
        .ok_or_else(|| bad_request("'key' must be a valid hex or base64 string"))?;
    let nonce = string(data, "nonce")?.unwrap_or_default();
    Ok((share, nonce))
}

async fn nonce<B>(
    from_query: Option<String>,
    request: http::Request<B>,
    limit: Option<u64>,
) -> Result<String, Failure>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if let Some(nonce) = from_query {
        return Ok(nonce);
    }
    let data = read_object(request, limit).await?;
    Ok(string(&data, "nonce")?.unwrap_or_default())
}

fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name && !v.is_empty()).then(|| v.to_string())
    })
}
