//! Audit, quotas, metrics and alerts through `handle_request`, with no HTTP: what a file
//! device writes (hashed values, canaries never in clear), the hash chain and `verify`,
//! rotation, fail-closed behaviour on a full disk, a deleted file or a hung device, rate
//! limits, the Prometheus rendering, and policy-change alerts with retried delivery.

use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use ward_core::alerts::AlertTransport;
use ward_core::audit::{AuditSink, AuditSinkFactory, BreakReason, Verifier};
use ward_core::request::{Request, Response, Verb};
use ward_core::{Core, CoreConfig, Error};
use ward_storage::InMemory;

const SECRET_CANARY: &str = "CANARY-secret-value-7f3a9c";
const PASSWORD_CANARY: &str = "CANARY-password-b81d2e";

async fn dev_core() -> (Arc<Core>, String) {
    ward_testlog::init("core-audit");
    let core = Core::new(
        CoreConfig::default(),
        Arc::new(InMemory::new()),
        ward_engines::registry(),
    );
    let root = core
        .dev_init(None)
        .await
        .expect("dev init")
        .root_token
        .to_string();
    (core, root)
}

async fn call(
    core: &Core,
    verb: Verb,
    path: &str,
    token: &str,
    data: Value,
) -> Result<Response, Error> {
    core.handle_request(Request::new(verb, path).with_token(token).with_data(data))
        .await
}

