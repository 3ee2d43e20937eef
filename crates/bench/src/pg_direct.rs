//! The PostgreSQL baseline of bench/run: the statements Ward's database engine runs to issue
//! a dynamic credential (`CREATE ROLE ... VALID UNTIL` and a `GRANT` of a role), run directly through a
//! pool of the same size as Ward's (`max_open_connections`, default 4) by 16 concurrent
//! clients. Ward's issuance rate is reported as a ratio to this rate. Roles are dropped after.
//!
//! Usage: `pg-direct CONNECTION_STRING SECONDS [POOL]`; prints `creds_per_second N`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

#[tokio::main]
async fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "host=127.0.0.1 user=postgres dbname=postgres".into());
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    let pool_size: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(4);
    let mut pool = Vec::new();
    for _ in 0..pool_size {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("connect: {e:?}"))?;
        tokio::spawn(connection);
        pool.push(Arc::new(Mutex::new(client)));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(AtomicUsize::new(0));
    let run = format!("{:x}", std::process::id());
    let mut tasks = Vec::new();
    for worker in 0..16usize {
        let client = pool[worker % pool_size].clone();
        let (stop, issued, run) = (stop.clone(), issued.clone(), run.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("v-bench-{run}-{worker}-{n}");
                let sql = format!(
                    "BEGIN; CREATE ROLE \"{name}\" WITH LOGIN PASSWORD 'A1a-benchmarkpassword' VALID UNTIL '2099-01-01 00:00:00+00'; GRANT pg_read_all_data TO \"{name}\"; COMMIT;"
                );
                let client = client.lock().await;
                if client.batch_execute(&sql).await.is_err() {
                    // Leave the connection usable for the others (and for the cleanup).
                    let _ = client.batch_execute("ROLLBACK").await;
                    return;
                }
                drop(client);
                issued.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let rate = issued.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    println!("creds_per_second {rate:.0}");
    // Clean up every role this run created.
    let client = pool[0].lock().await;
    let rows = client
        .query(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE $1",
            &[&format!("v-bench-{run}-%")],
        )
        .await
        .map_err(|e| format!("cleanup query: {e:?}"))?;
    for row in rows {
        let name: String = row.get(0);
        let _ = client
            .batch_execute(&format!("DROP ROLE IF EXISTS \"{name}\""))
            .await;
    }
    Ok(())
}
