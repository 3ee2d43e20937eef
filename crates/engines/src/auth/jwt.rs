//! The `jwt` and `oidc` auth methods (one engine, as in Vault): `config`, `role/<name>`,
//! `login` with a signed JWT, and the OIDC authorization-code flow (`oidc/auth_url`,
//! `oidc/callback`) with state, nonce and PKCE.
//!
//! Keys come from exactly one source: static `jwt_validation_pubkeys`, a `jwks_url`, or OIDC
//! discovery (`<url>/.well-known/openid-configuration` → `jwks_uri`). Fetched key sets are
//! cached in memory and fetched again when a token names an unknown `kid` (at most once per
//! [`REFETCH_INTERVAL_SECONDS`]), so key rotation at the provider is picked up. Validation
//! follows Vault's order: role and CIDR checks, signature (algorithms from configuration, never
//! from the token), issuer, subject, audience, time with leeways against `ctx.now`, then the
//! identity (user claim, groups, claim mappings) and `bound_claims`. Errors are 400s with
//! Vault's messages; the core mints a token only from an `Ok`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Mutex;
use ward_core::engine::{fields, AliasSpec, AuthSpec, MountInfo};
use ward_core::{Engine, EngineContext, EngineRequest, EngineResponse, Error, Operation};

use crate::auth::glob;
use crate::auth::http;
use crate::auth::jws::{self, registered, Algorithm, Jwk, PublicKey, Unverified};
use crate::auth::secret::{self, Secret};
use crate::auth::token_fields::TokenFields;
use crate::auth::{is_list_root, role_key};

/// A token naming an unknown `kid` makes Ward fetch the key set again, at most this often.
pub const REFETCH_INTERVAL_SECONDS: i64 = 10;

/// How long an OIDC `state` from `oidc/auth_url` stays usable.
const STATE_TTL_SECONDS: i64 = 600;

/// At most this many authorization-code logins may be pending on one mount.
const MAX_PENDING_STATES: usize = 10_000;

/// Builds a jwt/oidc engine for a mount.
pub fn factory(_mount: &MountInfo) -> Result<Arc<dyn Engine>, Error> {
    Ok(Arc::new(JwtEngine::default()))
}

/// The jwt/oidc engine. Config and roles are in storage; the fetched key set and discovery
/// document are cached here.
#[derive(Default)]
pub struct JwtEngine {
    cache: Mutex<Option<Arc<KeySet>>>,
    /// Held while fetching, so concurrent logins with an unknown `kid` fetch once.
    fetching: Mutex<()>,
    /// Pending authorization-code logins by SHA-256 of their `state`. They live in memory,
    /// as in Vault: `oidc/auth_url` is unauthenticated and must not be a way to write to
    /// storage, and a state is useless after its short TTL anyway.
    states: std::sync::Mutex<HashMap<String, OidcState>>,
    /// Tokens whose signature was verified, by SHA-256 of the whole token, with the key set
    /// that verified them. A workload presents the same token for many logins (a projected
    /// service-account token lives an hour, a CI token a whole job), and the same bytes under
    /// the same keys verify the same way, so the signature is checked once per key set; every
    /// claim (time, issuer, audience, subject, bound claims, nonce) is still checked on every
    /// login. Cleared when the config changes; a refetched key set has another identity.
    verified: std::sync::Mutex<HashMap<[u8; 32], VerifiedToken>>,
}

/// A verified token's claims and the identity of the key set that verified them.
struct VerifiedToken {
    key_set: String,
    claims: Map<String, Value>,
}

/// Verified tokens kept at most; the map is emptied when full (re-verifying is only slower).
const VERIFIED_LIMIT: usize = 10_000;

impl std::fmt::Debug for JwtEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtEngine").finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
struct Config {
    oidc_discovery_url: String,
    oidc_discovery_ca_pem: String,
    oidc_client_id: String,
    oidc_client_secret: Secret,
    jwks_url: String,
    jwks_ca_pem: String,
    jwt_validation_pubkeys: Vec<String>,
    bound_issuer: String,
    jwt_supported_algs: Vec<String>,
    default_role: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
struct Role {
    role_type: String,
    bound_audiences: Vec<String>,
    bound_subject: String,
    bound_claims: Map<String, Value>,
    bound_claims_type: String,
    claim_mappings: BTreeMap<String, String>,
    user_claim: String,
    groups_claim: String,
    clock_skew_leeway: i64,
    expiration_leeway: i64,
    not_before_leeway: i64,
    allowed_redirect_uris: Vec<String>,
    oidc_scopes: Vec<String>,
    #[serde(flatten)]
    token: TokenFields,
}

impl Default for Role {
    fn default() -> Self {
        Role {
            role_type: "oidc".into(),
            bound_audiences: Vec::new(),
            bound_subject: String::new(),
            bound_claims: Map::new(),
            bound_claims_type: "string".into(),
            claim_mappings: BTreeMap::new(),
            user_claim: String::new(),
            groups_claim: String::new(),
            clock_skew_leeway: 60,
            expiration_leeway: 150,
            not_before_leeway: 150,
            allowed_redirect_uris: Vec::new(),
            oidc_scopes: Vec::new(),
            token: TokenFields::default(),
        }
    }
}

/// What `oidc/auth_url` left for `oidc/callback`.
#[derive(Debug, Clone)]
struct OidcState {
    role: String,
    redirect_uri: String,
    nonce: Secret,
    code_verifier: Secret,
    client_nonce: Secret,
    expires_at: i64,
}

/// The relevant fields of an OpenID provider's discovery document.
#[derive(Debug, Clone, Default, Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
    #[serde(default)]
    authorization_endpoint: String,
    #[serde(default)]
    token_endpoint: String,
}

/// A fetched key set, for one configured source.
#[derive(Debug)]
struct KeySet {
    source: String,
    keys: Vec<Jwk>,
    fetched_at: i64,
    /// Which fetch this is (process-wide count): part of the set's identity.
    fetch: u64,
    discovery: Option<Discovery>,
}

