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
//!
//! After an append has committed, the repository wakes the relay with `NOTIFY`, from outside the
//! appending transaction: a NOTIFY inside it would serialise every commit in the database (see
//! `migrations/0005_notify_after_commit.sql`). The wake-ups are coalesced, one in flight at a
//! time per command bus, so a burst of appends costs a few extra statements, not one per append.

use crate::relay::NOTIFY_CHANNEL;
use cqrs_es::Aggregate;
use cqrs_es::persist::{PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot};
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlx::PgPool;
use std::cell::Cell;
use std::future::Future;
use tokio::sync::mpsc;

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

/// Wakes the relay after appends: at most one `NOTIFY` in flight, however many appends ring.
#[derive(Clone)]
struct RelayWake(mpsc::Sender<()>);

impl RelayWake {
    /// Starts the task that sends the notifications; it ends when the last handle is dropped.
    fn spawn(pool: PgPool) -> Self {
        // Capacity one: a ring while a NOTIFY is pending or in flight folds into the next one.
        let (ring, mut rung) = mpsc::channel::<()>(1);
        tokio::spawn(async move {
            while rung.recv().await.is_some() {
                // A wake-up lost in a crash costs only latency (the relay polls), so this
                // statement's commit need not wait for the WAL flush.
                let sent = sqlx::query("SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, '')")
                    .bind(NOTIFY_CHANNEL)
                    .execute(&pool)
                    .await;
                if let Err(error) = sent {
                    tracing::debug!(%error, "waking the relay failed; it will find the events by polling");
                }
            }
        });
        Self(ring)
    }

    fn ring(&self) {
        // Full means a wake-up is already pending; closed means the runtime is shutting down.
        let _ = self.0.try_send(());
    }
}

/// The Postgres event repository.
pub struct PgEventRepository {
    postgres_es: PostgresEventRepository,
    pool: PgPool,
    wake: RelayWake,
}

impl PgEventRepository {
    /// A repository over the `events` table in `pool`. Must be called inside a Tokio runtime: it
    /// starts the task that wakes the relay.
    pub fn new(pool: PgPool) -> Self {
        let wake = RelayWake::spawn(pool.clone());
        Self::sharing(pool, wake)
    }

    fn sharing(pool: PgPool, wake: RelayWake) -> Self {
        Self {
            postgres_es: PostgresEventRepository::new(pool.clone()),
            pool,
            wake,
        }
    }

    /// A second repository on the same pool that shares this one's relay wake-ups.
    pub fn another(&self) -> Self {
        Self::sharing(self.pool.clone(), self.wake.clone())
    }
}

/// Whether `error` means Postgres could not be reached or dropped the connection (a restart, an
/// administrator ending it, the network), as opposed to refusing the statement: the caller
/// should answer "unavailable, try again", not report a bug.
pub fn database_unreachable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        // Connection exceptions, and the server ending or refusing connections (57P01 is a
        // shutdown or `pg_terminate_backend`). Not 08P01 (a protocol violation is a bug) nor
        // 57014 (a cancelled statement).
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            matches!(
                code.as_ref(),
                "08000" | "08001" | "08003" | "08004" | "08006" | "57P01" | "57P02" | "57P03"
            )
        }),
        _ => false,
    }
}

fn persistence_error(error: sqlx::Error) -> PersistenceError {
    let unique_violation = matches!(&error, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"));
    if unique_violation {
        PersistenceError::OptimisticLockError
    } else if database_unreachable(&error) {
        PersistenceError::ConnectionError(Box::new(error))
    } else {
        PersistenceError::UnknownError(Box::new(error))
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
        self.wake.ring();
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
