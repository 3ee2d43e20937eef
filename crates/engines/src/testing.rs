//! Test helpers shared by the engines' unit tests: a context on a fresh in-memory storage
//! view with an explicit `now`, and shorthand for requests and JSON objects.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use time::macros::datetime;
use time::OffsetDateTime;
use ward_core::engine::MountInfo;
use ward_core::{EngineContext, EngineRequest, Operation, StorageView};

/// The mount a test context is for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mount {
    KvV1,
    KvV2,
    Cubbyhole,
}

/// The time every test context starts at.
pub(crate) const T0: OffsetDateTime = datetime!(2024-05-01 12:00:00.123456789 UTC);

pub(crate) async fn context(mount: Mount) -> EngineContext {
    let storage = StorageView::for_tests().await.expect("in-memory storage");
    let (path, kind, version) = match mount {
        Mount::KvV1 => ("secret/", "kv", "1"),
        Mount::KvV2 => ("secret/", "kv", "2"),
        Mount::Cubbyhole => ("cubbyhole/", "cubbyhole", ""),
    };
    let mut options = BTreeMap::new();
    if !version.is_empty() {
        options.insert("version".to_string(), version.to_string());
    }
    EngineContext {
        storage,
        mount: MountInfo {
            path: path.into(),
            kind: kind.into(),
            accessor: format!("{kind}_12345678"),
            uuid: "00000000-0000-0000-0000-000000000000".into(),
            options,
            default_lease_ttl: 2_764_800,
            max_lease_ttl: 2_764_800,
        },
        now: T0,
        request_id: "test-request".into(),
        cubbyhole_id: None,
        entity_id: None,
        remote_address: None,
    }
}

/// A request whose body (or query) is the given JSON object.
pub(crate) fn request(operation: Operation, path: &str, body: Value) -> EngineRequest {
    EngineRequest::new(operation, path, object(body))
}

/// The map inside a JSON object literal.
pub(crate) fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not a JSON object: {other}"),
    }
}