/// Where a configuration takes its keys from.
enum KeySource<'a> {
    Static(&'a [String]),
    Jwks { url: &'a str, ca_pem: &'a str },
    Discovery { url: &'a str, ca_pem: &'a str },
}

/// What a token is checked for, beyond the signature.
struct Expectations<'a> {
    issuer: Option<String>,
    audiences: &'a [String],
    subject: &'a str,
    nonce: Option<&'a Secret>,
}

#[async_trait]
impl Engine for JwtEngine {
    fn is_unauthenticated(&self, path: &str) -> bool {
        matches!(path, "login" | "oidc/auth_url" | "oidc/callback")
    }

    async fn exists(
        &self,
        ctx: &EngineContext,
        request: &EngineRequest,
    ) -> Result<Option<bool>, Error> {
        super::config_or_role_exists(ctx, request).await
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
        let write = matches!(operation, Operation::Create | Operation::Update);
        let segments: Vec<&str> = request.path.split('/').collect();
        match (operation, segments.as_slice()) {
            (Operation::Read, ["config"]) => self.read_config(ctx).await,
            (_, ["config"]) if write => self.write_config(ctx, &request.data).await,
            (_, ["login"]) if write => self.login(ctx, &request.data).await,
            (_, ["oidc", "auth_url"]) if write => self.auth_url(ctx, &request.data).await,
            (Operation::Read | Operation::Create | Operation::Update, ["oidc", "callback"]) => {
                self.callback(ctx, &request.data).await
            }
            (Operation::Read, ["role", name]) if !name.is_empty() => {
                self.read_role(ctx, name).await
            }
            (_, ["role", name]) if write && !name.is_empty() => {
                self.write_role(ctx, name, &request.data).await
            }
            (Operation::Delete, ["role", name]) if !name.is_empty() => {
                ctx.storage.delete(&role_key(name)).await?;
                Ok(EngineResponse::empty())
            }
            _ => Err(Error::UnsupportedPath(request.path)),
        }
    }
}

impl JwtEngine {
    async fn read_config(&self, ctx: &EngineContext) -> Result<EngineResponse, Error> {
        let config: Config = ctx
            .storage
            .get_json("config")
            .await?
            .ok_or_else(Error::not_found)?;
        let mut data = Map::new();
        data.insert(
            "oidc_discovery_url".into(),
            Value::from(config.oidc_discovery_url),
        );
        data.insert(
            "oidc_discovery_ca_pem".into(),
            Value::from(config.oidc_discovery_ca_pem),
        );
        data.insert("oidc_client_id".into(), Value::from(config.oidc_client_id));
        data.insert("jwks_url".into(), Value::from(config.jwks_url));
        data.insert("jwks_ca_pem".into(), Value::from(config.jwks_ca_pem));
        data.insert(
            "jwt_validation_pubkeys".into(),
            Value::from(config.jwt_validation_pubkeys),
        );
        data.insert("bound_issuer".into(), Value::from(config.bound_issuer));
        data.insert(
            "jwt_supported_algs".into(),
            Value::from(config.jwt_supported_algs),
        );
        data.insert("default_role".into(), Value::from(config.default_role));
        Ok(EngineResponse::with_data(data))
    }

    async fn write_config(
        &self,
        ctx: &EngineContext,
        data: &Map<String, Value>,
    ) -> Result<EngineResponse, Error> {
        let text = |key: &str| -> Result<String, Error> {
            Ok(fields::string(data, key)?.unwrap_or_default())
        };
        let config = Config {
            oidc_discovery_url: text("oidc_discovery_url")?,
            oidc_discovery_ca_pem: text("oidc_discovery_ca_pem")?,
            oidc_client_id: text("oidc_client_id")?,
            oidc_client_secret: secret::field(data, "oidc_client_secret")?.unwrap_or_default(),
            jwks_url: text("jwks_url")?,
            jwks_ca_pem: text("jwks_ca_pem")?,
            jwt_validation_pubkeys: fields::strings(data, "jwt_validation_pubkeys")?
                .unwrap_or_default(),
            bound_issuer: text("bound_issuer")?,
            jwt_supported_algs: fields::strings(data, "jwt_supported_algs")?.unwrap_or_default(),
            default_role: text("default_role")?,
        };
        let n_sources = [
            !config.oidc_discovery_url.is_empty(),
            !config.jwks_url.is_empty(),
            !config.jwt_validation_pubkeys.is_empty(),
        ]
        .into_iter()
        .filter(|set| *set)
        .count();
        if n_sources != 1 {
            return Err(Error::invalid(
                "exactly one of 'jwt_validation_pubkeys', 'jwks_url' or 'oidc_discovery_url' must be set",
            ));
        }
        if config.oidc_client_id.is_empty() != config.oidc_client_secret.is_empty() {
            return Err(Error::invalid(
                "both 'oidc_client_id' and 'oidc_client_secret' must be set for OIDC",
            ));
        }
        if !config.oidc_client_id.is_empty() && config.oidc_discovery_url.is_empty() {
            return Err(Error::invalid(
                "'oidc_client_id' and 'oidc_client_secret' may only be set when 'oidc_discovery_url' is set",
            ));
        }
        for name in &config.jwt_supported_algs {
            if Algorithm::parse(name).is_none() {
                return Err(Error::invalid(format!(
                    "invalid jwt_supported_algs: unsupported signing algorithm {name:?}"
                )));
            }
        }
        for pem in &config.jwt_validation_pubkeys {
            PublicKey::from_pem_bundle(pem)
                .map_err(|e| Error::invalid(format!("error parsing public key: {e}")))?;
        }
        // Check the remote source now, as Vault does, so a typo fails at config time.
        self.invalidate().await;
        match config.key_source() {
            KeySource::Static(_) => {}
            KeySource::Jwks { .. } => {
                self.fetch(ctx, &config)
                    .await
                    .map_err(|e| Error::invalid(format!("error checking jwks URL: {e}")))?;
            }
            KeySource::Discovery { .. } => {
                self.fetch(ctx, &config).await.map_err(|e| {
                    Error::invalid(format!("error checking oidc discovery URL: {e}"))
                })?;
            }
        }
        ctx.storage.put_json("config", &config).await?;
        Ok(EngineResponse::empty())
    }

