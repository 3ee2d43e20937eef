//! ACL policies: their names, their two syntaxes (HCL1 and JSON) and their typed form.
//!
//! [`parse`] turns a policy document into a [`Policy`]: a list of path rules
//! with capabilities, parameter constraints, wrapping TTL bounds and control
//! groups, with repeated stanzas for the same pattern merged as Vault merges
//! them. Syntax is read by [`crate::hcl`]; both HCL and JSON documents are
//! decoded from the same generic tree, so both accept the same fields and give
//! the same errors. Evaluating rules against requests is [`crate::acl`]'s job;
//! storing policies is core's.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::duration::parse_duration;
use crate::hcl::{self, Body, HclError, Item, Value, ValueKind};

/// A parsed policy. `raw` is the text it was parsed from, kept for reads of
/// `sys/policies/acl/<name>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub raw: String,
    /// One rule per distinct pattern, in order of first appearance.
    pub rules: Vec<PathRule>,
}

/// One `path "<pattern>" { ... }` stanza (or several, merged).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PathRule {
    /// The pattern as written, without a leading `/`; may contain `{{...}}` templates.
    pub pattern: String,
    pub capabilities: CapabilitySet,
    /// Parameter name (lowercased) → allowed values; an empty list allows any value.
    pub allowed_parameters: BTreeMap<String, Vec<serde_json::Value>>,
    /// Parameter name (lowercased) → denied values; an empty list denies any value.
    pub denied_parameters: BTreeMap<String, Vec<serde_json::Value>>,
    /// Parameter names (lowercased) that must be present.
    pub required_parameters: Vec<String>,
    pub min_wrapping_ttl: Option<Duration>,
    pub max_wrapping_ttl: Option<Duration>,
    pub control_group: Option<ControlGroup>,
    pub mfa_methods: Vec<String>,
    pub subscribe_event_types: Vec<String>,
    pub comment: Option<String>,
    /// Line of the first stanza for this pattern (0 for JSON documents).
    pub line: u32,
}

/// The things a rule can grant (or `deny`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Capability {
    Create,
    Read,
    Update,
    Patch,
    Delete,
    List,
    Sudo,
    Deny,
    Subscribe,
    Recover,
}

/// A set of capabilities, stored as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CapabilitySet(u16);

/// A `control_group` stanza: the request waits until every factor is satisfied.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ControlGroup {
    /// Lifetime of the pending request; `None` means the server's default.
    pub ttl: Option<Duration>,
    pub factors: Vec<ControlGroupFactor>,
}

/// One named factor of a control group.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ControlGroupFactor {
    pub name: String,
    /// The operations that trigger the factor; empty means every operation.
    pub controlled_capabilities: CapabilitySet,
    /// Group names whose members may approve.
    pub group_names: Vec<String>,
    /// Group ids whose members may approve (OpenBao's extension).
    pub group_ids: Vec<String>,
    /// How many distinct approvals the factor needs.
    pub approvals: u32,
}

/// Why a policy document or name was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyError {
    /// The HCL text is malformed.
    Syntax(HclError),
    /// The document starts like JSON but is not valid JSON.
    Json { message: String },
    /// The name is empty or contains something other than printable ASCII.
    InvalidName { name: String, reason: &'static str },
    /// A key that policies do not have.
    UnknownField {
        field: String,
        line: u32,
        column: u32,
    },
    /// A capability that does not exist.
    UnknownCapability {
        capability: String,
        line: u32,
        column: u32,
    },
    /// A known field with a value of the wrong type or meaning.
    InvalidField {
        field: String,
        message: String,
        line: u32,
        column: u32,
    },
}

