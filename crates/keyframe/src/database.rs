//! Connecting to Postgres: a pool sized for the process, and creating the database on a first
//! start.

use anyhow::Context as _;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection as _, PgPool};
use std::time::Duration;

/// A connection idle longer than this is pinged before it is handed out.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(10);

/// A pool sized for the process.
///
/// sqlx pings a connection before handing it out unless told not to: a round trip on the
/// request's path before every statement. (It also pings each connection it takes back, which
/// cannot be turned off in sqlx 0.8, but that happens after the request has its answer.) Here
/// only a connection that sat idle, the kind a Postgres restart or a network cut leaves dead, is
/// pinged first; a busy one that died fails its statement, which answers 503 and is closed.
pub async fn connect_pool(database_url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for < PING_WHEN_IDLE_FOR {
                    return Ok(true);
                }
                Ok(connection.ping().await.is_ok())
            })
        })
        .connect(database_url)
        .await
        .with_context(|| format!("connecting to Postgres at {}", redact(database_url)))
}

/// [`connect_pool`], first creating the database the URL names when it does not exist (as
/// `createdb` would, from the server's `postgres` database), so that a first `serve` or
/// `migrate` needs nothing made by hand. A role that may not create databases gets an
/// explanation of what to do instead.
pub async fn connect_pool_creating_database(database_url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    use sqlx::migrate::MigrateDatabase as _;
    match connect_pool(database_url, max_connections).await {
        Err(error) if sqlstate(&error).as_deref() == Some("3D000") => {
            let target = redact(database_url);
            match sqlx::Postgres::create_database(database_url).await {
                Ok(()) => tracing::info!(database = %target, "the database did not exist: created it"),
                // Another process created it at the same moment.
                Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P04") => {}
                Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42501") => anyhow::bail!(
                    "the database at {target} does not exist, and its role may not create databases: \
                     create it once (createdb, or CREATE DATABASE as a role that may), or grant the role \
                     CREATEDB"
                ),
                Err(create) => {
                    return Err(anyhow::Error::new(create)
                        .context(format!("the database at {target} does not exist; creating it failed")));
                }
            }
            connect_pool(database_url, max_connections).await
        }
        other => other,
    }
}

/// The SQLSTATE of the database error behind `error`, if there is one.
fn sqlstate(error: &anyhow::Error) -> Option<String> {
    match error.downcast_ref::<sqlx::Error>()? {
        sqlx::Error::Database(db) => db.code().map(std::borrow::Cow::into_owned),
        _ => None,
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
