//! The key/value secrets engine, in its two API generations.
//!
//! A `kv` mount is version 1 ([`v1`]: one value per path, overwritten in place) unless its
//! `version` option is `"2"` ([`v2`]: versioned values with metadata, check-and-set, soft
//! delete and destroy). This module only picks the version; each submodule owns its own
//! storage layout and routes. The cubbyhole engine reuses v1's flat store.

pub mod v1;
pub mod v2;

use std::sync::Arc;

use ward_core::engine::MountInfo;
use ward_core::{Engine, Error};

/// Builds the engine for a `kv` mount: `version` `"2"` is KV v2, `"1"` or absent is KV v1.
pub fn factory(mount: &MountInfo) -> Result<Arc<dyn Engine>, Error> {
    match mount.options.get("version").map(String::as_str) {
        None | Some("") | Some("1") => v1::factory(mount),
        Some("2") => v2::factory(mount),
        Some(other) => Err(Error::invalid(format!(
            "invalid kv version {other:?}: must be \"1\" or \"2\""
        ))),
    }
}
