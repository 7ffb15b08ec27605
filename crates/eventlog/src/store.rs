//! The event repository behind cqrs-es, over the `events` table of either database.
//!
//! A command's events go through the group-commit [`Appender`]: on Postgres one
//! `INSERT ... SELECT FROM unnest(...) RETURNING`, atomic on its own and shared with whatever
//! other commands are waiting; on SQLite one transaction of the writing connection. Either way
//! the append answers the events' global positions, and the newest reaches the command bus
//! through a task-local. (postgres-es, which this replaced, appended with `BEGIN`, one `INSERT`
//! per event and `COMMIT`, and could not say where the events landed: five round trips a
//! command.) Conflicts surface as the framework expects: a unique violation on
//! `(aggregate_type, aggregate_id, sequence)` is an optimistic-lock error. There are no
//! snapshots (cqrs-es 0.5.0's snapshot store applies events twice).

use crate::append::{AppendError, Appender, DEFAULT_WRITERS, EventRow};
use crate::wake::LocalRelay;
use cqrs_es::Aggregate;
use cqrs_es::persist::{PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot};
use keyframe_database::errors::database_unreachable;
use keyframe_database::{Database, portable};
use serde_json::Value;
use sqlx::types::Json;
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

/// The event repository.
pub struct EventRepository {
    database: Database,
    appender: Appender,
}

impl EventRepository {
    /// A repository over the `events` table of `database`. Must be called inside a Tokio
    /// runtime: it starts the group-commit writer. Its appends wake the relay with `NOTIFY`.
    pub fn new(database: Database) -> Self {
        Self::with_writers(database, DEFAULT_WRITERS, LocalRelay::default())
    }

    /// [`Self::new`] with at most `writers` append statements in flight, waking `local_relay`
    /// directly while that relay leads.
    pub fn with_writers(database: Database, writers: usize, local_relay: LocalRelay) -> Self {
        let appender = Appender::spawn(database.clone(), writers, local_relay);
        Self { database, appender }
    }

    /// A second repository on the same database that shares this one's writer, so appends
    /// through either are committed together.
    pub fn another(&self) -> Self {
        Self {
            database: self.database.clone(),
            appender: self.appender.clone(),
        }
    }

    /// The database it reads and writes.
    pub fn database(&self) -> &Database {
        &self.database
    }

    /// The aggregate's events after `after_sequence`, in order.
    async fn events_after(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        after_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let after_sequence = i64::try_from(after_sequence).unwrap_or(i64::MAX);
        let rows: Vec<StoredEvent> = portable!(self.database.reader(), pool => {
            sqlx::query_as(
                "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata
                 FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3
                 ORDER BY sequence",
            )
            .bind(aggregate_type)
            .bind(aggregate_id)
            .bind(after_sequence)
            .fetch_all(pool)
            .await
        })
        .map_err(persistence_error)?;
        Ok(rows.into_iter().map(StoredEvent::into_serialized).collect())
    }

    /// The aggregate's events as a stream cqrs-es replays from.
    async fn replay_stream(&self, aggregate_type: &str, aggregate_id: &str) -> Result<ReplayStream, PersistenceError> {
        let events = self.events_after(aggregate_type, aggregate_id, 0).await?;
        let (mut feed, stream) = ReplayStream::new(events.len().max(1));
        tokio::spawn(async move {
            for event in events {
                if feed.push(Ok(event)).await.is_err() {
                    return; // the reader went away
                }
            }
        });
        Ok(stream)
    }
}

/// An event as `events` stores it, for cqrs-es.
#[derive(sqlx::FromRow)]
struct StoredEvent {
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: Json<Value>,
    metadata: Json<Value>,
}

impl StoredEvent {
    fn into_serialized(self) -> SerializedEvent {
        SerializedEvent {
            aggregate_id: self.aggregate_id,
            sequence: usize::try_from(self.sequence).unwrap_or_default(),
            aggregate_type: self.aggregate_type,
            event_type: self.event_type,
            event_version: self.event_version,
            payload: self.payload.0,
            metadata: self.metadata.0,
        }
    }
}

/// A database error as cqrs-es classifies it: an outage is a connection error, so the caller
/// answers "unavailable" rather than reporting a bug.
fn persistence_error(error: sqlx::Error) -> PersistenceError {
    if database_unreachable(&error) {
        PersistenceError::ConnectionError(Box::new(error))
    } else {
        PersistenceError::UnknownError(Box::new(error))
    }
}

impl PersistedEventRepository for EventRepository {
    async fn get_events<A: Aggregate>(&self, aggregate_id: &str) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.events_after(A::TYPE, aggregate_id, 0).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        self.events_after(A::TYPE, aggregate_id, last_sequence).await
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
        self.replay_stream(A::TYPE, aggregate_id).await
    }

    /// Not offered: Keyframe rebuilds read models from the global log (`keyframe events
    /// replay`), not through cqrs-es's per-type replay, and one stream of every aggregate of a
    /// type would have to hold them all in memory here.
    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        Err(PersistenceError::UnknownError(
            format!("streaming every {} is not offered; replay from the global log", A::TYPE).into(),
        ))
    }
}
