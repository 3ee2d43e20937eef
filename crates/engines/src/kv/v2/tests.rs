//! KV v2 driven through `handle` on in-memory storage, with `now` set by each test.

use std::sync::Arc;

use serde_json::{json, Value};
use time::Duration;
use ward_core::barrier::{Barrier, Key};
use ward_storage::fault::FaultInjector;
use ward_storage::InMemory;

use super::*;
use crate::testing::{context, request, Mount, T0};

const T0_TEXT: &str = "2024-05-01T12:00:00.123456789Z";

struct Harness {
    engine: KvV2Engine,
    ctx: EngineContext,
}

impl Harness {
    async fn new() -> Self {
        Harness {
            engine: KvV2Engine::new(),
            ctx: context(Mount::KvV2).await,
        }
    }

    /// Moves the clock to `seconds` after T0.
    fn at(&mut self, seconds: i64) {
        self.ctx.now = T0 + Duration::seconds(seconds);
    }

    async fn call(
        &self,
        operation: Operation,
        path: &str,
        body: Value,
    ) -> Result<EngineResponse, Error> {
        self.engine
            .handle(&self.ctx, request(operation, path, body))
            .await
    }

    /// The `data` of a successful call.
    async fn data(&self, operation: Operation, path: &str, body: Value) -> Value {
        let response = self
            .call(operation, path, body)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e:?}"));
        Value::Object(response.data.unwrap_or_else(|| panic!("{path}: no data")))
    }

    /// A call that answers 204.
    async fn no_content(&self, operation: Operation, path: &str, body: Value) {
        let response = self
            .call(operation, path, body)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e:?}"));
        assert_eq!(response, EngineResponse::empty(), "{path} answers 204");
    }

    async fn put(&self, path: &str, data: Value) -> Value {
        self.data(
            Operation::Update,
            &format!("data/{path}"),
            json!({ "data": data }),
        )
        .await
    }

    /// The `data` of a 404 that carries one (a deleted or destroyed version).
    async fn not_found_body(&self, operation: Operation, path: &str, body: Value) -> Value {
        match self.call(operation, path, body).await {
            Err(Error::NotFound { data: Some(data) }) => Value::Object(data),
            other => panic!("{path}: expected a 404 with a body, got {other:?}"),
        }
    }

    async fn storage_has(&self, key: &str) -> bool {
        self.ctx
            .storage
            .get(key)
            .await
            .expect("storage read")
            .is_some()
    }
}

fn stamp(seconds: i64) -> String {
    Stamp::new(T0 + Duration::seconds(seconds)).rfc3339_nano()
}

fn version_metadata(version: u64, created: i64, deletion: Option<i64>, destroyed: bool) -> Value {
    json!({
        "created_time": stamp(created),
        "custom_metadata": null,
        "deletion_time": deletion.map(stamp).unwrap_or_default(),
        "destroyed": destroyed,
        "version": version,
    })
}

fn invalid(message: &str) -> Result<EngineResponse, Error> {
    Err(Error::invalid(message))
}

// ---------------------------------------------------------------------------------------
// config

#[tokio::test]
async fn config_reads_defaults_and_round_trips() {
    let kv = Harness::new().await;
    assert_eq!(
        kv.data(Operation::Read, "config", json!({})).await,
        json!({"cas_required": false, "delete_version_after": "0s", "max_versions": 0})
    );
    kv.no_content(
        Operation::Update,
        "config",
        json!({"max_versions": "5", "cas_required": true, "delete_version_after": "1h"}),
    )
    .await;
    assert_eq!(
        kv.data(Operation::Read, "config", json!({})).await,
        json!({"cas_required": true, "delete_version_after": "1h0m0s", "max_versions": 5})
    );

    kv.no_content(Operation::Update, "config", json!({})).await;
    kv.no_content(
        Operation::Update,
        "config",
        json!({"delete_version_after": "-30s"}),
    )
    .await;
    assert_eq!(
        kv.data(Operation::Read, "config", json!({})).await,
        json!({"cas_required": true, "delete_version_after": "-1s", "max_versions": 5}),
        "an empty write changes nothing; a negative duration means disabled"
    );
    kv.no_content(
        Operation::Update,
        "config",
        json!({"delete_version_after": 0, "max_versions": 0}),
    )
    .await;
    assert_eq!(
        kv.data(Operation::Read, "config", json!({})).await,
        json!({"cas_required": true, "delete_version_after": "0s", "max_versions": 0})
    );
}

#[tokio::test]
async fn config_rejects_malformed_fields() {
    let kv = Harness::new().await;
    for body in [
        json!({"max_versions": "abc"}),
        json!({"max_versions": -1}),
        json!({"max_versions": [1]}),
        json!({"cas_required": "maybe"}),
        json!({"delete_version_after": "forever"}),
        json!({"delete_version_after": {"h": 1}}),
    ] {
        let result = kv.call(Operation::Update, "config", body.clone()).await;
        assert!(
            matches!(result, Err(Error::InvalidRequest(_))),
            "{body}: {result:?}"
        );
    }
    assert_eq!(
        kv.data(Operation::Read, "config", json!({})).await,
        json!({"cas_required": false, "delete_version_after": "0s", "max_versions": 0}),
        "a refused write changes nothing"
    );
}

// ---------------------------------------------------------------------------------------
// data

