//! The token store: service tokens persisted as salted hashes, batch tokens as sealed blobs.
//!
//! A service token is a random id with a recognisable prefix (`wrs.`); only its salted HMAC
//! is stored, under `sys/token/id/<hash>`, with an accessor index, a parent→child index (so
//! revoking a parent revokes its subtree) and an expiry index walked by the expiry sweeper.
//! A batch token (`wrb.`) is the entry itself, encrypted under a key kept in the barrier: it
//! costs no write, cannot be renewed or revoked, and dies with its parent.
//! Entries are cached by hash; every change goes through here and invalidates the cache.
//!
//! Service tokens are also indexed by the auth mount that issued them (`mount/<accessor>/
//! <hash>`, a key with no value), so that the live count of the `ward_token_count` gauge is
//! restored after unseal from a key scan, with no decryption; from then on every create and
//! remove moves it ([`crate::metrics::LiveCount`]). Batch tokens are never stored and not
//! counted.

pub(crate) mod endpoints;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::barrier::{open_bytes, seal_bytes, Barrier, Key};
use crate::error::Error;
use crate::view::{encode_json, StorageView, ViewOp};

pub const SERVICE_PREFIX: &str = "wrs.";
pub const BATCH_PREFIX: &str = "wrb.";
const ID_PREFIX: &str = "id/";
const ACCESSOR_PREFIX: &str = "accessor/";
const PARENT_PREFIX: &str = "parent/";
const EXPIRY_PREFIX: &str = "expire/";
const MOUNT_PREFIX: &str = "mount/";
/// The mount index segment of tokens the token store made itself (root, wrapping, access
/// grants): they have no issuing auth mount accessor.
pub(crate) const TOKEN_STORE_KEY: &str = "-";
/// The count of stored tokens that have no mount index entry (made before the index existed).
pub(crate) const UNINDEXED_KEY: &str = "?";
const REMOVE_STRIPES: usize = 64;
const SALT_KEY: &str = "salt";
const BATCH_KEY: &str = "batch-key";
const CACHE_LIMIT: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TokenType {
    #[default]
    Service,
    Batch,
}

impl TokenType {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenType::Service => "service",
            TokenType::Batch => "batch",
        }
    }
}

/// A token as stored. Never holds the token id itself.
#[derive(Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TokenEntry {
    /// Salted hash of the token id; empty for batch tokens.
    #[serde(default)]
    pub hash: String,
    #[serde(default)]
    pub accessor: String,
    #[serde(default)]
    pub parent: Option<String>,
    pub policies: Vec<String>,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    #[serde(default)]
    pub display_name: String,
    /// Remaining uses; 0 means unlimited.
    #[serde(default)]
    pub num_uses: u64,
    pub creation_time: i64,
    #[serde(default)]
    pub creation_ttl: u64,
    /// Unix seconds; None never expires.
    #[serde(default)]
    pub expire_time: Option<i64>,
    /// The hard end of life (issue time + max TTL, or explicit max); None: none.
    #[serde(default)]
    pub max_expire_time: Option<i64>,
    #[serde(default)]
    pub explicit_max_ttl: u64,
    #[serde(default)]
    pub period: u64,
    #[serde(default)]
    pub renewable: bool,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub entity_id: String,
    #[serde(default)]
    pub token_type: TokenType,
    #[serde(default)]
    pub cubbyhole_id: String,
    #[serde(default)]
    pub bound_cidrs: Vec<String>,
    #[serde(default)]
    pub orphan: bool,
    /// Set on response-wrapping tokens.
    #[serde(default)]
    pub wrapping: bool,
    /// The auth mount that issued it (accessor), for lease and metric attribution.
    #[serde(default)]
    pub mount_accessor: String,
    /// Role TTL settings re-read at renewal (auth method login tokens).
    #[serde(default)]
    pub ttl_setting: u64,
    #[serde(default)]
    pub max_ttl_setting: u64,
}

impl fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEntry")
            .field("accessor", &self.accessor)
            .field("policies", &self.policies)
            .field("display_name", &self.display_name)
            .field("expire_time", &self.expire_time)
            .finish_non_exhaustive()
    }
}

impl TokenEntry {
    pub fn is_root(&self) -> bool {
        self.policies.iter().any(|p| p == "root")
    }

    pub fn expired(&self, now: i64) -> bool {
        self.expire_time.is_some_and(|t| t <= now)
    }

    /// Seconds left, 0 for a token that never expires.
    pub fn ttl(&self, now: i64) -> u64 {
        self.expire_time
            .map(|t| (t - now).max(0) as u64)
            .unwrap_or(0)
    }
}

