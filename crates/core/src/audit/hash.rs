//! HMAC-SHA256 of audit values with a device's salt, as Vault writes them: `hmac-sha256:<hex>`.
//!
//! The salt is a random UUID string kept in the barrier beside the device, so the same value
//! hashes the same way for the life of the device (which is what makes `sys/audit-hash`
//! useful) and differently on every other device. Which values are hashed is decided by
//! the entry writer in `format`. The keyed HMAC state is built once and
//! cloned for each value: keying costs two SHA-256 blocks, cloning costs a copy.
//!
//! The same values come back request after request (a workload's token and accessor, the
//! secret it reads, that secret's metadata), so a device remembers the hashes of recent
//! short values. A value is looked up by a 128-bit fingerprint under two random SipHash keys
//! drawn when the device starts, never by the value itself: the memo holds no token or
//! secret, only fingerprints and hashes that the log carries anyway. Looking one up costs a
//! fraction of the four SHA-256 blocks, the clone and the hex encoding of an HMAC.

use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of every hashed value.
pub const HMAC_PREFIX: &str = "hmac-sha256:";

/// Values longer than this are always hashed afresh: fingerprinting them costs about as
/// much as hashing, and long values (documents, certificates) rarely repeat.
const MEMO_MAX_LEN: usize = 256;
/// Slots of the memo (direct-mapped by fingerprint), each about 100 bytes.
const MEMO_SLOTS: usize = 1024;

/// A device's keyed HMAC. Printing it never shows the salt.
#[derive(Clone)]
pub(crate) struct Hasher {
    keyed: Hmac<Sha256>,
    memo: Arc<Memo>,
    id: u64,
}

/// Recent hashes by fingerprint. One lock per slot, so concurrent requests rarely meet.
struct Memo {
    keys: (RandomState, RandomState),
    slots: Box<[Mutex<Slot>]>,
}

#[derive(Clone, Copy)]
struct Slot {
    /// The fingerprint of the value whose hash this is; 0 for an empty slot (a value whose
    /// fingerprint is 0 is simply never remembered).
    fingerprint: u128,
    hashed: [u8; HASHED_LEN],
}

impl Memo {
    fn new() -> Memo {
        let empty = Slot {
            fingerprint: 0,
            hashed: [0; HASHED_LEN],
        };
        Memo {
            keys: (RandomState::new(), RandomState::new()),
            slots: (0..MEMO_SLOTS).map(|_| Mutex::new(empty)).collect(),
        }
    }

    fn fingerprint(&self, value: &str) -> u128 {
        let high = self.keys.0.hash_one(value);
        let low = self.keys.1.hash_one(value);
        (u128::from(high) << 64) | u128::from(low)
    }

    fn slot(&self, fingerprint: u128) -> &Mutex<Slot> {
        // The low bits of a SipHash output are as good as any.
        &self.slots[(fingerprint as usize) % MEMO_SLOTS]
    }
}

/// Distinguishes devices (and devices enabled again) for the entry writer's reuse of a
/// request's blocks.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

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
        Hasher {
            keyed,
            memo: Arc::new(Memo::new()),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// This device's hasher, distinct from every other one made in this process.
    pub(crate) fn id(&self) -> u64 {
        self.id
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
        if value.len() > MEMO_MAX_LEN {
            return self.compute(value);
        }
        let fingerprint = self.memo.fingerprint(value);
        let slot = self.memo.slot(fingerprint);
        if let Ok(slot) = slot.lock() {
            if slot.fingerprint == fingerprint {
                return slot.hashed;
            }
        }
        let hashed = self.compute(value);
        if let Ok(mut slot) = slot.lock() {
            *slot = Slot {
                fingerprint,
                hashed,
            };
        }
        hashed
    }

    fn compute(&self, value: &str) -> [u8; HASHED_LEN] {
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
    fn remembered_hashes_are_the_hashes() {
        let hasher = Hasher::new("salt");
        let long = "v".repeat(MEMO_MAX_LEN + 1);
        let values: Vec<String> = (0..3 * MEMO_SLOTS)
            .map(|i| format!("value-{i}"))
            .chain([String::new(), long])
            .collect();
        // Twice over, so the second pass reads remembered slots (and evicted ones again).
        for _ in 0..2 {
            for value in &values {
                assert_eq!(hasher.hash_bytes(value), hasher.compute(value), "{value}");
            }
        }
        // A clone shares the memo; another device's hasher never sees its hashes.
        let clone = hasher.clone();
        let other = Hasher::new("other");
        assert_eq!(clone.hash("value-1"), hasher.hash("value-1"));
        assert_ne!(other.hash("value-1"), hasher.hash("value-1"));
        assert_ne!(other.id(), hasher.id());
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
