//! The in-memory backend: a sorted map behind a lock. Used by `-dev` and by tests.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::RwLock;

use async_trait::async_trait;

use crate::{children_of, Physical, StorageError, TxOp};

#[derive(Debug, Default)]
pub struct InMemory {
    map: RwLock<BTreeMap<String, Vec<u8>>>,
}

impl InMemory {
    pub fn new() -> Self {
        Self::default()
    }

    fn poisoned() -> StorageError {
        StorageError::Unavailable("in-memory store lock poisoned".into())
    }
}

#[async_trait]
impl Physical for InMemory {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let map = self.map.read().map_err(|_| Self::poisoned())?;
        Ok(map.get(key).cloned())
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        if key.is_empty() {
            return Err(StorageError::Invalid("empty key".into()));
        }
        let mut map = self.map.write().map_err(|_| Self::poisoned())?;
        map.insert(key.to_string(), value);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let mut map = self.map.write().map_err(|_| Self::poisoned())?;
        map.remove(key);
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let map = self.map.read().map_err(|_| Self::poisoned())?;
        let keys = map
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .map(|(k, _)| k.as_str())
            .take_while(|k| k.starts_with(prefix));
        Ok(children_of(prefix, keys))
    }

    async fn scan(
        &self,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        let map = self.map.read().map_err(|_| Self::poisoned())?;
        let start = if after.is_empty() || after < prefix {
            Bound::Included(prefix)
        } else {
            Bound::Excluded(after)
        };
        Ok(map
            .range::<str, _>((start, Bound::Unbounded))
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn transaction(&self, ops: Vec<TxOp>) -> Result<(), StorageError> {
        if ops
            .iter()
            .any(|op| matches!(op, TxOp::Put { key, .. } if key.is_empty()))
        {
            return Err(StorageError::Invalid("empty key".into()));
        }
        let mut map = self.map.write().map_err(|_| Self::poisoned())?;
        for op in ops {
            match op {
                TxOp::Put { key, value } => {
                    map.insert(key, value);
                }
                TxOp::Delete { key } => {
                    map.remove(&key);
                }
            }
        }
        Ok(())
    }
}