async fn enable_file(
    core: &Core,
    root: &str,
    name: &str,
    path: &Path,
    options: Value,
) -> Result<Response, Error> {
    let mut all = json!({ "file_path": path.to_string_lossy() });
    if let (Value::Object(all), Value::Object(extra)) = (&mut all, options) {
        all.extend(extra);
    }
    call(
        core,
        Verb::Write,
        &format!("sys/audit/{name}"),
        root,
        json!({ "type": "file", "options": all }),
    )
    .await
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn entries(path: &Path) -> Vec<Value> {
    read(path)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

fn verify_files(paths: &[&Path]) -> ward_core::audit::VerifyReport {
    let mut verifier = Verifier::new();
    for path in paths {
        let file = std::fs::File::open(path).expect("open");
        verifier
            .feed(&path.to_string_lossy(), BufReader::new(file))
            .expect("read");
    }
    verifier.finish()
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted on drop. Tests run as root in
/// CI; where mounting is not allowed the caller falls back to another fault.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(options: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .status()
            .ok()?;
        status.success().then_some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Fills a file system until writes fail with ENOSPC.
fn fill(dir: &Path) {
    use std::io::Write;
    let mut filler = std::fs::File::create(dir.join("filler")).expect("filler");
    let block = vec![0u8; 4096];
    while filler.write_all(&block).is_ok() {}
    let _ = filler.flush();
}

#[tokio::test]
async fn a_file_device_hashes_every_secret_and_the_chain_verifies() {
    let (core, root) = dev_core().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.log");
    enable_file(&core, &root, "file", &log, json!({}))
        .await
        .expect("enable");

    let listing = call(&core, Verb::Read, "sys/audit", &root, json!({}))
        .await
        .expect("list");
    let device = &listing.data.as_ref().expect("data")["file/"];
    assert_eq!(device["type"], json!("file"));
    assert_eq!(device["path"], json!("file/"));
    assert_eq!(device["options"]["file_path"], json!(log.to_string_lossy()));

    call(
        &core,
        Verb::Write,
        "secret/data/app",
        &root,
        json!({"data": {"api_key": SECRET_CANARY, "port": 5432}}),
    )
    .await
    .expect("write");
    let read_back = call(&core, Verb::Read, "secret/data/app", &root, json!({}))
        .await
        .expect("read");
    assert_eq!(
        read_back.data.as_ref().expect("data")["data"]["api_key"],
        json!(SECRET_CANARY)
    );
    call(
        &core,
        Verb::Write,
        "sys/auth/userpass",
        &root,
        json!({"type": "userpass"}),
    )
    .await
    .expect("mount userpass");
    call(
        &core,
        Verb::Write,
        "auth/userpass/users/alice",
        &root,
        json!({"password": PASSWORD_CANARY, "token_ttl": "1h"}),
    )
    .await
    .expect("user");
    let login = core
        .handle_request(
            Request::new(Verb::Write, "auth/userpass/login/alice")
                .with_data(json!({"password": PASSWORD_CANARY})),
        )
        .await
        .expect("login");
    let user_token = login.auth.expect("auth").client_token;
    let created = call(
        &core,
        Verb::Write,
        "auth/token/create",
        &root,
        json!({"ttl": "10m"}),
    )
    .await
    .expect("token");
    let child = created.auth.expect("auth").client_token;
    let denied = call(&core, Verb::Read, "secret/data/app", &user_token, json!({})).await;
    assert!(matches!(denied, Err(Error::PermissionDenied(_))));

    let text = read(&log);
    for canary in [
        SECRET_CANARY,
        PASSWORD_CANARY,
        root.as_str(),
        user_token.as_str(),
        child.as_str(),
    ] {
        assert!(
            !text.contains(canary),
            "a secret, password or token is in the audit file in clear"
        );
    }

    // The operator finds the read by the value's hash.
    let hashed = call(
        &core,
        Verb::Write,
        "sys/audit-hash/file",
        &root,
        json!({"input": SECRET_CANARY}),
    )
    .await
    .expect("hash");
    let hash = hashed.data.as_ref().expect("data")["hash"]
        .as_str()
        .expect("hash string")
        .to_string();
    assert!(hash.starts_with("hmac-sha256:"));
    let lines = entries(&log);
    let found = lines
        .iter()
        .find(|e| {
            e["type"] == "response"
                && e["request"]["path"] == "secret/data/app"
                && e["request"]["operation"] == "read"
        })
        .expect("the read's response entry");
    assert_eq!(found["response"]["data"]["data"]["api_key"], json!(hash));
    assert_eq!(
        found["response"]["data"]["data"]["port"],
        json!(5432),
        "numbers are not hashed"
    );
    assert_eq!(found["auth"]["display_name"], json!("root"));
    assert_eq!(found["request"]["namespace"]["id"], json!("root"));
    assert_eq!(found["request"]["mount_type"], json!("kv"));

    // Every request has a request and a response entry, denials included.
    let denial: Vec<&Value> = lines
        .iter()
        .filter(|e| {
            e["error"]
                .as_str()
                .is_some_and(|m| m.contains("permission denied"))
        })
        .collect();
    assert_eq!(
        denial.len(),
        2,
        "request and response entries of the denial"
    );
    // A login: the issued token's expiry is in the entry beside its duration.
    let login_entry = lines
        .iter()
        .find(|e| e["type"] == "response" && e["request"]["path"] == "auth/userpass/login/alice")
        .expect("login entry");
    assert_eq!(
        login_entry["response"]["auth"]["lease_duration"],
        json!(3600)
    );
    assert!(login_entry["response"]["lease_expire_time"]
        .as_str()
        .is_some_and(|t| t.contains('T')));
    assert!(login_entry["response"]["auth"]["client_token"]
        .as_str()
        .is_some_and(|t| t.starts_with("hmac-sha256:")));

    let unknown = call(
        &core,
        Verb::Write,
        "sys/audit-hash/nope",
        &root,
        json!({"input": "x"}),
    )
    .await;
    assert!(
        matches!(&unknown, Err(Error::InvalidRequest(m)) if m.contains("unknown audit backend")),
        "{unknown:?}"
    );

    let report = verify_files(&[&log]);
    assert!(report.is_intact(), "{report:?}");
    assert!(report.starts_at_genesis);
    assert_eq!(report.lines as usize, entries(&log).len());

    call(&core, Verb::Delete, "sys/audit/file", &root, json!({}))
        .await
        .expect("disable");
    let listing = call(&core, Verb::Read, "sys/audit", &root, json!({}))
        .await
        .expect("list");
    assert!(listing.data.as_ref().is_none_or(|d| d.is_empty()));
}

#[tokio::test]
async fn a_raw_device_does_not_make_another_device_raw() {
    let (core, root) = dev_core().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (raw, hashed) = (dir.path().join("raw.log"), dir.path().join("hashed.log"));
    enable_file(&core, &root, "raw", &raw, json!({"log_raw": true}))
        .await
        .expect("raw");
    enable_file(
        &core,
        &root,
        "hashed",
        &hashed,
        json!({"hmac_accessor": false}),
    )
    .await
    .expect("hashed");
    call(
        &core,
        Verb::Write,
        "secret/data/x",
        &root,
        json!({"data": {"v": SECRET_CANARY}}),
    )
    .await
    .expect("write");
    call(&core, Verb::Read, "secret/data/x", &root, json!({}))
        .await
        .expect("read");
    assert!(
        read(&raw).contains(SECRET_CANARY),
        "the raw device logs values in clear, as configured"
    );
    assert!(
        !read(&hashed).contains(SECRET_CANARY),
        "CVE-2024-0831: the other device stays hashed"
    );
    assert!(!read(&hashed).contains(&root));
    let accessor = entries(&hashed)[0]["auth"]["accessor"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        !accessor.is_empty() && !accessor.starts_with("hmac-sha256:"),
        "hmac_accessor=false leaves accessors readable"
    );
}

#[tokio::test]
async fn verify_finds_forged_swapped_and_deleted_lines() {
    let (core, root) = dev_core().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.log");
    enable_file(&core, &root, "file", &log, json!({}))
        .await
        .expect("enable");
    for i in 0..5 {
        call(
            &core,
            Verb::Write,
            &format!("secret/data/k{i}"),
            &root,
            json!({"data": {"v": i}}),
        )
        .await
        .expect("write");
    }
    let lines: Vec<String> = read(&log).lines().map(|l| format!("{l}\n")).collect();
    assert!(lines.len() >= 10);
    let check = |content: String| {
        let path = dir.path().join("tampered.log");
        std::fs::write(&path, content).expect("write");
        verify_files(&[&path]).first_break
    };

    let mut forged = lines.clone();
    forged[4] = forged[4].replace("\"operation\":\"create\"", "\"operation\":\"delete\"");
    assert_ne!(forged[4], lines[4], "the forgery changed the line");
    let found = check(forged.concat()).expect("forgery found");
    assert_eq!(
        (found.line, found.reason),
        (6, BreakReason::Mismatch),
        "line 5 altered: line 6 no longer links to it"
    );

    let mut swapped = lines.clone();
    swapped.swap(6, 7);
    assert_eq!(check(swapped.concat()).map(|b| b.line), Some(7));

    let mut deleted = lines.clone();
    deleted.remove(2);
    assert_eq!(check(deleted.concat()).map(|b| b.line), Some(3));

    assert_eq!(check(lines.concat()), None);
}

#[tokio::test]
async fn rotation_continues_the_chain_into_the_new_file() {
    let (core, root) = dev_core().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.log");
    let rotated = dir.path().join("audit.log.1");
    enable_file(&core, &root, "file", &log, json!({}))
        .await
        .expect("enable");
    call(&core, Verb::Read, "secret/config", &root, json!({}))
        .await
        .expect("read");
    std::fs::rename(&log, &rotated).expect("rotate");
    let failed = core.reopen_audit_devices().await.expect("reopen");
    assert!(failed.is_empty(), "{failed:?}");
    call(&core, Verb::Read, "secret/config", &root, json!({}))
        .await
        .expect("read after rotation");
    assert!(!read(&log).is_empty(), "the new file receives the entries");

    let both = verify_files(&[&rotated, &log]);
    assert!(both.is_intact(), "{both:?}");
    assert!(both.starts_at_genesis);
    let second_alone = verify_files(&[&log]);
    assert!(
        second_alone.is_intact() && !second_alone.starts_at_genesis,
        "the new file starts mid-chain"
    );
    let wrong_order = verify_files(&[&log, &rotated]);
    assert_eq!(
        wrong_order.first_break.map(|b| (b.file, b.line)),
        Some((rotated.to_string_lossy().to_string(), 1))
    );
}

#[tokio::test]
async fn dangerous_or_unusable_device_settings_are_refused() {
    let (core, root) = dev_core().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        json!({"file_path": "/etc/ward-audit.log"}),
        json!({"file_path": "/usr/lib/ward/plugins/evil"}),
        json!({"file_path": dir.path().join("a.log").to_string_lossy(), "mode": "0755"}),
        json!({"file_path": dir.path().join("a.log").to_string_lossy(), "mode": "4600"}),
        json!({"file_path": dir.path().join("a.log").to_string_lossy(), "prefix": "#!/bin/sh\n"}),
        json!({"file_path": dir.path().join("a.log").to_string_lossy(), "prefix": "x\ny"}),
        json!({"file_path": dir.path().join("missing/a.log").to_string_lossy()}),
        json!({"file_path": "relative.log"}),
        json!({"file_path": dir.path().join("a.log").to_string_lossy(), "format": "jsonx"}),
    ];
    for options in cases {
        let result = call(
            &core,
            Verb::Write,
            "sys/audit/bad",
            &root,
            json!({"type": "file", "options": options.clone()}),
        )
        .await;
        assert!(
            matches!(result, Err(Error::InvalidRequest(_))),
            "{options}: {result:?}"
        );
    }
    let result = call(
        &core,
        Verb::Write,
        "sys/audit/bad",
        &root,
        json!({"type": "syslog"}),
    )
    .await;
    assert!(matches!(result, Err(Error::InvalidRequest(_))));

    // An unwritable directory: a read-only file system (root ignores permission bits).
    let readonly = Tmpfs::mount("ro,size=64k").expect("tests run as root and can mount a tmpfs");
    let result = enable_file(
        &core,
        &root,
        "ro",
        &readonly.path().join("audit.log"),
        json!({}),
    )
    .await;
    assert!(
        matches!(&result, Err(Error::InvalidRequest(m)) if m.contains("cannot open")),
        "{result:?}"
    );
    assert!(call(&core, Verb::Read, "sys/audit", &root, json!({}))
        .await
        .expect("list")
        .data
        .is_none_or(|d| d.is_empty()));

    // Enabling requires sudo.
    let policy = r#"path "sys/audit/*" { capabilities = ["create", "update"] }"#;
    call(
        &core,
        Verb::Write,
        "sys/policies/acl/auditor",
        &root,
        json!({"policy": policy}),
    )
    .await
    .expect("policy");
    let token = call(
        &core,
        Verb::Write,
        "auth/token/create",
        &root,
        json!({"policies": ["auditor"]}),
    )
    .await
    .expect("token")
    .auth
    .expect("auth")
    .client_token;
    let result = enable_file(
        &core,
        &token,
        "nosudo",
        &dir.path().join("n.log"),
        json!({}),
    )
    .await;
    assert!(
        matches!(result, Err(Error::PermissionDenied(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_full_disk_fails_requests_closed_and_nothing_runs() {
    let (core, root) = dev_core().await;
    let disk = Tmpfs::mount("size=64k").expect("tests run as root and can mount a tmpfs");
    let log = disk.path().join("audit.log");
    enable_file(&core, &root, "file", &log, json!({}))
        .await
        .expect("enable");
    fill(disk.path());

    // A body with many values makes a request entry larger than any free space left in the
    // file's last page, so it is the request entry (before anything runs) that fails.
    let mut body = serde_json::Map::new();
    for i in 0..200 {
        body.insert(format!("field{i}"), json!(SECRET_CANARY));
    }
    let write = call(
        &core,
        Verb::Write,
        "secret/data/unaudited",
        &root,
        json!({"data": body}),
    )
    .await;
    assert!(matches!(&write, Err(Error::AuditFailed)), "{write:?}");
    // The client is told why: a refusal it can act on, not an opaque internal error.
    assert_eq!(
        Error::AuditFailed.client_messages(),
        vec!["no audit backend succeeded in logging the request".to_string()]
    );
    assert!(
        core.metrics()
            .counter("ward_audit_failures_total", &[("device", "file/")])
            >= 1
    );

    // Space again: the device works, and the write above was never executed.
    std::fs::remove_file(disk.path().join("filler")).expect("free space");
    let read_back = call(&core, Verb::Read, "secret/data/unaudited", &root, json!({})).await;
    assert!(
        matches!(read_back, Err(Error::NotFound { .. })),
        "{read_back:?}"
    );
    let report = verify_files(&[&log]);
    assert!(
        report.is_intact(),
        "a failed batch leaves no partial line: {report:?}"
    );
    assert!(!read(&log).contains(SECRET_CANARY));
}

#[tokio::test]
async fn one_healthy_device_is_enough_and_a_deleted_file_is_reported() {
    let (core, root) = dev_core().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let healthy = dir.path().join("healthy.log");
    let doomed = dir.path().join("doomed.log");
    enable_file(&core, &root, "healthy", &healthy, json!({}))
        .await
        .expect("enable");
    enable_file(&core, &root, "doomed", &doomed, json!({}))
        .await
        .expect("enable");
    std::fs::remove_file(&doomed).expect("delete the audit file");

    // The file's link count is checked at most every 50 ms: keep writing until it is.
    let deadline = Instant::now() + Duration::from_secs(5);
    let failures = || {
        core.metrics()
            .counter("ward_audit_failures_total", &[("device", "doomed/")])
    };
    while failures() == 0 {
        assert!(Instant::now() < deadline, "the deleted file is detected");
        call(
            &core,
            Verb::Write,
            "secret/data/k",
            &root,
            json!({"data": {"v": 1}}),
        )
        .await
        .expect("one healthy device suffices");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(read(&healthy).contains("secret/data/k"));
    let recent = call(&core, Verb::Read, "sys/alerts/recent", &root, json!({}))
        .await
        .expect("alerts");
    let alerts = recent.data.expect("data")["alerts"].clone();
    assert!(
        alerts.as_array().is_some_and(|a| a
            .iter()
            .any(|x| x["rule"] == "audit-device-failure" && x["details"]["device"] == "doomed/")),
        "{alerts}"
    );

    // Only the deleted one left: requests fail closed, but the operator can still repair.
    call(&core, Verb::Delete, "sys/audit/healthy", &root, json!({}))
        .await
        .expect("disable healthy");
    let refused = call(&core, Verb::Read, "secret/data/k", &root, json!({})).await;
    assert!(matches!(refused, Err(Error::AuditFailed)), "{refused:?}");
    call(&core, Verb::Delete, "sys/audit/doomed", &root, json!({}))
        .await
        .expect("a sudo operator can disable the broken device");
    call(&core, Verb::Read, "secret/data/k", &root, json!({}))
        .await
        .expect("no devices: requests go through");
}

/// A sink that never finishes a write: a peer that accepts and never reads.
struct HungSink;

#[async_trait::async_trait]
impl AuditSink for HungSink {
    async fn write(&mut self, _batch: &[u8]) -> std::io::Result<()> {
        std::future::pending::<()>().await;
        Ok(())
    }
}

struct HungFactory;

#[async_trait::async_trait]
impl AuditSinkFactory for HungFactory {
    async fn open(
        &self,
        _options: &BTreeMap<String, String>,
    ) -> Result<Box<dyn AuditSink>, String> {
        Ok(Box::new(HungSink))
    }
}

#[tokio::test]
async fn a_hung_device_does_not_hold_up_a_healthy_one() {
    let (core, root) = dev_core().await;
    core.register_audit_factory("hung", Arc::new(HungFactory));
    let dir = tempfile::tempdir().expect("tempdir");
    let healthy = dir.path().join("healthy.log");
    call(
        &core,
        Verb::Write,
        "sys/audit/hung",
        &root,
        json!({"type": "hung", "options": {"write_timeout": "300ms"}}),
    )
    .await
    .expect("hung");
    enable_file(&core, &root, "healthy", &healthy, json!({}))
        .await
        .expect("healthy");
    let started = Instant::now();
    for _ in 0..20 {
        call(&core, Verb::Read, "secret/config", &root, json!({}))
            .await
            .expect("answered");
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "requests answer as soon as the healthy device has the entry"
    );

    call(&core, Verb::Delete, "sys/audit/healthy", &root, json!({}))
        .await
        .expect("disable");
    let started = Instant::now();
    let refused = call(&core, Verb::Read, "secret/config", &root, json!({})).await;
    assert!(
        matches!(refused, Err(Error::AuditFailed)),
        "only the hung device: fail closed"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "after the write timeout, not forever"
    );
}

#[tokio::test]
async fn rate_limits_answer_429_per_identity_and_show_in_metrics() {
    let (core, root) = dev_core().await;
    call(
        &core,
        Verb::Write,
        "sys/quotas/rate-limit/kv",
        &root,
        json!({"path": "secret", "rate": 2, "interval": "1m", "identity": "token"}),
    )
    .await
    .expect("quota");
    let quota = call(
        &core,
        Verb::Read,
        "sys/quotas/rate-limit/kv",
        &root,
        json!({}),
    )
    .await
    .expect("read quota");
    assert_eq!(quota.data.as_ref().expect("data")["path"], json!("secret/"));
    let listed = call(&core, Verb::List, "sys/quotas/rate-limit", &root, json!({}))
        .await
        .expect("list");
    assert_eq!(listed.data.expect("data")["keys"], json!(["kv"]));

    let a = call(&core, Verb::Write, "auth/token/create", &root, json!({}))
        .await
        .expect("a")
        .auth
        .expect("auth")
        .client_token;
    let b = call(&core, Verb::Write, "auth/token/create", &root, json!({}))
        .await
        .expect("b")
        .auth
        .expect("auth")
        .client_token;
    for _ in 0..2 {
        let r = call(&core, Verb::Read, "secret/data/nothing", &a, json!({})).await;
        assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}");
    }
    match call(&core, Verb::Read, "secret/data/nothing", &a, json!({})).await {
        Err(Error::RateLimited {
            message,
            retry_after_seconds,
        }) => {
            assert_eq!(message, "rate limit quota exceeded");
            assert!(
                (1..=30).contains(&retry_after_seconds),
                "{retry_after_seconds}"
            );
        }
        other => panic!("expected 429, got {other:?}"),
    }
    assert!(
        matches!(
            call(&core, Verb::Read, "secret/data/nothing", &b, json!({})).await,
            Err(Error::NotFound { .. })
        ),
        "another token has its own bucket"
    );
    call(&core, Verb::Read, "sys/mounts", &a, json!({}))
        .await
        .ok();
    assert_eq!(
        core.metrics()
            .counter("ward_rate_limit_rejections_total", &[("quota", "kv")]),
        1
    );

    core.clock().advance(60);
    assert!(
        matches!(
            call(&core, Verb::Read, "secret/data/nothing", &a, json!({})).await,
            Err(Error::NotFound { .. })
        ),
        "refilled"
    );

    // Address-keyed (Vault's default) with a block interval.
    call(
        &core,
        Verb::Write,
        "sys/quotas/rate-limit/global",
        &root,
        json!({"rate": 1, "block_interval": "30s"}),
    )
    .await
    .expect("quota");
    let from = |address: &str| {
        let mut request = Request::new(Verb::Read, "sys/mounts").with_token(&root);
        request.remote_address = Some(address.to_string());
        request
    };
    core.handle_request(from("10.0.0.1")).await.expect("first");
    assert!(matches!(
        core.handle_request(from("10.0.0.1")).await,
        Err(Error::RateLimited {
            retry_after_seconds: 30,
            ..
        })
    ));
    core.handle_request(from("10.0.0.2"))
        .await
        .expect("another address");
    call(
        &core,
        Verb::Delete,
        "sys/quotas/rate-limit/global",
        &root,
        json!({}),
    )
    .await
    .ok();
}

/// Parses the Prometheus text format: every line is a comment or `name{labels} value`.
fn parse_prometheus(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (
                name,
                rest.strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line}")),
            ),
            None => (series, ""),
        };
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name: {line}"
        );
        let mut map = BTreeMap::new();
        let mut rest = labels;
        while !rest.is_empty() {
            let (key, after) = rest
                .split_once("=\"")
                .unwrap_or_else(|| panic!("bad label: {line}"));
            let mut value = String::new();
            let mut chars = after.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(if escaped == 'n' { '\n' } else { escaped });
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    c => value.push(c),
                }
            }
            let end = end.unwrap_or_else(|| panic!("unterminated label value: {line}"));
            map.insert(key.to_string(), value);
            rest = after[end + 1..].trim_start_matches(',');
        }
        samples.push((name.to_string(), map, value));
    }
    samples
}

#[tokio::test]
async fn metrics_count_requests_logins_and_refusals_in_prometheus_format() {
    let (core, root) = dev_core().await;
    call(
        &core,
        Verb::Write,
        "sys/auth/userpass",
        &root,
        json!({"type": "userpass"}),
    )
    .await
    .expect("mount");
    call(
        &core,
        Verb::Write,
        "auth/userpass/users/bob",
        &root,
        json!({"password": PASSWORD_CANARY}),
    )
    .await
    .expect("user");
    let login = |password: &str| {
        Request::new(Verb::Write, "auth/userpass/login/bob")
            .with_data(json!({"password": password}))
    };
    core.handle_request(login(PASSWORD_CANARY))
        .await
        .expect("login");
    assert!(core.handle_request(login("wrong")).await.is_err());
    call(&core, Verb::Read, "secret/data/none", &root, json!({}))
        .await
        .ok();

    let text = core.metrics_prometheus();
    assert!(!text.contains(PASSWORD_CANARY) && !text.contains(&root));
    let samples = parse_prometheus(&text);
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
            .sum()
    };
    assert_eq!(
        value("ward_logins_total", &[("mount", "auth/userpass/")]),
        1.0
    );
    assert_eq!(
        value("ward_login_failures_total", &[("mount", "auth/userpass/")]),
        1.0
    );
    assert_eq!(
        value(
            "ward_requests_total",
            &[
                ("mount", "secret/"),
                ("operation", "read"),
                ("status", "not_found")
            ]
        ),
        1.0
    );
    assert!(
        value(
            "ward_request_duration_seconds_count",
            &[("mount", "secret/")]
        ) >= 1.0
    );
    assert_eq!(value("ward_sealed", &[]), 0.0);
    assert_eq!(value("ward_barrier_key_term", &[]), 1.0);
    assert!(value("ward_tokens_created_total", &[("mount", "auth/userpass/")]) >= 1.0);

    // Through the API: JSON by default, the text on request; read on sys/metrics needed.
    let json_metrics = call(&core, Verb::Read, "sys/metrics", &root, json!({}))
        .await
        .expect("json");
    assert!(json_metrics.data.as_ref().expect("data")["Counters"]
        .as_array()
        .is_some_and(|c| !c.is_empty()));
    let prom = call(
        &core,
        Verb::Read,
        "sys/metrics",
        &root,
        json!({"format": "prometheus"}),
    )
    .await
    .expect("prom");
    assert!(prom.data.as_ref().expect("data")["prometheus"]
        .as_str()
        .is_some_and(|t| t.contains("ward_requests_total")));
    let nobody = call(
        &core,
        Verb::Write,
        "auth/token/create",
        &root,
        json!({"policies": ["default"]}),
    )
    .await
    .expect("t")
    .auth
    .expect("auth")
    .client_token;
    assert!(matches!(
        call(&core, Verb::Read, "sys/metrics", &nobody, json!({})).await,
        Err(Error::PermissionDenied(_))
    ));
}