/// A newly minted token: the id the caller receives once, and its entry.
pub struct Minted {
    pub id: Zeroizing<String>,
    pub entry: Arc<TokenEntry>,
}

pub struct TokenStore {
    view: StorageView,
    salt: Key,
    batch_key: Key,
    cache: RwLock<HashMap<String, Arc<TokenEntry>>>,
    /// Live service tokens by issuing mount accessor (the `ward_token_count` gauge).
    pub(crate) live: crate::metrics::LiveCount,
    /// Serialise removals of one token, so that two revocations count it once.
    remove_locks: Vec<tokio::sync::Mutex<()>>,
}

impl fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenStore")
    }
}

#[derive(Serialize, Deserialize)]
struct AccessorIndex {
    hash: String,
    accessor: String,
}

impl TokenStore {
    /// Opens the store under `sys/token/`, creating its salt and batch key on first use.
    pub async fn open(barrier: Arc<Barrier>) -> Result<Self, Error> {
        let view = StorageView::new(barrier, "sys/token/");
        let salt = load_or_create_key(&view, SALT_KEY).await?;
        let batch_key = load_or_create_key(&view, BATCH_KEY).await?;
        Ok(TokenStore {
            view,
            salt,
            batch_key,
            cache: RwLock::new(HashMap::new()),
            live: crate::metrics::LiveCount::default(),
            remove_locks: (0..REMOVE_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        })
    }

    pub fn hash(&self, id: &str) -> String {
        salted_hash(&self.salt, id)
    }

    /// Persists a new token. The entry's hash and accessor are filled in here.
    pub async fn create(
        &self,
        mut entry: TokenEntry,
        custom_id: Option<&str>,
    ) -> Result<Minted, Error> {
        if entry.token_type == TokenType::Batch {
            entry.hash = String::new();
            entry.accessor = String::new();
            entry.cubbyhole_id = String::new();
            let plain = Zeroizing::new(encode_json(&entry)?);
            let sealed = seal_bytes(&self.batch_key, 0, b"batch-token", &plain)?;
            let id = format!(
                "{BATCH_PREFIX}{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed)
            );
            return Ok(Minted {
                id: Zeroizing::new(id),
                entry: Arc::new(entry),
            });
        }
        let id = match custom_id {
            Some(id) => id.to_string(),
            None => format!("{SERVICE_PREFIX}{}", random_base62(32)),
        };
        let hash = self.hash(&id);
        if self
            .view
            .get(&format!("{ID_PREFIX}{hash}"))
            .await?
            .is_some()
        {
            return Err(Error::invalid("cannot create a token with a duplicate ID"));
        }
        entry.hash = hash.clone();
        entry.accessor = random_base62(24);
        entry.cubbyhole_id = random_base62(24);
        let mut ops = vec![
            ViewOp::Put {
                key: format!("{ID_PREFIX}{hash}"),
                value: encode_json(&entry)?,
            },
            ViewOp::Put {
                key: format!("{ACCESSOR_PREFIX}{}", self.hash(&entry.accessor)),
                value: encode_json(&AccessorIndex {
                    hash: hash.clone(),
                    accessor: entry.accessor.clone(),
                })?,
            },
        ];
        if let Some(parent) = &entry.parent {
            ops.push(ViewOp::Put {
                key: format!("{PARENT_PREFIX}{parent}/{hash}"),
                value: Vec::new(),
            });
        }
        if let Some(expire) = entry.expire_time {
            ops.push(ViewOp::Put {
                key: expiry_key(expire, &hash),
                value: Vec::new(),
            });
        }
        ops.push(ViewOp::Put {
            key: mount_key(&entry, &hash),
            value: Vec::new(),
        });
        {
            let _change = self.live.change().await;
            self.view.transaction(ops).await?;
            self.live.add(live_key(&entry));
        }
        let entry = Arc::new(entry);
        self.cache_put(&hash, entry.clone());
        Ok(Minted {
            id: Zeroizing::new(id),
            entry,
        })
    }

    /// Looks a token up by its id. Expired or unknown tokens are None.
    pub async fn lookup(&self, id: &str, now: i64) -> Result<Option<Arc<TokenEntry>>, Error> {
        if let Some(sealed) = id.strip_prefix(BATCH_PREFIX) {
            return self.open_batch(sealed, now).await;
        }
        let hash = self.hash(id);
        self.lookup_hash(&hash, now).await
    }

    pub async fn lookup_hash(
        &self,
        hash: &str,
        now: i64,
    ) -> Result<Option<Arc<TokenEntry>>, Error> {
        let entry = match self.cache_get(hash) {
            Some(entry) => entry,
            None => match self
                .view
                .get_json::<TokenEntry>(&format!("{ID_PREFIX}{hash}"))
                .await?
            {
                None => return Ok(None),
                Some(entry) => {
                    let entry = Arc::new(entry);
                    self.cache_put(hash, entry.clone());
                    entry
                }
            },
        };
        if entry.expired(now) {
            return Ok(None);
        }
        Ok(Some(entry))
    }

    pub async fn lookup_accessor(
        &self,
        accessor: &str,
        now: i64,
    ) -> Result<Option<Arc<TokenEntry>>, Error> {
        let index: Option<AccessorIndex> = self
            .view
            .get_json(&format!("{ACCESSOR_PREFIX}{}", self.hash(accessor)))
            .await?;
        match index {
            Some(index) if bool::from(index.accessor.as_bytes().ct_eq(accessor.as_bytes())) => {
                self.lookup_hash(&index.hash, now).await
            }
            _ => Ok(None),
        }
    }

    /// Every accessor (for `LIST auth/token/accessors`).
    pub async fn accessors(&self) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        let mut after = String::new();
        loop {
            let keys = self.view.scan(ACCESSOR_PREFIX, &after, 1000).await?;
            let Some(last) = keys.last().cloned() else {
                break;
            };
            for key in keys {
                if let Some(index) = self.view.get_json::<AccessorIndex>(&key).await? {
                    out.push(index.accessor);
                }
            }
            after = last;
        }
        out.sort();
        Ok(out)
    }

