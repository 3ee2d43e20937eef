//! The server configuration file, in Vault's format: HCL, or JSON (chosen by the `.json`
//! extension or by a document that starts with `{`).
//!
//! This module owns decoding and validation only. The file is read once into a typed
//! [`Config`] that `main` hands down; nothing else in the server reads the file or the
//! environment. HCL goes through `ward_policy::hcl`, the HCL1 reader that keeps positions, so
//! an unknown key is reported with its line (`unknown key "storge" at line 3`); JSON is
//! converted to the same tree and decoded by the same code, without line numbers.
//!
//! Both Vault spellings of a labelled stanza are accepted: `storage "sqlite" { ... }` and the
//! JSON-shaped `storage = { sqlite = { ... } }` (or a list of such objects for listeners).

use std::fmt;
use std::path::{Path, PathBuf};

use ward_policy::hcl::{self, Body, Item, ValueKind};

/// The default `max_request_size` of a listener, as Vault: 32 MiB.
pub const DEFAULT_MAX_REQUEST_SIZE: u64 = 32 * 1024 * 1024;
/// The default listener address, as Vault.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8200";

/// The whole server configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub storage: Storage,
    pub listeners: Vec<Listener>,
    pub api_addr: Option<String>,
    pub cluster_addr: Option<String>,
    pub ui: bool,
    pub disable_mlock: bool,
    /// Seconds; `None` keeps the core's default (768h).
    pub default_lease_ttl: Option<u64>,
    pub max_lease_ttl: Option<u64>,
    pub log_level: Option<String>,
    pub cluster_name: Option<String>,
    pub pid_file: Option<PathBuf>,
}

/// The storage backend.
#[derive(Debug, Clone, PartialEq)]
pub enum Storage {
    InMemory,
    Sqlite { path: PathBuf },
}

impl Storage {
    /// The name shown in `sys/seal-status` (`storage_type`).
    pub fn kind(&self) -> &'static str {
        match self {
            Storage::InMemory => "inmem",
            Storage::Sqlite { .. } => "sqlite",
        }
    }
}

/// One `listener "tcp"` stanza.
#[derive(Debug, Clone, PartialEq)]
pub struct Listener {
    pub address: String,
    /// `None` when `tls_disable = true`.
    pub tls: Option<Tls>,
    /// Bytes; `None` means no limit (Vault: a negative value).
    pub max_request_size: Option<u64>,
    /// `telemetry { unauthenticated_metrics_access = true }`: `sys/metrics` needs no token.
    pub unauthenticated_metrics_access: bool,
}

/// TLS files of a listener.
#[derive(Debug, Clone, PartialEq)]
pub struct Tls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// When set, clients must present a certificate signed by one of these CAs.
    pub client_ca_file: Option<PathBuf>,
    /// `tls12` (default) or `tls13`.
    pub min_version: TlsVersion,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// Why a configuration was refused. The message names the key and, for HCL, its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and decodes a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| error(format!("cannot read config file {}: {e}", path.display())))?;
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        Config::parse(&text, is_json)
            .map_err(|e| error(format!("{}: {}", path.display(), e.message)))
    }

    /// Decodes a configuration document; `is_json` forces JSON, otherwise a document that
    /// starts with `{` is taken as JSON and anything else as HCL.
    pub fn parse(text: &str, is_json: bool) -> Result<Config, ConfigError> {
        let body = if is_json || text.trim_start().starts_with('{') {
            let json: serde_json::Value =
                serde_json::from_str(text).map_err(|e| error(format!("invalid JSON: {e}")))?;
            Body::from_json(&json).map_err(hcl_error)?
        } else {
            hcl::parse(text).map_err(hcl_error)?
        };
        decode(&body)
    }

    /// The configuration of `ward server -dev`: memory storage, one plaintext listener.
    pub fn dev(address: &str) -> Config {
        Config {
            storage: Storage::InMemory,
            listeners: vec![Listener {
                address: address.to_string(),
                tls: None,
                max_request_size: Some(DEFAULT_MAX_REQUEST_SIZE),
                unauthenticated_metrics_access: false,
            }],
            api_addr: None,
            cluster_addr: None,
            ui: true,
            disable_mlock: true,
            default_lease_ttl: None,
            max_lease_ttl: None,
            log_level: None,
            cluster_name: None,
            pid_file: None,
        }
    }
}

