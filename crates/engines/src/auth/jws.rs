//! JWS compact tokens: decoding, the algorithm allow-list, public keys (PEM, certificates,
//! JWKS) and signature verification with `ring`.
//!
//! The algorithm is never taken from the token alone: the caller passes the algorithms it
//! allows, `none` and every HMAC algorithm are refused outright, and a key only verifies the
//! algorithms of its own family (an RSA key never checks an HS256 or ES256 signature). The
//! header's `jwk`, `jku`, `x5u` and `x5c` are ignored: keys come only from configuration.
//! What the claims mean (issuer, audience, time) is the auth method's business.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::de::{Error as _, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Tokens larger than this are refused before any parsing or signature work.
pub(crate) const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// The signature algorithms Ward verifies. ES512 (P-521) is absent: `ring` has no P-521.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    EdDsa,
}

impl Algorithm {
    pub(crate) const ALL: [Algorithm; 9] = [
        Algorithm::Rs256,
        Algorithm::Rs384,
        Algorithm::Rs512,
        Algorithm::Ps256,
        Algorithm::Ps384,
        Algorithm::Ps512,
        Algorithm::Es256,
        Algorithm::Es384,
        Algorithm::EdDsa,
    ];

    pub(crate) fn parse(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.as_str() == name)
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Rs384 => "RS384",
            Algorithm::Rs512 => "RS512",
            Algorithm::Ps256 => "PS256",
            Algorithm::Ps384 => "PS384",
            Algorithm::Ps512 => "PS512",
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
            Algorithm::EdDsa => "EdDSA",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JwsError {
    TooLarge,
    Malformed(&'static str),
    UnsupportedAlgorithm(String),
    NoMatchingKey,
    BadSignature,
    BadClaims(String),
}

impl fmt::Display for JwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwsError::TooLarge => write!(f, "token is larger than {MAX_TOKEN_BYTES} bytes"),
            JwsError::Malformed(what) => write!(f, "malformed token: {what}"),
            JwsError::UnsupportedAlgorithm(alg) => {
                write!(f, "unsupported signing algorithm {alg:?}")
            }
            JwsError::NoMatchingKey => f.write_str("no known key matches the token"),
            JwsError::BadSignature => f.write_str("failed to verify signature"),
            JwsError::BadClaims(why) => write!(f, "invalid claims: {why}"),
        }
    }
}

/// A public key from configuration or a JWKS.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum PublicKey {
    /// Big-endian modulus and exponent, without leading zeros.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed SEC1 point.
    Ec {
        curve: Curve,
        point: Vec<u8>,
    },
    Ed25519(Vec<u8>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Curve {
    P256,
    P384,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublicKey::Rsa { n, .. } => write!(f, "Rsa({} bits)", n.len() * 8),
            PublicKey::Ec { curve, .. } => write!(f, "Ec({curve:?})"),
            PublicKey::Ed25519(_) => f.write_str("Ed25519"),
        }
    }
}

impl PublicKey {
    /// Every key in a PEM bundle: `PUBLIC KEY` (SubjectPublicKeyInfo), `RSA PUBLIC KEY`
    /// (PKCS#1) and `CERTIFICATE` blocks. A bundle with no usable key is an error.
    pub(crate) fn from_pem_bundle(pem: &str) -> Result<Vec<PublicKey>, String> {
        let mut keys = Vec::new();
        for (label, der) in pem_blocks(pem)? {
            let key = match label.as_str() {
                "PUBLIC KEY" => from_spki(&der),
                "RSA PUBLIC KEY" => rsa_from_pkcs1(&der),
                "CERTIFICATE" => spki_of_certificate(&der).and_then(from_spki),
                _ => continue,
            };
            keys.push(key.ok_or_else(|| format!("unsupported or malformed {label} block"))?);
        }
        if keys.is_empty() {
            return Err("no public key found in PEM data".into());
        }
        Ok(keys)
    }

    /// Whether this key can verify `algorithm`: RSA for RS*/PS*, P-256 for ES256, P-384 for
    /// ES384, Ed25519 for EdDSA. Nothing verifies HMAC or `none`.
    pub(crate) fn supports(&self, algorithm: Algorithm) -> bool {
        matches!(
            (self, algorithm),
            (
                PublicKey::Rsa { .. },
                Algorithm::Rs256
                    | Algorithm::Rs384
                    | Algorithm::Rs512
                    | Algorithm::Ps256
                    | Algorithm::Ps384
                    | Algorithm::Ps512,
            ) | (
                PublicKey::Ec {
                    curve: Curve::P256,
                    ..
                },
                Algorithm::Es256
            ) | (
                PublicKey::Ec {
                    curve: Curve::P384,
                    ..
                },
                Algorithm::Es384
            ) | (PublicKey::Ed25519(_), Algorithm::EdDsa)
        )
    }

