//! The `identity/` endpoints: entities, entity aliases, groups, group aliases and lookups,
//! with Vault's paths and response shapes.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::clock::rfc3339_unix;
use crate::core::{Core, State};
use crate::engine::{fields, Operation};
use crate::error::Error;
use crate::identity::{Alias, Entity, Group, GroupAlias, IdentityStore};
use crate::policy_store::normalize;
use crate::request::{Request, Response};

impl Core {
    pub(crate) async fn handle_identity(
        &self,
        state: &Arc<State>,
        path: &str,
        operation: Operation,
        request: &Request,
    ) -> Result<Response, Error> {
        let store = &state.identity;
        let now = self.now_unix();
        let data = &request.data;
        let trimmed = path.trim_end_matches('/');
        let segments: Vec<&str> = trimmed.split('/').collect();
        let write = operation.is_write();
        let mut response = match (segments.as_slice(), operation) {
            (["entity"], _) if write => {
                let id = fields::string(data, "id")?.unwrap_or_default();
                let existing = if id.is_empty() {
                    None
                } else {
                    store.entity(&id).await?
                };
                let entity = apply_entity(existing.unwrap_or_else(|| new_entity(&id)), data)?;
                let entity = store.put_entity(entity, now).await?;
                Response::with_data(Core::data_map(
                    json!({ "id": entity.id, "name": entity.name, "aliases": Value::Null }),
                ))
            }
            (["entity", "id"], Operation::List) => list_entities(store, false).await?,
            (["entity", "name"], Operation::List) => list_entities(store, true).await?,
            (["entity", by @ ("id" | "name"), key], op) => {
                let found = if *by == "id" {
                    store.entity(key).await?
                } else {
                    store.entity_by_name(key).await?
                };
                match op {
                    Operation::Read => Response::with_data(
                        entity_json(store, &found.ok_or_else(Error::not_found)?).await?,
                    ),
                    Operation::Delete => {
                        if let Some(entity) = found {
                            store.delete_entity(&entity.id).await?;
                        }
                        Response::default()
                    }
                    op if op.is_write() => {
                        let base = match (found, *by) {
                            (Some(entity), _) => entity,
                            (None, "name") => Entity {
                                name: key.to_string(),
                                ..new_entity("")
                            },
                            (None, _) => return Err(Error::invalid("entity not found")),
                        };
                        let entity = store.put_entity(apply_entity(base, data)?, now).await?;
                        Response::with_data(Core::data_map(
                            json!({ "id": entity.id, "name": entity.name }),
                        ))
                    }
                    _ => return Err(Error::UnsupportedOperation(format!("identity/{path}"))),
                }
            }
            (["entity-alias"], _) if write => {
                let id = fields::string(data, "id")?.unwrap_or_default();
                let existing = if id.is_empty() {
                    None
                } else {
                    store.alias(&id).await?
                };
                let alias = apply_alias(
                    existing.unwrap_or_else(|| Alias {
                        id: uuid::Uuid::new_v4().to_string(),
                        ..Alias::default()
                    }),
                    data,
                )?;
                self.check_accessor(state, &alias.mount_accessor)?;
                let alias = store.put_alias(alias, now).await?;
                Response::with_data(Core::data_map(
                    json!({ "id": alias.id, "canonical_id": alias.canonical_id }),
                ))
            }
            (["entity-alias", "id"], Operation::List) => list_ids(store, "alias").await?,
            (["entity-alias", "id", id], op) => match op {
                Operation::Read => Response::with_data(alias_json(
                    &store.alias(id).await?.ok_or_else(Error::not_found)?,
                )),
                Operation::Delete => {
                    store.delete_alias(id).await?;
                    Response::default()
                }
                op if op.is_write() => {
                    let alias = store
                        .alias(id)
                        .await?
                        .ok_or_else(|| Error::invalid("alias not found"))?;
                    let alias = store.put_alias(apply_alias(alias, data)?, now).await?;
                    Response::with_data(Core::data_map(
                        json!({ "id": alias.id, "canonical_id": alias.canonical_id }),
                    ))
                }
                _ => return Err(Error::UnsupportedOperation(format!("identity/{path}"))),
            },
            (["group"], _) if write => {
                let id = fields::string(data, "id")?.unwrap_or_default();
                let existing = if id.is_empty() {
                    None
                } else {
                    store.group(&id).await?
                };
                let group = apply_group(existing.unwrap_or_else(|| new_group(&id)), data)?;
                let group = store.put_group(group, now).await?;
                Response::with_data(Core::data_map(
                    json!({ "id": group.id, "name": group.name }),
                ))
            }
            (["group", "id"], Operation::List) => list_groups(store, false).await?,
            (["group", "name"], Operation::List) => list_groups(store, true).await?,
            (["group", by @ ("id" | "name"), key], op) => {
                let found = if *by == "id" {
                    store.group(key).await?
                } else {
                    store.group_by_name(key).await?
                };
                match op {
                    Operation::Read => Response::with_data(
                        group_json(store, &found.ok_or_else(Error::not_found)?).await?,
                    ),
                    Operation::Delete => {
                        if let Some(group) = found {
                            store.delete_group(&group.id).await?;
                        }
                        Response::default()
                    }
                    op if op.is_write() => {
                        let base = match (found, *by) {
                            (Some(group), _) => group,
                            (None, "name") => Group {
                                name: key.to_string(),
                                ..new_group("")
                            },
                            (None, _) => return Err(Error::invalid("group not found")),
                        };
                        let group = store.put_group(apply_group(base, data)?, now).await?;
                        Response::with_data(Core::data_map(
                            json!({ "id": group.id, "name": group.name }),
                        ))
                    }
                    _ => return Err(Error::UnsupportedOperation(format!("identity/{path}"))),
                }
            }
            (["group-alias"], _) if write => {
                let id = fields::string(data, "id")?.unwrap_or_default();
                let existing = if id.is_empty() {
                    None
                } else {
                    store.group_alias(&id).await?
                };
                let alias = apply_group_alias(
                    existing.unwrap_or_else(|| GroupAlias {
                        id: uuid::Uuid::new_v4().to_string(),
                        ..GroupAlias::default()
                    }),
                    data,
                )?;
                self.check_accessor(state, &alias.mount_accessor)?;
                let alias = store.put_group_alias(alias, now).await?;
                Response::with_data(Core::data_map(
                    json!({ "id": alias.id, "canonical_id": alias.canonical_id }),
                ))
            }
            (["group-alias", "id"], Operation::List) => list_ids(store, "group-alias").await?,
            (["group-alias", "id", id], op) => match op {
                Operation::Read => {
                    let alias = store.group_alias(id).await?.ok_or_else(Error::not_found)?;
                    Response::with_data(group_alias_json(&alias))
                }
                Operation::Delete => {
                    store.delete_group_alias(id).await?;
                    Response::default()
                }
                op if op.is_write() => {
                    let alias = store
                        .group_alias(id)
                        .await?
                        .ok_or_else(|| Error::invalid("group alias not found"))?;
                    let alias = store
                        .put_group_alias(apply_group_alias(alias, data)?, now)
                        .await?;
                    Response::with_data(Core::data_map(
                        json!({ "id": alias.id, "canonical_id": alias.canonical_id }),
                    ))
                }
                _ => return Err(Error::UnsupportedOperation(format!("identity/{path}"))),
            },
            (["lookup", "entity"], _) if write => match lookup_entity(store, data).await? {
                Some(entity) => Response::with_data(entity_json(store, &entity).await?),
                None => Response::default(),
            },
            (["lookup", "group"], _) if write => match lookup_group(store, data).await? {
                Some(group) => Response::with_data(group_json(store, &group).await?),
                None => Response::default(),
            },
            _ => return Err(Error::UnsupportedPath(format!("identity/{path}"))),
        };
        response.mount_type = "identity".into();
        Ok(response)
    }

