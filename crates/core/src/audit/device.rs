//! Audit devices: the [`AuditSink`] trait (where lines go), the file sink (`file_path`, also
//! `stdout` and `discard`), and the per-device writer task.
//!
//! Each device has one writer ([`DeviceWriter`]) that owns its sink and its end of the hash
//! chain behind a lock. Requests queue serialised entries and either write the queue
//! themselves or wait for the request that is writing; a writer frames every queued line
//! (chain hash included), writes them with one call and acknowledges them together, so
//! concurrent requests share a write and an uncontended one needs no hand-off to another
//! task. A write that does not finish within the device's timeout fails the batch: the
//! requests waiting on it count this device as failed and carry on with the others. Sockets are not opened here (the core opens
//! no sockets): the server registers a sink factory for `socket`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::{oneshot, Notify};

use super::chain;
use super::checkpoint::{Checkpoints, Progress};

/// Where a device's lines go. Implementations: the file sink here, the socket sink in the
/// server, and fault-injecting sinks in tests.
#[async_trait]
pub trait AuditSink: Send {
    /// Writes a batch of whole lines and hands it to the operating system. On error, the
    /// batch counts as not written (a sink that can undo a partial write should).
    async fn write(&mut self, batch: &[u8]) -> io::Result<()>;

    /// Reopens the destination: log rotation after SIGHUP.
    async fn reopen(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Called after a failed or timed-out write, for sinks that must start over (a socket
    /// with half a line in it reconnects).
    async fn reset(&mut self) {}

    /// The hash of the last line already at the destination, to continue the chain after a
    /// restart. `None` when the sink cannot tell (a socket) or the destination is empty.
    fn last_line_hash(&mut self) -> Option<[u8; 32]> {
        None
    }

    /// The last checkpoint line at the destination and the entries after it, so that a
    /// device's checkpoint counters continue after a restart. `None` when the sink cannot
    /// tell (a socket).
    fn checkpoint_tail(&mut self) -> Option<CheckpointTail> {
        None
    }
}

/// What a destination holds after its last checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckpointTail {
    /// The JSON of the last checkpoint line (from `{"prev_hash"` on), if there is one.
    pub last: Option<Vec<u8>>,
    /// Audit entries after it, or in the whole destination when it holds no checkpoint.
    pub entries_after: u64,
}

/// Builds the sink of one device type from the device's options. Errors are messages for the
/// operator (they become 400s); they never contain secrets.
#[async_trait]
pub trait AuditSinkFactory: Send + Sync {
    async fn open(&self, options: &BTreeMap<String, String>) -> Result<Box<dyn AuditSink>, String>;
}

/// The `file` device type (also serves `stdout` and `discard`).
pub struct FileSinkFactory;

#[async_trait]
impl AuditSinkFactory for FileSinkFactory {
    async fn open(&self, options: &BTreeMap<String, String>) -> Result<Box<dyn AuditSink>, String> {
        let target = options
            .get("file_path")
            .or_else(|| options.get("path"))
            .filter(|p| !p.is_empty())
            .ok_or("file_path is required")?;
        match target.as_str() {
            "stdout" => return Ok(Box::new(StdoutSink)),
            "discard" => return Ok(Box::new(DiscardSink)),
            _ => {}
        }
        let mode = parse_mode(options.get("mode").map(String::as_str))?;
        let path = checked_path(Path::new(target))?;
        let sink = FileSink::open(path, mode)
            .map_err(|e| format!("cannot open audit file: {}", describe_io(&e)))?;
        Ok(Box::new(sink))
    }
}

/// Directories an audit file may never be written into: system and executable locations
/// (CVE-2025-6000: an API-enabled device writing an executable into the plugin directory).
const FORBIDDEN_DIRECTORIES: &[&str] = &[
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run",
    "/sbin", "/sys", "/usr",
];

/// Resolves and checks an audit file path: absolute, the directory exists and is not a
/// system or executable location, and an existing file is a regular, non-executable file.
fn checked_path(path: &Path) -> Result<PathBuf, String> {
    if !path.is_absolute() {
        return Err("file_path must be an absolute path".into());
    }
    let name = path.file_name().ok_or("file_path must name a file")?;
    let parent = path.parent().ok_or("file_path must name a file")?;
    let directory = std::fs::canonicalize(parent)
        .map_err(|e| format!("audit directory is not usable: {}", describe_io(&e)))?;
    if directory == Path::new("/")
        || FORBIDDEN_DIRECTORIES
            .iter()
            .any(|d| directory.starts_with(d))
    {
        return Err(format!(
            "audit files cannot be written under {}",
            directory.display()
        ));
    }
    let full = directory.join(name);
    if let Ok(metadata) = std::fs::metadata(&full) {
        if !metadata.is_file() {
            return Err("file_path exists and is not a regular file".into());
        }
        if metadata.permissions().mode() & 0o111 != 0 {
            return Err("file_path is an executable file".into());
        }
    }
    Ok(full)
}

/// `mode` as Vault takes it: an octal string, default `0600`. Executable, setuid, setgid
/// and sticky bits are refused.
fn parse_mode(text: Option<&str>) -> Result<u32, String> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(0o600);
    };
    let digits = text.strip_prefix("0o").unwrap_or(text);
    let mode = u32::from_str_radix(digits, 8)
        .map_err(|_| format!("invalid mode {text:?}: expected an octal number such as 0600"))?;
    if mode > 0o777 {
        return Err(format!(
            "invalid mode {text:?}: setuid, setgid and sticky bits are not allowed"
        ));
    }
    if mode & 0o111 != 0 {
        return Err(format!(
            "invalid mode {text:?}: audit files cannot be executable"
        ));
    }
    Ok(mode)
}

