//! The evaluator: which rule applies to a request, and does it allow it.
//!
//! An [`Acl`] is built once from the policies attached to a token (templated
//! paths resolved against the token's identity at that point) and then
//! answers [`Acl::authorize`] for every request. Building does the expensive
//! work: rules for the same pattern are merged, exact patterns go into a hash
//! map, prefix globs are sorted longest first, and `+` patterns are sorted by
//! priority, so evaluation is a hash lookup plus a scan that stops at the
//! first match.
//!
//! Selection follows Vault (1.16+, including the fix for GHSA-xp3c-3jw3-4vcr):
//! an exact pattern wins; otherwise the longest matching prefix glob and every
//! matching `+` pattern compete by the five priority rules. A LIST request
//! whose path ends in `/` also considers the path without the slash, and a
//! `deny` at least as specific as the best LIST grant wins. Deciding what a
//! request *is* (operation, root-protected path, parameters) is the caller's job.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use crate::policy::{Capability, CapabilitySet, ControlGroup, PathRule, Policy};
use crate::template::{resolve_template, IdentityContext};

/// What a request does, as far as policies are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    Create,
    Read,
    Update,
    Patch,
    Delete,
    List,
}

/// A request as the ACL sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Relative to the namespace root, e.g. `secret/data/foo`; LIST paths end in `/`.
    pub path: &'a str,
    pub operation: Operation,
    /// The raw request parameters; `None` skips parameter checks (e.g. KV v2).
    pub parameters: Option<&'a serde_json::Map<String, serde_json::Value>>,
    /// The wrapping TTL the client asked for (`X-Vault-Wrap-TTL`), in seconds.
    pub wrap_ttl: Option<u64>,
    /// The path is root-protected: `sudo` is needed on top of the operation's capability.
    pub requires_sudo: bool,
}

/// The outcome of [`Acl::authorize`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decision {
    pub allowed: bool,
    /// The winning rule has `sudo` (or the ACL is root).
    pub sudo: bool,
    /// The ACL is the root policy.
    pub root: bool,
    /// Policies whose stanza for the winning pattern grants the needed capability.
    pub granting_policies: Vec<String>,
    /// Why the request was denied; `None` when allowed.
    pub denial: Option<Denial>,
    /// Set when the request is allowed but the winning rule's control group
    /// applies to this operation: only the factors that apply are listed. The
    /// caller must not execute the request before they are satisfied.
    pub control_group: Option<ControlGroup>,
    /// MFA methods the winning rule asks for (Vault Enterprise; informational).
    pub mfa_methods: Vec<String>,
}

/// Why a request was denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No pattern matches the path.
    NoMatchingRule,
    /// The winning pattern says `deny`.
    ExplicitDeny {
        pattern: String,
    },
    /// The winning pattern lacks the operation's capability.
    MissingCapability {
        pattern: String,
        capability: Capability,
    },
    /// The path is root-protected and the winning pattern lacks `sudo`.
    SudoRequired {
        pattern: String,
    },
    RequiredParameterMissing {
        parameter: String,
    },
    /// The parameter (or, for `"*"`, every parameter) is denied, or has a denied value.
    ParameterDenied {
        parameter: String,
    },
    /// The parameter is not listed in `allowed_parameters`, or has a value not listed.
    ParameterNotAllowed {
        parameter: String,
    },
    /// The rule has wrapping TTL bounds and the request asked for no wrapping.
    WrappingRequired,
    WrapTtlTooShort {
        requested: u64,
        min: Duration,
    },
    WrapTtlTooLong {
        requested: u64,
        max: Duration,
    },
}

/// How the winning pattern matched, for [`Acl::explain`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    Exact,
    /// A LIST request `foo/` matched the exact pattern `foo`.
    ExactWithoutTrailingSlash,
    /// A pattern ending in `*` with no `+`.
    Prefix,
    /// A pattern with `+` segments.
    Segment,
}

