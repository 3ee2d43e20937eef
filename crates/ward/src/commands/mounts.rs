//! `ward secrets ...` (`sys/mounts`, `sys/remount`), `ward auth ...` (`sys/auth`) and
//! `ward audit ...` (`sys/audit`, and `audit verify` over audit files, which needs no server).

use serde_json::{json, Map, Value};

use crate::args::Kind;
use crate::client::CliError;
use crate::commands::{data_arguments, string_pairs, with_progress, Cmd};
use crate::output;

/// Secrets engines and auth methods share the enable/disable/list/tune verbs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Table {
    Secrets,
    Auth,
}

impl Table {
    fn api(self) -> &'static str {
        match self {
            Table::Secrets => "sys/mounts",
            Table::Auth => "sys/auth",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Table::Secrets => "secrets",
            Table::Auth => "auth",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Table::Secrets => "secrets engine",
            Table::Auth => "auth method",
        }
    }
}

const MOUNT_FLAGS: &[(&str, Kind)] = &[
    ("path", Kind::Value),
    ("description", Kind::Value),
    ("default-lease-ttl", Kind::Value),
    ("max-lease-ttl", Kind::Value),
    ("options", Kind::Value),
    ("version", Kind::Value),
    ("local", Kind::Bool),
    ("seal-wrap", Kind::Bool),
    ("force-no-cache", Kind::Bool),
    ("listing-visibility", Kind::Value),
    ("token-type", Kind::Value),
    ("audit-non-hmac-request-keys", Kind::Value),
    ("audit-non-hmac-response-keys", Kind::Value),
    ("passthrough-request-headers", Kind::Value),
    ("allowed-response-headers", Kind::Value),
    ("detailed", Kind::Bool),
];

/// `ward secrets SUBCOMMAND ...`
pub(crate) async fn secrets(argv: &[String]) -> Result<u8, CliError> {
    table_command(Table::Secrets, argv).await
}

/// `ward auth SUBCOMMAND ...` (`ward auth -help` for the verbs; login is `ward login`).
pub(crate) async fn auth(argv: &[String]) -> Result<u8, CliError> {
    table_command(Table::Auth, argv).await
}

async fn table_command(table: Table, argv: &[String]) -> Result<u8, CliError> {
    let Some((verb, rest)) = argv.split_first() else {
        return Err(CliError::usage(format!(
            "missing subcommand; usage: ward {} enable|disable|list|tune{}",
            table.verb(),
            if table == Table::Secrets { "|move" } else { "" }
        )));
    };
    let cmd = Cmd::parse(rest, MOUNT_FLAGS)?;
    match verb.as_str() {
        "enable" => enable(table, &cmd).await,
        "disable" => disable(table, &cmd).await,
        "list" => list(table, &cmd).await,
        "tune" => tune(table, &cmd).await,
        "move" if table == Table::Secrets => move_mount(&cmd).await,
        other => Err(CliError::usage(format!(
            "unknown subcommand {other:?}; see: ward {} -help",
            table.verb()
        ))),
    }
}

/// The `config` object of enable and tune, from the flags.
fn mount_config(cmd: &Cmd) -> Result<Map<String, Value>, CliError> {
    let mut config = Map::new();
    for (flag, key) in [
        ("default-lease-ttl", "default_lease_ttl"),
        ("max-lease-ttl", "max_lease_ttl"),
    ] {
        if let Some(value) = cmd.seconds_flag(flag)? {
            config.insert(key.into(), value);
        }
    }
    if cmd.args.has("force-no-cache") {
        config.insert(
            "force_no_cache".into(),
            json!(cmd.args.flag("force-no-cache")),
        );
    }
    for (flag, key) in [
        ("listing-visibility", "listing_visibility"),
        ("token-type", "token_type"),
    ] {
        if let Some(value) = cmd.args.value(flag) {
            config.insert(key.into(), json!(value));
        }
    }
    for (flag, key) in [
        ("audit-non-hmac-request-keys", "audit_non_hmac_request_keys"),
        (
            "audit-non-hmac-response-keys",
            "audit_non_hmac_response_keys",
        ),
        ("passthrough-request-headers", "passthrough_request_headers"),
        ("allowed-response-headers", "allowed_response_headers"),
    ] {
        let values = cmd.args.values(flag);
        if !values.is_empty() {
            config.insert(key.into(), json!(values));
        }
    }
    Ok(config)
}

