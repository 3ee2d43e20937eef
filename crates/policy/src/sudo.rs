//! Root-protected paths: where `sudo` is needed on top of the operation's capability.
//!
//! [`SUDO_PATHS`] is the list from Vault's documentation ("root protected
//! API endpoints") plus Ward's own (`sys/alerts`), written as policy
//! patterns. The linter uses it to flag `sudo` that can have no effect, and
//! the offline test runner uses [`requires_sudo`] to fill in
//! [`crate::Request::requires_sudo`] the way the server does. Core still
//! decides for the server (`sys.rs`, the token store); it can switch to this
//! list so that both read the same table.

use crate::acl::Operation;
use crate::pattern;

/// One root-protected path pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SudoPath {
    /// A policy pattern (`+` for one segment, `*` at the end for any rest).
    pub pattern: &'static str,
    /// The operations that need sudo; empty means all of them.
    pub operations: &'static [Operation],
    /// Sudo is needed only when one of these request parameters is present;
    /// empty means always.
    pub parameters: &'static [&'static str],
}

const ALL: &[Operation] = &[];
const NONE: &[&str] = &[];
const WRITES: &[Operation] = &[
    Operation::Create,
    Operation::Update,
    Operation::Patch,
    Operation::Delete,
    Operation::List,
];

const fn always(pattern: &'static str) -> SudoPath {
    SudoPath {
        pattern,
        operations: ALL,
        parameters: NONE,
    }
}

/// The root-protected paths, as policy patterns.
pub const SUDO_PATHS: &[SudoPath] = &[
    SudoPath {
        pattern: "auth/token/accessors",
        operations: &[Operation::List],
        parameters: NONE,
    },
    SudoPath {
        pattern: "auth/token/create",
        operations: ALL,
        parameters: &["period", "no_parent"],
    },
    always("auth/token/revoke-orphan"),
    SudoPath {
        pattern: "pki/root",
        operations: &[Operation::Delete],
        parameters: NONE,
    },
    always("pki/root/sign-self-issued"),
    always("sys/alerts*"),
    always("sys/audit"),
    always("sys/audit/*"),
    SudoPath {
        pattern: "sys/auth/*",
        operations: WRITES,
        parameters: NONE,
    },
    always("sys/config/auditing/*"),
    always("sys/config/cors"),
    always("sys/config/ui/headers*"),
    always("sys/internal/inspect/router/*"),
    always("sys/leases"),
    SudoPath {
        pattern: "sys/leases/lookup*",
        operations: &[Operation::List],
        parameters: NONE,
    },
    always("sys/leases/revoke-force*"),
    always("sys/leases/revoke-prefix*"),
    always("sys/loggers*"),
    always("sys/plugins/catalog*"),
    always("sys/plugins/reload/backend"),
    always("sys/pprof*"),
    always("sys/raw*"),
    always("sys/remount"),
    always("sys/revoke-force*"),
    always("sys/revoke-prefix*"),
    always("sys/rotate"),
    always("sys/rotate/config"),
    always("sys/rotate/keyring"),
    always("sys/seal"),
    always("sys/step-down"),
    always("sys/storage/raft/snapshot-auto/config*"),
];

/// Whether a request needs `sudo`: the path (a trailing `/` ignored) matches
/// a root-protected pattern for this operation, and its parameter condition holds.
pub fn requires_sudo(
    path: &str,
    operation: Operation,
    parameters: Option<&serde_json::Map<String, serde_json::Value>>,
) -> bool {
    let path = path.trim_start_matches('/').trim_end_matches('/');
    SUDO_PATHS.iter().any(|sudo| {
        (sudo.operations.is_empty() || sudo.operations.contains(&operation))
            && (sudo.parameters.is_empty()
                || parameters.is_some_and(|given| {
                    sudo.parameters.iter().any(|name| given.contains_key(*name))
                }))
            && pattern::matches(sudo.pattern, path)
    })
}

/// The first root-protected pattern a policy pattern can reach, if any.
pub fn reaches_sudo_path(policy_pattern: &str) -> Option<&'static SudoPath> {
    let policy_pattern = policy_pattern.trim_end_matches('/');
    SUDO_PATHS.iter().find(|sudo| {
        pattern::overlap(sudo.pattern, policy_pattern).is_some()
            || pattern::overlap(sudo.pattern, &format!("{policy_pattern}/")).is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_protected_paths() {
        assert!(requires_sudo("sys/seal", Operation::Update, None));
        assert!(requires_sudo("sys/audit/file", Operation::Update, None));
        assert!(requires_sudo(
            "auth/token/accessors/",
            Operation::List,
            None
        ));
        assert!(!requires_sudo(
            "auth/token/accessors/",
            Operation::Read,
            None
        ));
        assert!(!requires_sudo("sys/auth/approle", Operation::Read, None));
        assert!(requires_sudo("sys/auth/approle", Operation::Update, None));
        assert!(!requires_sudo("secret/data/x", Operation::Update, None));
        let mut parameters = serde_json::Map::new();
        assert!(!requires_sudo(
            "auth/token/create",
            Operation::Update,
            Some(&parameters)
        ));
        parameters.insert("period".to_owned(), serde_json::json!("1h"));
        assert!(requires_sudo(
            "auth/token/create",
            Operation::Update,
            Some(&parameters)
        ));
    }

    #[test]
    fn reaching_sudo_paths() {
        assert!(reaches_sudo_path("sys/*").is_some());
        assert!(reaches_sudo_path("sys/seal").is_some());
        assert!(reaches_sudo_path("sys/+").is_some());
        assert!(reaches_sudo_path("secret/*").is_none());
        assert!(reaches_sudo_path("sys/policies/acl/*").is_none());
    }
}