#[tokio::test]
async fn write_returns_the_new_versions_metadata_and_read_returns_data_and_metadata() {
    let mut kv = Harness::new().await;
    let written = kv
        .put("app/db", json!({"password": "one", "port": 5432}))
        .await;
    assert_eq!(
        written,
        json!({"created_time": T0_TEXT, "custom_metadata": null, "deletion_time": "", "destroyed": false, "version": 1})
    );

    kv.at(1);
    assert_eq!(
        kv.put("app/db", json!({"password": "two"})).await,
        version_metadata(2, 1, None, false)
    );

    kv.at(2);
    assert_eq!(
        kv.data(Operation::Read, "data/app/db", json!({})).await,
        json!({"data": {"password": "two"}, "metadata": version_metadata(2, 1, None, false)})
    );
    for version in [json!(1), json!("1")] {
        assert_eq!(
            kv.data(
                Operation::Read,
                "data/app/db",
                json!({ "version": version })
            )
            .await,
            json!({"data": {"password": "one", "port": 5432}, "metadata": version_metadata(1, 0, None, false)})
        );
    }
    assert_eq!(
        kv.data(Operation::Read, "data/app/db", json!({"version": "0"}))
            .await["metadata"]["version"],
        json!(2),
        "version 0 means the latest"
    );
}

#[tokio::test]
async fn missing_secrets_and_versions_are_plain_404s() {
    let kv = Harness::new().await;
    assert_eq!(
        kv.call(Operation::Read, "data/nope", json!({})).await,
        Err(Error::not_found())
    );
    kv.put("k", json!({"a": 1})).await;
    assert_eq!(
        kv.call(Operation::Read, "data/k", json!({"version": 7}))
            .await,
        Err(Error::not_found())
    );
    assert!(matches!(
        kv.call(Operation::Read, "data/k", json!({"version": "abc"}))
            .await,
        Err(Error::InvalidRequest(_))
    ));
}

#[tokio::test]
async fn malformed_writes_are_400() {
    let kv = Harness::new().await;
    assert_eq!(
        kv.call(Operation::Update, "data/k", json!({})).await,
        invalid("no data provided")
    );
    assert_eq!(
        kv.call(Operation::Update, "data/k", json!({"data": null}))
            .await,
        invalid("no data provided")
    );
    for data in [json!("text"), json!([1, 2]), json!(3)] {
        let result = kv
            .call(Operation::Update, "data/k", json!({ "data": data }))
            .await;
        assert_eq!(result, invalid("field \"data\" must be a map"), "{data}");
    }
    let result = kv
        .call(
            Operation::Update,
            "data/k",
            json!({"data": {"a": 1}, "options": "cas=0"}),
        )
        .await;
    assert_eq!(result, invalid("field \"options\" must be a map"));
    assert_eq!(
        kv.call(Operation::Read, "data/k", json!({})).await,
        Err(Error::not_found()),
        "nothing was written"
    );
}

#[tokio::test]
async fn check_and_set_on_writes() {
    let kv = Harness::new().await;
    let cas = |cas: Value| json!({"data": {"v": 1}, "options": { "cas": cas }});

    assert_eq!(
        kv.data(Operation::Create, "data/k", cas(json!(0))).await["version"],
        json!(1),
        "cas 0: create only"
    );
    assert_eq!(
        kv.call(Operation::Update, "data/k", cas(json!(0))).await,
        invalid("check-and-set parameter did not match the current version")
    );
    assert_eq!(
        kv.call(Operation::Update, "data/k", cas(json!(5))).await,
        invalid("check-and-set parameter did not match the current version")
    );
    for bad in [json!("abc"), json!([1]), json!({"v": 1}), json!(1.5)] {
        assert_eq!(
            kv.call(Operation::Update, "data/k", cas(bad.clone())).await,
            invalid("error parsing check-and-set parameter"),
            "{bad}"
        );
    }
    assert_eq!(
        kv.data(Operation::Update, "data/k", cas(json!(1))).await["version"],
        json!(2)
    );
    assert_eq!(
        kv.data(Operation::Update, "data/k", cas(json!("2"))).await["version"],
        json!(3),
        "cas as a string"
    );
    assert_eq!(
        kv.data(Operation::Update, "data/k", cas(json!(3.0))).await["version"],
        json!(4),
        "cas as a float"
    );
    assert_eq!(
        kv.data(Operation::Update, "data/k", json!({"data": {"v": 1}}))
            .await["version"],
        json!(5)
    );
}

#[tokio::test]
async fn cas_required_by_the_mount_or_the_key() {
    let kv = Harness::new().await;
    kv.no_content(Operation::Update, "config", json!({"cas_required": true}))
        .await;
    assert_eq!(
        kv.call(Operation::Update, "data/k", json!({"data": {"v": 1}}))
            .await,
        invalid("check-and-set parameter required for this call")
    );
    kv.data(
        Operation::Update,
        "data/k",
        json!({"data": {"v": 1}, "options": {"cas": 0}}),
    )
    .await;
    kv.no_content(Operation::Update, "config", json!({"cas_required": false}))
        .await;
    kv.data(Operation::Update, "data/k", json!({"data": {"v": 2}}))
        .await;

    kv.no_content(
        Operation::Update,
        "metadata/locked",
        json!({"cas_required": true}),
    )
    .await;
    assert_eq!(
        kv.call(Operation::Update, "data/locked", json!({"data": {"v": 1}}))
            .await,
        invalid("check-and-set parameter required for this call")
    );
    assert_eq!(
        kv.call(
            Operation::Patch,
            "data/locked",
            json!({"data": {"v": 1}, "options": {"cas": 0}})
        )
        .await,
        Err(Error::not_found()),
        "a patch of a key without versions is a 404"
    );
    kv.data(
        Operation::Update,
        "data/locked",
        json!({"data": {"v": 1}, "options": {"cas": 0}}),
    )
    .await;
    assert_eq!(
        kv.call(Operation::Patch, "data/locked", json!({"data": {"v": 2}}))
            .await,
        invalid("check-and-set parameter required for this call")
    );
    kv.data(
        Operation::Patch,
        "data/locked",
        json!({"data": {"v": 2}, "options": {"cas": 1}}),
    )
    .await;
}

