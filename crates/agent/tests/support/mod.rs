//! Test doubles on loopback: a small Vault-compatible server whose behaviour each test steers
//! (token TTLs, lease TTLs, refusing renewals, going down), and an upstream (HTTP or HTTPS with
//! the test CA) that records what it receives, echoes, streams server-sent events, and
//! accepts WebSocket-style upgrades.
//!
//! The fake server exists because the agent's fault handling needs a server that fails on cue;
//! the happy paths are also run against the real `ward server` where it is available.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;

type BoxBody = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

fn full(body: impl Into<Bytes>) -> BoxBody {
    Full::new(body.into()).boxed_unsync()
}

fn json_response(status: StatusCode, value: Value) -> Response<BoxBody> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        "application/json".parse().expect("static"),
    );
    response
}

fn errors(status: StatusCode, message: &str) -> Response<BoxBody> {
    json_response(status, json!({ "errors": [message] }))
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes.
pub async fn eventually<F: FnMut() -> bool>(timeout: Duration, what: &str, mut condition: F) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if condition() {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Serves `handler` on a fresh loopback port; every connection task lives in the JoinSet so
/// that `stop` can cut them all.
struct Server {
    address: SocketAddr,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl Server {
    async fn start<H, F>(
        bind: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
        handler: H,
    ) -> Server
    where
        H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
        F: std::future::Future<Output = Response<BoxBody>> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind(bind).await.expect("bind");
        let address = listener.local_addr().expect("address");
        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let accept_tasks = Arc::clone(&tasks);
        tasks.lock().expect("lock").spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                let tls = tls.clone();
                accept_tasks.lock().expect("lock").spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let handler = handler.clone();
                        async move { Ok::<_, Infallible>(handler(request).await) }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = builder
                                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                        None => {
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        Server { address, tasks }
    }

    fn stop(&self) {
        self.tasks.lock().expect("lock").abort_all();
    }
}

// ---------------------------------------------------------------------------
// The fake Vault

#[derive(Debug, Clone)]
pub struct TokenInfo {
    pub ttl: u64,
    pub renewable: bool,
    pub policies: Vec<String>,
}

#[derive(Debug, Default)]
pub struct VaultState {
    pub tokens: HashMap<String, TokenInfo>,
    /// KV v2 under `secret/`: path → data.
    pub kv: HashMap<String, Value>,
    pub kv_versions: HashMap<String, u64>,
    pub login_ttl: u64,
    pub login_renewable: bool,
    pub role_id: String,
    pub secret_id: String,
    pub jwt: String,
    pub db_ttl: u64,
    pub db_renewable: bool,
    pub refuse_renew_self: bool,
    pub refuse_lease_renewal: bool,
    pub n_logins: u64,
    pub n_renew_self: u64,
    pub n_db_creds: u64,
    pub n_lease_renewals: u64,
    /// Every request: method, path, whether a token was sent.
    pub requests: Vec<(String, String, Option<String>)>,
}

pub struct FakeVault {
    server: Server,
    pub state: Arc<Mutex<VaultState>>,
}

pub const ROOT_TOKEN: &str = "root-token-for-tests";

impl FakeVault {
    pub async fn start() -> FakeVault {
        FakeVault::start_on(loopback()).await
    }

    /// Starts on a given address (to come up where an agent is already trying to connect).
    pub async fn start_on(bind: SocketAddr) -> FakeVault {
        let mut state = VaultState {
            login_ttl: 3600,
            login_renewable: true,
            role_id: "role-123".into(),
            secret_id: "secret-456".into(),
            jwt: "header.payload.signature".into(),
            db_ttl: 3600,
            db_renewable: true,
            ..VaultState::default()
        };
        state.tokens.insert(
            ROOT_TOKEN.into(),
            TokenInfo {
                ttl: 0,
                renewable: false,
                policies: vec!["root".into()],
            },
        );
        let state = Arc::new(Mutex::new(state));
        let handler_state = Arc::clone(&state);
        let server = Server::start(bind, None, move |request| {
            let state = Arc::clone(&handler_state);
            async move { vault_handle(state, request).await }
        })
        .await;
        FakeVault { server, state }
    }

    pub fn address(&self) -> String {
        format!("http://{}", self.server.address)
    }

    /// Cuts every connection and stops listening.
    pub fn stop(&self) {
        self.server.stop();
    }

    pub fn put_kv(&self, path: &str, data: Value) {
        let mut state = self.state.lock().expect("lock");
        *state.kv_versions.entry(path.to_owned()).or_insert(0) += 1;
        state.kv.insert(path.to_owned(), data);
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut VaultState) -> R) -> R {
        f(&mut self.state.lock().expect("lock"))
    }

    /// Adds a token and returns it.
    pub fn add_token(&self, token: &str, ttl: u64, renewable: bool) {
        self.with(|state| {
            state.tokens.insert(
                token.into(),
                TokenInfo {
                    ttl,
                    renewable,
                    policies: vec!["default".into()],
                },
            )
        });
    }
}

async fn vault_handle(
    state: Arc<Mutex<VaultState>>,
    request: Request<Incoming>,
) -> Response<BoxBody> {
    let method = request.method().clone();
    let path = request.uri().path().trim_start_matches("/v1/").to_owned();
    let token = request
        .headers()
        .get("x-vault-token")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body_bytes = request
        .into_body()
        .collect()
        .await
        .map(|body| body.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body_bytes).unwrap_or(Value::Null);
    let mut state = state.lock().expect("lock");
    state
        .requests
        .push((method.to_string(), path.clone(), token.clone()));
    let new_token = |state: &mut VaultState| {
        state.n_logins += 1;
        let token = format!("hvs.test-token-{}", state.n_logins);
        let info = TokenInfo {
            ttl: state.login_ttl,
            renewable: state.login_renewable,
            policies: vec!["default".into()],
        };
        state.tokens.insert(token.clone(), info.clone());
        json_response(
            StatusCode::OK,
            json!({"request_id": "r", "lease_id": "", "renewable": false, "lease_duration": 0, "data": null,
                   "auth": {"client_token": token, "accessor": format!("acc-{}", state.n_logins),
                            "policies": info.policies, "token_policies": info.policies,
                            "lease_duration": info.ttl, "renewable": info.renewable,
                            "token_type": "service", "orphan": true}}),
        )
    };
    // Unauthenticated login endpoints.
    match (method.as_str(), path.as_str()) {
        ("POST" | "PUT", "auth/approle/login") => {
            if body["role_id"] == state.role_id.as_str()
                && body["secret_id"] == state.secret_id.as_str()
            {
                return new_token(&mut state);
            }
            return errors(StatusCode::BAD_REQUEST, "invalid role or secret ID");
        }
        ("POST" | "PUT", "auth/kubernetes/login" | "auth/jwt/login") => {
            if body["jwt"] == state.jwt.as_str() && body["role"].is_string() {
                return new_token(&mut state);
            }
            return errors(StatusCode::BAD_REQUEST, "invalid jwt");
        }
        _ => {}
    }
    let Some(token) = token.filter(|token| state.tokens.contains_key(token)) else {
        return errors(StatusCode::FORBIDDEN, "permission denied");
    };
    let info = state.tokens.get(&token).cloned().expect("checked");
    match (method.as_str(), path.as_str()) {
        ("GET", "auth/token/lookup-self") => json_response(
            StatusCode::OK,
            json!({"data": {"ttl": info.ttl, "renewable": info.renewable, "policies": info.policies}}),
        ),
        ("POST" | "PUT", "auth/token/renew-self") => {
            state.n_renew_self += 1;
            if state.refuse_renew_self {
                return errors(StatusCode::FORBIDDEN, "permission denied");
            }
            json_response(
                StatusCode::OK,
                json!({"auth": {"client_token": token, "accessor": "acc", "policies": info.policies,
                                "lease_duration": info.ttl, "renewable": info.renewable}}),
            )
        }
        ("POST" | "PUT", "sys/wrapping/wrap") => json_response(
            StatusCode::OK,
            json!({"wrap_info": {"token": "hvs.wrapping-token", "accessor": "wacc", "ttl": 300,
                                  "creation_time": "2026-01-01T00:00:00Z", "creation_path": "sys/wrapping/wrap"}}),
        ),
        ("PUT" | "POST", "sys/leases/renew") => {
            state.n_lease_renewals += 1;
            if state.refuse_lease_renewal {
                return errors(StatusCode::BAD_REQUEST, "lease not found");
            }
            json_response(
                StatusCode::OK,
                json!({"lease_id": body["lease_id"], "lease_duration": state.db_ttl, "renewable": state.db_renewable}),
            )
        }
        ("GET", mounts) if mounts.starts_with("sys/internal/ui/mounts/") => {
            let target = mounts.trim_start_matches("sys/internal/ui/mounts/");
            if target.starts_with("secret/") {
                json_response(
                    StatusCode::OK,
                    json!({"data": {"path": "secret/", "type": "kv", "options": {"version": "2"}}}),
                )
            } else if target.starts_with("database/") {
                json_response(
                    StatusCode::OK,
                    json!({"data": {"path": "database/", "type": "database", "options": null}}),
                )
            } else {
                errors(StatusCode::BAD_REQUEST, "no mount")
            }
        }
        ("GET", kv) if kv.starts_with("secret/data/") => {
            let key = kv.trim_start_matches("secret/data/");
            match state.kv.get(key) {
                Some(data) => json_response(
                    StatusCode::OK,
                    json!({"request_id": "r", "lease_id": "", "lease_duration": 0, "renewable": false,
                           "data": {"data": data, "metadata": {"version": state.kv_versions.get(key).copied().unwrap_or(1), "deletion_time": ""}}}),
                ),
                None => errors(StatusCode::NOT_FOUND, ""),
            }
        }
        ("GET", creds) if creds.starts_with("database/creds/") => {
            state.n_db_creds += 1;
            let n = state.n_db_creds;
            let role = creds.trim_start_matches("database/creds/");
            json_response(
                StatusCode::OK,
                json!({"request_id": "r", "lease_id": format!("database/creds/{role}/lease-{n}"),
                       "lease_duration": state.db_ttl, "renewable": state.db_renewable,
                       "data": {"username": format!("v-{role}-{n}"), "password": format!("pw-{n}")}}),
            )
        }
        ("GET", "sys/health") => json_response(
            StatusCode::OK,
            json!({"initialized": true, "sealed": false}),
        ),
        _ => errors(StatusCode::NOT_FOUND, "unsupported path"),
    }
}

// ---------------------------------------------------------------------------
// The upstream

#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body_len: usize,
}

pub struct Upstream {
    server: Server,
    pub received: Arc<Mutex<Vec<Received>>>,
    /// Released by the test to let `/sse-gated` send the rest of its events.
    pub gate: Arc<Notify>,
    pub tls: bool,
}

impl Upstream {
    pub async fn start_http() -> Upstream {
        Upstream::start(None).await
    }

    pub async fn start_https() -> Upstream {
        let certs = ward_agent::tls::read_certs(&fixture("upstream.pem")).expect("cert");
        let key_pem = std::fs::read(fixture("upstream.key")).expect("key");
        let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
            .expect("pem")
            .expect("key");
        let mut config = rustls::ServerConfig::builder_with_provider(ward_agent::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Upstream::start(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start(tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        let received = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Notify::new());
        let is_tls = tls.is_some();
        let handler_received = Arc::clone(&received);
        let handler_gate = Arc::clone(&gate);
        let server = Server::start(loopback(), tls, move |request| {
            let received = Arc::clone(&handler_received);
            let gate = Arc::clone(&handler_gate);
            async move { upstream_handle(received, gate, request).await }
        })
        .await;
        Upstream {
            server,
            received,
            gate,
            tls: is_tls,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        let host = if self.tls {
            "localhost".to_owned()
        } else {
            "127.0.0.1".to_owned()
        };
        format!("{scheme}://{host}:{}", self.server.address.port())
    }

    pub fn last(&self) -> Received {
        self.received
            .lock()
            .expect("lock")
            .last()
            .cloned()
            .expect("a request reached the upstream")
    }

    pub fn count(&self) -> usize {
        self.received.lock().expect("lock").len()
    }

    pub fn stop(&self) {
        self.server.stop();
    }
}

async fn upstream_handle(
    received: Arc<Mutex<Vec<Received>>>,
    gate: Arc<Notify>,
    mut request: Request<Incoming>,
) -> Response<BoxBody> {
    let upgrade = request.headers().contains_key(http::header::UPGRADE);
    let on_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|body| body.to_bytes())
        .unwrap_or_default();
    received.lock().expect("lock").push(Received {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers.clone(),
        body_len: body.len(),
    });
    let auth = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    match parts.uri.path() {
        "/ws" => {
            let Some(on_upgrade) = on_upgrade else {
                return errors(StatusCode::BAD_REQUEST, "not an upgrade");
            };
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    let mut io = TokioIo::new(upgraded);
                    let mut buffer = [0u8; 1024];
                    while let Ok(n) = io.read(&mut buffer).await {
                        if n == 0 || io.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                        let _ = io.flush().await;
                    }
                }
            });
            let mut response = Response::new(full(""));
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            response
                .headers_mut()
                .insert(http::header::CONNECTION, "upgrade".parse().expect("static"));
            response
                .headers_mut()
                .insert(http::header::UPGRADE, "websocket".parse().expect("static"));
            response
        }
        "/v1/error-echo" => {
            let mut response = json_response(
                StatusCode::UNAUTHORIZED,
                json!({"error": {"message": format!("Incorrect API key provided: {auth}"), "query": parts.uri.query()}}),
            );
            if let Ok(value) = format!("key={auth}").parse() {
                response.headers_mut().insert("x-echo-auth", value);
            }
            response
        }
        "/v1/sse" | "/v1/chat/completions-stream" => {
            let (sender, receiver) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
            tokio::spawn(async move {
                let _ = sender
                    .send(Ok(Frame::data(Bytes::from_static(
                        b"data: {\"delta\":\"Hel\"}\n\n",
                    ))))
                    .await;
                // Wait for the test to see the first event (or 500 ms), then send the rest.
                let _ = tokio::time::timeout(Duration::from_millis(500), gate.notified()).await;
                let _ = sender
                    .send(Ok(Frame::data(Bytes::from_static(
                        b"data: {\"delta\":\"lo\"}\n\n",
                    ))))
                    .await;
                let _ = sender
                    .send(Ok(Frame::data(Bytes::from_static(b"data: [DONE]\n\n"))))
                    .await;
            });
            let stream = tokio_stream_from(receiver);
            let mut response = Response::new(stream.boxed_unsync());
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                "text/event-stream".parse().expect("static"),
            );
            response
        }
        _ => json_response(
            StatusCode::OK,
            json!({"path": parts.uri.path(), "query": parts.uri.query(), "method": parts.method.as_str(), "body_len": body.len()}),
        ),
    }
}

