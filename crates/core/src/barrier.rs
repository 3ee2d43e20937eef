//! The storage barrier: everything Ward keeps passes through here and is encrypted at rest.
//!
//! A keyring of AES-256-GCM keys, each with a term, encrypts values with the storage path as
//! associated data, so a ciphertext copied to another path, or altered by one byte, fails to
//! decrypt and is reported rather than served. The keyring itself is stored encrypted by the
//! root key; the seal (see `seal`) owns the root key. Below the barrier is the physical
//! backend, which sees only ciphertext; above it are storage views handed to the engines.
//!
//! Layout of a stored value: `0x01 | term (u32 BE) | nonce (12) | ciphertext and tag`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use ward_storage::{Physical, TxOp};
use zeroize::{Zeroize, Zeroizing};

use crate::error::Error;

const VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 4 + 12;
/// Where the keyring lives, encrypted by the root key (not by itself).
pub(crate) const KEYRING_PATH: &str = "core/keyring";

/// 256 bits of key material that zeroize on drop and never print.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Zeroizing<[u8; 32]>);

impl Key {
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        Key(bytes)
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let array: [u8; 32] = bytes.try_into().ok()?;
        Some(Key(Zeroizing::new(array)))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(***)")
    }
}

/// Encrypts `plaintext` under `key` with `aad`; used for the keyring and the root key too.
pub(crate) fn seal_bytes(
    key: &Key,
    term: u32,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, Error> {
    let cipher = Aes256Gcm::new_from_slice(key.as_bytes())
        .map_err(|_| Error::internal("invalid key length"))?;
    encrypt_with(&cipher, term, aad, plaintext)
}

pub(crate) fn open_bytes(
    key: &Key,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let cipher = Aes256Gcm::new_from_slice(key.as_bytes())
        .map_err(|_| Error::internal("invalid key length"))?;
    let (_, body) = split_header(sealed).ok_or_else(|| Error::internal("ciphertext too short"))?;
    decrypt_with(&cipher, aad, sealed, body)
}

fn encrypt_with(
    cipher: &Aes256Gcm,
    term: u32,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, Error> {
    let mut nonce = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut nonce);
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| Error::internal("encryption failed"))?;
    let mut out = Vec::with_capacity(HEADER_LEN + ciphertext.len());
    out.push(VERSION);
    out.extend_from_slice(&term.to_be_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Returns the term and the body after the header, or None when the value is malformed.
fn split_header(sealed: &[u8]) -> Option<(u32, &[u8])> {
    if sealed.len() < HEADER_LEN + 16 || sealed[0] != VERSION {
        return None;
    }
    let term = u32::from_be_bytes(sealed[1..5].try_into().ok()?);
    Some((term, &sealed[5..]))
}

fn decrypt_with(
    cipher: &Aes256Gcm,
    aad: &[u8],
    _sealed: &[u8],
    body: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let (nonce, ciphertext) = body.split_at(12);
    cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| Error::internal("integrity check failed"))
}

struct TermKey {
    cipher: Aes256Gcm,
    key: Key,
    install_time: i64,
    encryptions: AtomicU64,
}

/// The unsealed keyring: every term's key, the active term, and the root key.
struct Keyring {
    terms: BTreeMap<u32, TermKey>,
    active_term: u32,
    root_key: Key,
}

#[derive(Serialize, Deserialize)]
struct StoredKeyring {
    active_term: u32,
    keys: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize, Zeroize)]
#[zeroize(drop)]
struct StoredKey {
    term: u32,
    key: Vec<u8>,
    install_time: i64,
}

impl Keyring {
    fn new(root_key: Key, now: i64) -> Result<Self, Error> {
        let mut keyring = Keyring {
            terms: BTreeMap::new(),
            active_term: 0,
            root_key,
        };
        keyring.add_term(Key::generate(), now)?;
        Ok(keyring)
    }

    fn add_term(&mut self, key: Key, install_time: i64) -> Result<u32, Error> {
        let term = self.active_term + 1;
        let cipher = Aes256Gcm::new_from_slice(key.as_bytes())
            .map_err(|_| Error::internal("invalid key length"))?;
        self.terms.insert(
            term,
            TermKey {
                cipher,
                key,
                install_time,
                encryptions: AtomicU64::new(0),
            },
        );
        self.active_term = term;
        Ok(term)
    }

    fn serialize(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        let stored = StoredKeyring {
            active_term: self.active_term,
            keys: self
                .terms
                .iter()
                .map(|(term, k)| StoredKey {
                    term: *term,
                    key: k.key.as_bytes().to_vec(),
                    install_time: k.install_time,
                })
                .collect(),
        };
        serde_json::to_vec(&stored)
            .map(Zeroizing::new)
            .map_err(|e| Error::internal(format!("keyring encode: {e}")))
    }

