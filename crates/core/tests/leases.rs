//! Lease tests through `handle_request`, with no HTTP: registration, expiry on the core's
//! clock, renewal capped by the max TTL, revocation in its many forms, the token cascade,
//! failing engines (backoff, irrevocable, recovery), restart over the same storage, and
//! lease-count quotas.
//!
//! The engine here is a tiny one defined for these tests: it issues leased "credentials" at
//! `creds/<role>`, records every renewal and revocation in a book keyed by its mount path
//! (each test mounts at its own path, so tests run in parallel), and can be told to fail
//! revocations the way a database that is down would.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use async_trait::async_trait;
use serde_json::{json, Map, Value};
use ward_core::engine::{EngineRegistry, LeaseInfo, MountInfo, SecretSpec};
use ward_core::request::{Request, Response, Verb};
use ward_core::{
    Core, CoreConfig, Engine, EngineContext, EngineRequest, EngineResponse, Error, Operation,
};
use ward_storage::{InMemory, Physical};

#[derive(Default)]
struct Book {
    issued: u64,
    revoked: Vec<String>,
    renewed: Vec<(String, u64)>,
    fail_revocations: bool,
    failed_revocations: u64,
}

static BOOKS: LazyLock<Mutex<HashMap<String, Book>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

fn with_book<T>(mount: &str, f: impl FnOnce(&mut Book) -> T) -> T {
    let mut books = BOOKS.lock().unwrap_or_else(|p| p.into_inner());
    f(books.entry(mount.to_string()).or_default())
}

struct LeaseEngine {
    mount: String,
}

fn factory(mount: &MountInfo) -> Result<Arc<dyn Engine>, Error> {
    Ok(Arc::new(LeaseEngine {
        mount: mount.path.clone(),
    }))
}

