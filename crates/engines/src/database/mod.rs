//! The `database` secrets engine, compatible with Vault's: dynamic users in PostgreSQL and
//! MySQL/MariaDB that exist for the length of a lease, and static users whose passwords
//! Ward rotates.
//!
//! Paths: `config/<name>` (connection), `reset/<name>`, `rotate-root/<name>`,
//! `roles/<name>` and `creds/<role>` (dynamic users), `static-roles/<name>`,
//! `static-creds/<name>` and `rotate-role/<name>` (static users).
//!
//! A dynamic credential is a [`SecretSpec`]: the core registers its lease and, at expiry or
//! revocation, calls [`Engine::revoke`], which runs the role's revocation statements (or a safe
//! default that drops the user). A PostgreSQL user is also created `VALID UNTIL` its lease
//! expiry, so it stops working on time even if Ward is down.
//!
//! The engine owns no timers: static passwords are rotated when read after their period has
//! elapsed (and on `rotate-role`), and the next rotation is reported in `ttl`.
//!
//! Secrets handled here (root passwords, generated passwords) are never logged; reads of a
//! config never return the password, and a password written literally into the connection
//! URL is masked.

mod connection;
mod credentials;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;
use ward_core::engine::{fields, LeaseInfo, MountInfo, SecretSpec};
use ward_core::secret::Secret;
use ward_core::{Engine, EngineContext, EngineRequest, EngineResponse, Error, Operation};
use zeroize::Zeroizing;

use connection::{ConnectionSettings, DbError, Dialect, Pool};
use credentials::{
    check_identifier, default_username_template, quote_literal, render_username, split_statements,
    substitute, NameInputs, PasswordPolicy,
};

const CONFIG_PREFIX: &str = "config/";
const ROLE_PREFIX: &str = "role/";
const STATIC_ROLE_PREFIX: &str = "static-role/";
/// Vault refuses static rotation periods shorter than this.
const MIN_ROTATION_PERIOD: u64 = 5;

/// Builds the engine for a `database` mount.
pub fn factory(_mount: &MountInfo) -> Result<Arc<dyn Engine>, Error> {
    Ok(Arc::new(DatabaseEngine::default()))
}

/// One engine per mount: connection pools by config name, opened lazily.
#[derive(Default)]
pub struct DatabaseEngine {
    pools: tokio::sync::Mutex<HashMap<String, Arc<Pool>>>,
    /// Serialises static rotations, so two readers never rotate the same user at once.
    rotation: tokio::sync::Mutex<()>,
}

/// `config/<name>` as stored.
#[derive(Clone, Serialize, Deserialize)]
struct DbConfig {
    plugin_name: String,
    connection_url: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: Secret,
    #[serde(default)]
    allowed_roles: Vec<String>,
    #[serde(default = "default_max_open")]
    max_open_connections: usize,
    #[serde(default)]
    password_policy: String,
    #[serde(default)]
    username_template: String,
    #[serde(default = "default_true")]
    verify_connection: bool,
    #[serde(default)]
    root_rotation_statements: Vec<String>,
}

impl fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbConfig")
            .field("plugin_name", &self.plugin_name)
            .finish_non_exhaustive()
    }
}

impl DbConfig {
    fn dialect(&self) -> Result<Dialect, Error> {
        Dialect::from_plugin(&self.plugin_name).ok_or_else(|| {
            Error::invalid(format!("unsupported plugin_name \"{}\"", self.plugin_name))
        })
    }

    fn allows(&self, role: &str) -> bool {
        self.allowed_roles.iter().any(|r| r == "*" || r == role)
    }

    fn settings(&self) -> Result<ConnectionSettings<'_>, Error> {
        Ok(ConnectionSettings {
            dialect: self.dialect()?,
            connection_url: &self.connection_url,
            username: &self.username,
            password: self.password.expose(),
            max_open_connections: self.max_open_connections,
        })
    }
}

fn default_max_open() -> usize {
    4
}

fn default_true() -> bool {
    true
}

/// `roles/<name>`: how to create, renew and revoke dynamic users.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Role {
    db_name: String,
    #[serde(default)]
    creation_statements: Vec<String>,
    #[serde(default)]
    revocation_statements: Vec<String>,
    #[serde(default)]
    renew_statements: Vec<String>,
    #[serde(default)]
    rollback_statements: Vec<String>,
    #[serde(default)]
    default_ttl: u64,
    #[serde(default)]
    max_ttl: u64,
}