fn mount_options(cmd: &Cmd) -> Result<Map<String, Value>, CliError> {
    let mut options = string_pairs("options", cmd.args.values("options"))?;
    if let Some(version) = cmd.args.value("version") {
        if version.parse::<u32>().is_err() {
            return Err(CliError::usage(format!(
                "invalid -version={version}: use 1 or 2"
            )));
        }
        options.insert("version".into(), json!(version));
    }
    Ok(options)
}

async fn enable(table: Table, cmd: &Cmd) -> Result<u8, CliError> {
    let usage = format!("ward {} enable [flags] TYPE", table.verb());
    let kind = cmd.expect_args(1, &usage)?[0].clone();
    let path = cmd
        .args
        .value("path")
        .unwrap_or(&kind)
        .trim_matches('/')
        .to_string();
    let mut body = json!({ "type": kind });
    if let Some(description) = cmd.args.value("description") {
        body["description"] = json!(description);
    }
    let config = mount_config(cmd)?;
    if !config.is_empty() {
        body["config"] = Value::Object(config);
    }
    let options = mount_options(cmd)?;
    if !options.is_empty() {
        body["options"] = Value::Object(options);
    }
    if cmd.args.flag("local") {
        body["local"] = json!(true);
    }
    if cmd.args.flag("seal-wrap") {
        body["seal_wrap"] = json!(true);
    }
    let client = cmd.client()?;
    client
        .request("PUT", &format!("{}/{path}", table.api()), Some(&body))
        .await?;
    println!("Success! Enabled the {kind} {} at: {path}/", table.noun());
    Ok(0)
}

async fn disable(table: Table, cmd: &Cmd) -> Result<u8, CliError> {
    let usage = format!("ward {} disable PATH", table.verb());
    let path = cmd.expect_args(1, &usage)?[0].trim_matches('/').to_string();
    let client = cmd.client()?;
    with_progress(
        &format!("disabling {path}/ and revoking its leases"),
        client.request("DELETE", &format!("{}/{path}", table.api()), None),
    )
    .await?;
    println!(
        "Success! Disabled the {} (if it existed) at: {path}/",
        table.noun()
    );
    Ok(0)
}

