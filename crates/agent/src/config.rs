//! The agent's configuration: Vault Agent's file format (HCL or JSON) plus Ward's `egress`
//! block, decoded once into typed structs that the rest of the agent is handed.
//!
//! The syntax is left to `ward_policy::hcl`, which gives every item its line and column; this
//! module owns the meaning: known keys per block (anything else is an error naming the key and
//! its line), defaults, and the checks that can be made before anything runs (route names,
//! template destinations inside the allowed directory, durations, modes). The flag-only mode
//! (`-method=kubernetes -secret-path=...`) builds the same structs from flags in `cli`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ward_policy::hcl::{Body, HclError, Item, ValueKind};

use crate::fsutil;

/// Vault Agent's default retry budget for templates (`vault.retry.num_retries`).
pub const DEFAULT_NUM_RETRIES: u32 = 12;
/// Vault Agent's default `template_config.static_secret_render_interval`.
pub const DEFAULT_STATIC_INTERVAL: Duration = Duration::from_secs(300);
/// Default request body limit of an egress route (10 MiB).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;

/// The whole agent configuration.
#[derive(Debug, Clone, Default)]
pub struct AgentConfig {
    pub vault: VaultConfig,
    pub auto_auth: Option<AutoAuthConfig>,
    pub templates: Vec<TemplateConfig>,
    pub template_config: TemplateSettings,
    pub api_proxy: ApiProxyConfig,
    pub listeners: Vec<ListenerConfig>,
    pub exit_after_auth: bool,
    pub pid_file: Option<PathBuf>,
    pub egress: Option<EgressConfig>,
    /// The directory template destinations must stay inside (canonical).
    pub secrets_dir: PathBuf,
}

/// How to reach the server.
#[derive(Debug, Clone)]
pub struct VaultConfig {
    pub address: String,
    pub ca_cert: Option<PathBuf>,
    pub danger_tls_skip_verify: bool,
    pub num_retries: u32,
}

impl Default for VaultConfig {
    fn default() -> VaultConfig {
        VaultConfig {
            address: default_address(),
            ca_cert: std::env::var_os("WARD_CACERT")
                .or_else(|| std::env::var_os("VAULT_CACERT"))
                .map(PathBuf::from),
            danger_tls_skip_verify: false,
            num_retries: DEFAULT_NUM_RETRIES,
        }
    }
}

fn default_address() -> String {
    std::env::var("WARD_ADDR")
        .or_else(|_| std::env::var("VAULT_ADDR"))
        .unwrap_or_else(|_| "https://127.0.0.1:8200".to_owned())
}

#[derive(Debug, Clone)]
pub struct AutoAuthConfig {
    pub method: MethodConfig,
    pub sinks: Vec<SinkConfig>,
}

/// The auto-auth methods the agent knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MethodKind {
    Kubernetes,
    Jwt,
    Approle,
    TokenFile,
}

impl MethodKind {
    pub fn parse(name: &str) -> Option<MethodKind> {
        match name {
            "kubernetes" => Some(MethodKind::Kubernetes),
            "jwt" => Some(MethodKind::Jwt),
            "approle" => Some(MethodKind::Approle),
            "token_file" => Some(MethodKind::TokenFile),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            MethodKind::Kubernetes => "kubernetes",
            MethodKind::Jwt => "jwt",
            MethodKind::Approle => "approle",
            MethodKind::TokenFile => "token_file",
        }
    }
}

