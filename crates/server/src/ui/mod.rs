//! The web UI at `/ui/` (`ui = true` in the server configuration; on in dev mode):
//! server-rendered HTML for approvers and operators, with no JavaScript and no build step.
//!
//! It owns sign-in (a token, userpass, or OIDC through the company's identity provider),
//! sessions (`session`), CSRF protection, the security headers, and the pages (`pages`):
//! the approvals inbox, request details with their history, leases and tokens by mount,
//! audit devices with their chain status, and recent alerts. Every page is built from
//! `Core::handle_request` calls made with the signed-in person's own token, so the ACL, the
//! audit log and the approval rules apply to the UI exactly as to the API; the UI holds no
//! privilege of its own.
//!
//! Security: the session cookie holds a random id only (`HttpOnly; SameSite=Strict;
//! Path=/ui`, plus `Secure` on TLS listeners; plain-HTTP listeners, such as dev mode's,
//! omit `Secure` or the browser would drop the cookie). Every POST carries the session's
//! CSRF token in a form field, compared in constant time with the session's and with the
//! `ward_csrf` cookie (double submit), and a cross-origin `Origin` is refused. Responses
//! carry a strict Content-Security-Policy (no scripts at all), `nosniff`, `no-referrer`
//! and `no-store`. Everything user-supplied is HTML-escaped (`html::escape`).

mod html;
mod pages;
mod session;

use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, COOKIE, HOST, LOCATION, ORIGIN,
    SET_COOKIE,
};
use http::{Method, StatusCode};
use http_body_util::Full;
use serde_json::{json, Map, Value};
use ward_core::request::{ClientToken, Request, Response, Verb};
use ward_core::{Core, Error};

use crate::handler::HttpResponse;
use session::{same_secret, OidcFlow, Session, Sessions};

const CSP: &str = "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const STYLESHEET: &str = include_str!("ward.css");
const SESSION_COOKIE: &str = "ward_session";
const CSRF_COOKIE: &str = "ward_csrf";
/// Forms are small; anything larger is refused before parsing.
const MAX_FORM: u64 = 16 * 1024;

/// The web UI of one listener.
pub struct Ui {
    core: Arc<Core>,
    sessions: Sessions,
    /// Whether cookies get `Secure` (TLS listeners).
    secure_cookies: bool,
}

/// One parsed UI request: what the pages need, with the body already read.
pub(crate) struct UiRequest {
    method: Method,
    segments: Vec<String>,
    query: Vec<(String, String)>,
    form: Vec<(String, String)>,
    session_id: Option<String>,
    session: Option<Session>,
    csrf_cookie: Option<String>,
    host: String,
    remote_address: Option<String>,
}

impl UiRequest {
    fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn query_value(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A signed-in person: their token and session.
pub(crate) struct SignedIn<'a> {
    token: &'a ClientToken,
    session: &'a Session,
    remote_address: Option<&'a str>,
}

impl Ui {
    pub fn new(core: Arc<Core>, secure_cookies: bool) -> Ui {
        Ui {
            core,
            sessions: Sessions::default(),
            secure_cookies,
        }
    }

