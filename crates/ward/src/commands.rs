//! The client verbs. This module holds what every verb shares (the common flags, `k=v`
//! arguments with `-` and `@file`, printing a response with `-format` and `-field`, hidden
//! prompts, the progress line) and the generic verbs: `status`, `read`, `write`, `list`,
//! `delete`, `patch`, `unwrap`, `print token`, `path-help`.
//!
//! The other verbs live in submodules: [`kv`], [`token`] (and `lease`), [`mounts`]
//! (`secrets`, `auth`, `audit`), [`policy`], [`operator`], [`login`]. Each verb parses its
//! flags, makes its API calls through [`crate::client::Client`], and returns an exit code;
//! help texts and completion scripts are in [`crate::help`].

pub(crate) mod access;
pub(crate) mod kv;
pub(crate) mod login;
pub(crate) mod mounts;
pub(crate) mod operator;
pub(crate) mod policy;
pub(crate) mod token;

use std::future::Future;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::args::{Args, Kind};
use crate::client::{CliError, Client};
use crate::output::{self, Format};

/// Flags every client verb accepts.
const COMMON: &[(&str, Kind)] = &[
    ("address", Kind::Value),
    ("ca-cert", Kind::Value),
    ("tls-skip-verify", Kind::Bool),
    ("format", Kind::Value),
    ("field", Kind::Value),
    ("wrap-ttl", Kind::Value),
];

/// One verb's parsed command line.
pub(crate) struct Cmd {
    pub(crate) args: Args,
    pub(crate) format: Format,
}

impl Cmd {
    /// Parses the common flags and the verb's own.
    pub(crate) fn parse(argv: &[String], extra: &[(&str, Kind)]) -> Result<Cmd, CliError> {
        let flags: Vec<(&str, Kind)> = COMMON.iter().chain(extra).copied().collect();
        let args = Args::parse(argv, &flags).map_err(CliError::Usage)?;
        let format = Format::parse(args.value("format"))?;
        Ok(Cmd { args, format })
    }

    pub(crate) fn client(&self) -> Result<Client, CliError> {
        Client::from_args(&self.args)
    }

    pub(crate) fn field(&self) -> Option<&str> {
        self.args.value("field")
    }

    pub(crate) fn positional(&self) -> &[String] {
        &self.args.positional
    }

    /// Exactly `n` positional arguments, or a usage error naming what is expected.
    pub(crate) fn expect_args(&self, n: usize, usage: &str) -> Result<&[String], CliError> {
        let given = self.args.positional.len();
        if given == n {
            Ok(&self.args.positional)
        } else {
            let what = if given < n {
                "not enough arguments"
            } else {
                "too many arguments"
            };
            Err(CliError::usage(format!(
                "{what} (expected {n}, got {given}); usage: {usage}"
            )))
        }
    }

    /// The first positional argument as an API path.
    pub(crate) fn path(&self, usage: &str) -> Result<String, CliError> {
        self.args
            .positional
            .first()
            .map(|p| p.trim_start_matches('/').to_string())
            .ok_or_else(|| CliError::usage(format!("missing PATH; usage: {usage}")))
    }

    pub(crate) fn seconds_flag(&self, name: &str) -> Result<Option<Value>, CliError> {
        self.args
            .value(name)
            .map(|v| duration_value(name, v))
            .transpose()
    }

    pub(crate) fn number_flag(&self, name: &str) -> Result<Option<u64>, CliError> {
        self.args
            .value(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| CliError::usage(format!("-{name} must be a whole number")))
            })
            .transpose()
    }

    /// Prints a logical response: `-field`, JSON/YAML, or a table of auth, data and wrap info.
    pub(crate) fn show(&self, body: &Value) -> Result<u8, CliError> {
        if let Some(field) = self.field() {
            let value = find_field(body, field).ok_or_else(|| {
                CliError::local(format!("field {field:?} not present in the response"))
            })?;
            output::print_field(self.format, &value);
            return Ok(0);
        }
        if !self.format.is_table() {
            self.format.print(body);
            return Ok(0);
        }
        let rows = response_rows(body);
        if rows.is_empty() {
            println!("Success! (no data in the response)");
        } else {
            output::print_table(&rows);
        }
        print_warnings(body);
        Ok(0)
    }

    /// Prints data with `-format` and `-field` applied to it, tables from `rows`.
    pub(crate) fn show_data(
        &self,
        data: &Value,
        rows: Vec<(String, String)>,
    ) -> Result<u8, CliError> {
        if let Some(field) = self.field() {
            let value = data.get(field).cloned().ok_or_else(|| {
                CliError::local(format!("field {field:?} not present in the response"))
            })?;
            output::print_field(self.format, &value);
            return Ok(0);
        }
        if self.format.is_table() {
            output::print_table(&rows);
        } else {
            self.format.print(data);
        }
        Ok(0)
    }
}

