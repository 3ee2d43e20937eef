//! Tests of the jwt/oidc engine: real RS256/ES256/EdDSA tokens signed with the fixture keys,
//! JWKS and discovery served from a local HTTP server, and the attacks of issue 5.

use serde_json::{json, Value};
use time::Duration;
use ward_core::{Engine, EngineContext, EngineResponse, Error, Operation};

use super::JwtEngine;
use crate::auth::test_support::{
    auth_context, fixture, jwk_of, sign, sign_hs256, sign_with_header, Signer, TestServer,
};
use crate::testing::request;

async fn call(
    engine: &JwtEngine,
    ctx: &EngineContext,
    op: Operation,
    path: &str,
    body: Value,
) -> Result<EngineResponse, Error> {
    engine.handle(ctx, request(op, path, body)).await
}

fn now(ctx: &EngineContext) -> i64 {
    ctx.now.unix_timestamp()
}

/// Standard claims valid at `ctx.now`, merged with `extra`.
fn claims(ctx: &EngineContext, extra: Value) -> Value {
    let mut base = json!({
        "iss": "https://issuer.example", "sub": "svc", "aud": "ward",
        "iat": now(ctx), "nbf": now(ctx), "exp": now(ctx) + 300, "user": "alice",
    });
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        for (k, v) in extra {
            if v.is_null() {
                base.remove(&k);
            } else {
                base.insert(k, v);
            }
        }
    }
    base
}

/// An engine with static keys (RSA, EC, Ed25519) and role `r`.
async fn static_setup(role: Value) -> (JwtEngine, EngineContext) {
    let engine = JwtEngine::default();
    let ctx = auth_context("jwt").await;
    call(
        &engine,
        &ctx,
        Operation::Update,
        "config",
        json!({
            "jwt_validation_pubkeys": [fixture("rsa-1.pub.pem"), fixture("ec-1.pub.pem"), fixture("ed-1.pub.pem")],
            "bound_issuer": "https://issuer.example",
        }),
    )
    .await
    .expect("config");
    let mut body = json!({"role_type": "jwt", "user_claim": "user", "bound_audiences": ["ward"], "token_policies": ["ci"]});
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), role) {
        body.extend(extra);
    }
    call(&engine, &ctx, Operation::Update, "role/r", body)
        .await
        .expect("role");
    (engine, ctx)
}

async fn login(
    engine: &JwtEngine,
    ctx: &EngineContext,
    jwt: &str,
) -> Result<EngineResponse, Error> {
    call(
        engine,
        ctx,
        Operation::Update,
        "login",
        json!({"role": "r", "jwt": jwt}),
    )
    .await
}

fn error_message(result: Result<EngineResponse, Error>) -> String {
    match result {
        Err(Error::InvalidRequest(m)) => m,
        other => panic!("expected a 400, got {other:?}"),
    }
}

#[tokio::test]
async fn static_keys_accept_rs256_es256_and_eddsa() {
    let (engine, ctx) = static_setup(json!({})).await;
    for signer in [Signer::Rsa("rsa-1"), Signer::Ec("ec-1"), Signer::Ed("ed-1")] {
        let token = sign(signer, None, &claims(&ctx, json!({})));
        let auth = login(&engine, &ctx, &token)
            .await
            .expect("login")
            .auth
            .expect("auth");
        assert_eq!(auth.policies, ["ci"]);
        assert_eq!(auth.display_name, "alice");
        assert_eq!(auth.alias.as_ref().map(|a| a.name.as_str()), Some("alice"));
        assert_eq!(auth.metadata.get("role").map(String::as_str), Some("r"));
    }
    let other_key = sign(Signer::Rsa("rsa-2"), None, &claims(&ctx, json!({})));
    assert_eq!(
        error_message(login(&engine, &ctx, &other_key).await),
        "error validating token: error verifying token signature: no known key successfully validated the token signature"
    );
}

#[tokio::test]
async fn alg_none_hs256_key_confusion_and_embedded_keys_are_rejected() {
    let (engine, ctx) = static_setup(json!({})).await;
    let body = claims(&ctx, json!({}));
    use base64::Engine as _;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&body));
    assert!(error_message(login(&engine, &ctx, &none).await)
        .contains("unsupported signing algorithm \"none\""));
    let confused = sign_hs256(fixture("rsa-1.pub.pem").as_bytes(), &body);
    assert!(error_message(login(&engine, &ctx, &confused).await)
        .contains("unsupported signing algorithm \"HS256\""));
    // A token signed by an attacker's key that carries that key in `jwk`/`jku`/`x5u`.
    let attacker = jwk_of("rsa-2", "evil", Some("RS256"));
    let header = json!({"alg": "RS256", "jwk": attacker, "jku": "http://127.0.0.1:1/jwks", "x5u": "http://127.0.0.1:1/x5u"});
    let embedded = sign_with_header(Signer::Rsa("rsa-2"), &header, &body);
    assert_eq!(
        error_message(login(&engine, &ctx, &embedded).await),
        "error validating token: error verifying token signature: no known key successfully validated the token signature"
    );
    // The algorithm must fit the key: an RS256 header on an EC signature finds no key.
    let mismatched = sign_with_header(Signer::Ec("ec-1"), &json!({"alg": "RS256"}), &body);
    assert!(login(&engine, &ctx, &mismatched).await.is_err());
}

