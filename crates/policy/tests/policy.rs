//! Parsing policies: fields, errors with positions, JSON detection, merging and names.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::json;
use ward_policy::{normalize_name, parse, Capability, PolicyError};

fn error(text: &str) -> String {
    match parse("p", text) {
        Ok(policy) => panic!("{text:?} should be refused, parsed as {policy:?}"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn every_field_is_decoded() {
    let text = r#"
# A policy using every field.
path "secret/data/app/*" {
  capabilities = ["create", "read", "update", "patch", "delete", "list", "sudo", "subscribe", "recover"]
  allowed_parameters = { "Bar" = ["zip", 1, true] "*" = [] }
  denied_parameters = {
    "baz" = []
  }
  required_parameters = ["Bar"]
  min_wrapping_ttl = "1s"
  max_wrapping_ttl = 90
  mfa_methods = ["totp"]
  subscribe_event_types = ["kv*"]
  comment = "application secrets"
  control_group = {
    ttl = "4h"
    factor "ops" {
      controlled_capabilities = ["update", "delete"]
      identity {
        group_names = ["ops"]
        group_ids = ["g-1"]
        approvals = 2
      }
    }
  }
}
"#;
    let policy = parse("App-Policy", text).unwrap();
    assert_eq!(policy.name, "app-policy");
    assert_eq!(policy.raw, text);
    let rule = &policy.rules[0];
    assert_eq!(rule.pattern, "secret/data/app/*");
    assert_eq!(rule.line, 3);
    assert_eq!(
        rule.capabilities.names(),
        [
            "create",
            "delete",
            "list",
            "patch",
            "read",
            "recover",
            "subscribe",
            "sudo",
            "update"
        ]
    );
    assert_eq!(
        rule.allowed_parameters["bar"],
        vec![json!("zip"), json!(1), json!(true)]
    );
    assert!(rule.allowed_parameters["*"].is_empty());
    assert!(rule.denied_parameters["baz"].is_empty());
    assert_eq!(rule.required_parameters, ["bar"]);
    assert_eq!(rule.min_wrapping_ttl, Some(Duration::from_secs(1)));
    assert_eq!(rule.max_wrapping_ttl, Some(Duration::from_secs(90)));
    assert_eq!(rule.mfa_methods, ["totp"]);
    assert_eq!(rule.subscribe_event_types, ["kv*"]);
    assert_eq!(rule.comment.as_deref(), Some("application secrets"));
    let group = rule.control_group.as_ref().unwrap();
    assert_eq!(group.ttl, Some(Duration::from_secs(4 * 3600)));
    let factor = &group.factors[0];
    assert_eq!(factor.name, "ops");
    assert!(factor.controlled_capabilities.contains(Capability::Update));
    assert!(!factor.controlled_capabilities.contains(Capability::Read));
    assert_eq!(factor.group_names, ["ops"]);
    assert_eq!(factor.group_ids, ["g-1"]);
    assert_eq!(factor.approvals, 2);
}

#[test]
fn json_and_hcl_give_the_same_rules() {
    let hcl = r#"
path "secret/*" { capabilities = ["read", "list"] }
path "secret/private/*" {
  capabilities = ["deny"]
}
path "pki/issue/+" {
  capabilities = ["update"]
  allowed_parameters = { "common_name" = ["*.example.com"] }
  max_wrapping_ttl = "1h"
}
"#;
    let json = r#"  {
  "path": {
    "secret/*": {"capabilities": ["read", "list"]},
    "secret/private/*": {"capabilities": ["deny"]},
    "pki/issue/+": {"capabilities": ["update"], "allowed_parameters": {"common_name": ["*.example.com"]}, "max_wrapping_ttl": "1h"}
  }
}"#;
    let mut from_hcl = parse("p", hcl).unwrap().rules;
    let mut from_json = parse("p", json).unwrap().rules;
    for rule in from_hcl.iter_mut().chain(from_json.iter_mut()) {
        rule.line = 0;
    }
    // serde_json's default map orders keys, so compare as sets.
    from_hcl.sort_by(|a, b| a.pattern.cmp(&b.pattern));
    from_json.sort_by(|a, b| a.pattern.cmp(&b.pattern));
    assert_eq!(from_hcl, from_json);
}

#[test]
fn repeated_stanzas_merge() {
    let policy = parse(
        "p",
        r#"
path "a" { capabilities = ["read"] }
path "b" { capabilities = ["list"] }
path "a" {
  capabilities = ["update"]
  required_parameters = ["x"]
}
path "/b" { capabilities = ["deny"] }
"#,
    )
    .unwrap();
    assert_eq!(policy.rules.len(), 2);
    assert_eq!(policy.rules[0].capabilities.names(), ["read", "update"]);
    assert_eq!(policy.rules[0].required_parameters, ["x"]);
    assert_eq!(policy.rules[1].capabilities.names(), ["deny"]);
}

#[test]
fn legacy_policy_values() {
    let caps = |value: &str| {
        parse("p", &format!("path \"x\" {{ policy = \"{value}\" }}"))
            .unwrap()
            .rules[0]
            .capabilities
            .names()
    };
    assert_eq!(caps("read"), ["list", "read"]);
    assert_eq!(
        caps("write"),
        ["create", "delete", "list", "read", "update"]
    );
    assert_eq!(
        caps("sudo"),
        ["create", "delete", "list", "read", "sudo", "update"]
    );
    assert_eq!(caps("deny"), ["deny"]);
    assert!(error(r#"path "x" { policy = "admin" }"#).contains("\"admin\" is not one of"));
}

#[test]
fn errors_name_the_problem_and_its_position() {
    assert_eq!(
        error("path \"x\" {\n  capabilities = [\"read\", \"rwite\"]\n}"),
        "unknown capability \"rwite\" at line 2, column 27"
    );
    assert_eq!(
        error("path \"x\" {\n  capabilites = [\"read\"]\n}"),
        "unknown key `capabilites` at line 2, column 3"
    );
    assert_eq!(
        error("paths \"x\" {}"),
        "unknown key `paths` at line 1, column 1"
    );
    assert_eq!(
        error("path \"x\" {\n  capabilities = \"read\"\n}"),
        "invalid `capabilities`: `capabilities` must be a list, found a string at line 2, column 3"
    );
    assert_eq!(
        error("path \"x\" {\n  min_wrapping_ttl = \"1 hour\"\n}"),
        "invalid `min_wrapping_ttl`: invalid duration \"1 hour\": unknown unit (use ns, us, ms, s, m or h) at line 2, column 3"
    );
    assert!(
        error("path \"x\" { min_wrapping_ttl = \"1h\" max_wrapping_ttl = \"1m\" }")
            .contains("max_wrapping_ttl cannot be less than min_wrapping_ttl")
    );
    assert!(error("path \"x\" \"y\" { }").contains("exactly one label"));
    assert!(
        error("path \"x\" { expiration = \"2030-01-01T00:00:00Z\" }")
            .contains("per-path expiration is not supported")
    );
    assert!(error("path \"x\" { allowed_parameters = { a = \"b\" } }").contains("must be a list"));
    assert_eq!(
        error("path \"x\" {\n  capabilities = [\"read\"\n"),
        "policy syntax error: expected ',' or ']' in list, found end of input at line 3, column 1"
    );
    assert!(error("{\"path\": {\"x\": {\"capabilities\": [\"read\"]}}")
        .starts_with("invalid JSON policy"));
    assert!(error(r#"{"path": {"x": {"capabilities": ["bogus"]}}}"#)
        .contains("unknown capability \"bogus\""));
    assert!(error(r#"{"path": {"x": {"nope": 1}}}"#).contains("unknown key `nope`"));
}

#[test]
fn control_group_errors() {
    let base = |inner: &str| {
        format!("path \"x\" {{\n capabilities = [\"read\"]\n control_group = {{ {inner} }}\n}}")
    };
    assert!(error(&base("ttl = \"1h\"")).contains("at least one factor"));
    assert!(error(&base(
        "factor \"f\" { controlled_capabilities = [\"update\"] identity { group_names = [\"a\"] approvals = 1 } }"
    ))
    .contains("subset"));
    assert!(
        error(&base("factor \"f\" { identity { group_names = [\"a\"] } }")).contains("approvals")
    );
    assert!(error(&base("factor \"f\" { identity { approvals = 1 } }"))
        .contains("names no approver groups"));
    assert!(error(&base(
        "factor \"f\" { identity { group_names = [\"a\"] approvals = 0 } }"
    ))
    .contains("positive integer"));
    assert!(error(&base(
        "factor \"f\" { identity { group_names = [\"a\"] approvals = 1 bogus = 1 } }"
    ))
    .contains("unknown key `bogus`"));
    assert!(parse(
        "p",
        &base("factor \"f\" { identity { group_names = [\"a\"] approvals = 1 } }")
    )
    .is_ok());
}

#[test]
fn vault_documentation_examples_parse() {
    let examples = [
        r#"
path "secret/foo" {
  capabilities = ["create"]
  allowed_parameters = {
    "*" = []
  }
  denied_parameters = {
    "bar" = ["zip", "zap"]
  }
}"#,
        r#"path "secret/foo" { capabilities = ["create"] allowed_parameters = { "bar" = ["zip"] "*" = [] } }"#,
        r#"
path "sys/auth/*" {
  capabilities = ["create", "update", "sudo"]
}
path "auth/*" {
  capabilities = ["create", "read", "update", "delete", "list", "sudo"]
}
path "sys/policies/acl/*" { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }
"#,
        r#"
path "secret/data/{{identity.entity.id}}/*" {
  capabilities = ["create", "update", "patch", "read", "delete"]
}
path "secret/metadata/{{identity.entity.id}}/*" {
  capabilities = ["list"]
}"#,
        r#"
path "auth/approle/role/my-role/secret-id" {
  capabilities = ["update"]
  min_wrapping_ttl = "100s"
  max_wrapping_ttl = "600s"
}"#,
        r#"
path "secret/foo" {
  capabilities = ["read"]
  control_group = {
    factor "ops_manager" {
      identity {
        group_names = ["managers"]
        approvals = 1
      }
    }
  }
}"#,
        "name = \"ignored\"\npath \"x\" { capabilities = [] }",
        "",
    ];
    for text in examples {
        if let Err(error) = parse("p", text) {
            panic!("{text}\nfailed: {error}");
        }
    }
}

#[test]
fn names_are_lowercased_and_lookalikes_refused() {
    assert_eq!(normalize_name("Root").unwrap(), "root");
    assert_eq!(normalize_name("ROOT").unwrap(), "root");
    assert_eq!(normalize_name("my-app_1.2/x").unwrap(), "my-app_1.2/x");
    for hostile in [
        "",
        "root ",
        " root",
        "ro ot",
        "\troot",
        "root\n",
        "ｒｏｏｔ",
        "root\u{200b}",
        "\u{200b}root",
        "rооt",
        "root\u{0}",
        "Root\u{301}",
        "roo\u{74}\u{feff}",
        "ROOT\u{00a0}",
    ] {
        match normalize_name(hostile) {
            Err(PolicyError::InvalidName { .. }) => {}
            other => panic!("{hostile:?} must be refused, got {other:?}"),
        }
    }
    // Whatever the input, only plain ASCII spellings of root can become "root".
    for candidate in [
        "root",
        "Root",
        "rOoT",
        "ｒｏｏｔ",
        "root\u{200b}",
        "root ",
        "ROOT\u{0}",
    ] {
        if let Ok(name) = normalize_name(candidate) {
            assert!(candidate.eq_ignore_ascii_case("root") || name != "root");
        }
    }
    assert!(parse("bad name", "").is_err());
    assert_eq!(parse("Default", "").unwrap().name, "default");
}
