//! `keyframe events export`: the log as NDJSON, one event per line in global-position order,
//! for auditors.
//!
//! An export holds every event committed before it began, and none of a transaction that could
//! still commit: it first waits (bounded) for the appends running when it began to end (see
//! [`crate::reader::append_fence`]). So it never shows a gap that a late commit fills
//! afterwards, and a transaction open elsewhere that never appends (another database's, say)
//! does not hold it back. An append still open when the wait runs out holds the export back to
//! that append's transaction, and the export says so.
//!
//! On SQLite, appends commit in position order, one at a time: the export holds the events up
//! to the newest committed when it began.

use crate::reader::{append_fence, committed_horizon, decode_all, event_columns};
use chrono::{DateTime, Utc};
use keyframe_database::{Backend, Database, Dialect};
use sqlx::PgPool;
use std::io::Write;
use std::time::{Duration, Instant};

/// Which part of the log to export; every bound is optional.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExportRange {
    /// First global position to include.
    pub from_position: Option<i64>,
    /// Earliest `recorded_at` to include.
    pub since: Option<DateTime<Utc>>,
    /// `recorded_at` before which to stop (exclusive).
    pub until: Option<DateTime<Utc>>,
}

/// Events read per statement.
const PAGE: i64 = 5_000;

/// Writes the range as NDJSON to `out`, reading in pages, after waiting up to `wait` for the
/// transactions running when it began; returns the number of events written.
pub async fn export(
    database: &Database,
    range: ExportRange,
    wait: Duration,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<u64> {
    // One end for the whole export, so pages agree on what had committed.
    let end = match database.reader() {
        Backend::Postgres(pool) => End::BelowTransaction(fence(pool, wait).await?),
        Backend::Sqlite(pool) => End::AtPosition(
            sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM events")
                .fetch_one(pool)
                .await?,
        ),
    };
    let mut after = range.from_position.map_or(0, |from| from - 1);
    let mut written = 0;
    loop {
        let events = page(database, &end, range, after).await?;
        for event in &events {
            after = event.global_position;
            serde_json::to_writer(&mut *out, event)?;
            out.write_all(b"\n")?;
            written += 1;
        }
        if (events.len() as i64) < PAGE {
            break;
        }
    }
    out.flush()?;
    Ok(written)
}

/// Where an export ends.
enum End {
    /// Postgres: below this transaction id (see [`fence`]).
    BelowTransaction(String),
    /// SQLite: at this position, the newest when the export began.
    AtPosition(i64),
}

/// Up to [`PAGE`] events of `range` after position `after`, before `end`.
async fn page(
    database: &Database,
    end: &End,
    range: ExportRange,
    after: i64,
) -> anyhow::Result<Vec<keyframe_domain::log::RecordedEvent>> {
    let rows = match (database.reader(), end) {
        (Backend::Postgres(pool), End::BelowTransaction(fence)) => {
            let sql = format!(
                "SELECT {} FROM events
                 WHERE global_position > $1
                   AND ($2::timestamptz IS NULL OR recorded_at >= $2)
                   AND ($3::timestamptz IS NULL OR recorded_at < $3)
                   AND tx_id < $4::text::xid8
                 ORDER BY global_position LIMIT $5",
                event_columns(Dialect::Postgres)
            );
            sqlx::query_as(&sql)
                .bind(after)
                .bind(range.since)
                .bind(range.until)
                .bind(fence)
                .bind(PAGE)
                .fetch_all(pool)
                .await?
        }
        (Backend::Sqlite(pool), End::AtPosition(newest)) => {
            // Times are RFC 3339 text in UTC, written by Keyframe: they compare as text.
            let sql = format!(
                "SELECT {} FROM events
                 WHERE global_position > $1
                   AND ($2 IS NULL OR recorded_at >= $2)
                   AND ($3 IS NULL OR recorded_at < $3)
                   AND global_position <= $4
                 ORDER BY global_position LIMIT $5",
                event_columns(Dialect::Sqlite)
            );
            sqlx::query_as(&sql)
                .bind(after)
                .bind(range.since)
                .bind(range.until)
                .bind(newest)
                .bind(PAGE)
                .fetch_all(pool)
                .await?
        }
        _ => anyhow::bail!("an export's end belongs to the database it began on"),
    };
    Ok(decode_all(rows)?)
}

/// The transaction id below which every append has ended: the first not yet finished when the
/// export began, once every append running then has ended; else, after `wait`, the oldest
/// append still running.
async fn fence(pool: &PgPool, wait: Duration) -> anyhow::Result<String> {
    let began = committed_horizon(pool).await?;
    let deadline = Instant::now() + wait;
    loop {
        let fence = append_fence(pool).await?;
        if fence >= began {
            return Ok(began.to_string());
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                oldest_append = fence,
                "an append open since before the export holds it back: events of that transaction \
                 and of those after it are left out"
            );
            return Ok(fence.to_string());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