#[tokio::test]
async fn patch_merges_into_the_current_version() {
    let mut kv = Harness::new().await;
    kv.put(
        "k",
        json!({"a": 1, "b": {"c": 2, "d": 3}, "e": 4, "list": [1, 2]}),
    )
    .await;
    kv.at(5);
    let patched = kv
        .data(
            Operation::Patch,
            "data/k",
            json!({"data": {"b": {"c": null, "x": 5}, "e": null, "f": "new", "list": [3]}}),
        )
        .await;
    assert_eq!(patched, version_metadata(2, 5, None, false));
    assert_eq!(
        kv.data(Operation::Read, "data/k", json!({})).await["data"],
        json!({"a": 1, "b": {"d": 3, "x": 5}, "f": "new", "list": [3]}),
        "null removes a key, objects merge, anything else replaces"
    );
    assert_eq!(
        kv.data(Operation::Read, "data/k", json!({"version": 1}))
            .await["data"],
        json!({"a": 1, "b": {"c": 2, "d": 3}, "e": 4, "list": [1, 2]}),
        "the old version is untouched"
    );

    assert_eq!(
        kv.call(Operation::Patch, "data/k", json!({})).await,
        invalid("no data provided")
    );
    assert_eq!(
        kv.call(Operation::Patch, "data/k", json!({"data": "x"}))
            .await,
        invalid("field \"data\" must be a map")
    );
    assert_eq!(
        kv.call(
            Operation::Patch,
            "data/k",
            json!({"data": {"a": 2}, "options": {"cas": 1}})
        )
        .await,
        invalid("check-and-set parameter did not match the current version")
    );
    assert_eq!(
        kv.call(
            Operation::Patch,
            "data/k",
            json!({"data": {"a": 2}, "options": {"cas": "abc"}})
        )
        .await,
        invalid("error parsing check-and-set parameter")
    );
    assert_eq!(
        kv.call(Operation::Patch, "data/missing", json!({"data": {"a": 1}}))
            .await,
        Err(Error::not_found())
    );
}

#[tokio::test]
async fn patch_of_a_deleted_or_destroyed_version_is_a_404_with_its_metadata() {
    let mut kv = Harness::new().await;
    kv.put("k", json!({"a": 1})).await;
    kv.at(10);
    kv.no_content(Operation::Delete, "data/k", json!({})).await;
    assert_eq!(
        kv.not_found_body(Operation::Patch, "data/k", json!({"data": {"a": 2}}))
            .await,
        version_metadata(1, 0, Some(10), false)
    );
    kv.no_content(Operation::Update, "destroy/k", json!({"versions": [1]}))
        .await;
    assert_eq!(
        kv.not_found_body(Operation::Patch, "data/k", json!({"data": {"a": 2}}))
            .await,
        version_metadata(1, 0, Some(10), true)
    );
}

// ---------------------------------------------------------------------------------------
// delete, undelete, destroy

#[tokio::test]
async fn delete_undelete_destroy_interplay() {
    let mut kv = Harness::new().await;
    for (second, value) in [(0, "one"), (1, "two"), (2, "three")] {
        kv.at(second);
        kv.put("k", json!({ "v": value })).await;
    }

    kv.at(10);
    kv.no_content(Operation::Delete, "data/k", json!({})).await;
    assert_eq!(
        kv.not_found_body(Operation::Read, "data/k", json!({}))
            .await,
        json!({"data": null, "metadata": version_metadata(3, 2, Some(10), false)}),
        "a soft-deleted latest version is a 404 that shows its metadata"
    );
    assert_eq!(
        kv.data(Operation::Read, "data/k", json!({"version": 2}))
            .await["data"],
        json!({"v": "two"})
    );

    kv.at(11);
    kv.no_content(Operation::Delete, "data/k", json!({})).await;
    assert_eq!(
        kv.not_found_body(Operation::Read, "data/k", json!({}))
            .await["metadata"]["deletion_time"],
        json!(stamp(10)),
        "deleting a deleted version keeps its first deletion time"
    );

    kv.no_content(
        Operation::Update,
        "delete/k",
        json!({"versions": [1, 2, 99]}),
    )
    .await;
    assert_eq!(
        kv.not_found_body(Operation::Read, "data/k", json!({"version": 1}))
            .await,
        json!({"data": null, "metadata": version_metadata(1, 0, Some(11), false)})
    );

    kv.at(12);
    kv.no_content(Operation::Update, "undelete/k", json!({"versions": [1, 3]}))
        .await;
    assert_eq!(
        kv.data(Operation::Read, "data/k", json!({})).await,
        json!({"data": {"v": "three"}, "metadata": version_metadata(3, 2, None, false)})
    );
    assert_eq!(
        kv.data(Operation::Read, "data/k", json!({"version": 1}))
            .await["data"],
        json!({"v": "one"})
    );
    assert!(matches!(
        kv.call(Operation::Read, "data/k", json!({"version": 2}))
            .await,
        Err(Error::NotFound { data: Some(_) })
    ));

    kv.no_content(Operation::Update, "destroy/k", json!({"versions": [3]}))
        .await;
    assert_eq!(
        kv.not_found_body(Operation::Read, "data/k", json!({}))
            .await,
        json!({"data": null, "metadata": version_metadata(3, 2, None, true)})
    );
    assert!(
        !kv.storage_has(&model::version_key("k", 3)).await,
        "destroyed data is gone from storage"
    );
    assert!(kv.storage_has(&model::version_key("k", 1)).await);

    kv.no_content(Operation::Update, "undelete/k", json!({"versions": [3]}))
        .await;
    kv.no_content(Operation::Update, "delete/k", json!({"versions": [3]}))
        .await;
    assert_eq!(
        kv.not_found_body(Operation::Read, "data/k", json!({}))
            .await["metadata"],
        version_metadata(3, 2, None, true),
        "a destroyed version can be neither undeleted nor deleted"
    );
    kv.no_content(Operation::Delete, "data/k", json!({})).await;

    let versions = kv.data(Operation::Read, "metadata/k", json!({})).await["versions"].clone();
    assert_eq!(
        versions,
        json!({
            "1": {"created_time": stamp(0), "deletion_time": "", "destroyed": false},
            "2": {"created_time": stamp(1), "deletion_time": stamp(11), "destroyed": false},
            "3": {"created_time": stamp(2), "deletion_time": "", "destroyed": true},
        })
    );

    kv.at(13);
    assert_eq!(
        kv.put("k", json!({"v": "four"})).await["version"],
        json!(4),
        "a new version after a destroy"
    );
}

