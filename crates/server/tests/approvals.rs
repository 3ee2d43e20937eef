//! The approvals pieces that need the server: the HTTP gatekeeper against a local webhook on
//! port 0 (allow with a verified signature, deny, timeout, garbage), and the web UI through
//! the handler with no socket (sign-in, security headers, CSRF refusal, escaping, approving
//! a control-group request in the inbox).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use ward_core::request::{Request as CoreRequest, Response, Verb};
use ward_core::{Core, CoreConfig, Error};
use ward_server::gatekeeper::HttpGatekeeper;
use ward_server::Handler;

const ROOT: &str = "root-token-for-approval-tests";
const SECRET: &str = "webhook-secret-0123456789";

async fn dev_core() -> Arc<Core> {
    ward_testlog::init("server-approvals");
    let core = Core::new(
        CoreConfig::default(),
        Arc::new(ward_storage::InMemory::new()),
        ward_engines::registry(),
    );
    core.dev_init(Some(ROOT)).await.expect("dev init");
    core
}

async fn call(
    core: &Core,
    verb: Verb,
    path: &str,
    token: &str,
    data: Value,
) -> Result<Response, Error> {
    let request = CoreRequest::new(verb, path).with_data(data);
    let request = if token.is_empty() {
        request
    } else {
        request.with_token(token)
    };
    core.handle_request(request).await
}

/// Userpass users in groups, a requester policy with a two-factor control group, an approver
/// policy, a KV secret, and an access role. Returns the requester's token.
async fn populate(core: &Core) -> String {
    call(
        core,
        Verb::Write,
        "sys/auth/userpass",
        ROOT,
        json!({"type": "userpass"}),
    )
    .await
    .expect("userpass");
    let requester = r#"path "secret/data/prod/*" {
  capabilities = ["read"]
  control_group = {
    factor "mlops" { identity { group_names = ["mlops"]  approvals = 1 } }
    factor "secops" { identity { group_names = ["secops"]  approvals = 1 } }
  }
}"#;
    call(
        core,
        Verb::Write,
        "sys/policies/acl/requester",
        ROOT,
        json!({"policy": requester}),
    )
    .await
    .expect("policy");
    call(
        core,
        Verb::Write,
        "sys/policies/acl/approver",
        ROOT,
        json!({"policy": r#"path "sys/control-group/authorize" { capabilities = ["update"] }"#}),
    )
    .await
    .expect("policy");
    call(
        core,
        Verb::Write,
        "secret/data/prod/db",
        ROOT,
        json!({"data": {"password": "hunter2"}}),
    )
    .await
    .expect("secret");
    let mut entities = Vec::new();
    for (name, policies) in [
        ("alice", "requester"),
        ("mel", "approver"),
        ("sam", "approver"),
    ] {
        call(
            core,
            Verb::Write,
            &format!("auth/userpass/users/{name}"),
            ROOT,
            json!({"password": "pw-for-tests", "token_policies": policies}),
        )
        .await
        .expect("user");
        let login = call(
            core,
            Verb::Write,
            &format!("auth/userpass/login/{name}"),
            "",
            json!({"password": "pw-for-tests"}),
        )
        .await
        .expect("login");
        let auth = login.auth.expect("auth");
        call(
            core,
            Verb::Write,
            &format!("identity/entity/id/{}", auth.entity_id),
            ROOT,
            json!({"name": name}),
        )
        .await
        .expect("name");
        entities.push((auth.entity_id, auth.client_token));
    }
    for (group, index) in [("mlops", 1), ("secops", 2), ("agents", 0)] {
        call(
            core,
            Verb::Write,
            "identity/group",
            ROOT,
            json!({"name": group, "member_entity_ids": [entities[index].0]}),
        )
        .await
        .expect("group");
    }
    entities[0].1.clone()
}

// ---- the HTTP gatekeeper -----------------------------------------------------------------

/// A webhook on port 0: answers by path, records each body and signature header.
async fn webhook() -> (String, Arc<Mutex<Vec<(String, Vec<u8>)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, body) = loop {
                    let Ok(n) = stream.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buffer[..end]).to_string();
                        let length: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        while buffer.len() < end + 4 + length {
                            match stream.read(&mut chunk).await {
                                Ok(n) if n > 0 => buffer.extend_from_slice(&chunk[..n]),
                                _ => return,
                            }
                        }
                        break (head, buffer[end + 4..end + 4 + length].to_vec());
                    }
                };
                let signature = head
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("x-ward-signature: ")
                            .or_else(|| l.strip_prefix("X-Ward-Signature: "))
                    })
                    .unwrap_or_default()
                    .to_string();
                record.lock().expect("lock").push((signature, body));
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let answer = match path.as_str() {
                    "/allow" => {
                        r#"{"decision":"allow","reason":"billing job run-2026-11-28 is running"}"#
                    }
                    "/deny" => r#"{"decision":"deny","reason":"no billing job is running"}"#,
                    "/garbage" => "this is not JSON",
                    _ => {
                        // "/slow": answers after the role's 1s timeout.
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        r#"{"decision":"allow"}"#
                    }
                };
                let response = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}", answer.len());
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    (url, seen)
}

