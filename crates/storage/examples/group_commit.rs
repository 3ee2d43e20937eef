//! Group-commit benchmark for the SQLite backend.
//!
//! ```text
//! cargo run --release -p ward-storage --example group_commit -- <dir>
//! ```
//!
//! Measures, each for 5 s after a 0.5 s warm-up (`WARD_BENCH_SECONDS` changes the 5):
//! (a) one writer, each durable `put` awaited before the next, so one commit per write;
//! (b) 32 concurrent writers through the same store, sharing commits;
//! (c) raw rusqlite, one row per transaction with `synchronous=FULL`: the fsync baseline;
//! (d) 32 concurrent point reads through the reader pool, for scale.
//! The target is (b) ≥ 5 × (a). Data files are created in `<dir>` (which must be on the disk
//! being measured, not tmpfs) and removed at the end.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ward_storage::sqlite::Sqlite;
use ward_storage::Physical;

const WARM_UP: Duration = Duration::from_millis(500);
const VALUE_SIZE: usize = 128;
const N_CONCURRENT: usize = 32;

struct Measurement {
    name: &'static str,
    ops_per_second: f64,
    /// Commits (fsyncs) per second, where known.
    commits_per_second: Option<f64>,
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .ok_or("usage: group_commit <dir>")?;
    std::fs::create_dir_all(&dir)?;
    let seconds: u64 = match std::env::var("WARD_BENCH_SECONDS") {
        Ok(text) => text.parse()?,
        Err(_) => 5,
    };
    let duration = Duration::from_secs(seconds);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    let store_path = dir.join("group_commit.db");
    let raw_path = dir.join("raw_baseline.db");
    remove_database(&store_path);
    remove_database(&raw_path);

    let results = runtime.block_on(async {
        let sqlite = Arc::new(Sqlite::open(&store_path)?);
        let store: Arc<dyn Physical> = sqlite.clone();
        let single = measure_writes(
            &store,
            &sqlite,
            "(a) 1 writer, 1 put per commit",
            1,
            duration,
        )
        .await;
        let concurrent = measure_writes(
            &store,
            &sqlite,
            "(b) 32 concurrent writers",
            N_CONCURRENT,
            duration,
        )
        .await;
        let reads = measure_reads(&store, N_CONCURRENT, duration).await;
        Ok::<_, Box<dyn Error>>([single, concurrent, reads])
    })?;
    let [single, concurrent, reads] = results;
    let raw = measure_raw(&raw_path, duration)?;

    println!();
    println!(
        "{:<44} {:>12} {:>12} {:>12}",
        "", "ops/s", "commits/s", "ops/commit"
    );
    for measurement in [&single, &concurrent, &raw, &reads] {
        let (commits, per_commit) = match measurement.commits_per_second {
            Some(commits) if commits > 0.0 => (
                format!("{commits:.0}"),
                format!("{:.1}", measurement.ops_per_second / commits),
            ),
            _ => ("-".to_string(), "-".to_string()),
        };
        println!(
            "{:<44} {:>12.0} {:>12} {:>12}",
            measurement.name, measurement.ops_per_second, commits, per_commit
        );
    }
    let ratio = concurrent.ops_per_second / single.ops_per_second.max(f64::MIN_POSITIVE);
    println!();
    println!(
        "group commit: (b)/(a) = {ratio:.1}x (target >= 5x); (a)/(c) = {:.2}",
        single.ops_per_second / raw.ops_per_second.max(f64::MIN_POSITIVE)
    );

    remove_database(&store_path);
    remove_database(&raw_path);
    Ok(())
}

/// Runs `n_writers` tasks that each put distinct keys back to back, awaiting each put.
async fn measure_writes(
    store: &Arc<dyn Physical>,
    sqlite: &Sqlite,
    name: &'static str,
    n_writers: usize,
    duration: Duration,
) -> Measurement {
    let n_ops = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..n_writers)
        .map(|writer| {
            let store = Arc::clone(store);
            let n_ops = Arc::clone(&n_ops);
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!(
                        "bench/{name_hash}/{writer:02}/{i:010}",
                        name_hash = n_writers
                    );
                    if let Err(e) = store.put(&key, vec![0x5A; VALUE_SIZE]).await {
                        eprintln!("put failed: {e}");
                        return;
                    }
                    n_ops.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(WARM_UP).await;
    let (ops_before, commits_before, start) = (
        n_ops.load(Ordering::Relaxed),
        sqlite.stats().group_commits,
        Instant::now(),
    );
    tokio::time::sleep(duration).await;
    let (ops_after, commits_after, elapsed) = (
        n_ops.load(Ordering::Relaxed),
        sqlite.stats().group_commits,
        start.elapsed(),
    );
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let seconds = elapsed.as_secs_f64();
    Measurement {
        name,
        ops_per_second: (ops_after - ops_before) as f64 / seconds,
        commits_per_second: Some((commits_after - commits_before) as f64 / seconds),
    }
}

/// Runs `n_readers` tasks that each `get` existing keys back to back.
async fn measure_reads(
    store: &Arc<dyn Physical>,
    n_readers: usize,
    duration: Duration,
) -> Measurement {
    let n_ops = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..n_readers)
        .map(|reader| {
            let store = Arc::clone(store);
            let n_ops = Arc::clone(&n_ops);
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Keys the single writer of (a) wrote; the first thousand always exist.
                    let key = format!("bench/1/00/{:010}", (i * 7 + reader as u64) % 1000);
                    match store.get(&key).await {
                        Ok(_) => {}
                        Err(e) => {
                            eprintln!("get failed: {e}");
                            return;
                        }
                    }
                    n_ops.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(WARM_UP).await;
    let (before, start) = (n_ops.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(duration).await;
    let (after, elapsed) = (n_ops.load(Ordering::Relaxed), start.elapsed());
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    Measurement {
        name: "(d) 32 concurrent point reads",
        ops_per_second: (after - before) as f64 / elapsed.as_secs_f64(),
        commits_per_second: None,
    }
}

/// One row per transaction straight through rusqlite, WAL and `synchronous=FULL`.
fn measure_raw(path: &Path, duration: Duration) -> Result<Measurement, Box<dyn Error>> {
    let connection = rusqlite::Connection::open(path)?;
    connection.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    connection.execute_batch(
        "PRAGMA synchronous = FULL;
         CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;",
    )?;
    let mut statement =
        connection.prepare("INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)")?;
    let value = vec![0x5Au8; VALUE_SIZE];
    let mut i = 0u64;
    let mut insert = |i: &mut u64| -> Result<(), rusqlite::Error> {
        // Autocommit: each statement is its own transaction, so one fsync each.
        statement.execute((format!("raw/{i:010}"), &value))?;
        *i += 1;
        Ok(())
    };
    let warm_up_end = Instant::now() + WARM_UP;
    while Instant::now() < warm_up_end {
        insert(&mut i)?;
    }
    let (before, start) = (i, Instant::now());
    while start.elapsed() < duration {
        insert(&mut i)?;
    }
    let ops_per_second = (i - before) as f64 / start.elapsed().as_secs_f64();
    Ok(Measurement {
        name: "(c) raw rusqlite, 1 row per transaction",
        ops_per_second,
        commits_per_second: Some(ops_per_second),
    })
}

fn remove_database(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
}
