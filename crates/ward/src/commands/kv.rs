//! `ward kv ...`: the key/value verbs, for KV v1 and v2 mounts alike.
//!
//! As Vault's CLI does, each verb first asks `sys/internal/ui/mounts/<path>` which mount holds
//! the path and which version it speaks, then inserts `data/`, `metadata/`, `delete/`, ... after
//! the mount on v2. `-mount=NAME` names the mount explicitly, and the path is then relative to
//! it. Verbs that only exist on v2 (`undelete`, `destroy`, `metadata`, `rollback`) say so on v1.

use serde_json::{json, Map, Value};

use crate::args::Kind;
use crate::client::{CliError, Client, Request};
use crate::commands::{data_arguments, no_value, print_keys, string_pairs, Cmd};
use crate::output;

/// `ward kv SUBCOMMAND ...`
pub(crate) async fn run(argv: &[String]) -> Result<u8, CliError> {
    let Some((verb, rest)) = argv.split_first() else {
        return Err(CliError::usage(
            "missing subcommand; usage: ward kv get|put|patch|list|delete|undelete|destroy|metadata|rollback",
        ));
    };
    match verb.as_str() {
        "get" => get(rest).await,
        "put" => put(rest).await,
        "patch" => patch(rest).await,
        "list" => list(rest).await,
        "delete" => delete(rest).await,
        "undelete" => versions_verb(rest, "undelete").await,
        "destroy" => versions_verb(rest, "destroy").await,
        "metadata" => metadata(rest).await,
        "rollback" => rollback(rest).await,
        other => Err(CliError::usage(format!(
            "unknown subcommand {other:?}; see: ward kv -help"
        ))),
    }
}

/// Where a KV path lives: the mount, the path inside it, and the version.
struct KvPath {
    /// `secret/` (with the slash), or empty when the server could not say (KV v1 assumed).
    mount: String,
    /// The path inside the mount.
    rest: String,
    version2: bool,
}

impl KvPath {
    /// The API path for one of KV v2's sections (`data`, `metadata`, `delete`, ...); on v1
    /// the path as it is.
    fn api(&self, section: &str) -> String {
        if self.version2 {
            format!("{}{section}/{}", self.mount, self.rest)
        } else {
            format!("{}{}", self.mount, self.rest)
        }
    }

    fn require_v2(&self, verb: &str) -> Result<(), CliError> {
        if self.version2 {
            Ok(())
        } else {
            Err(CliError::usage(format!(
                "ward kv {verb} needs a KV version 2 mount, and {} is version 1",
                if self.mount.is_empty() {
                    "this path"
                } else {
                    &self.mount
                }
            )))
        }
    }
}

const MOUNT_FLAG: (&str, Kind) = ("mount", Kind::Value);

async fn resolve(cmd: &Cmd, client: &Client, usage: &str) -> Result<KvPath, CliError> {
    let given = cmd
        .positional()
        .first()
        .map(|p| p.trim_start_matches('/').to_string());
    let (probe, explicit) = match cmd.args.value("mount") {
        Some(mount) => {
            let mount = format!("{}/", mount.trim_matches('/'));
            (mount.clone(), Some((mount, given.unwrap_or_default())))
        }
        None => {
            let path =
                given.ok_or_else(|| CliError::usage(format!("missing PATH; usage: {usage}")))?;
            (path, None)
        }
    };
    let (mount, version2) = mount_info(client, &probe).await?;
    Ok(match explicit {
        Some((mount_flag, rest)) => KvPath {
            mount: mount_flag,
            rest,
            version2,
        },
        None => {
            let rest = probe
                .strip_prefix(&mount)
                .or_else(|| (probe == mount.trim_end_matches('/')).then_some(""))
                .map(str::to_string);
            match rest {
                Some(rest) if !mount.is_empty() => KvPath {
                    mount,
                    rest,
                    version2,
                },
                _ => KvPath {
                    mount: String::new(),
                    rest: probe,
                    version2: false,
                },
            }
        }
    })
}

