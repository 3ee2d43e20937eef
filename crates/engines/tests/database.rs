//! The `database` engine against the real PostgreSQL (127.0.0.1:5432, `postgres`, trust auth)
//! and MariaDB (127.0.0.1:3306, `root` without a password) of the test machines, through a
//! dev core's `handle_request`, so leases, revocation and wrapping are the real ones too.
//!
//! Every test makes its own tables, databases and users with random names and removes them.
//!
//! The PostgreSQL of the test machines trusts every loopback login, so it accepts any
//! password and ignores `VALID UNTIL`. Where a test would need the server to check passwords
//! it detects that, and instead checks what PostgreSQL would check (the stored SCRAM verifier
//! matches the password, `rolvaliduntil` is the lease expiry). MariaDB checks passwords, so
//! its logins are proven for real.

use std::sync::Arc;
use std::time::Duration;

use mysql_async::prelude::Queryable;
use serde_json::{json, Map, Value};
use ward_core::request::{Request, Response, Verb};
use ward_core::{Core, CoreConfig, Error};
use ward_storage::InMemory;

const PG_ADMIN: &str = "host=127.0.0.1 port=5432 user=postgres dbname=postgres";
const PG_URL: &str =
    "postgresql://{{username}}:{{password}}@127.0.0.1:5432/postgres?sslmode=disable";
const MYSQL_URL: &str = "{{username}}:{{password}}@tcp(127.0.0.1:3306)/";

async fn dev_core() -> (Arc<Core>, String) {
    ward_testlog::init("engines-database");
    let core = Core::new(
        CoreConfig::default(),
        Arc::new(InMemory::new()),
        ward_engines::registry(),
    );
    let root = core
        .dev_init(None)
        .await
        .expect("dev init")
        .root_token
        .to_string();
    call(
        &core,
        Verb::Write,
        "sys/mounts/database",
        &root,
        json!({"type": "database"}),
    )
    .await
    .expect("mount");
    (core, root)
}

async fn call(
    core: &Core,
    verb: Verb,
    path: &str,
    token: &str,
    data: Value,
) -> Result<Response, Error> {
    core.handle_request(Request::new(verb, path).with_token(token).with_data(data))
        .await
}

fn data(response: &Response) -> &Map<String, Value> {
    response.data.as_ref().expect("response has data")
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        uuid::Uuid::new_v4()
            .simple()
            .to_string()
            .get(..12)
            .unwrap_or("x")
    )
}

fn message(result: Result<Response, Error>) -> String {
    match result {
        Err(e) => e.client_messages().join(", "),
        Ok(_) => panic!("expected an error"),
    }
}

async fn pg_admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(PG_ADMIN, tokio_postgres::NoTls)
        .await
        .expect("postgres is running on 127.0.0.1:5432");
    tokio::spawn(connection);
    client
}

async fn pg_login(
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(5432)
        .user(user)
        .password(password)
        .dbname("postgres");
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

async fn valid_until(admin: &tokio_postgres::Client, user: &str) -> i64 {
    let row = admin
        .query_one(
            "SELECT extract(epoch FROM rolvaliduntil)::bigint FROM pg_roles WHERE rolname = $1",
            &[&user],
        )
        .await
        .expect("rolvaliduntil");
    row.get::<_, i64>(0)
}

async fn pg_role_exists(admin: &tokio_postgres::Client, name: &str) -> bool {
    admin
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&name])
        .await
        .expect("pg_roles")
        .is_some()
}

/// Whether this PostgreSQL checks passwords on loopback (the test machines trust).
async fn pg_checks_passwords(admin: &tokio_postgres::Client) -> bool {
    let probe = unique("ward_probe");
    admin
        .batch_execute(&format!("CREATE ROLE {probe} LOGIN PASSWORD 'right'"))
        .await
        .expect("probe role");
    let checked = pg_login(&probe, "wrong").await.is_err();
    admin
        .batch_execute(&format!("DROP ROLE {probe}"))
        .await
        .expect("drop probe");
    checked
}

