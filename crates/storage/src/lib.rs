//! Physical storage: the bottom of Ward's storage stack.
//!
//! Everything above this layer is already encrypted by the barrier; a backend sees only
//! opaque keys and ciphertext. It owns durability (an acknowledged write survives a crash)
//! and atomic batches, and nothing else: no caching, no encryption, no knowledge of Vault.
//!
//! Backends: [`InMemory`] (dev mode and tests), [`sqlite::Sqlite`] (a single node, durable),
//! and [`fault::FaultInjector`], a test double that wraps another backend and fails on demand.

pub mod fault;
mod inmem;
pub mod sqlite;

use std::fmt;

use async_trait::async_trait;

pub use inmem::InMemory;

/// One operation inside an atomic [`Physical::transaction`].
#[derive(Clone, PartialEq, Eq)]
pub enum TxOp {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
}

impl fmt::Debug for TxOp {
    // Values are ciphertext, but there is no reason to print them either.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxOp::Put { key, value } => write!(f, "Put({key:?}, {} bytes)", value.len()),
            TxOp::Delete { key } => write!(f, "Delete({key:?})"),
        }
    }
}

/// What went wrong below the barrier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageError {
    /// The backend cannot be reached or refused the operation (I/O error, disk full, closed).
    Unavailable(String),
    /// A key or value the backend cannot store (empty key, too large).
    Invalid(String),
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Unavailable(msg) => write!(f, "storage unavailable: {msg}"),
            StorageError::Invalid(msg) => write!(f, "invalid storage operation: {msg}"),
        }
    }
}

impl std::error::Error for StorageError {}

/// A storage backend. Keys are `/`-separated strings; values are opaque bytes.
///
/// Every backend behaves the same way, checked by the conformance suite in
/// `tests/conformance.rs`: keys are ordered by their UTF-8 bytes (which is code point order),
/// any non-empty string is a valid key, an empty value is a value (not an absence), and a
/// write that returned `Ok` is durable as far as the backend promises durability.
#[async_trait]
pub trait Physical: Send + Sync + fmt::Debug + 'static {
    /// The value under `key`, or `None` if there is none.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Creates or overwrites `key`. An empty key is [`StorageError::Invalid`].
    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError>;
    /// Deleting an absent key succeeds.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// The direct children of `prefix`, as Vault lists them: sorted, relative to the prefix,
    /// with a trailing `/` for a "folder" (a child that has keys below it). A key that is
    /// both a value and a folder appears twice (`a` and `a/`). The prefix need not end on a
    /// `/`; a key equal to the prefix is not a child of it.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;
    /// Full keys starting with `prefix`, recursively, in byte order, strictly after `after`
    /// (empty: from the start), at most `limit` of them. Used to walk large indexes in pages.
    async fn scan(
        &self,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<String>, StorageError>;
    /// Applies every operation, in order, or none of them (for example when one puts an
    /// empty key). An empty batch succeeds.
    async fn transaction(&self, ops: Vec<TxOp>) -> Result<(), StorageError>;
}

/// Shared helper for backends: turns a sorted iterator of full keys under `prefix`
/// into Vault-style list entries.
pub fn children_of<'a>(prefix: &str, keys: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for key in keys {
        let Some(rest) = key.strip_prefix(prefix) else {
            continue;
        };
        let child = match rest.find('/') {
            Some(i) => &rest[..=i],
            None => rest,
        };
        if child.is_empty() {
            continue;
        }
        // Keys sharing a folder form one contiguous run in sorted order.
        if out.last().map(String::as_str) != Some(child) {
            out.push(child.to_string());
        }
    }
    out
}
