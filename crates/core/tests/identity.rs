//! The identity store through `handle_request`: entities behind login aliases, groups
//! granting policies, external groups from an identity provider, and templated policies.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use ward_core::engine::{
    AliasSpec, AuthSpec, Engine, EngineContext, EngineRequest, EngineResponse, MountInfo,
};
use ward_core::request::{Request, Response, Verb};
use ward_core::{Core, CoreConfig, Error};
use ward_storage::InMemory;

/// A test auth method: `login` with `{"user": ..., "groups": [...]}` succeeds for anyone.
struct TestAuth;

#[async_trait]
impl Engine for TestAuth {
    fn is_unauthenticated(&self, path: &str) -> bool {
        path == "login"
    }

    async fn handle(
        &self,
        _ctx: &EngineContext,
        request: EngineRequest,
    ) -> Result<EngineResponse, Error> {
        let user = request
            .data
            .get("user")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let groups = request
            .data
            .get("groups")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|g| g.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let mut metadata = BTreeMap::new();
        metadata.insert("user".to_string(), user.clone());
        Ok(EngineResponse {
            auth: Some(AuthSpec {
                display_name: user.clone(),
                policies: vec!["agent".into()],
                metadata: metadata.clone(),
                ttl: 600,
                renewable: true,
                alias: Some(AliasSpec {
                    name: user,
                    metadata,
                }),
                group_aliases: groups,
                ..AuthSpec::default()
            }),
            ..EngineResponse::default()
        })
    }
}

fn test_auth(_: &MountInfo) -> Result<Arc<dyn Engine>, Error> {
    Ok(Arc::new(TestAuth))
}

async fn setup() -> (Arc<Core>, String, String) {
    let mut registry = ward_engines::registry();
    registry.register("testauth", test_auth);
    ward_testlog::init("core-identity");
    let core = Core::new(CoreConfig::default(), Arc::new(InMemory::new()), registry);
    let root = core
        .dev_init(None)
        .await
        .expect("dev")
        .root_token
        .to_string();
    call(
        &core,
        Verb::Write,
        "sys/auth/test",
        &root,
        json!({"type": "testauth"}),
    )
    .await
    .expect("enable auth");
    let auths = call(&core, Verb::Read, "sys/auth", &root, json!({}))
        .await
        .expect("auths");
    let accessor = data(&auths)["test/"]["accessor"]
        .as_str()
        .expect("accessor")
        .to_string();
    (core, root, accessor)
}

async fn call(
    core: &Core,
    verb: Verb,
    path: &str,
    token: &str,
    body: Value,
) -> Result<Response, Error> {
    core.handle_request(Request::new(verb, path).with_token(token).with_data(body))
        .await
}

fn data(response: &Response) -> &serde_json::Map<String, Value> {
    response.data.as_ref().expect("data")
}

async fn login(core: &Core, user: &str, groups: &[&str]) -> ward_core::request::AuthResponse {
    core.handle_request(
        Request::new(Verb::Write, "auth/test/login")
            .with_data(json!({"user": user, "groups": groups})),
    )
    .await
    .expect("login")
    .auth
    .expect("auth")
}

#[tokio::test]
async fn logins_map_to_one_entity_per_alias() {
    let (core, root, accessor) = setup().await;
    let first = login(&core, "agent-1", &[]).await;
    let second = login(&core, "agent-1", &[]).await;
    let other = login(&core, "agent-2", &[]).await;
    assert!(!first.entity_id.is_empty());
    assert_eq!(
        first.entity_id, second.entity_id,
        "the same alias is the same entity"
    );
    assert_ne!(first.entity_id, other.entity_id);

    let lookup = call(
        &core,
        Verb::Write,
        "identity/lookup/entity",
        &root,
        json!({"alias_name": "agent-1", "alias_mount_accessor": accessor}),
    )
    .await
    .expect("lookup");
    assert_eq!(data(&lookup)["id"], json!(first.entity_id));
    assert_eq!(
        data(&lookup)["aliases"][0]["metadata"]["user"],
        json!("agent-1")
    );
    let me = call(
        &core,
        Verb::Read,
        "auth/token/lookup-self",
        &first.client_token,
        json!({}),
    )
    .await
    .expect("self");
    assert_eq!(data(&me)["entity_id"], json!(first.entity_id));
}

