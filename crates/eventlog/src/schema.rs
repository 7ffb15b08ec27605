//! The database schema: the SQL migrations under `migrations/`, embedded in the binary.

use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};

/// Every migration Keyframe has, in order.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// Applies the migrations not yet applied; safe to run from several processes at once
/// (sqlx serialises them with an advisory lock).
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    MIGRATOR.run(pool).await
}