    fn check_accessor(&self, state: &State, accessor: &str) -> Result<(), Error> {
        match state.router().find_by_accessor(accessor) {
            Some(m) if m.entry.table == crate::mounts::Table::Auth => Ok(()),
            _ => Err(Error::invalid(format!(
                "invalid mount accessor \"{accessor}\""
            ))),
        }
    }
}

fn new_entity(id: &str) -> Entity {
    let id = if id.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        id.to_string()
    };
    Entity {
        name: format!("entity_{}", &id[..id.len().min(8)]),
        id,
        ..Entity::default()
    }
}

fn new_group(id: &str) -> Group {
    let id = if id.is_empty() {
        uuid::Uuid::new_v4().to_string()
    } else {
        id.to_string()
    };
    Group {
        name: format!("group_{}", &id[..id.len().min(8)]),
        id,
        kind: "internal".into(),
        ..Group::default()
    }
}

/// Policy names for identity objects: normalised, and never `root` (CVE-2025-5999).
fn identity_policies(data: &Map<String, Value>) -> Result<Option<Vec<String>>, Error> {
    let Some(list) = fields::strings(data, "policies")? else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for name in list {
        let name = normalize(&name)?;
        if name == "root" {
            return Err(Error::invalid(
                "the \"root\" policy cannot be attached to an identity",
            ));
        }
        out.push(name);
    }
    out.sort();
    out.dedup();
    Ok(Some(out))
}

