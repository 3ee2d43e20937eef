//! The SQLite backend: one durable file for a single node.
//!
//! It owns the on-disk format (one `kv` table, WAL journal, `synchronous=FULL`) and the
//! two paths into it. Writes go through **group commit**: one dedicated writer thread owns
//! the only read-write connection; `put`, `delete` and `transaction` send their batch over a
//! channel and await a oneshot reply. The writer takes everything pending, applies it in one
//! SQLite transaction (one fsync of the WAL), and only then acknowledges each request, so
//! "acknowledged" means "on disk" and 32 concurrent writers cost a handful of fsyncs, not 32.
//! Each request runs inside its own SAVEPOINT so that one rejected request is rolled back
//! alone; if the commit itself fails, every request in the group gets the error.
//!
//! Reads go to a small pool of dedicated reader threads, each owning one read-only
//! connection (WAL lets readers run beside the writer). We chose dedicated threads over
//! `spawn_blocking` with a connection pool because, for many small reads: a thread that owns
//! its connection needs no checkout and keeps its prepared statements hot; a burst of reads
//! queues in a channel instead of waking up to 512 blocking-pool threads that would then
//! fight over a handful of connections; a busy reader thread runs queued jobs back to back
//! without parking; and storage reads do not compete with other users of the blocking pool
//! (`tokio::fs`, password hashing). Each read is dispatched to the reader with the fewest
//! jobs in flight, so one long `scan` does not hold up the point reads behind it.
//!
//! Encryption, caching and Vault semantics live above this layer; it sees only opaque keys
//! and ciphertext. Creating the parent directory is the caller's job.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::{Physical, StorageError, TxOp};

/// The most write requests one group transaction takes from the queue.
const MAX_GROUP_REQUESTS: usize = 1024;
/// Stop draining the queue once a group holds this many bytes of keys and values
/// (a single larger request still goes through, alone).
const MAX_GROUP_BYTES: usize = 64 * 1024 * 1024;
/// How long a connection waits for a lock held by another process before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Fewest and most reader threads (and so read-only connections).
const MIN_READERS: usize = 2;
const MAX_READERS: usize = 8;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY NOT NULL CHECK (key <> ''),
    value BLOB NOT NULL
) WITHOUT ROWID";

const UPSERT: &str = "INSERT INTO kv (key, value) VALUES (?1, ?2) \
                      ON CONFLICT (key) DO UPDATE SET value = excluded.value";
const DELETE: &str = "DELETE FROM kv WHERE key = ?1";
const GET: &str = "SELECT value FROM kv WHERE key = ?1";
const RANGE_FROM: &str = "SELECT key FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key";
const SCAN_FROM: &str = "SELECT key FROM kv WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT ?3";
const SCAN_AFTER: &str = "SELECT key FROM kv WHERE key > ?1 AND key < ?2 ORDER BY key LIMIT ?3";

/// A durable single-file store with group commit. See the module documentation.
///
/// Dropping it closes the write queue, waits for the writer to commit what is already queued
/// and joins every thread: it blocks for about one group commit, once, at shutdown.
pub struct Sqlite {
    path: PathBuf,
    writer: Writer,
    readers: Readers,
    counters: Arc<Counters>,
}

/// Counters since the store was opened, for tests, benchmarks and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SqliteStats {
    /// Write requests (`put`, `delete`, non-empty `transaction`) handed to the writer.
    pub write_requests: u64,
    /// Group transactions committed; each is one fsync of the WAL.
    pub group_commits: u64,
    /// Index rows that `list` stepped through. With folder skipping this grows with the
    /// number of children listed, not with the number of keys below the prefix.
    pub list_rows_visited: u64,
}

impl Sqlite {
    /// Opens (creating if needed) the database file at `path`, switches it to WAL with full
    /// sync, and starts the writer and reader threads. The parent directory must exist.
    /// Blocking (it opens files and may recover a WAL left by a crash): call it at start-up
    /// or from `spawn_blocking`.
    pub fn open(path: impl AsRef<Path>) -> Result<Sqlite, StorageError> {
        let path = path.as_ref().to_path_buf();
        let counters = Arc::new(Counters::default());
        let connection = open_writer_connection(&path)?;
        // Readers open after the writer so that the file, the table and WAL mode exist.
        let n_readers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(MIN_READERS)
            .clamp(MIN_READERS, MAX_READERS);
        let readers = Readers::start(&path, n_readers)?;
        let writer = Writer::start(connection, Arc::clone(&counters))?;
        Ok(Sqlite {
            path,
            writer,
            readers,
            counters,
        })
    }

