//! Multi-party approval: control groups (Vault Enterprise's `sys/control-group/*`) and Ward's
//! just-in-time access requests (`sys/access/*`).
//!
//! Both keep their records through the barrier under `sys/approvals/` and both decide who may
//! approve the same way: an approver is an identity entity that belongs (directly or through a
//! parent group) to one of the named groups, is not the requester, and counts once. The
//! request path of the core only asks [`control_group::applies`] whether a control group on
//! the ACL decision should hold a request back; everything after that (the pending record,
//! approvals, the deferred execution on unwrap) lives here. Outbound calls to a gatekeeper go
//! through the [`Gatekeeper`] trait, which the server implements with an HTTP client: the core
//! opens no sockets.

pub(crate) mod access;
pub(crate) mod control_group;
mod gatekeeper;
mod time_window;

use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

pub use gatekeeper::{Gatekeeper, GatekeeperReply};

use crate::core::{Caller, Core, State};
use crate::error::Error;
use crate::view::StorageView;

/// Where approval records live, below the barrier.
const STORAGE_PREFIX: &str = "sys/approvals/";

/// The approvals state of a core: the gatekeeper client and the lock that serialises every
/// read-modify-write of an approval record (two approvers at once must both count).
#[derive(Default)]
pub(crate) struct Approvals {
    gatekeeper: RwLock<Option<Arc<dyn Gatekeeper>>>,
    records: tokio::sync::Mutex<()>,
}

impl Approvals {
    fn gatekeeper(&self) -> Option<Arc<dyn Gatekeeper>> {
        self.gatekeeper.read().ok().and_then(|g| g.clone())
    }
}

impl Core {
    /// Installs the client that calls access-request gatekeeper webhooks (the server's HTTP
    /// client). Without one, a role with a webhook gatekeeper denies every request.
    pub fn set_gatekeeper(&self, gatekeeper: Arc<dyn Gatekeeper>) {
        if let Ok(mut slot) = self.approvals.gatekeeper.write() {
            *slot = Some(gatekeeper);
        }
    }

    fn approvals_view(&self) -> StorageView {
        StorageView::new(self.barrier.clone(), STORAGE_PREFIX)
    }
}

/// The identity that made a request, as recorded with it. The token appears only as its
/// salted hash (to find the token again, never to use it as a credential).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Requester {
    pub(crate) token_hash: String,
    pub(crate) accessor: String,
    pub(crate) entity_id: String,
    pub(crate) entity_name: String,
    pub(crate) display_name: String,
}

/// One approval: who, when, and which factors (or roles) it counted for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Authorization {
    pub(crate) entity_id: String,
    pub(crate) entity_name: String,
    pub(crate) time: i64,
    #[serde(default)]
    pub(crate) factors: Vec<String>,
}

/// One line of a record's history, for the audit trail and the UI's detail page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct HistoryEvent {
    pub(crate) time: i64,
    pub(crate) event: String,
    #[serde(default)]
    pub(crate) actor_entity_id: String,
    #[serde(default)]
    pub(crate) actor_name: String,
    #[serde(default)]
    pub(crate) note: String,
}

/// The groups an entity belongs to, by id and by name (parents included).
pub(crate) struct Membership {
    pub(crate) entity_id: String,
    pub(crate) entity_name: String,
    group_ids: Vec<String>,
    group_names: Vec<String>,
}

impl Membership {
    /// True when the entity belongs to one of the named groups or group ids.
    pub(crate) fn in_any(&self, group_names: &[String], group_ids: &[String]) -> bool {
        group_names
            .iter()
            .any(|name| self.group_names.iter().any(|g| g == name))
            || group_ids
                .iter()
                .any(|id| self.group_ids.iter().any(|g| g == id))
    }
}

impl Core {
    /// Who made a request, for its record.
    pub(crate) async fn requester(
        &self,
        state: &State,
        caller: &Caller,
    ) -> Result<Requester, Error> {
        let entity_name = self.entity_name(state, &caller.entry.entity_id).await?;
        Ok(Requester {
            token_hash: caller.entry.hash.clone(),
            accessor: caller.entry.accessor.clone(),
            entity_id: caller.entry.entity_id.clone(),
            entity_name,
            display_name: caller.entry.display_name.clone(),
        })
    }

    /// The caller's entity and groups; an approver must have an entity.
    pub(crate) async fn membership(
        &self,
        state: &State,
        caller: &Caller,
    ) -> Result<Membership, Error> {
        let entity_id = caller.entry.entity_id.clone();
        if entity_id.is_empty() {
            return Err(Error::PermissionDenied(
                "permission denied: approvals need a token with an identity entity".into(),
            ));
        }
        let resolved = state.identity.resolve(&entity_id).await?;
        Ok(Membership {
            entity_name: resolved.context.entity_name.clone().unwrap_or_default(),
            group_ids: resolved.group_ids.clone(),
            group_names: resolved
                .context
                .groups
                .iter()
                .map(|g| g.name.clone())
                .collect(),
            entity_id,
        })
    }

    async fn entity_name(&self, state: &State, entity_id: &str) -> Result<String, Error> {
        if entity_id.is_empty() {
            return Ok(String::new());
        }
        Ok(state
            .identity
            .entity(entity_id)
            .await?
            .map(|e| e.name)
            .unwrap_or_default())
    }
}

/// True when the caller is the requester: the same token, or the same entity.
pub(crate) fn is_requester(requester: &Requester, caller: &Caller) -> bool {
    let same_token = !requester.token_hash.is_empty() && requester.token_hash == caller.entry.hash;
    let same_entity =
        !requester.entity_id.is_empty() && requester.entity_id == caller.entry.entity_id;
    same_token || same_entity
}
