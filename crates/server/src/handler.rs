//! The HTTP front of the core: one function that turns an HTTP request into a
//! `ward_core::request::Request`, calls [`Core::handle_request`], and turns the result into
//! Vault's JSON envelope or `{"errors": [...]}`.
//!
//! This is the only place that knows HTTP methods, headers and status codes. It is a plain
//! async function rather than a router and middleware stack because every `/v1/` path goes
//! to the same place; the per-request path does only what it must (validate, parse, call,
//! serialise). The raw `sys/` endpoints that work while sealed are in [`crate::raw`].

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER,
};
use http::{Method, StatusCode};
use http_body_util::Full;
use serde_json::{Map, Value};
use ward_core::request::{ClientToken, Request, Response, Verb};
use ward_core::{Core, Error};

use crate::body::{self, BodyError};
use crate::uri;

/// The HTTP response type of the whole server.
pub type HttpResponse = http::Response<Full<Bytes>>;

const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const MERGE_PATCH: &str = "application/merge-patch+json";

/// Serves the `/v1/` API of one listener.
#[derive(Clone)]
pub struct Handler {
    core: Arc<Core>,
    /// The listener's `max_request_size` in bytes; `None` means no limit.
    max_request_size: Option<u64>,
    /// The web UI at `/ui/`, when enabled (`ui = true`).
    ui: Option<Arc<crate::ui::Ui>>,
    /// Serve `sys/metrics` to requests without a token (the listener's telemetry setting).
    unauthenticated_metrics: bool,
}

impl Handler {
    pub fn new(core: Arc<Core>, max_request_size: Option<u64>) -> Handler {
        Handler {
            core,
            max_request_size,
            ui: None,
            unauthenticated_metrics: false,
        }
    }

    /// Lets Prometheus scrape `sys/metrics` without a token on this listener. Such scrapes
    /// bypass `handle_request`, so they are not audited, as in Vault.
    pub fn with_unauthenticated_metrics(mut self, enabled: bool) -> Handler {
        self.unauthenticated_metrics = enabled;
        self
    }

    /// Serves the web UI at `/ui/` too; `secure_cookies` on TLS listeners.
    pub fn with_ui(mut self, secure_cookies: bool) -> Handler {
        self.ui = Some(Arc::new(crate::ui::Ui::new(
            self.core.clone(),
            secure_cookies,
        )));
        self
    }

    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Answers one request. `remote_address` is the client's IP, for token CIDR bindings.
    pub async fn handle<B>(
        &self,
        request: http::Request<B>,
        remote_address: Option<&str>,
    ) -> HttpResponse
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        // The path is copied for the log line only when debug logging is on. Only the path:
        // never the query, the headers or the body, which may carry tokens and secrets.
        let described = tracing::enabled!(tracing::Level::DEBUG)
            .then(|| (request.method().clone(), request.uri().path().to_string()));
        let response = self.route(request, remote_address).await;
        if let Some((method, path)) = described {
            tracing::debug!(
                %method,
                path,
                status = response.status().as_u16(),
                duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                "request"
            );
        }
        response
    }

    async fn route<B>(
        &self,
        request: http::Request<B>,
        remote_address: Option<&str>,
    ) -> HttpResponse
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if let Some(ui) = &self.ui {
            let path = request.uri().path();
            if path == "/ui" || path.starts_with("/ui/") {
                return ui.handle(request, remote_address).await;
            }
        }
        let Some(raw_path) = request.uri().path().strip_prefix("/v1/") else {
            return error_body(StatusCode::NOT_FOUND, &[]);
        };
        let path = match uri::validate_path(raw_path) {
            Ok(path) => path,
            Err(e) => return error_body(StatusCode::BAD_REQUEST, &[e.to_string()]),
        };
        if let Some(endpoint) = crate::raw::Endpoint::from_path(&path) {
            return crate::raw::handle(&self.core, endpoint, request, self.max_request_size).await;
        }
        let prometheus = path == "sys/metrics"
            && request
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|p| p == "format=prometheus"));
        if path == "sys/metrics"
            && self.unauthenticated_metrics
            && token(request.headers()).ok().flatten().is_none()
        {
            if self.core.is_sealed() {
                return core_error(Error::Sealed, "");
            }
            return if prometheus {
                prometheus_response(self.core.metrics_prometheus())
            } else {
                json_response(
                    StatusCode::OK,
                    self.core.metrics_json().to_string().into_bytes(),
                )
            };
        }
        match self.logical(request, path, remote_address).await {
            Ok(response) => response,
            Err(failure) => failure.into_response(),
        }
    }

    /// Everything but the raw endpoints: build the core request, call the core, answer.
    async fn logical<B>(
        &self,
        request: http::Request<B>,
        path: String,
        remote_address: Option<&str>,
    ) -> Result<HttpResponse, Failure>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = request.into_parts();
        let query = match parts.uri.query() {
            Some(q) => uri::parse_query(q).map_err(|e| Failure::bad_request(e.to_string()))?,
            None => Vec::new(),
        };
        let mut path = path;
        let verb = verb(&parts.method, &parts.headers, &query)?;
        if verb == Verb::List && !path.ends_with('/') {
            // Vault lists with a trailing slash, so policies on `p/` govern `LIST p`.
            path.push('/');
        }
        let token = token(&parts.headers)?;
        let wrap_ttl = wrap_ttl(&parts.headers)?;
        let data = match verb {
            Verb::Write | Verb::Patch => {
                let content_length =
                    header_str(&parts.headers, CONTENT_LENGTH).and_then(|v| v.parse().ok());
                let bytes = body::read(body, content_length, self.max_request_size).await?;
                body::parse_object(&bytes)?
            }
            Verb::Read | Verb::List | Verb::Delete => {
                query_data(query, verb == Verb::List || parts.method == Method::GET)
            }
        };
        let core_request = Request {
            id: ward_core::request::new_request_id(),
            verb,
            path,
            token,
            data,
            wrap_ttl,
            remote_address: remote_address.map(str::to_string),
        };
        let request_id = core_request.id.clone();
        let inject = injects_data_at_top_level(&core_request.path);
        let metrics = core_request.path == "sys/metrics";
        match self.core.handle_request(core_request).await {
            // Prometheus scrapes get the text format itself, not an envelope around it.
            Ok(response)
                if metrics
                    && response
                        .data
                        .as_ref()
                        .is_some_and(|d| d.contains_key("prometheus")) =>
            {
                let text = response
                    .data
                    .as_ref()
                    .and_then(|d| d.get("prometheus"))
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string();
                Ok(prometheus_response(text))
            }
            // The JSON form is the metrics object itself, as Vault serves it.
            Ok(response) if metrics => Ok(json_response(
                StatusCode::OK,
                Value::Object(response.data.unwrap_or_default())
                    .to_string()
                    .into_bytes(),
            )),
            Ok(response) if response.is_empty() => Ok(no_content()),
            Ok(response) => Ok(envelope_response(StatusCode::OK, response, inject, None)),
            Err(error) => Err(Failure::Core { error, request_id }),
        }
    }
}

