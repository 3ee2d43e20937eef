//! The client verbs: `status`, `read`, `write`, `list`, `delete`, `kv get|put`,
//! `operator init|unseal`, and `version`.
//!
//! Each verb parses its flags, makes one or two API calls through [`crate::client::Client`],
//! and prints a human table (or, with `-format=json`, the raw JSON). The server's errors exit
//! with code 2, local errors with 1, as Vault's CLI does.

use std::io::{BufRead, IsTerminal, Write};

use serde_json::{json, Map, Value};

use crate::args::{Args, Kind};
use crate::client::{CliError, Client};

/// Flags every client verb accepts.
const COMMON: &[(&str, Kind)] = &[
    ("address", Kind::Value),
    ("ca-cert", Kind::Value),
    ("tls-skip-verify", Kind::Bool),
    ("format", Kind::Value),
];

fn parse(argv: &[String], extra: &[(&str, Kind)]) -> Result<Args, CliError> {
    let flags: Vec<(&str, Kind)> = COMMON.iter().chain(extra).copied().collect();
    let args = Args::parse(argv, &flags).map_err(CliError::Local)?;
    match args.value("format") {
        None | Some("table") | Some("json") => Ok(args),
        Some(other) => Err(CliError::local(format!(
            "unsupported -format={other} (table or json)"
        ))),
    }
}

