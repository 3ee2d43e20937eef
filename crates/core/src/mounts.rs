//! Mount tables and the router.
//!
//! Two tables, persisted through the barrier: secrets engines (`core/mounts`) and auth
//! methods (`core/auth`, routed under `auth/`). The router resolves a request path to the
//! longest matching mount and the path relative to it. `sys/` and `auth/token/` are built into
//! the core and appear in the tables only so that listings look like Vault's.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::engine::{Engine, MountInfo};
use crate::error::Error;
use crate::view::StorageView;

pub(crate) const MOUNTS_PATH: &str = "core/mounts";
pub(crate) const AUTH_PATH: &str = "core/auth";

/// Which table a mount lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    Secrets,
    Auth,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MountConfig {
    #[serde(default)]
    pub default_lease_ttl: u64,
    #[serde(default)]
    pub max_lease_ttl: u64,
    #[serde(default)]
    pub force_no_cache: bool,
    #[serde(default)]
    pub listing_visibility: String,
    #[serde(default)]
    pub audit_non_hmac_request_keys: Vec<String>,
    #[serde(default)]
    pub audit_non_hmac_response_keys: Vec<String>,
    #[serde(default)]
    pub passthrough_request_headers: Vec<String>,
    #[serde(default)]
    pub allowed_response_headers: Vec<String>,
    /// Auth mounts: `default-service`, `default-batch`, `service`, `batch`.
    #[serde(default)]
    pub token_type: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MountEntry {
    /// Relative to the table, with a trailing slash: `secret/`, or `userpass/` for auth.
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub description: String,
    pub accessor: String,
    pub uuid: String,
    #[serde(default)]
    pub config: MountConfig,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    #[serde(default)]
    pub local: bool,
    #[serde(default)]
    pub seal_wrap: bool,
    pub table: Table,
}

impl MountEntry {
    pub fn new(table: Table, path: &str, kind: &str) -> Self {
        let short = kind.split('-').next().unwrap_or(kind);
        MountEntry {
            path: path.to_string(),
            kind: kind.to_string(),
            description: String::new(),
            accessor: format!(
                "{}_{}",
                short,
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            uuid: uuid::Uuid::new_v4().to_string(),
            config: MountConfig::default(),
            options: BTreeMap::new(),
            local: false,
            seal_wrap: false,
            table,
        }
    }

    /// The path the router matches: `auth/` in front of auth mounts.
    pub fn route_path(&self) -> String {
        match self.table {
            Table::Secrets => self.path.clone(),
            Table::Auth => format!("auth/{}", self.path),
        }
    }

    /// The storage prefix of the mount's own data.
    pub fn storage_prefix(&self) -> String {
        match self.table {
            Table::Secrets => format!("logical/{}/", self.uuid),
            Table::Auth => format!("auth/{}/", self.uuid),
        }
    }

    /// Whether the core itself serves this mount rather than an engine.
    pub fn is_builtin(&self) -> bool {
        matches!(self.kind.as_str(), "system" | "token" | "identity")
    }

    pub(crate) fn info(&self, system_default: u64, system_max: u64) -> MountInfo {
        let max = if self.config.max_lease_ttl > 0 {
            self.config.max_lease_ttl
        } else {
            system_max
        };
        let default = if self.config.default_lease_ttl > 0 {
            self.config.default_lease_ttl
        } else {
            system_default
        };
        MountInfo {
            path: self.route_path(),
            kind: self.kind.clone(),
            accessor: self.accessor.clone(),
            uuid: self.uuid.clone(),
            options: self.options.clone(),
            default_lease_ttl: default.min(max),
            max_lease_ttl: max,
        }
    }
}

/// A mount with its live engine (None for the core's built-in mounts) and storage view.
#[derive(Clone)]
pub struct Mounted {
    pub entry: MountEntry,
    pub engine: Option<Arc<dyn Engine>>,
    pub view: StorageView,
}

/// The routing table: mounts sorted so the longest path matches first.
#[derive(Clone, Default)]
pub struct Router {
    mounts: Vec<Mounted>,
}

/// A resolved request path.
pub struct Route {
    pub mounted: Mounted,
    /// The route path of the mount, e.g. `secret/`.
    pub mount_path: String,
    /// The rest of the path after the mount.
    pub relative: String,
}

impl Router {
    pub fn new(mut mounts: Vec<Mounted>) -> Self {
        mounts.sort_by_key(|m| std::cmp::Reverse(m.entry.route_path().len()));
        Router { mounts }
    }

    pub fn resolve(&self, path: &str) -> Option<Route> {
        for mounted in &self.mounts {
            let mount_path = mounted.entry.route_path();
            let relative = if let Some(rest) = path.strip_prefix(mount_path.as_str()) {
                rest
            } else if path == mount_path.trim_end_matches('/') {
                ""
            } else {
                continue;
            };
            return Some(Route {
                mounted: mounted.clone(),
                relative: relative.to_string(),
                mount_path,
            });
        }
        None
    }

    pub fn entries(&self, table: Table) -> Vec<&MountEntry> {
        let mut out: Vec<&MountEntry> = self
            .mounts
            .iter()
            .map(|m| &m.entry)
            .filter(|e| e.table == table)
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    pub fn find(&self, table: Table, path: &str) -> Option<&Mounted> {
        self.mounts
            .iter()
            .find(|m| m.entry.table == table && m.entry.path == path)
    }

    pub fn find_by_accessor(&self, accessor: &str) -> Option<&Mounted> {
        self.mounts.iter().find(|m| m.entry.accessor == accessor)
    }

    pub fn all(&self) -> &[Mounted] {
        &self.mounts
    }
}

/// Normalises a user-given mount path: no leading slash, exactly one trailing slash.
pub fn normalize_mount_path(path: &str) -> Result<String, Error> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Err(Error::invalid("mount path cannot be empty"));
    }
    if trimmed
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(Error::invalid(format!("invalid mount path \"{path}\"")));
    }
    if trimmed.chars().any(|c| {
        c.is_control() || c.is_whitespace() || matches!(c, '*' | '+' | '{' | '}' | '%' | '\\')
    }) {
        return Err(Error::invalid(format!("invalid mount path \"{path}\"")));
    }
    Ok(format!("{trimmed}/"))
}

/// Paths a user may not mount over, or mount below.
pub fn is_reserved(table: Table, path: &str) -> bool {
    match table {
        Table::Secrets => ["sys/", "auth/", "cubbyhole/", "identity/"]
            .iter()
            .any(|r| path.starts_with(r)),
        Table::Auth => path.starts_with("token/"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_paths() {
        assert_eq!(normalize_mount_path("/kv/").expect("ok"), "kv/");
        assert_eq!(normalize_mount_path("a/b").expect("ok"), "a/b/");
        for bad in ["", "/", "a//b", "a/../b", "a/./b", "a b", "x*", "%2e"] {
            assert!(normalize_mount_path(bad).is_err(), "{bad}");
        }
        assert!(is_reserved(Table::Secrets, "sys/"));
        assert!(is_reserved(Table::Secrets, "auth/x/"));
        assert!(!is_reserved(Table::Secrets, "secret/"));
    }
}