    /// Replaces a stored entry (renewal, use count). Keeps the expiry index in step.
    pub async fn update(
        &self,
        old: &TokenEntry,
        new: TokenEntry,
    ) -> Result<Arc<TokenEntry>, Error> {
        let hash = old.hash.clone();
        let mut ops = vec![ViewOp::Put {
            key: format!("{ID_PREFIX}{hash}"),
            value: encode_json(&new)?,
        }];
        if old.expire_time != new.expire_time {
            if let Some(t) = old.expire_time {
                ops.push(ViewOp::Delete {
                    key: expiry_key(t, &hash),
                });
            }
            if let Some(t) = new.expire_time {
                ops.push(ViewOp::Put {
                    key: expiry_key(t, &hash),
                    value: Vec::new(),
                });
            }
        }
        self.view.transaction(ops).await?;
        let new = Arc::new(new);
        self.cache_put(&hash, new.clone());
        Ok(new)
    }

    /// Spends one use of a use-limited token. Returns the entry as it is after this use, and
    /// whether this was its last use (the caller revokes it after the request).
    pub async fn use_once(
        &self,
        entry: &Arc<TokenEntry>,
    ) -> Result<(Arc<TokenEntry>, bool), Error> {
        if entry.num_uses == 0 || entry.token_type == TokenType::Batch {
            return Ok((entry.clone(), false));
        }
        let mut next = (**entry).clone();
        next.num_uses -= 1;
        if next.num_uses == 0 {
            return Ok((Arc::new(next), true));
        }
        Ok((self.update(entry, next).await?, false))
    }

    /// The hashes of a token's direct children.
    pub async fn children(&self, hash: &str) -> Result<Vec<String>, Error> {
        let keys = self.view.list(&format!("{PARENT_PREFIX}{hash}/")).await?;
        Ok(keys.into_iter().filter(|k| !k.ends_with('/')).collect())
    }

    /// Deletes one token's records (not its children). Idempotent.
    pub async fn remove(&self, entry: &TokenEntry) -> Result<(), Error> {
        let hash = &entry.hash;
        let _one_at_a_time = self.remove_lock(hash).await;
        let existed = self
            .view
            .get(&format!("{ID_PREFIX}{hash}"))
            .await?
            .is_some();
        let mut ops = vec![
            ViewOp::Delete {
                key: mount_key(entry, hash),
            },
            ViewOp::Delete {
                key: format!("{ID_PREFIX}{hash}"),
            },
            ViewOp::Delete {
                key: format!("{ACCESSOR_PREFIX}{}", self.hash(&entry.accessor)),
            },
        ];
        if let Some(parent) = &entry.parent {
            ops.push(ViewOp::Delete {
                key: format!("{PARENT_PREFIX}{parent}/{hash}"),
            });
        }
        if let Some(t) = entry.expire_time {
            ops.push(ViewOp::Delete {
                key: expiry_key(t, hash),
            });
        }
        {
            let _change = self.live.change().await;
            self.view.transaction(ops).await?;
            if existed {
                self.live.sub(live_key(entry));
            }
        }
        self.cache_remove(hash);
        Ok(())
    }

