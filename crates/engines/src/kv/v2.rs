//! KV version 2: versioned secrets with metadata, check-and-set, soft delete and destroy.
//!
//! Routes follow Vault's API under the mount: `config`, `data/<key>`, `metadata/<key>`,
//! `delete/<key>`, `undelete/<key>`, `destroy/<key>` and `subkeys/<key>`. The storage
//! layout is in [`model`]. Every change that touches more than one storage entry (a new
//! version plus its metadata and pruned versions, a destroy, a metadata delete) is one
//! storage transaction, and writes to one key are serialised by a per-key lock so that
//! check-and-set means what it says. Time is `ctx.now`: `delete_version_after` stamps a
//! future deletion time on each new version, and a read compares it with `now`, so expiry
//! needs no background job. Leases and policies are the core's; KV v2 returns no lease.

mod model;

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio::sync::RwLock;
use ward_core::engine::{fields, MountInfo};
use ward_core::view::{encode_json, ViewOp};
use ward_core::{
    Engine, EngineContext, EngineRequest, EngineResponse, Error, Operation, StorageView,
};

use self::model::{Config, KeyMetadata, Stamp, StoredVersion, VersionMetadata};

/// Builds a KV v2 engine.
pub fn factory(_mount: &MountInfo) -> Result<Arc<dyn Engine>, Error> {
    Ok(Arc::new(KvV2Engine::new()))
}

/// The KV v2 engine of one mount. Its only state besides storage is the per-key locks.
#[derive(Debug)]
pub struct KvV2Engine {
    locks: KeyLocks,
}

impl Default for KvV2Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl KvV2Engine {
    pub fn new() -> Self {
        KvV2Engine {
            locks: KeyLocks::new(),
        }
    }
}

#[async_trait]
impl Engine for KvV2Engine {
    async fn exists(
        &self,
        ctx: &EngineContext,
        request: &EngineRequest,
    ) -> Result<Option<bool>, Error> {
        match route(&request.path) {
            Some(Route::Data(key) | Route::Metadata(key)) => {
                Ok(Some(load_metadata(&ctx.storage, key).await?.is_some()))
            }
            _ => Ok(None),
        }
    }

    async fn handle(
        &self,
        ctx: &EngineContext,
        request: EngineRequest,
    ) -> Result<EngineResponse, Error> {
        let Some(route) = route(&request.path) else {
            return Err(Error::UnsupportedPath(request.path));
        };
        let body = &request.data;
        match (route, request.op()) {
            (Route::Config, Operation::Read) => read_config(ctx).await,
            (Route::Config, Operation::Create | Operation::Update) => write_config(ctx, body).await,
            (Route::Data(key), Operation::Read) => self.read_data(ctx, key, body).await,
            (Route::Data(key), Operation::Create | Operation::Update) => {
                self.write_data(ctx, key, body).await
            }
            (Route::Data(key), Operation::Patch) => self.patch_data(ctx, key, body).await,
            (Route::Data(key), Operation::Delete) => self.delete_latest(ctx, key).await,
            (Route::Metadata(key), Operation::Read) => read_metadata(ctx, key).await,
            (Route::Metadata(key), Operation::Create | Operation::Update) => {
                self.write_metadata(ctx, key, body).await
            }
            (Route::Metadata(key), Operation::Patch) => self.patch_metadata(ctx, key, body).await,
            (Route::Metadata(key), Operation::Delete) => self.delete_metadata(ctx, key).await,
            (Route::Metadata(prefix), Operation::List) => list_metadata(ctx, prefix).await,
            (Route::Delete(key), Operation::Create | Operation::Update) => {
                self.change_versions(ctx, key, body, VersionChange::Delete)
                    .await
            }
            (Route::Undelete(key), Operation::Create | Operation::Update) => {
                self.change_versions(ctx, key, body, VersionChange::Undelete)
                    .await
            }
            (Route::Destroy(key), Operation::Create | Operation::Update) => {
                self.change_versions(ctx, key, body, VersionChange::Destroy)
                    .await
            }
            (Route::Subkeys(key), Operation::Read) => self.read_subkeys(ctx, key, body).await,
            // A LIST always names a folder; only `metadata/` has folders, so for Vault
            // every other listing is a path that no route serves.
            (_, Operation::List) => Err(Error::UnsupportedPath(request.path)),
            _ => Err(Error::UnsupportedOperation(request.path)),
        }
    }
}

