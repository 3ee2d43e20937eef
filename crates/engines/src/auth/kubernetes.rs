//! The `kubernetes` auth method: `config`, `role/<name>` and `login` with a service-account
//! token.
//!
//! With `pem_keys` configured the token's signature is checked offline (RS/PS/ES 256/384),
//! with its `exp`/`nbf`/`iat` (60 s skew), `aud` (when the role sets `audience`) and `iss`
//! (when issuer validation is on). Without `pem_keys` the claims are only read, never
//! trusted: the cluster's TokenReview API is the proof, and its answer (authenticated, the
//! exact `system:serviceaccount:<ns>:<name>` username, the UID and the audiences) must agree
//! with them. Either way the service account's name and namespace must match the role's
//! globs. The alias is the service account's UID by default, so a service account deleted
//! and recreated under the same name is a new identity. Failures are 403s; only the
//! messages Vault shows are shown.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use ward_core::engine::{fields, AliasSpec, MountInfo};
use ward_core::{Engine, EngineContext, EngineRequest, EngineResponse, Error, Operation};

use crate::auth::glob;
use crate::auth::http;
use crate::auth::jws::{registered, Algorithm, PublicKey, Unverified};
use crate::auth::secret::{self, Secret};
use crate::auth::token_fields::TokenFields;
use crate::auth::{is_list_root, role_key};

/// The in-pod files used when the config names no CA or reviewer token (and
/// `disable_local_ca_jwt` is off).
const LOCAL_CA_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
const LOCAL_JWT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Kubernetes signs service-account tokens with RSA or ECDSA; EdDSA, HMAC and `none` are out.
const ALGORITHMS: [Algorithm; 8] = [
    Algorithm::Rs256,
    Algorithm::Rs384,
    Algorithm::Rs512,
    Algorithm::Ps256,
    Algorithm::Ps384,
    Algorithm::Ps512,
    Algorithm::Es256,
    Algorithm::Es384,
];

const SKEW_SECONDS: i64 = 60;

/// Builds a kubernetes auth engine for a mount.
pub fn factory(_mount: &MountInfo) -> Result<Arc<dyn Engine>, Error> {
    Ok(Arc::new(KubernetesEngine::default()))
}

/// The kubernetes auth engine. It caches the HTTP client for the TokenReview API, keyed by
/// the CA it trusts.
#[derive(Default)]
pub struct KubernetesEngine {
    client: Mutex<Option<(String, reqwest::Client)>>,
}

