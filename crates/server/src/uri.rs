//! Request paths and query strings: percent-decoding and path validation.
//!
//! The path under `/v1/` is decoded exactly once and then checked, and the checked string is
//! what the core sees, so no later layer can decode it into something else (the
//! CVE-2026-3605 class of traversal bugs: `%2e%2e/`, double encoding, backslashes). A path is
//! refused when it has a `.` or `..` segment, an empty segment (`//`, or a leading `/`), a
//! control character, a backslash, invalid UTF-8, a malformed `%` escape, or an escape that
//! survived decoding and would decode to `/`, `.`, `\` or `%` (double encoding). A single
//! trailing `/` is allowed: Vault uses it for listings.

use std::fmt;

/// Why a path or query was refused; shown to the client as a 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UriError {
    BadEscape,
    InvalidUtf8,
    ControlCharacter,
    Backslash,
    DotSegment,
    EmptySegment,
    DoubleEncoding,
}

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UriError::BadEscape => "invalid percent-encoding in request path",
            UriError::InvalidUtf8 => "request path is not valid UTF-8",
            UriError::ControlCharacter => "request path contains a control character",
            UriError::Backslash => "request path contains a backslash",
            UriError::DotSegment => "request path contains a '.' or '..' segment",
            UriError::EmptySegment => "request path contains an empty segment ('//')",
            UriError::DoubleEncoding => {
                "request path contains an encoded '/', '.', '\\' or '%' after decoding"
            }
        })
    }
}

/// Decodes and validates the part of a request path after `/v1/`.
pub(crate) fn validate_path(raw: &str) -> Result<String, UriError> {
    let path = if raw.contains('%') {
        String::from_utf8(percent_decode(raw.as_bytes(), false)?)
            .map_err(|_| UriError::InvalidUtf8)?
    } else {
        raw.to_string()
    };
    check_path(&path)?;
    Ok(path)
}

fn check_path(path: &str) -> Result<(), UriError> {
    let bytes = path.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if b < 0x20 || b == 0x7f {
            return Err(UriError::ControlCharacter);
        }
        if b == b'\\' {
            return Err(UriError::Backslash);
        }
        if b == b'%' {
            if let (Some(&h), Some(&l)) = (bytes.get(i + 1), bytes.get(i + 2)) {
                if let (Some(h), Some(l)) = (hex_value(h), hex_value(l)) {
                    if matches!(h << 4 | l, b'/' | b'.' | b'\\' | b'%') {
                        return Err(UriError::DoubleEncoding);
                    }
                }
            }
        }
    }
    // Non-ASCII control characters (C1, U+0080..U+009F) are refused as well.
    if path.chars().any(char::is_control) {
        return Err(UriError::ControlCharacter);
    }
    if path.is_empty() {
        return Ok(());
    }
    // A single trailing slash is allowed (listings); every other segment must be a name.
    let body = path.strip_suffix('/').unwrap_or(path);
    for segment in body.split('/') {
        match segment {
            "" => return Err(UriError::EmptySegment),
            "." | ".." => return Err(UriError::DotSegment),
            _ => {}
        }
    }
    Ok(())
}

/// Parses a query string into `(key, value)` pairs in order, decoding `+` as a space.
pub(crate) fn parse_query(query: &str) -> Result<Vec<(String, String)>, UriError> {
    let mut pairs = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').unwrap_or((part, ""));
        pairs.push((decode_component(key)?, decode_component(value)?));
    }
    Ok(pairs)
}

fn decode_component(text: &str) -> Result<String, UriError> {
    if !text.contains(['%', '+']) {
        return Ok(text.to_string());
    }
    String::from_utf8(percent_decode(text.as_bytes(), true)?).map_err(|_| UriError::InvalidUtf8)
}

fn percent_decode(input: &[u8], plus_is_space: bool) -> Result<Vec<u8>, UriError> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        match b {
            b'%' => {
                let high = input.get(i + 1).copied().and_then(hex_value);
                let low = input.get(i + 2).copied().and_then(hex_value);
                match (high, low) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err(UriError::BadEscape),
                }
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_corpus_is_refused() {
        for raw in [
            "secret/a/../b",
            "../sys/seal",
            "secret/..",
            "%2e%2e/sys",
            "secret/%2E%2e%2Fsys",
            "secret/..%2fsys",
            "secret/%2e%2e%2fsys",
            "secret/./b",
            "./secret",
            "secret//b",
            "/secret/b",
            "secret/b//",
            "secret/%00",
            "secret/a%0ab",
            "secret/a\u{7f}b",
            "secret/%c2%85",
            "secret/%252e%252e/sys",
            "secret/%252f",
            "secret/%255c",
            "secret/%25252e",
            "secret/a%5cb",
            "secret/a%5C..%5Cb",
            "secret/%zz",
            "secret/%2",
            "secret/%ff",
        ] {
            assert!(validate_path(raw).is_err(), "{raw:?} must be refused");
        }
    }

    #[test]
    fn ordinary_paths_decode_once() {
        for (raw, want) in [
            ("secret/data/foo", "secret/data/foo"),
            ("secret/metadata/", "secret/metadata/"),
            ("", ""),
            ("secret/a%20b", "secret/a b"),
            ("secret/a%2fb", "secret/a/b"),
            ("secret/caf%C3%A9", "secret/café"),
            ("secret/a.b/..c/c..", "secret/a.b/..c/c.."),
            ("secret/100%25", "secret/100%"),
            ("secret/%2541", "secret/%41"),
        ] {
            assert_eq!(validate_path(raw).as_deref(), Ok(want), "{raw:?}");
        }
    }

    #[test]
    fn queries() {
        let pairs = parse_query("list=true&version=2&a+b=c%20d&flag&&x=1&x=2").expect("valid");
        let want = [
            ("list", "true"),
            ("version", "2"),
            ("a b", "c d"),
            ("flag", ""),
            ("x", "1"),
            ("x", "2"),
        ];
        assert_eq!(pairs.len(), want.len());
        for ((k, v), (wk, wv)) in pairs.iter().zip(want) {
            assert_eq!((k.as_str(), v.as_str()), (wk, wv));
        }
        assert_eq!(parse_query("a=%zz"), Err(UriError::BadEscape));
    }
}