#[tokio::test]
async fn version_lists_are_parsed_like_vault() {
    let kv = Harness::new().await;
    for _ in 0..3 {
        kv.put("k", json!({"v": 1})).await;
    }
    assert_eq!(
        kv.call(Operation::Update, "delete/k", json!({})).await,
        invalid("No version number provided")
    );
    assert_eq!(
        kv.call(Operation::Update, "undelete/k", json!({"versions": []}))
            .await,
        invalid("No version number provided")
    );
    assert_eq!(
        kv.call(Operation::Update, "destroy/k", json!({})).await,
        invalid("no version number provided")
    );
    for versions in [
        json!("abc"),
        json!(["a"]),
        json!({"1": true}),
        json!([1.5]),
        json!([[1]]),
        json!(true),
    ] {
        for endpoint in ["delete/k", "undelete/k", "destroy/k"] {
            let result = kv
                .call(Operation::Update, endpoint, json!({ "versions": versions }))
                .await;
            assert_eq!(
                result,
                invalid("field \"versions\" must be a list of integers"),
                "{endpoint} {versions}"
            );
        }
    }
    kv.no_content(Operation::Update, "delete/k", json!({"versions": "1, 2"}))
        .await;
    kv.no_content(Operation::Update, "delete/k", json!({"versions": ["3"]}))
        .await;
    for version in 1..=3 {
        assert!(matches!(
            kv.call(Operation::Read, "data/k", json!({ "version": version }))
                .await,
            Err(Error::NotFound { data: Some(_) })
        ));
    }
    kv.no_content(Operation::Update, "undelete/k", json!({"versions": 2}))
        .await;
    kv.data(Operation::Read, "data/k", json!({"version": 2}))
        .await;

    kv.no_content(
        Operation::Update,
        "delete/missing",
        json!({"versions": [1]}),
    )
    .await;
    kv.no_content(
        Operation::Update,
        "destroy/missing",
        json!({"versions": [1]}),
    )
    .await;
    kv.no_content(Operation::Delete, "data/missing", json!({}))
        .await;
}

// ---------------------------------------------------------------------------------------
// metadata

#[tokio::test]
async fn metadata_read_shows_every_field() {
    let mut kv = Harness::new().await;
    kv.put("k", json!({"v": 1})).await;
    kv.at(60);
    kv.put("k", json!({"v": 2})).await;
    kv.at(120);
    kv.no_content(
        Operation::Update,
        "metadata/k",
        json!({"max_versions": 7, "delete_version_after": "3h", "custom_metadata": {"owner": "ops", "tier": 1}}),
    )
    .await;
    assert_eq!(
        kv.data(Operation::Read, "metadata/k", json!({})).await,
        json!({
            "cas_required": false,
            "created_time": T0_TEXT,
            "current_version": 2,
            "custom_metadata": {"owner": "ops", "tier": "1"},
            "delete_version_after": "3h0m0s",
            "max_versions": 7,
            "oldest_version": 0,
            "updated_time": stamp(60),
            "versions": {
                "1": {"created_time": T0_TEXT, "deletion_time": "", "destroyed": false},
                "2": {"created_time": stamp(60), "deletion_time": "", "destroyed": false},
            },
        })
    );
    assert_eq!(
        kv.data(Operation::Read, "data/k", json!({})).await["metadata"]["custom_metadata"],
        json!({"owner": "ops", "tier": "1"}),
        "custom metadata shows on data reads"
    );
    assert_eq!(
        kv.call(Operation::Read, "metadata/nope", json!({})).await,
        Err(Error::not_found())
    );
}