    fn verify(&self, algorithm: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        if !self.supports(algorithm) {
            return false;
        }
        match self {
            PublicKey::Rsa { n, e } => {
                let parameters: &signature::RsaParameters = match algorithm {
                    Algorithm::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Algorithm::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Algorithm::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Algorithm::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Algorithm::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
                    Algorithm::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => return false,
                };
                RsaPublicKeyComponents { n, e }
                    .verify(parameters, message, signature)
                    .is_ok()
            }
            PublicKey::Ec { curve, point } => {
                let parameters = match curve {
                    Curve::P256 => &signature::ECDSA_P256_SHA256_FIXED,
                    Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED,
                };
                UnparsedPublicKey::new(parameters, point)
                    .verify(message, signature)
                    .is_ok()
            }
            PublicKey::Ed25519(bytes) => UnparsedPublicKey::new(&signature::ED25519, bytes)
                .verify(message, signature)
                .is_ok(),
        }
    }
}

/// One key of a JWKS, with the `kid` and `alg` it was published with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Jwk {
    pub(crate) kid: Option<String>,
    pub(crate) algorithm: Option<Algorithm>,
    pub(crate) key: PublicKey,
}

/// The signature keys of a JWKS document. `oct` (HMAC) keys, encryption keys, unknown key
/// types and curves Ward cannot verify are skipped, never turned into something else.
pub(crate) fn parse_jwks(body: &[u8]) -> Result<Vec<Jwk>, String> {
    let document: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JWKS: {e}"))?;
    let keys = document
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| "invalid JWKS: no \"keys\" array".to_string())?;
    let mut parsed = Vec::new();
    for jwk in keys {
        let text = |name: &str| jwk.get(name).and_then(Value::as_str);
        if text("use").is_some_and(|u| u != "sig") {
            continue;
        }
        let bytes = |name: &str| text(name).and_then(|v| URL_SAFE_NO_PAD.decode(v).ok());
        let key = match (text("kty"), text("crv")) {
            (Some("RSA"), _) => match (bytes("n"), bytes("e")) {
                (Some(n), Some(e)) => PublicKey::Rsa {
                    n: strip_zeros(&n),
                    e: strip_zeros(&e),
                },
                _ => continue,
            },
            (Some("EC"), Some(crv @ ("P-256" | "P-384"))) => {
                let (curve, size) = if crv == "P-256" {
                    (Curve::P256, 32)
                } else {
                    (Curve::P384, 48)
                };
                match (bytes("x"), bytes("y")) {
                    (Some(x), Some(y)) if x.len() == size && y.len() == size => {
                        let mut point = vec![4u8];
                        point.extend_from_slice(&x);
                        point.extend_from_slice(&y);
                        PublicKey::Ec { curve, point }
                    }
                    _ => continue,
                }
            }
            (Some("OKP"), Some("Ed25519")) => match bytes("x") {
                Some(x) if x.len() == 32 => PublicKey::Ed25519(x),
                _ => continue,
            },
            _ => continue,
        };
        let algorithm = match text("alg") {
            None => None,
            // A key published for an algorithm Ward does not verify is skipped, not reused.
            Some(name) => match Algorithm::parse(name) {
                Some(a) if key.supports(a) => Some(a),
                _ => continue,
            },
        };
        parsed.push(Jwk {
            kid: text("kid").map(str::to_string),
            algorithm,
            key,
        });
    }
    Ok(parsed)
}

/// A decoded but not yet verified compact JWS.
pub(crate) struct Unverified {
    algorithm_name: String,
    kid: Option<String>,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
    payload: Vec<u8>,
}

