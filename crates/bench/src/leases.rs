//! The lease-scale benchmark of bench/run, in process over SQLite (no HTTP in the way):
//!
//! - `leases populate DIR N`: a fresh SQLite store, initialised with one key share, with a
//!   test engine that issues leased secrets; issues N leases (TTL 30 days) through
//!   `handle_request` from 64 concurrent tasks, then exits.
//! - `leases restart DIR`: a new process over that store: unseal, then time until the first
//!   request is served (`ready_ms`), and the resident memory once ready (`rss_mib`).
//! - `leases expire DIR N`: issues N more leases with a 60 s TTL, moves the clock past their
//!   expiry, and times `expire_leases` until all N are revoked (`expire_ms`).
//!
//! Prints `key value` lines for bench/run to pick up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde_json::{json, Value};
use ward_core::engine::{
    Engine, EngineContext, EngineRequest, EngineResponse, LeaseInfo, MountInfo, SecretSpec,
};
use ward_core::request::{Request, Verb};
use ward_core::{Core, CoreConfig, Error};

/// Issues a leased secret on every read of `creds/<anything>`; counts revocations.
struct LeaseEngine {
    revoked: Arc<AtomicUsize>,
}

static REVOKED: std::sync::OnceLock<Arc<AtomicUsize>> = std::sync::OnceLock::new();

#[async_trait]
impl Engine for LeaseEngine {
    async fn handle(
        &self,
        _ctx: &EngineContext,
        request: EngineRequest,
    ) -> Result<EngineResponse, Error> {
        let ttl = request
            .data
            .get("ttl")
            .and_then(Value::as_str)
            .and_then(|t| t.parse().ok())
            .unwrap_or(30 * 86400);
        let mut data = serde_json::Map::new();
        data.insert("username".into(), json!("bench"));
        Ok(EngineResponse {
            data: Some(data),
            secret: Some(SecretSpec {
                ttl,
                max_ttl: 0,
                renewable: true,
                internal: json!({}),
            }),
            ..EngineResponse::default()
        })
    }

    async fn revoke(&self, _ctx: &EngineContext, _lease: &LeaseInfo) -> Result<(), Error> {
        self.revoked.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn factory(_: &MountInfo) -> Result<Arc<dyn Engine>, Error> {
    let revoked = REVOKED
        .get_or_init(|| Arc::new(AtomicUsize::new(0)))
        .clone();
    Ok(Arc::new(LeaseEngine { revoked }))
}

fn core(dir: &str) -> Result<Arc<Core>, String> {
    let physical =
        ward_storage::sqlite::Sqlite::open(format!("{dir}/ward.db")).map_err(|e| e.to_string())?;
    let mut registry = ward_engines::registry();
    registry.register("benchlease", factory);
    let config = CoreConfig {
        max_lease_ttl: 40 * 86400,
        ..CoreConfig::default()
    };
    Ok(Core::new(config, Arc::new(physical), registry))
}

async fn issue(core: &Arc<Core>, token: &str, n: usize, ttl: u64) -> Result<(), String> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let core = core.clone();
        let token = token.to_string();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let request = Request::new(Verb::Read, "bench/creds/agent")
                    .with_token(&token)
                    .with_data(json!({ "ttl": ttl.to_string() }));
                core.handle_request(request)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        }));
    }
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    Ok(())
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_string)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

async fn unseal(core: &Arc<Core>, dir: &str) -> Result<String, String> {
    let saved = std::fs::read_to_string(format!("{dir}/unseal")).map_err(|e| e.to_string())?;
    let (key, token) = saved.split_once('\n').ok_or("bad unseal file")?;
    let key = (0..key.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&key[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|e| e.to_string())?;
    core.unseal(key).await.map_err(|e| e.to_string())?;
    Ok(token.trim().to_string())
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, dir) = (
        args.first().map(String::as_str).unwrap_or(""),
        args.get(1).cloned().unwrap_or_default(),
    );
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(0);
    match command {
        "populate" => {
            let core = core(&dir)?;
            let init = core.init(1, 1).await.map_err(|e| e.to_string())?;
            let key: String = init.keys[0].iter().map(|b| format!("{b:02x}")).collect();
            std::fs::write(
                format!("{dir}/unseal"),
                format!("{key}\n{}\n", init.root_token.as_str()),
            )
            .map_err(|e| e.to_string())?;
            let token = unseal(&core, &dir).await?;
            let mount = Request::new(Verb::Write, "sys/mounts/bench")
                .with_token(&token)
                .with_data(json!({"type": "benchlease"}));
            core.handle_request(mount)
                .await
                .map_err(|e| e.to_string())?;
            let started = Instant::now();
            issue(&core, &token, n, 30 * 86400).await?;
            println!("populate_leases {n}");
            println!(
                "populate_per_second {:.0}",
                n as f64 / started.elapsed().as_secs_f64()
            );
        }
        "restart" => {
            let started = Instant::now();
            let core = core(&dir)?;
            let token = unseal(&core, &dir).await?;
            let request = Request::new(Verb::Read, "auth/token/lookup-self").with_token(&token);
            core.handle_request(request)
                .await
                .map_err(|e| e.to_string())?;
            println!("ready_ms {:.1}", started.elapsed().as_secs_f64() * 1000.0);
            // One sweep of an idle second: nothing is due, and nothing should be loaded. The
            // first sweep after unseal also counts the leases by mount (a key scan) for the
            // ward_lease_count gauge; lease creations wait meanwhile.
            let sweep = Instant::now();
            core.expire_leases().await.map_err(|e| e.to_string())?;
            println!(
                "first_sweep_ms {:.0}",
                sweep.elapsed().as_secs_f64() * 1000.0
            );
            let counted = core
                .metrics_prometheus()
                .lines()
                .find_map(|l| l.strip_prefix("ward_lease_count{mount=\"bench/\"} "))
                .unwrap_or("none")
                .to_string();
            println!("lease_count_gauge {counted}");
            println!("rss_mib {:.1}", rss_mib());
        }
        "expire" => {
            let core = core(&dir)?;
            let token = unseal(&core, &dir).await?;
            // The first sweep after unseal counts the leases (restart reports its time); a
            // server has long done it when leases expire, so it is not part of expire_ms.
            core.expire_leases().await.map_err(|e| e.to_string())?;
            issue(&core, &token, n, 60).await?;
            core.clock().advance(61);
            let revoked = REVOKED
                .get_or_init(|| Arc::new(AtomicUsize::new(0)))
                .clone();
            let started = Instant::now();
            while revoked.load(Ordering::Relaxed) < n {
                core.expire_leases().await.map_err(|e| e.to_string())?;
                if started.elapsed().as_secs() > 120 {
                    return Err(format!(
                        "only {} of {n} revoked after 120 s",
                        revoked.load(Ordering::Relaxed)
                    ));
                }
            }
            println!("expire_ms {:.0}", started.elapsed().as_secs_f64() * 1000.0);
        }
        _ => return Err("usage: leases populate|restart|expire DIR [N]".into()),
    }
    Ok(())
}
