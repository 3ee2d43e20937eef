//! `ward policy test`: unit tests for policies, run offline with the server's evaluator.
//!
//! A test file (`*_test.hcl`) holds `case` blocks:
//!
//! ```hcl
//! case "agent reads db creds" {
//!   policies  = ["agent"]                    # or role = "approle/agent", and/or identity = { ... }
//!   path      = "database/creds/read-only"
//!   operation = "read"                       # read, list, create, update, patch, delete
//!   parameters = { ttl = "1h" }              # optional: the request's parameters
//!   wrap_ttl  = "5m"                         # optional: the requested response-wrapping TTL
//!   expect    = "allow"                      # allow, deny, or approval (a control group applies)
//! }
//! ```
//!
//! The subject's policies are the listed ones, plus the role's (`allowed_policies`
//! of a token role, `token_policies` of an auth role, and `default` when the
//! repository defines it and the role does not set `token_no_default_policy`),
//! plus the policies of the identity's groups (`identity = { groups = ["ops"] }`,
//! groups from the repository's object files) and the identity's own
//! `policies`. The identity (`entity_id`, `entity_name`, `metadata`, `groups`,
//! `aliases = { ACCESSOR = { id, name, metadata, custom_metadata } }`) also fills
//! templated paths.
//!
//! Each case is decided by [`Acl::authorize`], the code the server runs, with
//! `requires_sudo` from [`crate::sudo::requires_sudo`]. Requests carry their
//! parameters (an empty set when none are given), as the server does for every
//! mount except KV version 2. LIST paths get their trailing `/`.
//! Printing results is the caller's; [`junit`] renders them as JUnit XML.

use std::collections::BTreeMap;

use crate::acl::{Acl, Decision, Operation, Request};
use crate::duration::parse_duration;
use crate::hcl::{self, Body, Item, ValueKind};
use crate::policy::{normalize_name, Policy};
use crate::repository::{Diagnostic, Repository};
use crate::sudo;
use crate::template::{AliasContext, GroupContext, IdentityContext};

/// What a case expects, and what it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    Deny,
    /// Allowed once a control group's factors are satisfied.
    Approval,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Approval => "approval",
        }
    }
}

/// One `case` block, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct TestCase {
    pub file: String,
    pub line: u32,
    pub name: String,
    pub policies: Vec<String>,
    pub role: Option<String>,
    pub identity: Option<Identity>,
    pub path: String,
    pub operation: Operation,
    pub parameters: serde_json::Map<String, serde_json::Value>,
    pub wrap_ttl: Option<u64>,
    pub expect: Outcome,
}

/// The `identity = { ... }` of a case.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Identity {
    pub entity_id: Option<String>,
    pub entity_name: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub groups: Vec<String>,
    pub policies: Vec<String>,
    pub aliases: BTreeMap<String, AliasContext>,
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    pub file: String,
    pub line: u32,
    pub name: String,
    pub expected: Outcome,
    /// `None` when the case could not be evaluated (an unknown policy or role).
    pub actual: Option<Outcome>,
    /// Which rule decided and why, or why the case could not run.
    pub reason: String,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.actual == Some(self.expected)
    }
}

/// Decodes a test file.
pub fn parse_test_file(file: &str, text: &str) -> Result<Vec<TestCase>, Diagnostic> {
    let body = hcl::parse(text)
        .map_err(|error| Diagnostic::error(file, error.line, error.column, error.message))?;
    let mut cases: Vec<TestCase> = Vec::new();
    for item in body.items() {
        if item.key != "case" {
            return Err(at(
                file,
                item,
                format!(
                    "unknown block `{}`; test files hold `case \"name\" {{ ... }}` blocks",
                    item.key
                ),
            ));
        }
        let (Some(name), 1, Some(case_body)) = (
            item.labels.first(),
            item.labels.len(),
            item.value.as_object(),
        ) else {
            return Err(at(file, item, "a case is written `case \"name\" { ... }`"));
        };
        if let Some(other) = cases.iter().find(|case| &case.name == name) {
            return Err(at(
                file,
                item,
                format!("case {name:?} is also defined at line {}", other.line),
            ));
        }
        cases.push(parse_case(file, item, name, case_body)?);
    }
    Ok(cases)
}

