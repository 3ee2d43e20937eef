//! A policy repository: the files of a directory that says who can reach what.
//!
//! Layout (file paths relative to the repository root, `/`-separated):
//!
//! - `NAME.hcl` at the top level is the ACL policy `NAME` (lowercase; the
//!   server lowercases names). JSON policies in a `.hcl` file are accepted.
//! - `*_test.hcl`, anywhere, are policy tests ([`crate::testing`]).
//! - any other `*.hcl` in a subdirectory (for example `access/ci.hcl`) is an
//!   *object file*: blocks for the server objects that attach policies,
//!   whose attributes are the fields of the server's API for that object:
//!
//!   ```hcl
//!   group "ops" { policies = ["ops"] }                          # identity/group/name/ops
//!   token_role "deployer" { allowed_policies = ["deploy"] }     # auth/token/roles/deployer
//!   auth_role "approle" "agent" { token_policies = ["agent"] } # auth/approle/role/agent
//!   quota "api" { path = "secret/" rate = 100 }                 # sys/quotas/rate-limit/api
//!   ```
//!
//! Other files are ignored. This module reads the files it is given (the
//! caller walks the directory and decodes the bytes, see
//! [`crate::lint::decode_source`]); it does not talk to a server.

use std::collections::BTreeMap;
use std::fmt;

use crate::hcl::{self, Body, Item};
use crate::policy::{self, Policy, PolicyError};

/// One file of the repository, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Relative to the repository root, `/`-separated.
    pub path: String,
    pub text: String,
}

/// What a file is, by its place and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileRole {
    /// A top-level `NAME.hcl`: the policy named by the file (as written, not yet normalised).
    Policy { name: String },
    /// A `*_test.hcl` file.
    Test,
    /// A `*.hcl` file in a subdirectory.
    Objects,
    /// Anything else.
    Ignored,
}

/// Classifies a file by its relative path.
pub fn classify(path: &str) -> FileRole {
    let Some(stem) = path.strip_suffix(".hcl") else {
        return FileRole::Ignored;
    };
    if stem.ends_with("_test") {
        return FileRole::Test;
    }
    if stem.contains('/') {
        return FileRole::Objects;
    }
    FileRole::Policy {
        name: stem.to_owned(),
    }
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// A finding about a file, with the 1-based position it refers to (0 when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    pub line: u32,
    pub column: u32,
    pub severity: Severity,
    pub message: String,
}

impl Diagnostic {
    pub fn error(file: &str, line: u32, column: u32, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: file.to_owned(),
            line,
            column,
            severity: Severity::Error,
            message: message.into(),
        }
    }

    pub fn warning(file: &str, line: u32, column: u32, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, line, column, message)
        }
    }

    /// A policy decoding error, located in its file.
    pub fn from_policy_error(file: &str, error: &PolicyError) -> Diagnostic {
        let (line, column) = match error {
            PolicyError::Syntax(syntax) => (syntax.line, syntax.column),
            PolicyError::UnknownField { line, column, .. }
            | PolicyError::UnknownCapability { line, column, .. }
            | PolicyError::InvalidField { line, column, .. } => (*line, *column),
            PolicyError::Json { .. } | PolicyError::InvalidName { .. } => (0, 0),
        };
        // The position is printed in front; keep the message without it.
        let message = match error {
            PolicyError::Syntax(syntax) => format!("syntax error: {}", syntax.message),
            PolicyError::UnknownField { field, .. } => format!("unknown key `{field}`"),
            PolicyError::UnknownCapability { capability, .. } => {
                format!("unknown capability {capability:?}")
            }
            PolicyError::InvalidField { field, message, .. } => {
                format!("invalid `{field}`: {message}")
            }
            other => other.to_string(),
        };
        Diagnostic::error(file, line, column, message)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.line > 0 {
            write!(
                f,
                "{}:{}:{}: {severity}: {}",
                self.file, self.line, self.column, self.message
            )
        } else {
            write!(f, "{}: {severity}: {}", self.file, self.message)
        }
    }
}

/// The kinds of server object an object file can declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    /// `identity/group/name/<name>`
    Group,
    /// `auth/token/roles/<name>`
    TokenRole,
    /// `auth/<mount>/role/<name>`
    AuthRole,
    /// `sys/quotas/rate-limit/<name>`
    Quota,
}

impl ObjectKind {
    /// Every kind, in the order they are applied (after policies).
    pub const ALL: [ObjectKind; 4] = [
        ObjectKind::Group,
        ObjectKind::TokenRole,
        ObjectKind::AuthRole,
        ObjectKind::Quota,
    ];

