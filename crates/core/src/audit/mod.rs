//! Audit: devices (`sys/audit`), the entry format with per-device HMAC, the hash chain and
//! its verifier, and the broker that makes the request path fail closed.
//!
//! The broker holds the enabled devices of an unsealed core. `log` hands an entry to every
//! device and returns as soon as one of them has it at the operating system; if none can
//! within the devices' write timeouts, it fails and the core refuses the request (request
//! entry) or reports the failure (response entry). With no device enabled, nothing is
//! audited and requests go through, as in Vault.
//!
//! Device records (type, options, salt) live in the barrier at `core/audit`; each device's
//! last chain hash is kept in memory by its task and saved at `core/audit-chain/<path>` on
//! rotation and when the device is disabled, so a new file continues the chain.
//!
//! A file device can also sign checkpoints (`checkpoint_entries`, `checkpoint_interval`):
//! its Ed25519 key is made when the device is enabled and kept in the device record; the
//! public key and the last checkpoint are read at `sys/audit-checkpoint/<path>`.
//!
//! Devices are created through the API, as in Vault, with the guards of CVE-2025-6000: no
//! executable modes, no system or executable directories, no existing non-regular or
//! executable target, no `prefix` with line breaks or a `#!` start.

mod chain;
mod checkpoint;
mod device;
mod format;
mod hash;
mod hooks;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::sync::oneshot::error::TryRecvError;

use crate::error::Error;
use crate::view::StorageView;

pub use chain::{
    genesis_hash, line_hash, verify, BreakReason, ChainBreak, CheckpointIssue, CheckpointProblem,
    CheckpointReport, CheckpointSeen, Verifier, VerifyReport, GENESIS_MARKER,
};
pub use checkpoint::{key_id, parse_public_key, Progress};
pub use device::{AuditSink, AuditSinkFactory, CheckpointTail, FileSink, FileSinkFactory};
pub use hash::HMAC_PREFIX;

pub(crate) use device::FailureHook;
pub(crate) use format::{request_entry, response_entry, MountFacts, RawEntry, Trail};
pub(crate) use hooks::QuotaPhase;

use checkpoint::{Checkpoints, Schedule, Signer};
use device::DeviceWriter;
use format::HashOptions;
use hash::Hasher;

/// The message of a request refused because no device recorded it (Vault's wording).
pub const NO_AUDIT_MESSAGE: &str = "no audit backend succeeded in logging the request";

const TABLE_PATH: &str = "core/audit";
const CHAIN_PREFIX: &str = "core/audit-chain/";
const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// A device as stored in the barrier. The salt never leaves the core.
#[derive(Clone, Serialize, Deserialize)]
struct DeviceRecord {
    path: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    local: bool,
    #[serde(default)]
    options: BTreeMap<String, String>,
    salt: String,
    /// The checkpoint signing key (PKCS#8, base64), for devices that write checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checkpoint_key: Option<String>,
}

/// A device's end of the chain, saved on rotation and when the device is disabled.
#[derive(Serialize, Deserialize)]
struct ChainState {
    last_hash: String,
    #[serde(default)]
    sequence: u64,
    #[serde(default)]
    entries: u64,
    #[serde(default)]
    entries_at_checkpoint: u64,
}

/// The sink factories by device type: `file` built in, `socket` registered by the server.
pub(crate) struct Factories {
    by_kind: RwLock<HashMap<String, Arc<dyn AuditSinkFactory>>>,
}

impl Default for Factories {
    fn default() -> Self {
        let mut by_kind: HashMap<String, Arc<dyn AuditSinkFactory>> = HashMap::new();
        by_kind.insert("file".into(), Arc::new(FileSinkFactory));
        Factories {
            by_kind: RwLock::new(by_kind),
        }
    }
}

impl Factories {
    pub(crate) fn register(&self, kind: &str, factory: Arc<dyn AuditSinkFactory>) {
        if let Ok(mut map) = self.by_kind.write() {
            map.insert(kind.to_string(), factory);
        }
    }

    fn get(&self, kind: &str) -> Option<Arc<dyn AuditSinkFactory>> {
        self.by_kind.read().ok().and_then(|m| m.get(kind).cloned())
    }
}

struct Device {
    record: DeviceRecord,
    hasher: Hasher,
    options: HashOptions,
    writer: Arc<DeviceWriter>,
}