    /// The path this store was opened with.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SqliteStats {
        SqliteStats {
            write_requests: self.counters.write_requests.load(Ordering::Relaxed),
            group_commits: self.counters.group_commits.load(Ordering::Relaxed),
            list_rows_visited: self.counters.list_rows_visited.load(Ordering::Relaxed),
        }
    }

    /// Sends one atomic batch to the writer thread and waits until it is durable.
    ///
    /// If the caller stops awaiting, the batch may still be committed: cancellation only
    /// means the caller no longer learns the outcome.
    async fn write(&self, ops: Vec<TxOp>) -> Result<(), StorageError> {
        if ops.is_empty() {
            return Ok(());
        }
        validate(&ops)?;
        let (reply, acknowledged) = oneshot::channel();
        self.writer.submit(WriteRequest { ops, reply })?;
        self.counters.write_requests.fetch_add(1, Ordering::Relaxed);
        acknowledged.await.map_err(|_| {
            StorageError::Unavailable("SQLite writer stopped before acknowledging a write".into())
        })?
    }

    /// Runs `job` on a reader thread with its read-only connection.
    async fn read<T, F>(&self, job: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StorageError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.readers
            .submit(Box::new(move |connection: &mut Connection| {
                // The caller may have stopped waiting; then nobody needs the answer.
                let _ = reply.send(job(connection));
            }))?;
        answer.await.map_err(|_| {
            StorageError::Unavailable("SQLite reader stopped before answering".into())
        })?
    }
}

impl fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sqlite")
            .field("path", &self.path)
            .field("readers", &self.readers.senders.len())
            .finish_non_exhaustive()
    }
}

impl Drop for Sqlite {
    fn drop(&mut self) {
        // Readers first, so that the writer's connection is the last one to close: the last
        // connection checkpoints the WAL into the main file and removes it.
        self.readers.stop();
        self.writer.stop();
    }
}

#[async_trait]
impl Physical for Sqlite {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let key = key.to_string();
        self.read(move |connection| {
            let mut statement = connection
                .prepare_cached(GET)
                .map_err(|e| read_error("prepare get", &e))?;
            let mut rows = statement.query([&key]).map_err(|e| read_error("get", &e))?;
            match rows.next().map_err(|e| read_error("get", &e))? {
                Some(row) => {
                    let value = row.get_ref(0).map_err(|e| read_error("get", &e))?;
                    let bytes = value
                        .as_blob()
                        .map_err(|_| corrupt("a stored value is not a blob"))?;
                    Ok(Some(bytes.to_vec()))
                }
                None => Ok(None),
            }
        })
        .await
    }

    async fn put(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        self.write(vec![TxOp::Put {
            key: key.to_string(),
            value,
        }])
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.write(vec![TxOp::Delete {
            key: key.to_string(),
        }])
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let prefix = prefix.to_string();
        let counters = Arc::clone(&self.counters);
        self.read(move |connection| list_children(connection, &prefix, &counters))
            .await
    }

    async fn scan(
        &self,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<String>, StorageError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let prefix = prefix.to_string();
        let after = after.to_string();
        self.read(move |connection| scan_keys(connection, &prefix, &after, limit))
            .await
    }

    async fn transaction(&self, ops: Vec<TxOp>) -> Result<(), StorageError> {
        self.write(ops).await
    }
}

// ---------------------------------------------------------------------------------------
// Opening