#[tokio::test]
async fn time_claims_with_leeways() {
    let (engine, ctx) = static_setup(json!({})).await;
    let t = now(&ctx);
    let cases = [
        (json!({"exp": t - 61}), Some("error validating token: token is expired (exp)")),
        (json!({"exp": t - 30}), None),
        (json!({"nbf": t + 61, "iat": null}), Some("error validating token: token not valid yet (nbf)")),
        (json!({"nbf": t + 30}), None),
        (json!({"iat": t + 120, "nbf": null}), Some("error validating token: token not valid yet (nbf)")),
        (json!({"iat": null, "nbf": null, "exp": null}), Some("error validating token: no issue time, notbefore time, or expiration time encoded in token")),
        (json!({"exp": null}), None),
        (json!({"exp": "tomorrow"}), Some("error validating token: claim \"exp\" must be a number")),
    ];
    for (extra, want) in cases {
        let token = sign(Signer::Rsa("rsa-1"), None, &claims(&ctx, extra.clone()));
        match want {
            None => assert!(login(&engine, &ctx, &token).await.is_ok(), "{extra}"),
            Some(want) => assert_eq!(
                error_message(login(&engine, &ctx, &token).await),
                want,
                "{extra}"
            ),
        }
    }
    // Without exp the token lives expiration_leeway (150 s) after iat.
    let mut later = ctx.clone();
    later.now += Duration::seconds(150 + 61);
    let token = sign(
        Signer::Rsa("rsa-1"),
        None,
        &claims(&ctx, json!({"exp": null})),
    );
    assert!(login(&engine, &later, &token).await.is_err());
}

#[tokio::test]
async fn issuer_subject_and_audience_checks() {
    let (engine, ctx) =
        static_setup(json!({"bound_audiences": ["ward", "other"], "bound_subject": "svc"})).await;
    let cases = [
        (json!({"iss": "https://evil.example"}), Some("error validating token: invalid issuer (iss) claim")),
        (json!({"iss": null}), Some("error validating token: invalid issuer (iss) claim")),
        (json!({"sub": "someone-else"}), Some("error validating token: invalid subject (sub) claim")),
        (json!({"aud": "nope"}), Some("error validating token: invalid audience (aud) claim: audience claim does not match any expected audience")),
        (json!({"aud": null}), Some("error validating token: invalid audience (aud) claim: audience claim does not match any expected audience")),
        (json!({"aud": ["nope", "other"]}), None),
        (json!({"aud": ["ward"]}), None),
        (json!({"aud": []}), Some("error validating token: invalid audience (aud) claim: audience claim does not match any expected audience")),
        (json!({"aud": 7}), Some("error validating token: claim \"aud\" must be a string or an array of strings")),
        (json!({"aud": ["ward", 7]}), Some("error validating token: claim \"aud\" must be a string or an array of strings")),
    ];
    for (extra, want) in cases {
        let token = sign(Signer::Rsa("rsa-1"), None, &claims(&ctx, extra.clone()));
        match want {
            None => assert!(login(&engine, &ctx, &token).await.is_ok(), "{extra}"),
            Some(want) => assert_eq!(
                error_message(login(&engine, &ctx, &token).await),
                want,
                "{extra}"
            ),
        }
    }
}

#[tokio::test]
async fn a_token_with_aud_needs_a_role_with_bound_audiences() {
    // CVE-2024-5798: a role bound only by subject must not accept a token minted for any audience.
    let (engine, ctx) = static_setup(json!({})).await;
    call(
        &engine,
        &ctx,
        Operation::Update,
        "role/r",
        json!({"bound_audiences": [], "bound_subject": "svc"}),
    )
    .await
    .expect("role update");
    let with_aud = sign(
        Signer::Rsa("rsa-1"),
        None,
        &claims(&ctx, json!({"aud": "anything"})),
    );
    assert_eq!(
        error_message(login(&engine, &ctx, &with_aud).await),
        "error validating token: audience claim found in JWT but no audiences bound to the role"
    );
    let without = sign(
        Signer::Rsa("rsa-1"),
        None,
        &claims(&ctx, json!({"aud": null})),
    );
    assert!(login(&engine, &ctx, &without).await.is_ok());
}

#[tokio::test]
async fn oversized_and_garbage_tokens_are_rejected_early() {
    let (engine, ctx) = static_setup(json!({})).await;
    let padding = "x".repeat(70 * 1024);
    let huge = sign(
        Signer::Rsa("rsa-1"),
        None,
        &claims(&ctx, json!({"pad": padding})),
    );
    assert!(error_message(login(&engine, &ctx, &huge).await).contains("larger than 65536 bytes"));
    assert!(error_message(login(&engine, &ctx, "not-a-jwt").await).contains("malformed token"));
    assert_eq!(
        error_message(login(&engine, &ctx, "").await),
        "missing token"
    );
}