/// One matching pattern, for [`Acl::explain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSummary {
    pub pattern: String,
    pub kind: MatchKind,
    /// Capabilities after merging every policy's stanza for the pattern.
    pub capabilities: Vec<&'static str>,
    /// The policies that have a stanza for the pattern.
    pub policies: Vec<String>,
}

/// Which patterns match a path and which one wins (`ward policy explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub root: bool,
    pub winner: Option<RuleSummary>,
    /// Every pattern that matches the path (or, for LIST, the path without
    /// its trailing `/`), highest priority first.
    pub candidates: Vec<RuleSummary>,
}

/// A token's effective access control list.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    root: bool,
    rules: Vec<Rule>,
    exact: HashMap<String, usize>,
    /// Prefix rules (ending in `*`, no `+`), longest prefix first.
    prefixes: Vec<usize>,
    /// Rules with `+` segments, highest priority first.
    segments: Vec<usize>,
}

impl Acl {
    /// Builds the ACL for a token holding these policies.
    ///
    /// Templated patterns are resolved against `identity`; a stanza whose
    /// template cannot be resolved, or resolves to an unsafe value, is dropped.
    /// A policy named `root` makes the whole ACL root (as in Vault), so the
    /// caller must never let anything but a root token carry it.
    pub fn new(policies: &[&Policy], identity: &IdentityContext) -> Acl {
        if policies.iter().any(|policy| policy.name == "root") {
            return Acl::root();
        }
        let mut acl = Acl::default();
        let mut by_pattern: HashMap<String, usize> = HashMap::new();
        for policy in policies {
            for path_rule in &policy.rules {
                let Ok(pattern) = resolve_template(&path_rule.pattern, identity) else {
                    continue;
                };
                let pattern = pattern.strip_prefix('/').unwrap_or(&pattern).to_owned();
                match by_pattern.get(&pattern) {
                    Some(&index) => {
                        if let Some(rule) = acl.rules.get_mut(index) {
                            rule.permissions.merge(path_rule);
                            rule.granting
                                .push((policy.name.clone(), path_rule.capabilities));
                        }
                    }
                    None => {
                        by_pattern.insert(pattern.clone(), acl.rules.len());
                        acl.rules
                            .push(Rule::new(pattern, path_rule, policy.name.clone()));
                    }
                }
            }
        }
        for (index, rule) in acl.rules.iter().enumerate() {
            match rule.kind {
                RuleKind::Exact => {
                    acl.exact.insert(rule.pattern.clone(), index);
                }
                RuleKind::Prefix => acl.prefixes.push(index),
                RuleKind::Segment { .. } => acl.segments.push(index),
            }
        }
        let rules = &acl.rules;
        let prefix_len = |index: &usize| rules.get(*index).map_or(0, |rule| rule.literal.len());
        acl.prefixes
            .sort_by_key(|index| std::cmp::Reverse(prefix_len(index)));
        let mut segments = std::mem::take(&mut acl.segments);
        segments.sort_by(|a, b| acl.compare(*b, *a));
        acl.segments = segments;
        acl
    }

    /// The ACL of the `root` policy: everything is allowed, sudo included.
    pub fn root() -> Acl {
        Acl {
            root: true,
            ..Acl::default()
        }
    }

    /// True for the root ACL.
    pub fn is_root(&self) -> bool {
        self.root
    }

    /// Whether any rule grants something at or below `prefix` (a mount path such as
    /// `secret/`). Vault answers `sys/internal/ui/mounts/<path>` only for such tokens, so
    /// that a client can detect the KV version of a mount it has any access to.
    pub fn has_access_under(&self, prefix: &str) -> bool {
        if self.root {
            return true;
        }
        self.rules.iter().any(|rule| {
            let grants = rule
                .permissions
                .capabilities
                .iter()
                .any(|c| c != Capability::Deny);
            let denied = rule.permissions.capabilities.contains(Capability::Deny);
            // A rule reaches below the prefix when its literal part starts inside it, or
            // when the prefix starts inside a glob's literal part.
            let overlaps = rule.literal.starts_with(prefix)
                || (!matches!(rule.kind, RuleKind::Exact) && prefix.starts_with(&rule.literal));
            grants && !denied && overlaps
        })
    }

