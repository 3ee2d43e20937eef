//! Storage views: the part of the barrier an engine is allowed to see.
//!
//! A view is the barrier plus a fixed prefix (`logical/<mount uuid>/` for a secrets engine),
//! so an engine reads and writes relative keys and cannot name another mount's data, the
//! keyring, or the token store. Values are plaintext above this line and ciphertext below.

use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::barrier::{Barrier, BarrierOp};
use crate::error::Error;

#[derive(Clone)]
pub struct StorageView {
    barrier: Arc<Barrier>,
    prefix: String,
}

impl fmt::Debug for StorageView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageView")
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// One operation of an atomic [`StorageView::transaction`], with keys relative to the view.
pub enum ViewOp {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
}

impl StorageView {
    pub fn new(barrier: Arc<Barrier>, prefix: impl Into<String>) -> Self {
        StorageView {
            barrier,
            prefix: prefix.into(),
        }
    }

    /// A view on a fresh, unsealed in-memory barrier: for engine tests.
    pub async fn for_tests() -> Result<Self, Error> {
        Ok(StorageView::new(
            Barrier::new_unsealed_in_memory().await?,
            "logical/test/",
        ))
    }

    /// A narrower view below this one.
    pub fn sub(&self, prefix: &str) -> StorageView {
        StorageView {
            barrier: self.barrier.clone(),
            prefix: format!("{}{}", self.prefix, prefix),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub async fn get(&self, key: &str) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
        self.barrier.get(&self.full(key)).await
    }

    pub async fn put(&self, key: &str, value: &[u8]) -> Result<(), Error> {
        self.barrier.put(&self.full(key), value).await
    }

    pub async fn delete(&self, key: &str) -> Result<(), Error> {
        self.barrier.delete(&self.full(key)).await
    }

    /// Vault-style direct children of `prefix` (folders end in `/`), relative to `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        self.barrier.list(&self.full(prefix)).await
    }

    /// Keys below `prefix`, recursively, relative to the view, in pages.
    pub async fn scan(
        &self,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<String>, Error> {
        let after = if after.is_empty() {
            String::new()
        } else {
            self.full(after)
        };
        let keys = self.barrier.scan(&self.full(prefix), &after, limit).await?;
        Ok(keys
            .into_iter()
            .filter_map(|k| k.strip_prefix(&self.prefix).map(str::to_string))
            .collect())
    }

    pub async fn transaction(&self, ops: Vec<ViewOp>) -> Result<(), Error> {
        let ops = ops
            .into_iter()
            .map(|op| match op {
                ViewOp::Put { key, value } => BarrierOp::Put {
                    path: self.full(&key),
                    value,
                },
                ViewOp::Delete { key } => BarrierOp::Delete {
                    path: self.full(&key),
                },
            })
            .collect();
        self.barrier.transaction(ops).await
    }

    pub async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        match self.get(key).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::internal(format!("decoding {}{key}: {e}", self.prefix))),
        }
    }

    pub async fn put_json<T: Serialize>(&self, key: &str, value: &T) -> Result<(), Error> {
        let bytes = Zeroizing::new(encode_json(value)?);
        self.put(key, &bytes).await
    }

    /// Removes every key below `prefix` (used when a mount is disabled).
    pub async fn clear(&self, prefix: &str) -> Result<(), Error> {
        loop {
            let keys = self.scan(prefix, "", 1000).await?;
            if keys.is_empty() {
                return Ok(());
            }
            let ops = keys.into_iter().map(|key| ViewOp::Delete { key }).collect();
            self.transaction(ops).await?;
        }
    }

    fn full(&self, key: &str) -> String {
        let mut full = String::with_capacity(self.prefix.len() + key.len());
        full.push_str(&self.prefix);
        full.push_str(key);
        full
    }
}

/// Encodes a value as JSON for a `ViewOp::Put`.
pub fn encode_json<T: Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|e| Error::internal(format!("encoding: {e}")))
}