fn open_writer_connection(path: &Path) -> Result<Connection, StorageError> {
    let open_error = |e: rusqlite::Error| {
        StorageError::Unavailable(format!(
            "cannot open SQLite database at {}: {e}",
            path.display()
        ))
    };
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_error)?;
    connection.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
    let journal_mode: String = connection
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(open_error)?;
    if !journal_mode.eq_ignore_ascii_case("wal") {
        return Err(StorageError::Unavailable(format!(
            "cannot switch SQLite database at {} to WAL (journal mode is {journal_mode})",
            path.display()
        )));
    }
    // Not persistent: every connection that writes must set it. FULL syncs the WAL on every
    // commit, which is what makes an acknowledged write survive power loss.
    connection
        .execute_batch("PRAGMA synchronous = FULL")
        .map_err(open_error)?;
    connection.execute_batch(SCHEMA).map_err(open_error)?;
    Ok(connection)
}

fn open_reader_connection(path: &Path) -> Result<Connection, StorageError> {
    let open_error = |e: rusqlite::Error| {
        StorageError::Unavailable(format!(
            "cannot open SQLite database at {} for reading: {e}",
            path.display()
        ))
    };
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_error)?;
    connection.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
    Ok(connection)
}

// ---------------------------------------------------------------------------------------
// The writer: group commit

struct WriteRequest {
    ops: Vec<TxOp>,
    reply: oneshot::Sender<Result<(), StorageError>>,
}

impl WriteRequest {
    fn size(&self) -> usize {
        self.ops
            .iter()
            .map(|op| match op {
                TxOp::Put { key, value } => key.len() + value.len(),
                TxOp::Delete { key } => key.len(),
            })
            .sum()
    }
}

#[derive(Debug, Default)]
struct Counters {
    write_requests: AtomicU64,
    group_commits: AtomicU64,
    list_rows_visited: AtomicU64,
}

struct Writer {
    sender: Option<mpsc::Sender<WriteRequest>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    fn start(connection: Connection, counters: Arc<Counters>) -> Result<Writer, StorageError> {
        // Unbounded: a sender is an async task and must never block. Back-pressure comes from
        // each request awaiting its acknowledgement.
        let (sender, receiver) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ward-sqlite-writer".into())
            .spawn(move || writer_loop(connection, receiver, counters))
            .map_err(|e| {
                StorageError::Unavailable(format!("cannot start the SQLite writer thread: {e}"))
            })?;
        Ok(Writer {
            sender: Some(sender),
            thread: Some(thread),
        })
    }

    fn submit(&self, request: WriteRequest) -> Result<(), StorageError> {
        let stopped = || StorageError::Unavailable("SQLite writer has stopped".into());
        let sender = self.sender.as_ref().ok_or_else(stopped)?;
        sender.send(request).map_err(|_| stopped())
    }

    /// Closes the queue and waits for the writer to finish the groups already queued and
    /// close its connection. Blocks for at most one group commit per queued group.
    fn stop(&mut self) {
        drop(self.sender.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the SQLite writer thread panicked");
            }
        }
    }
}

fn writer_loop(
    connection: Connection,
    receiver: mpsc::Receiver<WriteRequest>,
    counters: Arc<Counters>,
) {
    let mut group: Vec<WriteRequest> = Vec::new();
    // `recv` fails once every sender is gone and the queue is empty: the store was dropped.
    while let Ok(first) = receiver.recv() {
        let mut n_bytes = first.size();
        group.push(first);
        while group.len() < MAX_GROUP_REQUESTS && n_bytes < MAX_GROUP_BYTES {
            match receiver.try_recv() {
                Ok(request) => {
                    n_bytes += request.size();
                    group.push(request);
                }
                Err(_) => break,
            }
        }
        let outcomes = commit_group(&connection, group.iter().map(|request| &request.ops[..]));
        if outcomes.iter().any(Result::is_ok) {
            counters.group_commits.fetch_add(1, Ordering::Relaxed);
        }
        for (request, outcome) in group.drain(..).zip(outcomes) {
            // A caller that stopped waiting does not need the answer.
            let _ = request.reply.send(outcome);
        }
    }
    if let Err((_, e)) = connection.close() {
        tracing::warn!(error = %e, "closing the SQLite writer connection failed");
    }
}

/// Why one request inside a group failed.
enum RequestFailure {
    /// Only this request was rolled back (to its savepoint); the group goes on.
    Rejected(StorageError),
    /// The group transaction is lost; every request in it fails.
    GroupLost(StorageError),
}