fn describe_io(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file or directory".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// An append-only audit file. It checks that the open file still has a name (a deleted
/// file is reported within 50 ms, not written into silently, which Vault does), and a failed
/// write is cut back so that no half line stays behind.
pub struct FileSink {
    path: PathBuf,
    mode: u32,
    file: File,
    /// The file's length as this sink knows it (it is the only writer), to cut back to.
    length: u64,
    /// When the link count and length were last read from the file; `None`: at the next write.
    checked: Option<Instant>,
}

/// How often a file sink checks that its file still has a name.
const CHECK_INTERVAL: Duration = Duration::from_millis(50);

impl FileSink {
    pub fn open(path: PathBuf, mode: u32) -> io::Result<FileSink> {
        let file = open_append(&path, mode)?;
        let mut sink = FileSink {
            path,
            mode,
            file,
            length: 0,
            checked: None,
        };
        sink.check()?;
        Ok(sink)
    }

    /// Reads the link count (a deleted file fails) and the length.
    fn check(&mut self) -> io::Result<()> {
        let metadata = self.file.metadata()?;
        self.length = metadata.len();
        if metadata.nlink() == 0 {
            // Not marked as checked: every later write checks again until a reopen.
            return Err(io::Error::other("the audit file was deleted"));
        }
        self.checked = Some(Instant::now());
        Ok(())
    }
}

fn open_append(path: &Path, mode: u32) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    if mode != 0 {
        options.mode(mode);
    }
    let file = options.open(path)?;
    if mode != 0 && file.metadata()?.permissions().mode() & 0o777 != mode {
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    Ok(file)
}

#[async_trait]
impl AuditSink for FileSink {
    async fn write(&mut self, batch: &[u8]) -> io::Result<()> {
        // A regular file in the page cache: the write does not wait for the disk, so doing it
        // on the device task is cheaper than a hop to the blocking pool.
        // `fstat` costs about as much as the write itself, so the file's link count is
        // checked at most every CHECK_INTERVAL, and after any failed write.
        if self.checked.is_none_or(|at| at.elapsed() >= CHECK_INTERVAL) {
            self.check()?;
        }
        if let Err(e) = self.file.write_all(batch) {
            let _ = self.file.set_len(self.length);
            self.checked = None;
            return Err(e);
        }
        self.length += batch.len() as u64;
        Ok(())
    }

    async fn reopen(&mut self) -> io::Result<()> {
        self.file = open_append(&self.path, self.mode)?;
        self.check()
    }

    fn last_line_hash(&mut self) -> Option<[u8; 32]> {
        last_line(&self.path)
            .ok()
            .flatten()
            .map(|line| chain::line_hash(&line))
    }

    fn checkpoint_tail(&mut self) -> Option<CheckpointTail> {
        checkpoint_tail(&self.path, TAIL_SCAN_LIMIT).ok().flatten()
    }
}

/// How far back a restarting device looks for its last checkpoint (a device writes one at
/// least every `checkpoint_entries`, so this is far more than it needs).
const TAIL_SCAN_LIMIT: u64 = 256 * 1024 * 1024;

/// Reads a file backwards to its last checkpoint line, counting the entries after it.
/// `None` when no checkpoint is found within `limit` bytes of the end.
fn checkpoint_tail(path: &Path, limit: u64) -> io::Result<Option<CheckpointTail>> {
    const BLOCK: u64 = 1024 * 1024;
    let mut file = File::open(path)?;
    let mut end = file.metadata()?.len();
    let mut scanned = 0u64;
    // The end part of a line that starts before the blocks read so far.
    let mut carry: Vec<u8> = Vec::new();
    let mut entries_after = 0u64;
    let classify = |line: &[u8], entries_after: &mut u64| -> Option<CheckpointTail> {
        if line.iter().all(|b| *b == b'\r') {
            return None;
        }
        if let Some(json) = chain::checkpoint_json(line) {
            return Some(CheckpointTail {
                last: Some(json.to_vec()),
                entries_after: *entries_after,
            });
        }
        *entries_after += 1;
        None
    };
    loop {
        if end == 0 {
            if let Some(found) = classify(&carry, &mut entries_after) {
                return Ok(Some(found));
            }
            return Ok(Some(CheckpointTail {
                last: None,
                entries_after,
            }));
        }
        if scanned >= limit {
            return Ok(None);
        }
        let read = BLOCK.min(end);
        end -= read;
        scanned += read;
        file.seek(SeekFrom::Start(end))?;
        let mut block = vec![0u8; usize::try_from(read).unwrap_or(0)];
        file.read_exact(&mut block)?;
        block.extend_from_slice(&carry);
        let Some(first_newline) = block.iter().position(|b| *b == b'\n') else {
            carry = block;
            continue;
        };
        for line in block[first_newline + 1..].split(|b| *b == b'\n').rev() {
            if let Some(found) = classify(line, &mut entries_after) {
                return Ok(Some(found));
            }
        }
        block.truncate(first_newline);
        carry = block;
    }
}

/// The last non-empty line of a file, read backwards in blocks.
fn last_line(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let mut file = File::open(path)?;
    let mut end = file.metadata()?.len();
    let mut tail: Vec<u8> = Vec::new();
    const BLOCK: u64 = 64 * 1024;
    loop {
        let content_end = tail
            .iter()
            .rposition(|b| *b != b'\n' && *b != b'\r')
            .map(|i| i + 1);
        if let Some(content_end) = content_end {
            if let Some(start) = tail[..content_end].iter().rposition(|b| *b == b'\n') {
                return Ok(Some(tail[start + 1..content_end].to_vec()));
            }
        }
        if end == 0 {
            return Ok(content_end.map(|e| tail[..e].to_vec()));
        }
        let read = BLOCK.min(end);
        end -= read;
        file.seek(SeekFrom::Start(end))?;
        let mut block = vec![0u8; usize::try_from(read).unwrap_or(0)];
        file.read_exact(&mut block)?;
        block.extend_from_slice(&tail);
        tail = block;
    }
}

struct StdoutSink;

#[async_trait]
impl AuditSink for StdoutSink {
    async fn write(&mut self, batch: &[u8]) -> io::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(batch)?;
        out.flush()
    }
}