/// KV v2 detection through `sys/internal/ui/mounts/<path>`, as Vault's CLI does.
async fn mount_info(client: &Client, path: &str) -> Result<(String, bool), CliError> {
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
            let mount = data["path"].as_str().unwrap_or_default().to_string();
            Ok((mount, version == "2"))
        }
        Ok(None) => Ok((String::new(), false)),
        Err(e) if e.status() == Some(404) => Err(CliError::usage(format!(
            "no secrets engine is mounted at {path}; see the mounts with: ward secrets list"
        ))),
        Err(CliError::Api(mut api)) if api.status == 403 => {
            // The preflight's own path means nothing to the user: name theirs.
            let probe = format!("sys/internal/ui/mounts/{path}");
            api.summary = api
                .summary
                .replace(
                    &format!("do not grant read on {probe}"),
                    &format!("grant nothing under {path}"),
                )
                .replace(&probe, path);
            Err(CliError::Api(api))
        }
        Err(e) => Err(e),
    }
}

/// The data a put or patch writes: the arguments after PATH.
fn write_data(cmd: &Cmd, verb: &str) -> Result<Map<String, Value>, CliError> {
    if cmd.positional().is_empty() {
        return Err(CliError::usage(format!(
            "missing PATH; usage: ward kv {verb} [flags] PATH k=v..."
        )));
    }
    let data = data_arguments(cmd.positional().get(1..).unwrap_or_default())?;
    if data.is_empty() {
        return Err(CliError::usage(format!(
            "ward kv {verb} needs data: key=value pairs, key=@file, key=-, or - for a JSON object on stdin"
        )));
    }
    Ok(data)
}

fn cas_option(cmd: &Cmd) -> Result<Option<Value>, CliError> {
    Ok(cmd.number_flag("cas")?.map(|cas| json!({ "cas": cas })))
}

async fn get(argv: &[String]) -> Result<u8, CliError> {
    let usage = "ward kv get [-mount=M] [-version=N] [-field=K] PATH";
    let cmd = Cmd::parse(argv, &[MOUNT_FLAG, ("version", Kind::Value)])?;
    let client = cmd.client()?;
    let kv = resolve(&cmd, &client, usage).await?;
    let mut api = kv.api("data");
    if let Some(version) = cmd.number_flag("version")? {
        kv.require_v2("get -version")?;
        api = format!("{api}?version={version}");
    }
    let body = match client.request("GET", &api, None).await {
        Err(e) if e.status() == Some(404) => return no_value(&kv.api("data")),
        result => result?.unwrap_or(Value::Null),
    };
    let (data, metadata) = if kv.version2 {
        (
            body["data"]["data"].clone(),
            Some(body["data"]["metadata"].clone()),
        )
    } else {
        (body["data"].clone(), None)
    };
    if let Some(field) = cmd.field() {
        let value = data
            .get(field)
            .cloned()
            .ok_or_else(|| CliError::local(format!("field {field:?} not present in secret")))?;
        output::print_field(cmd.format, &value);
        return Ok(0);
    }
    if !cmd.format.is_table() {
        cmd.format.print(&body);
        return Ok(0);
    }
    if kv.version2 {
        println!("{}", banner("Secret Path"));
        println!("{}\n", kv.api("data"));
    }
    if let Some(Value::Object(metadata)) = metadata {
        println!("{}", banner("Metadata"));
        output::print_table(&output::rows(&metadata));
        println!();
    } else if let Some(seconds) = body["lease_duration"].as_u64().filter(|d| *d > 0) {
        output::print_table(&[("refresh_interval".into(), output::duration(seconds))]);
        println!();
    }
    println!("{}", banner("Data"));
    match data {
        Value::Object(data) => output::print_table(&output::rows(&data)),
        _ => println!("(no data)"),
    }
    Ok(0)
}