/// The endpoint a path names, with the secret's key (or, for a listing, the folder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route<'a> {
    Config,
    Data(&'a str),
    Metadata(&'a str),
    Delete(&'a str),
    Undelete(&'a str),
    Destroy(&'a str),
    Subkeys(&'a str),
}

fn route(path: &str) -> Option<Route<'_>> {
    match path {
        "config" => return Some(Route::Config),
        "metadata" => return Some(Route::Metadata("")),
        _ => {}
    }
    let (section, key) = path.split_once('/')?;
    match section {
        // Vault's data pattern needs a key that does not end in a slash.
        "data" if is_secret_key(key) => Some(Route::Data(key)),
        "metadata" => Some(Route::Metadata(key)),
        "delete" => Some(Route::Delete(key)),
        "undelete" => Some(Route::Undelete(key)),
        "destroy" => Some(Route::Destroy(key)),
        "subkeys" => Some(Route::Subkeys(key)),
        _ => None,
    }
}

/// A key can hold a secret when it is not empty and not a folder.
fn is_secret_key(key: &str) -> bool {
    !key.is_empty() && !key.ends_with('/')
}

/// Writes need a key that can hold a secret, or metadata would appear as a folder.
fn require_key(key: &str) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::invalid("missing path"));
    }
    if key.ends_with('/') {
        return Err(Error::invalid(format!(
            "invalid path {key:?}: a secret path cannot end in \"/\""
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// config

async fn read_config(ctx: &EngineContext) -> Result<EngineResponse, Error> {
    Ok(EngineResponse::with_data(
        load_config(&ctx.storage).await?.view(),
    ))
}

async fn write_config(
    ctx: &EngineContext,
    body: &Map<String, Value>,
) -> Result<EngineResponse, Error> {
    let max_versions = max_versions_field(body)?;
    let cas_required = fields::boolean(body, "cas_required")?;
    let delete_version_after = signed_duration_field(body, "delete_version_after")?;
    if max_versions.is_none() && cas_required.is_none() && delete_version_after.is_none() {
        return Ok(EngineResponse::empty());
    }
    let mut config = load_config(&ctx.storage).await?;
    if let Some(max_versions) = max_versions {
        config.max_versions = max_versions;
    }
    if let Some(cas_required) = cas_required {
        config.cas_required = cas_required;
    }
    if let Some(seconds) = delete_version_after {
        // Vault keeps any negative value as -1s, "disabled on every key".
        config.delete_version_after = seconds.max(-1);
    }
    ctx.storage.put_json(model::CONFIG_KEY, &config).await?;
    Ok(EngineResponse::empty())
}

// ---------------------------------------------------------------------------------------
// data

impl KvV2Engine {
    async fn read_data(
        &self,
        ctx: &EngineContext,
        key: &str,
        query: &Map<String, Value>,
    ) -> Result<EngineResponse, Error> {
        let requested = fields::integer(query, "version")?;
        let _guard = self.locks.stripe(key).read().await;
        let (meta, number, version, stored) =
            load_live_version(ctx, key, requested, "data").await?;
        let mut data = Map::new();
        data.insert("data".into(), Value::Object(stored.data));
        data.insert(
            "metadata".into(),
            Value::Object(meta.version_view(number, &version)),
        );
        Ok(EngineResponse::with_data(data))
    }

    async fn write_data(
        &self,
        ctx: &EngineContext,
        key: &str,
        body: &Map<String, Value>,
    ) -> Result<EngineResponse, Error> {
        let data = data_field(body)?;
        let cas = cas_option(body)?;
        let _guard = self.locks.stripe(key).write().await;
        let config = load_config(&ctx.storage).await?;
        let mut meta = load_metadata(&ctx.storage, key)
            .await?
            .unwrap_or_else(|| KeyMetadata::new(key, ctx.now));
        check_and_set(cas, &config, &meta)?;
        let written = append_version(ctx, &config, &mut meta, data).await?;
        Ok(EngineResponse::with_data(written))
    }

    /// A JSON merge patch (RFC 7386) of the current version's data, written as a new
    /// version. The secret must exist and its current version must be readable.
    async fn patch_data(
        &self,
        ctx: &EngineContext,
        key: &str,
        body: &Map<String, Value>,
    ) -> Result<EngineResponse, Error> {
        let patch = data_field(body)?;
        let cas = cas_option(body)?;
        let _guard = self.locks.stripe(key).write().await;
        let mut meta = load_metadata(&ctx.storage, key)
            .await?
            .ok_or_else(Error::not_found)?;
        let config = load_config(&ctx.storage).await?;
        check_and_set(cas, &config, &meta)?;
        let current = meta.current_version;
        let version = meta
            .versions
            .get(&current)
            .cloned()
            .ok_or_else(Error::not_found)?;
        if version.is_gone(ctx.now) {
            // Vault answers a patch of a deleted version with the bare version metadata.
            return Err(Error::NotFound {
                data: Some(meta.version_view(current, &version)),
            });
        }
        let stored = load_version(&ctx.storage, key, current).await?;
        let mut document = Value::Object(stored.data);
        merge_patch(&mut document, &Value::Object(patch));
        let Value::Object(merged) = document else {
            return Err(Error::internal(
                "a merge patch of an object produced a non-object",
            ));
        };
        let written = append_version(ctx, &config, &mut meta, merged).await?;
        Ok(EngineResponse::with_data(written))
    }

    /// `DELETE data/<key>`: soft-deletes the latest version, if it is not already gone.
    async fn delete_latest(&self, ctx: &EngineContext, key: &str) -> Result<EngineResponse, Error> {
        let _guard = self.locks.stripe(key).write().await;
        let Some(mut meta) = load_metadata(&ctx.storage, key).await? else {
            return Ok(EngineResponse::empty());
        };
        let current = meta.current_version;
        let Some(version) = meta.versions.get_mut(&current) else {
            return Ok(EngineResponse::empty());
        };
        if version.is_gone(ctx.now) {
            return Ok(EngineResponse::empty());
        }
        version.deletion_time = Some(Stamp::new(ctx.now));
        ctx.storage
            .put_json(&model::metadata_key(key), &meta)
            .await?;
        Ok(EngineResponse::empty())
    }

    /// `delete/`, `undelete/` and `destroy/` with a `versions` list. Versions that do not
    /// exist are skipped, as are destroyed ones (they cannot come back).
    async fn change_versions(
        &self,
        ctx: &EngineContext,
        key: &str,
        body: &Map<String, Value>,
        change: VersionChange,
    ) -> Result<EngineResponse, Error> {
        require_key(key)?;
        let numbers = versions_field(body)?;
        if numbers.is_empty() {
            return Err(Error::invalid(change.no_versions_message()));
        }
        let _guard = self.locks.stripe(key).write().await;
        let Some(mut meta) = load_metadata(&ctx.storage, key).await? else {
            return Ok(EngineResponse::empty());
        };
        let config = load_config(&ctx.storage).await?;
        let undelete_deletion_time = deletion_time(ctx.now, &config, &meta)?;
        let mut ops = Vec::new();
        for number in &numbers {
            let Some(version) = meta.versions.get_mut(number) else {
                continue;
            };
            if version.destroyed {
                continue;
            }
            match change {
                VersionChange::Delete => {
                    if !version.is_deleted(ctx.now) {
                        version.deletion_time = Some(Stamp::new(ctx.now));
                    }
                }
                VersionChange::Undelete => version.deletion_time = undelete_deletion_time,
                VersionChange::Destroy => {
                    version.destroyed = true;
                    ops.push(ViewOp::Delete {
                        key: model::version_key(key, *number),
                    });
                }
            }
        }
        ops.push(put_op(model::metadata_key(key), &meta)?);
        ctx.storage.transaction(ops).await?;
        Ok(EngineResponse::empty())
    }

    /// `subkeys/<key>`: the version's data with every leaf value replaced by null, down
    /// to `depth` levels (0: no limit beyond Vault's 100).
    async fn read_subkeys(
        &self,
        ctx: &EngineContext,
        key: &str,
        query: &Map<String, Value>,
    ) -> Result<EngineResponse, Error> {
        let requested = fields::integer(query, "version")?;
        let depth = match fields::integer(query, "depth")? {
            None | Some(0) => MAX_SUBKEYS_DEPTH,
            Some(depth) => u64::try_from(depth)
                .map_err(|_| Error::invalid("field \"depth\" must be a non-negative integer"))?,
        };
        let _guard = self.locks.stripe(key).read().await;
        let (meta, number, version, stored) =
            load_live_version(ctx, key, requested, "subkeys").await?;
        let mut data = Map::new();
        data.insert(
            "subkeys".into(),
            Value::Object(strip_values(&stored.data, 1, depth)),
        );
        data.insert(
            "metadata".into(),
            Value::Object(meta.version_view(number, &version)),
        );
        Ok(EngineResponse::with_data(data))
    }
}

/// What `delete/`, `undelete/` and `destroy/` do to each listed version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VersionChange {
    Delete,
    Undelete,
    Destroy,
}

impl VersionChange {
    /// Vault's own wording, which differs in case between the endpoints.
    fn no_versions_message(self) -> &'static str {
        match self {
            VersionChange::Delete | VersionChange::Undelete => "No version number provided",
            VersionChange::Destroy => "no version number provided",
        }
    }
}

/// Vault's cap on subkeys nesting when no depth is given.
const MAX_SUBKEYS_DEPTH: u64 = 100;

/// Loads a readable version: the requested one (a positive `version`) or the current one.
/// A missing key or version is a plain 404; a deleted or destroyed one is a 404 whose body
/// carries the version's metadata beside a null `value_field`, as Vault's clients expect.
async fn load_live_version(
    ctx: &EngineContext,
    key: &str,
    requested: Option<i64>,
    value_field: &str,
) -> Result<(KeyMetadata, u64, VersionMetadata, StoredVersion), Error> {
    let meta = load_metadata(&ctx.storage, key)
        .await?
        .ok_or_else(Error::not_found)?;
    let number = requested
        .and_then(|n| u64::try_from(n).ok())
        .filter(|n| *n > 0)
        .unwrap_or(meta.current_version);
    let version = meta
        .versions
        .get(&number)
        .cloned()
        .ok_or_else(Error::not_found)?;
    if version.is_gone(ctx.now) {
        let mut data = Map::new();
        data.insert(value_field.into(), Value::Null);
        data.insert(
            "metadata".into(),
            Value::Object(meta.version_view(number, &version)),
        );
        return Err(Error::NotFound { data: Some(data) });
    }
    let stored = load_version(&ctx.storage, key, number).await?;
    Ok((meta, number, version, stored))
}

/// Adds `data` as the key's next version, prunes beyond `max_versions`, and stores the
/// version, the metadata and the removals in one transaction. Returns the new version's
/// metadata block (the response of a write or patch).
async fn append_version(
    ctx: &EngineContext,
    config: &Config,
    meta: &mut KeyMetadata,
    data: Map<String, Value>,
) -> Result<Map<String, Value>, Error> {
    let created_time = Stamp::new(ctx.now);
    let deletion = deletion_time(ctx.now, config, meta)?;
    let number = meta.add_version(created_time, deletion);
    let key = meta.key.clone();
    let mut ops = vec![put_op(
        model::version_key(&key, number),
        &StoredVersion { data, created_time },
    )?];
    for pruned in meta.prune(config.max_versions) {
        ops.push(ViewOp::Delete {
            key: model::version_key(&key, pruned),
        });
    }
    ops.push(put_op(model::metadata_key(&key), &*meta)?);
    ctx.storage.transaction(ops).await?;
    let version = meta
        .versions
        .get(&number)
        .ok_or_else(|| Error::internal("a version just written was pruned"))?;
    Ok(meta.version_view(number, version))
}

/// When a version written (or undeleted) at `from` will read as deleted: `from` plus the
/// smaller of the mount's and the key's `delete_version_after` that are set, unless the
/// mount disables the setting.
fn deletion_time(
    from: OffsetDateTime,
    config: &Config,
    meta: &KeyMetadata,
) -> Result<Option<Stamp>, Error> {
    let Ok(mount) = u64::try_from(config.delete_version_after) else {
        return Ok(None);
    };
    let seconds = match (mount, meta.delete_version_after) {
        (0, 0) => return Ok(None),
        (0, own) => own,
        (mount, 0) => mount,
        (mount, own) => mount.min(own),
    };
    i64::try_from(seconds)
        .ok()
        .and_then(|seconds| from.checked_add(time::Duration::seconds(seconds)))
        .map(|at| Some(Stamp::new(at)))
        .ok_or_else(|| Error::invalid("delete_version_after is too large"))
}

/// Vault's check-and-set rule: a given `cas` must equal the current version (0: the key
/// must have none); without one, the write is refused when the mount or key requires it.
fn check_and_set(cas: Option<i64>, config: &Config, meta: &KeyMetadata) -> Result<(), Error> {
    match cas {
        Some(cas) if u64::try_from(cas).ok() != Some(meta.current_version) => Err(Error::invalid(
            "check-and-set parameter did not match the current version",
        )),
        Some(_) => Ok(()),
        None if config.cas_required || meta.cas_required => Err(Error::invalid(
            "check-and-set parameter required for this call",
        )),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------
// metadata

async fn read_metadata(ctx: &EngineContext, key: &str) -> Result<EngineResponse, Error> {
    let meta = load_metadata(&ctx.storage, key)
        .await?
        .ok_or_else(Error::not_found)?;
    Ok(EngineResponse::with_data(meta.view()))
}

async fn list_metadata(ctx: &EngineContext, prefix: &str) -> Result<EngineResponse, Error> {
    let folder = crate::kv::v1::folder_prefix(prefix);
    let mut keys = ctx.storage.list(&model::metadata_key(&folder)).await?;
    keys.sort();
    keys.dedup();
    EngineResponse::list(keys)
}

/// The settings a metadata write or patch may change. `None`: leave as is.
#[derive(Debug, Default)]
struct MetadataChanges {
    max_versions: Option<u32>,
    cas_required: Option<bool>,
    delete_version_after: Option<u64>,
    custom_metadata: Option<BTreeMap<String, String>>,
}

impl MetadataChanges {
    fn is_empty(&self) -> bool {
        self.max_versions.is_none()
            && self.cas_required.is_none()
            && self.delete_version_after.is_none()
            && self.custom_metadata.is_none()
    }
}

impl KvV2Engine {
    /// Creates or updates a key's settings; the key need not have data yet. Fields left
    /// out keep their value, and `custom_metadata` replaces the whole map.
    async fn write_metadata(
        &self,
        ctx: &EngineContext,
        key: &str,
        body: &Map<String, Value>,
    ) -> Result<EngineResponse, Error> {
        require_key(key)?;
        let changes = MetadataChanges {
            max_versions: max_versions_field(body)?,
            cas_required: fields::boolean(body, "cas_required")?,
            delete_version_after: fields::duration(body, "delete_version_after")?,
            custom_metadata: custom_metadata_field(body)?,
        };
        if let Some(custom_metadata) = &changes.custom_metadata {
            validate_custom_metadata(custom_metadata)?;
        }
        if changes.is_empty() {
            return Ok(EngineResponse::empty());
        }
        let _guard = self.locks.stripe(key).write().await;
        let config = load_config(&ctx.storage).await?;
        let mut meta = load_metadata(&ctx.storage, key)
            .await?
            .unwrap_or_else(|| KeyMetadata::new(key, ctx.now));
        let warnings = cas_required_warnings(changes.cas_required, &config);
        apply_metadata_changes(&mut meta, changes);
        ctx.storage
            .put_json(&model::metadata_key(key), &meta)
            .await?;
        Ok(EngineResponse {
            warnings,
            ..EngineResponse::default()
        })
    }

    /// A merge patch of an existing key's settings: a field set to null returns to its
    /// default, and `custom_metadata` is merged key by key (null removes a key).
    async fn patch_metadata(
        &self,
        ctx: &EngineContext,
        key: &str,
        body: &Map<String, Value>,
    ) -> Result<EngineResponse, Error> {
        require_key(key)?;
        let _guard = self.locks.stripe(key).write().await;
        let mut meta = load_metadata(&ctx.storage, key)
            .await?
            .ok_or_else(Error::not_found)?;
        let config = load_config(&ctx.storage).await?;
        let present = |field: &str| body.get(field).map(Value::is_null);
        let changes = MetadataChanges {
            max_versions: match present("max_versions") {
                Some(true) => Some(0),
                _ => max_versions_field(body)?,
            },
            cas_required: match present("cas_required") {
                Some(true) => Some(false),
                _ => fields::boolean(body, "cas_required")?,
            },
            delete_version_after: match present("delete_version_after") {
                Some(true) => Some(0),
                _ => fields::duration(body, "delete_version_after")?,
            },
            custom_metadata: match body.get("custom_metadata") {
                None => None,
                Some(Value::Null) => Some(BTreeMap::new()),
                Some(Value::Object(patch)) => {
                    Some(patch_custom_metadata(&meta.custom_metadata, patch)?)
                }
                Some(_) => return Err(Error::invalid("field \"custom_metadata\" must be a map")),
            },
        };
        if let Some(custom_metadata) = &changes.custom_metadata {
            validate_custom_metadata(custom_metadata)?;
        }
        let warnings = cas_required_warnings(changes.cas_required, &config);
        apply_metadata_changes(&mut meta, changes);
        ctx.storage
            .put_json(&model::metadata_key(key), &meta)
            .await?;
        Ok(EngineResponse {
            warnings,
            ..EngineResponse::default()
        })
    }

    /// Removes the key's metadata and every version, for good.
    async fn delete_metadata(
        &self,
        ctx: &EngineContext,
        key: &str,
    ) -> Result<EngineResponse, Error> {
        require_key(key)?;
        let _guard = self.locks.stripe(key).write().await;
        if load_metadata(&ctx.storage, key).await?.is_none() {
            return Ok(EngineResponse::empty());
        }
        let mut ops = Vec::new();
        let prefix = model::versions_prefix(key);
        let mut after = String::new();
        loop {
            let page = ctx.storage.scan(&prefix, &after, SCAN_PAGE).await?;
            let done = page.len() < SCAN_PAGE;
            if let Some(last) = page.last() {
                after.clone_from(last);
            }
            ops.extend(page.into_iter().map(|key| ViewOp::Delete { key }));
            if done {
                break;
            }
        }
        ops.push(ViewOp::Delete {
            key: model::metadata_key(key),
        });
        ctx.storage.transaction(ops).await?;
        Ok(EngineResponse::empty())
    }
}

const SCAN_PAGE: usize = 1000;

fn apply_metadata_changes(meta: &mut KeyMetadata, changes: MetadataChanges) {
    if let Some(max_versions) = changes.max_versions {
        meta.max_versions = max_versions;
    }
    if let Some(cas_required) = changes.cas_required {
        meta.cas_required = cas_required;
    }
    if let Some(seconds) = changes.delete_version_after {
        meta.delete_version_after = seconds;
    }
    if let Some(custom_metadata) = changes.custom_metadata {
        meta.custom_metadata = custom_metadata;
    }
}

/// Turning `cas_required` off on a key does nothing while the mount requires it; Vault
/// accepts the write and says so.
fn cas_required_warnings(cas_required: Option<bool>, config: &Config) -> Vec<String> {
    if cas_required == Some(false) && config.cas_required {
        vec!["\"cas_required\" set to false, but is mandated by backend config. This value will be ignored.".into()]
    } else {
        Vec::new()
    }
}

// ---------------------------------------------------------------------------------------
// request fields

/// The `data` object of a data write or patch.
fn data_field(body: &Map<String, Value>) -> Result<Map<String, Value>, Error> {
    match body.get("data") {
        None | Some(Value::Null) => Err(Error::invalid("no data provided")),
        Some(Value::Object(data)) => Ok(data.clone()),
        Some(_) => Err(Error::invalid("field \"data\" must be a map")),
    }
}

/// `options.cas`, read as loosely as Vault does (`3`, `3.0`, `"3"`); anything that is not
/// an integer is refused with Vault's message.
fn cas_option(body: &Map<String, Value>) -> Result<Option<i64>, Error> {
    let options = match body.get("options") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(options)) => options,
        Some(_) => return Err(Error::invalid("field \"options\" must be a map")),
    };
    let parsing_error = || Error::invalid("error parsing check-and-set parameter");
    match options.get("cas") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            })
            .map(Some)
            .ok_or_else(parsing_error),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| parsing_error()),
        Some(Value::Bool(b)) => Ok(Some(i64::from(*b))),
        Some(_) => Err(parsing_error()),
    }
}

