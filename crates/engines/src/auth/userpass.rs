//! The `userpass` auth method: users with a password and token fields, and `login/<name>`.
//!
//! Passwords are hashed with Argon2id (PHC strings) on a blocking thread and never returned.
//! Usernames are lower-cased, as in Vault, for storage, login and the failed-login counter
//! alike (so `Alice` and `alice` are one identity, CVE-2025-6004). A failed login answers
//! "invalid username or password" whether the user is unknown or the password wrong, after
//! the same work: an unknown user's password is checked against a dummy hash, so timing does
//! not reveal which users exist (CVE-2025-6011).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use async_trait::async_trait;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use ward_core::engine::{AliasSpec, MountInfo};
use ward_core::{Engine, EngineContext, EngineRequest, EngineResponse, Error, Operation};

use crate::auth::secret::{self, Secret};
use crate::auth::token_fields::TokenFields;
use crate::auth::{is_list_root, name_segment};

/// Builds a userpass engine for a mount.
pub fn factory(_mount: &MountInfo) -> Result<Arc<dyn Engine>, Error> {
    Ok(Arc::new(UserpassEngine::default()))
}

/// The userpass engine; users live in the mount's storage under `user/<name>`.
#[derive(Debug, Default)]
pub struct UserpassEngine {
    failed_logins: FailedLogins,
}

#[derive(Clone, Serialize, Deserialize)]
struct UserEntry {
    /// An Argon2id PHC string.
    password_hash: Secret,
    #[serde(flatten)]
    token: TokenFields,
}

const INVALID_CREDENTIALS: &str = "invalid username or password";

#[async_trait]
impl Engine for UserpassEngine {
    fn is_unauthenticated(&self, path: &str) -> bool {
        path.starts_with("login/")
    }

    async fn exists(
        &self,
        ctx: &EngineContext,
        request: &EngineRequest,
    ) -> Result<Option<bool>, Error> {
        match request.path.strip_prefix("users/").and_then(name_segment) {
            Some(name) => Ok(Some(ctx.storage.get(&user_key(name)).await?.is_some())),
            None => Ok(None),
        }
    }

    async fn handle(
        &self,
        ctx: &EngineContext,
        request: EngineRequest,
    ) -> Result<EngineResponse, Error> {
        let operation = request.op();
        if operation == Operation::List && is_list_root(&request.path, "users") {
            return self.list(ctx).await;
        }
        let segments: Vec<&str> = request.path.split('/').collect();
        match (operation, segments.as_slice()) {
            (Operation::Create | Operation::Update, ["login", name]) if !name.is_empty() => {
                self.login(ctx, name, &request.data).await
            }
            (Operation::Read, ["users", name]) if !name.is_empty() => {
                self.read_user(ctx, name).await
            }
            (Operation::Create | Operation::Update, ["users", name]) if !name.is_empty() => {
                self.write_user(ctx, name, &request.data).await
            }
            (Operation::Delete, ["users", name]) if !name.is_empty() => {
                ctx.storage.delete(&user_key(name)).await?;
                Ok(EngineResponse::empty())
            }
            (Operation::Create | Operation::Update, ["users", name, "password"])
                if !name.is_empty() =>
            {
                let mut user = existing_user(ctx, name).await?;
                let password = secret::field(&request.data, "password")?
                    .ok_or_else(|| Error::invalid("missing password"))?;
                user.password_hash = hash_password(password).await?;
                ctx.storage.put_json(&user_key(name), &user).await?;
                Ok(EngineResponse::empty())
            }
            (Operation::Create | Operation::Update, ["users", name, "policies"])
                if !name.is_empty() =>
            {
                let mut user = existing_user(ctx, name).await?;
                let mut only_policies = Map::new();
                for key in ["token_policies", "policies"] {
                    if let Some(v) = request.data.get(key) {
                        only_policies.insert(key.into(), v.clone());
                    }
                }
                user.token.update(&only_policies)?;
                ctx.storage.put_json(&user_key(name), &user).await?;
                Ok(EngineResponse::empty())
            }
            _ => Err(Error::UnsupportedPath(request.path)),
        }
    }
}