fn number(data: &Map<String, Value>, key: &str) -> u64 {
    match data.get(key) {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

#[async_trait]
impl Engine for LeaseEngine {
    async fn handle(
        &self,
        _ctx: &EngineContext,
        request: EngineRequest,
    ) -> Result<EngineResponse, Error> {
        let segments: Vec<&str> = request.path.split('/').collect();
        match (request.op(), segments.as_slice()) {
            (Operation::Read | Operation::Update, ["creds", role]) => {
                let n = with_book(&self.mount, |b| {
                    b.issued += 1;
                    b.issued
                });
                let username = format!("{role}-{n}");
                let mut data = Map::new();
                data.insert("username".into(), json!(username));
                data.insert("password".into(), json!("not-a-real-secret"));
                Ok(EngineResponse {
                    data: Some(data),
                    secret: Some(SecretSpec {
                        ttl: number(&request.data, "ttl"),
                        max_ttl: number(&request.data, "max_ttl"),
                        renewable: request.data.get("renewable") != Some(&json!(false)),
                        internal: json!({ "username": username }),
                    }),
                    ..EngineResponse::default()
                })
            }
            _ => Err(Error::UnsupportedPath(request.path.clone())),
        }
    }

    async fn renew(
        &self,
        _ctx: &EngineContext,
        lease: &LeaseInfo,
    ) -> Result<EngineResponse, Error> {
        let username = lease.internal["username"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        with_book(&self.mount, |b| b.renewed.push((username, lease.ttl)));
        Ok(EngineResponse::empty())
    }

    async fn revoke(&self, _ctx: &EngineContext, lease: &LeaseInfo) -> Result<(), Error> {
        let username = lease.internal["username"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        with_book(&self.mount, |b| {
            if b.fail_revocations {
                b.failed_revocations += 1;
                Err(Error::invalid("connection refused: the database is down"))
            } else {
                b.revoked.push(username);
                Ok(())
            }
        })
    }
}

fn registry() -> EngineRegistry {
    let mut registry = ward_engines::registry();
    registry.register("leasetest", factory);
    registry
}

/// A dev core with the test engine mounted at `mount` (which names the test's book).
async fn setup(mount: &str) -> (Arc<Core>, String, Arc<dyn Physical>, Vec<Vec<u8>>) {
    let physical: Arc<dyn Physical> = Arc::new(InMemory::new());
    ward_testlog::init("core-leases");
    let core = Core::new(CoreConfig::default(), physical.clone(), registry());
    let init = core.dev_init(None).await.expect("dev init");
    let root = init.root_token.to_string();
    call(
        &core,
        Verb::Write,
        &format!("sys/mounts/{mount}"),
        &root,
        json!({"type": "leasetest"}),
    )
    .await
    .expect("mount");
    let keys = init.keys.iter().map(|k| k.to_vec()).collect();
    (core, root, physical, keys)
}

async fn call(
    core: &Core,
    verb: Verb,
    path: &str,
    token: &str,
    data: Value,
) -> Result<Response, Error> {
    core.handle_request(Request::new(verb, path).with_token(token).with_data(data))
        .await
}

fn data(response: &Response) -> &Map<String, Value> {
    response.data.as_ref().expect("response has data")
}

/// Reads credentials and returns the lease id and the username.
async fn issue(core: &Core, token: &str, path: &str, query: Value) -> (String, String, u64) {
    let response = call(core, Verb::Read, path, token, query)
        .await
        .expect("creds");
    let lease = response.lease.clone().expect("a leased secret");
    let username = data(&response)["username"]
        .as_str()
        .expect("username")
        .to_string();
    (lease.lease_id, username, lease.lease_duration)
}

async fn lookup(core: &Core, token: &str, lease_id: &str) -> Result<Map<String, Value>, Error> {
    let response = call(
        core,
        Verb::Write,
        "sys/leases/lookup",
        token,
        json!({"lease_id": lease_id}),
    )
    .await?;
    Ok(data(&response).clone())
}

fn revoked(mount: &str) -> Vec<String> {
    with_book(mount, |b| b.revoked.clone())
}

fn invalid_message(result: Result<impl std::fmt::Debug, Error>) -> String {
    match result {
        Err(Error::InvalidRequest(message)) => message,
        other => panic!("expected an invalid request, got {other:?}"),
    }
}

#[tokio::test]
async fn leases_expire_on_time_and_are_revoked_in_their_engine() {
    let (core, root, _, _) = setup("expiry/").await;
    let (lease_id, username, duration) =
        issue(&core, &root, "expiry/creds/ro", json!({"ttl": 60})).await;
    let random = lease_id
        .strip_prefix("expiry/creds/ro/")
        .expect("lease id = request path / random");
    assert_eq!(random.len(), 24);
    assert!(random.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(duration, 60);

    let looked_up = lookup(&core, &root, &lease_id).await.expect("lookup");
    assert_eq!(looked_up["id"], json!(lease_id));
    assert_eq!(looked_up["ttl"], json!(60));
    assert_eq!(looked_up["renewable"], json!(true));
    assert_eq!(looked_up["last_renewal"], Value::Null);

    assert_eq!(core.expire_leases().await.expect("sweep"), 0);
    core.clock().advance(59);
    assert_eq!(
        core.expire_leases().await.expect("sweep"),
        0,
        "not a second early"
    );
    assert!(revoked("expiry/").is_empty());
    core.clock().advance(1);
    assert_eq!(core.expire_leases().await.expect("sweep"), 1);
    assert_eq!(revoked("expiry/"), vec![username]);
    assert_eq!(
        invalid_message(lookup(&core, &root, &lease_id).await),
        "invalid lease"
    );
    assert_eq!(
        core.expire_leases().await.expect("sweep"),
        0,
        "revoked exactly once"
    );

    // Without a TTL from the engine, the mount's default applies (tuned here to 5 minutes).
    call(
        &core,
        Verb::Write,
        "sys/mounts/expiry/tune",
        &root,
        json!({"default_lease_ttl": "5m"}),
    )
    .await
    .expect("tune");
    let (_, _, duration) = issue(&core, &root, "expiry/creds/ro", json!({})).await;
    assert_eq!(duration, 300);
}

#[tokio::test]
async fn renewal_counts_from_now_and_never_passes_the_max_ttl() {
    let (core, root, _, _) = setup("renew/").await;
    let (lease_id, username, _) = issue(
        &core,
        &root,
        "renew/creds/ro",
        json!({"ttl": 60, "max_ttl": 300}),
    )
    .await;
    let issued_at = core.clock().unix();

    core.clock().advance(30);
    let renewed = call(
        &core,
        Verb::Write,
        "sys/leases/renew",
        &root,
        json!({"lease_id": lease_id, "increment": 100}),
    )
    .await
    .expect("renew");
    let lease = renewed.lease.expect("lease");
    assert_eq!(
        (
            lease.lease_id.as_str(),
            lease.lease_duration,
            lease.renewable
        ),
        (lease_id.as_str(), 100, true)
    );
    assert_eq!(
        with_book("renew/", |b| b.renewed.clone()),
        vec![(username, 100)],
        "the engine extends the secret"
    );
    let looked_up = lookup(&core, &root, &lease_id).await.expect("lookup");
    assert_eq!(
        looked_up["ttl"],
        json!(100),
        "the increment counts from now"
    );
    assert!(looked_up["last_renewal"].is_string());

    // CVE-2021-32923: whenever a renewal happens and whatever it asks for, the lease never
    // outlives issue time + max TTL.
    for (step, increment) in [(20, 1000), (50, 0), (40, 250), (70, 10_000), (30, 5)] {
        core.clock().advance(step);
        let now = core.clock().unix();
        let response = call(
            &core,
            Verb::Write,
            &format!("sys/leases/renew/{lease_id}"),
            &root,
            json!({"increment": increment}),
        )
        .await
        .expect("renew within the max");
        let duration = response.lease.expect("lease").lease_duration as i64;
        assert!(
            now + duration <= issued_at + 300,
            "renewed at {now} for {duration}s passes the max"
        );
        if now + (if increment > 0 { increment } else { 60 }) > issued_at + 300 {
            assert!(
                response
                    .warnings
                    .iter()
                    .any(|w| w.contains("exceeded the effective max_ttl") && w.contains("capped")),
                "{:?}",
                response.warnings
            );
        }
    }
    core.clock().advance(300);
    let late = call(
        &core,
        Verb::Write,
        "sys/renew",
        &root,
        json!({"lease_id": lease_id}),
    )
    .await;
    assert_eq!(invalid_message(late), "lease expired");

    // The mount's max, tuned down after issue, caps renewals too; past it renewal fails.
    let (lease_id, _, _) = issue(&core, &root, "renew/creds/ro", json!({"ttl": 600})).await;
    core.clock().advance(120);
    call(
        &core,
        Verb::Write,
        "sys/mounts/renew/tune",
        &root,
        json!({"max_lease_ttl": 100}),
    )
    .await
    .expect("tune");
    let past = call(
        &core,
        Verb::Write,
        "sys/leases/renew",
        &root,
        json!({"lease_id": lease_id}),
    )
    .await;
    assert_eq!(invalid_message(past), "past the max TTL, cannot renew");

    let (fixed, _, _) = issue(
        &core,
        &root,
        "renew/creds/ro",
        json!({"ttl": 60, "renewable": false}),
    )
    .await;
    let refused = call(
        &core,
        Verb::Write,
        "sys/leases/renew",
        &root,
        json!({"lease_id": fixed}),
    )
    .await;
    assert_eq!(invalid_message(refused), "lease is not renewable");
    let unknown = call(
        &core,
        Verb::Write,
        "sys/leases/renew",
        &root,
        json!({"lease_id": "renew/creds/ro/nope"}),
    )
    .await;
    assert_eq!(invalid_message(unknown), "lease not found");
    let missing = call(&core, Verb::Write, "sys/leases/renew", &root, json!({})).await;
    assert_eq!(invalid_message(missing), "lease_id must be specified");
}

#[tokio::test]
async fn revoke_revoke_prefix_list_and_legacy_paths() {
    let (core, root, _, _) = setup("revoke/").await;
    let mut a = Vec::new();
    for _ in 0..3 {
        a.push(issue(&core, &root, "revoke/creds/a", json!({"ttl": 600})).await);
    }
    let b1 = issue(&core, &root, "revoke/creds/b", json!({"ttl": 600})).await;
    let b2 = issue(&core, &root, "revoke/creds/b", json!({"ttl": 600})).await;

    let listed = call(
        &core,
        Verb::List,
        "sys/leases/lookup/revoke/creds/",
        &root,
        json!({}),
    )
    .await
    .expect("list");
    assert_eq!(data(&listed)["keys"], json!(["a/", "b/"]));
    let listed = call(
        &core,
        Verb::List,
        "sys/leases/lookup/revoke/creds/b",
        &root,
        json!({}),
    )
    .await
    .expect("list");
    assert_eq!(data(&listed)["keys"].as_array().map(Vec::len), Some(2));
    let empty = call(
        &core,
        Verb::List,
        "sys/leases/lookup/revoke/creds/zzz/",
        &root,
        json!({}),
    )
    .await;
    assert!(matches!(empty, Err(Error::NotFound { .. })), "{empty:?}");

    let response = call(
        &core,
        Verb::Write,
        &format!("sys/leases/revoke/{}", a[0].0),
        &root,
        json!({}),
    )
    .await
    .expect("revoke");
    assert!(response.is_empty(), "204");
    call(
        &core,
        Verb::Write,
        "sys/leases/revoke",
        &root,
        json!({"lease_id": a[1].0}),
    )
    .await
    .expect("revoke by body");
    call(
        &core,
        Verb::Write,
        &format!("sys/revoke/{}", b1.0),
        &root,
        json!({}),
    )
    .await
    .expect("legacy revoke");
    assert_eq!(
        revoked("revoke/"),
        vec![a[0].1.clone(), a[1].1.clone(), b1.1.clone()]
    );
    call(
        &core,
        Verb::Write,
        "sys/leases/revoke",
        &root,
        json!({"lease_id": a[0].0}),
    )
    .await
    .expect("revoking twice is fine");
    assert_eq!(revoked("revoke/").len(), 3, "the engine is not asked twice");

    call(
        &core,
        Verb::Write,
        "sys/leases/revoke-prefix/revoke/creds/a",
        &root,
        json!({}),
    )
    .await
    .expect("revoke-prefix");
    assert!(revoked("revoke/").contains(&a[2].1));
    assert!(
        lookup(&core, &root, &b2.0).await.is_ok(),
        "other prefixes untouched"
    );
    call(
        &core,
        Verb::Write,
        "sys/revoke-prefix/revoke/",
        &root,
        json!({}),
    )
    .await
    .expect("legacy revoke-prefix");
    assert!(revoked("revoke/").contains(&b2.1));
    let gone = call(
        &core,
        Verb::List,
        "sys/leases/lookup/revoke/",
        &root,
        json!({}),
    )
    .await;
    assert!(matches!(gone, Err(Error::NotFound { .. })));

    // The prefix forms need sudo.
    call(
        &core,
        Verb::Write,
        "sys/policies/acl/leases",
        &root,
        json!({"policy": r#"path "sys/leases/*" { capabilities = ["update", "list"] }"#}),
    )
    .await
    .expect("policy");
    let token = call(
        &core,
        Verb::Write,
        "auth/token/create",
        &root,
        json!({"policies": ["leases"]}),
    )
    .await
    .expect("token")
    .auth
    .expect("auth")
    .client_token;
    for (verb, path) in [
        (Verb::Write, "sys/leases/revoke-prefix/revoke/"),
        (Verb::Write, "sys/leases/revoke-force/revoke/"),
        (Verb::List, "sys/leases/lookup/revoke/"),
    ] {
        let denied = call(&core, verb, path, &token, json!({})).await;
        assert!(
            matches!(denied, Err(Error::PermissionDenied(_))),
            "{path}: {denied:?}"
        );
    }
}

#[tokio::test]
async fn revoke_force_drops_leases_the_engine_cannot_revoke() {
    let (core, root, _, _) = setup("force/").await;
    let (lease_id, _, _) = issue(&core, &root, "force/creds/x", json!({"ttl": 600})).await;
    with_book("force/", |b| b.fail_revocations = true);
    let failed = call(
        &core,
        Verb::Write,
        "sys/leases/revoke-prefix/force/",
        &root,
        json!({}),
    )
    .await;
    assert!(invalid_message(failed).contains("the database is down"));
    assert!(
        lookup(&core, &root, &lease_id).await.is_ok(),
        "kept for a retry"
    );
    let failed = call(
        &core,
        Verb::Write,
        "sys/leases/revoke",
        &root,
        json!({"lease_id": lease_id}),
    )
    .await;
    assert!(invalid_message(failed).contains("the database is down"));

    call(
        &core,
        Verb::Write,
        "sys/leases/revoke-force/force/",
        &root,
        json!({}),
    )
    .await
    .expect("revoke-force");
    assert!(
        lookup(&core, &root, &lease_id).await.is_err(),
        "dropped without the engine"
    );
    assert!(revoked("force/").is_empty());
}

#[tokio::test]
async fn revoking_a_token_revokes_the_leases_of_its_whole_tree() {
    let (core, root, _, _) = setup("tree/").await;
    let policy = r#"
path "tree/*" { capabilities = ["read"] }
path "auth/token/create" { capabilities = ["update"] }
"#;
    call(
        &core,
        Verb::Write,
        "sys/policies/acl/tree",
        &root,
        json!({"policy": policy}),
    )
    .await
    .expect("policy");
    let token = |parent: String, body: Value| {
        let core = core.clone();
        async move {
            call(&core, Verb::Write, "auth/token/create", &parent, body)
                .await
                .expect("token")
                .auth
                .expect("auth")
                .client_token
        }
    };
    let parent = token(root.clone(), json!({"policies": ["tree"]})).await;
    let child = token(parent.clone(), json!({"policies": ["tree"]})).await;
    let bystander = token(root.clone(), json!({"policies": ["tree"]})).await;
    let (parent_lease, parent_user, _) =
        issue(&core, &parent, "tree/creds/r", json!({"ttl": 3600})).await;
    let (child_lease, child_user, _) =
        issue(&core, &child, "tree/creds/r", json!({"ttl": 3600})).await;
    let (other_lease, _, _) = issue(&core, &bystander, "tree/creds/r", json!({"ttl": 3600})).await;

    call(
        &core,
        Verb::Write,
        "auth/token/revoke",
        &root,
        json!({"token": parent}),
    )
    .await
    .expect("revoke");
    let mut gone = revoked("tree/");
    gone.sort();
    let mut want = vec![parent_user, child_user];
    want.sort();
    assert_eq!(gone, want, "the parent's and the child's leases");
    for lease in [&parent_lease, &child_lease] {
        assert!(lookup(&core, &root, lease).await.is_err());
    }
    assert!(
        lookup(&core, &root, &other_lease).await.is_ok(),
        "another token's lease stays"
    );

    // A token that expires takes its leases with it.
    let short = token(root.clone(), json!({"policies": ["tree"], "ttl": "30s"})).await;
    let (short_lease, short_user, _) =
        issue(&core, &short, "tree/creds/r", json!({"ttl": 3600})).await;
    core.clock().advance(31);
    core.expire_tokens().await.expect("token sweep");
    assert!(revoked("tree/").contains(&short_user));
    assert!(lookup(&core, &root, &short_lease).await.is_err());

    // An engine that fails does not stop the token's revocation; its lease is retried.
    let doomed = token(root.clone(), json!({"policies": ["tree"]})).await;
    let (doomed_lease, doomed_user, _) =
        issue(&core, &doomed, "tree/creds/r", json!({"ttl": 3600})).await;
    with_book("tree/", |b| b.fail_revocations = true);
    call(
        &core,
        Verb::Write,
        "auth/token/revoke",
        &root,
        json!({"token": doomed}),
    )
    .await
    .expect("revoke");
    assert!(matches!(
        call(
            &core,
            Verb::Read,
            "auth/token/lookup-self",
            &doomed,
            json!({})
        )
        .await,
        Err(Error::PermissionDenied(_))
    ));
    assert!(
        lookup(&core, &root, &doomed_lease).await.is_ok(),
        "kept for a retry"
    );
    with_book("tree/", |b| b.fail_revocations = false);
    core.clock().advance(10);
    assert_eq!(core.expire_leases().await.expect("sweep"), 1);
    assert!(revoked("tree/").contains(&doomed_user));
}

#[tokio::test]
async fn disabling_a_mount_revokes_its_leases_first() {
    let (core, root, _, _) = setup("unmount/").await;
    let (first, first_user, _) = issue(&core, &root, "unmount/creds/r", json!({"ttl": 600})).await;
    let (_, second_user, _) = issue(&core, &root, "unmount/creds/r", json!({"ttl": 600})).await;

    with_book("unmount/", |b| b.fail_revocations = true);
    let refused = call(&core, Verb::Delete, "sys/mounts/unmount", &root, json!({})).await;
    assert!(invalid_message(refused).contains("the database is down"));
    call(&core, Verb::Read, "sys/mounts/unmount", &root, json!({}))
        .await
        .expect("the mount stays");
    assert!(lookup(&core, &root, &first).await.is_ok());

    with_book("unmount/", |b| b.fail_revocations = false);
    call(&core, Verb::Delete, "sys/mounts/unmount", &root, json!({}))
        .await
        .expect("disable");
    let mut gone = revoked("unmount/");
    gone.sort();
    assert_eq!(gone, vec![first_user, second_user]);
    assert!(lookup(&core, &root, &first).await.is_err());
}

#[tokio::test]
async fn failed_revocations_back_off_become_irrevocable_and_are_retried() {
    let (core, root, _, _) = setup("flaky/").await;
    let (lease_id, username, _) = issue(&core, &root, "flaky/creds/r", json!({"ttl": 60})).await;
    with_book("flaky/", |b| b.fail_revocations = true);
    core.clock().advance(60);

    // Attempts at expiry, then after 10, 20, 40, 80 and 160 seconds: six in all.
    assert_eq!(core.expire_leases().await.expect("sweep"), 0);
    for delay in [10, 20, 40, 80, 160] {
        core.clock().advance(delay - 1);
        core.expire_leases().await.expect("sweep");
        let attempts = with_book("flaky/", |b| b.failed_revocations);
        core.clock().advance(1);
        core.expire_leases().await.expect("sweep");
        assert_eq!(
            with_book("flaky/", |b| b.failed_revocations),
            attempts + 1,
            "retried after {delay}s, not before"
        );
    }
    assert_eq!(with_book("flaky/", |b| b.failed_revocations), 6);

    let count = call(
        &core,
        Verb::Read,
        "sys/leases/count",
        &root,
        json!({"type": "irrevocable"}),
    )
    .await
    .expect("count");
    assert_eq!(data(&count)["lease_count"], json!(1));
    let listed = call(
        &core,
        Verb::Read,
        "sys/leases",
        &root,
        json!({"type": "irrevocable"}),
    )
    .await
    .expect("list");
    let leases = data(&listed)["leases"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(leases.len(), 1);
    assert_eq!(leases[0]["lease_id"], json!(lease_id));
    assert!(leases[0]["error"]
        .as_str()
        .unwrap_or_default()
        .contains("the database is down"));
    assert_eq!(core.irrevocable_lease_count().await.expect("metric"), 1);
    let looked_up = lookup(&core, &root, &lease_id)
        .await
        .expect("still visible");
    assert_eq!(looked_up["renewable"], json!(false));
    let renew = call(
        &core,
        Verb::Write,
        "sys/leases/renew",
        &root,
        json!({"lease_id": lease_id}),
    )
    .await;
    assert_eq!(invalid_message(renew), "lease is irrevocable");

    // Retried at a slow pace, and revoked once the backend is back.
    with_book("flaky/", |b| b.fail_revocations = false);
    core.clock().advance(1800);
    assert_eq!(core.expire_leases().await.expect("sweep"), 0);
    core.clock().advance(1800);
    assert_eq!(core.expire_leases().await.expect("sweep"), 1);
    assert_eq!(revoked("flaky/"), vec![username]);
    let count = call(
        &core,
        Verb::Read,
        "sys/leases/count",
        &root,
        json!({"type": "irrevocable"}),
    )
    .await
    .expect("count");
    assert_eq!(data(&count)["lease_count"], json!(0));
    let total = call(&core, Verb::Read, "sys/leases/count", &root, json!({}))
        .await
        .expect("count");
    assert_eq!(data(&total)["lease_count"], json!(0));
    let tidy = call(&core, Verb::Write, "sys/leases/tidy", &root, json!({}))
        .await
        .expect("tidy");
    assert!(!tidy.warnings.is_empty());
}

#[tokio::test]
async fn a_restarted_core_keeps_expiring_leases_on_schedule() {
    let (core, root, physical, keys) = setup("restart/").await;
    let (early, early_user, _) = issue(&core, &root, "restart/creds/r", json!({"ttl": 100})).await;
    let (late, late_user, _) = issue(&core, &root, "restart/creds/r", json!({"ttl": 1000})).await;
    drop(core);

    ward_testlog::init("core-leases");
    let restarted = Core::new(CoreConfig::default(), physical, registry());
    for key in &keys {
        restarted.unseal(key.clone()).await.expect("unseal");
    }
    assert_eq!(
        restarted.expire_leases().await.expect("sweep"),
        0,
        "nothing expires early after a restart"
    );
    assert!(lookup(&restarted, &root, &early).await.is_ok());
    restarted.clock().advance(100);
    assert_eq!(restarted.expire_leases().await.expect("sweep"), 1);
    assert_eq!(revoked("restart/"), vec![early_user]);
    restarted.clock().advance(900);
    assert_eq!(restarted.expire_leases().await.expect("sweep"), 1);
    assert_eq!(revoked("restart/").last(), Some(&late_user));
    assert!(lookup(&restarted, &root, &late).await.is_err());
}

#[tokio::test]
async fn lease_count_quota_refuses_leases_over_the_limit() {
    let (core, root, physical, keys) = setup("quota/").await;
    call(
        &core,
        Verb::Write,
        "sys/quotas/lease-count/two",
        &root,
        json!({"max_leases": 2, "path": "quota/"}),
    )
    .await
    .expect("quota");
    let (first, _, _) = issue(&core, &root, "quota/creds/r", json!({"ttl": 600})).await;
    issue(&core, &root, "quota/creds/r", json!({"ttl": 600})).await;
    let refused = call(
        &core,
        Verb::Read,
        "quota/creds/r",
        &root,
        json!({"ttl": 600}),
    )
    .await;
    match refused {
        Err(Error::RateLimited { message, .. }) => {
            assert_eq!(message, "lease count quota exceeded")
        }
        other => panic!("expected 429, got {other:?}"),
    }
    assert_eq!(
        revoked("quota/").len(),
        1,
        "the secret issued over the quota was revoked again"
    );
    let quota = call(
        &core,
        Verb::Read,
        "sys/quotas/lease-count/two",
        &root,
        json!({}),
    )
    .await
    .expect("read");
    assert_eq!(data(&quota)["counter"], json!(2));
    assert_eq!(data(&quota)["max_leases"], json!(2));
    let listed = call(
        &core,
        Verb::List,
        "sys/quotas/lease-count",
        &root,
        json!({}),
    )
    .await
    .expect("list");
    assert_eq!(data(&listed)["keys"], json!(["two"]));

    call(
        &core,
        Verb::Write,
        "sys/leases/revoke",
        &root,
        json!({"lease_id": first}),
    )
    .await
    .expect("revoke");
    issue(&core, &root, "quota/creds/r", json!({"ttl": 600})).await;

    // After a restart the count comes back from the index.
    drop(core);
    ward_testlog::init("core-leases");
    let restarted = Core::new(CoreConfig::default(), physical, registry());
    for key in &keys {
        restarted.unseal(key.clone()).await.expect("unseal");
    }
    let refused = call(
        &restarted,
        Verb::Read,
        "quota/creds/r",
        &root,
        json!({"ttl": 600}),
    )
    .await;
    assert!(
        matches!(refused, Err(Error::RateLimited { .. })),
        "{refused:?}"
    );
    call(
        &restarted,
        Verb::Delete,
        "sys/quotas/lease-count/two",
        &root,
        json!({}),
    )
    .await
    .expect("delete");
    issue(&restarted, &root, "quota/creds/r", json!({"ttl": 600})).await;
}

#[tokio::test]
async fn ten_thousand_leases_expiring_together_are_all_revoked() {
    let (core, root, _, _) = setup("many/").await;
    for _ in 0..10_000 {
        let response = call(&core, Verb::Read, "many/creds/r", &root, json!({"ttl": 60}))
            .await
            .expect("creds");
        assert!(response.lease.is_some());
    }
    let total = call(&core, Verb::Read, "sys/leases/count", &root, json!({}))
        .await
        .expect("count");
    assert_eq!(data(&total)["lease_count"], json!(10_000));
    core.clock().advance(61);
    assert_eq!(core.expire_leases().await.expect("sweep"), 10_000);
    assert_eq!(revoked("many/").len(), 10_000);
    let total = call(&core, Verb::Read, "sys/leases/count", &root, json!({}))
        .await
        .expect("count");
    assert_eq!(data(&total)["lease_count"], json!(0));
}
