//! Durable readers of the log inside a process: where each stands, kept in
//! `consumer_checkpoints`, so that after a restart it resumes there. What JetStream's durable
//! consumers keep for a deployment with NATS, for one without.
//!
//! A reader saves the position of the last event it is done with, having done with every
//! event before it too; it may then handle some events again after a restart (those after
//! the checkpoint it had done with), so what it does must be safe to repeat.

use crate::reader::{LogPosition, sqlite_tx_id};
use keyframe_database::{Backend, Connection, Database, portable};

/// Where `consumer` stands, if it has saved a position.
pub async fn load(database: &Database, consumer: &str) -> Result<Option<LogPosition>, sqlx::Error> {
    let row: Option<(String, i64)> = portable!(database.reader(), pool => {
        sqlx::query_as("SELECT CAST(tx_id AS TEXT), global_position FROM consumer_checkpoints WHERE consumer = $1")
            .bind(consumer)
            .fetch_optional(pool)
            .await
    })?;
    Ok(row.and_then(|(tx, global_position)| {
        Some(LogPosition {
            tx_id: tx.parse().ok()?,
            global_position,
        })
    }))
}

/// Every reader that has saved a position, and where it stands, by name.
pub async fn all(database: &Database) -> Result<Vec<(String, LogPosition)>, sqlx::Error> {
    let rows: Vec<(String, String, i64)> = portable!(database.reader(), pool => {
        sqlx::query_as("SELECT consumer, CAST(tx_id AS TEXT), global_position FROM consumer_checkpoints ORDER BY consumer")
            .fetch_all(pool)
            .await
    })?;
    Ok(rows
        .into_iter()
        .filter_map(|(consumer, tx, global_position)| {
            let tx_id = tx.parse().ok()?;
            Some((consumer, LogPosition { tx_id, global_position }))
        })
        .collect())
}

/// Saves that `consumer` is done with everything up to `position` (never moving it back).
pub async fn save(database: &Database, consumer: &str, position: LogPosition) -> Result<(), sqlx::Error> {
    let mut tx = database.begin().await?;
    advance(tx.conn(), "consumer_checkpoints", "consumer", consumer, position).await?;
    tx.commit().await
}

/// Moves the position kept for `name` in `table` (keyed by `key`; the projectors' checkpoints
/// and these readers' share the shape) to `position`, never back, inside the caller's
/// transaction. `table` and `key` are Keyframe's own names, never input.
pub(crate) async fn advance(
    conn: Connection<'_>,
    table: &str,
    key: &str,
    name: &str,
    position: LogPosition,
) -> Result<(), sqlx::Error> {
    let moves_forward =
        format!("WHERE ({table}.tx_id, {table}.global_position) < (excluded.tx_id, excluded.global_position)");
    match conn {
        Backend::Postgres(conn) => {
            sqlx::query(&format!(
                "INSERT INTO {table} ({key}, tx_id, global_position) VALUES ($1, $2::text::xid8, $3)
                 ON CONFLICT ({key}) DO UPDATE SET tx_id = excluded.tx_id,
                     global_position = excluded.global_position, updated_at = now()
                 {moves_forward}"
            ))
            .bind(name)
            .bind(position.tx_id.to_string())
            .bind(position.global_position)
            .execute(conn)
            .await?;
        }
        Backend::Sqlite(conn) => {
            sqlx::query(&format!(
                "INSERT INTO {table} ({key}, tx_id, global_position, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT ({key}) DO UPDATE SET tx_id = excluded.tx_id,
                     global_position = excluded.global_position, updated_at = excluded.updated_at
                 {moves_forward}"
            ))
            .bind(name)
            .bind(sqlite_tx_id(position))
            .bind(position.global_position)
            .bind(keyframe_domain::clock::now())
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

/// The position just before `event`'s: a reader that resumes there reads `event` again.
pub fn just_before(event: LogPosition) -> LogPosition {
    LogPosition {
        tx_id: event.tx_id,
        global_position: event.global_position - 1,
    }
}
