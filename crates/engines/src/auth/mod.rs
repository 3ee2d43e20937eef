//! Auth methods: `userpass`, `approle`, `jwt`/`oidc` and `kubernetes`.
//!
//! Each method is an [`ward_core::Engine`] mounted under `auth/`. A login path is
//! unauthenticated and answers with an [`ward_core::engine::AuthSpec`]; the core mints the
//! token from it and only when the engine returned `Ok`, so a failed login can never leave a
//! token behind. Entities, aliases and groups are the core's identity store: the methods only
//! name the alias (and the external group names) a login maps to.
//!
//! Shared pieces live beside the methods: [`token_fields`] (the `token_*` fields every role
//! and user carries), `secret` (redacting newtypes), `jws` (signature checks with `ring`),
//! `http` (the outbound client for JWKS, discovery and TokenReview) and `glob`.

pub mod approle;
mod glob;
mod http;
mod jws;
pub mod jwt;
pub mod kubernetes;
mod secret;
pub mod token_fields;
pub mod userpass;

#[cfg(test)]
mod test_support;

/// A path segment naming a role or user: non-empty and without a slash.
fn name_segment(raw: &str) -> Option<&str> {
    (!raw.is_empty() && !raw.contains('/')).then_some(raw)
}

/// Lists answer on both `role` and `role/`.
fn is_list_root(path: &str, root: &str) -> bool {
    path == root || path.strip_suffix('/') == Some(root)
}