/// One `method` block.
#[derive(Debug, Clone)]
pub struct MethodConfig {
    pub kind: MethodKind,
    /// `auth/<type>` unless configured.
    pub mount_path: String,
    pub role: Option<String>,
    /// The JWT file for `jwt` and `kubernetes`.
    pub jwt_path: Option<PathBuf>,
    pub token_file_path: Option<PathBuf>,
    pub role_id_file_path: Option<PathBuf>,
    pub secret_id_file_path: Option<PathBuf>,
    pub remove_secret_id_file_after_reading: bool,
    /// Stop retrying a failed login and exit (Vault's `exit_on_err`).
    pub exit_on_err: bool,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl MethodConfig {
    pub fn new(kind: MethodKind) -> MethodConfig {
        MethodConfig {
            kind,
            mount_path: format!("auth/{}", kind.name()),
            role: None,
            jwt_path: None,
            token_file_path: None,
            role_id_file_path: None,
            secret_id_file_path: None,
            remove_secret_id_file_after_reading: true,
            exit_on_err: false,
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// A `sink "file"` block.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub path: PathBuf,
    pub mode: u32,
    pub wrap_ttl: Option<Duration>,
}

/// Where a template's text comes from.
#[derive(Debug, Clone)]
pub enum TemplateSource {
    Inline(String),
    File(PathBuf),
}

/// One `template` block.
#[derive(Debug, Clone)]
pub struct TemplateConfig {
    pub source: TemplateSource,
    /// Confined to the allowed directory.
    pub destination: PathBuf,
    pub perms: u32,
    pub command: Option<String>,
    pub command_timeout: Duration,
    pub error_on_missing_key: bool,
    pub left_delimiter: String,
    pub right_delimiter: String,
}

/// `template_config`.
#[derive(Debug, Clone)]
pub struct TemplateSettings {
    pub static_secret_render_interval: Duration,
    pub exit_on_retry_failure: bool,
}

impl Default for TemplateSettings {
    fn default() -> TemplateSettings {
        TemplateSettings {
            static_secret_render_interval: DEFAULT_STATIC_INTERVAL,
            exit_on_retry_failure: false,
        }
    }
}

/// `api_proxy { use_auto_auth_token }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UseAutoAuthToken {
    #[default]
    No,
    /// Inject the token when the client sends none.
    IfMissing,
    /// Always replace the client's token.
    Force,
}

#[derive(Debug, Clone, Default)]
pub struct ApiProxyConfig {
    pub use_auto_auth_token: UseAutoAuthToken,
}

/// A `listener` block: where the API proxy and `/agent/v1/*` are served.
#[derive(Debug, Clone)]
pub enum ListenerConfig {
    Tcp {
        address: String,
        tls: Option<ListenerTls>,
    },
    Unix {
        path: PathBuf,
    },
}

#[derive(Debug, Clone)]
pub struct ListenerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// Ward's `egress` block.
#[derive(Debug, Clone)]
pub struct EgressConfig {
    pub listener: String,
    pub routes: Vec<RouteConfig>,
}

/// One `route "<name>"`.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    /// Scheme, host, port and an optional base path; no query.
    pub upstream: http::Uri,
    pub credential: Option<String>,
    pub inject: Vec<InjectConfig>,
    pub allow: AllowConfig,
    pub rate_limit: Option<RateLimit>,
    pub max_body_bytes: u64,
    pub ca_cert: Option<PathBuf>,
}

/// Where the credential goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InjectTarget {
    Header(http::HeaderName),
    Query(String),
}

/// `inject { header = "Authorization" value = "Bearer {{ .Data.data.api_key }}" }`; the value
/// is a template evaluated against the credential secret. `basic_auth` takes a
/// `"user:password"` template and sends it base64-encoded as `Authorization: Basic`.
#[derive(Debug, Clone)]
pub struct InjectConfig {
    pub target: InjectTarget,
    pub value: String,
    pub basic_auth: bool,
}

/// `allow { methods, paths, hosts }`; an empty list allows everything of its kind.
#[derive(Debug, Clone, Default)]
pub struct AllowConfig {
    pub methods: Vec<http::Method>,
    pub paths: Vec<String>,
    pub hosts: Vec<String>,
}

/// `rate_limit = "60/minute"`: a token bucket of `burst` tokens refilled at `per_second`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
}

impl RateLimit {
    pub fn parse(text: &str) -> Option<RateLimit> {
        let (count, unit) = text.trim().split_once('/')?;
        let requests: u32 = count.trim().parse().ok().filter(|n| *n > 0)?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            other => ward_policy::parse_duration(other)
                .ok()
                .filter(|d| !d.is_zero())?,
        };
        Some(RateLimit { requests, per })
    }
}

/// A configuration error, with the position in the file when there is one.
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

impl From<HclError> for ConfigError {
    fn from(error: HclError) -> ConfigError {
        ConfigError {
            message: error.to_string(),
        }
    }
}

fn config_error(message: impl Into<String>) -> ConfigError {
    ConfigError {
        message: message.into(),
    }
}

/// Reads and decodes a config file (`.json` or anything else as HCL). `secrets_dir` overrides
/// the allowed base directory for template destinations, which is otherwise the config file's
/// directory.
pub fn load(path: &Path, secrets_dir: Option<&Path>) -> Result<AgentConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| config_error(format!("reading {}: {error}", path.display())))?;
    let config_dir = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let base = secrets_dir.unwrap_or(config_dir);
    let body = parse_text(&text, path.extension().is_some_and(|ext| ext == "json"))?;
    decode(&body, base, config_dir)
        .map_err(|error| config_error(format!("{}: {}", path.display(), error.message)))
}

/// Parses HCL or JSON into the generic tree.
pub fn parse_text(text: &str, json: bool) -> Result<Body, ConfigError> {
    if json {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|error| config_error(format!("invalid JSON: {error}")))?;
        Ok(Body::from_json(&value)?)
    } else {
        Ok(ward_policy::hcl::parse(text)?)
    }
}

