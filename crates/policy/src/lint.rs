//! `ward policy validate`: what is wrong, or probably wrong, in a policy repository.
//!
//! [`lint`] takes the decoded files of a repository ([`crate::repository`])
//! and returns [`Diagnostic`]s with file, line and column. Errors are what the
//! server would refuse or what cannot work: syntax errors, unknown
//! capabilities (every one, with a suggestion), invalid or reserved policy
//! names, malformed object and test files, `root` attached to a group.
//! Warnings are what the server accepts but almost certainly does not do
//! what the author meant:
//!
//! - patterns that can never match, or not as written: `*` before the end (a
//!   literal star), `+` inside a segment (a literal plus), `//`, `.` or `..`
//!   segments, a leading `/` (ignored), whitespace, unknown or unterminated
//!   `{{...}}` templates;
//! - `sudo` on a pattern that reaches no root-protected path
//!   ([`crate::sudo::SUDO_PATHS`]), `deny` listed with other capabilities,
//!   empty capability lists, stanzas repeated for one pattern;
//! - shadowing: a rule that loses, by the evaluator's priority rules, to a
//!   rule that is not narrower than itself, on paths both match, with
//!   different capabilities. The message names a path, the winner and the
//!   priority rule that decides, checked with [`Acl::explain`] on that path.
//! - object files naming policies the repository does not define.
//!
//! Reading files from disk stays with the caller; [`decode_source`] turns
//! bytes into text with the size and encoding errors every command reports
//! the same way.

use std::collections::BTreeMap;

use crate::acl::{compare_patterns, Acl, Operation, PriorityRule};
use crate::hcl::{self, Body, Item, ValueKind};
use crate::pattern;
use crate::policy::{self, Capability, PathRule, Policy, PolicyError};
use crate::repository::{classify, Diagnostic, FileRole, ObjectKind, Repository, SourceFile};
use crate::sudo;
use crate::template::IdentityContext;
use crate::testing;

/// The largest file the tools read: policies are small, and a huge file is a mistake.
pub const MAX_FILE_SIZE: usize = 1024 * 1024;

/// Shadowing analysis is skipped for policies with more rules than this.
const MAX_SHADOW_RULES: usize = 500;

/// Turns a file's bytes into a [`SourceFile`], refusing huge and non-UTF-8 files.
pub fn decode_source(path: &str, bytes: Vec<u8>) -> Result<SourceFile, Diagnostic> {
    if bytes.len() > MAX_FILE_SIZE {
        return Err(Diagnostic::error(
            path,
            0,
            0,
            format!(
                "file is too large ({} bytes; the limit is {MAX_FILE_SIZE} bytes, 1 MiB)",
                bytes.len()
            ),
        ));
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(SourceFile {
            path: path.to_owned(),
            text,
        }),
        Err(error) => {
            let valid = error.utf8_error().valid_up_to();
            let bytes = error.as_bytes();
            let before = bytes.get(..valid).unwrap_or_default();
            let line = before.iter().filter(|byte| **byte == b'\n').count() + 1;
            let line_start = before
                .iter()
                .rposition(|byte| *byte == b'\n')
                .map_or(0, |index| index + 1);
            let column = String::from_utf8_lossy(before.get(line_start..).unwrap_or_default())
                .chars()
                .count()
                + 1;
            let byte = bytes.get(valid).copied().unwrap_or_default();
            Err(Diagnostic::error(
                path,
                u32::try_from(line).unwrap_or(u32::MAX),
                u32::try_from(column).unwrap_or(u32::MAX),
                format!("file is not valid UTF-8 (byte 0x{byte:02x}); save it as UTF-8"),
            ))
        }
    }
}

/// Every finding about the repository, errors and warnings, sorted by file and position.
pub fn lint(files: &[SourceFile]) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    for file in files {
        if let FileRole::Policy { name } = classify(&file.path) {
            lint_policy_file(file, &name, &mut names, &mut diagnostics);
        }
    }
    let (repository, load_diagnostics) = Repository::load(files);
    // Policy files were checked above, in more detail.
    diagnostics.extend(
        load_diagnostics
            .into_iter()
            .filter(|d| !matches!(classify(&d.file), FileRole::Policy { .. })),
    );
    for object in &repository.objects {
        for name in object.policies() {
            if name == "root" && object.kind == ObjectKind::Group {
                diagnostics.push(Diagnostic::error(
                    &object.file,
                    object.line,
                    1,
                    format!("{object} attaches \"root\": the server refuses root on identities"),
                ));
            } else if name != "default"
                && name != "root"
                && !repository.policies.contains_key(&name)
            {
                diagnostics.push(Diagnostic::warning(
                    &object.file,
                    object.line,
                    1,
                    format!(
                        "{object} attaches policy {name:?}, which this repository does not define (it must exist on the server)"
                    ),
                ));
            }
        }
    }
    for file in &repository.test_files {
        if let Err(diagnostic) = testing::parse_test_file(&file.path, &file.text) {
            diagnostics.push(diagnostic);
        }
    }
    diagnostics.sort_by(|a, b| {
        (a.file.as_str(), a.line, a.column).cmp(&(b.file.as_str(), b.line, b.column))
    });
    diagnostics.dedup();
    diagnostics
}