/// An mpsc receiver as a `Stream` of frames (no futures crate needed).
fn tokio_stream_from(
    receiver: mpsc::Receiver<Result<Frame<Bytes>, Infallible>>,
) -> impl hyper::body::Body<Data = Bytes, Error = Infallible> + Send + 'static {
    ChannelBody { receiver }
}

struct ChannelBody {
    receiver: mpsc::Receiver<Result<Frame<Bytes>, Infallible>>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.receiver.poll_recv(cx)
    }
}

// ---------------------------------------------------------------------------
// Agents

/// Starts an in-process agent from HCL text; `dir` is the allowed secrets directory.
pub async fn start_agent(hcl: &str, dir: &Path) -> ward_agent::RunningAgent {
    let body = ward_agent::config::parse_text(hcl, false).expect("config parses");
    let config = ward_agent::config::decode(&body, dir, dir).expect("config decodes");
    ward_agent::Agent::start(config)
        .await
        .expect("agent starts")
}

/// A reqwest client for talking to the agent's listeners.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder().build().expect("client")
}

/// Sends raw bytes to `address` and returns everything read until the peer closes or 2 s pass.
pub async fn raw_request(address: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => {
                out.extend_from_slice(&buffer[..n]);
                // One response is enough.
                if out.windows(4).any(|window| window == b"\r\n\r\n") && response_complete(&out) {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends raw bytes to `address` and returns everything the agent answers before it closes the
/// connection; panics if it keeps the connection open for 10 s.
pub async fn raw_request_until_closed(address: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("the agent closes the connection")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

fn response_complete(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())
            .flatten()
    });
    match length {
        Some(length) => body.len() >= length,
        None => true,
    }
}

// ---------------------------------------------------------------------------
// The real `ward server -dev`

/// The server's log (stderr) as a new file in `WARD_TEST_LOG_DIR`, which `scripts/test` sets and
/// scans for canary values and tokens in clear once every suite has run; else dropped. Stdout is
/// not kept: the dev banner prints the generated root token, by design.
fn server_log() -> std::process::Stdio {
    static N_SERVERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let Some(directory) = std::env::var_os("WARD_TEST_LOG_DIR") else {
        return std::process::Stdio::null();
    };
    let n = N_SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path =
        std::path::Path::new(&directory).join(format!("rust-agent-{}-{n}.log", std::process::id()));
    std::fs::create_dir_all(&directory)
        .and_then(|()| std::fs::File::create(&path))
        .map(std::process::Stdio::from)
        .unwrap_or_else(|error| panic!("creating {}: {error}", path.display()))
}

/// A `ward server -dev` child process on a port of its own.
pub struct RealServer {
    child: tokio::process::Child,
    pub address: String,
    pub root_token: String,
}

impl RealServer {
    /// Starts the `ward` binary from `WARD_BIN`, or `target/debug/ward` (built first if missing).
    pub async fn start() -> RealServer {
        let binary = ward_binary();
        let mut child = tokio::process::Command::new(&binary)
            .args(["server", "-dev", "-dev-listen-address=127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .stderr(server_log())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("starting {}: {error}", binary.display()));
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout);
        let mut address = String::new();
        let mut root_token = String::new();
        let read = async {
            use tokio::io::AsyncBufReadExt;
            let mut line = String::new();
            while lines.read_line(&mut line).await.expect("read") > 0 {
                if let Some(value) = line.trim().strip_prefix("Api Address:") {
                    address = value.trim().to_owned();
                }
                if let Some(value) = line.trim().strip_prefix("Root Token:") {
                    root_token = value.trim().to_owned();
                }
                if !address.is_empty() && !root_token.is_empty() {
                    break;
                }
                line.clear();
            }
        };
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .expect("server announced itself");
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut sink = Vec::new();
            let _ = lines.read_to_end(&mut sink).await;
        });
        RealServer {
            child,
            address,
            root_token,
        }
    }

    /// One API call as root; returns the JSON body (or Null for 204).
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let client = reqwest::Client::new();
        let mut request = client
            .request(method, format!("{}/v1/{path}", self.address))
            .header("X-Vault-Token", &self.root_token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("server call");
        let status = response.status();
        let text = response.text().await.expect("body");
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

fn ward_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("WARD_BIN") {
        return PathBuf::from(path);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let binary = target.join("debug/ward");
    if !binary.exists() {
        let status =
            std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["build", "-p", "ward", "--bin", "ward"])
                .current_dir(&workspace)
                .status()
                .expect("cargo build");
        assert!(status.success(), "building the ward binary failed");
    }
    binary
}