/// A duration flag as the API takes it: whole seconds as a number, anything else (`30m`) as
/// the string, after checking it parses.
fn duration_value(name: &str, text: &str) -> Result<Value, CliError> {
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Value::from(seconds));
    }
    if ward_core::duration::parse_seconds(text).is_none() {
        return Err(CliError::usage(format!(
            "invalid -{name}={text}: use seconds or a duration such as 30m or 768h"
        )));
    }
    Ok(Value::from(text))
}

/// Finds `-field=NAME` in a response: in `data`, then the token fields of `auth` under
/// Vault's CLI names (`token`, `token_accessor`, ...), then `wrap_info` (`wrapping_token`),
/// then the top level.
pub(crate) fn find_field(body: &Value, field: &str) -> Option<Value> {
    if let Some(value) = body["data"].get(field) {
        return Some(value.clone());
    }
    if let Value::Object(auth) = &body["auth"] {
        let key = match field {
            "token" => "client_token",
            "token_accessor" => "accessor",
            "token_duration" => "lease_duration",
            "token_renewable" => "renewable",
            "token_policies" => "token_policies",
            other => other,
        };
        if let Some(value) = auth.get(key) {
            return Some(value.clone());
        }
    }
    if let Some(key) = field.strip_prefix("wrapping_") {
        let key = if key == "token_ttl" { "ttl" } else { key };
        if let Some(value) = body["wrap_info"].get(key) {
            return Some(value.clone());
        }
    }
    body.get(field).cloned()
}

/// The table rows of a response, in Vault's order: lease, auth, data, wrap info.
pub(crate) fn response_rows(body: &Value) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    if let Some(lease_id) = body["lease_id"].as_str().filter(|l| !l.is_empty()) {
        rows.push(("lease_id".to_string(), lease_id.to_string()));
        rows.push((
            "lease_duration".to_string(),
            output::duration(body["lease_duration"].as_u64().unwrap_or(0)),
        ));
        rows.push((
            "lease_renewable".to_string(),
            output::display(&body["renewable"]),
        ));
    } else if let Some(seconds) = body["lease_duration"].as_u64().filter(|d| *d > 0) {
        rows.push(("refresh_interval".to_string(), output::duration(seconds)));
    }
    if let Value::Object(auth) = &body["auth"] {
        rows.extend(auth_rows(auth));
    }
    if let Value::Object(data) = &body["data"] {
        rows.extend(output::rows(data));
    }
    if let Value::Object(wrap) = &body["wrap_info"] {
        for (key, name) in [
            ("token", "wrapping_token:"),
            ("accessor", "wrapping_accessor:"),
            ("ttl", "wrapping_token_ttl:"),
            ("creation_time", "wrapping_token_creation_time:"),
            ("creation_path", "wrapping_token_creation_path:"),
            ("wrapped_accessor", "wrapped_accessor:"),
        ] {
            if let Some(value) = wrap.get(key).filter(|v| !v.is_null() && *v != "") {
                let shown = if key == "ttl" {
                    output::duration(value.as_u64().unwrap_or(0))
                } else {
                    output::display(value)
                };
                rows.push((name.to_string(), shown));
            }
        }
    }
    rows
}

