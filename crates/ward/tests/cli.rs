//! The `ward` CLI driven as a user drives it: a process per command, against a real server
//! (a dev server per test, or a `-config` server on SQLite for the operator workflows), each
//! verb with its success and its common failures, JSON output parsed and checked.
//!
//! Each test starts its own server on `127.0.0.1:0` and reads the bound address from the
//! start-up report: nextest runs every test in its own process, where a server shared through
//! a static would outlive the test. A dev server starts in milliseconds, so this costs little.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const WARD: &str = env!("CARGO_BIN_EXE_ward");
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
const ROOT: &str = "root";

/// A running `ward server`; killed when dropped.
struct Server {
    child: Child,
    address: String,
    home: tempfile::TempDir,
}

impl Server {
    fn dev() -> Server {
        Server::start(&[
            "-dev",
            "-dev-listen-address=127.0.0.1:0",
            &format!("-dev-root-token-id={ROOT}"),
        ])
    }

    /// A `-config` server on SQLite in its own temporary directory: uninitialised, sealed.
    fn config() -> Server {
        let home = tempfile::tempdir().expect("home");
        let config = home.path().join("ward.hcl");
        std::fs::write(
            &config,
            format!(
                "storage \"sqlite\" {{\n  path = \"{}\"\n}}\nlistener \"tcp\" {{\n  address = \"127.0.0.1:0\"\n  tls_disable = true\n}}\ndisable_mlock = true\n",
                home.path().join("ward.db").display()
            ),
        )
        .expect("config");
        Server::start_in(home, &[&format!("-config={}", config.display())])
    }

    fn start(args: &[&str]) -> Server {
        Server::start_in(tempfile::tempdir().expect("home"), args)
    }

    fn start_in(home: tempfile::TempDir, args: &[&str]) -> Server {
        let log = support::ServerLog::new("cli");
        let mut child = Command::new(WARD)
            .arg("server")
            .args(args)
            .env("HOME", home.path())
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
                // Keep draining after the receiver is gone so the server never blocks.
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
        Server {
            child,
            address,
            home,
        }
    }

    fn home(&self) -> &Path {
        self.home.path()
    }

    /// `ward ARGS` as the root user of a dev server.
    fn root(&self, args: &[&str]) -> Out {
        self.run(Some(ROOT), args, None)
    }

    fn run(&self, token: Option<&str>, args: &[&str], stdin: Option<&str>) -> Out {
        ward_at(&self.address, self.home(), token, args, stdin)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one `ward` run left behind.
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    args: String,
}

impl Out {
    /// Asserts the exit code; returns stdout.
    fn code(&self, code: i32) -> &str {
        assert_eq!(
            self.code,
            Some(code),
            "ward {}\nstdout: {}\nstderr: {}",
            self.args,
            self.stdout,
            self.stderr
        );
        &self.stdout
    }

    fn ok(&self) -> &str {
        self.code(0)
    }

    fn json(&self) -> Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("ward {}: not JSON ({e}): {}", self.args, self.stdout))
    }

    /// Asserts a failure with `code` whose stderr contains every one of `needles`.
    fn fails(&self, code: i32, needles: &[&str]) {
        self.code(code);
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "ward {}: stderr lacks {needle:?}:\n{}",
                self.args,
                self.stderr
            );
        }
    }
}

fn ward_at(
    address: &str,
    home: &Path,
    token: Option<&str>,
    args: &[&str],
    stdin: Option<&str>,
) -> Out {
    let mut command = Command::new(WARD);
    command
        .args(args)
        .env("HOME", home)
        .env("WARD_ADDR", address)
        .env_remove("VAULT_ADDR")
        .env_remove("WARD_TOKEN")
        .env_remove("VAULT_TOKEN")
        .env_remove("WARD_FORMAT")
        .env_remove("VAULT_FORMAT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(token) = token {
        command.env("WARD_TOKEN", token);
    }
    let mut child = command.spawn().expect("spawn ward");
    if let Some(mut pipe) = child.stdin.take() {
        if let Some(input) = stdin {
            pipe.write_all(input.as_bytes()).expect("write stdin");
        }
    }
    let output = child.wait_with_output().expect("ward output");
    Out {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).to_string(),
        args: args.join(" "),
    }
}

/// `ward ARGS` with no server involved.
fn ward(args: &[&str]) -> Out {
    let home = tempfile::tempdir().expect("home");
    ward_at("http://127.0.0.1:1", home.path(), None, args, None)
}

/// The value of a row in a `Key  Value` table.
fn row(table: &str, key: &str) -> Option<String> {
    table.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?;
        rest.starts_with("  ").then(|| rest.trim().to_string())
    })
}

fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

