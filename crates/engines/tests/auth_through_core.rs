//! The auth methods mounted in a real core: logins are unauthenticated, answer with a token
//! whose policies and metadata come from the role or user, and a failed login leaves no
//! token behind.

use std::sync::Arc;

use serde_json::{json, Value};
use ward_core::request::{Request, Response, Verb};
use ward_core::{Core, CoreConfig, Error};
use ward_storage::InMemory;

async fn setup() -> (Arc<Core>, String) {
    ward_testlog::init("engines-auth_through_core");
    let core = Core::new(
        CoreConfig::default(),
        Arc::new(InMemory::new()),
        ward_engines::registry(),
    );
    let root = core
        .dev_init(None)
        .await
        .expect("dev")
        .root_token
        .to_string();
    for kind in ["userpass", "approle", "jwt", "oidc", "kubernetes"] {
        call(
            &core,
            Verb::Write,
            &format!("sys/auth/{kind}"),
            Some(&root),
            json!({"type": kind}),
        )
        .await
        .unwrap_or_else(|e| panic!("enable {kind}: {e}"));
    }
    (core, root)
}

async fn call(
    core: &Core,
    verb: Verb,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Result<Response, Error> {
    let mut request = Request::new(verb, path).with_data(body);
    if let Some(token) = token {
        request = request.with_token(token);
    }
    request.remote_address = Some("10.1.2.3".into());
    core.handle_request(request).await
}

async fn n_tokens(core: &Core, root: &str) -> usize {
    let listed = call(
        core,
        Verb::List,
        "auth/token/accessors",
        Some(root),
        json!({}),
    )
    .await
    .expect("accessors");
    listed.data.expect("data")["keys"]
        .as_array()
        .map_or(0, Vec::len)
}

#[tokio::test]
async fn userpass_login_through_the_core() {
    let (core, root) = setup().await;
    call(
        &core,
        Verb::Write,
        "auth/userpass/users/alice",
        Some(&root),
        json!({"password": "pw", "token_policies": "dev"}),
    )
    .await
    .expect("user");
    let before = n_tokens(&core, &root).await;
    let failed = call(
        &core,
        Verb::Write,
        "auth/userpass/login/alice",
        None,
        json!({"password": "nope"}),
    )
    .await;
    assert_eq!(
        failed.err(),
        Some(Error::invalid("invalid username or password"))
    );
    assert_eq!(
        n_tokens(&core, &root).await,
        before,
        "a failed login mints no token"
    );

    let auth = call(
        &core,
        Verb::Write,
        "auth/userpass/login/alice",
        None,
        json!({"password": "pw"}),
    )
    .await
    .expect("login")
    .auth
    .expect("auth");
    assert_eq!(auth.policies, ["default", "dev"]);
    assert_eq!(
        auth.metadata.get("username").map(String::as_str),
        Some("alice")
    );
    let me = call(
        &core,
        Verb::Read,
        "auth/token/lookup-self",
        Some(&auth.client_token),
        json!({}),
    )
    .await
    .expect("lookup-self");
    let data = me.data.expect("data");
    assert_eq!(data["display_name"], json!("userpass-alice"));
    assert_eq!(data["path"], json!("auth/userpass/login"));
}

#[tokio::test]
async fn approle_login_through_the_core_with_cidr_bindings() {
    let (core, root) = setup().await;
    call(
        &core,
        Verb::Write,
        "auth/approle/role/web",
        Some(&root),
        json!({"secret_id_bound_cidrs": "10.0.0.0/8", "token_policies": "web"}),
    )
    .await
    .expect("role");
    let role_id = call(
        &core,
        Verb::Read,
        "auth/approle/role/web/role-id",
        Some(&root),
        json!({}),
    )
    .await
    .expect("role-id");
    let role_id = role_id.data.expect("data")["role_id"].clone();
    let created = call(
        &core,
        Verb::Write,
        "auth/approle/role/web/secret-id",
        Some(&root),
        json!({}),
    )
    .await
    .expect("secret-id");
    let secret_id = created.data.expect("data")["secret_id"].clone();
    let auth = call(
        &core,
        Verb::Write,
        "auth/approle/login",
        None,
        json!({"role_id": role_id, "secret_id": secret_id}),
    )
    .await
    .expect("login")
    .auth
    .expect("auth");
    assert_eq!(
        auth.metadata.get("role_name").map(String::as_str),
        Some("web")
    );
    assert!(auth.policies.contains(&"web".to_string()));
    let unauthenticated = call(
        &core,
        Verb::Write,
        "auth/approle/role/web/secret-id",
        None,
        json!({}),
    )
    .await;
    assert!(
        matches!(unauthenticated, Err(Error::PermissionDenied(_))),
        "only login is unauthenticated"
    );
}

/// Failed logins are counted per mount, per source and per identity the login named: a
/// password-guessing run against one user raises the identity alert, whatever the source,
/// and the failures are counted in the metrics by mount and role.
#[tokio::test]
async fn failed_logins_raise_an_alert_per_identity() {
    let (core, root) = setup().await;
    call(
        &core,
        Verb::Write,
        "sys/alerts/config",
        Some(&root),
        json!({"failed_login_threshold": 3, "failed_login_window": 60}),
    )
    .await
    .expect("alert config");
    call(
        &core,
        Verb::Write,
        "auth/userpass/users/alice",
        Some(&root),
        json!({"password": "pw"}),
    )
    .await
    .expect("user");
    for (n, user) in ["Alice", "alice", "ALICE"].iter().enumerate() {
        let mut request = Request::new(Verb::Write, format!("auth/userpass/login/{user}"))
            .with_data(json!({"password": format!("guess-{n}")}));
        // Each guess from another address: only the identity scope sees all three.
        request.remote_address = Some(format!("10.9.9.{n}"));
        assert!(core.handle_request(request).await.is_err());
    }
    let recent = call(
        &core,
        Verb::Read,
        "sys/alerts/recent",
        Some(&root),
        json!({}),
    )
    .await
    .expect("alerts");
    let alerts = recent.data.expect("data")["alerts"].clone();
    let failed: Vec<&Value> = alerts
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|a| a["rule"] == "failed-logins")
        .collect();
    assert!(
        failed
            .iter()
            .any(|a| a["details"]["identity"] == "auth/userpass/user:alice"),
        "{alerts}"
    );
    assert!(
        !failed.iter().any(|a| a["details"]["scope"] == "source"),
        "no single source failed three times: {alerts}"
    );
    assert!(
        !alerts.to_string().contains("guess-"),
        "no password in an alert: {alerts}"
    );
    assert_eq!(
        core.metrics().counter(
            "ward_login_failures_total",
            &[("mount", "auth/userpass/"), ("role", "")]
        ),
        3
    );
}
