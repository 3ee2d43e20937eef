//! The cubbyhole: a private KV v1 store for each token, which no other token can read.
//!
//! Every request is confined to the caller's cubbyhole, a sub-view of the mount's storage
//! named by the token's cubbyhole id, so paths never cross tokens; a request without one
//! is denied. There is no lease hint (`lease_duration` 0). The core calls
//! [`destroy_cubbyhole`] when a token is revoked, which is how response-wrapping tokens
//! lose their payload. Policies (the default policy grants `cubbyhole/*`) are the core's.

use std::sync::Arc;

use async_trait::async_trait;
use ward_core::engine::MountInfo;
use ward_core::{
    Engine, EngineContext, EngineRequest, EngineResponse, Error, Operation, StorageView,
};

use crate::kv::v1;

/// Builds the cubbyhole engine.
pub fn factory(_mount: &MountInfo) -> Result<Arc<dyn Engine>, Error> {
    Ok(Arc::new(CubbyholeEngine))
}

/// Removes everything in one token's cubbyhole. `storage` is the cubbyhole mount's view.
/// Idempotent; an id that could name more than one cubbyhole (empty, or containing `/`)
/// is refused without touching storage.
pub async fn destroy_cubbyhole(storage: &StorageView, cubbyhole_id: &str) -> Result<(), Error> {
    storage.clear(&cubbyhole_prefix(cubbyhole_id)?).await
}

/// The cubbyhole engine; its state is the mount's storage, keyed by cubbyhole id.
#[derive(Debug, Default, Clone, Copy)]
pub struct CubbyholeEngine;

#[async_trait]
impl Engine for CubbyholeEngine {
    async fn exists(
        &self,
        ctx: &EngineContext,
        request: &EngineRequest,
    ) -> Result<Option<bool>, Error> {
        let storage = own_storage(ctx)?;
        v1::entry_exists(&storage, &request.path).await.map(Some)
    }

    async fn handle(
        &self,
        ctx: &EngineContext,
        request: EngineRequest,
    ) -> Result<EngineResponse, Error> {
        let storage = own_storage(ctx)?;
        match request.op() {
            Operation::Read => Ok(EngineResponse::with_data(
                v1::read_entry(&storage, &request.path).await?,
            )),
            Operation::Create | Operation::Update => {
                v1::write_entry(&storage, &request.path, &request.data).await?;
                Ok(EngineResponse::empty())
            }
            Operation::Delete => {
                v1::delete_entry(&storage, &request.path).await?;
                Ok(EngineResponse::empty())
            }
            Operation::List => {
                EngineResponse::list(v1::list_entries(&storage, &request.path).await?)
            }
            Operation::Patch => Err(Error::UnsupportedOperation(request.path)),
        }
    }
}

/// The caller's own cubbyhole, or permission denied when it has none.
fn own_storage(ctx: &EngineContext) -> Result<StorageView, Error> {
    let id = ctx.cubbyhole_id.as_deref().ok_or_else(Error::denied)?;
    let prefix = cubbyhole_prefix(id).map_err(|_| Error::denied())?;
    Ok(ctx.storage.sub(&prefix))
}