/// Applies each request's operations in one transaction, each request under its own
/// savepoint, and commits once. Returns one outcome per request, in order; an `Ok` means
/// the request is durable.
fn commit_group<'a>(
    connection: &Connection,
    requests: impl ExactSizeIterator<Item = &'a [TxOp]>,
) -> Vec<Result<(), StorageError>> {
    let n_requests = requests.len();
    if let Err(e) = run(connection, "BEGIN IMMEDIATE") {
        return vec![Err(write_error("begin the group transaction", &e)); n_requests];
    }
    let mut outcomes = Vec::with_capacity(n_requests);
    for ops in requests {
        match apply_request(connection, ops) {
            Ok(()) => outcomes.push(Ok(())),
            Err(RequestFailure::Rejected(e)) => outcomes.push(Err(e)),
            Err(RequestFailure::GroupLost(e)) => {
                rollback(connection);
                return vec![Err(e); n_requests];
            }
        }
    }
    match run(connection, "COMMIT") {
        Ok(()) => outcomes,
        Err(e) => {
            rollback(connection);
            let e = write_error("commit the group transaction", &e);
            // Nothing in this group is durable. A request that was rejected on its own keeps
            // its own (more precise) error; every other one gets the commit's.
            outcomes
                .into_iter()
                .map(|outcome| outcome.and(Err(e.clone())))
                .collect()
        }
    }
}

fn apply_request(connection: &Connection, ops: &[TxOp]) -> Result<(), RequestFailure> {
    run(connection, "SAVEPOINT request").map_err(|e| group_lost("open a savepoint", &e))?;
    match apply_ops(connection, ops) {
        Ok(()) => {
            run(connection, "RELEASE request").map_err(|e| group_lost("release a savepoint", &e))
        }
        Err(e) => {
            // Some errors (disk full, I/O) make SQLite roll back the whole transaction, and
            // with it every request applied before this one.
            if connection.is_autocommit() {
                return Err(RequestFailure::GroupLost(write_error("write", &e)));
            }
            run(connection, "ROLLBACK TO request")
                .and_then(|()| run(connection, "RELEASE request"))
                .map_err(|e| group_lost("roll back a savepoint", &e))?;
            Err(RequestFailure::Rejected(write_error("write", &e)))
        }
    }
}

fn apply_ops(connection: &Connection, ops: &[TxOp]) -> Result<(), rusqlite::Error> {
    for op in ops {
        match op {
            TxOp::Put { key, value } => {
                connection.prepare_cached(UPSERT)?.execute((key, value))?;
            }
            TxOp::Delete { key } => {
                connection.prepare_cached(DELETE)?.execute([key])?;
            }
        }
    }
    Ok(())
}

/// Runs a statement without results through the statement cache: the writer runs the same
/// few control statements for every request, and parsing them each time shows up.
fn run(connection: &Connection, sql: &str) -> Result<(), rusqlite::Error> {
    connection.prepare_cached(sql)?.execute([])?;
    Ok(())
}

fn group_lost(action: &str, e: &rusqlite::Error) -> RequestFailure {
    RequestFailure::GroupLost(write_error(action, e))
}

fn rollback(connection: &Connection) {
    if connection.is_autocommit() {
        return;
    }
    if let Err(e) = connection.execute_batch("ROLLBACK") {
        tracing::error!(error = %e, "rolling back a failed SQLite group transaction failed");
    }
}

