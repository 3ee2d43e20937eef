//! Crash safety of the SQLite backend: an acknowledged write survives SIGKILL.
//!
//! The parent test re-runs this test binary as a child process (`crash_child`, which does
//! nothing unless `WARD_STORAGE_CRASH_CHILD_DIR` is set). The child writes as fast as it can
//! from 16 tasks and prints each key only after its write is acknowledged; the parent kills
//! it at a random moment, reopens the store and checks that every printed key is there with
//! its exact value, that no value anywhere is torn, and that no transaction is half applied.
//! All cycles share one store, so recovery also runs on top of earlier recoveries.
//! `WARD_CRASH_CYCLES` sets the number of kill cycles (default 20).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ward_storage::sqlite::Sqlite;
use ward_storage::{Physical, TxOp};

const CHILD_DIR_VAR: &str = "WARD_STORAGE_CRASH_CHILD_DIR";
const CHILD_CYCLE_VAR: &str = "WARD_STORAGE_CRASH_CHILD_CYCLE";
const CYCLES_VAR: &str = "WARD_CRASH_CYCLES";
const N_WRITERS: usize = 16;
/// The child gives up on its own after this long, in case the parent died without killing it.
const CHILD_LIFETIME: Duration = Duration::from_secs(30);

/// The value stored under `key`: a length from 1 byte to 12 KiB (several pages, so a torn
/// write would show) and content that depends on every byte of the key.
fn value_for(key: &str) -> Vec<u8> {
    let mut state = key.bytes().fold(0xCBF2_9CE4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01B3)
    });
    let len = 1 + (state % 12_288) as usize;
    let mut value = Vec::with_capacity(len + 8);
    while value.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        value.extend_from_slice(&state.to_le_bytes());
    }
    value.truncate(len);
    value
}

/// Not a real test: the child process of `sigkill_loses_no_acknowledged_write`.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_VAR) else {
        return;
    };
    let cycle = std::env::var(CHILD_CYCLE_VAR).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store: Arc<dyn Physical> =
            Arc::new(Sqlite::open(Path::new(&dir).join("ward.db")).unwrap());
        let deadline = Instant::now() + CHILD_LIFETIME;
        let writers: Vec<_> = (0..N_WRITERS)
            .map(|writer| {
                let store = Arc::clone(&store);
                let cycle = cycle.clone();
                tokio::spawn(async move {
                    let mut i = 0u64;
                    while Instant::now() < deadline {
                        let key = format!("c{cycle}/w{writer:02}/{i:08}");
                        // Every fourth write is a two-key transaction, which must never be
                        // found half applied.
                        let line = if i % 4 == 3 {
                            let pair = format!("{key}.pair");
                            let ops = vec![
                                TxOp::Put {
                                    key: key.clone(),
                                    value: value_for(&key),
                                },
                                TxOp::Put {
                                    key: pair.clone(),
                                    value: value_for(&pair),
                                },
                            ];
                            store.transaction(ops).await.unwrap();
                            format!("ACK {key} {pair} END\n")
                        } else {
                            store.put(&key, value_for(&key)).await.unwrap();
                            format!("ACK {key} END\n")
                        };
                        let mut stdout = std::io::stdout().lock();
                        if stdout
                            .write_all(line.as_bytes())
                            .and_then(|()| stdout.flush())
                            .is_err()
                        {
                            // The parent is gone.
                            std::process::exit(1);
                        }
                        i += 1;
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
    });
}

/// Kills the child if the test fails before it does.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sigkill_loses_no_acknowledged_write() {
    let n_cycles: usize = std::env::var(CYCLES_VAR)
        .ok()
        .map(|n| n.parse().unwrap())
        .unwrap_or(20);
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("kill delays from seed {seed}");
    let mut random = seed;
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut n_acknowledged_total = 0;
    for cycle in 0..n_cycles {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        let delay = Duration::from_millis(50 + random % 251);
        let acknowledged = run_and_kill(dir.path(), cycle, delay);
        n_acknowledged_total += acknowledged.len();
        runtime.block_on(check_store(dir.path(), cycle, &acknowledged));
    }
    println!("{n_cycles} cycles, {n_acknowledged_total} acknowledged writes checked");
    assert!(
        n_acknowledged_total > 0,
        "the child never acknowledged a write"
    );
}

/// One cycle: start the child, wait for its first acknowledgement, let it run for `delay`,
/// SIGKILL it, and return every write it acknowledged (each a list of keys).
fn run_and_kill(dir: &Path, cycle: usize, delay: Duration) -> Vec<Vec<String>> {
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_VAR, dir)
        .env(CHILD_CYCLE_VAR, cycle.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    let (first_tx, first_rx) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        let mut acknowledged = Vec::new();
        let mut stdout = BufReader::new(stdout);
        let mut line = Vec::new();
        let mut first = Some(first_tx);
        loop {
            line.clear();
            if stdout.read_until(b'\n', &mut line).unwrap() == 0 {
                break;
            }
            // A line cut short by the kill has no newline: its write was acknowledged, but
            // we cannot tell which keys it named, so it is not checked.
            let Some(text) = line.strip_suffix(b"\n") else {
                break;
            };
            let text = String::from_utf8(text.to_vec()).unwrap();
            let Some(body) = text
                .strip_prefix("ACK ")
                .and_then(|t| t.strip_suffix(" END"))
            else {
                continue; // The test harness's own output.
            };
            acknowledged.push(body.split(' ').map(String::from).collect::<Vec<_>>());
            if let Some(first) = first.take() {
                let _ = first.send(());
            }
        }
        acknowledged
    });
    // Count the delay from the first acknowledgement, so process start-up does not eat it.
    // No acknowledgement within the timeout also ends the wait (the checks then catch it).
    let _ = first_rx.recv_timeout(Duration::from_secs(10));
    std::thread::sleep(delay);
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    reader.join().unwrap()
}

async fn check_store(dir: &Path, cycle: usize, acknowledged: &[Vec<String>]) {
    let store = Sqlite::open(dir.join("ward.db")).unwrap();
    // Every key of this cycle, acknowledged or not, holds its exact value.
    let prefix = format!("c{cycle}/");
    let mut present = BTreeSet::new();
    let mut after = String::new();
    loop {
        let keys = store.scan(&prefix, &after, 1000).await.unwrap();
        let Some(last) = keys.last() else { break };
        after = last.clone();
        present.extend(keys);
    }
    for key in &present {
        let value = store.get(key).await.unwrap();
        assert!(
            value == Some(value_for(key)),
            "cycle {cycle}: {key} is torn"
        );
    }
    // Every acknowledged key is there.
    for key in acknowledged.iter().flatten() {
        assert!(
            present.contains(key),
            "cycle {cycle}: acknowledged {key} is missing"
        );
    }
    // No transaction is half applied: keys numbered 3 mod 4 are the first half of one.
    for key in &present {
        let pair = format!("{key}.pair");
        let opens_a_transaction = key
            .rsplit('/')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n % 4 == 3);
        if let Some(first) = key.strip_suffix(".pair") {
            assert!(
                present.contains(first),
                "cycle {cycle}: half of {key}'s transaction"
            );
        } else if opens_a_transaction {
            assert!(
                present.contains(&pair),
                "cycle {cycle}: half of {key}'s transaction"
            );
        }
    }
}