/// `<id>/`. The id must be one path segment, or the prefix would cover other cubbyholes
/// (an empty id covers them all).
fn cubbyhole_prefix(cubbyhole_id: &str) -> Result<String, Error> {
    if cubbyhole_id.is_empty() || cubbyhole_id.contains('/') {
        return Err(Error::invalid("invalid cubbyhole id"));
    }
    Ok(format!("{cubbyhole_id}/"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::testing::{context, object, request, Mount};

    async fn context_for(id: Option<&str>) -> EngineContext {
        let mut ctx = context(Mount::Cubbyhole).await;
        ctx.cubbyhole_id = id.map(str::to_string);
        ctx
    }

    fn as_token(ctx: &EngineContext, id: &str) -> EngineContext {
        let mut other = ctx.clone();
        other.cubbyhole_id = Some(id.to_string());
        other
    }

    #[tokio::test]
    async fn read_write_list_delete_like_kv_v1_without_a_lease_hint() {
        let ctx = context_for(Some("alpha")).await;
        let engine = CubbyholeEngine;
        let written = engine
            .handle(
                &ctx,
                request(
                    Operation::Create,
                    "app/token",
                    json!({"token": "s.abc", "ttl": "1h"}),
                ),
            )
            .await
            .expect("write");
        assert_eq!(written, EngineResponse::empty());

        let read = engine
            .handle(&ctx, request(Operation::Read, "app/token", json!({})))
            .await
            .expect("read");
        assert_eq!(
            read.data,
            Some(object(json!({"token": "s.abc", "ttl": "1h"})))
        );
        assert_eq!(
            read.lease_duration_hint, None,
            "the cubbyhole gives no refresh hint, even with a ttl key"
        );

        let listed = engine
            .handle(&ctx, request(Operation::List, "", json!({})))
            .await
            .expect("list");
        assert_eq!(listed.data, Some(object(json!({"keys": ["app/"]}))));
        let listed = engine
            .handle(&ctx, request(Operation::List, "app", json!({})))
            .await
            .expect("list");
        assert_eq!(listed.data, Some(object(json!({"keys": ["token"]}))));

        engine
            .handle(&ctx, request(Operation::Delete, "app/token", json!({})))
            .await
            .expect("delete");
        let gone = engine
            .handle(&ctx, request(Operation::Read, "app/token", json!({})))
            .await;
        assert_eq!(gone, Err(Error::not_found()));
        let empty = engine
            .handle(&ctx, request(Operation::List, "", json!({})))
            .await;
        assert_eq!(empty, Err(Error::not_found()));
    }

    #[tokio::test]
    async fn two_tokens_never_see_each_others_secrets() {
        let alpha = context_for(Some("alpha")).await;
        let beta = as_token(&alpha, "beta");
        let engine = CubbyholeEngine;
        engine
            .handle(
                &alpha,
                request(Operation::Create, "shared-name", json!({"owner": "alpha"})),
            )
            .await
            .expect("write");

        let read = engine
            .handle(&beta, request(Operation::Read, "shared-name", json!({})))
            .await;
        assert_eq!(
            read,
            Err(Error::not_found()),
            "beta cannot read alpha's secret"
        );
        let listed = engine
            .handle(&beta, request(Operation::List, "", json!({})))
            .await;
        assert_eq!(listed, Err(Error::not_found()), "beta's cubbyhole is empty");
        assert_eq!(
            engine
                .exists(&beta, &request(Operation::Update, "shared-name", json!({})))
                .await,
            Ok(Some(false))
        );

        engine
            .handle(
                &beta,
                request(Operation::Create, "shared-name", json!({"owner": "beta"})),
            )
            .await
            .expect("write");
        engine
            .handle(&beta, request(Operation::Delete, "shared-name", json!({})))
            .await
            .expect("delete");
        let read = engine
            .handle(&alpha, request(Operation::Read, "shared-name", json!({})))
            .await
            .expect("read");
        assert_eq!(
            read.data,
            Some(object(json!({"owner": "alpha"}))),
            "beta's writes and deletes stay in beta's cubbyhole"
        );

        // A path cannot climb out of the caller's cubbyhole: it is only a key suffix.
        let climb = engine
            .handle(
                &beta,
                request(Operation::Read, "../alpha/shared-name", json!({})),
            )
            .await;
        assert_eq!(climb, Err(Error::not_found()));
    }

    #[tokio::test]
    async fn no_cubbyhole_id_is_permission_denied() {
        let engine = CubbyholeEngine;
        for id in [None, Some(""), Some("a/b")] {
            let ctx = context_for(id).await;
            for op in [
                Operation::Read,
                Operation::Create,
                Operation::Delete,
                Operation::List,
            ] {
                let result = engine.handle(&ctx, request(op, "k", json!({"a": 1}))).await;
                assert_eq!(result, Err(Error::denied()), "{id:?} {op:?}");
            }
            assert_eq!(
                engine
                    .exists(&ctx, &request(Operation::Update, "k", json!({})))
                    .await,
                Err(Error::denied())
            );
        }
    }

    #[tokio::test]
    async fn destroying_a_cubbyhole_removes_only_that_tokens_data() {
        let alpha = context_for(Some("alpha")).await;
        let alphabet = as_token(&alpha, "alphabet");
        let engine = CubbyholeEngine;
        engine
            .handle(&alpha, request(Operation::Create, "a", json!({"v": 1})))
            .await
            .expect("write");
        engine
            .handle(&alpha, request(Operation::Create, "dir/b", json!({"v": 2})))
            .await
            .expect("write");
        engine
            .handle(&alphabet, request(Operation::Create, "a", json!({"v": 3})))
            .await
            .expect("write");

        destroy_cubbyhole(&alpha.storage, "alpha")
            .await
            .expect("destroy");
        destroy_cubbyhole(&alpha.storage, "alpha")
            .await
            .expect("destroy is idempotent");

        let listed = engine
            .handle(&alpha, request(Operation::List, "", json!({})))
            .await;
        assert_eq!(
            listed,
            Err(Error::not_found()),
            "alpha's cubbyhole is empty"
        );
        let kept = engine
            .handle(&alphabet, request(Operation::Read, "a", json!({})))
            .await
            .expect("read");
        assert_eq!(
            kept.data,
            Some(object(json!({"v": 3}))),
            "a token whose id shares a prefix keeps its data"
        );

        for id in ["", "al/pha"] {
            assert!(
                matches!(
                    destroy_cubbyhole(&alpha.storage, id).await,
                    Err(Error::InvalidRequest(_))
                ),
                "{id:?}"
            );
        }
        let kept = engine
            .handle(&alphabet, request(Operation::Read, "a", json!({})))
            .await
            .expect("read");
        assert_eq!(
            kept.data,
            Some(object(json!({"v": 3}))),
            "a refused id touches nothing"
        );
    }

    #[tokio::test]
    async fn cubbyhole_validates_like_kv_v1() {
        let ctx = context_for(Some("alpha")).await;
        let engine = CubbyholeEngine;
        let empty = engine
            .handle(&ctx, request(Operation::Create, "k", json!({})))
            .await;
        assert_eq!(empty, Err(Error::invalid("missing data fields")));
        let patch = engine
            .handle(&ctx, request(Operation::Patch, "k", json!({"a": 1})))
            .await;
        assert!(matches!(patch, Err(Error::UnsupportedOperation(_))));
    }
}
