//! End-to-end tests of `ward policy fmt | validate | test | explain | plan | apply`: the
//! binary against the example repository (`examples/policies`), bad input, and a dev server
//! on port 0 for plan/apply, drift, a sealed server, an unreachable one and a weak token.
//!
//! The server's address is read from its start-up report, with a deadline; no sleeps.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WARD: &str = env!("CARGO_BIN_EXE_ward");
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
const ROOT_TOKEN: &str = "dev-root";

/// A running `ward server -dev`; killed when dropped.
struct Server {
    child: Child,
    address: String,
}

impl Server {
    fn start(home: &Path) -> Server {
        let log = support::ServerLog::new("policy-tools");
        let mut child = Command::new(WARD)
            .args([
                "server",
                "-dev",
                "-dev-listen-address=127.0.0.1:0",
                &format!("-dev-root-token-id={ROOT_TOKEN}"),
            ])
            .env("HOME", home)
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
                // Keep draining so the server never blocks on a full pipe.
                let _ = lines_tx.send(line);
            }
        });
        let deadline = Instant::now() + STARTUP_DEADLINE;
        let mut report = Vec::new();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(remaining) {
                Ok(line) if line.starts_with("==> Ward server started!") => break,
                Ok(line) => report.push(line),
                Err(e) => panic!("server did not start ({e}); output so far: {report:#?}"),
            }
        }
        let address = report
            .iter()
            .find_map(|line| line.trim().strip_prefix("Api Address: "))
            .expect("Api Address in the start-up report")
            .to_string();
        Server { child, address }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `ward ARGS` with this address and token (None: no token at all).
fn ward(home: &Path, address: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(WARD);
    command
        .args(args)
        .env("HOME", home)
        .env("WARD_ADDR", address)
        .env_remove("VAULT_ADDR")
        .env_remove("VAULT_TOKEN")
        .env_remove("WARD_TOKEN");
    if let Some(token) = token {
        command.env("WARD_TOKEN", token);
    }
    command.output().expect("run ward")
}

/// Asserts the exit code and returns stdout and stderr together.
fn expect_code(output: &Output, code: i32) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(code), "{text}");
    text
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies")
}

/// A copy of the example repository in a temporary directory.
fn example_copy(into: &Path) -> PathBuf {
    let target = into.join("policies");
    copy_tree(&examples(), &target);
    target
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let path = entry.path();
        if path.is_dir() {
            copy_tree(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).expect("copy");
        }
    }
}

fn path_arg(path: &Path) -> String {
    path.display().to_string()
}

#[test]
fn example_repository_is_formatted_valid_and_tested() {
    let home = tempfile::tempdir().expect("home");
    let dir = path_arg(&examples());
    let offline = "http://127.0.0.1:9";
    expect_code(
        &ward(
            home.path(),
            offline,
            None,
            &["policy", "fmt", "-check", &dir],
        ),
        0,
    );
    let text = expect_code(
        &ward(home.path(), offline, None, &["policy", "validate", &dir]),
        0,
    );
    assert!(text.contains("0 error(s), 0 warning(s)"), "{text}");
    let text = expect_code(
        &ward(home.path(), offline, None, &["policy", "test", &dir]),
        0,
    );
    assert!(text.contains("ok      agent reads db creds"), "{text}");
    assert!(text.contains("10 passed, 0 failed"), "{text}");
    let output = ward(
        home.path(),
        offline,
        None,
        &["policy", "test", "-format=junit", &dir],
    );
    let xml = expect_code(&output, 0);
    assert!(
        String::from_utf8_lossy(&output.stdout).starts_with("<?xml"),
        "{xml}"
    );
    let text = expect_code(
        &ward(
            home.path(),
            offline,
            None,
            &[
                "policy",
                "explain",
                "-policy=deployer",
                &format!("-dir={dir}"),
                "-operation=update",
                "sys/policies/acl/root",
            ],
        ),
        0,
    );
    assert!(
        text.contains("Winner: \"sys/policies/acl/root\" beats \"sys/policies/acl/*\""),
        "{text}"
    );
    assert!(text.contains("Decision: denied"), "{text}");
}

#[test]
fn failing_test_and_formatting_change_exit_codes() {
    let home = tempfile::tempdir().expect("home");
    let work = tempfile::tempdir().expect("work");
    let repository = example_copy(work.path());
    let dir = path_arg(&repository);
    let offline = "http://127.0.0.1:9";
    std::fs::write(
        repository.join("tests/oops_test.hcl"),
        "case \"agent writes creds\" { policies = [\"agent\"] path = \"database/creds/read-only\" operation = \"update\" expect = \"allow\" }\n",
    )
    .expect("write");
    let text = expect_code(
        &ward(home.path(), offline, None, &["policy", "test", &dir]),
        1,
    );
    assert!(
        text.contains(
            "FAILED  agent writes creds (tests/oops_test.hcl:1): expected allow, got deny"
        ),
        "{text}"
    );
    assert!(text.contains("10 passed, 1 failed"), "{text}");
    let text = expect_code(
        &ward(
            home.path(),
            offline,
            None,
            &["policy", "fmt", "-check", &dir],
        ),
        1,
    );
    assert!(text.contains("oops_test.hcl"), "{text}");
    expect_code(
        &ward(home.path(), offline, None, &["policy", "fmt", &dir]),
        0,
    );
    expect_code(
        &ward(
            home.path(),
            offline,
            None,
            &["policy", "fmt", "-check", &dir],
        ),
        0,
    );
}