    /// Live service tokens by issuing mount accessor, from the keys of the mount index; the
    /// stored tokens the index does not hold count under [`UNINDEXED_KEY`].
    pub(crate) async fn count_by_mount(&self) -> Result<BTreeMap<String, u64>, Error> {
        let mut counts = BTreeMap::new();
        let mut indexed = 0u64;
        let mut after = String::new();
        loop {
            let keys = self.view.scan(MOUNT_PREFIX, &after, 1000).await?;
            for key in &keys {
                let rest = key.strip_prefix(MOUNT_PREFIX).unwrap_or_default();
                if let Some((accessor, _hash)) = rest.split_once('/') {
                    *counts.entry(accessor.to_string()).or_default() += 1;
                    indexed += 1;
                }
            }
            match keys.last() {
                Some(last) if keys.len() >= 1000 => after = last.clone(),
                _ => break,
            }
        }
        let mut stored = 0u64;
        let mut after = String::new();
        loop {
            let keys = self.view.scan(ID_PREFIX, &after, 1000).await?;
            stored += keys.len() as u64;
            match keys.last() {
                Some(last) if keys.len() >= 1000 => after = last.clone(),
                _ => break,
            }
        }
        if stored > indexed {
            counts.insert(UNINDEXED_KEY.to_string(), stored - indexed);
        }
        Ok(counts)
    }

    async fn remove_lock(&self, hash: &str) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        let index = hash.bytes().fold(0usize, |h, b| {
            h.wrapping_mul(31).wrapping_add(usize::from(b))
        });
        match self.remove_locks.get(index % REMOVE_STRIPES) {
            Some(lock) => Some(lock.lock().await),
            None => None,
        }
    }

    /// Makes a token's children orphans (revoke-orphan).
    pub async fn orphan_children(&self, hash: &str) -> Result<(), Error> {
        for child in self.children(hash).await? {
            let stored: Option<TokenEntry> =
                self.view.get_json(&format!("{ID_PREFIX}{child}")).await?;
            self.view
                .delete(&format!("{PARENT_PREFIX}{hash}/{child}"))
                .await?;
            if let Some(entry) = stored {
                let mut next = entry.clone();
                next.parent = None;
                next.orphan = true;
                self.update(&entry, next).await?;
            }
        }
        Ok(())
    }

    /// Hashes of tokens whose expiry is at or before `now`, oldest first, at most `limit`.
    pub async fn expired(&self, now: i64, limit: usize) -> Result<Vec<(String, i64)>, Error> {
        let keys = self.view.scan(EXPIRY_PREFIX, "", limit).await?;
        let mut out = Vec::new();
        for key in keys {
            let Some(rest) = key.strip_prefix(EXPIRY_PREFIX) else {
                continue;
            };
            let Some((time, hash)) = rest.split_once('/') else {
                continue;
            };
            let Ok(time) = time.parse::<i64>() else {
                continue;
            };
            if time > now {
                break;
            }
            out.push((hash.to_string(), time));
        }
        Ok(out)
    }

    /// Drops an expiry index entry whose token is already gone.
    pub async fn forget_expiry(&self, hash: &str, time: i64) -> Result<(), Error> {
        self.view.delete(&expiry_key(time, hash)).await
    }

    /// Stored entry by hash, ignoring expiry (for revocation of expired tokens).
    pub async fn entry_any(&self, hash: &str) -> Result<Option<TokenEntry>, Error> {
        self.view.get_json(&format!("{ID_PREFIX}{hash}")).await
    }

    /// Removes index entries that point at tokens that no longer exist (`auth/token/tidy`).
    pub async fn tidy(&self) -> Result<u64, Error> {
        let mut removed = 0;
        let mut after = String::new();
        loop {
            let keys = self.view.scan(ACCESSOR_PREFIX, &after, 1000).await?;
            let Some(last) = keys.last().cloned() else {
                break;
            };
            for key in keys {
                if let Some(index) = self.view.get_json::<AccessorIndex>(&key).await? {
                    if self.entry_any(&index.hash).await?.is_none() {
                        self.view.delete(&key).await?;
                        removed += 1;
                    }
                }
            }
            after = last;
        }
        // parent/<parent>/<hash> and mount/<accessor>/<hash> both end with the token's hash.
        for family in [PARENT_PREFIX, MOUNT_PREFIX] {
            let mut after = String::new();
            loop {
                let keys = self.view.scan(family, &after, 1000).await?;
                let Some(last) = keys.last().cloned() else {
                    break;
                };
                for key in keys {
                    let hash = key.rsplit('/').next().unwrap_or_default().to_string();
                    if self.entry_any(&hash).await?.is_none() {
                        self.view.delete(&key).await?;
                        removed += 1;
                    }
                }
                after = last;
            }
        }
        Ok(removed)
    }

    async fn open_batch(&self, sealed: &str, now: i64) -> Result<Option<Arc<TokenEntry>>, Error> {
        let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sealed) else {
            return Ok(None);
        };
        let Ok(plain) = open_bytes(&self.batch_key, b"batch-token", &bytes) else {
            return Ok(None);
        };
        let Ok(entry) = serde_json::from_slice::<TokenEntry>(&plain) else {
            return Ok(None);
        };
        if entry.expired(now) {
            return Ok(None);
        }
        // A batch token dies with its parent.
        if let Some(parent) = &entry.parent {
            if self.lookup_hash(parent, now).await?.is_none() {
                return Ok(None);
            }
        }
        Ok(Some(Arc::new(entry)))
    }

    fn cache_get(&self, hash: &str) -> Option<Arc<TokenEntry>> {
        self.cache.read().ok()?.get(hash).cloned()
    }

    fn cache_put(&self, hash: &str, entry: Arc<TokenEntry>) {
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(hash.to_string(), entry);
        }
    }

    fn cache_remove(&self, hash: &str) {
        if let Ok(mut cache) = self.cache.write() {
            cache.remove(hash);
        }
    }
}

