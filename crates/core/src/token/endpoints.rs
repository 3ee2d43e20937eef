//! The `auth/token/` backend: create, look up, renew and revoke tokens, and token roles.
//!
//! These handlers are the core's own (not an engine's) because they manage the token store,
//! which engines never touch. TTL arithmetic follows Vault's `CalculateTTL`: a periodic token
//! gets its period each time; any other token gets the requested or default TTL, capped so
//! that it never outlives its maximum.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::clock::rfc3339_unix;
use crate::core::{Caller, Core, State};
use crate::duration::format_seconds;
use crate::engine::fields;
use crate::engine::{AuthSpec, EngineContext, Operation};
use crate::error::Error;
use crate::mounts::MountEntry;
use crate::policy_store::normalize;
use crate::request::{AuthResponse, Request, Response};
use crate::token::{TokenEntry, TokenRole, TokenType};

pub(crate) fn requires_sudo(path: &str, operation: Operation) -> bool {
    matches!(
        (path, operation),
        ("accessors" | "accessors/", Operation::List)
    )
}

/// The outcome of Vault's TTL arithmetic for a new or renewed token.
pub(crate) struct Lifetime {
    pub(crate) ttl: u64,
    pub(crate) expire_time: Option<i64>,
    pub(crate) max_expire_time: Option<i64>,
    pub(crate) warnings: Vec<String>,
}

/// Computes a token's lifetime at issue. `ttl == 0 && period == 0 && !never_expires` means
/// "use the default".
pub(crate) struct LifetimeRequest {
    pub(crate) now: i64,
    pub(crate) ttl: u64,
    pub(crate) max_ttl: u64,
    pub(crate) explicit_max_ttl: u64,
    pub(crate) period: u64,
    pub(crate) default_ttl: u64,
    pub(crate) system_max_ttl: u64,
    pub(crate) never_expires: bool,
}

pub(crate) fn lifetime(r: &LifetimeRequest) -> Lifetime {
    let mut warnings = Vec::new();
    if r.never_expires && r.ttl == 0 && r.period == 0 && r.explicit_max_ttl == 0 {
        return Lifetime {
            ttl: 0,
            expire_time: None,
            max_expire_time: None,
            warnings,
        };
    }
    let mut max = r.system_max_ttl;
    if r.max_ttl > 0 && r.max_ttl < max {
        max = r.max_ttl;
    }
    if r.period > 0 {
        let mut ttl = r.period;
        let max_expire = (r.explicit_max_ttl > 0).then(|| r.now + r.explicit_max_ttl as i64);
        if r.explicit_max_ttl > 0 && ttl > r.explicit_max_ttl {
            ttl = r.explicit_max_ttl;
        }
        return Lifetime {
            ttl,
            expire_time: Some(r.now + ttl as i64),
            max_expire_time: max_expire,
            warnings,
        };
    }
    if r.explicit_max_ttl > 0 && r.explicit_max_ttl < max {
        max = r.explicit_max_ttl;
    }
    let mut ttl = if r.ttl > 0 { r.ttl } else { r.default_ttl };
    if ttl > max {
        warnings.push(format!(
            "TTL of \"{}\" exceeded the effective max_ttl of \"{}\"; TTL value is capped accordingly",
            format_seconds(ttl),
            format_seconds(max)
        ));
        ttl = max;
    }
    Lifetime {
        ttl,
        expire_time: Some(r.now + ttl as i64),
        max_expire_time: Some(r.now + max as i64),
        warnings,
    }
}

/// The `auth` block of a response for a token just created or renewed.
pub(crate) fn auth_response(id: &str, entry: &TokenEntry, now: i64) -> AuthResponse {
    AuthResponse {
        client_token: id.to_string(),
        accessor: entry.accessor.clone(),
        policies: entry.policies.clone(),
        token_policies: entry.policies.clone(),
        identity_policies: Vec::new(),
        metadata: entry.meta.clone(),
        lease_duration: entry.ttl(now),
        renewable: entry.renewable
            && entry.token_type == TokenType::Service
            && entry.expire_time.is_some(),
        entity_id: entry.entity_id.clone(),
        token_type: entry.token_type.as_str().to_string(),
        orphan: entry.orphan,
        num_uses: entry.num_uses,
    }
}

