//! Test-only: keeps the log output of servers that tests run inside their own process (a
//! `Core` or a `Handler` built by the test), so that `scripts/scan-canaries` reads it with every
//! other suite's logs.
//!
//! `scripts/test` sets `WARD_TEST_LOG_DIR`; [`init`] then sends every tracing event of the test
//! process, at debug level (the most the server says), to `inproc-<suite>.log` in that folder.
//! nextest runs each test in its own process: they all append whole lines to the suite's one
//! file. Without the variable (a plain `cargo test`), nothing is installed.

use std::fs::OpenOptions;
use std::sync::{Mutex, OnceLock};

/// Sends this process's tracing events to the suite's log file; once per process, whatever
/// the number of calls.
pub fn init(suite: &str) {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| install(suite));
}

fn install(suite: &str) {
    let Some(directory) = std::env::var_os("WARD_TEST_LOG_DIR") else {
        return;
    };
    let directory = std::path::PathBuf::from(directory);
    if let Err(error) = std::fs::create_dir_all(&directory) {
        panic!(
            "cannot create WARD_TEST_LOG_DIR {}: {error}",
            directory.display()
        );
    }
    let path = directory.join(format!("inproc-{suite}.log"));
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|error| panic!("cannot open {}: {error}", path.display()));
    // The fmt layer formats an event whole and writes it with one call, so lines of
    // concurrent test processes do not interleave within a line (O_APPEND).
    let installed = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .try_init();
    // Another subscriber already installed by the test itself keeps its place.
    drop(installed);
}