#[tokio::test]
async fn metadata_can_be_created_before_any_data() {
    let kv = Harness::new().await;
    let probe = request(Operation::Update, "metadata/new", json!({}));
    assert_eq!(kv.engine.exists(&kv.ctx, &probe).await, Ok(Some(false)));
    kv.no_content(Operation::Update, "metadata/new", json!({}))
        .await;
    assert_eq!(
        kv.engine.exists(&kv.ctx, &probe).await,
        Ok(Some(false)),
        "a write with no fields creates nothing"
    );

    kv.no_content(
        Operation::Create,
        "metadata/new",
        json!({"custom_metadata": {"owner": "ops"}}),
    )
    .await;
    assert_eq!(kv.engine.exists(&kv.ctx, &probe).await, Ok(Some(true)));
    assert_eq!(
        kv.engine
            .exists(&kv.ctx, &request(Operation::Update, "data/new", json!({})))
            .await,
        Ok(Some(true))
    );
    let meta = kv.data(Operation::Read, "metadata/new", json!({})).await;
    assert_eq!(meta["current_version"], json!(0));
    assert_eq!(meta["versions"], json!({}));
    assert_eq!(meta["created_time"], json!(T0_TEXT));
    assert_eq!(
        kv.call(Operation::Read, "data/new", json!({})).await,
        Err(Error::not_found())
    );

    let written = kv
        .data(
            Operation::Update,
            "data/new",
            json!({"data": {"a": 1}, "options": {"cas": 0}}),
        )
        .await;
    assert_eq!(written["version"], json!(1));
    assert_eq!(written["custom_metadata"], json!({"owner": "ops"}));

    assert_eq!(
        kv.call(Operation::Update, "metadata/", json!({"max_versions": 1}))
            .await,
        invalid("missing path")
    );
    assert!(matches!(
        kv.call(
            Operation::Update,
            "metadata/dir/",
            json!({"max_versions": 1})
        )
        .await,
        Err(Error::InvalidRequest(_))
    ));
}

#[tokio::test]
async fn custom_metadata_limits() {
    let kv = Harness::new().await;
    let at_limit: serde_json::Map<String, Value> = (0..64)
        .map(|i| (format!("{i:0>128}"), Value::from("v".repeat(512))))
        .collect();
    kv.no_content(
        Operation::Update,
        "metadata/k",
        json!({ "custom_metadata": at_limit }),
    )
    .await;

    let mut over: serde_json::Map<String, Value> = (0..65)
        .map(|i| (format!("k{i}"), Value::from("v")))
        .collect();
    assert_eq!(
        kv.call(
            Operation::Update,
            "metadata/k",
            json!({ "custom_metadata": over.clone() })
        )
        .await,
        invalid(
            "custom_metadata validation failed: payload must contain at most 64 keys, provided 65"
        )
    );
    over.clear();

    let long_key = "k".repeat(129);
    let cases = [
        (
            json!({ long_key.clone(): "v" }),
            format!("custom_metadata validation failed: length of key \"{long_key}\" is 129 but must be 0 < len(key) <= 128"),
        ),
        (
            json!({"k": "v".repeat(513)}),
            "custom_metadata validation failed: length of value for key \"k\" is 513 but must be 0 < len(value) <= 512"
                .to_string(),
        ),
        (
            json!({"k": ""}),
            "custom_metadata validation failed: length of value for key \"k\" is 0 but must be 0 < len(value) <= 512"
                .to_string(),
        ),
        (
            json!({"k": "a\u{7}b"}),
            "custom_metadata validation failed: value for key \"k\" contains unprintable characters".to_string(),
        ),
        (
            json!({"k": {"nested": true}}),
            "custom_metadata validation failed: value for key \"k\" must be a string".to_string(),
        ),
    ];
    for (custom_metadata, message) in cases {
        assert_eq!(
            kv.call(
                Operation::Update,
                "metadata/k",
                json!({ "custom_metadata": custom_metadata })
            )
            .await,
            invalid(&message)
        );
    }
    assert_eq!(
        kv.call(
            Operation::Update,
            "metadata/k",
            json!({"custom_metadata": "owner=ops"})
        )
        .await,
        invalid("field \"custom_metadata\" must be a map")
    );
    assert_eq!(
        kv.data(Operation::Read, "metadata/k", json!({})).await["custom_metadata"]
            .as_object()
            .map(|m| m.len()),
        Some(64),
        "refused writes left the metadata as it was"
    );
}

#[tokio::test]
async fn metadata_write_keeps_unnamed_fields_and_replaces_custom_metadata() {
    let kv = Harness::new().await;
    kv.no_content(
        Operation::Update,
        "metadata/k",
        json!({"max_versions": 3, "cas_required": true, "custom_metadata": {"a": "1", "b": "2"}}),
    )
    .await;
    kv.no_content(
        Operation::Update,
        "metadata/k",
        json!({"custom_metadata": {"c": "3"}}),
    )
    .await;
    let meta = kv.data(Operation::Read, "metadata/k", json!({})).await;
    assert_eq!(meta["max_versions"], json!(3));
    assert_eq!(meta["cas_required"], json!(true));
    assert_eq!(meta["custom_metadata"], json!({"c": "3"}));

    for body in [
        json!({"max_versions": -1}),
        json!({"cas_required": "maybe"}),
        json!({"delete_version_after": "-1h"}),
        json!({"delete_version_after": -5}),
    ] {
        let result = kv.call(Operation::Update, "metadata/k", body.clone()).await;
        assert!(
            matches!(result, Err(Error::InvalidRequest(_))),
            "{body}: {result:?}"
        );
    }
}

