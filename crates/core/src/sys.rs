//! The `sys/` backend: mounts, auth methods, policies, capabilities, key rotation, sealing
//! and the UI's mount lookup. Response wrapping lives in `wrapping`; control groups
//! (`sys/control-group/*`, `sys/config/control-group`) and access requests (`sys/access/*`)
//! are routed from here to `approvals`.
//!
//! The seal-status family (`sys/init`, `sys/unseal`, `sys/health`, ...) is not here: those
//! endpoints answer while sealed and without a token, so the server calls the core's
//! lifecycle methods for them directly.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::clock::rfc3339_unix;
use crate::core::{Caller, Core, State};
use crate::engine::{fields, Operation};
use crate::error::Error;
use crate::mounts::{is_reserved, normalize_mount_path, MountEntry, Mounted, Table};
use crate::policy_store::normalize;
use crate::request::{Request, Response};

/// `sys/` paths that need no token.
pub(crate) fn is_unauthenticated(path: &str) -> bool {
    matches!(path, "wrapping/lookup")
}

/// `sys/` paths whose handler checks the caller itself instead of the ACL on the path.
pub(crate) fn authorizes_itself(path: &str) -> bool {
    // The approvals inbox and access requests check membership and requester themselves
    // (`approvals`): each answer holds only what the caller may see or act on.
    path.starts_with("internal/ui/mounts")
        || path.trim_end_matches('/') == "control-group/pending"
        || path.starts_with("access/requests")
}

/// Root-protected `sys/` paths: they need `sudo` on top of the operation's capability.
pub(crate) fn requires_sudo(path: &str, operation: Operation) -> bool {
    let path = path.trim_end_matches('/');
    path == "audit"
        || path.starts_with("alerts")
        || path.starts_with("audit/")
        || (path.starts_with("auth/") && operation != Operation::Read)
        || path.starts_with("config/auditing")
        || path == "config/cors"
        || (path.starts_with("leases/lookup") && operation == Operation::List)
        || path.starts_with("leases/revoke-prefix")
        || path.starts_with("leases/revoke-force")
        || path == "leases"
        || path.starts_with("revoke-prefix")
        || path.starts_with("revoke-force")
        || path == "remount"
        || path == "rotate"
        || path == "rotate/keyring"
        || path == "seal"
        || path == "step-down"
        || path.starts_with("raw")
}

