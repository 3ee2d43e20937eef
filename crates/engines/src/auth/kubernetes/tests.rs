//! Tests of the kubernetes engine: projected service-account tokens signed with the fixture
//! keys (offline validation with `pem_keys`), and a local HTTPS TokenReview double speaking
//! `authentication.k8s.io/v1` (its CA passed as `kubernetes_ca_cert`).

use serde_json::{json, Value};
use ward_core::{Engine, EngineContext, EngineResponse, Error, Operation};

use super::KubernetesEngine;
use crate::auth::test_support::{auth_context, fixture, sign, Signer, TestServer};
use crate::testing::request;

const UID: &str = "8f4c7b1e-0000-4000-8000-000000000001";
const REVIEW_PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

async fn call(
    engine: &KubernetesEngine,
    ctx: &EngineContext,
    op: Operation,
    path: &str,
    body: Value,
) -> Result<EngineResponse, Error> {
    engine.handle(ctx, request(op, path, body)).await
}

/// A projected token as the kubelet gets it (§1.6 of the research note).
fn projected(ctx: &EngineContext, namespace: &str, name: &str, uid: &str, audience: &str) -> Value {
    let t = ctx.now.unix_timestamp();
    json!({
        "aud": [audience], "exp": t + 3607, "iat": t, "nbf": t,
        "iss": "https://kubernetes.default.svc.cluster.local",
        "jti": "3b6a1c0e", "sub": format!("system:serviceaccount:{namespace}:{name}"),
        "kubernetes.io": {
            "namespace": namespace,
            "serviceaccount": {"name": name, "uid": uid},
            "pod": {"name": "app-7d9f8-abcde", "uid": "pod-uid"},
            "node": {"name": "kind-worker", "uid": "node-uid"},
            "warnafter": t + 3607,
        },
    })
}

async fn setup(config: Value) -> (KubernetesEngine, EngineContext) {
    let engine = KubernetesEngine::default();
    let ctx = auth_context("kubernetes").await;
    call(&engine, &ctx, Operation::Update, "config", config)
        .await
        .expect("config");
    call(
        &engine,
        &ctx,
        Operation::Update,
        "role/app",
        json!({"bound_service_account_names": ["app", "batch-*"], "bound_service_account_namespaces": "demo", "audience": "vault", "token_policies": "app"}),
    )
    .await
    .expect("role");
    (engine, ctx)
}

async fn login(
    engine: &KubernetesEngine,
    ctx: &EngineContext,
    jwt: &str,
) -> Result<EngineResponse, Error> {
    call(
        engine,
        ctx,
        Operation::Update,
        "login",
        json!({"role": "app", "jwt": jwt}),
    )
    .await
}

#[tokio::test]
async fn offline_validation_with_pem_keys_rs256_and_es256() {
    let (engine, ctx) = setup(json!({
        "kubernetes_host": "https://127.0.0.1:1",
        "pem_keys": [fixture("rsa-1.crt.pem"), fixture("ec-1.pub.pem")],
        "disable_local_ca_jwt": true,
    }))
    .await;
    for signer in [Signer::Rsa("rsa-1"), Signer::Ec("ec-1")] {
        let token = sign(
            signer,
            Some("k"),
            &projected(&ctx, "demo", "app", UID, "vault"),
        );
        let auth = login(&engine, &ctx, &token)
            .await
            .expect("login")
            .auth
            .expect("auth");
        assert_eq!(auth.policies, ["app"]);
        assert_eq!(auth.display_name, "demo-app");
        assert_eq!(auth.alias.as_ref().map(|a| a.name.as_str()), Some(UID));
        let metadata = &auth.metadata;
        for (key, want) in [
            ("role", "app"),
            ("service_account_name", "app"),
            ("service_account_namespace", "demo"),
            ("service_account_secret_name", ""),
            ("service_account_uid", UID),
            ("pod_name", "app-7d9f8-abcde"),
        ] {
            assert_eq!(metadata.get(key).map(String::as_str), Some(want), "{key}");
        }
    }
    let glob_name = sign(
        Signer::Rsa("rsa-1"),
        None,
        &projected(&ctx, "demo", "batch-nightly", UID, "vault"),
    );
    login(&engine, &ctx, &glob_name).await.expect("a glob name");

    let denied = [
        (
            sign(
                Signer::Rsa("rsa-2"),
                None,
                &projected(&ctx, "demo", "app", UID, "vault"),
            ),
            "failed to verify signature",
        ),
        (
            sign(
                Signer::Ed("ed-1"),
                None,
                &projected(&ctx, "demo", "app", UID, "vault"),
            ),
            "unsupported signing algorithm \"EdDSA\"",
        ),
        (
            sign(
                Signer::Rsa("rsa-1"),
                None,
                &projected(&ctx, "prod", "app", UID, "vault"),
            ),
            "namespace not authorized",
        ),
        (
            sign(
                Signer::Rsa("rsa-1"),
                None,
                &projected(&ctx, "demo", "db", UID, "vault"),
            ),
            "service account name not authorized",
        ),
        (
            sign(
                Signer::Rsa("rsa-1"),
                None,
                &projected(&ctx, "demo", "app", UID, "https://kubernetes.default.svc"),
            ),
            "invalid audience (aud) claim: audience claim does not match any expected audience",
        ),
    ];
    for (token, want) in denied {
        assert_eq!(
            login(&engine, &ctx, &token).await,
            Err(Error::PermissionDenied(want.into()))
        );
    }
    let mut expired = projected(&ctx, "demo", "app", UID, "vault");
    expired["exp"] = json!(ctx.now.unix_timestamp() - 61);
    let expired = sign(Signer::Rsa("rsa-1"), None, &expired);
    assert_eq!(
        login(&engine, &ctx, &expired).await,
        Err(Error::PermissionDenied("token is expired (exp)".into()))
    );
}