/// `lookup` data, as Vault returns it.
pub(crate) fn lookup_data(id: &str, entry: &TokenEntry, now: i64) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("accessor".into(), json!(entry.accessor));
    data.insert("creation_time".into(), json!(entry.creation_time));
    data.insert("creation_ttl".into(), json!(entry.creation_ttl));
    data.insert("display_name".into(), json!(entry.display_name));
    data.insert("entity_id".into(), json!(entry.entity_id));
    data.insert(
        "expire_time".into(),
        entry
            .expire_time
            .map(|t| json!(rfc3339_unix(t)))
            .unwrap_or(Value::Null),
    );
    data.insert("explicit_max_ttl".into(), json!(entry.explicit_max_ttl));
    data.insert("id".into(), json!(id));
    data.insert(
        "issue_time".into(),
        json!(rfc3339_unix(entry.creation_time)),
    );
    data.insert(
        "meta".into(),
        if entry.meta.is_empty() {
            Value::Null
        } else {
            json!(entry.meta)
        },
    );
    data.insert("num_uses".into(), json!(entry.num_uses));
    data.insert("orphan".into(), json!(entry.orphan));
    data.insert("path".into(), json!(entry.path));
    data.insert("policies".into(), json!(entry.policies));
    data.insert(
        "renewable".into(),
        json!(entry.renewable && entry.token_type == TokenType::Service),
    );
    data.insert("ttl".into(), json!(entry.ttl(now)));
    data.insert("type".into(), json!(entry.token_type.as_str()));
    if entry.period > 0 {
        data.insert("period".into(), json!(entry.period));
    }
    if !entry.role.is_empty() {
        data.insert("role".into(), json!(entry.role));
    }
    if !entry.bound_cidrs.is_empty() {
        data.insert("bound_cidrs".into(), json!(entry.bound_cidrs));
    }
    data
}

