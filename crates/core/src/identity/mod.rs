//! The identity store: entities, their aliases (one per auth mount and name), and groups.
//!
//! A login names an alias (`AuthSpec.alias`); the store finds or creates the entity behind it,
//! so every token from that identity carries the same `entity_id`, which the audit log and
//! templated policies use. Groups are internal (members and policies set by an operator) or
//! external (membership filled from an identity provider's group claim at each login, through
//! group aliases). A token's identity policies are its entity's policies plus those of every
//! group the entity belongs to, directly or through parent groups; they are resolved per
//! request from a cache that any identity write clears.

pub(crate) mod endpoints;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use ward_policy::{AliasContext, GroupContext, IdentityContext};

use crate::error::Error;
use crate::view::{encode_json, StorageView, ViewOp};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub policies: Vec<String>,
    #[serde(default)]
    pub disabled: bool,
    pub creation_time: i64,
    pub last_update_time: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Alias {
    pub id: String,
    pub canonical_id: String,
    pub mount_accessor: String,
    pub name: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub custom_metadata: BTreeMap<String, String>,
    pub creation_time: i64,
    pub last_update_time: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub id: String,
    pub name: String,
    /// `internal` or `external`.
    pub kind: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub policies: Vec<String>,
    #[serde(default)]
    pub member_entity_ids: Vec<String>,
    #[serde(default)]
    pub member_group_ids: Vec<String>,
    pub creation_time: i64,
    pub last_update_time: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupAlias {
    pub id: String,
    pub canonical_id: String,
    pub mount_accessor: String,
    pub name: String,
    pub creation_time: i64,
}

/// What a request needs of an identity: the template context and the identity policies.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub context: IdentityContext,
    pub policies: Vec<String>,
    pub group_ids: Vec<String>,
}

pub struct IdentityStore {
    view: StorageView,
    cache: RwLock<HashMap<String, Arc<Resolved>>>,
    generation: AtomicU64,
    /// Serialises writes so lookups by name and alias stay unique.
    write_lock: tokio::sync::Mutex<()>,
    /// Set once the `group-aliases/<group>/<alias>` index is known to be complete (stores
    /// written before the index existed get it built on first use).
    group_alias_index: tokio::sync::OnceCell<()>,
}

impl IdentityStore {
    pub fn new(view: StorageView) -> Self {
        IdentityStore {
            view,
            cache: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            write_lock: tokio::sync::Mutex::new(()),
            group_alias_index: tokio::sync::OnceCell::new(),
        }
    }

