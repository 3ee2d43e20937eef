//! End-to-end tests of the `ward` binary: a dev server and the client verbs against it, and
//! the init → unseal → write → restart → unseal → read flow of a `-config` server on SQLite.
//!
//! Servers listen on `127.0.0.1:0`; the test reads the bound address from the start-up report
//! (`Api Address: ...`) and waits for `==> Ward server started!`, with a deadline, no sleeps.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WARD: &str = env!("CARGO_BIN_EXE_ward");
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);

/// A running `ward server`; killed when dropped.
struct Server {
    child: Child,
    address: String,
    report: Vec<String>,
}

impl Server {
    fn start(args: &[&str], home: &Path) -> Server {
        let log = support::ServerLog::new("e2e");
        let mut child = Command::new(WARD)
            .arg("server")
            .args(args)
            .env("HOME", home)
            .env_remove("WARD_ADDR")
            .env_remove("VAULT_ADDR")
            .stdout(Stdio::piped())
            .stderr(log.stderr())
            .spawn()
            .expect("spawn ward server");
        let stdout = child.stdout.take().expect("stdout");
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                log.line(&line);
                if lines_tx.send(line).is_err() {
                    // Keep draining so the server never blocks on a full pipe.
                    continue;
                }
            }
        });
        let deadline = Instant::now() + STARTUP_DEADLINE;
        let mut report = Vec::new();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(remaining) {
                Ok(line) if line.starts_with("==> Ward server started!") => break,
                Ok(line) => report.push(line),
                Err(e) => {
                    let status = child.try_wait();
                    panic!("server did not start ({e}; exit status {status:?}); output so far: {report:#?}");
                }
            }
        }
        let address = report
            .iter()
            .find_map(|line| line.trim().strip_prefix("Api Address: "))
            .expect("Api Address in the start-up report")
            .to_string();
        Server {
            child,
            address,
            report,
        }
    }

    fn ward(&self, home: &Path, args: &[&str]) -> Output {
        self.ward_with_stdin(home, args, None)
    }

    fn ward_with_stdin(&self, home: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(WARD)
            .args(args)
            .env("HOME", home)
            .env("WARD_ADDR", &self.address)
            .env_remove("VAULT_ADDR")
            .env_remove("WARD_TOKEN")
            .env_remove("VAULT_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ward");
        if let Some(mut pipe) = child.stdin.take() {
            if let Some(input) = stdin {
                pipe.write_all(input.as_bytes()).expect("write stdin");
            }
        }
        child.wait_with_output().expect("ward output")
    }

    /// SIGTERM, then wait for a clean exit (the drain).
    fn stop(mut self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "server exited with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop after SIGTERM"
            );
            std::thread::yield_now();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of a row in a `Key  Value` table.
fn row(table: &str, key: &str) -> Option<String> {
    table.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?;
        rest.starts_with("  ").then(|| rest.trim().to_string())
    })
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn check(output: &Output, code: i32) -> String {
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    );
    stdout(output)
}

