//! The SQL databases Keyframe runs on, behind one handle: Postgres, for deployments that grow
//! past one machine, and an embedded SQLite file, for one process with nothing installed.
//!
//! Keyframe keeps one logic layer over both. A [`Database`] is either backend; the code that
//! queries it writes each statement once and lets [`portable!`] compile it for both, so the
//! compiler checks every bound value against both drivers (a Postgres array does not bind in
//! SQLite: such a statement does not compile, and gets a branch per dialect instead). Where a
//! dialect's SQL differs, or Postgres has a fast path (`unnest`, `= ANY`), the code matches on
//! [`Backend`] and says why.
//!
//! SQLite allows one writer at a time. The handle therefore keeps two pools for it: readers,
//! opened read-only, and a writer pool of one connection, so in-process writers queue for it
//! instead of failing with `SQLITE_BUSY` ([`Database::writer`], [`Database::begin`]). With the
//! log in WAL mode, readers never wait for the writer.
//!
//! - [`handle`]: the [`Database`] handle, its transactions and connections.
//! - [`sqlite`]: opening the embedded database file.
//! - [`schema`]: the migrations of each dialect, under `migrations/`.
//! - [`errors`]: what a driver's error means, in either dialect.
//! - [`lists`]: lists of values in one parameter, in either dialect.

pub mod errors;
pub mod handle;
pub mod lists;
pub mod schema;
pub mod sqlite;

pub use handle::{Connection, Database, Dialect, Transaction};

/// One of the two backends, holding whatever each needs: a pool, a connection, a transaction.
#[derive(Debug, Clone, Copy)]
pub enum Backend<P, S> {
    /// Postgres.
    Postgres(P),
    /// The embedded SQLite database.
    Sqlite(S),
}

impl<P, S> Backend<P, S> {
    /// Which dialect this is.
    pub fn dialect(&self) -> Dialect {
        match self {
            Self::Postgres(_) => Dialect::Postgres,
            Self::Sqlite(_) => Dialect::Sqlite,
        }
    }
}

/// Runs `body` with `handle` bound to whichever backend `backend` holds: the statement is
/// written once and compiled for each driver.
///
/// ```ignore
/// let count: i64 = portable!(db.reader(), pool => {
///     sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await
/// })?;
/// ```
#[macro_export]
macro_rules! portable {
    ($backend:expr, $handle:ident => $body:expr) => {
        match $backend {
            $crate::Backend::Postgres($handle) => $body,
            $crate::Backend::Sqlite($handle) => $body,
        }
    };
}