#[tokio::test]
async fn the_http_gatekeeper_signs_and_only_a_clear_allow_allows() {
    let core = dev_core().await;
    core.set_gatekeeper(Arc::new(HttpGatekeeper::new().expect("client")));
    let alice = populate(&core).await;
    let (url, seen) = webhook().await;
    for (path, state, reason) in [
        (
            "/allow",
            "approved",
            "billing job run-2026-11-28 is running",
        ),
        ("/deny", "denied", "no billing job is running"),
        ("/garbage", "denied", "not a JSON object"),
        ("/slow", "denied", "timed out"),
    ] {
        let role = json!({
            "policies": ["default"],
            "max_ttl": "1h",
            "allowed_requesters": {"group_names": ["agents"]},
            "gatekeeper": {"webhook_url": format!("{url}{path}"), "secret": SECRET, "timeout": "1s"},
        });
        call(&core, Verb::Write, "sys/access/roles/billing", ROOT, role)
            .await
            .expect("role");
        let body = json!({"role": "billing", "reason": "nightly report", "event": {"type": "nightly-billing-report", "id": "run-2026-11-28"}});
        let response = call(&core, Verb::Write, "sys/access/requests", &alice, body)
            .await
            .expect("request");
        let data = response.data.expect("data");
        assert_eq!(data["state"], json!(state), "{path}: {data:?}");
        assert!(
            data["gatekeeper_reason"]
                .as_str()
                .unwrap_or_default()
                .contains(reason),
            "{path}: {data:?}"
        );
    }
    let seen = seen.lock().expect("lock");
    let (signature, body) = &seen[0];
    assert_eq!(
        signature,
        &ward_core::alerts::signature(SECRET, body),
        "the signature is HMAC-SHA256 of the body"
    );
    let body: Value = serde_json::from_slice(body).expect("JSON body");
    assert_eq!(body["event"]["id"], json!("run-2026-11-28"));
    assert_eq!(body["role"], json!("billing"));
}

// ---- the web UI through the handler --------------------------------------------------------

struct Browser {
    handler: Handler,
    cookies: Vec<(String, String)>,
}

