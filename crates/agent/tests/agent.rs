//! End-to-end tests of the agent on loopback: a real agent (in-process, real sockets), a fake
//! Vault server steered per test, and an HTTP/HTTPS upstream that records what it receives.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::{eventually, fixture, raw_request, start_agent, FakeVault, Upstream};

const WAIT: Duration = Duration::from_secs(10);
const API_KEY: &str = "sk-test-0123456789abcdef";

fn token_file(dir: &Path, token: &str) -> String {
    let path = dir.join("token");
    std::fs::write(&path, token).expect("write token");
    path.display().to_string()
}

/// A config with token_file auto-auth against `vault`, plus `extra` blocks.
fn config(vault: &FakeVault, dir: &Path, extra: &str) -> String {
    vault.add_token("agent-token", 3600, true);
    format!(
        r#"
vault {{ address = "{address}" }}
auto_auth {{
  method "token_file" {{ config {{ token_file_path = "{token}" }} }}
}}
{extra}
"#,
        address = vault.address(),
        token = token_file(dir, "agent-token"),
    )
}

fn egress_config(upstream: &Upstream, routes: &str) -> String {
    format!(
        r#"
egress {{
  listener = "127.0.0.1:0"
  {routes}
}}
"#
    )
    .replace("UPSTREAM", &upstream.url())
    .replace("CA", &fixture("ca.pem").display().to_string())
}