#[tokio::test]
async fn claims_of_the_wrong_type_fail_the_login() {
    let (engine, ctx) =
        static_setup(json!({"claim_mappings": {"team": "team"}, "groups_claim": "groups"})).await;
    let cases = [
        (
            json!({"user": 42, "team": "a", "groups": []}),
            "claim \"user\" could not be converted to string",
        ),
        (
            json!({"user": null, "team": "a", "groups": []}),
            "claim \"user\" not found in token",
        ),
        (
            json!({"team": 5, "groups": []}),
            "error converting claim \"team\" to string",
        ),
        (json!({"groups": []}), "claim \"team\" not found in token"),
        (
            json!({"team": "a", "groups": [1]}),
            "\"groups\" claim could not be converted to string list",
        ),
        (json!({"team": "a"}), "\"groups\" claim not found in token"),
        (
            json!({"team": "a", "groups": {"a": 1}}),
            "\"groups\" claim could not be converted to string list",
        ),
    ];
    for (extra, want) in cases {
        let token = sign(Signer::Rsa("rsa-1"), None, &claims(&ctx, extra.clone()));
        assert_eq!(
            error_message(login(&engine, &ctx, &token).await),
            want,
            "{extra}"
        );
    }
    let token = sign(
        Signer::Rsa("rsa-1"),
        None,
        &claims(&ctx, json!({"team": "blue", "groups": ["dev", "ops"]})),
    );
    let auth = login(&engine, &ctx, &token)
        .await
        .expect("login")
        .auth
        .expect("auth");
    assert_eq!(auth.group_aliases, ["dev", "ops"]);
    assert_eq!(auth.metadata.get("team").map(String::as_str), Some("blue"));
    let single = sign(
        Signer::Rsa("rsa-1"),
        None,
        &claims(&ctx, json!({"team": "blue", "groups": "dev"})),
    );
    assert_eq!(
        login(&engine, &ctx, &single)
            .await
            .expect("login")
            .auth
            .expect("auth")
            .group_aliases,
        ["dev"]
    );
}

#[tokio::test]
async fn bound_claims_string_glob_pointer_and_lists() {
    let (engine, ctx) = static_setup(json!({
        "bound_claims": {"/org/team": ["blue", "green"], "level": 3, "admin": false},
    }))
    .await;
    let ok = |extra: Value| sign(Signer::Rsa("rsa-1"), None, &claims(&ctx, extra));
    let pass = [
        json!({"org": {"team": "green"}, "level": 3, "admin": false}),
        json!({"org": {"team": ["red", "blue"]}, "level": 3.7, "admin": false}),
    ];
    for extra in pass {
        assert!(
            login(&engine, &ctx, &ok(extra.clone())).await.is_ok(),
            "{extra}"
        );
    }
    let fail = [
        (json!({"org": {"team": "red"}, "level": 3, "admin": false}), "error validating claims: claim \"/org/team\" does not match any associated bound claim values"),
        (json!({"org": {}, "level": 3, "admin": false}), "error validating claims: claim \"/org/team\" is missing"),
        (json!({"org": {"team": "blue"}, "level": "3", "admin": false}), "error validating claims: claim \"level\" does not match any associated bound claim values"),
        (json!({"org": {"team": "blue"}, "level": 3, "admin": "false"}), "error validating claims: claim \"admin\" does not match any associated bound claim values"),
        (json!({"org": {"team": {"x": 1}}, "level": 3, "admin": false}), "error validating claims: received claim \"/org/team\" is not a string or list"),
    ];
    for (extra, want) in fail {
        assert_eq!(
            error_message(login(&engine, &ctx, &ok(extra.clone())).await),
            want,
            "{extra}"
        );
    }

    call(&engine, &ctx, Operation::Update, "role/r", json!({"bound_claims_type": "glob", "bound_claims": {"ref": ["refs/heads/*", "refs/tags/v*"], "env": "*"}}))
        .await
        .expect("glob role");
    let glob_cases = [
        (json!({"ref": "refs/heads/feature/x", "env": ""}), true),
        (json!({"ref": "refs/heads/", "env": "prod"}), true),
        (json!({"ref": "refs/tags/v1.2", "env": "prod"}), true),
        (json!({"ref": "refs/pull/1/merge", "env": "prod"}), false),
        (json!({"ref": "xrefs/heads/main", "env": "prod"}), false),
        (json!({"ref": "refs/heads/main", "env": 1}), false),
        (json!({"ref": "refs/heads/main"}), false),
    ];
    for (extra, want) in glob_cases {
        assert_eq!(
            login(&engine, &ctx, &ok(extra.clone())).await.is_ok(),
            want,
            "{extra}"
        );
    }
    let numeric_glob = call(
        &engine,
        &ctx,
        Operation::Update,
        "role/r",
        json!({"bound_claims": {"n": 1}}),
    )
    .await;
    assert!(
        matches!(numeric_glob, Err(Error::InvalidRequest(_))),
        "glob bound claims are strings only"
    );
}