#[tokio::test]
async fn metadata_patch_merges_and_warns() {
    let kv = Harness::new().await;
    assert_eq!(
        kv.call(Operation::Patch, "metadata/k", json!({"max_versions": 2}))
            .await,
        Err(Error::not_found()),
        "patching needs existing metadata"
    );
    kv.no_content(
        Operation::Update,
        "metadata/k",
        json!({"max_versions": 3, "delete_version_after": "1h", "custom_metadata": {"a": "1", "b": "2"}}),
    )
    .await;
    kv.no_content(
        Operation::Patch,
        "metadata/k",
        json!({"max_versions": null, "cas_required": true, "custom_metadata": {"a": null, "c": "3"}}),
    )
    .await;
    let meta = kv.data(Operation::Read, "metadata/k", json!({})).await;
    assert_eq!(
        meta["max_versions"],
        json!(0),
        "null returns a field to its default"
    );
    assert_eq!(meta["cas_required"], json!(true));
    assert_eq!(
        meta["delete_version_after"],
        json!("1h0m0s"),
        "fields left out are kept"
    );
    assert_eq!(meta["custom_metadata"], json!({"b": "2", "c": "3"}));

    kv.no_content(
        Operation::Patch,
        "metadata/k",
        json!({"custom_metadata": null}),
    )
    .await;
    assert_eq!(
        kv.data(Operation::Read, "metadata/k", json!({})).await["custom_metadata"],
        json!(null)
    );

    let too_many: serde_json::Map<String, Value> = (0..65)
        .map(|i| (format!("k{i}"), Value::from("v")))
        .collect();
    assert!(matches!(
        kv.call(
            Operation::Patch,
            "metadata/k",
            json!({ "custom_metadata": too_many })
        )
        .await,
        Err(Error::InvalidRequest(_))
    ));

    kv.no_content(Operation::Update, "config", json!({"cas_required": true}))
        .await;
    let warned = kv
        .call(
            Operation::Patch,
            "metadata/k",
            json!({"cas_required": false}),
        )
        .await
        .expect("patch");
    assert_eq!(
        warned.warnings,
        vec!["\"cas_required\" set to false, but is mandated by backend config. This value will be ignored.".to_string()]
    );
    let warned = kv
        .call(
            Operation::Update,
            "metadata/k",
            json!({"cas_required": false}),
        )
        .await
        .expect("write");
    assert_eq!(warned.warnings.len(), 1, "a metadata write warns too");
}

#[tokio::test]
async fn metadata_delete_removes_every_version_for_good() {
    let kv = Harness::new().await;
    for _ in 0..3 {
        kv.put("k", json!({"v": 1})).await;
    }
    kv.put("k/1", json!({"nested": true})).await;
    kv.no_content(Operation::Delete, "metadata/k", json!({}))
        .await;

    assert_eq!(
        kv.call(Operation::Read, "metadata/k", json!({})).await,
        Err(Error::not_found())
    );
    assert_eq!(
        kv.call(Operation::Read, "data/k", json!({"version": 1}))
            .await,
        Err(Error::not_found())
    );
    let left = kv
        .ctx
        .storage
        .scan(&model::versions_prefix("k"), "", 100)
        .await
        .expect("scan");
    assert!(left.is_empty(), "no version data is left: {left:?}");
    assert_eq!(
        kv.data(Operation::Read, "data/k/1", json!({})).await["data"],
        json!({"nested": true}),
        "a key below is another secret"
    );
    kv.no_content(Operation::Delete, "metadata/k", json!({}))
        .await;
    assert_eq!(
        kv.put("k", json!({"v": 2})).await["version"],
        json!(1),
        "the key starts over"
    );
}

#[tokio::test]
async fn list_metadata_folders_and_404_when_empty() {
    let kv = Harness::new().await;
    assert_eq!(
        kv.call(Operation::List, "metadata/", json!({})).await,
        Err(Error::not_found())
    );
    for key in ["b", "a", "dir/x", "dir/sub/y"] {
        kv.put(key, json!({"v": 1})).await;
    }
    kv.no_content(Operation::Update, "metadata/c", json!({"max_versions": 1}))
        .await;
    for root in ["metadata", "metadata/"] {
        assert_eq!(
            kv.data(Operation::List, root, json!({})).await,
            json!({"keys": ["a", "b", "c", "dir/"]})
        );
    }
    for folder in ["metadata/dir", "metadata/dir/"] {
        assert_eq!(
            kv.data(Operation::List, folder, json!({})).await,
            json!({"keys": ["sub/", "x"]})
        );
    }
    assert_eq!(
        kv.call(Operation::List, "metadata/nope/", json!({})).await,
        Err(Error::not_found())
    );

    kv.no_content(Operation::Delete, "data/a", json!({})).await;
    assert_eq!(
        kv.data(Operation::List, "metadata", json!({})).await["keys"][0],
        json!("a"),
        "a soft-deleted secret is still listed"
    );
    for path in ["data/", "data/dir/", "config"] {
        assert!(matches!(
            kv.call(Operation::List, path, json!({})).await,
            Err(Error::UnsupportedPath(_))
        ));
    }
}

// ---------------------------------------------------------------------------------------
// max_versions and delete_version_after

#[tokio::test]
async fn max_versions_prunes_the_oldest() {
    let kv = Harness::new().await;
    for _ in 0..10 {
        kv.put("default", json!({"v": 1})).await;
    }
    let meta = kv
        .data(Operation::Read, "metadata/default", json!({}))
        .await;
    assert_eq!(
        meta["oldest_version"],
        json!(1),
        "Vault's window starts moving at the tenth version"
    );
    assert_eq!(meta["versions"].as_object().map(|v| v.len()), Some(10));
    kv.put("default", json!({"v": 11})).await;
    let meta = kv
        .data(Operation::Read, "metadata/default", json!({}))
        .await;
    assert_eq!(meta["oldest_version"], json!(2));
    assert!(meta["versions"].get("1").is_none());
    assert_eq!(
        kv.call(Operation::Read, "data/default", json!({"version": 1}))
            .await,
        Err(Error::not_found())
    );
    assert!(
        !kv.storage_has(&model::version_key("default", 1)).await,
        "pruned data is removed"
    );

    kv.no_content(Operation::Update, "config", json!({"max_versions": 3}))
        .await;
    for v in 1..=5 {
        kv.put("k", json!({ "v": v })).await;
    }
    let meta = kv.data(Operation::Read, "metadata/k", json!({})).await;
    assert_eq!(meta["current_version"], json!(5));
    assert_eq!(meta["oldest_version"], json!(3));
    let kept: Vec<&String> = meta["versions"]
        .as_object()
        .map(|v| v.keys().collect())
        .unwrap_or_default();
    assert_eq!(kept, ["3", "4", "5"]);
    for v in 1..=2 {
        assert!(!kv.storage_has(&model::version_key("k", v)).await);
    }

    kv.no_content(Operation::Update, "metadata/k", json!({"max_versions": 1}))
        .await;
    kv.put("k", json!({"v": 6})).await;
    let meta = kv.data(Operation::Read, "metadata/k", json!({})).await;
    assert_eq!(
        meta["oldest_version"],
        json!(6),
        "the key's setting overrides the mount's"
    );
    assert_eq!(meta["versions"].as_object().map(|v| v.len()), Some(1));
    for v in 3..=5 {
        assert!(
            !kv.storage_has(&model::version_key("k", v)).await,
            "version {v}"
        );
    }
    assert_eq!(
        kv.data(Operation::Read, "data/k", json!({})).await["data"],
        json!({"v": 6})
    );
}