/// `versions` as Vault's comma-separated int slice: a list of integers (or numeric
/// strings), a single integer, or `"1,2,3"`. Numbers below 1 name no version.
fn versions_field(body: &Map<String, Value>) -> Result<Vec<u64>, Error> {
    let invalid = || Error::invalid("field \"versions\" must be a list of integers");
    let parse_text =
        |text: &str| -> Result<i64, Error> { text.trim().parse().map_err(|_| invalid()) };
    let parse_item = |item: &Value| -> Result<i64, Error> {
        match item {
            Value::Number(n) => n.as_i64().ok_or_else(invalid),
            Value::String(s) => parse_text(s),
            _ => Err(invalid()),
        }
    };
    let numbers: Vec<i64> = match body.get("versions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().map(parse_item).collect::<Result<_, _>>()?,
        Some(Value::String(s)) => s
            .split(',')
            .filter(|part| !part.trim().is_empty())
            .map(parse_text)
            .collect::<Result<_, _>>()?,
        Some(number @ Value::Number(_)) => vec![parse_item(number)?],
        Some(_) => return Err(invalid()),
    };
    Ok(numbers
        .into_iter()
        .filter_map(|n| u64::try_from(n).ok())
        .filter(|n| *n > 0)
        .collect())
}

fn max_versions_field(body: &Map<String, Value>) -> Result<Option<u32>, Error> {
    fields::integer(body, "max_versions")?
        .map(|n| {
            u32::try_from(n).map_err(|_| {
                Error::invalid("field \"max_versions\" must be a non-negative integer")
            })
        })
        .transpose()
}