/// The token rows Vault's CLI prints after `token create` and `login`.
pub(crate) fn auth_rows(auth: &Map<String, Value>) -> Vec<(String, String)> {
    let get = |key: &str| auth.get(key).cloned().unwrap_or(Value::Null);
    let mut rows = vec![
        ("token".to_string(), output::display(&get("client_token"))),
        ("token_accessor".into(), output::display(&get("accessor"))),
        (
            "token_duration".into(),
            match get("lease_duration").as_u64() {
                Some(0) | None => "∞".into(),
                Some(seconds) => output::duration(seconds),
            },
        ),
        ("token_renewable".into(), output::display(&get("renewable"))),
        (
            "token_policies".into(),
            output::display(&get("token_policies")),
        ),
        (
            "identity_policies".into(),
            output::display(&match get("identity_policies") {
                Value::Null => Value::Array(Vec::new()),
                other => other,
            }),
        ),
        ("policies".into(), output::display(&get("policies"))),
    ];
    if let Some(Value::Object(meta)) = auth.get("metadata") {
        rows.extend(
            meta.iter()
                .map(|(k, v)| (format!("token_meta_{k}"), output::display(v))),
        );
    }
    rows
}

pub(crate) fn print_warnings(body: &Value) {
    for warning in body["warnings"].as_array().into_iter().flatten() {
        if let Some(text) = warning.as_str() {
            eprintln!("WARNING! {text}");
        }
    }
}

/// `k=v` arguments as a JSON object, as Vault's CLI reads them: `k=-` takes the value from
/// stdin, `k=@file` from a file; a key given twice becomes a list. A lone `-` reads a whole
/// JSON object from stdin instead.
pub(crate) fn data_arguments(items: &[String]) -> Result<Map<String, Value>, CliError> {
    if items.len() == 1 && items[0] == "-" {
        let text = read_stdin()?;
        return match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(CliError::usage("stdin must hold a JSON object")),
            Err(e) => Err(CliError::usage(format!("stdin is not valid JSON: {e}"))),
        };
    }
    let mut data = Map::new();
    let mut stdin_used = false;
    for item in items {
        let (key, value) = item.split_once('=').ok_or_else(|| {
            CliError::usage(format!(
                "invalid key/value pair {item:?}: expected key=value (or key=@file, key=-)"
            ))
        })?;
        if key.is_empty() {
            return Err(CliError::usage(format!(
                "invalid key/value pair {item:?}: the key is empty"
            )));
        }
        let value = if value == "-" {
            if stdin_used {
                return Err(CliError::usage("only one value can be read from stdin"));
            }
            stdin_used = true;
            let text = read_stdin()?;
            text.strip_suffix('\n').unwrap_or(&text).to_string()
        } else if let Some(file) = value.strip_prefix('@') {
            std::fs::read_to_string(file)
                .map_err(|e| CliError::local(format!("cannot read {file} (for {key}): {e}")))?
        } else {
            value.to_string()
        };
        match data.get_mut(key) {
            Some(Value::Array(values)) => values.push(Value::String(value)),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, Value::String(value)]);
            }
            None => {
                data.insert(key.to_string(), Value::String(value));
            }
        }
    }
    Ok(data)
}

fn read_stdin() -> Result<String, CliError> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|e| CliError::local(format!("cannot read stdin: {e}")))?;
    Ok(text)
}