#[tokio::test]
async fn config_and_role_validation_messages() {
    let engine = JwtEngine::default();
    let ctx = auth_context("jwt").await;
    assert_eq!(
        call(&engine, &ctx, Operation::Read, "config", json!({})).await,
        Err(Error::not_found())
    );
    let exactly_one =
        "exactly one of 'jwt_validation_pubkeys', 'jwks_url' or 'oidc_discovery_url' must be set";
    for body in [
        json!({}),
        json!({"jwks_url": "http://127.0.0.1:1/jwks", "jwt_validation_pubkeys": [fixture("rsa-1.pub.pem")]}),
    ] {
        assert_eq!(
            call(&engine, &ctx, Operation::Update, "config", body).await,
            Err(Error::invalid(exactly_one))
        );
    }
    let bad_key = call(
        &engine,
        &ctx,
        Operation::Update,
        "config",
        json!({"jwt_validation_pubkeys": ["garbage"]}),
    )
    .await;
    assert!(
        matches!(bad_key, Err(Error::InvalidRequest(m)) if m.starts_with("error parsing public key"))
    );
    let bad_alg = call(&engine, &ctx, Operation::Update, "config", json!({"jwt_validation_pubkeys": [fixture("rsa-1.pub.pem")], "jwt_supported_algs": ["HS256"]})).await;
    assert!(
        matches!(bad_alg, Err(Error::InvalidRequest(m)) if m.starts_with("invalid jwt_supported_algs"))
    );
    let unreachable = call(
        &engine,
        &ctx,
        Operation::Update,
        "config",
        json!({"jwks_url": "http://127.0.0.1:1/jwks"}),
    )
    .await;
    assert!(
        matches!(unreachable, Err(Error::InvalidRequest(m)) if m.starts_with("error checking jwks URL"))
    );
    call(
        &engine,
        &ctx,
        Operation::Update,
        "config",
        json!({"jwt_validation_pubkeys": [fixture("rsa-1.pub.pem")], "default_role": "r"}),
    )
    .await
    .expect("config");

    let role_errors = [
        (
            json!({"role_type": "jwt", "bound_audiences": ["a"]}),
            "a user claim must be defined on the role",
        ),
        (
            json!({"role_type": "jwt", "user_claim": "sub"}),
            "must have at least one bound constraint when creating/updating a role",
        ),
        (
            json!({"user_claim": "sub"}),
            "'allowed_redirect_uris' must be set if 'role_type' is 'oidc' or unspecified.",
        ),
        (
            json!({"role_type": "x", "user_claim": "sub"}),
            "invalid 'role_type': x",
        ),
        (
            json!({"role_type": "jwt", "user_claim": "sub", "bound_subject": "s", "claim_mappings": {"a": "role"}}),
            "metadata key \"role\" is reserved and may not be a mapping destination",
        ),
        (
            json!({"role_type": "jwt", "user_claim": "sub", "bound_subject": "s", "claim_mappings": {"a": "x", "b": "x"}}),
            "multiple keys are mapped to metadata key \"x\"",
        ),
    ];
    for (body, want) in role_errors {
        assert_eq!(
            call(&engine, &ctx, Operation::Update, "role/bad", body.clone()).await,
            Err(Error::invalid(want)),
            "{body}"
        );
    }
    call(
        &engine,
        &ctx,
        Operation::Update,
        "role/r",
        json!({"role_type": "jwt", "user_claim": "sub", "bound_subject": "svc"}),
    )
    .await
    .expect("role");
    let read = call(&engine, &ctx, Operation::Read, "role/r", json!({}))
        .await
        .expect("read")
        .data
        .expect("data");
    assert_eq!(read["clock_skew_leeway"], json!(60));
    assert_eq!(read["expiration_leeway"], json!(150));
    assert_eq!(read["not_before_leeway"], json!(150));
    assert_eq!(read["bound_claims_type"], json!("string"));
    // default_role: a login without `role` uses it.
    let token = sign(
        Signer::Rsa("rsa-1"),
        None,
        &json!({"sub": "svc", "exp": now(&ctx) + 60}),
    );
    let auth = call(
        &engine,
        &ctx,
        Operation::Update,
        "login",
        json!({"jwt": token}),
    )
    .await
    .expect("login")
    .auth
    .expect("auth");
    assert_eq!(auth.metadata.get("role").map(String::as_str), Some("r"));
    let unknown = call(
        &engine,
        &ctx,
        Operation::Update,
        "login",
        json!({"role": "nope", "jwt": "x"}),
    )
    .await;
    assert_eq!(
        unknown,
        Err(Error::invalid("role \"nope\" could not be found"))
    );
}

#[tokio::test]
async fn jwks_unknown_kid_and_key_rotation() {
    let server = TestServer::start().await;
    server.route(
        "/jwks",
        200,
        json!({"keys": [jwk_of("rsa-1", "k1", Some("RS256")), jwk_of("ec-1", "e1", None)]})
            .to_string(),
    );
    let engine = JwtEngine::default();
    let mut ctx = auth_context("jwt").await;
    call(&engine, &ctx, Operation::Update, "config", json!({"jwks_url": format!("{}/jwks", server.url), "bound_issuer": "https://issuer.example"}))
        .await
        .expect("config");
    call(
        &engine,
        &ctx,
        Operation::Update,
        "role/r",
        json!({"role_type": "jwt", "user_claim": "user", "bound_audiences": "ward"}),
    )
    .await
    .expect("role");
    assert_eq!(server.hits("/jwks"), 1, "fetched once at config time");
    let body = claims(&ctx, json!({}));
    login(
        &engine,
        &ctx,
        &sign(Signer::Rsa("rsa-1"), Some("k1"), &body),
    )
    .await
    .expect("rs256 by kid");
    login(&engine, &ctx, &sign(Signer::Ec("ec-1"), Some("e1"), &body))
        .await
        .expect("es256 by kid");
    login(&engine, &ctx, &sign(Signer::Rsa("rsa-1"), None, &body))
        .await
        .expect("no kid: every key is tried");
    assert_eq!(server.hits("/jwks"), 1, "cached");
    let wrong_key_for_kid = sign(Signer::Rsa("rsa-2"), Some("k1"), &body);
    assert!(login(&engine, &ctx, &wrong_key_for_kid).await.is_err());

    // The provider rotates to rsa-2 under a new kid; a token with it makes Ward refetch once.
    server.route(
        "/jwks",
        200,
        json!({"keys": [jwk_of("rsa-2", "k2", Some("RS256"))]}).to_string(),
    );
    ctx.now += Duration::seconds(super::REFETCH_INTERVAL_SECONDS);
    let body = claims(&ctx, json!({}));
    let rotated = sign(Signer::Rsa("rsa-2"), Some("k2"), &body);
    login(&engine, &ctx, &rotated)
        .await
        .expect("the rotated key is picked up");
    assert_eq!(server.hits("/jwks"), 2);
    login(&engine, &ctx, &rotated).await.expect("and cached");
    assert_eq!(server.hits("/jwks"), 2);

    // An unknown kid right after a fetch does not hammer the provider.
    let unknown = sign(Signer::Rsa("rsa-1"), Some("nope"), &body);
    assert_eq!(
        error_message(login(&engine, &ctx, &unknown).await),
        "error validating token: error verifying token signature: failed to verify id token signature"
    );
    assert_eq!(server.hits("/jwks"), 2, "rate limited");
    ctx.now += Duration::seconds(super::REFETCH_INTERVAL_SECONDS);
    assert!(login(&engine, &ctx, &unknown).await.is_err());
    assert_eq!(
        server.hits("/jwks"),
        3,
        "refetched once after the interval, still unknown"
    );
    let old = sign(Signer::Rsa("rsa-1"), Some("k1"), &claims(&ctx, json!({})));
    assert!(
        login(&engine, &ctx, &old).await.is_err(),
        "the retired key no longer verifies"
    );
}

