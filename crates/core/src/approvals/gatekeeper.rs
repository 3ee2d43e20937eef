//! The webhook gatekeeper of access requests: what is sent, how it is signed, and how the
//! answer is read. The HTTP call itself is the server's ([`Gatekeeper`]); the core builds
//! the body, signs it, bounds the wait and interprets the reply, so the rules (timeout or
//! garbage means deny) hold whatever the transport does.
//!
//! The request is a JSON POST with `X-Ward-Signature: sha256=<hex HMAC-SHA256 of the body
//! with the role's secret>` and `X-Ward-Timestamp` (also inside the signed body, so a
//! receiver can refuse replays). The answer must be a 2xx JSON object with
//! `"decision": "allow" | "deny"` (or `"allow": true | false`) and a `"reason"` string.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

/// Sends one signed request to a gatekeeper webhook. Implemented by the server with an
/// HTTP client; tests use doubles.
#[async_trait]
pub trait Gatekeeper: Send + Sync {
    /// POSTs `body` (JSON) with `headers` to `url` and returns the status and the body of the
    /// answer, or a short reason when there was no answer (connection refused, timeout).
    async fn call(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<GatekeeperReply, String>;
}

/// What a gatekeeper answered, uninterpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatekeeperReply {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The gatekeeper's verdict as the core reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allow(String),
    Deny(String),
}

/// Reads a reply; anything but a well-formed 2xx allow is a deny, with a reason that says why.
pub(crate) fn verdict(reply: &GatekeeperReply) -> Verdict {
    if !(200..300).contains(&reply.status) {
        return Verdict::Deny(format!("gatekeeper answered HTTP {}", reply.status));
    }
    let Ok(Value::Object(answer)) = serde_json::from_slice::<Value>(&reply.body) else {
        return Verdict::Deny("gatekeeper answer was not a JSON object".into());
    };
    let reason = answer
        .get("reason")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .chars()
        .take(500)
        .collect::<String>();
    let allow = match (
        answer.get("decision").and_then(Value::as_str),
        answer.get("allow").and_then(Value::as_bool),
    ) {
        (Some("allow"), _) | (None, Some(true)) => true,
        (Some("deny"), _) | (None, Some(false)) => false,
        _ => {
            return Verdict::Deny(
                "gatekeeper answer had no decision (\"allow\" or \"deny\")".into(),
            )
        }
    };
    if allow {
        Verdict::Allow(reason)
    } else if reason.is_empty() {
        Verdict::Deny("denied by the gatekeeper".into())
    } else {
        Verdict::Deny(format!("denied by the gatekeeper: {reason}"))
    }
}

/// The headers of a signed call.
pub(crate) fn signed_headers(secret: &str, body: &[u8], timestamp: &str) -> Vec<(String, String)> {
    vec![
        ("Content-Type".into(), "application/json".into()),
        (
            "X-Ward-Signature".into(),
            crate::alerts::signature(secret, body),
        ),
        ("X-Ward-Timestamp".into(), timestamp.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> GatekeeperReply {
        GatekeeperReply {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn only_a_clear_allow_allows() {
        let cases = [
            (200, r#"{"decision":"allow","reason":"job running"}"#, true),
            (200, r#"{"allow":true}"#, true),
            (200, r#"{"decision":"deny","reason":"no job"}"#, false),
            (200, r#"{"allow":false}"#, false),
            (200, r#"{"decision":"maybe"}"#, false),
            (200, "<html>oops</html>", false),
            (200, "[true]", false),
            (500, r#"{"decision":"allow"}"#, false),
            (302, "", false),
        ];
        for (status, body, allowed) in cases {
            assert_eq!(
                matches!(verdict(&reply(status, body)), Verdict::Allow(_)),
                allowed,
                "{status} {body}"
            );
        }
    }

    #[test]
    fn signature_covers_the_body() {
        let headers = signed_headers("s3cret", b"{}", "2026-01-01T00:00:00Z");
        let signature = &headers
            .iter()
            .find(|(k, _)| k == "X-Ward-Signature")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        assert!(signature.starts_with("sha256="));
        assert_ne!(signature, &signed_headers("s3cret", b"{ }", "x")[1].1);
    }
}