/// One delivered alert: URL, headers, body.
type Delivery = (String, Vec<(String, String)>, Vec<u8>);

/// Records deliveries; fails the first `failures` attempts, like a receiver that is down.
#[derive(Default)]
struct RecordingTransport {
    failures: Mutex<u32>,
    attempts: Mutex<u32>,
    delivered: Mutex<Vec<Delivery>>,
}

#[async_trait::async_trait]
impl AlertTransport for RecordingTransport {
    async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<(), String> {
        *self.attempts.lock().expect("lock") += 1;
        let mut failures = self.failures.lock().expect("lock");
        if *failures > 0 {
            *failures -= 1;
            return Err("connection refused".into());
        }
        self.delivered
            .lock()
            .expect("lock")
            .push((url.to_string(), headers.to_vec(), body));
        Ok(())
    }
}

async fn poll<T>(deadline: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < end, "condition not met in time");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_policy_change_alert_is_signed_and_retried_until_delivered() {
    let (core, root) = dev_core().await;
    let transport = Arc::new(RecordingTransport {
        failures: Mutex::new(2),
        ..RecordingTransport::default()
    });
    core.set_alert_transport(transport.clone());
    call(
        &core,
        Verb::Write,
        "sys/alerts/config",
        &root,
        json!({"retry_initial_backoff_ms": 20}),
    )
    .await
    .expect("config");
    call(&core, Verb::Write, "sys/alerts/sinks/ops", &root, json!({"type": "webhook", "url": "http://127.0.0.1:9/hook", "secret": "s3cret-signing", "min_severity": "high"})).await.expect("sink");
    let sink = call(&core, Verb::Read, "sys/alerts/sinks/ops", &root, json!({}))
        .await
        .expect("read sink");
    assert!(
        sink.data.as_ref().expect("data").get("secret").is_none(),
        "the secret is never returned"
    );

    call(
        &core,
        Verb::Write,
        "sys/policies/acl/dev",
        &root,
        json!({"policy": "path \"secret/*\" { capabilities = [\"read\"] }\n"}),
    )
    .await
    .expect("policy");
    let (url, headers, body) = poll(Duration::from_secs(5), || {
        transport.delivered.lock().expect("lock").first().cloned()
    })
    .await;
    assert_eq!(url, "http://127.0.0.1:9/hook");
    assert!(
        *transport.attempts.lock().expect("lock") >= 3,
        "two failed attempts, then delivered"
    );
    let signature = headers
        .iter()
        .find(|(k, _)| k == "X-Ward-Signature")
        .map(|(_, v)| v.clone())
        .expect("signed");
    assert_eq!(
        signature,
        ward_core::alerts::signature("s3cret-signing", &body)
    );
    let alert: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(alert["rule"], json!("policy-change"));
    assert_eq!(alert["severity"], json!("high"));
    assert_eq!(alert["details"]["actor"]["display_name"], json!("root"));
    assert!(alert["details"]["diff"]
        .as_str()
        .is_some_and(|d| d.contains("+path \"secret/*\"")));
    assert!(
        !String::from_utf8_lossy(&body).contains(&root),
        "no token in an alert"
    );
    poll(Duration::from_secs(5), || {
        (core.alerts().pending_count() == 0).then_some(())
    })
    .await;
    assert_eq!(
        core.metrics()
            .counter("ward_policy_changes_total", &[("operation", "create")]),
        1
    );
}