fn is_json(args: &Args) -> bool {
    args.value("format") == Some("json")
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// `ward status`: the seal status; exit code 2 when sealed.
pub(crate) async fn status(argv: &[String]) -> Result<u8, CliError> {
    let args = parse(argv, &[])?;
    let client = Client::from_args(&args)?;
    let body = client
        .request("GET", "sys/seal-status", None)
        .await?
        .unwrap_or(Value::Null);
    let status: ward_api::SealStatusResponse = serde_json::from_value(body.clone())
        .map_err(|e| CliError::local(format!("unexpected seal status: {e}")))?;
    if is_json(&args) {
        print_json(&body);
    } else {
        let mut rows = vec![
            ("Seal Type".to_string(), status.kind.clone()),
            ("Initialized".into(), status.initialized.to_string()),
            ("Sealed".into(), status.sealed.to_string()),
            ("Total Shares".into(), status.n.to_string()),
            ("Threshold".into(), status.t.to_string()),
        ];
        if status.sealed {
            rows.push((
                "Unseal Progress".into(),
                format!("{}/{}", status.progress, status.t),
            ));
            rows.push((
                "Unseal Nonce".into(),
                if status.nonce.is_empty() {
                    "n/a".into()
                } else {
                    status.nonce.clone()
                },
            ));
        }
        rows.push(("Version".into(), status.version.clone()));
        rows.push((
            "Build Date".into(),
            if status.build_date.is_empty() {
                "n/a".into()
            } else {
                status.build_date.clone()
            },
        ));
        rows.push(("Storage Type".into(), status.storage_type.clone()));
        if !status.sealed {
            rows.push(("Cluster Name".into(), status.cluster_name.clone()));
            rows.push(("Cluster ID".into(), status.cluster_id.clone()));
        }
        rows.push(("HA Enabled".into(), "false".into()));
        print_table(&rows);
    }
    Ok(if status.sealed { 2 } else { 0 })
}

/// `ward read PATH [k=v ...]`
pub(crate) async fn read(argv: &[String]) -> Result<u8, CliError> {
    let args = parse(argv, &[("field", Kind::Value)])?;
    let path = one_path(&args, "read")?;
    let client = Client::from_args(&args)?;
    let query = query_string(&pairs(&args.positional[1..])?);
    match client.request("GET", &format!("{path}{query}"), None).await {
        Err(CliError::Api { status: 404, .. }) => no_value(&path),
        result => {
            let body = result?.unwrap_or(Value::Null);
            show_response(&args, &body)
        }
    }
}

/// `ward write PATH k=v ...`
pub(crate) async fn write(argv: &[String]) -> Result<u8, CliError> {
    let args = parse(argv, &[("field", Kind::Value)])?;
    let path = one_path(&args, "write")?;
    let client = Client::from_args(&args)?;
    let data = Value::Object(pairs(&args.positional[1..])?);
    match client.request("PUT", &path, Some(&data)).await? {
        Some(body) => show_response(&args, &body),
        None => {
            println!("Success! Data written to: {path}");
            Ok(0)
        }
    }
}

/// `ward list PATH`
pub(crate) async fn list(argv: &[String]) -> Result<u8, CliError> {
    let args = parse(argv, &[])?;
    let path = one_path(&args, "list")?;
    let client = Client::from_args(&args)?;
    let body = match client.request("LIST", &path, None).await {
        Err(CliError::Api { status: 404, .. }) => {
            return no_value(&format!("{}/", path.trim_end_matches('/')))
        }
        result => result?.unwrap_or(Value::Null),
    };
    if is_json(&args) {
        print_json(&body["data"]["keys"]);
        return Ok(0);
    }
    println!("Keys\n----");
    for key in body["data"]["keys"].as_array().into_iter().flatten() {
        println!("{}", key.as_str().unwrap_or_default());
    }
    Ok(0)
}

/// `ward delete PATH`
pub(crate) async fn delete(argv: &[String]) -> Result<u8, CliError> {
    let args = parse(argv, &[])?;
    let path = one_path(&args, "delete")?;
    let client = Client::from_args(&args)?;
    client.request("DELETE", &path, None).await?;
    println!("Success! Data deleted (if it existed) at: {path}");
    Ok(0)
}

/// `ward kv get|put ...`
pub(crate) async fn kv(argv: &[String]) -> Result<u8, CliError> {
    match argv.split_first() {
        Some((verb, rest)) if verb == "get" => kv_get(rest).await,
        Some((verb, rest)) if verb == "put" => kv_put(rest).await,
        _ => Err(CliError::local(
            "usage: ward kv get|put [flags] PATH [k=v ...]",
        )),
    }
}

async fn kv_get(argv: &[String]) -> Result<u8, CliError> {
    let args = parse(
        argv,
        &[
            ("field", Kind::Value),
            ("version", Kind::Value),
            ("mount", Kind::Value),
        ],
    )?;
    let path = one_path(&args, "kv get")?;
    let client = Client::from_args(&args)?;
    let mount = kv_mount(&client, &path).await?;
    let (api_path, version2) = mount.api_path(&path, "data");
    let query = match args.value("version") {
        Some(version) if version2 => format!("?version={version}"),
        _ => String::new(),
    };
    let body = match client
        .request("GET", &format!("{api_path}{query}"), None)
        .await
    {
        Err(CliError::Api { status: 404, .. }) => return no_value(&api_path),
        result => result?.unwrap_or(Value::Null),
    };
    if is_json(&args) && args.value("field").is_none() {
        print_json(&body);
        return Ok(0);
    }
    let (data, metadata) = if version2 {
        (
            body["data"]["data"].clone(),
            Some(body["data"]["metadata"].clone()),
        )
    } else {
        (body["data"].clone(), None)
    };
    if let Some(field) = args.value("field") {
        return print_field(&data, field);
    }
    if version2 {
        println!("{}", banner("Secret Path", &api_path));
    }
    if let Some(Value::Object(metadata)) = metadata {
        println!("{}", banner("Metadata", ""));
        print_map(&metadata);
        println!();
    }
    println!("{}", banner("Data", ""));
    match data {
        Value::Object(data) => print_map(&data),
        _ => println!("(no data)"),
    }
    Ok(0)
}

async fn kv_put(argv: &[String]) -> Result<u8, CliError> {
    let args = parse(argv, &[("mount", Kind::Value), ("cas", Kind::Value)])?;
    let path = one_path(&args, "kv put")?;
    let data = pairs(&args.positional[1..])?;
    if data.is_empty() {
        return Err(CliError::local(
            "ward kv put needs at least one key=value pair",
        ));
    }
    let client = Client::from_args(&args)?;
    let mount = kv_mount(&client, &path).await?;
    let (api_path, version2) = mount.api_path(&path, "data");
    let body = if version2 {
        let mut body = json!({ "data": data });
        if let Some(cas) = args.value("cas") {
            let cas: u64 = cas
                .parse()
                .map_err(|_| CliError::local("-cas must be a number"))?;
            body["options"] = json!({ "cas": cas });
        }
        body
    } else {
        Value::Object(data)
    };
    let response = client.request("PUT", &api_path, Some(&body)).await?;
    match response {
        Some(response) if is_json(&args) => print_json(&response),
        Some(response) => {
            if version2 {
                println!("{}", banner("Secret Path", &api_path));
                println!("{}", banner("Metadata", ""));
            }
            if let Value::Object(data) = &response["data"] {
                print_map(data);
            }
        }
        None => println!("Success! Data written to: {api_path}"),
    }
    Ok(0)
}

/// Where a KV path is mounted and which version the mount speaks.
struct KvMount {
    /// `secret/`, or empty when the server could not say (treated as KV v1).
    path: String,
    version2: bool,
}

impl KvMount {
    /// The API path for a KV path: `secret/foo` → `secret/data/foo` on a v2 mount.
    fn api_path(&self, path: &str, section: &str) -> (String, bool) {
        match path.strip_prefix(&self.path) {
            Some(rest) if self.version2 && !self.path.is_empty() => {
                (format!("{}{section}/{rest}", self.path), true)
            }
            _ => (path.to_string(), false),
        }
    }
}

/// KV v2 detection through `sys/internal/ui/mounts/<path>`, as Vault's CLI does.
async fn kv_mount(client: &Client, path: &str) -> Result<KvMount, CliError> {
    match client
        .request("GET", &format!("sys/internal/ui/mounts/{path}"), None)
        .await
    {
        Ok(Some(body)) => {
            let data = &body["data"];
            let version = match &data["options"]["version"] {
                Value::String(v) => v.clone(),
                Value::Number(n) => n.to_string(),
                _ => String::new(),
            };
            Ok(KvMount {
                path: data["path"].as_str().unwrap_or_default().to_string(),
                version2: version == "2",
            })
        }
        Ok(None) | Err(CliError::Api { status: 404, .. }) => Ok(KvMount {
            path: String::new(),
            version2: false,
        }),
        Err(e) => Err(e),
    }
}

/// `ward operator init|unseal ...`
pub(crate) async fn operator(argv: &[String]) -> Result<u8, CliError> {
    match argv.split_first() {
        Some((verb, rest)) if verb == "init" => operator_init(rest).await,
        Some((verb, rest)) if verb == "unseal" => operator_unseal(rest).await,
        _ => Err(CliError::local("usage: ward operator init|unseal [flags]")),
    }
}

async fn operator_init(argv: &[String]) -> Result<u8, CliError> {
    let args = parse(
        argv,
        &[("key-shares", Kind::Value), ("key-threshold", Kind::Value)],
    )?;
    let number = |name: &str, default: u32| -> Result<u32, CliError> {
        args.value(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| CliError::local(format!("-{name} must be a number")))
        })
    };
    let request = ward_api::InitRequest {
        secret_shares: number("key-shares", 5)?,
        secret_threshold: number("key-threshold", 3)?,
        ..ward_api::InitRequest::default()
    };
    let client = Client::from_args(&args)?;
    let body = serde_json::to_value(&request).map_err(|e| CliError::local(e.to_string()))?;
    let response = client
        .request("PUT", "sys/init", Some(&body))
        .await?
        .unwrap_or(Value::Null);
    if is_json(&args) {
        print_json(&response);
        return Ok(0);
    }
    let init: ward_api::InitResponse = serde_json::from_value(response)
        .map_err(|e| CliError::local(format!("unexpected init response: {e}")))?;
    for (i, key) in init.keys_base64.iter().enumerate() {
        println!("Unseal Key {}: {key}", i + 1);
    }
    println!("\nInitial Root Token: {}\n", init.root_token);
    println!(
        "Ward initialized with {} key shares and a key threshold of {}. Please securely\n\
         distribute the key shares printed above: hand each one to a different person.\n\
         When Ward is re-sealed, restarted, or stopped, you must supply at least {}\n\
         of these keys to unseal it before it can start servicing requests.\n\n\
         Ward does not store the generated root key. Without at least {} keys to\n\
         reconstruct the root key, Ward will remain permanently sealed!",
        request.secret_shares,
        request.secret_threshold,
        request.secret_threshold,
        request.secret_threshold
    );
    Ok(0)
}