impl Core {
    pub(crate) async fn handle_token(
        &self,
        state: &Arc<State>,
        path: &str,
        operation: Operation,
        request: &Request,
        caller: Option<&Caller>,
    ) -> Result<Response, Error> {
        let caller = caller.ok_or_else(Error::denied)?;
        let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        let data = &request.data;
        let write = operation.is_write();
        let mut response = match (segments.as_slice(), operation) {
            (["create"], op) | (["create-orphan"], op) if op.is_write() => {
                self.create_token(state, caller, data, None, segments[0] == "create-orphan")
                    .await?
            }
            (["create", role], op) if op.is_write() => {
                let role = state
                    .tokens
                    .role(role)
                    .await?
                    .ok_or_else(|| Error::invalid(format!("unknown role {role}")))?;
                self.create_token(state, caller, data, Some(role), false)
                    .await?
            }
            (["lookup-self"], _) if write || operation == Operation::Read => {
                let now = self.now_unix();
                let mut data = lookup_data(caller.token.as_str(), &caller.entry, now);
                data.insert(
                    "identity_policies".into(),
                    json!(self.identity_policies_of(state, &caller.entry).await?),
                );
                Response::with_data(data)
            }
            (["lookup"], op) if op.is_write() || op == Operation::Read => {
                let token = fields::string(data, "token")?.unwrap_or_default();
                let token = if token.is_empty() {
                    caller.token.as_str().to_string()
                } else {
                    token
                };
                let now = self.now_unix();
                let entry = state
                    .tokens
                    .lookup(&token, now)
                    .await?
                    .ok_or_else(|| Error::PermissionDenied("bad token".into()))?;
                let mut data = lookup_data(&token, &entry, now);
                data.insert(
                    "identity_policies".into(),
                    json!(self.identity_policies_of(state, &entry).await?),
                );
                Response::with_data(data)
            }
            (["lookup-accessor"], op) if op.is_write() => {
                let entry = self.by_accessor(state, data).await?;
                Response::with_data(lookup_data("", &entry, self.now_unix()))
            }
            (["renew-self"], op) if op.is_write() => {
                let increment = fields::duration(data, "increment")?.unwrap_or(0);
                self.renew_token(state, caller.token.as_str(), &caller.entry, increment)
                    .await?
            }
            (["renew"], op) if op.is_write() => {
                let token = fields::string(data, "token")?.unwrap_or_default();
                let token = if token.is_empty() {
                    caller.token.as_str().to_string()
                } else {
                    token
                };
                let increment = fields::duration(data, "increment")?.unwrap_or(0);
                let entry = state
                    .tokens
                    .lookup(&token, self.now_unix())
                    .await?
                    .ok_or_else(|| Error::invalid("invalid token"))?;
                self.renew_token(state, &token, &entry, increment).await?
            }
            (["renew-accessor"], op) if op.is_write() => {
                let entry = self.by_accessor(state, data).await?;
                let increment = fields::duration(data, "increment")?.unwrap_or(0);
                let mut response = self.renew_token(state, "", &entry, increment).await?;
                if let Some(auth) = &mut response.auth {
                    auth.client_token = String::new();
                }
                response
            }
            (["revoke-self"], op) if op.is_write() => {
                self.revoke_token_tree(state, &caller.entry).await?;
                Response::default()
            }
            (["revoke"], op) if op.is_write() => {
                let token = fields::string(data, "token")?.unwrap_or_default();
                if token.is_empty() {
                    return Err(Error::invalid("missing token"));
                }
                if let Some(entry) = state.tokens.lookup(&token, self.now_unix()).await? {
                    self.revoke_token_tree(state, &entry).await?;
                }
                Response::default()
            }
            (["revoke-accessor"], op) if op.is_write() => {
                let entry = self.by_accessor(state, data).await?;
                self.revoke_token_tree(state, &entry).await?;
                Response::default()
            }
            (["revoke-orphan"], op) if op.is_write() => {
                if !has_sudo(caller, "auth/token/revoke-orphan") {
                    return Err(Error::PermissionDenied(
                        "root or sudo privileges required to revoke and orphan".into(),
                    ));
                }
                let token = fields::string(data, "token")?.unwrap_or_default();
                if let Some(entry) = state.tokens.lookup(&token, self.now_unix()).await? {
                    if entry.hash.is_empty() {
                        return Err(Error::invalid("batch tokens cannot be revoked"));
                    }
                    state.tokens.orphan_children(&entry.hash).await?;
                    self.remove_token(state, &entry).await?;
                }
                Response::default()
            }
            (["accessors"], Operation::List) => {
                let keys = state.tokens.accessors().await?;
                Response::with_data(Core::data_map(json!({ "keys": keys })))
            }
            (["roles"], Operation::List) => {
                let keys = state.tokens.roles().await?;
                if keys.is_empty() {
                    return Err(Error::not_found());
                }
                Response::with_data(Core::data_map(json!({ "keys": keys })))
            }
            (["roles", name], Operation::Read) => {
                let role = state
                    .tokens
                    .role(name)
                    .await?
                    .ok_or_else(Error::not_found)?;
                Response::with_data(role_data(&role))
            }
            (["roles", name], op) if op.is_write() => {
                let existing = state.tokens.role(name).await?;
                let role = parse_role(name, data, existing)?;
                state.tokens.put_role(&role).await?;
                Response::default()
            }
            (["roles", name], Operation::Delete) => {
                state.tokens.delete_role(name).await?;
                Response::default()
            }
            (["tidy"], op) if op.is_write() => {
                let removed = state.tokens.tidy().await?;
                tracing::info!(removed, "token tidy finished");
                Response { warnings: vec!["Tidy operation successfully started. Any information from the operation will be printed to Ward's server logs.".into()], ..Response::default() }
            }
            ([first, ..], _) if KNOWN.contains(first) => {
                return Err(Error::UnsupportedOperation(format!("auth/token/{path}")))
            }
            _ => return Err(Error::UnsupportedPath(format!("auth/token/{path}"))),
        };
        response.mount_type = "token".into();
        Ok(response)
    }