/// Checks one policy file, in isolation (plus the case-insensitive name clash).
pub fn lint_policy(file: &str, name: &str, text: &str) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    let source = SourceFile {
        path: file.to_owned(),
        text: text.to_owned(),
    };
    lint_policy_file(&source, name, &mut BTreeMap::new(), &mut diagnostics);
    diagnostics
}

fn lint_policy_file(
    file: &SourceFile,
    name: &str,
    names: &mut BTreeMap<String, String>,
    out: &mut Vec<Diagnostic>,
) {
    let path = file.path.as_str();
    let normalized = match policy::normalize_name(name) {
        Ok(normalized) => normalized,
        Err(error) => {
            out.push(Diagnostic::error(
                path,
                0,
                0,
                format!("{error} (the file name is the policy name)"),
            ));
            return;
        }
    };
    if matches!(normalized.as_str(), "root" | "response-wrapping") {
        out.push(Diagnostic::error(
            path,
            0,
            0,
            format!("invalid policy name {normalized:?}: it is built into the server and cannot be written"),
        ));
        return;
    }
    if normalized != name {
        out.push(Diagnostic::warning(
            path,
            0,
            0,
            format!("the server lowercases policy names: this is policy {normalized:?}; rename the file to {normalized}.hcl"),
        ));
    }
    if let Some(other) = names.insert(normalized.clone(), path.to_owned()) {
        out.push(Diagnostic::error(
            path,
            0,
            0,
            format!("policy {normalized:?} is also defined by {other}"),
        ));
    }
    let is_json = file.text.trim_start().starts_with('{');
    let mut reported_capabilities = false;
    if !is_json {
        match hcl::parse(&file.text) {
            Ok(body) => reported_capabilities = lint_tree(path, &body, out),
            Err(error) => {
                out.push(Diagnostic::error(
                    path,
                    error.line,
                    error.column,
                    format!("syntax error: {}", error.message),
                ));
                return;
            }
        }
    }
    match policy::parse(&normalized, &file.text) {
        Ok(policy) => {
            if is_json {
                for rule in &policy.rules {
                    lint_pattern(path, &rule.pattern, 0, 0, out);
                }
            }
            lint_shadowing(path, &policy, out);
        }
        Err(PolicyError::UnknownCapability { .. }) if reported_capabilities => {}
        Err(error) => out.push(Diagnostic::from_policy_error(path, &error)),
    }
}

/// Checks on the syntax tree, where every value has a position. Returns
/// whether an unknown capability was reported.
fn lint_tree(file: &str, body: &Body, out: &mut Vec<Diagnostic>) -> bool {
    let mut unknown = false;
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for (pattern, item, stanza) in path_stanzas(body) {
        if let Some(first) = seen.get(pattern) {
            out.push(Diagnostic::warning(
                file,
                item.line,
                item.column,
                format!("path {pattern:?} is also declared at line {first}; the stanzas are merged (and a deny in either wins)"),
            ));
        } else {
            seen.insert(pattern.to_owned(), item.line);
        }
        lint_pattern(file, pattern, item.line, item.column, out);
        let mut capabilities: Vec<(String, u32, u32)> = Vec::new();
        let mut has_legacy_policy = false;
        for entry in stanza.items() {
            match entry.key.as_str() {
                "capabilities" => {
                    if let ValueKind::List(values) = &entry.value.kind {
                        for value in values {
                            if let Some(text) = value.as_str() {
                                capabilities.push((text.to_owned(), value.line, value.column));
                            }
                        }
                    }
                }
                "policy" => has_legacy_policy = true,
                _ => {}
            }
        }
        for (capability, line, column) in &capabilities {
            if Capability::from_name(capability).is_none() {
                unknown = true;
                let hint = suggestion(capability)
                    .map(|known| format!("; did you mean {known:?}?"))
                    .unwrap_or_else(|| {
                        format!(
                            "; capabilities are {}",
                            Capability::ALL.map(Capability::as_str).join(", ")
                        )
                    });
                out.push(Diagnostic::error(
                    file,
                    *line,
                    *column,
                    format!("unknown capability {capability:?}{hint}"),
                ));
            }
        }
        let names: Vec<&str> = capabilities
            .iter()
            .map(|(name, _, _)| name.as_str())
            .collect();
        if names.contains(&"deny") && names.len() > 1 {
            out.push(Diagnostic::warning(
                file,
                item.line,
                item.column,
                format!(
                    "path {pattern:?} lists deny with other capabilities: deny overrides them all"
                ),
            ));
        }
        if names.is_empty() && !has_legacy_policy {
            out.push(Diagnostic::warning(
                file,
                item.line,
                item.column,
                format!("path {pattern:?} grants nothing, and where it is the most specific match it denies every request"),
            ));
        }
        if names.contains(&"sudo") && sudo::reaches_sudo_path(pattern).is_none() {
            out.push(Diagnostic::warning(
                file,
                item.line,
                item.column,
                format!("sudo on {pattern:?} has no effect: no root-protected path matches it"),
            ));
        }
    }
    unknown
}

