//! Durations as Vault accepts them: integer seconds, or Go duration strings.

/// Parses `"90"`, `"30s"`, `"15m"`, `"768h"`, `"1h30m"`, `"1.5h"`, `"300ms"` (rounded down to
/// seconds). Returns None for anything else, including negative values.
pub fn parse_seconds(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(n) = text.parse::<u64>() {
        return Some(n);
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return None;
        }
        let value: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * factor;
    }
    if !total.is_finite() || total < 0.0 || total > u64::MAX as f64 {
        return None;
    }
    Some(total as u64)
}

/// Formats seconds the way Vault prints durations in messages: `1h0m0s`, `5m0s`, `30s`.
pub fn format_seconds(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, (seconds % 3600) / 60, seconds % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        for (text, want) in [
            ("90", Some(90)),
            ("30s", Some(30)),
            ("15m", Some(900)),
            ("768h", Some(2_764_800)),
            ("1h30m", Some(5400)),
            ("1.5h", Some(5400)),
            ("300ms", Some(0)),
            ("", None),
            ("-5s", None),
            ("5x", None),
            ("h", None),
        ] {
            assert_eq!(parse_seconds(text), want, "{text}");
        }
        assert_eq!(format_seconds(3600), "1h0m0s");
        assert_eq!(format_seconds(300), "5m0s");
    }
}