/// Decodes the tree. `base` is the allowed directory for template destinations (created if
/// missing, then canonicalised); `config_dir` resolves relative template `source` files.
pub fn decode(body: &Body, base: &Path, config_dir: &Path) -> Result<AgentConfig, ConfigError> {
    body.check_keys(&[
        "vault",
        "ward",
        "auto_auth",
        "template",
        "template_config",
        "api_proxy",
        "cache",
        "listener",
        "exit_after_auth",
        "pid_file",
        "egress",
    ])?;
    let secrets_dir = canonical_base(base)?;
    let mut config = AgentConfig {
        secrets_dir: secrets_dir.clone(),
        ..AgentConfig::default()
    };
    for item in body.get_all("vault").chain(body.get_all("ward")) {
        config.vault = decode_vault(item)?;
    }
    if let Some(item) = body.get("auto_auth") {
        config.auto_auth = Some(decode_auto_auth(item)?);
    }
    for item in body.get_all("template") {
        for block in blocks(item, &[])? {
            config
                .templates
                .push(decode_template(&block, &secrets_dir, config_dir)?);
        }
    }
    if let Some(item) = body.get("template_config") {
        config.template_config = decode_template_settings(item)?;
    }
    for item in body.get_all("api_proxy").chain(body.get_all("cache")) {
        let object = item.object()?;
        object.check_keys(&[
            "use_auto_auth_token",
            "enforce_consistency",
            "when_inconsistent",
        ])?;
        if let Some(value) = object.get("use_auto_auth_token") {
            config.api_proxy.use_auto_auth_token = match &value.value.kind {
                ValueKind::Bool(true) => UseAutoAuthToken::IfMissing,
                ValueKind::Bool(false) => UseAutoAuthToken::No,
                ValueKind::String(text) if text == "force" => UseAutoAuthToken::Force,
                ValueKind::String(text) if text == "true" => UseAutoAuthToken::IfMissing,
                ValueKind::String(text) if text == "false" => UseAutoAuthToken::No,
                _ => {
                    return Err(value
                        .error("`use_auto_auth_token` must be true, false or \"force\"")
                        .into())
                }
            };
        }
    }
    for item in body.get_all("listener") {
        for block in blocks(item, &["type"])? {
            config.listeners.push(decode_listener(&block)?);
        }
    }
    if let Some(item) = body.get("exit_after_auth") {
        config.exit_after_auth = item.bool()?;
    }
    if let Some(item) = body.get("pid_file") {
        config.pid_file = Some(PathBuf::from(item.string()?));
    }
    if let Some(item) = body.get("egress") {
        config.egress = Some(decode_egress(item)?);
    }
    Ok(config)
}

/// Creates the base directory if needed and returns its canonical form, so that later
/// `starts_with` checks compare real paths.
pub fn canonical_base(base: &Path) -> Result<PathBuf, ConfigError> {
    std::fs::create_dir_all(base)
        .and_then(|()| base.canonicalize())
        .map_err(|error| config_error(format!("secrets directory {}: {error}", base.display())))
}

/// A block with its labels, whichever way it was written: `key "label" { }` in HCL,
/// `key { type = "label" }`, a JSON list of objects, or a JSON object keyed by label.
struct Block<'a> {
    labels: Vec<String>,
    body: &'a Body,
    item: &'a Item,
}

fn blocks<'a>(item: &'a Item, unlabelled_markers: &[&str]) -> Result<Vec<Block<'a>>, ConfigError> {
    let mut out = Vec::new();
    match &item.value.kind {
        ValueKind::Object(body) => {
            if !item.labels.is_empty() || item.line > 0 {
                out.push(Block {
                    labels: item.labels.clone(),
                    body,
                    item,
                });
            } else if unlabelled_markers.is_empty()
                || unlabelled_markers
                    .iter()
                    .any(|marker| body.get(marker).is_some())
            {
                out.push(Block {
                    labels: Vec::new(),
                    body,
                    item,
                });
            } else {
                // JSON: `{"route": {"openai": {...}}}`, keyed by label.
                for inner in body.items() {
                    let inner_body = inner.object()?;
                    out.push(Block {
                        labels: vec![inner.key.clone()],
                        body: inner_body,
                        item: inner,
                    });
                }
            }
        }
        ValueKind::List(list) => {
            for value in list {
                let body = value.as_object().ok_or_else(|| {
                    item.error(format!("`{}` must be a list of objects", item.key))
                })?;
                out.push(Block {
                    labels: item.labels.clone(),
                    body,
                    item,
                });
            }
        }
        _ => return Err(item.error(format!("`{}` must be a block", item.key)).into()),
    }
    Ok(out)
}

