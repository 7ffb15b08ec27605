//! `keyframe events export`: the log as NDJSON, one event per line in global-position order,
//! for auditors.
//!
//! An export holds every event committed before it began, and none of a transaction that could
//! still commit: it first waits (bounded) for the appends running when it began to end (see
//! [`crate::reader::append_fence`]). So it never shows a gap that a late commit fills
//! afterwards, and a transaction open elsewhere that never appends (another database's, say)
//! does not hold it back. An append still open when the wait runs out holds the export back to
//! that append's transaction, and the export says so.

use crate::reader::{EVENT_COLUMNS, append_fence, committed_horizon, decode};
use chrono::{DateTime, Utc};
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

/// Writes the range as NDJSON to `out`, reading in pages, after waiting up to `wait` for the
/// transactions running when it began; returns the number of events written.
pub async fn export(
    pool: &PgPool,
    range: ExportRange,
    wait: Duration,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<u64> {
    const PAGE: i64 = 5_000;
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events
         WHERE global_position > $1
           AND ($2::timestamptz IS NULL OR recorded_at >= $2)
           AND ($3::timestamptz IS NULL OR recorded_at < $3)
           AND tx_id < $4::text::xid8
         ORDER BY global_position LIMIT $5"
    );
    // One fence for the whole export, so pages agree on what had committed.
    let fence = fence(pool, wait).await?;
    let mut after = range.from_position.map_or(0, |from| from - 1);
    let mut written = 0;
    loop {
        let rows = sqlx::query(&sql)
            .bind(after)
            .bind(range.since)
            .bind(range.until)
            .bind(&fence)
            .bind(PAGE)
            .fetch_all(pool)
            .await?;
        for row in &rows {
            let event = decode(row)?;
            after = event.global_position;
            serde_json::to_writer(&mut *out, &event)?;
            out.write_all(b"\n")?;
            written += 1;
        }
        if (rows.len() as i64) < PAGE {
            break;
        }
    }
    out.flush()?;
    Ok(written)
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
