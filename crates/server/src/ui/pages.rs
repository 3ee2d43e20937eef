//! The pages of the web UI: sign-in, the approvals inbox, request details with their
//! history and actions, leases and tokens by mount, audit devices with their chain status,
//! and recent alerts.
//!
//! Each page reads through `Core::handle_request` with the signed-in person's token and
//! renders the JSON it gets. Values from responses are user-supplied as far as this file is
//! concerned (a request's reason, an event id, an entity name) and always pass
//! `html::escape`; links and form actions use percent-encoded segments.

use std::time::{SystemTime, UNIX_EPOCH};

use http::StatusCode;
use serde_json::{json, Map, Value};
use ward_core::request::Verb;
use ward_core::Error;

use super::html::{self, age, button_form, encode_segment, escape, message, table, Chrome};
use super::{html_response, redirect, SignedIn, Ui, UiRequest};
use crate::handler::HttpResponse;

/// The sign-in page's forms.
pub(super) fn login(csrf: &str, error: Option<&str>) -> String {
    let error = error.map(|e| html::message("error", e)).unwrap_or_default();
    let csrf = html::csrf_field(csrf);
    format!(
        r#"{error}
<section aria-labelledby="userpass-heading">
<h2 id="userpass-heading">Username and password</h2>
<form method="post" action="/ui/login/userpass">{csrf}
<p><label for="username">Username</label><input id="username" name="username" type="text" autocomplete="username" required></p>
<p><label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required></p>
<p><label for="mount">Auth mount</label><input id="mount" name="mount" type="text" value="userpass"></p>
<p><button type="submit">Sign in</button></p>
</form>
</section>
<section aria-labelledby="oidc-heading">
<h2 id="oidc-heading">Company sign-in (OIDC)</h2>
<form method="get" action="/ui/login/oidc">
<p><label for="oidc-mount">Auth mount</label><input id="oidc-mount" name="mount" type="text" value="oidc"></p>
<p><label for="oidc-role">Role (optional)</label><input id="oidc-role" name="role" type="text"></p>
<p><button type="submit">Continue to your identity provider</button></p>
</form>
</section>
<section aria-labelledby="token-heading">
<h2 id="token-heading">Token</h2>
<form method="post" action="/ui/login/token">{csrf}
<p><label for="token">Ward token</label><input id="token" name="token" type="password" autocomplete="off" required></p>
<p><button type="submit">Sign in with a token</button></p>
</form>
</section>"#
    )
}

