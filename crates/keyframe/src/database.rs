//! Connecting to the database: Postgres (a pool sized for the process, the database created on a
//! first start) or the embedded SQLite file.

use anyhow::Context as _;
use keyframe_database::Database;
use keyframe_database::sqlite::Access;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection as _, PgPool};
use std::path::{Path, PathBuf};
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

/// Which database a process uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    /// A Postgres server, by connection string.
    Postgres(String),
    /// The embedded SQLite database, by file.
    Sqlite(PathBuf),
}

impl DatabaseTarget {
    /// The file the embedded database lives in under a data directory.
    pub const EMBEDDED_FILE: &str = "keyframe.db";

    /// The database `url` names (`postgres://...`, `postgresql://...`, `sqlite://<path>` or
    /// `sqlite:<path>`); without one, the embedded database under `data_dir`.
    pub fn from_url(url: Option<&str>, data_dir: &Path) -> anyhow::Result<Self> {
        let Some(url) = url.map(str::trim).filter(|url| !url.is_empty()) else {
            return Ok(Self::Sqlite(data_dir.join(Self::EMBEDDED_FILE)));
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        match url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            Some(path) if !path.is_empty() => Ok(Self::Sqlite(PathBuf::from(path))),
            _ => anyhow::bail!(
                "DATABASE_URL must name Postgres (postgres://user@host/database) or an SQLite file \
                 (sqlite://path/to/keyframe.db), or be unset for the embedded database under the data directory"
            ),
        }
    }

    /// Opens it to read and write (creating the Postgres database or the SQLite file when
    /// missing), with up to `max_connections` connections.
    pub async fn open(&self, max_connections: u32) -> anyhow::Result<Database> {
        match self {
            Self::Postgres(url) => Ok(connect_pool_creating_database(url, max_connections).await?.into()),
            Self::Sqlite(path) => Ok(keyframe_database::sqlite::open(path, Access::ReadWrite, max_connections).await?),
        }
    }

    /// Opens it only to read, beside a process that may be writing (an export).
    pub async fn open_to_read(&self, max_connections: u32) -> anyhow::Result<Database> {
        match self {
            Self::Postgres(url) => Ok(connect_pool(url, max_connections).await?.into()),
            Self::Sqlite(path) => {
                anyhow::ensure!(path.exists(), "there is no embedded database at {}", path.display());
                Ok(keyframe_database::sqlite::open(path, Access::ReadOnly, max_connections).await?)
            }
        }
    }

    /// Where it is, for messages (without a password).
    pub fn describe(&self) -> String {
        match self {
            Self::Postgres(url) => redact(url),
            Self::Sqlite(path) => path.display().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_url_is_the_embedded_database_and_a_url_names_its_kind() {
        let data = Path::new("/srv/keyframe");
        assert_eq!(
            DatabaseTarget::from_url(None, data).expect("embedded"),
            DatabaseTarget::Sqlite(PathBuf::from("/srv/keyframe/keyframe.db"))
        );
        assert_eq!(
            DatabaseTarget::from_url(Some("  "), data).expect("embedded"),
            DatabaseTarget::Sqlite(PathBuf::from("/srv/keyframe/keyframe.db"))
        );
        assert_eq!(
            DatabaseTarget::from_url(Some("postgres://kf@db/keyframe"), data).expect("postgres"),
            DatabaseTarget::Postgres("postgres://kf@db/keyframe".to_owned())
        );
        assert_eq!(
            DatabaseTarget::from_url(Some("sqlite:///var/lib/keyframe.db"), data).expect("sqlite"),
            DatabaseTarget::Sqlite(PathBuf::from("/var/lib/keyframe.db"))
        );
        assert_eq!(
            DatabaseTarget::from_url(Some("sqlite:local.db"), data).expect("sqlite"),
            DatabaseTarget::Sqlite(PathBuf::from("local.db"))
        );
        let refused = DatabaseTarget::from_url(Some("mysql://db/keyframe"), data).expect_err("not supported");
        assert!(refused.to_string().contains("postgres://"), "{refused}");
    }
}
