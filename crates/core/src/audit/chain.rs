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
//!
//! Given the device's public key, the verifier also checks every signed checkpoint (see
//! `checkpoint`): its signature, that it signs the line before it, and that its counts add
//! up. A log cut after its last checkpoint shows when more entries (or more time) follow that
//! checkpoint than its signed interval allows, or against the server's last checkpoint
//! ([`Verifier::expect_checkpoint`]).

use std::io::{self, BufRead};

use sha2::{Digest, Sha256};

use super::checkpoint;

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
    pub checkpoints: CheckpointReport,
}

impl VerifyReport {
    /// Whether the chain holds (checkpoints aside).
    pub fn is_intact(&self) -> bool {
        self.first_break.is_none()
    }

    /// Whether the chain holds and no checkpoint problem was found.
    pub fn is_valid(&self) -> bool {
        self.is_intact() && self.checkpoints.first_problem.is_none()
    }
}

/// What the verifier found about signed checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CheckpointReport {
    /// Checkpoint lines read (up to the first chain break).
    pub found: u64,
    /// Checkpoints whose signature was checked and holds.
    pub verified: u64,
    /// The last checkpoint read.
    pub last: Option<CheckpointSeen>,
    /// Entries after the last checkpoint (all entries if there is none): not yet signed.
    pub entries_after_last: u64,
    pub first_problem: Option<CheckpointProblem>,
}

/// A checkpoint as read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSeen {
    pub file: String,
    pub line: u64,
    pub sequence: u64,
    pub entries: u64,
    pub head: String,
    pub time: String,
    pub key_id: String,
}

/// The first checkpoint problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointProblem {
    pub file: String,
    /// 1-based line number of the checkpoint, or of the file's last line for a missing one.
    pub line: u64,
    pub issue: CheckpointIssue,
}

/// What is wrong with a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointIssue {
    /// A checkpoint line that cannot be read.
    Unreadable,
    /// Signed by another key than the one given (its key id is shown).
    WrongKey { key_id: String },
    /// The signature does not hold for the given key: the checkpoint was altered or forged.
    BadSignature,
    /// The checkpoint's `head` is not the hash of the line before it.
    HeadMismatch,
    /// Its sequence number or entry count does not follow from the lines before it.
    CountMismatch {
        expected_sequence: u64,
        expected_entries: u64,
    },
    /// More entries, or more time, follow the last checkpoint than its signed interval
    /// allows: a later checkpoint was removed, or the log cut after it.
    Missing,
    /// The server's last checkpoint is not in the files: the log was cut.
    BehindServer { server_sequence: u64 },
    /// The server's checkpoint with this sequence signs another head.
    ServerMismatch,
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
    public_key: Option<[u8; 32]>,
    server: Option<(u64, String)>,
    /// The last checkpoint read, with its signed intervals and time.
    last_checkpoint: Option<(checkpoint::Fields, Option<time::OffsetDateTime>)>,
    /// Times of the first and the last entry after the last checkpoint.
    first_uncovered: Vec<u8>,
    last_uncovered: Vec<u8>,
    last_file: String,
    last_line: u64,
}

impl Verifier {
    pub fn new() -> Verifier {
        Verifier::default()
    }

    /// Checks checkpoint signatures with this Ed25519 public key.
    pub fn with_public_key(mut self, public_key: [u8; 32]) -> Verifier {
        self.public_key = Some(public_key);
        self
    }