async fn put(argv: &[String]) -> Result<u8, CliError> {
    let usage = "ward kv put [-mount=M] [-cas=N] PATH k=v... | -";
    let cmd = Cmd::parse(argv, &[MOUNT_FLAG, ("cas", Kind::Value)])?;
    let data = write_data(&cmd, "put")?;
    let client = cmd.client()?;
    let kv = resolve(&cmd, &client, usage).await?;
    let body = if kv.version2 {
        let mut body = json!({ "data": data });
        if let Some(options) = cas_option(&cmd)? {
            body["options"] = options;
        }
        body
    } else {
        if cmd.args.has("cas") {
            kv.require_v2("put -cas")?;
        }
        Value::Object(data)
    };
    let response = client.request("PUT", &kv.api("data"), Some(&body)).await?;
    print_write(&cmd, &kv, response)
}

fn print_write(cmd: &Cmd, kv: &KvPath, response: Option<Value>) -> Result<u8, CliError> {
    match response {
        Some(response) if cmd.field().is_some() || !cmd.format.is_table() => cmd.show(&response),
        Some(response) => {
            println!("{}", banner("Secret Path"));
            println!("{}\n", kv.api("data"));
            println!("{}", banner("Metadata"));
            if let Value::Object(data) = &response["data"] {
                output::print_table(&output::rows(data));
            }
            Ok(0)
        }
        None => {
            println!("Success! Data written to: {}", kv.api("data"));
            Ok(0)
        }
    }
}

