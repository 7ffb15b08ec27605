//! The event repository behind cqrs-es: postgres-es's repository over the `events` table, with
//! its append replaced by a single statement that reports where the events landed.
//!
//! postgres-es appends with `BEGIN`, one `INSERT` per event and `COMMIT`, and the framework
//! cannot say where the events landed, so a command cost five round trips to Postgres (load,
//! begin, insert, commit, position query). Here the append is one `INSERT ... SELECT FROM
//! unnest(...) RETURNING global_position`: atomic on its own, and it hands the position back to
//! the [`crate::commands::CommandBus`] through a task-local, so a command costs two round trips.
//! Loading and streaming stay postgres-es's. Conflicts surface exactly as before: a unique
//! violation on `(aggregate_type, aggregate_id, sequence)` is an optimistic-lock error. There are
//! no snapshots (0.5.0's snapshot store applies events twice).

use cqrs_es::Aggregate;
use cqrs_es::persist::{PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot};
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::PgPool;
use std::cell::Cell;
use std::future::Future;

tokio::task_local! {
    /// The highest global position the current command appended, if any.
    static APPENDED: Cell<Option<i64>>;
}

/// Runs `command` and answers its output with the highest global position it appended.
pub(crate) async fn capture_appended<F: Future>(command: F) -> (F::Output, Option<i64>) {
    APPENDED
        .scope(Cell::new(None), async {
            let output = command.await;
            (output, APPENDED.with(Cell::get))
        })
        .await
}

/// The Postgres event repository.
pub struct PgEventRepository {
    postgres_es: PostgresEventRepository,
    pool: PgPool,
}

impl PgEventRepository {
    /// A repository over the `events` table in `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self {
            postgres_es: PostgresEventRepository::new(pool.clone()),
            pool,
        }
    }
}

fn persistence_error(error: sqlx::Error) -> PersistenceError {
    match &error {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") => PersistenceError::OptimisticLockError,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => {
            PersistenceError::ConnectionError(Box::new(error))
        }
        _ => PersistenceError::UnknownError(Box::new(error)),
    }
}

impl PersistedEventRepository for PgEventRepository {
    async fn get_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.postgres_es.get_events::<A>(aggregate_id).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.postgres_es.get_last_events::<A>(aggregate_id, last_sequence).await
    }

    async fn get_snapshot<A: Aggregate>(&self, _: &str) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        Ok(None)
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        if snapshot_update.is_some() {
            return Err(PersistenceError::UnknownError(
                "Keyframe's event store keeps no snapshots".into(),
            ));
        }
        if events.is_empty() {
            return Ok(());
        }
        let json = |value: &Value| value.to_string();
        let positions: Vec<i64> = sqlx::query_scalar(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             SELECT t, i, s, e, v, p::json, m::json
             FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[])
                 AS appended(t, i, s, e, v, p, m)
             RETURNING global_position",
        )
        .bind(events.iter().map(|e| e.aggregate_type.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.aggregate_id.as_str()).collect::<Vec<_>>())
        .bind(
            events
                .iter()
                .map(|e| i64::try_from(e.sequence).unwrap_or(i64::MAX))
                .collect::<Vec<_>>(),
        )
        .bind(events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.event_version.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| json(&e.payload)).collect::<Vec<_>>())
        .bind(events.iter().map(|e| json(&e.metadata)).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await
        .map_err(persistence_error)?;
        let newest = positions.into_iter().max();
        let _ = APPENDED.try_with(|cell| cell.set(newest));
        Ok(())
    }

    async fn stream_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<ReplayStream, PersistenceError> {
        self.postgres_es.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.postgres_es.stream_all_events::<A>().await
    }
}
