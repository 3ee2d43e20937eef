//! The HTTP client of access-request gatekeepers: the [`Gatekeeper`] the server installs in
//! the core (`core.set_gatekeeper(...)` in [`crate::build_core`]).
//!
//! The core builds and signs the body, bounds the wait and reads the verdict; this only
//! POSTs and returns the status and at most 64 KiB of the answer. Redirects are not
//! followed (a 3xx is an answer the core reads as a deny), HTTPS uses the operating system's
//! trust store, and error messages name the failure, never the body or the signature.

use std::time::Duration;

use async_trait::async_trait;
use ward_core::approvals::{Gatekeeper, GatekeeperReply};

/// The most of a gatekeeper's answer that is read; a verdict is a few hundred bytes.
const MAX_ANSWER: usize = 64 * 1024;

/// POSTs gatekeeper calls with a shared, pooled HTTP client.
pub struct HttpGatekeeper {
    client: reqwest::Client,
}

impl HttpGatekeeper {
    pub fn new() -> Result<HttpGatekeeper, String> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none());
        for certificate in rustls_native_certs::load_native_certs().certs {
            if let Ok(root) = reqwest::Certificate::from_der(certificate.as_ref()) {
                builder = builder.add_root_certificate(root);
            }
        }
        let client = builder
            .build()
            .map_err(|e| format!("cannot build the gatekeeper HTTP client: {e}"))?;
        Ok(HttpGatekeeper { client })
    }
}

#[async_trait]
impl Gatekeeper for HttpGatekeeper {
    async fn call(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<GatekeeperReply, String> {
        let mut request = self.client.post(url).timeout(timeout).body(body);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let mut response = request.send().await.map_err(describe)?;
        let status = response.status().as_u16();
        let mut answer = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(describe)? {
            if answer.len() + chunk.len() > MAX_ANSWER {
                return Err("answer too large".into());
            }
            answer.extend_from_slice(&chunk);
        }
        Ok(GatekeeperReply {
            status,
            body: answer,
        })
    }
}

fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        "request failed".into()
    }
}