/// The block's kind: its first label, or its `type` attribute.
fn block_type(block: &Block<'_>) -> Result<String, ConfigError> {
    if let Some(label) = block.labels.first() {
        return Ok(label.clone());
    }
    match block.body.get("type") {
        Some(item) => Ok(item.string()?.to_owned()),
        None => Err(block
            .item
            .error(format!("`{}` needs a type label", block.item.key))
            .into()),
    }
}

fn string(body: &Body, key: &str) -> Result<Option<String>, ConfigError> {
    body.get(key)
        .map(|item| item.string().map(str::to_owned))
        .transpose()
        .map_err(ConfigError::from)
}

fn boolean(body: &Body, key: &str) -> Result<Option<bool>, ConfigError> {
    body.get(key)
        .map(|item| match &item.value.kind {
            ValueKind::String(text) if text == "true" => Ok(true),
            ValueKind::String(text) if text == "false" => Ok(false),
            _ => item.bool(),
        })
        .transpose()
        .map_err(ConfigError::from)
}

fn duration(body: &Body, key: &str) -> Result<Option<Duration>, ConfigError> {
    let Some(item) = body.get(key) else {
        return Ok(None);
    };
    let parsed = match &item.value.kind {
        ValueKind::String(text) => ward_policy::parse_duration(text).ok(),
        _ => item
            .value
            .as_i64()
            .and_then(|seconds| u64::try_from(seconds).ok())
            .map(Duration::from_secs),
    };
    parsed
        .map(Some)
        .ok_or_else(|| item.error(format!("`{key}` must be a duration")).into())
}

fn mode(body: &Body, key: &str) -> Result<Option<u32>, ConfigError> {
    let Some(item) = body.get(key) else {
        return Ok(None);
    };
    let parsed = match &item.value.kind {
        ValueKind::String(text) => fsutil::parse_mode(text),
        // An unquoted 0600 reads as the decimal number 600: take its digits as octal.
        _ => item
            .value
            .as_i64()
            .and_then(|number| fsutil::parse_mode(&number.to_string())),
    };
    parsed.map(Some).ok_or_else(|| {
        item.error(format!("`{key}` must be an octal file mode"))
            .into()
    })
}

fn decode_vault(item: &Item) -> Result<VaultConfig, ConfigError> {
    let body = item.object()?;
    body.check_keys(&[
        "address",
        "ca_cert",
        "ca_path",
        "tls_skip_verify",
        "tls_server_name",
        "retry",
    ])?;
    let mut vault = VaultConfig::default();
    if let Some(address) = string(body, "address")? {
        vault.address = address.trim_end_matches('/').to_owned();
    }
    if let Some(ca_cert) = string(body, "ca_cert")?.or(string(body, "ca_path")?) {
        vault.ca_cert = Some(PathBuf::from(ca_cert));
    }
    vault.danger_tls_skip_verify = boolean(body, "tls_skip_verify")?.unwrap_or(false);
    if let Some(retry) = body.get("retry") {
        let retry_body = retry.object()?;
        retry_body.check_keys(&["num_retries"])?;
        if let Some(num) = retry_body.get("num_retries") {
            let value = num.integer()?;
            // Vault: -1 disables retries; 0 means the default.
            vault.num_retries = match value {
                n if n < 0 => 0,
                0 => DEFAULT_NUM_RETRIES,
                n => u32::try_from(n).unwrap_or(u32::MAX),
            };
        }
    }
    Ok(vault)
}

fn decode_auto_auth(item: &Item) -> Result<AutoAuthConfig, ConfigError> {
    let body = item.object()?;
    body.check_keys(&["method", "sink", "enable_reauth_on_new_credentials"])?;
    let method_item = body
        .get("method")
        .ok_or_else(|| item.error("`auto_auth` needs a `method`"))?;
    let method_blocks = blocks(method_item, &["type", "config", "mount_path"])?;
    let [method_block] = method_blocks.as_slice() else {
        return Err(method_item
            .error("`auto_auth` takes exactly one `method`")
            .into());
    };
    let method = decode_method(method_block)?;
    let mut sinks = Vec::new();
    for sink_item in body.get_all("sink") {
        for block in blocks(sink_item, &["type", "config"])? {
            sinks.push(decode_sink(&block)?);
        }
    }
    Ok(AutoAuthConfig { method, sinks })
}