const TOP_LEVEL_KEYS: &[&str] = &[
    "storage",
    "backend",
    "listener",
    "api_addr",
    "cluster_addr",
    "ui",
    "disable_mlock",
    "default_lease_ttl",
    "max_lease_ttl",
    "log_level",
    "cluster_name",
    "pid_file",
    "telemetry",
];

const LISTENER_KEYS: &[&str] = &[
    "address",
    "cluster_address",
    "tls_disable",
    "tls_cert_file",
    "tls_key_file",
    "tls_client_ca_file",
    "tls_min_version",
    "max_request_size",
    "telemetry",
];

const TELEMETRY_KEYS: &[&str] = &[
    "unauthenticated_metrics_access",
    "prometheus_retention_time",
    "disable_hostname",
    "usage_gauge_period",
    "maximum_gauge_cardinality",
    "statsite_address",
    "statsd_address",
];

fn decode(body: &Body) -> Result<Config, ConfigError> {
    check_keys(body, TOP_LEVEL_KEYS)?;
    let mut storage = None;
    let mut listeners = Vec::new();
    let mut config = Config::dev(DEFAULT_ADDRESS);
    config.listeners.clear();
    config.ui = false;
    config.disable_mlock = false;
    for item in body.items() {
        match item.key.as_str() {
            "storage" | "backend" => {
                for (kind, stanza, line) in stanzas(item)? {
                    if storage.is_some() {
                        return Err(at(line, "only one storage stanza is allowed"));
                    }
                    storage = Some(decode_storage(&kind, stanza, line)?);
                }
            }
            "listener" => {
                for (kind, stanza, line) in stanzas(item)? {
                    if kind != "tcp" {
                        return Err(at(
                            line,
                            format!("unsupported listener type {kind:?} (only \"tcp\")"),
                        ));
                    }
                    listeners.push(decode_listener(stanza, line)?);
                }
            }
            "telemetry" => check_keys(object(item)?, TELEMETRY_KEYS)?,
            "api_addr" => config.api_addr = Some(string(item)?.to_string()),
            "cluster_addr" => config.cluster_addr = Some(string(item)?.to_string()),
            "ui" => config.ui = boolean(item)?,
            "disable_mlock" => config.disable_mlock = boolean(item)?,
            "default_lease_ttl" => config.default_lease_ttl = Some(duration(item)?),
            "max_lease_ttl" => config.max_lease_ttl = Some(duration(item)?),
            "log_level" => config.log_level = Some(log_level(item)?),
            "cluster_name" => config.cluster_name = Some(string(item)?.to_string()),
            "pid_file" => config.pid_file = Some(PathBuf::from(string(item)?)),
            _ => {}
        }
    }
    config.storage = storage.ok_or_else(|| {
        error("a storage stanza is required, e.g. storage \"sqlite\" { path = \"...\" }")
    })?;
    if listeners.is_empty() {
        return Err(error("at least one listener \"tcp\" stanza is required"));
    }
    config.listeners = listeners;
    if let (Some(default), Some(max)) = (config.default_lease_ttl, config.max_lease_ttl) {
        if default > max {
            return Err(error(
                "default_lease_ttl cannot be greater than max_lease_ttl",
            ));
        }
    }
    Ok(config)
}

fn decode_storage(kind: &str, body: &Body, line: u32) -> Result<Storage, ConfigError> {
    match kind {
        "inmem" => {
            check_keys(body, &[])?;
            Ok(Storage::InMemory)
        }
        "sqlite" => {
            check_keys(body, &["path"])?;
            let item = body
                .get("path")
                .ok_or_else(|| at(line, "storage \"sqlite\" needs a path"))?;
            let path = string(item)?;
            if path.is_empty() {
                return Err(at(item.line, "storage \"sqlite\" needs a non-empty path"));
            }
            Ok(Storage::Sqlite {
                path: PathBuf::from(path),
            })
        }
        other => Err(at(
            line,
            format!("unsupported storage type {other:?} (use \"inmem\" or \"sqlite\")"),
        )),
    }
}