#[tokio::test]
async fn group_policies_apply_and_root_is_never_attachable() {
    let (core, root, _) = setup().await;
    let agent = login(&core, "agent-1", &[]).await;
    call(
        &core,
        Verb::Write,
        "sys/policies/acl/mounts-reader",
        &root,
        json!({"policy": "path \"sys/mounts\" { capabilities = [\"read\"] }"}),
    )
    .await
    .expect("policy");
    assert!(call(
        &core,
        Verb::Read,
        "sys/mounts",
        &agent.client_token,
        json!({})
    )
    .await
    .is_err());
    let group = call(&core, Verb::Write, "identity/group", &root, json!({"name": "ops", "policies": ["mounts-reader"], "member_entity_ids": [agent.entity_id]}))
        .await
        .expect("group");
    let group_id = data(&group)["id"].as_str().expect("id").to_string();
    call(
        &core,
        Verb::Read,
        "sys/mounts",
        &agent.client_token,
        json!({}),
    )
    .await
    .expect("granted through the group");
    let me = call(
        &core,
        Verb::Read,
        "auth/token/lookup-self",
        &agent.client_token,
        json!({}),
    )
    .await
    .expect("self");
    assert_eq!(data(&me)["identity_policies"], json!(["mounts-reader"]));

    // A parent group's policies are inherited through member_group_ids.
    call(
        &core,
        Verb::Write,
        "sys/policies/acl/leader",
        &root,
        json!({"policy": "path \"sys/auth\" { capabilities = [\"read\"] }"}),
    )
    .await
    .expect("policy");
    call(
        &core,
        Verb::Write,
        "identity/group",
        &root,
        json!({"name": "leads", "policies": ["leader"], "member_group_ids": [group_id]}),
    )
    .await
    .expect("parent group");
    call(
        &core,
        Verb::Read,
        "sys/auth",
        &agent.client_token,
        json!({}),
    )
    .await
    .expect("inherited");

    for name in ["root", "Root", " ROOT"] {
        let r = call(
            &core,
            Verb::Write,
            "identity/group",
            &root,
            json!({"name": "evil", "policies": [name]}),
        )
        .await;
        assert!(r.is_err(), "{name:?} must never be attached to a group");
        let r = call(
            &core,
            Verb::Write,
            "identity/entity",
            &root,
            json!({"name": "evil", "policies": [name]}),
        )
        .await;
        assert!(r.is_err(), "{name:?} must never be attached to an entity");
    }

    // Removing the member takes the grant away at once.
    call(
        &core,
        Verb::Write,
        &format!("identity/group/id/{group_id}"),
        &root,
        json!({"member_entity_ids": []}),
    )
    .await
    .expect("update");
    assert!(call(
        &core,
        Verb::Read,
        "sys/mounts",
        &agent.client_token,
        json!({})
    )
    .await
    .is_err());
}

#[tokio::test]
async fn external_groups_follow_the_identity_provider() {
    let (core, root, accessor) = setup().await;
    call(
        &core,
        Verb::Write,
        "sys/policies/acl/sre",
        &root,
        json!({"policy": "path \"sys/mounts\" { capabilities = [\"read\"] }"}),
    )
    .await
    .expect("policy");
    let group = call(
        &core,
        Verb::Write,
        "identity/group",
        &root,
        json!({"name": "sre", "type": "external", "policies": ["sre"]}),
    )
    .await
    .expect("group");
    let group_id = data(&group)["id"].as_str().expect("id").to_string();
    call(
        &core,
        Verb::Write,
        "identity/group-alias",
        &root,
        json!({"name": "idp-sre", "mount_accessor": accessor, "canonical_id": group_id}),
    )
    .await
    .expect("alias");
    let member = login(&core, "alice", &["idp-sre", "unrelated"]).await;
    assert_eq!(member.identity_policies, vec!["sre".to_string()]);
    call(
        &core,
        Verb::Read,
        "sys/mounts",
        &member.client_token,
        json!({}),
    )
    .await
    .expect("granted by the IdP group");
    // The next login without the group claim removes the membership.
    let later = login(&core, "alice", &[]).await;
    assert!(later.identity_policies.is_empty());
    assert!(call(
        &core,
        Verb::Read,
        "sys/mounts",
        &member.client_token,
        json!({})
    )
    .await
    .is_err());
}