    async fn read_role(&self, ctx: &EngineContext, name: &str) -> Result<EngineResponse, Error> {
        let role: Role = ctx
            .storage
            .get_json(&role_key(name))
            .await?
            .ok_or_else(Error::not_found)?;
        let mut data = Map::new();
        data.insert("role_type".into(), Value::from(role.role_type));
        data.insert("bound_audiences".into(), Value::from(role.bound_audiences));
        data.insert("bound_subject".into(), Value::from(role.bound_subject));
        data.insert("bound_claims".into(), Value::Object(role.bound_claims));
        data.insert(
            "bound_claims_type".into(),
            Value::from(role.bound_claims_type),
        );
        data.insert(
            "claim_mappings".into(),
            serde_json::to_value(role.claim_mappings).unwrap_or_default(),
        );
        data.insert("user_claim".into(), Value::from(role.user_claim));
        data.insert("groups_claim".into(), Value::from(role.groups_claim));
        data.insert(
            "clock_skew_leeway".into(),
            Value::from(role.clock_skew_leeway),
        );
        data.insert(
            "expiration_leeway".into(),
            Value::from(role.expiration_leeway),
        );
        data.insert(
            "not_before_leeway".into(),
            Value::from(role.not_before_leeway),
        );
        data.insert(
            "allowed_redirect_uris".into(),
            Value::from(role.allowed_redirect_uris),
        );
        data.insert("oidc_scopes".into(), Value::from(role.oidc_scopes));
        role.token.write_to(&mut data);
        Ok(EngineResponse::with_data(data))
    }

    async fn write_role(
        &self,
        ctx: &EngineContext,
        name: &str,
        data: &Map<String, Value>,
    ) -> Result<EngineResponse, Error> {
        let mut role: Role = ctx
            .storage
            .get_json(&role_key(name))
            .await?
            .unwrap_or_default();
        if let Some(v) = fields::string(data, "role_type")? {
            if v != "jwt" && v != "oidc" {
                return Err(Error::invalid(format!("invalid 'role_type': {v}")));
            }
            role.role_type = v;
        }
        if let Some(v) = fields::strings(data, "bound_audiences")? {
            role.bound_audiences = v;
        }
        if let Some(v) = fields::string(data, "bound_subject")? {
            role.bound_subject = v;
        }
        if let Some(map) = object_field(data, "bound_claims")? {
            role.bound_claims = map;
        }
        if let Some(v) = fields::string(data, "bound_claims_type")? {
            if v != "string" && v != "glob" {
                return Err(Error::invalid(format!("invalid 'bound_claims_type': {v}")));
            }
            role.bound_claims_type = v;
        }
        if let Some(v) = claim_mappings_field(data)? {
            role.claim_mappings = v;
        }
        if let Some(v) = fields::string(data, "user_claim")? {
            role.user_claim = v;
        }
        if let Some(v) = fields::string(data, "groups_claim")? {
            role.groups_claim = v;
        }
        for (key, slot) in [
            ("clock_skew_leeway", &mut role.clock_skew_leeway),
            ("expiration_leeway", &mut role.expiration_leeway),
            ("not_before_leeway", &mut role.not_before_leeway),
        ] {
            if let Some(v) = leeway(data, key)? {
                *slot = v;
            }
        }
        if let Some(v) = fields::strings(data, "allowed_redirect_uris")? {
            role.allowed_redirect_uris = v;
        }
        if let Some(v) = fields::strings(data, "oidc_scopes")? {
            role.oidc_scopes = v;
        }
        role.token.update(data)?;
        role.validate()?;
        ctx.storage.put_json(&role_key(name), &role).await?;
        Ok(EngineResponse::empty())
    }

