//! KV version 1: one JSON object per path, overwritten in place, with no history.
//!
//! Reads return the stored object as `data` and a refresh hint as the lease duration: the
//! secret's own `ttl` (or legacy `lease`) key when it parses as a duration, else the
//! mount's default lease TTL. No lease is registered; the hint only tells agents when to
//! read again. The flat store functions here are shared with the cubbyhole engine, which
//! is the same store keyed per token.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};
use ward_core::engine::MountInfo;
use ward_core::{
    Engine, EngineContext, EngineRequest, EngineResponse, Error, Operation, StorageView,
};

/// Builds a KV v1 engine (also the `generic` mount type).
pub fn factory(_mount: &MountInfo) -> Result<Arc<dyn Engine>, Error> {
    Ok(Arc::new(KvV1Engine))
}

/// The KV v1 engine. It keeps no state of its own: everything is in the mount's storage.
#[derive(Debug, Default, Clone, Copy)]
pub struct KvV1Engine;

#[async_trait]
impl Engine for KvV1Engine {
    async fn exists(
        &self,
        ctx: &EngineContext,
        request: &EngineRequest,
    ) -> Result<Option<bool>, Error> {
        entry_exists(&ctx.storage, &request.path).await.map(Some)
    }

    async fn handle(
        &self,
        ctx: &EngineContext,
        request: EngineRequest,
    ) -> Result<EngineResponse, Error> {
        match request.op() {
            Operation::Read => {
                let data = read_entry(&ctx.storage, &request.path).await?;
                let lease_duration = ttl_hint(&data).unwrap_or(ctx.mount.default_lease_ttl);
                Ok(EngineResponse {
                    data: Some(data),
                    lease_duration_hint: Some(lease_duration),
                    ..EngineResponse::default()
                })
            }
            Operation::Create | Operation::Update => {
                write_entry(&ctx.storage, &request.path, &request.data).await?;
                Ok(EngineResponse::empty())
            }
            Operation::Delete => {
                delete_entry(&ctx.storage, &request.path).await?;
                Ok(EngineResponse::empty())
            }
            Operation::List => {
                EngineResponse::list(list_entries(&ctx.storage, &request.path).await?)
            }
            Operation::Patch => Err(Error::UnsupportedOperation(request.path)),
        }
    }
}

/// Whether a value is stored at `path` (false for paths that can never hold one).
pub(crate) async fn entry_exists(storage: &StorageView, path: &str) -> Result<bool, Error> {
    if validate_path(path).is_err() {
        return Ok(false);
    }
    Ok(storage.get(path).await?.is_some())
}

/// The object stored at `path`; not found when there is none.
pub(crate) async fn read_entry(
    storage: &StorageView,
    path: &str,
) -> Result<Map<String, Value>, Error> {
    validate_path(path)?;
    storage.get_json(path).await?.ok_or_else(Error::not_found)
}

/// Stores `data` at `path`, replacing what was there. An empty object is refused, as Vault
/// does, so that a write can never silently store nothing.
pub(crate) async fn write_entry(
    storage: &StorageView,
    path: &str,
    data: &Map<String, Value>,
) -> Result<(), Error> {
    validate_path(path)?;
    if data.is_empty() {
        return Err(Error::invalid("missing data fields"));
    }
    storage.put_json(path, data).await
}

/// Removes the value at `path`; removing nothing is not an error.
pub(crate) async fn delete_entry(storage: &StorageView, path: &str) -> Result<(), Error> {
    validate_path(path)?;
    storage.delete(path).await
}

