//! The event repository behind cqrs-es: postgres-es's repository over the `events` table, with
//! its append replaced by Keyframe's own.
//!
//! postgres-es appends with `BEGIN`, one `INSERT` per event and `COMMIT`, and the framework
//! cannot say where the events landed, so a command cost five round trips to Postgres (load,
//! begin, insert, commit, position query). Here a command's events go through the group-commit
//! [`Appender`]: one `INSERT ... SELECT FROM unnest(...) RETURNING`, atomic on its own and shared
//! with whatever other commands are waiting, which answers the events' global positions. The
//! newest reaches the command bus through a task-local. Loading and
//! streaming stay postgres-es's. Conflicts surface exactly as before: a unique violation on
//! `(aggregate_type, aggregate_id, sequence)` is an optimistic-lock error. There are no
//! snapshots (0.5.0's snapshot store applies events twice).

use crate::append::{AppendError, Appender, DEFAULT_WRITERS, EventRow};
use crate::outage::database_unreachable;
use crate::wake::LocalRelay;
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
    appender: Appender,
}

impl PgEventRepository {
    /// A repository over the `events` table in `pool`. Must be called inside a Tokio runtime: it
    /// starts the group-commit writer. Its appends wake the relay with `NOTIFY`.
    pub fn new(pool: PgPool) -> Self {
        Self::with_writers(pool, DEFAULT_WRITERS, LocalRelay::default())
    }

    /// [`Self::new`] with at most `writers` append statements in flight, waking `local_relay`
    /// directly while that relay leads.
    pub fn with_writers(pool: PgPool, writers: usize, local_relay: LocalRelay) -> Self {
        let appender = Appender::spawn(pool.clone(), writers, local_relay);
        Self::sharing(pool, appender)
    }

    fn sharing(pool: PgPool, appender: Appender) -> Self {
        Self {
            postgres_es: PostgresEventRepository::new(pool.clone()),
            pool,
            appender,
        }
    }

    /// A second repository on the same pool that shares this one's writer, so appends through
    /// either are committed together.
    pub fn another(&self) -> Self {
        Self::sharing(self.pool.clone(), self.appender.clone())
    }

    /// The pool it reads and writes through.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// postgres-es counts a connection its server ended (SQLSTATE 57P01) as an unknown error; count
/// it as the connection error it is, so the caller answers "unavailable" rather than a bug.
fn reclassify(error: PersistenceError) -> PersistenceError {
    match error {
        PersistenceError::UnknownError(error)
            if error.downcast_ref::<sqlx::Error>().is_some_and(database_unreachable) =>
        {
            PersistenceError::ConnectionError(error)
        }
        other => other,
    }
}

impl PersistedEventRepository for PgEventRepository {
    async fn get_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.postgres_es.get_events::<A>(aggregate_id).await.map_err(reclassify)
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.postgres_es
            .get_last_events::<A>(aggregate_id, last_sequence)
            .await
            .map_err(reclassify)
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
        let rows = events
            .iter()
            .map(|event| EventRow {
                aggregate_type: event.aggregate_type.clone(),
                aggregate_id: event.aggregate_id.clone(),
                sequence: i64::try_from(event.sequence).unwrap_or(i64::MAX),
                event_type: event.event_type.clone(),
                event_version: event.event_version.clone(),
                payload: event.payload.to_string(),
                metadata: event.metadata.to_string(),
            })
            .collect();
        let newest = self.appender.append(rows).await.map_err(|error| match error {
            AppendError::Conflict => PersistenceError::OptimisticLockError,
            AppendError::Unreachable(_) => PersistenceError::ConnectionError(Box::new(error)),
            AppendError::Failed(_) => PersistenceError::UnknownError(Box::new(error)),
        })?;
        let _ = APPENDED.try_with(|cell| cell.set(Some(newest)));
        Ok(())
    }

    async fn stream_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<ReplayStream, PersistenceError> {
        self.postgres_es.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.postgres_es.stream_all_events::<A>().await
    }
}