    /// Decides whether the request is allowed.
    pub fn authorize(&self, request: &Request<'_>) -> Decision {
        if self.root {
            return Decision {
                allowed: true,
                sudo: true,
                root: true,
                granting_policies: vec!["root".to_owned()],
                ..Decision::default()
            };
        }
        let path = request.path.trim_start_matches('/');
        let Some((rule, _)) = self
            .resolve(path, request.operation)
            .and_then(|(index, kind)| Some((self.rules.get(index)?, kind)))
        else {
            return denied(Denial::NoMatchingRule, false);
        };
        let permissions = &rule.permissions;
        let capabilities = permissions.capabilities;
        if capabilities.contains(Capability::Deny) {
            return denied(
                Denial::ExplicitDeny {
                    pattern: rule.pattern.clone(),
                },
                false,
            );
        }
        let sudo = capabilities.contains(Capability::Sudo);
        let needed = request.operation.capability();
        if !capabilities.contains(needed) {
            return denied(
                Denial::MissingCapability {
                    pattern: rule.pattern.clone(),
                    capability: needed,
                },
                sudo,
            );
        }
        if let Err(denial) = check_wrapping(permissions, request.wrap_ttl) {
            return denied(denial, sudo);
        }
        // Vault checks parameters for these operations only (read included:
        // a GET with parameters is checked too when the caller passes them).
        let checks_parameters = matches!(
            request.operation,
            Operation::Read | Operation::Create | Operation::Update | Operation::Patch
        );
        if let (true, Some(parameters)) = (checks_parameters, request.parameters) {
            if let Err(denial) = check_parameters(permissions, parameters) {
                return denied(denial, sudo);
            }
        }
        if request.requires_sudo && !sudo {
            return denied(
                Denial::SudoRequired {
                    pattern: rule.pattern.clone(),
                },
                sudo,
            );
        }
        let mut granting_policies: Vec<String> = Vec::with_capacity(rule.granting.len());
        for (name, granted) in &rule.granting {
            if granted.contains(needed) && !granting_policies.contains(name) {
                granting_policies.push(name.clone());
            }
        }
        Decision {
            allowed: true,
            sudo,
            root: false,
            granting_policies,
            denial: None,
            control_group: applicable_control_group(permissions, needed),
            mfa_methods: permissions.mfa_methods.clone(),
        }
    }

    /// The capabilities on a path, as `sys/capabilities` returns them: sorted
    /// names, `["deny"]` when nothing is granted, `["root"]` for root.
    ///
    /// Like Vault, this resolves the path as a LIST request would (so `foo/`
    /// also sees an exact rule for `foo`).
    pub fn capabilities(&self, path: &str) -> Vec<String> {
        if self.root {
            return vec!["root".to_owned()];
        }
        let path = path.trim_start_matches('/');
        let capabilities = self
            .resolve(path, Operation::List)
            .and_then(|(index, _)| self.rules.get(index))
            .map_or(CapabilitySet::EMPTY, |rule| rule.permissions.capabilities);
        if capabilities.is_empty() || capabilities.contains(Capability::Deny) {
            return vec!["deny".to_owned()];
        }
        capabilities
            .names()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// Every pattern that matches the path and the one that wins for `operation`.
    pub fn explain(&self, path: &str, operation: Operation) -> Explanation {
        let path = path.trim_start_matches('/');
        if self.root {
            return Explanation {
                root: true,
                winner: None,
                candidates: Vec::new(),
            };
        }
        let trimmed = match operation {
            Operation::List => path.strip_suffix('/'),
            _ => None,
        };
        let mut matching: Vec<(usize, MatchKind)> = Vec::new();
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.matches(path) {
                matching.push((index, rule.kind.match_kind()));
            } else if let Some(trimmed) = trimmed {
                if rule.kind == RuleKind::Exact && rule.pattern == trimmed {
                    matching.push((index, MatchKind::ExactWithoutTrailingSlash));
                } else if rule.kind != RuleKind::Exact && rule.matches(trimmed) {
                    matching.push((index, rule.kind.match_kind()));
                }
            }
        }
        matching.sort_by(|(a, _), (b, _)| self.compare(*b, *a));
        let winner = self
            .resolve(path, operation)
            .and_then(|(index, kind)| self.rules.get(index).map(|rule| rule.summary(kind)));
        Explanation {
            root: false,
            winner,
            candidates: matching
                .into_iter()
                .filter_map(|(index, kind)| self.rules.get(index).map(|rule| rule.summary(kind)))
                .collect(),
        }
    }