impl Core {
    pub(crate) async fn handle_system(
        &self,
        state: &Arc<State>,
        path: &str,
        operation: Operation,
        request: &Request,
        caller: Option<&Caller>,
    ) -> Result<Response, Error> {
        let trimmed = path.trim_end_matches('/');
        let segments: Vec<&str> = trimmed.split('/').collect();
        let data = &request.data;
        let mut response = match (segments.as_slice(), operation) {
            (["audit", ..], _) | (["audit-hash", ..], _) | (["audit-checkpoint", ..], _) => {
                self.handle_audit(state, trimmed, operation, data).await?
            }
            (["quotas", "config"], _) | (["quotas", "rate-limit", ..], _) => {
                self.handle_rate_limit_quotas(state, trimmed, operation, data)
                    .await?
            }
            (["alerts", ..], _) => {
                self.alerts
                    .handle(trimmed.trim_start_matches("alerts"), operation, data)
                    .await?
            }
            (["metrics"], Operation::Read) => self.metrics_endpoint(data),
            (["control-group", ..], _) | (["config", "control-group"], _) => {
                self.handle_control_group(state, trimmed, operation, request, caller)
                    .await?
            }
            (["access", ..], _) => {
                self.handle_access(state, trimmed, operation, request, caller)
                    .await?
            }
            (["mounts"], Operation::Read) => {
                Response::with_data(self.mount_listing(state, Table::Secrets))
            }
            (["auth"], Operation::Read) => {
                Response::with_data(self.mount_listing(state, Table::Auth))
            }
            (["mounts", ..], _) | (["auth", ..], _) => {
                let table = if segments[0] == "mounts" {
                    Table::Secrets
                } else {
                    Table::Auth
                };
                let rest = &trimmed[segments[0].len() + 1..];
                match rest.strip_suffix("/tune") {
                    Some(mount) => self.tune(state, table, mount, operation, data).await?,
                    None => {
                        self.mount_endpoint(state, table, rest, operation, data)
                            .await?
                    }
                }
            }
            (["remount"], op) if op.is_write() => self.remount(state, data).await?,
            (["remount", "status", id], Operation::Read) => {
                Response::with_data(Core::data_map(json!({
                    "migration_id": id,
                    "migration_info": { "status": "success" },
                })))
            }
            (["policy"], Operation::Read) | (["policy"], Operation::List) => {
                let names = state.policies.names().await?;
                Response::with_data(Core::data_map(json!({ "policies": names, "keys": names })))
            }
            (["policies", "acl"], Operation::List) | (["policies", "acl"], Operation::Read) => {
                let names = state.policies.names().await?;
                Response::with_data(Core::data_map(json!({ "keys": names, "policies": names })))
            }
            (["policy", name], op) => {
                self.policy_endpoint_alerted(state, name, op, data, "rules", caller, request)
                    .await?
            }
            (["policies", "acl", name], op) => {
                self.policy_endpoint_alerted(state, name, op, data, "policy", caller, request)
                    .await?
            }
            (["capabilities-self"], op) if op.is_write() => {
                let caller = caller.ok_or_else(Error::denied)?;
                capabilities_response(&caller.acl, data)?
            }
            (["capabilities"], op) if op.is_write() => {
                let token = fields::string(data, "token")?.unwrap_or_default();
                let entry = state
                    .tokens
                    .lookup(&token, self.now_unix())
                    .await?
                    .ok_or_else(|| Error::invalid("invalid token"))?;
                let acl = self.acl_for(state, &entry).await?;
                capabilities_response(&acl, data)?
            }
            (["capabilities-accessor"], op) if op.is_write() => {
                let accessor = fields::string(data, "accessor")?.unwrap_or_default();
                let entry = state
                    .tokens
                    .lookup_accessor(&accessor, self.now_unix())
                    .await?
                    .ok_or_else(|| Error::invalid("invalid accessor"))?;
                let acl = self.acl_for(state, &entry).await?;
                capabilities_response(&acl, data)?
            }
            (["internal", "ui", "mounts"], Operation::Read) => {
                let secret = self.mount_listing(state, Table::Secrets);
                let auth = self.mount_listing(state, Table::Auth);
                Response::with_data(Core::data_map(json!({ "secret": secret, "auth": auth })))
            }
            (["internal", "ui", "mounts", ..], Operation::Read) => {
                let target = trimmed.trim_start_matches("internal/ui/mounts/");
                self.ui_mount(state, target, caller)?
            }
            (["key-status"], Operation::Read) => {
                let status = self.barrier.key_status()?;
                Response::with_data(Core::data_map(json!({
                    "term": status.term,
                    "install_time": rfc3339_unix(status.install_time),
                    "encryptions": status.encryptions,
                })))
            }
            (["rotate"], op) | (["rotate", "keyring"], op) if op.is_write() => {
                let term = self.barrier.rotate(self.now_unix()).await?;
                tracing::info!(term, "barrier key rotated");
                Response::default()
            }
            (["seal"], op) if op.is_write() => {
                self.alerts
                    .sealed(&crate::alerts::actor(caller, request), self.clock.now());
                self.seal().await;
                Response::default()
            }
            (["step-down"], op) if op.is_write() => Response::default(),
            (["wrapping", "wrap"], op) if op.is_write() => {
                self.wrap_data(state, request, caller).await?
            }
            (["wrapping", "unwrap"], op) if op.is_write() => {
                self.unwrap(state, request, caller).await?
            }
            (["wrapping", "lookup"], op) if op.is_write() || op == Operation::Read => {
                self.wrapping_lookup(state, request).await?
            }
            (["wrapping", "rewrap"], op) if op.is_write() => {
                self.rewrap(state, request, caller).await?
            }
            _ if crate::expiration::is_lease_path(trimmed) => {
                self.handle_leases(state, trimmed, operation, request)
                    .await?
            }
            _ => return Err(Error::UnsupportedPath(format!("sys/{path}"))),
        };
        if response.mount_type.is_empty() {
            response.mount_type = "system".into();
        }
        Ok(response)
    }

