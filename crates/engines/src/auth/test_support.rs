//! Test helpers for the auth methods: fixture keys, JWT minting with `ring`, contexts on an
//! auth mount, and a small HTTP(S) server on 127.0.0.1 port 0 that answers fixed routes and
//! records what it was sent (JWKS, discovery, token endpoint, TokenReview).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use ward_core::EngineContext;

use crate::auth::jws::PublicKey;
use crate::testing::{context, Mount};

/// The text of a file under `crates/engines/tests/fixtures/`.
pub(crate) fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn pkcs8(name: &str) -> Vec<u8> {
    let pem = fixture(&format!("{name}.key.pem"));
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("pkcs8 base64")
}

/// Which fixture key signs a test token, and so which algorithm it uses.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Signer {
    /// RS256 with `<name>.key.pem`.
    Rsa(&'static str),
    /// ES256.
    Ec(&'static str),
    /// EdDSA.
    Ed(&'static str),
}

impl Signer {
    fn algorithm(self) -> &'static str {
        match self {
            Signer::Rsa(_) => "RS256",
            Signer::Ec(_) => "ES256",
            Signer::Ed(_) => "EdDSA",
        }
    }
}

/// A compact JWS over `claims`, with `kid` in the header when given.
pub(crate) fn sign(signer: Signer, kid: Option<&str>, claims: &Value) -> String {
    let mut header = json!({"alg": signer.algorithm(), "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    sign_with_header(signer, &header, claims)
}

/// A compact JWS with an arbitrary header (the `alg` must fit the signer to verify).
pub(crate) fn sign_with_header(signer: Signer, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let rng = SystemRandom::new();
    let signature = match signer {
        Signer::Rsa(name) => {
            let pair = RsaKeyPair::from_pkcs8(&pkcs8(name)).expect("rsa key");
            let mut out = vec![0u8; pair.public().modulus_len()];
            pair.sign(
                &signature::RSA_PKCS1_SHA256,
                &rng,
                input.as_bytes(),
                &mut out,
            )
            .expect("sign");
            out
        }
        Signer::Ec(name) => {
            let pair = EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &pkcs8(name),
                &rng,
            )
            .expect("ec key");
            pair.sign(&rng, input.as_bytes())
                .expect("sign")
                .as_ref()
                .to_vec()
        }
        Signer::Ed(name) => {
            let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8(name)).expect("ed key");
            pair.sign(input.as_bytes()).as_ref().to_vec()
        }
    };
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// An HS256 token keyed with `key` (the key-confusion attack uses the RSA public key's PEM).
pub(crate) fn sign_hs256(key: &[u8], claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"alg": "HS256", "typ": "JWT"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac key");
    mac.update(input.as_bytes());
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

/// The JWK of a fixture's public key (`<name>.pub.pem`).
pub(crate) fn jwk_of(name: &str, kid: &str, alg: Option<&str>) -> Value {
    let keys =
        PublicKey::from_pem_bundle(&fixture(&format!("{name}.pub.pem"))).expect("public key");
    let mut jwk = match keys.first().expect("one key") {
        PublicKey::Rsa { n, e } => {
            json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e)})
        }
        PublicKey::Ec { point, .. } => json!({
            "kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }),
        PublicKey::Ed25519(x) => {
            json!({"kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(x)})
        }
    };
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    if let Some(alg) = alg {
        jwk["alg"] = json!(alg);
    }
    jwk
}

/// A context on a fresh in-memory view for an auth mount of `kind` at `auth/<kind>/`.
pub(crate) async fn auth_context(kind: &str) -> EngineContext {
    let mut ctx = context(Mount::KvV1).await;
    ctx.mount.path = format!("auth/{kind}/");
    ctx.mount.kind = kind.to_string();
    ctx.mount.accessor = format!("auth_{kind}_1234");
    ctx.mount.options.clear();
    ctx.remote_address = Some("127.0.0.1".into());
    ctx
}

/// What the test server was sent.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) method: String,
    /// The path with its query string.
    pub(crate) target: String,
    /// Lower-cased header names.
    pub(crate) headers: HashMap<String, String>,
    pub(crate) body: String,
}

type Routes = Arc<Mutex<HashMap<String, (u16, String)>>>;

/// An HTTP/1.1 server on 127.0.0.1 port 0 answering fixed routes (by path, query ignored)
/// with JSON, one request per connection. Unknown paths get a 404.
pub(crate) struct TestServer {
    pub(crate) url: String,
    routes: Routes,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl TestServer {
    pub(crate) async fn start() -> TestServer {
        Self::start_inner(None).await
    }

    /// HTTPS with `tls-server.crt.pem` (for 127.0.0.1), signed by `tls-ca.crt.pem`.
    pub(crate) async fn start_tls() -> TestServer {
        let certs = rustls_pemfile::certs(&mut fixture("tls-server.crt.pem").as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("certs");
        let key = rustls_pemfile::private_key(&mut fixture("tls-server.key.pem").as_bytes())
            .expect("key")
            .expect("a key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
        Self::start_inner(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start_inner(tls: Option<tokio_rustls::TlsAcceptor>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let server = TestServer {
            url: format!("{scheme}://{address}"),
            routes: Arc::default(),
            requests: Arc::default(),
        };
        let (routes, requests) = (server.routes.clone(), server.requests.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (routes, requests, tls) = (routes.clone(), requests.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve_one(stream, routes, requests).await;
                            }
                        }
                        None => serve_one(stream, routes, requests).await,
                    }
                });
            }
        });
        server
    }

    pub(crate) fn route(&self, path: &str, status: u16, body: impl Into<String>) {
        self.routes
            .lock()
            .expect("routes")
            .insert(path.to_string(), (status, body.into()));
    }

    pub(crate) fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("requests").clone()
    }

    pub(crate) fn hits(&self, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.target.split('?').next() == Some(path))
            .count()
    }
}

async fn serve_one<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    routes: Routes,
    requests: Arc<Mutex<Vec<Recorded>>>,
) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let target = first.next().unwrap_or_default().to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let path = target.split('?').next().unwrap_or_default().to_string();
    requests.lock().expect("requests").push(Recorded {
        method,
        target,
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    });
    let (status, reply) = routes
        .lock()
        .expect("routes")
        .get(&path)
        .cloned()
        .unwrap_or((404, "{\"error\":\"not found\"}".to_string()));
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