async fn list(table: Table, cmd: &Cmd) -> Result<u8, CliError> {
    cmd.expect_args(0, &format!("ward {} list [-detailed]", table.verb()))?;
    let client = cmd.client()?;
    let body = client
        .request("GET", table.api(), None)
        .await?
        .unwrap_or(Value::Null);
    let mounts = body["data"].as_object().cloned().unwrap_or_default();
    if cmd.field().is_some() || !cmd.format.is_table() {
        return cmd.show_data(&Value::Object(mounts), Vec::new());
    }
    let detailed = cmd.args.flag("detailed");
    let mut rows = Vec::new();
    for (path, mount) in &mounts {
        let mut row = vec![
            path.clone(),
            output::display(&mount["type"]),
            output::display(&mount["accessor"]),
        ];
        if detailed {
            let ttl = |key: &str| match mount["config"][key].as_u64() {
                Some(0) | None => "system".to_string(),
                Some(seconds) => output::duration(seconds),
            };
            row.push(ttl("default_lease_ttl"));
            row.push(ttl("max_lease_ttl"));
            row.push(output::display(&mount["local"]));
            row.push(output::display(&mount["seal_wrap"]));
            row.push(match &mount["options"] {
                Value::Object(options) if !options.is_empty() => output::display(&mount["options"]),
                _ => "n/a".into(),
            });
            row.push(output::display(&mount["uuid"]));
        }
        row.push(
            mount["description"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        rows.push(row);
    }
    let header: &[&str] = if detailed {
        &[
            "Path",
            "Type",
            "Accessor",
            "Default TTL",
            "Max TTL",
            "Local",
            "Seal Wrap",
            "Options",
            "UUID",
            "Description",
        ]
    } else {
        &["Path", "Type", "Accessor", "Description"]
    };
    output::print_columns(header, &rows);
    Ok(0)
}

async fn tune(table: Table, cmd: &Cmd) -> Result<u8, CliError> {
    let usage = format!("ward {} tune [flags] PATH", table.verb());
    let path = cmd.expect_args(1, &usage)?[0].trim_matches('/').to_string();
    let mut body = mount_config(cmd)?;
    if let Some(description) = cmd.args.value("description") {
        body.insert("description".into(), json!(description));
    }
    let options = mount_options(cmd)?;
    if !options.is_empty() {
        body.insert("options".into(), Value::Object(options));
    }
    if body.is_empty() {
        return Err(CliError::usage(format!(
            "nothing to tune: give -default-lease-ttl, -max-lease-ttl, -description, -options or -version; usage: {usage}"
        )));
    }
    let client = cmd.client()?;
    client
        .request(
            "PUT",
            &format!("{}/{path}/tune", table.api()),
            Some(&Value::Object(body)),
        )
        .await?;
    println!("Success! Tuned the {} at: {path}/", table.noun());
    Ok(0)
}

async fn move_mount(cmd: &Cmd) -> Result<u8, CliError> {
    let args = cmd.expect_args(2, "ward secrets move SOURCE DESTINATION")?;
    let (from, to) = (args[0].trim_matches('/'), args[1].trim_matches('/'));
    let client = cmd.client()?;
    let body = json!({ "from": from, "to": to });
    let response = with_progress(
        &format!("moving {from}/ to {to}/"),
        client.request("PUT", "sys/remount", Some(&body)),
    )
    .await?
    .unwrap_or(Value::Null);
    let migration = response["data"]["migration_id"]
        .as_str()
        .or_else(|| response["migration_id"].as_str())
        .unwrap_or("n/a");
    println!(
        "Success! Finished moving secrets engine {from}/ to {to}/, with migration ID {migration}"
    );
    Ok(0)
}

/// `ward audit enable|disable|list|verify ...`
pub(crate) async fn audit(argv: &[String]) -> Result<u8, CliError> {
    let Some((verb, rest)) = argv.split_first() else {
        return Err(CliError::usage(
            "missing subcommand; usage: ward audit enable|disable|list|verify",
        ));
    };
    if verb == "verify" {
        return audit_verify(rest).await;
    }
    let cmd = Cmd::parse(
        rest,
        &[
            ("path", Kind::Value),
            ("description", Kind::Value),
            ("local", Kind::Bool),
            ("detailed", Kind::Bool),
        ],
    )?;
    let client = cmd.client()?;
    match verb.as_str() {
        "enable" => {
            let usage = "ward audit enable [-path=P] [-description=D] TYPE [option=value ...]";
            let Some((kind, options)) = cmd.positional().split_first() else {
                return Err(CliError::usage(format!("missing TYPE; usage: {usage}")));
            };
            let path = cmd
                .args
                .value("path")
                .unwrap_or(kind)
                .trim_matches('/')
                .to_string();
            let mut body = json!({
                "type": kind,
                "options": Value::Object(data_arguments(options)?),
            });
            if let Some(description) = cmd.args.value("description") {
                body["description"] = json!(description);
            }
            if cmd.args.flag("local") {
                body["local"] = json!(true);
            }
            client
                .request("PUT", &format!("sys/audit/{path}"), Some(&body))
                .await?;
            println!("Success! Enabled the {kind} audit device at: {path}/");
            Ok(0)
        }
        "disable" => {
            let path = cmd.expect_args(1, "ward audit disable PATH")?[0]
                .trim_matches('/')
                .to_string();
            client
                .request("DELETE", &format!("sys/audit/{path}"), None)
                .await?;
            println!("Success! Disabled audit device (if it was enabled) at: {path}/");
            Ok(0)
        }
        "list" => {
            cmd.expect_args(0, "ward audit list [-detailed]")?;
            let body = client
                .request("GET", "sys/audit", None)
                .await?
                .unwrap_or(Value::Null);
            let devices = body["data"].as_object().cloned().unwrap_or_default();
            if cmd.field().is_some() || !cmd.format.is_table() {
                return cmd.show_data(&Value::Object(devices), Vec::new());
            }
            if devices.is_empty() {
                println!("No audit devices are enabled.");
                return Ok(0);
            }
            let detailed = cmd.args.flag("detailed");
            let rows: Vec<Vec<String>> = devices
                .iter()
                .map(|(path, device)| {
                    let mut row = vec![path.clone(), output::display(&device["type"])];
                    row.push(
                        device["description"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    );
                    if detailed {
                        row.push(output::display(&device["local"]));
                        row.push(output::display(&device["options"]));
                    }
                    row
                })
                .collect();
            let header: &[&str] = if detailed {
                &["Path", "Type", "Description", "Local", "Options"]
            } else {
                &["Path", "Type", "Description"]
            };
            output::print_columns(header, &rows);
            Ok(0)
        }
        other => Err(CliError::usage(format!(
            "unknown subcommand {other:?}; see: ward audit -help"
        ))),
    }
}

/// `ward audit verify FILE...`: checks the hash chain of audit files, oldest first. Exit 0
/// intact, 2 broken (the first break is named), 1 a file that cannot be read.
async fn audit_verify(argv: &[String]) -> Result<u8, CliError> {
    let cmd = Cmd::parse(
        argv,
        &[("public-key", Kind::Value), ("device", Kind::Value)],
    )?;
    if cmd.positional().is_empty() {
        return Err(CliError::usage(
            "missing FILE; usage: ward audit verify [-public-key=KEY] [-device=PATH] FILE... (rotated files first, oldest to newest)",
        ));
    }
    let mut verifier = ward_core::audit::Verifier::new();
    if let Some(text) = cmd.args.value("public-key") {
        let text = match text.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| CliError::local(format!("cannot read {path}: {e}")))?,
            None => text.to_string(),
        };
        let key = ward_core::audit::parse_public_key(&text).ok_or_else(|| {
            CliError::usage("-public-key must be an Ed25519 public key in base64 or hex")
        })?;
        verifier = verifier.with_public_key(key);
    }
    if let Some(device) = cmd.args.value("device") {
        let device = device.trim_matches('/');
        let response = cmd
            .client()?
            .request("GET", &format!("sys/audit-checkpoint/{device}"), None)
            .await?
            .unwrap_or_default();
        let data = &response["data"];
        let key = data["public_key"]
            .as_str()
            .and_then(ward_core::audit::parse_public_key)
            .ok_or_else(|| CliError::local("the server returned no checkpoint key"))?;
        if cmd.args.value("public-key").is_none() {
            verifier = verifier.with_public_key(key);
        }
        let last = &data["last_checkpoint"];
        if let (Some(sequence), Some(head)) = (last["sequence"].as_u64(), last["head"].as_str()) {
            verifier = verifier.expect_checkpoint(sequence, head);
        }
    }
    for name in cmd.positional() {
        let file = std::fs::File::open(name)
            .map_err(|e| CliError::local(format!("cannot open {name}: {e}")))?;
        verifier
            .feed(name, std::io::BufReader::new(file))
            .map_err(|e| CliError::local(format!("cannot read {name}: {e}")))?;
    }
    let checked_signatures =
        cmd.args.value("public-key").is_some() || cmd.args.value("device").is_some();
    let report = verifier.finish();
    let broken = report.first_break.as_ref().map(|b| {
        json!({
            "file": b.file,
            "line": b.line,
            "reason": match b.reason {
                ward_core::audit::BreakReason::MissingPrevHash => "missing prev_hash",
                ward_core::audit::BreakReason::Mismatch => "prev_hash does not match the line before",
            },
        })
    });
    let checkpoints = &report.checkpoints;
    let problem = checkpoints
        .first_problem
        .as_ref()
        .map(|p| json!({ "file": p.file, "line": p.line, "reason": checkpoint_issue(&p.issue) }));
    let last_checkpoint = checkpoints.last.as_ref().map(|c| {
        json!({
            "file": c.file,
            "line": c.line,
            "sequence": c.sequence,
            "entries": c.entries,
            "time": c.time,
            "key_id": c.key_id,
        })
    });
    let summary = json!({
        "intact": report.is_valid(),
        "chain_intact": report.is_intact(),
        "files": report.files,
        "lines": report.lines,
        "bytes": report.bytes,
        "starts_at_genesis": report.starts_at_genesis,
        "last_hash": report.last_hash,
        "first_break": broken,
        "checkpoints": checkpoints.found,
        "checkpoints_verified": checkpoints.verified,
        "last_checkpoint": last_checkpoint,
        "entries_after_last_checkpoint": checkpoints.entries_after_last,
        "checkpoint_problem": problem,
    });
    if cmd.field().is_some() || !cmd.format.is_table() {
        cmd.show_data(&summary, Vec::new())?;
    } else {
        if let Some(b) = &report.first_break {
            println!(
                "BROKEN: the chain does not hold at {} line {} ({}); lines checked: {}",
                b.file,
                b.line,
                summary["first_break"]["reason"]
                    .as_str()
                    .unwrap_or_default(),
                report.lines
            );
        } else {
            println!(
                "Intact: {} lines in {} file(s); last hash {}{}",
                report.lines,
                report.files,
                report.last_hash,
                if report.starts_at_genesis {
                    ""
                } else {
                    " (the first file starts after a rotation: its first link is taken on trust)"
                }
            );
        }
        if let Some(p) = &checkpoints.first_problem {
            println!(
                "CHECKPOINT: {} line {}: {}",
                p.file,
                p.line,
                checkpoint_issue(&p.issue)
            );
        }
        match &checkpoints.last {
            Some(last) if checked_signatures => println!(
                "Checkpoints: {} found, {} signatures verified; the last (sequence {}, {} entries, {}) is at {} line {}; {} entries after it are not signed yet",
                checkpoints.found, checkpoints.verified, last.sequence, last.entries, last.time, last.file, last.line, checkpoints.entries_after_last
            ),
            Some(_) => println!(
                "Checkpoints: {} found, signatures not checked (give -public-key or -device)",
                checkpoints.found
            ),
            None if checked_signatures => println!("Checkpoints: none found"),
            None => {}
        }
    }
    Ok(if report.is_valid() { 0 } else { 2 })
}

/// A checkpoint problem in words.
fn checkpoint_issue(issue: &ward_core::audit::CheckpointIssue) -> String {
    use ward_core::audit::CheckpointIssue;
    match issue {
        CheckpointIssue::Unreadable => "the checkpoint line cannot be read".into(),
        CheckpointIssue::WrongKey { key_id } => {
            format!("signed by another key (key id {key_id}): forged or from another device")
        }
        CheckpointIssue::BadSignature => {
            "the signature does not hold: the checkpoint or the lines it covers were altered"
                .into()
        }
        CheckpointIssue::HeadMismatch => {
            "the checkpoint does not sign the line before it".into()
        }
        CheckpointIssue::CountMismatch {
            expected_sequence,
            expected_entries,
        } => format!(
            "its counts do not follow from the lines before it (expected sequence {expected_sequence}, {expected_entries} entries): lines or a checkpoint were removed"
        ),
        CheckpointIssue::Missing => {
            "a checkpoint is missing after the last one: the log was cut, or a checkpoint removed"
                .into()
        }
        CheckpointIssue::BehindServer { server_sequence } => format!(
            "the server's last checkpoint (sequence {server_sequence}) is not in these files: the log was cut"
        ),
        CheckpointIssue::ServerMismatch => {
            "the server's checkpoint with this sequence signs another chain head".into()
        }
    }
}
