//! The durability baseline of bench/run: one writer committing one row per transaction to
//! SQLite with `synchronous=FULL` (one fsync per write), for a fixed number of seconds.
//! Ward's durable KV write rate at 32 writers is reported as a ratio to this rate.
//!
//! Usage: `fsync-writer DIR SECONDS`; prints `ops_per_second N`.

use std::time::{Duration, Instant};

fn main() -> Result<(), rusqlite::Error> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| ".".into());
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let path = std::path::Path::new(&dir).join("fsync-baseline.db");
    let _ = std::fs::remove_file(&path);
    let conn = rusqlite::Connection::open(&path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute(
        "CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID",
        [],
    )?;
    let value = vec![7u8; 128];
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut n = 0u64;
    while Instant::now() < deadline {
        conn.execute(
            "INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)",
            rusqlite::params![format!("k{n}"), value],
        )?;
        n += 1;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    println!("ops_per_second {rate:.0}");
    Ok(())
}