    fn deserialize(root_key: Key, bytes: &[u8]) -> Result<Self, Error> {
        let stored: StoredKeyring =
            serde_json::from_slice(bytes).map_err(|_| Error::internal("keyring is corrupt"))?;
        let mut terms = BTreeMap::new();
        for k in &stored.keys {
            let key =
                Key::from_slice(&k.key).ok_or_else(|| Error::internal("keyring key length"))?;
            let cipher = Aes256Gcm::new_from_slice(key.as_bytes())
                .map_err(|_| Error::internal("invalid key length"))?;
            terms.insert(
                k.term,
                TermKey {
                    cipher,
                    key,
                    install_time: k.install_time,
                    encryptions: AtomicU64::new(0),
                },
            );
        }
        if !terms.contains_key(&stored.active_term) {
            return Err(Error::internal("keyring has no active key"));
        }
        Ok(Keyring {
            terms,
            active_term: stored.active_term,
            root_key,
        })
    }

    fn encrypt(&self, path: &str, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let active = self
            .terms
            .get(&self.active_term)
            .ok_or_else(|| Error::internal("keyring has no active key"))?;
        active.encryptions.fetch_add(1, Ordering::Relaxed);
        encrypt_with(&active.cipher, self.active_term, path.as_bytes(), plaintext)
    }

    fn decrypt(&self, path: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let (term, body) = split_header(sealed).ok_or_else(|| integrity_error(path))?;
        let key = self.terms.get(&term).ok_or_else(|| integrity_error(path))?;
        decrypt_with(&key.cipher, path.as_bytes(), sealed, body).map_err(|_| integrity_error(path))
    }
}

fn integrity_error(path: &str) -> Error {
    tracing::error!(
        path,
        "stored value failed its integrity check (tampered, truncated or moved); not served"
    );
    Error::internal(format!("stored value at {path} failed its integrity check"))
}

/// What `sys/key-status` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    pub term: u32,
    pub install_time: i64,
    pub encryptions: u64,
}

/// An operation on the barrier inside an atomic batch; values are plaintext here.
pub enum BarrierOp {
    Put { path: String, value: Vec<u8> },
    Delete { path: String },
}

impl fmt::Debug for BarrierOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BarrierOp::Put { path, .. } => write!(f, "Put({path:?}, ***)"),
            BarrierOp::Delete { path } => write!(f, "Delete({path:?})"),
        }
    }
}

pub struct Barrier {
    physical: Arc<dyn Physical>,
    keyring: RwLock<Option<Arc<Keyring>>>,
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("sealed", &self.is_sealed())
            .finish()
    }
}

impl Barrier {
    pub fn new(physical: Arc<dyn Physical>) -> Self {
        Barrier {
            physical,
            keyring: RwLock::new(None),
        }
    }

    /// A barrier over fresh in-memory storage, already unsealed: for tests of the layers above.
    pub async fn new_unsealed_in_memory() -> Result<Arc<Self>, Error> {
        let barrier = Arc::new(Barrier::new(Arc::new(ward_storage::InMemory::new())));
        barrier.initialize(Key::generate(), 0).await?;
        Ok(barrier)
    }

    pub fn physical(&self) -> &Arc<dyn Physical> {
        &self.physical
    }

    pub fn is_sealed(&self) -> bool {
        self.keyring.read().map(|k| k.is_none()).unwrap_or(true)
    }

    /// Creates the first keyring under `root_key`, persists it, and leaves the barrier unsealed.
    pub async fn initialize(&self, root_key: Key, now: i64) -> Result<(), Error> {
        let keyring = Keyring::new(root_key, now)?;
        self.persist_keyring(&keyring).await?;
        self.install(Some(Arc::new(keyring)));
        Ok(())
    }

    /// Loads the keyring with the root key. A wrong root key fails here.
    pub async fn unseal(&self, root_key: Key) -> Result<(), Error> {
        let sealed =
            self.physical.get(KEYRING_PATH).await?.ok_or_else(|| {
                Error::internal("barrier has no keyring; is the server initialized?")
            })?;
        let plain = open_bytes(&root_key, KEYRING_PATH.as_bytes(), &sealed)?;
        let keyring = Keyring::deserialize(root_key, &plain)?;
        self.install(Some(Arc::new(keyring)));
        Ok(())
    }

    /// Forgets every key. Subsequent operations fail with `Error::Sealed`.
    pub fn seal(&self) {
        self.install(None);
    }

