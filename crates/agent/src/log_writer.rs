//! The agent's log writer: stderr, with INFO and below buffered for at most
//! [`FLUSH_INTERVAL`], so the egress proxy's line per call costs no `write(2)` of its own.
//!
//! WARN and ERROR lines flush whatever is buffered and are written at once (order is kept);
//! the buffer is also written as soon as it holds [`MAX_BUFFERED`] bytes, by a flusher thread
//! that sleeps while there is nothing to write, and by [`flush`] (called before the agent
//! exits). Like nginx's `access_log ... buffer=... flush=...`.
//!
//! The egress proxy's line per call is also formatted here, by hand ([`egress_call`]), when
//! the agent's own subscriber is the global one: the same line `tracing-subscriber` would
//! write, at a fraction of the cost (no field visitor, no `Debug` formatting, the date
//! formatted once per second). It is the one log line on the proxy's hot path.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

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

/// Set once the agent's subscriber (writing through this module) is the global one.
static DIRECT_EGRESS_LINES: AtomicBool = AtomicBool::new(false);

/// Records that the agent's own subscriber was installed, so [`egress_call`] may write its
/// lines straight into the buffer.
pub fn enable_direct_egress_lines() {
    DIRECT_EGRESS_LINES.store(true, Ordering::Relaxed);
}

/// Logs one egress call at INFO (target `ward_agent::egress`):
/// `<time>  INFO ward_agent::egress: egress call route="r" method=GET path=/r/x status=200 duration_ms=0.125`.
pub fn egress_call(route: &str, method: &http::Method, path: &str, status: u16, elapsed: Duration) {
    if !tracing::enabled!(target: "ward_agent::egress", Level::INFO) {
        return;
    }
    if !DIRECT_EGRESS_LINES.load(Ordering::Relaxed) {
        tracing::info!(
            target: "ward_agent::egress",
            route,
            method = %method,
            path,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "egress call"
        );
        return;
    }
    thread_local! {
        static LINE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    LINE.with(|line| {
        let mut line = line.borrow_mut();
        let (cached_second, text) = &mut *line;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let second = now.as_secs();
        if *cached_second != second || text.len() < DATE_PREFIX_LEN {
            text.clear();
            push_date_prefix(text, second);
            *cached_second = second;
        }
        text.truncate(DATE_PREFIX_LEN);
        push_egress_fields(
            text,
            now.subsec_micros(),
            route,
            method,
            path,
            status,
            elapsed,
        );
        append_buffered(text.as_bytes());
    });
}

/// Appends the rest of an egress line after the date prefix.
fn push_egress_fields(
    text: &mut String,
    subsec_micros: u32,
    route: &str,
    method: &http::Method,
    path: &str,
    status: u16,
    elapsed: Duration,
) {
    let micros = elapsed.as_micros();
    let _ = writeln!(
        text,
        "{subsec_micros:06}Z  INFO ward_agent::egress: egress call route=\"{route}\" method={method} path={path} status={status} duration_ms={}.{:03}",
        micros / 1000,
        micros % 1000,
    );
}

/// `2026-11-28T16:37:21.`
const DATE_PREFIX_LEN: usize = 20;

/// Appends the UTC date and time of `unix_seconds` as RFC 3339 up to the decimal point.
fn push_date_prefix(text: &mut String, unix_seconds: u64) {
    let days = i64::try_from(unix_seconds / 86_400).unwrap_or(0);
    let of_day = unix_seconds % 86_400;
    // Days since 1970-01-01 to a civil date (proleptic Gregorian; H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    let _ = write!(
        text,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    );
}

/// Adds a line to the buffer; writes it out when full, or wakes the flusher.
fn append_buffered(bytes: &[u8]) {
    let shared = shared();
    let mut buffer = lock(shared);
    buffer.extend_from_slice(bytes);
    if buffer.len() >= MAX_BUFFERED {
        write_out(&mut buffer);
    } else if shared.flusher_waiting.load(Ordering::SeqCst) {
        shared.flusher_waiting.store(false, Ordering::SeqCst);
        drop(buffer);
        shared.wake.notify_one();
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
        if !self.buffered {
            let mut buffer = lock(shared());
            write_out(&mut buffer);
            return std::io::stderr().lock().write_all(bytes);
        }
        append_buffered(bytes);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc3339_utc() {
        let cases = [
            (0, "1970-01-01T00:00:00."),
            (951_782_400, "2000-02-29T00:00:00."),
            (1_795_883_841, "2026-11-28T16:37:21."),
            (4_102_444_799, "2099-12-31T23:59:59."),
        ];
        for (seconds, expected) in cases {
            let mut text = String::new();
            push_date_prefix(&mut text, seconds);
            assert_eq!(text, expected);
            assert_eq!(text.len(), DATE_PREFIX_LEN);
        }
    }

    #[test]
    fn egress_lines_read_like_tracing_subscriber_lines() {
        let mut text = String::from("2026-11-28T16:37:21.");
        push_egress_fields(
            &mut text,
            126_539,
            "openai",
            &http::Method::POST,
            "/openai/v1/chat/completions",
            200,
            Duration::from_micros(1_950),
        );
        assert_eq!(
            text,
            "2026-11-28T16:37:21.126539Z  INFO ward_agent::egress: egress call route=\"openai\" method=POST path=/openai/v1/chat/completions status=200 duration_ms=1.950\n"
        );
    }
}