/// The enabled devices of an unsealed core.
pub(crate) struct Broker {
    devices: RwLock<Arc<Vec<Arc<Device>>>>,
    changes: tokio::sync::Mutex<()>,
    view: StorageView,
    factories: Arc<Factories>,
    on_failure: FailureHook,
}

impl Broker {
    /// The devices of the stored table, each opened and started. A device whose sink cannot
    /// be opened stays enabled and fails every entry (and says so), so a broken device is
    /// visible rather than silently dropped.
    pub(crate) async fn restore(
        view: StorageView,
        factories: Arc<Factories>,
        on_failure: FailureHook,
    ) -> Result<Broker, Error> {
        let records: Vec<DeviceRecord> = view.get_json(TABLE_PATH).await?.unwrap_or_default();
        let broker = Broker {
            devices: RwLock::new(Arc::new(Vec::new())),
            changes: tokio::sync::Mutex::new(()),
            view,
            factories,
            on_failure,
        };
        let mut devices = Vec::new();
        for record in records {
            let sink: Box<dyn AuditSink> = match broker.open_sink(&record).await {
                Ok(sink) => sink,
                Err(message) => {
                    tracing::error!(device = %record.path, %message, "audit device cannot be opened; it will fail every entry");
                    (broker.on_failure)(&record.path, "cannot be opened");
                    Box::new(BrokenSink(message))
                }
            };
            let device = broker.start(record, sink).await?;
            devices.push(Arc::new(device));
        }
        broker.install(devices);
        Ok(broker)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.snapshot().is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.snapshot().len()
    }

    /// Hands the entry to every device; `Ok` once at least one has written it.
    pub(crate) async fn log(&self, entry: &RawEntry<'_>) -> Result<(), Error> {
        let devices = self.snapshot();
        if devices.is_empty() {
            return Ok(());
        }
        // Every device gets the line queued before any write starts, so a device this
        // request stops waiting for still writes it (its background task is woken below).
        let mut receivers = Vec::with_capacity(devices.len());
        for device in devices.iter() {
            receivers.push(device.writer.enqueue(entry.render(
                &device.hasher,
                device.options,
                device.writer.buffer(),
            )));
        }
        // Before writing, let the other requests that are ready to run queue their entries
        // too: the first of them to write then carries all of them in one write(2). On a
        // busy server this turns a write per entry into a write per scheduler pass, which
        // is most of what an entry costs; an idle one pays one pass of the scheduler.
        // A request whose line another request already wrote does not write: it would only
        // take the lines queued since, which their own requests are about to batch.
        tokio::task::yield_now().await;
        if let ([device], [receiver]) = (devices.as_slice(), receivers.as_mut_slice()) {
            // One device (the usual case): no set of futures to poll.
            let mut outcome = receiver.try_recv();
            if outcome == Err(TryRecvError::Empty) {
                device.writer.write_if_free().await;
                outcome = receiver.try_recv();
            }
            let recorded = match outcome {
                Ok(written) => written,
                Err(TryRecvError::Closed) => false,
                Err(TryRecvError::Empty) => {
                    // Another writer holds the device; should it let go without seeing this
                    // line, the background task writes it.
                    device.writer.kick();
                    let wait = device.writer.write_timeout() + Duration::from_millis(250);
                    tokio::time::timeout(wait, receiver).await == Ok(Ok(true))
                }
            };
            if !recorded {
                device.writer.kick();
                return Err(Error::AuditFailed);
            }
            return Ok(());
        }
        let mut timeout = Duration::ZERO;
        let mut waits = FuturesUnordered::new();
        let mut healthy_outstanding = 0usize;
        for (device, receiver) in devices.iter().zip(receivers) {
            timeout = timeout.max(device.writer.write_timeout());
            let healthy = device.writer.is_healthy();
            healthy_outstanding += usize::from(healthy);
            let writer = &device.writer;
            waits.push(async move {
                let mut receiver = receiver;
                if let Ok(written) = receiver.try_recv() {
                    return (healthy, written);
                }
                writer.write_if_free().await;
                (healthy, receiver.await == Ok(true))
            });
        }
        // Wait for every healthy device (so its file is current when the client gets the
        // answer) and for at least one success; a failing device is not waited on once
        // another has the entry. A little over the longest write timeout, so that a
        // device's own timeout decides.
        let wait = async {
            let mut recorded = false;
            while let Some((healthy, written)) = waits.next().await {
                recorded |= written;
                healthy_outstanding -= usize::from(healthy);
                if recorded && healthy_outstanding == 0 {
                    break;
                }
            }
            recorded
        };
        // Poll once before arming a timer: a file device usually answers at once.
        let mut wait = std::pin::pin!(wait);
        let first = std::future::poll_fn(|cx| match wait.as_mut().poll(cx) {
            std::task::Poll::Ready(recorded) => std::task::Poll::Ready(Some(recorded)),
            std::task::Poll::Pending => std::task::Poll::Ready(None),
        })
        .await;
        let recorded = match first {
            Some(recorded) => recorded,
            None => {
                tokio::time::timeout(timeout + Duration::from_millis(250), wait).await == Ok(true)
            }
        };
        for device in devices.iter() {
            device.writer.kick();
        }
        if recorded {
            Ok(())
        } else {
            Err(Error::AuditFailed)
        }
    }