/// A duration that may be negative (the mount's `delete_version_after`, where a negative
/// value disables the setting): integer seconds or a Go duration string.
fn signed_duration_field(body: &Map<String, Value>, key: &str) -> Result<Option<i64>, Error> {
    let invalid = || Error::invalid(format!("field \"{key}\" must be a duration"));
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            })
            .map(Some)
            .ok_or_else(invalid),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => {
            let text = s.trim();
            let (negative, magnitude) = match text.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, text),
            };
            let seconds = ward_core::duration::parse_seconds(magnitude)
                .and_then(|n| i64::try_from(n).ok())
                .ok_or_else(invalid)?;
            Ok(Some(if negative { -seconds } else { seconds }))
        }
        Some(_) => Err(invalid()),
    }
}

const CUSTOM_METADATA_ERROR: &str = "custom_metadata validation failed";
const MAX_CUSTOM_METADATA_KEYS: usize = 64;
const MAX_CUSTOM_METADATA_KEY_LENGTH: usize = 128;
const MAX_CUSTOM_METADATA_VALUE_LENGTH: usize = 512;

/// `custom_metadata` of a metadata write: a map whose values are strings (numbers and
/// booleans are taken as their text, as Vault's weak decoding does).
fn custom_metadata_field(
    body: &Map<String, Value>,
) -> Result<Option<BTreeMap<String, String>>, Error> {
    match body.get("custom_metadata") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(key, value)| Ok((key.clone(), custom_metadata_value(key, value)?)))
            .collect::<Result<_, Error>>()
            .map(Some),
        Some(_) => Err(Error::invalid("field \"custom_metadata\" must be a map")),
    }
}

