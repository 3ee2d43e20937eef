//! `ward token ...` (`auth/token/*`) and `ward lease ...` (`sys/leases/*`), with Vault's
//! flags. Long revocations (`lease revoke -prefix`, `-force`) show a progress line on a
//! terminal.

use serde_json::{json, Map, Value};

use crate::args::Kind;
use crate::client::CliError;
use crate::commands::{print_warnings, string_pairs, with_progress, Cmd};
use crate::output;

/// `ward token SUBCOMMAND ...`
pub(crate) async fn run(argv: &[String]) -> Result<u8, CliError> {
    let Some((verb, rest)) = argv.split_first() else {
        return Err(CliError::usage(
            "missing subcommand; usage: ward token create|lookup|renew|revoke|capabilities",
        ));
    };
    match verb.as_str() {
        "create" => create(rest).await,
        "lookup" => lookup(rest).await,
        "renew" => renew(rest).await,
        "revoke" => revoke(rest).await,
        "capabilities" => capabilities(rest).await,
        other => Err(CliError::usage(format!(
            "unknown subcommand {other:?}; see: ward token -help"
        ))),
    }
}

async fn create(argv: &[String]) -> Result<u8, CliError> {
    let cmd = Cmd::parse(
        argv,
        &[
            ("policy", Kind::Value),
            ("ttl", Kind::Value),
            ("explicit-max-ttl", Kind::Value),
            ("period", Kind::Value),
            ("orphan", Kind::Bool),
            ("no-default-policy", Kind::Bool),
            ("use-limit", Kind::Value),
            ("type", Kind::Value),
            ("role", Kind::Value),
            ("display-name", Kind::Value),
            ("metadata", Kind::Value),
            ("renewable", Kind::Bool),
            ("id", Kind::Value),
            ("entity-alias", Kind::Value),
        ],
    )?;
    cmd.expect_args(0, "ward token create [flags]")?;
    let mut body = Map::new();
    let policies: Vec<String> = cmd
        .args
        .values("policy")
        .iter()
        .flat_map(|p| p.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    if !policies.is_empty() {
        body.insert("policies".into(), json!(policies));
    }
    for (flag, key) in [
        ("ttl", "ttl"),
        ("explicit-max-ttl", "explicit_max_ttl"),
        ("period", "period"),
    ] {
        if let Some(value) = cmd.seconds_flag(flag)? {
            body.insert(key.into(), value);
        }
    }
    if cmd.args.flag("no-default-policy") {
        body.insert("no_default_policy".into(), json!(true));
    }
    if let Some(uses) = cmd.number_flag("use-limit")? {
        body.insert("num_uses".into(), json!(uses));
    }
    if let Some(kind) = cmd.args.value("type") {
        if !matches!(kind, "service" | "batch" | "default") {
            return Err(CliError::usage(format!(
                "invalid -type={kind}: use service or batch"
            )));
        }
        body.insert("type".into(), json!(kind));
    }
    for (flag, key) in [
        ("display-name", "display_name"),
        ("id", "id"),
        ("entity-alias", "entity_alias"),
    ] {
        if let Some(value) = cmd.args.value(flag) {
            body.insert(key.into(), json!(value));
        }
    }
    if cmd.args.has("renewable") {
        body.insert("renewable".into(), json!(cmd.args.flag("renewable")));
    }
    let metadata = cmd.args.values("metadata");
    if !metadata.is_empty() {
        body.insert(
            "meta".into(),
            Value::Object(string_pairs("metadata", metadata)?),
        );
    }
    let path = match (cmd.args.value("role"), cmd.args.flag("orphan")) {
        (Some(role), _) => format!("auth/token/create/{role}"),
        (None, true) => "auth/token/create-orphan".to_string(),
        (None, false) => "auth/token/create".to_string(),
    };
    let client = cmd.client()?;
    let response = client
        .request("PUT", &path, Some(&Value::Object(body)))
        .await?
        .unwrap_or(Value::Null);
    cmd.show(&response)
}

/// Which token a lookup, renew or revoke is about.
enum Target {
    Own,
    Token(String),
    Accessor(String),
}

fn target(cmd: &Cmd, usage: &str) -> Result<Target, CliError> {
    let accessor = cmd.args.flag("accessor");
    let own = cmd.args.flag("self");
    match (cmd.positional(), accessor, own) {
        ([], false, _) => Ok(Target::Own),
        ([], true, _) => Err(CliError::usage(format!(
            "-accessor needs the accessor as an argument; usage: {usage}"
        ))),
        ([_], _, true) => Err(CliError::usage(format!(
            "-self takes no argument; usage: {usage}"
        ))),
        ([value], true, false) => Ok(Target::Accessor(value.clone())),
        ([value], false, false) => Ok(Target::Token(value.clone())),
        _ => Err(CliError::usage(format!(
            "too many arguments; usage: {usage}"
        ))),
    }
}

async fn lookup(argv: &[String]) -> Result<u8, CliError> {
    let usage = "ward token lookup [-accessor] [TOKEN|ACCESSOR]";
    let cmd = Cmd::parse(argv, &[("accessor", Kind::Bool), ("self", Kind::Bool)])?;
    let target = target(&cmd, usage)?;
    let client = cmd.client()?;
    let response = match target {
        Target::Own => {
            if client.token().is_none() {
                return Err(CliError::usage(
                    "no token to look up: log in with ward login, or give TOKEN",
                ));
            }
            client
                .request("GET", "auth/token/lookup-self", None)
                .await?
        }
        Target::Token(token) => {
            let body = json!({ "token": token });
            client
                .request("PUT", "auth/token/lookup", Some(&body))
                .await?
        }
        Target::Accessor(accessor) => {
            let body = json!({ "accessor": accessor });
            client
                .request("PUT", "auth/token/lookup-accessor", Some(&body))
                .await?
        }
    };
    cmd.show(&response.unwrap_or(Value::Null))
}

async fn renew(argv: &[String]) -> Result<u8, CliError> {
    let usage = "ward token renew [-increment=DURATION] [-accessor] [TOKEN|ACCESSOR]";
    let cmd = Cmd::parse(
        argv,
        &[
            ("increment", Kind::Value),
            ("i", Kind::Value),
            ("accessor", Kind::Bool),
            ("self", Kind::Bool),
        ],
    )?;
    let target = target(&cmd, usage)?;
    let mut body = Map::new();
    if let Some(increment) = cmd.seconds_flag("increment")?.or(cmd.seconds_flag("i")?) {
        body.insert("increment".into(), increment);
    }
    let path = match target {
        Target::Own => "auth/token/renew-self",
        Target::Token(token) => {
            body.insert("token".into(), json!(token));
            "auth/token/renew"
        }
        Target::Accessor(accessor) => {
            body.insert("accessor".into(), json!(accessor));
            "auth/token/renew-accessor"
        }
    };
    let client = cmd.client()?;
    let response = client
        .request("PUT", path, Some(&Value::Object(body)))
        .await?
        .unwrap_or(Value::Null);
    cmd.show(&response)
}

async fn revoke(argv: &[String]) -> Result<u8, CliError> {
    let usage = "ward token revoke [-self | -accessor ACCESSOR | -mode=orphan|path TOKEN | TOKEN]";
    let cmd = Cmd::parse(
        argv,
        &[
            ("accessor", Kind::Bool),
            ("self", Kind::Bool),
            ("mode", Kind::Value),
        ],
    )?;
    let target = target(&cmd, usage)?;
    if matches!(target, Target::Own) && !cmd.args.flag("self") {
        return Err(CliError::usage(format!(
            "which token? give TOKEN, or -self to revoke the token in use; usage: {usage}"
        )));
    }
    let mode = cmd.args.value("mode").unwrap_or("");
    let client = cmd.client()?;
    match (target, mode) {
        (Target::Own, "") => {
            client.request("PUT", "auth/token/revoke-self", None).await?;
        }
        (Target::Token(token), "") => {
            let body = json!({ "token": token });
            client
                .request("PUT", "auth/token/revoke", Some(&body))
                .await?;
        }
        (Target::Token(token), "orphan") => {
            let body = json!({ "token": token });
            client
                .request("PUT", "auth/token/revoke-orphan", Some(&body))
                .await?;
        }
        (Target::Token(prefix), "path") => {
            let path = format!("sys/leases/revoke-prefix/{}", prefix.trim_matches('/'));
            with_progress("revoking tokens", client.request("PUT", &path, None)).await?;
        }
        (Target::Accessor(accessor), "") => {
            let body = json!({ "accessor": accessor });
            client
                .request("PUT", "auth/token/revoke-accessor", Some(&body))
                .await?;
        }
        (_, mode) => {
            return Err(CliError::usage(format!(
                "-mode={mode} is not valid here: -mode=orphan or -mode=path go with a TOKEN (or path) argument; usage: {usage}"
            )))
        }
    }
    println!("Success! Revoked token (if it existed)");
    Ok(0)
}

async fn capabilities(argv: &[String]) -> Result<u8, CliError> {
    let usage = "ward token capabilities [-accessor] [TOKEN|ACCESSOR] PATH";
    let cmd = Cmd::parse(argv, &[("accessor", Kind::Bool)])?;
    let (path, body) = match (cmd.positional(), cmd.args.flag("accessor")) {
        ([path], false) => ("sys/capabilities-self", json!({ "paths": [path] })),
        ([token, path], false) => (
            "sys/capabilities",
            json!({ "token": token, "paths": [path] }),
        ),
        ([accessor, path], true) => (
            "sys/capabilities-accessor",
            json!({ "accessor": accessor, "paths": [path] }),
        ),
        _ => return Err(CliError::usage(format!("usage: {usage}"))),
    };
    let target = cmd.positional().last().cloned().unwrap_or_default();
    let client = cmd.client()?;
    let response = client
        .request("PUT", path, Some(&body))
        .await?
        .unwrap_or(Value::Null);
    let capabilities = response["data"]
        .get(&target)
        .or_else(|| response["data"].get("capabilities"))
        .or_else(|| response.get(&target))
        .cloned()
        .unwrap_or(Value::Array(Vec::new()));
    if !cmd.format.is_table() {
        cmd.format.print(&capabilities);
        return Ok(0);
    }
    let mut names: Vec<&str> = capabilities
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    names.sort_unstable();
    println!("{}", names.join(", "));
    Ok(0)
}

/// `ward lease SUBCOMMAND ...`
pub(crate) async fn lease(argv: &[String]) -> Result<u8, CliError> {
    let Some((verb, rest)) = argv.split_first() else {
        return Err(CliError::usage(
            "missing subcommand; usage: ward lease lookup|renew|revoke",
        ));
    };
    match verb.as_str() {
        "lookup" => lease_lookup(rest).await,
        "renew" => lease_renew(rest).await,
        "revoke" => lease_revoke(rest).await,
        other => Err(CliError::usage(format!(
            "unknown subcommand {other:?}; see: ward lease -help"
        ))),
    }
}

async fn lease_lookup(argv: &[String]) -> Result<u8, CliError> {
    let cmd = Cmd::parse(argv, &[])?;
    let lease_id = cmd.expect_args(1, "ward lease lookup LEASE_ID")?[0].clone();
    let client = cmd.client()?;
    let body = json!({ "lease_id": lease_id });
    let response = client
        .request("PUT", "sys/leases/lookup", Some(&body))
        .await?
        .unwrap_or(Value::Null);
    if cmd.field().is_some() || !cmd.format.is_table() {
        return cmd.show(&response);
    }
    let mut data = response["data"].as_object().cloned().unwrap_or_default();
    if let Some(ttl) = data.get("ttl").and_then(Value::as_u64) {
        data.insert("ttl".into(), json!(output::duration(ttl)));
    }
    output::print_table(&output::rows(&data));
    Ok(0)
}

async fn lease_renew(argv: &[String]) -> Result<u8, CliError> {
    let cmd = Cmd::parse(argv, &[("increment", Kind::Value), ("i", Kind::Value)])?;
    let lease_id =
        cmd.expect_args(1, "ward lease renew [-increment=DURATION] LEASE_ID")?[0].clone();
    let mut body = json!({ "lease_id": lease_id });
    if let Some(increment) = cmd.seconds_flag("increment")?.or(cmd.seconds_flag("i")?) {
        body["increment"] = increment;
    }
    let client = cmd.client()?;
    let response = client
        .request("PUT", "sys/leases/renew", Some(&body))
        .await?
        .unwrap_or(Value::Null);
    cmd.show(&response)
}

async fn lease_revoke(argv: &[String]) -> Result<u8, CliError> {
    let usage = "ward lease revoke [-prefix] [-force] [-sync] LEASE_ID|PREFIX";
    let cmd = Cmd::parse(
        argv,
        &[
            ("prefix", Kind::Bool),
            ("force", Kind::Bool),
            ("f", Kind::Bool),
            ("sync", Kind::Bool),
        ],
    )?;
    let id = cmd.expect_args(1, usage)?[0].clone();
    let force = cmd.args.flag("force") || cmd.args.flag("f");
    let prefix = cmd.args.flag("prefix");
    if force && !prefix {
        return Err(CliError::usage(format!(
            "-force needs -prefix: it drops every lease under a prefix even when its backend cannot revoke it; usage: {usage}"
        )));
    }
    let mut body = Map::new();
    if cmd.args.has("sync") {
        body.insert("sync".into(), json!(cmd.args.flag("sync")));
    }
    let client = cmd.client()?;
    let trimmed = id.trim_start_matches('/');
    let (path, done) = if force {
        (
            format!("sys/leases/revoke-force/{trimmed}"),
            format!("Success! Force revoked any leases with prefix: {id}"),
        )
    } else if prefix {
        (
            format!("sys/leases/revoke-prefix/{trimmed}"),
            format!("Success! Revoked any leases with prefix: {id}"),
        )
    } else {
        body.insert("lease_id".into(), json!(id));
        (
            "sys/leases/revoke".to_string(),
            format!("Success! Revoked lease: {id}"),
        )
    };
    let body = Value::Object(body);
    let label = if prefix {
        format!("revoking leases under {id}")
    } else {
        format!("revoking {id}")
    };
    let response = with_progress(&label, client.request("PUT", &path, Some(&body))).await?;
    if let Some(response) = &response {
        print_warnings(response);
    }
    println!("{done}");
    Ok(0)
}