    /// Reopens every device (SIGHUP) and saves each chain's last hash, so the new file's
    /// first line chains to the old file's last. Returns the devices that failed.
    pub(crate) async fn reopen(&self) -> Vec<(String, String)> {
        let mut failed = Vec::new();
        for device in self.snapshot().iter() {
            match device.writer.reopen().await {
                Ok((last, progress)) => {
                    let saved = self
                        .save_chain(&device.record.path, &last, progress.unwrap_or_default())
                        .await;
                    if let Err(e) = saved {
                        failed.push((device.record.path.clone(), e.to_string()));
                    }
                }
                Err(message) => failed.push((device.record.path.clone(), message)),
            }
        }
        failed
    }

    fn snapshot(&self) -> Arc<Vec<Arc<Device>>> {
        self.devices.read().map(|d| d.clone()).unwrap_or_default()
    }

    fn install(&self, devices: Vec<Arc<Device>>) {
        match self.devices.write() {
            Ok(mut guard) => *guard = Arc::new(devices),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(devices),
        }
    }

    async fn open_sink(&self, record: &DeviceRecord) -> Result<Box<dyn AuditSink>, String> {
        let factory = self
            .factories
            .get(&record.kind)
            .ok_or_else(|| format!("unknown audit device type {:?}", record.kind))?;
        factory.open(&record.options).await
    }

    async fn start(
        &self,
        record: DeviceRecord,
        mut sink: Box<dyn AuditSink>,
    ) -> Result<Device, Error> {
        let options = hash_options(&record.options)?;
        let write_timeout = match record.options.get("write_timeout") {
            Some(text) => {
                parse_timeout(text).ok_or_else(|| Error::invalid("invalid write_timeout"))?
            }
            None => DEFAULT_WRITE_TIMEOUT,
        };
        let stored: Option<ChainState> = self
            .view
            .get_json(&format!("{CHAIN_PREFIX}{}", record.path))
            .await?;
        let last_hash = sink
            .last_line_hash()
            .or_else(|| stored.as_ref().and_then(|s| decode_hash(&s.last_hash)))
            .unwrap_or_else(genesis_hash);
        let checkpoints = checkpoints(&record, sink.as_mut(), stored.as_ref())?;
        let prefix = record
            .options
            .get("prefix")
            .map(|p| p.as_bytes().to_vec())
            .unwrap_or_default();
        let writer = DeviceWriter::start(
            record.path.clone(),
            sink,
            prefix,
            last_hash,
            checkpoints,
            write_timeout,
            self.on_failure.clone(),
        );
        // Entries left unsigned when the server stopped get their checkpoint now, so that the
        // time between a stop and a restart never looks like a missing checkpoint.
        writer.checkpoint_pending().await;
        Ok(Device {
            hasher: Hasher::new(&record.salt),
            record,
            options,
            writer,
        })
    }

    async fn save_chain(
        &self,
        path: &str,
        last: &[u8; 32],
        progress: Progress,
    ) -> Result<(), Error> {
        self.view
            .put_json(
                &format!("{CHAIN_PREFIX}{path}"),
                &ChainState {
                    last_hash: hex::encode(last),
                    sequence: progress.sequence,
                    entries: progress.entries,
                    entries_at_checkpoint: progress.entries_at_checkpoint,
                },
            )
            .await
    }

    async fn persist(&self, devices: &[Arc<Device>]) -> Result<(), Error> {
        let records: Vec<&DeviceRecord> = devices.iter().map(|d| &d.record).collect();
        self.view.put_json(TABLE_PATH, &records).await
    }

