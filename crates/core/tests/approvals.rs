//! Control groups and access requests through `handle_request`, with no HTTP: two approvers
//! from different groups release a held read; the requester's own approval, a second
//! approval by the same person, an approval by a non-member and an approval after expiry are
//! refused; unwrapping before approval answers 403 with the status; a used wrapping token
//! cannot be replayed. Access requests with a gatekeeper double (allow, deny, timeout,
//! garbage), built-in rules, approvals, the one-time token and revocation.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Map, Value};
use ward_core::approvals::{Gatekeeper, GatekeeperReply};
use ward_core::request::{Request, Response, Verb};
use ward_core::{Core, CoreConfig, Error};
use ward_storage::InMemory;

const REQUESTER_POLICY: &str = r#"
path "secret/data/prod/*" {
  capabilities = ["read"]
  control_group = {
    ttl = "4h"
    factor "mlops" {
      identity { group_names = ["mlops"]  approvals = 1 }
    }
    factor "secops" {
      identity { group_names = ["secops"]  approvals = 1 }
    }
  }
}
path "secret/data/open/*" { capabilities = ["read"] }
"#;

const APPROVER_POLICY: &str = r#"
path "sys/control-group/authorize" { capabilities = ["update"] }
"#;

struct Setup {
    core: Arc<Core>,
    root: String,
}

struct Person {
    token: String,
    entity_id: String,
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

/// A dev core with userpass, the requester and approver policies, and a KV secret.
async fn setup() -> Setup {
    ward_testlog::init("core-approvals");
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
    call(
        &core,
        Verb::Write,
        "sys/auth/userpass",
        &root,
        json!({"type": "userpass"}),
    )
    .await
    .expect("enable userpass");
    for (name, text) in [
        ("requester", REQUESTER_POLICY),
        ("approver", APPROVER_POLICY),
    ] {
        call(
            &core,
            Verb::Write,
            &format!("sys/policies/acl/{name}"),
            &root,
            json!({"policy": text}),
        )
        .await
        .expect("policy");
    }
    call(
        &core,
        Verb::Write,
        "secret/data/prod/db",
        &root,
        json!({"data": {"password": "hunter2"}}),
    )
    .await
    .expect("write secret");
    Setup { core, root }
}

impl Setup {
    /// A userpass user, logged in, with its entity renamed to the user's name.
    async fn person(&self, name: &str, policies: &str) -> Person {
        let path = format!("auth/userpass/users/{name}");
        call(
            &self.core,
            Verb::Write,
            &path,
            &self.root,
            json!({"password": "correct horse", "token_policies": policies}),
        )
        .await
        .expect("user");
        let login = call(
            &self.core,
            Verb::Write,
            &format!("auth/userpass/login/{name}"),
            "",
            json!({"password": "correct horse"}),
        )
        .await
        .expect("login");
        let auth = login.auth.expect("auth");
        call(
            &self.core,
            Verb::Write,
            &format!("identity/entity/id/{}", auth.entity_id),
            &self.root,
            json!({"name": name}),
        )
        .await
        .expect("rename entity");
        Person {
            token: auth.client_token,
            entity_id: auth.entity_id,
        }
    }

    async fn group(&self, name: &str, members: &[&Person]) {
        let ids: Vec<&str> = members.iter().map(|p| p.entity_id.as_str()).collect();
        call(
            &self.core,
            Verb::Write,
            "identity/group",
            &self.root,
            json!({"name": name, "member_entity_ids": ids}),
        )
        .await
        .expect("group");
    }

    async fn authorize(&self, who: &Person, accessor: &str) -> Result<bool, Error> {
        let response = call(
            &self.core,
            Verb::Write,
            "sys/control-group/authorize",
            &who.token,
            json!({"accessor": accessor}),
        )
        .await?;
        Ok(data(&response)["approved"] == json!(true))
    }

