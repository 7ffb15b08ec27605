//! The [`Database`] handle: a Postgres pool, or the embedded SQLite database's reader and writer
//! pools; its transactions and connections.

use crate::Backend;
use sqlx::{PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool};
use std::fs::File;
use std::sync::{Arc, Mutex, PoisonError};

/// The SQL dialect a database speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// SQLite.
    Sqlite,
}

impl Dialect {
    /// Its name, for logs and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        }
    }
}

/// Keyframe's database. Cheap to clone: clones share the pools.
#[derive(Debug, Clone)]
pub struct Database(Backend<PgPool, EmbeddedPools>);

/// The embedded database's pools.
#[derive(Debug, Clone)]
pub(crate) struct EmbeddedPools {
    /// Read-only connections, as many as the process reads with at once.
    pub(crate) readers: SqlitePool,
    /// The one connection that writes.
    pub(crate) writer: SqlitePool,
    /// The lock file that keeps other processes from writing, held until the handle is closed
    /// or its last clone dropped (absent on a read-only handle).
    lock: Arc<Mutex<Option<File>>>,
}

impl From<PgPool> for Database {
    fn from(pool: PgPool) -> Self {
        Self(Backend::Postgres(pool))
    }
}

impl Database {
    pub(crate) fn embedded(readers: SqlitePool, writer: SqlitePool, lock: Option<File>) -> Self {
        Self(Backend::Sqlite(EmbeddedPools {
            readers,
            writer,
            lock: Arc::new(Mutex::new(lock)),
        }))
    }

    /// Which dialect it speaks.
    pub fn dialect(&self) -> Dialect {
        self.0.dialect()
    }

    /// Where statements that only read go. On SQLite, a read-only connection: a write through
    /// it fails (`attempt to write a readonly database`) instead of competing with the writer.
    pub fn reader(&self) -> Backend<&PgPool, &SqlitePool> {
        match &self.0 {
            Backend::Postgres(pool) => Backend::Postgres(pool),
            Backend::Sqlite(pools) => Backend::Sqlite(&pools.readers),
        }
    }

    /// Where statements that write go, each in a transaction of its own. On SQLite, the one
    /// writing connection: writers take turns for it.
    pub fn writer(&self) -> Backend<&PgPool, &SqlitePool> {
        match &self.0 {
            Backend::Postgres(pool) => Backend::Postgres(pool),
            Backend::Sqlite(pools) => Backend::Sqlite(&pools.writer),
        }
    }

    /// The Postgres pool, for the parts that exist only with Postgres (the relay's `LISTEN`,
    /// the commit fence); `None` on SQLite.
    pub fn postgres(&self) -> Option<&PgPool> {
        match &self.0 {
            Backend::Postgres(pool) => Some(pool),
            Backend::Sqlite(_) => None,
        }
    }

    /// Opens a transaction that may write. On SQLite it waits for the writing connection and
    /// takes the write lock at once ([`crate::sqlite::BEGIN_WRITE`]).
    pub async fn begin(&self) -> Result<Transaction, sqlx::Error> {
        Ok(Transaction(match &self.0 {
            Backend::Postgres(pool) => Backend::Postgres(pool.begin().await?),
            Backend::Sqlite(pools) => Backend::Sqlite(pools.writer.begin_with(crate::sqlite::BEGIN_WRITE).await?),
        }))
    }

    /// Connections open and, of those, idle, over every pool.
    pub fn connections(&self) -> (u32, usize) {
        match &self.0 {
            Backend::Postgres(pool) => (pool.size(), idle(pool)),
            Backend::Sqlite(pools) => (
                pools.readers.size() + pools.writer.size(),
                idle(&pools.readers) + idle(&pools.writer),
            ),
        }
    }

    /// Closes every connection, waiting for those in use to come back; on SQLite it then lets
    /// go of the file, which another process may open from then on.
    pub async fn close(&self) {
        match &self.0 {
            Backend::Postgres(pool) => pool.close().await,
            Backend::Sqlite(pools) => {
                pools.readers.close().await;
                pools.writer.close().await;
                pools.lock.lock().unwrap_or_else(PoisonError::into_inner).take();
            }
        }
    }
}

/// A transaction that may write; rolled back when dropped uncommitted.
#[derive(Debug)]
pub struct Transaction(Backend<sqlx::Transaction<'static, Postgres>, sqlx::Transaction<'static, Sqlite>>);

impl Transaction {
    /// Its connection, for statements inside it.
    pub fn conn(&mut self) -> Connection<'_> {
        match &mut self.0 {
            Backend::Postgres(tx) => Backend::Postgres(&mut **tx),
            Backend::Sqlite(tx) => Backend::Sqlite(&mut **tx),
        }
    }

    /// Commits it.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self.0 {
            Backend::Postgres(tx) => tx.commit().await,
            Backend::Sqlite(tx) => tx.commit().await,
        }
    }
}

/// A connection of either backend, borrowed: what code that runs inside someone else's
/// transaction (a read model applying events) is given.
pub type Connection<'c> = Backend<&'c mut PgConnection, &'c mut SqliteConnection>;

impl Connection<'_> {
    /// The same connection, borrowed for one statement, so it can be used again after.
    pub fn reborrow(&mut self) -> Connection<'_> {
        match self {
            Backend::Postgres(conn) => Backend::Postgres(&mut **conn),
            Backend::Sqlite(conn) => Backend::Sqlite(&mut **conn),
        }
    }
}

/// A pool's idle connections, never more than it has. sqlx counts them apart from its queue:
/// a connection handed back is queued before the count goes up, so a taker in between brings
/// the count below zero for a moment, which reads as `usize::MAX` (a scrape of `/metrics` under
/// load met it, and adding two such counts overflowed).
fn idle<DB: sqlx::Database>(pool: &sqlx::Pool<DB>) -> usize {
    pool.num_idle().min(pool.size() as usize)
}
