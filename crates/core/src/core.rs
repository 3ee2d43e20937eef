//! The core: the request path of the diagram in DESIGN.md, and the seal lifecycle.
//!
//! `handle_request` reads top to bottom like the request path: sealed? → quotas → route →
//! authenticate → create or update → authorise (`check`) → audit the request (fail closed) →
//! dispatch → use count → wrap (`execute`) → audit the response → metrics. When the ACL
//! decision carries a control group, the request is held instead of dispatched
//! (`approvals::control_group`) and runs later, on unwrap, through `execute_approved`. The
//! audit, quota and metrics steps are in `audit::hooks`. Everything it calls sits below it:
//! the router, the token store, the policy store, the engines. Nothing below holds a pointer
//! back to the core.

use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};
use ward_policy::{Acl, ControlGroup, IdentityContext};
use ward_storage::Physical;
use zeroize::Zeroizing;

use crate::barrier::Barrier;
use crate::clock::Clock;
use crate::engine::{EngineContext, EngineRegistry, EngineRequest, Operation};
use crate::error::Error;
use crate::expiration::ExpirationManager;
use crate::identity::IdentityStore;
use crate::mounts::{MountEntry, Mounted, Route, Router, Table};
use crate::policy_store::PolicyStore;
use crate::request::{ClientToken, Health, InitResult, Request, Response, SealStatus, Verb};
use crate::seal::{Seal, Unseal};
use crate::token::{TokenEntry, TokenStore};
use crate::view::StorageView;

/// Settings the core takes from the server configuration.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// System default and maximum lease TTLs, in seconds (Vault: 768h each).
    pub default_lease_ttl: u64,
    pub max_lease_ttl: u64,
    pub cluster_name: String,
    /// Shown in `sys/seal-status` (`inmem`, `sqlite`).
    pub storage_type: String,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            default_lease_ttl: 768 * 3600,
            max_lease_ttl: 768 * 3600,
            cluster_name: "ward-cluster".into(),
            storage_type: "inmem".into(),
        }
    }
}

/// What the core holds while unsealed; dropped as a whole on seal.
pub(crate) struct State {
    pub(crate) router: RwLock<Arc<Router>>,
    pub(crate) tokens: TokenStore,
    pub(crate) policies: PolicyStore,
    pub(crate) expiration: ExpirationManager,
    pub(crate) identity: IdentityStore,
    /// Serialises changes to the mount tables.
    pub(crate) mount_lock: tokio::sync::Mutex<()>,
    /// Serialises unwrapping so a wrapping token is used exactly once.
    pub(crate) unwrap_lock: tokio::sync::Mutex<()>,
    /// The enabled audit devices.
    pub(crate) audit: crate::audit::Broker,
    /// Rate-limit quotas.
    pub(crate) quotas: crate::quotas::RateLimits,
}

impl State {
    pub(crate) fn router(&self) -> Arc<Router> {
        self.router.read().map(|r| r.clone()).unwrap_or_default()
    }
}

/// The authenticated caller of a request.
#[derive(Clone)]
pub(crate) struct Caller {
    pub(crate) token: ClientToken,
    pub(crate) entry: Arc<TokenEntry>,
    pub(crate) acl: Arc<Acl>,
}

/// Where a path goes: the core's own backends or an engine.
pub(crate) enum Target {
    System(String),
    Token(String),
    Identity(String),
    Engine(Box<Route>),
}