    async fn by_accessor(
        &self,
        state: &State,
        data: &Map<String, Value>,
    ) -> Result<Arc<TokenEntry>, Error> {
        let accessor = fields::string(data, "accessor")?.unwrap_or_default();
        if accessor.is_empty() {
            return Err(Error::invalid("missing accessor"));
        }
        state
            .tokens
            .lookup_accessor(&accessor, self.now_unix())
            .await?
            .ok_or_else(|| Error::invalid("invalid accessor"))
    }

    async fn create_token(
        &self,
        state: &State,
        caller: &Caller,
        data: &Map<String, Value>,
        role: Option<TokenRole>,
        orphan_path: bool,
    ) -> Result<Response, Error> {
        let parent = &caller.entry;
        let now = self.now_unix();
        let is_root = parent.is_root();
        let sudo = has_sudo(caller, "auth/token/create");
        if parent.token_type == TokenType::Batch {
            return Err(Error::invalid("batch tokens cannot create more tokens"));
        }
        if parent.num_uses > 0 {
            return Err(Error::invalid(
                "tokens with a limited number of uses cannot create child tokens",
            ));
        }
        let custom_id = fields::string(data, "id")?.filter(|s| !s.is_empty());
        if custom_id.is_some() && !is_root && !sudo {
            return Err(Error::invalid(
                "root or sudo privileges required to specify token id",
            ));
        }
        if let Some(id) = &custom_id {
            if id.contains('.') || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(Error::invalid(
                    "custom token ID cannot contain '.' or whitespace",
                ));
            }
        }
        let no_parent = fields::boolean(data, "no_parent")?.unwrap_or(false);
        if no_parent && !is_root && !sudo {
            return Err(Error::invalid(
                "root or sudo privileges required to create orphan token",
            ));
        }
        let orphan = orphan_path || no_parent || role.as_ref().is_some_and(|r| r.orphan);

        let requested: Vec<String> = fields::strings(data, "policies")?
            .unwrap_or_default()
            .iter()
            .map(|p| normalize(p))
            .collect::<Result<_, _>>()?;
        let no_default = fields::boolean(data, "no_default_policy")?.unwrap_or(false)
            || role.as_ref().is_some_and(|r| r.token_no_default_policy);
        let mut policies = match &role {
            Some(role) => role_policies(role, &requested, parent)?,
            None if requested.is_empty() => parent
                .policies
                .iter()
                .filter(|p| *p != "default" || !no_default)
                .cloned()
                .collect(),
            None => {
                if !is_root && !sudo {
                    for p in &requested {
                        if p == "root" || (!parent.policies.contains(p) && p != "default") {
                            return Err(Error::invalid("child policies must be subset of parent"));
                        }
                    }
                }
                requested
            }
        };
        if policies.iter().any(|p| p == "root") && !is_root {
            return Err(Error::invalid(
                "root tokens may not be created by a non-root token",
            ));
        }
        if !no_default && !policies.iter().any(|p| p == "root") {
            policies.push("default".into());
        }
        if no_default {
            policies.retain(|p| p != "default");
        }
        policies.sort();
        policies.dedup();
        let mut warnings = Vec::new();
        for p in &policies {
            if p != "root" && p != "default" && !state.policies.exists(p).await? {
                warnings.push(format!("Policy \"{p}\" does not exist"));
            }
        }

