//! SIGKILL during a stream of writes loses no acknowledged write.
//!
//! Each cycle starts `ward server -config` on SQLite, unseals it, runs writers that record a
//! key only after the server acknowledged it, kills the server with SIGKILL after a short
//! random time, restarts and unseals it, and reads every acknowledged key back with its exact
//! value. `WARD_SERVER_CRASH_CYCLES` sets the number of cycles (default 20); a stress run uses
//! more (`scripts/crash-stress`).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const WARD: &str = env!("CARGO_BIN_EXE_ward");
const WRITERS: usize = 4;

/// One HTTP/1.1 keep-alive connection, enough for JSON requests to Ward.
struct Http {
    stream: BufReader<TcpStream>,
}

impl Http {
    fn connect(address: &str) -> std::io::Result<Http> {
        let stream = TcpStream::connect(address.trim_start_matches("http://"))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Http {
            stream: BufReader::new(stream),
        })
    }

    /// Sends a request; returns (status, body). Errors when the connection breaks.
    fn call(
        &mut self,
        method: &str,
        path: &str,
        token: &str,
        body: &str,
    ) -> std::io::Result<(u16, String)> {
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: ward\r\nX-Vault-Token: {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream.get_mut().write_all(request.as_bytes())?;
        let mut status_line = String::new();
        if self.stream.read_line(&mut status_line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed",
            ));
        }
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if self.stream.read_line(&mut line)? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "closed in headers",
                ));
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body)?;
        Ok((status, String::from_utf8_lossy(&body).to_string()))
    }
}

fn start(config: &Path) -> (Child, String) {
    let log = support::ServerLog::new("crash");
    let mut child = Command::new(WARD)
        .arg("server")
        .arg(format!("-config={}", config.display()))
        .stdout(Stdio::piped())
        .stderr(log.stderr())
        .spawn()
        .expect("spawn ward server");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            log.line(&line);
            let _ = tx.send(line);
        }
    });
    let mut address = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("server start-up report");
        if let Some(a) = line.trim().strip_prefix("Api Address: ") {
            address = Some(a.to_string());
        }
        if line.starts_with("==> Ward server started!") {
            break;
        }
    }
    (child, address.expect("Api Address"))
}

fn field(body: &str, pointer: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).expect("json body");
    match value.pointer(pointer) {
        Some(serde_json::Value::String(s)) => s.clone(),
        other => panic!("no string at {pointer} in {body}: {other:?}"),
    }
}

#[test]
fn sigkill_during_writes_loses_no_acknowledged_write() {
    let cycles: usize = std::env::var("WARD_SERVER_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("ward.hcl");
    std::fs::write(
        &config,
        format!(
            "storage \"sqlite\" {{\n  path = \"{}\"\n}}\nlistener \"tcp\" {{\n  address = \"127.0.0.1:0\"\n  tls_disable = true\n}}\ndisable_mlock = true\n",
            dir.path().join("ward.db").display()
        ),
    )
    .expect("config");

    // Initialise once with a single key share.
    let (mut child, address) = start(&config);
    let mut http = Http::connect(&address).expect("connect");
    let (status, init) = http
        .call(
            "PUT",
            "/v1/sys/init",
            "",
            r#"{"secret_shares":1,"secret_threshold":1}"#,
        )
        .expect("init");
    assert_eq!(status, 200, "{init}");
    let key: String = serde_json::from_str::<serde_json::Value>(&init).expect("json")["keys"][0]
        .as_str()
        .expect("key")
        .to_string();
    let root = field(&init, "/root_token");
    let unseal_body = format!(r#"{{"key":"{key}"}}"#);
    let (status, _) = http
        .call("PUT", "/v1/sys/unseal", "", &unseal_body)
        .expect("unseal");
    assert_eq!(status, 200);
    let (status, body) = http
        .call("POST", "/v1/sys/mounts/kv", &root, r#"{"type":"kv"}"#)
        .expect("mount");
    assert_eq!(status, 204, "{body}");
    drop(http);
    child.kill().expect("kill");
    child.wait().expect("wait");

    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ std::process::id() as u64;
    let mut total_acknowledged = 0usize;
    for cycle in 0..cycles {
        let (mut child, address) = start(&config);
        let mut http = Http::connect(&address).expect("connect");
        let (status, body) = http
            .call("PUT", "/v1/sys/unseal", "", &unseal_body)
            .expect("unseal");
        assert_eq!(status, 200, "cycle {cycle}: {body}");

        let acknowledged: Arc<Mutex<Vec<(String, String)>>> = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::new();
        for writer in 0..WRITERS {
            let acknowledged = acknowledged.clone();
            let stop = stop.clone();
            let address = address.clone();
            let root = root.clone();
            writers.push(std::thread::spawn(move || {
                let Ok(mut http) = Http::connect(&address) else {
                    return;
                };
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("c{cycle}-w{writer}-{n}");
                    // Values of varying size, so a torn write would show.
                    let value = format!("{key}-{}", "v".repeat((n * 37) % 3000));
                    let body = format!(r#"{{"value":"{value}"}}"#);
                    match http.call("POST", &format!("/v1/kv/{key}"), &root, &body) {
                        Ok((204, _)) => {
                            if let Ok(mut list) = acknowledged.lock() {
                                list.push((key, value));
                            }
                        }
                        _ => return,
                    }
                    n += 1;
                }
            }));
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let run_for = Duration::from_millis(50 + seed % 250);
        let started = Instant::now();
        while started.elapsed() < run_for {
            std::thread::yield_now();
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
        stop.store(true, Ordering::Relaxed);
        for writer in writers {
            let _ = writer.join();
        }
        let acknowledged = acknowledged.lock().expect("list").clone();
        total_acknowledged += acknowledged.len();

        let (mut child, address) = start(&config);
        let mut http = Http::connect(&address).expect("connect");
        let (status, _) = http
            .call("PUT", "/v1/sys/unseal", "", &unseal_body)
            .expect("unseal");
        assert_eq!(status, 200);
        for (key, value) in &acknowledged {
            let (status, body) = http
                .call("GET", &format!("/v1/kv/{key}"), &root, "")
                .expect("read");
            assert_eq!(
                status, 200,
                "cycle {cycle}: acknowledged write {key} is missing after SIGKILL: {body}"
            );
            assert_eq!(
                field(&body, "/data/value"),
                *value,
                "cycle {cycle}: {key} came back different"
            );
        }
        child.kill().expect("kill");
        child.wait().expect("wait");
    }
    assert!(
        total_acknowledged > cycles,
        "the writers must have made progress ({total_acknowledged} writes)"
    );
}