/// `static-roles/<name>`: an existing user whose password Ward rotates.
#[derive(Clone, Serialize, Deserialize)]
struct StaticRole {
    db_name: String,
    username: String,
    rotation_period: u64,
    #[serde(default)]
    rotation_statements: Vec<String>,
    password: Secret,
    last_vault_rotation: i64,
}

/// What a lease keeps to find its user again.
#[derive(Debug, Serialize, Deserialize)]
struct Internal {
    username: String,
    db_name: String,
    role: String,
}

#[async_trait]
impl Engine for DatabaseEngine {
    fn requires_sudo(&self, _operation: Operation, _path: &str) -> bool {
        false
    }

    async fn exists(
        &self,
        ctx: &EngineContext,
        request: &EngineRequest,
    ) -> Result<Option<bool>, Error> {
        let path = request.path.trim_end_matches('/');
        let key = match path.split_once('/') {
            Some(("config", name)) => format!("{CONFIG_PREFIX}{name}"),
            Some(("roles", name)) => format!("{ROLE_PREFIX}{name}"),
            Some(("static-roles", name)) => format!("{STATIC_ROLE_PREFIX}{name}"),
            _ => return Ok(None),
        };
        Ok(Some(ctx.storage.get(&key).await?.is_some()))
    }

    async fn handle(
        &self,
        ctx: &EngineContext,
        request: EngineRequest,
    ) -> Result<EngineResponse, Error> {
        let path = request.path.trim_end_matches('/').to_string();
        let operation = request.op();
        let data = &request.data;
        let (head, name) = path.split_once('/').unwrap_or((path.as_str(), ""));
        match (head, name, operation) {
            ("config", "", Operation::List) => list(ctx, CONFIG_PREFIX).await,
            ("config", name, Operation::Read) => self.read_config(ctx, name).await,
            ("config", name, op) if op.is_write() => self.write_config(ctx, name, data).await,
            ("config", name, Operation::Delete) => {
                ctx.storage
                    .delete(&format!("{CONFIG_PREFIX}{name}"))
                    .await?;
                self.drop_pool(name).await;
                Ok(EngineResponse::empty())
            }
            ("reset", name, op) if op.is_write() && !name.is_empty() => {
                load_config(ctx, name).await?;
                self.drop_pool(name).await;
                Ok(EngineResponse::empty())
            }
            ("rotate-root", name, op) if op.is_write() && !name.is_empty() => {
                self.rotate_root(ctx, name).await
            }
            ("roles", "", Operation::List) => list(ctx, ROLE_PREFIX).await,
            ("roles", name, Operation::Read) => {
                let role = load_role(ctx, name).await?.ok_or_else(Error::not_found)?;
                Ok(EngineResponse::with_data(role_data(&role)))
            }
            ("roles", name, op) if op.is_write() => self.write_role(ctx, name, data).await,
            ("roles", name, Operation::Delete) => {
                ctx.storage.delete(&format!("{ROLE_PREFIX}{name}")).await?;
                Ok(EngineResponse::empty())
            }
            ("creds", name, Operation::Read | Operation::Update) if !name.is_empty() => {
                self.issue(ctx, name).await
            }
            ("static-roles", "", Operation::List) => list(ctx, STATIC_ROLE_PREFIX).await,
            ("static-roles", name, Operation::Read) => {
                let role = load_static(ctx, name).await?.ok_or_else(Error::not_found)?;
                Ok(EngineResponse::with_data(static_role_data(
                    &role,
                    ctx.now.unix_timestamp(),
                    false,
                )))
            }
            ("static-roles", name, op) if op.is_write() => {
                self.write_static_role(ctx, name, data).await
            }
            ("static-roles", name, Operation::Delete) => {
                ctx.storage
                    .delete(&format!("{STATIC_ROLE_PREFIX}{name}"))
                    .await?;
                Ok(EngineResponse::empty())
            }
            ("static-creds", name, Operation::Read) if !name.is_empty() => {
                self.static_creds(ctx, name).await
            }
            ("rotate-role", name, op) if op.is_write() && !name.is_empty() => {
                let _guard = self.rotation.lock().await;
                let role = load_static(ctx, name)
                    .await?
                    .ok_or_else(|| Error::invalid(format!("no static role named \"{name}\"")))?;
                self.rotate_static(ctx, name, role).await?;
                Ok(EngineResponse::empty())
            }
            (
                "config" | "roles" | "static-roles" | "creds" | "static-creds" | "reset"
                | "rotate-root" | "rotate-role",
                _,
                _,
            ) => Err(Error::UnsupportedOperation(path.clone())),
            _ => Err(Error::UnsupportedPath(path.clone())),
        }
    }