/// Rejects what the table would refuse anyway, before the request reaches the writer.
fn validate(ops: &[TxOp]) -> Result<(), StorageError> {
    if ops
        .iter()
        .any(|op| matches!(op, TxOp::Put { key, .. } if key.is_empty()))
    {
        return Err(StorageError::Invalid("empty key".into()));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Readers

type ReadJob = Box<dyn FnOnce(&mut Connection) + Send>;

struct Readers {
    senders: Vec<mpsc::Sender<ReadJob>>,
    /// Jobs queued or running on each reader, to send each job to the least busy one.
    in_flight: Arc<Vec<AtomicUsize>>,
    threads: Vec<JoinHandle<()>>,
}

impl Readers {
    fn start(path: &Path, n_readers: usize) -> Result<Readers, StorageError> {
        let in_flight: Arc<Vec<AtomicUsize>> =
            Arc::new((0..n_readers).map(|_| AtomicUsize::new(0)).collect());
        let mut readers = Readers {
            senders: Vec::with_capacity(n_readers),
            in_flight: Arc::clone(&in_flight),
            threads: Vec::with_capacity(n_readers),
        };
        for index in 0..n_readers {
            let mut connection = open_reader_connection(path)?;
            let (sender, receiver) = mpsc::channel::<ReadJob>();
            let in_flight = Arc::clone(&in_flight);
            let thread = std::thread::Builder::new()
                .name(format!("ward-sqlite-reader-{index}"))
                .spawn(move || {
                    while let Ok(job) = receiver.recv() {
                        job(&mut connection);
                        if let Some(count) = in_flight.get(index) {
                            count.fetch_sub(1, Ordering::Relaxed);
                        }
                    }
                })
                .map_err(|e| {
                    StorageError::Unavailable(format!("cannot start a SQLite reader thread: {e}"))
                })?;
            readers.senders.push(sender);
            readers.threads.push(thread);
        }
        Ok(readers)
    }

    fn submit(&self, job: ReadJob) -> Result<(), StorageError> {
        let stopped = || StorageError::Unavailable("SQLite readers have stopped".into());
        let index = self
            .in_flight
            .iter()
            .enumerate()
            .min_by_key(|(_, count)| count.load(Ordering::Relaxed))
            .map(|(index, _)| index)
            .ok_or_else(stopped)?;
        let sender = self.senders.get(index).ok_or_else(stopped)?;
        if let Some(count) = self.in_flight.get(index) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        sender.send(job).map_err(|_| stopped())
    }

    fn stop(&mut self) {
        self.senders.clear();
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("a SQLite reader thread panicked");
            }
        }
    }
}

/// Vault-style children of `prefix` using index range queries only. After meeting the first
/// key of a folder `prefix/x/...`, it seeks straight past the folder (to `prefix/x0`, the
/// smallest key greater than every key starting with `prefix/x/`), so the cost grows with
/// the number of children, not with the number of keys below them.
fn list_children(
    connection: &mut Connection,
    prefix: &str,
    counters: &Counters,
) -> Result<Vec<String>, StorageError> {
    // One read transaction: every seek sees the same snapshot.
    let transaction = connection
        .transaction()
        .map_err(|e| read_error("begin a read transaction", &e))?;
    let upper = upper_bound(prefix);
    let mut children: Vec<String> = Vec::new();
    let mut from = prefix.to_string();
    let mut n_rows: u64 = 0;
    {
        let mut statement = transaction
            .prepare_cached(RANGE_FROM)
            .map_err(|e| read_error("prepare list", &e))?;
        loop {
            let mut next_from: Option<String> = None;
            let mut rows = statement
                .query((&from, as_text(&upper)))
                .map_err(|e| read_error("list", &e))?;
            while let Some(row) = rows.next().map_err(|e| read_error("list", &e))? {
                n_rows += 1;
                let key = row
                    .get_ref(0)
                    .map_err(|e| read_error("list", &e))?
                    .as_str()
                    .map_err(|_| corrupt("a stored key is not UTF-8 text"))?;
                let Some(rest) = key.strip_prefix(prefix) else {
                    continue;
                };
                match rest.find('/') {
                    None => {
                        if !rest.is_empty() {
                            children.push(rest.to_string());
                        }
                    }
                    Some(slash) => {
                        let folder = &rest[..=slash];
                        children.push(folder.to_string());
                        // '0' is the byte after '/'.
                        let mut skip_to = String::with_capacity(prefix.len() + slash + 1);
                        skip_to.push_str(prefix);
                        skip_to.push_str(&rest[..slash]);
                        skip_to.push('0');
                        next_from = Some(skip_to);
                        break;
                    }
                }
            }
            match next_from {
                Some(skip_to) => from = skip_to,
                None => break,
            }
        }
    }
    counters
        .list_rows_visited
        .fetch_add(n_rows, Ordering::Relaxed);
    transaction
        .commit()
        .map_err(|e| read_error("end a read transaction", &e))?;
    Ok(children)
}

