//! HTTP tests through the handler, with no socket: what a Vault client sees on the wire.
//! The last tests use real sockets on port 0, plaintext and TLS (with and without client
//! certificates), with the fixtures under `tests/fixtures/`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use ward_core::{Core, CoreConfig};
use ward_server::config;
use ward_server::serve::{self, BoundListener};
use ward_server::Handler;

const ROOT: &str = "root-token-for-tests";
const LIMIT: u64 = 1024;

async fn dev_handler() -> Handler {
    let core = new_core();
    core.dev_init(Some(ROOT)).await.expect("dev init");
    Handler::new(core, Some(LIMIT))
}

fn new_core() -> Arc<Core> {
    ward_testlog::init("server-http");
    Core::new(
        CoreConfig::default(),
        Arc::new(ward_storage::InMemory::new()),
        ward_engines::registry(),
    )
}

struct Reply {
    status: StatusCode,
    content_type: Option<String>,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn errors(&self) -> Vec<String> {
        assert_eq!(
            self.content_type.as_deref(),
            Some("application/json"),
            "errors need exactly application/json"
        );
        serde_json::from_value(self.json()["errors"].clone()).expect("errors list")
    }
}

async fn send(handler: &Handler, request: Request<Full<Bytes>>) -> Reply {
    let response = handler.handle(request, Some("127.0.0.1")).await;
    let status = response.status();
    let headers = response.headers().clone();
    let content_type = headers
        .get("content-type")
        .map(|v| v.to_str().expect("ascii").to_string());
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Reply {
        status,
        content_type,
        headers,
        body,
    }
}

fn request(method: &str, uri: &str, token: Option<&str>, body: &str) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("method"))
        .uri(uri);
    if let Some(token) = token {
        builder = builder.header("X-Vault-Token", token);
    }
    builder
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request")
}

async fn call(handler: &Handler, method: &str, uri: &str, body: &str) -> Reply {
    send(handler, request(method, uri, Some(ROOT), body)).await
}

#[tokio::test]
async fn kv_read_has_the_vault_envelope() {
    let handler = dev_handler().await;
    let put = call(
        &handler,
        "PUT",
        "/v1/secret/data/app",
        r#"{"data": {"password": "hunter2"}}"#,
    )
    .await;
    assert_eq!(put.status, StatusCode::OK);
    assert_eq!(put.json()["data"]["version"], 1);
    let read = call(&handler, "GET", "/v1/secret/data/app", "").await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        read.headers.get("cache-control").map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );
    let body = read.json();
    let keys: Vec<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "auth",
            "data",
            "lease_duration",
            "lease_id",
            "mount_type",
            "renewable",
            "request_id",
            "warnings",
            "wrap_info"
        ]
    );
    assert_eq!(body["data"]["data"]["password"], "hunter2");
    assert_eq!(body["lease_id"], "");
    assert_eq!(body["renewable"], false);
    assert_eq!(body["auth"], Value::Null);
    assert_eq!(body["wrap_info"], Value::Null);
    assert_eq!(body["warnings"], Value::Null);
    assert_eq!(body["mount_type"], "kv");
    assert_eq!(body["request_id"].as_str().map(str::len), Some(36));
}