/// What PostgreSQL checks at a SCRAM login: the stored key derived from the password.
async fn pg_password_matches(admin: &tokio_postgres::Client, user: &str, password: &str) -> bool {
    use base64::Engine as _;
    use hmac::Mac;
    use sha2::Digest;
    let row = admin
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&user],
        )
        .await
        .expect("pg_authid");
    let stored: String = row.get(0);
    // SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
    let Some(rest) = stored.strip_prefix("SCRAM-SHA-256$") else {
        return false;
    };
    let (params, keys) = rest.split_once('$').expect("verifier");
    let (iterations, salt) = params.split_once(':').expect("params");
    let (stored_key, _) = keys.split_once(':').expect("keys");
    let b64 = base64::engine::general_purpose::STANDARD;
    let salt = b64.decode(salt).expect("salt");
    let iterations: u32 = iterations.parse().expect("iterations");
    let hmac = |key: &[u8], message: &[u8]| {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("hmac key");
        mac.update(message);
        mac.finalize().into_bytes().to_vec()
    };
    // PBKDF2-HMAC-SHA256 with one block.
    let mut u = hmac(
        password.as_bytes(),
        &[salt.as_slice(), &[0, 0, 0, 1]].concat(),
    );
    let mut salted = u.clone();
    for _ in 1..iterations {
        u = hmac(password.as_bytes(), &u);
        for (s, x) in salted.iter_mut().zip(&u) {
            *s ^= x;
        }
    }
    let client_key = hmac(&salted, b"Client Key");
    b64.encode(sha2::Sha256::digest(&client_key)) == stored_key
}

async fn configure_postgres(core: &Core, root: &str) {
    call(
        core,
        Verb::Write,
        "database/config/pg",
        root,
        json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": PG_URL,
            "username": "postgres",
            "password": "unused-with-trust-auth",
            "allowed_roles": "*",
            "max_open_connections": 4,
        }),
    )
    .await
    .expect("configure postgres");
}

#[tokio::test]
async fn postgres_credentials_log_in_with_only_their_grants_and_are_dropped_on_revoke() {
    let admin = pg_admin().await;
    let granted = unique("ward_granted");
    let other = unique("ward_other");
    admin.batch_execute(&format!("CREATE TABLE {granted} (x int); INSERT INTO {granted} VALUES (42); CREATE TABLE {other} (x int);")).await.expect("tables");
    let (core, root) = dev_core().await;
    configure_postgres(&core, &root).await;
    call(&core, Verb::Write, "database/roles/reader", &root, json!({
        "db_name": "pg",
        "creation_statements": [
            "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'",
            format!("GRANT SELECT ON {granted} TO \"{{{{name}}}}\""),
        ],
        "default_ttl": "1h",
        "max_ttl": "24h",
    }))
    .await
    .expect("role");

    let issued = call(&core, Verb::Read, "database/creds/reader", &root, json!({}))
        .await
        .expect("creds");
    let lease = issued.lease.clone().expect("leased");
    assert!(lease.lease_id.starts_with("database/creds/reader/"));
    assert_eq!((lease.lease_duration, lease.renewable), (3600, true));
    let username = data(&issued)["username"]
        .as_str()
        .expect("username")
        .to_string();
    let password = data(&issued)["password"]
        .as_str()
        .expect("password")
        .to_string();
    assert!(
        username.starts_with("v-token-reader-") && username.len() <= 63,
        "{username}"
    );
    assert_eq!(password.len(), 20);

    // The credential logs in and sees exactly what it was granted.
    let login = pg_login(&username, &password)
        .await
        .expect("the new user logs in");
    let row = login
        .query_one(&format!("SELECT x FROM {granted}"), &[])
        .await
        .expect("granted table");
    assert_eq!(row.get::<_, i32>(0), 42);
    let denied = login
        .query(&format!("SELECT x FROM {other}"), &[])
        .await
        .expect_err("other table");
    let reason = denied
        .as_db_error()
        .map(|e| e.message().to_string())
        .unwrap_or_default();
    assert!(reason.contains("permission denied"), "{reason}");
    assert!(
        pg_password_matches(&admin, &username, &password).await,
        "PostgreSQL holds this password"
    );
    drop(login);

    // VALID UNTIL is the lease expiry; a renewal moves both.
    let now = core.clock().unix();
    assert!((valid_until(&admin, &username).await - (now + 3600)).abs() <= 2);
    let renewed = call(
        &core,
        Verb::Write,
        "sys/leases/renew",
        &root,
        json!({"lease_id": lease.lease_id, "increment": "2h"}),
    )
    .await
    .expect("renew");
    assert_eq!(renewed.lease.expect("lease").lease_duration, 7200);
    assert!((valid_until(&admin, &username).await - (now + 7200)).abs() <= 2);

    // Revocation drops the user; logging in no longer works, whatever the auth method.
    call(
        &core,
        Verb::Write,
        "sys/leases/revoke",
        &root,
        json!({"lease_id": lease.lease_id}),
    )
    .await
    .expect("revoke");
    assert!(
        !pg_role_exists(&admin, &username).await,
        "gone from pg_roles"
    );
    assert!(pg_login(&username, &password).await.is_err());
    admin
        .batch_execute(&format!("DROP TABLE {granted}; DROP TABLE {other};"))
        .await
        .expect("cleanup");
}