/// A discovery server whose issuer is its own URL, serving `keys` as its JWKS.
async fn provider(keys: Value) -> TestServer {
    let server = TestServer::start().await;
    let discovery = json!({
        "issuer": server.url,
        "jwks_uri": format!("{}/jwks", server.url),
        "authorization_endpoint": format!("{}/auth", server.url),
        "token_endpoint": format!("{}/token", server.url),
        "response_types_supported": ["code", "id_token"],
    });
    server.route(
        "/.well-known/openid-configuration",
        200,
        discovery.to_string(),
    );
    server.route("/jwks", 200, json!({"keys": keys}).to_string());
    server
}

#[tokio::test]
async fn github_actions_style_tokens_with_run_id_in_metadata() {
    let server = provider(json!([jwk_of("rsa-1", "gh", Some("RS256"))])).await;
    let engine = JwtEngine::default();
    let ctx = auth_context("jwt").await;
    call(
        &engine,
        &ctx,
        Operation::Update,
        "config",
        json!({"oidc_discovery_url": server.url, "bound_issuer": server.url}),
    )
    .await
    .expect("config");
    call(
        &engine,
        &ctx,
        Operation::Update,
        "role/r",
        json!({
            "role_type": "jwt", "user_claim": "actor", "bound_audiences": ["https://github.com/octo-org"],
            "bound_claims_type": "glob",
            "bound_claims": {
                "repository": "octo-org/octo-repo",
                "ref": "refs/heads/main",
                "job_workflow_ref": "octo-org/octo-repo/.github/workflows/deploy.yml@*",
            },
            "claim_mappings": {"run_id": "run_id", "repository": "repository", "sha": "sha"},
            "token_policies": ["deploy"], "token_ttl": "15m",
        }),
    )
    .await
    .expect("role");
    let github = |r#ref: &str, workflow: &str| {
        let t = now(&ctx);
        json!({
            "iss": server.url, "aud": "https://github.com/octo-org",
            "sub": format!("repo:octo-org/octo-repo:ref:{ref}"),
            "jti": "6f4b3f0e", "iat": t, "nbf": t, "exp": t + 300,
            "ref": r#ref, "sha": "e3b0c442", "repository": "octo-org/octo-repo", "repository_id": "74",
            "repository_owner": "octo-org", "run_id": "5512349876", "run_number": "42", "run_attempt": "1",
            "actor": "octocat", "actor_id": "583231", "workflow": "deploy", "event_name": "push", "ref_type": "branch",
            "job_workflow_ref": format!("octo-org/octo-repo/.github/workflows/{workflow}"),
            "runner_environment": "github-hosted",
        })
    };
    let token = sign(
        Signer::Rsa("rsa-1"),
        Some("gh"),
        &github("refs/heads/main", "deploy.yml@refs/heads/main"),
    );
    let auth = login(&engine, &ctx, &token)
        .await
        .expect("login")
        .auth
        .expect("auth");
    assert_eq!(auth.display_name, "octocat");
    assert_eq!(
        auth.metadata.get("run_id").map(String::as_str),
        Some("5512349876")
    );
    assert_eq!(
        auth.metadata.get("repository").map(String::as_str),
        Some("octo-org/octo-repo")
    );
    assert_eq!(auth.metadata.get("role").map(String::as_str), Some("r"));
    assert_eq!(
        auth.alias
            .as_ref()
            .map(|a| a.metadata.get("run_id").cloned()),
        Some(Some("5512349876".into()))
    );
    assert_eq!(auth.policies, ["deploy"]);

    let feature = sign(
        Signer::Rsa("rsa-1"),
        Some("gh"),
        &github("refs/heads/feature", "deploy.yml@refs/heads/feature"),
    );
    assert_eq!(
        error_message(login(&engine, &ctx, &feature).await),
        "error validating claims: claim \"ref\" does not match any associated bound claim values"
    );
    let other_workflow = sign(
        Signer::Rsa("rsa-1"),
        Some("gh"),
        &github("refs/heads/main", "test.yml@refs/heads/main"),
    );
    assert!(login(&engine, &ctx, &other_workflow).await.is_err());
}

