//! Running commands against the event store.
//!
//! A [`CommandBus`] wraps cqrs-es's framework over Keyframe's event repository
//! ([`crate::store`], appending through the group commit of [`crate::append`]; no snapshots,
//! since 0.5.0's snapshot store applies events twice). It stamps the metadata on every
//! event, retries optimistic-concurrency conflicts a bounded number of times with jitter, and
//! answers the global position of the aggregate's newest event so clients can read their writes.
//!
//! Within one process, commands for the same aggregate take turns (a lock per stripe of
//! aggregate ids) instead of racing: a hot aggregate (one user's credit ledger under many job
//! requests at once) then costs a queue, not a storm of conflicts that exhausts the retries.
//! Optimistic concurrency still guards against every other process.
//!
//! A bus may also keep aggregates in memory between commands ([`CommandBus::cached`]): a
//! command then reads only the events appended since (by any process) instead of the whole
//! history. Meant for aggregates that grow with use, like a credit ledger that gains events
//! with every job; the turn lock keeps one process's commands from racing on an entry.

use crate::metadata::CommandMetadata;
use crate::store::{EventRepository, capture_appended};
use crate::turns::Turns;
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{EventStoreAggregateContext, PersistedEventRepository, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateError, CqrsFramework, EventStore};
use keyframe_database::errors::database_unreachable;
use keyframe_database::{Database, portable};
use rand::Rng;
use std::collections::HashMap;
use std::sync::Mutex;
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
    /// The event store could not be reached.
    #[error("event store unreachable: {0}")]
    Unavailable(String),
    /// The event store failed otherwise (serialisation, an unexpected database error).
    #[error("event store: {0}")]
    Store(String),
}

impl<E: std::error::Error> CommandError<E> {
    fn from_store(error: AggregateError<E>) -> Self {
        match error {
            AggregateError::UserError(error) => Self::Rejected(error),
            AggregateError::AggregateConflict => Self::Conflict { attempts: 1 },
            AggregateError::DatabaseConnectionError(error) => Self::Unavailable(error.to_string()),
            other => Self::Store(other.to_string()),
        }
    }

    fn from_sqlx(error: sqlx::Error) -> Self {
        if database_unreachable(&error) {
            Self::Unavailable(error.to_string())
        } else {
            Self::Store(error.to_string())
        }
    }
}

/// Executes commands for one aggregate type.
pub struct CommandBus<A: Aggregate<Services = ()>> {
    cqrs: CqrsFramework<A, PersistedEventStore<EventRepository, A>>,
    store: PersistedEventStore<EventRepository, A>,
    database: Database,
    max_attempts: u32,
    turns: Turns,
    repository: EventRepository,
    cache: Option<AggregateCache<A>>,
}

/// Aggregates as of their last command here, with the sequence of their newest event; the
/// least recently used makes room when full.
struct AggregateCache<A> {
    entries: Mutex<CacheEntries<A>>,
    capacity: usize,
}

struct CacheEntries<A> {
    /// Id -> (aggregate, its newest sequence, when last used).
    by_id: HashMap<String, (A, usize, u64)>,
    clock: u64,
}

impl<A> AggregateCache<A> {
    fn take(&self, id: &str) -> Option<(A, usize)> {
        let (aggregate, sequence, _) = self.entries.lock().ok()?.by_id.remove(id)?;
        Some((aggregate, sequence))
    }

    fn put(&self, id: &str, aggregate: A, sequence: usize) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.by_id.len() >= self.capacity {
            // A scan, but only when full, and over a few thousand entries at most.
            let least_recent = entries
                .by_id
                .iter()
                .min_by_key(|(_, (_, _, used))| *used)
                .map(|(id, _)| id.clone());
            if let Some(id) = least_recent {
                entries.by_id.remove(&id);
            }
        }
        entries.clock += 1;
        let used = entries.clock;
        entries.by_id.insert(id.to_owned(), (aggregate, sequence, used));
    }
}

impl<A: Aggregate<Services = ()>> CommandBus<A> {
    /// A bus over the events table of `database`, with a group-commit writer of its own.
    pub fn new(database: Database) -> Self {
        Self::sharing(&EventRepository::new(database))
    }