fn decode_method(block: &Block<'_>) -> Result<MethodConfig, ConfigError> {
    let name = block_type(block)?;
    let kind = MethodKind::parse(&name).ok_or_else(|| {
        block.item.error(format!(
            "unsupported auto_auth method `{name}` (kubernetes, jwt, approle, token_file)"
        ))
    })?;
    block.body.check_keys(&[
        "type",
        "mount_path",
        "namespace",
        "config",
        "exit_on_err",
        "min_backoff",
        "max_backoff",
    ])?;
    let mut method = MethodConfig::new(kind);
    if let Some(mount_path) = string(block.body, "mount_path")? {
        method.mount_path = mount_path.trim_matches('/').to_owned();
    }
    method.exit_on_err = boolean(block.body, "exit_on_err")?.unwrap_or(false);
    if let Some(min) = duration(block.body, "min_backoff")? {
        method.min_backoff = min.max(Duration::from_millis(10));
    }
    if let Some(max) = duration(block.body, "max_backoff")? {
        method.max_backoff = max.max(method.min_backoff);
    }
    let empty = Body::default();
    let config = match block.body.get("config") {
        Some(item) => item.object()?,
        None => &empty,
    };
    config.check_keys(&[
        "role",
        "path",
        "jwt_path",
        "token_path",
        "token_file_path",
        "role_id_file_path",
        "secret_id_file_path",
        "remove_secret_id_file_after_reading",
        "remove_jwt_after_reading",
    ])?;
    method.role = string(config, "role")?;
    method.jwt_path = string(config, "jwt_path")?
        .or(string(config, "path")?)
        .or(string(config, "token_path")?)
        .map(PathBuf::from);
    method.token_file_path = string(config, "token_file_path")?.map(PathBuf::from);
    method.role_id_file_path = string(config, "role_id_file_path")?.map(PathBuf::from);
    method.secret_id_file_path = string(config, "secret_id_file_path")?.map(PathBuf::from);
    method.remove_secret_id_file_after_reading =
        boolean(config, "remove_secret_id_file_after_reading")?.unwrap_or(true);
    check_method(&method).map_err(|message| ConfigError::from(block.item.error(message)))?;
    Ok(method)
}

/// The settings a method cannot work without, and its defaults.
pub fn check_method(method: &MethodConfig) -> Result<(), String> {
    match method.kind {
        MethodKind::Kubernetes | MethodKind::Jwt => {
            if method.role.is_none() {
                return Err(format!("the {} method needs a `role`", method.kind.name()));
            }
            if method.kind == MethodKind::Jwt && method.jwt_path.is_none() {
                return Err("the jwt method needs `path` (the JWT file)".to_owned());
            }
        }
        MethodKind::Approle => {
            if method.role_id_file_path.is_none() {
                return Err("the approle method needs `role_id_file_path`".to_owned());
            }
        }
        MethodKind::TokenFile => {
            if method.token_file_path.is_none() {
                return Err("the token_file method needs `token_file_path`".to_owned());
            }
        }
    }
    Ok(())
}

fn decode_sink(block: &Block<'_>) -> Result<SinkConfig, ConfigError> {
    let kind = block_type(block)?;
    if kind != "file" {
        return Err(block
            .item
            .error(format!("unsupported sink `{kind}` (only `file`)"))
            .into());
    }
    block.body.check_keys(&[
        "type",
        "config",
        "wrap_ttl",
        "dh_type",
        "dh_path",
        "aad",
        "aad_env_var",
    ])?;
    if block.body.get("dh_type").is_some() {
        return Err(block
            .item
            .error("encrypted sinks (`dh_type`) are not supported; use `wrap_ttl`")
            .into());
    }
    let config = block
        .body
        .get("config")
        .ok_or_else(|| block.item.error("a file sink needs `config { path }`"))?;
    let config_body = config.object()?;
    config_body.check_keys(&["path", "mode"])?;
    let path =
        string(config_body, "path")?.ok_or_else(|| config.error("a file sink needs `path`"))?;
    Ok(SinkConfig {
        path: PathBuf::from(path),
        mode: mode(config_body, "mode")?.unwrap_or(0o600),
        wrap_ttl: duration(block.body, "wrap_ttl")?,
    })
}

fn decode_template(
    block: &Block<'_>,
    secrets_dir: &Path,
    config_dir: &Path,
) -> Result<TemplateConfig, ConfigError> {
    let body = block.body;
    body.check_keys(&[
        "source",
        "contents",
        "destination",
        "perms",
        "command",
        "command_timeout",
        "error_on_missing_key",
        "left_delimiter",
        "right_delimiter",
        "create_dest_dirs",
        "backup",
    ])?;
    let source = match (string(body, "source")?, string(body, "contents")?) {
        (Some(_), Some(_)) => {
            return Err(block
                .item
                .error("a template takes `source` or `contents`, not both")
                .into())
        }
        (Some(source), None) => {
            let path = PathBuf::from(source);
            TemplateSource::File(if path.is_absolute() {
                path
            } else {
                config_dir.join(path)
            })
        }
        (None, Some(contents)) => TemplateSource::Inline(contents),
        (None, None) => {
            return Err(block
                .item
                .error("a template needs `source` or `contents`")
                .into())
        }
    };
    let destination_text = string(body, "destination")?
        .ok_or_else(|| block.item.error("a template needs a `destination`"))?;
    let destination = fsutil::confine(secrets_dir, Path::new(&destination_text))
        .map_err(|error| block.item.error(error.to_string()))?;
    Ok(TemplateConfig {
        source,
        destination,
        perms: mode(body, "perms")?.unwrap_or(0o644),
        command: string(body, "command")?,
        command_timeout: duration(body, "command_timeout")?.unwrap_or(Duration::from_secs(30)),
        error_on_missing_key: boolean(body, "error_on_missing_key")?.unwrap_or(false),
        left_delimiter: string(body, "left_delimiter")?.unwrap_or_else(|| "{{".to_owned()),
        right_delimiter: string(body, "right_delimiter")?.unwrap_or_else(|| "}}".to_owned()),
    })
}

