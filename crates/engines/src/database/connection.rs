//! Connections to the databases the engine manages: PostgreSQL through `tokio-postgres`
//! (with a small pool of our own, bounded by `max_open_connections`) and MySQL/MariaDB through
//! `mysql_async`'s pool.
//!
//! This module runs statements and nothing else: which statements, and with what values, is
//! the engine's business. Errors carry the database's own message (what a user needs to fix
//! bad SQL) but never the connection URL or a password.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mysql_async::prelude::Queryable;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use zeroize::Zeroizing;

use super::credentials::quote_ident_pg;

/// How long opening a connection may take before issuance fails with a clear error.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQL dialect of a configured plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Postgres,
    Mysql,
    /// `mysql-legacy-database-plugin`: MySQL before 5.7, usernames of at most 16 characters.
    MysqlLegacy,
}

impl Dialect {
    pub(crate) fn from_plugin(plugin: &str) -> Option<Dialect> {
        match plugin {
            "postgresql-database-plugin" => Some(Dialect::Postgres),
            "mysql-database-plugin"
            | "mysql-aurora-database-plugin"
            | "mysql-rds-database-plugin" => Some(Dialect::Mysql),
            "mysql-legacy-database-plugin" => Some(Dialect::MysqlLegacy),
            _ => None,
        }
    }

    /// The longest username the database accepts.
    pub(crate) fn max_username_len(self) -> usize {
        match self {
            Dialect::Postgres => 63,
            Dialect::Mysql => 32,
            Dialect::MysqlLegacy => 16,
        }
    }
}

/// What went wrong talking to a database; the message is safe to show the user.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DbError {
    /// The database could not be reached or refused the login.
    Connect(String),
    /// A statement failed; the database's message.
    Statement(String),
    /// The connection settings cannot be understood.
    Config(String),
}

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbError::Connect(m) => write!(f, "could not connect to the database: {m}"),
            DbError::Statement(m) => write!(f, "the database refused a statement: {m}"),
            DbError::Config(m) => write!(f, "invalid connection settings: {m}"),
        }
    }
}

/// Connection settings of one `config/<name>`, with the credentials already resolved.
pub(crate) struct ConnectionSettings<'a> {
    pub(crate) dialect: Dialect,
    pub(crate) connection_url: &'a str,
    pub(crate) username: &'a str,
    pub(crate) password: &'a str,
    pub(crate) max_open_connections: usize,
}

/// A pool for one configured database.
pub(crate) enum Pool {
    Postgres(Box<PgPool>),
    Mysql(mysql_async::Pool),
}

impl Pool {
    /// Builds a pool; no connection is opened yet.
    pub(crate) fn new(settings: &ConnectionSettings<'_>) -> Result<Pool, DbError> {
        let size = settings.max_open_connections.max(1);
        match settings.dialect {
            Dialect::Postgres => Ok(Pool::Postgres(Box::new(PgPool::new(
                pg_config(settings)?,
                size,
            )))),
            Dialect::Mysql | Dialect::MysqlLegacy => {
                let opts = mysql_opts(settings)?;
                let constraints = mysql_async::PoolConstraints::new(0, size).ok_or_else(|| {
                    DbError::Config("max_open_connections must be at least 1".into())
                })?;
                let opts = mysql_async::OptsBuilder::from_opts(opts)
                    .pool_opts(mysql_async::PoolOpts::default().with_constraints(constraints));
                Ok(Pool::Mysql(mysql_async::Pool::new(opts)))
            }
        }
    }

    /// Opens (or reuses) a connection and runs a trivial query.
    pub(crate) async fn verify(&self) -> Result<(), DbError> {
        match self {
            Pool::Postgres(pool) => {
                let connection = pool.get().await?;
                connection
                    .client()?
                    .simple_query("SELECT 1")
                    .await
                    .map_err(pg_statement_error)?;
                Ok(())
            }
            Pool::Mysql(pool) => {
                let mut connection = mysql_connection(pool).await?;
                connection
                    .query_drop("SELECT 1")
                    .await
                    .map_err(mysql_statement_error)
            }
        }
    }

