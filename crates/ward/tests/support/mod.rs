//! Support shared by the `ward` binary's integration tests: where a spawned `ward server`
//! keeps its output.
//!
//! `scripts/test` sets `WARD_TEST_LOG_DIR` and, once every suite has run, scans every file
//! there for canary values and tokens in clear (`scripts/scan-canaries`). Each server started
//! here writes its stderr (the tracing log) and its stdout (the start-up report) to a new
//! file `rust-<suite>-<pid>-<n>.log` in that folder. Without the variable the output is
//! dropped, as before.

use std::fs::File;
use std::io::Write;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

static N_SERVERS: AtomicUsize = AtomicUsize::new(0);

/// The log of one spawned server: `stderr()` for the child, `line()` for each stdout line.
#[derive(Clone, Default)]
pub(crate) struct ServerLog {
    file: Option<Arc<Mutex<File>>>,
}

impl ServerLog {
    /// A new log file for a server of `suite`, or a sink when `WARD_TEST_LOG_DIR` is unset.
    pub(crate) fn new(suite: &str) -> ServerLog {
        let Some(directory) = std::env::var_os("WARD_TEST_LOG_DIR") else {
            return ServerLog::default();
        };
        std::fs::create_dir_all(&directory).expect("create WARD_TEST_LOG_DIR");
        let n = N_SERVERS.fetch_add(1, Ordering::Relaxed);
        let path = std::path::Path::new(&directory)
            .join(format!("rust-{suite}-{}-{n}.log", std::process::id()));
        let file = File::create(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        ServerLog {
            file: Some(Arc::new(Mutex::new(file))),
        }
    }

    /// The child's stderr: the log file, or nothing.
    pub(crate) fn stderr(&self) -> Stdio {
        match &self.file {
            Some(file) => match file.lock() {
                Ok(file) => file
                    .try_clone()
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
                Err(_) => Stdio::null(),
            },
            None => Stdio::null(),
        }
    }

    /// Appends one line the server printed on stdout.
    pub(crate) fn line(&self, line: &str) {
        if let Some(file) = &self.file {
            if let Ok(mut file) = file.lock() {
                let _ = writeln!(file, "{line}");
            }
        }
    }
}
