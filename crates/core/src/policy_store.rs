//! The policy store: ACL policies kept under `sys/policy/`, parsed once and cached, and the
//! ACLs compiled from sets of them, cached by the set.
//!
//! `root` is virtual (it allows everything and can be neither written nor deleted);
//! `default` is created at initialisation and can be edited but not deleted;
//! `response-wrapping` is internal and given only to wrapping tokens.
//! Changing any policy drops the compiled ACLs, since a token's policies are names and their
//! contents are re-read on every request.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use ward_policy::{Acl, IdentityContext, Policy};

use crate::error::Error;
use crate::view::StorageView;

pub const DEFAULT_POLICY: &str = r#"# Allow tokens to look up their own properties
path "auth/token/lookup-self" {
    capabilities = ["read"]
}

# Allow tokens to renew themselves
path "auth/token/renew-self" {
    capabilities = ["update"]
}

# Allow tokens to revoke themselves
path "auth/token/revoke-self" {
    capabilities = ["update"]
}

# Allow a token to look up its own capabilities on a path
path "sys/capabilities-self" {
    capabilities = ["update"]
}

# Allow a token to look up its own entity by id or name
path "identity/entity/id/{{identity.entity.id}}" {
  capabilities = ["read"]
}
path "identity/entity/name/{{identity.entity.name}}" {
  capabilities = ["read"]
}

# Allow a token to look up its resultant ACL from all policies
path "sys/internal/ui/resultant-acl" {
    capabilities = ["read"]
}

# Allow a token to renew a lease via lease_id in the request body; old path for
# old clients, new path for newer
path "sys/renew" {
    capabilities = ["update"]
}
path "sys/leases/renew" {
    capabilities = ["update"]
}

# Allow looking up lease properties. This requires knowing the lease ID ahead
# of time and does not divulge any sensitive information.
path "sys/leases/lookup" {
    capabilities = ["update"]
}

# Allow a token to manage its own cubbyhole
path "cubbyhole/*" {
    capabilities = ["create", "read", "update", "delete", "list"]
}

# Allow a token to wrap arbitrary values in a response-wrapping token
path "sys/wrapping/wrap" {
    capabilities = ["update"]
}

# Allow a token to look up the creation time and TTL of a given
# response-wrapping token
path "sys/wrapping/lookup" {
    capabilities = ["update"]
}

# Allow a token to unwrap a response-wrapping token. This is a convenience to
# avoid client token swapping since this is also part of the response wrapping
# policy.
path "sys/wrapping/unwrap" {
    capabilities = ["update"]
}

# Allow general purpose tools
path "sys/tools/hash" {
    capabilities = ["update"]
}
path "sys/tools/hash/*" {
    capabilities = ["update"]
}

# Allow checking the status of a control group request if the user has the
# accessor
path "sys/control-group/request" {
    capabilities = ["update"]
}
"#;

const RESPONSE_WRAPPING_POLICY: &str = r#"path "cubbyhole/response" {
    capabilities = ["create", "read"]
}
path "sys/wrapping/unwrap" {
    capabilities = ["update"]
}
"#;

#[derive(Serialize, Deserialize)]
struct StoredPolicy {
    name: String,
    policy: String,
}

pub struct PolicyStore {
    view: StorageView,
    parsed: RwLock<HashMap<String, Arc<Policy>>>,
    acls: RwLock<HashMap<String, Arc<Acl>>>,
    wrapping: Arc<Policy>,
}

impl PolicyStore {
    pub async fn open(view: StorageView) -> Result<Self, Error> {
        let wrapping = ward_policy::parse("response-wrapping", RESPONSE_WRAPPING_POLICY)
            .map_err(|e| Error::internal(format!("built-in policy: {e}")))?;
        let store = PolicyStore {
            view,
            parsed: RwLock::new(HashMap::new()),
            acls: RwLock::new(HashMap::new()),
            wrapping: Arc::new(wrapping),
        };
        if store.view.get("default").await?.is_none() {
            store.put("default", DEFAULT_POLICY).await?;
        }
        Ok(store)
    }

    /// Policy names, sorted; `root` included as Vault lists it.
    pub async fn names(&self) -> Result<Vec<String>, Error> {
        let mut names: Vec<String> = self
            .view
            .list("")
            .await?
            .into_iter()
            .filter(|n| !n.ends_with('/'))
            .collect();
        names.push("root".into());
        names.sort();
        Ok(names)
    }