    async fn renew(&self, ctx: &EngineContext, lease: &LeaseInfo) -> Result<EngineResponse, Error> {
        let internal = internal_of(lease)?;
        let config = load_config(ctx, &internal.db_name).await?;
        let dialect = config.dialect()?;
        let role = load_role(ctx, &internal.role).await?.unwrap_or_default();
        let mut expiration = ctx.now + time::Duration::seconds(lease.ttl as i64);
        if role.max_ttl > 0 {
            expiration =
                expiration.min(lease.issue_time + time::Duration::seconds(role.max_ttl as i64));
        }
        let statements = if !role.renew_statements.is_empty() {
            split_statements(&role.renew_statements)
        } else {
            match dialect {
                Dialect::Postgres => {
                    vec!["ALTER ROLE \"{{name}}\" VALID UNTIL '{{expiration}}'".to_string()]
                }
                Dialect::Mysql | Dialect::MysqlLegacy => Vec::new(),
            }
        };
        if !statements.is_empty() {
            let expiration = format_expiration(expiration);
            let rendered: Vec<Zeroizing<String>> = statements
                .iter()
                .map(|s| substitute(dialect, s, &internal.username, None, Some(&expiration)))
                .collect();
            let pool = self.pool(ctx, &internal.db_name, &config).await?;
            pool.execute(&rendered).await.map_err(db_error)?;
        }
        Ok(EngineResponse {
            secret: Some(SecretSpec {
                ttl: role.default_ttl,
                max_ttl: role.max_ttl,
                renewable: true,
                internal: Value::Null,
            }),
            ..EngineResponse::default()
        })
    }

    async fn revoke(&self, ctx: &EngineContext, lease: &LeaseInfo) -> Result<(), Error> {
        let internal = internal_of(lease)?;
        check_identifier(&internal.username).map_err(Error::invalid)?;
        let config = load_config(ctx, &internal.db_name).await?;
        let role = load_role(ctx, &internal.role).await?.unwrap_or_default();
        let pool = self.pool(ctx, &internal.db_name, &config).await?;
        revoke_user(
            &pool,
            config.dialect()?,
            &role.revocation_statements,
            &internal.username,
        )
        .await
        .map_err(db_error)?;
        tracing::debug!(role = %internal.role, "database user revoked");
        Ok(())
    }

    async fn cleanup(&self, _ctx: &EngineContext) -> Result<(), Error> {
        let pools: Vec<Arc<Pool>> = self.pools.lock().await.drain().map(|(_, p)| p).collect();
        for pool in pools {
            if let Ok(pool) = Arc::try_unwrap(pool) {
                pool.close().await;
            }
        }
        Ok(())
    }
}

impl DatabaseEngine {
    /// The pool of a config, opened on first use.
    async fn pool(
        &self,
        _ctx: &EngineContext,
        name: &str,
        config: &DbConfig,
    ) -> Result<Arc<Pool>, Error> {
        let mut pools = self.pools.lock().await;
        if let Some(pool) = pools.get(name) {
            return Ok(pool.clone());
        }
        let pool = Arc::new(Pool::new(&config.settings()?).map_err(db_error)?);
        pools.insert(name.to_string(), pool.clone());
        Ok(pool)
    }

    async fn drop_pool(&self, name: &str) {
        let removed = self.pools.lock().await.remove(name);
        if let Some(pool) = removed {
            if let Ok(pool) = Arc::try_unwrap(pool) {
                pool.close().await;
            }
        }
    }

    async fn read_config(&self, ctx: &EngineContext, name: &str) -> Result<EngineResponse, Error> {
        let config: DbConfig = ctx
            .storage
            .get_json(&format!("{CONFIG_PREFIX}{name}"))
            .await?
            .ok_or_else(Error::not_found)?;
        let mut data = Map::new();
        data.insert("plugin_name".into(), json!(config.plugin_name));
        data.insert("plugin_version".into(), json!(""));
        data.insert(
            "connection_details".into(),
            json!({
                "connection_url": connection::redact_url(&config.connection_url),
                "username": config.username,
                "max_open_connections": config.max_open_connections,
                "username_template": config.username_template,
            }),
        );
        data.insert("allowed_roles".into(), json!(config.allowed_roles));
        data.insert("password_policy".into(), json!(config.password_policy));
        data.insert("verify_connection".into(), json!(config.verify_connection));
        data.insert(
            "root_credentials_rotate_statements".into(),
            json!(config.root_rotation_statements),
        );
        Ok(EngineResponse::with_data(data))
    }