fn apply_entity(mut entity: Entity, data: &Map<String, Value>) -> Result<Entity, Error> {
    if let Some(name) = fields::string(data, "name")?.filter(|n| !n.is_empty()) {
        entity.name = name;
    }
    if let Some(metadata) = fields::string_map(data, "metadata")? {
        entity.metadata = metadata;
    }
    if let Some(policies) = identity_policies(data)? {
        entity.policies = policies;
    }
    if let Some(disabled) = fields::boolean(data, "disabled")? {
        entity.disabled = disabled;
    }
    Ok(entity)
}

fn apply_alias(mut alias: Alias, data: &Map<String, Value>) -> Result<Alias, Error> {
    if let Some(v) = fields::string(data, "name")? {
        alias.name = v;
    }
    if let Some(v) = fields::string(data, "canonical_id")? {
        alias.canonical_id = v;
    }
    if let Some(v) = fields::string(data, "mount_accessor")? {
        alias.mount_accessor = v;
    }
    if let Some(v) = fields::string_map(data, "custom_metadata")? {
        alias.custom_metadata = v;
    }
    Ok(alias)
}

fn apply_group(mut group: Group, data: &Map<String, Value>) -> Result<Group, Error> {
    if let Some(name) = fields::string(data, "name")?.filter(|n| !n.is_empty()) {
        group.name = name;
    }
    if let Some(kind) = fields::string(data, "type")?.filter(|k| !k.is_empty()) {
        group.kind = kind;
    }
    if let Some(metadata) = fields::string_map(data, "metadata")? {
        group.metadata = metadata;
    }
    if let Some(policies) = identity_policies(data)? {
        group.policies = policies;
    }
    if let Some(members) = fields::strings(data, "member_entity_ids")? {
        group.member_entity_ids = members;
    }
    if let Some(members) = fields::strings(data, "member_group_ids")? {
        group.member_group_ids = members;
    }
    Ok(group)
}

fn apply_group_alias(
    mut alias: GroupAlias,
    data: &Map<String, Value>,
) -> Result<GroupAlias, Error> {
    if let Some(v) = fields::string(data, "name")? {
        alias.name = v;
    }
    if let Some(v) = fields::string(data, "canonical_id")? {
        alias.canonical_id = v;
    }
    if let Some(v) = fields::string(data, "mount_accessor")? {
        alias.mount_accessor = v;
    }
    Ok(alias)
}

fn alias_json(alias: &Alias) -> Map<String, Value> {
    Core::data_map(json!({
        "id": alias.id,
        "canonical_id": alias.canonical_id,
        "mount_accessor": alias.mount_accessor,
        "name": alias.name,
        "metadata": alias.metadata,
        "custom_metadata": alias.custom_metadata,
        "creation_time": rfc3339_unix(alias.creation_time),
        "last_update_time": rfc3339_unix(alias.last_update_time),
        "namespace_id": "root",
    }))
}

fn group_alias_json(alias: &GroupAlias) -> Map<String, Value> {
    Core::data_map(json!({
        "id": alias.id,
        "canonical_id": alias.canonical_id,
        "mount_accessor": alias.mount_accessor,
        "name": alias.name,
        "creation_time": rfc3339_unix(alias.creation_time),
        "namespace_id": "root",
    }))
}

async fn entity_json(store: &IdentityStore, entity: &Entity) -> Result<Map<String, Value>, Error> {
    let aliases: Vec<Value> = store
        .aliases_of(&entity.id)
        .await?
        .iter()
        .map(|a| Value::Object(alias_json(a)))
        .collect();
    let direct = store.direct_groups(&entity.id).await?;
    let resolved = store.resolve(&entity.id).await?;
    let inherited: Vec<&String> = resolved
        .group_ids
        .iter()
        .filter(|g| !direct.contains(g))
        .collect();
    Ok(Core::data_map(json!({
        "id": entity.id,
        "name": entity.name,
        "metadata": entity.metadata,
        "policies": entity.policies,
        "disabled": entity.disabled,
        "aliases": aliases,
        "direct_group_ids": direct,
        "group_ids": resolved.group_ids,
        "inherited_group_ids": inherited,
        "creation_time": rfc3339_unix(entity.creation_time),
        "last_update_time": rfc3339_unix(entity.last_update_time),
        "merged_entity_ids": Value::Null,
        "namespace_id": "root",
    })))
}