impl fmt::Debug for Unverified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unverified")
            .field("alg", &self.algorithm_name)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Unverified {
    /// Splits and decodes a compact JWS. Oversized tokens are refused before anything else.
    pub(crate) fn decode(token: &str) -> Result<Unverified, JwsError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwsError::TooLarge);
        }
        let mut parts = token.trim().split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwsError::Malformed("not a compact JWS"));
        };
        let header_bytes = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| JwsError::Malformed("header is not base64url"))?;
        let header_json: Value = serde_json::from_slice(&header_bytes)
            .map_err(|_| JwsError::Malformed("header is not JSON"))?;
        let algorithm_name = header_json
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(JwsError::Malformed("header has no alg"))?
            .to_string();
        // A critical extension Ward does not understand must not be ignored (RFC 7515 §4.1.11).
        if header_json.get("crit").is_some() {
            return Err(JwsError::Malformed("unsupported critical header"));
        }
        let kid = header_json
            .get("kid")
            .and_then(Value::as_str)
            .map(str::to_string);
        let payload_bytes = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| JwsError::Malformed("payload is not base64url"))?;
        let signature_bytes = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| JwsError::Malformed("signature is not base64url"))?;
        if signature_bytes.is_empty() {
            // An unsigned token: `alg: none`, or a signature stripped from a signed one.
            return Err(if algorithm_name == "none" {
                JwsError::UnsupportedAlgorithm(algorithm_name)
            } else {
                JwsError::Malformed("empty signature")
            });
        }
        Ok(Unverified {
            algorithm_name,
            kid,
            signing_input: format!("{header}.{payload}").into_bytes(),
            signature: signature_bytes,
            payload: payload_bytes,
        })
    }

    pub(crate) fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The header's algorithm, if it is one of `allowed`. `none` and HS* never are.
    pub(crate) fn algorithm(&self, allowed: &[Algorithm]) -> Result<Algorithm, JwsError> {
        Algorithm::parse(&self.algorithm_name)
            .filter(|a| allowed.contains(a))
            .ok_or_else(|| JwsError::UnsupportedAlgorithm(self.algorithm_name.clone()))
    }

    /// Verifies the signature with the first key of `keys` that fits the algorithm, and
    /// returns the claims. `keys` are already narrowed to the token's `kid` where it has one.
    pub(crate) fn verify<'k>(
        &self,
        algorithm: Algorithm,
        keys: impl IntoIterator<Item = &'k PublicKey>,
    ) -> Result<Map<String, Value>, JwsError> {
        let mut tried = false;
        for key in keys.into_iter().filter(|k| k.supports(algorithm)) {
            tried = true;
            if key.verify(algorithm, &self.signing_input, &self.signature) {
                return claims(&self.payload);
            }
        }
        Err(if tried {
            JwsError::BadSignature
        } else {
            JwsError::NoMatchingKey
        })
    }

    /// The claims without any signature check. Only for Kubernetes auth without `pem_keys`,
    /// where the TokenReview that follows is the proof (as in Vault).
    pub(crate) fn claims_unverified(&self) -> Result<Map<String, Value>, JwsError> {
        claims(&self.payload)
    }
}

/// Registered claim names; a key that differs from one of them only in case is refused, so
/// that `ISS` cannot smuggle a second issuer past a case-insensitive consumer.
const REGISTERED: [&str; 7] = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"];

fn claims(payload: &[u8]) -> Result<Map<String, Value>, JwsError> {
    let StrictObject(map) = serde_json::from_slice(payload).map_err(|e| {
        JwsError::BadClaims(format!(
            "payload is not a JSON object without duplicate keys: {e}"
        ))
    })?;
    for key in map.keys() {
        if REGISTERED
            .iter()
            .any(|r| *r != key && r.eq_ignore_ascii_case(key))
        {
            return Err(JwsError::BadClaims(format!(
                "claim {key:?} collides with a registered claim"
            )));
        }
    }
    Ok(map)
}

/// A JSON object whose top-level keys are unique (serde_json would keep the last duplicate).
struct StrictObject(Map<String, Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StrictVisitor;
        impl<'de> Visitor<'de> for StrictVisitor {
            type Value = StrictObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<StrictObject, A::Error> {
                let mut map = Map::new();
                while let Some(key) = access.next_key::<String>()? {
                    let value: Value = access.next_value()?;
                    if map.contains_key(&key) {
                        return Err(A::Error::custom(format!("duplicate key {key:?}")));
                    }
                    map.insert(key, value);
                }
                Ok(StrictObject(map))
            }
        }
        deserializer.deserialize_map(StrictVisitor)
    }
}

/// Typed views of the registered claims. A claim of the wrong type is an error, never
/// treated as absent.
pub(crate) mod registered {
    use serde_json::{Map, Value};

    /// A NumericDate claim in whole seconds (fractions truncated).
    pub(crate) fn time(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, String> {
        match claims.get(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
                .map(Some)
                .ok_or_else(|| format!("claim {name:?} is not a valid number")),
            Some(_) => Err(format!("claim {name:?} must be a number")),
        }
    }

    pub(crate) fn string<'a>(
        claims: &'a Map<String, Value>,
        name: &str,
    ) -> Result<Option<&'a str>, String> {
        match claims.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("claim {name:?} must be a string")),
        }
    }

    /// `aud`: a string or an array of strings.
    pub(crate) fn audiences(claims: &Map<String, Value>) -> Result<Vec<String>, String> {
        match claims.get("aud") {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| "claim \"aud\" must be a string or an array of strings".to_string()),
            Some(_) => Err("claim \"aud\" must be a string or an array of strings".into()),
        }
    }
}