    async fn write_config(
        &self,
        ctx: &EngineContext,
        name: &str,
        data: &Map<String, Value>,
    ) -> Result<EngineResponse, Error> {
        check_name(name)?;
        let key = format!("{CONFIG_PREFIX}{name}");
        let existing: Option<DbConfig> = ctx.storage.get_json(&key).await?;
        let plugin_name = fields::string(data, "plugin_name")?
            .filter(|p| !p.is_empty())
            .or(existing.as_ref().map(|c| c.plugin_name.clone()))
            .ok_or_else(|| Error::invalid("plugin_name must be specified"))?;
        if Dialect::from_plugin(&plugin_name).is_none() {
            return Err(Error::invalid(format!(
                "unsupported plugin_name \"{plugin_name}\""
            )));
        }
        let connection_url = fields::string(data, "connection_url")?
            .or(existing.as_ref().map(|c| c.connection_url.clone()))
            .filter(|u| !u.is_empty())
            .ok_or_else(|| Error::invalid("connection_url must be specified"))?;
        let password_policy = fields::string(data, "password_policy")?
            .or(existing.as_ref().map(|c| c.password_policy.clone()))
            .unwrap_or_default();
        PasswordPolicy::parse(&password_policy)?;
        let config = DbConfig {
            plugin_name,
            connection_url,
            username: fields::string(data, "username")?
                .or(existing.as_ref().map(|c| c.username.clone()))
                .unwrap_or_default(),
            password: match fields::string(data, "password")? {
                Some(text) => Secret::from(text),
                None => existing
                    .as_ref()
                    .map(|c| c.password.clone())
                    .unwrap_or_default(),
            },
            allowed_roles: fields::strings(data, "allowed_roles")?
                .or(existing.as_ref().map(|c| c.allowed_roles.clone()))
                .unwrap_or_default(),
            max_open_connections: match fields::integer(data, "max_open_connections")? {
                Some(n) if n > 0 => n as usize,
                Some(_) => return Err(Error::invalid("max_open_connections must be positive")),
                None => existing
                    .as_ref()
                    .map(|c| c.max_open_connections)
                    .unwrap_or_else(default_max_open),
            },
            password_policy,
            username_template: fields::string(data, "username_template")?
                .or(existing.as_ref().map(|c| c.username_template.clone()))
                .unwrap_or_default(),
            verify_connection: fields::boolean(data, "verify_connection")?.unwrap_or(true),
            root_rotation_statements: fields::strings(data, "root_rotation_statements")?
                .or(existing
                    .as_ref()
                    .map(|c| c.root_rotation_statements.clone()))
                .unwrap_or_default(),
        };
        if !config.username_template.is_empty() {
            let inputs = NameInputs {
                display_name: "token",
                role_name: "role",
                unix_time: 0,
            };
            render_username(
                &config.username_template,
                &inputs,
                config.dialect()?.max_username_len(),
            )?;
        }
        let pool = Pool::new(&config.settings()?)
            .map_err(|e| Error::invalid(format!("error creating database object: {e}")))?;
        if config.verify_connection {
            if let Err(e) = pool.verify().await {
                pool.close().await;
                return Err(Error::invalid(format!(
                    "error creating database object: {e}"
                )));
            }
        }
        ctx.storage.put_json(&key, &config).await?;
        self.drop_pool(name).await;
        self.pools
            .lock()
            .await
            .insert(name.to_string(), Arc::new(pool));
        tracing::info!(config = %name, plugin = %config.plugin_name, "database connection configured");
        Ok(EngineResponse::empty())
    }