#[tokio::test]
async fn templated_policies_confine_each_agent_to_its_own_path() {
    let (core, root, _) = setup().await;
    let policy = r#"path "secret/data/agents/{{identity.entity.id}}/*" { capabilities = ["create", "update", "read"] }"#;
    call(
        &core,
        Verb::Write,
        "sys/policies/acl/agent",
        &root,
        json!({"policy": policy}),
    )
    .await
    .expect("policy");
    let one = login(&core, "agent-1", &[]).await;
    let two = login(&core, "agent-2", &[]).await;
    let own = format!("secret/data/agents/{}/key", one.entity_id);
    let theirs = format!("secret/data/agents/{}/key", two.entity_id);
    call(
        &core,
        Verb::Write,
        &own,
        &one.client_token,
        json!({"data": {"k": "v"}}),
    )
    .await
    .expect("own path");
    let denied = call(
        &core,
        Verb::Write,
        &theirs,
        &one.client_token,
        json!({"data": {"k": "v"}}),
    )
    .await;
    assert!(matches!(denied, Err(Error::PermissionDenied(_))));
    let read = call(&core, Verb::Read, &own, &one.client_token, json!({}))
        .await
        .expect("read own");
    assert_eq!(data(&read)["data"]["k"], json!("v"));
}

#[tokio::test]
async fn disabled_entities_cannot_log_in() {
    let (core, root, _) = setup().await;
    let agent = login(&core, "agent-1", &[]).await;
    call(
        &core,
        Verb::Write,
        &format!("identity/entity/id/{}", agent.entity_id),
        &root,
        json!({"disabled": true}),
    )
    .await
    .expect("disable");
    let r = core
        .handle_request(
            Request::new(Verb::Write, "auth/test/login").with_data(json!({"user": "agent-1"})),
        )
        .await;
    assert!(matches!(r, Err(Error::PermissionDenied(_))));
    let listed = call(&core, Verb::List, "identity/entity/id", &root, json!({}))
        .await
        .expect("list");
    assert_eq!(data(&listed)["keys"], json!([agent.entity_id]));
}

#[tokio::test]
async fn group_aliases_follow_their_group_through_update_and_delete() {
    let (core, root, accessor) = setup().await;
    let mut group_ids = Vec::new();
    for name in ["ops", "dev"] {
        let group = call(
            &core,
            Verb::Write,
            "identity/group",
            &root,
            json!({"name": name, "type": "external"}),
        )
        .await
        .expect("group");
        group_ids.push(data(&group)["id"].as_str().expect("id").to_string());
    }
    let alias = call(
        &core,
        Verb::Write,
        "identity/group-alias",
        &root,
        json!({"name": "idp-ops", "mount_accessor": accessor, "canonical_id": group_ids[0]}),
    )
    .await
    .expect("alias");
    let alias_id = data(&alias)["id"].as_str().expect("id").to_string();
    let read_group = |id: String| {
        let core = Arc::clone(&core);
        let root = root.clone();
        async move {
            call(
                &core,
                Verb::Read,
                &format!("identity/group/id/{id}"),
                &root,
                json!({}),
            )
            .await
            .expect("group read")
        }
    };
    let ops = read_group(group_ids[0].clone()).await;
    assert_eq!(data(&ops)["alias"]["name"], json!("idp-ops"));

    // Moving the alias to the other group moves it in the group reads and in logins.
    call(
        &core,
        Verb::Write,
        &format!("identity/group-alias/id/{alias_id}"),
        &root,
        json!({"canonical_id": group_ids[1]}),
    )
    .await
    .expect("move alias");
    let ops = read_group(group_ids[0].clone()).await;
    assert_eq!(data(&ops)["alias"], json!({}));
    let dev = read_group(group_ids[1].clone()).await;
    assert_eq!(data(&dev)["alias"]["id"], json!(alias_id));
    login(&core, "bob", &["idp-ops"]).await;
    let dev = read_group(group_ids[1].clone()).await;
    assert_eq!(
        data(&dev)["member_entity_ids"].as_array().map(Vec::len),
        Some(1)
    );

    // Deleting the group deletes its alias; the name is free for another group.
    call(
        &core,
        Verb::Delete,
        &format!("identity/group/id/{}", group_ids[1]),
        &root,
        json!({}),
    )
    .await
    .expect("delete group");
    let gone = call(
        &core,
        Verb::Read,
        &format!("identity/group-alias/id/{alias_id}"),
        &root,
        json!({}),
    )
    .await;
    assert!(matches!(gone, Err(Error::NotFound { .. })), "{gone:?}");
    call(
        &core,
        Verb::Write,
        "identity/group-alias",
        &root,
        json!({"name": "idp-ops", "mount_accessor": accessor, "canonical_id": group_ids[0]}),
    )
    .await
    .expect("the alias name is free again");
    let ops = read_group(group_ids[0].clone()).await;
    assert_eq!(data(&ops)["alias"]["name"], json!("idp-ops"));
}
