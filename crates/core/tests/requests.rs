//! Core tests through `handle_request`, with no HTTP: seal lifecycle, tokens, policies,
//! capabilities and wrapping, on in-memory storage.

use std::sync::Arc;

use serde_json::{json, Value};
use ward_core::request::{Request, Response, Verb};
use ward_core::{Core, CoreConfig, Error};
use ward_storage::{InMemory, Physical};

/// A dev core with policies `a`, `b`, `x`, `p1`, `p2` that may create child tokens.
async fn dev_core() -> (Arc<Core>, String) {
    ward_testlog::init("core-requests");
    let core = Core::new(
        CoreConfig::default(),
        Arc::new(InMemory::new()),
        ward_engines::registry(),
    );
    let root = core
        .dev_init(None)
        .await
        .expect("dev init")
        .root_token
        .to_string();
    let policy = r#"path "auth/token/create" { capabilities = ["update"] }"#;
    for name in ["a", "b", "x", "p1", "p2"] {
        let path = format!("sys/policies/acl/{name}");
        call(&core, Verb::Write, &path, &root, json!({"policy": policy}))
            .await
            .expect("policy");
    }
    (core, root)
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

fn data(response: &Response) -> &serde_json::Map<String, Value> {
    response.data.as_ref().expect("response has data")
}

async fn create_token(core: &Core, parent: &str, body: Value) -> (String, String) {
    let response = call(core, Verb::Write, "auth/token/create", parent, body)
        .await
        .expect("create token");
    let auth = response.auth.expect("auth block");
    (auth.client_token, auth.accessor)
}

#[tokio::test]
async fn shamir_init_unseal_seal_and_restart() {
    let physical: Arc<dyn Physical> = Arc::new(InMemory::new());
    ward_testlog::init("core-requests");
    let core = Core::new(
        CoreConfig::default(),
        physical.clone(),
        ward_engines::registry(),
    );
    assert!(!core.is_initialized().await.expect("status"));
    let init = core.init(5, 3).await.expect("init");
    assert_eq!(init.keys.len(), 5);
    assert!(
        core.is_sealed(),
        "a server stays sealed after init, as Vault's does"
    );
    assert!(
        matches!(core.init(5, 3).await, Err(Error::InvalidRequest(_))),
        "second init refused"
    );
    let root = init.root_token.to_string();
    assert!(
        root.starts_with("wrs."),
        "tokens carry a recognisable prefix"
    );
    assert!(matches!(
        call(
            &core,
            Verb::Read,
            "auth/token/lookup-self",
            &root,
            json!({})
        )
        .await,
        Err(Error::Sealed)
    ));

    // Two keys: progress 2, still sealed; then a third distinct key unseals.
    let status = core.unseal(init.keys[0].to_vec()).await.expect("unseal 1");
    assert_eq!(
        (
            status.sealed,
            status.progress,
            status.threshold,
            status.shares
        ),
        (true, 1, 3, 5)
    );
    let status = core
        .unseal(init.keys[0].to_vec())
        .await
        .expect("duplicate share");
    assert_eq!(status.progress, 1, "a repeated share does not count twice");
    core.unseal(init.keys[3].to_vec()).await.expect("unseal 2");
    let status = core.unseal(init.keys[4].to_vec()).await.expect("unseal 3");
    assert!(!status.sealed);
    assert_eq!(status.progress, 0);
    call(
        &core,
        Verb::Read,
        "auth/token/lookup-self",
        &root,
        json!({}),
    )
    .await
    .expect("root works");

    // Corrupted shares never unseal, and progress is reset.
    core.seal().await;
    let mut bad = init.keys[1].to_vec();
    bad[0] ^= 0xff;
    core.unseal(bad).await.expect("bad 1");
    core.unseal(init.keys[2].to_vec()).await.expect("2");
    assert!(
        core.unseal(init.keys[3].to_vec()).await.is_err(),
        "wrong shares must not unseal"
    );
    let status = core.seal_status().await.expect("status");
    assert!(status.sealed);
    assert_eq!(status.progress, 0);
    core.unseal(init.keys[0].to_vec())
        .await
        .expect("reset progress");
    core.unseal_reset();
    assert_eq!(core.seal_status().await.expect("status").progress, 0);

    // A new process over the same storage: sealed, and the same keys open it.
    ward_testlog::init("core-requests");
    let restarted = Core::new(CoreConfig::default(), physical, ward_engines::registry());
    assert!(restarted.is_sealed());
    for key in &init.keys[..3] {
        restarted
            .unseal(key.to_vec())
            .await
            .expect("unseal after restart");
    }
    call(
        &restarted,
        Verb::Read,
        "auth/token/lookup-self",
        &root,
        json!({}),
    )
    .await
    .expect("root survives");
}

#[tokio::test]
async fn missing_or_bad_tokens_are_denied() {
    let (core, _) = dev_core().await;
    let no_token = core
        .handle_request(Request::new(Verb::Read, "auth/token/lookup-self"))
        .await;
    assert!(matches!(no_token, Err(Error::PermissionDenied(_))));
    let bad = call(
        &core,
        Verb::Read,
        "auth/token/lookup-self",
        "wrs.nope",
        json!({}),
    )
    .await;
    assert!(matches!(bad, Err(Error::PermissionDenied(_))));
    let unknown = call(&core, Verb::Read, "nothing/here", "wrs.nope", json!({})).await;
    assert!(matches!(unknown, Err(Error::UnsupportedPath(_))));
}

#[tokio::test]
async fn child_tokens_die_with_their_parent_and_orphans_do_not() {
    let (core, root) = dev_core().await;
    let (parent, _) = create_token(&core, &root, json!({"policies": ["p1", "p2"]})).await;
    let (child, _) = create_token(&core, &parent, json!({"policies": ["p1"]})).await;
    let (grandchild, _) = create_token(&core, &child, json!({})).await;
    let (orphan, _) = create_token(
        &core,
        &parent,
        json!({"no_parent": false, "policies": ["p1"]}),
    )
    .await;
    let orphan_response = call(
        &core,
        Verb::Write,
        "auth/token/create-orphan",
        &root,
        json!({}),
    )
    .await
    .expect("orphan");
    let true_orphan = orphan_response.auth.expect("auth").client_token;

    let lookup = call(
        &core,
        Verb::Read,
        "auth/token/lookup-self",
        &child,
        json!({}),
    )
    .await
    .expect("lookup");
    assert_eq!(
        data(&lookup)["policies"],
        json!(["default", "p1"]),
        "sorted, with default"
    );

    // A child may not get a policy its parent lacks.
    let escalate = call(
        &core,
        Verb::Write,
        "auth/token/create",
        &child,
        json!({"policies": ["p2"]}),
    )
    .await;
    assert!(
        matches!(escalate, Err(Error::InvalidRequest(_))),
        "{escalate:?}"
    );

    call(
        &core,
        Verb::Write,
        "auth/token/revoke",
        &root,
        json!({"token": parent}),
    )
    .await
    .expect("revoke");
    for gone in [&parent, &child, &grandchild, &orphan] {
        let r = call(&core, Verb::Read, "auth/token/lookup-self", gone, json!({})).await;
        assert!(
            matches!(r, Err(Error::PermissionDenied(_))),
            "revoked subtree must be gone"
        );
    }
    call(
        &core,
        Verb::Read,
        "auth/token/lookup-self",
        &true_orphan,
        json!({}),
    )
    .await
    .expect("orphan lives");
}

#[tokio::test]
async fn revoke_orphan_keeps_children() {
    let (core, root) = dev_core().await;
    let (parent, _) = create_token(&core, &root, json!({})).await;
    let (child, _) = create_token(&core, &parent, json!({})).await;
    call(
        &core,
        Verb::Write,
        "auth/token/revoke-orphan",
        &root,
        json!({"token": parent}),
    )
    .await
    .expect("revoke-orphan");
    let lookup = call(
        &core,
        Verb::Read,
        "auth/token/lookup-self",
        &child,
        json!({}),
    )
    .await
    .expect("child lives");
    assert_eq!(data(&lookup)["orphan"], json!(true));
}

#[tokio::test]
async fn ttl_arithmetic_matches_vault() {
    let (core, root) = dev_core().await;
    let capped = call(
        &core,
        Verb::Write,
        "auth/token/create",
        &root,
        json!({"ttl": "30m", "explicit_max_ttl": "5m"}),
    )
    .await
    .expect("create");
    assert_eq!(capped.auth.as_ref().expect("auth").lease_duration, 300);
    assert!(!capped.warnings.is_empty(), "capping warns");
    let periodic = call(
        &core,
        Verb::Write,
        "auth/token/create",
        &root,
        json!({"period": "30m"}),
    )
    .await
    .expect("create");
    assert_eq!(periodic.auth.expect("auth").lease_duration, 1800);
    let default = call(
        &core,
        Verb::Write,
        "auth/token/create",
        &root,
        json!({"policies": ["x"]}),
    )
    .await
    .expect("create");
    assert_eq!(default.auth.expect("auth").lease_duration, 768 * 3600);
    let root_child = call(&core, Verb::Write, "auth/token/create", &root, json!({}))
        .await
        .expect("create");
    assert_eq!(
        root_child.auth.expect("auth").lease_duration,
        0,
        "root children without a TTL never expire"
    );

    // Renewal is capped by the explicit max and refused past it.
    let (token, _) = create_token(
        &core,
        &root,
        json!({"ttl": "60s", "explicit_max_ttl": "100s", "policies": ["x"]}),
    )
    .await;
    core.clock().advance(50);
    let renewed = call(
        &core,
        Verb::Write,
        "auth/token/renew-self",
        &token,
        json!({"increment": "1h"}),
    )
    .await
    .expect("renew");
    assert_eq!(
        renewed.auth.expect("auth").lease_duration,
        50,
        "capped at issue + explicit max"
    );
    core.clock().advance(50);
    let dead = call(
        &core,
        Verb::Write,
        "auth/token/renew-self",
        &token,
        json!({}),
    )
    .await;
    assert!(
        matches!(dead, Err(Error::PermissionDenied(_))),
        "expired token: {dead:?}"
    );
}

#[tokio::test]
async fn expired_tokens_are_swept_with_their_children() {
    let (core, root) = dev_core().await;
    let (parent, _) = create_token(&core, &root, json!({"ttl": "10s", "policies": ["a"]})).await;
    let (child, _) = create_token(&core, &parent, json!({"ttl": "1h", "policies": ["a"]})).await;
    core.clock().advance(11);
    assert_eq!(core.expire_tokens().await.expect("sweep"), 1);
    let r = call(
        &core,
        Verb::Read,
        "auth/token/lookup-self",
        &child,
        json!({}),
    )
    .await;
    assert!(
        matches!(r, Err(Error::PermissionDenied(_))),
        "child of an expired parent is revoked"
    );
}

#[tokio::test]
async fn use_limited_tokens_run_out() {
    let (core, root) = dev_core().await;
    let (token, _) = create_token(&core, &root, json!({"num_uses": 2, "policies": ["x"]})).await;
    let first = call(
        &core,
        Verb::Read,
        "auth/token/lookup-self",
        &token,
        json!({}),
    )
    .await
    .expect("use 1");
    assert_eq!(data(&first)["num_uses"], json!(1));
    call(
        &core,
        Verb::Read,
        "auth/token/lookup-self",
        &token,
        json!({}),
    )
    .await
    .expect("use 2");
    let third = call(
        &core,
        Verb::Read,
        "auth/token/lookup-self",
        &token,
        json!({}),
    )
    .await;
    assert!(matches!(third, Err(Error::PermissionDenied(_))));
}

#[tokio::test]
async fn batch_tokens_work_without_storage_and_cannot_be_renewed() {
    let (core, root) = dev_core().await;
    let (parent, _) = create_token(&core, &root, json!({"policies": ["x"]})).await;
    let response = call(
        &core,
        Verb::Write,
        "auth/token/create",
        &parent,
        json!({"type": "batch", "ttl": "1h"}),
    )
    .await
    .expect("batch");
    let auth = response.auth.expect("auth");
    assert!(auth.client_token.starts_with("wrb."));
    assert_eq!(auth.token_type, "batch");
    assert!(!auth.renewable);
    let lookup = call(
        &core,
        Verb::Read,
        "auth/token/lookup-self",
        &auth.client_token,
        json!({}),
    )
    .await
    .expect("lookup");
    assert_eq!(data(&lookup)["type"], json!("batch"));
    let renew = call(
        &core,
        Verb::Write,
        "auth/token/renew-self",
        &auth.client_token,
        json!({}),
    )
    .await;
    assert!(matches!(renew, Err(Error::InvalidRequest(_))));
    // A batch token dies with its parent.
    call(
        &core,
        Verb::Write,
        "auth/token/revoke",
        &root,
        json!({"token": parent}),
    )
    .await
    .expect("revoke");
    let after = call(
        &core,
        Verb::Read,
        "auth/token/lookup-self",
        &auth.client_token,
        json!({}),
    )
    .await;
    assert!(matches!(after, Err(Error::PermissionDenied(_))));
    // A tampered batch token is simply invalid.
    let mut forged = auth.client_token.clone();
    forged.push('A');
    assert!(call(
        &core,
        Verb::Read,
        "auth/token/lookup-self",
        &forged,
        json!({})
    )
    .await
    .is_err());
}

#[tokio::test]
async fn accessors_look_up_renew_and_revoke() {
    let (core, root) = dev_core().await;
    let (token, accessor) =
        create_token(&core, &root, json!({"policies": ["x"], "ttl": "1h"})).await;
    let lookup = call(
        &core,
        Verb::Write,
        "auth/token/lookup-accessor",
        &root,
        json!({"accessor": accessor}),
    )
    .await
    .expect("lookup");
    assert_eq!(
        data(&lookup)["id"],
        json!(""),
        "the id is never shown by accessor"
    );
    let listed = call(&core, Verb::List, "auth/token/accessors", &root, json!({}))
        .await
        .expect("list");
    assert!(data(&listed)["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .any(|k| k == &json!(accessor)));
    let bad = call(
        &core,
        Verb::Write,
        "auth/token/lookup-accessor",
        &root,
        json!({"accessor": "nope"}),
    )
    .await;
    assert!(matches!(bad, Err(Error::InvalidRequest(_))));
    call(
        &core,
        Verb::Write,
        "auth/token/revoke-accessor",
        &root,
        json!({"accessor": accessor}),
    )
    .await
    .expect("revoke");
    assert!(call(
        &core,
        Verb::Read,
        "auth/token/lookup-self",
        &token,
        json!({})
    )
    .await
    .is_err());
}

#[tokio::test]
async fn policies_are_enforced_and_reloaded_on_change() {
    let (core, root) = dev_core().await;
    let policy = r#"path "sys/policies/acl/*" { capabilities = ["read", "list"] }
path "sys/mounts" { capabilities = ["read"] }"#;
    call(
        &core,
        Verb::Write,
        "sys/policies/acl/reader",
        &root,
        json!({"policy": policy}),
    )
    .await
    .expect("write");
    let (token, _) = create_token(&core, &root, json!({"policies": ["reader"]})).await;
    call(&core, Verb::Read, "sys/mounts", &token, json!({}))
        .await
        .expect("allowed");
    let denied = call(
        &core,
        Verb::Write,
        "sys/policies/acl/evil",
        &token,
        json!({"policy": policy}),
    )
    .await;
    assert!(matches!(denied, Err(Error::PermissionDenied(_))));

    let caps = call(
        &core,
        Verb::Write,
        "sys/capabilities-self",
        &token,
        json!({"paths": ["sys/mounts", "secret/x"]}),
    )
    .await
    .expect("caps");
    assert_eq!(data(&caps)["sys/mounts"], json!(["read"]));
    assert_eq!(data(&caps)["secret/x"], json!(["deny"]));

    // Contents are re-read: removing the grant takes effect for the existing token.
    call(
        &core,
        Verb::Write,
        "sys/policies/acl/reader",
        &root,
        json!({"policy": "path \"x\" { capabilities = [\"read\"] }"}),
    )
    .await
    .expect("rewrite");
    let now_denied = call(&core, Verb::Read, "sys/mounts", &token, json!({})).await;
    assert!(matches!(now_denied, Err(Error::PermissionDenied(_))));

    // Legacy endpoint shape, built-ins protected, bad HCL refused.
    let legacy = call(&core, Verb::Read, "sys/policy/reader", &root, json!({}))
        .await
        .expect("legacy read");
    assert!(data(&legacy)["rules"]
        .as_str()
        .expect("rules")
        .contains("path"));
    assert!(call(
        &core,
        Verb::Delete,
        "sys/policies/acl/default",
        &root,
        json!({})
    )
    .await
    .is_err());
    assert!(call(
        &core,
        Verb::Write,
        "sys/policies/acl/root",
        &root,
        json!({"policy": policy})
    )
    .await
    .is_err());
    let bad = call(
        &core,
        Verb::Write,
        "sys/policies/acl/bad",
        &root,
        json!({"policy": "path \"x\" { capabilities = "}),
    )
    .await;
    assert!(matches!(bad, Err(Error::InvalidRequest(_))));
    let names = call(&core, Verb::List, "sys/policies/acl", &root, json!({}))
        .await
        .expect("list");
    assert_eq!(
        data(&names)["keys"],
        json!(["a", "b", "default", "p1", "p2", "reader", "root", "x"])
    );
}

#[tokio::test]
async fn root_cannot_be_attached_by_name_variants() {
    let (core, root) = dev_core().await;
    let (limited, _) = create_token(&core, &root, json!({"policies": ["x"]})).await;
    for variant in ["root", "Root", "ROOT", "root ", " root"] {
        let r = call(
            &core,
            Verb::Write,
            "auth/token/create",
            &limited,
            json!({"policies": [variant]}),
        )
        .await;
        assert!(
            r.is_err(),
            "{variant:?} must not be attachable by a non-root token"
        );
    }
    for variant in ["ｒｏｏｔ", "root\u{200b}", "ro\tot"] {
        let r = call(
            &core,
            Verb::Write,
            "auth/token/create",
            &root,
            json!({"policies": [variant]}),
        )
        .await;
        assert!(
            matches!(r, Err(Error::InvalidRequest(_))),
            "{variant:?} must be rejected as a name"
        );
    }
}

#[tokio::test]
async fn sudo_paths_need_sudo() {
    let (core, root) = dev_core().await;
    let policy = r#"path "sys/rotate" { capabilities = ["update"] }"#;
    call(
        &core,
        Verb::Write,
        "sys/policies/acl/rot",
        &root,
        json!({"policy": policy}),
    )
    .await
    .expect("write");
    let (token, _) = create_token(&core, &root, json!({"policies": ["rot"]})).await;
    let r = call(&core, Verb::Write, "sys/rotate", &token, json!({})).await;
    assert!(
        matches!(r, Err(Error::PermissionDenied(_))),
        "sudo required: {r:?}"
    );
    let policy = r#"path "sys/rotate" { capabilities = ["update", "sudo"] }"#;
    call(
        &core,
        Verb::Write,
        "sys/policies/acl/rot",
        &root,
        json!({"policy": policy}),
    )
    .await
    .expect("write");
    call(&core, Verb::Write, "sys/rotate", &token, json!({}))
        .await
        .expect("rotate with sudo");
    let status = call(&core, Verb::Read, "sys/key-status", &root, json!({}))
        .await
        .expect("status");
    assert_eq!(data(&status)["term"], json!(2));
}

#[tokio::test]
async fn wrapping_unwraps_exactly_once() {
    let (core, root) = dev_core().await;
    let mut request = Request::new(Verb::Write, "sys/wrapping/wrap")
        .with_token(&root)
        .with_data(json!({"secret": "s3cr3t"}));
    request.wrap_ttl = Some(60);
    let wrapped = core.handle_request(request).await.expect("wrap");
    let info = wrapped.wrap_info.expect("wrap_info");
    assert_eq!(info.creation_path, "sys/wrapping/wrap");
    assert!(
        wrapped.data.is_none(),
        "a wrapped response carries only wrap_info"
    );

    let lookup = core
        .handle_request(
            Request::new(Verb::Write, "sys/wrapping/lookup")
                .with_data(json!({"token": info.token})),
        )
        .await
        .expect("lookup needs no token");
    assert_eq!(data(&lookup)["creation_ttl"], json!(60));

    let unwrapped = call(
        &core,
        Verb::Write,
        "sys/wrapping/unwrap",
        &info.token,
        json!({}),
    )
    .await
    .expect("unwrap");
    assert_eq!(data(&unwrapped)["secret"], json!("s3cr3t"));
    let again = call(
        &core,
        Verb::Write,
        "sys/wrapping/unwrap",
        &root,
        json!({"token": info.token}),
    )
    .await;
    match again {
        Err(Error::InvalidRequest(m)) => {
            assert_eq!(m, "wrapping token is not valid or does not exist")
        }
        other => panic!("second unwrap must fail: {other:?}"),
    }
}

#[tokio::test]
async fn wrapped_token_creation_and_rewrap() {
    let (core, root) = dev_core().await;
    let mut request = Request::new(Verb::Write, "auth/token/create")
        .with_token(&root)
        .with_data(json!({"policies": ["x"]}));
    request.wrap_ttl = Some(120);
    let wrapped = core.handle_request(request).await.expect("wrapped create");
    let info = wrapped.wrap_info.expect("wrap_info");
    assert!(
        !info.wrapped_accessor.is_empty(),
        "a wrapped token names its accessor"
    );
    let rewrapped = call(
        &core,
        Verb::Write,
        "sys/wrapping/rewrap",
        &root,
        json!({"token": info.token}),
    )
    .await
    .expect("rewrap");
    let new_info = rewrapped.wrap_info.expect("new wrap_info");
    assert_ne!(new_info.token, info.token);
    assert!(call(
        &core,
        Verb::Write,
        "sys/wrapping/unwrap",
        &root,
        json!({"token": info.token})
    )
    .await
    .is_err());
    let unwrapped = call(
        &core,
        Verb::Write,
        "sys/wrapping/unwrap",
        &root,
        json!({"token": new_info.token}),
    )
    .await
    .expect("unwrap");
    let auth = unwrapped.auth.expect("auth");
    assert_eq!(auth.accessor, info.wrapped_accessor);
    call(
        &core,
        Verb::Read,
        "auth/token/lookup-self",
        &auth.client_token,
        json!({}),
    )
    .await
    .expect("token works");
}

#[tokio::test]
async fn token_roles() {
    let (core, root) = dev_core().await;
    call(
        &core,
        Verb::Write,
        "auth/token/roles/agents",
        &root,
        json!({"allowed_policies": ["a", "b"], "orphan": true, "token_period": "1h"}),
    )
    .await
    .expect("role");
    let read = call(
        &core,
        Verb::Read,
        "auth/token/roles/agents",
        &root,
        json!({}),
    )
    .await
    .expect("read");
    assert_eq!(data(&read)["allowed_policies"], json!(["a", "b"]));
    let created = call(
        &core,
        Verb::Write,
        "auth/token/create/agents",
        &root,
        json!({"policies": ["a"]}),
    )
    .await
    .expect("create");
    let auth = created.auth.expect("auth");
    assert!(auth.orphan);
    assert_eq!(auth.lease_duration, 3600);
    let denied = call(
        &core,
        Verb::Write,
        "auth/token/create/agents",
        &root,
        json!({"policies": ["c"]}),
    )
    .await;
    assert!(matches!(denied, Err(Error::InvalidRequest(_))));
    let list = call(&core, Verb::List, "auth/token/roles", &root, json!({}))
        .await
        .expect("list");
    assert_eq!(data(&list)["keys"], json!(["agents"]));
}

#[tokio::test]
async fn storage_failure_writes_nothing() {
    let fault = Arc::new(ward_storage::fault::FaultInjector::new(Arc::new(
        InMemory::new(),
    )));
    ward_testlog::init("core-requests");
    let core = Core::new(
        CoreConfig::default(),
        fault.clone(),
        ward_engines::registry(),
    );
    let root = core
        .dev_init(None)
        .await
        .expect("dev")
        .root_token
        .to_string();
    fault.fail(ward_storage::fault::Faults::Writes);
    let r = call(
        &core,
        Verb::Write,
        "sys/policies/acl/p",
        &root,
        json!({"policy": "path \"x\" { capabilities = [\"read\"] }"}),
    )
    .await;
    assert!(matches!(r, Err(Error::Unavailable(_))), "{r:?}");
    let r = call(&core, Verb::Write, "auth/token/create", &root, json!({})).await;
    assert!(matches!(r, Err(Error::Unavailable(_))));
    fault.heal();
    let names = call(&core, Verb::List, "sys/policies/acl", &root, json!({}))
        .await
        .expect("list");
    assert_eq!(
        data(&names)["keys"],
        json!(["default", "root"]),
        "the failed write left nothing behind"
    );
}

#[tokio::test]
async fn cubbyholes_are_private_to_their_token_and_go_with_it() {
    let (core, root) = dev_core().await;
    let (token, _) = create_token(&core, &root, json!({"policies": ["x"]})).await;
    call(
        &core,
        Verb::Write,
        "cubbyhole/note",
        &token,
        json!({"k": "mine"}),
    )
    .await
    .expect("write own cubbyhole");
    let read = call(&core, Verb::Read, "cubbyhole/note", &token, json!({}))
        .await
        .expect("read");
    assert_eq!(data(&read)["k"], json!("mine"));
    let other = call(&core, Verb::Read, "cubbyhole/note", &root, json!({})).await;
    assert!(
        matches!(other, Err(Error::NotFound { .. })),
        "another token sees its own, empty cubbyhole"
    );
    call(
        &core,
        Verb::Write,
        "auth/token/revoke",
        &root,
        json!({"token": token}),
    )
    .await
    .expect("revoke");
    let (again, _) = create_token(&core, &root, json!({"policies": ["x"]})).await;
    assert!(call(&core, Verb::Read, "cubbyhole/note", &again, json!({}))
        .await
        .is_err());
}