async fn operator_unseal(argv: &[String]) -> Result<u8, CliError> {
    let args = parse(argv, &[("reset", Kind::Bool)])?;
    let client = Client::from_args(&args)?;
    let body = if args.flag("reset") {
        json!({ "reset": true })
    } else {
        let key = match args.positional.first().map(String::as_str) {
            Some("-") | None => read_key_from_stdin()?,
            Some(key) => key.to_string(),
        };
        json!({ "key": key })
    };
    let response = client
        .request("PUT", "sys/unseal", Some(&body))
        .await?
        .unwrap_or(Value::Null);
    if is_json(&args) {
        print_json(&response);
        return Ok(0);
    }
    let status: ward_api::SealStatusResponse = serde_json::from_value(response)
        .map_err(|e| CliError::local(format!("unexpected unseal response: {e}")))?;
    let mut rows = vec![
        ("Seal Type".to_string(), status.kind.clone()),
        ("Initialized".into(), status.initialized.to_string()),
        ("Sealed".into(), status.sealed.to_string()),
        ("Total Shares".into(), status.n.to_string()),
        ("Threshold".into(), status.t.to_string()),
    ];
    if status.sealed {
        rows.push((
            "Unseal Progress".into(),
            format!("{}/{}", status.progress, status.t),
        ));
    }
    rows.push(("Version".into(), status.version));
    print_table(&rows);
    Ok(0)
}