    /// Changes whenever anything in the store changes: part of the compiled-ACL cache key.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut cache) = self.cache.write() {
            cache.clear();
        }
    }

    // ---- reads ----------------------------------------------------------------------------

    pub async fn entity(&self, id: &str) -> Result<Option<Entity>, Error> {
        self.view.get_json(&format!("entity/{id}")).await
    }

    pub async fn entity_by_name(&self, name: &str) -> Result<Option<Entity>, Error> {
        match self
            .view
            .get(&format!("entity-name/{}", name.to_lowercase()))
            .await?
        {
            Some(id) => self.entity(&String::from_utf8_lossy(&id)).await,
            None => Ok(None),
        }
    }

    pub async fn alias(&self, id: &str) -> Result<Option<Alias>, Error> {
        self.view.get_json(&format!("alias/{id}")).await
    }

    pub async fn alias_by_name(
        &self,
        mount_accessor: &str,
        name: &str,
    ) -> Result<Option<Alias>, Error> {
        match self.view.get(&alias_index(mount_accessor, name)).await? {
            Some(id) => self.alias(&String::from_utf8_lossy(&id)).await,
            None => Ok(None),
        }
    }

    pub async fn aliases_of(&self, entity_id: &str) -> Result<Vec<Alias>, Error> {
        let mut out = Vec::new();
        for id in self
            .view
            .list(&format!("entity-alias/{entity_id}/"))
            .await?
        {
            if let Some(alias) = self.alias(&id).await? {
                out.push(alias);
            }
        }
        Ok(out)
    }

    pub async fn group(&self, id: &str) -> Result<Option<Group>, Error> {
        self.view.get_json(&format!("group/{id}")).await
    }

    pub async fn group_by_name(&self, name: &str) -> Result<Option<Group>, Error> {
        match self
            .view
            .get(&format!("group-name/{}", name.to_lowercase()))
            .await?
        {
            Some(id) => self.group(&String::from_utf8_lossy(&id)).await,
            None => Ok(None),
        }
    }

    pub async fn group_alias(&self, id: &str) -> Result<Option<GroupAlias>, Error> {
        self.view.get_json(&format!("group-alias/{id}")).await
    }

    pub async fn group_alias_by_name(
        &self,
        mount_accessor: &str,
        name: &str,
    ) -> Result<Option<GroupAlias>, Error> {
        match self
            .view
            .get(&format!(
                "group-alias-name/{mount_accessor}/{}",
                name.to_lowercase()
            ))
            .await?
        {
            Some(id) => self.group_alias(&String::from_utf8_lossy(&id)).await,
            None => Ok(None),
        }
    }

    /// The aliases of a group, through the `group-aliases/<group>/` index (no scan).
    pub async fn group_aliases_of(&self, group_id: &str) -> Result<Vec<GroupAlias>, Error> {
        self.ensure_group_alias_index().await?;
        let mut out = Vec::new();
        for id in self
            .view
            .list(&format!("{GROUP_ALIASES}{group_id}/"))
            .await?
        {
            if let Some(alias) = self.group_alias(&id).await? {
                out.push(alias);
            }
        }
        Ok(out)
    }

    /// Builds the group-alias index once for a store written before it existed; a marker key
    /// records that it is complete, so later unseals skip the scan. Every writer of group
    /// aliases calls this before taking `write_lock` (the once-cell holds concurrent callers
    /// until the index is complete), so no alias is written beside an unfinished index.
    async fn ensure_group_alias_index(&self) -> Result<(), Error> {
        self.group_alias_index
            .get_or_try_init(|| async {
                if self.view.get(GROUP_ALIAS_INDEX_MARKER).await?.is_some() {
                    return Ok(());
                }
                let mut ops = Vec::new();
                for id in self.ids("group-alias").await? {
                    if let Some(alias) = self.group_alias(&id).await? {
                        ops.push(ViewOp::Put {
                            key: group_alias_of(&alias),
                            value: Vec::new(),
                        });
                    }
                }
                ops.push(ViewOp::Put {
                    key: GROUP_ALIAS_INDEX_MARKER.to_string(),
                    value: Vec::new(),
                });
                self.view.transaction(ops).await
            })
            .await
            .map(|_| ())
    }

    pub async fn ids(&self, kind: &str) -> Result<Vec<String>, Error> {
        Ok(self
            .view
            .list(&format!("{kind}/"))
            .await?
            .into_iter()
            .filter(|k| !k.ends_with('/'))
            .collect())
    }

    /// The groups an entity belongs to directly (internal or external).
    pub async fn direct_groups(&self, entity_id: &str) -> Result<Vec<String>, Error> {
        self.view.list(&format!("member/{entity_id}/")).await
    }

    /// The parents of a group (groups listing it in `member_group_ids`).
    async fn parent_groups(&self, group_id: &str) -> Result<Vec<String>, Error> {
        self.view.list(&format!("subgroup/{group_id}/")).await
    }

    /// The template context and identity policies of an entity, cached until the next change.
    pub async fn resolve(&self, entity_id: &str) -> Result<Arc<Resolved>, Error> {
        if let Some(hit) = self
            .cache
            .read()
            .ok()
            .and_then(|c| c.get(entity_id).cloned())
        {
            return Ok(hit);
        }
        let generation = self.generation();
        let Some(entity) = self.entity(entity_id).await? else {
            return Ok(Arc::new(Resolved::default()));
        };
        let mut policies: BTreeSet<String> = entity.policies.iter().cloned().collect();
        let mut context = IdentityContext {
            entity_id: Some(entity.id.clone()),
            entity_name: Some(entity.name.clone()),
            entity_metadata: entity.metadata.clone(),
            ..IdentityContext::default()
        };
        for alias in self.aliases_of(&entity.id).await? {
            context.aliases.insert(
                alias.mount_accessor.clone(),
                AliasContext {
                    id: alias.id.clone(),
                    name: alias.name.clone(),
                    metadata: alias.metadata.clone(),
                    custom_metadata: alias.custom_metadata.clone(),
                },
            );
        }
        // Walk up from the direct groups; `seen` guards against cycles.
        let mut stack = self.direct_groups(&entity.id).await?;
        let mut seen = BTreeSet::new();
        while let Some(group_id) = stack.pop() {
            if !seen.insert(group_id.clone()) {
                continue;
            }
            if let Some(group) = self.group(&group_id).await? {
                policies.extend(group.policies.iter().cloned());
                context.groups.push(GroupContext {
                    id: group.id.clone(),
                    name: group.name.clone(),
                    metadata: group.metadata.clone(),
                });
            }
            stack.extend(self.parent_groups(&group_id).await?);
        }
        let resolved = Arc::new(Resolved {
            policies: if entity.disabled {
                Vec::new()
            } else {
                policies.into_iter().collect()
            },
            group_ids: seen.into_iter().collect(),
            context,
        });
        if let Ok(mut cache) = self.cache.write() {
            if self.generation() == generation {
                if cache.len() > 100_000 {
                    cache.clear();
                }
                cache.insert(entity_id.to_string(), resolved.clone());
            }
        }
        Ok(resolved)
    }

    // ---- writes ---------------------------------------------------------------------------

    /// Creates or updates an entity; names are unique (case-insensitively).
    pub async fn put_entity(&self, mut entity: Entity, now: i64) -> Result<Entity, Error> {
        let _guard = self.write_lock.lock().await;
        validate_name(&entity.name)?;
        if let Some(other) = self.entity_by_name(&entity.name).await? {
            if other.id != entity.id {
                return Err(Error::invalid("entity name is already in use"));
            }
        }
        let previous = self.entity(&entity.id).await?;
        let mut ops = Vec::new();
        if let Some(previous) = &previous {
            entity.creation_time = previous.creation_time;
            if previous.name.to_lowercase() != entity.name.to_lowercase() {
                ops.push(ViewOp::Delete {
                    key: format!("entity-name/{}", previous.name.to_lowercase()),
                });
            }
        } else {
            entity.creation_time = now;
        }
        entity.last_update_time = now;
        ops.push(ViewOp::Put {
            key: format!("entity/{}", entity.id),
            value: encode_json(&entity)?,
        });
        ops.push(ViewOp::Put {
            key: format!("entity-name/{}", entity.name.to_lowercase()),
            value: entity.id.clone().into_bytes(),
        });
        self.view.transaction(ops).await?;
        self.changed();
        Ok(entity)
    }

    pub async fn delete_entity(&self, id: &str) -> Result<(), Error> {
        let _guard = self.write_lock.lock().await;
        let Some(entity) = self.entity(id).await? else {
            return Ok(());
        };
        let mut ops = vec![
            ViewOp::Delete {
                key: format!("entity/{id}"),
            },
            ViewOp::Delete {
                key: format!("entity-name/{}", entity.name.to_lowercase()),
            },
        ];
        for alias in self.aliases_of(id).await? {
            ops.extend(alias_delete_ops(&alias));
        }
        for group_id in self.direct_groups(id).await? {
            ops.push(ViewOp::Delete {
                key: format!("member/{id}/{group_id}"),
            });
            if let Some(mut group) = self.group(&group_id).await? {
                group.member_entity_ids.retain(|e| e != id);
                ops.push(ViewOp::Put {
                    key: format!("group/{group_id}"),
                    value: encode_json(&group)?,
                });
            }
        }
        self.view.transaction(ops).await?;
        self.changed();
        Ok(())
    }

    /// Creates or updates an alias. One alias per (mount accessor, name), and one alias per
    /// mount per entity, as Vault requires.
    pub async fn put_alias(&self, mut alias: Alias, now: i64) -> Result<Alias, Error> {
        let _guard = self.write_lock.lock().await;
        if alias.name.is_empty() || alias.mount_accessor.is_empty() {
            return Err(Error::invalid("alias name and mount accessor are required"));
        }
        if self.entity(&alias.canonical_id).await?.is_none() {
            return Err(Error::invalid("entity id is invalid"));
        }
        if let Some(other) = self
            .alias_by_name(&alias.mount_accessor, &alias.name)
            .await?
        {
            if other.id != alias.id {
                return Err(Error::invalid(
                    "alias already exists for requested mount accessor and name",
                ));
            }
        }
        for other in self.aliases_of(&alias.canonical_id).await? {
            if other.id != alias.id && other.mount_accessor == alias.mount_accessor {
                return Err(Error::invalid("entity already has an alias on this mount"));
            }
        }
        let mut ops = Vec::new();
        if let Some(previous) = self.alias(&alias.id).await? {
            alias.creation_time = previous.creation_time;
            ops.extend(alias_delete_ops(&previous));
        } else {
            alias.creation_time = now;
        }
        alias.last_update_time = now;
        ops.push(ViewOp::Put {
            key: format!("alias/{}", alias.id),
            value: encode_json(&alias)?,
        });
        ops.push(ViewOp::Put {
            key: alias_index(&alias.mount_accessor, &alias.name),
            value: alias.id.clone().into_bytes(),
        });
        ops.push(ViewOp::Put {
            key: format!("entity-alias/{}/{}", alias.canonical_id, alias.id),
            value: Vec::new(),
        });
        self.view.transaction(ops).await?;
        self.changed();
        Ok(alias)
    }

    pub async fn delete_alias(&self, id: &str) -> Result<(), Error> {
        let _guard = self.write_lock.lock().await;
        if let Some(alias) = self.alias(id).await? {
            self.view.transaction(alias_delete_ops(&alias)).await?;
            self.changed();
        }
        Ok(())
    }

    /// Creates or updates a group, keeping the membership indexes in step.
    pub async fn put_group(&self, mut group: Group, now: i64) -> Result<Group, Error> {
        let _guard = self.write_lock.lock().await;
        validate_name(&group.name)?;
        if group.kind != "internal" && group.kind != "external" {
            return Err(Error::invalid(
                "group type must be \"internal\" or \"external\"",
            ));
        }
        if group.kind == "external"
            && (!group.member_entity_ids.is_empty() || !group.member_group_ids.is_empty())
        {
            return Err(Error::invalid(
                "member entities and groups can't be set on external groups",
            ));
        }
        if let Some(other) = self.group_by_name(&group.name).await? {
            if other.id != group.id {
                return Err(Error::invalid("group name is already in use"));
            }
        }
        for entity_id in &group.member_entity_ids {
            if self.entity(entity_id).await?.is_none() {
                return Err(Error::invalid(format!(
                    "entity \"{entity_id}\" does not exist"
                )));
            }
        }
        for member in &group.member_group_ids {
            if member == &group.id || self.group(member).await?.is_none() {
                return Err(Error::invalid(format!(
                    "invalid member group id \"{member}\""
                )));
            }
        }
        group.member_entity_ids.sort();
        group.member_entity_ids.dedup();
        group.member_group_ids.sort();
        group.member_group_ids.dedup();
        let previous = self.group(&group.id).await?;
        let mut ops = Vec::new();
        if let Some(previous) = &previous {
            group.creation_time = previous.creation_time;
            if previous.kind != group.kind {
                return Err(Error::invalid("group type cannot be changed"));
            }
            ops.push(ViewOp::Delete {
                key: format!("group-name/{}", previous.name.to_lowercase()),
            });
            for e in &previous.member_entity_ids {
                ops.push(ViewOp::Delete {
                    key: format!("member/{e}/{}", group.id),
                });
            }
            for g in &previous.member_group_ids {
                ops.push(ViewOp::Delete {
                    key: format!("subgroup/{g}/{}", group.id),
                });
            }
        } else {
            group.creation_time = now;
        }
        group.last_update_time = now;
        ops.push(ViewOp::Put {
            key: format!("group/{}", group.id),
            value: encode_json(&group)?,
        });
        ops.push(ViewOp::Put {
            key: format!("group-name/{}", group.name.to_lowercase()),
            value: group.id.clone().into_bytes(),
        });
        for e in &group.member_entity_ids {
            ops.push(ViewOp::Put {
                key: format!("member/{e}/{}", group.id),
                value: Vec::new(),
            });
        }
        for g in &group.member_group_ids {
            ops.push(ViewOp::Put {
                key: format!("subgroup/{g}/{}", group.id),
                value: Vec::new(),
            });
        }
        self.view.transaction(ops).await?;
        self.changed();
        Ok(group)
    }

    pub async fn delete_group(&self, id: &str) -> Result<(), Error> {
        self.ensure_group_alias_index().await?;
        let Some(mut group) = self.group(id).await? else {
            return Ok(());
        };
        // Clearing members first reuses put_group's index bookkeeping.
        group.member_entity_ids.clear();
        group.member_group_ids.clear();
        let group = self.put_group(group, 0).await?;
        let _guard = self.write_lock.lock().await;
        let mut ops = vec![
            ViewOp::Delete {
                key: format!("group/{id}"),
            },
            ViewOp::Delete {
                key: format!("group-name/{}", group.name.to_lowercase()),
            },
        ];
        for parent in self.parent_groups(id).await? {
            ops.push(ViewOp::Delete {
                key: format!("subgroup/{id}/{parent}"),
            });
            if let Some(mut p) = self.group(&parent).await? {
                p.member_group_ids.retain(|g| g != id);
                ops.push(ViewOp::Put {
                    key: format!("group/{parent}"),
                    value: encode_json(&p)?,
                });
            }
        }
        for alias in self.group_aliases_of(id).await? {
            ops.extend(group_alias_delete_ops(&alias));
        }
        self.view.transaction(ops).await?;
        self.changed();
        Ok(())
    }

    pub async fn put_group_alias(
        &self,
        mut alias: GroupAlias,
        now: i64,
    ) -> Result<GroupAlias, Error> {
        self.ensure_group_alias_index().await?;
        let _guard = self.write_lock.lock().await;
        if alias.name.is_empty() || alias.mount_accessor.is_empty() {
            return Err(Error::invalid(
                "group alias name and mount accessor are required",
            ));
        }
        match self.group(&alias.canonical_id).await? {
            Some(group) if group.kind == "external" => {}
            Some(_) => {
                return Err(Error::invalid(
                    "group aliases can only be set on external groups",
                ))
            }
            None => return Err(Error::invalid("invalid canonical_id")),
        }
        if let Some(other) = self
            .group_alias_by_name(&alias.mount_accessor, &alias.name)
            .await?
        {
            if other.id != alias.id {
                return Err(Error::invalid(
                    "group alias already exists for requested mount accessor and name",
                ));
            }
        }
        let mut ops = Vec::new();
        if let Some(previous) = self.group_alias(&alias.id).await? {
            alias.creation_time = previous.creation_time;
            ops.extend(group_alias_delete_ops(&previous));
        } else {
            alias.creation_time = now;
        }
        ops.push(ViewOp::Put {
            key: format!("group-alias/{}", alias.id),
            value: encode_json(&alias)?,
        });
        ops.push(ViewOp::Put {
            key: format!(
                "group-alias-name/{}/{}",
                alias.mount_accessor,
                alias.name.to_lowercase()
            ),
            value: alias.id.clone().into_bytes(),
        });
        ops.push(ViewOp::Put {
            key: group_alias_of(&alias),
            value: Vec::new(),
        });
        self.view.transaction(ops).await?;
        self.changed();
        Ok(alias)
    }

    pub async fn delete_group_alias(&self, id: &str) -> Result<(), Error> {
        self.ensure_group_alias_index().await?;
        let _guard = self.write_lock.lock().await;
        if let Some(alias) = self.group_alias(id).await? {
            self.view
                .transaction(group_alias_delete_ops(&alias))
                .await?;
            self.changed();
        }
        Ok(())
    }

    /// The login path: the entity behind an alias, created on first login, with its alias
    /// metadata refreshed and its external group memberships for this mount set from the
    /// identity provider's groups.
    pub async fn entity_for_login(
        &self,
        mount_accessor: &str,
        mount_path: &str,
        alias_name: &str,
        alias_metadata: &BTreeMap<String, String>,
        external_groups: &[String],
        now: i64,
    ) -> Result<Entity, Error> {
        let entity = match self.alias_by_name(mount_accessor, alias_name).await? {
            Some(mut alias) => {
                let entity = self
                    .entity(&alias.canonical_id)
                    .await?
                    .ok_or_else(|| Error::internal("alias points at a missing entity"))?;
                if &alias.metadata != alias_metadata {
                    alias.metadata = alias_metadata.clone();
                    self.put_alias(alias, now).await?;
                }
                entity
            }
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                let entity = Entity {
                    name: format!("entity_{}", &id[..8]),
                    id,
                    ..Entity::default()
                };
                let entity = self.put_entity(entity, now).await?;
                let alias = Alias {
                    id: uuid::Uuid::new_v4().to_string(),
                    canonical_id: entity.id.clone(),
                    mount_accessor: mount_accessor.to_string(),
                    name: alias_name.to_string(),
                    metadata: alias_metadata.clone(),
                    ..Alias::default()
                };
                self.put_alias(alias, now).await?;
                tracing::info!(entity_id = %entity.id, mount = %mount_path, "created entity for a new login alias");
                entity
            }
        };
        if entity.disabled {
            return Err(Error::PermissionDenied("entity is disabled".into()));
        }
        self.sync_external_groups(&entity.id, mount_accessor, external_groups, now)
            .await?;
        Ok(entity)
    }

    async fn sync_external_groups(
        &self,
        entity_id: &str,
        mount_accessor: &str,
        names: &[String],
        now: i64,
    ) -> Result<(), Error> {
        let mut wanted = BTreeSet::new();
        for name in names {
            if let Some(alias) = self.group_alias_by_name(mount_accessor, name).await? {
                wanted.insert(alias.canonical_id);
            }
        }
        // Current external memberships that came through this mount's group aliases.
        let mut current = BTreeSet::new();
        for group_id in self.direct_groups(entity_id).await? {
            if let Some(group) = self.group(&group_id).await? {
                if group.kind == "external" {
                    current.insert(group_id);
                }
            }
        }
        for group_id in wanted.difference(&current) {
            if let Some(mut group) = self.group(group_id).await? {
                self.set_external_member(&mut group, entity_id, true, now)
                    .await?;
            }
        }
        for group_id in current.difference(&wanted) {
            if let Some(mut group) = self.group(group_id).await? {
                // Only memberships granted through this mount's aliases are this login's to remove.
                if self.group_has_alias_on(&group.id, mount_accessor).await? {
                    self.set_external_member(&mut group, entity_id, false, now)
                        .await?;
                }
            }
        }
        Ok(())
    }

    async fn group_has_alias_on(
        &self,
        group_id: &str,
        mount_accessor: &str,
    ) -> Result<bool, Error> {
        Ok(self
            .group_aliases_of(group_id)
            .await?
            .iter()
            .any(|alias| alias.mount_accessor == mount_accessor))
    }

    async fn set_external_member(
        &self,
        group: &mut Group,
        entity_id: &str,
        member: bool,
        now: i64,
    ) -> Result<(), Error> {
        let _guard = self.write_lock.lock().await;
        if member {
            group.member_entity_ids.push(entity_id.to_string());
            group.member_entity_ids.sort();
            group.member_entity_ids.dedup();
        } else {
            group.member_entity_ids.retain(|e| e != entity_id);
        }
        group.last_update_time = now;
        let key = format!("member/{entity_id}/{}", group.id);
        let index = if member {
            ViewOp::Put {
                key,
                value: Vec::new(),
            }
        } else {
            ViewOp::Delete { key }
        };
        self.view
            .transaction(vec![
                ViewOp::Put {
                    key: format!("group/{}", group.id),
                    value: encode_json(&*group)?,
                },
                index,
            ])
            .await?;
        self.changed();
        Ok(())
    }
}