fn scan_keys(
    connection: &mut Connection,
    prefix: &str,
    after: &str,
    limit: usize,
) -> Result<Vec<String>, StorageError> {
    let upper = upper_bound(prefix);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // One lower bound only, so SQLite seeks on it rather than filtering on the other.
    let (sql, lower) = if after >= prefix {
        (SCAN_AFTER, after)
    } else {
        (SCAN_FROM, prefix)
    };
    let mut statement = connection
        .prepare_cached(sql)
        .map_err(|e| read_error("prepare scan", &e))?;
    let keys = statement
        .query_map((lower, as_text(&upper), limit), |row| {
            row.get::<_, String>(0)
        })
        .map_err(|e| read_error("scan", &e))?
        .collect::<Result<Vec<String>, _>>()
        .map_err(|e| read_error("scan", &e))?;
    Ok(keys)
}

/// The smallest string greater than every string that starts with `prefix`: the prefix
/// followed by the byte 0xFF, which never occurs in UTF-8. Every key starting with the prefix
/// continues with a byte of at most 0xF4, and every greater key that does not start with it
/// differs earlier. SQLite compares TEXT bytewise (BINARY collation) and does not validate
/// UTF-8, so the bound is bound as TEXT.
fn upper_bound(prefix: &str) -> Vec<u8> {
    let mut bound = Vec::with_capacity(prefix.len() + 1);
    bound.extend_from_slice(prefix.as_bytes());
    bound.push(0xFF);
    bound
}

fn as_text(bytes: &[u8]) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(ValueRef::Text(bytes))
}

// ---------------------------------------------------------------------------------------
// Errors. SQLite's messages name the failing constraint or condition, never bound values.

fn write_error(action: &str, e: &rusqlite::Error) -> StorageError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ConstraintViolation) => {
            StorageError::Invalid(format!("SQLite rejected a write: {e}"))
        }
        Some(rusqlite::ErrorCode::TooBig) => {
            StorageError::Invalid("key or value too large for SQLite".into())
        }
        _ => StorageError::Unavailable(format!("SQLite could not {action}: {e}")),
    }
}

fn read_error(action: &str, e: &rusqlite::Error) -> StorageError {
    StorageError::Unavailable(format!("SQLite {action} failed: {e}"))
}