impl UserpassEngine {
    /// Failed logins so far for `username` (normalised like a login), for metrics and tests.
    pub fn failed_logins(&self, username: &str) -> u64 {
        self.failed_logins.of(&normalize(username))
    }

    async fn list(&self, ctx: &EngineContext) -> Result<EngineResponse, Error> {
        let mut keys = ctx.storage.list("user/").await?;
        keys.sort();
        EngineResponse::list(keys)
    }

    async fn read_user(&self, ctx: &EngineContext, name: &str) -> Result<EngineResponse, Error> {
        let user: UserEntry = ctx
            .storage
            .get_json(&user_key(name))
            .await?
            .ok_or_else(Error::not_found)?;
        let mut data = Map::new();
        user.token.write_to(&mut data);
        Ok(EngineResponse::with_data(data))
    }

    async fn write_user(
        &self,
        ctx: &EngineContext,
        name: &str,
        data: &Map<String, Value>,
    ) -> Result<EngineResponse, Error> {
        let existing: Option<UserEntry> = ctx.storage.get_json(&user_key(name)).await?;
        let password = secret::field(data, "password")?;
        let mut token = existing
            .as_ref()
            .map(|u| u.token.clone())
            .unwrap_or_default();
        token.update(data)?;
        let password_hash = match (password, existing) {
            (Some(password), _) => hash_password(password).await?,
            (None, Some(user)) => user.password_hash,
            (None, None) => return Err(Error::invalid("missing password")),
        };
        ctx.storage
            .put_json(
                &user_key(name),
                &UserEntry {
                    password_hash,
                    token,
                },
            )
            .await?;
        Ok(EngineResponse::empty())
    }

    async fn login(
        &self,
        ctx: &EngineContext,
        name: &str,
        data: &Map<String, Value>,
    ) -> Result<EngineResponse, Error> {
        let username = normalize(name);
        let password =
            secret::field(data, "password")?.ok_or_else(|| Error::invalid("missing password"))?;
        let user: Option<UserEntry> = ctx.storage.get_json(&format!("user/{username}")).await?;
        let stored_hash = user.as_ref().map(|u| u.password_hash.clone());
        // Both branches hash: the unknown user against the dummy, so the work is the same.
        let verified = tokio::task::spawn_blocking(move || {
            let dummy = dummy_hash();
            let hash = stored_hash.as_ref().unwrap_or(dummy);
            verify_password(&password, hash)
        })
        .await
        .map_err(|e| Error::internal(format!("password check task: {e}")))?;
        let user = match (user, verified) {
            (Some(user), true) => user,
            (user, _) => {
                self.failed_logins
                    .record(user.is_some().then_some(username.as_str()));
                return Err(Error::invalid(INVALID_CREDENTIALS));
            }
        };
        user.token
            .check_login_address(ctx.remote_address.as_deref())?;
        let mut auth = user.token.auth_spec();
        auth.display_name = username.clone();
        auth.internal = serde_json::json!({"username": username});
        auth.metadata = BTreeMap::from([("username".to_string(), username.clone())]);
        auth.alias = Some(AliasSpec {
            name: username,
            metadata: BTreeMap::new(),
        });
        Ok(EngineResponse {
            auth: Some(auth),
            ..EngineResponse::default()
        })
    }
}

fn normalize(name: &str) -> String {
    name.to_lowercase()
}

fn user_key(name: &str) -> String {
    format!("user/{}", normalize(name))
}

async fn existing_user(ctx: &EngineContext, name: &str) -> Result<UserEntry, Error> {
    ctx.storage
        .get_json(&user_key(name))
        .await?
        .ok_or_else(|| Error::invalid("username does not exist"))
}