    async fn rotate_root(&self, ctx: &EngineContext, name: &str) -> Result<EngineResponse, Error> {
        let mut config = load_config(ctx, name).await?;
        if config.username.is_empty() || config.password.is_empty() {
            return Err(Error::invalid(
                "unable to rotate root credentials: no username or password in the configuration",
            ));
        }
        check_identifier(&config.username).map_err(Error::invalid)?;
        let dialect = config.dialect()?;
        let password = PasswordPolicy::parse(&config.password_policy)?.generate();
        let statements = if config.root_rotation_statements.is_empty() {
            match dialect {
                Dialect::Postgres => {
                    vec!["ALTER ROLE \"{{username}}\" WITH PASSWORD '{{password}}'".to_string()]
                }
                Dialect::Mysql | Dialect::MysqlLegacy => {
                    vec!["ALTER USER CURRENT_USER() IDENTIFIED BY '{{password}}'".to_string()]
                }
            }
        } else {
            split_statements(&config.root_rotation_statements)
        };
        let rendered: Vec<Zeroizing<String>> = statements
            .iter()
            .map(|s| substitute(dialect, s, &config.username, Some(&password), None))
            .collect();
        let pool = self.pool(ctx, name, &config).await?;
        pool.execute(&rendered).await.map_err(db_error)?;
        config.password = Secret::new(password.as_str());
        ctx.storage
            .put_json(&format!("{CONFIG_PREFIX}{name}"), &config)
            .await?;
        drop(pool);
        self.drop_pool(name).await;
        tracing::info!(config = %name, "root credentials rotated");
        Ok(EngineResponse::empty())
    }

    async fn write_role(
        &self,
        ctx: &EngineContext,
        name: &str,
        data: &Map<String, Value>,
    ) -> Result<EngineResponse, Error> {
        check_name(name)?;
        let existing = load_role(ctx, name).await?;
        let base = existing.clone().unwrap_or_default();
        let statements = |key: &str, current: &Vec<String>| -> Result<Vec<String>, Error> {
            Ok(fields::strings(data, key)?
                .map(|list| list.into_iter().filter(|s| !s.is_empty()).collect())
                .unwrap_or_else(|| current.clone()))
        };
        let role = Role {
            db_name: fields::string(data, "db_name")?
                .filter(|s| !s.is_empty())
                .unwrap_or(base.db_name.clone()),
            creation_statements: statements_field(data, "creation_statements")?
                .unwrap_or(base.creation_statements.clone()),
            revocation_statements: statements(
                "revocation_statements",
                &base.revocation_statements,
            )?,
            renew_statements: statements("renew_statements", &base.renew_statements)?,
            rollback_statements: statements("rollback_statements", &base.rollback_statements)?,
            default_ttl: fields::duration(data, "default_ttl")?.unwrap_or(base.default_ttl),
            max_ttl: fields::duration(data, "max_ttl")?.unwrap_or(base.max_ttl),
        };
        if role.db_name.is_empty() {
            return Err(Error::invalid("empty database name attribute"));
        }
        if role.creation_statements.is_empty() {
            return Err(Error::invalid("creation_statements must be specified"));
        }
        if role.max_ttl > 0 && role.default_ttl > role.max_ttl {
            return Err(Error::invalid("ttl cannot be greater than max_ttl"));
        }
        let config = load_config(ctx, &role.db_name).await?;
        if config.verify_connection {
            // Bad SQL fails the write with the database's message, and leaves nothing behind.
            self.check_creation_statements(ctx, &role, &config).await?;
        }
        ctx.storage
            .put_json(&format!("{ROLE_PREFIX}{name}"), &role)
            .await?;
        Ok(EngineResponse::empty())
    }

    /// Runs a role's creation statements for a throwaway user and undoes them: in a
    /// transaction that is rolled back (PostgreSQL), or followed by the revocation (MySQL,
    /// which commits DDL as it goes).
    async fn check_creation_statements(
        &self,
        ctx: &EngineContext,
        role: &Role,
        config: &DbConfig,
    ) -> Result<(), Error> {
        let dialect = config.dialect()?;
        let username = render_username(
            "v-check-{{random 20}}",
            &NameInputs {
                display_name: "",
                role_name: "",
                unix_time: 0,
            },
            32,
        )?;
        let password = PasswordPolicy::default().generate();
        let expiration = format_expiration(ctx.now + time::Duration::minutes(5));
        let rendered: Vec<Zeroizing<String>> = split_statements(&role.creation_statements)
            .iter()
            .map(|s| substitute(dialect, s, &username, Some(&password), Some(&expiration)))
            .collect();
        let pool = self.pool(ctx, &role.db_name, config).await?;
        let outcome = match dialect {
            Dialect::Postgres => pool.execute_and_roll_back(&rendered).await,
            Dialect::Mysql | Dialect::MysqlLegacy => {
                let outcome = pool.execute(&rendered).await;
                if let Err(e) = revoke_user(&pool, dialect, &[], &username).await {
                    tracing::warn!(error = %e, "could not remove the user created to check a role's statements");
                }
                outcome
            }
        };
        outcome.map_err(|e| Error::invalid(format!("creation statements failed: {e}")))
    }

