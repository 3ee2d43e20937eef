//! Response wrapping: a response stored in the cubbyhole of a single-use token.
//!
//! The wrapping token carries only the internal `response-wrapping` policy and one use. The
//! response is stored under its cubbyhole as `response`; unwrapping reads it and revokes the
//! token in the same critical section, so a wrapping token unwraps exactly once.
//!
//! A control-group token (see `approvals::control_group`) holds no response: its unwrap
//! answers 403 with the approval status until every factor is satisfied, then runs the held
//! request as the requester, once.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::clock::rfc3339;
use crate::core::{Caller, Core, State};
use crate::engine::fields;
use crate::error::Error;
use crate::mounts::Table;
use crate::request::{AuthResponse, LeaseResponse, Request, Response, WrapInfo};
use crate::token::endpoints::{lifetime, LifetimeRequest};
use crate::token::{Minted, TokenEntry};
use crate::view::StorageView;

pub(crate) const INVALID: &str = "wrapping token is not valid or does not exist";

impl Core {
    /// Replaces a response with a wrapping token holding it.
    pub(crate) async fn wrap_response(
        &self,
        state: &State,
        response: Response,
        ttl: u64,
        creation_path: &str,
        _caller: Option<&Caller>,
    ) -> Result<Response, Error> {
        let (minted, mut wrap_info) = self
            .mint_wrapping_token(state, ttl, creation_path, None)
            .await?;
        let stored =
            serde_json::to_vec(&encode(&response)).map_err(|e| Error::internal(e.to_string()))?;
        self.cubbyhole(state, &minted.entry.cubbyhole_id)?
            .put("response", &stored)
            .await?;
        wrap_info.wrapped_accessor = response
            .auth
            .as_ref()
            .map(|a| a.accessor.clone())
            .unwrap_or_default();
        Ok(Response {
            request_id: response.request_id.clone(),
            wrap_info: Some(wrap_info),
            ..Response::default()
        })
    }

    /// Mints a single-use wrapping token with the `response-wrapping` policy. `marker`, when
    /// given, is set in the token's metadata (a control-group token holds no response).
    pub(crate) async fn mint_wrapping_token(
        &self,
        state: &State,
        ttl: u64,
        creation_path: &str,
        marker: Option<&str>,
    ) -> Result<(Minted, WrapInfo), Error> {
        if ttl == 0 {
            return Err(Error::invalid("wrapping TTL must be greater than zero"));
        }
        let now_time = self.clock.now();
        let now = now_time.unix_timestamp();
        let life = lifetime(&LifetimeRequest {
            now,
            ttl,
            max_ttl: 0,
            explicit_max_ttl: 0,
            period: 0,
            default_ttl: ttl,
            system_max_ttl: self.config().max_lease_ttl,
            never_expires: false,
        });
        let creation_time = rfc3339(now_time);
        let mut meta = std::collections::BTreeMap::new();
        meta.insert("creation_path".to_string(), creation_path.to_string());
        meta.insert("creation_time".to_string(), creation_time.clone());
        if let Some(marker) = marker {
            meta.insert(marker.to_string(), "true".to_string());
        }
        let entry = TokenEntry {
            policies: vec!["response-wrapping".into()],
            meta,
            display_name: "response-wrapping".into(),
            num_uses: 1,
            creation_time: now,
            creation_ttl: life.ttl,
            expire_time: life.expire_time,
            max_expire_time: life.expire_time,
            path: creation_path.to_string(),
            orphan: true,
            wrapping: true,
            ..TokenEntry::default()
        };
        let minted = state.tokens.create(entry, None).await?;
        let wrap_info = WrapInfo {
            token: minted.id.to_string(),
            accessor: minted.entry.accessor.clone(),
            ttl: life.ttl,
            creation_time,
            creation_path: creation_path.to_string(),
            wrapped_accessor: String::new(),
        };
        Ok((minted, wrap_info))
    }

    /// `sys/wrapping/wrap`: wraps the request body itself.
    pub(crate) async fn wrap_data(
        &self,
        state: &State,
        request: &Request,
        caller: Option<&Caller>,
    ) -> Result<Response, Error> {
        let ttl = request
            .wrap_ttl
            .ok_or_else(|| Error::invalid("no wrap TTL given: set the X-Vault-Wrap-TTL header"))?;
        let response = Response::with_data(request.data.clone());
        self.wrap_response(state, response, ttl, "sys/wrapping/wrap", caller)
            .await
    }

    /// `sys/wrapping/unwrap`: returns the wrapped response once.
    pub(crate) async fn unwrap(
        &self,
        state: &Arc<State>,
        request: &Request,
        caller: Option<&Caller>,
    ) -> Result<Response, Error> {
        let token = wrapping_token(request, caller)?;
        let guard = state.unwrap_lock.lock().await;
        if let Some(entry) = self.control_group_token(state, &token).await? {
            drop(guard);
            return self
                .unwrap_control_group(state, &entry, request, caller)
                .await;
        }
        let (entry, stored) = self.wrapped(state, &token).await?;
        self.remove_token(state, &entry).await?;
        let mut response = decode(&stored)?;
        response.request_id = request.id.clone();
        Ok(response)
    }

