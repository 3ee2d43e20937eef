//! Reasoning about path patterns as sets of paths, for the linter and the test runner.
//!
//! A pattern is read the way [`crate::Acl`] reads it: `+` as a whole segment
//! matches any one segment (an empty one too), a `*` at the very end matches
//! any rest, and every other character (a `*` elsewhere, a `+` inside a
//! segment) is literal. On that reading this module answers three questions
//! without enumerating paths: does a pattern match a path ([`matches()`]), is
//! there a path two patterns both match, and which ([`overlap`]), and does one
//! pattern match everything another does ([`covers`]). Choosing between
//! matching rules stays in [`crate::acl`].

use std::collections::HashSet;

/// Patterns longer than this are not analysed (the answer is "no overlap").
const MAX_ANALYSED: usize = 4096;

/// A character that no pattern contains literally, used to build sample paths.
const SAMPLE: &str = "\u{7f}";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Element {
    Literal(char),
    /// A whole segment `+`: any run of characters other than `/`.
    Plus,
    /// A trailing `*`: anything.
    Star,
}

/// True when the pattern matches the path (both without a leading `/`).
pub fn matches(pattern: &str, path: &str) -> bool {
    let path: Vec<Element> = path.chars().map(Element::Literal).collect();
    witness(&elements(pattern), &path).is_some()
}

/// A path that both patterns match, if there is one.
pub fn overlap(a: &str, b: &str) -> Option<String> {
    witness(&elements(a), &elements(b))
}

/// True when every path `specific` matches is also matched by `general`.
///
/// Checked on sample paths built from `specific` with a character no pattern
/// contains literally in place of each wildcard, so `general` can only match
/// them through wildcards of its own at the same places.
pub fn covers(general: &str, specific: &str) -> bool {
    let parts = elements(specific);
    let star_samples = ["", SAMPLE, "\u{7f}/\u{7f}"];
    let has_star = parts.last() == Some(&Element::Star);
    let samples: &[&str] = if has_star { &star_samples } else { &[""] };
    samples.iter().all(|star| {
        let mut path = String::new();
        for element in &parts {
            match element {
                Element::Literal(c) => path.push(*c),
                Element::Plus => path.push_str(SAMPLE),
                Element::Star => path.push_str(star),
            }
        }
        matches(general, &path)
    })
}

/// True when the pattern has a wildcard the evaluator honours.
pub fn has_wildcard(pattern: &str) -> bool {
    elements(pattern)
        .iter()
        .any(|element| !matches!(element, Element::Literal(_)))
}

fn elements(pattern: &str) -> Vec<Element> {
    let pattern = pattern.trim_start_matches('/');
    let (stem, star) = match pattern.strip_suffix('*') {
        Some(stem) => (stem, true),
        None => (pattern, false),
    };
    let mut out = Vec::with_capacity(pattern.len());
    for (index, segment) in stem.split('/').enumerate() {
        if index > 0 {
            out.push(Element::Literal('/'));
        }
        // Only a segment that is exactly `+` is a wildcard; with a trailing
        // `*`, the last segment is a prefix, and `+*` reads as `+` then `*`.
        if segment == "+" {
            out.push(Element::Plus);
        } else {
            out.extend(segment.chars().map(Element::Literal));
        }
    }
    if star {
        out.push(Element::Star);
    }
    out
}

/// A string both element lists match, searched depth first with memoised dead ends.
fn witness(a: &[Element], b: &[Element]) -> Option<String> {
    if a.len() > MAX_ANALYSED || b.len() > MAX_ANALYSED {
        return None;
    }
    let mut dead = HashSet::new();
    let mut out = String::new();
    search(a, b, 0, 0, &mut dead, &mut out).then_some(out)
}

fn search(
    a: &[Element],
    b: &[Element],
    i: usize,
    j: usize,
    dead: &mut HashSet<(usize, usize)>,
    out: &mut String,
) -> bool {
    if dead.contains(&(i, j)) {
        return false;
    }
    let mark = out.len();
    let found = match (a.get(i), b.get(j)) {
        (None, None) => true,
        (Some(Element::Star), _) => {
            concretize(b.get(j..).unwrap_or_default(), out);
            true
        }
        (_, Some(Element::Star)) => {
            concretize(a.get(i..).unwrap_or_default(), out);
            true
        }
        (Some(Element::Plus), Some(Element::Plus)) => {
            out.push('x');
            search(a, b, i + 1, j + 1, dead, out)
        }
        (Some(Element::Plus), None) => search(a, b, i + 1, j, dead, out),
        (None, Some(Element::Plus)) => search(a, b, i, j + 1, dead, out),
        (Some(Element::Plus), Some(Element::Literal(c))) => {
            let c = *c;
            search(a, b, i + 1, j, dead, out) || {
                out.truncate(mark);
                c != '/' && {
                    out.push(c);
                    search(a, b, i, j + 1, dead, out)
                }
            }
        }
        (Some(Element::Literal(c)), Some(Element::Plus)) => {
            let c = *c;
            search(a, b, i, j + 1, dead, out) || {
                out.truncate(mark);
                c != '/' && {
                    out.push(c);
                    search(a, b, i + 1, j, dead, out)
                }
            }
        }
        (Some(Element::Literal(x)), Some(Element::Literal(y))) => {
            x == y && {
                out.push(*x);
                search(a, b, i + 1, j + 1, dead, out)
            }
        }
        (Some(Element::Literal(_)), None) | (None, Some(Element::Literal(_))) => false,
    };
    if !found {
        out.truncate(mark);
        dead.insert((i, j));
    }
    found
}

/// One path the elements match: `+` as `x`, `*` as nothing.
fn concretize(elements: &[Element], out: &mut String) {
    for element in elements {
        match element {
            Element::Literal(c) => out.push(*c),
            Element::Plus => out.push('x'),
            Element::Star => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_follows_the_evaluator() {
        let table = [
            ("secret/foo", "secret/foo", true),
            ("secret/foo", "secret/food", false),
            ("secret/zip-*", "secret/zip-zap/zong", true),
            ("secret/+/teamb", "secret/x/teamb", true),
            ("secret/+/teamb", "secret//teamb", true),
            ("secret/+/teamb", "secret/x/y/teamb", false),
            ("secret/a*b", "secret/axb", false),
            ("secret/a*b", "secret/a*b", true),
            ("secret/a+b", "secret/a+b", true),
            ("secret/+/x*", "secret/a/xyz/q", true),
        ];
        for (pattern, path, expected) in table {
            assert_eq!(matches(pattern, path), expected, "{pattern} vs {path}");
        }
    }

    #[test]
    fn overlaps_and_witnesses() {
        let witness = overlap("secret/+/config", "secret/data/*").expect("overlap");
        assert!(matches("secret/+/config", &witness) && matches("secret/data/*", &witness));
        assert_eq!(overlap("secret/a", "secret/b"), None);
        assert_eq!(overlap("secret/+/a", "secret/x/b*"), None);
        assert!(overlap("sys/*", "sys/seal").is_some());
    }

    #[test]
    fn coverage() {
        assert!(covers("secret/*", "secret/foo/*"));
        assert!(covers("secret/*", "secret/+/x"));
        assert!(covers("secret/+/x", "secret/+/x"));
        assert!(!covers("secret/foo/*", "secret/*"));
        assert!(!covers("secret/+", "secret/*"));
        assert!(!covers("secret/data/*", "secret/+/config"));
        assert!(covers("secret/+/*", "secret/data/x"));
    }
}
