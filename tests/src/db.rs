//! A database of each test's own: created, migrated, dropped with the handle; and reading the event
//! log.

use crate::{block_on_cleanup, is_stale, unique};
use keyframe_database::Database;
use keyframe_database::sqlite::Access;
use keyframe_domain::log::RecordedEvent;
use sqlx::PgPool;
use std::path::PathBuf;

/// Where the shared servers are (overridable like the service's own settings).
pub fn admin_database_url() -> String {
    std::env::var("KEYFRAME_TEST_ADMIN_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database of the test's own, migrated, dropped when the handle drops.
pub struct TestDatabase {
    /// Its name.
    pub name: String,
    /// Its connection string.
    pub url: String,
    /// A pool on it.
    pub pool: PgPool,
    /// The same pool, as Keyframe's code takes it.
    pub database: Database,
}

impl TestDatabase {
    /// Creates and migrates a fresh database.
    pub async fn create() -> Self {
        let admin = PgPool::connect(&admin_database_url())
            .await
            .expect("connect to the admin database");
        sweep_stale_databases(&admin).await;
        let name = unique("kf_test_");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("create database");
        admin.close().await;
        let base = admin_database_url();
        let url = format!("{}/{name}", &base[..base.rfind('/').expect("database url has a path")]);
        let pool = PgPool::connect(&url).await.expect("connect to the test database");
        let database = Database::from(pool.clone());
        keyframe_database::schema::migrate(&database).await.expect("migrate");
        Self {
            name,
            url,
            pool,
            database,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // No `pool.close().await` first: on a current-thread test runtime the pool's connections
        // are driven by the very thread this drop blocks, so waiting for them never ends.
        // `WITH (FORCE)` ends those connections instead.
        block_on_cleanup(async move {
            if let Ok(admin) = PgPool::connect(&admin_database_url()).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&admin)
                    .await;
            }
        });
    }
}

/// An embedded (SQLite) database of the test's own, in a directory of its own, migrated,
/// removed when the handle drops.
pub struct EmbeddedDatabase {
    /// Its directory.
    pub dir: PathBuf,
    /// Its file.
    pub path: PathBuf,
    /// The handle on it (an application's, when one runs on it: one handle writes a file).
    pub database: Database,
}

impl EmbeddedDatabase {
    /// Creates and migrates a fresh database file.
    pub async fn create() -> Self {
        let (dir, path) = Self::place();
        let database = keyframe_database::sqlite::open(&path, Access::ReadWrite, 4)
            .await
            .expect("open the embedded database");
        keyframe_database::schema::migrate(&database).await.expect("migrate");
        Self { dir, path, database }
    }

    /// A directory of its own and the database file's path in it, not yet created.
    pub fn place() -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(unique("kf_embedded_"));
        std::fs::create_dir_all(&dir).expect("create the database's directory");
        let path = dir.join("keyframe.db");
        (dir, path)
    }
}

impl Drop for EmbeddedDatabase {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A database of the test's own on either backend: for the parts of Keyframe that must behave
/// alike on both.
pub enum TestStore {
    /// A Postgres database.
    Postgres(TestDatabase),
    /// An embedded SQLite database.
    Embedded(EmbeddedDatabase),
}

impl TestStore {
    /// A fresh Postgres database.
    pub async fn create_postgres() -> Self {
        Self::Postgres(TestDatabase::create().await)
    }

    /// A fresh embedded database.
    pub async fn create_embedded() -> Self {
        Self::Embedded(EmbeddedDatabase::create().await)
    }

    /// The Postgres database; a test that calls this needs Postgres (it panics on the embedded
    /// database).
    pub fn postgres(&self) -> &TestDatabase {
        match self {
            Self::Postgres(db) => db,
            Self::Embedded(_) => panic!("this test needs Postgres; it runs in the Postgres and NATS suite"),
        }
    }

    /// The handle Keyframe's code takes.
    pub fn database(&self) -> &Database {
        match self {
            Self::Postgres(db) => &db.database,
            Self::Embedded(db) => &db.database,
        }
    }

    /// Every committed event, in commit order.
    pub async fn all_events(&self) -> Vec<RecordedEvent> {
        keyframe_eventlog::reader::read_all_unfenced(self.database())
            .await
            .expect("read the log")
    }
}

/// Transactions that have an id but can never append to the log: one in another database of
/// the server and one in `pool`'s, left open as a forgotten `BEGIN` would be. Readers of the log
/// must not wait for either; dropping them rolls them back.
pub async fn transactions_that_cannot_append(
    pool: &PgPool,
) -> (
    sqlx::Transaction<'static, sqlx::Postgres>,
    sqlx::Transaction<'static, sqlx::Postgres>,
) {
    let elsewhere = PgPool::connect(&admin_database_url()).await.expect("admin database");
    let mut other_database = elsewhere.begin().await.expect("begin");
    let mut same_database = pool.begin().await.expect("begin");
    for transaction in [&mut other_database, &mut same_database] {
        sqlx::query("SELECT pg_current_xact_id()")
            .execute(&mut **transaction)
            .await
            .expect("an id");
    }
    (other_database, same_database)
}

/// A transaction that has appended one event (aggregate `Probe`, id `aggregate_id`) and stays
/// open until committed or dropped: readers of the log must wait for it.
pub async fn open_append(pool: &PgPool, aggregate_id: &str) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut open = pool.begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('Probe', $1, 1, 'ProbeRecorded', '1', '{}', '{}')",
    )
    .bind(aggregate_id)
    .execute(&mut *open)
    .await
    .expect("append");
    open
}

/// Every committed event in the database, in commit-safe order. Unfenced: call it once the
/// writes are done (an append a parallel test leaves open is no concern, but this needs no
/// fence at all).
pub async fn all_events(pool: &PgPool) -> Vec<RecordedEvent> {
    keyframe_eventlog::reader::read_all_unfenced(&Database::from(pool.clone()))
        .await
        .expect("read the log")
}

async fn sweep_stale_databases(admin: &PgPool) {
    let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'kf\\_test\\_%'")
        .fetch_all(admin)
        .await
        .unwrap_or_default();
    for name in names
        .into_iter()
        .filter(|name| is_stale(name.trim_start_matches("kf_test_")))
    {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(admin)
            .await;
    }
}