fn decode_template_settings(item: &Item) -> Result<TemplateSettings, ConfigError> {
    let body = item.object()?;
    body.check_keys(&[
        "static_secret_render_interval",
        "exit_on_retry_failure",
        "max_connections_per_host",
        "lease_renewal_threshold",
    ])?;
    let mut settings = TemplateSettings::default();
    if let Some(interval) = duration(body, "static_secret_render_interval")? {
        settings.static_secret_render_interval = interval.max(Duration::from_millis(100));
    }
    settings.exit_on_retry_failure = boolean(body, "exit_on_retry_failure")?.unwrap_or(false);
    Ok(settings)
}

fn decode_listener(block: &Block<'_>) -> Result<ListenerConfig, ConfigError> {
    let kind = block_type(block)?;
    let body = block.body;
    body.check_keys(&[
        "type",
        "address",
        "tls_disable",
        "tls_cert_file",
        "tls_key_file",
        "socket_mode",
    ])?;
    let address = string(body, "address")?;
    match kind.as_str() {
        "tcp" => {
            let tls_disable = boolean(body, "tls_disable")?.unwrap_or(false);
            let cert = string(body, "tls_cert_file")?;
            let key = string(body, "tls_key_file")?;
            let tls = match (tls_disable, cert, key) {
                (true, _, _) => None,
                (false, Some(cert), Some(key)) => Some(ListenerTls {
                    cert_file: PathBuf::from(cert),
                    key_file: PathBuf::from(key),
                }),
                (false, _, _) => {
                    return Err(block
                        .item
                        .error("a tcp listener needs `tls_cert_file` and `tls_key_file`, or `tls_disable = true`")
                        .into())
                }
            };
            Ok(ListenerConfig::Tcp {
                address: address.unwrap_or_else(|| "127.0.0.1:8200".to_owned()),
                tls,
            })
        }
        "unix" => Ok(ListenerConfig::Unix {
            path: PathBuf::from(
                address.ok_or_else(|| block.item.error("a unix listener needs `address`"))?,
            ),
        }),
        other => Err(block
            .item
            .error(format!("unsupported listener `{other}` (tcp, unix)"))
            .into()),
    }
}

fn decode_egress(item: &Item) -> Result<EgressConfig, ConfigError> {
    let body = item.object()?;
    body.check_keys(&["listener", "route"])?;
    let listener = string(body, "listener")?.unwrap_or_else(|| "127.0.0.1:8100".to_owned());
    let mut routes: Vec<RouteConfig> = Vec::new();
    for route_item in body.get_all("route") {
        for block in blocks(route_item, &["upstream"])? {
            let route = decode_route(&block)?;
            if routes.iter().any(|existing| existing.name == route.name) {
                return Err(block
                    .item
                    .error(format!("route `{}` is defined twice", route.name))
                    .into());
            }
            routes.push(route);
        }
    }
    Ok(EgressConfig { listener, routes })
}

/// Route names become the first path segment: letters, digits, `-`, `_` and `.`, but not `.`
/// or `..` alone.
pub fn valid_route_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains("..")
        && name.len() <= 64
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
}