/// The `(label, DER)` of each PEM block in `pem`.
fn pem_blocks(pem: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut blocks = Vec::new();
    let mut lines = pem.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = String::new();
        let mut closed = false;
        for inner in lines.by_ref() {
            if inner == end {
                closed = true;
                break;
            }
            // PEM headers (`Proc-Type: ...`) belong to encrypted private keys only.
            if !inner.contains(':') {
                body.push_str(inner);
            }
        }
        if !closed {
            return Err(format!("unterminated PEM block {label}"));
        }
        let der = STANDARD
            .decode(body)
            .map_err(|_| format!("PEM block {label} is not base64"))?;
        blocks.push((label.to_string(), der));
    }
    Ok(blocks)
}

// ---- A minimal DER reader: just enough for SubjectPublicKeyInfo and certificates. ----

/// One TLV: its tag, its content, the whole encoding, and what follows it.
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    whole: &'a [u8],
    rest: &'a [u8],
}

fn read_tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let (&tag, after_tag) = input.split_first()?;
    let (&first, mut after_len) = after_tag.split_first()?;
    let length = if first < 0x80 {
        usize::from(first)
    } else {
        let n_bytes = usize::from(first & 0x7f);
        if n_bytes == 0 || n_bytes > 4 || after_len.len() < n_bytes {
            return None;
        }
        let (bytes, tail) = after_len.split_at(n_bytes);
        after_len = tail;
        bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    if after_len.len() < length {
        return None;
    }
    let (content, rest) = after_len.split_at(length);
    let header_len = input.len() - after_len.len();
    let whole = input.get(..header_len + length)?;
    Some(Tlv {
        tag,
        content,
        whole,
        rest,
    })
}

const TAG_SEQUENCE: u8 = 0x30;
const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OID: u8 = 0x06;
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

fn from_spki(der: &[u8]) -> Option<PublicKey> {
    let spki = read_tlv(der).filter(|t| t.tag == TAG_SEQUENCE)?;
    let algorithm = read_tlv(spki.content).filter(|t| t.tag == TAG_SEQUENCE)?;
    let bits = read_tlv(algorithm.rest).filter(|t| t.tag == TAG_BIT_STRING)?;
    let (&unused, key) = bits.content.split_first()?;
    if unused != 0 {
        return None;
    }
    let oid = read_tlv(algorithm.content).filter(|t| t.tag == TAG_OID)?;
    match oid.content {
        OID_RSA => rsa_from_pkcs1(key),
        OID_EC => {
            let curve_oid = read_tlv(oid.rest).filter(|t| t.tag == TAG_OID)?;
            let (curve, size) = match curve_oid.content {
                OID_P256 => (Curve::P256, 65),
                OID_P384 => (Curve::P384, 97),
                _ => return None,
            };
            (key.len() == size && key.first() == Some(&4)).then(|| PublicKey::Ec {
                curve,
                point: key.to_vec(),
            })
        }
        OID_ED25519 => (key.len() == 32).then(|| PublicKey::Ed25519(key.to_vec())),
        _ => None,
    }
}

fn rsa_from_pkcs1(der: &[u8]) -> Option<PublicKey> {
    let sequence = read_tlv(der).filter(|t| t.tag == TAG_SEQUENCE)?;
    let n = read_tlv(sequence.content).filter(|t| t.tag == TAG_INTEGER)?;
    let e = read_tlv(n.rest).filter(|t| t.tag == TAG_INTEGER)?;
    Some(PublicKey::Rsa {
        n: strip_zeros(n.content),
        e: strip_zeros(e.content),
    })
}

/// The SubjectPublicKeyInfo of an X.509 certificate (the seventh field of the TBS part when
/// the version is present, the sixth otherwise).
fn spki_of_certificate(der: &[u8]) -> Option<&[u8]> {
    let certificate = read_tlv(der).filter(|t| t.tag == TAG_SEQUENCE)?;
    let tbs = read_tlv(certificate.content).filter(|t| t.tag == TAG_SEQUENCE)?;
    let mut field = read_tlv(tbs.content)?;
    if field.tag == 0xa0 {
        field = read_tlv(field.rest)?;
    }
    // serial, signature algorithm, issuer, validity, subject: skip to the sixth.
    for _ in 0..5 {
        field = read_tlv(field.rest)?;
    }
    (field.tag == TAG_SEQUENCE).then_some(field.whole)
}