/// Runs every case of every test file in the repository, in file order.
/// Files that cannot be decoded are reported and skipped.
pub fn run(repository: &Repository) -> (Vec<CaseResult>, Vec<Diagnostic>) {
    let mut results = Vec::new();
    let mut diagnostics = Vec::new();
    let mut files: Vec<_> = repository.test_files.iter().collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    for file in files {
        match parse_test_file(&file.path, &file.text) {
            Ok(cases) => results.extend(cases.iter().map(|case| run_case(repository, case))),
            Err(diagnostic) => diagnostics.push(diagnostic),
        }
    }
    (results, diagnostics)
}

/// Evaluates one case.
pub fn run_case(repository: &Repository, case: &TestCase) -> CaseResult {
    let result = |actual: Option<Outcome>, reason: String| CaseResult {
        file: case.file.clone(),
        line: case.line,
        name: case.name.clone(),
        expected: case.expect,
        actual,
        reason,
    };
    let (names, identity) = match subject(repository, case) {
        Ok(subject) => subject,
        Err(reason) => return result(None, reason),
    };
    let mut policies: Vec<&Policy> = Vec::new();
    for name in &names {
        if name == "root" {
            continue;
        }
        match repository.policies.get(name) {
            Some(file) => policies.push(&file.policy),
            None => {
                return result(
                    None,
                    format!("policy {name:?} is not defined in this repository"),
                )
            }
        }
    }
    let acl = if names.iter().any(|name| name == "root") {
        Acl::root()
    } else {
        Acl::new(&policies, &identity)
    };
    let path = match case.operation {
        Operation::List if !case.path.ends_with('/') => format!("{}/", case.path),
        _ => case.path.clone(),
    };
    let request = Request {
        path: &path,
        operation: case.operation,
        parameters: Some(&case.parameters),
        wrap_ttl: case.wrap_ttl,
        requires_sudo: sudo::requires_sudo(&path, case.operation, Some(&case.parameters)),
    };
    let decision = acl.authorize(&request);
    let actual = match (&decision.allowed, &decision.control_group) {
        (false, _) => Outcome::Deny,
        (true, Some(_)) => Outcome::Approval,
        (true, None) => Outcome::Allow,
    };
    let reason = describe(&acl, &path, &request, &decision, &names);
    result(Some(actual), reason)
}