#[tokio::test]
async fn issuer_validation_when_enabled_and_legacy_tokens() {
    let (engine, ctx) = setup(json!({
        "kubernetes_host": "https://127.0.0.1:1", "pem_keys": [fixture("rsa-1.pub.pem")],
        "issuer": "https://kubernetes.default.svc.cluster.local", "disable_iss_validation": false,
    }))
    .await;
    let mut foreign = projected(&ctx, "demo", "app", UID, "vault");
    foreign["iss"] = json!("https://other-cluster");
    let foreign = sign(Signer::Rsa("rsa-1"), None, &foreign);
    assert_eq!(
        login(&engine, &ctx, &foreign).await,
        Err(Error::PermissionDenied("invalid issuer (iss) claim".into()))
    );

    call(
        &engine,
        &ctx,
        Operation::Update,
        "config",
        json!({"issuer": "kubernetes/serviceaccount"}),
    )
    .await
    .expect("config");
    call(
        &engine,
        &ctx,
        Operation::Update,
        "role/app",
        json!({"audience": ""}),
    )
    .await
    .expect("role");
    let legacy = sign(
        Signer::Rsa("rsa-1"),
        None,
        &json!({
            "iss": "kubernetes/serviceaccount", "sub": "system:serviceaccount:demo:app",
            "kubernetes.io/serviceaccount/namespace": "demo",
            "kubernetes.io/serviceaccount/secret.name": "app-token-x7k2p",
            "kubernetes.io/serviceaccount/service-account.name": "app",
            "kubernetes.io/serviceaccount/service-account.uid": UID,
        }),
    );
    let auth = login(&engine, &ctx, &legacy)
        .await
        .expect("legacy token")
        .auth
        .expect("auth");
    assert_eq!(
        auth.metadata
            .get("service_account_secret_name")
            .map(String::as_str),
        Some("app-token-x7k2p")
    );
    assert!(!auth.metadata.contains_key("pod_name"));
}

fn review_answer(
    authenticated: bool,
    namespace: &str,
    name: &str,
    uid: &str,
    audiences: &[&str],
) -> String {
    json!({
        "kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1", "metadata": {"creationTimestamp": null},
        "spec": {"token": "<jwt>", "audiences": ["vault"]},
        "status": {
            "authenticated": authenticated, "audiences": audiences,
            "user": {
                "username": format!("system:serviceaccount:{namespace}:{name}"), "uid": uid,
                "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{namespace}"), "system:authenticated"],
                "extra": {"authentication.kubernetes.io/pod-name": ["app-7d9f8-abcde"]},
            },
        },
    })
    .to_string()
}

async fn review_setup(reviewer_jwt: Option<&str>) -> (KubernetesEngine, EngineContext, TestServer) {
    let server = TestServer::start_tls().await;
    let mut config = json!({"kubernetes_host": server.url, "kubernetes_ca_cert": fixture("tls-ca.crt.pem"), "disable_local_ca_jwt": true});
    if let Some(reviewer) = reviewer_jwt {
        config["token_reviewer_jwt"] = json!(reviewer);
    }
    let (engine, ctx) = setup(config).await;
    (engine, ctx, server)
}