    /// `creds/<role>`: a new user with a fresh password, leased.
    async fn issue(&self, ctx: &EngineContext, role_name: &str) -> Result<EngineResponse, Error> {
        let role = load_role(ctx, role_name)
            .await?
            .ok_or_else(|| Error::invalid(format!("unknown role: {role_name}")))?;
        let config = load_config(ctx, &role.db_name).await?;
        if !config.allows(role_name) {
            return Err(Error::invalid(format!(
                "\"{role_name}\" is not an allowed role"
            )));
        }
        let dialect = config.dialect()?;
        // The lease's TTL, computed as the core will (role TTL or mount default, capped by
        // the role's and the mount's max), so that VALID UNTIL matches the lease expiry.
        let mut max = ctx.mount.max_lease_ttl;
        if role.max_ttl > 0 && role.max_ttl < max {
            max = role.max_ttl;
        }
        let ttl = if role.default_ttl > 0 {
            role.default_ttl
        } else {
            ctx.mount.default_lease_ttl
        }
        .min(max);
        let expiration = format_expiration(ctx.now + time::Duration::seconds(ttl as i64));
        let template = if config.username_template.is_empty() {
            default_username_template(dialect).to_string()
        } else {
            config.username_template.clone()
        };
        let inputs = NameInputs {
            display_name: "token",
            role_name,
            unix_time: ctx.now.unix_timestamp(),
        };
        let username = render_username(&template, &inputs, dialect.max_username_len())?;
        let password = PasswordPolicy::parse(&config.password_policy)?.generate();
        let rendered: Vec<Zeroizing<String>> = split_statements(&role.creation_statements)
            .iter()
            .map(|s| substitute(dialect, s, &username, Some(&password), Some(&expiration)))
            .collect();
        let pool = self.pool(ctx, &role.db_name, &config).await?;
        if let Err(e) = pool.execute(&rendered).await {
            // PostgreSQL rolled the transaction back; MySQL may have kept part of it.
            if !matches!(e, DbError::Connect(_)) {
                self.roll_back_user(&pool, dialect, &role, &username, &password)
                    .await;
            }
            return Err(db_error(e));
        }
        let mut data = Map::new();
        data.insert("username".into(), json!(username));
        data.insert("password".into(), json!(password.as_str()));
        let internal = Internal {
            username,
            db_name: role.db_name.clone(),
            role: role_name.to_string(),
        };
        Ok(EngineResponse {
            data: Some(data),
            secret: Some(SecretSpec {
                ttl: role.default_ttl,
                max_ttl: role.max_ttl,
                renewable: true,
                internal: serde_json::to_value(&internal)
                    .map_err(|e| Error::internal(e.to_string()))?,
            }),
            ..EngineResponse::default()
        })
    }

    /// After failed creation statements: the role's rollback statements, then (MySQL) the
    /// safe revocation, so no half-created user survives.
    async fn roll_back_user(
        &self,
        pool: &Pool,
        dialect: Dialect,
        role: &Role,
        username: &str,
        password: &str,
    ) {
        if !role.rollback_statements.is_empty() {
            let rendered: Vec<Zeroizing<String>> = split_statements(&role.rollback_statements)
                .iter()
                .map(|s| substitute(dialect, s, username, Some(password), None))
                .collect();
            if let Err(e) = pool.execute(&rendered).await {
                tracing::warn!(error = %e, "rollback statements failed");
            }
        }
        if dialect != Dialect::Postgres {
            if let Err(e) = revoke_user(pool, dialect, &[], username).await {
                tracing::warn!(error = %e, "could not remove a half-created user");
            }
        }
    }