pub struct Core {
    config: CoreConfig,
    pub(crate) barrier: Arc<Barrier>,
    seal: Seal,
    registry: EngineRegistry,
    state: RwLock<Option<Arc<State>>>,
    pub(crate) clock: Clock,
    /// Serialises init, unseal and seal.
    lifecycle: tokio::sync::Mutex<()>,
    /// Generate-root and rekey attempts.
    pub(crate) operator: crate::operator::Operator,
    /// Control groups and access requests: the gatekeeper client and the record lock.
    pub(crate) approvals: crate::approvals::Approvals,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    pub(crate) alerts: Arc<crate::alerts::Alerts>,
    /// Audit device types (`file` built in; the server adds `socket`).
    pub(crate) audit_factories: Arc<crate::audit::Factories>,
    pub(crate) alert_delivery: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Core {
    pub fn new(
        config: CoreConfig,
        physical: Arc<dyn Physical>,
        registry: EngineRegistry,
    ) -> Arc<Core> {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        Arc::new(Core {
            alerts: Arc::new(crate::alerts::Alerts::new(metrics.clone())),
            metrics,
            audit_factories: Arc::default(),
            alert_delivery: std::sync::Mutex::new(None),
            config,
            barrier: Arc::new(Barrier::new(physical)),
            seal: Seal::default(),
            registry,
            state: RwLock::new(None),
            clock: Clock::default(),
            lifecycle: tokio::sync::Mutex::new(()),
            operator: crate::operator::Operator::default(),
            approvals: crate::approvals::Approvals::default(),
        })
    }

    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn is_sealed(&self) -> bool {
        self.state.read().map(|s| s.is_none()).unwrap_or(true)
    }

    pub async fn is_initialized(&self) -> Result<bool, Error> {
        Ok(Seal::config(self.barrier.physical().as_ref())
            .await?
            .is_some())
    }

    /// `sys/init`: creates the keys and the root token. The server stays sealed afterwards,
    /// as Vault's does: the operator unseals with the shares.
    pub async fn init(&self, shares: u32, threshold: u32) -> Result<InitResult, Error> {
        let _guard = self.lifecycle.lock().await;
        let keys = Seal::initialize(&self.barrier, shares, threshold, self.clock.unix()).await?;
        let state = self.post_unseal(true).await?;
        let root = self.create_root_token(&state, None).await?;
        self.barrier.seal();
        Ok(InitResult {
            keys,
            root_token: root,
        })
    }

    /// Dev mode: one key share, unsealed, KV v2 at `secret/`, optionally a chosen root token.
    pub async fn dev_init(&self, root_token_id: Option<&str>) -> Result<InitResult, Error> {
        let _guard = self.lifecycle.lock().await;
        let keys = Seal::initialize(&self.barrier, 1, 1, self.clock.unix()).await?;
        let state = self.post_unseal(true).await?;
        let root = self.create_root_token(&state, root_token_id).await?;
        let mut entry = MountEntry::new(Table::Secrets, "secret/", "kv");
        entry.description = "key/value secret storage".into();
        entry.options.insert("version".into(), "2".into());
        self.add_mount(&state, entry).await?;
        self.install(Some(state));
        Ok(InitResult {
            keys,
            root_token: root,
        })
    }

    pub async fn seal_status(&self) -> Result<SealStatus, Error> {
        let config = Seal::config(self.barrier.physical().as_ref()).await?;
        let (progress, nonce) = self.seal.progress();
        let sealed = self.is_sealed();
        Ok(SealStatus {
            initialized: config.is_some(),
            sealed,
            threshold: config.as_ref().map(|c| c.secret_threshold).unwrap_or(0),
            shares: config.as_ref().map(|c| c.secret_shares).unwrap_or(0),
            progress,
            nonce,
            cluster_name: if sealed {
                String::new()
            } else {
                self.config.cluster_name.clone()
            },
            cluster_id: match (&config, sealed) {
                (Some(c), false) => c.cluster_id.clone(),
                _ => String::new(),
            },
            storage_type: self.config.storage_type.clone(),
        })
    }

    /// `sys/unseal` with one key share (raw bytes, decoded by the server from hex or base64).
    pub async fn unseal(&self, share: Vec<u8>) -> Result<SealStatus, Error> {
        {
            let _guard = self.lifecycle.lock().await;
            if self.is_sealed() {
                let config = Seal::config(self.barrier.physical().as_ref())
                    .await?
                    .ok_or_else(|| Error::invalid("Vault is not initialized"))?;
                if let Unseal::Unsealed = self.seal.submit(&self.barrier, &config, share).await? {
                    match self.post_unseal(false).await {
                        Ok(state) => self.install(Some(state)),
                        Err(e) => {
                            self.barrier.seal();
                            return Err(e);
                        }
                    }
                    tracing::info!("vault is unsealed");
                }
            }
        }
        self.seal_status().await
    }

    pub fn unseal_reset(&self) {
        self.seal.reset();
    }

    /// Seals the core: keys forgotten, every later request answered 503 until unsealed.
    pub async fn seal(&self) {
        let _guard = self.lifecycle.lock().await;
        self.install(None);
        self.barrier.seal();
        self.seal.reset();
        tracing::info!("vault is sealed");
    }

    pub async fn health(&self) -> Result<Health, Error> {
        let status = self.seal_status().await?;
        Ok(Health {
            initialized: status.initialized,
            sealed: status.sealed,
            standby: false,
            server_time_utc: self.clock.unix(),
            cluster_name: status.cluster_name,
            cluster_id: status.cluster_id,
        })
    }

    /// The request path. See the module documentation.
    pub async fn handle_request(&self, request: Request) -> Result<Response, Error> {
        let started = std::time::Instant::now();
        let state = self.state()?;
        let mut trail = crate::audit::Trail::default();
        let checked = self.check(&state, &request, &mut trail).await;
        self.audit_request(&state, &trail, &request, checked.as_ref().err())
            .await?;
        let result = match checked {
            Ok((target, operation, caller, None)) => {
                self.execute(&state, &request, target, operation, caller)
                    .await
            }
            // A control group holds the request back: stored, answered with a wrapping token.
            Ok((_, _, caller, Some(group))) => {
                self.defer_to_control_group(&state, &request, caller, group)
                    .await
            }
            Err(error) => Err(error),
        };
        let result = self.audit_response(&state, &trail, &request, result).await;
        self.observe(&trail, &request, &result, started.elapsed());
        result
    }

    /// Quotas, route, authentication and authorisation: everything decided before the
    /// request entry is audited and the request runs.
    #[allow(clippy::type_complexity)]
    async fn check(
        &self,
        state: &State,
        request: &Request,
        trail: &mut crate::audit::Trail,
    ) -> Result<(Target, Operation, Option<Caller>, Option<ControlGroup>), Error> {
        self.limit(
            state,
            request,
            None,
            crate::audit::QuotaPhase::BeforeAuthentication,
            trail,
        )?;
        let target = self.resolve(state, &request.path)?;
        trail.mount = Some(target.audit_mount());
        let caller = self.authenticate(state, &target, request).await?;
        trail.caller = caller.clone();
        trail.login = target.is_login(caller.as_ref());
        let operation = self.operation(&target, request, caller.as_ref()).await?;
        trail.operation = Some(operation);
        self.limit(
            state,
            request,
            caller.as_ref(),
            crate::audit::QuotaPhase::AfterAuthentication,
            trail,
        )?;
        let control_group = self.authorize(caller.as_ref(), &target, operation, request)?;
        Ok((target, operation, caller, control_group))
    }

    /// Dispatch, the token's use count, and wrapping.
    async fn execute(
        &self,
        state: &Arc<State>,
        request: &Request,
        target: Target,
        operation: Operation,
        caller: Option<Caller>,
    ) -> Result<Response, Error> {
        let (caller, last_use) = match caller {
            Some(mut caller) => {
                let (entry, last) = state.tokens.use_once(&caller.entry).await?;
                caller.entry = entry;
                (Some(caller), last)
            }
            None => (None, false),
        };
        let response = self
            .dispatch(state, &target, operation, request, caller.as_ref())
            .await;
        if let (Some(caller), true) = (&caller, last_use) {
            self.revoke_token_tree(state, &caller.entry).await?;
        }
        let mut response = response?;
        response.request_id = request.id.clone();
        match request.wrap_ttl {
            Some(ttl) if !response.is_empty() && !is_wrapping_exempt(&request.path) => {
                self.wrap_response(state, response, ttl, &request.path, caller.as_ref())
                    .await
            }
            _ => Ok(response),
        }
    }

    pub(crate) fn state(&self) -> Result<Arc<State>, Error> {
        self.state
            .read()
            .map_err(|_| Error::internal("state lock poisoned"))?
            .clone()
            .ok_or(Error::Sealed)
    }

    fn install(&self, state: Option<Arc<State>>) {
        match self.state.write() {
            Ok(mut guard) => *guard = state,
            Err(poisoned) => *poisoned.into_inner() = state,
        }
    }

    /// Loads (or on first unseal creates) the mount tables, token store and policies.
    async fn post_unseal(&self, first_time: bool) -> Result<Arc<State>, Error> {
        let system = StorageView::new(self.barrier.clone(), "");
        let mut secrets: Vec<MountEntry> = system
            .get_json(crate::mounts::MOUNTS_PATH)
            .await?
            .unwrap_or_default();
        let mut auths: Vec<MountEntry> = system
            .get_json(crate::mounts::AUTH_PATH)
            .await?
            .unwrap_or_default();
        if first_time || secrets.is_empty() {
            secrets = default_secret_mounts();
            auths = default_auth_mounts();
            system
                .put_json(crate::mounts::MOUNTS_PATH, &secrets)
                .await?;
            system.put_json(crate::mounts::AUTH_PATH, &auths).await?;
        }
        let mut mounted = Vec::new();
        for entry in secrets.into_iter().chain(auths) {
            mounted.push(self.mount(entry)?);
        }
        let state = State {
            router: RwLock::new(Arc::new(Router::new(mounted))),
            tokens: TokenStore::open(self.barrier.clone()).await?,
            policies: PolicyStore::open(StorageView::new(self.barrier.clone(), "sys/policy/"))
                .await?,
            expiration: ExpirationManager::new(self.barrier.clone()),
            identity: IdentityStore::new(StorageView::new(self.barrier.clone(), "sys/identity/")),
            mount_lock: tokio::sync::Mutex::new(()),
            unwrap_lock: tokio::sync::Mutex::new(()),
            audit: crate::audit::Broker::restore(
                StorageView::new(self.barrier.clone(), ""),
                self.audit_factories.clone(),
                self.audit_failure_hook(),
            )
            .await?,
            quotas: crate::quotas::RateLimits::load(StorageView::new(
                self.barrier.clone(),
                "sys/quotas-rate-limit/",
            ))
            .await?,
        };
        self.alerts
            .load(StorageView::new(self.barrier.clone(), "sys/alerts/"))
            .await?;
        Ok(Arc::new(state))
    }

    /// Builds the live engine and view for a mount entry.
    pub(crate) fn mount(&self, entry: MountEntry) -> Result<Mounted, Error> {
        let engine = if entry.is_builtin() {
            None
        } else {
            Some(
                self.registry
                    .build(&entry.info(self.config.default_lease_ttl, self.config.max_lease_ttl))?,
            )
        };
        let view = StorageView::new(self.barrier.clone(), entry.storage_prefix());
        Ok(Mounted {
            entry,
            engine,
            view,
        })
    }

    pub(crate) fn registry(&self) -> &EngineRegistry {
        &self.registry
    }

    async fn create_root_token(
        &self,
        state: &State,
        id: Option<&str>,
    ) -> Result<Zeroizing<String>, Error> {
        let entry = TokenEntry {
            policies: vec!["root".into()],
            display_name: "root".into(),
            creation_time: self.clock.unix(),
            path: "auth/token/root".into(),
            orphan: true,
            ..TokenEntry::default()
        };
        Ok(state.tokens.create(entry, id).await?.id)
    }

    fn resolve(&self, state: &State, path: &str) -> Result<Target, Error> {
        if let Some(rest) =
            path.strip_prefix("sys/")
                .or(if path == "sys" { Some("") } else { None })
        {
            return Ok(Target::System(rest.to_string()));
        }
        if let Some(rest) = path
            .strip_prefix("auth/token/")
            .or(if path == "auth/token" { Some("") } else { None })
        {
            return Ok(Target::Token(rest.to_string()));
        }
        if let Some(rest) = path.strip_prefix("identity/") {
            return Ok(Target::Identity(rest.to_string()));
        }
        match state.router().resolve(path) {
            Some(route) if route.mounted.engine.is_some() => Ok(Target::Engine(Box::new(route))),
            _ => Err(Error::UnsupportedPath(path.to_string())),
        }
    }

    /// Splits a write into create or update with the engine's existence check.
    async fn operation(
        &self,
        target: &Target,
        request: &Request,
        caller: Option<&Caller>,
    ) -> Result<Operation, Error> {
        Ok(match request.verb {
            Verb::Read => Operation::Read,
            Verb::List => Operation::List,
            Verb::Patch => Operation::Patch,
            Verb::Delete => Operation::Delete,
            Verb::Write => match target {
                Target::Engine(route) => {
                    let Some(engine) = &route.mounted.engine else {
                        return Ok(Operation::Update);
                    };
                    let ctx = self.engine_context(route, caller, request);
                    let probe = EngineRequest::new(
                        Operation::Create,
                        route.relative.clone(),
                        request.data.clone(),
                    );
                    match engine.exists(&ctx, &probe).await? {
                        Some(false) => Operation::Create,
                        _ => Operation::Update,
                    }
                }
                _ => Operation::Update,
            },
        })
    }

    async fn authenticate(
        &self,
        state: &State,
        target: &Target,
        request: &Request,
    ) -> Result<Option<Caller>, Error> {
        let unauthenticated = match target {
            Target::System(path) => crate::sys::is_unauthenticated(path),
            Target::Token(_) | Target::Identity(_) => false,
            Target::Engine(route) => route
                .mounted
                .engine
                .as_ref()
                .is_some_and(|e| e.is_unauthenticated(&route.relative)),
        };
        // Unauthenticated paths (logins, wrapping lookup) ignore any token sent, as Vault
        // does, so that such a request never spends a use of it.
        if unauthenticated {
            return Ok(None);
        }
        let Some(token) = &request.token else {
            return Err(Error::denied());
        };
        let now = self.clock.unix();
        let entry = match state.tokens.lookup(token.as_str(), now).await? {
            Some(entry) => entry,
            None => return Err(Error::PermissionDenied("permission denied".into())),
        };
        if !entry.bound_cidrs.is_empty()
            && !crate::cidr::allowed(&entry.bound_cidrs, request.remote_address.as_deref())
        {
            return Err(Error::PermissionDenied("permission denied".into()));
        }
        let acl = self.acl_for(state, &entry).await?;
        Ok(Some(Caller {
            token: token.clone(),
            entry,
            acl,
        }))
    }

    /// The ACL of a token: its own policies plus its entity's identity policies, with
    /// templated paths resolved against the entity.
    pub(crate) async fn acl_for(
        &self,
        state: &State,
        entry: &TokenEntry,
    ) -> Result<Arc<Acl>, Error> {
        if entry.entity_id.is_empty() {
            return state
                .policies
                .acl(&entry.policies, &IdentityContext::default(), "")
                .await;
        }
        let resolved = state.identity.resolve(&entry.entity_id).await?;
        let mut names = entry.policies.clone();
        names.extend(resolved.policies.iter().cloned());
        names.sort();
        names.dedup();
        let key = format!("{}#{}", entry.entity_id, state.identity.generation());
        state.policies.acl(&names, &resolved.context, &key).await
    }

    /// The ACL check. `Ok(Some(group))` means allowed, but held until the control group's
    /// factors are approved.
    fn authorize(
        &self,
        caller: Option<&Caller>,
        target: &Target,
        operation: Operation,
        request: &Request,
    ) -> Result<Option<ControlGroup>, Error> {
        let Some(caller) = caller else {
            return Ok(None);
        };
        let requires_sudo = match target {
            Target::System(path) => crate::sys::requires_sudo(path, operation),
            Target::Token(path) => crate::token::endpoints::requires_sudo(path, operation),
            Target::Identity(_) => false,
            Target::Engine(route) => route
                .mounted
                .engine
                .as_ref()
                .is_some_and(|e| e.requires_sudo(operation, &route.relative)),
        };
        if let Target::System(path) = target {
            if crate::sys::authorizes_itself(path) {
                return Ok(None);
            }
        }
        let acl_path = acl_path(&request.path, operation);
        let parameters = match operation {
            Operation::Create | Operation::Update | Operation::Patch => Some(&request.data),
            _ => None,
        };
        let decision = caller.acl.authorize(&ward_policy::Request {
            path: &acl_path,
            operation: acl_operation(operation),
            parameters,
            wrap_ttl: request.wrap_ttl,
            requires_sudo,
        });
        if decision.allowed {
            Ok(decision
                .control_group
                .filter(|_| crate::approvals::control_group::applies(&request.path)))
        } else {
            let reason = decision.denial.map(|d| d.to_string()).unwrap_or_default();
            tracing::debug!(path = %request.path, operation = operation.as_str(), %reason, "permission denied");
            Err(Error::PermissionDenied(if reason.is_empty() {
                "permission denied".into()
            } else {
                format!("permission denied: {reason}")
            }))
        }
    }

    /// Runs a held request once its control group is satisfied, as `caller` (the requester):
    /// routed again, authorised again with the caller's current policies, dispatched.
    pub(crate) async fn execute_approved(
        &self,
        state: &Arc<State>,
        request: &Request,
        caller: &Caller,
    ) -> Result<Response, Error> {
        let target = self.resolve(state, &request.path)?;
        let operation = self.operation(&target, request, Some(caller)).await?;
        self.authorize(Some(caller), &target, operation, request)?;
        self.dispatch(state, &target, operation, request, Some(caller))
            .await
    }

    async fn dispatch(
        &self,
        state: &Arc<State>,
        target: &Target,
        operation: Operation,
        request: &Request,
        caller: Option<&Caller>,
    ) -> Result<Response, Error> {
        match target {
            Target::System(path) => {
                self.handle_system(state, path, operation, request, caller)
                    .await
            }
            Target::Token(path) => {
                self.handle_token(state, path, operation, request, caller)
                    .await
            }
            Target::Identity(path) => self.handle_identity(state, path, operation, request).await,
            Target::Engine(route) => {
                self.handle_engine(state, route, operation, request, caller)
                    .await
            }
        }
    }

    async fn handle_engine(
        &self,
        state: &Arc<State>,
        route: &Route,
        operation: Operation,
        request: &Request,
        caller: Option<&Caller>,
    ) -> Result<Response, Error> {
        let engine = route
            .mounted
            .engine
            .as_ref()
            .ok_or_else(|| Error::UnsupportedPath(request.path.clone()))?;
        let ctx = self.engine_context(route, caller, request);
        let engine_request =
            EngineRequest::new(operation, route.relative.clone(), request.data.clone());
        let out = engine.handle(&ctx, engine_request).await?;
        let mut response = Response {
            data: out.data,
            warnings: out.warnings,
            lease_duration_hint: out.lease_duration_hint,
            mount_type: route.mounted.entry.kind.clone(),
            ..Response::default()
        };
        if let Some(secret) = out.secret {
            let (lease, warnings) = self
                .register_lease(state, route, request, caller, secret, &ctx)
                .await?;
            response.lease = Some(lease);
            response.warnings.extend(warnings);
        }
        if let Some(auth) = out.auth {
            response.auth = Some(
                self.issue_login_token(state, &route.mounted.entry, auth, &ctx)
                    .await?,
            );
        }
        Ok(response)
    }

    pub(crate) fn engine_context(
        &self,
        route: &Route,
        caller: Option<&Caller>,
        request: &Request,
    ) -> EngineContext {
        EngineContext {
            storage: route.mounted.view.clone(),
            mount: route
                .mounted
                .entry
                .info(self.config.default_lease_ttl, self.config.max_lease_ttl),
            now: self.clock.now(),
            request_id: request.id.clone(),
            cubbyhole_id: caller.and_then(|c| non_empty(&c.entry.cubbyhole_id)),
            entity_id: caller.and_then(|c| non_empty(&c.entry.entity_id)),
            remote_address: request.remote_address.clone(),
        }
    }

    /// Revokes a token, its children (depth first) and their cubbyholes.
    pub(crate) async fn revoke_token_tree(
        &self,
        state: &State,
        root: &TokenEntry,
    ) -> Result<(), Error> {
        if root.hash.is_empty() {
            return Err(Error::invalid("batch tokens cannot be revoked"));
        }
        // Iterative post-order walk: children are removed before their parents, so a crash
        // midway leaves a tree that the next revocation (or the sweeper) finishes.
        let mut stack = vec![(root.clone(), false)];
        while let Some((entry, expanded)) = stack.pop() {
            if expanded {
                self.remove_token(state, &entry).await?;
                continue;
            }
            stack.push((entry.clone(), true));
            for child in state.tokens.children(&entry.hash).await? {
                if let Some(child_entry) = state.tokens.entry_any(&child).await? {
                    stack.push((child_entry, false));
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn remove_token(
        &self,
        state: &State,
        entry: &TokenEntry,
    ) -> Result<(), Error> {
        self.revoke_token_leases(state, &entry.hash).await?;
        if !entry.cubbyhole_id.is_empty() {
            if let Some(cubby) = state.router().find(Table::Secrets, "cubbyhole/") {
                cubby
                    .view
                    .sub(&format!("{}/", entry.cubbyhole_id))
                    .clear("")
                    .await?;
            }
        }
        state.tokens.remove(entry).await
    }

    /// Revokes tokens whose expiry has passed. Run by the server's sweeper every second.
    pub async fn expire_tokens(&self) -> Result<usize, Error> {
        let state = self.state()?;
        if !state.tokens.live.is_restored() {
            // Once per unseal: the live token count of the metrics, from the mount index.
            state
                .tokens
                .live
                .restore(state.tokens.count_by_mount())
                .await?;
        }
        let now = self.clock.unix();
        let expired = state.tokens.expired(now, 1000).await?;
        let count = expired.len();
        for (hash, time) in expired {
            match state.tokens.entry_any(&hash).await? {
                Some(entry) if entry.expire_time.is_some_and(|t| t <= now) => {
                    self.revoke_token_tree(&state, &entry).await?;
                }
                _ => state.tokens.forget_expiry(&hash, time).await?,
            }
        }
        Ok(count)
    }

    /// Adds a mount to its table, persisting the table first.
    pub(crate) async fn add_mount(&self, state: &State, entry: MountEntry) -> Result<(), Error> {
        let _guard = state.mount_lock.lock().await;
        let router = state.router();
        let route_path = entry.route_path();
        for existing in router.all() {
            let other = existing.entry.route_path();
            let overlaps = other.starts_with(&route_path) || route_path.starts_with(&other);
            if overlaps
                && (existing.entry.table == entry.table
                    || route_path.starts_with("auth/") == other.starts_with("auth/"))
            {
                return Err(Error::invalid(format!("path is already in use at {other}")));
            }
        }
        let mounted = self.mount(entry.clone())?;
        let mut all: Vec<Mounted> = router.all().to_vec();
        all.push(mounted);
        self.persist_mounts(&all, entry.table).await?;
        if let Ok(mut r) = state.router.write() {
            *r = Arc::new(Router::new(all));
        }
        Ok(())
    }

    /// Replaces the mount list wholesale (remove, tune, remount), persisting first.
    pub(crate) async fn replace_mounts(
        &self,
        state: &State,
        all: Vec<Mounted>,
        tables: &[Table],
    ) -> Result<(), Error> {
        for table in tables {
            self.persist_mounts(&all, *table).await?;
        }
        if let Ok(mut r) = state.router.write() {
            *r = Arc::new(Router::new(all));
        }
        Ok(())
    }

    async fn persist_mounts(&self, all: &[Mounted], table: Table) -> Result<(), Error> {
        let entries: Vec<&MountEntry> = all
            .iter()
            .map(|m| &m.entry)
            .filter(|e| e.table == table)
            .collect();
        let path = match table {
            Table::Secrets => crate::mounts::MOUNTS_PATH,
            Table::Auth => crate::mounts::AUTH_PATH,
        };
        StorageView::new(self.barrier.clone(), "")
            .put_json(path, &entries)
            .await
    }

    /// Capabilities of an ACL on a path, as `sys/capabilities*` reports them.
    pub(crate) fn capabilities(acl: &Acl, path: &str) -> Vec<String> {
        acl.capabilities(path)
    }

    pub(crate) fn now_unix(&self) -> i64 {
        self.clock.unix()
    }

    /// Data of a response turned into a storable JSON map (for wrapping).
    pub(crate) fn data_map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }
}

fn default_secret_mounts() -> Vec<MountEntry> {
    let mut cubbyhole = MountEntry::new(Table::Secrets, "cubbyhole/", "cubbyhole");
    cubbyhole.description = "per-token private secret storage".into();
    cubbyhole.local = true;
    let mut identity = MountEntry::new(Table::Secrets, "identity/", "identity");
    identity.description = "identity store".into();
    let mut sys = MountEntry::new(Table::Secrets, "sys/", "system");
    sys.description = "system endpoints used for control, policy and debugging".into();
    vec![cubbyhole, identity, sys]
}

fn default_auth_mounts() -> Vec<MountEntry> {
    let mut token = MountEntry::new(Table::Auth, "token/", "token");
    token.description = "token based credentials".into();
    vec![token]
}

/// The path the ACL sees: LIST requests always carry a trailing slash, so that a deny on
/// `p/*` also covers `LIST p` (GHSA-xp3c-3jw3-4vcr).
pub(crate) fn acl_path(path: &str, operation: Operation) -> String {
    if operation == Operation::List && !path.ends_with('/') {
        format!("{path}/")
    } else {
        path.to_string()
    }
}

pub(crate) fn acl_operation(operation: Operation) -> ward_policy::Operation {
    match operation {
        Operation::Create => ward_policy::Operation::Create,
        Operation::Read => ward_policy::Operation::Read,
        Operation::Update => ward_policy::Operation::Update,
        Operation::Patch => ward_policy::Operation::Patch,
        Operation::Delete => ward_policy::Operation::Delete,
        Operation::List => ward_policy::Operation::List,
    }
}

/// Responses of these paths are never wrapped again (they produce or consume wraps).
fn is_wrapping_exempt(path: &str) -> bool {
    matches!(
        path,
        "sys/wrapping/wrap" | "sys/wrapping/rewrap" | "sys/wrapping/lookup"
    )
}

pub(crate) fn non_empty(s: &str) -> Option<String> {
    if s.is_empty() {
        None
    } else {
        Some(s.to_string())
    }
}