/// Index of a group's aliases: `group-aliases/<group id>/<alias id>`.
const GROUP_ALIASES: &str = "group-aliases/";
const GROUP_ALIAS_INDEX_MARKER: &str = "index/group-aliases-v1";

fn group_alias_of(alias: &GroupAlias) -> String {
    format!("{GROUP_ALIASES}{}/{}", alias.canonical_id, alias.id)
}

/// Removes a group alias with both of its index entries.
fn group_alias_delete_ops(alias: &GroupAlias) -> Vec<ViewOp> {
    vec![
        ViewOp::Delete {
            key: format!("group-alias/{}", alias.id),
        },
        ViewOp::Delete {
            key: format!(
                "group-alias-name/{}/{}",
                alias.mount_accessor,
                alias.name.to_lowercase()
            ),
        },
        ViewOp::Delete {
            key: group_alias_of(alias),
        },
    ]
}

fn alias_index(mount_accessor: &str, name: &str) -> String {
    format!("alias-name/{mount_accessor}/{name}")
}

fn alias_delete_ops(alias: &Alias) -> Vec<ViewOp> {
    vec![
        ViewOp::Delete {
            key: format!("alias/{}", alias.id),
        },
        ViewOp::Delete {
            key: alias_index(&alias.mount_accessor, &alias.name),
        },
        ViewOp::Delete {
            key: format!("entity-alias/{}/{}", alias.canonical_id, alias.id),
        },
    ]
}

