//! Reading the global log in commit-safe order.
//!
//! `global_position` is handed out at insert and becomes visible at commit, so a transaction
//! that commits late can surface *behind* a cursor that only counts positions. Readers here
//! order by `(tx_id, global_position)` and only read below the [append fence](append_fence):
//! the oldest transaction that can still append to the log. Nothing can ever appear behind
//! their cursor.
//!
//! The fence is not `pg_snapshot_xmin`, the oldest transaction running anywhere on the Postgres
//! server: one `BEGIN` left open in another database, or in Keyframe's own by a tool that never
//! touches `events`, would hold every reader back for as long as it stays open, and with them
//! the read models, job dispatch and billing.
//!
//! On SQLite one connection writes, so positions become visible in order and the log is read
//! by position alone; `tx_id` numbers the appends there, in the same order, so a
//! [`LogPosition`] means the same thing in both.

use chrono::{DateTime, Utc};
use keyframe_database::{Backend, Connection, Database, Dialect, portable};
use keyframe_domain::log::RecordedEvent;
use serde_json::value::RawValue;
use sqlx::PgPool;
use sqlx::types::Json;
use std::collections::HashMap;

/// A place in the commit-safe order of the log. Orders by transaction, then position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPosition {
    /// The writing transaction's id (`xid8`).
    pub tx_id: u64,
    /// The event's global position.
    pub global_position: i64,
}

impl LogPosition {
    /// The position of an event.
    pub fn of(event: &RecordedEvent) -> Self {
        Self {
            tx_id: event.tx_id,
            global_position: event.global_position,
        }
    }
}

/// A position's transaction number as SQLite's `INTEGER` holds it (appends are numbered from
/// 1, far below `i64::MAX`).
pub(crate) fn sqlite_tx_id(position: LogPosition) -> i64 {
    i64::try_from(position.tx_id).unwrap_or(i64::MAX)
}

/// The columns every reader selects, as [`EventRecord`] reads them. The transaction id comes
/// as text (sqlx has no `xid8`) under another name: an output column called `tx_id` would make
/// `ORDER BY tx_id` sort the text, putting transaction 10 before 9.
pub(crate) fn event_columns(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => {
            "global_position, tx_id::text AS tx_id_text, aggregate_type, aggregate_id, \
             sequence, event_type, event_version, payload::text AS payload, metadata, recorded_at"
        }
        Dialect::Sqlite => {
            "global_position, CAST(tx_id AS TEXT) AS tx_id_text, aggregate_type, aggregate_id, \
             sequence, event_type, event_version, payload, metadata, recorded_at"
        }
    }
}

/// A row selected with [`event_columns`].
#[derive(sqlx::FromRow)]
pub(crate) struct EventRecord {
    global_position: i64,
    tx_id_text: String,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: String,
    metadata: Json<HashMap<String, String>>,
    recorded_at: DateTime<Utc>,
}

impl TryFrom<EventRecord> for RecordedEvent {
    type Error = sqlx::Error;

    fn try_from(row: EventRecord) -> Result<Self, sqlx::Error> {
        Ok(RecordedEvent {
            global_position: row.global_position,
            tx_id: row.tx_id_text.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            aggregate_type: row.aggregate_type,
            aggregate_id: row.aggregate_id,
            sequence: row.sequence,
            event_type: row.event_type,
            event_version: row.event_version,
            payload: RawValue::from_string(row.payload).map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            metadata: row.metadata.0,
            recorded_at: row.recorded_at,
        })
    }
}

/// Turns rows selected with [`event_columns`] into events.
pub(crate) fn decode_all(rows: Vec<EventRecord>) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    rows.into_iter().map(RecordedEvent::try_from).collect()
}

