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

/// The storage key of a role (names are case-insensitive, as Vault's).
fn role_key(name: &str) -> String {
    format!("role/{}", name.to_lowercase())
}

/// The existence check shared by methods whose writable objects are `config` and `role/<name>`.
async fn config_or_role_exists(
    ctx: &ward_core::EngineContext,
    request: &ward_core::EngineRequest,
) -> Result<Option<bool>, ward_core::Error> {
    match request.path.strip_prefix("role/").and_then(name_segment) {
        Some(name) => Ok(Some(ctx.storage.get(&role_key(name)).await?.is_some())),
        None if request.path == "config" => Ok(Some(ctx.storage.get("config").await?.is_some())),
        None => Ok(None),
    }
}

/// Lists answer on both `role` and `role/`.
fn is_list_root(path: &str, root: &str) -> bool {
    path == root || path.strip_suffix('/') == Some(root)
}