    fn mount_listing(&self, state: &State, table: Table) -> Map<String, Value> {
        let router = state.router();
        let mut out = Map::new();
        for entry in router.entries(table) {
            out.insert(entry.path.clone(), self.mount_json(entry));
        }
        out
    }

    fn mount_json(&self, entry: &MountEntry) -> Value {
        let info = entry.info(self.config().default_lease_ttl, self.config().max_lease_ttl);
        let mut config = json!({
            "default_lease_ttl": entry.config.default_lease_ttl,
            "max_lease_ttl": entry.config.max_lease_ttl,
            "force_no_cache": entry.config.force_no_cache,
        });
        if entry.table == Table::Auth {
            config["token_type"] = json!(if entry.config.token_type.is_empty() {
                "default-service"
            } else {
                &entry.config.token_type
            });
        }
        json!({
            "type": entry.kind,
            "description": entry.description,
            "accessor": entry.accessor,
            "uuid": entry.uuid,
            "config": config,
            "options": if entry.options.is_empty() { Value::Null } else { json!(entry.options) },
            "local": entry.local,
            "seal_wrap": entry.seal_wrap,
            "external_entropy_access": false,
            "plugin_version": "",
            "running_plugin_version": format!("v{}+builtin.ward", env!("CARGO_PKG_VERSION")),
            "running_sha256": "",
            "effective_default_lease_ttl": info.default_lease_ttl,
        })
    }

    async fn mount_endpoint(
        &self,
        state: &State,
        table: Table,
        raw_path: &str,
        operation: Operation,
        data: &Map<String, Value>,
    ) -> Result<Response, Error> {
        let path = normalize_mount_path(raw_path)?;
        match operation {
            Operation::Read => {
                let router = state.router();
                let mounted = router
                    .find(table, &path)
                    .ok_or_else(|| Error::invalid(format!("no mount at {path}")))?;
                Ok(Response::with_data(Core::data_map(
                    self.mount_json(&mounted.entry),
                )))
            }
            Operation::Create | Operation::Update => {
                let mut kind = fields::string(data, "type")?.unwrap_or_default();
                if kind.is_empty() {
                    return Err(Error::invalid("missing 'type'"));
                }
                let mut entry_options = std::collections::BTreeMap::new();
                if let Some(options) = fields::string_map(data, "options")
                    .or_else(|_| loose_string_map(data, "options"))?
                {
                    entry_options = options;
                }
                if kind == "kv-v2" {
                    kind = "kv".into();
                    entry_options.insert("version".into(), "2".into());
                } else if kind == "kv-v1" {
                    kind = "kv".into();
                    entry_options.insert("version".into(), "1".into());
                }
                if is_reserved(table, &path)
                    || kind == "system"
                    || kind == "token"
                    || kind == "identity"
                    || kind == "cubbyhole"
                {
                    return Err(Error::invalid(format!(
                        "cannot mount \"{kind}\" of type \"{path}\": path or type is reserved"
                    )));
                }
                if !self.registry().knows(&kind) {
                    return Err(Error::invalid(match table {
                        Table::Secrets => format!("plugin not found in the catalog: {kind}"),
                        Table::Auth => format!("plugin not found in the catalog: {kind}"),
                    }));
                }
                let mut entry = MountEntry::new(table, &path, &kind);
                entry.description = fields::string(data, "description")?.unwrap_or_default();
                entry.local = fields::boolean(data, "local")?.unwrap_or(false);
                entry.seal_wrap = fields::boolean(data, "seal_wrap")?.unwrap_or(false);
                entry.options = entry_options;
                if let Some(Value::Object(config)) = data.get("config") {
                    apply_tune(&mut entry, config)?;
                }
                self.add_mount(state, entry).await?;
                Ok(Response::default())
            }
            Operation::Delete => {
                let _guard = state.mount_lock.lock().await;
                let router = state.router();
                let Some(mounted) = router.find(table, &path).cloned() else {
                    return Ok(Response::default());
                };
                if mounted.entry.is_builtin() || mounted.entry.kind == "cubbyhole" {
                    return Err(Error::invalid(format!("cannot unmount \"{path}\"")));
                }
                // Leases first, through the engine: a mount whose secrets cannot be revoked stays.
                self.revoke_mount_leases(state, &mounted).await?;
                let remaining: Vec<Mounted> = router
                    .all()
                    .iter()
                    .filter(|m| m.entry.uuid != mounted.entry.uuid)
                    .cloned()
                    .collect();
                self.replace_mounts(state, remaining, &[table]).await?;
                // The mount is gone from the table first, so no request can reach data being removed.
                mounted.view.clear("").await?;
                Ok(Response::default())
            }
            _ => Err(Error::UnsupportedOperation(format!(
                "sys/mounts/{raw_path}"
            ))),
        }
    }