fn decode_listener(body: &Body, line: u32) -> Result<Listener, ConfigError> {
    check_keys(body, LISTENER_KEYS)?;
    let mut listener = Listener {
        address: DEFAULT_ADDRESS.to_string(),
        tls: None,
        max_request_size: Some(DEFAULT_MAX_REQUEST_SIZE),
        unauthenticated_metrics_access: false,
    };
    let mut tls_disable = false;
    let mut cert_file = None;
    let mut key_file = None;
    let mut client_ca_file = None;
    let mut min_version = TlsVersion::Tls12;
    for item in body.items() {
        match item.key.as_str() {
            "address" => listener.address = string(item)?.to_string(),
            "cluster_address" => {
                string(item)?;
            }
            "tls_disable" => tls_disable = boolean(item)?,
            "tls_cert_file" => cert_file = Some(PathBuf::from(string(item)?)),
            "tls_key_file" => key_file = Some(PathBuf::from(string(item)?)),
            "tls_client_ca_file" => client_ca_file = Some(PathBuf::from(string(item)?)),
            "tls_min_version" => {
                min_version = match string(item)? {
                    "tls12" => TlsVersion::Tls12,
                    "tls13" => TlsVersion::Tls13,
                    other => {
                        return Err(at(
                            item.line,
                            format!(
                            "unsupported tls_min_version {other:?} (use \"tls12\" or \"tls13\")"
                        ),
                        ))
                    }
                }
            }
            "max_request_size" => {
                let size = integer(item)?;
                listener.max_request_size = match size {
                    0 => Some(DEFAULT_MAX_REQUEST_SIZE),
                    n if n < 0 => None,
                    n => Some(n.unsigned_abs()),
                };
            }
            "telemetry" => {
                let telemetry = object(item)?;
                check_keys(telemetry, TELEMETRY_KEYS)?;
                if let Some(open) = telemetry.get("unauthenticated_metrics_access") {
                    listener.unauthenticated_metrics_access = boolean(open)?;
                }
            }
            _ => {}
        }
    }
    if !tls_disable {
        match (cert_file, key_file) {
            (Some(cert_file), Some(key_file)) => {
                listener.tls = Some(Tls {
                    cert_file,
                    key_file,
                    client_ca_file,
                    min_version,
                });
            }
            _ => {
                return Err(at(
                    line,
                    "listener \"tcp\" needs tls_cert_file and tls_key_file, or tls_disable = true",
                ))
            }
        }
    }
    Ok(listener)
}

/// The `(type, body, line)` triples of a labelled stanza, in either spelling:
/// `storage "sqlite" { ... }`, `storage = { sqlite = { ... } }`, or a list of the latter.
fn stanzas(item: &Item) -> Result<Vec<(String, &Body, u32)>, ConfigError> {
    if let [label] = item.labels.as_slice() {
        return Ok(vec![(label.clone(), object(item)?, item.line)]);
    }
    if item.labels.len() > 1 {
        return Err(at(
            item.line,
            format!("{:?} takes one label, the type", item.key),
        ));
    }
    let objects: Vec<&Body> = match &item.value.kind {
        ValueKind::Object(body) => vec![body],
        ValueKind::List(values) => values
            .iter()
            .map(|v| {
                v.as_object()
                    .ok_or_else(|| at(v.line, format!("{:?} must be a list of objects", item.key)))
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(at(
                item.line,
                format!("{:?} must be a block with a type label", item.key),
            ))
        }
    };
    let mut out = Vec::new();
    for body in objects {
        for inner in body.items() {
            out.push((inner.key.clone(), object(inner)?, inner.line));
        }
    }
    Ok(out)
}

fn check_keys(body: &Body, known: &[&str]) -> Result<(), ConfigError> {
    match body
        .items()
        .iter()
        .find(|item| !known.contains(&item.key.as_str()))
    {
        Some(item) => Err(at(item.line, format!("unknown key {:?}", item.key))),
        None => Ok(()),
    }
}

fn string(item: &Item) -> Result<&str, ConfigError> {
    item.string().map_err(hcl_error)
}

fn object(item: &Item) -> Result<&Body, ConfigError> {
    item.object().map_err(hcl_error)
}

fn integer(item: &Item) -> Result<i64, ConfigError> {
    match &item.value.kind {
        ValueKind::String(s) => s
            .trim()
            .parse()
            .map_err(|_| at(item.line, format!("{:?} must be an integer", item.key))),
        _ => item.integer().map_err(hcl_error),
    }
}

/// Vault accepts `true`, `"true"`, `1` and `"1"` (and their opposites) for booleans.
fn boolean(item: &Item) -> Result<bool, ConfigError> {
    let parsed = match &item.value.kind {
        ValueKind::Bool(b) => Some(*b),
        ValueKind::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "t" => Some(true),
            "false" | "0" | "f" | "" => Some(false),
            _ => None,
        },
        ValueKind::Number(_) => match item.value.as_i64() {
            Some(1) => Some(true),
            Some(0) => Some(false),
            _ => None,
        },
        _ => None,
    };
    parsed.ok_or_else(|| at(item.line, format!("{:?} must be a boolean", item.key)))
}