    /// The server's last checkpoint of the device (`sys/audit-checkpoint/<path>`): files that
    /// end before it were cut.
    pub fn expect_checkpoint(mut self, sequence: u64, head: &str) -> Verifier {
        self.server = Some((sequence, head.to_string()));
        self
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
            self.last_file.clear();
            self.last_file.push_str(name);
            self.last_line = number;
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
            match checkpoint_json(content) {
                Some(json) => self.checkpoint(name, number, json, &recorded),
                None => self.entry(content),
            }
            let hash: [u8; 32] = Sha256::digest(content).into();
            self.expected = Some(hash);
        }
    }

    pub fn finish(mut self) -> VerifyReport {
        self.report.last_hash = self.expected.map(hex::encode).unwrap_or_default();
        if self.report.first_break.is_none() {
            self.check_tail();
        }
        self.report
    }

    fn entry(&mut self, content: &[u8]) {
        self.report.checkpoints.entries_after_last += 1;
        // Entry times matter only after a checkpoint with a time interval.
        if self
            .last_checkpoint
            .as_ref()
            .is_none_or(|(fields, _)| fields.interval_seconds == 0)
        {
            return;
        }
        let time = entry_time(content).unwrap_or_default();
        if self.first_uncovered.is_empty() {
            self.first_uncovered.extend_from_slice(time);
        }
        self.last_uncovered.clear();
        self.last_uncovered.extend_from_slice(time);
    }

    fn checkpoint(&mut self, file: &str, line: u64, json: &[u8], prev: &[u8; 32]) {
        let report = &mut self.report.checkpoints;
        report.found += 1;
        let entries_since = std::mem::take(&mut report.entries_after_last);
        self.first_uncovered.clear();
        self.last_uncovered.clear();
        let Some(parsed) = checkpoint::Parsed::from_json(json) else {
            self.problem(file, line, CheckpointIssue::Unreadable);
            return;
        };
        let fields = &parsed.fields;
        if fields.head != hex::encode(prev) {
            self.problem(file, line, CheckpointIssue::HeadMismatch);
        }
        if let Some(public_key) = &self.public_key {
            if parsed.signature_holds(public_key) {
                self.report.checkpoints.verified += 1;
            } else if parsed.key_id != checkpoint::key_id(public_key) {
                let key_id = parsed.key_id.clone();
                self.problem(file, line, CheckpointIssue::WrongKey { key_id });
            } else {
                self.problem(file, line, CheckpointIssue::BadSignature);
            }
        }
        // The counts follow from the previous checkpoint, or from the genesis when the
        // files start there; a file that starts after a rotation takes its first on trust.
        let expected = match &self.last_checkpoint {
            Some((previous, _)) => Some((previous.sequence + 1, previous.entries + entries_since)),
            None if self.report.starts_at_genesis => Some((1, entries_since)),
            None => None,
        };
        if let Some((expected_sequence, expected_entries)) = expected {
            if (fields.sequence, fields.entries) != (expected_sequence, expected_entries) {
                self.problem(
                    file,
                    line,
                    CheckpointIssue::CountMismatch {
                        expected_sequence,
                        expected_entries,
                    },
                );
            }
        }
        self.report.checkpoints.last = Some(CheckpointSeen {
            file: file.to_string(),
            line,
            sequence: fields.sequence,
            entries: fields.entries,
            head: fields.head.clone(),
            time: fields.time.clone(),
            key_id: parsed.key_id.clone(),
        });
        self.last_checkpoint = Some((parsed.fields.clone(), parsed.time()));
    }

    /// After the last line: is a checkpoint missing, or is the server ahead of the files?
    fn check_tail(&mut self) {
        let (file, line) = (self.last_file.clone(), self.last_line);
        if let Some((fields, written)) = &self.last_checkpoint {
            let after = self.report.checkpoints.entries_after_last;
            let by_count = fields.interval_entries > 0 && after >= fields.interval_entries;
            // A device writes a checkpoint at most its interval after the first entry it
            // does not cover (a quarter more for its timer, and slack for the clocks).
            let by_time = fields.interval_seconds > 0
                && match (
                    parse_time_bytes(&self.first_uncovered).or(*written),
                    parse_time_bytes(&self.last_uncovered),
                ) {
                    (Some(first), Some(last)) => {
                        let every = fields.interval_seconds as f64;
                        (last - first).as_seconds_f64() > every * 1.25 + 2.0
                    }
                    _ => false,
                };
            if by_count || by_time {
                self.problem(&file, line, CheckpointIssue::Missing);
            }
        }
        if let Some((server_sequence, server_head)) = self.server.clone() {
            let last = self.report.checkpoints.last.as_ref();
            match last.map(|l| (l.sequence, l.head.as_str())) {
                Some((sequence, _)) if sequence > server_sequence => {}
                Some((sequence, head)) if sequence == server_sequence => {
                    if head != server_head {
                        self.problem(&file, line, CheckpointIssue::ServerMismatch);
                    }
                }
                _ if server_sequence == 0 => {}
                _ => self.problem(
                    &file,
                    line,
                    CheckpointIssue::BehindServer { server_sequence },
                ),
            }
        }
    }

    fn problem(&mut self, file: &str, line: u64, issue: CheckpointIssue) {
        self.report
            .checkpoints
            .first_problem
            .get_or_insert_with(|| CheckpointProblem {
                file: file.to_string(),
                line,
                issue,
            });
    }
}

/// The `time` of an entry line: the field right after `prev_hash`.
fn entry_time(content: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = b",\"time\":\"";
    let at = prev_hash_at(content)? + PREV_HASH_KEY.len() + 65;
    let rest = content.get(at..)?.strip_prefix(KEY)?;
    let end = rest.iter().position(|b| *b == b'"')?;
    rest.get(..end)
}

fn parse_time_bytes(bytes: &[u8]) -> Option<time::OffsetDateTime> {
    checkpoint::parse_time(std::str::from_utf8(bytes).ok()?)
}

/// Where a line's `{"prev_hash":"` starts (after any prefix).
fn prev_hash_at(line: &[u8]) -> Option<usize> {
    let window = &line[..line.len().min(4096)];
    window
        .windows(PREV_HASH_KEY.len())
        .position(|w| w == PREV_HASH_KEY)
}

/// The JSON of a checkpoint line (from its `{"prev_hash"` on), or `None` for any other line.
/// A checkpoint's `type` follows its `prev_hash` directly; an entry's `time` does.
pub(crate) fn checkpoint_json(line: &[u8]) -> Option<&[u8]> {
    let line = trim_newline(line);
    let at = prev_hash_at(line)?;
    let after = line.get(at + PREV_HASH_KEY.len() + 65..)?;
    after
        .starts_with(super::checkpoint::CHECKPOINT_MARKER)
        .then(|| &line[at..])
}

fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The `prev_hash` of a line: the first `{"prev_hash":"` (after any prefix), then 64 hex digits.
fn prev_hash_of(line: &[u8]) -> Option<[u8; 32]> {
    let at = prev_hash_at(line)?;
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