#[tokio::test]
async fn undelivered_alerts_stay_pending_and_visible() {
    let (core, root) = dev_core().await;
    call(
        &core,
        Verb::Write,
        "sys/alerts/sinks/ops",
        &root,
        json!({"url": "http://127.0.0.1:9/hook"}),
    )
    .await
    .expect("sink");
    call(
        &core,
        Verb::Write,
        "sys/policy/p",
        &root,
        json!({"policy": "path \"a\" { capabilities = [\"read\"] }"}),
    )
    .await
    .expect("policy");
    call(&core, Verb::Delete, "sys/policy/p", &root, json!({}))
        .await
        .expect("delete");
    let pending = call(&core, Verb::Read, "sys/alerts/pending", &root, json!({}))
        .await
        .expect("pending");
    assert_eq!(
        pending.data.as_ref().expect("data")["count"],
        json!(2),
        "no transport installed: both alerts wait"
    );
    assert!(core.metrics_prometheus().contains("ward_alerts_pending 2"));
}

#[tokio::test]
async fn audit_devices_survive_a_seal_and_the_chain_continues() {
    let physical: Arc<dyn ward_storage::Physical> = Arc::new(InMemory::new());
    ward_testlog::init("core-audit");
    let core = Core::new(
        CoreConfig::default(),
        physical.clone(),
        ward_engines::registry(),
    );
    let init = core.init(1, 1).await.expect("init");
    core.unseal(init.keys[0].to_vec()).await.expect("unseal");
    let root = init.root_token.to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let log: PathBuf = dir.path().join("audit.log");
    enable_file(&core, &root, "file", &log, json!({}))
        .await
        .expect("enable");
    call(&core, Verb::Read, "sys/mounts", &root, json!({}))
        .await
        .expect("read");
    core.seal().await;
    core.unseal(init.keys[0].to_vec()).await.expect("unseal");
    call(&core, Verb::Read, "sys/mounts", &root, json!({}))
        .await
        .expect("read after unseal");
    let report = verify_files(&[&log]);
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(
        entries(&log).len(),
        5,
        "enable, read (2), read after unseal (2)"
    );
}

