//! Signed checkpoints: a file device can append, every so many entries or seconds, a line of
//! type `checkpoint` that signs the chain head with the device's Ed25519 key.
//!
//! The hash chain alone shows where a file was edited, but anyone who can write the file can
//! also rewrite every line after an edit and produce a chain that verifies. A checkpoint
//! closes that gap: its signature covers the hash of the line before it, so every line up to
//! a checkpoint is vouched for by a key that lives in the barrier, and a rewritten chain
//! shows as a checkpoint whose signature no longer holds. A checkpoint is itself a chain
//! line, so removing or moving one breaks the chain like any other line.
//!
//! The signed message is a fixed text (not the JSON line), so the verifier never depends on
//! how a line was serialised:
//!
//! ```text
//! ward-audit-checkpoint-v1\n<device>\n<sequence>\n<entries>\n<head hex>\n<time>\n<interval entries>\n<interval seconds>\n
//! ```
//!
//! `sequence` counts the device's checkpoints from 1, `entries` its audit entries since the
//! chain began (checkpoints not counted), `head` is the hash of the line before the
//! checkpoint (the checkpoint line's own `prev_hash`). The intervals are signed too, so the
//! verifier can tell when a checkpoint that should follow is missing.
//!
//! This module owns the key, the message and the line; the device writer decides when to
//! write one, and [`super::chain::Verifier`] checks them.

use std::time::Duration;

use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// What opens a checkpoint line after its `prev_hash` field (entries open with `"time"`).
pub(crate) const CHECKPOINT_MARKER: &[u8] = b",\"type\":\"checkpoint\"";

const MESSAGE_VERSION: &str = "ward-audit-checkpoint-v1";

/// When a device writes checkpoints: after so many entries, after so long, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Schedule {
    /// A checkpoint after every this many entries (0: not by count).
    pub(crate) entries: u64,
    /// A checkpoint at most this long after the first entry it does not yet cover.
    pub(crate) every: Option<Duration>,
}

impl Schedule {
    pub(crate) fn is_enabled(&self) -> bool {
        self.entries > 0 || self.every.is_some()
    }
}

/// A device's counters, restored at start and advanced only for lines the sink accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// The last checkpoint's sequence number (0: none yet).
    pub sequence: u64,
    /// Audit entries written since the chain began.
    pub entries: u64,
    /// `entries` at the last checkpoint.
    pub entries_at_checkpoint: u64,
}

/// The device's signing key. Printing it never shows the key.
pub(crate) struct Signer {
    key_pair: Ed25519KeyPair,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(***)")
    }
}

/// Why a device's checkpoint key cannot be made or read.
#[derive(Debug)]
pub(crate) struct KeyError;

impl Signer {
    /// A new key, as a PKCS#8 document (kept in the barrier with the device record).
    pub(crate) fn generate() -> Result<Vec<u8>, KeyError> {
        let random = ring::rand::SystemRandom::new();
        Ed25519KeyPair::generate_pkcs8(&random)
            .map(|document| document.as_ref().to_vec())
            .map_err(|_| KeyError)
    }

    pub(crate) fn from_pkcs8(document: &[u8]) -> Result<Signer, KeyError> {
        Ed25519KeyPair::from_pkcs8(document)
            .map(|key_pair| Signer { key_pair })
            .map_err(|_| KeyError)
    }

    pub(crate) fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.key_pair.public_key().as_ref());
        out
    }

    /// The entry body of the next checkpoint (a JSON object without `prev_hash`, which the
    /// device's framing adds) for the chain head `head`.
    pub(crate) fn line(
        &self,
        device: &str,
        progress: &Progress,
        head: &[u8; 32],
        schedule: Schedule,
        now: OffsetDateTime,
    ) -> Vec<u8> {
        let fields = Fields {
            device: device.to_string(),
            sequence: progress.sequence,
            entries: progress.entries,
            head: hex::encode(head),
            time: crate::clock::rfc3339(now),
            interval_entries: schedule.entries,
            interval_seconds: schedule.every.map_or(0, |d| d.as_secs()),
        };
        let signature = self.key_pair.sign(&fields.message());
        // Written by hand: `type` must come first (right after the framing's `prev_hash`),
        // which is how the verifier tells a checkpoint from an entry without parsing it.
        // Free-form strings go through serde_json's escaping; the rest are numbers, hex
        // and base64.
        format!(
            "{{\"type\":\"checkpoint\",\"time\":{},\"checkpoint\":{{\"device\":{},\"sequence\":{},\"entries\":{},\"head\":\"{}\",\"interval_entries\":{},\"interval_seconds\":{},\"key_id\":\"{}\",\"signature\":\"{}\"}}}}",
            json_string(&fields.time),
            json_string(&fields.device),
            fields.sequence,
            fields.entries,
            fields.head,
            fields.interval_entries,
            fields.interval_seconds,
            key_id(&self.public_key()),
            base64::engine::general_purpose::STANDARD.encode(signature.as_ref()),
        )
        .into_bytes()
    }
}