#[tokio::test]
async fn discovery_issuer_must_match_and_defaults_the_issuer_check() {
    let server = provider(json!([jwk_of("rsa-1", "k", None)])).await;
    let engine = JwtEngine::default();
    let ctx = auth_context("jwt").await;
    let trailing = call(
        &engine,
        &ctx,
        Operation::Update,
        "config",
        json!({"oidc_discovery_url": format!("{}/", server.url)}),
    )
    .await;
    assert!(
        matches!(trailing, Err(Error::InvalidRequest(m)) if m.contains("issuer did not match"))
    );
    call(
        &engine,
        &ctx,
        Operation::Update,
        "config",
        json!({"oidc_discovery_url": server.url}),
    )
    .await
    .expect("config");
    call(
        &engine,
        &ctx,
        Operation::Update,
        "role/r",
        json!({"role_type": "jwt", "user_claim": "user", "bound_audiences": "ward"}),
    )
    .await
    .expect("role");
    let foreign = sign(Signer::Rsa("rsa-1"), Some("k"), &claims(&ctx, json!({})));
    assert_eq!(
        error_message(login(&engine, &ctx, &foreign).await),
        "error validating token: invalid issuer (iss) claim"
    );
    let own = sign(
        Signer::Rsa("rsa-1"),
        Some("k"),
        &claims(&ctx, json!({"iss": server.url})),
    );
    login(&engine, &ctx, &own)
        .await
        .expect("the discovery issuer is the expected one");
}

async fn oidc_setup() -> (JwtEngine, EngineContext, TestServer) {
    let server = provider(json!([jwk_of("ec-1", "e1", Some("ES256"))])).await;
    let engine = JwtEngine::default();
    let ctx = auth_context("oidc").await;
    call(
        &engine,
        &ctx,
        Operation::Update,
        "config",
        json!({"oidc_discovery_url": server.url, "oidc_client_id": "ward", "oidc_client_secret": "s3cret", "default_role": "web"}),
    )
    .await
    .expect("config");
    call(
        &engine,
        &ctx,
        Operation::Update,
        "role/web",
        json!({"user_claim": "email", "groups_claim": "groups", "allowed_redirect_uris": ["http://localhost:8250/oidc/callback"], "oidc_scopes": ["email", "groups"]}),
    )
    .await
    .expect("role");
    (engine, ctx, server)
}

fn query(url: &str, key: &str) -> String {
    let parsed = reqwest::Url::parse(url).expect("url");
    parsed
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn oidc_auth_code_flow_with_pkce_nonce_and_single_use_state() {
    let (engine, ctx, server) = oidc_setup().await;
    let denied = call(
        &engine,
        &ctx,
        Operation::Update,
        "oidc/auth_url",
        json!({"redirect_uri": "https://evil.example/cb"}),
    )
    .await;
    // As Vault: 200 with an empty auth_url, and no state made for it.
    let denied = denied.expect("an answer").data.expect("data");
    assert_eq!(denied.get("auth_url"), Some(&json!("")));
    assert!(engine.states.lock().expect("states").is_empty());
    let started = call(
        &engine,
        &ctx,
        Operation::Update,
        "oidc/auth_url",
        json!({"role": "web", "redirect_uri": "http://localhost:8250/oidc/callback", "client_nonce": "cn"}),
    )
    .await
    .expect("auth_url");
    let url = started.data.expect("data")["auth_url"]
        .as_str()
        .expect("auth_url")
        .to_string();
    assert!(url.starts_with(&format!("{}/auth?", server.url)), "{url}");
    assert_eq!(query(&url, "client_id"), "ward");
    assert_eq!(query(&url, "response_type"), "code");
    assert_eq!(query(&url, "scope"), "openid email groups");
    assert_eq!(query(&url, "code_challenge_method"), "S256");
    let (state, nonce, challenge) = (
        query(&url, "state"),
        query(&url, "nonce"),
        query(&url, "code_challenge"),
    );
    assert!(!state.is_empty() && !nonce.is_empty() && challenge.len() == 43);

    let t = now(&ctx);
    let id_token = sign(
        Signer::Ec("ec-1"),
        Some("e1"),
        &json!({"iss": server.url, "aud": "ward", "sub": "u1", "email": "alice@example.com", "groups": ["eng"], "nonce": nonce, "iat": t, "exp": t + 60}),
    );
    server.route(
        "/token",
        200,
        json!({"access_token": "at", "token_type": "Bearer", "id_token": id_token}).to_string(),
    );
    let callback = json!({"state": state, "code": "the-code", "client_nonce": "cn"});
    let auth = call(
        &engine,
        &ctx,
        Operation::Read,
        "oidc/callback",
        callback.clone(),
    )
    .await
    .expect("callback")
    .auth
    .expect("auth");
    assert_eq!(auth.display_name, "alice@example.com");
    assert_eq!(auth.group_aliases, ["eng"]);
    assert_eq!(auth.metadata.get("role").map(String::as_str), Some("web"));

    // What the token endpoint received: the code, the PKCE verifier and the client's credentials.
    let exchange = server
        .requests()
        .into_iter()
        .find(|r| r.target == "/token")
        .expect("token request");
    assert_eq!(exchange.method, "POST");
    let form: std::collections::HashMap<String, String> =
        reqwest::Url::parse(&format!("http://x/?{}", exchange.body))
            .expect("form")
            .query_pairs()
            .into_owned()
            .collect();
    assert_eq!(
        form.get("grant_type").map(String::as_str),
        Some("authorization_code")
    );
    assert_eq!(form.get("code").map(String::as_str), Some("the-code"));
    use base64::Engine as _;
    use sha2::Digest as _;
    let verifier = form.get("code_verifier").expect("code_verifier");
    assert_eq!(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes())),
        challenge
    );
    let basic = base64::engine::general_purpose::STANDARD.encode("ward:s3cret");
    assert_eq!(
        exchange.headers.get("authorization"),
        Some(&format!("Basic {basic}"))
    );

    // Replaying the callback finds no state.
    let replay = call(&engine, &ctx, Operation::Read, "oidc/callback", callback).await;
    assert_eq!(
        replay,
        Err(Error::invalid(
            "Vault login failed. Expired or missing OAuth state."
        ))
    );
}

