//! `keyframe events import`: an export (NDJSON, as [`crate::export`] writes it) written into an
//! empty event store, so a deployment moves from one database to another (the embedded SQLite
//! to Postgres, typically). The read models are then rebuilt from it (`keyframe replay --all`).
//!
//! Every event keeps its global position, its aggregate and sequence, its type, version,
//! payload, metadata and recording time: an auditor's export of the new store reads as the old
//! one's, and clients' positions (`x-keyframe-position`) keep their meaning. What is not kept
//! is the transaction id: it belongs to the store that wrote the event, and the new store
//! numbers its own (in the order of the import, which is the log's).
//!
//! The import refuses a store that already holds events, and lines that are not events or whose
//! positions do not increase. It writes a batch per transaction, each leaving the store whole
//! (on Postgres the position sequence moves past the batch in the same transaction, so new
//! appends never collide with imported positions); should it stop part-way, it says how many
//! events it wrote, and the operator imports again into an empty database.

use crate::reader::count_events;
use anyhow::Context as _;
use keyframe_database::{Backend, Database};
use keyframe_domain::log::RecordedEvent;
use std::io::BufRead;

/// Events written per transaction.
const BATCH: usize = 1_000;

/// Writes the events read from `input` into `database`'s empty log; answers how many it wrote,
/// calling `progress` with the count after each batch.
pub async fn import(
    database: &Database,
    input: &mut (dyn BufRead + Send),
    progress: &mut (dyn FnMut(u64) + Send),
) -> anyhow::Result<u64> {
    let existing = count_events(database).await?;
    anyhow::ensure!(
        existing == 0,
        "the database already holds {existing} events: import into a database that holds none"
    );
    let mut written = 0_u64;
    let imported = import_lines(database, input, progress, &mut written).await;
    imported.with_context(|| {
        format!(
            "the import stopped after writing {written} events: the database holds part of the log; \
             import again into an empty database"
        )
    })?;
    Ok(written)
}

async fn import_lines(
    database: &Database,
    input: &mut (dyn BufRead + Send),
    progress: &mut (dyn FnMut(u64) + Send),
    written: &mut u64,
) -> anyhow::Result<()> {
    let mut batch = Vec::with_capacity(BATCH);
    let mut previous = 0_i64;
    let mut batches = 0_i64;
    for (index, line) in input.lines().enumerate() {
        let number = index + 1;
        let line = line.with_context(|| format!("reading line {number}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let event: RecordedEvent =
            serde_json::from_str(&line).with_context(|| format!("line {number} is not an exported event"))?;
        anyhow::ensure!(
            event.global_position > previous,
            "line {number}: position {} does not come after {previous}; an export lists the log in order",
            event.global_position
        );
        previous = event.global_position;
        batch.push(event);
        if batch.len() == BATCH {
            batches += 1;
            *written += write(database, &batch, batches).await?;
            batch.clear();
            progress(*written);
        }
    }
    if !batch.is_empty() {
        batches += 1;
        *written += write(database, &batch, batches).await?;
        progress(*written);
    }
    Ok(())
}

/// Writes one batch in one transaction; `number` numbers it among the batches (SQLite's
/// transaction id of its events).
async fn write(database: &Database, events: &[RecordedEvent], number: i64) -> anyhow::Result<u64> {
    let metadata: Vec<String> = events
        .iter()
        .map(|event| serde_json::to_string(&event.metadata))
        .collect::<Result<_, _>>()?;
    let mut tx = database.begin().await?;
    match tx.conn() {
        Backend::Postgres(conn) => {
            sqlx::query(
                "INSERT INTO events (global_position, aggregate_type, aggregate_id, sequence, event_type,
                     event_version, payload, metadata, recorded_at)
                 OVERRIDING SYSTEM VALUE
                 SELECT g, t, i, s, e, v, p::json, m::json, r
                 FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::timestamptz[]) AS imported(g, t, i, s, e, v, p, m, r)",
            )
            .bind(events.iter().map(|event| event.global_position).collect::<Vec<_>>())
            .bind(
                events
                    .iter()
                    .map(|event| event.aggregate_type.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(
                events
                    .iter()
                    .map(|event| event.aggregate_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(events.iter().map(|event| event.sequence).collect::<Vec<_>>())
            .bind(events.iter().map(|event| event.event_type.as_str()).collect::<Vec<_>>())
            .bind(
                events
                    .iter()
                    .map(|event| event.event_version.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(events.iter().map(|event| event.payload.get()).collect::<Vec<_>>())
            .bind(&metadata)
            .bind(events.iter().map(|event| event.recorded_at).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await
            .context("writing the events")?;
            // New appends go on after the imported positions, from this batch's commit on.
            sqlx::query("SELECT setval(pg_get_serial_sequence('events', 'global_position'), $1)")
                .bind(events.iter().map(|event| event.global_position).max().unwrap_or(1))
                .execute(conn)
                .await
                .context("moving the position sequence past the imported events")?;
        }
        Backend::Sqlite(conn) => {
            for (event, metadata) in events.iter().zip(&metadata) {
                sqlx::query(
                    "INSERT INTO events (global_position, aggregate_type, aggregate_id, sequence, event_type,
                         event_version, payload, metadata, tx_id, recorded_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(event.global_position)
                .bind(&event.aggregate_type)
                .bind(&event.aggregate_id)
                .bind(event.sequence)
                .bind(&event.event_type)
                .bind(&event.event_version)
                .bind(event.payload.get())
                .bind(metadata)
                .bind(number)
                .bind(event.recorded_at)
                .execute(&mut *conn)
                .await
                .with_context(|| format!("writing event {}", event.global_position))?;
            }
        }
    }
    tx.commit().await?;
    Ok(events.len() as u64)
}