    async fn login(
        &self,
        ctx: &EngineContext,
        data: &Map<String, Value>,
    ) -> Result<EngineResponse, Error> {
        let config: Config = ctx
            .storage
            .get_json("config")
            .await?
            .ok_or_else(|| Error::invalid("could not load configuration"))?;
        let role_name = fields::string(data, "role")?
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| config.default_role.clone());
        if role_name.is_empty() {
            return Err(Error::invalid("missing role"));
        }
        let role: Role = ctx
            .storage
            .get_json(&role_key(&role_name))
            .await?
            .ok_or_else(|| Error::invalid(format!("role {role_name:?} could not be found")))?;
        if role.role_type == "oidc" {
            return Err(Error::invalid("role with oidc role_type is not allowed"));
        }
        let token = secret::field(data, "jwt")?.ok_or_else(|| Error::invalid("missing token"))?;
        role.token
            .check_login_address(ctx.remote_address.as_deref())?;
        let expectations = Expectations {
            issuer: None,
            audiences: &role.bound_audiences,
            subject: &role.bound_subject,
            nonce: None,
        };
        let claims = self
            .validate(ctx, &config, &role, &token, &expectations)
            .await
            .map_err(|e| Error::invalid(format!("error validating token: {e}")))?;
        let auth = login_auth(&role_name, &role, &claims)?;
        Ok(EngineResponse {
            auth: Some(auth),
            ..EngineResponse::default()
        })
    }

    /// Starts the authorization-code flow: stores a fresh state (with the nonce and PKCE
    /// verifier) and answers with the provider's authorization URL.
    async fn auth_url(
        &self,
        ctx: &EngineContext,
        data: &Map<String, Value>,
    ) -> Result<EngineResponse, Error> {
        let config: Config = ctx
            .storage
            .get_json("config")
            .await?
            .ok_or_else(|| Error::invalid("could not load configuration"))?;
        if config.oidc_discovery_url.is_empty() || config.oidc_client_id.is_empty() {
            return Err(Error::invalid(
                "OIDC login is not configured for this mount",
            ));
        }
        let role_name = fields::string(data, "role")?
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| config.default_role.clone());
        if role_name.is_empty() {
            return Err(Error::invalid("missing role"));
        }
        let redirect_uri = fields::string(data, "redirect_uri")?
            .filter(|r| !r.is_empty())
            .ok_or_else(|| Error::invalid("missing redirect_uri"))?;
        let role: Role = ctx
            .storage
            .get_json(&role_key(&role_name))
            .await?
            .ok_or_else(|| Error::invalid(format!("role {role_name:?} could not be found")))?;
        if role.role_type != "oidc" {
            return Err(Error::invalid(format!(
                "role {role_name:?} is not an OIDC role"
            )));
        }
        if !redirect_allowed(&redirect_uri, &role.allowed_redirect_uris) {
            // As Vault answers: 200 with an empty `auth_url`, the reason in the server's log
            // only (clients, `ward login` and the web UI among them, read an empty URL as
            // "this redirect is not allowed"). No state is made, so nothing can follow.
            tracing::warn!(role = %role_name, redirect_uri = ?redirect_uri, "oidc auth_url: unauthorized redirect_uri");
            let mut out = Map::new();
            out.insert("auth_url".into(), Value::from(""));
            return Ok(EngineResponse::with_data(out));
        }
        let discovery = self
            .discovery(ctx, &config)
            .await
            .map_err(|e| Error::invalid(format!("error fetching OIDC discovery: {e}")))?;
        let state = random_token();
        let nonce = Secret::new(random_token());
        let code_verifier = Secret::new(random_token());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(code_verifier.expose().as_bytes()));
        let mut scopes = vec!["openid".to_string()];
        scopes.extend(
            role.oidc_scopes
                .iter()
                .filter(|s| s.as_str() != "openid")
                .cloned(),
        );
        let url = reqwest::Url::parse_with_params(
            &discovery.authorization_endpoint,
            &[
                ("client_id", config.oidc_client_id.as_str()),
                ("redirect_uri", redirect_uri.as_str()),
                ("response_type", "code"),
                ("scope", scopes.join(" ").as_str()),
                ("state", state.as_str()),
                ("nonce", nonce.expose()),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ],
        )
        .map_err(|e| Error::invalid(format!("invalid authorization endpoint: {e}")))?;
        let stored = OidcState {
            role: role_name,
            redirect_uri,
            nonce,
            code_verifier,
            client_nonce: secret::field(data, "client_nonce")?.unwrap_or_default(),
            expires_at: ctx.now.unix_timestamp() + STATE_TTL_SECONDS,
        };
        self.remember_state(&state, stored, ctx.now.unix_timestamp())?;
        let mut out = Map::new();
        out.insert("auth_url".into(), Value::from(url.to_string()));
        Ok(EngineResponse::with_data(out))
    }

    /// Finishes the flow: consumes the state (a replay finds nothing), exchanges the code with
    /// the PKCE verifier and the client secret, and validates the ID token and its nonce.
    async fn callback(
        &self,
        ctx: &EngineContext,
        data: &Map<String, Value>,
    ) -> Result<EngineResponse, Error> {
        let state_id = fields::string(data, "state")?.unwrap_or_default();
        if state_id.is_empty() {
            return Err(Error::invalid(
                "Vault login failed. Expired or missing OAuth state.",
            ));
        }
        // Consumed first: whatever happens next, this state cannot be used again.
        let stored = self.take_state(&state_id);
        let Some(stored) = stored.filter(|s| ctx.now.unix_timestamp() < s.expires_at) else {
            return Err(Error::invalid(
                "Vault login failed. Expired or missing OAuth state.",
            ));
        };
        if let Some(error) = fields::string(data, "error")?.filter(|e| !e.is_empty()) {
            let description = fields::string(data, "error_description")?.unwrap_or_default();
            return Err(Error::invalid(
                format!("Vault login failed. Error from OIDC provider: {error} {description}")
                    .trim_end()
                    .to_string(),
            ));
        }
        let client_nonce = secret::field(data, "client_nonce")?.unwrap_or_default();
        if !stored.client_nonce.is_empty()
            && !bool::from(
                stored
                    .client_nonce
                    .expose()
                    .as_bytes()
                    .ct_eq(client_nonce.expose().as_bytes()),
            )
        {
            return Err(Error::invalid("invalid client_nonce"));
        }
        let code = secret::field(data, "code")?
            .ok_or_else(|| Error::invalid("Vault login failed. No code or id_token received."))?;
        let config: Config = ctx
            .storage
            .get_json("config")
            .await?
            .ok_or_else(|| Error::invalid("could not load configuration"))?;
        let role: Role = ctx
            .storage
            .get_json(&role_key(&stored.role))
            .await?
            .ok_or_else(|| Error::invalid(format!("role {:?} could not be found", stored.role)))?;
        role.token
            .check_login_address(ctx.remote_address.as_deref())?;
        let id_token = self
            .exchange_code(ctx, &config, &stored, &code)
            .await
            .map_err(|e| {
                Error::invalid(format!(
                    "Vault login failed. Error exchanging oidc code: {e}"
                ))
            })?;
        let audiences = if role.bound_audiences.is_empty() {
            vec![config.oidc_client_id.clone()]
        } else {
            role.bound_audiences.clone()
        };
        let expectations = Expectations {
            issuer: None,
            audiences: &audiences,
            subject: &role.bound_subject,
            nonce: Some(&stored.nonce),
        };
        let claims = self
            .validate(ctx, &config, &role, &id_token, &expectations)
            .await
            .map_err(|e| Error::invalid(format!("error validating token: {e}")))?;
        let auth = login_auth(&stored.role, &role, &claims)?;
        Ok(EngineResponse {
            auth: Some(auth),
            ..EngineResponse::default()
        })
    }

    /// Keeps a pending login, after dropping the expired ones; refuses beyond the cap.
    fn remember_state(&self, state: &str, pending: OidcState, now: i64) -> Result<(), Error> {
        let mut states = self
            .states
            .lock()
            .map_err(|_| Error::internal("OIDC state lock poisoned"))?;
        states.retain(|_, s| s.expires_at > now);
        if states.len() >= MAX_PENDING_STATES {
            return Err(Error::RateLimited {
                message: "too many pending OIDC logins; try again later".into(),
                retry_after_seconds: 60,
            });
        }
        states.insert(state_key(state), pending);
        Ok(())
    }

    fn take_state(&self, state: &str) -> Option<OidcState> {
        self.states.lock().ok()?.remove(&state_key(state))
    }

    async fn exchange_code(
        &self,
        ctx: &EngineContext,
        config: &Config,
        stored: &OidcState,
        code: &Secret,
    ) -> Result<Secret, String> {
        let discovery = self.discovery(ctx, config).await?;
        let client = http::client(&config.oidc_discovery_ca_pem)?;
        let response = client
            .post(&discovery.token_endpoint)
            .basic_auth(
                &config.oidc_client_id,
                Some(config.oidc_client_secret.expose()),
            )
            .header("Accept", "application/json")
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.expose()),
                ("redirect_uri", stored.redirect_uri.as_str()),
                ("code_verifier", stored.code_verifier.expose()),
            ])
            .send()
            .await
            .map_err(|e| http::without_url(&e))?;
        let status = response.status();
        let body = http::read_body(response).await?;
        if !status.is_success() {
            return Err(format!("token endpoint answered {}", status.as_u16()));
        }
        let parsed: Value =
            serde_json::from_slice(&body).map_err(|e| format!("invalid token response: {e}"))?;
        parsed
            .get("id_token")
            .and_then(Value::as_str)
            .map(|t| Secret::new(t.to_string()))
            .ok_or_else(|| "no id_token in the token response".to_string())
    }

    /// Signature, issuer, subject, audience, nonce and time. Returns the claims.
    async fn validate(
        &self,
        ctx: &EngineContext,
        config: &Config,
        role: &Role,
        token: &Secret,
        expectations: &Expectations<'_>,
    ) -> Result<Map<String, Value>, String> {
        let unverified = Unverified::decode(token.expose()).map_err(|e| e.to_string())?;
        let allowed: Vec<Algorithm> = if config.jwt_supported_algs.is_empty() {
            Algorithm::ALL.to_vec()
        } else {
            config
                .jwt_supported_algs
                .iter()
                .filter_map(|a| Algorithm::parse(a))
                .collect()
        };
        let algorithm = unverified.algorithm(&allowed).map_err(|e| e.to_string())?;
        let digest: [u8; 32] = Sha256::digest(token.expose().as_bytes()).into();
        let (claims, discovered_issuer) = match config.key_source() {
            KeySource::Static(pems) => {
                let claims = match self.verified_claims(&digest, STATIC_KEY_SET) {
                    Some(claims) => claims,
                    None => {
                        let keys: Vec<PublicKey> = pems
                            .iter()
                            .filter_map(|pem| PublicKey::from_pem_bundle(pem).ok())
                            .flatten()
                            .collect();
                        let claims = unverified
                            .verify(algorithm, keys.iter())
                            .map_err(|e| signature_error(e, KeySetKind::Static))?;
                        self.remember_verified(digest, STATIC_KEY_SET, &claims);
                        claims
                    }
                };
                (claims, None)
            }
            KeySource::Jwks { .. } | KeySource::Discovery { .. } => {
                let mut set = self.keys_for(ctx, config, unverified.kid()).await?;
                let issuer = |set: &KeySet| set.discovery.as_ref().map(|d| d.issuer.clone());
                if let Some(claims) = self.verified_claims(&digest, &set.identity()) {
                    (claims, issuer(&set))
                } else {
                    let mut verified = verify_with_set(&unverified, algorithm, &set);
                    // A provider that restarted may publish a new key under an old `kid`: a
                    // failed check against a set older than the refetch interval fetches
                    // once more.
                    if verified.is_err()
                        && ctx.now.unix_timestamp() - set.fetched_at >= REFETCH_INTERVAL_SECONDS
                    {
                        set = self.refetch(ctx, config, set.fetched_at).await?;
                        verified = verify_with_set(&unverified, algorithm, &set);
                    }
                    let claims = verified.map_err(|e| signature_error(e, KeySetKind::Remote))?;
                    self.remember_verified(digest, &set.identity(), &claims);
                    (claims, issuer(&set))
                }
            }
        };
        let issuer = expectations.issuer.clone().or_else(|| {
            if config.bound_issuer.is_empty() {
                discovered_issuer
            } else {
                Some(config.bound_issuer.clone())
            }
        });
        let iss = registered::string(&claims, "iss")?;
        if let Some(expected) = issuer {
            if iss != Some(expected.as_str()) {
                return Err("invalid issuer (iss) claim".into());
            }
        }
        let sub = registered::string(&claims, "sub")?;
        if !expectations.subject.is_empty() && sub != Some(expectations.subject) {
            return Err("invalid subject (sub) claim".into());
        }
        let audiences = registered::audiences(&claims)?;
        if !expectations.audiences.is_empty() {
            if !audiences.iter().any(|a| expectations.audiences.contains(a)) {
                return Err("invalid audience (aud) claim: audience claim does not match any expected audience".into());
            }
        } else if !audiences.is_empty() {
            return Err("audience claim found in JWT but no audiences bound to the role".into());
        }
        if let Some(expected) = expectations.nonce {
            let nonce = registered::string(&claims, "nonce")?.unwrap_or_default();
            if !bool::from(nonce.as_bytes().ct_eq(expected.expose().as_bytes())) {
                return Err("invalid ID token nonce".into());
            }
        }
        check_times(&claims, role, ctx.now.unix_timestamp())?;
        Ok(claims)
    }

    /// The cached key set, fetched again when it is missing, belongs to another source, or
    /// lacks `kid` (and the last fetch is older than the refetch interval).
    async fn keys_for(
        &self,
        ctx: &EngineContext,
        config: &Config,
        kid: Option<&str>,
    ) -> Result<Arc<KeySet>, String> {
        let source = config.source_id();
        let now = ctx.now.unix_timestamp();
        let usable = |set: &KeySet| {
            set.source == source
                && (kid.is_none_or(|kid| set.keys.iter().any(|k| k.kid.as_deref() == Some(kid)))
                    || now - set.fetched_at < REFETCH_INTERVAL_SECONDS)
        };
        if let Some(set) = self.cache.lock().await.clone().filter(|s| usable(s)) {
            return Ok(set);
        }
        let _fetching = self.fetching.lock().await;
        // Another login may have fetched while this one waited.
        if let Some(set) = self.cache.lock().await.clone().filter(|s| usable(s)) {
            return Ok(set);
        }
        self.fetch(ctx, config).await
    }

    /// Fetches again unless another login already did since `seen_fetched_at`.
    async fn refetch(
        &self,
        ctx: &EngineContext,
        config: &Config,
        seen_fetched_at: i64,
    ) -> Result<Arc<KeySet>, String> {
        let _fetching = self.fetching.lock().await;
        let source = config.source_id();
        if let Some(set) = self
            .cache
            .lock()
            .await
            .clone()
            .filter(|s| s.source == source && s.fetched_at > seen_fetched_at)
        {
            return Ok(set);
        }
        self.fetch(ctx, config).await
    }

    async fn fetch(&self, ctx: &EngineContext, config: &Config) -> Result<Arc<KeySet>, String> {
        let (discovery, jwks_url, ca_pem) = match config.key_source() {
            KeySource::Static(_) => return Err("static keys are not fetched".into()),
            KeySource::Jwks { url, ca_pem } => (None, url.to_string(), ca_pem),
            KeySource::Discovery { url, ca_pem } => {
                let client = http::client(ca_pem)?;
                let document_url = format!(
                    "{}/.well-known/openid-configuration",
                    url.trim_end_matches('/')
                );
                let body = http::get(&client, &document_url).await?;
                let discovery: Discovery = serde_json::from_slice(&body)
                    .map_err(|e| format!("invalid discovery document: {e}"))?;
                if discovery.issuer != url {
                    return Err(format!(
                        "issuer did not match the issuer returned by provider, expected {url:?} got {:?}",
                        discovery.issuer
                    ));
                }
                let jwks_uri = discovery.jwks_uri.clone();
                (Some(discovery), jwks_uri, ca_pem)
            }
        };
        let client = http::client(ca_pem)?;
        let keys = jws::parse_jwks(&http::get(&client, &jwks_url).await?)?;
        let set = Arc::new(KeySet {
            source: config.source_id(),
            keys,
            fetched_at: ctx.now.unix_timestamp(),
            fetch: FETCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            discovery,
        });
        *self.cache.lock().await = Some(set.clone());
        Ok(set)
    }

    async fn discovery(&self, ctx: &EngineContext, config: &Config) -> Result<Discovery, String> {
        let set = self.keys_for(ctx, config, None).await?;
        set.discovery
            .clone()
            .ok_or_else(|| "no discovery document".to_string())
    }

    async fn invalidate(&self) {
        *self.cache.lock().await = None;
        if let Ok(mut verified) = self.verified.lock() {
            verified.clear();
        }
    }

    /// The claims of a token already verified against this key set.
    fn verified_claims(&self, digest: &[u8; 32], key_set: &str) -> Option<Map<String, Value>> {
        let verified = self.verified.lock().ok()?;
        verified
            .get(digest)
            .filter(|v| v.key_set == key_set)
            .map(|v| v.claims.clone())
    }

    fn remember_verified(&self, digest: [u8; 32], key_set: &str, claims: &Map<String, Value>) {
        if let Ok(mut verified) = self.verified.lock() {
            if verified.len() >= VERIFIED_LIMIT {
                verified.clear();
            }
            verified.insert(
                digest,
                VerifiedToken {
                    key_set: key_set.to_string(),
                    claims: claims.clone(),
                },
            );
        }
    }
}