struct DiscardSink;

#[async_trait]
impl AuditSink for DiscardSink {
    async fn write(&mut self, _batch: &[u8]) -> io::Result<()> {
        Ok(())
    }
}

/// Reports a device failure (metrics, alerts); never given secret material.
pub(crate) type FailureHook = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// An entry waiting to be written, and the request waiting for it.
type Queued = (Vec<u8>, oneshot::Sender<bool>);

/// The most entries one write takes.
const MAX_BATCH: usize = 512;

/// What a line buffer starts with: a KV read's response entry is about 1.6 KB.
const LINE_CAPACITY: usize = 2048;

/// How many line buffers a device keeps for reuse.
const MAX_SPARE: usize = 1024;

/// What the writer lock guards: the sink and the device's end of the chain.
struct WriterState {
    sink: Box<dyn AuditSink>,
    last_hash: [u8; 32],
    /// Signed checkpoints, when the device writes them.
    checkpoints: Option<Checkpoints>,
    buffer: Vec<u8>,
    /// A write was interrupted (its future dropped): the sink may hold half a batch.
    dirty: bool,
}

/// One device's writer: group commit without a hand-off.
///
/// A request queues its line, then writes the queue itself if no one else is writing; a
/// request that finds the writer busy waits for the writer, which takes every queued line
/// before it lets go. So an uncontended entry costs one write on the request's own thread,
/// and concurrent entries share writes. Lines left behind (a writer that was interrupted,
/// a request that stopped waiting because another device already had its entry) are
/// written by the device's background task, which a request wakes when it leaves.
pub(crate) struct DeviceWriter {
    name: String,
    prefix: Vec<u8>,
    write_timeout: Duration,
    on_failure: FailureHook,
    queue: Mutex<Vec<Queued>>,
    /// Buffers of written lines, reused for the next entries.
    spare: Mutex<Vec<Vec<u8>>>,
    state: tokio::sync::Mutex<WriterState>,
    kick: Arc<Notify>,
    /// Whether the last write succeeded. Requests wait for healthy devices and do not wait
    /// for failing ones once another device has their entry.
    healthy: AtomicBool,
}