#[tokio::test]
async fn postgres_user_stops_working_at_lease_expiry() {
    let admin = pg_admin().await;
    let (core, root) = dev_core().await;
    configure_postgres(&core, &root).await;
    call(&core, Verb::Write, "database/roles/brief", &root, json!({
        "db_name": "pg",
        "creation_statements": "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
        "default_ttl": 2,
        "max_ttl": 2,
    }))
    .await
    .expect("role");
    let issued = call(&core, Verb::Read, "database/creds/brief", &root, json!({}))
        .await
        .expect("creds");
    let username = data(&issued)["username"]
        .as_str()
        .expect("username")
        .to_string();
    let password = data(&issued)["password"]
        .as_str()
        .expect("password")
        .to_string();
    let expires = core.clock().unix() + 2;
    let row = admin
        .query_one(
            "SELECT extract(epoch FROM rolvaliduntil)::bigint FROM pg_roles WHERE rolname = $1",
            &[&username],
        )
        .await
        .expect("rolvaliduntil");
    assert!(
        (row.get::<_, i64>(0) - expires).abs() <= 1,
        "VALID UNTIL = lease expiry"
    );

    if pg_checks_passwords(&admin).await {
        // The second line of defence: PostgreSQL itself refuses the login after VALID UNTIL,
        // with Ward not involved at all.
        pg_login(&username, &password)
            .await
            .expect("valid at first");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while pg_login(&username, &password).await.is_ok() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "login still works 10 s after VALID UNTIL"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    } else {
        // Trust auth ignores VALID UNTIL (see the module documentation); the lease sweep is
        // what removes the user here.
        assert!(pg_password_matches(&admin, &username, &password).await);
    }
    core.clock().advance(2);
    assert_eq!(core.expire_leases().await.expect("sweep"), 1);
    assert!(
        !pg_role_exists(&admin, &username).await,
        "dropped at lease expiry"
    );
    assert!(pg_login(&username, &password).await.is_err());
}

#[tokio::test]
async fn postgres_bad_sql_in_a_role_fails_with_the_database_message_and_leaves_nothing() {
    let admin = pg_admin().await;
    let (core, root) = dev_core().await;
    configure_postgres(&core, &root).await;
    let missing = unique("ward_missing");
    let refused = call(
        &core,
        Verb::Write,
        "database/roles/bad",
        &root,
        json!({
            "db_name": "pg",
            "creation_statements": [
                "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}'",
                format!("GRANT SELECT ON {missing} TO \"{{{{name}}}}\""),
            ],
        }),
    )
    .await;
    let text = message(refused);
    assert!(
        text.contains(&format!("relation \"{missing}\" does not exist")),
        "{text}"
    );
    let read = call(&core, Verb::Read, "database/roles/bad", &root, json!({})).await;
    assert!(
        matches!(read, Err(Error::NotFound { .. })),
        "the role was not stored"
    );
    let leftovers = admin
        .query(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE 'v-check-%'",
            &[],
        )
        .await
        .expect("pg_roles");
    assert!(leftovers.is_empty(), "the trial user was rolled back");

    let syntax = call(
        &core,
        Verb::Write,
        "database/roles/bad",
        &root,
        json!({"db_name": "pg", "creation_statements": "CREAT ROLE \"{{name}}\""}),
    )
    .await;
    assert!(message(syntax).contains("syntax error"));
}

