//! Vault-style flags for `ward agent` (`-config=FILE`, `-method=kubernetes`, `--flag value`),
//! and the flag-only mode that builds a whole configuration without a file, as a Kubernetes
//! manifest would write it:
//!
//! `ward agent -method=kubernetes -role=ai-agent-role -secret-path=secret/data/ai-agent/api-key
//! -secret-key-field=api_key -destination=/secrets/api_key`

use std::path::{Path, PathBuf};

use crate::config::{
    self, AgentConfig, AutoAuthConfig, ListenerConfig, MethodConfig, MethodKind, SinkConfig,
    TemplateConfig, TemplateSource, UseAutoAuthToken,
};
use crate::fsutil;

pub const USAGE: &str = "\
Usage: ward agent [options]

  Runs the Ward agent: auto-auth with the workload identity, secrets rendered to
  files with lease renewal and fail-fast withdrawal, the Vault API proxy, and the
  egress credential proxy.

With a config file (HCL or JSON, Vault Agent's format plus Ward's egress block):
  -config=FILE               agent configuration
  -secrets-dir=DIR           directory template destinations must stay inside
                             (default: the config file's directory)

Flag-only mode (no config file):
  -method=TYPE               kubernetes | jwt | approle | token_file
  -mount-path=PATH           auth mount (default auth/<method>)
  -role=NAME                 role for kubernetes and jwt
  -jwt-path=FILE             JWT file (kubernetes default: the service-account token)
  -role-id-path=FILE         approle role ID file
  -secret-id-path=FILE       approle secret ID file
  -token-path=FILE           token_file: file holding a token
  -secret-path=PATH          secret to render (e.g. secret/data/ai-agent/api-key)
  -secret-key-field=FIELD    render only this field (default: the whole data as JSON)
  -destination=FILE          where to write it (mode -perms, default 0600)
  -perms=MODE                file mode of the destination
  -sink=FILE                 also write the token to this file (mode 0600)
  -listen-address=ADDR       serve the Vault API proxy here (auto-auth token injected)
  -exit-on-retry-failure     exit non-zero when a secret cannot be kept (default true)
  -static-secret-render-interval=DURATION  re-read interval of KV secrets (default 5m)

Common:
  -address=URL               server address (default $WARD_ADDR, $VAULT_ADDR)
  -ca-cert=FILE              CA certificate for the server
  -tls-skip-verify           do not verify the server's certificate (dangerous)
  -exit-after-auth           exit after the first login and render
  -pid-file=FILE             write the process ID here
  -log-level=LEVEL           trace | debug | info | warn | error (default info)
  -help                      this text
";

/// The parsed command line.
#[derive(Debug, Default, Clone)]
pub struct Options {
    pub config: Option<PathBuf>,
    pub secrets_dir: Option<PathBuf>,
    pub method: Option<String>,
    pub mount_path: Option<String>,
    pub role: Option<String>,
    pub jwt_path: Option<PathBuf>,
    pub role_id_path: Option<PathBuf>,
    pub secret_id_path: Option<PathBuf>,
    pub token_path: Option<PathBuf>,
    pub secret_path: Option<String>,
    pub secret_key_field: Option<String>,
    pub destination: Option<PathBuf>,
    pub perms: Option<u32>,
    pub sink: Option<PathBuf>,
    pub listen_address: Option<String>,
    pub exit_on_retry_failure: Option<bool>,
    pub static_interval: Option<std::time::Duration>,
    pub address: Option<String>,
    pub ca_cert: Option<PathBuf>,
    pub tls_skip_verify: bool,
    pub exit_after_auth: bool,
    pub pid_file: Option<PathBuf>,
    pub log_level: Option<String>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Parsed {
    Help,
    Run(Box<Options>),
}

const BOOLEAN_FLAGS: &[&str] = &[
    "tls-skip-verify",
    "exit-after-auth",
    "exit-on-retry-failure",
    "help",
    "h",
];

/// Parses `-flag=value`, `-flag value`, `--flag=value` and boolean `-flag`.
pub fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut options = Options::default();
    let mut index = 0;
    while index < args.len() {
        let arg = &args[index];
        index += 1;
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(format!("unexpected argument `{arg}`"));
        };
        let (name, inline_value) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (flag, None),
        };
        if matches!(name, "help" | "h") {
            return Ok(Parsed::Help);
        }
        let value = if BOOLEAN_FLAGS.contains(&name) {
            inline_value.unwrap_or_else(|| "true".to_owned())
        } else {
            match inline_value {
                Some(value) => value,
                None => {
                    let value = args
                        .get(index)
                        .cloned()
                        .ok_or_else(|| format!("flag -{name} needs a value"))?;
                    index += 1;
                    value
                }
            }
        };
        let boolean = || match value.as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            other => Err(format!("flag -{name}: `{other}` is not a boolean")),
        };
        match name {
            "config" => options.config = Some(PathBuf::from(&value)),
            "secrets-dir" => options.secrets_dir = Some(PathBuf::from(&value)),
            "method" => options.method = Some(value),
            "mount-path" => options.mount_path = Some(value),
            "role" => options.role = Some(value),
            "jwt-path" => options.jwt_path = Some(PathBuf::from(&value)),
            "role-id-path" | "role-id-file-path" => {
                options.role_id_path = Some(PathBuf::from(&value))
            }
            "secret-id-path" | "secret-id-file-path" => {
                options.secret_id_path = Some(PathBuf::from(&value))
            }
            "token-path" | "token-file-path" => options.token_path = Some(PathBuf::from(&value)),
            "secret-path" => options.secret_path = Some(value),
            "secret-key-field" => options.secret_key_field = Some(value),
            "destination" => options.destination = Some(PathBuf::from(&value)),
            "perms" => {
                options.perms = Some(
                    fsutil::parse_mode(&value)
                        .ok_or_else(|| format!("flag -perms: `{value}` is not an octal mode"))?,
                )
            }
            "sink" => options.sink = Some(PathBuf::from(&value)),
            "listen-address" => options.listen_address = Some(value),
            "exit-on-retry-failure" => options.exit_on_retry_failure = Some(boolean()?),
            "static-secret-render-interval" => {
                options.static_interval = Some(
                    ward_policy::parse_duration(&value)
                        .map_err(|error| format!("flag -{name}: {error}"))?,
                )
            }
            "address" => options.address = Some(value),
            "ca-cert" => options.ca_cert = Some(PathBuf::from(&value)),
            "tls-skip-verify" => options.tls_skip_verify = boolean()?,
            "exit-after-auth" => options.exit_after_auth = boolean()?,
            "pid-file" => options.pid_file = Some(PathBuf::from(&value)),
            "log-level" => options.log_level = Some(value),
            other => return Err(format!("unknown flag -{other}")),
        }
    }
    Ok(Parsed::Run(Box::new(options)))
}