    /// The index of the winning rule and how it matched.
    fn resolve(&self, path: &str, operation: Operation) -> Option<(usize, MatchKind)> {
        if let Some(&index) = self.exact.get(path) {
            return Some((index, MatchKind::Exact));
        }
        if operation == Operation::List {
            if let Some(trimmed) = path.strip_suffix('/') {
                if let Some(&index) = self.exact.get(trimmed) {
                    return Some((index, MatchKind::ExactWithoutTrailingSlash));
                }
                return self
                    .resolve_list(trimmed, path)
                    .map(|index| self.tagged(index));
            }
        }
        let prefix = self.best_prefix(path);
        let segment = self
            .segments
            .iter()
            .copied()
            .find(|index| self.rule_matches(*index, path));
        self.better(prefix, segment).map(|index| self.tagged(index))
    }

    /// Vault's choice for a LIST of `dir/`: candidates come from both `dir/`
    /// and `dir`; the most specific `deny` wins unless a LIST grant is more
    /// specific; then the most specific LIST grant; then the most specific rule.
    fn resolve_list(&self, trimmed: &str, full: &str) -> Option<usize> {
        let prefixes = [self.best_prefix(trimmed), self.best_prefix(full)];
        let best_where = |wanted: &dyn Fn(CapabilitySet) -> bool| -> Option<usize> {
            let mut best = None;
            for index in prefixes.iter().flatten().copied() {
                if self.rule_has(index, wanted) {
                    best = self.better(best, Some(index));
                }
            }
            let segment = self.segments.iter().copied().find(|index| {
                self.rule_has(*index, wanted)
                    && (self.rule_matches(*index, trimmed) || self.rule_matches(*index, full))
            });
            self.better(best, segment)
        };
        let deny = best_where(&|capabilities| capabilities.contains(Capability::Deny));
        let list = best_where(&|capabilities| capabilities.contains(Capability::List));
        match (deny, list) {
            (Some(deny), None) => Some(deny),
            (Some(deny), Some(list)) if self.compare(list, deny) == Ordering::Less => Some(deny),
            (_, Some(list)) => Some(list),
            (None, None) => best_where(&|_| true),
        }
    }

    fn best_prefix(&self, path: &str) -> Option<usize> {
        self.prefixes.iter().copied().find(|index| {
            self.rules
                .get(*index)
                .is_some_and(|rule| path.starts_with(rule.literal.as_str()))
        })
    }

    fn rule_matches(&self, index: usize, path: &str) -> bool {
        self.rules.get(index).is_some_and(|rule| rule.matches(path))
    }

    fn rule_has(&self, index: usize, wanted: &dyn Fn(CapabilitySet) -> bool) -> bool {
        self.rules
            .get(index)
            .is_some_and(|rule| wanted(rule.permissions.capabilities))
    }

    fn compare(&self, a: usize, b: usize) -> Ordering {
        match (self.rules.get(a), self.rules.get(b)) {
            (Some(a), Some(b)) => compare_priority(a, b),
            _ => Ordering::Equal,
        }
    }

    /// The higher-priority of two optional candidates.
    fn better(&self, a: Option<usize>, b: Option<usize>) -> Option<usize> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if self.compare(a, b) == Ordering::Less {
                b
            } else {
                a
            }),
            (a, b) => a.or(b),
        }
    }

    fn tagged(&self, index: usize) -> (usize, MatchKind) {
        let kind = self
            .rules
            .get(index)
            .map_or(MatchKind::Exact, |rule| rule.kind.match_kind());
        (index, kind)
    }
}

