//! The outbound HTTP client of the auth methods: JWKS and OIDC discovery fetches, the OIDC
//! code exchange and Kubernetes TokenReview calls.
//!
//! A configured CA PEM replaces the system trust store (as Vault's `*_ca_pem` fields do);
//! without one the operating system's roots are used. TLS is 1.2 or newer, redirects are
//! not followed (a JWKS URL must not bounce elsewhere), every call has a deadline, and
//! bodies are read up to a fixed size.

use std::time::Duration;

use reqwest::{Certificate, Client, Response};

/// Largest response body read from a provider or a cluster.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A client trusting `ca_pem` alone when it is set, else the system roots.
pub(crate) fn client(ca_pem: &str) -> Result<Client, String> {
    let mut builder = Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .min_tls_version(reqwest::tls::Version::TLS_1_2)
        .user_agent("ward");
    if !ca_pem.trim().is_empty() {
        let certificates = Certificate::from_pem_bundle(ca_pem.as_bytes())
            .map_err(|e| format!("invalid CA PEM: {e}"))?;
        if certificates.is_empty() {
            return Err("the CA PEM holds no certificate".into());
        }
        builder = builder.tls_built_in_root_certs(false);
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))
}

/// Whether `ca_pem` holds at least one certificate (config validation).
pub(crate) fn has_certificate(ca_pem: &str) -> bool {
    Certificate::from_pem_bundle(ca_pem.as_bytes()).is_ok_and(|c| !c.is_empty())
}

/// The body of a response, refused when it exceeds [`MAX_BODY_BYTES`].
pub(crate) async fn read_body(mut response: Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading the response: {e}"))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err("response body too large".into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// GETs `url` and returns the body of a 2xx answer.
pub(crate) async fn get(client: &Client, url: &str) -> Result<Vec<u8>, String> {
    let response = client
        .get(url)
        .header("Accept", "application/json")
        .send()
        .await
        .map_err(|e| format!("fetching {url}: {}", without_url(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("fetching {url}: status {}", status.as_u16()));
    }
    read_body(response).await
}

/// A reqwest error's text without the URL (which the caller already names).
pub(crate) fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(&format!(" for url ({url})"), "");
    }
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