struct Page {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl Browser {
    async fn send(&mut self, method: &str, uri: &str, form: Option<&[(&str, &str)]>) -> Page {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "127.0.0.1:8200");
        if !cookie.is_empty() {
            builder = builder.header("cookie", cookie.join("; "));
        }
        let body = match form {
            Some(fields) => {
                builder = builder.header("content-type", "application/x-www-form-urlencoded");
                fields
                    .iter()
                    .map(|(k, v)| format!("{k}={}", encode(v)))
                    .collect::<Vec<_>>()
                    .join("&")
            }
            None => String::new(),
        };
        let response = self
            .handler
            .handle(
                builder.body(Full::new(Bytes::from(body))).expect("request"),
                Some("127.0.0.1"),
            )
            .await;
        let status = response.status();
        let headers = response.headers().clone();
        for value in headers.get_all("set-cookie") {
            let text = value.to_str().expect("ascii");
            let pair = text.split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                self.cookies.retain(|(name, _)| name != k);
                if !v.is_empty() {
                    self.cookies.push((k.to_string(), v.to_string()));
                }
            }
        }
        let body = String::from_utf8(
            response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes()
                .to_vec(),
        )
        .expect("utf-8");
        Page {
            status,
            headers,
            body,
        }
    }

    fn csrf(&self) -> String {
        self.cookies
            .iter()
            .find(|(k, _)| k == "ward_csrf")
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    async fn sign_in(&mut self, user: &str) {
        let login = self.send("GET", "/ui/login", None).await;
        assert_eq!(login.status, StatusCode::OK);
        let csrf = self.csrf();
        assert!(
            login
                .body
                .contains(&format!(r#"name="csrf" value="{csrf}""#)),
            "the form carries the CSRF token"
        );
        let signed = self
            .send(
                "POST",
                "/ui/login/userpass",
                Some(&[
                    ("csrf", &csrf),
                    ("username", user),
                    ("password", "pw-for-tests"),
                    ("mount", "userpass"),
                ]),
            )
            .await;
        assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
        assert_ne!(self.csrf(), csrf, "signing in starts a new session");
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn ui_sign_in_headers_csrf_escaping_and_inbox_approval() {
    let core = dev_core().await;
    let alice = populate(&core).await;
    let handler = Handler::new(core.clone(), None).with_ui(false);
    let mut mel = Browser {
        handler: handler.clone(),
        cookies: Vec::new(),
    };

    // Not signed in: sent to the sign-in page.
    let first = mel.send("GET", "/ui/", None).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    assert_eq!(
        first.headers.get("location").and_then(|v| v.to_str().ok()),
        Some("/ui/login")
    );

    // A sign-in without the CSRF token is refused.
    mel.send("GET", "/ui/login", None).await;
    let forged = mel
        .send(
            "POST",
            "/ui/login/userpass",
            Some(&[("username", "mel"), ("password", "pw-for-tests")]),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    mel.sign_in("mel").await;
    let session_cookie = mel
        .cookies
        .iter()
        .find(|(k, _)| k == "ward_session")
        .map(|(_, v)| v.clone())
        .expect("session cookie");

    // A held request and an access request whose event id carries markup.
    let held = call(&core, Verb::Read, "secret/data/prod/db", &alice, json!({}))
        .await
        .expect("held");
    let wrap = held.wrap_info.expect("wrap info");
    call(
        &core,
        Verb::Write,
        "sys/access/roles/billing",
        ROOT,
        json!({
            "policies": ["default"], "allowed_requesters": {"group_names": ["agents"]},
            "approvals": {"group_names": ["mlops"], "count": 1},
        }),
    )
    .await
    .expect("role");
    call(&core, Verb::Write, "sys/access/requests", &alice, json!({
        "role": "billing", "reason": "report <b>now</b>", "event": {"type": "nightly", "id": "<script>alert(1)</script>"},
    }))
    .await
    .expect("access request");

    let inbox = mel.send("GET", "/ui/", None).await;
    assert_eq!(inbox.status, StatusCode::OK);
    let header = |name: &str| {
        inbox
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(header("content-security-policy"), "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("referrer-policy"), "no-referrer");
    assert!(inbox.body.contains("secret/data/prod/db"));
    assert!(inbox.body.contains("alice"));
    assert!(
        inbox.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the event id is shown as text"
    );
    assert!(
        !inbox.body.contains("<script>"),
        "no markup from a request reaches the page"
    );
    assert!(
        !inbox.body.contains(&session_cookie),
        "the session id is never in a page"
    );
    assert!(!inbox.body.contains(&alice), "no token in a page");

    // Approving without the CSRF token is refused and records nothing.
    let action = format!("/ui/requests/control-group/{}/approve", wrap.accessor);
    let forged = mel.send("POST", &action, Some(&[])).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let wrong = mel
        .send("POST", &action, Some(&[("csrf", "not-the-token")]))
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let status = call(
        &core,
        Verb::Write,
        "sys/control-group/request",
        ROOT,
        json!({"accessor": wrap.accessor}),
    )
    .await
    .expect("status");
    assert_eq!(status.data.expect("data")["authorizations"], json!([]));

    // With it, the approval is recorded and the detail page shows who approved.
    let csrf = mel.csrf();
    let approved = mel.send("POST", &action, Some(&[("csrf", &csrf)])).await;
    assert_eq!(approved.status, StatusCode::SEE_OTHER, "{}", approved.body);
    let location = approved
        .headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let detail = mel.send("GET", &location, None).await;
    assert!(detail.body.contains("Your approval was recorded."));
    assert!(detail.body.contains("mel"));

    // Signing out ends the session: the old cookie no longer opens the inbox.
    let csrf = mel.csrf();
    mel.send("POST", "/ui/logout", Some(&[("csrf", &csrf)]))
        .await;
    let mut replay = Browser {
        handler,
        cookies: vec![("ward_session".into(), session_cookie)],
    };
    assert_eq!(
        replay.send("GET", "/ui/", None).await.status,
        StatusCode::SEE_OTHER
    );
}