/// Seconds as a number, or a Go duration string (`"768h"`).
fn duration(item: &Item) -> Result<u64, ConfigError> {
    let parsed = match &item.value.kind {
        ValueKind::String(s) => ward_core::duration::parse_seconds(s),
        _ => item.value.as_i64().and_then(|n| u64::try_from(n).ok()),
    };
    parsed.ok_or_else(|| {
        at(
            item.line,
            format!("{:?} must be a duration such as 3600 or \"768h\"", item.key),
        )
    })
}

fn log_level(item: &Item) -> Result<String, ConfigError> {
    let level = string(item)?.to_ascii_lowercase();
    match level.as_str() {
        "trace" | "debug" | "info" | "warn" | "warning" | "err" | "error" => Ok(level),
        _ => Err(at(
            item.line,
            format!("unknown log_level {level:?} (trace, debug, info, warn, error)"),
        )),
    }
}

fn error(message: impl Into<String>) -> ConfigError {
    ConfigError {
        message: message.into(),
    }
}

/// An error at a line; line 0 (JSON) means the position is unknown and is not shown.
fn at(line: u32, message: impl Into<String>) -> ConfigError {
    let message = message.into();
    if line > 0 {
        error(format!("{message} at line {line}"))
    } else {
        error(message)
    }
}