impl DeviceWriter {
    /// Builds the writer and starts its background task, which ends when the writer is dropped.
    pub(crate) fn start(
        name: String,
        sink: Box<dyn AuditSink>,
        prefix: Vec<u8>,
        last_hash: [u8; 32],
        checkpoints: Option<Checkpoints>,
        write_timeout: Duration,
        on_failure: FailureHook,
    ) -> Arc<DeviceWriter> {
        let kick = Arc::new(Notify::new());
        // With checkpoints by time, the task also wakes on its own to write a checkpoint
        // that falls due while no entry arrives.
        let tick = checkpoints
            .as_ref()
            .and_then(|c| c.schedule.every)
            .map(|every| (every / 4).max(Duration::from_millis(10)));
        let writer = Arc::new(DeviceWriter {
            name,
            prefix,
            write_timeout,
            on_failure,
            queue: Mutex::new(Vec::new()),
            spare: Mutex::new(Vec::new()),
            state: tokio::sync::Mutex::new(WriterState {
                sink,
                last_hash,
                checkpoints,
                buffer: Vec::with_capacity(64 * 1024),
                dirty: false,
            }),
            kick: kick.clone(),
            healthy: AtomicBool::new(true),
        });
        let weak = Arc::downgrade(&writer);
        tokio::spawn(async move {
            loop {
                match tick {
                    Some(tick) => {
                        let _ = tokio::time::timeout(tick, kick.notified()).await;
                    }
                    None => kick.notified().await,
                }
                let Some(writer) = weak.upgrade() else { return };
                let mut state = writer.state.lock().await;
                writer.drain(&mut state).await;
                let due = state
                    .checkpoints
                    .as_ref()
                    .is_some_and(|c| c.is_due_by_time(tokio::time::Instant::now()));
                if due {
                    writer.checkpoint(&mut state).await;
                }
            }
        });
        writer
    }

    pub(crate) fn write_timeout(&self) -> Duration {
        self.write_timeout
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// An empty buffer to render a line into: one of the buffers of lines already written,
    /// so that a busy device does not allocate (and free) two kilobytes per entry.
    pub(crate) fn buffer(&self) -> Vec<u8> {
        lock(&self.spare)
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(LINE_CAPACITY))
    }

    /// Queues a line; the receiver says whether it reached the sink.
    pub(crate) fn enqueue(&self, line: Vec<u8>) -> oneshot::Receiver<bool> {
        let (done, receiver) = oneshot::channel();
        lock(&self.queue).push((line, done));
        receiver
    }

    /// Writes what is queued if no one else is writing; otherwise the current writer takes
    /// it (and checks the queue again after it lets go).
    pub(crate) async fn write_if_free(&self) {
        // If this future is dropped mid-write (its request went away), lines may be left in
        // the queue: the guard hands them to the background task.
        let mut guard = KickOnDrop {
            kick: &self.kick,
            armed: true,
        };
        loop {
            let Ok(mut state) = self.state.try_lock() else {
                break;
            };
            self.drain(&mut state).await;
            drop(state);
            // A line queued while the lock was held, by a request that found it busy.
            if lock(&self.queue).is_empty() {
                break;
            }
        }
        guard.armed = false;
    }

    /// Asks the background task to write whatever is still queued.
    pub(crate) fn kick(&self) {
        self.kick.notify_one();
    }