#[tokio::test]
async fn oidc_callback_rejects_a_wrong_nonce_client_nonce_and_expired_state() {
    let (engine, mut ctx, server) = oidc_setup().await;
    let start = |ctx: EngineContext| {
        let engine = &engine;
        async move {
            let started = call(engine, &ctx, Operation::Update, "oidc/auth_url", json!({"redirect_uri": "http://localhost:8250/oidc/callback", "client_nonce": "cn"}))
                .await
                .expect("auth_url");
            let url = started.data.expect("data")["auth_url"]
                .as_str()
                .expect("url")
                .to_string();
            (query(&url, "state"), query(&url, "nonce"))
        }
    };
    let t = now(&ctx);
    let (state, _) = start(ctx.clone()).await;
    let wrong_nonce = sign(
        Signer::Ec("ec-1"),
        Some("e1"),
        &json!({"iss": server.url, "aud": "ward", "email": "a@b", "groups": [], "nonce": "attacker", "exp": t + 60}),
    );
    server.route("/token", 200, json!({"id_token": wrong_nonce}).to_string());
    let result = call(
        &engine,
        &ctx,
        Operation::Update,
        "oidc/callback",
        json!({"state": state, "code": "c", "client_nonce": "cn"}),
    )
    .await;
    assert_eq!(
        result,
        Err(Error::invalid(
            "error validating token: invalid ID token nonce"
        ))
    );

    let (state, _) = start(ctx.clone()).await;
    let result = call(
        &engine,
        &ctx,
        Operation::Update,
        "oidc/callback",
        json!({"state": state, "code": "c", "client_nonce": "other"}),
    )
    .await;
    assert_eq!(result, Err(Error::invalid("invalid client_nonce")));

    let (state, _) = start(ctx.clone()).await;
    ctx.now += Duration::seconds(601);
    let result = call(
        &engine,
        &ctx,
        Operation::Update,
        "oidc/callback",
        json!({"state": state, "code": "c", "client_nonce": "cn"}),
    )
    .await;
    assert_eq!(
        result,
        Err(Error::invalid(
            "Vault login failed. Expired or missing OAuth state."
        ))
    );

    let jwt_login = call(
        &engine,
        &ctx,
        Operation::Update,
        "login",
        json!({"role": "web", "jwt": "x"}),
    )
    .await;
    assert_eq!(
        jwt_login,
        Err(Error::invalid("role with oidc role_type is not allowed"))
    );
}

#[tokio::test]
async fn a_restarted_provider_reusing_a_kid_is_picked_up() {
    let server = TestServer::start().await;
    server.route(
        "/jwks",
        200,
        json!({"keys": [jwk_of("rsa-1", "dev-key", None)]}).to_string(),
    );
    let engine = JwtEngine::default();
    let mut ctx = auth_context("jwt").await;
    call(
        &engine,
        &ctx,
        Operation::Update,
        "config",
        json!({"jwks_url": format!("{}/jwks", server.url)}),
    )
    .await
    .expect("config");
    call(
        &engine,
        &ctx,
        Operation::Update,
        "role/r",
        json!({"role_type": "jwt", "user_claim": "user", "bound_audiences": "ward"}),
    )
    .await
    .expect("role");
    login(
        &engine,
        &ctx,
        &sign(
            Signer::Rsa("rsa-1"),
            Some("dev-key"),
            &claims(&ctx, json!({})),
        ),
    )
    .await
    .expect("login");

    // Same kid, new key material (an in-memory provider restarted).
    server.route(
        "/jwks",
        200,
        json!({"keys": [jwk_of("rsa-2", "dev-key", None)]}).to_string(),
    );
    let token = sign(
        Signer::Rsa("rsa-2"),
        Some("dev-key"),
        &claims(&ctx, json!({})),
    );
    assert!(
        login(&engine, &ctx, &token).await.is_err(),
        "within the refetch interval the cached key answers"
    );
    assert_eq!(server.hits("/jwks"), 1);
    ctx.now += Duration::seconds(super::REFETCH_INTERVAL_SECONDS);
    let token = sign(
        Signer::Rsa("rsa-2"),
        Some("dev-key"),
        &claims(&ctx, json!({})),
    );
    login(&engine, &ctx, &token)
        .await
        .expect("a failed check on a stale set refetches once");
    assert_eq!(server.hits("/jwks"), 2);
}

#[test]
fn loopback_redirect_uris_match_on_any_port_others_exactly() {
    let allowed = [
        "http://localhost:8250/oidc/callback".to_string(),
        "https://ward.example.com/ui/oidc/callback".to_string(),
    ];
    let cases = [
        ("http://localhost:8250/oidc/callback", true),
        ("http://localhost:41234/oidc/callback", true),
        ("http://localhost/oidc/callback", true),
        ("http://127.0.0.1:41234/oidc/callback", false),
        ("http://localhost:41234/oidc/callback2", false),
        ("https://localhost:41234/oidc/callback", false),
        ("http://localhost.evil.example:8250/oidc/callback", false),
        ("https://ward.example.com/ui/oidc/callback", true),
        ("https://ward.example.com:8443/ui/oidc/callback", false),
        ("https://evil.example/cb", false),
        ("not a url", false),
    ];
    for (uri, expected) in cases {
        assert_eq!(super::redirect_allowed(uri, &allowed), expected, "{uri}");
    }
    let ipv6 = ["http://[::1]:8250/oidc/callback".to_string()];
    assert!(super::redirect_allowed(
        "http://[::1]:5555/oidc/callback",
        &ipv6
    ));
}