    async fn write_static_role(
        &self,
        ctx: &EngineContext,
        name: &str,
        data: &Map<String, Value>,
    ) -> Result<EngineResponse, Error> {
        check_name(name)?;
        let _guard = self.rotation.lock().await;
        let existing = load_static(ctx, name).await?;
        let db_name = fields::string(data, "db_name")?
            .filter(|s| !s.is_empty())
            .or(existing.as_ref().map(|r| r.db_name.clone()))
            .ok_or_else(|| Error::invalid("empty database name attribute"))?;
        let username = fields::string(data, "username")?
            .filter(|s| !s.is_empty())
            .or(existing.as_ref().map(|r| r.username.clone()))
            .ok_or_else(|| {
                Error::invalid("username is a required field to create a static account")
            })?;
        if existing.as_ref().is_some_and(|r| r.username != username) {
            return Err(Error::invalid("cannot update static account username"));
        }
        check_identifier(&username).map_err(Error::invalid)?;
        let rotation_period = fields::duration(data, "rotation_period")?
            .or(existing.as_ref().map(|r| r.rotation_period))
            .ok_or_else(|| {
                Error::invalid("rotation_period is required to create static accounts")
            })?;
        if rotation_period < MIN_ROTATION_PERIOD {
            return Err(Error::invalid(format!(
                "rotation_period must be {MIN_ROTATION_PERIOD} seconds or more"
            )));
        }
        let role = StaticRole {
            db_name,
            username,
            rotation_period,
            rotation_statements: fields::strings(data, "rotation_statements")?
                .or(existing.as_ref().map(|r| r.rotation_statements.clone()))
                .unwrap_or_default(),
            password: existing
                .as_ref()
                .map(|r| r.password.clone())
                .unwrap_or_default(),
            last_vault_rotation: existing
                .as_ref()
                .map(|r| r.last_vault_rotation)
                .unwrap_or(0),
        };
        let config = load_config(ctx, &role.db_name).await?;
        if !config.allows(name) {
            return Err(Error::invalid(format!("\"{name}\" is not an allowed role")));
        }
        if existing.is_none() {
            // Vault rotates a static account's password as soon as it is managed.
            self.rotate_static(ctx, name, role).await?;
        } else {
            ctx.storage
                .put_json(&format!("{STATIC_ROLE_PREFIX}{name}"), &role)
                .await?;
        }
        Ok(EngineResponse::empty())
    }

    /// Sets a new password on a static user and stores it. The caller holds `rotation`.
    async fn rotate_static(
        &self,
        ctx: &EngineContext,
        name: &str,
        mut role: StaticRole,
    ) -> Result<StaticRole, Error> {
        let config = load_config(ctx, &role.db_name).await?;
        let dialect = config.dialect()?;
        let password = PasswordPolicy::parse(&config.password_policy)?.generate();
        let statements = if role.rotation_statements.is_empty() {
            match dialect {
                Dialect::Postgres => {
                    vec!["ALTER ROLE \"{{name}}\" WITH PASSWORD '{{password}}'".to_string()]
                }
                Dialect::Mysql | Dialect::MysqlLegacy => {
                    vec!["ALTER USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'".to_string()]
                }
            }
        } else {
            split_statements(&role.rotation_statements)
        };
        let rendered: Vec<Zeroizing<String>> = statements
            .iter()
            .map(|s| substitute(dialect, s, &role.username, Some(&password), None))
            .collect();
        let pool = self.pool(ctx, &role.db_name, &config).await?;
        pool.execute(&rendered).await.map_err(db_error)?;
        role.password = Secret::new(password.as_str());
        role.last_vault_rotation = ctx.now.unix_timestamp();
        ctx.storage
            .put_json(&format!("{STATIC_ROLE_PREFIX}{name}"), &role)
            .await?;
        tracing::info!(static_role = %name, "static database password rotated");
        Ok(role)
    }

    /// `static-creds/<name>`, rotating first when the period has elapsed.
    async fn static_creds(&self, ctx: &EngineContext, name: &str) -> Result<EngineResponse, Error> {
        let _guard = self.rotation.lock().await;
        let mut role = load_static(ctx, name)
            .await?
            .ok_or_else(|| Error::invalid(format!("unknown role: {name}")))?;
        let now = ctx.now.unix_timestamp();
        if now >= role.last_vault_rotation + role.rotation_period as i64 {
            role = self.rotate_static(ctx, name, role).await?;
        }
        Ok(EngineResponse::with_data(static_role_data(
            &role, now, true,
        )))
    }
}

/// Drops a user: the role's revocation statements, or a safe default. Idempotent: a user
/// that is already gone is revoked.
async fn revoke_user(
    pool: &Pool,
    dialect: Dialect,
    statements: &[String],
    username: &str,
) -> Result<(), DbError> {
    if !statements.is_empty() {
        let rendered: Vec<Zeroizing<String>> = split_statements(statements)
            .iter()
            .map(|s| substitute(dialect, s, username, None, None))
            .collect();
        return pool.execute(&rendered).await;
    }
    match dialect {
        Dialect::Postgres => pool.drop_pg_role(username).await,
        Dialect::Mysql | Dialect::MysqlLegacy => {
            let user = quote_literal(dialect, username);
            let statements: Vec<Zeroizing<String>> = pool
                .user_hosts(username)
                .await?
                .iter()
                .map(|host| {
                    Zeroizing::new(format!(
                        "DROP USER IF EXISTS {user}@{}",
                        quote_literal(dialect, host)
                    ))
                })
                .collect();
            if statements.is_empty() {
                return Ok(());
            }
            pool.execute(&statements).await
        }
    }
}

