//! Running commands against the event store.
//!
//! A [`CommandBus`] wraps cqrs-es's framework over Keyframe's event repository
//! ([`crate::store`]: postgres-es's, appending in one statement; no snapshots, since 0.5.0's
//! snapshot store applies events twice). It stamps the metadata on every event, retries
//! optimistic-concurrency conflicts a bounded number of times with jitter, and answers the global
//! position of the aggregate's newest event so clients can read their writes.

use crate::metadata::CommandMetadata;
use crate::store::{PgEventRepository, capture_appended};
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateError, CqrsFramework, EventStore};
use rand::Rng;
use sqlx::PgPool;
use std::time::Duration;

/// How often a command is tried when another writer got to the aggregate first.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// Why a command did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    /// The aggregate refused it: a domain rule.
    #[error(transparent)]
    Rejected(E),
    /// Other writers kept changing the aggregate; every attempt conflicted.
    #[error("the aggregate kept changing; gave up after {attempts} attempts")]
    Conflict {
        /// How many attempts were made.
        attempts: u32,
    },
    /// The event store failed (connection, serialisation).
    #[error("event store: {0}")]
    Store(String),
}

/// Executes commands for one aggregate type.
pub struct CommandBus<A: Aggregate<Services = ()>> {
    cqrs: CqrsFramework<A, PersistedEventStore<PgEventRepository, A>>,
    store: PersistedEventStore<PgEventRepository, A>,
    pool: PgPool,
    max_attempts: u32,
}

impl<A: Aggregate<Services = ()>> CommandBus<A> {
    /// A bus over the events table in `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self {
            cqrs: CqrsFramework::new(
                PersistedEventStore::new_event_store(PgEventRepository::new(pool.clone())),
                Vec::new(),
                (),
            ),
            store: PersistedEventStore::new_event_store(PgEventRepository::new(pool.clone())),
            pool,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }

    /// Runs the command made by `command` against aggregate `id`, making it again for each retry
    /// after a conflict (the aggregate is reloaded in between). Returns the global position of
    /// the aggregate's newest event.
    pub async fn execute(
        &self,
        id: &str,
        mut command: impl FnMut() -> A::Command,
        metadata: &CommandMetadata,
    ) -> Result<i64, CommandError<A::Error>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let execution = self.cqrs.execute_with_metadata(id, command(), metadata.to_map());
            match capture_appended(execution).await {
                (Ok(()), Some(appended)) => return Ok(appended),
                // The command was accepted but emitted nothing: answer where the aggregate stands.
                (Ok(()), None) => break,
                (Err(AggregateError::AggregateConflict), _) if attempt < self.max_attempts => {
                    // Spread the retries so the writers that collided do not collide again.
                    let jitter_ms = rand::rng().random_range(1..=5 * u64::from(attempt));
                    tokio::time::sleep(Duration::from_millis(jitter_ms)).await;
                }
                (Err(AggregateError::AggregateConflict), _) => {
                    return Err(CommandError::Conflict { attempts: attempt });
                }
                (Err(AggregateError::UserError(error)), _) => return Err(CommandError::Rejected(error)),
                (Err(other), _) => return Err(CommandError::Store(other.to_string())),
            }
        }
        sqlx::query_scalar(
            "SELECT global_position FROM events WHERE aggregate_type = $1 AND aggregate_id = $2
             ORDER BY sequence DESC LIMIT 1",
        )
        .bind(A::TYPE)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map(Option::unwrap_or_default)
        .map_err(|e| CommandError::Store(e.to_string()))
    }

    /// The aggregate's current state, folded from its events; `None` when it has none.
    pub async fn load(&self, id: &str) -> Result<Option<A>, CommandError<A::Error>> {
        let events = self
            .store
            .load_events(id)
            .await
            .map_err(|e| CommandError::Store(e.to_string()))?;
        if events.is_empty() {
            return Ok(None);
        }
        let mut aggregate = A::default();
        for envelope in events {
            aggregate.apply(envelope.payload);
        }
        Ok(Some(aggregate))
    }
}
