//! The `approle` auth method: roles with a role id, secret ids (generated or custom), their
//! accessors, CIDR bindings, use counts and TTLs, `login` and `tidy/secret-id`.
//!
//! Role ids and secret ids are stored only as HMAC-SHA256 under a random key kept in the
//! mount's own storage (`salt`), so a storage dump names neither; lookups go by the HMAC and
//! the stored HMAC is compared again in constant time. Every change to a secret id (use
//! count, destroy, tidy) happens under one lock, so two logins cannot both spend the last
//! use. An accessor is honoured only on the role it belongs to (CVE-2023-24999). Response
//! wrapping of a new secret id is the core's job.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::{Mutex, OnceCell};
use ward_core::engine::{fields, AliasSpec, MountInfo};
use ward_core::view::ViewOp;
use ward_core::{
    Engine, EngineContext, EngineRequest, EngineResponse, Error, Operation, StorageView,
};
use zeroize::Zeroizing;

use crate::auth::secret::{self, Secret};
use crate::auth::token_fields::{parse_cidrs, TokenFields};
use crate::auth::{is_list_root, name_segment};

/// Builds an AppRole engine for a mount.
pub fn factory(_mount: &MountInfo) -> Result<Arc<dyn Engine>, Error> {
    Ok(Arc::new(AppRoleEngine::default()))
}

/// The AppRole engine. Its state is in the mount's storage; it keeps the HMAC key in memory
/// once read, and the lock that serialises secret-id changes.
#[derive(Default)]
pub struct AppRoleEngine {
    hmac_key: OnceCell<Zeroizing<Vec<u8>>>,
    secret_ids: Mutex<()>,
}

