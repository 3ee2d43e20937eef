//! The fault-injecting double: a [`Physical`] that wraps another and fails on demand.
//!
//! Higher layers use it to prove the fail-closed principle ("storage down → 503, nothing
//! half-written"): switch faults on between two steps of an operation and check what the
//! wrapped store holds afterwards. Every switch is an atomic, so a test flips it at runtime
//! through a shared `Arc<FaultInjector>` while requests are in flight. An injected failure is
//! decided *before* the wrapped store is called, so a failed operation never reaches it.
//! Failures are [`StorageError::Unavailable`] with the message `"injected fault"`.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::{Physical, StorageError, TxOp};

/// The message of every injected failure.
pub const INJECTED: &str = "injected fault";

/// Which operations a fault applies to. Writes are `put`, `delete` and `transaction`;
/// reads are `get`, `list` and `scan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Faults {
    None,
    All,
    Writes,
    Reads,
}

/// Wraps a backend and fails its operations when told to. With every fault off (the state
/// after [`FaultInjector::new`] and [`FaultInjector::heal`]) it only forwards.
pub struct FaultInjector {
    inner: Arc<dyn Physical>,
    /// Operations that always fail.
    always: AtomicU8,
    /// Operations of which one in `one_in` fails (the `one_in`-th, the `2·one_in`-th, ...).
    sometimes: AtomicU8,
    one_in: AtomicU64,
    /// Counts operations that `sometimes` applies to.
    n_candidates: AtomicU64,
    /// Writes still allowed through before every write fails; `u64::MAX` means no limit.
    writes_left: AtomicU64,
    latency_micros: AtomicU64,
    n_injected: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Operation {
    Read,
    Write,
}

const NO_LIMIT: u64 = u64::MAX;

impl FaultInjector {
    pub fn new(inner: Arc<dyn Physical>) -> Self {
        Self {
            inner,
            always: AtomicU8::new(Faults::None.code()),
            sometimes: AtomicU8::new(Faults::None.code()),
            one_in: AtomicU64::new(0),
            n_candidates: AtomicU64::new(0),
            writes_left: AtomicU64::new(NO_LIMIT),
            latency_micros: AtomicU64::new(0),
            n_injected: AtomicU64::new(0),
        }
    }

    /// The wrapped backend, to inspect what actually reached it.
    pub fn inner(&self) -> &Arc<dyn Physical> {
        &self.inner
    }

    /// Fails every operation in `faults` from now on (`Faults::None` switches this off).
    pub fn fail(&self, faults: Faults) {
        self.always.store(faults.code(), Ordering::SeqCst);
    }

    /// Fails one in `n` of the operations in `faults`, deterministically: the `n`-th, the
    /// `2n`-th, and so on, counted from this call. `n = 0` or `Faults::None` switch it off.
    pub fn fail_one_in(&self, faults: Faults, n: u64) {
        self.n_candidates.store(0, Ordering::SeqCst);
        self.one_in.store(n, Ordering::SeqCst);
        self.sometimes.store(faults.code(), Ordering::SeqCst);
    }

    /// Lets the next `n` writes through, then fails every write (reads still work, so a test
    /// can inspect the store) until [`FaultInjector::heal`]: a disk that dies mid-operation.
    pub fn fail_after_writes(&self, n: u64) {
        self.writes_left.store(n, Ordering::SeqCst);
    }

    /// Delays every operation by `latency` before it runs (or fails). Uses `tokio::time`, so
    /// a test runtime with a paused clock does not really wait.
    pub fn set_latency(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_micros.store(micros, Ordering::SeqCst);
    }

    /// Switches every fault and the latency off.
    pub fn heal(&self) {
        self.fail(Faults::None);
        self.fail_one_in(Faults::None, 0);
        self.writes_left.store(NO_LIMIT, Ordering::SeqCst);
        self.latency_micros.store(0, Ordering::SeqCst);
    }

    /// How many operations have failed by injection so far.
    pub fn n_injected(&self) -> u64 {
        self.n_injected.load(Ordering::SeqCst)
    }

    /// Waits out the latency, then decides whether this operation fails.
    async fn enter(&self, operation: Operation) -> Result<(), StorageError> {
        let latency = self.latency_micros.load(Ordering::SeqCst);
        if latency > 0 {
            tokio::time::sleep(Duration::from_micros(latency)).await;
        }
        if self.should_fail(operation) {
            self.n_injected.fetch_add(1, Ordering::SeqCst);
            return Err(StorageError::Unavailable(INJECTED.into()));
        }
        Ok(())
    }

    fn should_fail(&self, operation: Operation) -> bool {
        if Faults::from_code(self.always.load(Ordering::SeqCst)).covers(operation) {
            return true;
        }
        if Faults::from_code(self.sometimes.load(Ordering::SeqCst)).covers(operation) {
            let n = self.one_in.load(Ordering::SeqCst);
            if n > 0 {
                let count = self.n_candidates.fetch_add(1, Ordering::SeqCst) + 1;
                if count % n == 0 {
                    return true;
                }
            }
        }
        if operation == Operation::Write {
            // Take one of the remaining writes, unless there is no limit or none is left.
            let taken = self
                .writes_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| match left {
                    NO_LIMIT | 0 => None,
                    left => Some(left - 1),
                });
            if let Err(left) = taken {
                return left == 0;
            }
        }
        false
    }
}

