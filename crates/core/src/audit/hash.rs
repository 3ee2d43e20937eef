//! HMAC-SHA256 of audit values with a device's salt, as Vault writes them: `hmac-sha256:<hex>`.
//!
//! The salt is a random UUID string kept in the barrier beside the device, so the same value
//! hashes the same way for the life of the device (which is what makes `sys/audit-hash`
//! useful) and differently on every other device. Which values are hashed is decided by
//! the entry writer in `format`. The keyed HMAC state is built once and
//! cloned for each value: keying costs two SHA-256 blocks, cloning costs a copy.

use std::fmt;

use hmac::{Hmac, Mac};
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
        let hashed = self.hash_bytes(value);
        // The bytes are the ASCII prefix and hex digits.
        String::from_utf8_lossy(&hashed).into_owned()
    }

    /// `hmac-sha256:<hex>` of one string as bytes, without an allocation: the entry writer
    /// puts it straight into the line (it needs no JSON escaping).
    pub(crate) fn hash_bytes(&self, value: &str) -> [u8; HASHED_LEN] {
        let mut mac = self.keyed.clone();
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = [0u8; HASHED_LEN];
        out[..HMAC_PREFIX.len()].copy_from_slice(HMAC_PREFIX.as_bytes());
        // 32 bytes always fit in the 64 hex digits left.
        let _ = hex::encode_to_slice(digest, &mut out[HMAC_PREFIX.len()..]);
        out
    }
}

/// The length of a hashed value: the prefix and 64 hex digits.
pub(crate) const HASHED_LEN: usize = HMAC_PREFIX.len() + 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salts_differ_per_device() {
        let hasher = Hasher::new("salt");
        assert!(hasher.hash("x").starts_with("hmac-sha256:"));
        assert_eq!(hasher.hash("x"), Hasher::new("salt").hash("x"));
        assert_ne!(Hasher::new("other").hash("x"), hasher.hash("x"));
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