#[tokio::test]
async fn map_fields_accept_json_strings_and_claim_mappings_accept_pairs() {
    let engine = JwtEngine::default();
    let ctx = auth_context("jwt").await;
    // What `ward write auth/jwt/role/r bound_claims='{"ref":"main"}' ...` sends: strings.
    let cases = [
        (
            json!({"bound_claims": "{\"ref\":\"main\",\"n\":[1,2]}", "claim_mappings": "{\"run_id\":\"run\"}"}),
            Ok((
                json!({"ref": "main", "n": [1, 2]}),
                json!({"run_id": "run"}),
            )),
        ),
        (
            json!({"bound_claims": {"ref": "main"}, "claim_mappings": "run_id=run,actor=who"}),
            Ok((
                json!({"ref": "main"}),
                json!({"run_id": "run", "actor": "who"}),
            )),
        ),
        (
            json!({"bound_claims": {"ref": "main"}, "claim_mappings": ["run_id=run"]}),
            Ok((json!({"ref": "main"}), json!({"run_id": "run"}))),
        ),
        (
            json!({"bound_claims": "[\"main\"]"}),
            Err("field \"bound_claims\" must be a map"),
        ),
        (
            json!({"bound_claims": "{not json"}),
            Err("field \"bound_claims\" must be a map"),
        ),
        (
            json!({"bound_claims": {"ref": "main"}, "claim_mappings": "run_id"}),
            Err("invalid claim_mappings pair \"run_id\": expected claim=metadata_key"),
        ),
        (
            json!({"bound_claims": {"ref": "main"}, "claim_mappings": {"run_id": 5}}),
            Err("field \"claim_mappings\" must map strings to strings"),
        ),
    ];
    for (n, (mut body, expected)) in cases.into_iter().enumerate() {
        body["role_type"] = json!("jwt");
        body["user_claim"] = json!("sub");
        let path = format!("role/r{n}");
        let written = call(&engine, &ctx, Operation::Update, &path, body.clone()).await;
        match expected {
            Ok((bound_claims, claim_mappings)) => {
                written.unwrap_or_else(|e| panic!("{body}: {e:?}"));
                let role = call(&engine, &ctx, Operation::Read, &path, json!({}))
                    .await
                    .expect("read")
                    .data
                    .expect("data");
                assert_eq!(role["bound_claims"], bound_claims, "{body}");
                assert_eq!(role["claim_mappings"], claim_mappings, "{body}");
            }
            Err(message) => assert_eq!(written, Err(Error::invalid(message)), "{body}"),
        }
    }
}

/// A token whose signature was verified once is not verified again under the same keys, but
/// every claim still is: a later login with the same bytes fails once the token expired, once
/// the role no longer accepts it, and once the config no longer holds its key.
#[tokio::test]
async fn a_verified_token_is_still_checked_on_every_login() {
    let (engine, ctx) = static_setup(json!({})).await;
    let token = sign(Signer::Rsa("rsa-1"), None, &claims(&ctx, json!({})));
    login(&engine, &ctx, &token).await.expect("first login");
    login(&engine, &ctx, &token)
        .await
        .expect("second login, signature remembered");
    assert_eq!(engine.verified.lock().map(|v| v.len()).ok(), Some(1));

    let mut later = ctx.clone();
    later.now += Duration::seconds(300 + 151);
    assert_eq!(
        error_message(login(&engine, &later, &token).await),
        "error validating token: token is expired (exp)"
    );

    call(
        &engine,
        &ctx,
        Operation::Update,
        "role/r",
        json!({"role_type": "jwt", "user_claim": "user", "bound_audiences": ["other"]}),
    )
    .await
    .expect("role");
    assert!(
        login(&engine, &ctx, &token).await.is_err(),
        "audience rechecked"
    );
    call(
        &engine,
        &ctx,
        Operation::Update,
        "role/r",
        json!({"role_type": "jwt", "user_claim": "user", "bound_audiences": ["ward"]}),
    )
    .await
    .expect("role");
    login(&engine, &ctx, &token).await.expect("accepted again");

    // The key is taken out of the config: the remembered signature goes with it.
    call(
        &engine,
        &ctx,
        Operation::Update,
        "config",
        json!({
            "jwt_validation_pubkeys": [fixture("ec-1.pub.pem")],
            "bound_issuer": "https://issuer.example",
        }),
    )
    .await
    .expect("config");
    assert_eq!(
        error_message(login(&engine, &ctx, &token).await),
        "error validating token: error verifying token signature: no known key successfully validated the token signature"
    );

    // Forged bytes never hit the remembered entry: another signature is verified afresh.
    call(
        &engine,
        &ctx,
        Operation::Update,
        "config",
        json!({
            "jwt_validation_pubkeys": [fixture("rsa-1.pub.pem")],
            "bound_issuer": "https://issuer.example",
        }),
    )
    .await
    .expect("config");
    login(&engine, &ctx, &token).await.expect("verified again");
    let mut forged = token.clone().into_bytes();
    let at = forged.len() - 20;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).expect("ascii");
    assert_eq!(
        error_message(login(&engine, &ctx, &forged).await),
        "error validating token: error verifying token signature: no known key successfully validated the token signature"
    );
}