fn decode_route(block: &Block<'_>) -> Result<RouteConfig, ConfigError> {
    let body = block.body;
    let name = block.labels.first().cloned().ok_or_else(|| {
        block
            .item
            .error("a route needs a name: `route \"openai\" { }`")
    })?;
    if !valid_route_name(&name) {
        return Err(block
            .item
            .error(format!(
                "invalid route name `{name}`: use letters, digits, `-`, `_` or `.`, without `..` or `/`"
            ))
            .into());
    }
    body.check_keys(&[
        "upstream",
        "credential",
        "inject",
        "allow",
        "rate_limit",
        "max_body_bytes",
        "ca_cert",
    ])?;
    let upstream_text =
        string(body, "upstream")?.ok_or_else(|| block.item.error("a route needs `upstream`"))?;
    let upstream: http::Uri = upstream_text.trim_end_matches('/').parse().map_err(|_| {
        block
            .item
            .error(format!("invalid upstream `{upstream_text}`"))
    })?;
    let scheme_ok = matches!(upstream.scheme_str(), Some("http" | "https"));
    if !scheme_ok || upstream.host().is_none() || upstream.query().is_some() {
        return Err(block
            .item
            .error(format!(
                "upstream `{upstream_text}` must be an http:// or https:// URL without a query"
            ))
            .into());
    }
    let mut inject = Vec::new();
    for inject_item in body.get_all("inject") {
        for inject_block in blocks(inject_item, &[])? {
            inject.push(decode_inject(&inject_block)?);
        }
    }
    let credential = string(body, "credential")?;
    if credential.is_none() && !inject.is_empty() {
        return Err(block
            .item
            .error("`inject` needs a `credential` secret path")
            .into());
    }
    let allow = match body.get("allow") {
        Some(allow_item) => decode_allow(allow_item)?,
        None => AllowConfig::default(),
    };
    let rate_limit = match body.get("rate_limit") {
        Some(rate_item) => Some(RateLimit::parse(rate_item.string()?).ok_or_else(|| {
            rate_item.error("`rate_limit` must look like \"60/minute\" (second, minute, hour)")
        })?),
        None => None,
    };
    let max_body_bytes = match body.get("max_body_bytes") {
        Some(limit) => u64::try_from(limit.integer()?)
            .map_err(|_| limit.error("`max_body_bytes` must not be negative"))?,
        None => DEFAULT_MAX_BODY_BYTES,
    };
    Ok(RouteConfig {
        name,
        upstream,
        credential,
        inject,
        allow,
        rate_limit,
        max_body_bytes,
        ca_cert: string(body, "ca_cert")?.map(PathBuf::from),
    })
}

fn decode_inject(block: &Block<'_>) -> Result<InjectConfig, ConfigError> {
    let body = block.body;
    body.check_keys(&["header", "query", "value", "basic_auth"])?;
    let basic = string(body, "basic_auth")?;
    let value = match (string(body, "value")?, &basic) {
        (Some(value), None) => value,
        (None, Some(basic)) => basic.clone(),
        _ => {
            return Err(block
                .item
                .error("`inject` takes `value` (or `basic_auth = \"user:password\"`)")
                .into())
        }
    };
    let target = match (string(body, "header")?, string(body, "query")?) {
        (Some(header), None) => InjectTarget::Header(
            http::HeaderName::from_bytes(header.as_bytes())
                .map_err(|_| block.item.error(format!("invalid header name `{header}`")))?,
        ),
        (None, Some(query)) if basic.is_none() => InjectTarget::Query(query),
        (None, None) if basic.is_some() => InjectTarget::Header(http::header::AUTHORIZATION),
        _ => {
            return Err(block
                .item
                .error("`inject` takes one of `header` or `query`")
                .into())
        }
    };
    Ok(InjectConfig {
        target,
        value,
        basic_auth: basic.is_some(),
    })
}