    /// Runs statements in one transaction: all of them, or (on the first failure) none.
    /// MySQL commits DDL implicitly, so there a failure can leave earlier statements
    /// applied: the caller runs its rollback statements.
    pub(crate) async fn execute(&self, statements: &[Zeroizing<String>]) -> Result<(), DbError> {
        self.run(statements, true).await
    }

    /// Runs statements in a transaction that is always rolled back (PostgreSQL), to check
    /// them without leaving anything behind.
    pub(crate) async fn execute_and_roll_back(
        &self,
        statements: &[Zeroizing<String>],
    ) -> Result<(), DbError> {
        self.run(statements, false).await
    }

    async fn run(&self, statements: &[Zeroizing<String>], commit: bool) -> Result<(), DbError> {
        match self {
            Pool::Postgres(pool) => {
                let mut connection = pool.get().await?;
                let client = connection.client_mut()?;
                let transaction = client.transaction().await.map_err(pg_statement_error)?;
                for statement in statements {
                    transaction
                        .batch_execute(statement)
                        .await
                        .map_err(pg_statement_error)?;
                }
                if commit {
                    transaction.commit().await.map_err(pg_statement_error)
                } else {
                    transaction.rollback().await.map_err(pg_statement_error)
                }
            }
            Pool::Mysql(pool) => {
                let mut connection = mysql_connection(pool).await?;
                let mut transaction = connection
                    .start_transaction(mysql_async::TxOpts::default())
                    .await
                    .map_err(mysql_statement_error)?;
                for statement in statements {
                    transaction
                        .query_drop(statement.as_str())
                        .await
                        .map_err(mysql_statement_error)?;
                }
                if commit {
                    transaction.commit().await.map_err(mysql_statement_error)
                } else {
                    transaction.rollback().await.map_err(mysql_statement_error)
                }
            }
        }
    }

    /// The hosts of a MySQL user (`'name'@'host'` accounts); for PostgreSQL, one empty
    /// entry when the role exists.
    pub(crate) async fn user_hosts(&self, name: &str) -> Result<Vec<String>, DbError> {
        match self {
            Pool::Postgres(pool) => {
                let connection = pool.get().await?;
                let row = connection
                    .client()?
                    .query_opt(
                        "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1",
                        &[&name],
                    )
                    .await
                    .map_err(pg_statement_error)?;
                Ok(row.map(|_| vec![String::new()]).unwrap_or_default())
            }
            Pool::Mysql(pool) => {
                let mut connection = mysql_connection(pool).await?;
                connection
                    .exec::<String, _, _>("SELECT Host FROM mysql.user WHERE User = ?", (name,))
                    .await
                    .map_err(mysql_statement_error)
            }
        }
    }