#[tokio::test]
async fn a_database_that_is_down_gives_a_clear_error_and_no_lease() {
    let (core, root) = dev_core().await;
    let config = json!({
        "plugin_name": "postgresql-database-plugin",
        "connection_url": "postgresql://{{username}}:{{password}}@127.0.0.1:1/postgres",
        "username": "postgres",
        "password": "x",
        "allowed_roles": ["r"],
    });
    let refused = call(
        &core,
        Verb::Write,
        "database/config/down",
        &root,
        config.clone(),
    )
    .await;
    assert!(message(refused)
        .contains("error creating database object: could not connect to the database"));
    let mut unverified = config.clone();
    unverified["verify_connection"] = json!(false);
    call(
        &core,
        Verb::Write,
        "database/config/down",
        &root,
        unverified,
    )
    .await
    .expect("stored without verification");
    call(
        &core,
        Verb::Write,
        "database/roles/r",
        &root,
        json!({"db_name": "down", "creation_statements": "CREATE ROLE \"{{name}}\""}),
    )
    .await
    .expect("role");
    let issuance = call(&core, Verb::Read, "database/creds/r", &root, json!({})).await;
    let text = message(issuance);
    assert!(text.contains("could not connect to the database"), "{text}");
    assert!(
        !text.contains("127.0.0.1:1") || !text.contains("x@"),
        "no connection URL with a password in errors"
    );
    let leases = call(
        &core,
        Verb::List,
        "sys/leases/lookup/database/",
        &root,
        json!({}),
    )
    .await;
    assert!(
        matches!(leases, Err(Error::NotFound { .. })),
        "no lease left behind: {leases:?}"
    );

    // A role that the config does not allow gets nothing.
    call(
        &core,
        Verb::Write,
        "database/roles/other",
        &root,
        json!({"db_name": "down", "creation_statements": "CREATE ROLE \"{{name}}\""}),
    )
    .await
    .expect("role");
    let refused = call(&core, Verb::Read, "database/creds/other", &root, json!({})).await;
    assert_eq!(message(refused), "\"other\" is not an allowed role");
}

#[tokio::test]
async fn config_reads_never_show_a_password() {
    let (core, root) = dev_core().await;
    call(
        &core,
        Verb::Write,
        "database/config/literal",
        &root,
        json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": "postgresql://postgres:hunter2@127.0.0.1:5432/postgres",
            "password": "also-secret",
            "allowed_roles": "a,b",
        }),
    )
    .await
    .expect("config");
    let read = call(
        &core,
        Verb::Read,
        "database/config/literal",
        &root,
        json!({}),
    )
    .await
    .expect("read");
    let text = serde_json::to_string(data(&read)).expect("json");
    assert!(
        !text.contains("hunter2") && !text.contains("also-secret"),
        "{text}"
    );
    assert_eq!(
        data(&read)["connection_details"]["connection_url"],
        json!("postgresql://postgres:*****@127.0.0.1:5432/postgres")
    );
    assert_eq!(data(&read)["allowed_roles"], json!(["a", "b"]));
    let listed = call(&core, Verb::List, "database/config", &root, json!({}))
        .await
        .expect("list");
    assert_eq!(data(&listed)["keys"], json!(["literal"]));
    let bad = call(
        &core,
        Verb::Write,
        "database/config/x",
        &root,
        json!({"plugin_name": "oracle-database-plugin", "connection_url": "x"}),
    )
    .await;
    assert!(message(bad).contains("unsupported plugin_name"));
}