impl std::fmt::Debug for KubernetesEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesEngine").finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
struct Config {
    kubernetes_host: String,
    kubernetes_ca_cert: String,
    token_reviewer_jwt: Secret,
    pem_keys: Vec<String>,
    issuer: String,
    disable_iss_validation: bool,
    disable_local_ca_jwt: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            kubernetes_host: String::new(),
            kubernetes_ca_cert: String::new(),
            token_reviewer_jwt: Secret::default(),
            pem_keys: Vec::new(),
            issuer: String::new(),
            // Vault's default since 1.9.
            disable_iss_validation: true,
            disable_local_ca_jwt: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
struct Role {
    bound_service_account_names: Vec<String>,
    bound_service_account_namespaces: Vec<String>,
    audience: String,
    alias_name_source: String,
    #[serde(flatten)]
    token: TokenFields,
}

impl Default for Role {
    fn default() -> Self {
        Role {
            bound_service_account_names: Vec::new(),
            bound_service_account_namespaces: Vec::new(),
            audience: String::new(),
            alias_name_source: "serviceaccount_uid".into(),
            token: TokenFields::default(),
        }
    }
}

/// Who a token says it is.
#[derive(Debug, Clone, Default)]
struct ServiceAccount {
    namespace: String,
    name: String,
    uid: String,
    secret_name: String,
    pod_name: String,
}

#[async_trait]
impl Engine for KubernetesEngine {
    fn is_unauthenticated(&self, path: &str) -> bool {
        path == "login"
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

impl KubernetesEngine {
    async fn read_config(&self, ctx: &EngineContext) -> Result<EngineResponse, Error> {
        let config: Config = ctx
            .storage
            .get_json("config")
            .await?
            .ok_or_else(Error::not_found)?;
        let mut data = Map::new();
        data.insert(
            "kubernetes_host".into(),
            Value::from(config.kubernetes_host),
        );
        data.insert(
            "kubernetes_ca_cert".into(),
            Value::from(config.kubernetes_ca_cert),
        );
        data.insert(
            "token_reviewer_jwt_set".into(),
            Value::from(!config.token_reviewer_jwt.is_empty()),
        );
        data.insert("pem_keys".into(), Value::from(config.pem_keys));
        data.insert("issuer".into(), Value::from(config.issuer));
        data.insert(
            "disable_iss_validation".into(),
            Value::from(config.disable_iss_validation),
        );
        data.insert(
            "disable_local_ca_jwt".into(),
            Value::from(config.disable_local_ca_jwt),
        );
        Ok(EngineResponse::with_data(data))
    }

    async fn write_config(
        &self,
        ctx: &EngineContext,
        data: &Map<String, Value>,
    ) -> Result<EngineResponse, Error> {
        let mut config: Config = ctx.storage.get_json("config").await?.unwrap_or_default();
        if let Some(v) = fields::string(data, "kubernetes_host")? {
            config.kubernetes_host = v;
        }
        if config.kubernetes_host.is_empty() {
            return Err(Error::invalid("no host provided"));
        }
        if let Some(v) = fields::string(data, "kubernetes_ca_cert")? {
            config.kubernetes_ca_cert = v;
        }
        if !config.kubernetes_ca_cert.is_empty()
            && !http::has_certificate(&config.kubernetes_ca_cert)
        {
            return Err(Error::invalid(
                "Configured CA PEM data contains no valid certificates, TLS verification will fail",
            ));
        }
        if data.contains_key("token_reviewer_jwt") {
            config.token_reviewer_jwt =
                secret::field(data, "token_reviewer_jwt")?.unwrap_or_default();
        }
        if let Some(v) = fields::strings(data, "pem_keys")? {
            for pem in &v {
                let keys = PublicKey::from_pem_bundle(pem).map_err(|_| {
                    Error::invalid("data does not contain any valid RSA or ECDSA public keys")
                })?;
                if keys.iter().any(|k| matches!(k, PublicKey::Ed25519(_))) {
                    return Err(Error::invalid(
                        "data does not contain any valid RSA or ECDSA public keys",
                    ));
                }
            }
            config.pem_keys = v;
        }
        if let Some(v) = fields::string(data, "issuer")? {
            config.issuer = v;
        }
        if let Some(v) = fields::boolean(data, "disable_iss_validation")? {
            config.disable_iss_validation = v;
        }
        if let Some(v) = fields::boolean(data, "disable_local_ca_jwt")? {
            config.disable_local_ca_jwt = v;
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
        data.insert(
            "bound_service_account_names".into(),
            Value::from(role.bound_service_account_names),
        );
        data.insert(
            "bound_service_account_namespaces".into(),
            Value::from(role.bound_service_account_namespaces),
        );
        data.insert("audience".into(), Value::from(role.audience));
        data.insert(
            "alias_name_source".into(),
            Value::from(role.alias_name_source),
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
        let mut role: Role = ctx
            .storage
            .get_json(&role_key(name))
            .await?
            .unwrap_or_default();
        if let Some(v) = fields::strings(data, "bound_service_account_names")? {
            role.bound_service_account_names = v;
        }
        if let Some(v) = fields::strings(data, "bound_service_account_namespaces")? {
            role.bound_service_account_namespaces = v;
        }
        if let Some(v) = fields::string(data, "audience")? {
            role.audience = v;
        }
        if let Some(v) = fields::string(data, "alias_name_source")? {
            if v != "serviceaccount_uid" && v != "serviceaccount_name" {
                return Err(Error::invalid(format!("invalid alias_name_source: {v:?}")));
            }
            role.alias_name_source = v;
        }
        role.token.update(data)?;
        if role.bound_service_account_names.is_empty() {
            return Err(Error::invalid(
                "\"bound_service_account_names\" can not be empty",
            ));
        }
        if role.bound_service_account_namespaces.is_empty() {
            return Err(Error::invalid(
                "\"bound_service_account_namespaces\" can not be empty",
            ));
        }
        for list in [
            &role.bound_service_account_names,
            &role.bound_service_account_namespaces,
        ] {
            if list.len() > 1 && list.iter().any(|v| v == "*") {
                return Err(Error::invalid("can not mix \"*\" with values"));
            }
        }
        ctx.storage.put_json(&role_key(name), &role).await?;
        Ok(EngineResponse::empty())
    }

    async fn login(
        &self,
        ctx: &EngineContext,
        data: &Map<String, Value>,
    ) -> Result<EngineResponse, Error> {
        let role_name = fields::string(data, "role")?
            .filter(|r| !r.is_empty())
            .ok_or_else(|| Error::invalid("missing role"))?;
        let jwt = secret::field(data, "jwt")?.ok_or_else(|| Error::invalid("missing jwt"))?;
        let role: Role = ctx
            .storage
            .get_json(&role_key(&role_name))
            .await?
            .ok_or_else(|| Error::invalid(format!("invalid role name {role_name:?}")))?;
        role.token
            .check_login_address(ctx.remote_address.as_deref())?;
        let config: Config = ctx
            .storage
            .get_json("config")
            .await?
            .ok_or_else(|| Error::invalid("could not load backend configuration"))?;
        let (mut account, token_audiences) =
            parse_and_validate(&config, &role, &jwt, ctx.now.unix_timestamp())
                .map_err(Error::PermissionDenied)?;
        if !role
            .bound_service_account_names
            .iter()
            .any(|p| p == "*" || glob::matches(p, &account.name))
        {
            return Err(Error::PermissionDenied(
                "service account name not authorized".into(),
            ));
        }
        if !role
            .bound_service_account_namespaces
            .iter()
            .any(|p| p == "*" || glob::matches(p, &account.namespace))
        {
            return Err(Error::PermissionDenied("namespace not authorized".into()));
        }
        if config.pem_keys.is_empty() {
            let audiences = if role.audience.is_empty() {
                token_audiences
            } else {
                vec![role.audience.clone()]
            };
            match self.review(&config, &jwt, &audiences, &account).await {
                Ok(uid) => account.uid = uid,
                Err(reason) => {
                    tracing::warn!(mount = %ctx.mount.path, role = %role_name, %reason, "TokenReview rejected a login");
                    return Err(Error::denied());
                }
            }
        }
        let alias_name = if role.alias_name_source == "serviceaccount_name" {
            format!("{}/{}", account.namespace, account.name)
        } else if account.uid.is_empty() {
            return Err(Error::PermissionDenied(
                "service account uid missing from token".into(),
            ));
        } else {
            account.uid.clone()
        };
        let mut metadata = BTreeMap::from([
            ("role".to_string(), role_name.to_lowercase()),
            ("service_account_name".to_string(), account.name.clone()),
            (
                "service_account_namespace".to_string(),
                account.namespace.clone(),
            ),
            (
                "service_account_secret_name".to_string(),
                account.secret_name.clone(),
            ),
            ("service_account_uid".to_string(), account.uid.clone()),
        ]);
        if !account.pod_name.is_empty() {
            metadata.insert("pod_name".into(), account.pod_name.clone());
        }
        let mut auth = role.token.auth_spec();
        auth.display_name = format!("{}-{}", account.namespace, account.name);
        auth.internal = json!({"role": role_name.to_lowercase()});
        auth.metadata = metadata.clone();
        auth.alias = Some(AliasSpec {
            name: alias_name,
            metadata,
        });
        Ok(EngineResponse {
            auth: Some(auth),
            ..EngineResponse::default()
        })
    }

    /// Asks the cluster whether the token is valid; returns the service account's UID.
    async fn review(
        &self,
        config: &Config,
        jwt: &Secret,
        audiences: &[String],
        account: &ServiceAccount,
    ) -> Result<String, String> {
        let ca_pem = if !config.kubernetes_ca_cert.is_empty() {
            config.kubernetes_ca_cert.clone()
        } else if !config.disable_local_ca_jwt {
            tokio::fs::read_to_string(LOCAL_CA_PATH)
                .await
                .unwrap_or_default()
        } else {
            String::new()
        };
        let bearer = if !config.token_reviewer_jwt.is_empty() {
            config.token_reviewer_jwt.clone()
        } else if !config.disable_local_ca_jwt {
            match tokio::fs::read_to_string(LOCAL_JWT_PATH).await {
                Ok(token) if !token.trim().is_empty() => Secret::new(token.trim().to_string()),
                // Without a reviewer token the client's own JWT is the bearer (as in Vault), so
                // its service account needs `system:auth-delegator`.
                _ => jwt.clone(),
            }
        } else {
            jwt.clone()
        };
        let client = self.client_for(&ca_pem).await?;
        let host = config.kubernetes_host.trim_end_matches('/');
        let base = if host.contains("://") {
            host.to_string()
        } else {
            format!("https://{host}")
        };
        let mut spec = json!({"token": jwt.expose()});
        if !audiences.is_empty() {
            spec["audiences"] = json!(audiences);
        }
        let body =
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec});
        let response = client
            .post(format!("{base}/apis/authentication.k8s.io/v1/tokenreviews"))
            .bearer_auth(bearer.expose())
            .header("Accept", "application/json")
            .json(&body)
            .send()
            .await
            .map_err(|e| http::without_url(&e))?;
        let status = response.status();
        let body = http::read_body(response).await?;
        if status.as_u16() == 401 {
            return Err("the API server answered 401: the reviewer token is invalid, or the service account was deleted or recreated".into());
        }
        if !status.is_success() {
            return Err(format!("the API server answered {}", status.as_u16()));
        }
        let review: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("invalid TokenReview answer: {e}"))?;
        let status = review
            .get("status")
            .ok_or("TokenReview answer without status")?;
        if let Some(error) = status
            .get("error")
            .and_then(Value::as_str)
            .filter(|e| !e.is_empty())
        {
            return Err(format!("TokenReview error: {error}"));
        }
        if status.get("authenticated").and_then(Value::as_bool) != Some(true) {
            return Err("the token is not authenticated".into());
        }
        if !audiences.is_empty() {
            let granted: Vec<&str> = status
                .get("audiences")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if !audiences.iter().any(|a| granted.contains(&a.as_str())) {
                return Err("the token is not valid for the requested audiences".into());
            }
        }
        let user = status
            .get("user")
            .ok_or("TokenReview answer without user")?;
        let expected = format!(
            "system:serviceaccount:{}:{}",
            account.namespace, account.name
        );
        if user.get("username").and_then(Value::as_str) != Some(expected.as_str()) {
            return Err("the reviewed username does not match the token".into());
        }
        let uid = user
            .get("uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if !account.uid.is_empty() && uid != account.uid {
            return Err("the reviewed UID does not match the token".into());
        }
        Ok(uid)
    }

    async fn client_for(&self, ca_pem: &str) -> Result<reqwest::Client, String> {
        let key = hex::encode(Sha256::digest(ca_pem.as_bytes()));
        let mut cached = self.client.lock().await;
        if let Some((cached_key, client)) = cached.as_ref() {
            if *cached_key == key {
                return Ok(client.clone());
            }
        }
        let client = http::client(ca_pem)?;
        *cached = Some((key, client.clone()));
        Ok(client)
    }
}

/// Reads the token (verifying it when `pem_keys` are set) and checks time, audience and
/// issuer. Returns who it names and its audiences.
fn parse_and_validate(
    config: &Config,
    role: &Role,
    jwt: &Secret,
    now: i64,
) -> Result<(ServiceAccount, Vec<String>), String> {
    let unverified = Unverified::decode(jwt.expose()).map_err(|e| e.to_string())?;
    let algorithm = unverified
        .algorithm(&ALGORITHMS)
        .map_err(|e| e.to_string())?;
    let claims = if config.pem_keys.is_empty() {
        unverified.claims_unverified().map_err(|e| e.to_string())?
    } else {
        let keys: Vec<PublicKey> = config
            .pem_keys
            .iter()
            .filter_map(|pem| PublicKey::from_pem_bundle(pem).ok())
            .flatten()
            .collect();
        unverified
            .verify(algorithm, keys.iter())
            .map_err(|e| e.to_string())?
    };
    // Legacy secret tokens carry no time claims at all; those present must hold.
    if registered::time(&claims, "exp")?.is_some_and(|exp| now - SKEW_SECONDS > exp) {
        return Err("token is expired (exp)".into());
    }
    if registered::time(&claims, "nbf")?.is_some_and(|nbf| now + SKEW_SECONDS < nbf) {
        return Err("token not valid yet (nbf)".into());
    }
    if registered::time(&claims, "iat")?.is_some_and(|iat| now + SKEW_SECONDS < iat) {
        return Err("token issued in the future (iat)".into());
    }
    let audiences = registered::audiences(&claims)?;
    if !role.audience.is_empty() && !audiences.contains(&role.audience) {
        return Err(
            "invalid audience (aud) claim: audience claim does not match any expected audience"
                .into(),
        );
    }
    if !config.disable_iss_validation
        && !config.issuer.is_empty()
        && registered::string(&claims, "iss")? != Some(config.issuer.as_str())
    {
        return Err("invalid issuer (iss) claim".into());
    }
    let account =
        service_account(&claims).ok_or("service account name or namespace missing from token")?;
    Ok((account, audiences))
}

/// The identity of a projected token (`kubernetes.io` object) or a legacy secret token.
fn service_account(claims: &Map<String, Value>) -> Option<ServiceAccount> {
    let text = |value: Option<&Value>| {
        value
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let account = if let Some(projected) = claims.get("kubernetes.io").filter(|v| v.is_object()) {
        ServiceAccount {
            namespace: text(projected.get("namespace")),
            name: text(projected.pointer("/serviceaccount/name")),
            uid: text(projected.pointer("/serviceaccount/uid")),
            secret_name: text(projected.pointer("/secret/name")),
            pod_name: text(projected.pointer("/pod/name")),
        }
    } else {
        ServiceAccount {
            namespace: text(claims.get("kubernetes.io/serviceaccount/namespace")),
            name: text(claims.get("kubernetes.io/serviceaccount/service-account.name")),
            uid: text(claims.get("kubernetes.io/serviceaccount/service-account.uid")),
            secret_name: text(claims.get("kubernetes.io/serviceaccount/secret.name")),
            pod_name: String::new(),
        }
    };
    (!account.namespace.is_empty() && !account.name.is_empty()).then_some(account)
}

#[cfg(test)]
mod tests;