    /// The block keyword in object files.
    pub fn keyword(self) -> &'static str {
        match self {
            ObjectKind::Group => "group",
            ObjectKind::TokenRole => "token_role",
            ObjectKind::AuthRole => "auth_role",
            ObjectKind::Quota => "quota",
        }
    }

    fn from_keyword(keyword: &str) -> Option<ObjectKind> {
        ObjectKind::ALL
            .into_iter()
            .find(|kind| kind.keyword() == keyword)
    }

    /// The field that lists the policies the object attaches, if any.
    pub fn policies_field(self) -> Option<&'static str> {
        match self {
            ObjectKind::Group => Some("policies"),
            ObjectKind::TokenRole => Some("allowed_policies"),
            ObjectKind::AuthRole => Some("token_policies"),
            ObjectKind::Quota => None,
        }
    }
}

/// One object declared in an object file.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub kind: ObjectKind,
    /// The auth mount, for auth roles (`approle`, `jwt`, ...).
    pub mount: Option<String>,
    pub name: String,
    /// The attributes, as the API's JSON body.
    pub fields: serde_json::Map<String, serde_json::Value>,
    pub file: String,
    pub line: u32,
}

impl Object {
    /// The API path the object is read from and written to (under `/v1/`).
    pub fn api_path(&self) -> String {
        match self.kind {
            ObjectKind::Group => format!("identity/group/name/{}", self.name),
            ObjectKind::TokenRole => format!("auth/token/roles/{}", self.name),
            ObjectKind::AuthRole => format!(
                "auth/{}/role/{}",
                self.mount.as_deref().unwrap_or_default(),
                self.name
            ),
            ObjectKind::Quota => format!("sys/quotas/rate-limit/{}", self.name),
        }
    }

    /// The policies the object attaches (names lowercased, as the server stores them).
    pub fn policies(&self) -> Vec<String> {
        let Some(field) = self.kind.policies_field() else {
            return Vec::new();
        };
        string_list(self.fields.get(field))
    }

    /// Whether tokens issued through this object get `default` as well.
    pub fn adds_default_policy(&self) -> bool {
        matches!(self.kind, ObjectKind::TokenRole | ObjectKind::AuthRole)
            && self.fields.get("token_no_default_policy") != Some(&serde_json::Value::Bool(true))
    }
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.mount {
            Some(mount) => write!(f, "{} \"{mount}\" \"{}\"", self.kind.keyword(), self.name),
            None => write!(f, "{} \"{}\"", self.kind.keyword(), self.name),
        }
    }
}

/// A policy of the repository with the file it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyFile {
    pub file: String,
    pub policy: Policy,
}

/// Everything the repository declares, decoded. Files that failed to decode
/// are left out and reported by [`Repository::load`].
#[derive(Debug, Clone, Default)]
pub struct Repository {
    /// By normalised policy name.
    pub policies: BTreeMap<String, PolicyFile>,
    pub objects: Vec<Object>,
    /// The test files, kept as text for [`crate::testing`].
    pub test_files: Vec<SourceFile>,
}

impl Repository {
    /// Decodes every file, returning the repository and the errors found on the way.
    pub fn load(files: &[SourceFile]) -> (Repository, Vec<Diagnostic>) {
        let mut repository = Repository::default();
        let mut diagnostics = Vec::new();
        let mut files: Vec<&SourceFile> = files.iter().collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        for file in files {
            match classify(&file.path) {
                FileRole::Policy { name } => match load_policy(&file.path, &name, &file.text) {
                    Ok(policy) => {
                        if let Some(existing) = repository.policies.get(&policy.name) {
                            diagnostics.push(Diagnostic::error(
                                &file.path,
                                0,
                                0,
                                format!(
                                    "policy {:?} is also defined by {} (policy names are case-insensitive)",
                                    policy.name, existing.file
                                ),
                            ));
                            continue;
                        }
                        repository.policies.insert(
                            policy.name.clone(),
                            PolicyFile {
                                file: file.path.clone(),
                                policy,
                            },
                        );
                    }
                    Err(diagnostic) => diagnostics.push(diagnostic),
                },
                FileRole::Objects => match parse_objects(&file.path, &file.text) {
                    Ok(objects) => {
                        for object in objects {
                            let duplicate = repository.objects.iter().find(|other| {
                                other.kind == object.kind
                                    && other.mount == object.mount
                                    && other.name == object.name
                            });
                            if let Some(other) = duplicate {
                                diagnostics.push(Diagnostic::error(
                                    &object.file,
                                    object.line,
                                    1,
                                    format!(
                                        "{object} is also declared at {}:{}",
                                        other.file, other.line
                                    ),
                                ));
                                continue;
                            }
                            repository.objects.push(object);
                        }
                    }
                    Err(diagnostic) => diagnostics.push(diagnostic),
                },
                FileRole::Test => repository.test_files.push(file.clone()),
                FileRole::Ignored => {}
            }
        }
        (repository, diagnostics)
    }

