//! What KV v2 keeps in storage, and how it is shown to clients.
//!
//! Three kinds of entries live in the mount's view: `config` (the mount-wide settings),
//! `metadata/<key>` (one [`KeyMetadata`] per secret, at its plain path so that LIST is a
//! storage list), and `versions/<sha256 of key>/<n>` (one [`StoredVersion`] per version).
//! Versions sit under a hash of the key, as Vault salts them, so that the versions of
//! `a` and of `a/1` can never share a prefix and a key's versions can be scanned alone.
//! Reading the latest version is therefore one metadata read plus one version read.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Versions kept per key when neither the key nor the mount sets `max_versions`.
pub(super) const DEFAULT_MAX_VERSIONS: u64 = 10;

pub(super) const CONFIG_KEY: &str = "config";
pub(super) const METADATA_PREFIX: &str = "metadata/";

pub(super) fn metadata_key(key: &str) -> String {
    format!("{METADATA_PREFIX}{key}")
}

/// The folder holding every version of `key`.
pub(super) fn versions_prefix(key: &str) -> String {
    format!("versions/{}/", hex::encode(Sha256::digest(key.as_bytes())))
}

pub(super) fn version_key(key: &str, version: u64) -> String {
    format!("{}{version}", versions_prefix(key))
}

/// An instant, stored as RFC 3339 text and shown as Go's RFC3339Nano in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Stamp(OffsetDateTime);

impl Stamp {
    pub(super) fn new(at: OffsetDateTime) -> Self {
        Stamp(at.to_offset(UtcOffset::UTC))
    }

    pub(super) fn at(self) -> OffsetDateTime {
        self.0
    }

    /// Go's `time.RFC3339Nano` of the UTC time, which Vault's clients parse: the
    /// fraction has its trailing zeros trimmed and is left out when zero.
    pub(super) fn rfc3339_nano(self) -> String {
        let t = self.0.to_offset(UtcOffset::UTC);
        let mut text = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        let nanos = t.nanosecond();
        if nanos > 0 {
            let fraction = format!("{nanos:09}");
            text.push('.');
            text.push_str(fraction.trim_end_matches('0'));
        }
        text.push('Z');
        text
    }
}

impl Serialize for Stamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let text = self.0.format(&Rfc3339).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Stamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        OffsetDateTime::parse(&text, &Rfc3339)
            .map(Stamp::new)
            .map_err(serde::de::Error::custom)
    }
}

/// The mount-wide settings (`<mount>/config`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Config {
    /// 0: the default of ten.
    pub(super) max_versions: u32,
    pub(super) cas_required: bool,
    /// Seconds; 0 is unset and a negative value disables the setting on every key.
    pub(super) delete_version_after: i64,
}

impl Config {
    pub(super) fn view(&self) -> Map<String, Value> {
        let mut view = Map::new();
        view.insert("cas_required".into(), Value::Bool(self.cas_required));
        view.insert(
            "delete_version_after".into(),
            Value::from(go_duration(self.delete_version_after)),
        );
        view.insert("max_versions".into(), Value::from(self.max_versions));
        view
    }
}

/// Everything known about one secret apart from its values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct KeyMetadata {
    pub(super) key: String,
    pub(super) versions: BTreeMap<u64, VersionMetadata>,
    /// 0 until the first version is written (metadata can be created on its own).
    pub(super) current_version: u64,
    /// The oldest version not yet pruned by `max_versions`; 0 until pruning starts.
    pub(super) oldest_version: u64,
    /// 0: the mount's setting.
    pub(super) max_versions: u32,
    pub(super) cas_required: bool,
    /// Seconds; 0: the mount's setting.
    pub(super) delete_version_after: u64,
    pub(super) created_time: Stamp,
    pub(super) updated_time: Stamp,
    #[serde(default)]
    pub(super) custom_metadata: BTreeMap<String, String>,
}

impl KeyMetadata {
    pub(super) fn new(key: &str, now: OffsetDateTime) -> Self {
        KeyMetadata {
            key: key.to_string(),
            versions: BTreeMap::new(),
            current_version: 0,
            oldest_version: 0,
            max_versions: 0,
            cas_required: false,
            delete_version_after: 0,
            created_time: Stamp::new(now),
            updated_time: Stamp::new(now),
            custom_metadata: BTreeMap::new(),
        }
    }

    /// Appends the next version and returns its number.
    pub(super) fn add_version(&mut self, created_time: Stamp, deletion_time: Option<Stamp>) -> u64 {
        self.current_version += 1;
        self.versions.insert(
            self.current_version,
            VersionMetadata {
                created_time,
                deletion_time,
                destroyed: false,
            },
        );
        self.updated_time = created_time;
        self.current_version
    }

    /// Drops the versions beyond the limit (the key's `max_versions`, else the mount's,
    /// else ten) from the metadata, advancing `oldest_version` as Vault does, and returns
    /// the version numbers whose data must be removed.
    pub(super) fn prune(&mut self, mount_max_versions: u32) -> Vec<u64> {
        let max_versions = match (self.max_versions, mount_max_versions) {
            (0, 0) => DEFAULT_MAX_VERSIONS,
            (0, mount) => u64::from(mount),
            (own, _) => u64::from(own),
        };
        if self.current_version.saturating_sub(self.oldest_version) < max_versions {
            return Vec::new();
        }
        let last_pruned = self.current_version - max_versions;
        let pruned: Vec<u64> = (self.oldest_version.max(1)..=last_pruned).collect();
        for version in &pruned {
            self.versions.remove(version);
        }
        self.oldest_version = last_pruned + 1;
        pruned
    }

