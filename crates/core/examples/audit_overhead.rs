//! Core-level micro benchmark of audit overhead: KV v2 reads through `handle_request` with
//! no audit device and with one file device, side by side, and `verify` throughput.
//!
//! `cargo run --release -p ward-core --example audit_overhead [seconds] [concurrency]`
//!
//! This measures the core alone (no HTTP), where a request is a few microseconds, so the
//! ratio is a lower bound of what the HTTP benchmark sees.

use std::io::BufReader;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use ward_core::request::{Request, Verb};
use ward_core::{Core, CoreConfig};

async fn core_with_secret() -> (Arc<Core>, String) {
    let core = Core::new(
        CoreConfig::default(),
        Arc::new(ward_storage::InMemory::new()),
        ward_engines::registry(),
    );
    let root = core
        .dev_init(None)
        .await
        .map(|i| i.root_token.to_string())
        .unwrap_or_default();
    let write = Request::new(Verb::Write, "secret/data/bench")
        .with_token(&root)
        .with_data(json!({"data": {"user": "app", "password": "p4ssw0rd-bench"}}));
    if let Err(e) = core.handle_request(write).await {
        eprintln!("setup failed: {e}");
    }
    (core, root)
}

/// The device's `file_path`: `AUDIT_PATH` (e.g. `discard`) or a file in a temporary directory.
fn audit_path(default: &std::path::Path) -> String {
    std::env::var("AUDIT_PATH")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| default.to_string_lossy().to_string())
}

/// This process's CPU time (user + system) in seconds, from `/proc/self/stat`.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// Reads per second with `concurrency` tasks for `duration`, and CPU microseconds per read.
async fn measured(
    core: &Arc<Core>,
    root: &str,
    concurrency: usize,
    duration: Duration,
) -> (f64, f64) {
    let cpu = cpu_seconds();
    let rate = throughput(core, root, concurrency, duration).await;
    let used = cpu_seconds() - cpu;
    (rate, used * 1e6 / (rate * duration.as_secs_f64()).max(1.0))
}

/// Reads per second with `concurrency` tasks for `duration`.
async fn throughput(core: &Arc<Core>, root: &str, concurrency: usize, duration: Duration) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (core, root, done) = (core.clone(), root.to_string(), done.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let request = Request::new(Verb::Read, "secret/data/bench").with_token(&root);
                if core.handle_request(request).await.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    done.load(Ordering::Relaxed) as f64 / duration.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    let concurrency: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(32);
    let duration = Duration::from_secs(seconds);
    let dir = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => return eprintln!("tempdir: {e}"),
    };
    let log = dir.path().join("audit.log");

    let (plain, plain_root) = core_with_secret().await;
    let (audited, audited_root) = core_with_secret().await;
    let enable = Request::new(Verb::Write, "sys/audit/file")
        .with_token(&audited_root)
        .with_data(json!({"type": "file", "options": {"file_path": audit_path(&log)}}));
    if let Err(e) = audited.handle_request(enable).await {
        return eprintln!("enable failed: {e}");
    }

    // Warm up both, then alternate rounds so that both see the same machine conditions.
    throughput(&plain, &plain_root, concurrency, Duration::from_millis(300)).await;
    throughput(
        &audited,
        &audited_root,
        concurrency,
        Duration::from_millis(300),
    )
    .await;
    for concurrency in [concurrency, 1] {
        let (mut without, mut with, mut cpu_without, mut cpu_with) = (0.0, 0.0, 0.0, 0.0);
        for _ in 0..3 {
            let (rate, cpu) = measured(&plain, &plain_root, concurrency, duration).await;
            without += rate / 3.0;
            cpu_without += cpu / 3.0;
            let (rate, cpu) = measured(&audited, &audited_root, concurrency, duration).await;
            with += rate / 3.0;
            cpu_with += cpu / 3.0;
        }
        println!(
            "kv read, concurrency {concurrency}: no audit {without:.0}/s ({cpu_without:.1} CPU-us each), one file device {with:.0}/s ({cpu_with:.1} CPU-us each); throughput ratio {:.3}, CPU ratio {:.3}",
            with / without,
            cpu_without / cpu_with
        );
    }

    // verify: the file just written, repeated up to ~256 MB.
    let size = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    println!("audit file: {:.1} MB", size as f64 / 1e6);
    let started = Instant::now();
    let mut bytes = 0u64;
    let mut passes = 0;
    while bytes < 256_000_000 && passes < 64 {
        let file = match std::fs::File::open(&log) {
            Ok(file) => file,
            Err(e) => return eprintln!("open: {e}"),
        };
        match ward_core::audit::verify(BufReader::with_capacity(1 << 20, file)) {
            Ok(report) if report.is_intact() => bytes += report.bytes,
            Ok(report) => return eprintln!("chain broken: {:?}", report.first_break),
            Err(e) => return eprintln!("read: {e}"),
        }
        passes += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "verify: {:.0} MB in {elapsed:.2}s = {:.0} MB/s (page cache)",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / elapsed
    );
}