/// Reads a secret: prompts on a terminal with echo off, or reads one line from a pipe.
pub(crate) fn read_secret(prompt: &str) -> Result<String, CliError> {
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    if terminal {
        eprint!("{prompt} (will be hidden): ");
        let _ = std::io::stderr().flush();
        set_echo(false);
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if terminal {
        set_echo(true);
        eprintln!();
    }
    read.map_err(|e| CliError::local(format!("cannot read stdin: {e}")))?;
    let value = line.trim().to_string();
    if value.is_empty() {
        return Err(CliError::usage(format!("no value given for: {prompt}")));
    }
    Ok(value)
}

/// Echo off and on through `stty`, which keeps this crate free of unsafe code.
fn set_echo(on: bool) {
    let _ = std::process::Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(std::process::Stdio::inherit())
        .status();
}

/// Runs `work`, showing a spinner with the elapsed time on stderr while it takes longer than
/// a moment, only when stderr is a terminal (never in pipes, logs or tests).
pub(crate) async fn with_progress<T>(label: &str, work: impl Future<Output = T>) -> T {
    if !std::io::stderr().is_terminal() {
        return work.await;
    }
    const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
    let started = tokio::time::Instant::now();
    let mut ticker = tokio::time::interval_at(
        started + Duration::from_millis(300),
        Duration::from_millis(100),
    );
    let mut shown = false;
    let mut frame = 0usize;
    tokio::pin!(work);
    let result = loop {
        tokio::select! {
            result = &mut work => break result,
            _ = ticker.tick() => {
                shown = true;
                frame = (frame + 1) % FRAMES.len();
                eprint!(
                    "\r{} {label} ({:.1}s)",
                    FRAMES[frame],
                    started.elapsed().as_secs_f64()
                );
                let _ = std::io::stderr().flush();
            }
        }
    };
    if shown {
        eprint!("\r\x1b[2K");
        let _ = std::io::stderr().flush();
    }
    result
}

/// `ward status`: the seal status; exit code 2 when sealed, 1 when unreachable.
pub(crate) async fn status(argv: &[String]) -> Result<u8, CliError> {
    let cmd = Cmd::parse(argv, &[])?;
    cmd.expect_args(0, "ward status")?;
    let client = cmd.client()?;
    let body = client
        .request("GET", "sys/seal-status", None)
        .await?
        .unwrap_or(Value::Null);
    let status: ward_api::SealStatusResponse = serde_json::from_value(body.clone())
        .map_err(|e| CliError::local(format!("unexpected seal status: {e}")))?;
    let code = if status.sealed { 2 } else { 0 };
    if !cmd.format.is_table() || cmd.field().is_some() {
        cmd.show_data(&body, Vec::new())?;
        return Ok(code);
    }
    output::print_table(&seal_rows(&status));
    Ok(code)
}

/// The rows of `status` and `operator unseal`.
pub(crate) fn seal_rows(status: &ward_api::SealStatusResponse) -> Vec<(String, String)> {
    let or_na = |s: &str| {
        if s.is_empty() {
            "n/a".to_string()
        } else {
            s.to_string()
        }
    };
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
        rows.push(("Unseal Nonce".into(), or_na(&status.nonce)));
    }
    rows.push(("Version".into(), status.version.clone()));
    rows.push(("Build Date".into(), or_na(&status.build_date)));
    rows.push(("Storage Type".into(), status.storage_type.clone()));
    if !status.sealed {
        rows.push(("Cluster Name".into(), status.cluster_name.clone()));
        rows.push(("Cluster ID".into(), status.cluster_id.clone()));
    }
    rows.push(("HA Enabled".into(), "false".into()));
    rows
}

/// `ward read PATH [k=v ...]`
pub(crate) async fn read(argv: &[String]) -> Result<u8, CliError> {
    let cmd = Cmd::parse(argv, &[])?;
    let path = cmd.path("ward read [flags] PATH [k=v ...]")?;
    let query = query_string(&data_arguments(&cmd.positional()[1..])?);
    let client = cmd.client()?;
    match client.request("GET", &format!("{path}{query}"), None).await {
        Err(e) if e.status() == Some(404) => no_value(&path),
        result => cmd.show(&result?.unwrap_or(Value::Null)),
    }
}

/// `ward write PATH [k=v ... | -]`
pub(crate) async fn write(argv: &[String]) -> Result<u8, CliError> {
    let cmd = Cmd::parse(argv, &[("force", Kind::Bool), ("f", Kind::Bool)])?;
    let usage = "ward write [flags] PATH [k=v ... | -]";
    let path = cmd.path(usage)?;
    let data = data_arguments(&cmd.positional()[1..])?;
    if data.is_empty() && !cmd.args.flag("force") && !cmd.args.flag("f") {
        return Err(CliError::usage(format!(
            "no data to write; give k=v pairs, - for a JSON object on stdin, or -force to write nothing; usage: {usage}"
        )));
    }
    let client = cmd.client()?;
    let body = Value::Object(data);
    match client.request("PUT", &path, Some(&body)).await? {
        Some(response) => cmd.show(&response),
        None => {
            println!("Success! Data written to: {path}");
            Ok(0)
        }
    }
}