/// Renders results as JUnit XML, one test suite per file.
pub fn junit(results: &[CaseResult]) -> String {
    let mut by_file: BTreeMap<&str, Vec<&CaseResult>> = BTreeMap::new();
    for result in results {
        by_file.entry(&result.file).or_default().push(result);
    }
    let n_failures = results.iter().filter(|r| !r.passed()).count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"ward policy test\" tests=\"{}\" failures=\"{n_failures}\">\n",
        results.len()
    ));
    for (file, cases) in by_file {
        let failures = cases.iter().filter(|r| !r.passed()).count();
        out.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\">\n",
            xml_escape(file),
            cases.len()
        ));
        for case in cases {
            let name = xml_escape(&case.name);
            let classname = xml_escape(file);
            if case.passed() {
                out.push_str(&format!(
                    "    <testcase name=\"{name}\" classname=\"{classname}\"/>\n"
                ));
            } else {
                let summary = failure_summary(case);
                out.push_str(&format!(
                    "    <testcase name=\"{name}\" classname=\"{classname}\">\n      <failure message=\"{}\">{}:{}: {}</failure>\n    </testcase>\n",
                    xml_escape(&summary),
                    xml_escape(file),
                    case.line,
                    xml_escape(&case.reason)
                ));
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// "expected deny, got allow" (or "could not run").
pub fn failure_summary(result: &CaseResult) -> String {
    match result.actual {
        Some(actual) => format!(
            "expected {}, got {}",
            result.expected.as_str(),
            actual.as_str()
        ),
        None => "could not run".to_owned(),
    }
}

// ---------------------------------------------------------------------------
// Helpers

const CASE_KEYS: &[&str] = &[
    "policies",
    "role",
    "identity",
    "path",
    "operation",
    "parameters",
    "wrap_ttl",
    "expect",
];

fn parse_case(file: &str, item: &Item, name: &str, body: &Body) -> Result<TestCase, Diagnostic> {
    body.check_keys(CASE_KEYS).map_err(|error| {
        Diagnostic::error(
            file,
            error.line,
            error.column,
            format!("{} (a case has {})", error.message, CASE_KEYS.join(", ")),
        )
    })?;
    let hcl_error =
        |error: hcl::HclError| Diagnostic::error(file, error.line, error.column, error.message);
    let string = |key: &str| -> Result<Option<String>, Diagnostic> {
        body.get(key)
            .map(|entry| entry.string().map(str::to_owned).map_err(hcl_error))
            .transpose()
    };
    let policies = match body.get("policies") {
        Some(entry) => entry
            .string_list()
            .map_err(hcl_error)?
            .iter()
            .map(|policy| {
                normalize_name(policy).map_err(|error| at(file, entry, error.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let role = string("role")?;
    let identity = body
        .get("identity")
        .map(|entry| parse_identity(file, entry))
        .transpose()?;
    if policies.is_empty() && role.is_none() && identity.is_none() {
        return Err(at(
            file,
            item,
            format!("case {name:?} needs a subject: policies = [...], role = \"...\" or identity = {{ ... }}"),
        ));
    }
    let path =
        string("path")?.ok_or_else(|| at(file, item, format!("case {name:?} needs a path")))?;
    let operation = match body.get("operation") {
        None => Operation::Read,
        Some(entry) => match entry.string().map_err(hcl_error)? {
            "read" => Operation::Read,
            "list" => Operation::List,
            "create" => Operation::Create,
            "update" => Operation::Update,
            "patch" => Operation::Patch,
            "delete" => Operation::Delete,
            other => {
                return Err(at(
                    file,
                    entry,
                    format!(
                    "unknown operation {other:?}; use read, list, create, update, patch or delete"
                ),
                ))
            }
        },
    };
    let expect = match body.get("expect") {
        None => {
            return Err(at(
                file,
                item,
                format!("case {name:?} needs expect = \"allow\", \"deny\" or \"approval\""),
            ))
        }
        Some(entry) => match entry.string().map_err(hcl_error)? {
            "allow" => Outcome::Allow,
            "deny" => Outcome::Deny,
            "approval" => Outcome::Approval,
            other => {
                return Err(at(
                    file,
                    entry,
                    format!("unknown expectation {other:?}; use allow, deny or approval"),
                ))
            }
        },
    };
    let parameters = match body.get("parameters") {
        None => serde_json::Map::new(),
        Some(entry) => match entry.value.to_json() {
            serde_json::Value::Object(map) if matches!(entry.value.kind, ValueKind::Object(_)) => {
                map
            }
            _ => {
                return Err(at(
                    file,
                    entry,
                    "parameters must be an object: parameters = { key = value }",
                ))
            }
        },
    };
    let wrap_ttl = match body.get("wrap_ttl") {
        None => None,
        Some(entry) => Some(match &entry.value.kind {
            ValueKind::Number(_) => entry
                .integer()
                .ok()
                .and_then(|seconds| u64::try_from(seconds).ok())
                .ok_or_else(|| {
                    at(
                        file,
                        entry,
                        "wrap_ttl must be a non-negative number of seconds",
                    )
                })?,
            _ => parse_duration(entry.string().map_err(hcl_error)?)
                .map_err(|error| at(file, entry, format!("invalid wrap_ttl: {error}")))?
                .as_secs(),
        }),
    };
    Ok(TestCase {
        file: file.to_owned(),
        line: item.line,
        name: name.to_owned(),
        policies,
        role,
        identity,
        path: path.trim_start_matches('/').to_owned(),
        operation,
        parameters,
        wrap_ttl,
        expect,
    })
}

fn parse_identity(file: &str, item: &Item) -> Result<Identity, Diagnostic> {
    let body = item
        .object()
        .map_err(|error| Diagnostic::error(file, error.line, error.column, error.message))?;
    const KEYS: &[&str] = &[
        "entity_id",
        "entity_name",
        "metadata",
        "groups",
        "policies",
        "aliases",
    ];
    body.check_keys(KEYS).map_err(|error| {
        Diagnostic::error(
            file,
            error.line,
            error.column,
            format!("{} (an identity has {})", error.message, KEYS.join(", ")),
        )
    })?;
    let hcl_error =
        |error: hcl::HclError| Diagnostic::error(file, error.line, error.column, error.message);
    let mut identity = Identity::default();
    for entry in body.items() {
        match entry.key.as_str() {
            "entity_id" => identity.entity_id = Some(entry.string().map_err(hcl_error)?.to_owned()),
            "entity_name" => {
                identity.entity_name = Some(entry.string().map_err(hcl_error)?.to_owned())
            }
            "metadata" => identity.metadata = string_map(file, entry)?,
            "groups" => identity.groups = entry.string_list().map_err(hcl_error)?,
            "policies" => {
                identity.policies = entry
                    .string_list()
                    .map_err(hcl_error)?
                    .iter()
                    .map(|policy| {
                        normalize_name(policy).map_err(|error| at(file, entry, error.to_string()))
                    })
                    .collect::<Result<_, _>>()?;
            }
            _ => {
                let aliases = entry.object().map_err(hcl_error)?;
                for alias in aliases.items() {
                    let fields = alias.object().map_err(hcl_error)?;
                    let mut context = AliasContext::default();
                    for field in fields.items() {
                        match field.key.as_str() {
                            "id" => context.id = field.string().map_err(hcl_error)?.to_owned(),
                            "name" => context.name = field.string().map_err(hcl_error)?.to_owned(),
                            "metadata" => context.metadata = string_map(file, field)?,
                            "custom_metadata" => context.custom_metadata = string_map(file, field)?,
                            other => return Err(at(file, field, format!("unknown alias field `{other}` (id, name, metadata, custom_metadata)"))),
                        }
                    }
                    identity.aliases.insert(alias.key.clone(), context);
                }
            }
        }
    }
    Ok(identity)
}

fn string_map(file: &str, item: &Item) -> Result<BTreeMap<String, String>, Diagnostic> {
    let body = item
        .object()
        .map_err(|error| Diagnostic::error(file, error.line, error.column, error.message))?;
    body.items()
        .iter()
        .map(|entry| {
            entry
                .string()
                .map(|value| (entry.key.clone(), value.to_owned()))
                .map_err(|error| Diagnostic::error(file, error.line, error.column, error.message))
        })
        .collect()
}

/// The case's policy names (deduplicated, in order) and identity context.
fn subject(
    repository: &Repository,
    case: &TestCase,
) -> Result<(Vec<String>, IdentityContext), String> {
    let mut names: Vec<String> = case.policies.clone();
    if let Some(reference) = &case.role {
        let role = repository.role(reference)?;
        names.extend(role.policies());
        if role.adds_default_policy() && repository.policies.contains_key("default") {
            names.push("default".to_owned());
        }
    }
    let mut context = IdentityContext::default();
    if let Some(identity) = &case.identity {
        context.entity_id.clone_from(&identity.entity_id);
        context.entity_name.clone_from(&identity.entity_name);
        context.entity_metadata.clone_from(&identity.metadata);
        context.aliases.clone_from(&identity.aliases);
        names.extend(identity.policies.iter().cloned());
        for group_name in &identity.groups {
            let group = repository
                .group(group_name)
                .ok_or_else(|| format!("no group {group_name:?} in the repository"))?;
            names.extend(group.policies());
            let metadata = match group.fields.get("metadata") {
                Some(serde_json::Value::Object(map)) => map
                    .iter()
                    .filter_map(|(key, value)| value.as_str().map(|v| (key.clone(), v.to_owned())))
                    .collect(),
                _ => BTreeMap::new(),
            };
            let id = group
                .fields
                .get("id")
                .and_then(serde_json::Value::as_str)
                .unwrap_or(group_name)
                .to_owned();
            context.groups.push(GroupContext {
                id,
                name: group_name.clone(),
                metadata,
            });
        }
    }
    let mut unique: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        if !unique.contains(&name) {
            unique.push(name);
        }
    }
    Ok((unique, context))
}

/// Which rule decided, in words.
fn describe(
    acl: &Acl,
    path: &str,
    request: &Request<'_>,
    decision: &Decision,
    names: &[String],
) -> String {
    if decision.root {
        return "the root policy allows everything".to_owned();
    }
    let explanation = acl.explain(path, request.operation);
    let subject = format!("policies [{}]", names.join(", "));
    let winner = explanation.winner.as_ref().map(|winner| {
        let others = explanation.candidates.len().saturating_sub(1);
        let beaten = if others > 0 {
            format!(", the most specific of {} matching patterns", others + 1)
        } else {
            String::new()
        };
        format!(
            "rule {:?} (from {}{beaten}; capabilities [{}])",
            winner.pattern,
            winner.policies.join(", "),
            winner.capabilities.join(", ")
        )
    });
    match (&decision.denial, winner) {
        (Some(denial), Some(winner)) => format!("denied by {winner}: {denial}"),
        (Some(denial), None) => format!("denied: {denial} ({subject})"),
        (None, winner) => {
            let winner = winner.unwrap_or_else(|| "the root policy".to_owned());
            let mut text = format!(
                "allowed by {winner}, granting {} via {}",
                request.operation.capability(),
                decision.granting_policies.join(", ")
            );
            if let Some(group) = &decision.control_group {
                let factors: Vec<String> = group
                    .factors
                    .iter()
                    .map(|factor| {
                        format!(
                            "{} ({} approval(s) from {})",
                            factor.name,
                            factor.approvals,
                            factor
                                .group_names
                                .iter()
                                .chain(&factor.group_ids)
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })
                    .collect();
                text.push_str(&format!(
                    ", after approval by control group factors {}",
                    factors.join("; ")
                ));
            }
            text
        }
    }
}

fn at(file: &str, item: &Item, message: impl Into<String>) -> Diagnostic {
    Diagnostic::error(file, item.line, item.column, message)
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::SourceFile;

    fn repository(files: &[(&str, &str)]) -> Repository {
        let files: Vec<SourceFile> = files
            .iter()
            .map(|(path, text)| SourceFile {
                path: (*path).to_owned(),
                text: (*text).to_owned(),
            })
            .collect();
        let (repository, diagnostics) = Repository::load(&files);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        repository
    }

    const AGENT: &str = r#"
path "database/creds/read-only" { capabilities = ["read"] }
path "secret/data/{{identity.entity.name}}/*" { capabilities = ["read", "update"] }
path "secret/data/shared/*" {
  capabilities = ["read", "update"]
  control_group = { factor "leads" { controlled_capabilities = ["update"] identity { group_names = ["leads"] approvals = 1 } } }
}
path "sys/seal" { capabilities = ["update"] }
path "auth/token/create" { capabilities = ["update"] allowed_parameters = { ttl = [] } }
"#;

    #[test]
    fn table_of_cases() {
        let repository = repository(&[
            ("agent.hcl", AGENT),
            ("ops.hcl", "path \"sys/seal\" { capabilities = [\"update\", \"sudo\"] }"),
            ("access/a.hcl", "group \"ops\" { policies = [\"ops\"] }\nauth_role \"approle\" \"agent\" { token_policies = [\"agent\"] }"),
            ("agent_test.hcl", r#"
case "reads creds" { policies = ["agent"] path = "database/creds/read-only" operation = "read" expect = "allow" }
case "cannot write creds" { policies = ["agent"] path = "database/creds/read-only" operation = "update" expect = "deny" }
case "own secrets" { role = "approle/agent" identity = { entity_name = "alice" } path = "secret/data/alice/x" operation = "update" expect = "allow" }
case "others' secrets" { role = "agent" identity = { entity_name = "alice" } path = "secret/data/bob/x" expect = "deny" }
case "shared needs approval" { policies = ["agent"] path = "secret/data/shared/x" operation = "update" expect = "approval" }
case "shared read" { policies = ["agent"] path = "secret/data/shared/x" expect = "allow" }
case "seal needs sudo" { policies = ["agent"] path = "sys/seal" operation = "update" expect = "deny" }
case "ops may seal" { identity = { groups = ["ops"] } path = "sys/seal" operation = "update" expect = "allow" }
case "parameters" { policies = ["agent"] path = "auth/token/create" operation = "update" parameters = { policies = ["root"] } expect = "deny" }
case "wrong expectation" { policies = ["agent"] path = "database/creds/read-only" expect = "deny" }
case "unknown policy" { policies = ["nope"] path = "x" expect = "deny" }
"#),
        ]);
        let (results, diagnostics) = run(&repository);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let failed: Vec<&str> = results
            .iter()
            .filter(|result| !result.passed())
            .map(|result| result.name.as_str())
            .collect();
        assert_eq!(
            failed,
            ["wrong expectation", "unknown policy"],
            "{results:#?}"
        );
        let wrong = results
            .iter()
            .find(|r| r.name == "wrong expectation")
            .map(|r| r.reason.clone())
            .unwrap_or_default();
        assert!(
            wrong.contains("allowed by rule \"database/creds/read-only\" (from agent"),
            "{wrong}"
        );
        let sudo = results
            .iter()
            .find(|r| r.name == "seal needs sudo")
            .map(|r| r.reason.clone())
            .unwrap_or_default();
        assert!(sudo.contains("needs sudo"), "{sudo}");
        let xml = junit(&results);
        assert!(xml.contains("tests=\"11\" failures=\"2\""), "{xml}");
        assert!(
            xml.contains("<failure message=\"expected deny, got allow\">"),
            "{xml}"
        );
        assert!(xml.contains("others&apos; secrets"), "{xml}");
    }

    #[test]
    fn bad_test_files() {
        let table = [
            ("case \"a\" { path = \"x\" expect = \"allow\" }", "needs a subject"),
            ("case \"a\" { policies = [\"p\"] path = \"x\" expect = \"maybe\" }", "unknown expectation"),
            ("case \"a\" { policies = [\"p\"] path = \"x\" operation = \"write\" expect = \"allow\" }", "unknown operation"),
            ("case \"a\" { policies = [\"p\"] pth = \"x\" expect = \"allow\" }", "unknown key `pth`"),
            ("case \"a\" { policies = [\"p\"] path = \"x\" expect = \"allow\" }\ncase \"a\" { policies = [\"p\"] path = \"x\" expect = \"allow\" }", "also defined at line 1"),
            ("test \"a\" {}", "unknown block `test`"),
            ("case \"a\" {", "expected '}'"),
        ];
        for (text, expected) in table {
            let error = parse_test_file("t_test.hcl", text).expect_err(text);
            assert!(error.message.contains(expected), "{text}: {error}");
            assert!(error.line > 0, "{text}: {error}");
        }
    }
}