async fn patch(argv: &[String]) -> Result<u8, CliError> {
    let usage = "ward kv patch [-mount=M] [-cas=N] [-method=patch|rw] PATH k=v...";
    let cmd = Cmd::parse(
        argv,
        &[MOUNT_FLAG, ("cas", Kind::Value), ("method", Kind::Value)],
    )?;
    let data = write_data(&cmd, "patch")?;
    let client = cmd.client()?;
    let kv = resolve(&cmd, &client, usage).await?;
    let method = cmd.args.value("method").unwrap_or("patch");
    if !kv.version2 {
        // KV v1 has no versions: read, merge, write.
        let current = match client.request("GET", &kv.api("data"), None).await {
            Err(e) if e.status() == Some(404) => return no_value(&kv.api("data")),
            result => result?.unwrap_or(Value::Null),
        };
        let mut merged = current["data"].as_object().cloned().unwrap_or_default();
        merged.extend(data);
        let body = Value::Object(merged);
        client.request("PUT", &kv.api("data"), Some(&body)).await?;
        println!("Success! Data written to: {}", kv.api("data"));
        return Ok(0);
    }
    let response = match method {
        "patch" => {
            let mut body = json!({ "data": data });
            if let Some(options) = cas_option(&cmd)? {
                body["options"] = options;
            }
            let api = kv.api("data");
            let request = Request {
                merge_patch: true,
                ..Request::new("PATCH", &api).body(&body)
            };
            match client.send(request).await {
                Err(e) if e.status() == Some(404) => return no_value(&kv.api("data")),
                result => result?,
            }
        }
        "rw" => {
            let current = match client.request("GET", &kv.api("data"), None).await {
                Err(e) if e.status() == Some(404) => return no_value(&kv.api("data")),
                result => result?.unwrap_or(Value::Null),
            };
            let mut merged = current["data"]["data"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            merged.extend(data);
            let version = current["data"]["metadata"]["version"].as_u64().unwrap_or(0);
            let cas = cmd.number_flag("cas")?.unwrap_or(version);
            let body = json!({ "data": merged, "options": { "cas": cas } });
            client.request("PUT", &kv.api("data"), Some(&body)).await?
        }
        other => {
            return Err(CliError::usage(format!(
                "invalid -method={other}: use patch or rw"
            )))
        }
    };
    print_write(&cmd, &kv, response)
}

async fn list(argv: &[String]) -> Result<u8, CliError> {
    let usage = "ward kv list [-mount=M] PATH";
    let cmd = Cmd::parse(argv, &[MOUNT_FLAG])?;
    let client = cmd.client()?;
    let kv = resolve(&cmd, &client, usage).await?;
    let api = kv.api("metadata");
    let body = match client.request("LIST", &api, None).await {
        Err(e) if e.status() == Some(404) => {
            return no_value(&format!("{}/", api.trim_end_matches('/')))
        }
        result => result?.unwrap_or(Value::Null),
    };
    print_keys(&cmd, &body)
}

fn versions(cmd: &Cmd) -> Result<Vec<u64>, CliError> {
    let mut out = Vec::new();
    for text in cmd.args.values("versions") {
        for part in text.split(',').filter(|p| !p.trim().is_empty()) {
            out.push(part.trim().parse().map_err(|_| {
                CliError::usage(format!("invalid -versions={text}: use numbers such as 1,2"))
            })?);
        }
    }
    Ok(out)
}

async fn delete(argv: &[String]) -> Result<u8, CliError> {
    let usage = "ward kv delete [-mount=M] [-versions=1,2] PATH";
    let cmd = Cmd::parse(argv, &[MOUNT_FLAG, ("versions", Kind::Value)])?;
    let client = cmd.client()?;
    let kv = resolve(&cmd, &client, usage).await?;
    let versions = versions(&cmd)?;
    if versions.is_empty() {
        client.request("DELETE", &kv.api("data"), None).await?;
    } else {
        kv.require_v2("delete -versions")?;
        let body = json!({ "versions": versions });
        client
            .request("PUT", &kv.api("delete"), Some(&body))
            .await?;
    }
    println!(
        "Success! Data deleted (if it existed) at: {}",
        kv.api("data")
    );
    Ok(0)
}

/// `undelete` and `destroy`, which both take `-versions`.
async fn versions_verb(argv: &[String], verb: &str) -> Result<u8, CliError> {
    let usage = format!("ward kv {verb} [-mount=M] -versions=1,2 PATH");
    let cmd = Cmd::parse(argv, &[MOUNT_FLAG, ("versions", Kind::Value)])?;
    let versions = versions(&cmd)?;
    if versions.is_empty() {
        return Err(CliError::usage(format!(
            "ward kv {verb} needs -versions; usage: {usage}"
        )));
    }
    let client = cmd.client()?;
    let kv = resolve(&cmd, &client, &usage).await?;
    kv.require_v2(verb)?;
    let body = json!({ "versions": versions });
    client.request("PUT", &kv.api(verb), Some(&body)).await?;
    let done = if verb == "destroy" {
        "destroyed"
    } else {
        "undeleted"
    };
    println!("Success! Data {done} at: {}", kv.api("data"));
    Ok(0)
}

async fn metadata(argv: &[String]) -> Result<u8, CliError> {
    let Some((verb, rest)) = argv.split_first() else {
        return Err(CliError::usage(
            "missing subcommand; usage: ward kv metadata get|put|patch|delete PATH",
        ));
    };
    let flags = [
        MOUNT_FLAG,
        ("max-versions", Kind::Value),
        ("cas-required", Kind::Bool),
        ("delete-version-after", Kind::Value),
        ("custom-metadata", Kind::Value),
    ];
    let usage = format!("ward kv metadata {verb} [-mount=M] PATH");
    let cmd = Cmd::parse(rest, &flags)?;
    let client = cmd.client()?;
    let kv = resolve(&cmd, &client, &usage).await?;
    kv.require_v2("metadata")?;
    let api = kv.api("metadata");
    match verb.as_str() {
        "get" => {
            let body = match client.request("GET", &api, None).await {
                Err(e) if e.status() == Some(404) => return no_value(&api),
                result => result?.unwrap_or(Value::Null),
            };
            if cmd.field().is_some() || !cmd.format.is_table() {
                return cmd.show(&body);
            }
            let data = body["data"].as_object().cloned().unwrap_or_default();
            println!("{}", banner("Metadata Path"));
            println!("{api}\n");
            println!("{}", banner("Metadata"));
            let rows: Vec<(String, String)> = output::rows(&data)
                .into_iter()
                .filter(|(k, _)| k != "versions")
                .collect();
            output::print_table(&rows);
            if let Some(Value::Object(versions)) = data.get("versions") {
                let mut numbered: Vec<(u64, &Value)> = versions
                    .iter()
                    .filter_map(|(k, v)| k.parse().ok().map(|n| (n, v)))
                    .collect();
                numbered.sort_by_key(|(n, _)| *n);
                for (number, version) in numbered {
                    println!("\n{}", banner(&format!("Version {number}")));
                    if let Value::Object(fields) = version {
                        output::print_table(&output::rows(fields));
                    }
                }
            }
            Ok(0)
        }
        "put" | "patch" => {
            let mut body = Map::new();
            if let Some(n) = cmd.number_flag("max-versions")? {
                body.insert("max_versions".into(), json!(n));
            }
            if cmd.args.has("cas-required") {
                body.insert("cas_required".into(), json!(cmd.args.flag("cas-required")));
            }
            if let Some(after) = cmd.seconds_flag("delete-version-after")? {
                body.insert("delete_version_after".into(), after);
            }
            let custom = cmd.args.values("custom-metadata");
            if !custom.is_empty() {
                body.insert(
                    "custom_metadata".into(),
                    Value::Object(string_pairs("custom-metadata", custom)?),
                );
            }
            let body = Value::Object(body);
            if verb == "patch" {
                let request = Request {
                    merge_patch: true,
                    ..Request::new("PATCH", &api).body(&body)
                };
                client.send(request).await?;
            } else {
                client.request("PUT", &api, Some(&body)).await?;
            }
            println!("Success! Data written to: {api}");
            Ok(0)
        }
        "delete" => {
            client.request("DELETE", &api, None).await?;
            println!("Success! Data deleted (if it existed) at: {api}");
            Ok(0)
        }
        other => Err(CliError::usage(format!(
            "unknown subcommand {other:?}; usage: ward kv metadata get|put|patch|delete PATH"
        ))),
    }
}

/// `kv rollback -version=N PATH`: writes version N's data as a new version, with `cas` set
/// to the current version so a concurrent write is not lost.
async fn rollback(argv: &[String]) -> Result<u8, CliError> {
    let usage = "ward kv rollback [-mount=M] -version=N PATH";
    let cmd = Cmd::parse(argv, &[MOUNT_FLAG, ("version", Kind::Value)])?;
    let Some(version) = cmd.number_flag("version")? else {
        return Err(CliError::usage(format!("missing -version; usage: {usage}")));
    };
    let client = cmd.client()?;
    let kv = resolve(&cmd, &client, usage).await?;
    kv.require_v2("rollback")?;
    let metadata = client
        .request("GET", &kv.api("metadata"), None)
        .await?
        .unwrap_or(Value::Null);
    let current = metadata["data"]["current_version"].as_u64().unwrap_or(0);
    let entry = &metadata["data"]["versions"][version.to_string()];
    if entry.is_null() {
        return Err(CliError::usage(format!(
            "version {version} of {} does not exist (current version: {current})",
            kv.api("data")
        )));
    }
    if entry["destroyed"].as_bool() == Some(true) {
        return Err(CliError::usage(format!("version {version} is destroyed")));
    }
    if entry["deletion_time"]
        .as_str()
        .is_some_and(|t| !t.is_empty())
    {
        return Err(CliError::usage(format!(
            "version {version} is deleted; undelete it first with: ward kv undelete -versions={version} {}",
            kv.api("data")
        )));
    }
    let old = client
        .request(
            "GET",
            &format!("{}?version={version}", kv.api("data")),
            None,
        )
        .await?
        .unwrap_or(Value::Null);
    let body = json!({ "data": old["data"]["data"], "options": { "cas": current } });
    let response = client.request("PUT", &kv.api("data"), Some(&body)).await?;
    print_write(&cmd, &kv, response)
}

fn banner(title: &str) -> String {
    let bar = "=".repeat(6);
    format!("{bar} {title} {bar}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_paths_insert_the_section() {
        let kv = KvPath {
            mount: "secret/".into(),
            rest: "foo/bar".into(),
            version2: true,
        };
        assert_eq!(kv.api("data"), "secret/data/foo/bar");
        assert_eq!(kv.api("metadata"), "secret/metadata/foo/bar");
        let v1 = KvPath {
            mount: "kv/".into(),
            rest: "foo".into(),
            version2: false,
        };
        assert_eq!(v1.api("data"), "kv/foo");
        assert!(v1.require_v2("destroy").is_err());
    }
}