    /// Finds a role for a test case: `NAME` (a token role, or the only auth
    /// role with that name), `MOUNT/NAME`, `auth/token/roles/NAME` or `auth/MOUNT/role/NAME`.
    pub fn role(&self, reference: &str) -> Result<&Object, String> {
        let reference = reference.trim_matches('/');
        let by_path = self
            .objects
            .iter()
            .find(|object| object.api_path() == reference);
        if let Some(object) = by_path {
            return Ok(object);
        }
        let candidates: Vec<&Object> = self
            .objects
            .iter()
            .filter(|object| match object.kind {
                ObjectKind::TokenRole => {
                    object.name == reference || format!("token/{}", object.name) == reference
                }
                ObjectKind::AuthRole => {
                    object.name == reference
                        || format!(
                            "{}/{}",
                            object.mount.as_deref().unwrap_or_default(),
                            object.name
                        ) == reference
                }
                _ => false,
            })
            .collect();
        match candidates.as_slice() {
            [one] => Ok(one),
            [] => Err(format!(
                "no token_role or auth_role {reference:?} in the repository"
            )),
            many => Err(format!(
                "role {reference:?} is ambiguous ({}); write it as MOUNT/NAME",
                many.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    /// The identity group with this name.
    pub fn group(&self, name: &str) -> Option<&Object> {
        self.objects
            .iter()
            .find(|object| object.kind == ObjectKind::Group && object.name == name)
    }
}

/// Decodes a policy file, with its name checked and normalised.
pub fn load_policy(file: &str, name: &str, text: &str) -> Result<Policy, Diagnostic> {
    policy::normalize_name(name).map_err(|error| {
        Diagnostic::error(
            file,
            0,
            0,
            format!("{error} (the file name is the policy name)"),
        )
    })?;
    match policy::parse(name, text) {
        Ok(policy) => match policy.name.as_str() {
            "root" | "response-wrapping" => Err(Diagnostic::error(
                file,
                0,
                0,
                format!(
                    "invalid policy name {:?}: it is built into the server and cannot be written",
                    policy.name
                ),
            )),
            _ => Ok(policy),
        },
        Err(error) => Err(Diagnostic::from_policy_error(file, &error)),
    }
}

/// Decodes an object file.
pub fn parse_objects(file: &str, text: &str) -> Result<Vec<Object>, Diagnostic> {
    let body = hcl::parse(text)
        .map_err(|error| Diagnostic::error(file, error.line, error.column, error.message))?;
    let mut objects = Vec::new();
    for item in body.items() {
        let kind = ObjectKind::from_keyword(&item.key).ok_or_else(|| {
            Diagnostic::error(
                file,
                item.line,
                item.column,
                format!(
                    "unknown block `{}`; object files declare group, token_role, auth_role and quota blocks",
                    item.key
                ),
            )
        })?;
        let wanted = if kind == ObjectKind::AuthRole { 2 } else { 1 };
        let labels_error = || {
            let example = match kind {
                ObjectKind::AuthRole => "auth_role \"MOUNT\" \"NAME\" { ... }".to_owned(),
                other => format!("{} \"NAME\" {{ ... }}", other.keyword()),
            };
            Diagnostic::error(
                file,
                item.line,
                item.column,
                format!("`{}` needs {wanted} label(s): {example}", item.key),
            )
        };
        if item.labels.len() != wanted || !item.block {
            return Err(labels_error());
        }
        let (mount, name) = match item.labels.as_slice() {
            [mount, name] => (Some(mount.trim_matches('/').to_owned()), name.clone()),
            [name] => (None, name.clone()),
            _ => return Err(labels_error()),
        };
        check_object_name(file, item, &name)?;
        if let Some(mount) = &mount {
            if mount.is_empty() || mount.split('/').any(|part| part.is_empty() || part == "..") {
                return Err(Diagnostic::error(
                    file,
                    item.line,
                    item.column,
                    format!("invalid auth mount {mount:?}"),
                ));
            }
        }
        let Some(fields_body) = item.value.as_object() else {
            return Err(labels_error());
        };
        let fields = object_fields(file, kind, fields_body)?;
        objects.push(Object {
            kind,
            mount,
            name,
            fields,
            file: file.to_owned(),
            line: item.line,
        });
    }
    Ok(objects)
}

fn check_object_name(file: &str, item: &Item, name: &str) -> Result<(), Diagnostic> {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
        && name != "."
        && name != "..";
    if valid {
        Ok(())
    } else {
        Err(Diagnostic::error(
            file,
            item.line,
            item.column,
            format!(
                "invalid {} name {name:?}: use letters, digits, '-', '_', '.' and '@'",
                item.key
            ),
        ))
    }
}

fn object_fields(
    file: &str,
    kind: ObjectKind,
    body: &Body,
) -> Result<serde_json::Map<String, serde_json::Value>, Diagnostic> {
    let mut fields = serde_json::Map::new();
    for item in body.items() {
        if item.block || !item.labels.is_empty() {
            return Err(Diagnostic::error(
                file,
                item.line,
                item.column,
                format!(
                    "`{}` must be an attribute (`key = value`), not a block",
                    item.key
                ),
            ));
        }
        if fields.contains_key(&item.key) {
            return Err(Diagnostic::error(
                file,
                item.line,
                item.column,
                format!("`{}` is set twice", item.key),
            ));
        }
        let is_policy_list =
            kind.policies_field() == Some(item.key.as_str()) || item.key.ends_with("policies");
        let value = if is_policy_list {
            let names = item.string_list().map_err(|error| {
                Diagnostic::error(file, error.line, error.column, error.message)
            })?;
            let mut normalized = Vec::with_capacity(names.len());
            for name in names {
                let lower = policy::normalize_name(&name).map_err(|error| {
                    Diagnostic::error(file, item.line, item.column, error.to_string())
                })?;
                normalized.push(serde_json::Value::String(lower));
            }
            serde_json::Value::Array(normalized)
        } else {
            item.value.to_json()
        };
        fields.insert(item.key.clone(), value);
    }
    Ok(fields)
}

fn string_list(value: Option<&serde_json::Value>) -> Vec<String> {
    match value {
        Some(serde_json::Value::Array(values)) => values
            .iter()
            .filter_map(|value| value.as_str().map(str::to_owned))
            .collect(),
        Some(serde_json::Value::String(text)) => text
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, text: &str) -> SourceFile {
        SourceFile {
            path: path.to_owned(),
            text: text.to_owned(),
        }
    }

    #[test]
    fn layout() {
        assert_eq!(
            classify("agent.hcl"),
            FileRole::Policy {
                name: "agent".to_owned()
            }
        );
        assert_eq!(classify("agent_test.hcl"), FileRole::Test);
        assert_eq!(classify("tests/agent_test.hcl"), FileRole::Test);
        assert_eq!(classify("access/roles.hcl"), FileRole::Objects);
        assert_eq!(classify("README.md"), FileRole::Ignored);
    }

    #[test]
    fn loads_policies_and_objects() {
        let (repository, diagnostics) = Repository::load(&[
            file("agent.hcl", "path \"secret/*\" { capabilities = [\"read\"] }"),
            file(
                "access/roles.hcl",
                "group \"ops\" { policies = [\"Agent\"] }\ntoken_role \"ci\" { allowed_policies = [\"agent\"] token_period = \"1h\" }\nauth_role \"approle\" \"agent\" { token_policies = [\"agent\"] }",
            ),
        ]);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        assert!(repository.policies.contains_key("agent"));
        assert_eq!(repository.objects.len(), 3);
        assert_eq!(
            repository.group("ops").map(Object::policies),
            Some(vec!["agent".to_owned()])
        );
        assert_eq!(
            repository.role("approle/agent").map(Object::api_path),
            Ok("auth/approle/role/agent".to_owned())
        );
        assert_eq!(
            repository.role("ci").map(Object::api_path),
            Ok("auth/token/roles/ci".to_owned())
        );
    }

    #[test]
    fn bad_files_are_reported_with_positions() {
        let (_, diagnostics) = Repository::load(&[
            file("bad.hcl", "path \"a\" {\n  capabilities = [\"read\"\n"),
            file("root.hcl", "path \"a\" { capabilities = [\"read\"] }"),
            file("bad name.hcl", ""),
            file("access/x.hcl", "widget \"a\" {}"),
        ]);
        let text: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|d| d.starts_with("bad.hcl:3:1: error: syntax error")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|d| d.contains("root.hcl: error: invalid policy name")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|d| d.contains("bad name.hcl: error: invalid policy name")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|d| d.starts_with("access/x.hcl:1:1: error: unknown block `widget`")),
            "{text:?}"
        );
    }
}