    /// `sys/wrapping/lookup`: facts about a wrapping token, without using it.
    pub(crate) async fn wrapping_lookup(
        &self,
        state: &State,
        request: &Request,
    ) -> Result<Response, Error> {
        let token = fields::string(&request.data, "token")?
            .filter(|t| !t.is_empty())
            .or_else(|| request.token.as_ref().map(|t| t.as_str().to_string()))
            .ok_or_else(|| Error::invalid("missing token"))?;
        let entry = state
            .tokens
            .lookup(&token, self.now_unix())
            .await?
            .filter(|e| e.wrapping)
            .ok_or_else(|| Error::invalid(INVALID))?;
        Ok(Response::with_data(Core::data_map(json!({
            "creation_path": entry.meta.get("creation_path").cloned().unwrap_or_default(),
            "creation_time": entry.meta.get("creation_time").cloned().unwrap_or_default(),
            "creation_ttl": entry.creation_ttl,
        }))))
    }

    /// `sys/wrapping/rewrap`: moves a wrapped response to a new token with the same TTL.
    pub(crate) async fn rewrap(
        &self,
        state: &Arc<State>,
        request: &Request,
        caller: Option<&Caller>,
    ) -> Result<Response, Error> {
        let token = wrapping_token(request, caller)?;
        let _guard = state.unwrap_lock.lock().await;
        let (entry, stored) = self.wrapped(state, &token).await?;
        let response = decode(&stored)?;
        let path = entry.meta.get("creation_path").cloned().unwrap_or_default();
        let wrapped = self
            .wrap_response(state, response, entry.creation_ttl, &path, caller)
            .await?;
        self.remove_token(state, &entry).await?;
        Ok(wrapped)
    }

    /// The entry of a wrapping token that stands for a pending control-group request.
    async fn control_group_token(
        &self,
        state: &State,
        token: &str,
    ) -> Result<Option<Arc<TokenEntry>>, Error> {
        let entry = state.tokens.lookup(token, self.now_unix()).await?;
        Ok(entry.filter(|e| {
            e.wrapping
                && e.meta
                    .contains_key(crate::approvals::control_group::TOKEN_MARKER)
        }))
    }

    async fn wrapped(
        &self,
        state: &State,
        token: &str,
    ) -> Result<(Arc<TokenEntry>, Vec<u8>), Error> {
        let entry = state
            .tokens
            .lookup(token, self.now_unix())
            .await?
            .filter(|e| e.wrapping)
            .ok_or_else(|| Error::invalid(INVALID))?;
        let stored = self
            .cubbyhole(state, &entry.cubbyhole_id)?
            .get("response")
            .await?
            .ok_or_else(|| Error::invalid(INVALID))?;
        Ok((entry, stored.to_vec()))
    }

    fn cubbyhole(&self, state: &State, id: &str) -> Result<StorageView, Error> {
        let router = state.router();
        let cubby = router
            .find(Table::Secrets, "cubbyhole/")
            .ok_or_else(|| Error::internal("cubbyhole mount missing"))?;
        Ok(cubby.view.sub(&format!("{id}/")))
    }
}

fn wrapping_token(request: &Request, caller: Option<&Caller>) -> Result<String, Error> {
    let from_body = fields::string(&request.data, "token")?.filter(|t| !t.is_empty());
    from_body
        .or_else(|| caller.map(|c| c.token.as_str().to_string()))
        .ok_or_else(|| Error::invalid(INVALID))
}

fn encode(response: &Response) -> Value {
    json!({
        "data": response.data,
        "warnings": response.warnings,
        "lease_duration_hint": response.lease_duration_hint,
        "mount_type": response.mount_type,
        "lease": response.lease.as_ref().map(|l| json!({
            "lease_id": l.lease_id, "lease_duration": l.lease_duration, "renewable": l.renewable,
        })),
        "auth": response.auth.as_ref().map(|a| json!({
            "client_token": a.client_token, "accessor": a.accessor, "policies": a.policies,
            "token_policies": a.token_policies, "identity_policies": a.identity_policies,
            "metadata": a.metadata, "lease_duration": a.lease_duration, "renewable": a.renewable,
            "entity_id": a.entity_id, "token_type": a.token_type, "orphan": a.orphan, "num_uses": a.num_uses,
        })),
    })
}

fn decode(bytes: &[u8]) -> Result<Response, Error> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|_| Error::internal("wrapped response is corrupt"))?;
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let data = match value.get("data") {
        Some(Value::Object(m)) => Some(m.clone()),
        _ => None,
    };
    let lease = value
        .get("lease")
        .filter(|l| l.is_object())
        .map(|l| LeaseResponse {
            lease_id: l["lease_id"].as_str().unwrap_or_default().to_string(),
            lease_duration: l["lease_duration"].as_u64().unwrap_or(0),
            renewable: l["renewable"].as_bool().unwrap_or(false),
        });
    let auth = value
        .get("auth")
        .filter(|a| a.is_object())
        .map(|a| AuthResponse {
            client_token: a["client_token"].as_str().unwrap_or_default().to_string(),
            accessor: a["accessor"].as_str().unwrap_or_default().to_string(),
            policies: strings(&a["policies"]),
            token_policies: strings(&a["token_policies"]),
            identity_policies: strings(&a["identity_policies"]),
            metadata: a["metadata"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                        .collect()
                })
                .unwrap_or_default(),
            lease_duration: a["lease_duration"].as_u64().unwrap_or(0),
            renewable: a["renewable"].as_bool().unwrap_or(false),
            entity_id: a["entity_id"].as_str().unwrap_or_default().to_string(),
            token_type: a["token_type"].as_str().unwrap_or_default().to_string(),
            orphan: a["orphan"].as_bool().unwrap_or(false),
            num_uses: a["num_uses"].as_u64().unwrap_or(0),
        });
    Ok(Response {
        data,
        lease,
        auth,
        warnings: strings(&value["warnings"]),
        lease_duration_hint: value["lease_duration_hint"].as_u64(),
        mount_type: value["mount_type"].as_str().unwrap_or_default().to_string(),
        ..Response::default()
    })
}
