//! The hash chain over audit lines, and `verify`, which `ward audit verify` runs.
//!
//! Each line a device writes is `<prefix>{"prev_hash":"<hex>",...rest of the entry...}`:
//! `prev_hash` is the SHA-256 of the previous line's bytes (without its newline) on the same
//! device, and the first line of a device carries the hash of a fixed genesis marker. The
//! device keeps the last hash across file rotation, so the chain runs on from one file into
//! the next. Verification hashes the raw line bytes as they are on disk and never parses or
//! re-serialises the JSON, which keeps it well above 100 MB/s.
//!
//! What the chain proves: a line altered, removed, inserted or moved breaks the link at that
//! point. An altered line shows as a break on the line after it (its own `prev_hash` still
//! matches), so a report names the first line whose link does not hold. Truncating the end
//! of a file is only visible against an outside anchor: the device's last hash, which the
//! server keeps in the barrier.

use std::io::{self, BufRead};

use sha2::{Digest, Sha256};

/// What the first line of every device chains to.
pub const GENESIS_MARKER: &[u8] = b"ward audit chain genesis v1";

/// The key that opens every line's chain field, written first so it is found at once.
pub(crate) const PREV_HASH_KEY: &[u8] = b"{\"prev_hash\":\"";

/// The chain's starting value: hex SHA-256 of [`GENESIS_MARKER`].
pub fn genesis_hash() -> [u8; 32] {
    Sha256::digest(GENESIS_MARKER).into()
}

/// Appends one framed line (with its newline) to `out` and returns the line's hash.
/// `entry` is a serialised JSON object (`{...}`) without a `prev_hash`.
pub(crate) fn frame(out: &mut Vec<u8>, prefix: &[u8], prev: &[u8; 32], entry: &[u8]) -> [u8; 32] {
    let start = out.len();
    out.extend_from_slice(prefix);
    out.extend_from_slice(PREV_HASH_KEY);
    let mut hex_buf = [0u8; 64];
    // Encoding 32 bytes into a 64-byte buffer cannot fail.
    let _ = hex::encode_to_slice(prev, &mut hex_buf);
    out.extend_from_slice(&hex_buf);
    out.push(b'"');
    let rest = entry.strip_prefix(b"{").unwrap_or(entry);
    if rest.first().is_some_and(|b| *b != b'}') {
        out.push(b',');
    }
    out.extend_from_slice(rest);
    let hash: [u8; 32] = Sha256::digest(&out[start..]).into();
    out.push(b'\n');
    hash
}

/// The hash of a line as the chain sees it: its bytes without the newline.
pub fn line_hash(line: &[u8]) -> [u8; 32] {
    Sha256::digest(trim_newline(line)).into()
}

/// Why a line does not chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakReason {
    /// The line has no `prev_hash` field where Ward writes it.
    MissingPrevHash,
    /// `prev_hash` does not match the line before: that line, or this one, was altered,
    /// removed, inserted or moved.
    Mismatch,
}

/// The first place the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    /// The file, as passed to the verifier.
    pub file: String,
    /// 1-based line number within that file.
    pub line: u64,
    pub reason: BreakReason,
}

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    pub files: usize,
    pub lines: u64,
    pub bytes: u64,
    /// Whether the first line chains to the genesis marker. A file that starts after a
    /// rotation starts mid-chain: its first link is taken on trust, and the report says so.
    pub starts_at_genesis: bool,
    /// Hex hash of the last line: compare with the device's last hash to detect truncation.
    pub last_hash: String,
    pub first_break: Option<ChainBreak>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.first_break.is_none()
    }
}

/// Checks one stream of audit lines. See [`Verifier`] for several files in order.
pub fn verify<R: BufRead>(reader: R) -> io::Result<VerifyReport> {
    let mut verifier = Verifier::default();
    verifier.feed("-", reader)?;
    Ok(verifier.finish())
}

/// Checks the chain across files given in order (a rotated file, then its successor).
#[derive(Debug, Default)]
pub struct Verifier {
    report: VerifyReport,
    expected: Option<[u8; 32]>,
}

impl Verifier {
    pub fn new() -> Verifier {
        Verifier::default()
    }