#[tokio::test]
async fn writes_without_data_answer_204_with_no_body() {
    let handler = dev_handler().await;
    let reply = call(
        &handler,
        "POST",
        "/v1/sys/mounts/kv1",
        r#"{"type": "kv", "options": {"version": "1"}}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{:?}", reply.body);
    assert!(reply.body.is_empty());
    assert_eq!(reply.content_type, None);
    let reply = call(&handler, "PUT", "/v1/kv1/foo", r#"{"a": "b"}"#).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let reply = call(&handler, "DELETE", "/v1/kv1/foo", "").await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn errors_are_json_lists_with_the_right_status() {
    let handler = dev_handler().await;
    let missing = call(&handler, "GET", "/v1/secret/data/missing", "").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.errors(), Vec::<String>::new());
    assert_eq!(missing.body, Bytes::from_static(b"{\"errors\":[]}"));

    let no_token = send(
        &handler,
        request("GET", "/v1/secret/data/missing", None, ""),
    )
    .await;
    assert_eq!(no_token.status, StatusCode::FORBIDDEN);
    assert_eq!(no_token.errors(), ["permission denied"]);

    let bad_token = send(
        &handler,
        request("GET", "/v1/secret/data/missing", Some("nope"), ""),
    )
    .await;
    assert_eq!(bad_token.status, StatusCode::FORBIDDEN);

    let unmounted = call(&handler, "GET", "/v1/nothing/here", "").await;
    assert_eq!(unmounted.status, StatusCode::NOT_FOUND);
    assert!(unmounted.errors()[0].contains("unsupported path"));

    let outside = call(&handler, "GET", "/v2/secret/data/x", "").await;
    assert_eq!(outside.status, StatusCode::NOT_FOUND);
    assert_eq!(outside.errors(), Vec::<String>::new());

    let verb = call(&handler, "OPTIONS", "/v1/secret/data/x", "").await;
    assert_eq!(verb.status, StatusCode::METHOD_NOT_ALLOWED);
    let head = call(&handler, "HEAD", "/v1/secret/data/x", "").await;
    assert_eq!(head.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn soft_deleted_kv_v2_version_is_a_404_with_metadata() {
    let handler = dev_handler().await;
    call(
        &handler,
        "PUT",
        "/v1/secret/data/gone",
        r#"{"data": {"a": "b"}}"#,
    )
    .await;
    assert_eq!(
        call(&handler, "DELETE", "/v1/secret/data/gone", "")
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let reply = call(&handler, "GET", "/v1/secret/data/gone", "").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.errors(), Vec::<String>::new());
    let body = reply.json();
    assert_ne!(body["data"]["metadata"]["deletion_time"], "");
    assert_eq!(body["data"]["data"], Value::Null);
}

#[tokio::test]
async fn list_verb_and_list_query_are_the_same() {
    let handler = dev_handler().await;
    for name in ["b", "a", "dir/c"] {
        call(
            &handler,
            "PUT",
            &format!("/v1/secret/data/{name}"),
            r#"{"data": {"x": "y"}}"#,
        )
        .await;
    }
    let verb = call(&handler, "LIST", "/v1/secret/metadata", "").await;
    let query = call(&handler, "GET", "/v1/secret/metadata/?list=true", "").await;
    assert_eq!(verb.status, StatusCode::OK);
    assert_eq!(verb.json()["data"]["keys"], json!(["a", "b", "dir/"]));
    assert_eq!(query.json()["data"], verb.json()["data"]);
    let not_list = call(&handler, "GET", "/v1/secret/metadata/a?list=false", "").await;
    assert_eq!(not_list.status, StatusCode::OK);
    assert_eq!(not_list.json()["data"]["current_version"], 1);
    let bad = call(&handler, "GET", "/v1/secret/metadata/?list=maybe", "").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let empty = call(&handler, "LIST", "/v1/secret/metadata/nothing", "").await;
    assert_eq!(empty.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn token_comes_from_x_vault_token_or_bearer() {
    let handler = dev_handler().await;
    let bearer = Request::builder()
        .uri("/v1/auth/token/lookup-self")
        .header("Authorization", format!("Bearer {ROOT}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let reply = send(&handler, bearer).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["data"]["policies"], json!(["root"]));
    // X-Vault-Token wins over Authorization.
    let both = Request::builder()
        .uri("/v1/auth/token/lookup-self")
        .header("X-Vault-Token", "wrong")
        .header("Authorization", format!("Bearer {ROOT}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    assert_eq!(send(&handler, both).await.status, StatusCode::FORBIDDEN);
    let basic = Request::builder()
        .uri("/v1/auth/token/lookup-self")
        .header("Authorization", "Basic cm9vdDpyb290")
        .body(Full::new(Bytes::new()))
        .expect("request");
    assert_eq!(send(&handler, basic).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn wrap_ttl_header_wraps_the_response() {
    let handler = dev_handler().await;
    call(
        &handler,
        "PUT",
        "/v1/secret/data/wrapped",
        r#"{"data": {"k": "v"}}"#,
    )
    .await;
    let mut wrapped = request("GET", "/v1/secret/data/wrapped", Some(ROOT), "");
    wrapped
        .headers_mut()
        .insert("X-Vault-Wrap-TTL", "5m".parse().expect("header"));
    let reply = send(&handler, wrapped).await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["data"], Value::Null);
    assert_eq!(body["wrap_info"]["ttl"], 300);
    assert_eq!(body["wrap_info"]["creation_path"], "secret/data/wrapped");
    let token = body["wrap_info"]["token"]
        .as_str()
        .expect("wrapping token")
        .to_string();
    let unwrapped = send(
        &handler,
        request("POST", "/v1/sys/wrapping/unwrap", Some(&token), ""),
    )
    .await;
    assert_eq!(unwrapped.status, StatusCode::OK);
    assert_eq!(unwrapped.json()["data"]["data"]["k"], "v");

    for bad in ["soon", "-5", "5 minutes"] {
        let mut request = request("GET", "/v1/secret/data/wrapped", Some(ROOT), "");
        request
            .headers_mut()
            .insert("X-Vault-Wrap-TTL", bad.parse().expect("header"));
        let reply = send(&handler, request).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(reply.errors()[0].contains("X-Vault-Wrap-TTL"));
    }
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let handler = dev_handler().await;
    let big = format!(r#"{{"data": {{"k": "{}"}}}}"#, "x".repeat(LIMIT as usize));
    // Without Content-Length the limit applies while the body streams in.
    let reply = call(&handler, "PUT", "/v1/secret/data/big", &big).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.errors(), ["request body too large"]);
    // With a declared length it applies before reading.
    let mut declared = request("PUT", "/v1/secret/data/big", Some(ROOT), &big);
    declared.headers_mut().insert(
        "content-length",
        big.len().to_string().parse().expect("header"),
    );
    assert_eq!(
        send(&handler, declared).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    assert_eq!(
        call(&handler, "GET", "/v1/secret/data/big", "")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Raw endpoints share the limit.
    let reply = send(&handler, request("PUT", "/v1/sys/unseal", None, &big)).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn patch_needs_the_merge_patch_content_type() {
    let handler = dev_handler().await;
    call(
        &handler,
        "PUT",
        "/v1/secret/data/p",
        r#"{"data": {"a": "1"}}"#,
    )
    .await;
    let plain = call(
        &handler,
        "PATCH",
        "/v1/secret/data/p",
        r#"{"data": {"b": "2"}}"#,
    )
    .await;
    assert_eq!(plain.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(plain.errors()[0].contains("application/merge-patch+json"));
    let mut patch = request(
        "PATCH",
        "/v1/secret/data/p",
        Some(ROOT),
        r#"{"data": {"b": "2"}}"#,
    );
    patch.headers_mut().insert(
        "content-type",
        "application/merge-patch+json; charset=utf-8"
            .parse()
            .expect("header"),
    );
    let reply = send(&handler, patch).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let read = call(&handler, "GET", "/v1/secret/data/p", "").await;
    assert_eq!(read.json()["data"]["data"], json!({"a": "1", "b": "2"}));
}

#[tokio::test]
async fn traversal_corpus_is_refused_and_valid_paths_reach_the_core_as_validated() {
    let handler = dev_handler().await;
    for uri in [
        "/v1/secret/data/a/../b",
        "/v1/secret/data/%2e%2e/b",
        "/v1/secret/%2E%2e%2Fsys/mounts",
        "/v1/secret/data/..%2f..%2fsys",
        "/v1/secret/./data/b",
        "/v1/secret//data/b",
        "/v1//sys/mounts",
        "/v1/secret/data/a%00b",
        "/v1/secret/data/%252e%252e/b",
        "/v1/secret/data/a%5c..%5cb",
        "/v1/secret/data/%zz",
        "/v1/sys/%2e%2e/secret/data/b",
    ] {
        for method in ["GET", "PUT", "LIST", "DELETE"] {
            let reply = call(&handler, method, uri, r#"{"data": {"a": "b"}}"#).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{method} {uri}");
            assert!(!reply.errors().is_empty());
        }
    }
    // Decoded once, and stored under exactly the decoded name.
    let reply = call(
        &handler,
        "PUT",
        "/v1/secret/data/a%20b%2fc",
        r#"{"data": {"k": "v"}}"#,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let list = call(&handler, "LIST", "/v1/secret/metadata/a%20b", "").await;
    assert_eq!(list.json()["data"]["keys"], json!(["c"]));
    let read = call(&handler, "GET", "/v1/secret/data/a%20b/c", "").await;
    assert_eq!(read.json()["data"]["data"]["k"], "v");
}

#[tokio::test]
async fn malformed_json_is_refused_and_nothing_is_written() {
    let handler = dev_handler().await;
    for body in [
        &b"{\"data\": {\"k\": \"v\""[..],
        b"{\"data\": {\"k\": \"v\"}} garbage",
        b"[\"data\"]",
        b"\"top-secret\"",
        b"{\"data\": {\"k\": \"\xff\xfe\"}}",
        b"{\"data\": {\"k\": \"1\"}, \"data\": {\"k\": \"2\"}}",
    ] {
        let request = Request::builder()
            .method("PUT")
            .uri("/v1/secret/data/json")
            .header("X-Vault-Token", ROOT)
            .body(Full::new(Bytes::copy_from_slice(body)))
            .expect("request");
        let reply = send(&handler, request).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{:?}",
            String::from_utf8_lossy(body)
        );
        let message = reply.errors().join(" ");
        assert!(
            message.starts_with("failed to parse JSON input"),
            "{message}"
        );
        assert!(
            !message.contains("top-secret") && !message.contains("garbage"),
            "{message}"
        );
    }
    assert_eq!(
        call(&handler, "GET", "/v1/secret/data/json", "")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // An empty body is an empty object.
    let reply = call(&handler, "PUT", "/v1/sys/policies/acl/empty", "").await;
    assert_eq!(
        reply.status,
        StatusCode::BAD_REQUEST,
        "a policy write without a policy is refused by the core"
    );
}

#[tokio::test]
async fn legacy_sys_endpoints_copy_data_to_the_top_level() {
    let handler = dev_handler().await;
    let mounts = call(&handler, "GET", "/v1/sys/mounts", "").await.json();
    assert_eq!(mounts["secret/"]["type"], "kv");
    assert_eq!(mounts["data"]["secret/"]["type"], "kv");
    assert_eq!(mounts["request_id"].as_str().map(str::len), Some(36));
    let policies = call(&handler, "GET", "/v1/sys/policy", "").await.json();
    assert!(policies["policies"].as_array().is_some());
    let acl = call(&handler, "LIST", "/v1/sys/policies/acl", "")
        .await
        .json();
    assert!(
        acl.get("keys").is_none(),
        "sys/policies/acl is not a legacy endpoint"
    );
    assert!(acl["data"]["keys"].as_array().is_some());
}

#[tokio::test]
async fn query_parameters_become_request_data() {
    let handler = dev_handler().await;
    call(
        &handler,
        "PUT",
        "/v1/secret/data/v",
        r#"{"data": {"n": "1"}}"#,
    )
    .await;
    call(
        &handler,
        "PUT",
        "/v1/secret/data/v",
        r#"{"data": {"n": "2"}}"#,
    )
    .await;
    let first = call(&handler, "GET", "/v1/secret/data/v?version=1", "").await;
    assert_eq!(first.json()["data"]["data"]["n"], "1");
    let latest = call(&handler, "GET", "/v1/secret/data/v", "").await;
    assert_eq!(latest.json()["data"]["data"]["n"], "2");
}

#[tokio::test]
async fn sealed_core_answers_503_and_raw_endpoints_still_work() {
    let handler = dev_handler().await;
    assert_eq!(
        call(&handler, "PUT", "/v1/sys/seal", "").await.status,
        StatusCode::NO_CONTENT
    );
    let reply = call(&handler, "GET", "/v1/secret/data/x", "").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.errors(), ["Vault is sealed"]);
    let status = call(&handler, "GET", "/v1/sys/seal-status", "")
        .await
        .json();
    assert_eq!(status["sealed"], true);
    assert!(status.get("cluster_id").is_none());
    assert_eq!(
        call(&handler, "GET", "/v1/sys/health", "").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let ok = call(&handler, "GET", "/v1/sys/health?sealedcode=200", "").await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.json()["sealed"], true);
}

#[tokio::test]
async fn init_unseal_and_seal_status_from_an_uninitialised_core() {
    let handler = Handler::new(new_core(), Some(LIMIT));
    let raw =
        |method: &str, uri: &str, body: &str| send(&handler, request(method, uri, None, body));
    assert_eq!(
        raw("GET", "/v1/sys/init", "").await.json(),
        json!({"initialized": false})
    );
    assert_eq!(
        raw("GET", "/v1/sys/health", "").await.status,
        StatusCode::NOT_IMPLEMENTED
    );
    let status = raw("GET", "/v1/sys/seal-status", "").await.json();
    assert_eq!(status["type"], "shamir");
    assert_eq!(status["initialized"], false);
    for key in [
        "sealed",
        "t",
        "n",
        "progress",
        "nonce",
        "version",
        "build_date",
        "migration",
        "recovery_seal",
        "storage_type",
    ] {
        assert!(status.get(key).is_some(), "seal-status lacks {key}");
    }
    let pgp = raw(
        "PUT",
        "/v1/sys/init",
        r#"{"secret_shares": 1, "secret_threshold": 1, "pgp_keys": ["abc"]}"#,
    )
    .await;
    assert_eq!(pgp.status, StatusCode::BAD_REQUEST);
    let bad = raw(
        "PUT",
        "/v1/sys/init",
        r#"{"secret_shares": "three", "secret_threshold": 2}"#,
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(!bad.errors()[0].contains("three"));

    let init = raw(
        "PUT",
        "/v1/sys/init",
        r#"{"secret_shares": 3, "secret_threshold": 2}"#,
    )
    .await;
    assert_eq!(init.status, StatusCode::OK);
    let init = init.json();
    let keys: Vec<String> = serde_json::from_value(init["keys"].clone()).expect("hex keys");
    let keys_b64: Vec<String> =
        serde_json::from_value(init["keys_base64"].clone()).expect("base64 keys");
    assert_eq!((keys.len(), keys_b64.len()), (3, 3));
    let root = init["root_token"].as_str().expect("root token").to_string();
    assert_eq!(
        raw(
            "PUT",
            "/v1/sys/init",
            r#"{"secret_shares": 1, "secret_threshold": 1}"#
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );

    // Initialised but sealed, as Vault.
    let status = raw("GET", "/v1/sys/seal-status", "").await.json();
    assert_eq!(
        (
            status["sealed"].clone(),
            status["t"].clone(),
            status["n"].clone()
        ),
        (json!(true), json!(2), json!(3))
    );
    assert_eq!(
        send(&handler, request("GET", "/v1/secret/x", Some(&root), ""))
            .await
            .status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    let missing = raw("PUT", "/v1/sys/unseal", "{}").await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    let garbage = raw("PUT", "/v1/sys/unseal", r#"{"key": "not-a-key!"}"#).await;
    assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
    assert!(!garbage.errors()[0].contains("not-a-key"));

    let first = raw(
        "PUT",
        "/v1/sys/unseal",
        &json!({"key": keys[0]}).to_string(),
    )
    .await
    .json();
    assert_eq!(
        (first["sealed"].clone(), first["progress"].clone()),
        (json!(true), json!(1))
    );
    let reset = raw("PUT", "/v1/sys/unseal", r#"{"reset": true}"#)
        .await
        .json();
    assert_eq!(reset["progress"], 0);
    raw(
        "PUT",
        "/v1/sys/unseal",
        &json!({"key": keys[0]}).to_string(),
    )
    .await;
    // The second share in URL-safe base64 without padding.
    let url_safe = keys_b64[1]
        .replace('+', "-")
        .replace('/', "_")
        .trim_end_matches('=')
        .to_string();
    let done = raw(
        "POST",
        "/v1/sys/unseal",
        &json!({"key": url_safe}).to_string(),
    )
    .await
    .json();
    assert_eq!(done["sealed"], false);
    assert!(done["cluster_id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(
        raw("GET", "/v1/sys/health", "").await.status,
        StatusCode::OK
    );
    let lookup = send(
        &handler,
        request("GET", "/v1/auth/token/lookup-self", Some(&root), ""),
    )
    .await;
    assert_eq!(lookup.status, StatusCode::OK);

    assert_eq!(
        raw("DELETE", "/v1/sys/unseal", "").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        raw("POST", "/v1/sys/seal-status", "").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn health_honours_every_query_flag() {
    let uninitialised = Handler::new(new_core(), Some(LIMIT));
    let active = dev_handler().await;
    let sealed = dev_handler().await;
    sealed.core().seal().await;
    let cases: &[(&Handler, &str, u16)] = &[
        (&active, "", 200),
        (&active, "?activecode=204", 204),
        (&active, "?standbyok=true", 200),
        (&active, "?perfstandbyok=true", 200),
        (
            &active,
            "?standbycode=299&drsecondarycode=298&performancestandbycode=297",
            200,
        ),
        (&sealed, "", 503),
        (&sealed, "?sealedcode=299", 299),
        (&sealed, "?standbyok=true", 503),
        (&uninitialised, "", 501),
        (&uninitialised, "?uninitcode=200", 200),
        (&active, "?standbyok", 400),
        (&active, "?activecode=abc", 400),
        (&active, "?sealedcode=1000", 400),
    ];
    for (handler, query, want) in cases {
        let reply = send(
            handler,
            request("GET", &format!("/v1/sys/health{query}"), None, ""),
        )
        .await;
        assert_eq!(reply.status.as_u16(), *want, "{query}");
        assert_eq!(reply.content_type.as_deref(), Some("application/json"));
    }
    let health = send(&active, request("GET", "/v1/sys/health", None, ""))
        .await
        .json();
    for key in [
        "initialized",
        "sealed",
        "standby",
        "performance_standby",
        "replication_performance_mode",
        "replication_dr_mode",
        "server_time_utc",
        "version",
        "cluster_name",
        "cluster_id",
    ] {
        assert!(health.get(key).is_some(), "health lacks {key}");
    }
    let head = send(&sealed, request("HEAD", "/v1/sys/health", None, "")).await;
    assert_eq!(head.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(head.body.is_empty());
}

#[tokio::test]
async fn leader_reports_ha_disabled() {
    let handler = dev_handler().await;
    let leader = send(&handler, request("GET", "/v1/sys/leader", None, ""))
        .await
        .json();
    assert_eq!(leader["ha_enabled"], false);
    assert_eq!(leader["is_self"], false);
    assert_eq!(leader["leader_address"], "");
    assert_eq!(leader["leader_cluster_address"], "");
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

async fn serve_on_port_0(tls: Option<config::Tls>) -> (serve::Running, String) {
    let core = new_core();
    core.dev_init(Some(ROOT)).await.expect("dev init");
    let listener = config::Listener {
        address: "127.0.0.1:0".into(),
        tls,
        max_request_size: Some(LIMIT),
        unauthenticated_metrics_access: false,
    };
    let bound = BoundListener::bind(&listener).await.expect("bind");
    let url = bound.url().replace("127.0.0.1", "localhost");
    (serve::start(core, vec![bound]), url)
}

fn tls_settings(client_ca: bool) -> config::Tls {
    config::Tls {
        cert_file: fixture("server.pem"),
        key_file: fixture("server-key.pem"),
        client_ca_file: client_ca.then(|| fixture("ca.pem")),
        min_version: config::TlsVersion::Tls12,
    }
}

fn https_client(identity: bool, http2: bool) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(fixture("ca.pem")).expect("ca"))
        .expect("ca pem");
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(10));
    if identity {
        let mut pem = std::fs::read(fixture("client.pem")).expect("client cert");
        pem.extend(std::fs::read(fixture("client-key.pem")).expect("client key"));
        builder = builder.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
    }
    // HTTP/2 is negotiated by ALPN; HTTP/1.1 is forced by offering only it.
    if !http2 {
        builder = builder.http1_only();
    }
    builder.build().expect("client")
}

#[tokio::test]
async fn plaintext_socket_on_port_0_serves_http1_and_h2c_and_drains() {
    let (running, url) = serve_on_port_0(None).await;
    for http2 in [false, true] {
        let mut builder = reqwest::Client::builder();
        if http2 {
            builder = builder.http2_prior_knowledge();
        }
        let client = builder.build().expect("client");
        let reply = client
            .get(format!("{url}/v1/sys/health"))
            .send()
            .await
            .expect("request");
        assert_eq!(reply.status(), 200);
        let expected = if http2 {
            reqwest::Version::HTTP_2
        } else {
            reqwest::Version::HTTP_11
        };
        assert_eq!(reply.version(), expected);
    }
    running.shutdown(Duration::from_secs(5)).await;
    assert!(
        reqwest::get(format!("{url}/v1/sys/health")).await.is_err(),
        "listener closed after shutdown"
    );
}

#[tokio::test]
async fn tls_socket_on_port_0_with_http1_and_http2() {
    let (running, url) = serve_on_port_0(Some(tls_settings(false))).await;
    assert!(url.starts_with("https://localhost:"));
    for http2 in [false, true] {
        let client = https_client(false, http2);
        let reply = client
            .put(format!("{url}/v1/secret/data/tls"))
            .header("X-Vault-Token", ROOT)
            .body(r#"{"data": {"over": "tls"}}"#)
            .send()
            .await
            .expect("request over TLS");
        assert_eq!(reply.status(), 200);
        let read = client
            .get(format!("{url}/v1/secret/data/tls"))
            .header("X-Vault-Token", ROOT)
            .send()
            .await
            .expect("read");
        let expected = if http2 {
            reqwest::Version::HTTP_2
        } else {
            reqwest::Version::HTTP_11
        };
        assert_eq!(read.version(), expected);
        let body: Value = read.json().await.expect("json");
        assert_eq!(body["data"]["data"]["over"], "tls");
    }
    let plain = reqwest::get(format!("{}/v1/sys/health", url.replace("https", "http"))).await;
    assert!(
        plain.map(|r| !r.status().is_success()).unwrap_or(true),
        "plaintext is not served on a TLS listener"
    );
    running.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn client_ca_requires_a_client_certificate() {
    let (running, url) = serve_on_port_0(Some(tls_settings(true))).await;
    let without = https_client(false, false)
        .get(format!("{url}/v1/sys/health"))
        .send()
        .await;
    assert!(
        without.is_err(),
        "a client without a certificate is refused"
    );
    let with = https_client(true, false)
        .get(format!("{url}/v1/sys/health"))
        .send()
        .await
        .expect("mutual TLS");
    assert_eq!(with.status(), 200);
    running.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn bad_tls_files_fail_at_bind_with_the_file_named() {
    let mut tls = tls_settings(false);
    tls.key_file = fixture("missing-key.pem");
    let listener = config::Listener {
        address: "127.0.0.1:0".into(),
        tls: Some(tls),
        max_request_size: None,
        unauthenticated_metrics_access: false,
    };
    let error = BoundListener::bind(&listener)
        .await
        .err()
        .expect("missing key");
    assert!(
        error.message.contains("missing-key.pem"),
        "{}",
        error.message
    );
}

/// Every Prometheus text line is a comment or `name{labels} value`.
fn assert_prometheus(text: &str) {
    assert!(!text.trim().is_empty());
    for line in text.lines().filter(|l| !l.is_empty()) {
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        assert!(value.parse::<f64>().is_ok(), "not a number in {line:?}");
        let name = series.split('{').next().unwrap_or_default();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
    }
}

#[tokio::test]
async fn metrics_in_prometheus_and_json_with_a_token_and_optionally_without() {
    let handler = dev_handler().await;
    call(&handler, "GET", "/v1/sys/mounts", "").await;
    let scrape = call(&handler, "GET", "/v1/sys/metrics?format=prometheus", "").await;
    assert_eq!(scrape.status, StatusCode::OK);
    assert_eq!(
        scrape.content_type.as_deref(),
        Some("text/plain; version=0.0.4")
    );
    assert_prometheus(&String::from_utf8_lossy(&scrape.body));
    let json = call(&handler, "GET", "/v1/sys/metrics", "").await;
    assert_eq!(json.status, StatusCode::OK);
    assert!(json.json().is_object());

    // Without a token: denied by default, served when the listener allows it.
    let anonymous = send(
        &handler,
        request("GET", "/v1/sys/metrics?format=prometheus", None, ""),
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::FORBIDDEN);
    let open = dev_handler().await.with_unauthenticated_metrics(true);
    let anonymous = send(
        &open,
        request("GET", "/v1/sys/metrics?format=prometheus", None, ""),
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::OK);
    assert_prometheus(&String::from_utf8_lossy(&anonymous.body));
}

/// One sample of the Prometheus text format: name, labels, value. The parser checks the
/// grammar as it goes (names, quoted and escaped label values, numbers, HELP and TYPE
/// lines naming the family they precede), so a malformed scrape fails the test that reads it.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: std::collections::BTreeMap<String, String>,
    value: f64,
}

fn parse_prometheus(text: &str) -> Vec<Sample> {
    assert_prometheus(text);
    let mut samples = Vec::new();
    let mut typed = std::collections::BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            assert!(
                typed.insert(name.to_string(), kind.to_string()).is_none(),
                "family typed twice: {line}"
            );
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("value");
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), std::collections::BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                (name.to_string(), parse_labels(body))
            }
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| typed.get(*base).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(&name);
        assert!(
            typed.contains_key(family),
            "sample before its # TYPE: {line}"
        );
        samples.push(Sample {
            name,
            labels,
            value: value.parse().expect("number"),
        });
    }
    samples
}

/// `a="x",b="y \"q\""` → {a: x, b: y "q"}.
fn parse_labels(body: &str) -> std::collections::BTreeMap<String, String> {
    let mut labels = std::collections::BTreeMap::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "label {name} is quoted");
        let mut value = String::new();
        loop {
            match chars.next().expect("closing quote") {
                '"' => break,
                '\\' => match chars.next().expect("escape") {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                other => value.push(other),
            }
        }
        assert!(
            labels.insert(name, value).is_none(),
            "label twice in {body}"
        );
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    labels
}

/// The value of `name{mount="<mount>"}`, None when the series is absent.
fn by_mount(samples: &[Sample], name: &str, mount: &str) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && s.labels.get("mount").map(String::as_str) == Some(mount))
        .map(|s| s.value)
}

/// `ward_live_counts_ready`: 1 once both live counts are restored after unseal.
fn ready(samples: &[Sample]) -> f64 {
    samples
        .iter()
        .find(|s| s.name == "ward_live_counts_ready")
        .map(|s| s.value)
        .expect("ward_live_counts_ready")
}

/// The `ward_token_count` and `ward_lease_count` series as `(family, mount) → value`.
fn live_gauges(samples: &[Sample]) -> std::collections::BTreeMap<(String, String), f64> {
    samples
        .iter()
        .filter(|s| s.name == "ward_token_count" || s.name == "ward_lease_count")
        .map(|s| {
            (
                (
                    s.name.clone(),
                    s.labels.get("mount").cloned().unwrap_or_default(),
                ),
                s.value,
            )
        })
        .collect()
}

async fn scrape(handler: &Handler, token: &str) -> Vec<Sample> {
    let reply = send(
        handler,
        request("GET", "/v1/sys/metrics?format=prometheus", Some(token), ""),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    parse_prometheus(&String::from_utf8_lossy(&reply.body))
}

/// A call that must succeed; the JSON body, or null when there is none.
async fn api_ok(handler: &Handler, method: &str, uri: &str, token: &str, body: Value) -> Value {
    let body = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let reply = send(handler, request(method, uri, Some(token), &body)).await;
    assert!(
        reply.status.is_success(),
        "{method} {uri}: {} {}",
        reply.status,
        String::from_utf8_lossy(&reply.body)
    );
    if reply.body.is_empty() {
        Value::Null
    } else {
        reply.json()
    }
}

/// PostgreSQL at 127.0.0.1:5432 (trust auth), which `scripts/test` sets up.
const POSTGRES_URL: &str = "postgresql://{{username}}@127.0.0.1:5432/postgres";

#[tokio::test]
async fn token_and_lease_gauges_follow_creates_revocations_expiry_and_survive_restarts() {
    let directory = tempfile::tempdir().expect("temp dir");
    let database = directory.path().join("ward.db");
    let open = || {
        let storage = ward_storage::sqlite::Sqlite::open(&database).expect("sqlite");
        let config = CoreConfig {
            storage_type: "sqlite".into(),
            ..CoreConfig::default()
        };
        ward_testlog::init("server-http");
        let core = Core::new(config, Arc::new(storage), ward_engines::registry());
        (core.clone(), Handler::new(core, Some(64 * 1024)))
    };
    let (core, handler) = open();
    let init = send(
        &handler,
        request(
            "PUT",
            "/v1/sys/init",
            None,
            &json!({"secret_shares": 1, "secret_threshold": 1}).to_string(),
        ),
    )
    .await
    .json();
    let key = init["keys"][0].as_str().expect("key").to_string();
    let root = init["root_token"].as_str().expect("root").to_string();
    let unseal_body = json!({ "key": key }).to_string();
    let unseal = |handler: Handler| {
        let body = unseal_body.clone();
        async move {
            let reply = send(&handler, request("PUT", "/v1/sys/unseal", None, &body)).await;
            assert_eq!(reply.json()["sealed"], false);
            handler
        }
    };
    let handler = unseal(handler).await;
    let api = |method: &'static str, uri: String, token: String, body: Value| {
        let handler = handler.clone();
        async move { api_ok(&handler, method, &uri, &token, body).await }
    };

    // Not yet counted after unseal: the families are there, without series.
    let before = scrape(&handler, &root).await;
    assert!(live_gauges(&before).is_empty(), "{before:?}");
    assert_eq!(ready(&before), 0.0);
    core.expire_tokens().await.expect("token sweep");
    core.expire_leases().await.expect("lease sweep");
    let samples = scrape(&handler, &root).await;
    assert_eq!(ready(&samples), 1.0);
    assert_eq!(
        by_mount(&samples, "ward_token_count", "auth/token/"),
        Some(1.0),
        "the root token"
    );
    assert_eq!(by_mount(&samples, "ward_lease_count", "database/"), None);

    // Tokens from two mounts, leases from one; some revoked.
    api(
        "POST",
        "/v1/sys/auth/people".into(),
        root.clone(),
        json!({"type": "userpass"}),
    )
    .await;
    api(
        "POST",
        "/v1/auth/people/users/ana".into(),
        root.clone(),
        json!({"password": "CANARY-gauge-password"}),
    )
    .await;
    for _ in 0..2 {
        api(
            "POST",
            "/v1/auth/people/login/ana".into(),
            String::new(),
            json!({"password": "CANARY-gauge-password"}),
        )
        .await;
    }
    let mut created = Vec::new();
    for ttl in ["1h", "1h", "1h", "10s"] {
        let answer = api(
            "POST",
            "/v1/auth/token/create".into(),
            root.clone(),
            json!({"ttl": ttl, "policies": ["default"]}),
        )
        .await;
        created.push(
            answer["auth"]["client_token"]
                .as_str()
                .expect("token")
                .to_string(),
        );
    }
    api(
        "POST",
        "/v1/auth/token/revoke".into(),
        root.clone(),
        json!({"token": created[0]}),
    )
    .await;

    api(
        "POST",
        "/v1/sys/mounts/database".into(),
        root.clone(),
        json!({"type": "database"}),
    )
    .await;
    api(
        "POST",
        "/v1/database/config/pg".into(),
        root.clone(),
        json!({
            "plugin_name": "postgresql-database-plugin", "connection_url": POSTGRES_URL,
            "username": "postgres", "allowed_roles": ["gauge"],
        }),
    )
    .await;
    api("POST", "/v1/database/roles/gauge".into(), root.clone(), json!({
        "db_name": "pg", "default_ttl": "1h",
        "creation_statements": ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"],
    })).await;
    api("POST", "/v1/database/roles/short".into(), root.clone(), json!({
        "db_name": "pg", "default_ttl": "10s",
        "creation_statements": ["CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"],
    })).await;
    api(
        "POST",
        "/v1/database/config/pg".into(),
        root.clone(),
        json!({
            "plugin_name": "postgresql-database-plugin", "connection_url": POSTGRES_URL,
            "username": "postgres", "allowed_roles": ["gauge", "short"],
        }),
    )
    .await;
    let mut leases = Vec::new();
    for role in ["gauge", "gauge", "gauge", "short"] {
        let answer = api(
            "GET",
            format!("/v1/database/creds/{role}"),
            root.clone(),
            Value::Null,
        )
        .await;
        leases.push(answer["lease_id"].as_str().expect("lease").to_string());
    }
    api(
        "PUT",
        "/v1/sys/leases/revoke".into(),
        root.clone(),
        json!({"lease_id": leases[0]}),
    )
    .await;

    let expected = |tokens: f64, leases: f64| {
        std::collections::BTreeMap::from([
            (
                ("ward_lease_count".to_string(), "database/".to_string()),
                leases,
            ),
            (
                ("ward_token_count".to_string(), "auth/people/".to_string()),
                2.0,
            ),
            (
                ("ward_token_count".to_string(), "auth/token/".to_string()),
                tokens,
            ),
        ])
    };
    // Root, and three of the four created; three of the four leases.
    assert_eq!(
        live_gauges(&scrape(&handler, &root).await),
        expected(4.0, 3.0)
    );
    let json = api("GET", "/v1/sys/metrics".into(), root.clone(), Value::Null).await;
    let gauges = json["Gauges"].as_array().cloned().unwrap_or_default();
    assert!(
        gauges.contains(
            &json!({"Name": "ward_lease_count", "Value": 3, "Labels": {"mount": "database/"}})
        ),
        "{gauges:?}"
    );

    // Expiry: the ten-second token and lease end when the sweeps find them past their time.
    core.clock().advance(30);
    core.expire_tokens().await.expect("token sweep");
    core.expire_leases().await.expect("lease sweep");
    assert_eq!(
        live_gauges(&scrape(&handler, &root).await),
        expected(3.0, 2.0)
    );

    // Sealed and unsealed: counted again from storage, to the same figures.
    send(&handler, request("PUT", "/v1/sys/seal", Some(&root), "")).await;
    let handler = unseal(handler).await;
    let unsealed = scrape(&handler, &root).await;
    assert!(live_gauges(&unsealed).is_empty());
    assert_eq!(ready(&unsealed), 0.0, "not yet counted since this unseal");
    core.expire_tokens().await.expect("token sweep");
    core.expire_leases().await.expect("lease sweep");
    assert_eq!(
        live_gauges(&scrape(&handler, &root).await),
        expected(3.0, 2.0)
    );

    // A restart: a new core on the same file.
    drop(handler);
    drop(core);
    let (core, handler) = open();
    let handler = unseal(handler).await;
    core.clock().advance(30);
    core.expire_tokens().await.expect("token sweep");
    core.expire_leases().await.expect("lease sweep");
    assert_eq!(
        live_gauges(&scrape(&handler, &root).await),
        expected(3.0, 2.0)
    );

    // Leave no database user behind.
    let cleanup = send(
        &handler,
        request(
            "PUT",
            "/v1/sys/leases/revoke-prefix/database/",
            Some(&root),
            "",
        ),
    )
    .await;
    assert!(cleanup.status.is_success(), "{:?}", cleanup.body);
    assert_eq!(
        by_mount(
            &scrape(&handler, &root).await,
            "ward_lease_count",
            "database/"
        ),
        None
    );
}