#[tokio::test]
async fn token_review_success_sends_the_exact_request() {
    let (engine, ctx, server) = review_setup(Some("reviewer-token")).await;
    server.route(
        REVIEW_PATH,
        201,
        review_answer(true, "demo", "app", UID, &["vault"]),
    );
    let token = sign(
        Signer::Rsa("rsa-1"),
        None,
        &projected(&ctx, "demo", "app", UID, "vault"),
    );
    let auth = login(&engine, &ctx, &token)
        .await
        .expect("login")
        .auth
        .expect("auth");
    assert_eq!(auth.alias.map(|a| a.name), Some(UID.to_string()));
    let sent = server.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].method, "POST");
    assert_eq!(sent[0].target, REVIEW_PATH);
    assert_eq!(
        sent[0].headers.get("authorization").map(String::as_str),
        Some("Bearer reviewer-token")
    );
    assert_eq!(
        sent[0].headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let body: Value = serde_json::from_str(&sent[0].body).expect("json body");
    assert_eq!(
        body,
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token, "audiences": ["vault"]}})
    );

    let read = call(&engine, &ctx, Operation::Read, "config", json!({}))
        .await
        .expect("read")
        .data
        .expect("data");
    assert_eq!(read["token_reviewer_jwt_set"], json!(true));
    assert!(
        !read.contains_key("token_reviewer_jwt"),
        "the reviewer JWT is never returned"
    );
}

#[tokio::test]
async fn token_review_rejections_are_a_generic_403() {
    let (engine, ctx, server) = review_setup(None).await;
    let token = sign(
        Signer::Rsa("rsa-1"),
        None,
        &projected(&ctx, "demo", "app", UID, "vault"),
    );
    let cases = [
        (201, review_answer(false, "demo", "app", UID, &["vault"])),
        (201, review_answer(true, "demo", "app", UID, &["other"])),
        (201, review_answer(true, "demo", "other-sa", UID, &["vault"])),
        (201, review_answer(true, "demo", "app", "another-uid", &["vault"])),
        (201, json!({"status": {"authenticated": false, "error": "service account token has been invalidated"}}).to_string()),
        (401, json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401}).to_string()),
        (403, json!({"kind": "Status", "status": "Failure", "code": 403}).to_string()),
    ];
    for (status, answer) in cases {
        server.route(REVIEW_PATH, status, answer.clone());
        assert_eq!(
            login(&engine, &ctx, &token).await,
            Err(Error::denied()),
            "{status} {answer}"
        );
    }
    // Without a reviewer token the client's own JWT is the bearer.
    let last = server.requests().pop().expect("a request");
    assert_eq!(
        last.headers.get("authorization"),
        Some(&format!("Bearer {token}"))
    );

    // A service account in the wrong namespace is refused before any TokenReview.
    let n_before = server.requests().len();
    let wrong_ns = sign(
        Signer::Rsa("rsa-1"),
        None,
        &projected(&ctx, "kube-system", "app", UID, "vault"),
    );
    assert_eq!(
        login(&engine, &ctx, &wrong_ns).await,
        Err(Error::PermissionDenied("namespace not authorized".into()))
    );
    assert_eq!(server.requests().len(), n_before);
}