fn strip_zeros(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default().to_vec()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::auth::test_support::{fixture, jwk_of, sign, sign_hs256, Signer};

    #[test]
    fn pem_keys_and_certificates_parse_to_the_same_key() {
        let from_spki = PublicKey::from_pem_bundle(&fixture("rsa-1.pub.pem")).expect("spki");
        let from_cert = PublicKey::from_pem_bundle(&fixture("rsa-1.crt.pem")).expect("cert");
        assert_eq!(from_spki, from_cert);
        assert!(matches!(from_spki.as_slice(), [PublicKey::Rsa { n, .. }] if n.len() == 256));
        let bundle = format!("{}{}", fixture("ec-1.pub.pem"), fixture("ed-1.pub.pem"));
        let keys = PublicKey::from_pem_bundle(&bundle).expect("bundle");
        assert!(matches!(
            keys.as_slice(),
            [
                PublicKey::Ec {
                    curve: Curve::P256,
                    ..
                },
                PublicKey::Ed25519(_)
            ]
        ));
        assert!(PublicKey::from_pem_bundle("nothing here").is_err());
        assert!(
            PublicKey::from_pem_bundle(&fixture("rsa-1.key.pem")).is_err(),
            "a private key is not a public key"
        );
    }

    #[test]
    fn signatures_verify_only_with_the_right_key_and_family() {
        let rsa = PublicKey::from_pem_bundle(&fixture("rsa-1.pub.pem")).expect("rsa");
        let rsa2 = PublicKey::from_pem_bundle(&fixture("rsa-2.pub.pem")).expect("rsa2");
        let ec = PublicKey::from_pem_bundle(&fixture("ec-1.pub.pem")).expect("ec");
        let ed = PublicKey::from_pem_bundle(&fixture("ed-1.pub.pem")).expect("ed");
        let claims = serde_json::json!({"sub": "x"});
        for (signer, good, bad) in [
            (Signer::Rsa("rsa-1"), &rsa, &rsa2),
            (Signer::Ec("ec-1"), &ec, &rsa),
            (Signer::Ed("ed-1"), &ed, &ec),
        ] {
            let token = sign(signer, None, &claims);
            let decoded = Unverified::decode(&token).expect("decode");
            let alg = decoded.algorithm(&Algorithm::ALL).expect("alg");
            assert!(decoded.verify(alg, good.iter()).is_ok(), "{signer:?}");
            assert!(decoded.verify(alg, bad.iter()).is_err(), "{signer:?}");
        }
        // HS256 keyed with the RSA public key's PEM: refused before any key is tried.
        let forged = sign_hs256(fixture("rsa-1.pub.pem").as_bytes(), &claims);
        let decoded = Unverified::decode(&forged).expect("decode");
        assert_eq!(
            decoded.algorithm(&Algorithm::ALL),
            Err(JwsError::UnsupportedAlgorithm("HS256".into()))
        );
    }

    #[test]
    fn jwks_skips_hmac_encryption_and_unknown_keys() {
        let rsa = jwk_of("rsa-1", "k1", Some("RS256"));
        let jwks = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "RSA", "use": "enc", "n": rsa["n"], "e": rsa["e"], "kid": "enc"},
            {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA", "kid": "p521"},
            {"kty": "RSA", "alg": "HS256", "n": rsa["n"], "e": rsa["e"], "kid": "confused"},
            rsa,
        ]});
        let keys = parse_jwks(jwks.to_string().as_bytes()).expect("jwks");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("k1"));
        assert_eq!(keys[0].algorithm, Some(Algorithm::Rs256));
    }

    #[test]
    fn duplicate_and_case_folded_claims_are_refused() {
        assert!(claims(br#"{"iss":"a","iss":"b"}"#).is_err());
        assert!(claims(br#"{"iss":"a","ISS":"b"}"#).is_err());
        assert!(claims(br#"{"iss":"a","nested":{"x":1}}"#).is_ok());
        assert!(claims(br#"[1,2]"#).is_err());
    }

    #[test]
    fn oversized_and_malformed_tokens() {
        let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(Unverified::decode(&huge).err(), Some(JwsError::TooLarge));
        assert!(matches!(
            Unverified::decode("a.b"),
            Err(JwsError::Malformed(_))
        ));
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(br#"{"sub":"x"}"#)
        );
        assert!(
            matches!(Unverified::decode(&none), Err(JwsError::UnsupportedAlgorithm(a)) if a == "none")
        );
    }
}