/// The public key a checkpointing device shows at `sys/audit-checkpoint/<name>`.
async fn checkpoint_key(core: &Core, root: &str, name: &str) -> ([u8; 32], Value) {
    let response = call(
        core,
        Verb::Read,
        &format!("sys/audit-checkpoint/{name}"),
        root,
        json!({}),
    )
    .await
    .expect("checkpoint status");
    let data = Value::Object(response.data.expect("data"));
    let key = ward_core::audit::parse_public_key(data["public_key"].as_str().expect("key"))
        .expect("an Ed25519 public key");
    (key, data)
}

fn verify_with_key(
    key: [u8; 32],
    files: &[(&str, &[u8])],
    server: Option<(u64, &str)>,
) -> ward_core::audit::VerifyReport {
    let mut verifier = Verifier::new().with_public_key(key);
    if let Some((sequence, head)) = server {
        verifier = verifier.expect_checkpoint(sequence, head);
    }
    for (name, bytes) in files {
        verifier.feed(name, *bytes).expect("read");
    }
    verifier.finish()
}

/// Rewrites every `prev_hash` from line `from` (0-based) on, as someone who edited a line
/// and wants the chain to hold again would.
fn rechain(lines: &mut [String], from: usize) {
    for i in from.max(1)..lines.len() {
        let previous = ward_core::audit::line_hash(lines[i - 1].as_bytes());
        let at = lines[i].find("\"prev_hash\":\"").expect("prev_hash") + 13;
        lines[i].replace_range(at..at + 64, &hex::encode(previous));
    }
}