#[test]
fn dev_server_and_client_verbs() {
    let home = tempfile::tempdir().expect("home");
    let server = Server::start(
        &[
            "-dev",
            "-dev-listen-address=127.0.0.1:0",
            "-dev-root-token-id=dev-root",
        ],
        home.path(),
    );
    assert!(server.address.starts_with("http://127.0.0.1:"));
    assert!(server.report.iter().any(|l| l.starts_with("Unseal Key: ")));
    assert!(server.report.iter().any(|l| l == "Root Token: dev-root"));
    assert!(server
        .report
        .iter()
        .any(|l| l.contains(&format!("export VAULT_ADDR='{}'", server.address))));
    // Dev mode stores the root token for the CLI, as Vault does.
    assert_eq!(
        std::fs::read_to_string(home.path().join(".ward-token")).expect("token file"),
        "dev-root"
    );

    let home = home.path();
    let status = check(&server.ward(home, &["status"]), 0);
    assert_eq!(row(&status, "Sealed").as_deref(), Some("false"), "{status}");
    let json: serde_json::Value =
        serde_json::from_str(&check(&server.ward(home, &["status", "-format=json"]), 0))
            .expect("json");
    assert_eq!(json["storage_type"], "inmem");

    check(
        &server.ward(
            home,
            &[
                "kv",
                "put",
                "secret/app",
                "user=alice",
                "password=CANARY-e2e-s3cret",
            ],
        ),
        0,
    );
    assert_eq!(
        check(
            &server.ward(home, &["kv", "get", "-field=password", "secret/app"]),
            0
        ),
        "CANARY-e2e-s3cret\n"
    );
    let table = check(&server.ward(home, &["kv", "get", "secret/app"]), 0);
    assert!(
        table.contains("user") && table.contains("alice") && table.contains("version"),
        "{table}"
    );
    let raw: serde_json::Value = serde_json::from_str(&check(
        &server.ward(home, &["read", "-format=json", "secret/data/app"]),
        0,
    ))
    .expect("json");
    assert_eq!(raw["data"]["data"]["user"], "alice");
    assert!(check(&server.ward(home, &["list", "secret/metadata"]), 0).contains("app"));
    check(&server.ward(home, &["delete", "secret/metadata/app"]), 0);
    check(&server.ward(home, &["kv", "get", "secret/app"]), 2);

    // Server errors and usage errors exit 2 with the message; local errors exit 1.
    let denied = Command::new(WARD)
        .args(["read", "secret/data/app"])
        .env("WARD_ADDR", &server.address)
        .env("WARD_TOKEN", "not-a-token")
        .output()
        .expect("ward read");
    assert_eq!(denied.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("permission denied"));
    assert_eq!(
        server
            .ward(home, &["read", "-no-such-flag", "x"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        server
            .ward(home, &["kv", "put", "secret/app", "novalue"])
            .status
            .code(),
        Some(2)
    );
    server.stop();
}

#[test]
fn config_server_init_unseal_restart_keeps_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    let config = dir.path().join("ward.hcl");
    std::fs::write(
        &config,
        format!(
            "storage \"sqlite\" {{\n  path = \"{}\"\n}}\nlistener \"tcp\" {{\n  address = \"127.0.0.1:0\"\n  tls_disable = true\n}}\ndisable_mlock = true\n",
            dir.path().join("ward.db").display()
        ),
    )
    .expect("config");
    let config_flag = format!("-config={}", config.display());

    let server = Server::start(&[&config_flag], home);
    let status = check(&server.ward(home, &["status"]), 2);
    assert_eq!(
        row(&status, "Initialized").as_deref(),
        Some("false"),
        "{status}"
    );
    let init = check(
        &server.ward(
            home,
            &["operator", "init", "-key-shares=3", "-key-threshold=2"],
        ),
        0,
    );
    assert!(
        init.contains("Hand each key share to a different person"),
        "{init}"
    );
    let keys: Vec<String> = init
        .lines()
        .filter_map(|l| {
            l.strip_prefix("Unseal Key ")
                .and_then(|rest| rest.split_once(": "))
                .map(|(_, key)| key.to_string())
        })
        .collect();
    assert_eq!(keys.len(), 3);
    let root = init
        .lines()
        .find_map(|l| l.strip_prefix("Initial Root Token: "))
        .expect("root token")
        .to_string();
    assert_eq!(
        row(&check(&server.ward(home, &["status"]), 2), "Sealed").as_deref(),
        Some("true")
    );

    check(&server.ward(home, &["operator", "unseal", &keys[0]]), 0);
    // The second share from stdin, as `ward operator unseal -` (no echo on a terminal).
    let unsealed = check(
        &server.ward_with_stdin(
            home,
            &["operator", "unseal", "-"],
            Some(&format!("{}\n", keys[2])),
        ),
        0,
    );
    assert_eq!(
        row(&unsealed, "Sealed").as_deref(),
        Some("false"),
        "{unsealed}"
    );

    let with_token = |args: &[&str]| {
        Command::new(WARD)
            .args(args)
            .env("WARD_ADDR", &server.address)
            .env("WARD_TOKEN", &root)
            .env("HOME", home)
            .output()
            .expect("ward")
    };
    check(&with_token(&["write", "sys/mounts/kv", "type=kv"]), 0);
    check(
        &with_token(&["kv", "put", "kv/db", "password=CANARY-e2e-durable"]),
        0,
    );
    assert_eq!(
        check(&with_token(&["kv", "get", "-field=password", "kv/db"]), 0),
        "CANARY-e2e-durable\n"
    );
    server.stop();

    let server = Server::start(&[&config_flag], home);
    assert_eq!(
        row(&check(&server.ward(home, &["status"]), 2), "Initialized").as_deref(),
        Some("true")
    );
    check(&server.ward(home, &["operator", "unseal", &keys[1]]), 0);
    check(&server.ward(home, &["operator", "unseal", &keys[2]]), 0);
    let with_token = |args: &[&str]| {
        Command::new(WARD)
            .args(args)
            .env("WARD_ADDR", &server.address)
            .env("WARD_TOKEN", &root)
            .env("HOME", home)
            .output()
            .expect("ward")
    };
    assert_eq!(
        check(&with_token(&["kv", "get", "-field=password", "kv/db"]), 0),
        "CANARY-e2e-durable\n"
    );
    server.stop();
}

#[test]
fn server_refuses_a_bad_config_naming_the_key_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bad.hcl");
    std::fs::write(
        &config,
        "storage \"inmem\" {}\nlistener \"tcp\" { tls_disable = true }\nstorge = 1\n",
    )
    .expect("config");
    let output = Command::new(WARD)
        .arg("server")
        .arg(format!("-config={}", config.display()))
        .output()
        .expect("ward server");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown key \"storge\" at line 3"),
        "{stderr}"
    );
}

#[test]
fn version_prints_the_vault_api_version() {
    let output = Command::new(WARD)
        .arg("version")
        .output()
        .expect("ward version");
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("Vault API 1.16.0"));
}