impl std::fmt::Debug for AppRoleEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppRoleEngine").finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RoleEntry {
    role_id: String,
    bind_secret_id: bool,
    secret_id_bound_cidrs: Vec<String>,
    secret_id_num_uses: u64,
    secret_id_ttl: u64,
    local_secret_ids: bool,
    #[serde(flatten)]
    token: TokenFields,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SecretIdEntry {
    secret_id_hmac: String,
    accessor: String,
    metadata: BTreeMap<String, String>,
    cidr_list: Vec<String>,
    token_bound_cidrs: Vec<String>,
    /// Uses left; 0 means unlimited.
    num_uses: u64,
    ttl: u64,
    creation_time: i64,
    /// Unix seconds; 0 means never.
    expiration_time: i64,
    last_updated_time: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct AccessorEntry {
    role_hmac: String,
    secret_id_hmac: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RoleIdEntry {
    name: String,
}

const INVALID_CREDENTIALS: &str = "invalid role or secret ID";

#[async_trait]
impl Engine for AppRoleEngine {
    fn is_unauthenticated(&self, path: &str) -> bool {
        path == "login"
    }

    async fn exists(
        &self,
        ctx: &EngineContext,
        request: &EngineRequest,
    ) -> Result<Option<bool>, Error> {
        match request.path.strip_prefix("role/").and_then(name_segment) {
            Some(name) => Ok(Some(ctx.storage.get(&role_key(name)).await?.is_some())),
            None => Ok(None),
        }
    }

    async fn handle(
        &self,
        ctx: &EngineContext,
        request: EngineRequest,
    ) -> Result<EngineResponse, Error> {
        let operation = request.op();
        if operation == Operation::List && is_list_root(&request.path, "role") {
            let mut keys = ctx.storage.list("role/").await?;
            keys.sort();
            return EngineResponse::list(keys);
        }
        let path = request.path.trim_end_matches('/').to_string();
        let segments: Vec<&str> = path.split('/').collect();
        let write = matches!(operation, Operation::Create | Operation::Update);
        let data = &request.data;
        match (operation, segments.as_slice()) {
            (_, ["login"]) if write => self.login(ctx, data).await,
            (_, ["tidy", "secret-id"]) if write => self.tidy(ctx).await,
            (Operation::Read, ["role", name]) => self.read_role(ctx, name).await,
            (_, ["role", name]) if write => self.write_role(ctx, name, data).await,
            (Operation::Delete, ["role", name]) => self.delete_role(ctx, name).await,
            (Operation::Read, ["role", name, "role-id"]) => {
                let role = self.role(ctx, name).await?.ok_or_else(Error::not_found)?;
                Ok(data_response([("role_id", Value::from(role.role_id))]))
            }
            (_, ["role", name, "role-id"]) if write => self.set_role_id(ctx, name, data).await,
            (_, ["role", name, "secret-id"]) if write => {
                self.create_secret_id(ctx, name, data, None).await
            }
            (_, ["role", name, "custom-secret-id"]) if write => {
                let custom = secret::field(data, "secret_id")?
                    .ok_or_else(|| Error::invalid("missing secret_id"))?;
                self.create_secret_id(ctx, name, data, Some(custom)).await
            }
            (Operation::List, ["role", name, "secret-id"]) => self.list_accessors(ctx, name).await,
            (_, ["role", name, "secret-id", "lookup"]) if write => {
                let (role_hmac, sid_hmac) = self.secret_id_location(ctx, name, data).await?;
                self.lookup(ctx, &role_hmac, &sid_hmac).await
            }
            (_, ["role", name, "secret-id", "destroy"])
                if write || operation == Operation::Delete =>
            {
                let (role_hmac, sid_hmac) = self.secret_id_location(ctx, name, data).await?;
                let _guard = self.secret_ids.lock().await;
                self.destroy(ctx, &role_hmac, &sid_hmac).await?;
                Ok(EngineResponse::empty())
            }
            (_, ["role", name, "secret-id-accessor", "lookup"]) if write => {
                let accessor = self.accessor_of_role(ctx, name, data).await?;
                self.lookup(ctx, &accessor.role_hmac, &accessor.secret_id_hmac)
                    .await
            }
            (_, ["role", name, "secret-id-accessor", "destroy"])
                if write || operation == Operation::Delete =>
            {
                let _guard = self.secret_ids.lock().await;
                let accessor = self.accessor_of_role(ctx, name, data).await?;
                self.destroy(ctx, &accessor.role_hmac, &accessor.secret_id_hmac)
                    .await?;
                Ok(EngineResponse::empty())
            }
            _ => Err(Error::UnsupportedPath(request.path)),
        }
    }
}

impl AppRoleEngine {
    async fn login(
        &self,
        ctx: &EngineContext,
        data: &Map<String, Value>,
    ) -> Result<EngineResponse, Error> {
        let role_id =
            secret::field(data, "role_id")?.ok_or_else(|| Error::invalid("missing role_id"))?;
        let key = self.key(&ctx.storage).await?;
        let index: Option<RoleIdEntry> = ctx
            .storage
            .get_json(&format!("role_id/{}", mac(&key, role_id.expose())))
            .await?;
        let Some(index) = index else {
            return Err(Error::invalid(INVALID_CREDENTIALS));
        };
        let Some(role) = self.role(ctx, &index.name).await? else {
            return Err(Error::invalid(INVALID_CREDENTIALS));
        };
        if !bool::from(role.role_id.as_bytes().ct_eq(role_id.expose().as_bytes())) {
            return Err(Error::invalid(INVALID_CREDENTIALS));
        }
        let remote = ctx.remote_address.as_deref();
        if !role.secret_id_bound_cidrs.is_empty()
            && !ward_core::cidr::allowed(&role.secret_id_bound_cidrs, remote)
        {
            return Err(Error::PermissionDenied(
                "source address unauthorized through CIDR restrictions on the role".into(),
            ));
        }
        let mut metadata = BTreeMap::new();
        let mut token_bound_cidrs = role.token.token_bound_cidrs.clone();
        if role.bind_secret_id {
            let secret_id = secret::field(data, "secret_id")?
                .ok_or_else(|| Error::invalid("missing secret_id"))?;
            let role_hmac = mac(&key, &index.name);
            let sid_hmac = mac(&key, secret_id.expose());
            let _guard = self.secret_ids.lock().await;
            let storage_key = secret_id_key(&role_hmac, &sid_hmac);
            let Some(mut entry) = ctx.storage.get_json::<SecretIdEntry>(&storage_key).await? else {
                return Err(Error::invalid(INVALID_CREDENTIALS));
            };
            if !bool::from(entry.secret_id_hmac.as_bytes().ct_eq(sid_hmac.as_bytes())) {
                return Err(Error::invalid(INVALID_CREDENTIALS));
            }
            let now = ctx.now.unix_timestamp();
            if entry.expired(now) {
                self.destroy(ctx, &role_hmac, &sid_hmac).await?;
                return Err(Error::invalid(INVALID_CREDENTIALS));
            }
            if !entry.cidr_list.is_empty() && !ward_core::cidr::allowed(&entry.cidr_list, remote) {
                return Err(Error::PermissionDenied(
                    "source address unauthorized through CIDR restrictions on the secret ID".into(),
                ));
            }
            let bound = if entry.token_bound_cidrs.is_empty() {
                &token_bound_cidrs
            } else {
                &entry.token_bound_cidrs
            };
            if !bound.is_empty() && !ward_core::cidr::allowed(bound, remote) {
                return Err(Error::denied());
            }
            // Every check has passed: spend a use. A request refused by a binding above
            // never spends one, so a stolen secret id used from elsewhere cannot burn it.
            match entry.num_uses {
                0 => {}
                1 => self.destroy(ctx, &role_hmac, &sid_hmac).await?,
                _ => {
                    entry.num_uses -= 1;
                    entry.last_updated_time = now;
                    ctx.storage.put_json(&storage_key, &entry).await?;
                }
            }
            metadata = entry.metadata.clone();
            if !entry.token_bound_cidrs.is_empty() {
                token_bound_cidrs = entry.token_bound_cidrs.clone();
            }
        }
        if !token_bound_cidrs.is_empty() && !ward_core::cidr::allowed(&token_bound_cidrs, remote) {
            return Err(Error::denied());
        }
        let mut auth = role.token.auth_spec();
        auth.bound_cidrs = token_bound_cidrs;
        auth.internal = serde_json::json!({"role_name": index.name});
        metadata.insert("role_name".into(), index.name.clone());
        auth.metadata = metadata;
        auth.alias = Some(AliasSpec {
            name: role.role_id.clone(),
            metadata: BTreeMap::from([("role_name".to_string(), index.name.clone())]),
        });
        Ok(EngineResponse {
            auth: Some(auth),
            ..EngineResponse::default()
        })
    }

    async fn read_role(&self, ctx: &EngineContext, name: &str) -> Result<EngineResponse, Error> {
        let role = self.role(ctx, name).await?.ok_or_else(Error::not_found)?;
        let mut data = Map::new();
        data.insert("bind_secret_id".into(), Value::from(role.bind_secret_id));
        data.insert(
            "secret_id_bound_cidrs".into(),
            Value::from(role.secret_id_bound_cidrs.clone()),
        );
        data.insert(
            "secret_id_num_uses".into(),
            Value::from(role.secret_id_num_uses),
        );
        data.insert("secret_id_ttl".into(), Value::from(role.secret_id_ttl));
        data.insert(
            "local_secret_ids".into(),
            Value::from(role.local_secret_ids),
        );
        role.token.write_to(&mut data);
        Ok(EngineResponse::with_data(data))
    }

    async fn write_role(
        &self,
        ctx: &EngineContext,
        name: &str,
        data: &Map<String, Value>,
    ) -> Result<EngineResponse, Error> {
        let name = role_name(name)?;
        let existing = self.role(ctx, &name).await?;
        let creating = existing.is_none();
        let mut role = existing.unwrap_or_else(|| RoleEntry {
            role_id: String::new(),
            bind_secret_id: true,
            secret_id_bound_cidrs: Vec::new(),
            secret_id_num_uses: 0,
            secret_id_ttl: 0,
            local_secret_ids: false,
            token: TokenFields::default(),
        });
        if let Some(v) = fields::boolean(data, "bind_secret_id")? {
            role.bind_secret_id = v;
        }
        if let Some(v) = fields::strings(data, "secret_id_bound_cidrs")? {
            role.secret_id_bound_cidrs = parse_cidrs(v)?;
        }
        if let Some(v) = fields::integer(data, "secret_id_num_uses")? {
            role.secret_id_num_uses = u64::try_from(v)
                .map_err(|_| Error::invalid("secret_id_num_uses cannot be negative"))?;
        }
        if let Some(v) = fields::duration(data, "secret_id_ttl")? {
            role.secret_id_ttl = v;
        }
        if let Some(v) = fields::boolean(data, "local_secret_ids")? {
            if !creating && v != role.local_secret_ids {
                return Err(Error::invalid(
                    "local_secret_ids can only be modified during role creation",
                ));
            }
            role.local_secret_ids = v;
        }
        role.token.update(data)?;
        if !role.bind_secret_id
            && role.secret_id_bound_cidrs.is_empty()
            && role.token.token_bound_cidrs.is_empty()
        {
            return Err(Error::invalid(
                "at least one constraint should be enabled on the role",
            ));
        }
        let key = self.key(&ctx.storage).await?;
        let requested_role_id = fields::string(data, "role_id")?.filter(|r| !r.is_empty());
        let mut ops = Vec::new();
        match requested_role_id {
            Some(role_id) if role_id != role.role_id => {
                self.ensure_role_id_free(ctx, &key, &role_id).await?;
                if !role.role_id.is_empty() {
                    ops.push(ViewOp::Delete {
                        key: format!("role_id/{}", mac(&key, &role.role_id)),
                    });
                }
                role.role_id = role_id;
            }
            Some(_) => {}
            None if creating => role.role_id = uuid::Uuid::new_v4().to_string(),
            None => {}
        }
        ops.push(put(
            format!("role_id/{}", mac(&key, &role.role_id)),
            &RoleIdEntry { name: name.clone() },
        )?);
        ops.push(put(role_key(&name), &role)?);
        ctx.storage.transaction(ops).await?;
        Ok(EngineResponse::empty())
    }

    async fn delete_role(&self, ctx: &EngineContext, name: &str) -> Result<EngineResponse, Error> {
        let Some(role) = self.role(ctx, name).await? else {
            return Ok(EngineResponse::empty());
        };
        let key = self.key(&ctx.storage).await?;
        let role_hmac = mac(&key, &normalize(name));
        let _guard = self.secret_ids.lock().await;
        for sid_hmac in ctx.storage.list(&format!("secret_id/{role_hmac}/")).await? {
            self.destroy(ctx, &role_hmac, &sid_hmac).await?;
        }
        ctx.storage
            .transaction(vec![
                ViewOp::Delete {
                    key: format!("role_id/{}", mac(&key, &role.role_id)),
                },
                ViewOp::Delete {
                    key: role_key(name),
                },
            ])
            .await?;
        Ok(EngineResponse::empty())
    }

    async fn set_role_id(
        &self,
        ctx: &EngineContext,
        name: &str,
        data: &Map<String, Value>,
    ) -> Result<EngineResponse, Error> {
        let mut role = self
            .role(ctx, name)
            .await?
            .ok_or_else(|| Error::invalid(format!("role {name:?} does not exist")))?;
        let role_id = fields::string(data, "role_id")?
            .filter(|r| !r.is_empty())
            .ok_or_else(|| Error::invalid("missing role_id"))?;
        if role_id == role.role_id {
            return Ok(EngineResponse::empty());
        }
        let key = self.key(&ctx.storage).await?;
        self.ensure_role_id_free(ctx, &key, &role_id).await?;
        let old = format!("role_id/{}", mac(&key, &role.role_id));
        role.role_id = role_id;
        ctx.storage
            .transaction(vec![
                ViewOp::Delete { key: old },
                put(
                    format!("role_id/{}", mac(&key, &role.role_id)),
                    &RoleIdEntry {
                        name: normalize(name),
                    },
                )?,
                put(role_key(name), &role)?,
            ])
            .await?;
        Ok(EngineResponse::empty())
    }

    async fn ensure_role_id_free(
        &self,
        ctx: &EngineContext,
        key: &[u8],
        role_id: &str,
    ) -> Result<(), Error> {
        if ctx
            .storage
            .get(&format!("role_id/{}", mac(key, role_id)))
            .await?
            .is_some()
        {
            return Err(Error::invalid("role_id already in use"));
        }
        Ok(())
    }

    async fn create_secret_id(
        &self,
        ctx: &EngineContext,
        name: &str,
        data: &Map<String, Value>,
        custom: Option<Secret>,
    ) -> Result<EngineResponse, Error> {
        let role = self
            .role(ctx, name)
            .await?
            .ok_or_else(|| Error::invalid(format!("role {name:?} does not exist")))?;
        if !role.bind_secret_id {
            return Err(Error::invalid("bind_secret_id is not set on the role"));
        }
        let metadata = match fields::string(data, "metadata")? {
            None => BTreeMap::new(),
            Some(raw) if raw.trim().is_empty() => BTreeMap::new(),
            Some(raw) => serde_json::from_str::<BTreeMap<String, String>>(&raw)
                .map_err(|e| Error::invalid(format!("failed to parse metadata: {e}")))?,
        };
        let cidr_list = parse_cidrs(fields::strings(data, "cidr_list")?.unwrap_or_default())?;
        if !cidr_list.is_empty()
            && !role.secret_id_bound_cidrs.is_empty()
            && !subset(&cidr_list, &role.secret_id_bound_cidrs)
        {
            return Err(Error::invalid(
                "failed to verify the CIDR restrictions set on the secret ID: cidr_list is not a subset of the role's secret_id_bound_cidrs",
            ));
        }
        let token_bound_cidrs =
            parse_cidrs(fields::strings(data, "token_bound_cidrs")?.unwrap_or_default())?;
        if !token_bound_cidrs.is_empty()
            && !role.token.token_bound_cidrs.is_empty()
            && !subset(&token_bound_cidrs, &role.token.token_bound_cidrs)
        {
            return Err(Error::invalid(
                "failed to verify the token CIDR restrictions set on the secret ID: token_bound_cidrs is not a subset of the role's",
            ));
        }
        let num_uses = match fields::integer(data, "num_uses")? {
            None => role.secret_id_num_uses,
            Some(v) => {
                let v =
                    u64::try_from(v).map_err(|_| Error::invalid("num_uses cannot be negative"))?;
                if role.secret_id_num_uses > 0 && (v == 0 || v > role.secret_id_num_uses) {
                    return Err(Error::invalid(
                        "num_uses cannot be higher than the role's secret_id_num_uses",
                    ));
                }
                v
            }
        };
        let ttl = match fields::duration(data, "ttl")? {
            None | Some(0) => role.secret_id_ttl,
            Some(v) if role.secret_id_ttl > 0 && v > role.secret_id_ttl => {
                return Err(Error::invalid(
                    "ttl cannot be longer than the role's secret_id_ttl",
                ));
            }
            Some(v) => v,
        };
        let secret_id = custom.unwrap_or_else(|| Secret::new(uuid::Uuid::new_v4().to_string()));
        let accessor = uuid::Uuid::new_v4().to_string();
        let key = self.key(&ctx.storage).await?;
        let role_hmac = mac(&key, &normalize(name));
        let sid_hmac = mac(&key, secret_id.expose());
        let now = ctx.now.unix_timestamp();
        let entry = SecretIdEntry {
            secret_id_hmac: sid_hmac.clone(),
            accessor: accessor.clone(),
            metadata,
            cidr_list,
            token_bound_cidrs,
            num_uses,
            ttl,
            creation_time: now,
            expiration_time: if ttl > 0 {
                now.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX))
            } else {
                0
            },
            last_updated_time: now,
        };
        let _guard = self.secret_ids.lock().await;
        let storage_key = secret_id_key(&role_hmac, &sid_hmac);
        if ctx.storage.get(&storage_key).await?.is_some() {
            return Err(Error::invalid("secret_id is already registered"));
        }
        ctx.storage
            .transaction(vec![
                put(storage_key, &entry)?,
                put(
                    format!("accessor/{}", mac(&key, &accessor)),
                    &AccessorEntry {
                        role_hmac,
                        secret_id_hmac: sid_hmac,
                    },
                )?,
            ])
            .await?;
        Ok(data_response([
            ("secret_id", Value::from(secret_id.expose())),
            ("secret_id_accessor", Value::from(accessor)),
            ("secret_id_ttl", Value::from(ttl)),
            ("secret_id_num_uses", Value::from(num_uses)),
        ]))
    }

    async fn list_accessors(
        &self,
        ctx: &EngineContext,
        name: &str,
    ) -> Result<EngineResponse, Error> {
        self.role(ctx, name)
            .await?
            .ok_or_else(|| Error::invalid(format!("role {name:?} does not exist")))?;
        let key = self.key(&ctx.storage).await?;
        let role_hmac = mac(&key, &normalize(name));
        let mut accessors = Vec::new();
        for sid_hmac in ctx.storage.list(&format!("secret_id/{role_hmac}/")).await? {
            if let Some(entry) = ctx
                .storage
                .get_json::<SecretIdEntry>(&secret_id_key(&role_hmac, &sid_hmac))
                .await?
            {
                accessors.push(entry.accessor);
            }
        }
        accessors.sort();
        EngineResponse::list(accessors)
    }

    /// Where the `secret_id` of a request is stored for role `name`.
    async fn secret_id_location(
        &self,
        ctx: &EngineContext,
        name: &str,
        data: &Map<String, Value>,
    ) -> Result<(String, String), Error> {
        let secret_id =
            secret::field(data, "secret_id")?.ok_or_else(|| Error::invalid("missing secret_id"))?;
        self.role(ctx, name)
            .await?
            .ok_or_else(|| Error::invalid(format!("role {name:?} does not exist")))?;
        let key = self.key(&ctx.storage).await?;
        Ok((mac(&key, &normalize(name)), mac(&key, secret_id.expose())))
    }

    /// The accessor of a request, only if it belongs to role `name`: an accessor of another
    /// role answers exactly like an unknown one (CVE-2023-24999).
    async fn accessor_of_role(
        &self,
        ctx: &EngineContext,
        name: &str,
        data: &Map<String, Value>,
    ) -> Result<AccessorEntry, Error> {
        let accessor = fields::string(data, "secret_id_accessor")?
            .filter(|a| !a.is_empty())
            .ok_or_else(|| Error::invalid("missing secret_id_accessor"))?;
        self.role(ctx, name)
            .await?
            .ok_or_else(|| Error::invalid(format!("role {name:?} does not exist")))?;
        let key = self.key(&ctx.storage).await?;
        let role_hmac = mac(&key, &normalize(name));
        let entry: Option<AccessorEntry> = ctx
            .storage
            .get_json(&format!("accessor/{}", mac(&key, &accessor)))
            .await?;
        match entry {
            Some(entry) if bool::from(entry.role_hmac.as_bytes().ct_eq(role_hmac.as_bytes())) => {
                Ok(entry)
            }
            _ => Err(Error::invalid(format!(
                "failed to find accessor entry for secret_id_accessor: {accessor:?}"
            ))),
        }
    }

    async fn lookup(
        &self,
        ctx: &EngineContext,
        role_hmac: &str,
        sid_hmac: &str,
    ) -> Result<EngineResponse, Error> {
        let Some(entry) = ctx
            .storage
            .get_json::<SecretIdEntry>(&secret_id_key(role_hmac, sid_hmac))
            .await?
        else {
            // Vault answers an unknown secret id with no content.
            return Ok(EngineResponse::empty());
        };
        if entry.expired(ctx.now.unix_timestamp()) {
            return Ok(EngineResponse::empty());
        }
        Ok(data_response([
            ("secret_id_accessor", Value::from(entry.accessor.clone())),
            ("secret_id_num_uses", Value::from(entry.num_uses)),
            ("secret_id_ttl", Value::from(entry.ttl)),
            ("creation_time", Value::from(rfc3339(entry.creation_time))),
            (
                "expiration_time",
                Value::from(rfc3339(entry.expiration_time)),
            ),
            (
                "last_updated_time",
                Value::from(rfc3339(entry.last_updated_time)),
            ),
            (
                "metadata",
                serde_json::to_value(&entry.metadata).unwrap_or_default(),
            ),
            ("cidr_list", Value::from(entry.cidr_list.clone())),
            (
                "token_bound_cidrs",
                Value::from(entry.token_bound_cidrs.clone()),
            ),
        ]))
    }

    /// Removes a secret id and its accessor. Callers hold the secret-id lock.
    async fn destroy(
        &self,
        ctx: &EngineContext,
        role_hmac: &str,
        sid_hmac: &str,
    ) -> Result<(), Error> {
        let storage_key = secret_id_key(role_hmac, sid_hmac);
        let Some(entry) = ctx.storage.get_json::<SecretIdEntry>(&storage_key).await? else {
            return Ok(());
        };
        let key = self.key(&ctx.storage).await?;
        ctx.storage
            .transaction(vec![
                ViewOp::Delete { key: storage_key },
                ViewOp::Delete {
                    key: format!("accessor/{}", mac(&key, &entry.accessor)),
                },
            ])
            .await
    }

    /// Removes expired secret ids, and accessors whose secret id is gone.
    async fn tidy(&self, ctx: &EngineContext) -> Result<EngineResponse, Error> {
        let _guard = self.secret_ids.lock().await;
        let now = ctx.now.unix_timestamp();
        let mut n_removed = 0u64;
        for key in scan_all(&ctx.storage, "secret_id/").await? {
            let Some(entry) = ctx.storage.get_json::<SecretIdEntry>(&key).await? else {
                continue;
            };
            let Some((role_hmac, sid_hmac)) = key
                .strip_prefix("secret_id/")
                .and_then(|k| k.split_once('/'))
            else {
                continue;
            };
            if entry.expired(now) {
                self.destroy(ctx, role_hmac, sid_hmac).await?;
                n_removed += 1;
            }
        }
        for key in scan_all(&ctx.storage, "accessor/").await? {
            let Some(accessor) = ctx.storage.get_json::<AccessorEntry>(&key).await? else {
                continue;
            };
            let target = secret_id_key(&accessor.role_hmac, &accessor.secret_id_hmac);
            if ctx.storage.get(&target).await?.is_none() {
                ctx.storage.delete(&key).await?;
            }
        }
        tracing::info!(mount = %ctx.mount.path, n_removed, "approle secret-id tidy finished");
        Ok(EngineResponse::empty())
    }

    async fn role(&self, ctx: &EngineContext, name: &str) -> Result<Option<RoleEntry>, Error> {
        ctx.storage.get_json(&role_key(name)).await
    }

    /// The mount's HMAC key, created on first use.
    async fn key(&self, storage: &StorageView) -> Result<Zeroizing<Vec<u8>>, Error> {
        let key = self
            .hmac_key
            .get_or_try_init(|| async {
                if let Some(existing) = storage.get("salt").await? {
                    return Ok::<_, Error>(existing);
                }
                let mut fresh = Zeroizing::new(vec![0u8; 32]);
                rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut fresh);
                storage.put("salt", &fresh).await?;
                Ok(fresh)
            })
            .await?;
        Ok(key.clone())
    }
}