fn joined(lines: &[String]) -> Vec<u8> {
    lines
        .iter()
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .into_bytes()
}

fn is_checkpoint(line: &str) -> bool {
    serde_json::from_str::<Value>(line).expect("json")["type"] == "checkpoint"
}

#[tokio::test]
async fn signed_checkpoints_verify_and_reveal_edits_forgeries_and_cuts() {
    let (core, root) = dev_core().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.log");
    let other = dir.path().join("other.log");
    for (name, path) in [("file", &log), ("other", &other)] {
        enable_file(&core, &root, name, path, json!({"checkpoint_entries": "4"}))
            .await
            .expect("enable");
    }
    for i in 0..9 {
        call(
            &core,
            Verb::Write,
            &format!("secret/data/k{i}"),
            &root,
            json!({"data": {"v": SECRET_CANARY}}),
        )
        .await
        .expect("write");
    }
    let (key, status) = checkpoint_key(&core, &root, "file").await;
    let (other_key, _) = checkpoint_key(&core, &root, "other").await;
    assert_eq!(status["algorithm"], "ed25519");
    assert_eq!(status["checkpoint_entries"], 4);
    let server_sequence = status["last_checkpoint"]["sequence"].as_u64().expect("seq");
    let server_head = status["last_checkpoint"]["head"].as_str().expect("head");
    let lines: Vec<String> = read(&log).lines().map(str::to_string).collect();
    let checkpoint_lines: Vec<usize> = (0..lines.len())
        .filter(|i| is_checkpoint(&lines[*i]))
        .collect();
    assert!(
        checkpoint_lines.len() >= 4,
        "one per 4 entries: {checkpoint_lines:?}"
    );
    assert_eq!(checkpoint_lines[0], 4, "after the 4th entry");
    assert!(!read(&log).contains(SECRET_CANARY));

    // The untouched log: every checkpoint verifies and matches the server's last.
    let report = verify_with_key(
        key,
        &[("log", &joined(&lines))],
        Some((server_sequence, server_head)),
    );
    assert!(report.is_valid(), "{report:?}");
    assert_eq!(report.checkpoints.found, checkpoint_lines.len() as u64);
    assert_eq!(report.checkpoints.verified, report.checkpoints.found);
    assert!(
        report.checkpoints.last.as_ref().map(|c| c.sequence) >= Some(server_sequence),
        "reading the status is audited too, so the file may be a checkpoint ahead"
    );

    // Checked against another device's key: every signature is someone else's.
    let report = verify_with_key(other_key, &[("log", &joined(&lines))], None);
    let problem = report.checkpoints.first_problem.expect("wrong key found");
    assert_eq!(problem.line, 5);
    assert!(matches!(
        problem.issue,
        ward_core::audit::CheckpointIssue::WrongKey { .. }
    ));

    // An entry before a checkpoint edited, and the chain rewritten after it so it holds:
    // the checkpoint no longer signs the head (and re-pointing its head breaks the signature).
    let mut edited = lines.clone();
    edited[2] = edited[2].replace("\"display_name\":\"root\"", "\"display_name\":\"mallory\"");
    assert_ne!(edited[2], lines[2]);
    rechain(&mut edited, 3);
    let report = verify_with_key(key, &[("log", &joined(&edited))], None);
    assert!(report.is_intact(), "the rewritten chain holds: {report:?}");
    let problem = report.checkpoints.first_problem.expect("edit found");
    assert_eq!(
        (problem.line, problem.issue),
        (5, ward_core::audit::CheckpointIssue::HeadMismatch)
    );
    let first = checkpoint_lines[0];
    let old_head = &lines[first][14..78];
    let new_head = edited[first][14..78].to_string();
    edited[first] = edited[first].replace(
        &format!("\"head\":\"{old_head}\""),
        &format!("\"head\":\"{new_head}\""),
    );
    rechain(&mut edited, first + 1);
    let report = verify_with_key(key, &[("log", &joined(&edited))], None);
    assert!(report.is_intact());
    assert_eq!(
        report.checkpoints.first_problem.map(|p| (p.line, p.issue)),
        Some((5, ward_core::audit::CheckpointIssue::BadSignature))
    );

    // Lines removed before a checkpoint: the chain breaks there.
    let mut removed = lines.clone();
    removed.remove(1);
    let report = verify_with_key(key, &[("log", &joined(&removed))], None);
    assert_eq!(report.first_break.map(|b| b.line), Some(2));

    // A removed checkpoint with the chain rewritten: the next checkpoint's counts do not add up.
    let mut dropped = lines.clone();
    dropped.remove(first);
    rechain(&mut dropped, first);
    let report = verify_with_key(key, &[("log", &joined(&dropped))], None);
    assert!(report.is_intact());
    assert!(matches!(
        report.checkpoints.first_problem.map(|p| p.issue),
        Some(
            ward_core::audit::CheckpointIssue::HeadMismatch
                | ward_core::audit::CheckpointIssue::CountMismatch { .. }
        )
    ));

    // The end cut after a checkpoint: the server's last checkpoint is missing from the file.
    let cut: Vec<String> = lines[..=checkpoint_lines[1]].to_vec();
    let report = verify_with_key(
        key,
        &[("log", &joined(&cut))],
        Some((server_sequence, server_head)),
    );
    assert!(report.is_intact());
    assert_eq!(
        report.checkpoints.first_problem.map(|p| p.issue),
        Some(ward_core::audit::CheckpointIssue::BehindServer { server_sequence })
    );
    // Without the server, a cut that drops the last checkpoint but leaves the entries before
    // it shows: more entries follow the previous checkpoint than its interval allows.
    let cut: Vec<String> = lines[..checkpoint_lines[1]].to_vec();
    let report = verify_with_key(key, &[("log", &joined(&cut))], None);
    assert_eq!(
        report.checkpoints.first_problem.map(|p| p.issue),
        Some(ward_core::audit::CheckpointIssue::Missing)
    );
}