#[tokio::test]
async fn injection_attempts_in_names_are_quoted_or_refused() {
    let admin = pg_admin().await;
    let victim = unique("ward_victim");
    admin
        .batch_execute(&format!("CREATE TABLE {victim} (x int)"))
        .await
        .expect("table");
    let (core, root) = dev_core().await;
    configure_postgres(&core, &root).await;
    let evil = format!("x\"; DROP TABLE {victim}; -- ünï cödé");
    let path = format!("database/roles/{evil}");
    call(&core, Verb::Write, &path, &root, json!({"db_name": "pg", "creation_statements": "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}';"}))
        .await
        .expect("a strange role name is just a name");
    let issued = call(
        &core,
        Verb::Read,
        &format!("database/creds/{evil}"),
        &root,
        json!({}),
    )
    .await
    .expect("creds");
    let username = data(&issued)["username"]
        .as_str()
        .expect("username")
        .to_string();
    assert!(
        username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "{username}"
    );
    assert!(pg_role_exists(&admin, &username).await);
    let survived = admin
        .query_opt(&format!("SELECT 1 FROM {victim}"), &[])
        .await;
    assert!(survived.is_ok(), "the table is still there");
    let lease_id = issued.lease.expect("lease").lease_id;
    call(
        &core,
        Verb::Write,
        "sys/leases/revoke",
        &root,
        json!({"lease_id": lease_id}),
    )
    .await
    .expect("revoke");
    assert!(!pg_role_exists(&admin, &username).await);

    // Names that would leave their quotes are refused, not escaped by guesswork.
    let template = call(
        &core,
        Verb::Write,
        "database/config/pg",
        &root,
        json!({"username_template": "x\";{{.RoleName}}"}),
    )
    .await;
    assert!(message(template).contains("not allowed in a database user name"));
    let static_role = call(
        &core,
        Verb::Write,
        "database/static-roles/s",
        &root,
        json!({"db_name": "pg", "username": "a'; DROP ROLE postgres; --", "rotation_period": 60}),
    )
    .await;
    assert!(message(static_role).contains("not allowed in a database user name"));
    admin
        .batch_execute(&format!("DROP TABLE {victim}"))
        .await
        .expect("cleanup");
}

#[tokio::test]
async fn postgres_static_roles_rotate_when_due_and_on_demand() {
    let admin = pg_admin().await;
    let user = unique("ward_static");
    admin
        .batch_execute(&format!("CREATE ROLE {user} LOGIN PASSWORD 'initial'"))
        .await
        .expect("static user");
    let (core, root) = dev_core().await;
    configure_postgres(&core, &root).await;
    call(
        &core,
        Verb::Write,
        "database/static-roles/app",
        &root,
        json!({"db_name": "pg", "username": user, "rotation_period": "1h"}),
    )
    .await
    .expect("static role");
    let first = call(
        &core,
        Verb::Read,
        "database/static-creds/app",
        &root,
        json!({}),
    )
    .await
    .expect("creds");
    let first_password = data(&first)["password"]
        .as_str()
        .expect("password")
        .to_string();
    assert_eq!(data(&first)["username"], json!(user));
    assert_eq!(data(&first)["rotation_period"], json!(3600));
    assert!(first.lease.is_none(), "static credentials have no lease");
    assert!(
        pg_password_matches(&admin, &user, &first_password).await,
        "rotated away from the initial password"
    );
    let again = call(
        &core,
        Verb::Read,
        "database/static-creds/app",
        &root,
        json!({}),
    )
    .await
    .expect("creds");
    assert_eq!(
        data(&again)["password"],
        json!(first_password),
        "stable within the period"
    );

    core.clock().advance(3600);
    let due = call(
        &core,
        Verb::Read,
        "database/static-creds/app",
        &root,
        json!({}),
    )
    .await
    .expect("creds");
    let second_password = data(&due)["password"]
        .as_str()
        .expect("password")
        .to_string();
    assert_ne!(
        second_password, first_password,
        "rotated once the period elapsed"
    );
    assert_eq!(data(&due)["ttl"], json!(3600));
    assert!(pg_password_matches(&admin, &user, &second_password).await);

    call(
        &core,
        Verb::Write,
        "database/rotate-role/app",
        &root,
        json!({}),
    )
    .await
    .expect("rotate");
    let rotated = call(
        &core,
        Verb::Read,
        "database/static-creds/app",
        &root,
        json!({}),
    )
    .await
    .expect("creds");
    assert_ne!(data(&rotated)["password"], json!(second_password));
    let role = call(
        &core,
        Verb::Read,
        "database/static-roles/app",
        &root,
        json!({}),
    )
    .await
    .expect("role");
    assert!(!data(&role).contains_key("password"));
    admin
        .batch_execute(&format!("DROP ROLE {user}"))
        .await
        .expect("cleanup");
}