        let token_type = match fields::string(data, "type")?.unwrap_or_default().as_str() {
            "" => match role.as_ref().map(|r| r.token_type.as_str()).unwrap_or("") {
                "batch" | "default-batch" => TokenType::Batch,
                _ => TokenType::Service,
            },
            "service" => TokenType::Service,
            "batch" => TokenType::Batch,
            other => return Err(Error::invalid(format!("invalid 'type' value \"{other}\""))),
        };
        let period_param = fields::duration(data, "period")?.unwrap_or(0);
        if period_param > 0 && !is_root && !sudo && role.is_none() {
            return Err(Error::invalid(
                "root or sudo privileges required to create periodic token",
            ));
        }
        let period = if period_param > 0 {
            period_param
        } else {
            role.as_ref().map(|r| r.token_period).unwrap_or(0)
        };
        let mut explicit = fields::duration(data, "explicit_max_ttl")?.unwrap_or(0);
        if let Some(role_explicit) = role
            .as_ref()
            .map(|r| r.token_explicit_max_ttl)
            .filter(|t| *t > 0)
        {
            explicit = if explicit == 0 {
                role_explicit
            } else {
                explicit.min(role_explicit)
            };
        }
        let num_uses = fields::integer(data, "num_uses")?.unwrap_or(0);
        if num_uses < 0 {
            return Err(Error::invalid("number of uses cannot be negative"));
        }
        let num_uses = (num_uses as u64).max(role.as_ref().map(|r| r.token_num_uses).unwrap_or(0));
        if token_type == TokenType::Batch {
            if policies.iter().any(|p| p == "root") {
                return Err(Error::invalid("batch tokens cannot be root tokens"));
            }
            if num_uses > 0 || period > 0 {
                return Err(Error::invalid(
                    "batch tokens cannot have a use limit or a period",
                ));
            }
        }
        let renewable = fields::boolean(data, "renewable")?.unwrap_or(true)
            && role.as_ref().map(|r| r.renewable).unwrap_or(true);
        let requested_ttl = fields::duration(data, "ttl")?
            .or(fields::duration(data, "lease")?)
            .unwrap_or(0);
        let lifetime = lifetime(&LifetimeRequest {
            now,
            ttl: if requested_ttl > 0 {
                requested_ttl
            } else {
                role.as_ref().map(|r| r.token_ttl).unwrap_or(0)
            },
            max_ttl: role.as_ref().map(|r| r.token_max_ttl).unwrap_or(0),
            explicit_max_ttl: explicit,
            period,
            default_ttl: self.config().default_lease_ttl,
            system_max_ttl: self.config().max_lease_ttl,
            never_expires: policies.iter().any(|p| p == "root"),
        });
        warnings.extend(lifetime.warnings.iter().cloned());
        let display = fields::string(data, "display_name")?.unwrap_or_default();
        let display_name = sanitize_display_name(&display);
        let meta = fields::string_map(data, "meta")?.unwrap_or_default();
        let path = match &role {
            Some(r) if !r.path_suffix.is_empty() => {
                format!("auth/token/create/{}/{}", r.name, r.path_suffix)
            }
            Some(r) => format!("auth/token/create/{}", r.name),
            None if orphan_path => "auth/token/create-orphan".into(),
            None => "auth/token/create".into(),
        };
        let entry = TokenEntry {
            parent: if orphan || parent.hash.is_empty() {
                None
            } else {
                Some(parent.hash.clone())
            },
            policies,
            meta,
            display_name,
            num_uses,
            creation_time: now,
            creation_ttl: lifetime.ttl,
            expire_time: lifetime.expire_time,
            max_expire_time: lifetime.max_expire_time,
            explicit_max_ttl: explicit,
            period,
            renewable,
            path,
            role: role.as_ref().map(|r| r.name.clone()).unwrap_or_default(),
            entity_id: parent.entity_id.clone(),
            token_type,
            bound_cidrs: role
                .as_ref()
                .map(|r| r.token_bound_cidrs.clone())
                .unwrap_or_default(),
            orphan,
            mount_accessor: self.token_mount_accessor(state),
            ttl_setting: requested_ttl,
            ..TokenEntry::default()
        };
        let minted = state.tokens.create(entry, custom_id.as_deref()).await?;
        Ok(Response {
            auth: Some(auth_response(&minted.id, &minted.entry, now)),
            warnings,
            ..Response::default()
        })
    }

    fn token_mount_accessor(&self, state: &State) -> String {
        state
            .router()
            .find(crate::mounts::Table::Auth, "token/")
            .map(|m| m.entry.accessor.clone())
            .unwrap_or_default()
    }

    async fn renew_token(
        &self,
        state: &State,
        id: &str,
        entry: &Arc<TokenEntry>,
        increment: u64,
    ) -> Result<Response, Error> {
        let now = self.now_unix();
        if entry.token_type == TokenType::Batch {
            return Err(Error::invalid("batch tokens cannot be renewed"));
        }
        let Some(_) = entry.expire_time else {
            // A token that never expires has nothing to renew.
            return Ok(Response {
                auth: Some(auth_response(id, entry, now)),
                ..Response::default()
            });
        };
        if !entry.renewable {
            return Err(Error::invalid("lease is not renewable"));
        }
        let mut warnings = Vec::new();
        let mut ttl = if entry.period > 0 {
            entry.period
        } else if increment > 0 {
            increment
        } else if entry.ttl_setting > 0 {
            entry.ttl_setting
        } else {
            self.config().default_lease_ttl
        };
        if let Some(max_expire) = entry.max_expire_time {
            if now >= max_expire {
                return Err(Error::invalid("past the max TTL, cannot renew"));
            }
            let remaining = (max_expire - now) as u64;
            if ttl > remaining {
                if entry.period == 0 {
                    warnings.push(format!(
                        "TTL of \"{}\" exceeded the effective max_ttl of \"{}\"; TTL value is capped accordingly",
                        format_seconds(ttl),
                        format_seconds(remaining)
                    ));
                }
                ttl = remaining;
            }
        }
        let mut next = (**entry).clone();
        next.expire_time = Some(now + ttl as i64);
        let updated = state.tokens.update(entry, next).await?;
        Ok(Response {
            auth: Some(auth_response(id, &updated, now)),
            warnings,
            ..Response::default()
        })
    }

    /// Turns a successful login into a token: always an orphan, attributed to the auth mount.
    pub(crate) async fn issue_login_token(
        &self,
        state: &State,
        mount: &MountEntry,
        spec: AuthSpec,
        ctx: &EngineContext,
    ) -> Result<AuthResponse, Error> {
        let now = ctx.now.unix_timestamp();
        let mut policies: Vec<String> = spec
            .policies
            .iter()
            .map(|p| normalize(p))
            .collect::<Result<_, _>>()?;
        if policies.iter().any(|p| p == "root") {
            return Err(Error::PermissionDenied(
                "auth methods cannot create root tokens".into(),
            ));
        }
        if !spec.no_default_policy {
            policies.push("default".into());
        }
        policies.sort();
        policies.dedup();
        let token_type = match (spec.token_type.as_str(), mount.config.token_type.as_str()) {
            ("batch", _) | ("" | "default", "batch" | "default-batch") => TokenType::Batch,
            _ => TokenType::Service,
        };
        let lifetime = lifetime(&LifetimeRequest {
            now,
            ttl: spec.ttl,
            max_ttl: if spec.max_ttl > 0 {
                spec.max_ttl.min(ctx.mount.max_lease_ttl)
            } else {
                ctx.mount.max_lease_ttl
            },
            explicit_max_ttl: spec.explicit_max_ttl,
            period: spec.period,
            default_ttl: ctx.mount.default_lease_ttl,
            system_max_ttl: self.config().max_lease_ttl,
            never_expires: false,
        });
        let mount_name = mount.path.trim_end_matches('/').replace('/', "-");
        let display_name = if spec.display_name.is_empty() {
            mount_name
        } else {
            format!("{mount_name}-{}", spec.display_name)
        };
        let entry = TokenEntry {
            policies,
            meta: spec.metadata.clone(),
            display_name,
            num_uses: spec.num_uses,
            creation_time: now,
            creation_ttl: lifetime.ttl,
            expire_time: lifetime.expire_time,
            max_expire_time: lifetime.max_expire_time,
            explicit_max_ttl: spec.explicit_max_ttl,
            period: spec.period,
            renewable: spec.renewable && token_type == TokenType::Service,
            path: format!("{}login", mount.route_path()),
            token_type,
            bound_cidrs: spec.bound_cidrs.clone(),
            orphan: true,
            mount_accessor: mount.accessor.clone(),
            ttl_setting: spec.ttl,
            max_ttl_setting: spec.max_ttl,
            ..TokenEntry::default()
        };
        let (entry, identity_policies) = match &spec.alias {
            Some(alias) => {
                let entity = state
                    .identity
                    .entity_for_login(
                        &mount.accessor,
                        &mount.route_path(),
                        &alias.name,
                        &alias.metadata,
                        &spec.group_aliases,
                        now,
                    )
                    .await?;
                let resolved = state.identity.resolve(&entity.id).await?;
                (
                    TokenEntry {
                        entity_id: entity.id,
                        ..entry
                    },
                    resolved.policies.clone(),
                )
            }
            None => (entry, Vec::new()),
        };
        let minted = state.tokens.create(entry, None).await?;
        let mut auth = auth_response(&minted.id, &minted.entry, now);
        auth.identity_policies = identity_policies;
        auth.policies = merged(&auth.token_policies, &auth.identity_policies);
        Ok(auth)
    }

    /// `identity_policies` for a token lookup.
    pub(crate) async fn identity_policies_of(
        &self,
        state: &State,
        entry: &TokenEntry,
    ) -> Result<Vec<String>, Error> {
        if entry.entity_id.is_empty() {
            return Ok(Vec::new());
        }
        Ok(state
            .identity
            .resolve(&entry.entity_id)
            .await?
            .policies
            .clone())
    }
}