fn corrupt(what: &str) -> StorageError {
    StorageError::Unavailable(format!("SQLite store is corrupt: {what}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn put(key: &str, value: &[u8]) -> TxOp {
        TxOp::Put {
            key: key.into(),
            value: value.to_vec(),
        }
    }

    async fn open_temp() -> (tempfile::TempDir, Sqlite) {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open(dir.path().join("ward.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn a_rejected_request_is_rolled_back_alone_inside_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let connection = open_writer_connection(&dir.path().join("ward.db")).unwrap();
        // The empty key gets past no validation here: the table's CHECK rejects it, after
        // the request's first put already ran.
        let good_before = [put("a", b"1")];
        let bad = [put("b", b"2"), put("", b"x"), put("c", b"3")];
        let good_after = [put("d", b"4"), TxOp::Delete { key: "a".into() }];
        let outcomes = commit_group(
            &connection,
            [&good_before[..], &bad[..], &good_after[..]].into_iter(),
        );
        assert_eq!(outcomes[0], Ok(()));
        assert!(matches!(outcomes[1], Err(StorageError::Invalid(_))));
        assert_eq!(outcomes[2], Ok(()));
        let keys: Vec<String> = connection
            .prepare("SELECT key FROM kv ORDER BY key")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(keys, vec!["d".to_string()]);
    }

    #[test]
    fn a_failed_commit_fails_every_request_in_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ward.db");
        let connection = open_writer_connection(&path).unwrap();
        // A deferred foreign-key violation is only detected by COMMIT: a stand-in for a commit
        // that fails on I/O or a full disk.
        connection
            .execute_batch(
                "PRAGMA foreign_keys = ON;
                 CREATE TABLE parent (id TEXT PRIMARY KEY);
                 CREATE TABLE child (id TEXT REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);
                 CREATE TRIGGER kv_orphan AFTER INSERT ON kv WHEN new.key = 'orphan'
                 BEGIN INSERT INTO child VALUES ('missing'); END;",
            )
            .unwrap();
        let first = [put("a", b"1")];
        let second = [put("orphan", b"2")];
        let outcomes = commit_group(&connection, [&first[..], &second[..]].into_iter());
        assert!(outcomes.iter().all(Result::is_err), "{outcomes:?}");
        assert!(connection.is_autocommit());
        let n_rows: i64 = connection
            .query_row("SELECT count(*) FROM kv", [], |row| row.get(0))
            .unwrap();
        assert_eq!(n_rows, 0, "nothing from a failed group is written");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_share_commits() {
        let (dir, store) = open_temp().await;
        let store = Arc::new(store);
        // Hold the write lock from another connection so that every request queues up
        // behind the writer's first group; then release it.
        let blocker = Connection::open(dir.path().join("ward.db")).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move { store.put(&format!("k/{i}"), vec![i as u8]).await })
            })
            .collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.stats().write_requests < 32 {
            assert!(
                std::time::Instant::now() < deadline,
                "requests never queued"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        blocker.execute_batch("COMMIT").unwrap();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let stats = store.stats();
        assert!(stats.group_commits <= 2, "{stats:?}");
        assert_eq!(store.scan("k/", "", 100).await.unwrap().len(), 32);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn list_visits_children_not_keys() {
        let (_dir, store) = open_temp().await;
        let mut ops = Vec::new();
        for i in 0..100_000u32 {
            ops.push(put(&format!("big/f{}/{i:06}", i % 5), b"v"));
        }
        ops.push(put("big/f2", b"value and folder"));
        ops.push(put("big/zz", b"value"));
        ops.push(put("other/x", b"value"));
        store.transaction(ops).await.unwrap();

        let before = store.stats().list_rows_visited;
        let children = store.list("big/").await.unwrap();
        assert_eq!(
            children,
            ["f0/", "f1/", "f2", "f2/", "f3/", "f4/", "zz"].map(String::from)
        );
        let visited = store.stats().list_rows_visited - before;
        assert!(visited <= 7, "list visited {visited} rows");

        let before = store.stats().list_rows_visited;
        assert_eq!(store.list("").await.unwrap(), ["big/", "other/"]);
        assert!(store.stats().list_rows_visited - before <= 2);
    }

    #[test]
    fn reads_use_index_searches_never_table_scans() {
        let dir = tempfile::tempdir().unwrap();
        let connection = open_writer_connection(&dir.path().join("ward.db")).unwrap();
        for sql in [GET, RANGE_FROM, SCAN_FROM, SCAN_AFTER, DELETE] {
            let mut statement = connection
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap();
            // Parameters left unbound are NULL: the plan does not depend on them.
            let mut rows = statement.raw_query();
            let mut plan = Vec::new();
            while let Some(row) = rows.next().unwrap() {
                plan.push(row.get::<_, String>(3).unwrap());
            }
            let plan = plan.join("; ");
            assert!(plan.contains("SEARCH"), "{sql}: {plan}");
            assert!(!plan.contains("SCAN"), "{sql}: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{sql}: {plan}");
        }
    }

    #[test]
    fn open_fails_clearly_when_the_directory_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("ward.db");
        let error = Sqlite::open(&path).unwrap_err();
        let StorageError::Unavailable(message) = error else {
            panic!("unexpected error {error:?}");
        };
        assert!(message.contains("cannot open SQLite database"), "{message}");
        assert!(message.contains("missing"), "{message}");
    }

    #[test]
    fn open_fails_clearly_on_a_file_that_is_not_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ward.db");
        std::fs::write(&path, vec![7u8; 8192]).unwrap();
        let error = Sqlite::open(&path).unwrap_err();
        assert!(
            matches!(&error, StorageError::Unavailable(m) if m.contains("cannot open")),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn drop_stops_the_threads_and_releases_the_file() {
        let (dir, store) = open_temp().await;
        store.put("k", b"v".to_vec()).await.unwrap();
        drop(store);
        // The last connection to close checkpoints and removes the WAL.
        assert!(!dir.path().join("ward.db-wal").exists());
        let store = Sqlite::open(dir.path().join("ward.db")).unwrap();
        assert_eq!(store.get("k").await.unwrap(), Some(b"v".to_vec()));
    }
}
