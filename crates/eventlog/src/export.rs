//! `keyframe events export`: the log as NDJSON, one event per line in global-position order,
//! for auditors. Only events below the oldest running transaction are written, so an export
//! never shows a gap that a late commit would fill afterwards.

use crate::reader::{EVENT_COLUMNS, decode};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::io::Write;

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

/// Writes the range as NDJSON to `out`, reading in pages; returns the number of events written.
pub async fn export(pool: &PgPool, range: ExportRange, out: &mut (dyn Write + Send)) -> anyhow::Result<u64> {
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
    let fence: String = sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
        .fetch_one(pool)
        .await?;
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