fn merged(a: &[String], b: &[String]) -> Vec<String> {
    let mut all: Vec<String> = a.iter().chain(b).cloned().collect();
    all.sort();
    all.dedup();
    all
}

const KNOWN: &[&str] = &[
    "create",
    "create-orphan",
    "lookup",
    "lookup-self",
    "lookup-accessor",
    "renew",
    "renew-self",
    "renew-accessor",
    "revoke",
    "revoke-self",
    "revoke-accessor",
    "revoke-orphan",
    "roles",
    "accessors",
    "tidy",
];

fn has_sudo(caller: &Caller, path: &str) -> bool {
    caller.entry.is_root()
        || caller
            .acl
            .capabilities(path)
            .iter()
            .any(|c| c == "sudo" || c == "root")
}

fn sanitize_display_name(display: &str) -> String {
    let cleaned: String = display
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' || c == '@' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "token".into()
    } else {
        format!("token-{cleaned}")
    }
}

fn glob_match(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == value,
        Some((prefix, suffix)) => {
            value.len() >= prefix.len() + suffix.len()
                && value.starts_with(prefix)
                && value.ends_with(suffix)
        }
    }
}

/// Policies for a token created against a role.
fn role_policies(
    role: &TokenRole,
    requested: &[String],
    parent: &TokenEntry,
) -> Result<Vec<String>, Error> {
    let disallowed = |p: &String| {
        role.disallowed_policies.contains(p)
            || role
                .disallowed_policies_glob
                .iter()
                .any(|g| glob_match(g, p))
    };
    let restricted = !role.allowed_policies.is_empty() || !role.allowed_policies_glob.is_empty();
    let chosen: Vec<String> = if requested.is_empty() {
        if restricted {
            role.allowed_policies.clone()
        } else {
            parent.policies.clone()
        }
    } else {
        requested.to_vec()
    };
    for p in &chosen {
        if p == "default" {
            continue;
        }
        if disallowed(p) {
            return Err(Error::invalid(format!(
                "token policies ({p}) must not be in the role's disallowed policies"
            )));
        }
        if restricted {
            let allowed = role.allowed_policies.contains(p)
                || role.allowed_policies_glob.iter().any(|g| glob_match(g, p));
            if !allowed {
                return Err(Error::invalid(format!(
                    "token policies ({p}) must be subset of the role's allowed policies"
                )));
            }
        } else if !parent.is_root() && !parent.policies.contains(p) {
            return Err(Error::invalid(
                "token policies must be subset of the parent token's policies",
            ));
        }
    }
    Ok(chosen.into_iter().filter(|p| !disallowed(p)).collect())
}

