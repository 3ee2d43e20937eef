//! Property check: the optimised [`Acl`] against a brute-force reference model
//! of Vault's rule selection, on thousands of generated pattern sets and paths.
//!
//! The model is written from the rules as the reference states them, in the
//! most literal way: match every pattern segment by segment, then pick the
//! winner by comparing candidates pairwise with the five priority rules. It
//! shares no code with the crate.

#![allow(clippy::unwrap_used)]

use std::cmp::Ordering;

use ward_policy::{parse, Acl, IdentityContext, Operation, Request};

/// xorshift64*: deterministic, so a failure reproduces.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

#[derive(Debug, Clone)]
struct ModelRule {
    pattern: String,
    capability: &'static str,
}

fn generate_pattern(random: &mut Random) -> String {
    let n_segments = 1 + random.below(4);
    let mut segments: Vec<String> = (0..n_segments)
        .map(|_| random.pick(&["a", "b", "ab", "+", "+", "a"]).to_owned())
        .collect();
    match random.below(4) {
        0 => {
            if let Some(last) = segments.last_mut() {
                last.push('*');
            }
        }
        1 => segments.push("*".to_owned()),
        _ => {}
    }
    segments.join("/")
}

fn generate_path(random: &mut Random) -> String {
    let n_segments = 1 + random.below(5);
    let mut path = (0..n_segments)
        .map(|_| random.pick(&["a", "b", "ab", "abc", "ba", ""]))
        .collect::<Vec<_>>()
        .join("/");
    if random.below(3) == 0 {
        path.push('/');
    }
    path
}

/// Segment by segment: `+` matches one segment, a trailing `*` makes the last
/// segment a prefix and lets more segments follow.
fn model_matches(pattern: &str, path: &str) -> bool {
    let (body, is_prefix) = match pattern.strip_suffix('*') {
        Some(body) => (body, true),
        None => (pattern, false),
    };
    let pattern_parts: Vec<&str> = body.split('/').collect();
    let path_parts: Vec<&str> = path.split('/').collect();
    if path_parts.len() < pattern_parts.len() {
        return false;
    }
    if !is_prefix && path_parts.len() != pattern_parts.len() {
        return false;
    }
    for (i, part) in pattern_parts.iter().enumerate() {
        let last = i == pattern_parts.len() - 1;
        let ok = *part == "+"
            || *part == path_parts[i]
            || (is_prefix && last && path_parts[i].starts_with(part));
        if !ok {
            return false;
        }
    }
    true
}

fn first_wildcard(pattern: &str) -> usize {
    pattern.find(['+', '*']).unwrap_or(usize::MAX)
}

fn n_plus(pattern: &str) -> usize {
    pattern
        .trim_end_matches('*')
        .split('/')
        .filter(|part| *part == "+")
        .count()
}

/// True when `p1` has lower priority than `p2`: the first rule that tells them apart decides.
fn lower(p1: &str, p2: &str) -> bool {
    if first_wildcard(p1) != first_wildcard(p2) {
        return first_wildcard(p1) < first_wildcard(p2);
    }
    if p1.ends_with('*') != p2.ends_with('*') {
        return p1.ends_with('*');
    }
    if n_plus(p1) != n_plus(p2) {
        return n_plus(p1) > n_plus(p2);
    }
    if p1.len() != p2.len() {
        return p1.len() < p2.len();
    }
    p1 < p2
}

fn best<'a>(candidates: impl Iterator<Item = &'a ModelRule>) -> Option<&'a ModelRule> {
    candidates.fold(None, |best, rule| match best {
        Some(current) if !lower(&current.pattern, &rule.pattern) => Some(current),
        _ => Some(rule),
    })
}

fn is_exact(pattern: &str) -> bool {
    !pattern.contains('+') && !pattern.ends_with('*')
}

fn is_pure_prefix(pattern: &str) -> bool {
    !pattern.contains('+') && pattern.ends_with('*')
}

/// The winner for a non-LIST request: the best of every matching pattern.
fn model_winner<'a>(rules: &'a [ModelRule], path: &str) -> Option<&'a ModelRule> {
    best(
        rules
            .iter()
            .filter(|rule| model_matches(&rule.pattern, path)),
    )
}