impl Faults {
    fn code(self) -> u8 {
        match self {
            Faults::None => 0,
            Faults::All => 1,
            Faults::Writes => 2,
            Faults::Reads => 3,
        }
    }

    fn from_code(code: u8) -> Self {
        match code {
            1 => Faults::All,
            2 => Faults::Writes,
            3 => Faults::Reads,
            _ => Faults::None,
        }
    }

    fn covers(self, operation: Operation) -> bool {
        match self {
            Faults::None => false,
            Faults::All => true,
            Faults::Writes => operation == Operation::Write,
            Faults::Reads => operation == Operation::Read,
        }
    }
}

impl fmt::Debug for FaultInjector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultInjector")
            .field("inner", &self.inner)
            .field(
                "always",
                &Faults::from_code(self.always.load(Ordering::Relaxed)),
            )
            .field(
                "sometimes",
                &Faults::from_code(self.sometimes.load(Ordering::Relaxed)),
            )
            .field("one_in", &self.one_in.load(Ordering::Relaxed))
            .field("n_injected", &self.n_injected.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Physical for FaultInjector {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.enter(Operation::Read).await?;
        self.inner.get(key).await
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        self.enter(Operation::Write).await?;
        self.inner.put(key, value).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.enter(Operation::Write).await?;
        self.inner.delete(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        self.enter(Operation::Read).await?;
        self.inner.list(prefix).await
    }

    async fn scan(
        &self,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        self.enter(Operation::Read).await?;
        self.inner.scan(prefix, after, limit).await
    }

    async fn transaction(&self, ops: Vec<TxOp>) -> Result<(), StorageError> {
        self.enter(Operation::Write).await?;
        self.inner.transaction(ops).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::InMemory;

    fn injected() -> Result<(), StorageError> {
        Err(StorageError::Unavailable(INJECTED.into()))
    }

    fn wrapped() -> FaultInjector {
        FaultInjector::new(Arc::new(InMemory::new()))
    }

    #[tokio::test]
    async fn fail_writes_leaves_reads_and_the_store_untouched() {
        let store = wrapped();
        store.put("a", b"1".to_vec()).await.unwrap();
        store.fail(Faults::Writes);
        assert_eq!(store.put("a", b"2".to_vec()).await, injected());
        assert_eq!(store.delete("a").await, injected());
        let ops = vec![TxOp::Delete { key: "a".into() }];
        assert_eq!(store.transaction(ops).await, injected());
        assert_eq!(store.get("a").await.unwrap(), Some(b"1".to_vec()));
        assert_eq!(store.list("").await.unwrap(), ["a"]);
        assert_eq!(store.n_injected(), 3);
    }

    #[tokio::test]
    async fn fail_reads_and_fail_all() {
        let store = wrapped();
        store.fail(Faults::Reads);
        store.put("a", b"1".to_vec()).await.unwrap();
        assert!(store.get("a").await.is_err());
        assert!(store.list("").await.is_err());
        assert!(store.scan("", "", 10).await.is_err());
        store.fail(Faults::All);
        assert_eq!(store.put("b", b"1".to_vec()).await, injected());
        store.heal();
        assert_eq!(store.get("a").await.unwrap(), Some(b"1".to_vec()));
        assert_eq!(store.get("b").await.unwrap(), None);
    }

    #[tokio::test]
    async fn one_in_n_fails_every_nth_matching_operation() {
        let store = wrapped();
        store.fail_one_in(Faults::Writes, 3);
        let mut outcomes = Vec::new();
        for i in 0..9 {
            // Reads in between do not count towards the writes' one-in-three.
            let _ = store.get("x").await.unwrap();
            outcomes.push(store.put(&format!("k{i}"), vec![]).await.is_ok());
        }
        assert_eq!(
            outcomes,
            [true, true, false, true, true, false, true, true, false]
        );
        assert_eq!(store.scan("", "", 100).await.unwrap().len(), 6);
    }

    #[tokio::test]
    async fn fail_after_writes_lets_n_through_then_fails_writes_until_healed() {
        let store = wrapped();
        store.fail_after_writes(2);
        store.put("a", vec![]).await.unwrap();
        store.delete("zz").await.unwrap();
        assert_eq!(store.put("b", vec![]).await, injected());
        assert_eq!(store.put("c", vec![]).await, injected());
        assert_eq!(store.list("").await.unwrap(), ["a"]);
        store.heal();
        store.put("b", vec![]).await.unwrap();
    }

    #[tokio::test]
    async fn latency_delays_every_operation() {
        // Real time (the workspace's tokio has no `test-util`), but only a lower bound is
        // asserted, so a slow machine cannot make it fail.
        let store = wrapped();
        store.set_latency(Duration::from_millis(30));
        let start = std::time::Instant::now();
        store.put("a", vec![]).await.unwrap();
        store.get("a").await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(60));
    }
}