/// The last checkpoint written, for `sys/audit-checkpoint/<path>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Written {
    pub(crate) head: String,
    pub(crate) time: String,
}

/// A device's checkpoint state, owned by its writer (behind the writer's lock).
#[derive(Debug)]
pub(crate) struct Checkpoints {
    pub(crate) signer: Signer,
    pub(crate) schedule: Schedule,
    pub(crate) progress: Progress,
    pub(crate) last: Option<Written>,
    /// When the oldest entry not yet covered by a checkpoint was written.
    uncovered_since: Option<tokio::time::Instant>,
}

/// What a failed write rolls back.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    progress: Progress,
    last: Option<Written>,
    uncovered_since: Option<tokio::time::Instant>,
}

impl Checkpoints {
    pub(crate) fn new(
        signer: Signer,
        schedule: Schedule,
        progress: Progress,
        last: Option<Written>,
    ) -> Checkpoints {
        // Entries restored after the last checkpoint count as uncovered from now on.
        let uncovered_since =
            (progress.entries > progress.entries_at_checkpoint).then(tokio::time::Instant::now);
        Checkpoints {
            signer,
            schedule,
            progress,
            last,
            uncovered_since,
        }
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            progress: self.progress,
            last: self.last.clone(),
            uncovered_since: self.uncovered_since,
        }
    }

    pub(crate) fn restore(&mut self, snapshot: Snapshot) {
        self.progress = snapshot.progress;
        self.last = snapshot.last;
        self.uncovered_since = snapshot.uncovered_since;
    }

    /// Counts one entry; true when a checkpoint is due by count.
    pub(crate) fn count_entry(&mut self) -> bool {
        self.progress.entries += 1;
        self.uncovered_since
            .get_or_insert_with(tokio::time::Instant::now);
        self.schedule.entries > 0
            && self.progress.entries - self.progress.entries_at_checkpoint >= self.schedule.entries
    }

    /// Whether entries are waiting for a checkpoint.
    pub(crate) fn is_pending(&self) -> bool {
        self.progress.entries > self.progress.entries_at_checkpoint
    }

    /// Whether a checkpoint is due by time at `now`.
    pub(crate) fn is_due_by_time(&self, now: tokio::time::Instant) -> bool {
        match (self.schedule.every, self.uncovered_since) {
            (Some(every), Some(since)) => self.is_pending() && now.duration_since(since) >= every,
            _ => false,
        }
    }

    /// The body of the next checkpoint line for the chain head `head`; the counters move on
    /// (a failed write restores them from a [`Snapshot`]). The time is the system's: the
    /// device task has no core clock, and the time is informational (the verifier checks
    /// it only against the entries' own times).
    pub(crate) fn next_line(&mut self, device: &str, head: &[u8; 32]) -> Vec<u8> {
        self.progress.sequence += 1;
        self.progress.entries_at_checkpoint = self.progress.entries;
        self.uncovered_since = None;
        let now = OffsetDateTime::now_utc();
        self.last = Some(Written {
            head: hex::encode(head),
            time: crate::clock::rfc3339(now),
        });
        self.signer
            .line(device, &self.progress, head, self.schedule, now)
    }
}

fn json_string(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "\"\"".into())
}

/// A short name of a public key: the first 8 bytes of its SHA-256, in hex.
pub fn key_id(public_key: &[u8; 32]) -> String {
    hex::encode(&Sha256::digest(public_key)[..8])
}