#[test]
fn bad_input_gives_clear_errors() {
    let home = tempfile::tempdir().expect("home");
    let offline = "http://127.0.0.1:9";
    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "agent.hcl",
            b"path \"a\" {\n  capabilities = [\"read\"\n}\n".to_vec(),
            "agent.hcl:3:1: error: syntax error",
        ),
        (
            "bad name.hcl",
            b"path \"a\" { capabilities = [\"read\"] }\n".to_vec(),
            "bad name.hcl: error: invalid policy name",
        ),
        (
            "latin1.hcl",
            b"# caf\xe9\n".to_vec(),
            "latin1.hcl:1:6: error: file is not valid UTF-8",
        ),
        (
            "huge.hcl",
            vec![b'#'; 2 * 1024 * 1024],
            "huge.hcl: error: file is too large",
        ),
    ];
    for (name, bytes, expected) in cases {
        let work = tempfile::tempdir().expect("work");
        std::fs::write(work.path().join(name), bytes).expect("write");
        let dir = path_arg(work.path());
        let text = expect_code(
            &ward(home.path(), offline, None, &["policy", "validate", &dir]),
            1,
        );
        assert!(text.contains(expected), "{name}: {text}");
        // plan refuses a broken directory before talking to any server.
        let text = expect_code(
            &ward(home.path(), offline, Some("t"), &["policy", "plan", &dir]),
            1,
        );
        assert!(
            text.contains("nothing was sent to the server"),
            "{name}: {text}"
        );
    }
}

#[test]
fn plan_apply_drift_and_server_errors() {
    let home = tempfile::tempdir().expect("home");
    let home = home.path();
    let server = Server::start(home);
    let address_owned = server.address.clone();
    let address = address_owned.as_str();
    let work = tempfile::tempdir().expect("work");
    let repository = example_copy(work.path());
    let dir = path_arg(&repository);
    let root = Some(ROOT_TOKEN);

    let text = expect_code(&ward(home, address, root, &["policy", "plan", &dir]), 2);
    assert!(text.contains("+ add policy \"agent\""), "{text}");
    assert!(text.contains("+ add group \"ops\""), "{text}");
    assert!(text.contains("+ add token_role \"agent\""), "{text}");
    let text = expect_code(
        &ward(
            home,
            address,
            root,
            &["policy", "apply", "-message=initial import", &dir],
        ),
        0,
    );
    assert!(text.contains("applied: + add policy \"agent\""), "{text}");
    let text = expect_code(&ward(home, address, root, &["policy", "plan", &dir]), 0);
    assert!(text.contains("No changes"), "{text}");
    let text = expect_code(&ward(home, address, root, &["policy", "apply", &dir]), 0);
    assert!(text.contains("No changes"), "safe to run twice: {text}");

    // Drift: a policy changed by hand.
    expect_code(
        &ward(
            home,
            address,
            root,
            &[
                "write",
                "sys/policies/acl/agent",
                "policy=path \"secret/*\" { capabilities = [\"read\"] }",
            ],
        ),
        0,
    );
    let text = expect_code(&ward(home, address, root, &["policy", "plan", &dir]), 2);
    assert!(text.contains("~ change policy \"agent\""), "{text}");
    assert!(text.contains("- path \"secret/*\""), "{text}");
    expect_code(
        &ward(
            home,
            address,
            root,
            &["policy", "apply", "-message=revert", &dir],
        ),
        0,
    );
    expect_code(&ward(home, address, root, &["policy", "plan", &dir]), 0);

    // A token that may not read policies.
    let output = ward(
        home,
        address,
        root,
        &[
            "write",
            "-format=json",
            "auth/token/create",
            "policies=agent",
        ],
    );
    let created: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("token create JSON");
    let weak = created["auth"]["client_token"]
        .as_str()
        .expect("client_token");
    let text = expect_code(
        &ward(home, address, Some(weak), &["policy", "plan", &dir]),
        1,
    );
    assert!(text.contains("permission denied"), "{text}");

    // No token at all (a HOME without the dev server's ~/.ward-token).
    let empty_home = tempfile::tempdir().expect("empty home");
    let text = expect_code(
        &ward(empty_home.path(), address, None, &["policy", "plan", &dir]),
        1,
    );
    assert!(text.contains("WARD_TOKEN"), "{text}");

    // A sealed server.
    expect_code(&ward(home, address, root, &["operator", "seal"]), 0);
    let text = expect_code(&ward(home, address, root, &["policy", "plan", &dir]), 1);
    assert!(text.contains("sealed"), "{text}");

    // An unreachable one.
    drop(server);
    let text = expect_code(&ward(home, address, root, &["policy", "plan", &dir]), 1);
    assert!(text.contains("cannot reach Ward at"), "{text}");
}