/// Which of Vault's priority rules tells two matching patterns apart, for
/// reviewers (`ward policy explain` and `validate`'s shadowing warnings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriorityRule {
    /// One pattern has no wildcard: an exact pattern beats any glob.
    Exact,
    /// Rule 1: the later first wildcard (`+` or `*`) wins.
    FirstWildcard,
    /// Rule 2: not ending in `*` wins.
    TrailingGlob,
    /// Rule 3: fewer `+` segments win.
    PlusSegments,
    /// Rule 4: the longer pattern wins.
    Length,
    /// Rule 5: the lexicographically greater pattern wins.
    Lexicographic,
    /// The patterns are the same: their stanzas are merged, nothing is chosen.
    Same,
}

/// Compares two patterns by the rules [`Acl`] uses to choose between
/// matching rules: `Greater` means `a` wins. Also says which rule decided.
pub fn compare_patterns(a: &str, b: &str) -> (Ordering, PriorityRule) {
    let a = Rule::new(
        a.trim_start_matches('/').to_owned(),
        &PathRule::default(),
        String::new(),
    );
    let b = Rule::new(
        b.trim_start_matches('/').to_owned(),
        &PathRule::default(),
        String::new(),
    );
    let ordering = compare_priority(&a, &b);
    let rule = if a.pattern == b.pattern {
        PriorityRule::Same
    } else if a.kind == RuleKind::Exact || b.kind == RuleKind::Exact {
        PriorityRule::Exact
    } else if a.first_wildcard != b.first_wildcard {
        PriorityRule::FirstWildcard
    } else if a.ends_in_glob != b.ends_in_glob {
        PriorityRule::TrailingGlob
    } else if a.n_plus_segments != b.n_plus_segments {
        PriorityRule::PlusSegments
    } else if a.stem.len() != b.stem.len() {
        PriorityRule::Length
    } else {
        PriorityRule::Lexicographic
    };
    (ordering, rule)
}

impl fmt::Display for PriorityRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PriorityRule::Exact => "an exact pattern (no wildcard) beats any glob",
            PriorityRule::FirstWildcard => {
                "rule 1: the pattern whose first wildcard (+ or *) comes later wins"
            }
            PriorityRule::TrailingGlob => "rule 2: a pattern not ending in * beats one that does",
            PriorityRule::PlusSegments => "rule 3: the pattern with fewer + segments wins",
            PriorityRule::Length => "rule 4: the longer pattern wins",
            PriorityRule::Lexicographic => "rule 5: the lexicographically greater pattern wins",
            PriorityRule::Same => "the same pattern: the stanzas are merged",
        })
    }
}