    /// Answers a request whose path starts with `/ui`.
    pub async fn handle<B>(
        &self,
        request: http::Request<B>,
        remote_address: Option<&str>,
    ) -> HttpResponse
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = request.uri().path().to_string();
        if path == "/ui" {
            return redirect("/ui/");
        }
        let Some(rest) = path.strip_prefix("/ui/") else {
            return self.not_found();
        };
        let (parts, body) = request.into_parts();
        let segments: Vec<String> = rest
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if segments.iter().any(|s| !safe_segment(s)) {
            return self.not_found();
        }
        let query = parts
            .uri
            .query()
            .map(|q| crate::uri::parse_query(q).unwrap_or_default())
            .unwrap_or_default();
        let cookies = cookies(
            parts
                .headers
                .get_all(COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        let session_id = cookie(&cookies, SESSION_COOKIE);
        let session = session_id.as_deref().and_then(|id| self.sessions.get(id));
        let host = parts
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let mut form = Vec::new();
        if parts.method == Method::POST {
            // Browsers send `Origin: null` under `Referrer-Policy: no-referrer`; only a named
            // other origin is refused here. The CSRF token is the check that always applies.
            if let Some(origin) = parts
                .headers
                .get(ORIGIN)
                .and_then(|o| o.to_str().ok())
                .filter(|o| *o != "null")
            {
                let authority = origin.split_once("://").map(|(_, a)| a).unwrap_or(origin);
                if authority != host {
                    return self.error_page(
                        StatusCode::FORBIDDEN,
                        "cross-origin form submission refused",
                        None,
                    );
                }
            }
            let length = parts
                .headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let Ok(bytes) = crate::body::read(body, length, Some(MAX_FORM)).await else {
                return self.error_page(
                    StatusCode::BAD_REQUEST,
                    "the form could not be read",
                    None,
                );
            };
            form = crate::uri::parse_query(&String::from_utf8_lossy(&bytes)).unwrap_or_default();
        }
        let request = UiRequest {
            method: parts.method,
            segments,
            query,
            form,
            session_id,
            session,
            csrf_cookie: cookie(&cookies, CSRF_COOKIE),
            host,
            remote_address: remote_address.map(str::to_string),
        };
        self.route(&request).await
    }

    async fn route(&self, request: &UiRequest) -> HttpResponse {
        let segments: Vec<&str> = request.segments.iter().map(String::as_str).collect();
        let method = &request.method;
        // Pages that work without signing in.
        match (method.as_str(), segments.as_slice()) {
            ("GET", ["static", "ward.css"]) => return stylesheet(),
            ("GET", ["login"]) => return self.login_page(request, None),
            ("POST", ["login", kind]) => return self.login(request, kind).await,
            ("GET", ["login", "oidc"]) => return self.oidc_start(request).await,
            ("GET", ["oidc", "callback"]) => return oidc_bounce(request),
            ("GET", ["oidc", "finish"]) => return self.oidc_finish(request).await,
            _ => {}
        }
        let Some(session) = request.session.as_ref() else {
            return redirect("/ui/login");
        };
        let Some(token) = session.token.as_ref() else {
            return redirect("/ui/login");
        };
        if *method == Method::POST && !self.csrf_ok(request, session) {
            return self.error_page(
                StatusCode::FORBIDDEN,
                "the form's CSRF token is missing or wrong; reload the page and try again",
                Some(session),
            );
        }
        let who = SignedIn {
            token,
            session,
            remote_address: request.remote_address.as_deref(),
        };
        match (method.as_str(), segments.as_slice()) {
            ("GET", []) => self.inbox(&who, request).await,
            ("POST", ["logout"]) => self.logout(request, session).await,
            ("GET", ["requests", "control-group", accessor]) => {
                self.control_group_detail(&who, accessor, request).await
            }
            ("POST", ["requests", "control-group", accessor, "approve"]) => {
                self.approve_control_group(&who, accessor).await
            }
            ("GET", ["requests", "access", id]) => self.access_detail(&who, id, request).await,
            ("POST", ["requests", "access", id, action @ ("approve" | "deny" | "revoke")]) => {
                self.act_on_access(
                    &who,
                    id,
                    action,
                    request.field("reason").unwrap_or_default(),
                )
                .await
            }
            ("GET", ["leases"]) => self.leases(&who).await,
            ("GET", ["audit"]) => self.audit(&who).await,
            _ => self.not_found(),
        }
    }

    fn csrf_ok(&self, request: &UiRequest, session: &Session) -> bool {
        let submitted = request.field("csrf").unwrap_or_default();
        let cookie = request.csrf_cookie.as_deref().unwrap_or_default();
        // Both comparisons always run, so timing says nothing about which failed.
        let matches_session = same_secret(submitted, &session.csrf);
        let matches_cookie = same_secret(submitted, cookie);
        matches_session & matches_cookie
    }

    /// A core request made with the signed-in person's token.
    async fn call(
        &self,
        who: &SignedIn<'_>,
        verb: Verb,
        path: &str,
        data: Value,
    ) -> Result<Response, Error> {
        let mut request = Request::new(verb, path).with_data(data);
        request.token = Some(who.token.clone());
        request.remote_address = who.remote_address.map(str::to_string);
        self.core.handle_request(request).await
    }

    async fn call_anonymous(
        &self,
        request: &UiRequest,
        verb: Verb,
        path: &str,
        data: Value,
    ) -> Result<Response, Error> {
        let mut core_request = Request::new(verb, path).with_data(data);
        core_request.remote_address = request.remote_address.clone();
        self.core.handle_request(core_request).await
    }

    // ---- sign-in -------------------------------------------------------------------------

    fn login_page(&self, request: &UiRequest, error: Option<&str>) -> HttpResponse {
        // The sign-in forms need a CSRF token too (no login CSRF): an anonymous session.
        let (id, session) = match (&request.session_id, &request.session) {
            (Some(id), Some(session)) if session.token.is_none() => (id.clone(), session.clone()),
            _ => self.sessions.start(),
        };
        let body = pages::login(&session.csrf, error);
        let status = if error.is_some() {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::OK
        };
        let mut response = html_response(status, html::page("Sign in", None, &body));
        self.set_session_cookies(&mut response, &id, &session.csrf);
        response
    }

    async fn login(&self, request: &UiRequest, kind: &str) -> HttpResponse {
        let anonymous = request.session.as_ref().filter(|s| s.token.is_none());
        let Some(anonymous) = anonymous else {
            return self.login_page(request, Some("your sign-in form expired; please try again"));
        };
        if !self.csrf_ok(request, anonymous) {
            return self.login_page(
                request,
                Some("the form's CSRF token is missing or wrong; please try again"),
            );
        }
        let outcome = match kind {
            "token" => {
                let token = request
                    .field("token")
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                self.token_login(request, ClientToken::new(token))
                    .await
                    .map(|(t, name)| (t, false, name))
            }
            "userpass" => self
                .userpass_login(request)
                .await
                .map(|(t, name)| (t, true, name)),
            _ => return self.not_found(),
        };
        match outcome {
            Ok((token, owns, name)) => self.signed_in(request, token, owns, name),
            Err(message) => self.login_page(request, Some(&message)),
        }
    }

    /// Checks a token with `lookup-self`; answers its display name.
    async fn token_login(
        &self,
        request: &UiRequest,
        token: ClientToken,
    ) -> Result<(ClientToken, String), String> {
        if token.as_str().is_empty() {
            return Err("enter a token".into());
        }
        let mut lookup = Request::new(Verb::Read, "auth/token/lookup-self");
        lookup.token = Some(token.clone());
        lookup.remote_address = request.remote_address.clone();
        match self.core.handle_request(lookup).await {
            Ok(response) => {
                let data = response.data.unwrap_or_default();
                let name = data
                    .get("display_name")
                    .and_then(Value::as_str)
                    .unwrap_or("token")
                    .to_string();
                Ok((token, name))
            }
            Err(_) => Err("sign-in failed: the token is not valid".into()),
        }
    }

    async fn userpass_login(&self, request: &UiRequest) -> Result<(ClientToken, String), String> {
        let mount = request
            .field("mount")
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .unwrap_or("userpass");
        let username = request.field("username").unwrap_or_default().trim();
        let password = request.field("password").unwrap_or_default();
        if !valid_mount(mount)
            || username.is_empty()
            || !safe_segment(username)
            || password.is_empty()
        {
            return Err("enter a username and a password".into());
        }
        let path = format!("auth/{}/login/{username}", mount.trim_matches('/'));
        match self
            .call_anonymous(request, Verb::Write, &path, json!({ "password": password }))
            .await
        {
            Ok(response) => match response.auth {
                Some(auth) => Ok((ClientToken::new(auth.client_token), username.to_string())),
                None => Err("sign-in failed".into()),
            },
            // One message for every failure: no hint whether the user exists.
            Err(_) => Err("sign-in failed: wrong username or password".into()),
        }
    }

    fn signed_in(
        &self,
        request: &UiRequest,
        token: ClientToken,
        owns: bool,
        name: String,
    ) -> HttpResponse {
        let (id, session) = self
            .sessions
            .sign_in(request.session_id.as_deref(), token, owns, name);
        tracing::info!(user = %session.display_name, "web UI sign-in");
        let mut response = redirect("/ui/");
        self.set_session_cookies(&mut response, &id, &session.csrf);
        response
    }

    /// `GET /ui/login/oidc?mount=oidc&role=r`: asks the auth method for the provider's URL
    /// and sends the browser there.
    async fn oidc_start(&self, request: &UiRequest) -> HttpResponse {
        let mount = request
            .query_value("mount")
            .unwrap_or("oidc")
            .trim_matches('/')
            .to_string();
        let role = request.query_value("role").unwrap_or_default().to_string();
        if !valid_mount(&mount) {
            return self.login_page(request, Some("invalid OIDC mount"));
        }
        let (id, session) = match (&request.session_id, &request.session) {
            (Some(id), Some(session)) if session.token.is_none() => (id.clone(), session.clone()),
            _ => self.sessions.start(),
        };
        let client_nonce = session::random_id();
        let redirect_uri = format!(
            "{}://{}/ui/oidc/callback",
            if self.secure_cookies { "https" } else { "http" },
            request.host
        );
        let mut data = json!({ "redirect_uri": redirect_uri, "client_nonce": client_nonce });
        if !role.is_empty() {
            data["role"] = Value::from(role);
        }
        let answer = self
            .call_anonymous(
                request,
                Verb::Write,
                &format!("auth/{mount}/oidc/auth_url"),
                data,
            )
            .await;
        let auth_url = answer.ok().and_then(|r| r.data).and_then(|d| {
            d.get("auth_url")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        let Some(auth_url) =
            auth_url.filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        else {
            return self.login_page(
                request,
                Some("OIDC sign-in is not available for this mount and role"),
            );
        };
        let state = auth_url
            .split_once('?')
            .map(|(_, q)| crate::uri::parse_query(q).unwrap_or_default())
            .unwrap_or_default()
            .into_iter()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v)
            .unwrap_or_default();
        self.sessions.set_oidc(
            &id,
            OidcFlow {
                mount,
                state,
                client_nonce,
            },
        );
        // Not a redirect: the sign-in form submitted here, and browsers apply the page's
        // `form-action 'self'` to every redirect that follows a form submission, so a 303 to
        // the provider would be blocked. A page that moves on by itself is a new navigation.
        let mut response = continue_page("Continuing to your identity provider…", &auth_url);
        self.set_session_cookies(&mut response, &id, &session.csrf);
        response
    }

    /// Completes OIDC: the state must be the one this browser's session started.
    async fn oidc_finish(&self, request: &UiRequest) -> HttpResponse {
        let flow = request.session.as_ref().and_then(|s| s.oidc.clone());
        let state = request.query_value("state").unwrap_or_default();
        let Some(flow) = flow.filter(|f| same_secret(state, &f.state)) else {
            return self.login_page(
                request,
                Some("OIDC sign-in failed: this browser did not start it, or it expired"),
            );
        };
        let mut data = Map::new();
        for (key, value) in &request.query {
            data.insert(key.clone(), Value::from(value.clone()));
        }
        data.insert(
            "client_nonce".into(),
            Value::from(flow.client_nonce.clone()),
        );
        let path = format!("auth/{}/oidc/callback", flow.mount);
        match self
            .call_anonymous(request, Verb::Read, &path, Value::Object(data))
            .await
        {
            Ok(Response {
                auth: Some(auth), ..
            }) => {
                // The token's display name (`<mount>-<user claim>`) names the provider's user.
                let token = ClientToken::new(auth.client_token);
                let name = match self.token_login(request, token.clone()).await {
                    Ok((_, name)) => name,
                    Err(_) => flow.mount.clone(),
                };
                self.signed_in(request, token, true, name)
            }
            _ => self.login_page(request, Some("OIDC sign-in failed")),
        }
    }

    async fn logout(&self, request: &UiRequest, session: &Session) -> HttpResponse {
        if let Some(id) = &request.session_id {
            if let Some(ended) = self.sessions.end(id) {
                if let (true, Some(token)) = (ended.owns_token, ended.token.as_ref()) {
                    let mut revoke = Request::new(Verb::Write, "auth/token/revoke-self");
                    revoke.token = Some(token.clone());
                    revoke.remote_address = request.remote_address.clone();
                    if let Err(e) = self.core.handle_request(revoke).await {
                        tracing::warn!(error = %e, "could not revoke the web UI session's token");
                    }
                }
            }
        }
        tracing::info!(user = %session.display_name, "web UI sign-out");
        let mut response = redirect("/ui/login");
        for name in [SESSION_COOKIE, CSRF_COOKIE] {
            if let Ok(value) = HeaderValue::from_str(&format!(
                "{name}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{}",
                self.secure_suffix()
            )) {
                response.headers_mut().append(SET_COOKIE, value);
            }
        }
        response
    }

    fn set_session_cookies(&self, response: &mut HttpResponse, id: &str, csrf: &str) {
        for (name, value) in [(SESSION_COOKIE, id), (CSRF_COOKIE, csrf)] {
            let cookie = format!(
                "{name}={value}; Path=/ui; HttpOnly; SameSite=Strict{}",
                self.secure_suffix()
            );
            if let Ok(header) = HeaderValue::from_str(&cookie) {
                response.headers_mut().append(SET_COOKIE, header);
            }
        }
    }

    fn secure_suffix(&self) -> &'static str {
        if self.secure_cookies {
            "; Secure"
        } else {
            ""
        }
    }

    // ---- errors --------------------------------------------------------------------------

    fn not_found(&self) -> HttpResponse {
        html_response(
            StatusCode::NOT_FOUND,
            html::page(
                "Not found",
                None,
                r#"<p>There is no such page. <a href="/ui/">Back to the inbox</a>.</p>"#,
            ),
        )
    }

    fn error_page(
        &self,
        status: StatusCode,
        text: &str,
        session: Option<&Session>,
    ) -> HttpResponse {
        let chrome = session.map(|s| html::Chrome {
            display_name: &s.display_name,
            csrf: &s.csrf,
        });
        let body = format!(
            r#"{}<p><a href="/ui/">Back to the inbox</a></p>"#,
            html::message("error", text)
        );
        html_response(
            status,
            html::page("Something went wrong", chrome.as_ref(), &body),
        )
    }

    /// A core error as a page, with the status the API would answer.
    fn core_error_page(&self, error: &Error, session: &Session) -> HttpResponse {
        let status = crate::handler::status_of(error);
        let text = error.client_messages().join(", ");
        let text = if text.is_empty() {
            "not found".to_string()
        } else {
            text
        };
        self.error_page(status, &text, Some(session))
    }
}

/// Letters, digits and `-_.`: ids, accessors, user and mount names. Anything else is not a
/// UI path, which keeps encoded separators and dot segments out.
fn safe_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment != "."
        && segment != ".."
        && segment.len() <= 200
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
}

fn valid_mount(mount: &str) -> bool {
    let mount = mount.trim_matches('/');
    !mount.is_empty() && mount.split('/').all(safe_segment)
}

fn cookies<'a>(headers: impl Iterator<Item = &'a str>) -> Vec<(String, String)> {
    headers
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn cookie(cookies: &[(String, String)], name: &str) -> Option<String> {
    cookies
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// The provider sends the browser back from another site, so a `SameSite=Strict` cookie is
/// not sent with this request. This page continues to `/ui/oidc/finish` with the same query:
/// a navigation that starts here is same-site, and the session cookie comes along.
fn oidc_bounce(request: &UiRequest) -> HttpResponse {
    let query: Vec<String> = request
        .query
        .iter()
        .filter(|(k, _)| matches!(k.as_str(), "state" | "code" | "error" | "error_description"))
        .map(|(k, v)| format!("{}={}", html::encode_segment(k), html::encode_segment(v)))
        .collect();
    let target = format!("/ui/oidc/finish?{}", query.join("&"));
    continue_page("Completing sign-in…", &target)
}

/// A page that moves on to `target` at once (a meta refresh, since the UI runs no scripts),
/// with a link in case it does not.
fn continue_page(text: &str, target: &str) -> HttpResponse {
    let body = format!(
        r#"<p>{text} <a href="{target}">Continue</a> if nothing happens.</p>"#,
        text = html::escape(text),
        target = html::escape(target)
    );
    let mut page = html::page("Signing in", None, &body);
    page = page.replacen(
        "<meta charset=\"utf-8\">",
        &format!(
            r#"<meta charset="utf-8"><meta http-equiv="refresh" content="0;url={}">"#,
            html::escape(target)
        ),
        1,
    );
    html_response(StatusCode::OK, page)
}

fn stylesheet() -> HttpResponse {
    let mut response = http::Response::new(Full::new(Bytes::from_static(STYLESHEET.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

pub(crate) fn html_response(status: StatusCode, body: String) -> HttpResponse {
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    security_headers(headers);
    response
}

fn redirect(location: &str) -> HttpResponse {
    let mut response = http::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    security_headers(response.headers_mut());
    response
}

fn security_headers(headers: &mut http::HeaderMap) {
    headers.insert("content-security-policy", HeaderValue::from_static(CSP));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_segments_are_ui_paths() {
        for ok in [
            "inbox",
            "a1b2-c3",
            "0f6e0a4e-1b8b-4bd1-9a8a-2c9ad3f1e9a1",
            "user@example.com",
        ] {
            assert!(safe_segment(ok), "{ok}");
        }
        for bad in ["..", ".", "%2F", "a b", "<x>", ""] {
            assert!(!safe_segment(bad), "{bad}");
        }
    }

    #[test]
    fn cookies_are_split_by_semicolons() {
        let parsed = cookies(["a=1; ward_session=xyz", "b=2"].into_iter());
        assert_eq!(cookie(&parsed, "ward_session").as_deref(), Some("xyz"));
        assert_eq!(cookie(&parsed, "b").as_deref(), Some("2"));
        assert_eq!(cookie(&parsed, "c"), None);
    }
}