async fn egress_agent(
    upstream: &Upstream,
    routes: &str,
) -> (
    FakeVault,
    tempfile::TempDir,
    ward_agent::RunningAgent,
    String,
) {
    let vault = FakeVault::start().await;
    vault.put_kv(
        "agents/openai",
        json!({"api_key": API_KEY, "user": "svc-user", "password": "p4ssw0rd-long"}),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config(&vault, dir.path(), &egress_config(upstream, routes));
    let agent = start_agent(&text, dir.path()).await;
    let base = format!("http://{}", agent.egress_address.expect("egress listener"));
    (vault, dir, agent, base)
}

/// Waits until the route's credential is ready (the proxy answers something other than 503).
async fn wait_ready(base: &str, path: &str) {
    let client = support::http_client();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let response = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("request");
        if response.status() != 503 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "credential never became ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plain-http route injecting a bearer token (served by the fast path).
const HTTP_BEARER_ROUTE: &str = r#"
  route "bearer" {
    upstream = "UPSTREAM"
    credential = "secret/data/agents/openai"
    inject { header = "Authorization"  value = "Bearer {{ .Data.data.api_key }}" }
  }
"#;

const OPENAI_ROUTE: &str = r#"
  route "openai" {
    upstream = "UPSTREAM"
    ca_cert = "CA"
    credential = "secret/data/agents/openai"
    inject { header = "Authorization"  value = "Bearer {{ .Data.data.api_key }}" }
    allow { methods = ["GET", "POST"]  paths = ["/v1/**"] }
  }
"#;

#[tokio::test]
async fn egress_injects_bearer_over_https_and_strips_client_credentials() {
    let upstream = Upstream::start_https().await;
    let (_vault, _dir, _agent, base) = egress_agent(&upstream, OPENAI_ROUTE).await;
    wait_ready(&base, "/openai/v1/models").await;
    let client = support::http_client();
    let response = client
        .post(format!("{base}/openai/v1/chat/completions?x=1"))
        .header("Authorization", "Bearer client-supplied")
        .header("x-api-key", "client-key")
        .header("Proxy-Authorization", "Basic Zm9vOmJhcg==")
        .header("Connection", "keep-alive, x-hop")
        .header("x-hop", "hop-value")
        .body(r#"{"model":"gpt"}"#)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["path"], "/v1/chat/completions");
    assert_eq!(body["query"], "x=1");
    let received = upstream.last();
    let auth: Vec<_> = received.headers.get_all("authorization").iter().collect();
    assert_eq!(auth.len(), 1);
    assert_eq!(auth[0], format!("Bearer {API_KEY}").as_str());
    assert!(received.headers.get("x-api-key").is_none());
    assert!(received.headers.get("proxy-authorization").is_none());
    assert!(received.headers.get("x-hop").is_none());
    assert_eq!(received.body_len, 15);
}

#[tokio::test]
async fn egress_injects_x_api_key_basic_auth_and_query_parameter() {
    let upstream = Upstream::start_http().await;
    let routes = r#"
  route "anthropic" {
    upstream = "UPSTREAM"
    credential = "secret/data/agents/openai"
    inject { header = "x-api-key"  value = "{{ .Data.data.api_key }}" }
  }
  route "basic" {
    upstream = "UPSTREAM/base"
    credential = "secret/data/agents/openai"
    inject { basic_auth = "{{ .Data.data.user }}:{{ .Data.data.password }}" }
  }
  route "query" {
    upstream = "UPSTREAM"
    credential = "secret/data/agents/openai"
    inject { query = "key"  value = "{{ .Data.data.api_key }}" }
  }
"#;
    let (_vault, _dir, _agent, base) = egress_agent(&upstream, routes).await;
    let client = support::http_client();
    wait_ready(&base, "/anthropic/v1/messages").await;
    client
        .get(format!("{base}/anthropic/v1/messages"))
        .header("x-api-key", "mine")
        .send()
        .await
        .expect("request");
    let received = upstream.last();
    let keys: Vec<_> = received.headers.get_all("x-api-key").iter().collect();
    assert_eq!(keys, vec![API_KEY]);

    wait_ready(&base, "/basic/x").await;
    let response = client
        .get(format!("{base}/basic/x"))
        .send()
        .await
        .expect("request");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["path"], "/base/x");
    let expected = format!("Basic {}", base64_encode("svc-user:p4ssw0rd-long"));
    assert_eq!(upstream.last().headers["authorization"], expected.as_str());

    wait_ready(&base, "/query/v1/q").await;
    client
        .get(format!("{base}/query/v1/q?a=1&key=client"))
        .send()
        .await
        .expect("request");
    assert_eq!(upstream.last().query, Some(format!("a=1&key={API_KEY}")));
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[tokio::test]
async fn egress_allow_lists_answer_403() {
    let upstream = Upstream::start_http().await;
    let routes = r#"
  route "openai" {
    upstream = "UPSTREAM"
    credential = "secret/data/agents/openai"
    inject { header = "Authorization"  value = "Bearer {{ .Data.data.api_key }}" }
    allow { methods = ["POST"]  paths = ["/v1/chat/completions", "/v1/embeddings"]  hosts = ["*.example.test"] }
  }
"#;
    let (_vault, _dir, agent, base) = egress_agent(&upstream, routes).await;
    let client = support::http_client();
    let deadline = tokio::time::Instant::now() + WAIT;
    while client
        .post(format!("{base}/openai/v1/embeddings"))
        .send()
        .await
        .expect("request")
        .status()
        != 200
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "credential never became ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = upstream.count();
    let response = client
        .get(format!("{base}/openai/v1/chat/completions"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "forbidden");
    let response = client
        .post(format!("{base}/openai/v1/files"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 403);
    let response = client
        .post(format!("{base}/openai/v1/embeddings"))
        .header("x-ward-upstream-host", "evil.test")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 403);
    assert_eq!(
        upstream.count(),
        before,
        "nothing off-list reached the upstream"
    );
    let response = client
        .post(format!("{base}/openai/v1/embeddings"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert!(agent
        .metrics
        .render()
        .contains("ward_agent_egress_denied_total{route=\"openai\"} 3"));
}

#[tokio::test]
async fn egress_rate_limit_answers_429_with_retry_after() {
    let upstream = Upstream::start_http().await;
    let routes = r#"
  route "limited" {
    upstream = "UPSTREAM"
    rate_limit = "3/minute"
  }
"#;
    let (_vault, _dir, _agent, base) = egress_agent(&upstream, routes).await;
    let client = support::http_client();
    for _ in 0..3 {
        let response = client
            .get(format!("{base}/limited/x"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
    }
    let response = client
        .get(format!("{base}/limited/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_eq!(upstream.count(), 3);
}

#[tokio::test]
async fn egress_body_limit_answers_413() {
    let upstream = Upstream::start_http().await;
    let routes = r#"
  route "small" {
    upstream = "UPSTREAM"
    max_body_bytes = 1000
  }
"#;
    let (_vault, _dir, agent, base) = egress_agent(&upstream, routes).await;
    let client = support::http_client();
    let response = client
        .post(format!("{base}/small/x"))
        .body(vec![b'a'; 1001])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 413);
    let response = client
        .post(format!("{base}/small/x"))
        .body(vec![b'a'; 1000])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    // A chunked body without a declared length is cut off at the limit too.
    let address = agent.egress_address.expect("egress");
    let mut request =
        b"POST /small/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        request.extend_from_slice(b"190\r\n");
        request.extend_from_slice(&[b'b'; 0x190]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let response = raw_request(address, &request).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
}

#[tokio::test]
async fn egress_upstream_down_answers_502_once() {
    let upstream = Upstream::start_http().await;
    let routes = r#"
  route "down" {
    upstream = "UPSTREAM"
  }
"#;
    let (_vault, _dir, agent, base) = egress_agent(&upstream, routes).await;
    upstream.stop();
    // A closed port: connection refused.
    let client = support::http_client();
    let response = client
        .get(format!("{base}/down/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 502);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "upstream_unreachable");
    assert!(agent
        .metrics
        .render()
        .contains("ward_agent_egress_upstream_errors_total{route=\"down\"} 1"));
}

#[tokio::test]
async fn egress_streams_server_sent_events_as_they_arrive() {
    let upstream = Upstream::start_https().await;
    let (_vault, _dir, _agent, base) = egress_agent(&upstream, OPENAI_ROUTE).await;
    wait_ready(&base, "/openai/v1/models").await;
    assert_events_stream(&upstream, &format!("{base}/openai/v1/sse")).await;
}

/// The same over a plain-http route, where the fast path decodes the upstream's chunks and
/// re-chunks them as they arrive.
#[tokio::test]
async fn egress_fast_path_streams_server_sent_events_as_they_arrive() {
    let upstream = Upstream::start_http().await;
    let (_vault, _dir, _agent, base) = egress_agent(&upstream, HTTP_BEARER_ROUTE).await;
    wait_ready(&base, "/bearer/ready").await;
    assert_events_stream(&upstream, &format!("{base}/bearer/v1/sse")).await;
}

/// Calls the upstream's `/v1/sse` through `url` and checks that the first event arrives
/// before the upstream sends the rest.
async fn assert_events_stream(upstream: &Upstream, url: &str) {
    let client = support::http_client();
    let started = tokio::time::Instant::now();
    let mut response = client.post(url).send().await.expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    // The upstream holds its second event back until the test has seen the first (or 500 ms
    // pass): a buffering proxy would deliver the first event only after that.
    let first = response.chunk().await.expect("read").expect("first chunk");
    let time_to_first = started.elapsed();
    assert_eq!(&first[..], b"data: {\"delta\":\"Hel\"}\n\n");
    assert!(
        time_to_first < Duration::from_millis(450),
        "first event after {time_to_first:?}"
    );
    upstream.gate.notify_one();
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.expect("read") {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(
        String::from_utf8_lossy(&rest),
        "data: {\"delta\":\"lo\"}\n\ndata: [DONE]\n\n"
    );
}

#[tokio::test]
async fn egress_passes_websocket_upgrades_through() {
    let upstream = Upstream::start_http().await;
    let (_vault, _dir, agent, base) = egress_agent(&upstream, HTTP_BEARER_ROUTE).await;
    wait_ready(&base, "/bearer/ready").await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(agent.egress_address.expect("egress"))
        .await
        .expect("connect");
    stream
        .write_all(b"GET /bearer/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.expect("read head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    stream.write_all(b"ping-frame").await.expect("write");
    let mut echo = [0u8; 10];
    tokio::time::timeout(WAIT, stream.read_exact(&mut echo))
        .await
        .expect("echo in time")
        .expect("read");
    assert_eq!(&echo, b"ping-frame");
    assert_eq!(
        upstream.last().headers["authorization"],
        format!("Bearer {API_KEY}").as_str()
    );
}

#[tokio::test]
async fn egress_scrubs_the_key_from_an_echoing_error_response() {
    let upstream = Upstream::start_http().await;
    let routes = r#"
  route "openai" {
    upstream = "UPSTREAM"
    credential = "secret/data/agents/openai"
    inject { header = "Authorization"  value = "Bearer {{ .Data.data.api_key }}" }
  }
  route "query" {
    upstream = "UPSTREAM"
    credential = "secret/data/agents/openai"
    inject { query = "key"  value = "{{ .Data.data.api_key }}" }
  }
"#;
    let (_vault, _dir, _agent, base) = egress_agent(&upstream, routes).await;
    wait_ready(&base, "/openai/x").await;
    let client = support::http_client();
    let response = client
        .get(format!("{base}/openai/v1/error-echo"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    let header = response.headers()["x-echo-auth"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let body = response.text().await.expect("body");
    assert!(
        !header.contains(API_KEY) && header.contains("[REDACTED]"),
        "{header}"
    );
    assert!(
        !body.contains(API_KEY) && body.contains("[REDACTED]"),
        "{body}"
    );
    // The upstream did get the key.
    assert_eq!(
        upstream.last().headers["authorization"],
        format!("Bearer {API_KEY}").as_str()
    );
    wait_ready(&base, "/query/x").await;
    let body = client
        .get(format!("{base}/query/v1/error-echo"))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert!(!body.contains(API_KEY), "{body}");
}

#[tokio::test]
async fn egress_refuses_request_smuggling_and_bad_route_names() {
    let upstream = Upstream::start_http().await;
    let routes = r#"
  route "open" {
    upstream = "UPSTREAM"
  }
"#;
    let (_vault, _dir, agent, _base) = egress_agent(&upstream, routes).await;
    let address = agent.egress_address.expect("egress");
    let cases: &[(&str, &[u8])] = &[
        ("duplicate differing CL", b"POST /open/x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"),
        ("obfuscated TE", b"POST /open/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
        ("TE not last chunked", b"POST /open/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
        ("route ..", b"GET /../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("route encoded ..", b"GET /%2e%2e/x HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("path ..", b"GET /open/../admin HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("path encoded ..", b"GET /open/v1/%2E%2e/admin HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("encoded slash", b"GET /open/v1%2f..%2fadmin HTTP/1.1\r\nHost: x\r\n\r\n"),
    ];
    for (name, request) in cases {
        let response = raw_request(address, request).await;
        assert!(response.starts_with("HTTP/1.1 400"), "{name}: {response}");
    }
    assert_eq!(
        upstream.count(),
        0,
        "no smuggled request reached the upstream"
    );
    // Content-Length with Transfer-Encoding, in either order and after an honest request on
    // the same connection: refused with 400 and the connection closed (RFC 9112 §6.1), so the
    // request hidden in the body never reaches the upstream.
    let smuggles: [&[u8]; 3] = [
        b"POST /open/x HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /open/smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /open/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 44\r\n\r\n0\r\n\r\nGET /open/smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /open/first HTTP/1.1\r\nHost: x\r\n\r\nPOST /open/x HTTP/1.1\r\nHost: x\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nGET /open/smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for smuggle in smuggles {
        let response = support::raw_request_until_closed(address, smuggle).await;
        let last = response
            .rfind("HTTP/1.1 ")
            .map(|start| &response[start..])
            .expect("a response");
        assert!(last.starts_with("HTTP/1.1 400"), "{response}");
        assert!(
            last.contains("both Content-Length and Transfer-Encoding"),
            "{response}"
        );
        assert!(last.contains("\"error\":\"bad_request\""), "{response}");
        assert_eq!(
            response.matches("HTTP/1.1 ").count(),
            if smuggle.starts_with(b"GET") { 2 } else { 1 },
            "{response}"
        );
    }
    let paths: Vec<String> = upstream
        .received
        .lock()
        .expect("lock")
        .iter()
        .map(|received| received.path.clone())
        .collect();
    assert_eq!(paths, ["/first"], "only the honest request was forwarded");
    let response = raw_request(
        address,
        b"GET /open/fine HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

/// An upstream that closes each keep-alive connection after one response: the proxy notices
/// the closed pooled connection when it takes it from the pool and opens a new one, so every
/// call succeeds.
#[tokio::test]
async fn egress_replaces_pooled_connections_the_upstream_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buffer = [0u8; 1024];
            while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buffer[..n]),
                }
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
            drop(stream);
            let _ = closed_tx.send(());
        }
    });
    let unused = Upstream::start_http().await;
    let routes = format!("route \"flaky\" {{\n upstream = \"http://127.0.0.1:{port}\"\n }}");
    let (_vault, _dir, _agent, base) = egress_agent(&unused, &routes).await;
    let client = support::http_client();
    for call in 0..5 {
        let response = client
            .get(format!("{base}/flaky/x"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "call {call}");
        assert_eq!(response.text().await.expect("body"), "ok");
        tokio::time::timeout(WAIT, closed_rx.recv())
            .await
            .expect("the upstream closed its connection");
    }
}

/// A one-shot raw upstream: answers every request on every connection with `response`
/// (then keeps the connection open), so tests can send what no well-behaved server would.
async fn raw_upstream(response: &'static [u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 1024];
                loop {
                    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buffer[..n]),
                        }
                    }
                    head.clear();
                    if stream.write_all(response).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

const OPEN_ROUTE: &str = r#"
  route "open" {
    upstream = "UPSTREAM"
  }
"#;

/// Request heads the fast path cannot frame unambiguously are answered 400 (or 431 when too
/// large) and the connection is closed; none reaches the upstream.
#[tokio::test]
async fn egress_fast_path_refuses_ambiguous_request_heads() {
    let upstream = Upstream::start_http().await;
    let (_vault, _dir, agent, _base) = egress_agent(&upstream, OPEN_ROUTE).await;
    let address = agent.egress_address.expect("egress");
    let huge = format!(
        "GET /open/x HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let cases: &[(&str, &[u8], &str)] = &[
        ("two equal Content-Length", b"POST /open/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", "400"),
        ("Content-Length not a number", b"POST /open/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5x\r\n\r\nhello", "400"),
        ("Content-Length with a sign", b"POST /open/x HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello", "400"),
        ("Content-Length list", b"POST /open/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello", "400"),
        ("obs-fold", b"GET /open/x HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n", "400"),
        ("NUL in a value", b"GET /open/x HTTP/1.1\r\nHost: x\r\nX-Nul: a\0b\r\n\r\n", "400"),
        ("CR in a value", b"GET /open/x HTTP/1.1\r\nHost: x\r\nX-Cr: a\rb\r\n\r\n", "400"),
        ("space before the colon", b"GET /open/x HTTP/1.1\r\nHost: x\r\nContent-Length : 0\r\n\r\n", "400"),
        ("head too large", huge.as_bytes(), "431"),
    ];
    for (name, request, status) in cases {
        let response = support::raw_request_until_closed(address, request).await;
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status}")),
            "{name}: {response}"
        );
        assert_eq!(
            response.matches("HTTP/1.1 ").count(),
            1,
            "{name}: {response}"
        );
    }
    assert_eq!(
        upstream.count(),
        0,
        "no ambiguous request reached the upstream"
    );
}

/// Bodies are consumed by their length exactly: a pipelined request after a body is served
/// as the next request, and a body that looks like a request is only a body. Bare-LF heads
/// are accepted (as hyper does) and forwarded with CRLF.
#[tokio::test]
async fn egress_fast_path_frames_pipelined_requests_exactly() {
    let upstream = Upstream::start_http().await;
    let (_vault, _dir, agent, _base) = egress_agent(&upstream, OPEN_ROUTE).await;
    let address = agent.egress_address.expect("egress");
    let inner = "GET /open/hidden HTTP/1.1\r\nHost: x\r\n\r\n";
    // `Connection: content-length` must not strip the length a body is framed by.
    let pipelined = format!(
        "POST /open/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
         POST /open/b HTTP/1.1\r\nHost: x\r\nConnection: content-length\r\nContent-Length: {}\r\n\r\n{inner}\
         GET /open/c HTTP/1.1\nHost: x\n\n\
         GET /open/d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        inner.len()
    );
    let response = support::raw_request_until_closed(address, pipelined.as_bytes()).await;
    assert_eq!(response.matches("HTTP/1.1 200").count(), 4, "{response}");
    let received: Vec<(String, usize)> = upstream
        .received
        .lock()
        .expect("lock")
        .iter()
        .map(|received| (received.path.clone(), received.body_len))
        .collect();
    assert_eq!(
        received,
        [
            ("/a".to_owned(), 5),
            ("/b".to_owned(), inner.len()),
            ("/c".to_owned(), 0),
            ("/d".to_owned(), 0)
        ]
    );
}

/// On the fast path (a plain-http route) the client's own credentials and hop-by-hop
/// headers, including those its `Connection` header names, never reach the upstream; the
/// route's key does, and the key is scrubbed from response headers.
#[tokio::test]
async fn egress_fast_path_replaces_client_credentials_and_hop_by_hop_headers() {
    let upstream = Upstream::start_http().await;
    let (_vault, _dir, agent, base) = egress_agent(&upstream, HTTP_BEARER_ROUTE).await;
    wait_ready(&base, "/bearer/ready").await;
    let address = agent.egress_address.expect("egress");
    let response = support::raw_request(
        address,
        b"POST /bearer/v1/x?q=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer mine\r\nauthorization: Bearer mine-too\r\nX-Api-Key: mine\r\nProxy-Authorization: Basic bWluZQ==\r\nConnection: keep-alive, x-hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: gzip\r\nX-End: stays\r\nContent-Length: 2\r\n\r\nhi",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let received = upstream.last();
    let bearer = format!("Bearer {API_KEY}");
    let authorizations: Vec<_> = received.headers.get_all("authorization").iter().collect();
    assert_eq!(authorizations, vec![bearer.as_str()]);
    for name in [
        "x-api-key",
        "proxy-authorization",
        "x-hop",
        "keep-alive",
        "te",
        "connection",
    ] {
        assert!(!received.headers.contains_key(name), "{name} was forwarded");
    }
    assert_eq!(received.headers["x-end"], "stays");
    assert_eq!(
        received.headers["host"],
        upstream.url().trim_start_matches("http://")
    );
    assert_eq!(received.query.as_deref(), Some("q=1"));
    assert_eq!(received.body_len, 2);
    let response = support::raw_request(
        address,
        b"GET /bearer/v1/error-echo HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert!(!response.contains(API_KEY), "{response}");
    assert!(response.contains("[REDACTED]"), "{response}");
}

/// A chunked response is decoded strictly and re-chunked as it arrives; a malformed chunk
/// closes the client connection instead of relaying a guess, and a response with both
/// framing headers is answered 502.
#[tokio::test]
async fn egress_fast_path_refuses_misframed_upstream_responses() {
    let good = raw_upstream(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Up: 1\r\n\r\n5;e=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n").await;
    let bad_chunk = raw_upstream(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled").await;
    let both = raw_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    let unused = Upstream::start_http().await;
    let routes = format!(
        "route \"good\" {{\n upstream = \"http://127.0.0.1:{good}\"\n }}\n\
         route \"badchunk\" {{\n upstream = \"http://127.0.0.1:{bad_chunk}\"\n }}\n\
         route \"both\" {{\n upstream = \"http://127.0.0.1:{both}\"\n }}"
    );
    let (_vault, _dir, agent, base) = egress_agent(&unused, &routes).await;
    let address = agent.egress_address.expect("egress");
    let client = support::http_client();
    let response = client
        .get(format!("{base}/good/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-up"], "1");
    assert_eq!(response.text().await.expect("body"), "hello world");
    let relayed = support::raw_request_until_closed(
        address,
        b"GET /badchunk/x HTTP/1.1\r\nHost: x\r\n\r\nGET /badchunk/y HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    // The body broke off at the bad chunk: the client gets at most the response head, then
    // a closed connection; the bytes after the bad chunk are never relayed as a response.
    assert!(!relayed.contains("smuggled"), "{relayed}");
    assert!(relayed.matches("HTTP/1.1 ").count() <= 1, "{relayed}");
    let response = client
        .get(format!("{base}/both/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 502);
}

/// A pooled connection that the upstream closes after reading the next request, before any
/// response byte: the fast path sends an idempotent request (PUT) again, once, on a fresh
/// connection (its body is in hand), so the call succeeds. A POST is never sent twice (the
/// upstream may have acted on it: a second LLM call is a second bill): it gets the 502.
#[tokio::test]
async fn egress_fast_path_retries_a_reused_connection_that_dies_before_responding() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    let n_requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&n_requests);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counted = std::sync::Arc::clone(&counted);
            tokio::spawn(async move {
                // Answer the first request on each connection; close on the second.
                for answer in [true, false] {
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buffer[..n]),
                        }
                    }
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if !answer {
                        return;
                    }
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await;
                }
            });
        }
    });
    let unused = Upstream::start_http().await;
    let routes = format!("route \"flaky\" {{\n upstream = \"http://127.0.0.1:{port}\"\n }}");
    let (_vault, _dir, _agent, base) = egress_agent(&unused, &routes).await;
    let client = support::http_client();
    let calls = [
        (reqwest::Method::PUT, 200, 1),
        // Reused connection dies: sent again on a fresh one.
        (reqwest::Method::PUT, 200, 3),
        // Reused connection dies: not sent again.
        (reqwest::Method::POST, 502, 4),
        (reqwest::Method::POST, 200, 5),
    ];
    for (call, (method, status, sent)) in calls.into_iter().enumerate() {
        let response = client
            .request(method, format!("{base}/flaky/x"))
            .body("payload")
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), status, "call {call}");
        if status == 200 {
            assert_eq!(response.text().await.expect("body"), "ok");
        }
        assert_eq!(
            n_requests.load(std::sync::atomic::Ordering::SeqCst),
            sent,
            "requests the upstream read after call {call}"
        );
    }
}

/// Responses without a body (to HEAD, 204, 304) are relayed head only, keeping the
/// connection usable; requests the fast path does not take (HTTP/1.0, `Expect`) are served
/// by the hyper path on the same listener.
#[tokio::test]
async fn egress_fast_path_relays_bodiless_responses_and_hands_over_the_rest() {
    let no_content = raw_upstream(b"HTTP/1.1 204 No Content\r\nX-Up: 1\r\n\r\n").await;
    let upstream = Upstream::start_http().await;
    let routes = format!(
        "{OPEN_ROUTE}\nroute \"empty\" {{\n upstream = \"http://127.0.0.1:{no_content}\"\n }}"
    );
    let (_vault, _dir, agent, _base) = egress_agent(&upstream, &routes).await;
    let address = agent.egress_address.expect("egress");
    let response = support::raw_request_until_closed(
        address,
        b"HEAD /open/h HTTP/1.1\r\nHost: x\r\n\r\nGET /empty/e HTTP/1.1\r\nHost: x\r\n\r\nGET /open/g HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let statuses: Vec<&str> = response
        .match_indices("HTTP/1.1 ")
        .map(|(start, _)| &response[start + 9..start + 12])
        .collect();
    assert_eq!(statuses, ["200", "204", "200"], "{response}");
    let head_response = &response[..response.find("HTTP/1.1 204").expect("204")];
    assert!(
        head_response.to_lowercase().contains("content-length: "),
        "{response}"
    );
    assert!(
        head_response.ends_with("\r\n\r\n"),
        "no body after HEAD: {response}"
    );
    for request in [
        &b"GET /open/old HTTP/1.0\r\nHost: x\r\n\r\n"[..],
        b"POST /open/expect HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    ] {
        let response = support::raw_request_until_closed(address, request).await;
        assert!(
            response.contains(" 200 OK"),
            "{}: {response}",
            String::from_utf8_lossy(request)
        );
    }
    let paths: Vec<String> = upstream
        .received
        .lock()
        .expect("lock")
        .iter()
        .map(|received| received.path.clone())
        .collect();
    assert_eq!(paths, ["/h", "/g", "/old", "/expect"]);
}

#[tokio::test]
async fn auto_auth_token_file_writes_sink_and_renews() {
    let vault = FakeVault::start().await;
    vault.add_token("short-token", 3, true);
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = dir.path().join("sink/token");
    let wrapped = dir.path().join("wrapped");
    let text = format!(
        r#"
vault {{ address = "{}" }}
auto_auth {{
  method "token_file" {{ config {{ token_file_path = "{}" }} }}
  sink "file" {{ config {{ path = "{}" }} }}
  sink "file" {{
    wrap_ttl = "5m"
    config {{ path = "{}" mode = 0640 }}
  }}
}}
"#,
        vault.address(),
        token_file(dir.path(), "short-token"),
        sink.display(),
        wrapped.display()
    );
    let _agent = start_agent(&text, dir.path()).await;
    eventually(WAIT, "sink written", || sink.exists()).await;
    assert_eq!(std::fs::read_to_string(&sink).expect("sink"), "short-token");
    assert_eq!(
        std::fs::metadata(&sink).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    eventually(WAIT, "wrapped sink written", || wrapped.exists()).await;
    let wrap: Value =
        serde_json::from_str(&std::fs::read_to_string(&wrapped).expect("wrapped")).expect("json");
    assert_eq!(wrap["creation_path"], "sys/wrapping/wrap");
    assert_eq!(
        std::fs::metadata(&wrapped)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o640
    );
    // A 3 s token is renewed at about 2 s.
    eventually(WAIT, "token renewed", || {
        vault.with(|state| state.n_renew_self) >= 1
    })
    .await;
}

#[tokio::test]
async fn auto_auth_approle_logs_in_again_when_renewal_fails() {
    let vault = FakeVault::start().await;
    vault.with(|state| {
        state.login_ttl = 2;
        state.refuse_renew_self = true;
    });
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("role_id"), "role-123\n").expect("role");
    std::fs::write(dir.path().join("secret_id"), "secret-456").expect("secret");
    let sink = dir.path().join("token");
    let text = format!(
        r#"
vault {{ address = "{}" }}
auto_auth {{
  method "approle" {{
    config {{
      role_id_file_path = "{dir}/role_id"
      secret_id_file_path = "{dir}/secret_id"
    }}
  }}
  sink "file" {{ config {{ path = "{}" }} }}
}}
"#,
        vault.address(),
        sink.display(),
        dir = dir.path().display()
    );
    let _agent = start_agent(&text, dir.path()).await;
    eventually(WAIT, "first login", || {
        std::fs::read_to_string(&sink).is_ok_and(|token| token == "hvs.test-token-1")
    })
    .await;
    // The secret ID file is removed after reading (the default), yet later logins work from
    // the value kept in memory.
    assert!(!dir.path().join("secret_id").exists());
    eventually(WAIT, "second login after a refused renewal", || {
        std::fs::read_to_string(&sink).is_ok_and(|token| token == "hvs.test-token-2")
    })
    .await;
    assert!(vault.with(|state| state.n_renew_self) >= 1);
}

#[tokio::test]
async fn auto_auth_retries_until_the_server_is_reachable() {
    // Nothing listens on this port yet.
    let placeholder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = placeholder.local_addr().expect("addr");
    drop(placeholder);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("jwt"), "header.payload.signature").expect("jwt");
    let sink = dir.path().join("token");
    let text = format!(
        r#"
vault {{ address = "http://{address}" }}
auto_auth {{
  method "jwt" {{
    min_backoff = "100ms"
    max_backoff = "200ms"
    config {{ role = "ci"  path = "{}/jwt" }}
  }}
  sink "file" {{ config {{ path = "{}" }} }}
}}
"#,
        dir.path().display(),
        sink.display()
    );
    let agent = start_agent(&text, dir.path()).await;
    eventually(WAIT, "failed attempts counted", || {
        agent.metrics.auth_login_failures.get() >= 2
    })
    .await;
    assert!(!sink.exists());
    // The server comes up on that port.
    let vault = FakeVault::start_on(address).await;
    eventually(WAIT, "login after the server came up", || sink.exists()).await;
    assert_eq!(vault.with(|state| state.n_logins), 1);
}

#[tokio::test]
async fn templates_render_kv2_atomically_with_perms_and_rerender_on_change() {
    let vault = FakeVault::start().await;
    vault.put_kv("app", json!({"password": "first", "user": "app"}));
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("commands");
    let text = config(
        &vault,
        dir.path(),
        &format!(
            r#"
template_config {{ static_secret_render_interval = "200ms" }}
template {{
  contents = "{{{{ with secret \"secret/app\" }}}}{{{{ .Data.data.user }}}}:{{{{ .Data.data.password }}}}{{{{ end }}}}"
  destination = "out/app.txt"
  perms = "0640"
  command = "echo ran >> {}"
}}
template {{
  contents = "{{{{ with secret \"secret/data/app\" }}}}{{{{ range $k, $v := .Data.data }}}}{{{{ $k }}}}={{{{ $v }}}};{{{{ end }}}}{{{{ end }}}}"
  destination = "{}/all.txt"
}}
"#,
            marker.display(),
            dir.path().canonicalize().expect("canonical").display()
        ),
    );
    let _agent = start_agent(&text, dir.path()).await;
    let out = dir.path().join("out/app.txt");
    eventually(WAIT, "rendered", || {
        std::fs::read_to_string(&out).is_ok_and(|text| text == "app:first")
    })
    .await;
    assert_eq!(
        std::fs::metadata(&out).expect("meta").permissions().mode() & 0o777,
        0o640
    );
    eventually(WAIT, "second template", || {
        std::fs::read_to_string(dir.path().join("all.txt"))
            .is_ok_and(|text| text == "password=first;user=app;")
    })
    .await;
    eventually(WAIT, "command ran", || {
        std::fs::read_to_string(&marker).is_ok_and(|text| text == "ran\n")
    })
    .await;
    vault.put_kv("app", json!({"password": "second", "user": "app"}));
    eventually(WAIT, "re-rendered", || {
        std::fs::read_to_string(&out).is_ok_and(|text| text == "app:second")
    })
    .await;
    eventually(WAIT, "command ran again", || {
        std::fs::read_to_string(&marker).is_ok_and(|text| text == "ran\nran\n")
    })
    .await;
    // KV v2 detection went through the mounts preflight.
    assert!(vault.with(|state| state
        .requests
        .iter()
        .any(|(_, path, _)| path == "sys/internal/ui/mounts/secret/app")));
    let leftovers = std::fs::read_dir(dir.path().join("out"))
        .expect("dir")
        .count();
    assert_eq!(leftovers, 1, "no temporary files left behind");
}

#[tokio::test]
async fn template_destination_outside_the_allowed_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    for destination in ["../escape.txt", "/etc/ward-agent-test.txt", "a/../../b"] {
        let text =
            format!("template {{\n contents = \"x\"\n destination = \"{destination}\"\n}}\n");
        let body = ward_agent::config::parse_text(&text, false).expect("parses");
        let error = ward_agent::config::decode(&body, dir.path(), dir.path()).expect_err("refused");
        assert!(
            error.message.contains("outside the allowed directory"),
            "{destination}: {error}"
        );
    }
    // A symbolic link placed at the destination is not written through.
    let vault = FakeVault::start().await;
    vault.put_kv("app", json!({"password": "pw"}));
    let victim = tempfile::NamedTempFile::new().expect("victim");
    std::os::unix::fs::symlink(victim.path(), dir.path().join("linked.txt")).expect("symlink");
    let text = config(
        &vault,
        dir.path(),
        r#"
template {
  contents = "{{ with secret \"secret/app\" }}{{ .Data.data.password }}{{ end }}"
  destination = "linked.txt"
}
"#,
    );
    let agent = start_agent(&text, dir.path()).await;
    eventually(WAIT, "render attempted", || {
        agent.metrics.template_render_failures.get() >= 1
    })
    .await;
    assert_eq!(std::fs::read_to_string(victim.path()).expect("victim"), "");
}

#[tokio::test]
async fn error_on_missing_key_with_exit_on_retry_failure_exits_non_zero() {
    let vault = FakeVault::start().await;
    vault.put_kv("app", json!({"password": "pw"}));
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config(
        &vault,
        dir.path(),
        r#"
template_config { exit_on_retry_failure = true }
template {
  contents = "{{ with secret \"secret/app\" }}{{ .Data.data.no_such_key }}{{ end }}"
  destination = "app.txt"
  error_on_missing_key = true
}
"#,
    );
    let agent = start_agent(&text, dir.path()).await;
    let code = tokio::time::timeout(WAIT, agent.wait())
        .await
        .expect("agent exits");
    assert_eq!(code, 1);
    assert!(!dir.path().join("app.txt").exists());

    // Without error_on_missing_key the key renders empty.
    let text = config(
        &vault,
        dir.path(),
        r#"
template {
  contents = "[{{ with secret \"secret/app\" }}{{ .Data.data.no_such_key }}{{ end }}]"
  destination = "lenient.txt"
}
"#,
    );
    let _agent = start_agent(&text, dir.path()).await;
    eventually(WAIT, "lenient render", || {
        std::fs::read_to_string(dir.path().join("lenient.txt")).is_ok_and(|text| text == "[]")
    })
    .await;
}

/// A dynamic secret whose server goes away: the file and the egress route stay in service
/// until the lease's expiry, and are withdrawn then, not before.
#[tokio::test]
async fn lease_is_withdrawn_at_expiry_when_the_server_stops() {
    let vault = FakeVault::start().await;
    vault.with(|state| {
        state.db_ttl = 4;
        state.db_renewable = true;
    });
    let upstream = Upstream::start_http().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config(
        &vault,
        dir.path(),
        &(r#"
template {
  contents = "{{ with secret \"database/creds/app\" }}{{ .Data.username }}:{{ .Data.password }}{{ end }}"
  destination = "db.txt"
}
"#
        .to_owned()
            + &egress_config(
                &upstream,
                r#"
  route "db" {
    upstream = "UPSTREAM"
    credential = "database/creds/app"
    inject { header = "x-db-password"  value = "{{ .Data.password }}" }
  }
"#,
            )),
    );
    let agent = start_agent(&text, dir.path()).await;
    let base = format!("http://{}", agent.egress_address.expect("egress"));
    let db = dir.path().join("db.txt");
    eventually(WAIT, "rendered", || db.exists()).await;
    // The lease is renewed at ~2/3 of 4 s while the server is up.
    eventually(WAIT, "lease renewed", || {
        vault.with(|state| state.n_lease_renewals) >= 1
    })
    .await;
    wait_ready(&base, "/db/x").await;
    vault.stop();
    let stopped = tokio::time::Instant::now();
    // Before the expiry (at most 4 s after the last renewal) the secret is still served.
    let client = support::http_client();
    let response = client
        .get(format!("{base}/db/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert!(db.exists(), "withdrawn too early");
    eventually(Duration::from_secs(15), "file removed at expiry", || {
        !db.exists()
    })
    .await;
    let withdrawn_after = stopped.elapsed();
    assert!(
        withdrawn_after >= Duration::from_millis(500),
        "withdrawn after only {withdrawn_after:?}"
    );
    let response = client
        .get(format!("{base}/db/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 503);
    assert!(agent.metrics.secrets_withdrawn.get() >= 1);
}

#[tokio::test]
async fn exit_on_retry_failure_exits_non_zero_when_a_lease_expires() {
    let vault = FakeVault::start().await;
    vault.with(|state| {
        state.db_ttl = 2;
        state.db_renewable = false;
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config(
        &vault,
        dir.path(),
        r#"
template_config { exit_on_retry_failure = true }
template {
  contents = "{{ with secret \"database/creds/app\" }}{{ .Data.username }}{{ end }}"
  destination = "db.txt"
}
"#,
    );
    let agent = start_agent(&text, dir.path()).await;
    eventually(WAIT, "rendered", || dir.path().join("db.txt").exists()).await;
    vault.stop();
    let code = tokio::time::timeout(Duration::from_secs(15), agent.wait())
        .await
        .expect("agent exits");
    assert_eq!(code, 1);
}

#[tokio::test]
async fn api_proxy_injects_the_auto_auth_token_and_serves_metrics() {
    let vault = FakeVault::start().await;
    vault.put_kv("app", json!({"password": "pw"}));
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config(
        &vault,
        dir.path(),
        r#"
api_proxy { use_auto_auth_token = true }
listener "tcp" {
  address = "127.0.0.1:0"
  tls_disable = true
}
"#,
    );
    let agent = start_agent(&text, dir.path()).await;
    let base = format!("http://{}", agent.listener_addresses[0]);
    let client = support::http_client();
    let deadline = tokio::time::Instant::now() + WAIT;
    let body: Value = loop {
        let response = client
            .get(format!("{base}/v1/secret/data/app"))
            .send()
            .await
            .expect("request");
        if response.status() == 200 {
            break response.json().await.expect("json");
        }
        assert!(tokio::time::Instant::now() < deadline, "no token injected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(body["data"]["data"]["password"], "pw");
    let (_, _, token) = vault
        .with(|state| state.requests.last().cloned())
        .expect("request");
    assert_eq!(token.as_deref(), Some("agent-token"));
    // A client's own token is kept (use_auto_auth_token = true, not "force").
    let response = client
        .get(format!("{base}/v1/secret/data/app"))
        .header("X-Vault-Token", "bogus")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 403);
    let metrics = client
        .get(format!("{base}/agent/v1/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("ward_agent_api_proxy_requests_total"),
        "{metrics}"
    );
    // A request smuggling attempt gets Vault's error shape, a 400 and a closed connection,
    // and never reaches the server.
    let n_requests = vault.with(|state| state.requests.len());
    let response = support::raw_request_until_closed(
        agent.listener_addresses[0],
        b"POST /v1/secret/data/app HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 51\r\n\r\n0\r\n\r\nGET /v1/sys/smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(
        response.contains("{\"errors\":[\"both Content-Length"),
        "{response}"
    );
    assert_eq!(response.matches("HTTP/1.1 ").count(), 1, "{response}");
    assert_eq!(vault.with(|state| state.requests.len()), n_requests);
}

#[tokio::test]
async fn flag_only_kubernetes_mode_renders_the_secret_field() {
    let vault = FakeVault::start().await;
    vault.put_kv("ai-agent/api-key", json!({"api_key": API_KEY}));
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("sa-token"), "header.payload.signature").expect("jwt");
    let destination = dir.path().join("secrets/api_key");
    let args: Vec<String> = [
        "-method=kubernetes".to_owned(),
        "-role=ai-agent-role".to_owned(),
        format!("-jwt-path={}", dir.path().join("sa-token").display()),
        "-secret-path=secret/data/ai-agent/api-key".to_owned(),
        "-secret-key-field=api_key".to_owned(),
        format!("-destination={}", destination.display()),
        format!("-address={}", vault.address()),
    ]
    .into();
    let ward_agent::cli::Parsed::Run(options) = ward_agent::cli::parse(&args).expect("flags")
    else {
        panic!("not help");
    };
    let config = ward_agent::cli::build_config(&options).expect("config");
    let _agent = ward_agent::Agent::start(config).await.expect("start");
    eventually(WAIT, "rendered", || {
        std::fs::read_to_string(&destination).is_ok_and(|text| text == API_KEY)
    })
    .await;
    assert_eq!(
        std::fs::metadata(&destination)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(vault.with(|state| state
        .requests
        .iter()
        .any(|(_, path, _)| path == "auth/kubernetes/login")));
}

/// The happy path against the real `ward server -dev`: AppRole auto-auth with token renewal,
/// a KV v2 template found through the mounts preflight, the egress proxy injecting the key,
/// and the API proxy adding the token.
#[tokio::test]
async fn real_server_approle_templates_egress_and_api_proxy() {
    use reqwest::Method;
    let mut server = support::RealServer::start().await;
    server
        .call(
            Method::POST,
            "secret/data/agents/openai",
            Some(json!({"data": {"api_key": API_KEY}})),
        )
        .await;
    server
        .call(
            Method::PUT,
            "sys/policies/acl/agent",
            Some(json!({"policy": "path \"secret/data/agents/*\" { capabilities = [\"read\"] }"})),
        )
        .await;
    server
        .call(
            Method::POST,
            "sys/auth/approle",
            Some(json!({"type": "approle"})),
        )
        .await;
    server
        .call(
            Method::POST,
            "auth/approle/role/agent",
            Some(json!({"token_policies": ["agent"], "token_ttl": "3s", "token_max_ttl": "1h"})),
        )
        .await;
    let role_id = server
        .call(Method::GET, "auth/approle/role/agent/role-id", None)
        .await["data"]["role_id"]
        .as_str()
        .expect("role_id")
        .to_owned();
    let secret_id = server
        .call(Method::POST, "auth/approle/role/agent/secret-id", None)
        .await["data"]["secret_id"]
        .as_str()
        .expect("secret_id")
        .to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("role_id"), role_id).expect("role");
    std::fs::write(dir.path().join("secret_id"), secret_id).expect("secret");
    let upstream = Upstream::start_http().await;
    let text = format!(
        r#"
vault {{ address = "{address}" }}
auto_auth {{
  method "approle" {{
    config {{
      role_id_file_path = "{dir}/role_id"
      secret_id_file_path = "{dir}/secret_id"
      remove_secret_id_file_after_reading = false
    }}
  }}
  sink "file" {{ config {{ path = "{dir}/token" }} }}
}}
template {{
  contents = "{{{{ with secret \"secret/agents/openai\" }}}}{{{{ .Data.data.api_key }}}}{{{{ end }}}}"
  destination = "key.txt"
  perms = "0600"
}}
api_proxy {{ use_auto_auth_token = true }}
listener "tcp" {{
  address = "127.0.0.1:0"
  tls_disable = true
}}
{egress}
"#,
        address = server.address,
        dir = dir.path().display(),
        egress = egress_config(
            &upstream,
            r#"
  route "openai" {
    upstream = "UPSTREAM"
    credential = "secret/data/agents/openai"
    inject { header = "Authorization"  value = "Bearer {{ .Data.data.api_key }}" }
  }
"#
        ),
    );
    let agent = start_agent(&text, dir.path()).await;
    let key_file = dir.path().join("key.txt");
    eventually(WAIT, "template rendered from the real server", || {
        std::fs::read_to_string(&key_file).is_ok_and(|text| text == API_KEY)
    })
    .await;
    let base = format!("http://{}", agent.egress_address.expect("egress"));
    wait_ready(&base, "/openai/v1/models").await;
    assert_eq!(
        upstream.last().headers["authorization"],
        format!("Bearer {API_KEY}").as_str()
    );
    // The 3 s token is renewed by renew-self at about 2 s.
    eventually(WAIT, "token renewed", || {
        agent.metrics.token_renewals.get() >= 1
    })
    .await;
    // hvac-style call through the API proxy without a token.
    let proxy = format!("http://{}", agent.listener_addresses[0]);
    let body: Value = support::http_client()
        .get(format!("{proxy}/v1/secret/data/agents/openai"))
        .send()
        .await
        .expect("proxy")
        .json()
        .await
        .expect("json");
    assert_eq!(body["data"]["data"]["api_key"], API_KEY);
    server.kill().await;
}

#[test]
fn example_configs_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().expect("tempdir");
    let hcl =
        std::fs::read_to_string(root.join("deploy/examples/agent.hcl")).expect("example exists");
    // The ConfigMap carries the same file, indented under `agent.hcl: |`.
    let configmap = std::fs::read_to_string(root.join("deploy/examples/kubernetes/configmap.yaml"))
        .expect("configmap exists");
    let embedded: String = configmap
        .split_once("agent.hcl: |\n")
        .expect("agent.hcl key")
        .1
        .lines()
        .map(|line| line.strip_prefix("    ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(
        embedded.trim(),
        hcl.trim(),
        "the ConfigMap and agent.hcl differ"
    );
    let body = ward_agent::config::parse_text(&hcl, false).expect("parses");
    let config = ward_agent::config::decode(&body, dir.path(), dir.path()).expect("decodes");
    assert_eq!(config.egress.expect("egress").routes.len(), 2);
}

#[tokio::test]
async fn exit_after_auth_exits_zero_after_login_and_first_render() {
    let vault = FakeVault::start().await;
    vault.put_kv("app", json!({"password": "pw"}));
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config(
        &vault,
        dir.path(),
        r#"
exit_after_auth = true
template {
  contents = "{{ with secret \"secret/app\" }}{{ .Data.data.password }}{{ end }}"
  destination = "once.txt"
}
"#,
    );
    let agent = start_agent(&text, dir.path()).await;
    let code = tokio::time::timeout(WAIT, agent.wait())
        .await
        .expect("agent exits");
    assert_eq!(code, 0);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("once.txt")).expect("rendered"),
        "pw"
    );
}

// ---------------------------------------------------------------------------
// A real PostgreSQL dynamic secret through the real server

/// The PostgreSQL of the test machines: loopback, user `postgres`, trust authentication.
const PG_ADMIN: &str = "host=127.0.0.1 port=5432 user=postgres dbname=postgres";

async fn pg_admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(PG_ADMIN, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL answers on 127.0.0.1:5432 (scripts/ensure-databases)");
    tokio::spawn(connection);
    client
}

/// Logs in to PostgreSQL as `username` and runs `SELECT 1`.
async fn pg_select_one(username: &str, password: &str) -> Result<i32, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(5432)
        .user(username)
        .password(password)
        .dbname("postgres");
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    client.query_one("SELECT 1", &[]).await?.try_get(0)
}

/// The end of `VALID UNTIL` for `username` (seconds since the epoch), which Ward sets to the
/// lease's expiry when it creates the user and again at each renewal; None once dropped.
async fn pg_valid_until(admin: &tokio_postgres::Client, username: &str) -> Option<i64> {
    admin
        .query_opt(
            "SELECT extract(epoch FROM rolvaliduntil)::bigint FROM pg_roles WHERE rolname = $1",
            &[&username],
        )
        .await
        .expect("pg_roles")
        .map(|row| row.get::<_, i64>(0))
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// A real `ward server -dev` with the database engine on the real PostgreSQL and a role `app`
/// whose leases last `default_ttl` seconds and may be renewed up to ten minutes.
async fn real_server_with_postgres_role(default_ttl: u64) -> support::RealServer {
    use reqwest::Method;
    let server = support::RealServer::start().await;
    server
        .call(
            Method::POST,
            "sys/mounts/database",
            Some(json!({"type": "database"})),
        )
        .await;
    server
        .call(
            Method::POST,
            "database/config/pg",
            Some(json!({
                "plugin_name": "postgresql-database-plugin",
                "allowed_roles": ["app"],
                "connection_url": "postgresql://{{username}}:{{password}}@127.0.0.1:5432/postgres?sslmode=disable",
                "username": "postgres",
                "password": "unused",
            })),
        )
        .await;
    server
        .call(
            Method::POST,
            "database/roles/app",
            Some(json!({
                "db_name": "pg",
                "default_ttl": format!("{default_ttl}s"),
                "max_ttl": "10m",
                "creation_statements": "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
            })),
        )
        .await;
    server
}

/// An agent logged in to `server` (its root token, from a file) that renders
/// `database/creds/app` to `db.txt` as `username:password` and injects the password into the
/// egress route `db`.
async fn postgres_agent(
    server: &support::RealServer,
    upstream: &Upstream,
    dir: &Path,
    extra: &str,
) -> ward_agent::RunningAgent {
    let text = format!(
        r#"
vault {{ address = "{address}" }}
auto_auth {{
  method "token_file" {{ config {{ token_file_path = "{token}" }} }}
}}
{extra}
template {{
  contents = "{{{{ with secret \"database/creds/app\" }}}}{{{{ .Data.username }}}}:{{{{ .Data.password }}}}{{{{ end }}}}"
  destination = "db.txt"
  perms = "0600"
}}
{egress}
"#,
        address = server.address,
        token = token_file(dir, &server.root_token),
        egress = egress_config(
            upstream,
            r#"
  route "db" {
    upstream = "UPSTREAM"
    credential = "database/creds/app"
    inject { header = "x-db-password"  value = "{{ .Data.password }}" }
  }
"#
        ),
    );
    start_agent(&text, dir).await
}

/// Drops the PostgreSQL user the test made (the killed dev server can no longer revoke it).
async fn drop_pg_user(admin: &tokio_postgres::Client, username: &str) {
    admin
        .batch_execute(&format!("DROP ROLE IF EXISTS \"{username}\""))
        .await
        .expect("drop role");
}

/// The issue's fail-fast path with every part real: `ward server`, the database engine and
/// PostgreSQL. The credential is rendered, renewed (same user, `VALID UNTIL` moved on, still
/// able to log in), and when the server is stopped it stays in service until the lease's
/// expiry and is withdrawn then, from the file and from the egress route.
#[tokio::test]
async fn real_postgres_credential_is_renewed_then_withdrawn_when_the_server_stops() {
    // Long enough that the checks between the renewal and the expiry fit on a loaded machine.
    const LEASE_SECONDS: u64 = 8;
    let admin = pg_admin().await;
    let mut server = real_server_with_postgres_role(LEASE_SECONDS).await;
    let upstream = Upstream::start_http().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = postgres_agent(&server, &upstream, dir.path(), "").await;
    let base = format!("http://{}", agent.egress_address.expect("egress"));
    let db = dir.path().join("db.txt");
    eventually(WAIT, "credential rendered", || {
        std::fs::read_to_string(&db).is_ok_and(|text| text.contains(':'))
    })
    .await;
    let rendered = std::fs::read_to_string(&db).expect("db.txt");
    let (username, password) = rendered.split_once(':').expect("username:password");
    let (username, password) = (username.to_owned(), password.to_owned());
    assert_eq!(
        std::fs::metadata(&db).expect("meta").permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(pg_select_one(&username, &password).await.expect("login"), 1);
    let first_valid_until = pg_valid_until(&admin, &username)
        .await
        .expect("the user exists");

    wait_ready(&base, "/db/x").await;
    assert_eq!(upstream.last().headers["x-db-password"], password.as_str());

    // Renewed at about two thirds of the lease: the same user, valid for longer.
    eventually(Duration::from_secs(30), "lease renewed", || {
        agent.metrics.lease_renewals.get() >= 1
    })
    .await;
    let expiry = pg_valid_until(&admin, &username)
        .await
        .expect("the user still exists after renewal");
    assert!(
        expiry > first_valid_until,
        "VALID UNTIL moved from {first_valid_until} to {expiry}"
    );
    // The server goes away just after the renewal, so most of the lease is still ahead.
    server.kill().await;
    let expiry = expiry as f64;

    // Until the lease's expiry the same credential is still in service: in the file, in
    // PostgreSQL and on the egress route.
    assert_eq!(
        std::fs::read_to_string(&db).expect("not withdrawn before the lease's expiry"),
        rendered,
        "a renewal keeps the same credential"
    );
    assert_eq!(
        pg_select_one(&username, &password)
            .await
            .expect("login after renewal"),
        1
    );
    let client = support::http_client();
    let response = client
        .get(format!("{base}/db/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200, "served until the lease's expiry");
    assert!(
        unix_now() < expiry,
        "the checks above ran before the expiry (machine too slow for an {LEASE_SECONDS} s lease)"
    );
    assert!(db.exists(), "withdrawn before the lease's expiry");

    eventually(
        Duration::from_secs(LEASE_SECONDS + 20),
        "file removed at expiry",
        || !db.exists(),
    )
    .await;
    let withdrawn_at = unix_now();
    // VALID UNTIL has whole seconds; the agent counts from when it received the renewal.
    assert!(
        withdrawn_at >= expiry - 1.0,
        "withdrawn at {withdrawn_at}, before the lease's expiry {expiry}"
    );
    let response = client
        .get(format!("{base}/db/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "credential_unavailable", "{body}");
    assert!(agent.metrics.secrets_withdrawn.get() >= 1);
    drop_pg_user(&admin, &username).await;
}

/// The same with `exit_on_retry_failure`: the agent keeps serving until the lease's expiry,
/// then exits non-zero so that Kubernetes restarts the pod.
#[tokio::test]
async fn real_postgres_exit_on_retry_failure_exits_at_expiry() {
    const LEASE_SECONDS: u64 = 6;
    let admin = pg_admin().await;
    let mut server = real_server_with_postgres_role(LEASE_SECONDS).await;
    let upstream = Upstream::start_http().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let agent = postgres_agent(
        &server,
        &upstream,
        dir.path(),
        "template_config { exit_on_retry_failure = true }",
    )
    .await;
    let db = dir.path().join("db.txt");
    eventually(WAIT, "credential rendered", || {
        std::fs::read_to_string(&db).is_ok_and(|text| text.contains(':'))
    })
    .await;
    let rendered = std::fs::read_to_string(&db).expect("db.txt");
    let username = rendered.split_once(':').expect("username:password").0;
    server.kill().await;
    let expiry = pg_valid_until(&admin, username).await.expect("user") as f64;
    let code = tokio::time::timeout(Duration::from_secs(LEASE_SECONDS + 20), agent.wait())
        .await
        .expect("the agent exits once the lease has expired");
    let exited_at = unix_now();
    assert_eq!(code, 1);
    assert!(
        exited_at >= expiry - 1.0,
        "exited at {exited_at}, before the lease's expiry {expiry}"
    );
    drop_pg_user(&admin, username).await;
}