/// Decodes a public key given as standard or URL-safe base64, or as 64 hex digits.
pub fn parse_public_key(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    let mut out = [0u8; 32];
    if text.len() == 64 && hex::decode_to_slice(text, &mut out).is_ok() {
        return Some(out);
    }
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
    ];
    let bytes = engines.iter().find_map(|e| e.decode(text).ok())?;
    (bytes.len() == 32).then(|| {
        out.copy_from_slice(&bytes);
        out
    })
}

/// The signed fields of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Fields {
    pub(crate) device: String,
    pub(crate) sequence: u64,
    pub(crate) entries: u64,
    pub(crate) head: String,
    #[serde(skip)]
    pub(crate) time: String,
    pub(crate) interval_entries: u64,
    pub(crate) interval_seconds: u64,
}

impl Fields {
    fn message(&self) -> Vec<u8> {
        format!(
            "{MESSAGE_VERSION}\n{}\n{}\n{}\n{}\n{}\n{}\n{}\n",
            self.device,
            self.sequence,
            self.entries,
            self.head,
            self.time,
            self.interval_entries,
            self.interval_seconds
        )
        .into_bytes()
    }
}

/// A checkpoint line as read back.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub(crate) fields: Fields,
    pub(crate) key_id: String,
    signature: Vec<u8>,
}

#[derive(Deserialize)]
struct Line {
    time: String,
    checkpoint: Body,
}

#[derive(Deserialize)]
struct Body {
    #[serde(flatten)]
    fields: Fields,
    #[serde(default)]
    key_id: String,
    signature: String,
}

impl Parsed {
    /// Reads the JSON of a checkpoint line (`content` without any prefix).
    pub(crate) fn from_json(content: &[u8]) -> Option<Parsed> {
        let line: Line = serde_json::from_slice(content).ok()?;
        let signature = base64::engine::general_purpose::STANDARD
            .decode(&line.checkpoint.signature)
            .ok()?;
        let mut fields = line.checkpoint.fields;
        fields.time = line.time;
        Some(Parsed {
            fields,
            key_id: line.checkpoint.key_id,
            signature,
        })
    }

    pub(crate) fn signature_holds(&self, public_key: &[u8; 32]) -> bool {
        UnparsedPublicKey::new(&ED25519, public_key)
            .verify(&self.fields.message(), &self.signature)
            .is_ok()
    }

    /// When the checkpoint was written, if its time parses.
    pub(crate) fn time(&self) -> Option<OffsetDateTime> {
        parse_time(&self.fields.time)
    }
}

pub(crate) fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::from_pkcs8(&Signer::generate().expect("generate")).expect("load")
    }

    #[test]
    fn a_line_reads_back_and_its_signature_holds_only_for_its_key() {
        let signer = signer();
        let progress = Progress {
            sequence: 3,
            entries: 3000,
            entries_at_checkpoint: 2000,
        };
        let schedule = Schedule {
            entries: 1000,
            every: Some(Duration::from_secs(60)),
        };
        let line = signer.line(
            "file/",
            &progress,
            &[7u8; 32],
            schedule,
            OffsetDateTime::UNIX_EPOCH,
        );
        let parsed = Parsed::from_json(&line).expect("parses");
        assert_eq!(parsed.fields.sequence, 3);
        assert_eq!(parsed.fields.entries, 3000);
        assert_eq!(parsed.fields.head, hex::encode([7u8; 32]));
        assert_eq!(parsed.fields.interval_seconds, 60);
        assert_eq!(parsed.key_id, key_id(&signer.public_key()));
        assert!(parsed.signature_holds(&signer.public_key()));
        assert!(!parsed.signature_holds(&self::signer().public_key()));

        let edited = String::from_utf8(line)
            .expect("utf-8")
            .replace("\"entries\":3000", "\"entries\":2999");
        let parsed = Parsed::from_json(edited.as_bytes()).expect("parses");
        assert!(!parsed.signature_holds(&signer.public_key()));
    }

    #[test]
    fn public_keys_parse_from_base64_or_hex() {
        let key = signer().public_key();
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        assert_eq!(parse_public_key(&b64), Some(key));
        assert_eq!(parse_public_key(&hex::encode(key)), Some(key));
        assert_eq!(parse_public_key("not a key"), None);
        assert_eq!(parse_public_key("AAAA"), None);
    }
}