#[tokio::test]
async fn checkpoints_continue_across_rotation_and_restart() {
    let physical: Arc<dyn ward_storage::Physical> = Arc::new(InMemory::new());
    ward_testlog::init("core-audit");
    let core = Core::new(
        CoreConfig::default(),
        physical.clone(),
        ward_engines::registry(),
    );
    let init = core.init(1, 1).await.expect("init");
    core.unseal(init.keys[0].to_vec()).await.expect("unseal");
    let root = init.root_token.to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.log");
    let rotated = dir.path().join("audit.log.1");
    enable_file(&core, &root, "file", &log, json!({"checkpoint_entries": 3}))
        .await
        .expect("enable");
    for _ in 0..4 {
        call(&core, Verb::Read, "sys/mounts", &root, json!({}))
            .await
            .expect("read");
    }
    std::fs::rename(&log, &rotated).expect("rotate");
    let failed = core.reopen_audit_devices().await.expect("reopen");
    assert!(failed.is_empty(), "{failed:?}");
    let old = read(&rotated);
    assert!(
        is_checkpoint(old.lines().last().expect("lines")),
        "rotation seals the old file with a checkpoint"
    );
    for _ in 0..2 {
        call(&core, Verb::Read, "sys/mounts", &root, json!({}))
            .await
            .expect("read after rotation");
    }
    // A restart (seal, unseal) finds the last checkpoint in the file and counts on; the
    // entries left unsigned at the stop get their checkpoint at once.
    core.seal().await;
    core.unseal(init.keys[0].to_vec()).await.expect("unseal");
    assert!(
        is_checkpoint(read(&log).lines().last().expect("lines")),
        "the restart signs what the stop left unsigned"
    );
    for _ in 0..3 {
        call(&core, Verb::Read, "sys/mounts", &root, json!({}))
            .await
            .expect("read after restart");
    }
    let (key, status) = checkpoint_key(&core, &root, "file").await;
    let sequence = status["last_checkpoint"]["sequence"].as_u64().expect("seq");
    let head = status["last_checkpoint"]["head"]
        .as_str()
        .expect("head")
        .to_string();
    let (old, new) = (
        std::fs::read(&rotated).expect("old"),
        std::fs::read(&log).expect("new"),
    );
    let report = verify_with_key(
        key,
        &[("old", &old), ("new", &new)],
        Some((sequence, &head)),
    );
    assert!(report.is_valid(), "{report:?}");
    assert!(report.starts_at_genesis);
    assert!(report.checkpoints.found >= 5, "{report:?}");
    assert_eq!(report.checkpoints.verified, report.checkpoints.found);
    let total = entries(&rotated).len() + entries(&log).len();
    let last = report.checkpoints.last.expect("a checkpoint");
    assert_eq!(
        last.entries + report.checkpoints.entries_after_last + report.checkpoints.found,
        total as u64,
        "every entry is counted once"
    );
    // The new file alone starts mid-chain: its first checkpoint's counts are taken on trust.
    let report = verify_with_key(key, &[("new", &new)], None);
    assert!(report.is_valid(), "{report:?}");
}

#[tokio::test]
async fn a_checkpoint_follows_within_its_interval_and_bad_options_are_refused() {
    let (core, root) = dev_core().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.log");
    for options in [
        json!({"checkpoint_entries": "many"}),
        json!({"checkpoint_interval": "soon"}),
        json!({"checkpoint_interval": "0s"}),
    ] {
        let refused = enable_file(&core, &root, "file", &log, options.clone()).await;
        assert!(
            matches!(refused, Err(Error::InvalidRequest(_))),
            "{options}: {refused:?}"
        );
    }
    enable_file(
        &core,
        &root,
        "plain",
        &dir.path().join("plain.log"),
        json!({}),
    )
    .await
    .expect("enable");
    let no_checkpoints = call(
        &core,
        Verb::Read,
        "sys/audit-checkpoint/plain",
        &root,
        json!({}),
    )
    .await;
    assert!(
        matches!(no_checkpoints, Err(Error::InvalidRequest(_))),
        "{no_checkpoints:?}"
    );

    enable_file(
        &core,
        &root,
        "file",
        &log,
        json!({"checkpoint_interval": "1s"}),
    )
    .await
    .expect("enable");
    call(&core, Verb::Read, "sys/mounts", &root, json!({}))
        .await
        .expect("read");
    // No entry arrives after this one: the device's own timer writes the checkpoint.
    let sealed = poll(Duration::from_secs(10), || {
        let content = read(&log);
        let last = content.lines().last().is_some_and(is_checkpoint);
        last.then_some(content)
    })
    .await;
    let (key, _) = checkpoint_key(&core, &root, "file").await;
    let report = verify_with_key(key, &[("log", sealed.as_bytes())], None);
    assert!(report.is_valid(), "{report:?}");
    assert_eq!(report.checkpoints.entries_after_last, 0);
}

/// Records how many lines each write carries.
struct CountingSink(Arc<Mutex<Vec<usize>>>);

#[async_trait::async_trait]
impl AuditSink for CountingSink {
    async fn write(&mut self, batch: &[u8]) -> std::io::Result<()> {
        let lines = batch.iter().filter(|b| **b == b'\n').count();
        self.0.lock().expect("lock").push(lines);
        Ok(())
    }
}

struct CountingFactory(Arc<Mutex<Vec<usize>>>);

