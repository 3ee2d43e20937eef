//! HMAC-SHA256 of audit values with a device's salt, as Vault writes them: `hmac-sha256:<hex>`.
//!
//! The salt is a random UUID string kept in the barrier beside the device, so the same value
//! hashes the same way for the life of the device (which is what makes `sys/audit-hash`
//! useful) and differently on every other device. The keyed HMAC state is built once and
//! cloned for each value: keying costs two SHA-256 blocks, cloning costs a copy.

use std::fmt;

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

/// The prefix of every hashed value.
pub const HMAC_PREFIX: &str = "hmac-sha256:";

/// A device's keyed HMAC. Printing it never shows the salt.
#[derive(Clone)]
pub(crate) struct Hasher {
    keyed: Hmac<Sha256>,
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hasher(***)")
    }
}

impl Hasher {
    pub(crate) fn new(salt: &str) -> Hasher {
        // HMAC accepts keys of any length, so this cannot fail; the fallback keeps the type
        // total without an `expect`.
        let keyed = Hmac::<Sha256>::new_from_slice(salt.as_bytes())
            .unwrap_or_else(|_| <Hmac<Sha256> as hmac::digest::KeyInit>::new(&Default::default()));
        Hasher { keyed }
    }

    /// `hmac-sha256:<hex>` of one string.
    pub(crate) fn hash(&self, value: &str) -> String {
        let mut mac = self.keyed.clone();
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = String::with_capacity(HMAC_PREFIX.len() + 64);
        out.push_str(HMAC_PREFIX);
        out.push_str(&hex::encode(digest));
        out
    }

    /// Replaces a string in place by its hash; anything else is left alone.
    pub(crate) fn hash_in_place(&self, value: &mut Value) {
        if let Value::String(s) = value {
            *s = self.hash(s);
        }
    }

    /// Hashes every string inside a JSON value, at any depth. Numbers, booleans and nulls
    /// stay as they are, as in Vault.
    pub(crate) fn hash_value(&self, value: &mut Value) {
        match value {
            Value::String(s) => *s = self.hash(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.hash_value(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.hash_value(v)),
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    /// Hashes the values of a data map except the top-level keys a mount exempts
    /// (`audit_non_hmac_request_keys` / `audit_non_hmac_response_keys`).
    pub(crate) fn hash_map(&self, map: &mut Map<String, Value>, exempt: &[String]) {
        for (key, value) in map.iter_mut() {
            if !exempt.iter().any(|e| e == key) {
                self.hash_value(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_are_hashed_at_every_depth_and_other_types_are_not() {
        let hasher = Hasher::new("salt");
        let mut value = json!({"a": "x", "b": [1, "y", {"c": "z"}], "d": true, "e": null});
        hasher.hash_value(&mut value);
        assert_eq!(value["a"], json!(hasher.hash("x")));
        assert_eq!(value["b"][0], json!(1));
        assert_eq!(value["b"][2]["c"], json!(hasher.hash("z")));
        assert_eq!(value["d"], json!(true));
        assert!(hasher.hash("x").starts_with("hmac-sha256:"));
        assert_ne!(Hasher::new("other").hash("x"), hasher.hash("x"), "salts differ per device");
    }

    #[test]
    fn matches_a_known_hmac() {
        // HMAC-SHA256(key="key", "The quick brown fox jumps over the lazy dog"), RFC 4231 style vector.
        let hasher = Hasher::new("key");
        assert_eq!(
            hasher.hash("The quick brown fox jumps over the lazy dog"),
            "hmac-sha256:f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }
}