/// Parses a policy in HCL or JSON (a document whose first non-blank character
/// is `{` is JSON). The name is normalised with [`normalize_name`].
pub fn parse(name: &str, text: &str) -> Result<Policy, PolicyError> {
    let name = normalize_name(name)?;
    let body = if text.trim_start().starts_with('{') {
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|error| PolicyError::Json {
                message: error.to_string(),
            })?;
        Body::from_json(&json).map_err(PolicyError::Syntax)?
    } else {
        hcl::parse(text).map_err(PolicyError::Syntax)?
    };
    let mut rules: Vec<PathRule> = Vec::new();
    for item in body.items() {
        match item.key.as_str() {
            "path" => {
                for (pattern, stanza, line) in labelled_bodies(item, "path")? {
                    let rule = decode_rule(pattern, stanza, line)?;
                    match rules.iter_mut().find(|r| r.pattern == rule.pattern) {
                        Some(existing) => existing.merge(&rule),
                        None => rules.push(rule),
                    }
                }
            }
            // Vault accepts (and ignores) a `name` at the top level.
            "name" => {}
            _ => return Err(unknown_field(item)),
        }
    }
    Ok(Policy {
        name,
        raw: text.to_owned(),
        rules,
    })
}

/// Normalises a policy name: ASCII letters are lowercased (as Vault does) and
/// anything other than printable, non-space ASCII is refused.
///
/// So `Root` becomes `root`, while `root `, `ｒｏｏｔ` (full-width) and
/// `root\u{200b}` are errors and can never alias `root`. Refusing to attach the
/// `root` policy itself (outside of root token creation) is the caller's job.
pub fn normalize_name(name: &str) -> Result<String, PolicyError> {
    let invalid = |reason| PolicyError::InvalidName {
        name: name.escape_debug().to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("the name is empty"));
    }
    if !name.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(invalid(
            "only printable ASCII characters without spaces are allowed",
        ));
    }
    Ok(name.to_ascii_lowercase())
}

impl Capability {
    /// Every capability, in bit order.
    pub const ALL: [Capability; 10] = [
        Capability::Create,
        Capability::Read,
        Capability::Update,
        Capability::Patch,
        Capability::Delete,
        Capability::List,
        Capability::Sudo,
        Capability::Deny,
        Capability::Subscribe,
        Capability::Recover,
    ];

