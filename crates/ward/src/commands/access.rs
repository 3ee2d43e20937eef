//! `ward access ...`: just-in-time access requests (`sys/access/requests`).
//!
//! An agent or a person asks for a named elevation with a reason and the event that needs it;
//! the server's gatekeeper and approvers decide; the requester then fetches the short-lived
//! token once (`ward access get ID`), with the same token that asked.

use serde_json::{json, Value};

use crate::args::Kind;
use crate::client::CliError;
use crate::commands::{print_keys, Cmd};

const USAGE: &str = "ward access request|list|get|approve|deny|revoke ...";

pub(crate) async fn access(argv: &[String]) -> Result<u8, CliError> {
    let Some((verb, rest)) = argv.split_first() else {
        return Err(CliError::usage(format!(
            "missing subcommand; usage: {USAGE}"
        )));
    };
    let cmd = Cmd::parse(
        rest,
        &[
            ("reason", Kind::Value),
            ("event-type", Kind::Value),
            ("event-id", Kind::Value),
            ("ttl", Kind::Value),
        ],
    )?;
    let client = cmd.client()?;
    match verb.as_str() {
        "request" => {
            let usage =
                "ward access request -reason=TEXT [-event-type=T -event-id=ID] [-ttl=D] ROLE";
            let role = cmd.expect_args(1, usage)?[0].clone();
            let reason = cmd
                .args
                .value("reason")
                .ok_or_else(|| CliError::usage(format!("missing -reason; usage: {usage}")))?;
            let mut body = json!({ "role": role, "reason": reason });
            if let Some(kind) = cmd.args.value("event-type") {
                body["event"] =
                    json!({ "type": kind, "id": cmd.args.value("event-id").unwrap_or("") });
            }
            if let Some(ttl) = cmd.seconds_flag("ttl")? {
                body["ttl"] = ttl;
            }
            let response = client
                .request("POST", "sys/access/requests", Some(&body))
                .await?;
            cmd.show(&response.unwrap_or(Value::Null))
        }
        "list" => {
            cmd.expect_args(0, "ward access list")?;
            let response = client.request("LIST", "sys/access/requests", None).await?;
            print_keys(&cmd, &response.unwrap_or(Value::Null))
        }
        "get" | "status" => {
            let id = cmd.expect_args(1, "ward access get ID")?[0].clone();
            let response = client
                .request("GET", &format!("sys/access/requests/{id}"), None)
                .await?;
            cmd.show(&response.unwrap_or(Value::Null))
        }
        "approve" | "deny" | "revoke" => {
            let usage = format!("ward access {verb} [-reason=TEXT] ID");
            let id = cmd.expect_args(1, &usage)?[0].clone();
            let body = json!({ "reason": cmd.args.value("reason").unwrap_or("") });
            let response = client
                .request(
                    "POST",
                    &format!("sys/access/requests/{id}/{verb}"),
                    Some(&body),
                )
                .await?;
            match response {
                Some(body) if !body.is_null() => cmd.show(&body),
                _ => {
                    println!("Success! {verb} recorded for access request {id}");
                    Ok(0)
                }
            }
        }
        other => Err(CliError::usage(format!(
            "unknown subcommand {other:?}; usage: {USAGE}"
        ))),
    }
}