#[test]
fn kv_verbs_on_version_2_and_1_with_every_input_and_output_form() {
    let server = Server::dev();
    let dir = server.home().to_path_buf();
    let file = write_file(&dir, "pw.txt", "CANARY-cli-from-a-file");
    let file_arg = format!("password=@{}", file.display());

    // put: plain, @file, stdin value; get: table, JSON, YAML, -field.
    server
        .root(&["kv", "put", "secret/app", "user=alice", &file_arg])
        .ok();
    assert_eq!(
        server
            .root(&["kv", "get", "-field=password", "secret/app"])
            .ok(),
        "CANARY-cli-from-a-file\n"
    );
    let json = server
        .root(&["kv", "get", "-format=json", "secret/app"])
        .json();
    assert_eq!(json["data"]["data"]["user"], "alice");
    assert_eq!(json["data"]["metadata"]["version"], 1);
    let yaml = server
        .root(&["kv", "get", "-format=yaml", "secret/app"])
        .ok()
        .to_string();
    assert!(yaml.contains("\n    user: alice\n"), "{yaml}");
    assert!(yaml.contains("    version: 1\n"), "{yaml}");
    let table = server.root(&["kv", "get", "secret/app"]).ok().to_string();
    assert!(table.contains("====== Data ======"), "{table}");
    assert_eq!(row(&table, "user").as_deref(), Some("alice"));
    server
        .run(
            Some(ROOT),
            &["kv", "put", "secret/app", "user=bob", "password=-"],
            Some("CANARY-cli-from-stdin\n"),
        )
        .ok();
    assert_eq!(
        server
            .root(&["kv", "get", "-field=password", "secret/app"])
            .ok(),
        "CANARY-cli-from-stdin\n"
    );
    server
        .run(
            Some(ROOT),
            &["kv", "put", "secret/json", "-"],
            Some(r#"{"nested": {"a": 1}, "list": [1, 2]}"#),
        )
        .ok();
    let json = server
        .root(&["kv", "get", "-format=json", "secret/json"])
        .json();
    assert_eq!(json["data"]["data"]["nested"]["a"], 1);

    // Versions: -version, -cas, patch, delete/undelete/destroy, metadata, rollback.
    assert_eq!(
        server
            .root(&["kv", "get", "-version=1", "-field=user", "secret/app"])
            .ok(),
        "alice\n"
    );
    server
        .root(&["kv", "put", "-cas=1", "secret/app", "user=carol"])
        .fails(2, &["check-and-set"]);
    server
        .root(&[
            "kv",
            "put",
            "-cas=2",
            "secret/app",
            "user=carol",
            "password=p3",
        ])
        .ok();
    server
        .root(&["kv", "patch", "secret/app", "password=patched"])
        .ok();
    let json = server
        .root(&["kv", "get", "-format=json", "secret/app"])
        .json();
    assert_eq!(
        json["data"]["data"],
        serde_json::json!({"user": "carol", "password": "patched"})
    );
    assert_eq!(json["data"]["metadata"]["version"], 4);
    server
        .root(&["kv", "patch", "-method=rw", "secret/app", "extra=1"])
        .ok();
    assert_eq!(
        server
            .root(&["kv", "get", "-field=extra", "secret/app"])
            .ok(),
        "1\n"
    );
    server
        .root(&["kv", "delete", "-versions=5", "secret/app"])
        .ok();
    server
        .root(&["kv", "get", "secret/app"])
        .fails(2, &["No value found at secret/data/app"]);
    server
        .root(&["kv", "undelete", "-versions=5", "secret/app"])
        .ok();
    assert_eq!(
        server
            .root(&["kv", "get", "-field=extra", "secret/app"])
            .ok(),
        "1\n"
    );
    server
        .root(&["kv", "destroy", "-versions=1", "secret/app"])
        .ok();
    let metadata = server
        .root(&["kv", "metadata", "get", "-format=json", "secret/app"])
        .json();
    assert_eq!(metadata["data"]["versions"]["1"]["destroyed"], true);
    assert_eq!(metadata["data"]["current_version"], 5);
    server
        .root(&["kv", "rollback", "-version=1", "secret/app"])
        .fails(2, &["destroyed"]);
    server
        .root(&["kv", "rollback", "-version=2", "secret/app"])
        .ok();
    assert_eq!(
        server
            .root(&["kv", "get", "-field=user", "secret/app"])
            .ok(),
        "bob\n"
    );
    server
        .root(&[
            "kv",
            "metadata",
            "put",
            "-max-versions=3",
            "-custom-metadata=owner=ops",
            "secret/app",
        ])
        .ok();
    server
        .root(&[
            "kv",
            "metadata",
            "patch",
            "-custom-metadata=team=sre",
            "secret/app",
        ])
        .ok();
    let metadata = server
        .root(&["kv", "metadata", "get", "-format=json", "secret/app"])
        .json();
    assert_eq!(metadata["data"]["max_versions"], 3);
    assert_eq!(metadata["data"]["custom_metadata"]["owner"], "ops");
    assert_eq!(metadata["data"]["custom_metadata"]["team"], "sre");
    assert!(server
        .root(&["kv", "metadata", "get", "secret/app"])
        .ok()
        .contains("====== Version 6 ======"));

    // list, -mount, metadata delete.
    let keys = server
        .root(&["kv", "list", "-format=json", "secret/"])
        .json();
    assert_eq!(keys, serde_json::json!(["app", "json"]));
    assert!(server
        .root(&["kv", "list", "-mount=secret", ""])
        .ok()
        .contains("app"));
    assert_eq!(
        server
            .root(&["kv", "get", "-mount=secret", "-field=user", "app"])
            .ok(),
        "bob\n"
    );
    server
        .root(&["kv", "metadata", "delete", "secret/app"])
        .ok();
    server.root(&["kv", "get", "secret/app"]).code(2);
    server
        .root(&["kv", "list", "secret/nothing"])
        .fails(2, &["No value found"]);

    // KV version 1: the same verbs without versions.
    server.root(&["secrets", "enable", "-path=kv1", "kv"]).ok();
    server.root(&["kv", "put", "kv1/db", "password=v1"]).ok();
    server.root(&["kv", "patch", "kv1/db", "user=admin"]).ok();
    let json = server.root(&["kv", "get", "-format=json", "kv1/db"]).json();
    assert_eq!(
        json["data"],
        serde_json::json!({"password": "v1", "user": "admin"})
    );
    server
        .root(&["kv", "undelete", "-versions=1", "kv1/db"])
        .fails(2, &["version 2"]);
    server.root(&["kv", "delete", "kv1/db"]).ok();
    server.root(&["kv", "get", "kv1/db"]).code(2);

    // Malformed input and usage errors exit 2 and say what is wrong.
    server
        .root(&["kv", "put", "secret/app", "novalue"])
        .fails(2, &["expected key=value"]);
    server
        .root(&["kv", "put", "secret/app"])
        .fails(2, &["needs data"]);
    server
        .run(
            Some(ROOT),
            &["kv", "put", "secret/app", "-"],
            Some("not json"),
        )
        .fails(2, &["not valid JSON"]);
    server
        .root(&["kv", "put", "secret/app", "k=@/no/such/file"])
        .fails(1, &["cannot read /no/such/file"]);
    server
        .root(&["kv", "get", "-version=x", "secret/app"])
        .fails(2, &["whole number"]);
    server
        .root(&["kv", "destroy", "secret/app"])
        .fails(2, &["needs -versions"]);
    server
        .root(&["kv", "get", "nomount/app"])
        .fails(2, &["no secrets engine is mounted"]);
    server
        .root(&["kv", "frobnicate"])
        .fails(2, &["unknown subcommand"]);
    server
        .root(&["kv", "get", "-format=xml", "secret/app"])
        .fails(2, &["-format=xml"]);
}

#[test]
fn generic_verbs_read_write_list_delete_patch_unwrap_and_path_help() {
    let server = Server::dev();
    server
        .root(&[
            "write",
            "sys/policies/acl/reader",
            r#"policy=path "secret/*" { capabilities = ["read"] }"#,
        ])
        .ok();
    let json = server
        .root(&["read", "-format=json", "sys/policies/acl/reader"])
        .json();
    assert_eq!(json["data"]["name"], "reader");
    assert!(server
        .root(&["read", "-field=policy", "sys/policies/acl/reader"])
        .ok()
        .contains("secret/*"));
    assert!(server
        .root(&["list", "sys/policies/acl"])
        .ok()
        .contains("reader"));
    let listed = server
        .root(&["list", "-format=json", "sys/policies/acl"])
        .json();
    assert!(listed
        .as_array()
        .expect("keys")
        .iter()
        .any(|k| k == "reader"));
    server.root(&["delete", "sys/policies/acl/reader"]).ok();
    server
        .root(&["read", "sys/policies/acl/reader"])
        .fails(2, &["No value found"]);

    // write with a JSON object on stdin, patch with a merge patch, read with query values.
    server
        .run(
            Some(ROOT),
            &["write", "secret/data/doc", "-"],
            Some(r#"{"data": {"a": "1", "b": "2"}}"#),
        )
        .ok();
    server
        .run(
            Some(ROOT),
            &["patch", "secret/data/doc", "-"],
            Some(r#"{"data": {"b": "3"}}"#),
        )
        .ok();
    let json = server
        .root(&["read", "-format=json", "secret/data/doc", "version=2"])
        .json();
    assert_eq!(
        json["data"]["data"],
        serde_json::json!({"a": "1", "b": "3"})
    );
    server
        .root(&["write", "secret/data/doc"])
        .fails(2, &["no data to write"]);
    server
        .root(&["write", "secret/data/doc", "oops"])
        .fails(2, &["expected key=value"]);
    server.root(&["read"]).fails(2, &["missing PATH"]);
    server
        .root(&["list", "a", "b"])
        .fails(2, &["too many arguments"]);
    server
        .root(&["read", "-no-such-flag", "x"])
        .fails(2, &["-no-such-flag"]);

    // Response wrapping: -wrap-ttl on any verb, then unwrap once.
    let wrapped = server
        .root(&["read", "-wrap-ttl=5m", "-format=json", "secret/data/doc"])
        .json();
    let wrapping_token = wrapped["wrap_info"]["token"]
        .as_str()
        .expect("wrapping token")
        .to_string();
    let unwrapped = server
        .run(None, &["unwrap", "-format=json", &wrapping_token], None)
        .json();
    assert_eq!(unwrapped["data"]["data"]["a"], "1");
    server
        .run(None, &["unwrap", &wrapping_token], None)
        .fails(2, &["wrapping token is not valid"]);
    let field = server
        .root(&[
            "write",
            "-wrap-ttl=1m",
            "-field=wrapping_token",
            "sys/wrapping/wrap",
            "k=v",
        ])
        .ok()
        .trim()
        .to_string();
    assert_eq!(
        server.run(None, &["unwrap", "-field=k", &field], None).ok(),
        "v\n"
    );

    // path-help: no help text yet, said plainly.
    server
        .root(&["path-help", "secret/"])
        .fails(2, &["No help available for this path: secret/"]);
}

#[test]
fn token_verbs_with_vault_flags() {
    let server = Server::dev();
    server.root(&["policy", "write", "agent", "-"]).code(2); // no stdin given: an empty policy is refused by the server
    server
        .run(
            Some(ROOT),
            &["policy", "write", "agent", "-"],
            Some(r#"path "secret/data/agents/*" { capabilities = ["read"] }"#),
        )
        .ok();
    let created = server
        .root(&[
            "token",
            "create",
            "-policy=agent",
            "-policy=default",
            "-ttl=30m",
            "-explicit-max-ttl=1h",
            "-display-name=bot",
            "-metadata=team=ml",
            "-use-limit=10",
            "-format=json",
        ])
        .json();
    let token = created["auth"]["client_token"]
        .as_str()
        .expect("token")
        .to_string();
    let accessor = created["auth"]["accessor"]
        .as_str()
        .expect("accessor")
        .to_string();
    assert_eq!(created["auth"]["lease_duration"], 1800);
    assert_eq!(
        created["auth"]["policies"],
        serde_json::json!(["agent", "default"])
    );
    let table = server
        .root(&["token", "create", "-policy=agent", "-orphan"])
        .ok()
        .to_string();
    assert!(
        row(&table, "token").is_some_and(|t| t.starts_with("wrs.")),
        "{table}"
    );
    assert_eq!(
        row(&table, "token_policies").as_deref(),
        Some("[agent default]")
    );
    let batch = server
        .root(&[
            "token",
            "create",
            "-type=batch",
            "-policy=agent",
            "-field=token",
        ])
        .ok()
        .trim()
        .to_string();
    assert!(batch.starts_with("wrb."), "{batch}");
    let periodic = server
        .root(&[
            "token",
            "create",
            "-period=20m",
            "-no-default-policy",
            "-policy=agent",
            "-format=json",
        ])
        .json();
    assert_eq!(periodic["auth"]["lease_duration"], 1200);
    assert_eq!(periodic["auth"]["policies"], serde_json::json!(["agent"]));

    // lookup: self, a token, an accessor.
    let own = server
        .run(Some(&token), &["token", "lookup", "-format=json"], None)
        .json();
    assert_eq!(own["data"]["display_name"], "token-bot");
    assert_eq!(own["data"]["meta"]["team"], "ml");
    let other = server
        .root(&["token", "lookup", "-format=json", &token])
        .json();
    assert_eq!(other["data"]["accessor"], accessor.as_str());
    let by_accessor = server
        .root(&["token", "lookup", "-accessor", "-format=json", &accessor])
        .json();
    assert_eq!(by_accessor["data"]["id"], "");
    server.root(&["token", "lookup", "no-such-token"]).code(2);

    // renew, capabilities.
    let renewed = server
        .root(&["token", "renew", "-increment=10m", "-format=json", &token])
        .json();
    assert_eq!(renewed["auth"]["lease_duration"], 600);
    assert_eq!(
        server
            .run(
                Some(&token),
                &["token", "renew", "-field=token_duration"],
                None
            )
            .ok()
            .trim()
            .parse::<u64>()
            .ok()
            .map(|d| d > 0),
        Some(true)
    );
    assert_eq!(
        server
            .run(
                Some(&token),
                &["token", "capabilities", "secret/data/agents/x"],
                None
            )
            .ok(),
        "read\n"
    );
    assert_eq!(
        server
            .run(
                Some(&token),
                &["token", "capabilities", "secret/data/other"],
                None
            )
            .ok(),
        "deny\n"
    );
    assert_eq!(
        server
            .root(&["token", "capabilities", &token, "secret/data/agents/x"])
            .ok(),
        "read\n"
    );
    let caps = server
        .root(&[
            "token",
            "capabilities",
            "-accessor",
            "-format=json",
            &accessor,
            "secret/data/agents/x",
        ])
        .json();
    assert_eq!(caps, serde_json::json!(["read"]));

    // revoke: by accessor, by token, -self; and the usage errors.
    server.root(&["token", "revoke"]).fails(2, &["-self"]);
    server
        .root(&["token", "revoke", "-mode=bogus", "x"])
        .fails(2, &["-mode=bogus"]);
    let second = server
        .root(&["token", "create", "-field=token_accessor"])
        .ok()
        .trim()
        .to_string();
    server.root(&["token", "revoke", "-accessor", &second]).ok();
    server
        .root(&["token", "lookup", "-accessor", &second])
        .code(2);
    server.root(&["token", "revoke", &token]).ok();
    server.root(&["token", "lookup", &token]).code(2);
    let own = server
        .root(&["token", "create", "-field=token"])
        .ok()
        .trim()
        .to_string();
    assert!(server
        .run(Some(&own), &["token", "revoke", "-self"], None)
        .ok()
        .contains("Success!"));
    server
        .run(Some(&own), &["token", "lookup"], None)
        .fails(2, &["not valid", "ward login"]);
    server
        .root(&["token", "create", "-type=wrong"])
        .fails(2, &["-type=wrong"]);
    server
        .root(&["token", "create", "-ttl=soon"])
        .fails(2, &["-ttl=soon"]);
    let empty = tempfile::tempdir().expect("home");
    ward_at(
        &server.address,
        empty.path(),
        None,
        &["token", "lookup"],
        None,
    )
    .fails(2, &["ward login"]);
    server
        .root(&["token", "bogus"])
        .fails(2, &["unknown subcommand"]);
}

#[test]
fn login_methods_store_the_token_helper_file() {
    let server = Server::dev();
    let home = tempfile::tempdir().expect("home");
    let run = |token: Option<&str>, args: &[&str], stdin: Option<&str>| {
        ward_at(&server.address, home.path(), token, args, stdin)
    };
    let token_file = home.path().join(".ward-token");

    // ward login TOKEN checks the token and stores it, mode 0600.
    let out = run(None, &["login", ROOT], None);
    assert!(
        out.ok().contains("Success! You are now authenticated"),
        "{}",
        out.stdout
    );
    assert_eq!(
        std::fs::read_to_string(&token_file).expect("token file"),
        ROOT
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(run(None, &["print", "token"], None).ok(), "root\n");
    run(None, &["login", "not-a-token"], None).fails(2, &["not valid"]);
    // The token from stdin (a pipe: no prompt), as `ward login -`.
    assert!(run(None, &["login", "-no-print", "-"], Some("root\n"))
        .ok()
        .is_empty());

    // userpass: the password from stdin when not given.
    run(None, &["auth", "enable", "userpass"], None).ok();
    run(
        None,
        &[
            "write",
            "auth/userpass/users/alice",
            "password=pw",
            "token_policies=default",
        ],
        None,
    )
    .ok();
    let out = run(
        None,
        &["login", "-method=userpass", "username=alice"],
        Some("pw\n"),
    );
    assert_eq!(
        row(out.ok(), "token_meta_username").as_deref(),
        Some("alice")
    );
    let stored = std::fs::read_to_string(&token_file).expect("token file");
    assert!(stored.starts_with("wrs."), "{stored}");
    assert_eq!(run(None, &["print", "token"], None).ok().trim(), stored);
    let lookup = run(None, &["token", "lookup", "-format=json"], None).json();
    assert_eq!(lookup["data"]["meta"]["username"], "alice");
    run(
        Some(ROOT),
        &[
            "login",
            "-method=userpass",
            "username=alice",
            "password=wrong",
        ],
        None,
    )
    .fails(2, &["invalid"]);
    run(
        Some(ROOT),
        &["login", "-method=userpass", "password=pw"],
        None,
    )
    .fails(2, &["missing username"]);

    // approle, -no-store, -token-only, -path.
    run(
        Some(ROOT),
        &["auth", "enable", "-path=robots", "approle"],
        None,
    )
    .ok();
    run(
        Some(ROOT),
        &["write", "auth/robots/role/ci", "token_policies=default"],
        None,
    )
    .ok();
    let role_id = run(
        Some(ROOT),
        &["read", "-field=role_id", "auth/robots/role/ci/role-id"],
        None,
    )
    .ok()
    .trim()
    .to_string();
    let secret_id = run(
        Some(ROOT),
        &[
            "write",
            "-f",
            "-field=secret_id",
            "auth/robots/role/ci/secret-id",
        ],
        None,
    )
    .ok()
    .trim()
    .to_string();
    let before = std::fs::read_to_string(&token_file).expect("token file");
    let token = run(
        None,
        &[
            "login",
            "-method=approle",
            "-path=robots",
            "-no-store",
            "-token-only",
            &format!("role_id={role_id}"),
            &format!("secret_id={secret_id}"),
        ],
        None,
    )
    .ok()
    .trim()
    .to_string();
    assert!(token.starts_with("wrs."), "{token}");
    assert_eq!(
        std::fs::read_to_string(&token_file).expect("token file"),
        before
    );
    let json = run(
        Some(ROOT),
        &[
            "login",
            "-method=approle",
            "-path=robots",
            "-no-store",
            "-format=json",
            &format!("role_id={role_id}"),
            "secret_id=wrong",
        ],
        None,
    );
    json.code(2);

    // jwt and oidc on a mount that is not configured: the server's reason, exit 2.
    run(Some(ROOT), &["auth", "enable", "jwt"], None).ok();
    let jwt_file = write_file(home.path(), "jwt", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln");
    run(
        None,
        &[
            "login",
            "-method=jwt",
            "-no-store",
            "role=r",
            &format!("jwt=@{}", jwt_file.display()),
        ],
        None,
    )
    .code(2);
    run(None, &["login", "-method=jwt", "role=r"], None).fails(2, &["missing jwt"]);
    run(
        None,
        &["login", "-method=oidc", "-path=jwt", "role=r", "port=0"],
        None,
    )
    .fails(
        2,
        &["could not load configuration", "auth/jwt/oidc/auth_url"],
    );

    // No token at all: print token says how to log in.
    let empty = tempfile::tempdir().expect("home");
    ward_at(
        &server.address,
        empty.path(),
        None,
        &["print", "token"],
        None,
    )
    .fails(1, &["ward login"]);
}

#[test]
fn policy_verbs_and_fmt() {
    let server = Server::dev();
    let dir = server.home().to_path_buf();
    let messy = "path \"secret/data/agents/*\" {\ncapabilities=[\"read\",\"list\"] # agents read\n}\n# admin\npath \"sys/*\" { capabilities = [\"deny\"] }\n";
    let file = write_file(&dir, "agents.hcl", messy);
    let file_arg = file.display().to_string();
    server.root(&["policy", "write", "agents", &file_arg]).ok();
    assert!(server
        .root(&["policy", "list"])
        .ok()
        .lines()
        .any(|l| l == "agents"));
    let listed = server.root(&["policy", "list", "-format=json"]).json();
    assert!(listed
        .as_array()
        .expect("list")
        .iter()
        .any(|p| p == "agents"));
    assert!(server
        .root(&["policy", "read", "agents"])
        .ok()
        .contains("secret/data/agents/*"));
    let json = server
        .root(&["policy", "read", "-format=json", "agents"])
        .json();
    assert_eq!(json["data"]["name"], "agents");
    server
        .root(&["policy", "read", "nope"])
        .fails(2, &["no policy named"]);
    server
        .run(
            Some(ROOT),
            &["policy", "write", "broken", "-"],
            Some("path \"x\" { capabilities = [\"read\" }"),
        )
        .code(2);
    server
        .root(&["policy", "write", "agents", "/no/such.hcl"])
        .fails(1, &["cannot read"]);
    server.root(&["policy", "delete", "agents"]).ok();
    assert!(!server
        .root(&["policy", "list"])
        .ok()
        .lines()
        .any(|l| l == "agents"));

    // fmt: -check says it would change (exit 1), fmt rewrites, then it is idempotent.
    ward(&["policy", "fmt", "-check", &file_arg]).fails(1, &["not formatted"]);
    assert_eq!(std::fs::read_to_string(&file).expect("file"), messy);
    ward(&["policy", "fmt", &file_arg]).ok();
    let formatted = std::fs::read_to_string(&file).expect("file");
    assert_eq!(
        formatted,
        "path \"secret/data/agents/*\" {\n  capabilities = [\"read\", \"list\"] # agents read\n}\n\n# admin\npath \"sys/*\" {\n  capabilities = [\"deny\"]\n}\n"
    );
    ward(&["policy", "fmt", "-check", &file_arg]).ok();
    ward(&["policy", "fmt", &file_arg]).ok();
    assert_eq!(std::fs::read_to_string(&file).expect("file"), formatted);
    let bad = write_file(
        &dir,
        "bad.hcl",
        "path \"x\" {\n  capabilities = [\"read\"\n",
    );
    // A file that does not parse is a local error (exit 1) naming the file, line and column.
    ward(&["policy", "fmt", &bad.display().to_string()]).fails(1, &["bad.hcl:3:1", "syntax error"]);
    let unknown = write_file(
        &dir,
        "unknown.hcl",
        "path \"x\" { capabilities = [\"fly\"] }\n",
    );
    // fmt only lays a file out; validate is the verb that judges what it says.
    ward(&["policy", "fmt", &unknown.display().to_string()]).ok();
    let repo = unknown.with_file_name("repo");
    std::fs::create_dir_all(&repo).expect("repo dir");
    std::fs::copy(&unknown, repo.join("unknown.hcl")).expect("copy");
    // Findings are validate's output (stdout), as a linter's are; the exit code says error.
    let validated = ward(&["policy", "validate", &repo.display().to_string()]);
    assert_eq!(validated.code, Some(1), "{}", validated.stdout);
    assert!(
        validated.stdout.contains("unknown capability \"fly\""),
        "{}",
        validated.stdout
    );
}

#[test]
fn secrets_auth_and_audit_verbs() {
    let server = Server::dev();
    server
        .root(&[
            "secrets",
            "enable",
            "-path=agents",
            "-version=2",
            "-description=agent keys",
            "-default-lease-ttl=1h",
            "-max-lease-ttl=2h",
            "-options=foo=bar",
            "kv",
        ])
        .ok();
    let mounts = server.root(&["secrets", "list", "-format=json"]).json();
    assert_eq!(mounts["agents/"]["type"], "kv");
    assert_eq!(mounts["agents/"]["description"], "agent keys");
    assert_eq!(mounts["agents/"]["options"]["version"], "2");
    assert_eq!(mounts["agents/"]["config"]["default_lease_ttl"], 3600);
    let table = server
        .root(&["secrets", "list", "-detailed"])
        .ok()
        .to_string();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("agents/") && l.contains("agent keys")),
        "{table}"
    );
    server
        .root(&["kv", "put", "agents/openai", "api_key=sk-1"])
        .ok();
    server
        .root(&[
            "secrets",
            "tune",
            "-max-lease-ttl=3h",
            "-description=tuned",
            "agents",
        ])
        .ok();
    let tuned = server
        .root(&["read", "-format=json", "sys/mounts/agents/tune"])
        .json();
    assert_eq!(tuned["data"]["max_lease_ttl"], 10800);
    server
        .root(&["secrets", "tune", "agents"])
        .fails(2, &["nothing to tune"]);
    server.root(&["secrets", "move", "agents", "bots"]).ok();
    assert_eq!(
        server
            .root(&["kv", "get", "-field=api_key", "bots/openai"])
            .ok(),
        "sk-1\n"
    );
    server
        .root(&["secrets", "enable", "-path=bots", "kv"])
        .fails(2, &["bots"]);
    server.root(&["secrets", "disable", "bots"]).ok();
    assert!(server
        .root(&["secrets", "list", "-format=json"])
        .json()
        .get("bots/")
        .is_none());
    server
        .root(&["secrets", "enable"])
        .fails(2, &["not enough arguments"]);
    server
        .root(&["secrets", "enable", "-version=two", "kv"])
        .fails(2, &["-version=two"]);

    server
        .root(&[
            "auth",
            "enable",
            "-path=people",
            "-description=humans",
            "userpass",
        ])
        .ok();
    let methods = server.root(&["auth", "list", "-format=json"]).json();
    assert_eq!(methods["people/"]["type"], "userpass");
    server
        .root(&["auth", "tune", "-default-lease-ttl=15m", "people"])
        .ok();
    let tuned = server
        .root(&["read", "-format=json", "sys/auth/people/tune"])
        .json();
    assert_eq!(tuned["data"]["default_lease_ttl"], 900);
    assert!(server.root(&["auth", "list"]).ok().contains("people/"));
    server.root(&["auth", "disable", "people"]).ok();
    assert!(server
        .root(&["auth", "list", "-format=json"])
        .json()
        .get("people/")
        .is_none());
    server.root(&["auth", "enable", "no-such-method"]).code(2);

    // audit: enable a file device, see it listed, verify its chain, disable it. The file goes
    // with the suite's logs when scripts/test keeps them (the canary scan reads it).
    let log = match std::env::var_os("WARD_TEST_LOG_DIR") {
        Some(directory) => std::path::PathBuf::from(directory)
            .join(format!("rust-cli-{}-audit.log", std::process::id())),
        None => server.home().join("ward_audit.log"),
    };
    server
        .root(&[
            "audit",
            "enable",
            "file",
            &format!("file_path={}", log.display()),
        ])
        .ok();
    let devices = server.root(&["audit", "list", "-format=json"]).json();
    assert_eq!(devices["file/"]["type"], "file");
    assert!(server
        .root(&["audit", "list", "-detailed"])
        .ok()
        .contains("file/"));
    server
        .root(&["kv", "put", "secret/audited", "k=CANARY-cli-audited"])
        .ok();
    server.root(&["audit", "disable", "file"]).ok();
    assert_eq!(
        server.root(&["audit", "list"]).ok(),
        "No audit devices are enabled.\n"
    );
    let log_arg = log.display().to_string();
    let verified = ward(&["audit", "verify", "-format=json", &log_arg]).json();
    assert_eq!(verified["intact"], true);
    assert!(
        verified["lines"].as_u64().is_some_and(|n| n >= 2),
        "{verified}"
    );
    let text = std::fs::read_to_string(&log).expect("audit log");
    let tampered = text.replacen("\"type\":\"request\"", "\"type\":\"requesT\"", 1);
    assert_ne!(tampered, text);
    std::fs::write(&log, tampered).expect("tamper");
    ward(&["audit", "verify", &log_arg]).code(2);
    ward(&["audit", "verify", "/no/such/log"]).fails(1, &["cannot open"]);
    server
        .root(&["audit", "enable"])
        .fails(2, &["missing TYPE"]);
}

#[test]
fn audit_verify_checks_signed_checkpoints_with_the_server_key() {
    let server = Server::dev();
    let log = server.home().join("checkpointed_audit.log");
    let other = server.home().join("other_audit.log");
    for (name, path) in [("signed", &log), ("other", &other)] {
        server
            .root(&[
                "audit",
                "enable",
                &format!("-path={name}"),
                "file",
                &format!("file_path={}", path.display()),
                "checkpoint_entries=3",
            ])
            .ok();
    }
    for i in 0..4 {
        server
            .root(&["kv", "put", &format!("secret/audited{i}"), "k=v"])
            .ok();
    }
    let log_arg = log.display().to_string();
    let verified = server
        .root(&[
            "audit",
            "verify",
            "-device=signed",
            "-format=json",
            &log_arg,
        ])
        .json();
    assert_eq!(verified["intact"], true, "{verified}");
    let found = verified["checkpoints"].as_u64().expect("count");
    assert!(found >= 3, "{verified}");
    assert_eq!(verified["checkpoints_verified"].as_u64(), Some(found));

    // Offline with the key read once from the server; another device's key is refused.
    let key_of = |device: &str| {
        server
            .root(&[
                "read",
                "-format=json",
                &format!("sys/audit-checkpoint/{device}"),
            ])
            .json()["data"]["public_key"]
            .as_str()
            .expect("public key")
            .to_string()
    };
    let key_file = server.home().join("signed.pub");
    std::fs::write(&key_file, key_of("signed")).expect("key file");
    let key_arg = format!("-public-key=@{}", key_file.display());
    let offline = ward(&["audit", "verify", &key_arg, &log_arg]);
    assert!(
        offline.ok().contains("signatures verified"),
        "{}",
        offline.ok()
    );
    let forged = ward(&[
        "audit",
        "verify",
        &format!("-public-key={}", key_of("other")),
        &log_arg,
    ]);
    assert!(forged.code(2).contains("signed by another key"));

    // A copy cut after its first checkpoint: fine offline, but the server knows a later one.
    // (A copy, because the server keeps appending to the real file.)
    let text = std::fs::read_to_string(&log).expect("audit log");
    let first = text
        .lines()
        .position(|l| l.contains("\"type\":\"checkpoint\""))
        .expect("a checkpoint");
    let cut: String = text
        .lines()
        .take(first + 1)
        .map(|l| format!("{l}\n"))
        .collect();
    let cut_path = server.home().join("cut_audit.log");
    std::fs::write(&cut_path, cut).expect("cut");
    let cut_arg = cut_path.display().to_string();
    ward(&["audit", "verify", &key_arg, &cut_arg]).code(0);
    let cut = server.root(&["audit", "verify", "-device=signed", &cut_arg]);
    let cut = cut.code(2);
    assert!(cut.contains("not in these files: the log was cut"), "{cut}");
}

#[test]
fn lease_verbs_on_database_credentials() {
    let server = Server::dev();
    server.root(&["secrets", "enable", "database"]).ok();
    server
        .root(&[
            "write", "database/config/pg", "plugin_name=postgresql-database-plugin",
            "connection_url=postgresql://{{username}}:{{password}}@127.0.0.1:5432/postgres?sslmode=disable",
            "username=postgres", "password=unused-with-trust-auth", "allowed_roles=*",
        ])
        .ok();
    server
        .root(&[
            "write", "database/roles/ro", "db_name=pg",
            "creation_statements=CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
            "default_ttl=1h", "max_ttl=24h",
        ])
        .ok();
    let issue = || {
        server
            .root(&["read", "-format=json", "database/creds/ro"])
            .json()
    };
    let creds = issue();
    let lease_id = creds["lease_id"].as_str().expect("lease id").to_string();
    assert!(lease_id.starts_with("database/creds/ro/"), "{lease_id}");
    let table = server
        .root(&["lease", "lookup", &lease_id])
        .ok()
        .to_string();
    assert_eq!(row(&table, "id").as_deref(), Some(lease_id.as_str()));
    let looked_up = server
        .root(&["lease", "lookup", "-format=json", &lease_id])
        .json();
    assert_eq!(looked_up["data"]["renewable"], true);
    let renewed = server
        .root(&[
            "lease",
            "renew",
            "-increment=30m",
            "-format=json",
            &lease_id,
        ])
        .json();
    assert_eq!(renewed["lease_duration"], 1800);
    server.root(&["lease", "revoke", &lease_id]).ok();
    server
        .root(&["lease", "lookup", &lease_id])
        .fails(2, &["invalid lease"]);

    let (a, b) = (issue(), issue());
    server
        .root(&["lease", "revoke", "-prefix", "database/creds/ro"])
        .ok();
    for creds in [a, b] {
        let id = creds["lease_id"].as_str().expect("lease id");
        server.root(&["lease", "lookup", id]).code(2);
    }
    let c = issue();
    server
        .root(&["lease", "revoke", "-prefix", "-force", "database/creds/"])
        .ok();
    server
        .root(&["lease", "lookup", c["lease_id"].as_str().expect("id")])
        .code(2);

    server
        .root(&["lease", "revoke", "-force", "x"])
        .fails(2, &["-force needs -prefix"]);
    server.root(&["lease", "renew", "no/such/lease"]).code(2);
    server
        .root(&["lease", "lookup"])
        .fails(2, &["not enough arguments"]);
    let empty = tempfile::tempdir().expect("home");
    ward_at(
        &server.address,
        empty.path(),
        None,
        &["lease", "revoke", "-prefix", "database/"],
        None,
    )
    .fails(2, &["ward login"]);
}

#[test]
fn errors_name_the_cause_and_what_to_try() {
    let server = Server::dev();
    server
        .run(
            Some(ROOT),
            &["policy", "write", "agent", "-"],
            Some(r#"path "secret/data/agents/*" { capabilities = ["read"] }"#),
        )
        .ok();
    let agent = server
        .root(&["token", "create", "-policy=agent", "-field=token"])
        .ok()
        .trim()
        .to_string();

    // Permission denied: the token's policies, the capability, the path, the next command.
    server.run(Some(&agent), &["write", "secret/data/x", "a=1"], None).fails(
        2,
        &["permission denied: the token's policies [agent, default] do not grant update on secret/data/x; try: ward token capabilities secret/data/x", "Code: 403"],
    );
    server
        .run(Some(&agent), &["kv", "get", "secret/other"], None)
        .fails(2, &["do not grant read on secret/data/other"]);
    server
        .run(Some(&agent), &["kv", "get", "cubbyhole/x"], None)
        .code(2);
    // A bad token, no token.
    server
        .run(Some("wrs.bogus"), &["read", "secret/data/x"], None)
        .fails(2, &["token is not valid", "ward login"]);
    let empty = tempfile::tempdir().expect("home");
    ward_at(
        &server.address,
        empty.path(),
        None,
        &["read", "secret/data/x"],
        None,
    )
    .fails(2, &["no token was given", "ward login"]);

    // Wrong address: local error, exit 1, says what to check.
    let home = tempfile::tempdir().expect("home");
    ward_at("http://127.0.0.1:1", home.path(), Some(ROOT), &["status"], None)
        .fails(1, &["cannot reach Ward at http://127.0.0.1:1: connection refused; is the server running? (set WARD_ADDR)"]);
    server
        .root(&["status", "-address=http://127.0.0.1:1"])
        .fails(1, &["connection refused"]);
    server
        .root(&["status", "-address=127.0.0.1:8200"])
        .fails(2, &["http://"]);
    server
        .root(&["status", "-ca-cert=/no/such/ca.pem"])
        .fails(1, &["cannot read CA certificate"]);
    server
        .root(&["status", "extra"])
        .fails(2, &["too many arguments"]);
    server.root(&["nonsense"]).fails(2, &["unknown command"]);

    // Sealed: every verb says how to unseal; status exits 2.
    server.root(&["operator", "seal"]).ok();
    let status = server.root(&["status", "-format=json"]);
    status.code(2);
    assert_eq!(
        serde_json::from_str::<Value>(&status.stdout).expect("json")["sealed"],
        true
    );
    server
        .root(&["kv", "get", "secret/x"])
        .fails(2, &["Ward is sealed; unseal it with: ward operator unseal"]);
    server
        .root(&["read", "secret/data/x"])
        .fails(2, &["Ward is sealed"]);
}

#[test]
fn operator_init_unseal_revoke_root_and_regenerate_it_with_a_quorum() {
    let server = Server::config();
    let status = server.run(None, &["status", "-format=json"], None);
    status.code(2);
    assert_eq!(
        serde_json::from_str::<Value>(&status.stdout).expect("json")["initialized"],
        false
    );
    server
        .run(None, &["operator", "init", "-status"], None)
        .code(2);
    server
        .run(
            None,
            &["operator", "init", "-key-shares=2", "-key-threshold=3"],
            None,
        )
        .fails(2, &["threshold"]);

    // init -format=json: five shares, threshold three.
    let init = server
        .run(
            None,
            &[
                "operator",
                "init",
                "-key-shares=5",
                "-key-threshold=3",
                "-format=json",
            ],
            None,
        )
        .json();
    let keys: Vec<String> = init["keys_base64"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k.as_str().expect("key").to_string())
        .collect();
    assert_eq!(keys.len(), 5);
    let root = init["root_token"].as_str().expect("root token").to_string();
    server
        .run(None, &["operator", "init", "-status"], None)
        .ok();
    server.run(None, &["operator", "init"], None).code(2);

    // unseal: an argument, stdin, -reset, a bad share.
    let out = server.run(None, &["operator", "unseal", &keys[0]], None);
    assert_eq!(row(out.ok(), "Unseal Progress").as_deref(), Some("1/3"));
    server
        .run(None, &["operator", "unseal", "-reset"], None)
        .ok();
    let progress = server
        .run(
            None,
            &["operator", "unseal", "-format=json", &keys[1]],
            None,
        )
        .json();
    assert_eq!(progress["progress"], 1);
    server
        .run(None, &["operator", "unseal", "not-a-share"], None)
        .code(2);
    server
        .run(
            None,
            &["operator", "unseal", "-"],
            Some(&format!("{}\n", keys[2])),
        )
        .ok();
    let unsealed = server.run(None, &["operator", "unseal", &keys[3]], None);
    assert_eq!(row(unsealed.ok(), "Sealed").as_deref(), Some("false"));
    server.run(None, &["status"], None).ok();

    // Configure with the root token, then revoke it, as the README recommends.
    server
        .run(
            Some(&root),
            &["secrets", "enable", "-path=secret", "-version=2", "kv"],
            None,
        )
        .ok();
    server
        .run(Some(&root), &["kv", "put", "secret/app", "k=v"], None)
        .ok();
    let rotated = server.run(Some(&root), &["operator", "rotate"], None);
    assert_eq!(row(rotated.ok(), "Key Term").as_deref(), Some("2"));
    assert_eq!(
        server
            .run(
                Some(&root),
                &["operator", "key-status", "-field=term"],
                None
            )
            .ok(),
        "2\n"
    );
    server
        .run(Some(&root), &["token", "revoke", "-self"], None)
        .ok();
    server
        .run(Some(&root), &["kv", "get", "secret/app"], None)
        .fails(2, &["token is not valid"]);

    // generate-root: -init prints the nonce and the OTP; three holders submit with the nonce.
    let started = server
        .run(
            None,
            &["operator", "generate-root", "-init", "-format=json"],
            None,
        )
        .json();
    let nonce = started["nonce"].as_str().expect("nonce").to_string();
    let otp = started["otp"].as_str().expect("otp").to_string();
    assert_eq!(otp.len(), 36);
    let status = server.run(None, &["operator", "generate-root", "-status"], None);
    assert_eq!(row(status.ok(), "Progress").as_deref(), Some("0/3"));
    server
        .run(None, &["operator", "generate-root", &keys[0]], None)
        .fails(2, &["missing -nonce"]);
    server
        .run(
            None,
            &["operator", "generate-root", "-nonce=wrong", &keys[0]],
            None,
        )
        .code(2);
    let nonce_flag = format!("-nonce={nonce}");
    server
        .run(
            None,
            &["operator", "generate-root", &nonce_flag, &keys[0]],
            None,
        )
        .ok();
    server
        .run(
            None,
            &["operator", "generate-root", &nonce_flag, "-"],
            Some(&format!("{}\n", keys[2])),
        )
        .ok();
    let done = server.run(
        None,
        &["operator", "generate-root", &nonce_flag, &keys[4]],
        None,
    );
    let encoded = row(done.ok(), "Encoded Token").expect("encoded token");
    assert!(done.stderr.contains("-decode="), "{}", done.stderr);
    server
        .run(
            None,
            &[
                "operator",
                "generate-root",
                &format!("-decode={encoded}"),
                "-otp=wrong",
            ],
            None,
        )
        .code(2);
    let new_root = server
        .run(
            None,
            &[
                "operator",
                "generate-root",
                &format!("-decode={encoded}"),
                &format!("-otp={otp}"),
            ],
            None,
        )
        .ok()
        .trim()
        .to_string();
    assert_eq!(
        server
            .run(
                Some(&new_root),
                &["kv", "get", "-field=k", "secret/app"],
                None
            )
            .ok(),
        "v\n"
    );
    let lookup = server
        .run(Some(&new_root), &["token", "lookup", "-format=json"], None)
        .json();
    assert_eq!(lookup["data"]["policies"], serde_json::json!(["root"]));

    // -cancel needs the attempt's nonce.
    let started = server
        .run(
            None,
            &["operator", "generate-root", "-init", "-format=json"],
            None,
        )
        .json();
    server
        .run(None, &["operator", "generate-root", "-cancel"], None)
        .fails(2, &["missing -nonce"]);
    server
        .run(
            None,
            &[
                "operator",
                "generate-root",
                "-cancel",
                &format!("-nonce={}", started["nonce"].as_str().expect("nonce")),
            ],
            None,
        )
        .ok();
    let status = server
        .run(
            None,
            &["operator", "generate-root", "-status", "-format=json"],
            None,
        )
        .json();
    assert_eq!(status["started"], false);
    server
        .run(
            None,
            &["operator", "generate-root", "-init", "-cancel"],
            None,
        )
        .fails(2, &["choose one"]);

    // seal and unseal again with any three shares.
    server
        .run(Some(&new_root), &["operator", "seal"], None)
        .ok();
    server.run(None, &["status"], None).code(2);
    for key in &keys[2..5] {
        server.run(None, &["operator", "unseal", key], None).ok();
    }
    server.run(None, &["status"], None).ok();
}

#[test]
fn operator_rekey_with_verification_replaces_the_shares() {
    let server = Server::config();
    let init = server
        .run(
            None,
            &[
                "operator",
                "init",
                "-key-shares=3",
                "-key-threshold=2",
                "-format=json",
            ],
            None,
        )
        .json();
    let keys: Vec<String> = init["keys_base64"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k.as_str().expect("key").to_string())
        .collect();
    let root = init["root_token"].as_str().expect("root").to_string();
    for key in &keys[..2] {
        server.run(None, &["operator", "unseal", key], None).ok();
    }

    // Start with verification; submit two old shares with the nonce.
    let started = server
        .run(
            None,
            &[
                "operator",
                "rekey",
                "-init",
                "-key-shares=4",
                "-key-threshold=3",
                "-verify",
                "-format=json",
            ],
            None,
        )
        .json();
    assert_eq!(started["verification_required"], true);
    let nonce_flag = format!("-nonce={}", started["nonce"].as_str().expect("nonce"));
    let status = server.run(None, &["operator", "rekey", "-status"], None);
    assert_eq!(row(status.ok(), "New Shares").as_deref(), Some("4"));
    server
        .run(None, &["operator", "rekey", &keys[0]], None)
        .fails(2, &["missing -nonce"]);
    server
        .run(None, &["operator", "rekey", &nonce_flag, &keys[0]], None)
        .ok();
    let done = server.run(None, &["operator", "rekey", &nonce_flag, &keys[1]], None);
    let text = done.ok().to_string();
    assert!(
        text.contains("Hand each key share to a different person"),
        "{text}"
    );
    let new_keys: Vec<String> = text
        .lines()
        .filter_map(|l| {
            l.strip_prefix("Key ")
                .and_then(|r| r.split_once(": "))
                .map(|(_, k)| k.to_string())
        })
        .collect();
    assert_eq!(new_keys.len(), 4);
    let verification_nonce = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("ward operator rekey -verify -nonce="))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("verification nonce")
        .to_string();

    // Verify with three of the new shares.
    let verify_flag = format!("-nonce={verification_nonce}");
    server
        .run(
            None,
            &["operator", "rekey", "-verify", &nonce_flag, &new_keys[0]],
            None,
        )
        .code(2);
    server
        .run(
            None,
            &["operator", "rekey", "-verify", &verify_flag, &new_keys[0]],
            None,
        )
        .ok();
    server
        .run(
            None,
            &["operator", "rekey", "-verify", &verify_flag, "-"],
            Some(&format!("{}\n", new_keys[1])),
        )
        .ok();
    let verified = server.run(
        None,
        &["operator", "rekey", "-verify", &verify_flag, &new_keys[3]],
        None,
    );
    assert!(verified.ok().contains("verified"), "{}", verified.stdout);

    // The new shares unseal; an old one no longer counts.
    server.run(Some(&root), &["operator", "seal"], None).ok();
    server
        .run(None, &["operator", "unseal", &keys[0]], None)
        .ok();
    server
        .run(None, &["operator", "unseal", &new_keys[1]], None)
        .ok();
    server
        .run(None, &["operator", "unseal", &new_keys[2]], None)
        .code(2);
    server.run(None, &["status"], None).code(2);
    server
        .run(None, &["operator", "unseal", "-reset"], None)
        .ok();
    for key in &new_keys[1..4] {
        server.run(None, &["operator", "unseal", key], None).ok();
    }
    server.run(None, &["status"], None).ok();

    // A rekey can be cancelled with its nonce.
    let started = server
        .run(
            None,
            &[
                "operator",
                "rekey",
                "-init",
                "-key-shares=3",
                "-key-threshold=2",
                "-format=json",
            ],
            None,
        )
        .json();
    server
        .run(
            None,
            &["operator", "rekey", "-cancel", "-nonce=wrong"],
            None,
        )
        .code(2);
    server
        .run(
            None,
            &[
                "operator",
                "rekey",
                "-cancel",
                &format!("-nonce={}", started["nonce"].as_str().expect("nonce")),
            ],
            None,
        )
        .ok();
    let status = server
        .run(
            None,
            &["operator", "rekey", "-status", "-format=json"],
            None,
        )
        .json();
    assert_eq!(status["started"], false);
}

#[test]
fn init_table_output_reminds_to_split_shares_and_revoke_root() {
    let server = Server::config();
    let out = server.run(
        None,
        &["operator", "init", "-key-shares=3", "-key-threshold=2"],
        None,
    );
    let text = out.ok();
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("Unseal Key "))
            .count(),
        3
    );
    assert!(text.contains("Initial Root Token: wrs."), "{text}");
    assert!(
        text.contains("Hand each key share to a different person"),
        "{text}"
    );
    assert!(text.contains("ward token revoke -self"), "{text}");
    assert!(
        text.trim_end()
            .ends_with("ward operator generate-root -init"),
        "{text}"
    );
}

#[test]
fn help_for_every_verb_and_completion_scripts() {
    let verbs: &[&[&str]] = &[
        &["server"],
        &["status"],
        &["login"],
        &["read"],
        &["write"],
        &["list"],
        &["delete"],
        &["patch"],
        &["kv"],
        &["kv", "get"],
        &["kv", "put"],
        &["kv", "patch"],
        &["kv", "list"],
        &["kv", "delete"],
        &["kv", "undelete"],
        &["kv", "destroy"],
        &["kv", "metadata"],
        &["kv", "metadata", "get"],
        &["kv", "metadata", "put"],
        &["kv", "rollback"],
        &["token"],
        &["token", "create"],
        &["token", "lookup"],
        &["token", "renew"],
        &["token", "revoke"],
        &["token", "capabilities"],
        &["lease"],
        &["lease", "lookup"],
        &["lease", "renew"],
        &["lease", "revoke"],
        &["policy"],
        &["policy", "list"],
        &["policy", "read"],
        &["policy", "write"],
        &["policy", "delete"],
        &["policy", "fmt"],
        &["secrets"],
        &["secrets", "enable"],
        &["secrets", "disable"],
        &["secrets", "list"],
        &["secrets", "tune"],
        &["secrets", "move"],
        &["auth"],
        &["auth", "enable"],
        &["auth", "disable"],
        &["auth", "list"],
        &["auth", "tune"],
        &["audit"],
        &["audit", "enable"],
        &["audit", "disable"],
        &["audit", "list"],
        &["audit", "verify"],
        &["operator"],
        &["operator", "init"],
        &["operator", "unseal"],
        &["operator", "seal"],
        &["operator", "rotate"],
        &["operator", "key-status"],
        &["operator", "generate-root"],
        &["operator", "rekey"],
        &["unwrap"],
        &["print"],
        &["path-help"],
        &["completion"],
    ];
    for verb in verbs {
        let name = verb.join(" ");
        for flag in ["-help", "--help", "-h"] {
            let mut args: Vec<&str> = verb.to_vec();
            args.push(flag);
            let out = ward(&args);
            let text = out.ok();
            assert!(
                text.starts_with(&format!("Usage: ward {name}")),
                "{name} {flag}: {text}"
            );
            assert!(
                text.contains("Example:\n  $ ward") || text.contains("Example:\n  $ source"),
                "{name}: {text}"
            );
        }
        let mut args = vec!["help"];
        args.extend_from_slice(verb);
        assert!(ward(&args).ok().starts_with(&format!("Usage: ward {name}")));
    }
    let top = ward(&["-help"]).ok().to_string();
    for verb in ["status", "kv", "operator", "completion", "path-help"] {
        assert!(top.contains(verb), "{top}");
    }
    assert!(ward(&["status", "-help"]).ok().contains("DANGEROUS"));
    assert!(ward(&["kv", "put", "secret/x", "-h"])
        .ok()
        .starts_with("Usage: ward kv put"));
    ward(&[]).code(2);
    ward(&["help", "nonsense"]).code(2);

    for shell in ["bash", "zsh", "fish"] {
        let script = ward(&["completion", shell]).ok().to_string();
        for word in [
            "kv",
            "operator",
            "token",
            "generate-root",
            "rollback",
            "secrets",
        ] {
            assert!(script.contains(word), "{shell} lacks {word}");
        }
    }
    ward(&["completion", "powershell"]).fails(2, &["bash, zsh or fish"]);
    assert!(ward(&["version"]).ok().contains("Vault API"));
}