    /// Drops a PostgreSQL role and what it holds, idempotently. With enough privilege the
    /// role's objects go to the admin and its grants are dropped in one transaction; an
    /// admin that may not do that (a `CREATEROLE` user that is not a superuser) revokes
    /// what it can, as Vault's default does, and then drops the role.
    pub(crate) async fn drop_pg_role(&self, name: &str) -> Result<(), DbError> {
        let Pool::Postgres(pool) = self else {
            return Err(DbError::Config("not a PostgreSQL connection".into()));
        };
        let mut connection = pool.get().await?;
        let client = connection.client_mut()?;
        let exists = client
            .query_opt(
                "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1",
                &[&name],
            )
            .await
            .map_err(pg_statement_error)?;
        if exists.is_none() {
            return Ok(());
        }
        let role = quote_ident_pg(name);
        let transaction = client.transaction().await.map_err(pg_statement_error)?;
        let thorough = format!("REASSIGN OWNED BY {role} TO CURRENT_USER; DROP OWNED BY {role}; DROP ROLE IF EXISTS {role}");
        match transaction.batch_execute(&thorough).await {
            Ok(()) => return transaction.commit().await.map_err(pg_statement_error),
            Err(e) => {
                tracing::debug!(error = %e, "falling back to revoking grants one by one");
                if let Err(e) = transaction.rollback().await {
                    tracing::debug!(error = %e, "rollback after a failed drop");
                }
            }
        }
        let schemas = client
            .query("SELECT DISTINCT table_schema FROM information_schema.role_table_grants WHERE grantee = $1", &[&name])
            .await
            .map_err(pg_statement_error)?;
        let mut statements = Vec::new();
        for row in schemas {
            let schema: String = row.get(0);
            let schema = quote_ident_pg(&schema);
            statements.push(format!(
                "REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA {schema} FROM {role}"
            ));
            statements.push(format!("REVOKE USAGE ON SCHEMA {schema} FROM {role}"));
        }
        statements.push(format!(
            "REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA public FROM {role}"
        ));
        statements.push(format!(
            "REVOKE ALL PRIVILEGES ON ALL SEQUENCES IN SCHEMA public FROM {role}"
        ));
        statements.push(format!("REVOKE USAGE ON SCHEMA public FROM {role}"));
        let database: String = client
            .query_one("SELECT current_database()", &[])
            .await
            .map_err(pg_statement_error)?
            .get(0);
        statements.push(format!(
            "REVOKE CONNECT ON DATABASE {} FROM {role}",
            quote_ident_pg(&database)
        ));
        // Each on its own: remove as much access as possible even if one fails.
        for statement in statements {
            if let Err(e) = client.batch_execute(&statement).await {
                tracing::debug!(error = %e, "revoking a privilege before dropping a role");
            }
        }
        client
            .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
            .await
            .map_err(pg_statement_error)
    }

    /// Closes idle connections (config changed or deleted).
    pub(crate) async fn close(self) {
        if let Pool::Mysql(pool) = self {
            if let Err(e) = pool.disconnect().await {
                tracing::debug!(error = %e, "closing a MySQL pool");
            }
        }
    }
}

/// A small pool of `tokio-postgres` clients bounded by a semaphore.
pub(crate) struct PgPool {
    config: tokio_postgres::Config,
    idle: Mutex<Vec<tokio_postgres::Client>>,
    permits: Arc<Semaphore>,
}

/// A client borrowed from a [`PgPool`]; it goes back to the pool when dropped.
pub(crate) struct PgConnection<'a> {
    client: Option<tokio_postgres::Client>,
    pool: &'a PgPool,
    _permit: OwnedSemaphorePermit,
}

impl PgPool {
    fn new(config: tokio_postgres::Config, size: usize) -> PgPool {
        PgPool {
            config,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(size)),
        }
    }

    pub(crate) async fn get(&self) -> Result<PgConnection<'_>, DbError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| DbError::Connect("the connection pool is closed".into()))?;
        let reused = loop {
            let candidate = self.idle.lock().map(|mut idle| idle.pop()).unwrap_or(None);
            match candidate {
                Some(client) if client.is_closed() => continue,
                other => break other,
            }
        };
        let client = match reused {
            Some(client) => client,
            None => {
                let connect = self.config.connect(tokio_postgres::NoTls);
                let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
                    .await
                    .map_err(|_| DbError::Connect("timed out".into()))?
                    .map_err(pg_connect_error)?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "PostgreSQL connection ended");
                    }
                });
                client
            }
        };
        Ok(PgConnection {
            client: Some(client),
            pool: self,
            _permit: permit,
        })
    }
}

impl PgConnection<'_> {
    fn client(&self) -> Result<&tokio_postgres::Client, DbError> {
        self.client
            .as_ref()
            .ok_or_else(|| DbError::Connect("connection lost".into()))
    }

    fn client_mut(&mut self) -> Result<&mut tokio_postgres::Client, DbError> {
        self.client
            .as_mut()
            .ok_or_else(|| DbError::Connect("connection lost".into()))
    }
}

impl Drop for PgConnection<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            if !client.is_closed() {
                if let Ok(mut idle) = self.pool.idle.lock() {
                    idle.push(client);
                }
            }
        }
    }
}

async fn mysql_connection(pool: &mysql_async::Pool) -> Result<mysql_async::Conn, DbError> {
    tokio::time::timeout(CONNECT_TIMEOUT, pool.get_conn())
        .await
        .map_err(|_| DbError::Connect("timed out".into()))?
        .map_err(|e| DbError::Connect(e.to_string()))
}