/// The key-set identity of `jwt_validation_pubkeys`: they change only with the config, and a
/// config write empties the verified-token cache.
const STATIC_KEY_SET: &str = "static";

impl KeySet {
    /// Which fetch of which source this set is: a refetch makes another identity, so tokens
    /// verified against the old keys are verified again.
    fn identity(&self) -> String {
        format!("{}|{}", self.source, self.fetch)
    }
}

/// Key-set fetches so far, numbering each set.
static FETCHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Config {
    fn key_source(&self) -> KeySource<'_> {
        if !self.jwt_validation_pubkeys.is_empty() {
            KeySource::Static(&self.jwt_validation_pubkeys)
        } else if !self.jwks_url.is_empty() {
            KeySource::Jwks {
                url: &self.jwks_url,
                ca_pem: &self.jwks_ca_pem,
            }
        } else {
            KeySource::Discovery {
                url: &self.oidc_discovery_url,
                ca_pem: &self.oidc_discovery_ca_pem,
            }
        }
    }

    /// Identifies the key source, so a cached set is never used for another configuration.
    fn source_id(&self) -> String {
        match self.key_source() {
            KeySource::Static(_) => "static".into(),
            KeySource::Jwks { url, ca_pem } => {
                format!("jwks|{url}|{}", hex::encode(Sha256::digest(ca_pem)))
            }
            KeySource::Discovery { url, ca_pem } => {
                format!("oidc|{url}|{}", hex::encode(Sha256::digest(ca_pem)))
            }
        }
    }
}