impl Ui {
    /// The approvals inbox: what the signed-in person can approve, and their own requests.
    pub(super) async fn inbox(&self, who: &SignedIn<'_>, request: &UiRequest) -> HttpResponse {
        let csrf = &who.session.csrf;
        let now = unix_now();
        let mut body = notice(request);

        body.push_str(r#"<section aria-labelledby="cg-heading"><h2 id="cg-heading">Control-group requests waiting for you</h2>"#);
        match self
            .call(who, Verb::Read, "sys/control-group/pending", json!({}))
            .await
        {
            Ok(response) => {
                let items = key_info(response.data.as_ref());
                if items.is_empty() {
                    body.push_str("<p>Nothing waits for your approval.</p>");
                } else {
                    let rows: Vec<Vec<String>> = items
                        .iter()
                        .map(|item| {
                            let accessor = text(item, &["accessor"]);
                            let link =
                                format!("/ui/requests/control-group/{}", encode_segment(&accessor));
                            vec![
                                requester_cell(
                                    &text(item, &["request_entity", "name"]),
                                    &text(item, &["request_entity", "id"]),
                                ),
                                format!("<code>{}</code>", escape(&text(item, &["request_path"]))),
                                escape(&text(item, &["request_operation"])),
                                escape(&age(now - int(item, &["creation_unix"]))),
                                escape(&factor_progress(item)),
                                format!(
                                    r#"<a href="{link}">Details</a> {}"#,
                                    button_form(&format!("{link}/approve"), "Approve", csrf, false),
                                    link = escape(&link)
                                ),
                            ]
                        })
                        .collect();
                    body.push_str(&table(
                        "Requests held by a control group",
                        &[
                            "Requester",
                            "Path",
                            "Operation",
                            "Age",
                            "Approvals so far",
                            "Actions",
                        ],
                        &rows,
                    ));
                }
            }
            Err(error) => body.push_str(&unavailable(&error)),
        }
        body.push_str("</section>");

        body.push_str(r#"<section aria-labelledby="access-heading"><h2 id="access-heading">Access requests</h2>"#);
        match self
            .call(who, Verb::Read, "sys/access/requests", json!({}))
            .await
        {
            Ok(response) => {
                let items = key_info(response.data.as_ref());
                let rows = |keep: &dyn Fn(&Value) -> bool, actions: AccessActions<'_>| {
                    items
                        .iter()
                        .filter(|item| keep(item))
                        .map(|item| access_row(item, now, actions))
                        .collect::<Vec<_>>()
                };
                let flag = |item: &Value, name: &str| item[name] == json!(true);
                let waiting = rows(
                    &|i| flag(i, "can_approve"),
                    AccessActions::ApproveOrDeny(csrf),
                );
                let grants = rows(
                    &|i| flag(i, "can_revoke") && !flag(i, "mine"),
                    AccessActions::Revoke(csrf),
                );
                let mine = rows(&|i| flag(i, "mine"), AccessActions::DetailsOnly);
                if waiting.is_empty() {
                    body.push_str("<p>No access request waits for your approval.</p>");
                } else {
                    body.push_str(&table(
                        "Access requests waiting for you",
                        &ACCESS_COLUMNS,
                        &waiting,
                    ));
                }
                if !grants.is_empty() {
                    body.push_str(&table(
                        "Access granted with your group's approval (you can revoke it)",
                        &ACCESS_COLUMNS,
                        &grants,
                    ));
                }
                if !mine.is_empty() {
                    body.push_str(&table("Your access requests", &ACCESS_COLUMNS, &mine));
                }
            }
            Err(error) => body.push_str(&unavailable(&error)),
        }
        body.push_str("</section>");
        self.page(who, "Approvals inbox", &body)
    }

    pub(super) async fn control_group_detail(
        &self,
        who: &SignedIn<'_>,
        accessor: &str,
        request: &UiRequest,
    ) -> HttpResponse {
        let response = match self
            .call(
                who,
                Verb::Write,
                "sys/control-group/request",
                json!({ "accessor": accessor }),
            )
            .await
        {
            Ok(response) => response,
            Err(error) => return self.core_error_page(&error, who.session),
        };
        let item = Value::Object(response.data.unwrap_or_default());
        let now = unix_now();
        let mut body = notice(request);
        body.push_str(&format!(
            r#"<dl>
<dt>Status</dt><dd>{status}</dd>
<dt>Requester</dt><dd>{requester}</dd>
<dt>Path</dt><dd><code>{path}</code></dd>
<dt>Operation</dt><dd>{operation}</dd>
<dt>Requested</dt><dd>{created} ({age})</dd>
<dt>Expires</dt><dd>{expires}</dd>
</dl>"#,
            status = escape(&text(&item, &["status"])),
            requester = requester_cell(
                &text(&item, &["request_entity", "name"]),
                &text(&item, &["request_entity", "id"])
            ),
            path = escape(&text(&item, &["request_path"])),
            operation = escape(&text(&item, &["request_operation"])),
            created = escape(&text(&item, &["creation_time"])),
            age = escape(&age(now - int(&item, &["creation_unix"]))),
            expires = escape(&text(&item, &["expire_time"])),
        ));
        let factors: Vec<Vec<String>> = list(&item, "factors")
            .iter()
            .map(|f| {
                vec![
                    escape(&text(f, &["name"])),
                    escape(&strings(f, "group_names").join(", ")),
                    format!(
                        "{} of {}",
                        int(f, &["approved_by"]).min(int(f, &["approvals"])),
                        int(f, &["approvals"])
                    ),
                ]
            })
            .collect();
        body.push_str(&table(
            "Factors",
            &["Factor", "Approver groups", "Approvals"],
            &factors,
        ));
        body.push_str(&approvals_table(&item));
        body.push_str(&history(&item));
        if text(&item, &["status"]) == "pending" {
            let action = format!(
                "/ui/requests/control-group/{}/approve",
                encode_segment(accessor)
            );
            body.push_str(&button_form(
                &action,
                "Approve this request",
                &who.session.csrf,
                false,
            ));
        }
        self.page(who, "Control-group request", &body)
    }

    pub(super) async fn approve_control_group(
        &self,
        who: &SignedIn<'_>,
        accessor: &str,
    ) -> HttpResponse {
        match self
            .call(
                who,
                Verb::Write,
                "sys/control-group/authorize",
                json!({ "accessor": accessor }),
            )
            .await
        {
            Ok(_) => redirect(&format!(
                "/ui/requests/control-group/{}?done=approved",
                encode_segment(accessor)
            )),
            Err(error) => self.core_error_page(&error, who.session),
        }
    }

    pub(super) async fn access_detail(
        &self,
        who: &SignedIn<'_>,
        id: &str,
        request: &UiRequest,
    ) -> HttpResponse {
        let path = format!("sys/access/requests/{id}");
        // `peek`: the UI never takes the grant's one-time token.
        let response = match self
            .call(who, Verb::Read, &path, json!({ "peek": true }))
            .await
        {
            Ok(response) => response,
            Err(error) => return self.core_error_page(&error, who.session),
        };
        let item = Value::Object(response.data.unwrap_or_default());
        let now = unix_now();
        let mut body = notice(request);
        body.push_str(&format!(
            r#"<dl>
<dt>State</dt><dd>{state}</dd>
<dt>Requester</dt><dd>{requester}</dd>
<dt>Role</dt><dd>{role}</dd>
<dt>Reason</dt><dd>{reason}</dd>
<dt>Event</dt><dd>{event}</dd>
<dt>Requested TTL</dt><dd>{ttl} seconds</dd>
<dt>Requested</dt><dd>{created} ({age})</dd>
<dt>Gatekeeper</dt><dd>{gatekeeper}</dd>
<dt>Approvals</dt><dd>{so_far} (groups: {groups}{each})</dd>
<dt>Grant ends</dt><dd>{expires}</dd>
</dl>"#,
            state = escape(&text(&item, &["state"])),
            requester = requester_cell(
                &text(&item, &["requester", "entity_name"]),
                &text(&item, &["requester", "entity_id"])
            ),
            role = escape(&text(&item, &["role"])),
            reason = escape(&text(&item, &["reason"])),
            event = event_cell(&item),
            ttl = int(&item, &["ttl"]),
            created = escape(&text(&item, &["creation_time"])),
            age = escape(&age(now - int(&item, &["creation_unix"]))),
            gatekeeper = escape(&text(&item, &["gatekeeper_reason"])),
            so_far = escape(&approvals_so_far(&item)),
            groups = escape(&strings(&item["approvals"], "group_names").join(", ")),
            each = if item["approvals"]["from_each_group"] == json!(true) {
                "; at least one from each"
            } else {
                ""
            },
            expires = escape(&text(&item, &["expire_time"])),
        ));
        body.push_str(&approvals_table(&item));
        body.push_str(&history(&item));
        let base = format!("/ui/requests/access/{}", encode_segment(id));
        let csrf = &who.session.csrf;
        match text(&item, &["state"]).as_str() {
            "pending-approval" => {
                body.push_str(&button_form(
                    &format!("{base}/approve"),
                    "Approve",
                    csrf,
                    true,
                ));
                body.push_str(&button_form(&format!("{base}/deny"), "Deny", csrf, true));
            }
            "approved" | "active" => body.push_str(&button_form(
                &format!("{base}/revoke"),
                "Revoke the grant",
                csrf,
                true,
            )),
            _ => {}
        }
        self.page(who, "Access request", &body)
    }

    pub(super) async fn act_on_access(
        &self,
        who: &SignedIn<'_>,
        id: &str,
        action: &str,
        reason: &str,
    ) -> HttpResponse {
        let path = format!("sys/access/requests/{id}/{action}");
        let reason: String = reason.chars().take(500).collect();
        match self
            .call(who, Verb::Write, &path, json!({ "reason": reason }))
            .await
        {
            Ok(_) => {
                let done = match action {
                    "approve" => "approved",
                    "deny" => "denied",
                    _ => "revoked",
                };
                redirect(&format!(
                    "/ui/requests/access/{}?done={done}",
                    encode_segment(id)
                ))
            }
            Err(error) => self.core_error_page(&error, who.session),
        }
    }

    /// Leases and tokens by mount: the live-count gauges of `sys/metrics` (kept up to date by
    /// the core, so the page costs one read whatever the number of leases).
    pub(super) async fn leases(&self, who: &SignedIn<'_>) -> HttpResponse {
        let mut body = String::new();
        let gauges = match self.call(who, Verb::Read, "sys/metrics", json!({})).await {
            Ok(response) => Value::Object(response.data.unwrap_or_default()),
            Err(error) => {
                body.push_str(&unavailable(&error));
                body.push_str(&message(
                    "notice",
                    "The counts come from sys/metrics: they need read on that path.",
                ));
                return self.page(who, "Leases and tokens", &body);
            }
        };
        let series = list(&gauges, "Gauges");
        let ready = series
            .iter()
            .any(|g| text(g, &["Name"]) == "ward_live_counts_ready" && int(g, &["Value"]) == 1);
        if !ready {
            body.push_str(&message(
                "notice",
                "The server is counting leases and tokens after unsealing; reload in a moment.",
            ));
        }
        for (name, heading_id, heading, caption, column, none) in [
            (
                "ward_lease_count",
                "leases-heading",
                "Leases by secrets mount",
                "Active leases",
                "Leases",
                "No live leases.",
            ),
            (
                "ward_token_count",
                "tokens-heading",
                "Tokens by auth mount",
                "Live tokens",
                "Tokens",
                "No live service tokens.",
            ),
        ] {
            let rows: Vec<Vec<String>> = series
                .iter()
                .filter(|g| text(g, &["Name"]) == name)
                .map(|g| {
                    vec![
                        format!("<code>{}</code>", escape(&text(g, &["Labels", "mount"]))),
                        int(g, &["Value"]).to_string(),
                    ]
                })
                .collect();
            body.push_str(&format!(
                r#"<section aria-labelledby="{heading_id}"><h2 id="{heading_id}">{heading}</h2>"#
            ));
            if rows.is_empty() && ready {
                body.push_str(&format!("<p>{none}</p>"));
            } else if !rows.is_empty() {
                body.push_str(&table(caption, &["Mount", column], &rows));
            }
            body.push_str("</section>");
        }
        self.page(who, "Leases and tokens", &body)
    }

    /// Audit devices with the chain status of file devices, and recent alerts.
    pub(super) async fn audit(&self, who: &SignedIn<'_>) -> HttpResponse {
        let mut body = String::new();
        body.push_str(
            r#"<section aria-labelledby="audit-heading"><h2 id="audit-heading">Audit devices</h2>"#,
        );
        match self.call(who, Verb::Read, "sys/audit", json!({})).await {
            Ok(response) => {
                let mut rows = Vec::new();
                for (path, device) in response.data.unwrap_or_default() {
                    let kind = text(&device, &["type"]);
                    let file = text(&device, &["options", "file_path"]);
                    let chain = if kind == "file" && !file.is_empty() {
                        verify_file(file.clone()).await
                    } else {
                        "not checked (not a file device)".into()
                    };
                    rows.push(vec![
                        format!("<code>{}</code>", escape(&path)),
                        escape(&kind),
                        escape(&file),
                        escape(&chain),
                    ]);
                }
                if rows.is_empty() {
                    body.push_str("<p>No audit device is enabled.</p>");
                } else {
                    body.push_str(&table(
                        "Enabled audit devices",
                        &["Path", "Type", "File", "Hash chain"],
                        &rows,
                    ));
                }
            }
            Err(error) => body.push_str(&unavailable(&error)),
        }
        body.push_str("</section>");
        body.push_str(r#"<section aria-labelledby="alerts-heading"><h2 id="alerts-heading">Recent alerts</h2>"#);
        match self
            .call(who, Verb::Read, "sys/alerts/recent", json!({}))
            .await
        {
            Ok(response) => {
                let data = Value::Object(response.data.unwrap_or_default());
                let rows: Vec<Vec<String>> = list(&data, "alerts")
                    .iter()
                    .rev()
                    .take(100)
                    .map(|a| {
                        vec![
                            escape(&text(a, &["time"])),
                            escape(&text(a, &["severity"])),
                            escape(&text(a, &["rule"])),
                            escape(&text(a, &["summary"])),
                        ]
                    })
                    .collect();
                if rows.is_empty() {
                    body.push_str("<p>No alerts since the server started.</p>");
                } else {
                    body.push_str(&table(
                        "Alerts, newest first",
                        &["Time", "Severity", "Rule", "Summary"],
                        &rows,
                    ));
                }
            }
            Err(error) => body.push_str(&unavailable(&error)),
        }
        body.push_str("</section>");
        self.page(who, "Audit and alerts", &body)
    }

    fn page(&self, who: &SignedIn<'_>, title: &str, body: &str) -> HttpResponse {
        let chrome = Chrome {
            display_name: &who.session.display_name,
            csrf: &who.session.csrf,
        };
        html_response(StatusCode::OK, html::page(title, Some(&chrome), body))
    }
}

/// Verifies an audit file's hash chain on the blocking pool.
async fn verify_file(path: String) -> String {
    let checked =
        tokio::task::spawn_blocking(move || -> Result<ward_core::audit::VerifyReport, String> {
            let file =
                std::fs::File::open(&path).map_err(|e| format!("cannot open: {}", e.kind()))?;
            let mut verifier = ward_core::audit::Verifier::new();
            verifier
                .feed(&path, std::io::BufReader::new(file))
                .map_err(|e| format!("cannot read: {}", e.kind()))?;
            Ok(verifier.finish())
        })
        .await;
    match checked {
        Ok(Ok(report)) => match &report.first_break {
            None => format!("intact: {} entries verified", report.lines),
            Some(broken) => format!("BROKEN at line {}: {:?}", broken.line, broken.reason),
        },
        Ok(Err(reason)) => reason,
        Err(_) => "verification failed".into(),
    }
}

/// The columns of an access request row.
const ACCESS_COLUMNS: [&str; 8] = [
    "Requester",
    "Role",
    "Reason",
    "Event",
    "Age",
    "State",
    "Approvals so far",
    "Actions",
];

/// The buttons of an access request row (each form carries the session's CSRF token).
#[derive(Clone, Copy)]
enum AccessActions<'a> {
    ApproveOrDeny(&'a str),
    Revoke(&'a str),
    DetailsOnly,
}

/// One access request as a row.
fn access_row(item: &Value, now: i64, actions: AccessActions<'_>) -> Vec<String> {
    let id = text(item, &["id"]);
    let link = format!("/ui/requests/access/{}", encode_segment(&id));
    let details = format!(r#"<a href="{}">Details</a>"#, escape(&link));
    let actions = match actions {
        AccessActions::ApproveOrDeny(csrf) => format!(
            "{details} {} {}",
            button_form(&format!("{link}/approve"), "Approve", csrf, false),
            button_form(&format!("{link}/deny"), "Deny", csrf, false)
        ),
        AccessActions::Revoke(csrf) => format!(
            "{details} {}",
            button_form(&format!("{link}/revoke"), "Revoke", csrf, false)
        ),
        AccessActions::DetailsOnly => details,
    };
    vec![
        requester_cell(
            &text(item, &["requester", "entity_name"]),
            &text(item, &["requester", "entity_id"]),
        ),
        escape(&text(item, &["role"])),
        escape(&text(item, &["reason"])),
        event_cell(item),
        escape(&age(now - int(item, &["creation_unix"]))),
        state_cell(item),
        escape(&approvals_so_far(item)),
        actions,
    ]
}

/// "1 of 2", and for a two-team rule the groups still missing: "1 of 2, none yet from secops".
fn approvals_so_far(item: &Value) -> String {
    let mut out = format!(
        "{} of {}",
        int(item, &["approvals", "received"]),
        int(item, &["approvals", "required"])
    );
    let missing = strings(&item["approvals"], "groups_missing");
    if !missing.is_empty() && text(item, &["state"]) == "pending-approval" {
        out.push_str(&format!(", none yet from {}", missing.join(", ")));
    }
    out
}

/// The state, and for an ended request who ended it and why (the gatekeeper's reason for a
/// denial by the gatekeeper): the requester learns why without opening the details.
fn state_cell(item: &Value) -> String {
    let state = text(item, &["state"]);
    if !matches!(state.as_str(), "denied" | "revoked") {
        return escape(&state);
    }
    let last = list(item, "history").last().cloned().unwrap_or_default();
    let actor = text(&last, &["actor_name"]);
    let note = text(&last, &["note"]);
    let mut out = escape(&state);
    if !actor.is_empty() {
        out.push_str(&format!(" by {}", escape(&actor)));
    }
    if !note.is_empty() {
        out.push_str(&format!(": {}", escape(&note)));
    }
    out
}

fn requester_cell(name: &str, id: &str) -> String {
    let name = if name.is_empty() { "(no entity)" } else { name };
    format!(
        r#"{}<br><small>entity <code>{}</code></small>"#,
        escape(name),
        escape(id)
    )
}

fn event_cell(item: &Value) -> String {
    let kind = text(item, &["event", "type"]);
    let id = text(item, &["event", "id"]);
    if kind.is_empty() && id.is_empty() {
        return "none".into();
    }
    format!("{} <code>{}</code>", escape(&kind), escape(&id))
}

fn factor_progress(item: &Value) -> String {
    let factors: Vec<String> = list(item, "factors")
        .iter()
        .map(|f| {
            format!(
                "{}: {} of {}",
                text(f, &["name"]),
                int(f, &["approved_by"]).min(int(f, &["approvals"])),
                int(f, &["approvals"])
            )
        })
        .collect();
    let approvers: Vec<String> = list(item, "authorizations")
        .iter()
        .map(|a| text(a, &["entity_name"]))
        .collect();
    if approvers.is_empty() {
        factors.join("; ")
    } else {
        format!("{} (by {})", factors.join("; "), approvers.join(", "))
    }
}

fn approvals_table(item: &Value) -> String {
    let rows: Vec<Vec<String>> = list(item, "authorizations")
        .iter()
        .map(|a| {
            vec![
                escape(&text(a, &["entity_name"])),
                format!("<code>{}</code>", escape(&text(a, &["entity_id"]))),
                escape(&text(a, &["time"])),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "<h2>Approvals</h2><p>No approvals yet.</p>".into();
    }
    format!(
        "<h2>Approvals</h2>{}",
        table("Who approved", &["Approver", "Entity", "Time"], &rows)
    )
}

fn history(item: &Value) -> String {
    let mut out = String::from("<h2>History</h2><ol class=\"history\">");
    for event in list(item, "history") {
        let actor = text(event, &["actor_name"]);
        let note = text(event, &["note"]);
        out.push_str(&format!(
            "<li><time>{}</time> {}{}{}</li>",
            escape(&text(event, &["time"])),
            escape(&text(event, &["event"])),
            if actor.is_empty() {
                String::new()
            } else {
                format!(" by {}", escape(&actor))
            },
            if note.is_empty() {
                String::new()
            } else {
                format!(": {}", escape(&note))
            },
        ));
    }
    out.push_str("</ol>");
    out
}

/// The notice after an action (`?done=approved`): a fixed text per code, never the query.
fn notice(request: &UiRequest) -> String {
    match request.query_value("done") {
        Some("approved") => message("notice", "Your approval was recorded."),
        Some("denied") => message("notice", "The request was denied."),
        Some("revoked") => message("notice", "The grant was revoked."),
        _ => String::new(),
    }
}

fn unavailable(error: &Error) -> String {
    match error {
        Error::PermissionDenied(m) => message("notice", &format!("Not available to you: {m}")),
        other => message("error", &other.client_messages().join(", ")),
    }
}

/// `data.key_info` values in `data.keys` order.
fn key_info(data: Option<&Map<String, Value>>) -> Vec<Value> {
    let Some(data) = data else { return Vec::new() };
    let info = data.get("key_info").and_then(Value::as_object);
    strings(&Value::Object(data.clone()), "keys")
        .iter()
        .filter_map(|k| info.and_then(|i| i.get(k)).cloned())
        .collect()
}

fn text(value: &Value, path: &[&str]) -> String {
    let mut current = value;
    for key in path {
        current = &current[*key];
    }
    match current {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn int(value: &Value, path: &[&str]) -> i64 {
    let mut current = value;
    for key in path {
        current = &current[*key];
    }
    current.as_i64().unwrap_or(0)
}

fn list<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value[key].as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn strings(value: &Value, key: &str) -> Vec<String> {
    list(value, key)
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_id_with_markup_is_shown_as_text() {
        let item = json!({
            "id": "r1", "role": "billing", "reason": "<b>bold</b>", "state": "pending-approval",
            "event": {"type": "nightly", "id": "<script>alert(1)</script>"},
            "requester": {"entity_name": "alice\" onmouseover=\"x", "entity_id": "e1"},
            "approvals": {"received": 0, "required": 2}, "creation_unix": 0,
        });
        let row = access_row(&item, 10, AccessActions::ApproveOrDeny("csrf")).join("");
        assert!(!row.contains("<script>"));
        assert!(row.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(row.contains("&lt;b&gt;bold&lt;/b&gt;"));
        assert!(!row.contains("\" onmouseover=\""));
    }
}