#[tokio::test]
async fn delete_version_after_expires_versions_as_time_passes() {
    let mut kv = Harness::new().await;
    kv.no_content(
        Operation::Update,
        "config",
        json!({"delete_version_after": "1h"}),
    )
    .await;
    assert_eq!(
        kv.put("k", json!({"v": 1})).await,
        version_metadata(1, 0, Some(3600), false)
    );

    kv.at(1800);
    assert_eq!(
        kv.data(Operation::Read, "data/k", json!({})).await,
        json!({"data": {"v": 1}, "metadata": version_metadata(1, 0, Some(3600), false)}),
        "before its deletion time the version reads, showing when it will go"
    );
    kv.at(3600);
    assert_eq!(
        kv.not_found_body(Operation::Read, "data/k", json!({}))
            .await,
        json!({"data": null, "metadata": version_metadata(1, 0, Some(3600), false)})
    );

    kv.no_content(
        Operation::Update,
        "metadata/k",
        json!({"delete_version_after": "10m"}),
    )
    .await;
    kv.at(4000);
    assert_eq!(
        kv.put("k", json!({"v": 2})).await["deletion_time"],
        json!(stamp(4600)),
        "the shorter of the mount's and the key's setting applies"
    );

    kv.at(7200);
    kv.no_content(Operation::Update, "undelete/k", json!({"versions": [1]}))
        .await;
    assert_eq!(
        kv.data(Operation::Read, "data/k", json!({"version": 1}))
            .await["metadata"]["deletion_time"],
        json!(stamp(7800)),
        "an undeleted version gets a fresh deletion time"
    );

    kv.no_content(
        Operation::Update,
        "config",
        json!({"delete_version_after": -1}),
    )
    .await;
    assert_eq!(
        kv.put("k", json!({"v": 3})).await["deletion_time"],
        json!(""),
        "a negative mount setting disables it on every key"
    );
    kv.at(1_000_000);
    kv.data(Operation::Read, "data/k", json!({})).await;
}

// ---------------------------------------------------------------------------------------
// subkeys

#[tokio::test]
async fn subkeys_hide_values_and_honour_depth_and_version() {
    let mut kv = Harness::new().await;
    kv.put(
        "k",
        json!({"a": 1, "b": {"c": {"d": "secret"}, "e": [1, 2]}, "f": {}}),
    )
    .await;
    let read = kv.data(Operation::Read, "subkeys/k", json!({})).await;
    assert_eq!(
        read,
        json!({
            "subkeys": {"a": null, "b": {"c": {"d": null}, "e": null}, "f": null},
            "metadata": version_metadata(1, 0, None, false),
        })
    );
    assert_eq!(
        kv.data(Operation::Read, "subkeys/k", json!({"depth": "1"}))
            .await["subkeys"],
        json!({"a": null, "b": null, "f": null})
    );
    assert_eq!(
        kv.data(Operation::Read, "subkeys/k", json!({"depth": 2}))
            .await["subkeys"],
        json!({"a": null, "b": {"c": null, "e": null}, "f": null})
    );

    kv.at(1);
    kv.put("k", json!({"only": "x"})).await;
    assert_eq!(
        kv.data(Operation::Read, "subkeys/k", json!({"version": 1}))
            .await["subkeys"]["a"],
        json!(null)
    );
    assert_eq!(
        kv.data(Operation::Read, "subkeys/k", json!({})).await["subkeys"],
        json!({"only": null})
    );

    kv.no_content(Operation::Delete, "data/k", json!({})).await;
    assert_eq!(
        kv.not_found_body(Operation::Read, "subkeys/k", json!({}))
            .await,
        json!({"subkeys": null, "metadata": version_metadata(2, 1, Some(1), false)})
    );
    assert_eq!(
        kv.call(Operation::Read, "subkeys/missing", json!({})).await,
        Err(Error::not_found())
    );
    assert!(matches!(
        kv.call(Operation::Read, "subkeys/k", json!({"depth": -1}))
            .await,
        Err(Error::InvalidRequest(_))
    ));
}

// ---------------------------------------------------------------------------------------
// routing, existence, atomicity

#[tokio::test]
async fn routing_rejects_unknown_paths_and_wrong_verbs() {
    let kv = Harness::new().await;
    for path in [
        "",
        "foo",
        "data",
        "data/",
        "data/dir/",
        "config/x",
        "secret/data/k",
        "versions/k",
    ] {
        let result = kv.call(Operation::Read, path, json!({})).await;
        assert!(
            matches!(result, Err(Error::UnsupportedPath(_))),
            "{path:?}: {result:?}"
        );
    }
    for (operation, path) in [
        (Operation::Delete, "config"),
        (Operation::Patch, "config"),
        (Operation::Read, "delete/k"),
        (Operation::Delete, "undelete/k"),
        (Operation::Read, "destroy/k"),
        (Operation::Update, "subkeys/k"),
        (Operation::Patch, "destroy/k"),
    ] {
        let result = kv.call(operation, path, json!({})).await;
        assert!(
            matches!(result, Err(Error::UnsupportedOperation(_))),
            "{operation:?} {path}: {result:?}"
        );
    }
}

