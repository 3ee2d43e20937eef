//! TLS for listeners: the rustls server configuration built from a listener's PEM files.
//!
//! rustls with the `ring` provider, chosen explicitly (no process-wide default provider),
//! TLS 1.2 and 1.3 (or 1.3 only with `tls_min_version = "tls13"`), ALPN `h2` then
//! `http/1.1`. With `tls_client_ca_file`, every client must present a certificate signed by
//! one of those CAs.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::config::{Tls, TlsVersion};

/// Why a listener's TLS settings could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError {
    pub message: String,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TlsError {}

fn tls_error(message: impl Into<String>) -> TlsError {
    TlsError {
        message: message.into(),
    }
}

/// Builds the rustls configuration of a listener.
pub fn server_config(tls: &Tls) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match tls.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| tls_error(format!("TLS setup: {e}")))?;
    let builder = match &tls.client_ca_file {
        Some(ca_file) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca_file)? {
                roots.add(cert).map_err(|e| {
                    tls_error(format!(
                        "{}: invalid CA certificate: {e}",
                        ca_file.display()
                    ))
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| tls_error(format!("{}: {e}", ca_file.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(read_certs(&tls.cert_file)?, read_key(&tls.key_file)?)
        .map_err(|e| tls_error(format!("{}: {e}", tls.cert_file.display())))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path)
        .map_err(|e| tls_error(format!("cannot read {}: {e}", path.display())))?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(format!("{}: invalid PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(tls_error(format!(
            "{}: no certificate found",
            path.display()
        )));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = std::fs::read(path)
        .map_err(|e| tls_error(format!("cannot read {}: {e}", path.display())))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| tls_error(format!("{}: invalid PEM: {e}", path.display())))?
        .ok_or_else(|| tls_error(format!("{}: no private key found", path.display())))
}