    /// `PUT sys/audit/<path>`.
    async fn enable(&self, path: &str, data: &Map<String, Value>) -> Result<(), Error> {
        let _guard = self.changes.lock().await;
        let kind = crate::engine::fields::string(data, "type")?.unwrap_or_default();
        if kind.is_empty() {
            return Err(Error::invalid("type is required"));
        }
        if self.snapshot().iter().any(|d| d.record.path == path) {
            return Err(Error::invalid(format!("path already in use: {path}")));
        }
        let options = string_options(data)?;
        validate_options(&options)?;
        if let Some(text) = options.get("write_timeout") {
            parse_timeout(text).ok_or_else(|| Error::invalid("invalid write_timeout"))?;
        }
        let checkpoint_key = if schedule(&options)?.is_enabled() {
            let document =
                Signer::generate().map_err(|_| Error::internal("cannot make a checkpoint key"))?;
            // The private key's copies in memory are wiped once encoded or loaded.
            let document = zeroize::Zeroizing::new(document);
            Some(base64::engine::general_purpose::STANDARD.encode(&*document))
        } else {
            None
        };
        let record = DeviceRecord {
            path: path.to_string(),
            kind: kind.clone(),
            description: crate::engine::fields::string(data, "description")?.unwrap_or_default(),
            local: crate::engine::fields::boolean(data, "local")?.unwrap_or(false),
            options,
            salt: uuid::Uuid::new_v4().to_string(),
            checkpoint_key,
        };
        if self.factories.get(&kind).is_none() {
            return Err(Error::invalid(format!("unknown backend type: {kind:?}")));
        }
        let sink = self
            .open_sink(&record)
            .await
            .map_err(|m| Error::invalid(format!("sys/audit: {m}")))?;
        // A re-enabled path starts a new chain (and a new salt).
        self.view.delete(&format!("{CHAIN_PREFIX}{path}")).await?;
        let device = Arc::new(self.start(record, sink).await?);
        let mut devices: Vec<Arc<Device>> = self.snapshot().iter().cloned().collect();
        devices.push(device);
        self.persist(&devices).await?;
        self.install(devices);
        tracing::info!(device = %path, kind = %kind, "audit device enabled");
        Ok(())
    }

    /// `DELETE sys/audit/<path>`: the device's task ends once its queue is written.
    async fn disable(&self, path: &str) -> Result<(), Error> {
        let _guard = self.changes.lock().await;
        let devices: Vec<Arc<Device>> = self
            .snapshot()
            .iter()
            .filter(|d| d.record.path != path)
            .cloned()
            .collect();
        if devices.len() == self.snapshot().len() {
            return Ok(());
        }
        self.persist(&devices).await?;
        self.install(devices);
        self.view.delete(&format!("{CHAIN_PREFIX}{path}")).await?;
        tracing::info!(device = %path, "audit device disabled");
        Ok(())
    }

    fn listing(&self) -> Map<String, Value> {
        let mut out = Map::new();
        for device in self.snapshot().iter() {
            let r = &device.record;
            out.insert(
                r.path.clone(),
                json!({ "type": r.kind, "description": r.description, "options": r.options, "local": r.local, "path": r.path }),
            );
        }
        out
    }

    /// `GET sys/audit-checkpoint/<path>`: the public key and the last checkpoint.
    async fn checkpoint_status(&self, path: &str) -> Result<Map<String, Value>, Error> {
        let devices = self.snapshot();
        let device = devices
            .iter()
            .find(|d| d.record.path == path)
            .ok_or_else(|| Error::invalid(format!("unknown audit backend {path}")))?;
        let status = device.writer.checkpoint_status().await.ok_or_else(|| {
            Error::invalid(format!("audit device {path} does not write checkpoints"))
        })?;
        let public_key = base64::engine::general_purpose::STANDARD.encode(status.public_key);
        let last = status.last.map(|written| {
            json!({
                "sequence": status.progress.sequence,
                "entries": status.progress.entries_at_checkpoint,
                "head": written.head,
                "time": written.time,
            })
        });
        Ok(crate::core::Core::data_map(json!({
            "algorithm": "ed25519",
            "public_key": public_key,
            "key_id": key_id(&status.public_key),
            "checkpoint_entries": status.schedule.entries,
            "checkpoint_interval_seconds": status.schedule.every.map_or(0, |d| d.as_secs()),
            "entries": status.progress.entries,
            "last_checkpoint": last,
        })))
    }

    fn hash(&self, path: &str, input: &str) -> Result<String, Error> {
        let devices = self.snapshot();
        let device = devices
            .iter()
            .find(|d| d.record.path == path)
            .ok_or_else(|| Error::invalid(format!("unknown audit backend {path}")))?;
        Ok(device.hasher.hash(input))
    }
}