    /// The raw text of a policy, or None.
    pub async fn raw(&self, name: &str) -> Result<Option<String>, Error> {
        if name == "root" {
            return Ok(Some(String::new()));
        }
        Ok(self
            .view
            .get_json::<StoredPolicy>(name)
            .await?
            .map(|p| p.policy))
    }

    /// Validates and stores a policy. Names are normalised (lowercased) as Vault does.
    pub async fn put(&self, name: &str, text: &str) -> Result<String, Error> {
        let name = normalize(name)?;
        if name == "root" {
            return Err(Error::invalid("cannot update \"root\" policy"));
        }
        if name == "response-wrapping" {
            return Err(Error::invalid("cannot update \"response-wrapping\" policy"));
        }
        let policy = ward_policy::parse(&name, text)
            .map_err(|e| Error::invalid(format!("failed to parse policy: {e}")))?;
        self.view
            .put_json(
                &name,
                &StoredPolicy {
                    name: name.clone(),
                    policy: text.to_string(),
                },
            )
            .await?;
        self.invalidate(&name, Some(Arc::new(policy)));
        Ok(name)
    }

    pub async fn delete(&self, name: &str) -> Result<(), Error> {
        let name = normalize(name)?;
        match name.as_str() {
            "root" => return Err(Error::invalid("cannot delete \"root\" policy")),
            "default" => return Err(Error::invalid("cannot delete \"default\" policy")),
            _ => {}
        }
        self.view.delete(&name).await?;
        self.invalidate(&name, None);
        Ok(())
    }

    pub async fn exists(&self, name: &str) -> Result<bool, Error> {
        Ok(name == "root" || self.policy(name).await?.is_some())
    }

    /// The ACL of a set of policy names (missing policies contribute nothing).
    pub async fn acl(
        &self,
        names: &[String],
        identity: &IdentityContext,
        identity_key: &str,
    ) -> Result<Arc<Acl>, Error> {
        if names.iter().any(|n| n == "root") {
            return Ok(Arc::new(Acl::root()));
        }
        let key = format!("{}\u{0}{identity_key}", names.join(","));
        if let Some(acl) = self.acls.read().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(acl);
        }
        let mut policies = Vec::with_capacity(names.len());
        for name in names {
            if name == "response-wrapping" {
                policies.push(self.wrapping.clone());
            } else if let Some(policy) = self.policy(name).await? {
                policies.push(policy);
            }
        }
        let refs: Vec<&Policy> = policies.iter().map(|p| p.as_ref()).collect();
        let acl = Arc::new(Acl::new(&refs, identity));
        if let Ok(mut acls) = self.acls.write() {
            if acls.len() > 10_000 {
                acls.clear();
            }
            acls.insert(key, acl.clone());
        }
        Ok(acl)
    }

    async fn policy(&self, name: &str) -> Result<Option<Arc<Policy>>, Error> {
        if let Some(p) = self.parsed.read().ok().and_then(|m| m.get(name).cloned()) {
            return Ok(Some(p));
        }
        let Some(stored) = self.view.get_json::<StoredPolicy>(name).await? else {
            return Ok(None);
        };
        let policy = ward_policy::parse(name, &stored.policy)
            .map_err(|e| Error::internal(format!("stored policy {name} no longer parses: {e}")))?;
        let policy = Arc::new(policy);
        if let Ok(mut parsed) = self.parsed.write() {
            parsed.insert(name.to_string(), policy.clone());
        }
        Ok(Some(policy))
    }

    fn invalidate(&self, name: &str, policy: Option<Arc<Policy>>) {
        if let Ok(mut parsed) = self.parsed.write() {
            match policy {
                Some(p) => parsed.insert(name.to_string(), p),
                None => parsed.remove(name),
            };
        }
        if let Ok(mut acls) = self.acls.write() {
            acls.clear();
        }
    }
}

/// Lowercases and validates a policy name; see `ward_policy::normalize_name`.
pub fn normalize(name: &str) -> Result<String, Error> {
    ward_policy::normalize_name(name).map_err(|e| Error::invalid(e.to_string()))
}