/// Reads one line from stdin; when stdin is a terminal, prompts and turns echo off while
/// the key is typed (through `stty`, which keeps this crate free of unsafe code).
fn read_key_from_stdin() -> Result<String, CliError> {
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    if terminal {
        eprint!("Unseal Key (will be hidden): ");
        let _ = std::io::stderr().flush();
        set_echo(false);
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if terminal {
        set_echo(true);
        eprintln!();
    }
    read.map_err(|e| CliError::local(format!("cannot read the unseal key: {e}")))?;
    let key = line.trim().to_string();
    if key.is_empty() {
        return Err(CliError::local("no unseal key given"));
    }
    Ok(key)
}

fn set_echo(on: bool) {
    let _ = std::process::Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(std::process::Stdio::inherit())
        .status();
}

/// `ward version`
pub(crate) fn version() -> u8 {
    println!(
        "Ward v{} (Vault API {})",
        env!("CARGO_PKG_VERSION"),
        ward_api::VAULT_API_VERSION
    );
    0
}

fn one_path(args: &Args, command: &str) -> Result<String, CliError> {
    args.positional
        .first()
        .map(|p| p.trim_start_matches('/').to_string())
        .ok_or_else(|| CliError::local(format!("ward {command} needs a PATH")))
}

/// `k=v` arguments as a JSON object; `k=@file` reads the value from a file.
fn pairs(items: &[String]) -> Result<Map<String, Value>, CliError> {
    let mut data = Map::new();
    for item in items {
        let (key, value) = item.split_once('=').ok_or_else(|| {
            CliError::local(format!(
                "invalid key/value pair {item:?}: expected key=value"
            ))
        })?;
        let value = match value.strip_prefix('@') {
            Some(file) => std::fs::read_to_string(file)
                .map_err(|e| CliError::local(format!("cannot read {file}: {e}")))?,
            None => value.to_string(),
        };
        data.insert(key.to_string(), Value::String(value));
    }
    Ok(data)
}

fn query_string(data: &Map<String, Value>) -> String {
    let parts: Vec<String> = data
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v.as_str().unwrap_or_default())))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn no_value(path: &str) -> Result<u8, CliError> {
    eprintln!("No value found at {path}");
    Ok(2)
}