const USER_MARK: &str = "ward-username-placeholder";
const PASSWORD_MARK: &str = "ward-password-placeholder";

/// A PostgreSQL connection URL (`postgresql://{{username}}:{{password}}@host:5432/db`) or
/// key=value string, with the templated credentials set from the config's fields (so that a
/// password needs no URL escaping).
fn pg_config(settings: &ConnectionSettings<'_>) -> Result<tokio_postgres::Config, DbError> {
    let templated = settings
        .connection_url
        .replace("{{username}}", USER_MARK)
        .replace("{{password}}", PASSWORD_MARK);
    let mut config = tokio_postgres::Config::from_str(&templated).map_err(|_| {
        DbError::Config("connection_url is not a PostgreSQL URL or key=value string".into())
    })?;
    if config.get_user().is_none_or(|u| u == USER_MARK) {
        config.user(settings.username);
    }
    if config
        .get_password()
        .is_none_or(|p| p == PASSWORD_MARK.as_bytes())
    {
        config.password(settings.password);
    }
    if config.get_dbname().is_none() {
        config.dbname("postgres");
    }
    config.connect_timeout(CONNECT_TIMEOUT);
    config.application_name("ward");
    Ok(config)
}

/// A MySQL connection URL: Vault's Go DSN (`{{username}}:{{password}}@tcp(host:3306)/db`)
/// or a `mysql://` URL.
fn mysql_opts(settings: &ConnectionSettings<'_>) -> Result<mysql_async::Opts, DbError> {
    let url = settings.connection_url;
    let resolve = |value: &str, template: &str, field: &str| -> String {
        if value == template || value.is_empty() {
            field.to_string()
        } else {
            value.to_string()
        }
    };
    if url.starts_with("mysql://") {
        let templated = url
            .replace("{{username}}", USER_MARK)
            .replace("{{password}}", PASSWORD_MARK);
        let opts = mysql_async::Opts::from_url(&templated)
            .map_err(|_| DbError::Config("connection_url is not a MySQL URL".into()))?;
        let user = resolve(
            opts.user().unwrap_or_default(),
            USER_MARK,
            settings.username,
        );
        let password = resolve(
            opts.pass().unwrap_or_default(),
            PASSWORD_MARK,
            settings.password,
        );
        let builder = mysql_async::OptsBuilder::from_opts(opts)
            .user(Some(user))
            .pass(Some(password))
            .prefer_socket(false);
        return Ok(builder.into());
    }
    // Go DSN: [user[:password]@][net[(addr)]]/dbname[?params]
    let (credentials, rest) = match url.rfind("@tcp(").or_else(|| url.rfind("@(")) {
        Some(at) => (&url[..at], &url[at + 1..]),
        None => ("", url),
    };
    let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
    let user = resolve(user, "{{username}}", settings.username);
    let password = resolve(password, "{{password}}", settings.password);
    let (address, database) = match rest.split_once('/') {
        Some((address, database)) => (address, database.split('?').next().unwrap_or_default()),
        None => (rest, ""),
    };
    let address = address
        .trim_start_matches("tcp")
        .trim_start_matches('(')
        .trim_end_matches(')');
    let (host, port) = match address.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse::<u16>()
                .map_err(|_| DbError::Config("invalid port in connection_url".into()))?,
        ),
        None if address.is_empty() => ("127.0.0.1", 3306),
        None => (address, 3306),
    };
    let builder = mysql_async::OptsBuilder::default()
        .ip_or_hostname(host.to_string())
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(password))
        .db_name(if database.is_empty() {
            None
        } else {
            Some(database.to_string())
        })
        .prefer_socket(false);
    Ok(builder.into())
}

fn pg_connect_error(e: tokio_postgres::Error) -> DbError {
    match e.as_db_error() {
        Some(db) => DbError::Connect(db.to_string()),
        None => DbError::Connect(e.to_string()),
    }
}

