//! HTTP plumbing shared by the agent's two listeners (the API proxy and the egress proxy): body
//! types, JSON error responses, hop-by-hop header removal, the pooled upstream client, and the
//! accept loop that serves a hyper service on TCP, TLS or a Unix socket (refusing requests
//! with both `Content-Length` and `Transfer-Encoding` before the service sees them).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::request_framing::{InspectedIo, Verdicts};
use crate::tls::{self, TlsError, TlsOptions};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of everything the agent sends or answers.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;
/// The pooled client used for upstreams and for the server.
pub type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, ProxyBody>;

/// A body from bytes.
pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// Streams a received body on, as it arrives.
pub fn stream<B>(body: B) -> ProxyBody
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// A JSON error answer: `{"error": code, "message": ...}` plus any extra fields.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response<ProxyBody> {
    let body = json_error_body(code, message);
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The body of [`json_error`], for a listener that writes its responses itself.
pub fn json_error_body(code: &str, message: &str) -> String {
    serde_json::json!({ "error": code, "message": message }).to_string()
}

/// Vault's error shape, for the API proxy: `{"errors": [...]}`.
pub fn vault_error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "errors": [message] }).to_string();
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those named in `Connection`. When
/// `keep_upgrade` is set (a WebSocket handshake), `Connection: upgrade` and `Upgrade` stay.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // The common case, no hop-by-hop header at all, costs a few comparisons per header
    // instead of a hashed lookup per name below (this runs twice per proxied call).
    if !keep_upgrade && !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| !(keep_upgrade && name == header::UPGRADE))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::TRANSFER_ENCODING,
        header::TRAILER,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
    ] {
        headers.remove(name);
    }
    headers.remove(KEEP_ALIVE);
    headers.remove(PROXY_CONNECTION);
    // `TE: trailers` is end-to-end in practice (gRPC needs it); anything else goes.
    let te_trailers = headers
        .get(header::TE)
        .is_some_and(|value| te_is_trailers(value.as_bytes()));
    if !te_trailers {
        headers.remove(header::TE);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
}

/// The hop-by-hop headers (RFC 9110 §7.6.1), besides any a `Connection` header names; never
/// forwarded in either direction (`TE: trailers` aside, and the upgrade pair of a WebSocket
/// handshake).
pub const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::TRAILER,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::UPGRADE,
    KEEP_ALIVE,
    PROXY_CONNECTION,
];

/// True for the headers [`strip_hop_by_hop`] always looks at (`Connection` names any others).
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// True for a hop-by-hop header name given as raw text, in any case.
pub fn is_hop_by_hop_name(name: &str) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|hop| hop.as_str().eq_ignore_ascii_case(name))
}

/// True for a `TE` value that stays end to end: `trailers` (gRPC needs it).
pub fn te_is_trailers(value: &[u8]) -> bool {
    value.eq_ignore_ascii_case(b"trailers")
}

/// True for a request asking to switch protocols (a WebSocket handshake).
pub fn is_upgrade<B>(request: &Request<B>) -> bool {
    request.headers().contains_key(header::UPGRADE)
        && request
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
}

/// A pooled keep-alive client (HTTP/1.1, and HTTP/2 where TLS negotiates it).
pub fn upstream_client(options: TlsOptions<'_>) -> Result<UpstreamClient, TlsError> {
    let mut tls = tls::client_config(options)?;
    // hyper-rustls sets ALPN itself from the enabled versions (and refuses a preset list).
    tls.alpn_protocols.clear();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_timer(TokioTimer::new())
        .build(connector))
}

/// How a listener words an error it answers itself: the egress proxy's `{"error", "message"}`
/// or Vault's `{"errors": [...]}` for the API proxy.
pub type ErrorResponder = fn(StatusCode, &str) -> Response<ProxyBody>;

/// Serves one accepted connection with HTTP/1.1 (upgrades allowed) or HTTP/2.
///
/// A request carrying both `Content-Length` and `Transfer-Encoding` (a request-smuggling
/// attempt, see [`crate::request_framing`]) is answered 400 with `Connection: close` and never
/// reaches `service`; hyper closes the connection after it.
pub fn serve_connection<I, S, F>(io: I, service: S, error_responder: ErrorResponder)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    serve_connection_with_prefix(io, Vec::new(), service, error_responder);
}