/// `{{expiration}}` as PostgreSQL's `VALID UNTIL` takes it: `2024-05-01 12:15:00+00`.
fn format_expiration(at: OffsetDateTime) -> String {
    let utc = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}+00",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second()
    )
}

fn db_error(e: DbError) -> Error {
    Error::invalid(e.to_string())
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.contains('/') {
        return Err(Error::invalid("invalid name"));
    }
    Ok(())
}

/// Statements as Vault accepts them: a list, or one string (which may hold several `;`
/// separated statements and must not be split on commas).
fn statements_field(data: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, Error> {
    match data.get(key) {
        Some(Value::String(s)) => Ok(Some(if s.trim().is_empty() {
            Vec::new()
        } else {
            vec![s.clone()]
        })),
        _ => fields::strings(data, key),
    }
}

fn internal_of(lease: &LeaseInfo) -> Result<Internal, Error> {
    serde_json::from_value(lease.internal.clone())
        .map_err(|_| Error::internal("database lease without its user"))
}

async fn load_config(ctx: &EngineContext, name: &str) -> Result<DbConfig, Error> {
    ctx.storage
        .get_json(&format!("{CONFIG_PREFIX}{name}"))
        .await?
        .ok_or_else(|| Error::invalid(format!("no database config named \"{name}\"")))
}

async fn load_role(ctx: &EngineContext, name: &str) -> Result<Option<Role>, Error> {
    if name.is_empty() {
        return Ok(None);
    }
    ctx.storage.get_json(&format!("{ROLE_PREFIX}{name}")).await
}

async fn load_static(ctx: &EngineContext, name: &str) -> Result<Option<StaticRole>, Error> {
    ctx.storage
        .get_json(&format!("{STATIC_ROLE_PREFIX}{name}"))
        .await
}

async fn list(ctx: &EngineContext, prefix: &str) -> Result<EngineResponse, Error> {
    EngineResponse::list(ctx.storage.list(prefix).await?)
}

fn role_data(role: &Role) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("db_name".into(), json!(role.db_name));
    data.insert(
        "creation_statements".into(),
        json!(role.creation_statements),
    );
    data.insert(
        "revocation_statements".into(),
        json!(role.revocation_statements),
    );
    data.insert("renew_statements".into(), json!(role.renew_statements));
    data.insert(
        "rollback_statements".into(),
        json!(role.rollback_statements),
    );
    data.insert("default_ttl".into(), json!(role.default_ttl));
    data.insert("max_ttl".into(), json!(role.max_ttl));
    data.insert("credential_type".into(), json!("password"));
    data
}

fn static_role_data(role: &StaticRole, now: i64, with_password: bool) -> Map<String, Value> {
    let next = role.last_vault_rotation + role.rotation_period as i64;
    let mut data = Map::new();
    data.insert("db_name".into(), json!(role.db_name));
    data.insert("username".into(), json!(role.username));
    data.insert("rotation_period".into(), json!(role.rotation_period));
    data.insert(
        "last_vault_rotation".into(),
        json!(ward_core::clock::rfc3339_unix(role.last_vault_rotation)),
    );
    data.insert("ttl".into(), json!((next - now).max(0)));
    if with_password {
        data.insert("password".into(), json!(role.password.expose()));
    } else {
        data.insert(
            "rotation_statements".into(),
            json!(role.rotation_statements),
        );
        data.insert("credential_type".into(), json!("password"));
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiration_is_formatted_for_valid_until() {
        let at = time::macros::datetime!(2024-05-01 12:00:00.5 +02:00);
        assert_eq!(format_expiration(at), "2024-05-01 10:00:00+00");
    }

    #[test]
    fn statements_may_be_one_string_or_a_list() {
        let data = serde_json::from_value::<Map<String, Value>>(json!({
            "one": "CREATE ROLE \"{{name}}\"; GRANT a, b TO \"{{name}}\";",
            "many": ["A", "B"],
        }))
        .expect("json");
        assert_eq!(
            statements_field(&data, "one")
                .expect("one")
                .map(|v| v.len()),
            Some(1),
            "not split on commas"
        );
        assert_eq!(
            statements_field(&data, "many").expect("many"),
            Some(vec!["A".to_string(), "B".to_string()])
        );
    }
}