fn pg_statement_error(e: tokio_postgres::Error) -> DbError {
    match e.as_db_error() {
        Some(db) => DbError::Statement(db.to_string()),
        None if e.is_closed() => DbError::Connect(e.to_string()),
        None => DbError::Statement(e.to_string()),
    }
}

fn mysql_statement_error(e: mysql_async::Error) -> DbError {
    match e {
        mysql_async::Error::Server(server) => {
            DbError::Statement(format!("{} ({})", server.message, server.code))
        }
        mysql_async::Error::Io(io) => DbError::Connect(io.to_string()),
        other => DbError::Statement(other.to_string()),
    }
}

/// The connection URL with any literal password replaced, for reads of the config.
pub(crate) fn redact_url(url: &str) -> String {
    // key=value form: password=...
    if !url.contains("://") && !url.contains("@tcp(") && !url.contains("@(") {
        return url
            .split_whitespace()
            .map(|part| match part.split_once('=') {
                Some((key, value)) if key == "password" && value != "{{password}}" => {
                    "password=*****".to_string()
                }
                _ => part.to_string(),
            })
            .collect::<Vec<_>>()
            .join(" ");
    }
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let at = rest
        .rfind("@tcp(")
        .or_else(|| rest.rfind("@("))
        .or_else(|| rest.rfind('@'));
    let Some(at) = at else { return url.to_string() };
    let (credentials, tail) = rest.split_at(at);
    match credentials.split_once(':') {
        Some((user, password)) if password != "{{password}}" && !password.is_empty() => {
            format!("{scheme}{user}:*****{tail}")
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dialect: Dialect, url: &str) -> ConnectionSettings<'_> {
        ConnectionSettings {
            dialect,
            connection_url: url,
            username: "admin",
            password: "p@ss:w/rd?",
            max_open_connections: 2,
        }
    }

    #[test]
    fn postgres_urls_take_credentials_from_the_fields() {
        let config = pg_config(&settings(
            Dialect::Postgres,
            "postgresql://{{username}}:{{password}}@127.0.0.1:5432/app?sslmode=disable",
        ))
        .expect("url");
        assert_eq!(config.get_user(), Some("admin"));
        assert_eq!(config.get_password(), Some("p@ss:w/rd?".as_bytes()));
        assert_eq!(config.get_dbname(), Some("app"));
        let config = pg_config(&settings(
            Dialect::Postgres,
            "host=127.0.0.1 user={{username}} password={{password}}",
        ))
        .expect("dsn");
        assert_eq!(config.get_user(), Some("admin"));
        assert_eq!(config.get_dbname(), Some("postgres"));
    }

    #[test]
    fn mysql_go_dsns_and_urls() {
        let opts = mysql_opts(&settings(
            Dialect::Mysql,
            "{{username}}:{{password}}@tcp(127.0.0.1:3307)/app",
        ))
        .expect("dsn");
        assert_eq!(
            (opts.user(), opts.pass(), opts.tcp_port(), opts.db_name()),
            (Some("admin"), Some("p@ss:w/rd?"), 3307, Some("app"))
        );
        let opts =
            mysql_opts(&settings(Dialect::Mysql, "root:secret@tcp(localhost)/")).expect("literal");
        assert_eq!(
            (opts.user(), opts.pass(), opts.tcp_port()),
            (Some("root"), Some("secret"), 3306)
        );
        let opts = mysql_opts(&settings(
            Dialect::Mysql,
            "mysql://{{username}}:{{password}}@127.0.0.1:3306/x",
        ))
        .expect("url");
        assert_eq!(opts.user(), Some("admin"));
    }

    #[test]
    fn literal_passwords_are_redacted() {
        assert_eq!(
            redact_url("postgresql://u:hunter2@h:5432/db"),
            "postgresql://u:*****@h:5432/db"
        );
        assert_eq!(
            redact_url("root:hunter2@tcp(h:3306)/"),
            "root:*****@tcp(h:3306)/"
        );
        assert_eq!(
            redact_url("host=h user=u password=hunter2"),
            "host=h user=u password=*****"
        );
        let templated = "postgresql://{{username}}:{{password}}@h/db";
        assert_eq!(redact_url(templated), templated);
    }
}
