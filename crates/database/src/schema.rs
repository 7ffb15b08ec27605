//! The schema of each dialect: the SQL migrations under `migrations/postgres/` and
//! `migrations/sqlite/`, embedded in the binary. Every table is defined there, in both.

use crate::{Backend, Database};
use sqlx::migrate::{MigrateError, Migrator};

/// Every Postgres migration, in order.
pub static POSTGRES: Migrator = sqlx::migrate!("../../migrations/postgres");

/// Every SQLite migration, in order.
pub static SQLITE: Migrator = sqlx::migrate!("../../migrations/sqlite");

/// Applies the migrations not yet applied. On Postgres it is safe to run from several
/// processes at once (sqlx serialises them with an advisory lock); on SQLite one process
/// writes the file.
pub async fn migrate(database: &Database) -> Result<(), MigrateError> {
    match database.writer() {
        Backend::Postgres(pool) => POSTGRES.run(pool).await,
        Backend::Sqlite(pool) => SQLITE.run(pool).await,
    }
}