    /// The name used in policies and by `sys/capabilities`.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Create => "create",
            Capability::Read => "read",
            Capability::Update => "update",
            Capability::Patch => "patch",
            Capability::Delete => "delete",
            Capability::List => "list",
            Capability::Sudo => "sudo",
            Capability::Deny => "deny",
            Capability::Subscribe => "subscribe",
            Capability::Recover => "recover",
        }
    }

    /// The capability with this exact (lowercase) name.
    pub fn from_name(name: &str) -> Option<Capability> {
        Capability::ALL
            .into_iter()
            .find(|capability| capability.as_str() == name)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl CapabilitySet {
    pub const EMPTY: CapabilitySet = CapabilitySet(0);

    pub fn contains(self, capability: Capability) -> bool {
        self.0 & capability.bit() != 0
    }

    pub fn insert(&mut self, capability: Capability) {
        self.0 |= capability.bit();
    }

    pub fn union(self, other: CapabilitySet) -> CapabilitySet {
        CapabilitySet(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// True when every capability of `self` is in `other`.
    pub fn is_subset(self, other: CapabilitySet) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::ALL
            .into_iter()
            .filter(move |capability| self.contains(*capability))
    }

    /// The names, sorted alphabetically (the order `sys/capabilities` uses).
    pub fn names(self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.iter().map(Capability::as_str).collect();
        names.sort_unstable();
        names
    }
}

impl FromIterator<Capability> for CapabilitySet {
    fn from_iter<T: IntoIterator<Item = Capability>>(iter: T) -> CapabilitySet {
        let mut set = CapabilitySet::EMPTY;
        for capability in iter {
            set.insert(capability);
        }
        set
    }
}

impl PathRule {
    /// Merges another rule for the same pattern into this one, as Vault does
    /// (for stanzas within one policy and across policies alike):
    /// - capabilities are united, and `deny` on either side leaves only `deny`;
    /// - for both wrapping TTL bounds the *lowest* set value is kept. Vault's
    ///   code says so ("preferring minimum lifetimes") and so does the
    ///   reference; for `min_wrapping_ttl` this means the merged rule is the
    ///   more permissive of the two, which is Vault's behaviour, kept for
    ///   compatibility;
    /// - parameter maps are united per key, an empty list (any value) winning;
    /// - required parameters, MFA methods and event types are united;
    /// - control-group factors are appended (every factor must be satisfied),
    ///   and the shorter TTL is kept.
    pub fn merge(&mut self, other: &PathRule) {
        if self.capabilities.contains(Capability::Deny) {
            return;
        }
        if other.capabilities.contains(Capability::Deny) {
            self.capabilities = CapabilitySet::EMPTY;
            self.capabilities.insert(Capability::Deny);
            self.allowed_parameters.clear();
            self.denied_parameters.clear();
            return;
        }
        self.capabilities = self.capabilities.union(other.capabilities);
        self.min_wrapping_ttl = lowest(self.min_wrapping_ttl, other.min_wrapping_ttl);
        self.max_wrapping_ttl = lowest(self.max_wrapping_ttl, other.max_wrapping_ttl);
        merge_parameters(&mut self.allowed_parameters, &other.allowed_parameters);
        merge_parameters(&mut self.denied_parameters, &other.denied_parameters);
        union_strings(&mut self.required_parameters, &other.required_parameters);
        union_strings(&mut self.mfa_methods, &other.mfa_methods);
        union_strings(
            &mut self.subscribe_event_types,
            &other.subscribe_event_types,
        );
        if let Some(theirs) = &other.control_group {
            match &mut self.control_group {
                None => self.control_group = Some(theirs.clone()),
                Some(ours) => {
                    ours.factors.extend(theirs.factors.iter().cloned());
                    ours.ttl = match (ours.ttl, theirs.ttl) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
            }
        }
        if self.comment.is_none() {
            self.comment.clone_from(&other.comment);
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let position = |f: &mut fmt::Formatter<'_>, line: u32, column: u32| {
            if line > 0 {
                write!(f, " at line {line}, column {column}")
            } else {
                Ok(())
            }
        };
        match self {
            PolicyError::Syntax(error) => write!(f, "policy syntax error: {error}"),
            PolicyError::Json { message } => write!(f, "invalid JSON policy: {message}"),
            PolicyError::InvalidName { name, reason } => {
                write!(f, "invalid policy name \"{name}\": {reason}")
            }
            PolicyError::UnknownField {
                field,
                line,
                column,
            } => {
                write!(f, "unknown key `{field}`")?;
                position(f, *line, *column)
            }
            PolicyError::UnknownCapability {
                capability,
                line,
                column,
            } => {
                write!(f, "unknown capability {capability:?}")?;
                position(f, *line, *column)
            }
            PolicyError::InvalidField {
                field,
                message,
                line,
                column,
            } => {
                write!(f, "invalid `{field}`: {message}")?;
                position(f, *line, *column)
            }
        }
    }
}

impl std::error::Error for PolicyError {}

impl From<HclError> for PolicyError {
    fn from(error: HclError) -> PolicyError {
        PolicyError::Syntax(error)
    }
}

// ---------------------------------------------------------------------------
// Decoding helpers

/// Keys a path stanza may have. `expiration` (OpenBao) is deliberately absent:
/// ignoring it would keep a grant alive past its intended end.
const RULE_KEYS: &[&str] = &[
    "capabilities",
    "policy",
    "allowed_parameters",
    "denied_parameters",
    "required_parameters",
    "min_wrapping_ttl",
    "max_wrapping_ttl",
    "control_group",
    "mfa_methods",
    "subscribe_event_types",
    "comment",
    "pagination_limit",
    "list_scan_response_keys_filter_path",
];

fn decode_rule(pattern: &str, body: &Body, line: u32) -> Result<PathRule, PolicyError> {
    let mut rule = PathRule {
        pattern: pattern.strip_prefix('/').unwrap_or(pattern).to_owned(),
        line,
        ..PathRule::default()
    };
    for item in body.items() {
        if !RULE_KEYS.contains(&item.key.as_str()) {
            if item.key == "expiration" {
                return Err(invalid(
                    item,
                    "per-path expiration is not supported; remove it or drop the stanza",
                ));
            }
            return Err(unknown_field(item));
        }
    }
    let mut capabilities = CapabilitySet::EMPTY;
    for item in body.get_all("capabilities") {
        for value in list_of_strings(item)? {
            let (name, line, column) = value;
            let capability =
                Capability::from_name(name).ok_or_else(|| PolicyError::UnknownCapability {
                    capability: name.to_owned(),
                    line,
                    column,
                })?;
            capabilities.insert(capability);
        }
    }
    for item in body.get_all("policy") {
        let legacy: &[Capability] = match item.string()? {
            "deny" => &[Capability::Deny],
            "read" => &[Capability::Read, Capability::List],
            "write" => &[
                Capability::Create,
                Capability::Read,
                Capability::Update,
                Capability::Delete,
                Capability::List,
            ],
            "sudo" => &[
                Capability::Create,
                Capability::Read,
                Capability::Update,
                Capability::Delete,
                Capability::List,
                Capability::Sudo,
            ],
            other => {
                return Err(invalid(
                    item,
                    &format!("{other:?} is not one of \"deny\", \"read\", \"write\", \"sudo\""),
                ))
            }
        };
        capabilities = capabilities.union(legacy.iter().copied().collect());
    }
    if capabilities.contains(Capability::Deny) {
        // Vault keeps only `deny` when it is listed with anything else.
        capabilities = [Capability::Deny].into_iter().collect();
    }
    rule.capabilities = capabilities;

    for item in body.get_all("allowed_parameters") {
        merge_parameters(&mut rule.allowed_parameters, &parameter_map(item)?);
    }
    for item in body.get_all("denied_parameters") {
        merge_parameters(&mut rule.denied_parameters, &parameter_map(item)?);
    }
    for item in body.get_all("required_parameters") {
        let names: Vec<String> = list_of_strings(item)?
            .into_iter()
            .map(|(name, _, _)| name.to_lowercase())
            .collect();
        union_strings(&mut rule.required_parameters, &names);
    }
    if let Some(item) = body.get("min_wrapping_ttl") {
        rule.min_wrapping_ttl = Some(duration(item)?);
    }
    if let Some(item) = body.get("max_wrapping_ttl") {
        let max = duration(item)?;
        if rule.min_wrapping_ttl.is_some_and(|min| max < min) {
            return Err(invalid(
                item,
                "max_wrapping_ttl cannot be less than min_wrapping_ttl",
            ));
        }
        rule.max_wrapping_ttl = Some(max);
    }
    for item in body.get_all("mfa_methods") {
        let methods: Vec<String> = list_of_strings(item)?
            .into_iter()
            .map(|(name, _, _)| name.to_owned())
            .collect();
        union_strings(&mut rule.mfa_methods, &methods);
    }
    for item in body.get_all("subscribe_event_types") {
        let types: Vec<String> = list_of_strings(item)?
            .into_iter()
            .map(|(name, _, _)| name.to_owned())
            .collect();
        union_strings(&mut rule.subscribe_event_types, &types);
    }
    if let Some(item) = body.get("comment") {
        rule.comment = Some(item.string()?.to_owned());
    }
    if let Some(item) = body.get("control_group") {
        rule.control_group = Some(decode_control_group(item, capabilities)?);
    }
    Ok(rule)
}

fn decode_control_group(
    item: &Item,
    capabilities: CapabilitySet,
) -> Result<ControlGroup, PolicyError> {
    let mut group = ControlGroup::default();
    for body in bodies(item)? {
        for inner in body.items() {
            match inner.key.as_str() {
                "ttl" => group.ttl = Some(duration(inner)?),
                "factor" => {
                    for (name, factor_body, _) in labelled_bodies(inner, "factor")? {
                        group
                            .factors
                            .push(decode_factor(name, factor_body, inner, capabilities)?);
                    }
                }
                _ => return Err(unknown_field(inner)),
            }
        }
    }
    if group.factors.is_empty() {
        return Err(invalid(item, "a control group needs at least one factor"));
    }
    Ok(group)
}

fn decode_factor(
    name: &str,
    body: &Body,
    item: &Item,
    capabilities: CapabilitySet,
) -> Result<ControlGroupFactor, PolicyError> {
    let mut factor = ControlGroupFactor {
        name: name.to_owned(),
        ..ControlGroupFactor::default()
    };
    for inner in body.items() {
        match inner.key.as_str() {
            "controlled_capabilities" => {
                for (capability_name, line, column) in list_of_strings(inner)? {
                    let capability = Capability::from_name(capability_name).ok_or_else(|| {
                        PolicyError::UnknownCapability {
                            capability: capability_name.to_owned(),
                            line,
                            column,
                        }
                    })?;
                    factor.controlled_capabilities.insert(capability);
                }
                if !factor.controlled_capabilities.is_subset(capabilities) {
                    return Err(invalid(
                        inner,
                        "controlled_capabilities must be a subset of the stanza's capabilities",
                    ));
                }
            }
            "identity" => {
                for identity in bodies(inner)? {
                    for field in identity.items() {
                        match field.key.as_str() {
                            "group_names" => factor.group_names.extend(
                                list_of_strings(field)?
                                    .into_iter()
                                    .map(|(name, _, _)| name.to_owned()),
                            ),
                            "group_ids" => factor.group_ids.extend(
                                list_of_strings(field)?
                                    .into_iter()
                                    .map(|(id, _, _)| id.to_owned()),
                            ),
                            "approvals" => {
                                factor.approvals = field
                                    .integer()
                                    .ok()
                                    .and_then(|n| u32::try_from(n).ok())
                                    .filter(|n| *n > 0)
                                    .ok_or_else(|| {
                                        invalid(field, "approvals must be a positive integer")
                                    })?;
                            }
                            _ => return Err(unknown_field(field)),
                        }
                    }
                }
            }
            _ => return Err(unknown_field(inner)),
        }
    }
    if factor.approvals == 0 {
        return Err(invalid(
            item,
            &format!("factor {name:?} needs `identity {{ approvals = N }}`"),
        ));
    }
    if factor.group_names.is_empty() && factor.group_ids.is_empty() {
        return Err(invalid(
            item,
            &format!("factor {name:?} names no approver groups (group_names or group_ids)"),
        ));
    }
    Ok(factor)
}

/// The bodies under a labelled key, in all the shapes HCL1 and its JSON form use:
/// `key "label" { ... }`, `key = { "label" = { ... } }`, and JSON's
/// `"key": {"label": {...}}` or `"key": [{"label": [{...}]}]`.
fn labelled_bodies<'a>(
    item: &'a Item,
    what: &str,
) -> Result<Vec<(&'a str, &'a Body, u32)>, PolicyError> {
    let mut out = Vec::new();
    match item.labels.as_slice() {
        [label] => {
            for body in bodies(item)? {
                out.push((label.as_str(), body, item.line));
            }
        }
        [] => {
            for outer in bodies(item)? {
                for inner in outer.items() {
                    if !inner.labels.is_empty() {
                        return Err(invalid(inner, &format!("unexpected labels in `{what}`")));
                    }
                    for body in bodies(inner)? {
                        out.push((inner.key.as_str(), body, inner.line));
                    }
                }
            }
        }
        _ => {
            return Err(invalid(
                item,
                &format!("`{what}` takes exactly one label, e.g. {what} \"name\" {{ ... }}"),
            ))
        }
    }
    Ok(out)
}

/// An object value, or a list of object values (the JSON form of blocks).
fn bodies(item: &Item) -> Result<Vec<&Body>, PolicyError> {
    match &item.value.kind {
        ValueKind::Object(body) => Ok(vec![body]),
        ValueKind::List(values) => values
            .iter()
            .map(|value| {
                value
                    .as_object()
                    .ok_or_else(|| invalid(item, "expected an object or a list of objects"))
            })
            .collect(),
        _ => Err(invalid(
            item,
            &format!("expected an object, found {}", item.value.type_name()),
        )),
    }
}

fn list_of_strings(item: &Item) -> Result<Vec<(&str, u32, u32)>, PolicyError> {
    let list = item.list().map_err(|error| invalid(item, &error.message))?;
    list.iter()
        .map(|value| {
            value
                .as_str()
                .map(|string| (string, value.line, value.column))
                .ok_or_else(|| {
                    invalid(
                        item,
                        &format!("expected a list of strings, found {}", value.type_name()),
                    )
                })
        })
        .collect()
}

/// `{ key = [values] }`, keys lowercased (Vault compares parameter names
/// case-insensitively), values converted to JSON for comparison with requests.
fn parameter_map(item: &Item) -> Result<BTreeMap<String, Vec<serde_json::Value>>, PolicyError> {
    let mut map: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
    for body in bodies(item)? {
        for entry in body.items() {
            let values: Vec<serde_json::Value> = match &entry.value.kind {
                ValueKind::List(values) => values.iter().map(Value::to_json).collect(),
                _ => {
                    return Err(invalid(
                        entry,
                        &format!(
                            "the values of parameter {:?} must be a list, found {}",
                            entry.key,
                            entry.value.type_name()
                        ),
                    ))
                }
            };
            let mut single = BTreeMap::new();
            single.insert(entry.key.to_lowercase(), values);
            merge_parameters(&mut map, &single);
        }
    }
    Ok(map)
}

fn duration(item: &Item) -> Result<Duration, PolicyError> {
    match &item.value.kind {
        ValueKind::Number(_) => item
            .value
            .as_i64()
            .and_then(|seconds| u64::try_from(seconds).ok())
            .map(Duration::from_secs)
            .ok_or_else(|| invalid(item, "expected a non-negative number of seconds")),
        ValueKind::String(text) => {
            parse_duration(text).map_err(|error| invalid(item, &error.to_string()))
        }
        _ => Err(invalid(
            item,
            &format!(
                "expected a duration (\"1h\" or seconds), found {}",
                item.value.type_name()
            ),
        )),
    }
}

fn invalid(item: &Item, message: &str) -> PolicyError {
    PolicyError::InvalidField {
        field: item.key.clone(),
        message: message.to_owned(),
        line: item.line,
        column: item.column,
    }
}

fn unknown_field(item: &Item) -> PolicyError {
    PolicyError::UnknownField {
        field: item.key.clone(),
        line: item.line,
        column: item.column,
    }
}

fn lowest(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Vault's merge of parameter maps: per key, an empty list (any value) wins,
/// otherwise the value lists are concatenated.
pub(crate) fn merge_parameters(
    into: &mut BTreeMap<String, Vec<serde_json::Value>>,
    from: &BTreeMap<String, Vec<serde_json::Value>>,
) {
    for (key, values) in from {
        match into.get_mut(key) {
            None => {
                into.insert(key.clone(), values.clone());
            }
            Some(existing) if existing.is_empty() => {}
            Some(existing) if values.is_empty() => existing.clear(),
            Some(existing) => {
                for value in values {
                    if !existing.contains(value) {
                        existing.push(value.clone());
                    }
                }
            }
        }
    }
}

fn union_strings(into: &mut Vec<String>, from: &[String]) {
    for value in from {
        if !into.contains(value) {
            into.push(value.clone());
        }
    }
}