    async fn tune(
        &self,
        state: &State,
        table: Table,
        raw_path: &str,
        operation: Operation,
        data: &Map<String, Value>,
    ) -> Result<Response, Error> {
        let path = normalize_mount_path(raw_path)?;
        match operation {
            Operation::Read => {
                let router = state.router();
                let mounted = router.find(table, &path).ok_or_else(|| {
                    Error::invalid(format!("cannot fetch sysview for path \"{path}\""))
                })?;
                let info = mounted
                    .entry
                    .info(self.config().default_lease_ttl, self.config().max_lease_ttl);
                let mut out = json!({
                    "default_lease_ttl": info.default_lease_ttl,
                    "max_lease_ttl": info.max_lease_ttl,
                    "force_no_cache": mounted.entry.config.force_no_cache,
                    "description": mounted.entry.description,
                    "options": if mounted.entry.options.is_empty() { Value::Null } else { json!(mounted.entry.options) },
                });
                if !mounted.entry.config.listing_visibility.is_empty() {
                    out["listing_visibility"] = json!(mounted.entry.config.listing_visibility);
                }
                if table == Table::Auth {
                    out["token_type"] = json!(if mounted.entry.config.token_type.is_empty() {
                        "default-service"
                    } else {
                        &mounted.entry.config.token_type
                    });
                }
                for key in [
                    "audit_non_hmac_request_keys",
                    "audit_non_hmac_response_keys",
                    "passthrough_request_headers",
                    "allowed_response_headers",
                ] {
                    let list = match key {
                        "audit_non_hmac_request_keys" => {
                            &mounted.entry.config.audit_non_hmac_request_keys
                        }
                        "audit_non_hmac_response_keys" => {
                            &mounted.entry.config.audit_non_hmac_response_keys
                        }
                        "passthrough_request_headers" => {
                            &mounted.entry.config.passthrough_request_headers
                        }
                        _ => &mounted.entry.config.allowed_response_headers,
                    };
                    if !list.is_empty() {
                        out[key] = json!(list);
                    }
                }
                Ok(Response::with_data(Core::data_map(out)))
            }
            op if op.is_write() => {
                let _guard = state.mount_lock.lock().await;
                let router = state.router();
                let mut all: Vec<Mounted> = router.all().to_vec();
                let index = all
                    .iter()
                    .position(|m| m.entry.table == table && m.entry.path == path)
                    .ok_or_else(|| {
                        Error::invalid(format!("cannot tune \"{path}\": no such mount"))
                    })?;
                let mut entry = all[index].entry.clone();
                apply_tune(&mut entry, data)?;
                if let Some(description) = fields::string(data, "description")? {
                    entry.description = description;
                }
                if let Some(options) = loose_string_map(data, "options")? {
                    for (k, v) in options {
                        if k == "version"
                            && entry.options.get("version").is_some_and(|old| old == "2")
                            && v != "2"
                        {
                            return Err(Error::invalid("cannot downgrade mount from KV version 2"));
                        }
                        entry.options.insert(k, v);
                    }
                }
                all[index] = self.mount(entry)?;
                self.replace_mounts(state, all, &[table]).await?;
                Ok(Response::default())
            }
            _ => Err(Error::UnsupportedOperation(format!(
                "sys/mounts/{raw_path}/tune"
            ))),
        }
    }