/// Vault's LIST-with-trailing-slash selection, written out naively.
fn model_list_winner<'a>(rules: &'a [ModelRule], path: &str) -> Option<&'a ModelRule> {
    if let Some(rule) = rules
        .iter()
        .find(|r| is_exact(&r.pattern) && r.pattern == path)
    {
        return Some(rule);
    }
    let Some(trimmed) = path.strip_suffix('/') else {
        return model_winner(rules, path);
    };
    if let Some(rule) = rules
        .iter()
        .find(|r| is_exact(&r.pattern) && r.pattern == trimmed)
    {
        return Some(rule);
    }
    // Only the longest matching pure prefix of each form is a candidate.
    let mut candidates: Vec<&ModelRule> = Vec::new();
    for form in [trimmed, path] {
        let longest = rules
            .iter()
            .filter(|r| is_pure_prefix(&r.pattern) && model_matches(&r.pattern, form))
            .max_by_key(|r| r.pattern.len());
        candidates.extend(longest);
    }
    candidates.extend(rules.iter().filter(|r| {
        r.pattern.contains('+')
            && (model_matches(&r.pattern, trimmed) || model_matches(&r.pattern, path))
    }));
    let deny = best(
        candidates
            .iter()
            .copied()
            .filter(|r| r.capability == "deny"),
    );
    let list = best(
        candidates
            .iter()
            .copied()
            .filter(|r| r.capability == "list"),
    );
    match (deny, list) {
        (Some(deny), Some(list)) if lower(&list.pattern, &deny.pattern) => Some(deny),
        (Some(deny), None) => Some(deny),
        (_, Some(list)) => Some(list),
        (None, None) => best(candidates.into_iter()),
    }
}

#[test]
fn optimised_acl_agrees_with_the_reference_model() {
    let mut random = Random(0x9E37_79B9_7F4A_7C15);
    let mut n_checks = 0;
    // Winners seen: exact, pure prefix, with + segments.
    let mut winners = [0usize; 3];
    for round in 0..3000 {
        let n_rules = 1 + random.below(8);
        let mut rules: Vec<ModelRule> = Vec::new();
        for _ in 0..n_rules {
            let pattern = generate_pattern(&mut random);
            if rules.iter().any(|rule| rule.pattern == pattern) {
                continue;
            }
            let capability = *["read", "list", "deny"].get(random.below(3)).unwrap();
            rules.push(ModelRule {
                pattern,
                capability,
            });
        }
        let text: String = rules
            .iter()
            .map(|rule| {
                format!(
                    "path \"{}\" {{ capabilities = [\"{}\"] }}\n",
                    rule.pattern, rule.capability
                )
            })
            .collect();
        let policy = parse("p", &text).unwrap();
        let acl = Acl::new(&[&policy], &IdentityContext::default());
        for _ in 0..40 {
            let path = generate_path(&mut random);
            // Vault strips leading slashes before matching.
            let stripped = path.trim_start_matches('/');
            for operation in [Operation::Read, Operation::List] {
                let expected = match operation {
                    Operation::List => model_list_winner(&rules, stripped),
                    _ => model_winner(&rules, stripped),
                };
                if let Some(rule) = expected {
                    let kind = if is_exact(&rule.pattern) {
                        0
                    } else if is_pure_prefix(&rule.pattern) {
                        1
                    } else {
                        2
                    };
                    winners[kind] += 1;
                }
                let got = acl
                    .explain(&path, operation)
                    .winner
                    .map(|winner| winner.pattern);
                assert_eq!(
                    got.as_deref(),
                    expected.map(|rule| rule.pattern.as_str()),
                    "round {round}, {operation:?} {path:?}, rules:\n{text}"
                );
                let decision = acl.authorize(&Request {
                    path: &path,
                    operation,
                    parameters: None,
                    wrap_ttl: None,
                    requires_sudo: false,
                });
                let needed = if operation == Operation::List {
                    "list"
                } else {
                    "read"
                };
                assert_eq!(
                    decision.allowed,
                    expected.is_some_and(|rule| rule.capability == needed),
                    "round {round}, {operation:?} {path:?}, rules:\n{text}"
                );
                n_checks += 1;
            }
        }
    }
    assert_eq!(n_checks, 3000 * 40 * 2);
    // The generator must exercise every kind of winner, or the check proves little.
    assert!(
        winners.iter().all(|count| *count > 1000),
        "exact, prefix and + winners: {winners:?}"
    );
}

#[test]
fn the_model_itself_follows_the_reference_example() {
    assert!(lower("secret/+/+/foo/*", "secret/*"));
    assert!(!lower("secret/*", "secret/+/+/foo/*"));
    assert!(lower("secret/*", "secret/foo"));
    assert_eq!(
        "secret/+/a/+".cmp("secret/+/+/b"),
        Ordering::Greater,
        "rule 5 example used in cases.txt"
    );
}

#[test]
fn access_under_a_mount() {
    use ward_policy::{parse, Acl, IdentityContext};
    let policy = parse(
        "p",
        r#"path "secret/data/app/*" { capabilities = ["read"] }
path "kv/*" { capabilities = ["deny"] }
path "sys/*" { capabilities = ["read"] }"#,
    )
    .expect("parse");
    let acl = Acl::new(&[&policy], &IdentityContext::default());
    assert!(acl.has_access_under("secret/"), "a rule below the mount");
    assert!(!acl.has_access_under("kv/"), "a deny grants nothing");
    assert!(!acl.has_access_under("other/"));
    assert!(
        acl.has_access_under("sys/internal/"),
        "a glob above the prefix reaches it"
    );
    assert!(Acl::root().has_access_under("anything/"));
}