/// The configuration the flags describe: the config file with flag overrides, or a
/// configuration built from flags alone.
pub fn build_config(options: &Options) -> Result<AgentConfig, String> {
    let mut config = match &options.config {
        Some(path) => {
            config::load(path, options.secrets_dir.as_deref()).map_err(|error| error.to_string())?
        }
        None => flag_only_config(options)?,
    };
    if let Some(address) = &options.address {
        config.vault.address = address.trim_end_matches('/').to_owned();
    }
    if let Some(ca_cert) = &options.ca_cert {
        config.vault.ca_cert = Some(ca_cert.clone());
    }
    if options.tls_skip_verify {
        config.vault.danger_tls_skip_verify = true;
    }
    if options.exit_after_auth {
        config.exit_after_auth = true;
    }
    if let Some(pid_file) = &options.pid_file {
        config.pid_file = Some(pid_file.clone());
    }
    if options.config.is_some() && options.method.is_some() {
        return Err("use either -config or -method, not both".into());
    }
    Ok(config)
}

fn flag_only_config(options: &Options) -> Result<AgentConfig, String> {
    let method_name = options
        .method
        .as_deref()
        .ok_or("either -config=FILE or -method=TYPE is required")?;
    let kind = MethodKind::parse(method_name).ok_or_else(|| {
        format!("unknown method `{method_name}` (kubernetes, jwt, approle, token_file)")
    })?;
    let mut method = MethodConfig::new(kind);
    if let Some(mount_path) = &options.mount_path {
        method.mount_path = mount_path.trim_matches('/').to_owned();
    }
    method.role = options.role.clone();
    method.jwt_path = options.jwt_path.clone();
    method.role_id_file_path = options.role_id_path.clone();
    method.secret_id_file_path = options.secret_id_path.clone();
    method.token_file_path = options.token_path.clone();
    // A flag-only agent in a pod keeps its secret ID file: the pod may restart.
    method.remove_secret_id_file_after_reading = false;
    config::check_method(&method)?;
    let sinks = options
        .sink
        .iter()
        .map(|path| SinkConfig {
            path: path.clone(),
            mode: 0o600,
            wrap_ttl: None,
        })
        .collect();
    let mut config = AgentConfig {
        auto_auth: Some(AutoAuthConfig { method, sinks }),
        exit_after_auth: options.exit_after_auth,
        ..AgentConfig::default()
    };
    config.template_config.exit_on_retry_failure = options.exit_on_retry_failure.unwrap_or(true);
    if let Some(interval) = options.static_interval {
        config.template_config.static_secret_render_interval = interval;
    }
    match (&options.secret_path, &options.destination) {
        (Some(secret_path), Some(destination)) => {
            let base_dir = match &options.secrets_dir {
                Some(dir) => dir.clone(),
                None => destination
                    .parent()
                    .filter(|parent| !parent.as_os_str().is_empty())
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from(".")),
            };
            let base = config::canonical_base(&base_dir).map_err(|error| error.to_string())?;
            let file_name = destination
                .file_name()
                .ok_or("-destination needs a file name")?;
            let target = if options.secrets_dir.is_some() {
                fsutil::confine(&base, destination).map_err(|error| error.to_string())?
            } else {
                base.join(file_name)
            };
            config.secrets_dir = base;
            config.templates.push(TemplateConfig {
                source: TemplateSource::Inline(flag_template(
                    secret_path,
                    options.secret_key_field.as_deref(),
                )?),
                destination: target,
                perms: options.perms.unwrap_or(0o600),
                command: None,
                command_timeout: std::time::Duration::from_secs(30),
                error_on_missing_key: true,
                left_delimiter: "{{".into(),
                right_delimiter: "}}".into(),
            });
        }
        (None, None) => {}
        _ => return Err("-secret-path and -destination go together".into()),
    }
    if let Some(address) = &options.listen_address {
        config.listeners.push(ListenerConfig::Tcp {
            address: address.clone(),
            tls: None,
        });
        config.api_proxy.use_auto_auth_token = UseAutoAuthToken::IfMissing;
    }
    Ok(config)
}