    async fn status(&self, who: &Person, accessor: &str) -> Map<String, Value> {
        let response = call(
            &self.core,
            Verb::Write,
            "sys/control-group/request",
            &who.token,
            json!({"accessor": accessor}),
        )
        .await
        .expect("status");
        data(&response).clone()
    }

    async fn unwrap(&self, who: &Person, token: &str) -> Result<Response, Error> {
        call(
            &self.core,
            Verb::Write,
            "sys/wrapping/unwrap",
            &who.token,
            json!({"token": token}),
        )
        .await
    }
}

struct Cast {
    alice: Person,
    mel: Person,
    sam: Person,
    eve: Person,
}

async fn cast(s: &Setup) -> Cast {
    let cast = Cast {
        alice: s.person("alice", "requester,approver").await,
        mel: s.person("mel", "approver").await,
        sam: s.person("sam", "approver").await,
        eve: s.person("eve", "approver").await,
    };
    s.group("mlops", &[&cast.mel]).await;
    s.group("secops", &[&cast.sam]).await;
    cast
}

/// The held read: a wrapping token, no data.
async fn held_read(s: &Setup, who: &Person) -> (String, String) {
    let response = call(
        &s.core,
        Verb::Read,
        "secret/data/prod/db",
        &who.token,
        json!({}),
    )
    .await
    .expect("held read");
    assert!(response.data.is_none(), "a held request returns no data");
    let wrap = response
        .wrap_info
        .expect("a held request answers with a wrapping token");
    assert_eq!(wrap.creation_path, "secret/data/prod/db");
    assert!(
        wrap.ttl > 3 * 3600 && wrap.ttl <= 4 * 3600,
        "ttl from the policy: {}",
        wrap.ttl
    );
    (wrap.token, wrap.accessor)
}

#[tokio::test]
async fn two_approvers_from_different_groups_release_a_held_read() {
    let s = setup().await;
    let c = cast(&s).await;
    // Paths without a control group are not held.
    call(
        &s.core,
        Verb::Write,
        "secret/data/open/x",
        &s.root,
        json!({"data": {"v": 1}}),
    )
    .await
    .expect("write");
    let open = call(
        &s.core,
        Verb::Read,
        "secret/data/open/x",
        &c.alice.token,
        json!({}),
    )
    .await
    .expect("open read");
    assert!(open.wrap_info.is_none());

    let (token, accessor) = held_read(&s, &c.alice).await;
    let status = s.status(&c.alice, &accessor).await;
    assert_eq!(status["approved"], json!(false));
    assert_eq!(status["request_path"], json!("secret/data/prod/db"));
    assert_eq!(
        status["request_entity"],
        json!({"id": c.alice.entity_id, "name": "alice"})
    );
    assert_eq!(status["authorizations"], json!([]));

    assert!(!s.authorize(&c.mel, &accessor).await.expect("mel approves"));
    assert!(s.authorize(&c.sam, &accessor).await.expect("sam approves"));
    let status = s.status(&c.mel, &accessor).await;
    assert_eq!(status["approved"], json!(true));
    let approvers: Vec<&str> = status["authorizations"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|a| a["entity_name"].as_str())
        .collect();
    assert_eq!(approvers, ["mel", "sam"]);

    let released = s
        .unwrap(&c.alice, &token)
        .await
        .expect("unwrap after approval");
    assert_eq!(data(&released)["data"]["password"], json!("hunter2"));
    assert_eq!(s.status(&c.alice, &accessor).await["status"], json!("used"));
}

#[tokio::test]
async fn unwrap_before_approval_is_403_with_the_status_and_a_used_token_cannot_be_replayed() {
    let s = setup().await;
    let c = cast(&s).await;
    let (token, accessor) = held_read(&s, &c.alice).await;
    match s.unwrap(&c.alice, &token).await {
        Err(Error::PermissionDenied(message)) => {
            assert!(message.contains("request is not yet approved"), "{message}");
            assert!(message.contains("factor \"mlops\": 0 of 1"), "{message}");
        }
        other => panic!("expected 403, got {other:?}"),
    }
    s.authorize(&c.mel, &accessor).await.expect("mel");
    match s.unwrap(&c.alice, &token).await {
        Err(Error::PermissionDenied(message)) => {
            assert!(message.contains("factor \"mlops\": 1 of 1"), "{message}")
        }
        other => panic!("expected 403, got {other:?}"),
    }
    s.authorize(&c.sam, &accessor).await.expect("sam");
    // Only the requesting token unwraps; the approvers cannot take the secret.
    assert!(matches!(
        s.unwrap(&c.mel, &token).await,
        Err(Error::PermissionDenied(_))
    ));
    s.unwrap(&c.alice, &token).await.expect("first unwrap");
    let replay = s.unwrap(&c.alice, &token).await;
    assert!(
        matches!(replay, Err(Error::InvalidRequest(ref m)) if m.contains("wrapping token is not valid")),
        "{replay:?}"
    );
    // And approving a used request is refused.
    assert!(s.authorize(&c.eve, &accessor).await.is_err());
}

#[tokio::test]
async fn own_double_and_non_member_approvals_do_not_count() {
    let s = setup().await;
    let c = cast(&s).await;
    // Alice is in mlops too: still, the requester cannot approve her own request.
    call(
        &s.core,
        Verb::Write,
        "identity/group/name/mlops",
        &s.root,
        json!({"member_entity_ids": [c.mel.entity_id, c.alice.entity_id]}),
    )
    .await
    .expect("add alice to mlops");
    let (token, accessor) = held_read(&s, &c.alice).await;
    let own = s.authorize(&c.alice, &accessor).await;
    assert!(
        matches!(own, Err(Error::PermissionDenied(ref m)) if m.contains("cannot approve their own")),
        "{own:?}"
    );

    let outsider = s.authorize(&c.eve, &accessor).await;
    assert!(
        matches!(outsider, Err(Error::PermissionDenied(ref m)) if m.contains("not a member")),
        "{outsider:?}"
    );

    assert!(!s.authorize(&c.mel, &accessor).await.expect("first"));
    assert!(!s
        .authorize(&c.mel, &accessor)
        .await
        .expect("second, counts once"));
    assert_eq!(
        s.status(&c.sam, &accessor).await["authorizations"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert!(
        s.unwrap(&c.alice, &token).await.is_err(),
        "one factor is still missing"
    );

    // A token without sys/control-group/authorize is refused by the ACL before membership.
    let root_child = call(
        &s.core,
        Verb::Write,
        "auth/token/create",
        &s.root,
        json!({"policies": ["default"]}),
    )
    .await
    .expect("token");
    let token_only = root_child.auth.expect("auth").client_token;
    let denied = call(
        &s.core,
        Verb::Write,
        "sys/control-group/authorize",
        &token_only,
        json!({"accessor": accessor}),
    )
    .await;
    assert!(matches!(denied, Err(Error::PermissionDenied(_))));
}

#[tokio::test]
async fn approvals_after_expiry_are_refused_and_max_ttl_caps_the_wait() {
    let s = setup().await;
    let c = cast(&s).await;
    let (token, accessor) = held_read(&s, &c.alice).await;
    s.authorize(&c.mel, &accessor).await.expect("in time");
    s.core.clock().advance(4 * 3600 + 1);
    let late = s.authorize(&c.sam, &accessor).await;
    assert!(
        matches!(late, Err(Error::InvalidRequest(ref m)) if m.contains("expired")),
        "{late:?}"
    );
    assert!(s.unwrap(&c.alice, &token).await.is_err());
    assert_eq!(
        s.status(&c.alice, &accessor).await["status"],
        json!("expired")
    );

    call(
        &s.core,
        Verb::Write,
        "sys/config/control-group",
        &s.root,
        json!({"max_ttl": "30m"}),
    )
    .await
    .expect("config");
    let config = call(
        &s.core,
        Verb::Read,
        "sys/config/control-group",
        &s.root,
        json!({}),
    )
    .await
    .expect("read config");
    assert_eq!(data(&config)["max_ttl"], json!(1800));
    let response = call(
        &s.core,
        Verb::Read,
        "secret/data/prod/db",
        &c.alice.token,
        json!({}),
    )
    .await
    .expect("held");
    assert!(response.wrap_info.expect("wrap").ttl <= 1800);
}

#[tokio::test]
async fn a_revoked_requester_gets_nothing_and_the_inbox_lists_what_an_approver_can_act_on() {
    let s = setup().await;
    let c = cast(&s).await;
    let (token, accessor) = held_read(&s, &c.alice).await;
    let inbox = call(
        &s.core,
        Verb::Read,
        "sys/control-group/pending",
        &c.mel.token,
        json!({}),
    )
    .await
    .expect("inbox");
    assert_eq!(data(&inbox)["keys"], json!([accessor.clone()]));
    let none = call(
        &s.core,
        Verb::Read,
        "sys/control-group/pending",
        &c.eve.token,
        json!({}),
    )
    .await
    .expect("inbox");
    assert_eq!(data(&none)["keys"], json!([]));
    s.authorize(&c.mel, &accessor).await.expect("mel");
    let after = call(
        &s.core,
        Verb::Read,
        "sys/control-group/pending",
        &c.mel.token,
        json!({}),
    )
    .await
    .expect("inbox");
    assert_eq!(
        data(&after)["keys"],
        json!([]),
        "acted on: gone from mel's inbox"
    );
    s.authorize(&c.sam, &accessor).await.expect("sam");

    call(
        &s.core,
        Verb::Write,
        "auth/token/revoke-self",
        &c.alice.token,
        json!({}),
    )
    .await
    .expect("revoke");
    assert!(matches!(
        s.unwrap(&c.alice, &token).await,
        Err(Error::PermissionDenied(_))
    ));
    // Someone else holding the wrapping token is told the requester is gone.
    let other = s.unwrap(&c.mel, &token).await;
    assert!(
        matches!(other, Err(Error::PermissionDenied(ref m)) if m.contains("revoked")),
        "{other:?}"
    );
}

// ---- access requests ---------------------------------------------------------------------

/// The headers and JSON body of each call a gatekeeper double received.
type Calls = Vec<(Vec<(String, String)>, Value)>;

/// A gatekeeper double: answers with a fixed reply, hangs, or fails; records what it got.
struct FakeGatekeeper {
    behaviour: Behaviour,
    seen: Mutex<Calls>,
}

#[derive(Clone)]
enum Behaviour {
    Reply(u16, &'static str),
    Hang,
}

#[async_trait]
impl Gatekeeper for FakeGatekeeper {
    async fn call(
        &self,
        _url: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<GatekeeperReply, String> {
        self.seen.lock().expect("lock").push((
            headers.to_vec(),
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        ));
        match &self.behaviour {
            Behaviour::Reply(status, body) => Ok(GatekeeperReply {
                status: *status,
                body: body.as_bytes().to_vec(),
            }),
            Behaviour::Hang => {
                tokio::time::sleep(timeout * 10).await;
                Err("hung".into())
            }
        }
    }
}

fn gatekeeper(behaviour: Behaviour) -> Arc<FakeGatekeeper> {
    Arc::new(FakeGatekeeper {
        behaviour,
        seen: Mutex::new(Vec::new()),
    })
}

async fn access_setup() -> (Setup, Cast) {
    let s = setup().await;
    let c = cast(&s).await;
    s.group("agents", &[&c.alice]).await;
    call(
        &s.core,
        Verb::Write,
        "sys/policies/acl/billing",
        &s.root,
        json!({"policy": r#"path "secret/data/billing/*" { capabilities = ["read"] }"#}),
    )
    .await
    .expect("policy");
    call(
        &s.core,
        Verb::Write,
        "secret/data/billing/api",
        &s.root,
        json!({"data": {"key": "pay-123"}}),
    )
    .await
    .expect("secret");
    (s, c)
}

async fn write_role(s: &Setup, name: &str, body: Value) {
    call(
        &s.core,
        Verb::Write,
        &format!("sys/access/roles/{name}"),
        &s.root,
        body,
    )
    .await
    .expect("role");
}

fn webhook_role() -> Value {
    json!({
        "policies": ["billing"],
        "max_ttl": "1h",
        "allowed_requesters": {"group_names": ["agents"]},
        "gatekeeper": {"webhook_url": "http://127.0.0.1:9/gate", "secret": "0123456789abcdef-secret", "timeout": "1s"},
    })
}

async fn ask(
    s: &Setup,
    who: &Person,
    role: &str,
    event_type: &str,
) -> Result<Map<String, Value>, Error> {
    let body = json!({"role": role, "reason": "nightly billing report", "event": {"type": event_type, "id": "run-2026-11-28"}, "ttl": "30m"});
    let response = call(
        &s.core,
        Verb::Write,
        "sys/access/requests",
        &who.token,
        body,
    )
    .await?;
    Ok(data(&response).clone())
}

async fn act(s: &Setup, who: &Person, id: &str, action: &str) -> Result<Map<String, Value>, Error> {
    let response = call(
        &s.core,
        Verb::Write,
        &format!("sys/access/requests/{id}/{action}"),
        &who.token,
        json!({}),
    )
    .await?;
    Ok(data(&response).clone())
}

async fn read_request(s: &Setup, who: &Person, id: &str) -> Result<Map<String, Value>, Error> {
    Ok(data(
        &call(
            &s.core,
            Verb::Read,
            &format!("sys/access/requests/{id}"),
            &who.token,
            json!({}),
        )
        .await?,
    )
    .clone())
}

#[tokio::test]
async fn webhook_gatekeeper_allow_grants_a_child_token_once() {
    let (s, c) = access_setup().await;
    let gate = gatekeeper(Behaviour::Reply(
        200,
        r#"{"decision":"allow","reason":"job is running"}"#,
    ));
    s.core.set_gatekeeper(gate.clone());
    write_role(&s, "billing", webhook_role()).await;
    let request = ask(&s, &c.alice, "billing", "nightly-billing-report")
        .await
        .expect("ask");
    assert_eq!(request["state"], json!("approved"), "{request:?}");
    assert_eq!(request["gatekeeper_reason"], json!("job is running"));
    let id = request["id"].as_str().expect("id").to_string();
    {
        let seen = gate.seen.lock().expect("lock");
        let (headers, body) = &seen[0];
        assert!(headers
            .iter()
            .any(|(k, v)| k == "X-Ward-Signature" && v.starts_with("sha256=")));
        assert_eq!(
            body["event"],
            json!({"type": "nightly-billing-report", "id": "run-2026-11-28"})
        );
        assert_eq!(body["requester"]["entity_id"], json!(c.alice.entity_id));
    }
    // Someone else cannot read it, nor fetch the token.
    assert!(read_request(&s, &c.eve, &id).await.is_err());
    let first = read_request(&s, &c.alice, &id).await.expect("first read");
    assert_eq!(first["state"], json!("active"));
    let granted = first["token"]
        .as_str()
        .expect("token returned once")
        .to_string();
    assert!(first["token_ttl"]
        .as_u64()
        .is_some_and(|t| t > 0 && t <= 1800));
    let second = read_request(&s, &c.alice, &id).await.expect("second read");
    assert!(second.get("token").is_none(), "the token is returned once");

    let secret = call(
        &s.core,
        Verb::Read,
        "secret/data/billing/api",
        &granted,
        json!({}),
    )
    .await
    .expect("elevated read");
    assert_eq!(data(&secret)["data"]["key"], json!("pay-123"));
    // A child of the requester's token: revoking the parent revokes the grant.
    let lookup = call(
        &s.core,
        Verb::Read,
        "auth/token/lookup-self",
        &granted,
        json!({}),
    )
    .await
    .expect("lookup");
    assert_eq!(data(&lookup)["entity_id"], json!(c.alice.entity_id));

    // The grant ends with its TTL.
    s.core.clock().advance(1801);
    assert!(call(
        &s.core,
        Verb::Read,
        "secret/data/billing/api",
        &granted,
        json!({})
    )
    .await
    .is_err());
    assert_eq!(
        read_request(&s, &c.alice, &id).await.expect("read")["state"],
        json!("expired")
    );
}

#[tokio::test]
async fn webhook_deny_timeout_and_garbage_all_deny() {
    for (behaviour, expected) in [
        (
            Behaviour::Reply(
                200,
                r#"{"decision":"deny","reason":"no billing run tonight"}"#,
            ),
            "no billing run tonight",
        ),
        (Behaviour::Hang, "timed out"),
        (
            Behaviour::Reply(200, "<html>surprise</html>"),
            "not a JSON object",
        ),
        (
            Behaviour::Reply(200, r#"{"decision":"perhaps"}"#),
            "no decision",
        ),
        (Behaviour::Reply(503, r#"{"decision":"allow"}"#), "HTTP 503"),
    ] {
        let (s, c) = access_setup().await;
        s.core.set_gatekeeper(gatekeeper(behaviour));
        write_role(&s, "billing", webhook_role()).await;
        let request = ask(&s, &c.alice, "billing", "nightly-billing-report")
            .await
            .expect("ask");
        assert_eq!(request["state"], json!("denied"), "{expected}: {request:?}");
        let reason = request["gatekeeper_reason"].as_str().unwrap_or_default();
        assert!(reason.contains(expected), "{expected}: {reason}");
        let id = request["id"].as_str().expect("id");
        assert!(read_request(&s, &c.alice, id)
            .await
            .expect("read")
            .get("token")
            .is_none());
    }
    // No gatekeeper client at all: deny, never allow.
    let (s, c) = access_setup().await;
    write_role(&s, "billing", webhook_role()).await;
    let request = ask(&s, &c.alice, "billing", "nightly-billing-report")
        .await
        .expect("ask");
    assert_eq!(request["state"], json!("denied"));
}

#[tokio::test]
async fn built_in_rules_approvals_and_revocation() {
    let (s, c) = access_setup().await;
    write_role(&s, "billing", json!({
        "policies": ["billing"],
        "max_ttl": "2h",
        "allowed_requesters": {"group_names": ["agents"]},
        "rules": {
            "required_event_types": ["nightly-billing-report"],
            "time_windows": [{"days": [], "start": "00:00", "end": "24:00", "time_zone": "+02:00"}],
            "max_concurrent": 1
        },
        "approvals": {"group_names": ["mlops", "secops"], "count": 2},
    }))
    .await;
    // Not in the allowed requesters.
    assert!(matches!(
        ask(&s, &c.eve, "billing", "nightly-billing-report").await,
        Err(Error::PermissionDenied(_))
    ));
    // The wrong event type.
    let wrong = ask(&s, &c.alice, "billing", "ad-hoc").await.expect("ask");
    assert_eq!(wrong["state"], json!("denied"));

    let request = ask(&s, &c.alice, "billing", "nightly-billing-report")
        .await
        .expect("ask");
    assert_eq!(request["state"], json!("pending-approval"));
    let id = request["id"].as_str().expect("id").to_string();
    assert!(
        matches!(
            act(&s, &c.alice, &id, "approve").await,
            Err(Error::PermissionDenied(_))
        ),
        "own approval"
    );
    assert!(
        matches!(
            act(&s, &c.eve, &id, "approve").await,
            Err(Error::PermissionDenied(_))
        ),
        "non-member"
    );
    // The approver's inbox lists it.
    let inbox = call(
        &s.core,
        Verb::List,
        "sys/access/requests/",
        &c.mel.token,
        json!({}),
    )
    .await
    .expect("inbox");
    assert_eq!(data(&inbox)["keys"], json!([id.clone()]));
    assert_eq!(
        act(&s, &c.mel, &id, "approve").await.expect("mel")["state"],
        json!("pending-approval")
    );
    assert_eq!(
        act(&s, &c.mel, &id, "approve").await.expect("mel again")["approvals"]["received"],
        json!(1),
        "counts once"
    );
    assert_eq!(
        act(&s, &c.sam, &id, "approve").await.expect("sam")["state"],
        json!("approved")
    );

    let token = read_request(&s, &c.alice, &id).await.expect("fetch")["token"]
        .as_str()
        .expect("token")
        .to_string();
    call(
        &s.core,
        Verb::Read,
        "secret/data/billing/api",
        &token,
        json!({}),
    )
    .await
    .expect("elevated read");
    // max_concurrent = 1: a second grant is refused while the first is active.
    let second = ask(&s, &c.alice, "billing", "nightly-billing-report")
        .await
        .expect("ask");
    assert_eq!(second["state"], json!("denied"));
    assert!(second["gatekeeper_reason"]
        .as_str()
        .unwrap_or_default()
        .contains("max_concurrent"));

    // An approver revokes: the token stops working at once.
    let revoked = call(
        &s.core,
        Verb::Write,
        &format!("sys/access/requests/{id}/revoke"),
        &c.sam.token,
        json!({"reason": "done"}),
    )
    .await
    .expect("revoke");
    assert_eq!(data(&revoked)["state"], json!("revoked"));
    assert!(call(
        &s.core,
        Verb::Read,
        "secret/data/billing/api",
        &token,
        json!({})
    )
    .await
    .is_err());
    let history: Vec<String> = data(&revoked)["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["event"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        history,
        [
            "pending-gatekeeper",
            "pending-approval",
            "authorized",
            "authorized",
            "approved",
            "active",
            "revoked"
        ]
    );

    // A deny ends a pending request.
    let third = ask(&s, &c.alice, "billing", "nightly-billing-report")
        .await
        .expect("ask");
    let third_id = third["id"].as_str().expect("id");
    let denied = call(
        &s.core,
        Verb::Write,
        &format!("sys/access/requests/{third_id}/deny"),
        &c.mel.token,
        json!({"reason": "not tonight"}),
    )
    .await
    .expect("deny");
    assert_eq!(data(&denied)["state"], json!("denied"));
}

#[tokio::test]
async fn named_time_zones_are_refused_with_a_clear_message() {
    let (s, _c) = access_setup().await;
    let refused = call(&s.core, Verb::Write, "sys/access/roles/tz", &s.root, json!({
        "policies": ["billing"],
        "allowed_requesters": {"group_names": ["agents"]},
        "rules": {"time_windows": [{"start": "09:00", "end": "17:00", "time_zone": "Europe/Paris"}]},
    }))
    .await;
    assert!(
        matches!(refused, Err(Error::InvalidRequest(ref m)) if m.contains("fixed offset")),
        "{refused:?}"
    );
    // The webhook secret is never read back.
    write_role(&s, "billing", webhook_role()).await;
    let role = call(
        &s.core,
        Verb::Read,
        "sys/access/roles/billing",
        &s.root,
        json!({}),
    )
    .await
    .expect("read");
    let text = serde_json::to_string(data(&role)).expect("json");
    assert!(!text.contains("0123456789abcdef-secret"));
    assert_eq!(data(&role)["gatekeeper"]["secret_set"], json!(true));
}