/// Merges a patch into custom metadata: null removes a key, any other value sets it.
fn patch_custom_metadata(
    current: &BTreeMap<String, String>,
    patch: &Map<String, Value>,
) -> Result<BTreeMap<String, String>, Error> {
    let mut merged = current.clone();
    for (key, value) in patch {
        if value.is_null() {
            merged.remove(key);
        } else {
            merged.insert(key.clone(), custom_metadata_value(key, value)?);
        }
    }
    Ok(merged)
}

fn custom_metadata_value(key: &str, value: &Value) -> Result<String, Error> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(if *b { "1" } else { "0" }.to_string()),
        Value::Null => Ok(String::new()),
        Value::Array(_) | Value::Object(_) => Err(Error::invalid(format!(
            "{CUSTOM_METADATA_ERROR}: value for key {key:?} must be a string"
        ))),
    }
}

/// Vault's limits: at most 64 keys; keys of 1 to 128 bytes and values of 1 to 512 bytes,
/// all printable. Every problem is reported, not just the first.
fn validate_custom_metadata(custom_metadata: &BTreeMap<String, String>) -> Result<(), Error> {
    if custom_metadata.len() > MAX_CUSTOM_METADATA_KEYS {
        return Err(Error::invalid(format!(
            "{CUSTOM_METADATA_ERROR}: payload must contain at most {MAX_CUSTOM_METADATA_KEYS} keys, provided {}",
            custom_metadata.len()
        )));
    }
    let printable = |text: &str| !text.chars().any(char::is_control);
    let mut problems = Vec::new();
    for (key, value) in custom_metadata {
        if key.is_empty() || key.len() > MAX_CUSTOM_METADATA_KEY_LENGTH {
            problems.push(format!(
                "{CUSTOM_METADATA_ERROR}: length of key {key:?} is {} but must be 0 < len(key) <= {MAX_CUSTOM_METADATA_KEY_LENGTH}",
                key.len()
            ));
        }
        if value.is_empty() || value.len() > MAX_CUSTOM_METADATA_VALUE_LENGTH {
            problems.push(format!(
                "{CUSTOM_METADATA_ERROR}: length of value for key {key:?} is {} but must be 0 < len(value) <= {MAX_CUSTOM_METADATA_VALUE_LENGTH}",
                value.len()
            ));
        }
        if !printable(key) {
            problems.push(format!(
                "{CUSTOM_METADATA_ERROR}: key {key:?} contains unprintable characters"
            ));
        }
        if !printable(value) {
            problems.push(format!(
                "{CUSTOM_METADATA_ERROR}: value for key {key:?} contains unprintable characters"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid(problems.join("; ")))
    }
}

// ---------------------------------------------------------------------------------------
// documents

/// RFC 7386 JSON merge patch: objects merge key by key, null removes a key, anything else
/// replaces the target.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// The shape of `data` without its values: non-empty objects are walked while their
/// depth is within `max_depth`; every other value becomes null.
fn strip_values(data: &Map<String, Value>, depth: u64, max_depth: u64) -> Map<String, Value> {
    data.iter()
        .map(|(key, value)| {
            let shape = match value {
                Value::Object(inner) if !inner.is_empty() && depth < max_depth => {
                    Value::Object(strip_values(inner, depth + 1, max_depth))
                }
                _ => Value::Null,
            };
            (key.clone(), shape)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// storage

async fn load_config(storage: &StorageView) -> Result<Config, Error> {
    Ok(storage
        .get_json(model::CONFIG_KEY)
        .await?
        .unwrap_or_default())
}

async fn load_metadata(storage: &StorageView, key: &str) -> Result<Option<KeyMetadata>, Error> {
    storage.get_json(&model::metadata_key(key)).await
}

async fn load_version(
    storage: &StorageView,
    key: &str,
    number: u64,
) -> Result<StoredVersion, Error> {
    storage
        .get_json(&model::version_key(key, number))
        .await?
        .ok_or_else(|| {
            Error::internal(format!(
                "version {number} is in the metadata but its data is missing"
            ))
        })
}

fn put_op<T: Serialize>(key: String, value: &T) -> Result<ViewOp, Error> {
    Ok(ViewOp::Put {
        key,
        value: encode_json(value)?,
    })
}

/// Striped per-key locks: writes to one key are serialised (so check-and-set and version
/// numbering hold), reads share. A stripe may cover several keys, which only costs some
/// waiting. The engine is one instance per mount, so the locks are too.
#[derive(Debug)]
struct KeyLocks {
    stripes: Vec<RwLock<()>>,
}

const N_LOCK_STRIPES: usize = 64;

impl KeyLocks {
    fn new() -> Self {
        KeyLocks {
            stripes: (0..N_LOCK_STRIPES).map(|_| RwLock::new(())).collect(),
        }
    }

    fn stripe(&self, key: &str) -> &RwLock<()> {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        // N_LOCK_STRIPES is a small non-zero constant, so the remainder fits a usize.
        let index = (hasher.finish() % N_LOCK_STRIPES as u64) as usize;
        self.stripes
            .get(index)
            .expect("the index is reduced modulo the number of stripes")
    }
}

#[cfg(test)]
mod tests;
