//! Durations written the way Vault accepts them.
//!
//! Vault (through `parseutil.ParseDurationSecond`) takes an integer as a
//! number of seconds, an integer followed by `d` as days, and otherwise a Go
//! duration string (`"1h30m"`, `"15s"`, `"1.5h"`, `"300ms"`). Policies use it
//! for wrapping TTLs and control-group TTLs; the server uses it for its config
//! file and for TTL parameters, which is why it lives here, in the crate with
//! no dependencies on the rest of Ward. Negative durations are rejected: every
//! caller means a TTL.

use std::fmt;
use std::time::Duration;

/// Parses `"300"`, `"7d"`, `"1h30m"`, `"1.5s"`, `"250ms"` and the like.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let error = |reason: &'static str| DurationError {
        input: text.to_owned(),
        reason,
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(error("empty duration"));
    }
    if trimmed.bytes().all(|byte| byte.is_ascii_digit()) {
        return trimmed
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| error("out of range"));
    }
    if let Some(days) = trimmed.strip_suffix('d') {
        if !days.is_empty() && days.bytes().all(|byte| byte.is_ascii_digit()) {
            return days
                .parse::<u64>()
                .ok()
                .and_then(|days| days.checked_mul(86_400))
                .map(Duration::from_secs)
                .ok_or_else(|| error("out of range"));
        }
    }
    parse_go_duration(trimmed).map_err(error)
}

/// A duration that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    pub input: String,
    pub reason: &'static str,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid duration {:?}: {}", self.input, self.reason)
    }
}

impl std::error::Error for DurationError {}

/// Go's `time.ParseDuration`, restricted to non-negative values.
fn parse_go_duration(text: &str) -> Result<Duration, &'static str> {
    // Go limits durations to i64 nanoseconds; so do we.
    const MAX_NANOS: u128 = i64::MAX as u128;
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    if rest.starts_with('-') {
        return Err("negative durations are not allowed");
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (whole, after) = rest.split_at(digits_end);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(after_dot) => {
                let end = after_dot
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(after_dot.len());
                after_dot.split_at(end)
            }
            None => ("", after),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err("expected a number");
        }
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err("missing unit (use s, m, h, ...)"),
            _ => return Err("unknown unit (use ns, us, ms, s, m or h)"),
        };
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| "out of range")?
        };
        let mut nanos = whole.checked_mul(unit_nanos).ok_or("out of range")?;
        // Fractions beyond nanosecond precision are dropped, as in Go.
        let mut scale = unit_nanos;
        for digit in fraction.bytes().take(30) {
            scale /= 10;
            nanos += u128::from(digit - b'0') * scale;
        }
        total = total.checked_add(nanos).ok_or("out of range")?;
        if total > MAX_NANOS {
            return Err("out of range");
        }
        rest = after;
    }
    let seconds = u64::try_from(total / 1_000_000_000).map_err(|_| "out of range")?;
    let subsec = u32::try_from(total % 1_000_000_000).map_err(|_| "out of range")?;
    Ok(Duration::new(seconds, subsec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_vault_accepts() {
        let cases: &[(&str, u64, u32)] = &[
            ("0", 0, 0),
            ("300", 300, 0),
            ("15s", 15, 0),
            ("1h30m", 5400, 0),
            ("768h", 768 * 3600, 0),
            ("7d", 7 * 86_400, 0),
            ("1.5h", 5400, 0),
            ("250ms", 0, 250_000_000),
            ("1m0.5s", 60, 500_000_000),
            (" 10s ", 10, 0),
            ("2h45m30s", 9930, 0),
            ("1us", 0, 1_000),
            ("1µs", 0, 1_000),
            (".5s", 0, 500_000_000),
        ];
        for (text, seconds, nanos) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::new(*seconds, *nanos)),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_garbage() {
        for text in [
            "",
            "-1s",
            "-5",
            "1x",
            "h",
            "1.5",
            "1d2h",
            "s1",
            "1..5s",
            "99999999999h",
            "1e3s",
            "abc",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} should be rejected");
        }
        let error = parse_duration("5x").map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(
            error,
            Err("invalid duration \"5x\": unknown unit (use ns, us, ms, s, m or h)".to_owned())
        );
    }
}