#[tokio::test]
async fn a_recreated_service_account_is_a_new_alias() {
    let (engine, ctx, server) = review_setup(Some("reviewer")).await;
    server.route(
        REVIEW_PATH,
        201,
        review_answer(true, "demo", "app", UID, &["vault"]),
    );
    let first = sign(
        Signer::Rsa("rsa-1"),
        None,
        &projected(&ctx, "demo", "app", UID, "vault"),
    );
    let first_alias = login(&engine, &ctx, &first)
        .await
        .expect("login")
        .auth
        .and_then(|a| a.alias)
        .map(|a| a.name);

    // Deleted and recreated under the same name: a new UID. The old token no longer reviews.
    let new_uid = "8f4c7b1e-0000-4000-8000-000000000002";
    server.route(
        REVIEW_PATH,
        201,
        review_answer(true, "demo", "app", new_uid, &["vault"]),
    );
    assert_eq!(
        login(&engine, &ctx, &first).await,
        Err(Error::denied()),
        "an old token names the old UID"
    );
    let second = sign(
        Signer::Rsa("rsa-1"),
        None,
        &projected(&ctx, "demo", "app", new_uid, "vault"),
    );
    let second_alias = login(&engine, &ctx, &second)
        .await
        .expect("login")
        .auth
        .and_then(|a| a.alias)
        .map(|a| a.name);
    assert_eq!(first_alias.as_deref(), Some(UID));
    assert_eq!(second_alias.as_deref(), Some(new_uid));

    // With alias_name_source=serviceaccount_name both logins map to one alias.
    call(
        &engine,
        &ctx,
        Operation::Update,
        "role/app",
        json!({"alias_name_source": "serviceaccount_name"}),
    )
    .await
    .expect("role");
    let by_name = login(&engine, &ctx, &second)
        .await
        .expect("login")
        .auth
        .and_then(|a| a.alias)
        .map(|a| a.name);
    assert_eq!(by_name.as_deref(), Some("demo/app"));
}

#[tokio::test]
async fn config_and_role_validation() {
    let engine = KubernetesEngine::default();
    let ctx = auth_context("kubernetes").await;
    assert_eq!(
        call(&engine, &ctx, Operation::Read, "config", json!({})).await,
        Err(Error::not_found())
    );
    let cases = [
        (json!({}), "no host provided"),
        (
            json!({"kubernetes_host": "https://k8s", "kubernetes_ca_cert": "garbage"}),
            "Configured CA PEM data contains no valid certificates, TLS verification will fail",
        ),
        (
            json!({"kubernetes_host": "https://k8s", "pem_keys": ["garbage"]}),
            "data does not contain any valid RSA or ECDSA public keys",
        ),
        (
            json!({"kubernetes_host": "https://k8s", "pem_keys": [fixture("ed-1.pub.pem")]}),
            "data does not contain any valid RSA or ECDSA public keys",
        ),
    ];
    for (body, want) in cases {
        assert_eq!(
            call(&engine, &ctx, Operation::Update, "config", body.clone()).await,
            Err(Error::invalid(want)),
            "{body}"
        );
    }
    call(
        &engine,
        &ctx,
        Operation::Update,
        "config",
        json!({"kubernetes_host": "https://k8s"}),
    )
    .await
    .expect("config");
    let read = call(&engine, &ctx, Operation::Read, "config", json!({}))
        .await
        .expect("read")
        .data
        .expect("data");
    assert_eq!(read["disable_iss_validation"], json!(true));
    assert_eq!(read["token_reviewer_jwt_set"], json!(false));

    let role_cases = [
        (
            json!({"bound_service_account_namespaces": ["a"]}),
            "\"bound_service_account_names\" can not be empty",
        ),
        (
            json!({"bound_service_account_names": ["a"]}),
            "\"bound_service_account_namespaces\" can not be empty",
        ),
        (
            json!({"bound_service_account_names": ["*", "a"], "bound_service_account_namespaces": ["a"]}),
            "can not mix \"*\" with values",
        ),
        (
            json!({"bound_service_account_names": ["a"], "bound_service_account_namespaces": ["a"], "alias_name_source": "x"}),
            "invalid alias_name_source: \"x\"",
        ),
    ];
    for (body, want) in role_cases {
        assert_eq!(
            call(&engine, &ctx, Operation::Update, "role/r", body.clone()).await,
            Err(Error::invalid(want)),
            "{body}"
        );
    }
    call(
        &engine,
        &ctx,
        Operation::Update,
        "role/r",
        json!({"bound_service_account_names": "*", "bound_service_account_namespaces": "team-*"}),
    )
    .await
    .expect("role");
    let read = call(&engine, &ctx, Operation::Read, "role/r", json!({}))
        .await
        .expect("read")
        .data
        .expect("data");
    assert_eq!(read["alias_name_source"], json!("serviceaccount_uid"));
    assert_eq!(read["bound_service_account_namespaces"], json!(["team-*"]));
    for (body, want) in [
        (json!({"jwt": "x"}), Error::invalid("missing role")),
        (json!({"role": "r"}), Error::invalid("missing jwt")),
        (
            json!({"role": "nope", "jwt": "x"}),
            Error::invalid("invalid role name \"nope\""),
        ),
    ] {
        assert_eq!(
            call(&engine, &ctx, Operation::Update, "login", body).await,
            Err(want)
        );
    }
}
