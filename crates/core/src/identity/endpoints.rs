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
            (["entity"], _) if write => create::<Entity>(store, data, now).await?,
            (["entity", "id"], Operation::List) => list::<Entity>(store, false).await?,
            (["entity", "name"], Operation::List) => list::<Entity>(store, true).await?,
            (["entity", by @ ("id" | "name"), key], op) => {
                by_key::<Entity>(store, *by == "name", key, op, data, now, path).await?
            }
            (["group"], _) if write => create::<Group>(store, data, now).await?,
            (["group", "id"], Operation::List) => list::<Group>(store, false).await?,
            (["group", "name"], Operation::List) => list::<Group>(store, true).await?,
            (["group", by @ ("id" | "name"), key], op) => {
                by_key::<Group>(store, *by == "name", key, op, data, now, path).await?
            }
            (["entity-alias"], _) if write => {
                self.create_alias::<Alias>(state, store, data, now).await?
            }
            (["entity-alias", "id"], Operation::List) => list_ids(store, "alias").await?,
            (["entity-alias", "id", id], op) => {
                alias_by_id::<Alias>(store, id, op, data, now, path).await?
            }
            (["group-alias"], _) if write => {
                self.create_alias::<GroupAlias>(state, store, data, now)
                    .await?
            }
            (["group-alias", "id"], Operation::List) => list_ids(store, "group-alias").await?,
            (["group-alias", "id", id], op) => {
                alias_by_id::<GroupAlias>(store, id, op, data, now, path).await?
            }
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

    /// `entity-alias` / `group-alias` written without a path id: create, or update the alias
    /// named by `id`, on an auth mount that exists.
    async fn create_alias<A: AliasRecord>(
        &self,
        state: &State,
        store: &IdentityStore,
        data: &Map<String, Value>,
        now: i64,
    ) -> Result<Response, Error> {
        let id = fields::string(data, "id")?.unwrap_or_default();
        let existing = if id.is_empty() {
            None
        } else {
            A::by_id(store, &id).await?
        };
        let alias = existing.unwrap_or_else(A::fresh).apply(data)?;
        self.check_accessor(state, alias.mount_accessor())?;
        Ok(alias.put(store, now).await?.written())
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

/// What the entity and group endpoints share: create (or update by `id`), read, update and
/// delete by id or by name, and lists keyed by id or name with `key_info`.
#[async_trait::async_trait]
trait Record: Sized + Send + Sync {
    /// The store's kind (`entity`, `group`): the prefix of its records.
    const KIND: &'static str;
    fn fresh(id: &str) -> Self;
    fn named(name: &str) -> Self;
    fn apply(self, data: &Map<String, Value>) -> Result<Self, Error>;
    fn key_info(&self) -> Value;
    fn key(&self, by_name: bool) -> String;
    /// The body of a write's response.
    fn written(&self, created: bool) -> Response;
    async fn by_id(store: &IdentityStore, id: &str) -> Result<Option<Self>, Error>;
    async fn by_name(store: &IdentityStore, name: &str) -> Result<Option<Self>, Error>;
    async fn put(self, store: &IdentityStore, now: i64) -> Result<Self, Error>;
    async fn delete(&self, store: &IdentityStore) -> Result<(), Error>;
    async fn json(&self, store: &IdentityStore) -> Result<Map<String, Value>, Error>;
}

#[async_trait::async_trait]
impl Record for Entity {
    const KIND: &'static str = "entity";
    fn fresh(id: &str) -> Self {
        new_entity(id)
    }
    fn named(name: &str) -> Self {
        Entity {
            name: name.to_string(),
            ..new_entity("")
        }
    }
    fn apply(self, data: &Map<String, Value>) -> Result<Self, Error> {
        apply_entity(self, data)
    }
    fn key_info(&self) -> Value {
        json!({ "id": self.id, "name": self.name })
    }
    fn key(&self, by_name: bool) -> String {
        if by_name { &self.name } else { &self.id }.clone()
    }
    fn written(&self, created: bool) -> Response {
        let mut body = json!({ "id": self.id, "name": self.name });
        if created {
            body["aliases"] = Value::Null;
        }
        Response::with_data(Core::data_map(body))
    }
    async fn by_id(store: &IdentityStore, id: &str) -> Result<Option<Self>, Error> {
        store.entity(id).await
    }
    async fn by_name(store: &IdentityStore, name: &str) -> Result<Option<Self>, Error> {
        store.entity_by_name(name).await
    }
    async fn put(self, store: &IdentityStore, now: i64) -> Result<Self, Error> {
        store.put_entity(self, now).await
    }
    async fn delete(&self, store: &IdentityStore) -> Result<(), Error> {
        store.delete_entity(&self.id).await
    }
    async fn json(&self, store: &IdentityStore) -> Result<Map<String, Value>, Error> {
        entity_json(store, self).await
    }
}

#[async_trait::async_trait]
impl Record for Group {
    const KIND: &'static str = "group";
    fn fresh(id: &str) -> Self {
        new_group(id)
    }
    fn named(name: &str) -> Self {
        Group {
            name: name.to_string(),
            ..new_group("")
        }
    }
    fn apply(self, data: &Map<String, Value>) -> Result<Self, Error> {
        apply_group(self, data)
    }
    fn key_info(&self) -> Value {
        json!({ "id": self.id, "name": self.name, "type": self.kind })
    }
    fn key(&self, by_name: bool) -> String {
        if by_name { &self.name } else { &self.id }.clone()
    }
    fn written(&self, _created: bool) -> Response {
        Response::with_data(Core::data_map(json!({ "id": self.id, "name": self.name })))
    }
    async fn by_id(store: &IdentityStore, id: &str) -> Result<Option<Self>, Error> {
        store.group(id).await
    }
    async fn by_name(store: &IdentityStore, name: &str) -> Result<Option<Self>, Error> {
        store.group_by_name(name).await
    }
    async fn put(self, store: &IdentityStore, now: i64) -> Result<Self, Error> {
        store.put_group(self, now).await
    }
    async fn delete(&self, store: &IdentityStore) -> Result<(), Error> {
        store.delete_group(&self.id).await
    }
    async fn json(&self, store: &IdentityStore) -> Result<Map<String, Value>, Error> {
        group_json(store, self).await
    }
}

/// `identity/entity` or `identity/group` written without a path key: create, or update the
/// record named by `id`.
async fn create<R: Record>(
    store: &IdentityStore,
    data: &Map<String, Value>,
    now: i64,
) -> Result<Response, Error> {
    let id = fields::string(data, "id")?.unwrap_or_default();
    let existing = if id.is_empty() {
        None
    } else {
        R::by_id(store, &id).await?
    };
    let record = existing.unwrap_or_else(|| R::fresh(&id)).apply(data)?;
    Ok(record.put(store, now).await?.written(true))
}

/// `identity/<kind>/id/<id>` and `identity/<kind>/name/<name>`: read, delete, or write (a
/// write by name creates the record when it does not exist).
async fn by_key<R: Record>(
    store: &IdentityStore,
    by_name: bool,
    key: &str,
    operation: Operation,
    data: &Map<String, Value>,
    now: i64,
    path: &str,
) -> Result<Response, Error> {
    let found = if by_name {
        R::by_name(store, key).await?
    } else {
        R::by_id(store, key).await?
    };
    match operation {
        Operation::Read => Ok(Response::with_data(
            found.ok_or_else(Error::not_found)?.json(store).await?,
        )),
        Operation::Delete => {
            if let Some(record) = found {
                record.delete(store).await?;
            }
            Ok(Response::default())
        }
        op if op.is_write() => {
            let base = match found {
                Some(record) => record,
                None if by_name => R::named(key),
                None => return Err(Error::invalid(format!("{} not found", R::KIND))),
            };
            Ok(base.apply(data)?.put(store, now).await?.written(false))
        }
        _ => Err(Error::UnsupportedOperation(format!("identity/{path}"))),
    }
}

async fn list<R: Record>(store: &IdentityStore, by_name: bool) -> Result<Response, Error> {
    let mut keys = Vec::new();
    let mut key_info = BTreeMap::new();
    for id in store.ids(R::KIND).await? {
        if let Some(record) = R::by_id(store, &id).await? {
            let key = record.key(by_name);
            key_info.insert(key.clone(), record.key_info());
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

/// What entity aliases and group aliases share.
#[async_trait::async_trait]
trait AliasRecord: Sized + Send + Sync {
    /// For messages: `alias`, `group alias`.
    const NOUN: &'static str;
    fn fresh() -> Self;
    fn apply(self, data: &Map<String, Value>) -> Result<Self, Error>;
    fn mount_accessor(&self) -> &str;
    fn json(&self) -> Map<String, Value>;
    fn ids(&self) -> (&str, &str);
    fn written(&self) -> Response {
        let (id, canonical_id) = self.ids();
        Response::with_data(Core::data_map(
            json!({ "id": id, "canonical_id": canonical_id }),
        ))
    }
    async fn by_id(store: &IdentityStore, id: &str) -> Result<Option<Self>, Error>;
    async fn put(self, store: &IdentityStore, now: i64) -> Result<Self, Error>;
    async fn delete(store: &IdentityStore, id: &str) -> Result<(), Error>;
}

#[async_trait::async_trait]
impl AliasRecord for Alias {
    const NOUN: &'static str = "alias";
    fn fresh() -> Self {
        Alias {
            id: uuid::Uuid::new_v4().to_string(),
            ..Alias::default()
        }
    }
    fn apply(self, data: &Map<String, Value>) -> Result<Self, Error> {
        apply_alias(self, data)
    }
    fn mount_accessor(&self) -> &str {
        &self.mount_accessor
    }
    fn json(&self) -> Map<String, Value> {
        alias_json(self)
    }
    fn ids(&self) -> (&str, &str) {
        (&self.id, &self.canonical_id)
    }
    async fn by_id(store: &IdentityStore, id: &str) -> Result<Option<Self>, Error> {
        store.alias(id).await
    }
    async fn put(self, store: &IdentityStore, now: i64) -> Result<Self, Error> {
        store.put_alias(self, now).await
    }
    async fn delete(store: &IdentityStore, id: &str) -> Result<(), Error> {
        store.delete_alias(id).await
    }
}

#[async_trait::async_trait]
impl AliasRecord for GroupAlias {
    const NOUN: &'static str = "group alias";
    fn fresh() -> Self {
        GroupAlias {
            id: uuid::Uuid::new_v4().to_string(),
            ..GroupAlias::default()
        }
    }
    fn apply(self, data: &Map<String, Value>) -> Result<Self, Error> {
        apply_group_alias(self, data)
    }
    fn mount_accessor(&self) -> &str {
        &self.mount_accessor
    }
    fn json(&self) -> Map<String, Value> {
        group_alias_json(self)
    }
    fn ids(&self) -> (&str, &str) {
        (&self.id, &self.canonical_id)
    }
    async fn by_id(store: &IdentityStore, id: &str) -> Result<Option<Self>, Error> {
        store.group_alias(id).await
    }
    async fn put(self, store: &IdentityStore, now: i64) -> Result<Self, Error> {
        store.put_group_alias(self, now).await
    }
    async fn delete(store: &IdentityStore, id: &str) -> Result<(), Error> {
        store.delete_group_alias(id).await
    }
}

/// `identity/entity-alias/id/<id>` and `identity/group-alias/id/<id>`.
async fn alias_by_id<A: AliasRecord>(
    store: &IdentityStore,
    id: &str,
    operation: Operation,
    data: &Map<String, Value>,
    now: i64,
    path: &str,
) -> Result<Response, Error> {
    match operation {
        Operation::Read => Ok(Response::with_data(
            A::by_id(store, id)
                .await?
                .ok_or_else(Error::not_found)?
                .json(),
        )),
        Operation::Delete => {
            A::delete(store, id).await?;
            Ok(Response::default())
        }
        op if op.is_write() => {
            let alias = A::by_id(store, id)
                .await?
                .ok_or_else(|| Error::invalid(format!("{} not found", A::NOUN)))?;
            Ok(alias.apply(data)?.put(store, now).await?.written())
        }
        _ => Err(Error::UnsupportedOperation(format!("identity/{path}"))),
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
    let alias = match store.group_aliases_of(&group.id).await?.first() {
        Some(a) => Value::Object(group_alias_json(a)),
        None => Value::Object(Map::new()),
    };
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