#[tokio::test]
async fn rotate_root_sets_a_password_only_ward_knows() {
    let admin = pg_admin().await;
    let manager = unique("ward_manager");
    admin
        .batch_execute(&format!(
            "CREATE ROLE {manager} LOGIN CREATEROLE PASSWORD 'known-to-the-operator'"
        ))
        .await
        .expect("manager");
    let (core, root) = dev_core().await;
    call(
        &core,
        Verb::Write,
        "database/config/managed",
        &root,
        json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": PG_URL,
            "username": manager,
            "password": "known-to-the-operator",
            "allowed_roles": ["r"],
        }),
    )
    .await
    .expect("config");
    assert!(pg_password_matches(&admin, &manager, "known-to-the-operator").await);
    call(
        &core,
        Verb::Write,
        "database/rotate-root/managed",
        &root,
        json!({}),
    )
    .await
    .expect("rotate-root");
    assert!(
        !pg_password_matches(&admin, &manager, "known-to-the-operator").await,
        "the old password is gone"
    );
    // The engine keeps working with the new password it alone knows.
    call(&core, Verb::Write, "database/roles/r", &root, json!({"db_name": "managed", "creation_statements": "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}';"}))
        .await
        .expect("role");
    let issued = call(&core, Verb::Read, "database/creds/r", &root, json!({}))
        .await
        .expect("creds");
    let lease_id = issued.lease.expect("lease").lease_id;
    call(
        &core,
        Verb::Write,
        "sys/leases/revoke",
        &root,
        json!({"lease_id": lease_id}),
    )
    .await
    .expect("revoke");
    call(
        &core,
        Verb::Write,
        "database/reset/managed",
        &root,
        json!({}),
    )
    .await
    .expect("reset");
    admin
        .batch_execute(&format!("DROP ROLE {manager}"))
        .await
        .expect("cleanup");
}

#[tokio::test]
async fn wrapped_credentials_unwrap_once() {
    let (core, root) = dev_core().await;
    configure_postgres(&core, &root).await;
    call(&core, Verb::Write, "database/roles/w", &root, json!({"db_name": "pg", "creation_statements": "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}';"}))
        .await
        .expect("role");
    let mut request = Request::new(Verb::Read, "database/creds/w").with_token(&root);
    request.wrap_ttl = Some(60);
    let wrapped = core.handle_request(request).await.expect("wrapped");
    let token = wrapped.wrap_info.expect("wrap info").token;
    assert!(wrapped.data.is_none());
    let unwrapped = call(&core, Verb::Write, "sys/wrapping/unwrap", &token, json!({}))
        .await
        .expect("unwrap");
    let username = data(&unwrapped)["username"]
        .as_str()
        .expect("username")
        .to_string();
    assert!(pg_role_exists(&pg_admin().await, &username).await);
    call(
        &core,
        Verb::Write,
        "sys/leases/revoke-prefix/database/creds/w",
        &root,
        json!({}),
    )
    .await
    .expect("revoke");
    assert!(!pg_role_exists(&pg_admin().await, &username).await);
}

async fn mysql_admin() -> mysql_async::Conn {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(3306)
        .user(Some("root"))
        .prefer_socket(false);
    mysql_async::Conn::new(opts)
        .await
        .expect("MariaDB is running on 127.0.0.1:3306")
}

async fn mysql_login(
    user: &str,
    password: &str,
    database: &str,
) -> Result<mysql_async::Conn, mysql_async::Error> {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(3306)
        .user(Some(user))
        .pass(Some(password))
        .db_name(Some(database))
        .prefer_socket(false);
    mysql_async::Conn::new(opts).await
}

async fn mysql_user_exists(admin: &mut mysql_async::Conn, user: &str) -> bool {
    let hosts: Vec<String> = admin
        .exec("SELECT Host FROM mysql.user WHERE User = ?", (user,))
        .await
        .expect("mysql.user");
    !hosts.is_empty()
}

async fn configure_mysql(core: &Core, root: &str, plugin: &str) {
    call(
        core,
        Verb::Write,
        "database/config/maria",
        root,
        json!({
            "plugin_name": plugin,
            "connection_url": MYSQL_URL,
            "username": "root",
            "password": "",
            "allowed_roles": "*",
        }),
    )
    .await
    .expect("configure mariadb");
}