/// The direct children of the folder `path` (with or without its trailing slash), sorted,
/// folders ending in `/`.
pub(crate) async fn list_entries(storage: &StorageView, path: &str) -> Result<Vec<String>, Error> {
    let mut keys = storage.list(&folder_prefix(path)).await?;
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// `""` stays the root; anything else names a folder and so ends in `/`.
pub(crate) fn folder_prefix(path: &str) -> String {
    if path.is_empty() || path.ends_with('/') {
        path.to_string()
    } else {
        format!("{path}/")
    }
}

/// A secret lives at a non-empty path that does not end in `/` (that would be a folder).
fn validate_path(path: &str) -> Result<(), Error> {
    if path.is_empty() {
        return Err(Error::invalid("missing path"));
    }
    if path.ends_with('/') {
        return Err(Error::invalid(format!(
            "invalid path {path:?}: a secret path cannot end in \"/\""
        )));
    }
    Ok(())
}

/// The secret's own refresh hint in seconds: its `ttl` key, or the legacy `lease` key, when
/// it is a non-negative number of seconds or a Go duration string. A value that does not
/// parse is ignored (the mount default applies), as in Vault.
fn ttl_hint(data: &Map<String, Value>) -> Option<u64> {
    let raw = data.get("ttl").or_else(|| data.get("lease"))?;
    match raw {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        Value::String(s) => ward_core::duration::parse_seconds(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use ward_core::{Engine, Error, Operation};

    use super::*;
    use crate::testing::{context, object, request, Mount};

    async fn engine_and_context() -> (KvV1Engine, EngineContext) {
        (KvV1Engine, context(Mount::KvV1).await)
    }

    #[tokio::test]
    async fn write_then_read_returns_the_map_and_the_mount_default_hint() {
        let (engine, ctx) = engine_and_context().await;
        let written = engine
            .handle(
                &ctx,
                request(
                    Operation::Create,
                    "foo",
                    json!({"user": "alice", "n": 3, "nested": {"a": [1, 2]}}),
                ),
            )
            .await
            .expect("write");
        assert_eq!(written, EngineResponse::empty(), "a write answers 204");

        let read = engine
            .handle(&ctx, request(Operation::Read, "foo", json!({})))
            .await
            .expect("read");
        assert_eq!(
            read.data,
            Some(object(
                json!({"user": "alice", "n": 3, "nested": {"a": [1, 2]}})
            ))
        );
        assert_eq!(read.lease_duration_hint, Some(ctx.mount.default_lease_ttl));
        assert_eq!(read.secret, None, "KV v1 registers no lease");
    }

    #[tokio::test]
    async fn the_secrets_own_ttl_is_the_hint() {
        let (engine, ctx) = engine_and_context().await;
        for (value, want) in [
            (json!(90), 90),
            (json!("90"), 90),
            (json!("1h"), 3600),
            (json!("1h30m"), 5400),
            (json!("not a duration"), ctx.mount.default_lease_ttl),
            (json!(-5), ctx.mount.default_lease_ttl),
        ] {
            engine
                .handle(
                    &ctx,
                    request(
                        Operation::Update,
                        "t",
                        json!({"ttl": value.clone(), "v": 1}),
                    ),
                )
                .await
                .expect("write");
            let read = engine
                .handle(&ctx, request(Operation::Read, "t", json!({})))
                .await
                .expect("read");
            assert_eq!(read.lease_duration_hint, Some(want), "ttl {value}");
        }
        engine
            .handle(
                &ctx,
                request(Operation::Update, "legacy", json!({"lease": "2m"})),
            )
            .await
            .expect("write");
        let read = engine
            .handle(&ctx, request(Operation::Read, "legacy", json!({})))
            .await
            .expect("read");
        assert_eq!(read.lease_duration_hint, Some(120), "the legacy lease key");
    }

    #[tokio::test]
    async fn update_replaces_the_whole_map() {
        let (engine, ctx) = engine_and_context().await;
        engine
            .handle(
                &ctx,
                request(Operation::Create, "k", json!({"a": 1, "b": 2})),
            )
            .await
            .expect("write");
        engine
            .handle(&ctx, request(Operation::Update, "k", json!({"c": 3})))
            .await
            .expect("write");
        let read = engine
            .handle(&ctx, request(Operation::Read, "k", json!({})))
            .await
            .expect("read");
        assert_eq!(read.data, Some(object(json!({"c": 3}))));
    }

    #[tokio::test]
    async fn missing_secret_reads_as_not_found_and_delete_is_idempotent() {
        let (engine, ctx) = engine_and_context().await;
        let missing = engine
            .handle(&ctx, request(Operation::Read, "nope", json!({})))
            .await;
        assert_eq!(missing, Err(Error::not_found()));

        engine
            .handle(&ctx, request(Operation::Create, "k", json!({"a": 1})))
            .await
            .expect("write");
        for _ in 0..2 {
            let deleted = engine
                .handle(&ctx, request(Operation::Delete, "k", json!({})))
                .await
                .expect("delete");
            assert_eq!(deleted, EngineResponse::empty());
        }
        let gone = engine
            .handle(&ctx, request(Operation::Read, "k", json!({})))
            .await;
        assert_eq!(gone, Err(Error::not_found()));
    }

    #[tokio::test]
    async fn list_is_sorted_with_folders_and_404_when_empty() {
        let (engine, ctx) = engine_and_context().await;
        let empty = engine
            .handle(&ctx, request(Operation::List, "", json!({})))
            .await;
        assert_eq!(empty, Err(Error::not_found()), "an empty list is a 404");

        for path in ["foo", "bar/baz", "bar/qux/deep", "apple"] {
            engine
                .handle(&ctx, request(Operation::Create, path, json!({"v": 1})))
                .await
                .expect("write");
        }
        let root = engine
            .handle(&ctx, request(Operation::List, "", json!({})))
            .await
            .expect("list");
        assert_eq!(
            root.data,
            Some(object(json!({"keys": ["apple", "bar/", "foo"]})))
        );

        for folder in ["bar", "bar/"] {
            let listed = engine
                .handle(&ctx, request(Operation::List, folder, json!({})))
                .await
                .expect("list");
            assert_eq!(
                listed.data,
                Some(object(json!({"keys": ["baz", "qux/"]}))),
                "{folder}"
            );
        }
        let none = engine
            .handle(&ctx, request(Operation::List, "foo/", json!({})))
            .await;
        assert_eq!(none, Err(Error::not_found()), "a leaf is not a folder");
    }

    #[tokio::test]
    async fn invalid_paths_and_empty_writes_are_400() {
        let (engine, ctx) = engine_and_context().await;
        for op in [Operation::Read, Operation::Create, Operation::Delete] {
            let result = engine.handle(&ctx, request(op, "", json!({"a": 1}))).await;
            assert_eq!(result, Err(Error::invalid("missing path")), "{op:?}");
        }
        let folder = engine
            .handle(&ctx, request(Operation::Create, "dir/", json!({"a": 1})))
            .await;
        assert!(matches!(folder, Err(Error::InvalidRequest(_))));
        let empty = engine
            .handle(&ctx, request(Operation::Create, "k", json!({})))
            .await;
        assert_eq!(empty, Err(Error::invalid("missing data fields")));
        let patch = engine
            .handle(&ctx, request(Operation::Patch, "k", json!({"a": 1})))
            .await;
        assert!(
            matches!(patch, Err(Error::UnsupportedOperation(_))),
            "KV v1 has no PATCH"
        );
    }

    #[tokio::test]
    async fn exists_tells_create_from_update() {
        let (engine, ctx) = engine_and_context().await;
        let probe = request(Operation::Update, "k", json!({"a": 1}));
        assert_eq!(engine.exists(&ctx, &probe).await, Ok(Some(false)));
        engine.handle(&ctx, probe.clone()).await.expect("write");
        assert_eq!(engine.exists(&ctx, &probe).await, Ok(Some(true)));
        assert_eq!(
            engine
                .exists(&ctx, &request(Operation::Update, "", json!({})))
                .await,
            Ok(Some(false))
        );
    }
}