    /// Writes what is queued and, with checkpoints, a checkpoint that seals the old file;
    /// then reopens the sink (log rotation). Returns the last hash, which the new file's
    /// first line will chain to, and the checkpoint counters.
    pub(crate) async fn reopen(&self) -> Result<([u8; 32], Option<Progress>), String> {
        let mut state = self.state.lock().await;
        self.drain(&mut state).await;
        if state
            .checkpoints
            .as_ref()
            .is_some_and(Checkpoints::is_pending)
        {
            self.checkpoint(&mut state).await;
        }
        state.dirty = false;
        match state.sink.reopen().await {
            Ok(()) => Ok((
                state.last_hash,
                state.checkpoints.as_ref().map(|c| c.progress),
            )),
            Err(e) => {
                let message = format!("reopen failed: {}", describe_io(&e));
                (self.on_failure)(&self.name, &message);
                Err(message)
            }
        }
    }

    /// Takes batches off the queue until it is empty. The chain advances only for batches
    /// the sink accepted.
    async fn drain(&self, state: &mut WriterState) {
        if state.dirty {
            state.sink.reset().await;
            state.dirty = false;
        }
        loop {
            let batch: Vec<Queued> = {
                let mut queue = lock(&self.queue);
                if queue.is_empty() {
                    return;
                }
                let take = queue.len().min(MAX_BATCH);
                queue.drain(..take).collect()
            };
            state.buffer.clear();
            let snapshot = state.checkpoints.as_ref().map(Checkpoints::snapshot);
            let mut last = state.last_hash;
            for (line, _) in &batch {
                last = chain::frame(&mut state.buffer, &self.prefix, &last, line);
                if let Some(checkpoints) = &mut state.checkpoints {
                    if checkpoints.count_entry() {
                        let body = checkpoints.next_line(&self.name, &last);
                        last = chain::frame(&mut state.buffer, &self.prefix, &last, &body);
                    }
                }
            }
            if let Some(checkpoints) = &mut state.checkpoints {
                if checkpoints.is_due_by_time(tokio::time::Instant::now()) {
                    let body = checkpoints.next_line(&self.name, &last);
                    last = chain::frame(&mut state.buffer, &self.prefix, &last, &body);
                }
            }
            let written = self.write_buffer(state, last).await;
            if !written {
                if let (Some(checkpoints), Some(snapshot)) = (&mut state.checkpoints, snapshot) {
                    checkpoints.restore(snapshot);
                }
            }
            let mut lines = Vec::with_capacity(batch.len());
            for (line, done) in batch {
                let _ = done.send(written);
                lines.push(line);
            }
            self.recycle(lines);
        }
    }

    /// Keeps the buffers of written lines for the next entries (a bounded number, and none
    /// that an unusually large entry grew).
    fn recycle(&self, lines: Vec<Vec<u8>>) {
        let mut spare = lock(&self.spare);
        for mut line in lines {
            if spare.len() >= MAX_SPARE {
                break;
            }
            if line.capacity() <= 4 * LINE_CAPACITY {
                line.clear();
                spare.push(line);
            }
        }
    }
}

impl DeviceWriter {
    /// Writes a checkpoint if entries are waiting for one.
    pub(crate) async fn checkpoint_pending(&self) {
        let mut state = self.state.lock().await;
        if state
            .checkpoints
            .as_ref()
            .is_some_and(Checkpoints::is_pending)
        {
            self.checkpoint(&mut state).await;
        }
    }

    /// Writes a checkpoint of what the device has written so far.
    async fn checkpoint(&self, state: &mut WriterState) {
        let Some(checkpoints) = &mut state.checkpoints else {
            return;
        };
        if state.dirty {
            state.sink.reset().await;
            state.dirty = false;
        }
        let snapshot = checkpoints.snapshot();
        let body = checkpoints.next_line(&self.name, &state.last_hash);
        state.buffer.clear();
        let last = chain::frame(&mut state.buffer, &self.prefix, &state.last_hash, &body);
        if !self.write_buffer(state, last).await {
            if let Some(checkpoints) = &mut state.checkpoints {
                checkpoints.restore(snapshot);
            }
        }
    }