/// `ward patch PATH [k=v ... | -]`: a JSON merge patch, as Vault's `patch`.
pub(crate) async fn patch(argv: &[String]) -> Result<u8, CliError> {
    let cmd = Cmd::parse(argv, &[])?;
    let usage = "ward patch [flags] PATH [k=v ... | -]";
    let path = cmd.path(usage)?;
    let data = data_arguments(&cmd.positional()[1..])?;
    if data.is_empty() {
        return Err(CliError::usage(format!("no data to patch; usage: {usage}")));
    }
    let client = cmd.client()?;
    let body = Value::Object(data);
    let request = crate::client::Request {
        merge_patch: true,
        ..crate::client::Request::new("PATCH", &path).body(&body)
    };
    match client.send(request).await? {
        Some(response) => cmd.show(&response),
        None => {
            println!("Success! Data patched at: {path}");
            Ok(0)
        }
    }
}

/// `ward list PATH`
pub(crate) async fn list(argv: &[String]) -> Result<u8, CliError> {
    let cmd = Cmd::parse(argv, &[])?;
    cmd.expect_args(1, "ward list [flags] PATH")?;
    let path = cmd.path("ward list [flags] PATH")?;
    let client = cmd.client()?;
    let body = match client.request("LIST", &path, None).await {
        Err(e) if e.status() == Some(404) => {
            return no_value(&format!("{}/", path.trim_end_matches('/')))
        }
        result => result?.unwrap_or(Value::Null),
    };
    print_keys(&cmd, &body)
}

/// Prints `data.keys` of a LIST response.
pub(crate) fn print_keys(cmd: &Cmd, body: &Value) -> Result<u8, CliError> {
    let keys = &body["data"]["keys"];
    if cmd.field().is_some() {
        return cmd.show(body);
    }
    if !cmd.format.is_table() {
        cmd.format.print(keys);
        return Ok(0);
    }
    println!("Keys\n----");
    for key in keys.as_array().into_iter().flatten() {
        println!("{}", key.as_str().unwrap_or_default());
    }
    Ok(0)
}

/// `ward delete PATH [k=v ...]`
pub(crate) async fn delete(argv: &[String]) -> Result<u8, CliError> {
    let cmd = Cmd::parse(argv, &[])?;
    let path = cmd.path("ward delete [flags] PATH [k=v ...]")?;
    let query = query_string(&data_arguments(&cmd.positional()[1..])?);
    let client = cmd.client()?;
    client
        .request("DELETE", &format!("{path}{query}"), None)
        .await?;
    println!("Success! Data deleted (if it existed) at: {path}");
    Ok(0)
}

/// `ward unwrap [TOKEN]`: the wrapped response, unwrapped once. Without TOKEN the CLI's own
/// token is the wrapping token.
pub(crate) async fn unwrap(argv: &[String]) -> Result<u8, CliError> {
    let cmd = Cmd::parse(argv, &[])?;
    if cmd.positional().len() > 1 {
        return Err(CliError::usage(
            "too many arguments; usage: ward unwrap [flags] [TOKEN]",
        ));
    }
    let mut client = cmd.client()?;
    if let Some(token) = cmd.positional().first() {
        client = client.with_token(Some(token.clone()));
    }
    if client.token().is_none() {
        return Err(CliError::usage(
            "no wrapping token: give it as an argument (ward unwrap TOKEN)",
        ));
    }
    let body = match client.request("PUT", "sys/wrapping/unwrap", None).await {
        Err(CliError::Api(mut api)) if matches!(api.status, 400 | 403) => {
            api.summary = "wrapping token is not valid or does not exist: a wrapping token works once, for its TTL; \
                           check it was not already unwrapped, and that it was copied whole"
                .into();
            return Err(CliError::Api(api));
        }
        result => result?.unwrap_or(Value::Null),
    };
    cmd.show(&body)
}