    async fn remount(&self, state: &State, data: &Map<String, Value>) -> Result<Response, Error> {
        let from = fields::string(data, "from")?.unwrap_or_default();
        let to = fields::string(data, "to")?.unwrap_or_default();
        let (from_table, from_path) = split_table(&from)?;
        let (to_table, to_path) = split_table(&to)?;
        if from_table != to_table {
            return Err(Error::invalid(
                "cannot remount between secrets engines and auth methods",
            ));
        }
        if is_reserved(to_table, &to_path) {
            return Err(Error::invalid(format!(
                "cannot remount to reserved path \"{to_path}\""
            )));
        }
        let _guard = state.mount_lock.lock().await;
        let router = state.router();
        let mut all: Vec<Mounted> = router.all().to_vec();
        let index = all
            .iter()
            .position(|m| m.entry.table == from_table && m.entry.path == from_path)
            .ok_or_else(|| Error::invalid(format!("no matching mount at \"{from_path}\"")))?;
        if all[index].entry.is_builtin() || all[index].entry.kind == "cubbyhole" {
            return Err(Error::invalid(format!("cannot remount \"{from_path}\"")));
        }
        let mut probe = all[index].entry.clone();
        probe.path = to_path.clone();
        let target = probe.route_path();
        if all.iter().any(|m| {
            let other = m.entry.route_path();
            m.entry.uuid != probe.uuid && (other.starts_with(&target) || target.starts_with(&other))
        }) {
            return Err(Error::invalid(format!(
                "path already in use at \"{to_path}\""
            )));
        }
        all[index] = self.mount(probe)?;
        self.replace_mounts(state, all, &[from_table]).await?;
        let id = uuid::Uuid::new_v4().to_string();
        Ok(Response::with_data(Core::data_map(
            json!({ "migration_id": id }),
        )))
    }

    pub(crate) async fn policy_endpoint(
        &self,
        state: &State,
        name: &str,
        operation: Operation,
        data: &Map<String, Value>,
        field: &str,
    ) -> Result<Response, Error> {
        match operation {
            Operation::Read => {
                let name = normalize(name)?;
                let raw = state
                    .policies
                    .raw(&name)
                    .await?
                    .ok_or_else(Error::not_found)?;
                let mut out = Map::new();
                out.insert("name".into(), json!(name));
                out.insert(field.into(), json!(raw));
                Ok(Response::with_data(out))
            }
            op if op.is_write() => {
                let text = fields::string(data, "policy")?
                    .or(fields::string(data, "rules")?)
                    .filter(|t| !t.trim().is_empty())
                    .ok_or_else(|| Error::invalid("'policy' parameter not supplied or empty"))?;
                let name = state.policies.put(name, &text).await?;
                tracing::info!(policy = %name, "policy written");
                Ok(Response::default())
            }
            Operation::Delete => {
                state.policies.delete(name).await?;
                Ok(Response::default())
            }
            _ => Err(Error::UnsupportedOperation(format!("sys/policy/{name}"))),
        }
    }

    /// `sys/internal/ui/mounts/<path>`: the mount holding a path, for KV version detection.
    /// Allowed when the token has any capability under the mount.
    fn ui_mount(
        &self,
        state: &State,
        target: &str,
        caller: Option<&Caller>,
    ) -> Result<Response, Error> {
        let caller = caller.ok_or_else(Error::denied)?;
        let router = state.router();
        let route = router
            .resolve(target)
            .ok_or_else(|| Error::UnsupportedPath(format!("sys/internal/ui/mounts/{target}")))?;
        let mount_path = route.mounted.entry.route_path();
        if !caller.acl.has_access_under(&mount_path) {
            return Err(Error::denied());
        }
        let mut out = Core::data_map(self.mount_json(&route.mounted.entry));
        out.insert("path".into(), json!(mount_path));
        Ok(Response::with_data(out))
    }
}