fn validate_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > 256 || name.chars().any(|c| c.is_control() || c == '/') {
        return Err(Error::invalid("invalid name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store written before the group-alias index existed gets the index built on first use.
    #[tokio::test]
    async fn group_alias_index_is_built_for_an_older_store() {
        let view = StorageView::for_tests().await.expect("view");
        let group = Group {
            id: "g1".into(),
            name: "ops".into(),
            kind: "external".into(),
            ..Group::default()
        };
        let alias = GroupAlias {
            id: "a1".into(),
            name: "idp-ops".into(),
            mount_accessor: "auth_jwt_1".into(),
            canonical_id: "g1".into(),
            ..GroupAlias::default()
        };
        // The records as an older version wrote them: no index entry, no marker.
        view.put_json("group/g1", &group).await.expect("group");
        view.put("group-name/ops", b"g1").await.expect("name");
        view.put_json("group-alias/a1", &alias)
            .await
            .expect("alias");
        view.put("group-alias-name/auth_jwt_1/idp-ops", b"a1")
            .await
            .expect("alias name");

        let store = IdentityStore::new(view.clone());
        let found = store.group_aliases_of("g1").await.expect("aliases");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, "a1");
        assert!(view
            .get(GROUP_ALIAS_INDEX_MARKER)
            .await
            .expect("marker")
            .is_some());
        assert!(store
            .group_has_alias_on("g1", "auth_jwt_1")
            .await
            .expect("has alias"));
        store.delete_group("g1").await.expect("delete");
        assert!(view.list(GROUP_ALIASES).await.expect("index").is_empty());
        assert!(store.group_alias("a1").await.expect("alias").is_none());
    }
}