fn role_data(role: &TokenRole) -> Map<String, Value> {
    Core::data_map(json!({
        "name": role.name,
        "allowed_policies": role.allowed_policies,
        "disallowed_policies": role.disallowed_policies,
        "allowed_policies_glob": role.allowed_policies_glob,
        "disallowed_policies_glob": role.disallowed_policies_glob,
        "allowed_entity_aliases": role.allowed_entity_aliases,
        "orphan": role.orphan,
        "renewable": role.renewable,
        "path_suffix": role.path_suffix,
        "period": role.token_period,
        "token_period": role.token_period,
        "explicit_max_ttl": role.token_explicit_max_ttl,
        "token_explicit_max_ttl": role.token_explicit_max_ttl,
        "token_ttl": role.token_ttl,
        "token_max_ttl": role.token_max_ttl,
        "token_no_default_policy": role.token_no_default_policy,
        "token_num_uses": role.token_num_uses,
        "token_type": if role.token_type.is_empty() { "default-service" } else { role.token_type.as_str() },
        "token_bound_cidrs": role.token_bound_cidrs,
        "bound_cidrs": role.token_bound_cidrs,
    }))
}

fn parse_role(
    name: &str,
    data: &Map<String, Value>,
    existing: Option<TokenRole>,
) -> Result<TokenRole, Error> {
    if name.is_empty() || name.contains('/') {
        return Err(Error::invalid("invalid role name"));
    }
    let mut role = existing.unwrap_or(TokenRole {
        name: name.to_string(),
        renewable: true,
        ..TokenRole::default()
    });
    let policies = |key: &str| -> Result<Option<Vec<String>>, Error> {
        fields::strings(data, key)?
            .map(|list| {
                list.iter()
                    .map(|p| normalize(p))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
    };
    if let Some(v) = policies("allowed_policies")? {
        role.allowed_policies = v;
    }
    if let Some(v) = policies("disallowed_policies")? {
        role.disallowed_policies = v;
    }
    if let Some(v) = fields::strings(data, "allowed_policies_glob")? {
        role.allowed_policies_glob = v;
    }
    if let Some(v) = fields::strings(data, "disallowed_policies_glob")? {
        role.disallowed_policies_glob = v;
    }
    if let Some(v) = fields::strings(data, "allowed_entity_aliases")? {
        role.allowed_entity_aliases = v;
    }
    if let Some(v) = fields::boolean(data, "orphan")? {
        role.orphan = v;
    }
    if let Some(v) = fields::boolean(data, "renewable")? {
        role.renewable = v;
    }
    if let Some(v) = fields::string(data, "path_suffix")? {
        if v.contains("..") {
            return Err(Error::invalid("path_suffix cannot contain '..'"));
        }
        role.path_suffix = v;
    }
    if let Some(v) = fields::duration(data, "token_period")?.or(fields::duration(data, "period")?) {
        role.token_period = v;
    }
    if let Some(v) = fields::duration(data, "token_explicit_max_ttl")?
        .or(fields::duration(data, "explicit_max_ttl")?)
    {
        role.token_explicit_max_ttl = v;
    }
    if let Some(v) = fields::duration(data, "token_ttl")? {
        role.token_ttl = v;
    }
    if let Some(v) = fields::duration(data, "token_max_ttl")? {
        role.token_max_ttl = v;
    }
    if let Some(v) = fields::boolean(data, "token_no_default_policy")? {
        role.token_no_default_policy = v;
    }
    if let Some(v) = fields::integer(data, "token_num_uses")? {
        role.token_num_uses = v.max(0) as u64;
    }
    if let Some(v) = fields::string(data, "token_type")? {
        if !matches!(
            v.as_str(),
            "service" | "batch" | "default-service" | "default-batch" | "default"
        ) {
            return Err(Error::invalid(format!(
                "invalid 'token_type' value \"{v}\""
            )));
        }
        role.token_type = v;
    }
    if let Some(v) =
        fields::strings(data, "token_bound_cidrs")?.or(fields::strings(data, "bound_cidrs")?)
    {
        for c in &v {
            if crate::cidr::parse(c).is_none() {
                return Err(Error::invalid(format!("invalid CIDR \"{c}\"")));
            }
        }
        role.token_bound_cidrs = v;
    }
    Ok(role)
}