impl SecretIdEntry {
    fn expired(&self, now: i64) -> bool {
        self.expiration_time != 0 && now >= self.expiration_time
    }
}

fn normalize(name: &str) -> String {
    name.to_lowercase()
}

fn role_name(name: &str) -> Result<String, Error> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
    {
        return Err(Error::invalid(format!("invalid role name {name:?}")));
    }
    Ok(normalize(name))
}

fn role_key(name: &str) -> String {
    format!("role/{}", normalize(name))
}

fn secret_id_key(role_hmac: &str, sid_hmac: &str) -> String {
    format!("secret_id/{role_hmac}/{sid_hmac}")
}

fn mac(key: &[u8], value: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail; an empty MAC would only ever
    // miss in storage.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(value.as_bytes());
            hex::encode(m.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

fn put<T: Serialize>(key: String, value: &T) -> Result<ViewOp, Error> {
    Ok(ViewOp::Put {
        key,
        value: ward_core::view::encode_json(value)?,
    })
}

fn data_response<const N: usize>(pairs: [(&str, Value); N]) -> EngineResponse {
    EngineResponse::with_data(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn rfc3339(unix: i64) -> String {
    if unix == 0 {
        return "0001-01-01T00:00:00Z".into();
    }
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Whether every block of `inner` lies inside some block of `outer`.
fn subset(inner: &[String], outer: &[String]) -> bool {
    inner.iter().all(|cidr| {
        let Some((network, bits)) = ward_core::cidr::parse(cidr) else {
            return false;
        };
        outer.iter().any(|o| {
            ward_core::cidr::parse(o).is_some_and(|(_, outer_bits)| outer_bits <= bits)
                && ward_core::cidr::contains(o, &network)
        })
    })
}

async fn scan_all(storage: &StorageView, prefix: &str) -> Result<Vec<String>, Error> {
    let mut keys: Vec<String> = Vec::new();
    loop {
        let after = keys.last().cloned().unwrap_or_default();
        let page = storage.scan(prefix, &after, 1000).await?;
        if page.is_empty() {
            return Ok(keys);
        }
        keys.extend(page);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use time::Duration;

    use super::*;
    use crate::auth::test_support::auth_context;
    use crate::testing::request;

    async fn call(
        engine: &AppRoleEngine,
        ctx: &EngineContext,
        op: Operation,
        path: &str,
        body: Value,
    ) -> Result<EngineResponse, Error> {
        engine.handle(ctx, request(op, path, body)).await
    }

    fn field(response: &EngineResponse, key: &str) -> Value {
        response
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .cloned()
            .unwrap_or(Value::Null)
    }

    async fn setup(role: Value) -> (AppRoleEngine, EngineContext, String) {
        let engine = AppRoleEngine::default();
        let ctx = auth_context("approle").await;
        call(&engine, &ctx, Operation::Create, "role/web", role)
            .await
            .expect("role");
        let role_id = call(
            &engine,
            &ctx,
            Operation::Read,
            "role/web/role-id",
            json!({}),
        )
        .await
        .expect("role-id");
        let role_id = field(&role_id, "role_id")
            .as_str()
            .expect("role_id")
            .to_string();
        (engine, ctx, role_id)
    }

    async fn new_secret_id(
        engine: &AppRoleEngine,
        ctx: &EngineContext,
        body: Value,
    ) -> (String, String) {
        let created = call(engine, ctx, Operation::Update, "role/web/secret-id", body)
            .await
            .expect("secret-id");
        (
            field(&created, "secret_id")
                .as_str()
                .expect("secret_id")
                .to_string(),
            field(&created, "secret_id_accessor")
                .as_str()
                .expect("accessor")
                .to_string(),
        )
    }

    #[tokio::test]
    async fn login_with_role_id_and_secret_id() {
        let (engine, ctx, role_id) =
            setup(json!({"token_policies": ["web"], "token_ttl": "10m"})).await;
        let (secret_id, _) =
            new_secret_id(&engine, &ctx, json!({"metadata": "{\"team\":\"blue\"}"})).await;
        let login = call(
            &engine,
            &ctx,
            Operation::Update,
            "login",
            json!({"role_id": role_id, "secret_id": secret_id}),
        )
        .await
        .expect("login");
        let auth = login.auth.expect("auth");
        assert_eq!(auth.policies, ["web"]);
        assert_eq!(auth.ttl, 600);
        assert_eq!(
            auth.metadata.get("role_name").map(String::as_str),
            Some("web")
        );
        assert_eq!(auth.metadata.get("team").map(String::as_str), Some("blue"));
        assert_eq!(auth.alias.map(|a| a.name), Some(role_id.clone()));

        for (body, want) in [
            (
                json!({"role_id": role_id, "secret_id": "wrong"}),
                "invalid role or secret ID",
            ),
            (
                json!({"role_id": "unknown", "secret_id": secret_id}),
                "invalid role or secret ID",
            ),
            (json!({"role_id": role_id}), "missing secret_id"),
            (json!({"secret_id": secret_id}), "missing role_id"),
        ] {
            assert_eq!(
                call(&engine, &ctx, Operation::Update, "login", body).await,
                Err(Error::invalid(want))
            );
        }
    }

    #[tokio::test]
    async fn secret_ids_are_not_stored_in_clear() {
        let (engine, ctx, role_id) = setup(json!({})).await;
        let (secret_id, accessor) = new_secret_id(&engine, &ctx, json!({})).await;
        for key in scan_all(&ctx.storage, "").await.expect("scan") {
            let value = ctx.storage.get(&key).await.expect("get").expect("value");
            let text = String::from_utf8_lossy(&value);
            assert!(
                !key.contains(&secret_id) && !text.contains(&secret_id),
                "{key}"
            );
            assert!(!key.contains(&role_id) || key.starts_with("role/"), "{key}");
            assert!(!key.contains(&accessor), "{key}");
        }
    }

    #[tokio::test]
    async fn num_uses_are_spent_and_ttl_expires() {
        let (engine, mut ctx, role_id) =
            setup(json!({"secret_id_num_uses": 2, "secret_id_ttl": "1h"})).await;
        let (secret_id, _) = new_secret_id(&engine, &ctx, json!({})).await;
        let body = json!({"role_id": role_id, "secret_id": secret_id});
        let lookup = call(
            &engine,
            &ctx,
            Operation::Update,
            "role/web/secret-id/lookup",
            json!({"secret_id": secret_id}),
        )
        .await
        .expect("lookup");
        assert_eq!(field(&lookup, "secret_id_num_uses"), json!(2));
        assert_eq!(field(&lookup, "secret_id_ttl"), json!(3600));
        call(&engine, &ctx, Operation::Update, "login", body.clone())
            .await
            .expect("first use");
        call(&engine, &ctx, Operation::Update, "login", body.clone())
            .await
            .expect("second use");
        assert_eq!(
            call(&engine, &ctx, Operation::Update, "login", body).await,
            Err(Error::invalid("invalid role or secret ID")),
            "the third use is refused"
        );

        let (secret_id, _) = new_secret_id(&engine, &ctx, json!({"ttl": 60})).await;
        let body = json!({"role_id": role_id, "secret_id": secret_id});
        ctx.now += Duration::seconds(61);
        assert_eq!(
            call(&engine, &ctx, Operation::Update, "login", body).await,
            Err(Error::invalid("invalid role or secret ID"))
        );

        for (bad, want) in [
            (
                json!({"num_uses": 3}),
                "num_uses cannot be higher than the role's secret_id_num_uses",
            ),
            (
                json!({"num_uses": 0}),
                "num_uses cannot be higher than the role's secret_id_num_uses",
            ),
            (
                json!({"ttl": "2h"}),
                "ttl cannot be longer than the role's secret_id_ttl",
            ),
        ] {
            assert_eq!(
                call(&engine, &ctx, Operation::Update, "role/web/secret-id", bad).await,
                Err(Error::invalid(want))
            );
        }
    }

    #[tokio::test]
    async fn concurrent_logins_cannot_overspend_a_single_use() {
        let (engine, ctx, role_id) = setup(json!({"secret_id_num_uses": 1})).await;
        let (secret_id, _) = new_secret_id(&engine, &ctx, json!({})).await;
        let body = json!({"role_id": role_id, "secret_id": secret_id});
        let attempts =
            (0..8).map(|_| call(&engine, &ctx, Operation::Update, "login", body.clone()));
        let results = futures_join(attempts).await;
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    }

    async fn futures_join<F: std::future::Future<Output = T>, T>(
        futures: impl Iterator<Item = F>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        let pinned: Vec<_> = futures.map(Box::pin).collect();
        // Poll them together on one task so that they really interleave at await points.
        let mut pending: Vec<_> = pinned.into_iter().map(Some).collect();
        std::future::poll_fn(|cx| {
            for slot in pending.iter_mut() {
                if let Some(future) = slot {
                    if let std::task::Poll::Ready(value) = future.as_mut().poll(cx) {
                        out.push(value);
                        *slot = None;
                    }
                }
            }
            if pending.iter().all(Option::is_none) {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
        out
    }

    #[tokio::test]
    async fn cidr_bindings_on_secret_id_and_role() {
        let (engine, mut ctx, role_id) =
            setup(json!({"secret_id_bound_cidrs": ["10.0.0.0/8"]})).await;
        let outside = call(
            &engine,
            &ctx,
            Operation::Update,
            "role/web/secret-id",
            json!({"cidr_list": "192.168.0.0/16"}),
        )
        .await;
        assert!(
            matches!(outside, Err(Error::InvalidRequest(m)) if m.starts_with("failed to verify the CIDR restrictions"))
        );
        let (secret_id, _) = new_secret_id(
            &engine,
            &ctx,
            json!({"cidr_list": "10.1.0.0/16", "token_bound_cidrs": "10.1.2.0/24"}),
        )
        .await;
        let body = json!({"role_id": role_id, "secret_id": secret_id});
        ctx.remote_address = Some("10.2.0.1".into());
        assert!(matches!(
            call(&engine, &ctx, Operation::Update, "login", body.clone()).await,
            Err(Error::PermissionDenied(_))
        ));
        ctx.remote_address = Some("10.1.9.9".into());
        assert_eq!(
            call(&engine, &ctx, Operation::Update, "login", body.clone()).await,
            Err(Error::denied()),
            "token_bound_cidrs"
        );
        ctx.remote_address = Some("10.1.2.3".into());
        let login = call(&engine, &ctx, Operation::Update, "login", body)
            .await
            .expect("inside every binding");
        assert_eq!(login.auth.expect("auth").bound_cidrs, ["10.1.2.0/24"]);
    }

    #[tokio::test]
    async fn accessors_only_work_on_their_own_role() {
        let (engine, ctx, _) = setup(json!({})).await;
        call(&engine, &ctx, Operation::Create, "role/other", json!({}))
            .await
            .expect("other role");
        let (secret_id, accessor) = new_secret_id(&engine, &ctx, json!({})).await;
        let foreign = call(
            &engine,
            &ctx,
            Operation::Update,
            "role/other/secret-id-accessor/lookup",
            json!({"secret_id_accessor": accessor}),
        )
        .await;
        let unknown = call(
            &engine,
            &ctx,
            Operation::Update,
            "role/other/secret-id-accessor/lookup",
            json!({"secret_id_accessor": "nope"}),
        )
        .await;
        assert!(
            matches!(&foreign, Err(Error::InvalidRequest(m)) if m.starts_with("failed to find accessor entry"))
        );
        assert!(matches!(unknown, Err(Error::InvalidRequest(_))));
        let destroy_foreign = call(
            &engine,
            &ctx,
            Operation::Update,
            "role/other/secret-id-accessor/destroy",
            json!({"secret_id_accessor": accessor}),
        )
        .await;
        assert!(
            destroy_foreign.is_err(),
            "another role's accessor cannot destroy it"
        );
        let own = call(
            &engine,
            &ctx,
            Operation::Update,
            "role/web/secret-id-accessor/lookup",
            json!({"secret_id_accessor": accessor}),
        )
        .await
        .expect("own lookup");
        assert_eq!(field(&own, "secret_id_accessor"), json!(accessor));
        let listed = call(
            &engine,
            &ctx,
            Operation::List,
            "role/web/secret-id",
            json!({}),
        )
        .await
        .expect("list");
        assert_eq!(field(&listed, "keys"), json!([accessor]));
        call(
            &engine,
            &ctx,
            Operation::Update,
            "role/web/secret-id-accessor/destroy",
            json!({"secret_id_accessor": accessor}),
        )
        .await
        .expect("destroy");
        let gone = call(
            &engine,
            &ctx,
            Operation::Update,
            "role/web/secret-id/lookup",
            json!({"secret_id": secret_id}),
        )
        .await;
        assert_eq!(gone, Ok(EngineResponse::empty()));
    }

    #[tokio::test]
    async fn custom_secret_id_and_custom_role_id() {
        let (engine, ctx, _) = setup(json!({"role_id": "my-role-id"})).await;
        call(
            &engine,
            &ctx,
            Operation::Update,
            "role/web/custom-secret-id",
            json!({"secret_id": "s3cr3t"}),
        )
        .await
        .expect("custom");
        let again = call(
            &engine,
            &ctx,
            Operation::Update,
            "role/web/custom-secret-id",
            json!({"secret_id": "s3cr3t"}),
        )
        .await;
        assert_eq!(
            again,
            Err(Error::invalid("secret_id is already registered"))
        );
        call(
            &engine,
            &ctx,
            Operation::Update,
            "login",
            json!({"role_id": "my-role-id", "secret_id": "s3cr3t"}),
        )
        .await
        .expect("login");
        call(
            &engine,
            &ctx,
            Operation::Update,
            "role/web/role-id",
            json!({"role_id": "renamed"}),
        )
        .await
        .expect("set role-id");
        let old = call(
            &engine,
            &ctx,
            Operation::Update,
            "login",
            json!({"role_id": "my-role-id", "secret_id": "s3cr3t"}),
        )
        .await;
        assert_eq!(old, Err(Error::invalid("invalid role or secret ID")));
        call(
            &engine,
            &ctx,
            Operation::Update,
            "login",
            json!({"role_id": "renamed", "secret_id": "s3cr3t"}),
        )
        .await
        .expect("login");
        call(&engine, &ctx, Operation::Create, "role/dup", json!({}))
            .await
            .expect("dup");
        let taken = call(
            &engine,
            &ctx,
            Operation::Update,
            "role/dup/role-id",
            json!({"role_id": "renamed"}),
        )
        .await;
        assert_eq!(taken, Err(Error::invalid("role_id already in use")));
    }

    #[tokio::test]
    async fn roles_read_list_delete_and_constraints() {
        let (engine, ctx, role_id) =
            setup(json!({"token_policies": "a", "secret_id_ttl": "5m"})).await;
        let read = call(&engine, &ctx, Operation::Read, "role/web", json!({}))
            .await
            .expect("read");
        assert_eq!(field(&read, "bind_secret_id"), json!(true));
        assert_eq!(field(&read, "secret_id_ttl"), json!(300));
        assert_eq!(field(&read, "token_policies"), json!(["a"]));
        let unbound = call(
            &engine,
            &ctx,
            Operation::Create,
            "role/loose",
            json!({"bind_secret_id": false}),
        )
        .await;
        assert_eq!(
            unbound,
            Err(Error::invalid(
                "at least one constraint should be enabled on the role"
            ))
        );
        let listed = call(&engine, &ctx, Operation::List, "role", json!({}))
            .await
            .expect("list");
        assert_eq!(field(&listed, "keys"), json!(["web"]));
        new_secret_id(&engine, &ctx, json!({})).await;
        call(&engine, &ctx, Operation::Delete, "role/web", json!({}))
            .await
            .expect("delete");
        assert!(scan_all(&ctx.storage, "secret_id/")
            .await
            .expect("scan")
            .is_empty());
        assert!(scan_all(&ctx.storage, "accessor/")
            .await
            .expect("scan")
            .is_empty());
        let login = call(
            &engine,
            &ctx,
            Operation::Update,
            "login",
            json!({"role_id": role_id, "secret_id": "x"}),
        )
        .await;
        assert_eq!(login, Err(Error::invalid("invalid role or secret ID")));
    }

    #[tokio::test]
    async fn tidy_removes_expired_secret_ids() {
        let (engine, mut ctx, _) = setup(json!({})).await;
        let (short, _) = new_secret_id(&engine, &ctx, json!({"ttl": 30})).await;
        let (long, _) = new_secret_id(&engine, &ctx, json!({})).await;
        ctx.now += Duration::seconds(31);
        call(
            &engine,
            &ctx,
            Operation::Update,
            "tidy/secret-id",
            json!({}),
        )
        .await
        .expect("tidy");
        assert_eq!(
            scan_all(&ctx.storage, "secret_id/")
                .await
                .expect("scan")
                .len(),
            1
        );
        assert_eq!(
            scan_all(&ctx.storage, "accessor/")
                .await
                .expect("scan")
                .len(),
            1
        );
        let kept = call(
            &engine,
            &ctx,
            Operation::Update,
            "role/web/secret-id/lookup",
            json!({"secret_id": long}),
        )
        .await
        .expect("lookup");
        assert!(kept.data.is_some());
        let gone = call(
            &engine,
            &ctx,
            Operation::Update,
            "role/web/secret-id/lookup",
            json!({"secret_id": short}),
        )
        .await;
        assert_eq!(gone, Ok(EngineResponse::empty()));
    }

    #[tokio::test]
    async fn a_login_refused_by_a_binding_does_not_spend_a_use() {
        let (engine, mut ctx, role_id) = setup(json!({"secret_id_num_uses": 1})).await;
        let (secret_id, _) = new_secret_id(
            &engine,
            &ctx,
            json!({"cidr_list": "10.0.0.0/8", "num_uses": 1}),
        )
        .await;
        let body = json!({"role_id": role_id, "secret_id": secret_id});
        ctx.remote_address = Some("192.0.2.1".into());
        for _ in 0..3 {
            let refused = call(&engine, &ctx, Operation::Update, "login", body.clone()).await;
            assert!(matches!(refused, Err(Error::PermissionDenied(_))));
        }
        ctx.remote_address = Some("10.9.9.9".into());
        call(&engine, &ctx, Operation::Update, "login", body.clone())
            .await
            .expect("the single use is still there");
        let spent = call(&engine, &ctx, Operation::Update, "login", body).await;
        assert_eq!(spent, Err(Error::invalid("invalid role or secret ID")));
    }

    #[test]
    fn cidr_subsets() {
        let outer = vec!["10.0.0.0/8".to_string()];
        assert!(subset(&["10.1.0.0/16".to_string()], &outer));
        assert!(subset(&["10.1.2.3".to_string()], &outer));
        assert!(!subset(&["0.0.0.0/0".to_string()], &outer));
        assert!(!subset(&["11.0.0.0/8".to_string()], &outer));
    }
}
