//! The glob of Vault's bindings (ryanuber/go-glob): `*` matches any run of characters,
//! including `/` and the empty run; every other character is literal. There is no `?`, no
//! character class and no escaping, so `refs/heads/*` matches `refs/heads/feature/x`.

/// Whether `value` matches `pattern`.
pub(crate) fn matches(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        // A pattern without `*` is one part: an exact match.
        return pattern == value;
    };
    let Some(mut rest) = value.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = rest.get(at + part.len()..).unwrap_or_default(),
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn star_spans_slashes_and_empty_runs() {
        let cases = [
            ("refs/heads/*", "refs/heads/feature/x", true),
            ("refs/heads/*", "refs/heads/", true),
            ("refs/heads/*", "refs/tags/v1", false),
            ("*", "", true),
            ("*", "anything/at/all", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "acb", false),
            (
                "org/repo/.github/workflows/deploy.yml@*",
                "org/repo/.github/workflows/deploy.yml@refs/heads/main",
                true,
            ),
            (
                "org/repo/.github/workflows/deploy.yml@*",
                "org/repo/.github/workflows/deploy.yml",
                false,
            ),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("ab*ba", "aba", false),
            ("app-?", "app-1", false),
            ("**", "", true),
            ("x*", "y", false),
        ];
        for (pattern, value, want) in cases {
            assert_eq!(matches(pattern, value), want, "{pattern:?} vs {value:?}");
        }
    }
}