impl Operation {
    /// The capability a request with this operation needs.
    pub fn capability(self) -> Capability {
        match self {
            Operation::Create => Capability::Create,
            Operation::Read => Capability::Read,
            Operation::Update => Capability::Update,
            Operation::Patch => Capability::Patch,
            Operation::Delete => Capability::Delete,
            Operation::List => Capability::List,
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::NoMatchingRule => f.write_str("no policy grants access to this path"),
            Denial::ExplicitDeny { pattern } => write!(f, "path {pattern:?} is denied"),
            Denial::MissingCapability {
                pattern,
                capability,
            } => write!(f, "path {pattern:?} does not grant {capability:?}"),
            Denial::SudoRequired { pattern } => {
                write!(
                    f,
                    "root-protected path needs sudo, which {pattern:?} does not grant"
                )
            }
            Denial::RequiredParameterMissing { parameter } => {
                write!(f, "required parameter {parameter:?} is missing")
            }
            Denial::ParameterDenied { parameter } => {
                write!(f, "parameter {parameter:?} (or its value) is denied")
            }
            Denial::ParameterNotAllowed { parameter } => {
                write!(f, "parameter {parameter:?} (or its value) is not allowed")
            }
            Denial::WrappingRequired => f.write_str("this path requires a response-wrapping TTL"),
            Denial::WrapTtlTooShort { requested, min } => write!(
                f,
                "wrapping TTL {requested}s is below the minimum of {}s",
                min.as_secs()
            ),
            Denial::WrapTtlTooLong { requested, max } => write!(
                f,
                "wrapping TTL {requested}s is above the maximum of {}s",
                max.as_secs()
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// Rules and priority

#[derive(Debug, Clone, PartialEq, Eq)]
enum RuleKind {
    Exact,
    Prefix,
    /// Pattern split on `/` (trailing `*` removed), and whether it ends in `*`.
    Segment {
        parts: Vec<String>,
        is_prefix: bool,
    },
}

impl RuleKind {
    fn match_kind(&self) -> MatchKind {
        match self {
            RuleKind::Exact => MatchKind::Exact,
            RuleKind::Prefix => MatchKind::Prefix,
            RuleKind::Segment { .. } => MatchKind::Segment,
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    /// The resolved pattern, as written (with its trailing `*`).
    pattern: String,
    kind: RuleKind,
    /// The text before the first wildcard: every matching path starts with it.
    literal: String,
    /// Byte position of the first wildcard (`usize::MAX` for exact patterns).
    first_wildcard: usize,
    ends_in_glob: bool,
    n_plus_segments: usize,
    /// The pattern without its trailing `*`: used for rules 4 and 5.
    stem: String,
    permissions: PathRule,
    /// Each contributing policy and the capabilities its stanza listed.
    granting: Vec<(String, CapabilitySet)>,
}

impl Rule {
    fn new(pattern: String, path_rule: &PathRule, policy_name: String) -> Rule {
        let ends_in_glob = pattern.ends_with('*');
        let stem = pattern.strip_suffix('*').unwrap_or(&pattern).to_owned();
        // As in Vault, any `+` puts the pattern among the segment patterns,
        // and its first wildcard is the first `+`.
        let (kind, first_wildcard) = if let Some(plus) = pattern.find('+') {
            let parts: Vec<String> = stem.split('/').map(str::to_owned).collect();
            (
                RuleKind::Segment {
                    parts,
                    is_prefix: ends_in_glob,
                },
                plus,
            )
        } else if ends_in_glob {
            (RuleKind::Prefix, stem.len())
        } else {
            (RuleKind::Exact, usize::MAX)
        };
        let n_plus_segments = match &kind {
            RuleKind::Segment { parts, .. } => parts.iter().filter(|part| *part == "+").count(),
            _ => 0,
        };
        let literal = pattern
            .get(..first_wildcard.min(stem.len()))
            .unwrap_or_default()
            .to_owned();
        let mut permissions = path_rule.clone();
        permissions.pattern.clone_from(&pattern);
        Rule {
            granting: vec![(policy_name, path_rule.capabilities)],
            pattern,
            kind,
            literal,
            first_wildcard,
            ends_in_glob,
            n_plus_segments,
            stem,
            permissions,
        }
    }

    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            RuleKind::Exact => path == self.pattern,
            RuleKind::Prefix => path.starts_with(self.literal.as_str()),
            RuleKind::Segment { parts, is_prefix } => {
                path.starts_with(self.literal.as_str()) && segments_match(parts, *is_prefix, path)
            }
        }
    }

    fn summary(&self, kind: MatchKind) -> RuleSummary {
        let mut policies: Vec<String> = Vec::new();
        for (name, _) in &self.granting {
            if !policies.contains(name) {
                policies.push(name.clone());
            }
        }
        RuleSummary {
            pattern: self.pattern.clone(),
            kind,
            capabilities: self.permissions.capabilities.names(),
            policies,
        }
    }
}

/// Vault's segment matching: the path is split on `/`; `+` matches any one
/// segment (an empty one too, as in Vault); with a trailing `*` the last
/// pattern segment is a prefix of the path's segment and more segments may follow.
fn segments_match(parts: &[String], is_prefix: bool, path: &str) -> bool {
    let mut path_parts = path.split('/');
    let last = parts.len().saturating_sub(1);
    for (position, part) in parts.iter().enumerate() {
        let Some(segment) = path_parts.next() else {
            return false;
        };
        let ok = part == "+"
            || part == segment
            || (is_prefix && position == last && segment.starts_with(part.as_str()));
        if !ok {
            return false;
        }
    }
    is_prefix || path_parts.next().is_none()
}

/// Orders two rules by Vault's priority: `Greater` means `a` wins.
///
/// 1. the later first wildcard wins (exact patterns have none: they win);
/// 2. not ending in `*` wins;
/// 3. fewer `+` segments win;
/// 4. longer wins;
/// 5. lexicographically greater wins.
fn compare_priority(a: &Rule, b: &Rule) -> Ordering {
    a.first_wildcard
        .cmp(&b.first_wildcard)
        .then_with(|| b.ends_in_glob.cmp(&a.ends_in_glob))
        .then_with(|| b.n_plus_segments.cmp(&a.n_plus_segments))
        .then_with(|| a.stem.len().cmp(&b.stem.len()))
        .then_with(|| a.stem.cmp(&b.stem))
}

// ---------------------------------------------------------------------------
// Checks on the winning rule

fn denied(denial: Denial, sudo: bool) -> Decision {
    Decision {
        allowed: false,
        sudo,
        denial: Some(denial),
        ..Decision::default()
    }
}

/// Wrapping TTL bounds, as Vault applies them: either bound makes wrapping
/// mandatory, and a zero bound counts as unset.
fn check_wrapping(rule: &PathRule, wrap_ttl: Option<u64>) -> Result<(), Denial> {
    let min = rule.min_wrapping_ttl.filter(|ttl| !ttl.is_zero());
    let max = rule.max_wrapping_ttl.filter(|ttl| !ttl.is_zero());
    if min.is_none() && max.is_none() {
        return Ok(());
    }
    let Some(requested) = wrap_ttl else {
        return Err(Denial::WrappingRequired);
    };
    let requested_duration = Duration::from_secs(requested);
    if let Some(max) = max {
        if requested_duration > max {
            return Err(Denial::WrapTtlTooLong { requested, max });
        }
    }
    if let Some(min) = min {
        if requested_duration < min {
            return Err(Denial::WrapTtlTooShort { requested, min });
        }
    }
    // Merged rules may end up with max below min (Vault keeps the lowest of
    // each): then every requested TTL fails one of the two checks above.
    Ok(())
}

/// Required, denied and allowed parameters, in Vault's order.
fn check_parameters(
    rule: &PathRule,
    parameters: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), Denial> {
    for required in &rule.required_parameters {
        if !parameters.contains_key(required) {
            return Err(Denial::RequiredParameterMissing {
                parameter: required.clone(),
            });
        }
    }
    if parameters.is_empty() {
        return Ok(());
    }
    if !rule.denied_parameters.is_empty() {
        if rule.denied_parameters.contains_key("*") {
            let parameter = parameters.keys().next().cloned().unwrap_or_default();
            return Err(Denial::ParameterDenied { parameter });
        }
        for (name, value) in parameters {
            if let Some(denied) = rule.denied_parameters.get(lowercase(name).as_ref()) {
                if value_in_denied_list(&normalize_value(name, value), denied) {
                    return Err(Denial::ParameterDenied {
                        parameter: name.clone(),
                    });
                }
            }
        }
    }
    if rule.allowed_parameters.is_empty() {
        return Ok(());
    }
    let allowed_all = rule.allowed_parameters.contains_key("*");
    if allowed_all && rule.allowed_parameters.len() == 1 {
        return Ok(());
    }
    for (name, value) in parameters {
        match rule.allowed_parameters.get(lowercase(name).as_ref()) {
            None if allowed_all => {}
            None => {
                return Err(Denial::ParameterNotAllowed {
                    parameter: name.clone(),
                })
            }
            Some(allowed) => {
                if !value_in_allowed_list(&normalize_value(name, value), allowed) {
                    return Err(Denial::ParameterNotAllowed {
                        parameter: name.clone(),
                    });
                }
            }
        }
    }
    Ok(())
}

fn lowercase(name: &str) -> Cow<'_, str> {
    if name.chars().any(char::is_uppercase) {
        Cow::Owned(name.to_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// Vault lowercases the values of `policies` and `token_policies` before
/// checking them, since it lowercases policy names when it stores them;
/// otherwise `Root` would slip past `denied_parameters = { policies = ["root"] }`.
fn normalize_value<'a>(name: &str, value: &'a serde_json::Value) -> Cow<'a, serde_json::Value> {
    if !matches!(lowercase(name).as_ref(), "policies" | "token_policies") {
        return Cow::Borrowed(value);
    }
    let lower = |value: &serde_json::Value| match value {
        serde_json::Value::String(string) => serde_json::Value::String(string.to_lowercase()),
        other => other.clone(),
    };
    match value {
        serde_json::Value::Array(values) => {
            Cow::Owned(serde_json::Value::Array(values.iter().map(lower).collect()))
        }
        other => Cow::Owned(lower(other)),
    }
}

/// An empty list allows any value; a list-valued parameter passes when the
/// whole list is listed or every element is; a string passes when it is
/// listed or every comma-separated piece is (Vault treats strings as
/// possible comma-separated lists).
fn value_in_allowed_list(value: &serde_json::Value, list: &[serde_json::Value]) -> bool {
    if list.is_empty() || value_in_list(value, list) {
        return true;
    }
    match value {
        serde_json::Value::Array(elements) => {
            elements.iter().all(|element| value_in_list(element, list))
        }
        // Unlike Vault, an empty string is not vacuously allowed.
        serde_json::Value::String(string) if string.contains(',') => string
            .split(',')
            .all(|piece| value_in_list(&serde_json::Value::String(piece.trim().to_owned()), list)),
        _ => false,
    }
}

/// An empty list denies any value; a list-valued parameter is denied when any
/// element is; a string when any comma-separated piece is.
fn value_in_denied_list(value: &serde_json::Value, list: &[serde_json::Value]) -> bool {
    if list.is_empty() || value_in_list(value, list) {
        return true;
    }
    match value {
        serde_json::Value::Array(elements) => {
            elements.iter().any(|element| value_in_list(element, list))
        }
        serde_json::Value::String(string) if string.contains(',') => string
            .split(',')
            .any(|piece| value_in_list(&serde_json::Value::String(piece.trim().to_owned()), list)),
        _ => false,
    }
}

fn value_in_list(value: &serde_json::Value, list: &[serde_json::Value]) -> bool {
    list.iter().any(|item| match (item, value) {
        (serde_json::Value::String(pattern), serde_json::Value::String(string)) => {
            globbed_strings_match(pattern, string)
        }
        (serde_json::Value::Number(a), serde_json::Value::Number(b)) => {
            a == b || a.as_f64().is_some_and(|a| b.as_f64() == Some(a))
        }
        (item, value) => item == value,
    })
}

/// Vault's `GlobbedStringsMatch`: `*x` is a suffix match, `x*` a prefix
/// match, `*x*` a substring match; a lone `*` matches only itself.
fn globbed_strings_match(pattern: &str, value: &str) -> bool {
    if pattern.len() < 2 {
        return pattern == value;
    }
    match (pattern.strip_prefix('*'), pattern.strip_suffix('*')) {
        (Some(inner), Some(_)) => value.contains(inner.strip_suffix('*').unwrap_or(inner)),
        (Some(suffix), None) => value.ends_with(suffix),
        (None, Some(prefix)) => value.starts_with(prefix),
        (None, None) => pattern == value,
    }
}

/// The factors of the rule's control group that apply to this capability.
fn applicable_control_group(rule: &PathRule, needed: Capability) -> Option<ControlGroup> {
    let group = rule.control_group.as_ref()?;
    let factors: Vec<_> = group
        .factors
        .iter()
        .filter(|factor| {
            factor.controlled_capabilities.is_empty()
                || factor.controlled_capabilities.contains(needed)
        })
        .cloned()
        .collect();
    if factors.is_empty() {
        return None;
    }
    Some(ControlGroup {
        ttl: group.ttl,
        factors,
    })
}