    /// Writes the framed buffer; on success the chain moves on to `last`.
    async fn write_buffer(&self, state: &mut WriterState, last: [u8; 32]) -> bool {
        state.dirty = true;
        let written =
            match tokio::time::timeout(self.write_timeout, state.sink.write(&state.buffer)).await {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    (self.on_failure)(&self.name, &describe_io(&e));
                    false
                }
                Err(_) => {
                    (self.on_failure)(&self.name, "write timed out");
                    false
                }
            };
        state.dirty = false;
        self.healthy.store(written, Ordering::Relaxed);
        if written {
            state.last_hash = last;
        } else {
            state.sink.reset().await;
        }
        written
    }

    /// The device's checkpoint key and counters, when it writes checkpoints.
    pub(crate) async fn checkpoint_status(&self) -> Option<CheckpointStatus> {
        let state = self.state.lock().await;
        let checkpoints = state.checkpoints.as_ref()?;
        Some(CheckpointStatus {
            public_key: checkpoints.signer.public_key(),
            schedule: checkpoints.schedule,
            progress: checkpoints.progress,
            last: checkpoints.last.clone(),
        })
    }
}

/// What `sys/audit-checkpoint/<path>` shows.
pub(crate) struct CheckpointStatus {
    pub(crate) public_key: [u8; 32],
    pub(crate) schedule: super::checkpoint::Schedule,
    pub(crate) progress: Progress,
    pub(crate) last: Option<super::checkpoint::Written>,
}

impl Drop for DeviceWriter {
    fn drop(&mut self) {
        // Wakes the background task so that it sees the writer is gone and ends.
        self.kick.notify_one();
    }
}

struct KickOnDrop<'a> {
    kick: &'a Notify,
    armed: bool,
}

impl Drop for KickOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.kick.notify_one();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_with_execute_or_special_bits_are_refused() {
        assert_eq!(parse_mode(None), Ok(0o600));
        assert_eq!(parse_mode(Some("0640")), Ok(0o640));
        assert!(parse_mode(Some("0755")).is_err());
        assert!(parse_mode(Some("0700")).is_err());
        assert!(parse_mode(Some("4600")).is_err());
        assert!(parse_mode(Some("rw")).is_err());
    }

    #[test]
    fn system_directories_and_relative_paths_are_refused() {
        for path in [
            "/etc/ward-audit.log",
            "/usr/lib/ward/plugins/x",
            "/proc/self/fd/1",
            "relative.log",
            "/",
        ] {
            assert!(checked_path(Path::new(path)).is_err(), "{path}");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(checked_path(&dir.path().join("audit.log")).is_ok());
        assert!(checked_path(&dir.path().join("missing/audit.log")).is_err());
    }

    #[test]
    fn the_last_checkpoint_is_found_across_blocks_and_entries_after_it_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let mut prev = chain::genesis_hash();
        let mut content = Vec::new();
        let padding = "x".repeat(500);
        let checkpoint = br#"{"type":"checkpoint","n":1}"#;
        prev = chain::frame(&mut content, b"", &prev, checkpoint);
        for i in 0..3000 {
            let entry = format!(r#"{{"time":"t","n":{i},"pad":"{padding}"}}"#);
            prev = chain::frame(&mut content, b"", &prev, entry.as_bytes());
        }
        std::fs::write(&path, &content).expect("write");
        let tail = checkpoint_tail(&path, TAIL_SCAN_LIMIT)
            .expect("read")
            .expect("found");
        assert_eq!(tail.entries_after, 3000);
        let found = tail.last.expect("a checkpoint");
        assert!(found.starts_with(b"{\"prev_hash\":\""));
        assert!(found.ends_with(br#","type":"checkpoint","n":1}"#));
        assert_eq!(
            checkpoint_tail(&path, 1024).expect("read"),
            None,
            "beyond the limit"
        );

        let mut plain = Vec::new();
        let mut prev = chain::genesis_hash();
        for i in 0..3 {
            prev = chain::frame(&mut plain, b"", &prev, format!(r#"{{"n":{i}}}"#).as_bytes());
        }
        std::fs::write(&path, &plain).expect("write");
        let tail = checkpoint_tail(&path, TAIL_SCAN_LIMIT).expect("read");
        assert_eq!(
            tail,
            Some(CheckpointTail {
                last: None,
                entries_after: 3
            })
        );
    }

    #[test]
    fn the_last_line_is_found_across_blocks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let long = "x".repeat(150_000);
        std::fs::write(&path, format!("first\n{long}\n\n")).expect("write");
        assert_eq!(last_line(&path).expect("read"), Some(long.into_bytes()));
        std::fs::write(&path, "only").expect("write");
        assert_eq!(last_line(&path).expect("read"), Some(b"only".to_vec()));
        std::fs::write(&path, "").expect("write");
        assert_eq!(last_line(&path).expect("read"), None);
    }
}