/// `ward print token`: the token the CLI would send.
pub(crate) fn print(argv: &[String]) -> Result<u8, CliError> {
    match argv.first().map(String::as_str) {
        Some("token") if argv.len() == 1 => match crate::client::configured_token() {
            Some(token) => {
                println!("{token}");
                Ok(0)
            }
            None => Err(CliError::local(
                "no token: not logged in (run ward login), and WARD_TOKEN is not set",
            )),
        },
        _ => Err(CliError::usage("usage: ward print token")),
    }
}

/// `ward path-help PATH`: the server's help for a path, when it has some.
pub(crate) async fn path_help(argv: &[String]) -> Result<u8, CliError> {
    let cmd = Cmd::parse(argv, &[])?;
    cmd.expect_args(1, "ward path-help [flags] PATH")?;
    let path = cmd.path("ward path-help [flags] PATH")?;
    let client = cmd.client()?;
    let help = match client.request("GET", &format!("{path}?help=1"), None).await {
        Ok(Some(body)) => body.get("help").and_then(Value::as_str).map(str::to_string),
        Ok(None) => None,
        Err(e) if matches!(e.status(), Some(400 | 404 | 405)) => None,
        Err(e) => return Err(e),
    };
    match help {
        Some(text) if !cmd.format.is_table() => {
            cmd.format.print(&serde_json::json!({ "help": text }));
            Ok(0)
        }
        Some(text) => {
            println!("{text}");
            Ok(0)
        }
        None => {
            eprintln!(
                "No help available for this path: {path}\n\nThis Ward server does not serve help texts for API paths yet. The API is \
                 Vault's: see its documentation for {path}, and `ward secrets list` / `ward auth list` for what is mounted."
            );
            Ok(2)
        }
    }
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

pub(crate) fn query_string(data: &Map<String, Value>) -> String {
    let mut parts = Vec::new();
    for (key, value) in data {
        let values: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for value in values {
            parts.push(format!(
                "{}={}",
                encode(key),
                encode(value.as_str().unwrap_or_default())
            ));
        }
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

pub(crate) fn encode(text: &str) -> String {
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

pub(crate) fn no_value(path: &str) -> Result<u8, CliError> {
    eprintln!("No value found at {path}");
    Ok(2)
}

/// Parses `k=v` strings into a map of strings (for `-metadata`, `-options`).
pub(crate) fn string_pairs(flag: &str, items: &[String]) -> Result<Map<String, Value>, CliError> {
    let mut map = Map::new();
    for item in items {
        let (key, value) = item.split_once('=').ok_or_else(|| {
            CliError::usage(format!("invalid -{flag}={item}: expected key=value"))
        })?;
        map.insert(key.to_string(), Value::String(value.to_string()));
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pairs_and_queries() {
        let data = data_arguments(&["a=1".to_string(), "b=x=y".to_string()]).expect("valid");
        assert_eq!(Value::Object(data.clone()), json!({"a": "1", "b": "x=y"}));
        assert!(data_arguments(&["novalue".to_string()]).is_err());
        assert_eq!(query_string(&data), "?a=1&b=x%3Dy");
        let repeated = data_arguments(&["p=a".to_string(), "p=b".to_string()]).expect("valid");
        assert_eq!(Value::Object(repeated), json!({"p": ["a", "b"]}));
    }

    #[test]
    fn fields_are_found_under_vault_cli_names() {
        let body = json!({
            "data": null,
            "auth": {"client_token": "wrs.x", "accessor": "acc", "lease_duration": 60},
            "wrap_info": null,
        });
        assert_eq!(find_field(&body, "token"), Some(json!("wrs.x")));
        assert_eq!(find_field(&body, "token_accessor"), Some(json!("acc")));
        assert_eq!(find_field(&body, "nope"), None);
        let wrapped = json!({"wrap_info": {"token": "wrs.w", "ttl": 60}});
        assert_eq!(find_field(&wrapped, "wrapping_token"), Some(json!("wrs.w")));
    }

    #[test]
    fn durations_are_checked() {
        assert_eq!(duration_value("ttl", "30").expect("ok"), json!(30));
        assert_eq!(duration_value("ttl", "30m").expect("ok"), json!("30m"));
        assert!(duration_value("ttl", "soon").is_err());
    }
}