fn split_table(path: &str) -> Result<(Table, String), Error> {
    let trimmed = path.trim_matches('/');
    match trimmed.strip_prefix("auth/") {
        Some(rest) => Ok((Table::Auth, normalize_mount_path(rest)?)),
        None => Ok((Table::Secrets, normalize_mount_path(trimmed)?)),
    }
}

fn apply_tune(entry: &mut MountEntry, config: &Map<String, Value>) -> Result<(), Error> {
    if let Some(v) = fields::duration(config, "default_lease_ttl")? {
        entry.config.default_lease_ttl = v;
    }
    if let Some(v) = fields::duration(config, "max_lease_ttl")? {
        entry.config.max_lease_ttl = v;
    }
    if entry.config.max_lease_ttl > 0 && entry.config.default_lease_ttl > entry.config.max_lease_ttl
    {
        return Err(Error::invalid(
            "default lease TTL cannot be greater than maximum lease TTL",
        ));
    }
    if let Some(v) = fields::boolean(config, "force_no_cache")? {
        entry.config.force_no_cache = v;
    }
    if let Some(v) = fields::string(config, "listing_visibility")? {
        if !matches!(v.as_str(), "" | "hidden" | "unauth") {
            return Err(Error::invalid("invalid listing_visibility"));
        }
        entry.config.listing_visibility = v;
    }
    if let Some(v) = fields::strings(config, "audit_non_hmac_request_keys")? {
        entry.config.audit_non_hmac_request_keys = v;
    }
    if let Some(v) = fields::strings(config, "audit_non_hmac_response_keys")? {
        entry.config.audit_non_hmac_response_keys = v;
    }
    if let Some(v) = fields::strings(config, "passthrough_request_headers")? {
        entry.config.passthrough_request_headers = v;
    }
    if let Some(v) = fields::strings(config, "allowed_response_headers")? {
        entry.config.allowed_response_headers = v;
    }
    if let Some(v) = fields::string(config, "token_type")? {
        if entry.table != Table::Auth {
            return Err(Error::invalid(
                "'token_type' can only be modified on auth mounts",
            ));
        }
        if !matches!(
            v.as_str(),
            "default-service" | "default-batch" | "service" | "batch"
        ) {
            return Err(Error::invalid(format!(
                "invalid value for 'token_type': \"{v}\""
            )));
        }
        entry.config.token_type = v;
    }
    Ok(())
}

/// Options maps whose values may be numbers (`{"version": 2}`) as clients send them.
fn loose_string_map(
    data: &Map<String, Value>,
    key: &str,
) -> Result<Option<std::collections::BTreeMap<String, String>>, Error> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(
            m.iter()
                .map(|(k, v)| {
                    let value = match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), value)
                })
                .collect(),
        )),
        Some(_) => Err(Error::invalid(format!("field \"{key}\" must be a map"))),
    }
}

fn capabilities_response(
    acl: &ward_policy::Acl,
    data: &Map<String, Value>,
) -> Result<Response, Error> {
    let mut paths = fields::strings(data, "paths")?.unwrap_or_default();
    if let Some(path) = fields::string(data, "path")? {
        if !path.is_empty() {
            paths.push(path);
        }
    }
    if paths.is_empty() {
        return Err(Error::invalid("missing paths"));
    }
    let mut out = Map::new();
    for path in &paths {
        let path = path.trim_start_matches('/');
        out.insert(path.to_string(), json!(Core::capabilities(acl, path)));
    }
    if paths.len() == 1 {
        let only = paths[0].trim_start_matches('/');
        out.insert("capabilities".into(), json!(Core::capabilities(acl, only)));
    }
    Ok(Response::with_data(out))
}