/// The gauge key of a token: the accessor of the auth mount that issued it.
fn live_key(entry: &TokenEntry) -> &str {
    if entry.mount_accessor.is_empty() {
        TOKEN_STORE_KEY
    } else {
        &entry.mount_accessor
    }
}

fn mount_key(entry: &TokenEntry, hash: &str) -> String {
    format!("{MOUNT_PREFIX}{}/{hash}", live_key(entry))
}

fn expiry_key(time: i64, hash: &str) -> String {
    format!("{EXPIRY_PREFIX}{:012}/{hash}", time.max(0))
}

async fn load_or_create_key(view: &StorageView, name: &str) -> Result<Key, Error> {
    if let Some(bytes) = view.get(name).await? {
        return Key::from_slice(&bytes)
            .ok_or_else(|| Error::internal(format!("token store {name} is corrupt")));
    }
    let key = Key::generate();
    view.put(name, key.as_bytes()).await?;
    Ok(key)
}

pub(crate) fn salted_hash(salt: &Key, value: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(salt.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(value.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// A random string of base62 characters, from the OS generator, without modulo bias.
pub fn random_base62(len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(len);
    let mut rng = rand::rngs::OsRng;
    let mut buf = [0u8; 64];
    while out.len() < len {
        rng.fill_bytes(&mut buf);
        for b in buf {
            // 248 = 4 * 62: reject the tail to keep the distribution uniform.
            if b < 248 && out.len() < len {
                out.push(ALPHABET[(b % 62) as usize] as char);
            }
        }
    }
    out
}

/// A token role (`auth/token/roles/<name>`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenRole {
    pub name: String,
    #[serde(default)]
    pub allowed_policies: Vec<String>,
    #[serde(default)]
    pub disallowed_policies: Vec<String>,
    #[serde(default)]
    pub allowed_policies_glob: Vec<String>,
    #[serde(default)]
    pub disallowed_policies_glob: Vec<String>,
    #[serde(default)]
    pub orphan: bool,
    #[serde(default = "default_true")]
    pub renewable: bool,
    #[serde(default)]
    pub path_suffix: String,
    #[serde(default)]
    pub allowed_entity_aliases: Vec<String>,
    #[serde(default)]
    pub token_period: u64,
    #[serde(default)]
    pub token_explicit_max_ttl: u64,
    #[serde(default)]
    pub token_ttl: u64,
    #[serde(default)]
    pub token_max_ttl: u64,
    #[serde(default)]
    pub token_no_default_policy: bool,
    #[serde(default)]
    pub token_num_uses: u64,
    #[serde(default)]
    pub token_type: String,
    #[serde(default)]
    pub token_bound_cidrs: Vec<String>,
}

fn default_true() -> bool {
    true
}

impl TokenStore {
    pub async fn role(&self, name: &str) -> Result<Option<TokenRole>, Error> {
        self.view.get_json(&format!("roles/{name}")).await
    }

    pub async fn put_role(&self, role: &TokenRole) -> Result<(), Error> {
        self.view
            .put_json(&format!("roles/{}", role.name), role)
            .await
    }

    pub async fn delete_role(&self, name: &str) -> Result<(), Error> {
        self.view.delete(&format!("roles/{name}")).await
    }

    pub async fn roles(&self) -> Result<Vec<String>, Error> {
        self.view.list("roles/").await
    }
}