    /// Reads one file to the end, continuing the chain of the files before it. Stops
    /// hashing at the first break (the report keeps only the first).
    pub fn feed<R: BufRead>(&mut self, name: &str, mut reader: R) -> io::Result<()> {
        self.report.files += 1;
        let mut line = Vec::with_capacity(8 * 1024);
        let mut number = 0u64;
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 {
                return Ok(());
            }
            number += 1;
            self.report.lines += 1;
            self.report.bytes += n as u64;
            if self.report.first_break.is_some() {
                continue;
            }
            let content = trim_newline(&line);
            if content.is_empty() {
                continue;
            }
            let Some(recorded) = prev_hash_of(content) else {
                self.report.first_break = Some(ChainBreak {
                    file: name.to_string(),
                    line: number,
                    reason: BreakReason::MissingPrevHash,
                });
                continue;
            };
            match self.expected {
                None => self.report.starts_at_genesis = recorded == genesis_hash(),
                Some(expected) if expected != recorded => {
                    self.report.first_break = Some(ChainBreak {
                        file: name.to_string(),
                        line: number,
                        reason: BreakReason::Mismatch,
                    });
                    continue;
                }
                Some(_) => {}
            }
            let hash: [u8; 32] = Sha256::digest(content).into();
            self.expected = Some(hash);
        }
    }

    pub fn finish(mut self) -> VerifyReport {
        self.report.last_hash = self.expected.map(hex::encode).unwrap_or_default();
        self.report
    }
}

fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The `prev_hash` of a line: the first `{"prev_hash":"` (after any prefix), then 64 hex digits.
fn prev_hash_of(line: &[u8]) -> Option<[u8; 32]> {
    let window = &line[..line.len().min(4096)];
    let at = window
        .windows(PREV_HASH_KEY.len())
        .position(|w| w == PREV_HASH_KEY)?;
    let start = at + PREV_HASH_KEY.len();
    let hex_digits = line.get(start..start + 64)?;
    if line.get(start + 64) != Some(&b'"') {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_digits, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(entries: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut prev = genesis_hash();
        for entry in entries {
            prev = frame(&mut out, b"", &prev, entry.as_bytes());
        }
        out
    }

    fn lines(bytes: &[u8]) -> Vec<Vec<u8>> {
        bytes
            .split_inclusive(|b| *b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies_and_starts_at_genesis() {
        let bytes = chain(&[r#"{"type":"request"}"#, r#"{"type":"response"}"#, "{}"]);
        let report = verify(&bytes[..]).expect("read");
        assert!(report.is_intact(), "{report:?}");
        assert!(report.starts_at_genesis);
        assert_eq!(report.lines, 3);
        assert!(String::from_utf8_lossy(&bytes).starts_with("{\"prev_hash\":\""));
        assert!(
            String::from_utf8_lossy(&bytes).contains("\"prev_hash\":\"")
                && String::from_utf8_lossy(&bytes).contains("{\"prev_hash\":\"")
        );
    }

    #[test]
    fn altered_removed_and_swapped_lines_are_found_at_the_right_line() {
        let entries: Vec<String> = (0..6).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
        let refs: Vec<&str> = entries.iter().map(String::as_str).collect();
        let original = lines(&chain(&refs));

        let mut forged = original.clone();
        forged[2] = String::from_utf8_lossy(&forged[2])
            .replace("\"n\":2", "\"n\":9")
            .into_bytes();
        let report = verify(&forged.concat()[..]).expect("read");
        assert_eq!(
            report.first_break.map(|b| b.line),
            Some(4),
            "line 3 altered: line 4 no longer links"
        );

        let mut deleted = original.clone();
        deleted.remove(3);
        let report = verify(&deleted.concat()[..]).expect("read");
        assert_eq!(
            report.first_break.map(|b| b.line),
            Some(4),
            "line 4 removed: the new line 4 does not link"
        );

        let mut swapped = original.clone();
        swapped.swap(1, 2);
        let report = verify(&swapped.concat()[..]).expect("read");
        assert_eq!(report.first_break.map(|b| b.line), Some(2));
    }

    #[test]
    fn a_prefix_is_covered_by_the_hash() {
        let mut out = Vec::new();
        let first = frame(&mut out, b"@cee: ", &genesis_hash(), br#"{"a":1}"#);
        frame(&mut out, b"@cee: ", &first, br#"{"a":2}"#);
        assert!(verify(&out[..]).expect("read").is_intact());
    }
}