impl crate::core::Core {
    /// `sys/audit`, `sys/audit/<path>` and `sys/audit-hash/<path>`; `path` is relative to `sys/`.
    pub(crate) async fn handle_audit(
        &self,
        state: &crate::core::State,
        path: &str,
        operation: crate::engine::Operation,
        data: &Map<String, Value>,
    ) -> Result<crate::request::Response, Error> {
        use crate::engine::Operation;
        let broker = &state.audit;
        if let Some(rest) = path.strip_prefix("audit-checkpoint/") {
            if operation != Operation::Read {
                return Err(Error::UnsupportedOperation(format!("sys/{path}")));
            }
            let data = broker.checkpoint_status(&device_path(rest)?).await?;
            return Ok(crate::request::Response::with_data(data));
        }
        if let Some(rest) = path.strip_prefix("audit-hash/") {
            if !operation.is_write() {
                return Err(Error::UnsupportedOperation(format!("sys/{path}")));
            }
            let device = device_path(rest)?;
            let input = crate::engine::fields::string(data, "input")?.unwrap_or_default();
            let hash = broker.hash(&device, &input)?;
            return Ok(crate::request::Response::with_data(
                crate::core::Core::data_map(json!({ "hash": hash })),
            ));
        }
        let rest = path
            .strip_prefix("audit")
            .unwrap_or_default()
            .trim_start_matches('/');
        if rest.is_empty() {
            return match operation {
                Operation::Read | Operation::List => {
                    Ok(crate::request::Response::with_data(broker.listing()))
                }
                _ => Err(Error::UnsupportedOperation("sys/audit".into())),
            };
        }
        let device = device_path(rest)?;
        match operation {
            Operation::Create | Operation::Update => {
                broker.enable(&device, data).await?;
                Ok(crate::request::Response::default())
            }
            Operation::Delete => {
                broker.disable(&device).await?;
                Ok(crate::request::Response::default())
            }
            Operation::Read => {
                let listing = broker.listing();
                let entry = listing.get(&device).cloned().ok_or_else(Error::not_found)?;
                Ok(crate::request::Response::with_data(
                    crate::core::Core::data_map(entry),
                ))
            }
            _ => Err(Error::UnsupportedOperation(format!("sys/{path}"))),
        }
    }

    /// Reopens every audit device: the server calls this on SIGHUP (log rotation). The
    /// chain continues into the new files. Returns the devices that could not be reopened.
    pub async fn reopen_audit_devices(&self) -> Result<Vec<(String, String)>, Error> {
        let state = self.state()?;
        let failed = state.audit.reopen().await;
        for (device, message) in &failed {
            tracing::error!(%device, %message, "audit device could not be reopened");
        }
        Ok(failed)
    }

    /// Adds an audit device type (the server registers `socket`).
    pub fn register_audit_factory(&self, kind: &str, factory: Arc<dyn AuditSinkFactory>) {
        self.audit_factories.register(kind, factory);
    }
}

/// A device path as Vault stores it: no leading slash, one trailing slash.
fn device_path(raw: &str) -> Result<String, Error> {
    let trimmed = raw.trim_matches('/');
    if trimmed.is_empty()
        || trimmed
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        || !trimmed
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
    {
        return Err(Error::invalid(format!("invalid audit device path {raw:?}")));
    }
    Ok(format!("{trimmed}/"))
}

/// Options as strings (clients send booleans and numbers too).
fn string_options(data: &Map<String, Value>) -> Result<BTreeMap<String, String>, Error> {
    match data.get("options") {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => Ok(map
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), value)
            })
            .collect()),
        Some(_) => Err(Error::invalid("options must be a map")),
    }
}

fn validate_options(options: &BTreeMap<String, String>) -> Result<(), Error> {
    if let Some(format) = options.get("format") {
        if !format.is_empty() && format != "json" {
            return Err(Error::invalid(format!(
                "unsupported audit format {format:?}: only json"
            )));
        }
    }
    if let Some(prefix) = options.get("prefix") {
        if prefix.chars().any(char::is_control) {
            return Err(Error::invalid(
                "prefix cannot contain line breaks or control characters",
            ));
        }
        if prefix.starts_with("#!") || prefix.contains("prev_hash") || prefix.len() > 256 {
            return Err(Error::invalid("prefix is not allowed"));
        }
    }
    hash_options(options)?;
    schedule(options)?;
    Ok(())
}