/// Prints a logical response: the raw JSON, one field, or a table of the data (or auth).
fn show_response(args: &Args, body: &Value) -> Result<u8, CliError> {
    if let Some(field) = args.value("field") {
        let source = if body["data"].is_object() {
            &body["data"]
        } else {
            &body["auth"]
        };
        return print_field(source, field);
    }
    if is_json(args) {
        print_json(body);
        return Ok(0);
    }
    let mut rows = Vec::new();
    if let Some(lease_duration) = body["lease_duration"].as_u64().filter(|d| *d > 0) {
        rows.push((
            "refresh_interval".to_string(),
            format_duration(lease_duration),
        ));
    }
    if let Value::Object(auth) = &body["auth"] {
        for (key, value) in auth {
            rows.push((
                format!("token_{key}").replace("token_client_token", "token"),
                display(value),
            ));
        }
    }
    if let Value::Object(data) = &body["data"] {
        rows.extend(data.iter().map(|(k, v)| (k.clone(), display(v))));
    }
    if let Value::Object(wrap) = &body["wrap_info"] {
        rows.extend(
            wrap.iter()
                .map(|(k, v)| (format!("wrapping_{k}"), display(v))),
        );
    }
    print_table(&rows);
    Ok(0)
}

fn print_field(data: &Value, field: &str) -> Result<u8, CliError> {
    match data.get(field) {
        Some(Value::String(s)) => {
            println!("{s}");
            Ok(0)
        }
        Some(other) => {
            println!("{other}");
            Ok(0)
        }
        None => Err(CliError::local(format!(
            "Field \"{field}\" not present in secret"
        ))),
    }
}

fn print_map(map: &Map<String, Value>) {
    let rows: Vec<(String, String)> = map.iter().map(|(k, v)| (k.clone(), display(v))).collect();
    print_table(&rows);
}

fn print_table(rows: &[(String, String)]) {
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(3).max(3);
    println!("{:<width$}    Value", "Key");
    println!("{:<width$}    -----", "---");
    for (key, value) in rows {
        println!("{key:<width$}    {value}");
    }
}

fn banner(title: &str, body: &str) -> String {
    let line = format!("====== {title} ======");
    if body.is_empty() {
        line
    } else {
        format!("{line}\n{body}\n")
    }
}

fn display(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "n/a".into(),
        other => other.to_string(),
    }
}

fn format_duration(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds % 3600 / 60, seconds % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_v2_paths_insert_the_section() {
        let mount = KvMount {
            path: "secret/".into(),
            version2: true,
        };
        assert_eq!(
            mount.api_path("secret/foo/bar", "data"),
            ("secret/data/foo/bar".to_string(), true)
        );
        let v1 = KvMount {
            path: "kv/".into(),
            version2: false,
        };
        assert_eq!(v1.api_path("kv/foo", "data"), ("kv/foo".to_string(), false));
    }

    #[test]
    fn pairs_and_queries() {
        let data = pairs(&["a=1".to_string(), "b=x=y".to_string()]).expect("valid");
        assert_eq!(Value::Object(data.clone()), json!({"a": "1", "b": "x=y"}));
        assert!(pairs(&["novalue".to_string()]).is_err());
        assert_eq!(query_string(&data), "?a=1&b=x%3Dy");
    }
}