/// Argon2id with the library's defaults (OWASP: 19 MiB, 2 passes, 1 lane).
async fn hash_password(password: Secret) -> Result<Secret, Error> {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        let salt =
            SaltString::encode_b64(&salt).map_err(|e| Error::internal(format!("salt: {e}")))?;
        Argon2::default()
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|hash| Secret::new(hash.to_string()))
            .map_err(|e| Error::internal(format!("hashing a password: {e}")))
    })
    .await
    .map_err(|e| Error::internal(format!("password hash task: {e}")))?
}

fn verify_password(password: &Secret, hash: &Secret) -> bool {
    PasswordHash::new(hash.expose()).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.expose().as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash of a random password with the same parameters as real ones, made once per process.
fn dummy_hash() -> &'static Secret {
    static DUMMY: OnceLock<Secret> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        let salt = SaltString::encode_b64(&bytes[..16]).ok();
        salt.and_then(|salt| {
            Argon2::default()
                .hash_password(&bytes[16..], &salt)
                .ok()
                .map(|hash| Secret::new(hash.to_string()))
        })
        .unwrap_or_default()
    })
}

/// Failed logins per user (normalised), and one bucket for all unknown names so that
/// guessing names cannot grow the map.
#[derive(Debug, Default)]
struct FailedLogins {
    by_user: Mutex<HashMap<String, u64>>,
    unknown_users: AtomicU64,
}