    /// A bus that appends through `repository`'s writer: every bus of a process should share
    /// one, so that their commands' appends are committed together.
    pub fn sharing(repository: &EventRepository) -> Self {
        Self {
            store: PersistedEventStore::new_event_store(repository.another()),
            cqrs: CqrsFramework::new(
                PersistedEventStore::new_event_store(repository.another()),
                Vec::new(),
                (),
            ),
            database: repository.database().clone(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            turns: Turns::default(),
            repository: repository.another(),
            cache: None,
        }
    }

    /// This bus, trying each command up to `attempts` times when other writers got to the
    /// aggregate first (at least 1; [`DEFAULT_MAX_ATTEMPTS`] unless set). For aggregates that
    /// several processes change at once, like an organisation's credit ledger: each process
    /// takes its own commands in turns, but the processes still race each other, and the loser
    /// of a race retries while the winner goes straight on to its next command.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// This bus, keeping up to `capacity` aggregates in memory between commands (the least
    /// recently used makes room when full).
    pub fn cached(mut self, capacity: usize) -> Self {
        self.cache = Some(AggregateCache {
            entries: Mutex::new(CacheEntries {
                by_id: HashMap::new(),
                clock: 0,
            }),
            capacity: capacity.max(1),
        });
        self
    }

    /// Runs the command made by `command` against aggregate `id`, making it again for each retry
    /// after a conflict (the aggregate is reloaded in between). Returns the global position of
    /// the aggregate's newest event.
    pub async fn execute(
        &self,
        id: &str,
        command: impl FnMut() -> A::Command,
        metadata: &CommandMetadata,
    ) -> Result<i64, CommandError<A::Error>> {
        let outcome = self.execute_after_attempts(id, command, metadata, 0).await;
        count_command::<A>(&outcome);
        outcome
    }

    /// [`Self::execute`] when `attempts_made` attempts have already conflicted: they count
    /// towards the bound.
    async fn execute_after_attempts(
        &self,
        id: &str,
        mut command: impl FnMut() -> A::Command,
        metadata: &CommandMetadata,
        attempts_made: u32,
    ) -> Result<i64, CommandError<A::Error>> {
        let mut attempt = attempts_made;
        if attempt >= self.max_attempts {
            return Err(CommandError::Conflict { attempts: attempt });
        }
        let _turn = self.turns.take(id).await;
        loop {
            attempt += 1;
            let outcome = match &self.cache {
                Some(cache) => self.attempt_cached(cache, id, command(), metadata).await,
                None => capture_appended(self.cqrs.execute_with_metadata(id, command(), metadata.to_map())).await,
            };
            match outcome {
                (Ok(()), Some(appended)) => return Ok(appended),
                // The command was accepted but emitted nothing: answer where the aggregate stands.
                (Ok(()), None) => return self.newest_position(id).await,
                (Err(AggregateError::AggregateConflict), _) if attempt < self.max_attempts => {
                    // Spread the retries so the writers that collided do not collide again.
                    let jitter_ms = rand::rng().random_range(1..=5 * u64::from(attempt));
                    tokio::time::sleep(Duration::from_millis(jitter_ms)).await;
                }
                (Err(AggregateError::AggregateConflict), _) => {
                    return Err(CommandError::Conflict { attempts: attempt });
                }
                (Err(other), _) => return Err(CommandError::from_store(other)),
            }
        }
    }

    /// One attempt of a command against the cached aggregate brought up to date: the events
    /// appended after the cached sequence are applied first, then the command is handled and
    /// its events committed at that sequence (a conflict means someone appended meanwhile, and
    /// the entry is dropped). The entry is kept only when it is known to match the store.
    async fn attempt_cached(
        &self,
        cache: &AggregateCache<A>,
        id: &str,
        command: A::Command,
        metadata: &CommandMetadata,
    ) -> (Result<(), AggregateError<A::Error>>, Option<i64>) {
        let (mut aggregate, mut sequence) = cache.take(id).unwrap_or_default();
        let newer = match self.repository.get_last_events::<A>(id, sequence).await {
            Ok(events) => events,
            Err(error) => return (Err(error.into()), None),
        };
        for event in newer {
            match serde_json::from_value::<A::Event>(event.payload) {
                Ok(payload) => aggregate.apply(payload),
                Err(error) => return (Err(AggregateError::DeserializationError(Box::new(error))), None),
            }
            sequence = event.sequence;
        }
        let sink = EventSink::default();
        if let Err(error) = aggregate.handle(command, &(), &sink).await {
            // Refused before writing anything (the usual case, say too few credits): the
            // aggregate is as stored and stays cached. Refused after writing, it holds events
            // that were never stored: dropped.
            if sink.collect().await.is_empty() {
                cache.put(id, aggregate, sequence);
            }
            return (Err(AggregateError::UserError(error)), None);
        }
        let events = sink.collect().await;
        if events.is_empty() {
            cache.put(id, aggregate, sequence);
            return (Ok(()), None);
        }
        let appended_count = events.len();
        // The context's aggregate only feeds snapshots, which this store does not keep.
        let context = EventStoreAggregateContext {
            aggregate_id: id.to_owned(),
            aggregate: A::default(),
            current_sequence: sequence,
            current_snapshot: None,
        };
        let (committed, appended) = capture_appended(self.store.commit(events, context, metadata.to_map())).await;
        if committed.is_ok() {
            cache.put(id, aggregate, sequence + appended_count);
        }
        (committed.map(drop), appended)
    }

    /// Runs a command that starts aggregate `id`, an id the caller has just generated, without
    /// loading it first: a new aggregate has no events, so the load would only cost a round trip.
    /// The events get the same envelopes and metadata as [`Self::execute`] gives them. Should the
    /// id exist after all, the append's unique key refuses sequence 1 and the command runs again
    /// the ordinary way, so the aggregate itself answers (typically "already exists"); that
    /// first attempt counts towards the retry bound.
    pub async fn execute_new(
        &self,
        id: &str,
        command: impl FnMut() -> A::Command,
        metadata: &CommandMetadata,
    ) -> Result<i64, CommandError<A::Error>> {
        let outcome = self.execute_new_uncounted(id, command, metadata).await;
        count_command::<A>(&outcome);
        outcome
    }

    async fn execute_new_uncounted(
        &self,
        id: &str,
        mut command: impl FnMut() -> A::Command,
        metadata: &CommandMetadata,
    ) -> Result<i64, CommandError<A::Error>> {
        let mut aggregate = A::default();
        let sink = EventSink::default();
        aggregate
            .handle(command(), &(), &sink)
            .await
            .map_err(CommandError::Rejected)?;
        let events = sink.collect().await;
        let fresh = EventStoreAggregateContext {
            aggregate_id: id.to_owned(),
            aggregate,
            current_sequence: 0,
            current_snapshot: None,
        };
        match capture_appended(self.store.commit(events, fresh, metadata.to_map())).await {
            (Ok(_), Some(appended)) => Ok(appended),
            (Ok(_), None) => self.newest_position(id).await,
            (Err(AggregateError::AggregateConflict), _) => self.execute_after_attempts(id, command, metadata, 1).await,
            (Err(other), _) => Err(CommandError::from_store(other)),
        }
    }

    /// The global position of the aggregate's newest event (0 when it has none): where a
    /// client reads its writes from after a command that changed nothing.
    pub async fn newest_position(&self, id: &str) -> Result<i64, CommandError<A::Error>> {
        portable!(self.database.reader(), pool => {
            sqlx::query_scalar(
                "SELECT global_position FROM events WHERE aggregate_type = $1 AND aggregate_id = $2
                 ORDER BY sequence DESC LIMIT 1",
            )
            .bind(A::TYPE)
            .bind(id)
            .fetch_optional(pool)
            .await
        })
        .map(Option::unwrap_or_default)
        .map_err(CommandError::from_sqlx)
    }

    /// The aggregate's current state. On a cached bus, from the cached copy brought up to date
    /// with the events appended since (by any process), which it then keeps; else as
    /// [`Self::load`] folds it.
    pub async fn load_current(&self, id: &str) -> Result<Option<A>, CommandError<A::Error>>
    where
        A: Clone,
    {
        let Some(cache) = &self.cache else {
            return self.load(id).await;
        };
        // Taken out while it is brought up to date: a command meanwhile starts from the store,
        // and whichever puts its copy back last leaves one that is right as of its sequence.
        let (mut aggregate, mut sequence) = cache.take(id).unwrap_or_default();
        let newer = self
            .repository
            .get_last_events::<A>(id, sequence)
            .await
            .map_err(|error| CommandError::from_store(error.into()))?;
        for event in newer {
            let payload = serde_json::from_value::<A::Event>(event.payload)
                .map_err(|error| CommandError::Store(format!("reading {id}'s events: {error}")))?;
            aggregate.apply(payload);
            sequence = event.sequence;
        }
        if sequence == 0 {
            return Ok(None);
        }
        cache.put(id, aggregate.clone(), sequence);
        Ok(Some(aggregate))
    }

    /// The aggregate's current state, folded from its events; `None` when it has none.
    pub async fn load(&self, id: &str) -> Result<Option<A>, CommandError<A::Error>> {
        let events = self.store.load_events(id).await.map_err(CommandError::from_store)?;
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

/// Counts a command in `keyframe_commands_total` by aggregate and outcome: `ok`, `rejected`
/// (the aggregate refused it), `conflict` (optimistic concurrency, retries spent) or `error`.
fn count_command<A: Aggregate>(outcome: &Result<i64, CommandError<A::Error>>) {
    let outcome = match outcome {
        Ok(_) => "ok",
        Err(CommandError::Rejected(_)) => "rejected",
        Err(CommandError::Conflict { .. }) => "conflict",
        Err(_) => "error",
    };
    metrics::counter!("keyframe_commands_total", "aggregate" => A::TYPE, "outcome" => outcome).increment(1);
}