/// The append fence: a transaction id below which no transaction can append to the log any
/// more. Every event with a `tx_id` below it that will ever exist is committed and visible to
/// a statement that starts after this one has answered.
///
/// It is the oldest running transaction that holds a write lock on `events`, or, if none does,
/// the snapshot's `xmax` (no transaction id at or above it had finished when the snapshot was
/// taken). Why no appender is missed, for a transaction T with id x below the fence:
/// - x was assigned before this statement's snapshot (x < `xmax`);
/// - T took its lock on `events` before x was assigned: an INSERT locks its table before it
///   runs, and `migrations/postgres/0014_append_fence.sql` refuses an append from a transaction that
///   had an id already (its events must be the first thing it writes);
/// - so if T were still running when `pg_locks` is read (after the snapshot), it would hold
///   that lock, be listed, and the fence would be at most x. It is not, so T had ended before
///   this statement finished, and any statement that starts afterwards sees its commit.
///
/// Hence the two statements: the fence first, the read after. One statement would read with a
/// snapshot older than the lock table it consulted.
///
/// Running transaction ids come from the snapshot as `xid8`; `pg_locks` shows 32-bit ids, which
/// are compared modulo 2^32 (running transactions are never 2^31 ids apart).
pub async fn append_fence(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let fence: String = sqlx::query_scalar(APPEND_FENCE).fetch_one(pool).await?;
    fence.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

const APPEND_FENCE: &str = "
    WITH snapshot AS (SELECT pg_current_snapshot() AS taken),
    locks AS MATERIALIZED (
        SELECT locktype, database, relation, transactionid, virtualtransaction, mode, granted FROM pg_locks
    ),
    appenders AS (
        SELECT own.transactionid::text::bigint AS xid32
        FROM locks held JOIN locks own ON own.virtualtransaction = held.virtualtransaction
        WHERE held.locktype = 'relation' AND held.granted
          AND held.database = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND held.relation = 'events'::regclass
          AND held.mode IN ('RowExclusiveLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
          AND own.locktype = 'transactionid' AND own.mode = 'ExclusiveLock' AND own.granted
    )
    SELECT least(
        pg_snapshot_xmax(taken),
        (SELECT min(running) FROM pg_snapshot_xip(taken) AS running
         WHERE (running::text::numeric % 4294967296)::bigint IN (SELECT xid32 FROM appenders))
    )::text
    FROM snapshot";

/// The first transaction id not yet finished: every transaction that has committed so far is
/// below it. A reader that must include everything committed before it started waits until
/// [`append_fence`] reaches this.
pub async fn committed_horizon(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let horizon: String = sqlx::query_scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text")
        .fetch_one(pool)
        .await?;
    horizon.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// Up to `limit` (at least 1) committed events after `after`, in commit-safe order, never
/// passing a transaction that can still append (see [`append_fence`]).
///
/// The limit is written into the statement, not bound: for `LIMIT $n` Postgres must guess the
/// limit when it weighs a reusable plan, and either plans every call afresh or settles on a
/// plan made for a tenth of the table. Each caller passes one fixed batch size, so a
/// connection prepares one statement per caller.
///
/// On SQLite every event visible is committed and in order: the read is by position.
pub async fn read_committed_after(
    database: &Database,
    after: LogPosition,
    limit: i64,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    match database.reader() {
        Backend::Postgres(pool) => {
            let fence = append_fence(pool).await?;
            read_below(pool, after, fence, limit).await
        }
        Backend::Sqlite(pool) => {
            let sql = format!(
                "SELECT {} FROM events WHERE global_position > $1 ORDER BY global_position LIMIT {}",
                event_columns(Dialect::Sqlite),
                limit.max(1)
            );
            decode_all(sqlx::query_as(&sql).bind(after.global_position).fetch_all(pool).await?)
        }
    }
}

/// Up to `limit` (at least 1) events after `after` written by transactions below `fence`, in
/// commit-safe order. `fence` must come from [`append_fence`], asked before this read.
pub async fn read_below(
    pool: &PgPool,
    after: LogPosition,
    fence: u64,
    limit: i64,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    let sql = format!(
        "SELECT {} FROM events
         WHERE (tx_id, global_position) > ($1::text::xid8, $2)
           AND tx_id < $3::text::xid8
         ORDER BY tx_id, global_position
         LIMIT {}",
        event_columns(Dialect::Postgres),
        limit.max(1)
    );
    let rows = sqlx::query_as(&sql)
        .bind(after.tx_id.to_string())
        .bind(after.global_position)
        .bind(fence.to_string())
        .fetch_all(pool)
        .await?;
    decode_all(rows)
}

/// Every event visible now, in commit-safe order, without the fence: for tests and checks
/// that run once writing has stopped.
pub async fn read_all_unfenced(database: &Database) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    let sql = format!(
        "SELECT {} FROM events ORDER BY tx_id, global_position",
        event_columns(database.dialect())
    );
    let rows = portable!(database.reader(), pool => sqlx::query_as(&sql).fetch_all(pool).await)?;
    decode_all(rows)
}

/// Whether committed events after `after` exist that the fence still holds back (an older
/// append is running). The relay then looks again shortly instead of waiting for a
/// notification that an unrelated transaction will never send.
pub async fn held_back_after(pool: &PgPool, after: LogPosition) -> Result<bool, sqlx::Error> {
    Ok(count_after(&Database::from(pool.clone()), after, 1).await? > 0)
}

/// Committed events after `after`, fence or no fence, counted up to `cap` (at least 1) so the
/// answer stays cheap however many there are.
///
/// Counted as "the first `cap` events after `after`, in index order", with the cap written into
/// the statement. As `EXISTS (...)`, or with a bound `LIMIT $n`, the planner expected a third
/// of the table to match and chose a sequential scan; when nothing matches, the usual answer
/// for a relay that has caught up, that scan read the whole log: 26 ms at 200,000 events,
/// against 0.02 ms on the index.
pub async fn count_after(database: &Database, after: LogPosition, cap: i64) -> Result<i64, sqlx::Error> {
    match database.reader() {
        Backend::Postgres(pool) => {
            let sql = format!(
                "SELECT count(*) FROM (
                     SELECT 1 FROM events WHERE (tx_id, global_position) > ($1::text::xid8, $2)
                     ORDER BY tx_id, global_position LIMIT {}
                 ) pending",
                cap.max(1)
            );
            sqlx::query_scalar(&sql)
                .bind(after.tx_id.to_string())
                .bind(after.global_position)
                .fetch_one(pool)
                .await
        }
        Backend::Sqlite(pool) => {
            let sql = format!(
                "SELECT count(*) FROM (SELECT 1 FROM events WHERE global_position > $1 LIMIT {}) pending",
                cap.max(1)
            );
            sqlx::query_scalar(&sql)
                .bind(after.global_position)
                .fetch_one(pool)
                .await
        }
    }
}

/// Seconds since the first event after `after` in commit order was written (0 when none).
pub async fn oldest_after(database: &Database, after: LogPosition) -> Result<f64, sqlx::Error> {
    // The first event after a position in commit order is the oldest one there (its
    // `recorded_at` is its transaction's start, which for Keyframe's appends is the commit's).
    let oldest: Option<f64> = match database.reader() {
        // Measured by the database's clock, which wrote `recorded_at`.
        Backend::Postgres(pool) => {
            sqlx::query_scalar(
                "SELECT extract(epoch FROM clock_timestamp() - recorded_at)::float8 FROM events
                 WHERE (tx_id, global_position) > ($1::text::xid8, $2)
                 ORDER BY tx_id, global_position LIMIT 1",
            )
            .bind(after.tx_id.to_string())
            .bind(after.global_position)
            .fetch_optional(pool)
            .await?
        }
        // Written by this process's clock.
        Backend::Sqlite(pool) => {
            let recorded: Option<DateTime<Utc>> = sqlx::query_scalar(
                "SELECT recorded_at FROM events WHERE global_position > $1 ORDER BY global_position LIMIT 1",
            )
            .bind(after.global_position)
            .fetch_optional(pool)
            .await?;
            recorded.map(|at| (keyframe_domain::clock::now() - at).as_seconds_f64())
        }
    };
    Ok(oldest.unwrap_or(0.0).max(0.0))
}

/// One aggregate's events with sequence in `(after_sequence, up_to_sequence)`, in order: fills a
/// gap when an event arrives before its predecessors.
pub async fn aggregate_events_between(
    mut conn: Connection<'_>,
    aggregate_type: &str,
    aggregate_id: &str,
    after_sequence: i64,
    before_sequence: i64,
) -> Result<Vec<RecordedEvent>, sqlx::Error> {
    let sql = format!(
        "SELECT {} FROM events
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 AND sequence < $4
         ORDER BY sequence",
        event_columns(conn.dialect())
    );
    let rows = portable!(conn.reborrow(), conn => {
        sqlx::query_as(&sql)
            .bind(aggregate_type)
            .bind(aggregate_id)
            .bind(after_sequence)
            .bind(before_sequence)
            .fetch_all(conn)
            .await
    })?;
    decode_all(rows)
}

/// The newest event of type `event_type` of one aggregate, if it has one.
pub async fn newest_event_of(
    database: &Database,
    aggregate_type: &str,
    aggregate_id: &str,
    event_type: &str,
) -> Result<Option<RecordedEvent>, sqlx::Error> {
    let sql = format!(
        "SELECT {} FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND event_type = $3
         ORDER BY sequence DESC LIMIT 1",
        event_columns(database.dialect())
    );
    let row: Option<EventRecord> = portable!(database.reader(), pool => {
        sqlx::query_as(&sql)
            .bind(aggregate_type)
            .bind(aggregate_id)
            .bind(event_type)
            .fetch_optional(pool)
            .await
    })?;
    row.map(RecordedEvent::try_from).transpose()
}

/// The commit-order position of the event at `global_position`, if it exists.
pub async fn position_of(database: &Database, global_position: i64) -> Result<Option<LogPosition>, sqlx::Error> {
    let tx_id: Option<String> = portable!(database.reader(), pool => {
        sqlx::query_scalar("SELECT CAST(tx_id AS TEXT) FROM events WHERE global_position = $1")
            .bind(global_position)
            .fetch_optional(pool)
            .await
    })?;
    Ok(tx_id
        .and_then(|tx| tx.parse().ok())
        .map(|tx_id| LogPosition { tx_id, global_position }))
}

/// Where the log ends for a reader starting now: every event committed so far is at or before
/// it, and every event committed from now on is after it. On SQLite, the newest event; on
/// Postgres, just below the [append fence](append_fence), since a transaction at or above it
/// may still commit (what it commits is then after this position).
pub async fn log_end(database: &Database) -> Result<LogPosition, sqlx::Error> {
    match database.reader() {
        Backend::Postgres(pool) => Ok(LogPosition {
            tx_id: append_fence(pool).await?.saturating_sub(1),
            global_position: i64::MAX,
        }),
        Backend::Sqlite(pool) => {
            let newest: Option<(String, i64)> = sqlx::query_as(
                "SELECT CAST(tx_id AS TEXT), global_position FROM events ORDER BY global_position DESC LIMIT 1",
            )
            .fetch_optional(pool)
            .await?;
            Ok(newest
                .and_then(|(tx, global_position)| {
                    Some(LogPosition {
                        tx_id: tx.parse().ok()?,
                        global_position,
                    })
                })
                .unwrap_or_default())
        }
    }
}

/// The number of events in the log.
pub async fn count_events(database: &Database) -> Result<i64, sqlx::Error> {
    portable!(database.reader(), pool => {
        sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await
    })
}