#[tokio::test]
async fn exists_answers_for_data_and_metadata_only() {
    let kv = Harness::new().await;
    let exists = |path: &str| {
        let probe = request(Operation::Update, path, json!({}));
        let kv = &kv;
        async move { kv.engine.exists(&kv.ctx, &probe).await }
    };
    assert_eq!(exists("data/k").await, Ok(Some(false)));
    assert_eq!(exists("metadata/k").await, Ok(Some(false)));
    kv.put("k", json!({"v": 1})).await;
    assert_eq!(exists("data/k").await, Ok(Some(true)));
    assert_eq!(exists("metadata/k").await, Ok(Some(true)));
    for path in [
        "config",
        "delete/k",
        "undelete/k",
        "destroy/k",
        "subkeys/k",
        "nope",
    ] {
        assert_eq!(exists(path).await, Ok(None), "{path}");
    }
}

#[tokio::test]
async fn a_failed_write_leaves_nothing_behind() {
    let injector = Arc::new(FaultInjector::new(Arc::new(InMemory::new())));
    let barrier = Arc::new(Barrier::new(injector.clone()));
    barrier
        .initialize(Key::generate(), 0)
        .await
        .expect("initialize");
    let mut kv = Harness::new().await;
    kv.ctx.storage = StorageView::new(barrier, "logical/test/");

    kv.put("k", json!({"v": 1})).await;
    // Each change below is one storage write; a second write would fail.
    injector.fail_after_writes(1);
    kv.put("k", json!({"v": 2})).await;
    let failed = kv
        .call(Operation::Update, "data/k", json!({"data": {"v": 3}}))
        .await;
    assert!(matches!(failed, Err(Error::Unavailable(_))), "{failed:?}");
    injector.heal();

    let meta = kv.data(Operation::Read, "metadata/k", json!({})).await;
    assert_eq!(
        meta["current_version"],
        json!(2),
        "the metadata did not move"
    );
    assert!(
        !kv.storage_has(&model::version_key("k", 3)).await,
        "no orphaned version data"
    );

    injector.fail_after_writes(1);
    kv.no_content(Operation::Update, "destroy/k", json!({"versions": [1, 2]}))
        .await;
    injector.heal();
    assert!(!kv.storage_has(&model::version_key("k", 1)).await);
    assert!(!kv.storage_has(&model::version_key("k", 2)).await);

    injector.fail_after_writes(0);
    let failed = kv.call(Operation::Delete, "metadata/k", json!({})).await;
    assert!(matches!(failed, Err(Error::Unavailable(_))), "{failed:?}");
    injector.heal();
    assert_eq!(
        kv.data(Operation::Read, "metadata/k", json!({})).await["current_version"],
        json!(2)
    );
}

#[tokio::test]
async fn concurrent_cas_writes_admit_exactly_one() {
    let kv = Arc::new(Harness::new().await);
    kv.put("k", json!({"v": 0})).await;
    let mut tasks = Vec::new();
    for n in 0..8 {
        let kv = kv.clone();
        tasks.push(tokio::spawn(async move {
            kv.call(
                Operation::Update,
                "data/k",
                json!({"data": {"v": n}, "options": {"cas": 1}}),
            )
            .await
        }));
    }
    let mut n_ok = 0;
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => n_ok += 1,
            Err(e) => assert_eq!(
                e,
                Error::invalid("check-and-set parameter did not match the current version")
            ),
        }
    }
    assert_eq!(n_ok, 1);
    assert_eq!(
        kv.data(Operation::Read, "metadata/k", json!({})).await["current_version"],
        json!(2)
    );
}

// ---------------------------------------------------------------------------------------
// pure helpers

#[test]
fn merge_patch_follows_rfc_7386() {
    // The examples of RFC 7386, appendix A.
    for (target, patch, want) in [
        (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
        (
            json!({"a": "b"}),
            json!({"b": "c"}),
            json!({"a": "b", "b": "c"}),
        ),
        (json!({"a": "b"}), json!({"a": null}), json!({})),
        (
            json!({"a": "b", "b": "c"}),
            json!({"a": null}),
            json!({"b": "c"}),
        ),
        (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
        (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
        (
            json!({"a": {"b": "c"}}),
            json!({"a": {"b": "d", "c": null}}),
            json!({"a": {"b": "d"}}),
        ),
        (
            json!({"a": [{"b": "c"}]}),
            json!({"a": [1]}),
            json!({"a": [1]}),
        ),
        (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
        (json!({"a": "b"}), json!(["c"]), json!(["c"])),
        (json!({"a": "foo"}), json!(null), json!(null)),
        (json!({"a": "foo"}), json!("bar"), json!("bar")),
        (
            json!({"e": null}),
            json!({"a": 1}),
            json!({"e": null, "a": 1}),
        ),
        (
            json!([1, 2]),
            json!({"a": "b", "c": null}),
            json!({"a": "b"}),
        ),
        (
            json!({}),
            json!({"a": {"bb": {"ccc": null}}}),
            json!({"a": {"bb": {}}}),
        ),
    ] {
        let mut document = target.clone();
        merge_patch(&mut document, &patch);
        assert_eq!(document, want, "{target} + {patch}");
    }
}
