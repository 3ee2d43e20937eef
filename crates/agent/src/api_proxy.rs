//! The agent's own listener: the Vault API proxy (`/v1/*` forwarded to the server) and the
//! agent's endpoints (`/agent/v1/metrics`).
//!
//! An application using hvac against `http://127.0.0.1:8200` needs no token: with
//! `use_auto_auth_token = true` the proxy adds the auto-auth token when the request carries
//! none, and with `"force"` it replaces whatever the client sent. Bodies stream both ways; only
//! hop-by-hop headers are touched.

use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use tokio::sync::watch;

use crate::config::UseAutoAuthToken;
use crate::http_util::{self, ProxyBody, UpstreamClient};
use crate::metrics::Metrics;
use crate::secrets::TokenReceiver;

const TOKEN_HEADER: &str = "x-vault-token";

/// The API proxy's state.
pub struct ApiProxy {
    pub client: UpstreamClient,
    /// The server's scheme and authority.
    pub server: Uri,
    pub token: TokenReceiver,
    pub use_auto_auth_token: UseAutoAuthToken,
    pub metrics: Arc<Metrics>,
}

impl ApiProxy {
    pub async fn handle(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        let path = request.uri().path();
        if path == "/agent/v1/metrics" {
            let mut response = Response::new(http_util::full(self.metrics.render()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            return response;
        }
        if !path.starts_with("/v1/") {
            return http_util::vault_error(StatusCode::NOT_FOUND, "not found");
        }
        self.metrics.api_proxy_requests.inc();
        let (mut parts, body) = request.into_parts();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map(|value| value.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned());
        let mut builder = Uri::builder().path_and_query(path_and_query);
        if let Some(scheme) = self.server.scheme() {
            builder = builder.scheme(scheme.clone());
        }
        if let Some(authority) = self.server.authority() {
            builder = builder.authority(authority.clone());
        }
        parts.uri = match builder.build() {
            Ok(uri) => uri,
            Err(_) => {
                return http_util::vault_error(StatusCode::BAD_REQUEST, "invalid request path")
            }
        };
        parts.version = http::Version::HTTP_11;
        http_util::strip_hop_by_hop(&mut parts.headers, false);
        parts.headers.remove(header::HOST);
        if let Some(host) = self
            .server
            .authority()
            .and_then(|authority| HeaderValue::from_str(authority.as_str()).ok())
        {
            parts.headers.insert(header::HOST, host);
        }
        let client_has_token = parts
            .headers
            .get(TOKEN_HEADER)
            .is_some_and(|value| !value.is_empty())
            || parts.headers.contains_key(header::AUTHORIZATION);
        let inject = match self.use_auto_auth_token {
            UseAutoAuthToken::No => false,
            UseAutoAuthToken::IfMissing => !client_has_token,
            UseAutoAuthToken::Force => true,
        };
        if inject {
            let token = self.token.borrow().clone();
            match token.and_then(|token| HeaderValue::from_str(token.expose()).ok()) {
                Some(mut value) => {
                    value.set_sensitive(true);
                    parts.headers.remove(header::AUTHORIZATION);
                    parts.headers.insert(TOKEN_HEADER, value);
                }
                None => {
                    return http_util::vault_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the agent has no auto-auth token yet",
                    )
                }
            }
        }
        let request = Request::from_parts(parts, http_util::stream(body));
        match self.client.request(request).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                http_util::strip_hop_by_hop(&mut parts.headers, false);
                Response::from_parts(parts, http_util::stream(body))
            }
            Err(error) => {
                tracing::warn!(error = %http_util::error_chain(&error), "API proxy: server unreachable");
                http_util::vault_error(
                    StatusCode::BAD_GATEWAY,
                    "the agent could not reach the server",
                )
            }
        }
    }
}

/// Serves the API proxy on a TCP listener until shutdown.
pub async fn serve_tcp(
    proxy: Arc<ApiProxy>,
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
) {
    http_util::accept_tcp(
        listener,
        tls,
        shutdown,
        move |request| {
            let proxy = Arc::clone(&proxy);
            async move { proxy.handle(request).await }
        },
        http_util::vault_error,
    )
    .await;
}

/// Serves the API proxy on a Unix socket until shutdown.
pub async fn serve_unix(
    proxy: Arc<ApiProxy>,
    listener: tokio::net::UnixListener,
    shutdown: watch::Receiver<bool>,
) {
    http_util::accept_unix(
        listener,
        shutdown,
        move |request| {
            let proxy = Arc::clone(&proxy);
            async move { proxy.handle(request).await }
        },
        http_util::vault_error,
    )
    .await;
}
