//! Runs the data-driven ACL cases in `tests/cases.txt` (format described at its top).
//!
//! Every case states the expected outcome, and for denials the reason, so a
//! case that passes for the wrong reason fails.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use ward_policy::{
    parse, Acl, AliasContext, Decision, Denial, GroupContext, IdentityContext, Operation, Policy,
    Request,
};

const FIXTURE: &str = include_str!("cases.txt");

#[test]
fn policy_cases_from_the_fixture() {
    let mut n_cases = 0;
    let mut failures: Vec<String> = Vec::new();
    let mut group = String::new();
    let mut policies: Vec<Policy> = Vec::new();
    let mut identity = IdentityContext::default();
    let mut lines = FIXTURE.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let line_number = index + 1;
        let line = line.trim();
        if let Some(title) = line.strip_prefix("## ") {
            group = title.to_owned();
            policies.clear();
            identity = IdentityContext::default();
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix("policy ") {
            let mut text = String::new();
            for (_, body_line) in lines.by_ref() {
                if body_line.trim() == "end" {
                    break;
                }
                text.push_str(body_line);
                text.push('\n');
            }
            match parse(name, &text) {
                Ok(policy) => policies.push(policy),
                Err(error) => panic!("line {line_number}: policy {name} does not parse: {error}"),
            }
            continue;
        }
        if let Some(json) = line.strip_prefix("identity ") {
            identity = identity_from_json(json);
            continue;
        }
        let (request, expected) = line
            .split_once(" => ")
            .unwrap_or_else(|| panic!("line {line_number}: missing ' => '"));
        let attached: Vec<&Policy> = policies.iter().collect();
        let acl = Acl::new(&attached, &identity);
        n_cases += 1;
        if let Some(path) = request.strip_prefix("CAPS ") {
            let got = acl.capabilities(path).join(",");
            if got != expected {
                failures.push(format!(
                    "line {line_number} [{group}] CAPS {path}: expected {expected}, got {got}"
                ));
            }
            continue;
        }
        let mut words = request.split_whitespace();
        let operation = match words.next() {
            Some("CREATE") => Operation::Create,
            Some("READ") => Operation::Read,
            Some("UPDATE") => Operation::Update,
            Some("PATCH") => Operation::Patch,
            Some("DELETE") => Operation::Delete,
            Some("LIST") => Operation::List,
            other => panic!("line {line_number}: unknown operation {other:?}"),
        };
        let path = words
            .next()
            .unwrap_or_else(|| panic!("line {line_number}: no path"));
        let mut parameters = None;
        let mut wrap_ttl = None;
        let mut requires_sudo = false;
        for word in words {
            if let Some(json) = word.strip_prefix("params=") {
                let json = json.replace("%20", " ");
                let value: serde_json::Value = serde_json::from_str(&json)
                    .unwrap_or_else(|error| panic!("line {line_number}: params: {error}"));
                parameters = value.as_object().cloned();
            } else if let Some(seconds) = word.strip_prefix("wrap=") {
                wrap_ttl = Some(seconds.parse().unwrap());
            } else if word == "sudo" {
                requires_sudo = true;
            } else {
                panic!("line {line_number}: unknown request word {word:?}");
            }
        }
        let decision = acl.authorize(&Request {
            path,
            operation,
            parameters: parameters.as_ref(),
            wrap_ttl,
            requires_sudo,
        });
        if let Err(problem) = check(&decision, expected) {
            failures.push(format!(
                "line {line_number} [{group}] {request} => {expected}: {problem}; got {decision:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n_cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(n_cases >= 200, "only {n_cases} cases");
}

fn check(decision: &Decision, expected: &str) -> Result<(), String> {
    let mut words = expected.split_whitespace();
    let outcome = words.next().unwrap_or_default();
    if let Some(rest) = outcome.strip_prefix("deny") {
        if decision.allowed || decision.denial.is_none() {
            return Err("expected a denial".to_owned());
        }
        if let Some(reason) = rest.strip_prefix(':') {
            let got = decision
                .denial
                .as_ref()
                .map(denial_reason)
                .unwrap_or_default();
            if got != reason {
                return Err(format!("expected reason {reason}, got {got}"));
            }
        }
        return Ok(());
    }
    if outcome != "allow" {
        return Err(format!("bad expectation {outcome:?}"));
    }
    if !decision.allowed || decision.denial.is_some() {
        return Err("expected allow".to_owned());
    }
    let mut expect_sudo = false;
    let mut factors: Vec<String> = Vec::new();
    for word in words {
        if word == "sudo-cap" {
            expect_sudo = true;
        } else if let Some(list) = word.strip_prefix("cg=") {
            factors = list
                .split(',')
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect();
        } else if let Some(list) = word.strip_prefix("granting=") {
            let expected: Vec<&str> = list.split(',').collect();
            if decision.granting_policies != expected {
                return Err(format!("expected granting policies {expected:?}"));
            }
        } else {
            return Err(format!("bad expectation word {word:?}"));
        }
    }
    if decision.sudo != expect_sudo {
        return Err(format!("expected sudo = {expect_sudo}"));
    }
    let got_factors: Vec<String> = decision
        .control_group
        .iter()
        .flat_map(|group| group.factors.iter().map(|factor| factor.name.clone()))
        .collect();
    if got_factors != factors {
        return Err(format!("expected control group factors {factors:?}"));
    }
    Ok(())
}

fn denial_reason(denial: &Denial) -> &'static str {
    match denial {
        Denial::NoMatchingRule => "no-match",
        Denial::ExplicitDeny { .. } => "explicit-deny",
        Denial::MissingCapability { .. } => "missing-capability",
        Denial::SudoRequired { .. } => "sudo-required",
        Denial::RequiredParameterMissing { .. } => "required-missing",
        Denial::ParameterDenied { .. } => "param-denied",
        Denial::ParameterNotAllowed { .. } => "param-not-allowed",
        Denial::WrappingRequired => "wrapping-required",
        Denial::WrapTtlTooShort { .. } => "wrap-too-short",
        Denial::WrapTtlTooLong { .. } => "wrap-too-long",
    }
}

fn identity_from_json(json: &str) -> IdentityContext {
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    let string = |value: &serde_json::Value, key: &str| {
        value.get(key).and_then(|v| v.as_str()).map(str::to_owned)
    };
    let map = |value: &serde_json::Value, key: &str| -> BTreeMap<String, String> {
        value
            .get(key)
            .and_then(|v| v.as_object())
            .map(|object| {
                object
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let aliases = value
        .get("aliases")
        .and_then(|v| v.as_object())
        .map(|object| {
            object
                .iter()
                .map(|(accessor, alias)| {
                    (
                        accessor.clone(),
                        AliasContext {
                            id: string(alias, "id").unwrap_or_default(),
                            name: string(alias, "name").unwrap_or_default(),
                            metadata: map(alias, "metadata"),
                            custom_metadata: map(alias, "custom_metadata"),
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let groups = value
        .get("groups")
        .and_then(|v| v.as_array())
        .map(|array| {
            array
                .iter()
                .map(|group| GroupContext {
                    id: string(group, "id").unwrap_or_default(),
                    name: string(group, "name").unwrap_or_default(),
                    metadata: map(group, "metadata"),
                })
                .collect()
        })
        .unwrap_or_default();
    IdentityContext {
        entity_id: string(&value, "entity_id"),
        entity_name: string(&value, "entity_name"),
        entity_metadata: map(&value, "metadata"),
        aliases,
        groups,
    }
}