/// A request that failed before or inside the core.
#[derive(Debug)]
pub(crate) enum Failure {
    Status(StatusCode, String),
    Core { error: Error, request_id: String },
}

impl Failure {
    fn bad_request(message: impl Into<String>) -> Failure {
        Failure::Status(StatusCode::BAD_REQUEST, message.into())
    }

    pub(crate) fn into_response(self) -> HttpResponse {
        match self {
            Failure::Status(status, message) => error_body(status, &[message]),
            Failure::Core { error, request_id } => core_error(error, &request_id),
        }
    }
}

impl From<BodyError> for Failure {
    fn from(e: BodyError) -> Failure {
        match e {
            BodyError::TooLarge => Failure::Status(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
            other => Failure::bad_request(other.to_string()),
        }
    }
}

/// A core error as the `{"errors": [...]}` body with its status.
pub(crate) fn core_error(error: Error, request_id: &str) -> HttpResponse {
    let status = status_of(&error);
    match &error {
        Error::Internal(detail) => tracing::error!(request_id, %detail, "internal error"),
        Error::Unavailable(detail) => tracing::warn!(request_id, %detail, "storage unavailable"),
        _ => {}
    }
    let messages = error.client_messages();
    match error {
        Error::NotFound { data: Some(data) } => {
            // A 404 that carries data (a KV v2 read of a deleted version) is the whole
            // envelope, as Vault sends it, plus the (empty) errors list.
            let response = Response {
                request_id: request_id.to_string(),
                data: Some(data),
                ..Response::default()
            };
            envelope_response(StatusCode::NOT_FOUND, response, false, Some(&messages))
        }
        Error::RateLimited {
            retry_after_seconds,
            ..
        } => {
            let mut response = error_body(status, &messages);
            if let Ok(value) = HeaderValue::from_str(&retry_after_seconds.to_string()) {
                response.headers_mut().insert(RETRY_AFTER, value);
            }
            response
        }
        _ => error_body(status, &messages),
    }
}

/// The one mapping from the core's error kinds to HTTP statuses (the API and the web UI).
pub(crate) fn status_of(error: &Error) -> StatusCode {
    match error {
        Error::Sealed => StatusCode::SERVICE_UNAVAILABLE,
        Error::PermissionDenied(_) => StatusCode::FORBIDDEN,
        Error::InvalidRequest(_) => StatusCode::BAD_REQUEST,
        Error::NotFound { .. } | Error::UnsupportedPath(_) => StatusCode::NOT_FOUND,
        Error::UnsupportedOperation(_) => StatusCode::METHOD_NOT_ALLOWED,
        Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Error::Internal(_) | Error::AuditFailed => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Prometheus text exposition format.
fn prometheus_response(text: String) -> HttpResponse {
    let mut response = http::Response::new(http_body_util::Full::new(Bytes::from(text)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

/// `{"errors": [...]}` with exactly `Content-Type: application/json` (hvac compares it).
pub(crate) fn error_body(status: StatusCode, messages: &[String]) -> HttpResponse {
    let body = serde_json::to_vec(&ErrorsRef { errors: messages })
        .unwrap_or_else(|_| b"{\"errors\":[]}".to_vec());
    json_response(status, body)
}

#[derive(serde::Serialize)]
struct ErrorsRef<'a> {
    errors: &'a [String],
}

pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> HttpResponse {
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, APPLICATION_JSON);
    headers.insert(CACHE_CONTROL, NO_STORE);
    response
}

pub(crate) fn no_content() -> HttpResponse {
    let mut response = http::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response.headers_mut().insert(CACHE_CONTROL, NO_STORE);
    response
}

/// The Vault envelope of a core response, with the data also copied to the top level for
/// the legacy `sys/` endpoints, and an `errors` list when given (404 with data).
fn envelope_response(
    status: StatusCode,
    response: Response,
    inject: bool,
    errors: Option<&[String]>,
) -> HttpResponse {
    let envelope = envelope(response);
    let body = if inject || errors.is_some() {
        let data = if inject { envelope.data.clone() } else { None };
        let mut object = match serde_json::to_value(&envelope) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        if let Some(data) = data {
            // The envelope's own fields win over data keys of the same name, as in Vault,
            // where they come later in the document and Go keeps the last.
            for (key, value) in data {
                object.entry(key).or_insert(value);
            }
        }
        if let Some(errors) = errors {
            object.insert("errors".into(), Value::from(errors.to_vec()));
        }
        serde_json::to_vec(&object)
    } else {
        serde_json::to_vec(&envelope)
    };
    match body {
        Ok(body) => json_response(status, body),
        Err(e) => core_error(
            Error::internal(format!("cannot serialise response: {e}")),
            "",
        ),
    }
}

/// Converts the core's response to the wire envelope.
pub(crate) fn envelope(response: Response) -> ward_api::ResponseEnvelope {
    let (lease_id, renewable, lease_duration) = match response.lease {
        Some(lease) => (lease.lease_id, lease.renewable, lease.lease_duration),
        None => (
            String::new(),
            false,
            response.lease_duration_hint.unwrap_or(0),
        ),
    };
    ward_api::ResponseEnvelope {
        request_id: response.request_id,
        lease_id,
        renewable,
        lease_duration,
        data: response.data,
        wrap_info: response.wrap_info.map(|w| ward_api::WrapInfo {
            token: w.token,
            accessor: w.accessor,
            ttl: w.ttl,
            creation_time: w.creation_time,
            creation_path: w.creation_path,
            wrapped_accessor: w.wrapped_accessor,
        }),
        warnings: if response.warnings.is_empty() {
            None
        } else {
            Some(response.warnings)
        },
        auth: response.auth.map(|a| ward_api::Auth {
            client_token: a.client_token,
            accessor: a.accessor,
            policies: a.policies,
            token_policies: a.token_policies,
            identity_policies: a.identity_policies,
            metadata: if a.metadata.is_empty() {
                None
            } else {
                Some(a.metadata)
            },
            lease_duration: a.lease_duration,
            renewable: a.renewable,
            entity_id: a.entity_id,
            token_type: a.token_type,
            orphan: a.orphan,
            mfa_requirement: None,
            num_uses: a.num_uses,
        }),
        mount_type: response.mount_type,
    }
}

/// Vault's `injectDataIntoTopRoutes`, with Go `ServeMux` semantics: an entry ending in `/` is
/// a prefix, any other entry matches exactly.
fn injects_data_at_top_level(path: &str) -> bool {
    const ROUTES: &[&str] = &[
        "sys/audit",
        "sys/audit/",
        "sys/audit-hash/",
        "sys/auth",
        "sys/auth/",
        "sys/config/cors",
        "sys/config/auditing/request-headers/",
        "sys/config/auditing/request-headers",
        "sys/capabilities",
        "sys/capabilities-accessor",
        "sys/capabilities-self",
        "sys/ha-status",
        "sys/key-status",
        "sys/mounts",
        "sys/mounts/",
        "sys/policy",
        "sys/policy/",
        "sys/rekey/backup",
        "sys/rekey/recovery-key-backup",
        "sys/remount",
        "sys/rotate",
        "sys/wrapping/wrap",
    ];
    if !path.starts_with("sys/") {
        return false;
    }
    ROUTES.iter().any(|route| {
        if route.ends_with('/') {
            path.starts_with(route)
        } else {
            path == *route
        }
    })
}

fn verb(method: &Method, headers: &HeaderMap, query: &[(String, String)]) -> Result<Verb, Failure> {
    Ok(match method.as_str() {
        "GET" => match query.iter().find(|(k, _)| k == "list") {
            Some((_, value))
                if parse_bool(value).ok_or_else(|| {
                    Failure::bad_request("invalid value for the list parameter")
                })? =>
            {
                Verb::List
            }
            _ => Verb::Read,
        },
        "LIST" => Verb::List,
        "POST" | "PUT" => Verb::Write,
        "DELETE" => Verb::Delete,
        "PATCH" => {
            let content_type = header_str(headers, CONTENT_TYPE).unwrap_or("");
            let media_type = content_type.split(';').next().unwrap_or("").trim();
            if !media_type.eq_ignore_ascii_case(MERGE_PATCH) {
                return Err(Failure::Status(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("PATCH requires Content-Type: {MERGE_PATCH}"),
                ));
            }
            Verb::Patch
        }
        _ => {
            return Err(Failure::Status(
                StatusCode::METHOD_NOT_ALLOWED,
                "unsupported operation".into(),
            ))
        }
    })
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// The client token: `X-Vault-Token`, else `Authorization: Bearer <token>`.
fn token(headers: &HeaderMap) -> Result<Option<ClientToken>, Failure> {
    let invalid = || Failure::bad_request("invalid characters in the token header");
    if let Some(value) = headers.get("x-vault-token") {
        let token = value.to_str().map_err(|_| invalid())?.trim();
        return Ok((!token.is_empty()).then(|| ClientToken::new(token)));
    }
    if let Some(value) = headers.get(AUTHORIZATION) {
        let value = value.to_str().map_err(|_| invalid())?;
        if let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        {
            let token = token.trim();
            return Ok((!token.is_empty()).then(|| ClientToken::new(token)));
        }
    }
    Ok(None)
}

fn wrap_ttl(headers: &HeaderMap) -> Result<Option<u64>, Failure> {
    let Some(value) = headers.get("x-vault-wrap-ttl") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(ward_core::duration::parse_seconds)
        .map(Some)
        .ok_or_else(|| {
            Failure::bad_request("invalid X-Vault-Wrap-TTL: use seconds or a duration such as 15m")
        })
}

/// Query parameters as request data, as Vault's `parseQuery`: one value is a string, several
/// are a list; `help` is reserved and `list` is dropped for listings.
fn query_data(query: Vec<(String, String)>, drop_list: bool) -> Map<String, Value> {
    let mut data = Map::new();
    for (key, value) in query {
        if key == "help" || (drop_list && key == "list") {
            continue;
        }
        match data.get_mut(&key) {
            Some(Value::Array(values)) => values.push(Value::String(value)),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, Value::String(value)]);
            }
            None => {
                data.insert(key, Value::String(value));
            }
        }
    }
    data
}

fn header_str(headers: &HeaderMap, name: http::header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_injection_follows_servemux_rules() {
        for path in [
            "sys/mounts",
            "sys/mounts/secret/tune",
            "sys/policy/foo",
            "sys/capabilities-self",
            "sys/rotate",
            "sys/audit-hash/file",
        ] {
            assert!(injects_data_at_top_level(path), "{path}");
        }
        for path in [
            "sys/mountsx",
            "sys/rotate/keyring",
            "sys/policies/acl/foo",
            "secret/sys/mounts",
            "sys/capabilities-selfish",
        ] {
            assert!(!injects_data_at_top_level(path), "{path}");
        }
    }

    #[test]
    fn query_values_become_strings_or_lists() {
        let data = query_data(
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "2".into()),
                ("b".into(), "3".into()),
                ("list".into(), "true".into()),
                ("help".into(), "1".into()),
            ],
            true,
        );
        assert_eq!(
            Value::Object(data),
            serde_json::json!({"a": "1", "b": ["2", "3"]})
        );
    }
}
