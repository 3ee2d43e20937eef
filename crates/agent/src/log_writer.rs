//! The agent's log writer: stderr, with INFO and below buffered for at most
//! [`FLUSH_INTERVAL`], so the egress proxy's line per call costs no `write(2)` of its own.
//!
//! WARN and ERROR lines flush whatever is buffered and are written at once (order is kept);
//! the buffer is also written as soon as it holds [`MAX_BUFFERED`] bytes, by a flusher thread
//! that sleeps while there is nothing to write, and by [`flush`] (called before the agent
//! exits). Like nginx's `access_log ... buffer=... flush=...`.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// How long an INFO line may wait in the buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Written at once past this many buffered bytes.
pub const MAX_BUFFERED: usize = 32 * 1024;

struct Shared {
    buffer: Mutex<Vec<u8>>,
    /// Set while the flusher thread waits for a first line.
    flusher_waiting: AtomicBool,
    wake: Condvar,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("ward-log-flush".into())
            .spawn(flusher);
        if spawned.is_err() {
            // No flusher: the size limit and `flush` still write everything out.
            eprintln!("ward agent: cannot start the log flusher thread");
        }
        Shared {
            buffer: Mutex::new(Vec::with_capacity(MAX_BUFFERED)),
            flusher_waiting: AtomicBool::new(false),
            wake: Condvar::new(),
        }
    })
}

fn lock(shared: &Shared) -> MutexGuard<'_, Vec<u8>> {
    shared
        .buffer
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write_out(buffer: &mut Vec<u8>) {
    if !buffer.is_empty() {
        let _ = std::io::stderr().lock().write_all(buffer);
        buffer.clear();
    }
}

fn flusher() {
    let shared = shared();
    loop {
        {
            let mut buffer = lock(shared);
            while buffer.is_empty() {
                shared.flusher_waiting.store(true, Ordering::SeqCst);
                buffer = shared
                    .wake
                    .wait(buffer)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            shared.flusher_waiting.store(false, Ordering::SeqCst);
        }
        std::thread::sleep(FLUSH_INTERVAL);
        write_out(&mut lock(shared));
    }
}

/// Writes out whatever is buffered.
pub fn flush() {
    write_out(&mut lock(shared()));
}

/// The `MakeWriter` for the agent's `tracing` subscriber.
#[derive(Debug, Clone, Copy, Default)]
pub struct AgentLogWriter;

/// One log line's writer (tracing-subscriber writes a formatted line with one `write_all`).
#[derive(Debug)]
pub struct LineWriter {
    buffered: bool,
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.write_all(bytes)?;
        Ok(bytes.len())
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let shared = shared();
        let mut buffer = lock(shared);
        if !self.buffered {
            write_out(&mut buffer);
            return std::io::stderr().lock().write_all(bytes);
        }
        buffer.extend_from_slice(bytes);
        if buffer.len() >= MAX_BUFFERED {
            write_out(&mut buffer);
        } else if shared.flusher_waiting.load(Ordering::SeqCst) {
            shared.flusher_waiting.store(false, Ordering::SeqCst);
            drop(buffer);
            shared.wake.notify_one();
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for AgentLogWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter { buffered: false }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter {
        LineWriter {
            buffered: *meta.level() >= Level::INFO,
        }
    }
}