#[async_trait::async_trait]
impl AuditSinkFactory for CountingFactory {
    async fn open(
        &self,
        _options: &BTreeMap<String, String>,
    ) -> Result<Box<dyn AuditSink>, String> {
        Ok(Box::new(CountingSink(self.0.clone())))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn concurrent_requests_share_writes() {
    let (core, root) = dev_core().await;
    let writes = Arc::new(Mutex::new(Vec::new()));
    core.register_audit_factory("counting", Arc::new(CountingFactory(writes.clone())));
    call(
        &core,
        Verb::Write,
        "sys/audit/counting",
        &root,
        json!({"type": "counting"}),
    )
    .await
    .expect("enable");
    writes.lock().expect("lock").clear();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (core, root) = (core.clone(), root.clone());
            tokio::spawn(async move {
                for _ in 0..4 {
                    call(&core, Verb::Read, "secret/config", &root, json!({}))
                        .await
                        .expect("read");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let writes = writes.lock().expect("lock").clone();
    assert_eq!(
        writes.iter().sum::<usize>(),
        16 * 4 * 2,
        "every entry written once"
    );
    // Without sharing it would take 128 writes. With it, each task's first request may still
    // run alone while the others are being spawned (a loaded machine, or debug logging on),
    // so allow those 16 on top of a handful of shared ones.
    assert!(
        writes.len() <= 32,
        "128 entries of 16 concurrent requests in {} writes: {writes:?}",
        writes.len()
    );
}

/// Keys whose value may be empty in an entry: `auth` is always set (`{}` for a request
/// without a token, as Vault's pointer is), and `policy_results.allowed` is written even
/// when false. Data and metadata are the caller's own and are not looked into.
fn empty_fields(value: &Value, at: &str, found: &mut Vec<String>) {
    let Value::Object(map) = value else { return };
    for (key, item) in map {
        let path = if at.is_empty() {
            key.clone()
        } else {
            format!("{at}.{key}")
        };
        let empty = match item {
            Value::Null => true,
            Value::Bool(b) => !b,
            Value::Number(n) => n.as_u64() == Some(0),
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
        };
        let may_be_empty = path == "auth" || path == "auth.policy_results.allowed";
        if empty && !may_be_empty {
            found.push(path.clone());
        }
        if key != "data" && key != "metadata" {
            empty_fields(item, &path, found);
        }
    }
}

fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .map(|map| map.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[track_caller]
fn assert_keys(value: &Value, present: &[&str], absent: &[&str], what: &str) {
    let keys = keys(value);
    for key in present {
        assert!(keys.contains(key), "{what}: `{key}` missing from {value}");
    }
    for key in absent {
        assert!(
            !keys.contains(key),
            "{what}: empty `{key}` written in {value}"
        );
    }
}

/// Vault's entries leave out every empty, zero or false field (Go's `omitempty`); Ward's
/// do too, so a line is as long as what it says. Covers a KV read, a login, a denied
/// request and a wrapped response.
#[tokio::test]
async fn entries_leave_out_empty_fields_as_vault_does() {
    let (core, root) = dev_core().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.log");
    enable_file(&core, &root, "file", &log, json!({}))
        .await
        .expect("enable");
    call(
        &core,
        Verb::Write,
        "secret/data/app",
        &root,
        json!({"data": {"api_key": SECRET_CANARY}}),
    )
    .await
    .expect("write");
    call(&core, Verb::Read, "secret/data/app", &root, json!({}))
        .await
        .expect("read");
    call(
        &core,
        Verb::Write,
        "sys/auth/userpass",
        &root,
        json!({"type": "userpass"}),
    )
    .await
    .expect("mount userpass");
    call(
        &core,
        Verb::Write,
        "auth/userpass/users/alice",
        &root,
        json!({"password": PASSWORD_CANARY, "token_ttl": "1h"}),
    )
    .await
    .expect("user");
    let login = core
        .handle_request(
            Request::new(Verb::Write, "auth/userpass/login/alice")
                .with_data(json!({"password": PASSWORD_CANARY})),
        )
        .await
        .expect("login");
    let user_token = login.auth.expect("auth").client_token;
    let denied = call(&core, Verb::Read, "secret/data/app", &user_token, json!({})).await;
    assert!(matches!(denied, Err(Error::PermissionDenied(_))));
    let mut wrapped = Request::new(Verb::Read, "secret/data/app").with_token(&root);
    wrapped.wrap_ttl = Some(60);
    core.handle_request(wrapped).await.expect("wrapped read");

    let lines = entries(&log);
    for entry in &lines {
        let mut found = Vec::new();
        empty_fields(entry, "", &mut found);
        assert!(
            found.is_empty(),
            "empty fields {found:?} written in {entry}"
        );
    }
    let find = |kind: &str, operation: &str, path: &str, wrap: bool| {
        lines
            .iter()
            .find(|e| {
                e["type"] == kind
                    && e["request"]["operation"] == operation
                    && e["request"]["path"] == path
                    && e["request"].get("wrap_ttl").is_some() == wrap
                    && e["auth"]["policy_results"]["allowed"] != false
            })
            .unwrap_or_else(|| panic!("{kind} entry of {path}"))
    };

    // A KV read by the root token: no request data, no lease, no wrapping, no error.
    let read = find("response", "read", "secret/data/app", false);
    assert_keys(
        read,
        &["time", "type", "auth", "request", "response"],
        &["error"],
        "read entry",
    );
    assert_keys(
        &read["request"],
        &[
            "id",
            "operation",
            "mount_point",
            "mount_type",
            "mount_accessor",
            "client_token",
            "client_token_accessor",
            "namespace",
            "path",
        ],
        &["data", "remote_address", "wrap_ttl"],
        "read request",
    );
    assert_keys(
        &read["response"],
        &["mount_point", "mount_type", "mount_accessor", "data"],
        &[
            "secret",
            "auth",
            "wrap_info",
            "warnings",
            "lease_duration",
            "renewable",
            "lease_expire_time",
        ],
        "read response",
    );
    assert_keys(
        &read["auth"],
        &[
            "client_token",
            "accessor",
            "display_name",
            "policies",
            "token_policies",
            "token_type",
            "token_issue_time",
            "policy_results",
        ],
        // The root token never expires and has unlimited uses.
        &["token_ttl", "num_uses", "remaining_uses"],
        "read auth",
    );

    // A login: no token yet, so `auth` is `{}` and the request names no token.
    let login_request = find("request", "update", "auth/userpass/login/alice", false);
    assert_eq!(login_request["auth"], json!({}));
    assert_keys(
        &login_request["request"],
        &[
            "id",
            "operation",
            "mount_point",
            "path",
            "data",
            "namespace",
        ],
        &["client_token", "client_token_accessor"],
        "login request",
    );
    let login_response = find("response", "update", "auth/userpass/login/alice", false);
    assert_keys(
        &login_response["response"]["auth"],
        &[
            "client_token",
            "accessor",
            "policies",
            "token_policies",
            "metadata",
            "token_type",
            "lease_duration",
            "lease_expire_time",
        ],
        &["num_uses", "identity_policies"],
        "login response auth",
    );
    assert_keys(
        &login_response["response"],
        &["auth", "lease_duration", "lease_expire_time"],
        &["secret", "wrap_info", "warnings"],
        "login response",
    );

    // A denial: the error is written, the response block is not, `allowed` is false.
    let denials: Vec<&Value> = lines
        .iter()
        .filter(|e| e["auth"]["policy_results"]["allowed"] == false)
        .collect();
    assert_eq!(
        denials.len(),
        2,
        "request and response entries of the denial"
    );
    for denial in &denials {
        assert_keys(
            denial,
            &["time", "type", "auth", "request", "error"],
            &["response"],
            "denial",
        );
    }

    // A wrapped read: the wrapping token, its ttl and when and where it was made.
    let wrap = find("response", "read", "secret/data/app", true);
    assert_eq!(wrap["request"]["wrap_ttl"], json!(60));
    assert_keys(
        &wrap["response"]["wrap_info"],
        &["token", "accessor", "ttl", "creation_time", "creation_path"],
        // A wrapped KV read wraps no token of its own.
        &["wrapped_accessor"],
        "wrap info",
    );
    assert!(wrap["response"]["wrap_info"]["token"]
        .as_str()
        .is_some_and(|t| t.starts_with("hmac-sha256:")));
}