/// The template of the flag-only mode: one field of a KV v2 secret (`.Data.data.FIELD`) or of
/// any other secret (`.Data.FIELD`), or the whole data as JSON.
fn flag_template(secret_path: &str, field: Option<&str>) -> Result<String, String> {
    let quote = |text: &str| serde_json::to_string(text).map_err(|error| error.to_string());
    let path = quote(secret_path)?;
    Ok(match field {
        Some(field) => {
            let field = quote(field)?;
            format!(
                "{{{{ with secret {path} }}}}{{{{ if .Data.data }}}}{{{{ index .Data.data {field} }}}}{{{{ else }}}}{{{{ index .Data {field} }}}}{{{{ end }}}}{{{{ end }}}}"
            )
        }
        None => format!(
            "{{{{ with secret {path} }}}}{{{{ if .Data.data }}}}{{{{ .Data.data | toJSON }}}}{{{{ else }}}}{{{{ .Data | toJSON }}}}{{{{ end }}}}{{{{ end }}}}"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn flag_forms() {
        let Ok(Parsed::Run(options)) = parse(&args(&[
            "-config=/a.hcl",
            "--address",
            "http://x:1",
            "-tls-skip-verify",
        ])) else {
            panic!("parse");
        };
        assert_eq!(options.config.as_deref(), Some(Path::new("/a.hcl")));
        assert_eq!(options.address.as_deref(), Some("http://x:1"));
        assert!(options.tls_skip_verify);
        assert!(matches!(parse(&args(&["-help"])), Ok(Parsed::Help)));
        assert!(parse(&args(&["-bogus=1"])).is_err());
        assert!(parse(&args(&["-role"])).is_err());
    }

    #[test]
    fn kubernetes_flag_mode_builds_a_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let destination = dir.path().join("api_key");
        let Ok(Parsed::Run(options)) = parse(&args(&[
            "-method=kubernetes",
            "-role=ai-agent-role",
            "-jwt-path=/var/run/secrets/kubernetes.io/serviceaccount/token",
            "-secret-path=secret/data/ai-agent/api-key",
            "-secret-key-field=api_key",
            &format!("-destination={}", destination.display()),
        ])) else {
            panic!("parse");
        };
        let config = build_config(&options).expect("config");
        let auto_auth = config.auto_auth.expect("auto_auth");
        assert_eq!(auto_auth.method.kind, MethodKind::Kubernetes);
        assert_eq!(auto_auth.method.mount_path, "auth/kubernetes");
        assert_eq!(config.templates.len(), 1);
        assert!(config.template_config.exit_on_retry_failure);
        assert_eq!(config.templates[0].perms, 0o600);
        assert!(config.templates[0].error_on_missing_key);
    }

    #[test]
    fn flag_mode_requires_method_settings() {
        let Ok(Parsed::Run(options)) = parse(&args(&["-method=approle"])) else {
            panic!("parse");
        };
        assert!(build_config(&options).is_err());
    }
}