    /// Adds a new key term and makes it active; older terms still decrypt existing values.
    pub async fn rotate(&self, now: i64) -> Result<u32, Error> {
        let current = self.keyring()?;
        let mut next = Keyring::deserialize(current.root_key.clone(), &current.serialize()?)?;
        for (term, key) in &current.terms {
            if let Some(n) = next.terms.get(term) {
                n.encryptions
                    .store(key.encryptions.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
        let term = next.add_term(Key::generate(), now)?;
        self.persist_keyring(&next).await?;
        self.install(Some(Arc::new(next)));
        Ok(term)
    }

    pub fn key_status(&self) -> Result<KeyStatus, Error> {
        let keyring = self.keyring()?;
        let active = keyring
            .terms
            .get(&keyring.active_term)
            .ok_or_else(|| Error::internal("keyring has no active key"))?;
        Ok(KeyStatus {
            term: keyring.active_term,
            install_time: active.install_time,
            encryptions: active.encryptions.load(Ordering::Relaxed),
        })
    }

    /// The root key, for re-encrypting it under a new unseal key (rekey).
    pub fn root_key(&self) -> Result<Key, Error> {
        Ok(self.keyring()?.root_key.clone())
    }

    pub async fn get(&self, path: &str) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
        let keyring = self.keyring()?;
        match self.physical.get(path).await? {
            None => Ok(None),
            Some(sealed) => keyring.decrypt(path, &sealed).map(Some),
        }
    }

    pub async fn put(&self, path: &str, value: &[u8]) -> Result<(), Error> {
        let sealed = self.keyring()?.encrypt(path, value)?;
        Ok(self.physical.put(path, sealed).await?)
    }

    pub async fn delete(&self, path: &str) -> Result<(), Error> {
        self.keyring()?;
        Ok(self.physical.delete(path).await?)
    }

    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        self.keyring()?;
        Ok(self.physical.list(prefix).await?)
    }

    pub async fn scan(
        &self,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<String>, Error> {
        self.keyring()?;
        Ok(self.physical.scan(prefix, after, limit).await?)
    }

    pub async fn transaction(&self, ops: Vec<BarrierOp>) -> Result<(), Error> {
        let keyring = self.keyring()?;
        let mut sealed_ops = Vec::with_capacity(ops.len());
        for op in ops {
            sealed_ops.push(match op {
                BarrierOp::Put { path, value } => {
                    let value = keyring.encrypt(&path, &value)?;
                    TxOp::Put { key: path, value }
                }
                BarrierOp::Delete { path } => TxOp::Delete { key: path },
            });
        }
        Ok(self.physical.transaction(sealed_ops).await?)
    }

    fn keyring(&self) -> Result<Arc<Keyring>, Error> {
        self.keyring
            .read()
            .map_err(|_| Error::internal("keyring lock poisoned"))?
            .clone()
            .ok_or(Error::Sealed)
    }

    fn install(&self, keyring: Option<Arc<Keyring>>) {
        match self.keyring.write() {
            Ok(mut guard) => *guard = keyring,
            Err(poisoned) => *poisoned.into_inner() = keyring,
        }
    }

    async fn persist_keyring(&self, keyring: &Keyring) -> Result<(), Error> {
        let plain = keyring.serialize()?;
        let sealed = seal_bytes(&keyring.root_key, 0, KEYRING_PATH.as_bytes(), &plain)?;
        Ok(self.physical.put(KEYRING_PATH, sealed).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_path_binding() {
        let barrier = Barrier::new_unsealed_in_memory().await.expect("barrier");
        barrier.put("logical/a", b"hello").await.expect("put");
        assert_eq!(
            barrier
                .get("logical/a")
                .await
                .expect("get")
                .as_deref()
                .map(|v| v.as_slice()),
            Some(&b"hello"[..])
        );
        let raw = barrier
            .physical()
            .get("logical/a")
            .await
            .expect("raw")
            .expect("present");
        assert!(
            !raw.windows(5).any(|w| w == b"hello"),
            "plaintext must not reach storage"
        );
        // A value copied to another path fails to decrypt.
        barrier
            .physical()
            .put("logical/b", raw.clone())
            .await
            .expect("copy");
        assert!(matches!(
            barrier.get("logical/b").await,
            Err(Error::Internal(_))
        ));
        // A flipped byte fails too.
        let mut flipped = raw.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        barrier
            .physical()
            .put("logical/a", flipped)
            .await
            .expect("flip");
        assert!(matches!(
            barrier.get("logical/a").await,
            Err(Error::Internal(_))
        ));
    }

    #[tokio::test]
    async fn rotate_keeps_old_terms_readable_and_seal_forgets() {
        let physical: Arc<dyn Physical> = Arc::new(ward_storage::InMemory::new());
        let barrier = Barrier::new(physical.clone());
        let root = Key::generate();
        barrier.initialize(root.clone(), 10).await.expect("init");
        barrier.put("x", b"one").await.expect("put");
        assert_eq!(barrier.rotate(20).await.expect("rotate"), 2);
        barrier.put("y", b"two").await.expect("put");
        assert_eq!(barrier.key_status().expect("status").term, 2);
        barrier.seal();
        assert!(matches!(barrier.get("x").await, Err(Error::Sealed)));
        assert!(
            barrier.unseal(Key::generate()).await.is_err(),
            "wrong root key must not unseal"
        );
        barrier.unseal(root).await.expect("unseal");
        assert_eq!(
            barrier.get("x").await.expect("x").expect("x").as_slice(),
            b"one"
        );
        assert_eq!(
            barrier.get("y").await.expect("y").expect("y").as_slice(),
            b"two"
        );
        assert_eq!(barrier.key_status().expect("status").term, 2);
    }
}