async fn group_json(store: &IdentityStore, group: &Group) -> Result<Map<String, Value>, Error> {
    let mut alias = Value::Object(Map::new());
    for id in store.ids("group-alias").await? {
        if let Some(a) = store.group_alias(&id).await? {
            if a.canonical_id == group.id {
                alias = Value::Object(group_alias_json(&a));
            }
        }
    }
    Ok(Core::data_map(json!({
        "id": group.id,
        "name": group.name,
        "type": group.kind,
        "metadata": group.metadata,
        "policies": group.policies,
        "member_entity_ids": group.member_entity_ids,
        "member_group_ids": group.member_group_ids,
        "alias": alias,
        "creation_time": rfc3339_unix(group.creation_time),
        "last_update_time": rfc3339_unix(group.last_update_time),
        "namespace_id": "root",
    })))
}

async fn list_entities(store: &IdentityStore, by_name: bool) -> Result<Response, Error> {
    let mut keys = Vec::new();
    let mut key_info = BTreeMap::new();
    for id in store.ids("entity").await? {
        if let Some(entity) = store.entity(&id).await? {
            let key = if by_name {
                entity.name.clone()
            } else {
                entity.id.clone()
            };
            key_info.insert(key.clone(), json!({ "id": entity.id, "name": entity.name }));
            keys.push(key);
        }
    }
    keys.sort();
    if keys.is_empty() {
        return Err(Error::not_found());
    }
    Ok(Response::with_data(Core::data_map(
        json!({ "keys": keys, "key_info": key_info }),
    )))
}

async fn list_groups(store: &IdentityStore, by_name: bool) -> Result<Response, Error> {
    let mut keys = Vec::new();
    let mut key_info = BTreeMap::new();
    for id in store.ids("group").await? {
        if let Some(group) = store.group(&id).await? {
            let key = if by_name {
                group.name.clone()
            } else {
                group.id.clone()
            };
            key_info.insert(
                key.clone(),
                json!({ "id": group.id, "name": group.name, "type": group.kind }),
            );
            keys.push(key);
        }
    }
    keys.sort();
    if keys.is_empty() {
        return Err(Error::not_found());
    }
    Ok(Response::with_data(Core::data_map(
        json!({ "keys": keys, "key_info": key_info }),
    )))
}

async fn list_ids(store: &IdentityStore, kind: &str) -> Result<Response, Error> {
    let keys = store.ids(kind).await?;
    if keys.is_empty() {
        return Err(Error::not_found());
    }
    Ok(Response::with_data(Core::data_map(json!({ "keys": keys }))))
}

async fn lookup_entity(
    store: &IdentityStore,
    data: &Map<String, Value>,
) -> Result<Option<Entity>, Error> {
    if let Some(id) = fields::string(data, "id")?.filter(|s| !s.is_empty()) {
        return store.entity(&id).await;
    }
    if let Some(name) = fields::string(data, "name")?.filter(|s| !s.is_empty()) {
        return store.entity_by_name(&name).await;
    }
    if let Some(alias_id) = fields::string(data, "alias_id")?.filter(|s| !s.is_empty()) {
        return match store.alias(&alias_id).await? {
            Some(alias) => store.entity(&alias.canonical_id).await,
            None => Ok(None),
        };
    }
    let name = fields::string(data, "alias_name")?.unwrap_or_default();
    let accessor = fields::string(data, "alias_mount_accessor")?.unwrap_or_default();
    if name.is_empty() || accessor.is_empty() {
        return Err(Error::invalid(
            "one of id, name, alias_id, or alias_name with alias_mount_accessor is required",
        ));
    }
    match store.alias_by_name(&accessor, &name).await? {
        Some(alias) => store.entity(&alias.canonical_id).await,
        None => Ok(None),
    }
}

async fn lookup_group(
    store: &IdentityStore,
    data: &Map<String, Value>,
) -> Result<Option<Group>, Error> {
    if let Some(id) = fields::string(data, "id")?.filter(|s| !s.is_empty()) {
        return store.group(&id).await;
    }
    if let Some(name) = fields::string(data, "name")?.filter(|s| !s.is_empty()) {
        return store.group_by_name(&name).await;
    }
    if let Some(alias_id) = fields::string(data, "alias_id")?.filter(|s| !s.is_empty()) {
        return match store.group_alias(&alias_id).await? {
            Some(alias) => store.group(&alias.canonical_id).await,
            None => Ok(None),
        };
    }
    let name = fields::string(data, "alias_name")?.unwrap_or_default();
    let accessor = fields::string(data, "alias_mount_accessor")?.unwrap_or_default();
    if name.is_empty() || accessor.is_empty() {
        return Err(Error::invalid(
            "one of id, name, alias_id, or alias_name with alias_mount_accessor is required",
        ));
    }
    match store.group_alias_by_name(&accessor, &name).await? {
        Some(alias) => store.group(&alias.canonical_id).await,
        None => Ok(None),
    }
}