#[tokio::test]
async fn mysql_credentials_log_in_with_only_their_grants_and_are_dropped_on_revoke() {
    let mut admin = mysql_admin().await;
    let database = unique("ward_db");
    admin
        .query_drop(format!("CREATE DATABASE {database}; CREATE TABLE {database}.granted (x INT); INSERT INTO {database}.granted VALUES (7); CREATE TABLE {database}.other (x INT);"))
        .await
        .expect("schema");
    let (core, root) = dev_core().await;
    configure_mysql(&core, &root, "mysql-database-plugin").await;
    call(
        &core,
        Verb::Write,
        "database/roles/app",
        &root,
        json!({
            "db_name": "maria",
            "creation_statements": [
                "CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'",
                format!("GRANT SELECT ON {database}.granted TO '{{{{name}}}}'@'%'"),
            ],
            "default_ttl": 600,
        }),
    )
    .await
    .expect("role");
    let issued = call(&core, Verb::Read, "database/creds/app", &root, json!({}))
        .await
        .expect("creds");
    let username = data(&issued)["username"]
        .as_str()
        .expect("username")
        .to_string();
    let password = data(&issued)["password"]
        .as_str()
        .expect("password")
        .to_string();
    assert!(
        username.starts_with("v-toke-app-") && username.len() <= 32,
        "{username}"
    );

    let mut login = mysql_login(&username, &password, &database)
        .await
        .expect("the new user logs in");
    let seven: Option<i32> = login
        .query_first("SELECT x FROM granted")
        .await
        .expect("granted table");
    assert_eq!(seven, Some(7));
    let denied = login
        .query_drop("SELECT x FROM other")
        .await
        .expect_err("other table");
    assert!(denied.to_string().contains("denied"), "{denied}");
    drop(login);
    assert!(
        mysql_login(&username, "wrong-password", &database)
            .await
            .is_err(),
        "MariaDB checks the password"
    );

    let lease_id = issued.lease.expect("lease").lease_id;
    call(
        &core,
        Verb::Write,
        "sys/leases/revoke",
        &root,
        json!({"lease_id": lease_id}),
    )
    .await
    .expect("revoke");
    assert!(
        !mysql_user_exists(&mut admin, &username).await,
        "gone from mysql.user"
    );
    assert!(mysql_login(&username, &password, &database).await.is_err());

    // Legacy plugin names give the short usernames of old MySQL.
    configure_mysql(&core, &root, "mysql-legacy-database-plugin").await;
    let issued = call(&core, Verb::Read, "database/creds/app", &root, json!({}))
        .await
        .expect("creds");
    let short = data(&issued)["username"]
        .as_str()
        .expect("username")
        .to_string();
    assert_eq!(short.len(), 16, "{short}");
    call(
        &core,
        Verb::Write,
        "sys/leases/revoke-prefix/database/",
        &root,
        json!({}),
    )
    .await
    .expect("revoke");
    assert!(!mysql_user_exists(&mut admin, &short).await);
    admin
        .query_drop(format!("DROP DATABASE {database}"))
        .await
        .expect("cleanup");
}

#[tokio::test]
async fn mysql_bad_sql_fails_with_the_database_message_and_leaves_nothing() {
    let mut admin = mysql_admin().await;
    let (core, root) = dev_core().await;
    configure_mysql(&core, &root, "mysql-database-plugin").await;
    let missing = unique("ward_nodb");
    let refused = call(&core, Verb::Write, "database/roles/bad", &root, json!({
        "db_name": "maria",
        "creation_statements": format!("CREATE USER '{{{{name}}}}'@'%' IDENTIFIED BY '{{{{password}}}}'; GRANT SELECT ON {missing}.t TO '{{{{name}}}}'@'%';"),
    }))
    .await;
    let text = message(refused);
    assert!(
        text.contains("doesn't exist")
            || text.contains("Unknown database")
            || text.contains("does not exist"),
        "{text}"
    );
    let leftovers: Vec<String> = admin
        .query("SELECT User FROM mysql.user WHERE User LIKE 'v-check-%'")
        .await
        .expect("mysql.user");
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let read = call(&core, Verb::Read, "database/roles/bad", &root, json!({})).await;
    assert!(matches!(read, Err(Error::NotFound { .. })));
}