    /// The response of `GET metadata/<key>`.
    pub(super) fn view(&self) -> Map<String, Value> {
        let versions: Map<String, Value> = self
            .versions
            .iter()
            .map(|(number, version)| (number.to_string(), Value::Object(version.summary())))
            .collect();
        let mut view = Map::new();
        view.insert("cas_required".into(), Value::Bool(self.cas_required));
        view.insert(
            "created_time".into(),
            Value::from(self.created_time.rfc3339_nano()),
        );
        view.insert("current_version".into(), Value::from(self.current_version));
        view.insert("custom_metadata".into(), self.custom_metadata_value());
        view.insert(
            "delete_version_after".into(),
            Value::from(go_duration(
                i64::try_from(self.delete_version_after).unwrap_or(i64::MAX),
            )),
        );
        view.insert("max_versions".into(), Value::from(self.max_versions));
        view.insert("oldest_version".into(), Value::from(self.oldest_version));
        view.insert(
            "updated_time".into(),
            Value::from(self.updated_time.rfc3339_nano()),
        );
        view.insert("versions".into(), Value::Object(versions));
        view
    }

    /// The metadata block of a data read or write: the version's own fields plus the key's
    /// custom metadata.
    pub(super) fn version_view(
        &self,
        number: u64,
        version: &VersionMetadata,
    ) -> Map<String, Value> {
        let mut view = version.summary();
        view.insert("custom_metadata".into(), self.custom_metadata_value());
        view.insert("version".into(), Value::from(number));
        view
    }

    /// `null` when there is none, as Vault shows an unset map.
    fn custom_metadata_value(&self) -> Value {
        if self.custom_metadata.is_empty() {
            return Value::Null;
        }
        Value::Object(
            self.custom_metadata
                .iter()
                .map(|(key, value)| (key.clone(), Value::from(value.as_str())))
                .collect(),
        )
    }
}

/// The state of one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct VersionMetadata {
    pub(super) created_time: Stamp,
    /// When the version is (or was, or will be) soft-deleted: set by a delete, and in
    /// advance by `delete_version_after`. The version reads as deleted from then on.
    pub(super) deletion_time: Option<Stamp>,
    pub(super) destroyed: bool,
}

impl VersionMetadata {
    /// Whether the version is soft-deleted at `now`. A deletion time equal to `now`
    /// counts as passed, so a delete takes effect within the same instant.
    pub(super) fn is_deleted(&self, now: OffsetDateTime) -> bool {
        self.deletion_time
            .is_some_and(|deletion| deletion.at() <= now)
    }

    /// Whether a read finds no data: soft-deleted or destroyed.
    pub(super) fn is_gone(&self, now: OffsetDateTime) -> bool {
        self.destroyed || self.is_deleted(now)
    }

    fn summary(&self) -> Map<String, Value> {
        let mut view = Map::new();
        view.insert(
            "created_time".into(),
            Value::from(self.created_time.rfc3339_nano()),
        );
        view.insert(
            "deletion_time".into(),
            Value::from(
                self.deletion_time
                    .map(Stamp::rfc3339_nano)
                    .unwrap_or_default(),
            ),
        );
        view.insert("destroyed".into(), Value::Bool(self.destroyed));
        view
    }
}

/// The values of one version.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct StoredVersion {
    pub(super) data: Map<String, Value>,
    pub(super) created_time: Stamp,
}

impl fmt::Debug for StoredVersion {
    // The values are the secret: only their keys are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredVersion")
            .field("data_keys", &self.data.keys().collect::<Vec<_>>())
            .field("created_time", &self.created_time)
            .finish()
    }
}

/// A signed number of seconds as Go prints a `time.Duration`: `0s`, `1h0m0s`, `-1s`.
pub(super) fn go_duration(seconds: i64) -> String {
    let text = ward_core::duration::format_seconds(seconds.unsigned_abs());
    if seconds < 0 {
        format!("-{text}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn timestamps_print_as_go_rfc3339_nano_in_utc() {
        for (at, want) in [
            (
                datetime!(2024-05-01 12:00:00.123456789 UTC),
                "2024-05-01T12:00:00.123456789Z",
            ),
            (
                datetime!(2024-05-01 12:00:00.1234 UTC),
                "2024-05-01T12:00:00.1234Z",
            ),
            (datetime!(2024-05-01 12:00:00 UTC), "2024-05-01T12:00:00Z"),
            (
                datetime!(2024-05-01 14:00:00.5 +02:00),
                "2024-05-01T12:00:00.5Z",
            ),
        ] {
            assert_eq!(Stamp::new(at).rfc3339_nano(), want);
        }
    }

    #[test]
    fn stamps_survive_storage() {
        let stamp = Stamp::new(datetime!(2024-05-01 12:00:00.000000001 UTC));
        let text = serde_json::to_string(&stamp).expect("encode");
        assert_eq!(serde_json::from_str::<Stamp>(&text).expect("decode"), stamp);
        assert!(serde_json::from_str::<Stamp>("\"yesterday\"").is_err());
    }

    #[test]
    fn durations_print_as_go_does() {
        for (seconds, want) in [
            (0, "0s"),
            (30, "30s"),
            (90, "1m30s"),
            (3600, "1h0m0s"),
            (-1, "-1s"),
        ] {
            assert_eq!(go_duration(seconds), want);
        }
    }

    #[test]
    fn version_keys_of_nested_paths_never_share_a_prefix() {
        assert_ne!(versions_prefix("a"), versions_prefix("a/1"));
        assert!(!version_key("a/1", 2).starts_with(&versions_prefix("a")));
        assert!(version_key("a", 12).starts_with(&versions_prefix("a")));
    }
}