/// [`serve_connection`] for a connection of which `prefix` was already read (starting at a
/// request head): hyper and the framing inspection read it first.
pub fn serve_connection_with_prefix<I, S, F>(
    io: I,
    prefix: Vec<u8>,
    service: S,
    error_responder: ErrorResponder,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let service = Arc::new(service);
    tokio::spawn(async move {
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .keep_alive(true);
        let verdicts = Arc::new(Verdicts::default());
        let io = InspectedIo::with_prefix(io, prefix, Arc::clone(&verdicts));
        let hyper_service = hyper::service::service_fn(move |request| {
            let refused = verdicts.next_is_refused();
            let service = Arc::clone(&service);
            async move {
                if refused {
                    return Ok::<_, Infallible>(refuse_conflicting_framing(
                        &request,
                        error_responder,
                    ));
                }
                Ok::<_, Infallible>(service(request).await)
            }
        });
        if let Err(error) = builder
            .serve_connection_with_upgrades(TokioIo::new(io), hyper_service)
            .await
        {
            tracing::debug!(%error, "connection ended with an error");
        }
    });
}

/// The answer to a request that carried both `Content-Length` and `Transfer-Encoding`.
fn refuse_conflicting_framing(
    request: &Request<Incoming>,
    error_responder: ErrorResponder,
) -> Response<ProxyBody> {
    tracing::warn!(
        method = %request.method(),
        path = %request.uri().path(),
        "request refused: both Content-Length and Transfer-Encoding (request smuggling attempt); closing the connection"
    );
    let mut response = error_responder(
        StatusCode::BAD_REQUEST,
        "both Content-Length and Transfer-Encoding are set; refused as a request smuggling attempt",
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// How often the timer anchor of a listener wakes up; below the header read timeout (30 s).
const TIMER_ANCHOR_PERIOD: Duration = Duration::from_secs(10);

/// Keeps a timer that is always due sooner than any connection's header read timeout, for as
/// long as the listener runs (the task ends when the returned guard drops).
///
/// Why: hyper arms the 30 s header read timeout again after every response on a keep-alive
/// connection. When the new deadline is earlier than the time driver's next wake-up, tokio
/// unparks its driver (an eventfd write plus an extra `epoll_wait` return) on every request;
/// with an earlier timer always pending it never is, and the only cost is one wake-up every
/// ten seconds.
pub(crate) fn timer_anchor() -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async {
        loop {
            tokio::time::sleep(TIMER_ANCHOR_PERIOD).await;
        }
    }))
}

pub(crate) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Accepts TCP connections until `shutdown` flips to true.
pub async fn accept_tcp<S, F>(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
    service: S,
    error_responder: ErrorResponder,
) where
    S: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let _anchor = timer_anchor();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        let (stream, _peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: back off briefly instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        match &tls {
            None => serve_connection(stream, service.clone(), error_responder),
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let service = service.clone();
                tokio::spawn(async move {
                    match acceptor.accept(stream).await {
                        Ok(tls_stream) => serve_connection(tls_stream, service, error_responder),
                        Err(error) => tracing::debug!(%error, "TLS handshake failed"),
                    }
                });
            }
        }
    }
}

/// Accepts Unix-socket connections until `shutdown` flips to true.
pub async fn accept_unix<S, F>(
    listener: tokio::net::UnixListener,
    mut shutdown: watch::Receiver<bool>,
    service: S,
    error_responder: ErrorResponder,
) where
    S: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let _anchor = timer_anchor();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((stream, _)) => serve_connection(stream, service.clone(), error_responder),
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The error's sources on one line.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// True if the error, or one of its sources, is of type `T`.
pub fn has_source<T: std::error::Error + 'static>(
    error: &(dyn std::error::Error + 'static),
) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = current {
        if cause.is::<T>() {
            return true;
        }
        current = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        headers.insert("x-secret-hop", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(header::TE, HeaderValue::from_static("gzip"));
        headers.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic x"),
        );
        headers.insert("x-end-to-end", HeaderValue::from_static("stays"));
        strip_hop_by_hop(&mut headers, false);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-end-to-end"));
        // Without any hop-by-hop header nothing changes; an upgrade keeps its two headers.
        strip_hop_by_hop(&mut headers, false);
        assert_eq!(headers.len(), 1);
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        strip_hop_by_hop(&mut headers, true);
        assert_eq!(headers.len(), 3);
        assert_eq!(headers[header::CONNECTION], "upgrade");
        for name in [header::UPGRADE, header::TRAILER, header::TE] {
            let mut only = HeaderMap::new();
            only.insert(name.clone(), HeaderValue::from_static("x"));
            strip_hop_by_hop(&mut only, false);
            assert!(only.is_empty(), "{name}");
        }
    }
}
