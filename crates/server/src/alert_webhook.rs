//! Alert delivery over HTTP: the [`AlertTransport`] the server installs in the core
//! (`core.set_alert_transport(Arc::new(WebhookTransport::new()?))`).
//!
//! The core builds the body and the `X-Ward-Signature` header and retries with backoff; this
//! only POSTs and says whether the receiver took it (a 2xx status). HTTPS uses the operating
//! system's trust store. Error messages carry the status or the connection error, never the
//! body or the signature.

use std::time::Duration;

use async_trait::async_trait;
use ward_core::alerts::AlertTransport;

/// POSTs alerts with a shared, pooled HTTP client.
pub struct WebhookTransport {
    client: reqwest::Client,
}

impl WebhookTransport {
    pub fn new() -> Result<WebhookTransport, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5));
        for certificate in rustls_native_certs::load_native_certs().certs {
            if let Ok(root) = reqwest::Certificate::from_der(certificate.as_ref()) {
                builder = builder.add_root_certificate(root);
            }
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the alert HTTP client: {e}"))?;
        Ok(WebhookTransport { client })
    }
}

#[async_trait]
impl AlertTransport for WebhookTransport {
    async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<(), String> {
        let mut request = self.client.post(url).body(body);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("receiver answered {}", response.status().as_u16())),
            Err(e) if e.is_timeout() => Err("timed out".into()),
            Err(e) if e.is_connect() => Err("connection failed".into()),
            Err(_) => Err("request failed".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use serde_json::{json, Value};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use ward_core::request::{Request, Verb};
    use ward_core::{Core, CoreConfig};

    use super::*;

    /// The requests a receiver saw: head (request line and headers) and body.
    type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

    /// A minimal HTTP/1.1 receiver: records each request's headers and body, answers 200.
    async fn receive(listener: tokio::net::TcpListener, seen: Seen) {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buffer = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head, body) = loop {
                let Ok(n) = stream.read(&mut chunk).await else {
                    break (String::new(), Vec::new());
                };
                if n == 0 {
                    break (String::new(), Vec::new());
                }
                buffer.extend_from_slice(&chunk[..n]);
                if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buffer[..end]).to_string();
                    let length: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    while buffer.len() < end + 4 + length {
                        match stream.read(&mut chunk).await {
                            Ok(n) if n > 0 => buffer.extend_from_slice(&chunk[..n]),
                            _ => break,
                        }
                    }
                    break (head, buffer[end + 4..].to_vec());
                }
            };
            seen.lock().expect("lock").push((head, body));
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        }
    }

    #[tokio::test]
    async fn a_policy_change_reaches_a_webhook_signed_after_the_receiver_comes_up() {
        let core = Core::new(
            CoreConfig::default(),
            Arc::new(ward_storage::InMemory::new()),
            ward_engines::registry(),
        );
        let root = core
            .dev_init(None)
            .await
            .expect("dev init")
            .root_token
            .to_string();
        core.set_alert_transport(Arc::new(WebhookTransport::new().expect("client")));
        // Reserve a port, then close it: the receiver is down at first.
        let reserved = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = reserved.local_addr().expect("addr");
        drop(reserved);
        let call = |path: &str, data: Value| {
            core.handle_request(
                Request::new(Verb::Write, path)
                    .with_token(&root)
                    .with_data(data),
            )
        };
        call(
            "sys/alerts/config",
            json!({"retry_initial_backoff_ms": 50, "retry_max_backoff_ms": 200}),
        )
        .await
        .expect("config");
        call("sys/alerts/sinks/hook", json!({"type": "webhook", "url": format!("http://{address}/alerts"), "secret": "hook-secret-9"})).await.expect("sink");
        call(
            "sys/policies/acl/ops",
            json!({"policy": "path \"kv/*\" { capabilities = [\"read\"] }"}),
        )
        .await
        .expect("policy");

        let deadline = Instant::now() + Duration::from_secs(10);
        while core
            .metrics()
            .counter("ward_alert_deliveries_total", &[("outcome", "failed")])
            == 0
        {
            assert!(
                Instant::now() < deadline,
                "a failed attempt while the receiver is down"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            core.alerts().pending_count(),
            1,
            "still pending while the receiver is down"
        );

        let listener = tokio::net::TcpListener::bind(address)
            .await
            .expect("receiver up on the same port");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let receiver = tokio::spawn(receive(listener, seen.clone()));
        let deadline = Instant::now() + Duration::from_secs(10);
        let (head, body) = loop {
            if let Some(first) = seen.lock().expect("lock").first().cloned() {
                break first;
            }
            assert!(
                Instant::now() < deadline,
                "delivered after the receiver came up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let signature = head
            .lines()
            .find_map(|l| {
                l.strip_prefix("x-ward-signature: ")
                    .or_else(|| l.strip_prefix("X-Ward-Signature: "))
            })
            .expect("signature header")
            .to_string();
        assert_eq!(
            signature,
            ward_core::alerts::signature("hook-secret-9", &body),
            "the receiver can verify the HMAC"
        );
        let alert: Value = serde_json::from_slice(&body).expect("json body");
        assert_eq!(alert["rule"], json!("policy-change"));
        assert!(alert["details"]["diff"]
            .as_str()
            .is_some_and(|d| d.contains("+path \"kv/*\"")));
        receiver.abort();
    }
}
