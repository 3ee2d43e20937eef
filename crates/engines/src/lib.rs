//! Ward's built-in secrets engines: the key/value store (versions 1 and 2) and the
//! per-token cubbyhole.
//!
//! Each engine implements [`ward_core::Engine`] and sees only what the core hands it: a
//! storage view jailed to its mount, the mount's settings and the request time. Routing
//! inside an engine is a plain `match` on the operation and path segments. Leases, tokens,
//! policies and HTTP are the core's and the server's business; this crate never sees them.
//! [`registry`] is the one entry point the core needs to mount these engines.

pub mod auth;
pub mod cubbyhole;
pub mod database;
pub mod kv;

#[cfg(test)]
mod testing;

use ward_core::engine::EngineRegistry;

pub use cubbyhole::destroy_cubbyhole;

/// The engines this crate provides, by mount type: `kv` (version from the mount's
/// `version` option), `generic` (the legacy name of KV v1) and `cubbyhole`.
pub fn registry() -> EngineRegistry {
    let mut registry = EngineRegistry::new();
    registry.register("kv", kv::factory);
    registry.register("generic", kv::v1::factory);
    registry.register("cubbyhole", cubbyhole::factory);
    registry.register("database", database::factory);
    registry.register("userpass", auth::userpass::factory);
    registry.register("approle", auth::approle::factory);
    registry.register("jwt", auth::jwt::factory);
    registry.register("oidc", auth::jwt::factory);
    registry.register("kubernetes", auth::kubernetes::factory);
    registry
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ward_core::engine::MountInfo;

    use super::*;

    fn mount(kind: &str, version: Option<&str>) -> MountInfo {
        let mut options = BTreeMap::new();
        if let Some(version) = version {
            options.insert("version".to_string(), version.to_string());
        }
        MountInfo {
            path: "secret/".into(),
            kind: kind.into(),
            accessor: "kv_0000".into(),
            uuid: "0000".into(),
            options,
            default_lease_ttl: 60,
            max_lease_ttl: 120,
        }
    }

    #[test]
    fn registry_knows_every_engine_and_kv_versions() {
        let registry = registry();
        for kind in ["kv", "generic", "cubbyhole"] {
            assert!(registry.knows(kind), "{kind}");
        }
        for version in [None, Some(""), Some("1"), Some("2")] {
            assert!(registry.build(&mount("kv", version)).is_ok(), "{version:?}");
        }
        assert!(registry.build(&mount("generic", None)).is_ok());
        assert!(registry.build(&mount("cubbyhole", None)).is_ok());
        assert!(matches!(
            registry.build(&mount("kv", Some("3"))),
            Err(ward_core::Error::InvalidRequest(_))
        ));
    }
}