/// `checkpoint_entries` (a count) and `checkpoint_interval` (`"30s"`, `"5m"` or seconds).
fn schedule(options: &BTreeMap<String, String>) -> Result<Schedule, Error> {
    let entries = match options.get("checkpoint_entries").map(|v| v.trim()) {
        None | Some("") => 0,
        Some(text) => text
            .parse::<u64>()
            .map_err(|_| Error::invalid("checkpoint_entries must be a whole number"))?,
    };
    let every = match options.get("checkpoint_interval").map(|v| v.trim()) {
        None | Some("") => None,
        Some(text) => Some(
            crate::duration::parse_seconds(text)
                .filter(|s| *s > 0)
                .map(Duration::from_secs)
                .ok_or_else(|| {
                    Error::invalid("checkpoint_interval must be a duration such as 30s or 5m")
                })?,
        ),
    };
    Ok(Schedule { entries, every })
}

/// A device's checkpoint state at start: the key from its record, the counters from the
/// destination's last checkpoint (and the entries after it), else from the saved chain state.
fn checkpoints(
    record: &DeviceRecord,
    sink: &mut dyn AuditSink,
    stored: Option<&ChainState>,
) -> Result<Option<Checkpoints>, Error> {
    let schedule = schedule(&record.options)?;
    if !schedule.is_enabled() {
        return Ok(None);
    }
    let signer = record
        .checkpoint_key
        .as_deref()
        .and_then(|key| base64::engine::general_purpose::STANDARD.decode(key).ok())
        .map(zeroize::Zeroizing::new)
        .and_then(|document| Signer::from_pkcs8(&document).ok())
        .ok_or_else(|| {
            Error::internal(format!(
                "audit device {} has no usable checkpoint key",
                record.path
            ))
        })?;
    let saved = stored.map_or_else(Progress::default, |s| Progress {
        sequence: s.sequence,
        entries: s.entries,
        entries_at_checkpoint: s.entries_at_checkpoint,
    });
    let tail = sink.checkpoint_tail();
    let last_line = tail
        .as_ref()
        .and_then(|t| t.last.as_deref())
        .and_then(checkpoint::Parsed::from_json);
    let (progress, last) = match (tail, last_line) {
        (Some(tail), Some(line)) => (
            Progress {
                sequence: line.fields.sequence,
                entries: line.fields.entries + tail.entries_after,
                entries_at_checkpoint: line.fields.entries,
            },
            Some(checkpoint::Written {
                head: line.fields.head.clone(),
                time: line.fields.time.clone(),
            }),
        ),
        (Some(tail), None) => (
            Progress {
                entries: saved.entries + tail.entries_after,
                ..saved
            },
            None,
        ),
        (None, _) => {
            tracing::warn!(device = %record.path, "no checkpoint found near the end of the audit destination; checkpoint counts continue from the saved state");
            (saved, None)
        }
    };
    Ok(Some(Checkpoints::new(signer, schedule, progress, last)))
}

fn hash_options(options: &BTreeMap<String, String>) -> Result<HashOptions, Error> {
    Ok(HashOptions {
        log_raw: flag(options, "log_raw", false)?,
        hmac_accessor: flag(options, "hmac_accessor", true)?,
        elide_list_responses: flag(options, "elide_list_responses", false)?,
    })
}

fn flag(options: &BTreeMap<String, String>, key: &str, default: bool) -> Result<bool, Error> {
    match options.get(key).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if v.is_empty() => Ok(default),
        Some(v) if matches!(v.as_str(), "true" | "1" | "t") => Ok(true),
        Some(v) if matches!(v.as_str(), "false" | "0" | "f") => Ok(false),
        Some(_) => Err(Error::invalid(format!("option {key} must be a boolean"))),
    }
}

/// `write_timeout`: `"500ms"`, `"2s"` or whole seconds.
fn parse_timeout(text: &str) -> Option<Duration> {
    match text.trim().strip_suffix("ms") {
        Some(millis) => millis.trim().parse().ok().map(Duration::from_millis),
        None => crate::duration::parse_seconds(text).map(Duration::from_secs),
    }
    .filter(|d| !d.is_zero())
}

fn decode_hash(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// A device whose destination could not be opened at unseal: every write fails.
struct BrokenSink(String);

#[async_trait::async_trait]
impl AuditSink for BrokenSink {
    async fn write(&mut self, _batch: &[u8]) -> std::io::Result<()> {
        Err(std::io::Error::other(self.0.clone()))
    }
}