fn hcl_error(e: hcl::HclError) -> ConfigError {
    error(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HCL: &str = r#"
# A typical single-node configuration.
storage "sqlite" {
  path = "/var/lib/ward/ward.db"
}

listener "tcp" {
  address       = "0.0.0.0:8200"
  tls_cert_file = "/etc/ward/cert.pem"
  tls_key_file  = "/etc/ward/key.pem"
  tls_client_ca_file = "/etc/ward/ca.pem"
  max_request_size = 1048576
  telemetry {
    unauthenticated_metrics_access = true
  }
}

listener "tcp" {
  address     = "127.0.0.1:8201"
  tls_disable = 1
  max_request_size = -1
}

api_addr          = "https://ward.example.com:8200"
cluster_addr      = "https://ward.example.com:8201"
ui                = true
disable_mlock     = "true"
default_lease_ttl = "768h"
max_lease_ttl     = 3600000
log_level         = "debug"
cluster_name      = "prod"
pid_file          = "/run/ward.pid"
"#;

    #[test]
    fn full_hcl_config() {
        let config = Config::parse(HCL, false).expect("valid config");
        assert_eq!(
            config.storage,
            Storage::Sqlite {
                path: "/var/lib/ward/ward.db".into()
            }
        );
        assert_eq!(config.listeners.len(), 2);
        let tls = config.listeners[0].tls.as_ref().expect("tls");
        assert_eq!(tls.cert_file, PathBuf::from("/etc/ward/cert.pem"));
        assert_eq!(tls.client_ca_file, Some(PathBuf::from("/etc/ward/ca.pem")));
        assert_eq!(config.listeners[0].max_request_size, Some(1_048_576));
        assert_eq!(config.listeners[1].tls, None);
        assert_eq!(config.listeners[1].max_request_size, None);
        assert_eq!(config.default_lease_ttl, Some(2_764_800));
        assert_eq!(config.max_lease_ttl, Some(3_600_000));
        assert!(config.ui && config.disable_mlock);
        assert_eq!(config.log_level.as_deref(), Some("debug"));
        assert_eq!(config.cluster_name.as_deref(), Some("prod"));
        assert_eq!(config.pid_file, Some(PathBuf::from("/run/ward.pid")));
    }

    #[test]
    fn json_config_in_vault_shapes() {
        let json = r#"{
          "storage": {"inmem": {}},
          "listener": [{"tcp": {"address": "127.0.0.1:9200", "tls_disable": true}},
                       {"tcp": {"address": "127.0.0.1:9201", "tls_disable": "1"}}],
          "default_lease_ttl": "1h",
          "disable_mlock": true
        }"#;
        let config = Config::parse(json, true).expect("valid config");
        assert_eq!(config.storage, Storage::InMemory);
        assert_eq!(config.listeners.len(), 2);
        assert_eq!(config.listeners[1].address, "127.0.0.1:9201");
        assert_eq!(config.default_lease_ttl, Some(3600));
        // A single listener object (not a list) works too, and so does the `backend` alias.
        let json = r#"{"backend": {"sqlite": {"path": "/tmp/x.db"}}, "listener": {"tcp": {"tls_disable": 1}}}"#;
        let config = Config::parse(json, false).expect("valid config");
        assert_eq!(config.storage.kind(), "sqlite");
        assert_eq!(config.listeners[0].address, DEFAULT_ADDRESS);
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let cases = [
            ("storage \"inmem\" {}\nlistener \"tcp\" { tls_disable = true }\nstorge = 1\n", "unknown key \"storge\" at line 3"),
            ("storage \"inmem\" {}\nlistener \"tcp\" {\n  tls_disable = true\n  adress = \"x\"\n}\n", "unknown key \"adress\" at line 4"),
            ("storage \"consul\" {}\nlistener \"tcp\" { tls_disable = true }\n", "unsupported storage type \"consul\""),
            ("storage \"sqlite\" {}\nlistener \"tcp\" { tls_disable = true }\n", "needs a path"),
            ("listener \"tcp\" { tls_disable = true }\n", "a storage stanza is required"),
            ("storage \"inmem\" {}\n", "at least one listener"),
            ("storage \"inmem\" {}\nlistener \"tcp\" {}\n", "needs tls_cert_file and tls_key_file"),
            ("storage \"inmem\" {}\nlistener \"tcp\" { tls_disable = true }\ndefault_lease_ttl = \"forever\"\n", "must be a duration"),
            ("storage \"inmem\" {}\nlistener \"tcp\" { tls_disable = \"maybe\" }\n", "must be a boolean"),
            ("storage \"inmem\" {}\nstorage \"inmem\" {}\nlistener \"tcp\" { tls_disable = true }\n", "only one storage stanza"),
            ("storage \"inmem\" {}\nlistener \"unix\" { }\n", "unsupported listener type"),
            ("storage \"inmem\" {\n", "line"),
            ("{\"storage\": {\"inmem\": {}}, \"listener\": {\"tcp\": {\"tls_disable\": true}}, \"storge\": 1}", "unknown key \"storge\""),
            ("{\"storage\": ", "invalid JSON"),
        ];
        for (text, want) in cases {
            let err = Config::parse(text, false).expect_err(text);
            assert!(
                err.message.contains(want),
                "{text:?}: got {:?}, want {want:?}",
                err.message
            );
        }
    }

    #[test]
    fn load_detects_json_by_extension() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ward.json");
        std::fs::write(
            &path,
            r#"  {"storage": {"inmem": {}}, "listener": {"tcp": {"tls_disable": true}}}"#,
        )
        .expect("write");
        assert_eq!(
            Config::load(&path).expect("loads").storage,
            Storage::InMemory
        );
        let err = Config::load(&dir.path().join("missing.hcl")).expect_err("missing file");
        assert!(err.message.contains("cannot read config file"));
    }
}