/// The `path` stanzas of a policy's tree, in both HCL shapes:
/// `path "p" { ... }` and `path = { "p" = { ... } }`.
fn path_stanzas(body: &Body) -> Vec<(&str, &Item, &Body)> {
    let mut out = Vec::new();
    for item in body.get_all("path") {
        match (item.labels.as_slice(), &item.value.kind) {
            ([pattern], ValueKind::Object(stanza)) => out.push((pattern.as_str(), item, stanza)),
            ([], ValueKind::Object(outer)) => {
                for inner in outer.items() {
                    if let ValueKind::Object(stanza) = &inner.value.kind {
                        out.push((inner.key.as_str(), inner, stanza));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Patterns that cannot match, or not as the author wrote them.
fn lint_pattern(file: &str, raw: &str, line: u32, column: u32, out: &mut Vec<Diagnostic>) {
    let mut warn = |message: String| out.push(Diagnostic::warning(file, line, column, message));
    let pattern = raw.strip_prefix('/').unwrap_or(raw);
    if pattern.len() != raw.len() {
        warn(format!(
            "the leading `/` of {raw:?} is ignored: the pattern is read as {pattern:?}"
        ));
    }
    if pattern.is_empty() {
        warn("the empty pattern matches no request path".to_owned());
        return;
    }
    if pattern.chars().any(char::is_whitespace) {
        warn(format!(
            "pattern {raw:?} contains whitespace; request paths almost never do"
        ));
    }
    let stem = pattern.strip_suffix('*').unwrap_or(pattern);
    if stem.contains('*') {
        warn(format!(
            "`*` is a wildcard only at the end of a pattern: in {raw:?} it is a literal star, so the pattern only matches paths that contain `*`"
        ));
    }
    if stem.contains("//") {
        warn(format!(
            "pattern {raw:?} can never match: request paths never contain `//`"
        ));
    }
    let segments: Vec<&str> = stem.split('/').collect();
    if segments
        .iter()
        .any(|segment| matches!(*segment, "." | ".."))
    {
        warn(format!(
            "pattern {raw:?} can never match: the server refuses paths with `.` or `..` segments"
        ));
    }
    if segments
        .iter()
        .any(|segment| segment.contains('+') && *segment != "+")
    {
        warn(format!(
            "`+` is a wildcard only as a whole segment (`a/+/b`): in {raw:?} it is a literal plus"
        ));
    }
    if let Some(message) = template_problem(pattern) {
        warn(format!("pattern {raw:?} {message}"));
    }
}

/// An unterminated or unknown `{{...}}` placeholder makes the stanza match nothing.
fn template_problem(pattern: &str) -> Option<String> {
    let mut rest = pattern;
    while let Some((_, after)) = rest.split_once("{{") {
        let Some((inside, next)) = after.split_once("}}") else {
            return Some("has `{{` without `}}`: the stanza never matches".to_owned());
        };
        let placeholder = inside.trim();
        if !known_placeholder(placeholder) {
            return Some(format!(
                "uses the unknown template `{{{{{placeholder}}}}}`: the stanza never matches"
            ));
        }
        rest = next;
    }
    None
}

fn known_placeholder(placeholder: &str) -> bool {
    let parts: Vec<&str> = placeholder.split('.').collect();
    match parts.as_slice() {
        ["identity", "entity", "id" | "name"] => true,
        ["identity", "entity", "metadata", key] => !key.is_empty(),
        ["identity", "entity", "aliases", accessor, "id" | "name"] => !accessor.is_empty(),
        ["identity", "entity", "aliases", accessor, "metadata" | "custom_metadata", key] => {
            !accessor.is_empty() && !key.is_empty()
        }
        ["identity", "groups", "ids", id, "name"] => !id.is_empty(),
        ["identity", "groups", "names", name, "id"] => !name.is_empty(),
        ["identity", "groups", "ids" | "names", group, "metadata", key] => {
            !group.is_empty() && !key.is_empty()
        }
        _ => false,
    }
}

/// Rules that lose, on some path, to a rule no narrower than themselves.
fn lint_shadowing(file: &str, policy: &Policy, out: &mut Vec<Diagnostic>) {
    if policy.rules.len() > MAX_SHADOW_RULES {
        return;
    }
    for (index, a) in policy.rules.iter().enumerate() {
        for b in policy.rules.iter().skip(index + 1) {
            if let Some(diagnostic) = shadowing(file, a, b) {
                out.push(diagnostic);
            }
        }
    }
}

fn shadowing(file: &str, a: &PathRule, b: &PathRule) -> Option<Diagnostic> {
    let witness = pattern::overlap(&a.pattern, &b.pattern)?;
    let (ordering, rule) = compare_patterns(&a.pattern, &b.pattern);
    if matches!(rule, PriorityRule::Exact | PriorityRule::Same) {
        return None;
    }
    let (winner, loser) = if ordering.is_gt() { (a, b) } else { (b, a) };
    // A broader rule losing to a narrower one is what everyone expects.
    if pattern::covers(&loser.pattern, &winner.pattern) {
        return None;
    }
    if winner.capabilities == loser.capabilities {
        return None;
    }
    // Confirm with the evaluator itself, on the witness path.
    let pair = Policy {
        name: "lint".to_owned(),
        raw: String::new(),
        rules: vec![winner.clone(), loser.clone()],
    };
    let acl = Acl::new(&[&pair], &IdentityContext::default());
    let explanation = acl.explain(&witness, Operation::Read);
    if explanation.winner.as_ref().map(|w| w.pattern.as_str()) != Some(winner.pattern.as_str()) {
        return None;
    }
    let message = if pattern::covers(&winner.pattern, &loser.pattern) {
        format!(
            "path {:?} never decides: {:?} matches every path it matches and wins ({rule}); [{}] applies instead of [{}]",
            loser.pattern,
            winner.pattern,
            winner.capabilities.names().join(", "),
            loser.capabilities.names().join(", "),
        )
    } else {
        format!(
            "path {:?} loses to {:?} on paths such as {witness:?}: both match, and {:?} wins ({rule}); there [{}] applies instead of [{}]",
            loser.pattern,
            winner.pattern,
            winner.pattern,
            winner.capabilities.names().join(", "),
            loser.capabilities.names().join(", "),
        )
    };
    Some(Diagnostic::warning(file, loser.line, 1, message))
}

/// The known capability closest to a misspelt one, if it is close.
fn suggestion(unknown: &str) -> Option<&'static str> {
    let lower = unknown.to_lowercase();
    Capability::ALL
        .into_iter()
        .map(|capability| (distance(&lower, capability.as_str()), capability.as_str()))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, name)| name)
}

/// Levenshtein distance, for short words.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution =
                previous.get(j).copied().unwrap_or_default() + usize::from(ca != *cb);
            let deletion = previous.get(j + 1).copied().unwrap_or_default() + 1;
            let insertion = current.get(j).copied().unwrap_or_default() + 1;
            current.push(substitution.min(deletion).min(insertion));
        }
        previous = current;
    }
    previous.last().copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::Severity;

    fn messages(name: &str, text: &str) -> Vec<String> {
        lint_policy(&format!("{name}.hcl"), name, text)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn has(messages: &[String], needle: &str) -> bool {
        messages.iter().any(|message| message.contains(needle))
    }

    #[test]
    fn clean_policy_has_no_findings() {
        let found = messages(
            "agent",
            "path \"secret/data/app/*\" {\n  capabilities = [\"read\"]\n}\n\npath \"sys/seal\" {\n  capabilities = [\"update\", \"sudo\"]\n}\n",
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn every_unknown_capability_with_a_suggestion() {
        let found = messages(
            "p",
            "path \"a\" {\n  capabilities = [\"raed\", \"list\", \"wrte\", \"frobnicate\"]\n}\n",
        );
        assert!(
            has(
                &found,
                "p.hcl:2:19: error: unknown capability \"raed\"; did you mean \"read\"?"
            ),
            "{found:?}"
        );
        assert!(
            has(&found, "p.hcl:2:35: error: unknown capability \"wrte\""),
            "{found:?}"
        );
        assert!(
            has(
                &found,
                "unknown capability \"frobnicate\"; capabilities are create, read"
            ),
            "{found:?}"
        );
        assert_eq!(found.len(), 3, "{found:?}");
    }

    #[test]
    fn patterns_that_cannot_match() {
        let table = [
            ("secret/*/x", "literal star"),
            ("secret//x", "never contain `//`"),
            ("/secret/x", "leading `/`"),
            ("secret/../x", "`.` or `..` segments"),
            ("secret/a+b", "literal plus"),
            ("secret/{{identity.entity.idd}}", "unknown template"),
            ("secret/{{identity.entity.id", "without `}}`"),
            ("secret/a b", "whitespace"),
        ];
        for (pattern, expected) in table {
            let found = messages(
                "p",
                &format!("path \"{pattern}\" {{ capabilities = [\"read\"] }}"),
            );
            assert!(has(&found, expected), "{pattern}: {found:?}");
            assert!(has(&found, "p.hcl:1:1: warning"), "{pattern}: {found:?}");
        }
    }

    #[test]
    fn sudo_deny_and_empty_capabilities() {
        let found = messages(
            "p",
            "path \"secret/*\" { capabilities = [\"read\", \"sudo\"] }\npath \"x\" { capabilities = [\"deny\", \"read\"] }\npath \"y\" { capabilities = [] }\npath \"x\" { capabilities = [\"list\"] }",
        );
        assert!(
            has(&found, "sudo on \"secret/*\" has no effect"),
            "{found:?}"
        );
        assert!(has(&found, "deny overrides them all"), "{found:?}");
        assert!(has(&found, "\"y\" grants nothing"), "{found:?}");
        assert!(
            has(
                &found,
                "p.hcl:4:1: warning: path \"x\" is also declared at line 2"
            ),
            "{found:?}"
        );
    }

    #[test]
    fn shadowing_names_the_winner_and_the_rule() {
        let found = messages(
            "p",
            "path \"secret/+/config\" {\n  capabilities = [\"deny\"]\n}\npath \"secret/data/*\" {\n  capabilities = [\"read\"]\n}\n",
        );
        assert!(
            has(&found, "p.hcl:1:1: warning: path \"secret/+/config\" loses to \"secret/data/*\" on paths such as \"secret/data/config\": both match, and \"secret/data/*\" wins (rule 1"),
            "{found:?}"
        );
        // The ordinary case, a narrower rule beating a broader one, is silent.
        let found = messages(
            "p",
            "path \"secret/*\" { capabilities = [\"read\"] }\npath \"secret/+/admin\" { capabilities = [\"deny\"] }\npath \"secret/a\" { capabilities = [\"deny\"] }",
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn names_and_sources() {
        assert!(has(&messages("root", ""), "built into the server"));
        assert!(has(&messages("Admin", ""), "rename the file to admin.hcl"));
        assert!(has(&messages("a b", ""), "invalid policy name"));
        let error = decode_source("x.hcl", vec![b'a', b'\n', b'b', 0xff]).expect_err("not utf-8");
        assert_eq!((error.line, error.column), (2, 2));
        assert!(error.message.contains("not valid UTF-8"));
        let error = decode_source("x.hcl", vec![b'#'; MAX_FILE_SIZE + 1]).expect_err("huge");
        assert!(error.message.contains("too large"));
        assert_eq!(error.severity, Severity::Error);
    }

    #[test]
    fn repository_cross_references() {
        let files = [
            SourceFile {
                path: "agent.hcl".to_owned(),
                text: "path \"a\" { capabilities = [\"read\"] }".to_owned(),
            },
            SourceFile {
                path: "access/groups.hcl".to_owned(),
                text: "group \"ops\" { policies = [\"agent\", \"missing\"] }\ngroup \"admins\" { policies = [\"root\"] }".to_owned(),
            },
        ];
        let found: Vec<String> = lint(&files).iter().map(ToString::to_string).collect();
        assert!(
            has(
                &found,
                "access/groups.hcl:1:1: warning: group \"ops\" attaches policy \"missing\""
            ),
            "{found:?}"
        );
        assert!(
            has(
                &found,
                "access/groups.hcl:2:1: error: group \"admins\" attaches \"root\""
            ),
            "{found:?}"
        );
    }
}