impl Role {
    fn validate(&self) -> Result<(), Error> {
        if self.user_claim.is_empty() {
            return Err(Error::invalid("a user claim must be defined on the role"));
        }
        if self.role_type == "oidc" && self.allowed_redirect_uris.is_empty() {
            return Err(Error::invalid(
                "'allowed_redirect_uris' must be set if 'role_type' is 'oidc' or unspecified.",
            ));
        }
        if self.role_type == "jwt"
            && self.bound_audiences.is_empty()
            && self.bound_subject.is_empty()
            && self.bound_claims.is_empty()
            && self.token.token_bound_cidrs.is_empty()
        {
            return Err(Error::invalid(
                "must have at least one bound constraint when creating/updating a role",
            ));
        }
        let mut targets = std::collections::BTreeSet::new();
        for target in self.claim_mappings.values() {
            if target == "role" {
                return Err(Error::invalid(
                    "metadata key \"role\" is reserved and may not be a mapping destination",
                ));
            }
            if !targets.insert(target) {
                return Err(Error::invalid(format!(
                    "multiple keys are mapped to metadata key {target:?}"
                )));
            }
        }
        for (claim, expected) in &self.bound_claims {
            let values = match expected {
                Value::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            for value in values {
                let ok = match (self.bound_claims_type.as_str(), value) {
                    ("glob", Value::String(_)) => true,
                    ("glob", _) => false,
                    (_, Value::String(_) | Value::Number(_) | Value::Bool(_)) => true,
                    _ => false,
                };
                if !ok {
                    return Err(Error::invalid(format!(
                        "bound claim {claim:?} must be a string, number, boolean or a list of them (strings only for glob)"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Verifies with the keys of `set` that fit the token's `kid` (all of them without one) and
/// whose published `alg`, if any, is the token's.
fn verify_with_set(
    unverified: &Unverified,
    algorithm: Algorithm,
    set: &KeySet,
) -> Result<Map<String, Value>, jws::JwsError> {
    let keys = set
        .keys
        .iter()
        .filter(|k| unverified.kid().is_none() || k.kid.as_deref() == unverified.kid())
        .filter(|k| k.algorithm.is_none_or(|a| a == algorithm))
        .map(|k| &k.key);
    unverified.verify(algorithm, keys)
}

/// Where the keys that failed to verify a token came from.
#[derive(Clone, Copy)]
enum KeySetKind {
    Static,
    Remote,
}

/// Vault's words when no key verifies a token (a wrong key, an unknown or retired `kid`);
/// other failures (malformed token, algorithm) keep their own message.
fn signature_error(error: jws::JwsError, kind: KeySetKind) -> String {
    match (error, kind) {
        (jws::JwsError::NoMatchingKey | jws::JwsError::BadSignature, KeySetKind::Static) => {
            "error verifying token signature: no known key successfully validated the token signature".into()
        }
        (jws::JwsError::NoMatchingKey | jws::JwsError::BadSignature, KeySetKind::Remote) => {
            "error verifying token signature: failed to verify id token signature".into()
        }
        (other, _) => other.to_string(),
    }
}

/// The identity of a validated token, then `bound_claims`: the login's answer.
fn login_auth(
    role_name: &str,
    role: &Role,
    claims: &Map<String, Value>,
) -> Result<AuthSpec, Error> {
    let user = match claim(claims, &role.user_claim) {
        None => {
            return Err(Error::invalid(format!(
                "claim {:?} not found in token",
                role.user_claim
            )))
        }
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => {
            return Err(Error::invalid(format!(
                "claim {:?} could not be converted to string",
                role.user_claim
            )))
        }
    };
    let mut metadata = BTreeMap::new();
    for (source, target) in &role.claim_mappings {
        match claim(claims, source) {
            None => {
                return Err(Error::invalid(format!(
                    "claim {source:?} not found in token"
                )))
            }
            Some(Value::String(s)) => {
                metadata.insert(target.clone(), s.clone());
            }
            Some(_) => {
                return Err(Error::invalid(format!(
                    "error converting claim {source:?} to string"
                )))
            }
        }
    }
    metadata.insert("role".into(), role_name.to_string());
    let mut group_aliases = Vec::new();
    if !role.groups_claim.is_empty() {
        let invalid = || {
            Error::invalid(format!(
                "{:?} claim could not be converted to string list",
                role.groups_claim
            ))
        };
        match claim(claims, &role.groups_claim) {
            None => {
                return Err(Error::invalid(format!(
                    "{:?} claim not found in token",
                    role.groups_claim
                )))
            }
            Some(Value::String(s)) => group_aliases.push(s.clone()),
            Some(Value::Array(items)) => {
                for item in items {
                    group_aliases.push(item.as_str().ok_or_else(invalid)?.to_string());
                }
            }
            Some(_) => return Err(invalid()),
        }
    }
    bound_claims_match(role, claims)
        .map_err(|e| Error::invalid(format!("error validating claims: {e}")))?;
    let mut auth = role.token.auth_spec();
    auth.display_name = user.clone();
    auth.internal = serde_json::json!({"role": role_name});
    auth.metadata = metadata.clone();
    auth.alias = Some(AliasSpec {
        name: user,
        metadata,
    });
    auth.group_aliases = group_aliases;
    Ok(auth)
}

/// Every bound claim must exist and one of its expected values must match one of the actual
/// values (lists are any-of on both sides). Types are strict: `"1"` never equals `1`.
fn bound_claims_match(role: &Role, claims: &Map<String, Value>) -> Result<(), String> {
    let globs = role.bound_claims_type == "glob";
    for (name, expected) in &role.bound_claims {
        let actual = claim(claims, name).ok_or_else(|| format!("claim {name:?} is missing"))?;
        let actual_values = as_list(actual)
            .ok_or_else(|| format!("received claim {name:?} is not a string or list"))?;
        let expected_values = as_list(expected)
            .ok_or_else(|| format!("bound claim {name:?} is not a string or list"))?;
        let mut found = false;
        for want in &expected_values {
            for have in &actual_values {
                found |= match (globs, want, have) {
                    (true, Value::String(pattern), Value::String(value)) => {
                        glob::matches(pattern, value)
                    }
                    (true, _, _) => {
                        return Err(format!("received claim {name:?} is not a glob string"))
                    }
                    (false, Value::Number(a), Value::Number(b)) => truncated(a) == truncated(b),
                    (false, a, b) => a == b,
                };
            }
        }
        if !found {
            return Err(format!(
                "claim {name:?} does not match any associated bound claim values"
            ));
        }
    }
    Ok(())
}

fn as_list(value: &Value) -> Option<Vec<&Value>> {
    let scalar = |v: &Value| matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_));
    match value {
        Value::Array(items) if items.iter().all(scalar) => Some(items.iter().collect()),
        v if scalar(v) => Some(vec![v]),
        _ => None,
    }
}

fn truncated(number: &serde_json::Number) -> Option<i64> {
    number
        .as_i64()
        .or_else(|| number.as_f64().map(|f| f as i64))
}

/// A claim by top-level name, or by JSON pointer when the name starts with `/`.
fn claim<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    let Some(pointer) = name.strip_prefix('/') else {
        return claims.get(name);
    };
    let (first, rest) = pointer.split_once('/').unwrap_or((pointer, ""));
    let top = claims.get(&first.replace("~1", "/").replace("~0", "~"))?;
    if rest.is_empty() {
        Some(top)
    } else {
        top.pointer(&format!("/{rest}"))
    }
}

/// Vault's time rules (§2.3 of the research note): missing `exp`/`nbf` are filled from the
/// leeways; `exp`, `nbf` and `iat` are then checked with the clock-skew leeway.
fn check_times(claims: &Map<String, Value>, role: &Role, now: i64) -> Result<(), String> {
    let exp = registered::time(claims, "exp")?;
    let nbf = registered::time(claims, "nbf")?;
    let iat = registered::time(claims, "iat")?;
    if exp.is_none() && nbf.is_none() && iat.is_none() {
        return Err("no issue time, notbefore time, or expiration time encoded in token".into());
    }
    let skew = effective_leeway(role.clock_skew_leeway, 60);
    let expiration_leeway = effective_leeway(role.expiration_leeway, 150);
    let not_before_leeway = effective_leeway(role.not_before_leeway, 150);
    let exp = match exp {
        Some(exp) => exp,
        None => nbf
            .max(iat)
            .unwrap_or(now)
            .saturating_add(expiration_leeway),
    };
    let nbf = match (nbf, iat) {
        (Some(nbf), _) => nbf,
        (None, Some(iat)) => iat,
        (None, None) => exp.saturating_sub(not_before_leeway),
    };
    if now.saturating_sub(skew) > exp {
        return Err("token is expired (exp)".into());
    }
    if now.saturating_add(skew) < nbf {
        return Err("token not valid yet (nbf)".into());
    }
    if iat.is_some_and(|iat| now.saturating_add(skew) < iat) {
        return Err("token issued in the future (iat)".into());
    }
    Ok(())
}

/// 0 means the default, a negative value means none.
fn effective_leeway(configured: i64, default: i64) -> i64 {
    match configured {
        0 => default,
        v if v < 0 => 0,
        v => v,
    }
}

/// A map field given as a JSON object, or as a string holding one (what `ward write
/// key='{"a":"b"}'` sends); an empty string clears it.
fn object_field(data: &Map<String, Value>, key: &str) -> Result<Option<Map<String, Value>>, Error> {
    let invalid = || Error::invalid(format!("field {key:?} must be a map"));
    match data.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map.clone())),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(Some(Map::new())),
        Some(Value::String(text)) => match serde_json::from_str(text) {
            Ok(Value::Object(map)) => Ok(Some(map)),
            _ => Err(invalid()),
        },
        Some(_) => Err(invalid()),
    }
}

/// `claim_mappings`: a map of strings (or a JSON string of one), or `claim=key` pairs as a
/// list or a comma-separated string, as Vault's key-value pair fields take them.
fn claim_mappings_field(
    data: &Map<String, Value>,
) -> Result<Option<BTreeMap<String, String>>, Error> {
    let key = "claim_mappings";
    let pairs = match data.get(key) {
        Some(Value::String(text)) if !text.trim_start().starts_with('{') => {
            fields::strings(data, key)?.unwrap_or_default()
        }
        Some(Value::Array(_)) => fields::strings(data, key)?.unwrap_or_default(),
        _ => {
            let Some(map) = object_field(data, key)? else {
                return Ok(None);
            };
            return map
                .into_iter()
                .map(|(claim, target)| match target {
                    Value::String(target) => Ok((claim, target)),
                    _ => Err(Error::invalid(format!(
                        "field \"{key}\" must map strings to strings"
                    ))),
                })
                .collect::<Result<_, _>>()
                .map(Some);
        }
    };
    pairs
        .iter()
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((claim, target)) if !claim.is_empty() && !target.is_empty() => {
                Ok((claim.to_string(), target.to_string()))
            }
            _ => Err(Error::invalid(format!(
                "invalid {key} pair {pair:?}: expected claim=metadata_key"
            ))),
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// A leeway: seconds (`-1` for none) or a Go duration string.
fn leeway(data: &Map<String, Value>, key: &str) -> Result<Option<i64>, Error> {
    match fields::integer(data, key) {
        Ok(v) => Ok(v),
        Err(_) => fields::duration(data, key)?
            .map(|v| {
                i64::try_from(v).map_err(|_| Error::invalid(format!("field {key:?} is too large")))
            })
            .transpose(),
    }
}

/// Whether `redirect_uri` is on the role's allow list. As in Vault (RFC 8252 §7.3), a loopback
/// URI (`localhost`, `127.0.0.1`, `[::1]`) matches whatever its port: a CLI listens on a port
/// the operating system picks, while the list names the URI once. Everything else must match
/// exactly.
fn redirect_allowed(redirect_uri: &str, allowed: &[String]) -> bool {
    let Ok(mut requested) = reqwest::Url::parse(redirect_uri) else {
        return false;
    };
    let is_loopback = |url: &reqwest::Url| {
        matches!(
            url.host_str(),
            Some("localhost" | "127.0.0.1" | "[::1]" | "::1")
        )
    };
    if !is_loopback(&requested) {
        return allowed.iter().any(|a| a == redirect_uri);
    }
    if requested.set_port(None).is_err() {
        return false;
    }
    allowed.iter().any(|a| {
        reqwest::Url::parse(a).is_ok_and(|mut candidate| {
            is_loopback(&candidate) && candidate.set_port(None).is_ok() && candidate == requested
        })
    })
}

fn state_key(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests;