impl FailedLogins {
    fn record(&self, known_user: Option<&str>) {
        match known_user {
            Some(name) => {
                if let Ok(mut map) = self.by_user.lock() {
                    *map.entry(name.to_string()).or_default() += 1;
                }
            }
            None => {
                self.unknown_users.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn of(&self, name: &str) -> u64 {
        self.by_user
            .lock()
            .ok()
            .and_then(|m| m.get(name).copied())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::auth::test_support::auth_context;
    use crate::testing::{object, request};

    async fn setup() -> (UserpassEngine, EngineContext) {
        let engine = UserpassEngine::default();
        let ctx = auth_context("userpass").await;
        engine
            .handle(&ctx, request(Operation::Create, "users/Alice", json!({"password": "correct horse", "token_policies": "dev,ops", "token_ttl": "1h"})))
            .await
            .expect("create user");
        (engine, ctx)
    }

    #[tokio::test]
    async fn login_returns_auth_with_username_metadata_and_alias() {
        let (engine, ctx) = setup().await;
        let response = engine
            .handle(
                &ctx,
                request(
                    Operation::Update,
                    "login/ALICE",
                    json!({"password": "correct horse"}),
                ),
            )
            .await
            .expect("login");
        let auth = response.auth.expect("auth");
        assert_eq!(auth.policies, ["dev", "ops"]);
        assert_eq!(auth.ttl, 3600);
        assert_eq!(auth.display_name, "alice");
        assert_eq!(
            auth.metadata.get("username").map(String::as_str),
            Some("alice")
        );
        assert_eq!(auth.alias.map(|a| a.name), Some("alice".into()));
    }

    #[tokio::test]
    async fn unknown_user_and_wrong_password_fail_identically() {
        let (engine, ctx) = setup().await;
        let wrong = engine
            .handle(
                &ctx,
                request(
                    Operation::Update,
                    "login/alice",
                    json!({"password": "nope"}),
                ),
            )
            .await;
        let unknown = engine
            .handle(
                &ctx,
                request(
                    Operation::Update,
                    "login/mallory",
                    json!({"password": "nope"}),
                ),
            )
            .await;
        assert_eq!(wrong, Err(Error::invalid("invalid username or password")));
        assert_eq!(wrong, unknown, "byte-identical errors");
        assert_eq!(
            engine.failed_logins("Alice"),
            1,
            "counted under the normalised name"
        );
        assert_eq!(
            engine.failed_logins("mallory"),
            0,
            "unknown names do not grow the map"
        );
    }

    #[tokio::test]
    async fn read_never_returns_the_password_and_updates_apply() {
        let (engine, ctx) = setup().await;
        let read = engine
            .handle(&ctx, request(Operation::Read, "users/alice", json!({})))
            .await
            .expect("read");
        let data = read.data.expect("data");
        assert!(!data.keys().any(|k| k.contains("password")), "{data:?}");
        assert_eq!(data["token_policies"], json!(["dev", "ops"]));

        engine
            .handle(
                &ctx,
                request(
                    Operation::Update,
                    "users/alice/password",
                    json!({"password": "new"}),
                ),
            )
            .await
            .expect("password");
        engine
            .handle(
                &ctx,
                request(
                    Operation::Update,
                    "users/alice/policies",
                    json!({"policies": ["admin"]}),
                ),
            )
            .await
            .expect("policies");
        let old = engine
            .handle(
                &ctx,
                request(
                    Operation::Update,
                    "login/alice",
                    json!({"password": "correct horse"}),
                ),
            )
            .await;
        assert!(old.is_err());
        let new = engine
            .handle(
                &ctx,
                request(Operation::Update, "login/alice", json!({"password": "new"})),
            )
            .await
            .expect("login with new password");
        assert_eq!(new.auth.expect("auth").policies, ["admin"]);
        assert_eq!(
            new_ttl_kept(&engine, &ctx).await,
            json!(3600),
            "a policies update keeps other fields"
        );

        let listed = engine
            .handle(&ctx, request(Operation::List, "users", json!({})))
            .await
            .expect("list");
        assert_eq!(listed.data, Some(object(json!({"keys": ["alice"]}))));
        engine
            .handle(&ctx, request(Operation::Delete, "users/alice", json!({})))
            .await
            .expect("delete");
        let gone = engine
            .handle(&ctx, request(Operation::Read, "users/alice", json!({})))
            .await;
        assert_eq!(gone, Err(Error::not_found()));
        let no_user = engine
            .handle(
                &ctx,
                request(
                    Operation::Update,
                    "users/bob/password",
                    json!({"password": "x"}),
                ),
            )
            .await;
        assert_eq!(no_user, Err(Error::invalid("username does not exist")));
        let no_password = engine
            .handle(&ctx, request(Operation::Create, "users/bob", json!({})))
            .await;
        assert_eq!(no_password, Err(Error::invalid("missing password")));
    }

    async fn new_ttl_kept(engine: &UserpassEngine, ctx: &EngineContext) -> Value {
        let read = engine
            .handle(ctx, request(Operation::Read, "users/alice", json!({})))
            .await
            .expect("read");
        read.data.expect("data")["token_ttl"].clone()
    }

    #[tokio::test]
    async fn token_bound_cidrs_deny_logins_from_elsewhere() {
        let (engine, mut ctx) = setup().await;
        engine
            .handle(
                &ctx,
                request(
                    Operation::Update,
                    "users/alice",
                    json!({"token_bound_cidrs": ["10.0.0.0/8"]}),
                ),
            )
            .await
            .expect("update");
        ctx.remote_address = Some("192.168.1.1".into());
        let denied = engine
            .handle(
                &ctx,
                request(
                    Operation::Update,
                    "login/alice",
                    json!({"password": "correct horse"}),
                ),
            )
            .await;
        assert_eq!(denied, Err(Error::denied()));
        ctx.remote_address = Some("10.2.3.4".into());
        let allowed = engine
            .handle(
                &ctx,
                request(
                    Operation::Update,
                    "login/alice",
                    json!({"password": "correct horse"}),
                ),
            )
            .await
            .expect("login");
        assert_eq!(allowed.auth.expect("auth").bound_cidrs, ["10.0.0.0/8"]);
    }

    #[test]
    fn only_login_is_unauthenticated() {
        let engine = UserpassEngine::default();
        assert!(engine.is_unauthenticated("login/alice"));
        assert!(!engine.is_unauthenticated("users/alice"));
    }
}