fn decode_allow(item: &Item) -> Result<AllowConfig, ConfigError> {
    let body = item.object()?;
    body.check_keys(&["methods", "paths", "hosts"])?;
    let mut allow = AllowConfig::default();
    if let Some(methods) = body.get("methods") {
        for method in methods.string_list()? {
            allow.methods.push(
                http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                    .map_err(|_| methods.error(format!("invalid method `{method}`")))?,
            );
        }
    }
    if let Some(paths) = body.get("paths") {
        allow.paths = paths.string_list()?;
        if let Some(bad) = allow.paths.iter().find(|path| !path.starts_with('/')) {
            return Err(paths
                .error(format!("allowed path `{bad}` must start with `/`"))
                .into());
        }
    }
    if let Some(hosts) = body.get("hosts") {
        allow.hosts = hosts
            .string_list()?
            .into_iter()
            .map(|host| host.to_ascii_lowercase())
            .collect();
    }
    Ok(allow)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_text(text: &str) -> Result<AgentConfig, ConfigError> {
        let dir = std::env::temp_dir();
        let body = parse_text(text, false)?;
        decode(&body, &dir, &dir)
    }

    const FULL: &str = r#"
pid_file = "/tmp/ward-agent.pid"
exit_after_auth = false
vault {
  address = "http://127.0.0.1:8200"
  retry { num_retries = 3 }
}
auto_auth {
  method "approle" {
    mount_path = "auth/approle"
    config {
      role_id_file_path = "/etc/ward/role_id"
      secret_id_file_path = "/etc/ward/secret_id"
      remove_secret_id_file_after_reading = false
    }
  }
  sink "file" {
    config { path = "/tmp/token" mode = 0640 }
  }
}
template {
  contents = <<EOT
{{ with secret "secret/data/app" }}{{ .Data.data.password }}{{ end }}
EOT
  destination = "app.txt"
  perms = "0600"
  error_on_missing_key = true
}
template_config {
  static_secret_render_interval = "30s"
  exit_on_retry_failure = true
}
api_proxy { use_auto_auth_token = "force" }
listener "tcp" {
  address = "127.0.0.1:8200"
  tls_disable = true
}
egress {
  listener = "127.0.0.1:8100"
  route "openai" {
    upstream = "https://api.openai.com"
    credential = "kv/data/agents/openai"
    inject { header = "Authorization"  value = "Bearer {{ .Data.data.api_key }}" }
    allow  { methods = ["POST"]  paths = ["/v1/chat/completions", "/v1/embeddings"] }
    rate_limit = "60/minute"
  }
}
"#;

    #[test]
    fn full_config_decodes() {
        let config = decode_text(FULL).expect("decodes");
        assert_eq!(config.vault.address, "http://127.0.0.1:8200");
        assert_eq!(config.vault.num_retries, 3);
        let auto_auth = config.auto_auth.expect("auto_auth");
        assert_eq!(auto_auth.method.kind, MethodKind::Approle);
        assert!(!auto_auth.method.remove_secret_id_file_after_reading);
        assert_eq!(auto_auth.sinks[0].mode, 0o640);
        assert_eq!(config.templates.len(), 1);
        assert_eq!(config.templates[0].perms, 0o600);
        assert!(config.templates[0].error_on_missing_key);
        assert_eq!(
            config.template_config.static_secret_render_interval,
            Duration::from_secs(30)
        );
        assert!(config.template_config.exit_on_retry_failure);
        assert_eq!(
            config.api_proxy.use_auto_auth_token,
            UseAutoAuthToken::Force
        );
        let egress = config.egress.expect("egress");
        let route = &egress.routes[0];
        assert_eq!(route.name, "openai");
        assert_eq!(
            route.rate_limit,
            Some(RateLimit {
                requests: 60,
                per: Duration::from_secs(60)
            })
        );
        assert_eq!(route.allow.methods, vec![http::Method::POST]);
        assert_eq!(
            route.inject[0].target,
            InjectTarget::Header(http::header::AUTHORIZATION)
        );
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let error = decode_text("vault {\n  address = \"x\"\n  adress = \"y\"\n}\n")
            .expect_err("unknown key");
        assert!(error.message.contains("`adress`"), "{}", error.message);
        assert!(error.message.contains("line 3"), "{}", error.message);
    }

    #[test]
    fn route_names_are_checked() {
        for bad in ["..", "a/b", "a..b", ".", ""] {
            assert!(!valid_route_name(bad), "{bad}");
        }
        let error =
            decode_text("egress {\n route \"..\" {\n upstream = \"http://127.0.0.1:1\"\n }\n}\n")
                .expect_err("bad route");
        assert!(error.message.contains("invalid route name"));
    }

    #[test]
    fn template_destination_outside_base_is_refused() {
        let error = decode_text(
            "template {\n contents = \"x\"\n destination = \"../../etc/cron.d/evil\"\n}\n",
        )
        .expect_err("escape");
        assert!(error.message.contains("outside the allowed directory"));
        let error =
            decode_text("template {\n contents = \"x\"\n destination = \"/etc/passwd\"\n}\n")
                .expect_err("absolute");
        assert!(error.message.contains("outside the allowed directory"));
    }

    #[test]
    fn json_config_decodes() {
        let text = r#"{
          "vault": {"address": "http://127.0.0.1:1"},
          "auto_auth": {"method": [{"type": "token_file", "config": {"token_file_path": "/t"}}],
                        "sink": [{"type": "file", "config": {"path": "/tmp/s"}}]},
          "template": [{"contents": "x", "destination": "a"}],
          "egress": {"route": {"gh": {"upstream": "https://api.github.com",
                      "credential": "kv/data/gh",
                      "inject": {"header": "Authorization", "value": "token {{ .Data.data.token }}"}}}}
        }"#;
        let dir = std::env::temp_dir();
        let body = parse_text(text, true).expect("json");
        let config = decode(&body, &dir, &dir).expect("decodes");
        let auto_auth = config.auto_auth.expect("auto_auth");
        assert_eq!(auto_auth.method.kind, MethodKind::TokenFile);
        assert_eq!(auto_auth.sinks.len(), 1);
        assert_eq!(config.egress.expect("egress").routes[0].name, "gh");
    }

    #[test]
    fn rate_limits_parse() {
        assert_eq!(
            RateLimit::parse("10/s"),
            Some(RateLimit {
                requests: 10,
                per: Duration::from_secs(1)
            })
        );
        assert!(RateLimit::parse("0/s").is_none());
        assert!(RateLimit::parse("ten/s").is_none());
    }
}
