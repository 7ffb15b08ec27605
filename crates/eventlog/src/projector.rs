//! The projector runtime: feeds every read model of the deployment from one [`Feed`], rebuilds
//! a read model from the event store, and lets queries wait for it to reach a client's write.
//!
//! One runtime applies at a time (on Postgres, an advisory lock held by its connection is the
//! lease; on SQLite, one process opens the database), and it applies each delivery to every read model that cares in one transaction on
//! that connection, with their checkpoints, before the feed acknowledges it: each event is
//! delivered and acked once, not once per read model.
//!
//! Exactly-once effect on top of at-least-once delivery: per delivery, the runtime asks each
//! projection for the last sequence it applied to each aggregate (kept in its rows), skips
//! events at or below it, fills a gap above it from the event store, lets the projection apply
//! the rest in order and advances the checkpoints. A checkpoint means "everything up to here is
//! applied", which read-your-writes relies on.
//!
//! A read model is *in step* when it has applied everything the feed has delivered so far. One
//! that is not (at start, after a replay of it, after a failure of its own) first catches up
//! from the event store, in commit-safe order, and only then takes deliveries again; until then
//! the others go on. A replay holds its read model's lock, so the runtime sees it, leaves that
//! read model alone meanwhile and catches it up from where the replay ended. A read model whose
//! events fail to apply (a bug, a value its tables refuse) stops alone: the error is logged, it
//! is tried again with a growing pause, its checkpoint stands still, and `/health/ready` turns
//! unavailable once its lag passes the bound.

use crate::feed::Feed;
use crate::reader::{
    LogPosition, aggregate_events_between, append_fence, committed_horizon, position_of, read_committed_after,
    sqlite_tx_id,
};
use anyhow::Context as _;
use keyframe_database::errors::database_unreachable;
use keyframe_database::lists::text_list;
use keyframe_database::{Backend, Connection, Database, Transaction, portable};
use keyframe_domain::log::RecordedEvent;
use keyframe_projections::{Projection, ProjectionError};
use sqlx::{Executor as _, PgConnection, PgPool, Row};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Advisory-lock key of the runtime that applies ("kfproj" in ASCII).
const LEADER_LOCK_KEY: i64 = 0x0000_6b66_7072_6f6a;

/// Feeds the read models from a [`Feed`].
pub struct Projector<F> {
    database: Database,
    feed: F,
    projections: Vec<Arc<dyn Projection>>,
    settings: ProjectorSettings,
}

/// Tuning for the runtime.
#[derive(Debug, Clone, Copy)]
pub struct ProjectorSettings {
    /// Events read from the event store per transaction while a read model catches up.
    pub catch_up_batch: i64,
    /// The first pause before a read model that failed is tried again; it doubles up to a minute.
    pub first_retry: Duration,
}

impl Default for ProjectorSettings {
    fn default() -> Self {
        Self {
            catch_up_batch: 2_000,
            first_retry: Duration::from_millis(500),
        }
    }
}

/// How long to wait for a delivery when every read model is in step (then look anyway).
const IDLE_WAIT: Duration = Duration::from_secs(60);

/// How long to wait for a delivery while a read model is out of step (a replay holds it, or
/// it waits to be tried again): how soon it catches up once it can.
const OUT_OF_STEP_WAIT: Duration = Duration::from_millis(100);

/// Longest pause before a failed read model is tried again.
const LONGEST_RETRY: Duration = Duration::from_secs(60);

/// Where one read model stands in this runtime.
#[derive(Debug, Clone, Default)]
struct Standing {
    /// It has applied everything delivered so far, and takes the next delivery.
    in_step: bool,
    /// Its checkpoint as this runtime last wrote or read it; another value in the database
    /// means a replay rebuilt it meanwhile.
    checkpoint: Option<LogPosition>,
    /// After a failure of its own: not before this instant, and the pause after the next one.
    retry: Option<(Instant, Duration)>,
}

/// Why a delivery could not be applied.
enum Failure {
    /// One read model refused it; the others may go on.
    Projection(usize, anyhow::Error),
    /// Postgres, or the lease's connection: start over.
    Connection(anyhow::Error),
}

impl From<sqlx::Error> for Failure {
    fn from(error: sqlx::Error) -> Self {
        Self::Connection(error.into())
    }
}

/// Whether an error applying a read model is the connection's (start over) rather than the
/// read model's own (set it aside and go on).
fn connection_failed(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<sqlx::Error>()
            .or_else(|| match cause.downcast_ref::<ProjectionError>() {
                Some(ProjectionError::Database(error)) => Some(error),
                _ => None,
            })
            .is_some_and(database_unreachable)
    })
}

impl<F: Feed> Projector<F> {
    /// A runtime applying `feed` to `projections`.
    pub fn new(
        database: Database,
        feed: F,
        projections: Vec<Arc<dyn Projection>>,
        settings: ProjectorSettings,
    ) -> Self {
        Self {
            database,
            feed,
            projections,
            settings,
        }
    }

    /// Runs until `shutdown`: waits for the lease, then applies. On an error it logs, pauses
    /// and starts over; the feed redelivers what was not acknowledged.
    pub async fn run(mut self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            match self.lead(&shutdown).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::error!(
                        error = format!("{error:#}"),
                        "the projector runtime failed; starting over"
                    );
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    async fn lead(&mut self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let mut conn = match self.database.postgres() {
            Some(pool) => {
                // Every transaction goes through the lease's connection: a runtime that lost it
                // (the connection died) can no longer write anything.
                let mut conn = <PgConnection as sqlx::Connection>::connect_with(&pool.connect_options())
                    .await
                    .context("connecting for the projector lease")?;
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    leased = sqlx::query("SELECT pg_advisory_lock($1)").bind(LEADER_LOCK_KEY).execute(&mut conn) => {
                        leased.context("taking the projector lease")?;
                    }
                }
                configure_session(&mut conn)
                    .await
                    .context("configuring the projector connection")?;
                Lease::Postgres(conn)
            }
            None => Lease::Embedded(self.database.clone()),
        };
        tracing::info!(
            read_models = self.projections.len(),
            "this process applies the read models"
        );
        self.feed.open().await?;
        let mut standing = vec![Standing::default(); self.projections.len()];
        loop {
            // While a read model is out of step, look again soon even if nothing arrives.
            let wait = if standing.iter().all(|state| state.in_step) {
                IDLE_WAIT
            } else {
                OUT_OF_STEP_WAIT
            };
            let delivery = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                delivery = self.feed.next(wait) => delivery?,
            };
            // Before the first delivery of a run, every read model catches up from the event
            // store: whatever an earlier run took and never acknowledged is then applied before
            // it comes back, so each delivery may move the checkpoints to its newest event.
            self.catch_up(&mut conn, &mut standing).await?;
            if let Some(delivery) = delivery {
                self.apply(&mut conn, &mut standing, &delivery.events).await?;
                self.feed.applied(delivery.receipt).await?;
            }
        }
    }

    /// Brings every read model that is not in step up to the end of the event store's
    /// committed log, unless its lock is taken (a replay) or it waits to be tried again.
    async fn catch_up(&self, conn: &mut Lease, standing: &mut [Standing]) -> anyhow::Result<()> {
        for (index, projection) in self.projections.iter().enumerate() {
            let now = Instant::now();
            let state = &mut standing[index];
            if state.in_step || state.retry.is_some_and(|(at, _)| at > now) {
                continue;
            }
            match self.catch_up_one(conn, projection.as_ref()).await {
                Ok(None) => {} // a replay holds it; look again at the next delivery
                Ok(Some(checkpoint)) => {
                    *state = Standing {
                        in_step: true,
                        checkpoint,
                        retry: None,
                    };
                }
                Err(error) if connection_failed(&error) => return Err(error),
                Err(error) => self.set_aside(index, state, &error),
            }
        }
        Ok(())
    }

    /// Applies the event store to one read model from its checkpoint until nothing committed
    /// is left, one transaction per batch. Answers its checkpoint at the end, or `None` when a
    /// replay holds its lock.
    async fn catch_up_one(
        &self,
        lease: &mut Lease,
        projection: &dyn Projection,
    ) -> anyhow::Result<Option<Option<LogPosition>>> {
        let name = projection.name();
        loop {
            let (mut tx, locked) = lease.begin(&[name]).await?;
            if locked.first() != Some(&true) {
                tx.rollback().await?;
                return Ok(None);
            }
            match self.catch_up_batch(tx.conn(), projection).await {
                Ok(Some(events)) => {
                    tx.commit().await?;
                    tracing::debug!(projection = name, events, "caught up a batch from the event store");
                }
                Ok(None) => {
                    let from = checkpoint_in(tx.conn(), name).await?;
                    tx.commit().await?;
                    return Ok(Some(from));
                }
                Err(error) => {
                    // A connection that cannot roll back is replaced when the runtime starts over.
                    let _ = tx.rollback().await;
                    return Err(error);
                }
            }
        }
    }

    /// Applies the next batch of the event store after `projection`'s checkpoint and moves the
    /// checkpoint, inside the caller's transaction. Answers how many events it read, or `None`
    /// when there were none.
    async fn catch_up_batch(
        &self,
        mut conn: Connection<'_>,
        projection: &dyn Projection,
    ) -> anyhow::Result<Option<usize>> {
        let name = projection.name();
        let from = checkpoint_in(conn.reborrow(), name).await?;
        let events = read_committed_after(&self.database, from.unwrap_or_default(), self.settings.catch_up_batch)
            .await
            .context("reading the event store")?;
        let Some(last) = events.last().map(LogPosition::of) else {
            return Ok(None);
        };
        apply_batch(conn.reborrow(), projection, &events)
            .await
            .with_context(|| format!("catching up {name}"))?;
        save_checkpoint(conn, name, last).await?;
        Ok(Some(events.len()))
    }

    /// Applies `events` to every read model in step, in one transaction, and moves their
    /// checkpoints to the newest of them. A read model that refuses is set aside and the rest
    /// tried again without it.
    async fn apply(&self, conn: &mut Lease, standing: &mut [Standing], events: &[RecordedEvent]) -> anyhow::Result<()> {
        let Some(newest) = events.iter().map(LogPosition::of).max() else {
            return Ok(());
        };
        loop {
            match self.apply_once(conn, standing, events, newest).await {
                Ok(()) => return Ok(()),
                Err(Failure::Connection(error)) => return Err(error),
                Err(Failure::Projection(_, error)) if connection_failed(&error) => return Err(error),
                Err(Failure::Projection(index, error)) => self.set_aside(index, &mut standing[index], &error),
            }
        }
    }

    /// Applies a delivery in one transaction of the lease's connection. The transaction is
    /// opened with the read models' try-locks in the same round trip, and ended by hand: every
    /// round trip of a delivery is on the way from commit to read model, and under load each
    /// one waits for the cores.
    async fn apply_once(
        &self,
        lease: &mut Lease,
        standing: &mut [Standing],
        events: &[RecordedEvent],
        newest: LogPosition,
    ) -> Result<(), Failure> {
        let names: Vec<&str> = self.projections.iter().map(|projection| projection.name()).collect();
        let (mut tx, locked) = lease.begin(&names).await?;
        match self
            .apply_locked(tx.conn(), standing, events, newest, &names, &locked)
            .await
        {
            Ok(moving) => {
                tx.commit().await?;
                for (index, moved) in moving {
                    if moved {
                        standing[index].checkpoint = Some(newest);
                    } else {
                        tracing::info!(
                            projection = names[index],
                            "a replay rebuilt this read model meanwhile; it catches up from the event store"
                        );
                        standing[index].in_step = false;
                    }
                }
                Ok(())
            }
            Err(failure) => {
                // A connection that cannot roll back is replaced when the runtime starts over.
                let _ = tx.rollback().await;
                Err(failure)
            }
        }
    }

    /// The body of [`Self::apply_once`], inside its transaction: applies the delivery to every
    /// read model in step whose lock was free and moves their checkpoints. Answers, for each
    /// read model whose checkpoint was to move, whether it did.
    async fn apply_locked(
        &self,
        mut conn: Connection<'_>,
        standing: &mut [Standing],
        events: &[RecordedEvent],
        newest: LogPosition,
        names: &[&str],
        locked: &[bool],
    ) -> Result<Vec<(usize, bool)>, Failure> {
        let mut applied = Vec::with_capacity(names.len());
        for (index, projection) in self.projections.iter().enumerate() {
            let state = &mut standing[index];
            if !state.in_step {
                continue;
            }
            if !locked[index] {
                tracing::info!(
                    projection = names[index],
                    "a replay holds this read model; it catches up afterwards"
                );
                state.in_step = false;
                continue;
            }
            apply_batch(conn.reborrow(), projection.as_ref(), events)
                .await
                .map_err(|error| Failure::Projection(index, error))?;
            applied.push(index);
        }
        // Each checkpoint moves only from where this runtime left it. One that is elsewhere was
        // rebuilt by a replay since (between this runtime's last transaction and its lock): the
        // events just applied were applied idempotently on top of the rebuilt rows, but those
        // between the replay's end and this delivery may be missing, so that read model stays
        // where it is and catches up from the event store.
        let moving: Vec<usize> = applied
            .into_iter()
            .filter(|&index| Some(newest) > standing[index].checkpoint)
            .collect();
        let expected: Vec<(&str, Option<LogPosition>)> = moving
            .iter()
            .map(|&index| (names[index], standing[index].checkpoint))
            .collect();
        let moved = move_checkpoints(conn, &expected, newest).await?;
        Ok(moving
            .into_iter()
            .map(|index| (index, moved.iter().any(|name| name == names[index])))
            .collect())
    }

    /// Takes a read model that failed out of step, to be tried again after a pause.
    fn set_aside(&self, index: usize, state: &mut Standing, error: &anyhow::Error) {
        let pause = state
            .retry
            .map_or(self.settings.first_retry, |(_, pause)| (pause * 2).min(LONGEST_RETRY));
        tracing::error!(
            projection = self.projections[index].name(),
            error = format!("{error:#}"),
            retry_in_ms = pause.as_millis() as u64,
            "a read model failed to apply events; it stands still until they apply, the others go on"
        );
        *state = Standing {
            in_step: false,
            checkpoint: state.checkpoint,
            retry: Some((Instant::now() + pause, pause)),
        };
    }
}

/// Opens a transaction and tries each projection's lock in it, in one round trip; answers
/// which locks it holds, in the order of `projections`. Without waiting: a replay holds its
/// read model's lock for as long as it runs, and the others must not wait for it. The keys
/// are integers computed here, so writing them into the text is safe.
async fn begin_with_try_locks(conn: &mut PgConnection, projections: &[&str]) -> Result<Vec<bool>, sqlx::Error> {
    if projections.is_empty() {
        conn.execute(sqlx::raw_sql("BEGIN")).await?;
        return Ok(Vec::new());
    }
    let tries: Vec<String> = projections
        .iter()
        .map(|name| format!("pg_try_advisory_xact_lock({})", projection_lock_key(name)))
        .collect();
    let statement = format!("BEGIN; SELECT {}", tries.join(", "));
    let rows = conn.fetch_all(sqlx::raw_sql(&statement)).await?;
    let row = rows
        .first()
        .ok_or_else(|| sqlx::Error::Protocol("the try-locks answered no row".into()))?;
    (0..projections.len()).map(|column| row.try_get(column)).collect()
}

/// Where the runtime's transactions run: on Postgres, the lease's connection; on SQLite, the
/// writing connection, taken for each transaction (appends need it in between).
enum Lease {
    /// The connection holding the lease.
    Postgres(PgConnection),
    /// The embedded database.
    Embedded(Database),
}

impl Lease {
    /// Opens a transaction and tries each of `projections`' locks in it; answers which it holds,
    /// in order. On SQLite no replay can run beside the runtime (one process opens the
    /// database), so every lock is free.
    async fn begin(&mut self, projections: &[&str]) -> Result<(LeaseTransaction<'_>, Vec<bool>), sqlx::Error> {
        match self {
            Self::Postgres(conn) => {
                let locked = begin_with_try_locks(conn, projections).await?;
                Ok((LeaseTransaction::Postgres(conn), locked))
            }
            Self::Embedded(database) => Ok((
                LeaseTransaction::Embedded(database.begin().await?),
                vec![true; projections.len()],
            )),
        }
    }
}

/// A transaction of the runtime's.
enum LeaseTransaction<'l> {
    /// Begun by hand on the lease's connection, and ended by hand.
    Postgres(&'l mut PgConnection),
    /// An ordinary transaction of the writing connection.
    Embedded(Transaction),
}

impl LeaseTransaction<'_> {
    fn conn(&mut self) -> Connection<'_> {
        match self {
            Self::Postgres(conn) => Backend::Postgres(&mut **conn),
            Self::Embedded(tx) => tx.conn(),
        }
    }

    async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Postgres(conn) => conn.execute(sqlx::raw_sql("COMMIT")).await.map(drop),
            Self::Embedded(tx) => tx.commit().await,
        }
    }

    async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Postgres(conn) => conn.execute(sqlx::raw_sql("ROLLBACK")).await.map(drop),
            Self::Embedded(tx) => {
                drop(tx); // rolled back as it goes
                Ok(())
            }
        }
    }
}

/// The advisory-lock key serialising a projection's writers (live projector and replay); it
/// is what `pg_locks` shows while one of them waits for the other.
pub fn projection_lock_key(projection: &str) -> i64 {
    // FNV-1a: stable across builds, unlike std's hasher.
    let hash = projection.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Applies delivered events to `projection` in one transaction with its checkpoint, as the
/// runtime does for each read model in step.
pub async fn apply_in_transaction(
    database: &Database,
    projection: &dyn Projection,
    events: &[RecordedEvent],
) -> anyhow::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut tx = match database.postgres() {
        // The lock is taken in the statement that opens the transaction. The key is an integer
        // computed here, so writing it into the text is safe.
        Some(pool) => Backend::Postgres(
            begin_detached(
                pool,
                format!(
                    "BEGIN; SELECT pg_advisory_xact_lock({})",
                    projection_lock_key(projection.name())
                ),
            )
            .await?,
        ),
        // One connection writes: the transaction holds it.
        None => Backend::Sqlite(database.begin().await?),
    };
    let mut conn = match &mut tx {
        Backend::Postgres(tx) => Backend::Postgres(&mut **tx),
        Backend::Sqlite(tx) => tx.conn(),
    };
    apply_batch(conn.reborrow(), projection, events).await?;
    if let Some(newest) = events.iter().map(LogPosition::of).max() {
        save_checkpoint(conn, projection.name(), newest).await?;
    }
    match tx {
        Backend::Postgres(tx) => tx.commit().await?,
        Backend::Sqlite(tx) => tx.commit().await?,
    }
    Ok(())
}

/// Opens a transaction with `statement`, in a task of its own so that a caller dropped while
/// it waits (for the projection's lock, say) cannot leave it open. sqlx counts a transaction
/// only once its `BEGIN` has answered: a caller cancelled before that would put the connection
/// back in the pool inside a transaction nobody will end, holding the projection's lock, and
/// every other writer of the projection would wait on it for good. Run apart, the begin always
/// completes, and if nobody waits for it any more the transaction is dropped, so rolled back.
async fn begin_detached(
    pool: &PgPool,
    statement: String,
) -> anyhow::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    let pool = pool.clone();
    Ok(tokio::spawn(async move { pool.begin_with(statement).await })
        .await
        .context("opening the transaction")??)
}

/// Sets up the connection the read models are applied through; every transaction of the
/// runtime runs on it.
///
/// A commit of the read models need not wait for the WAL flush: they are derived from the
/// log, and a transaction lost in a Postgres crash loses its rows and checkpoints together.
/// The crash also ends this connection, so the runtime starts over and catches every read
/// model up from the event store, which applies again what was lost, acked or not. Waiting for
/// the flush put a disk sync into every delivery's lag.
///
/// Every statement is planned for its own parameters (`force_custom_plan`). The connection
/// lives as long as the lease, and its prepared statements with it; left to itself, Postgres
/// settles on one generic plan per statement after five runs, while the read models' tables
/// may still be nearly empty. A read model that then grows (a new deployment's first busy
/// minutes, before autovacuum's first ANALYZE) kept looking its rows up by scanning the whole
/// table, once per event of the delivery (`id = ANY($1)` with a parameter is not hashed):
/// 200 to 320 ms a delivery at 100,000 projects, so the projector fell further behind the
/// longer the load lasted (lag p99 5.6 s in the bench). Planning each statement costs tens
/// of microseconds; a delivery runs a handful.
pub async fn configure_session(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    for setting in [
        "SET synchronous_commit TO off",
        "SET plan_cache_mode TO force_custom_plan",
    ] {
        sqlx::query(setting).execute(&mut *conn).await?;
    }
    Ok(())
}

/// The idempotent core: skip what was applied, fill gaps, apply (the projection records the
/// new sequences in its rows). Runs inside the caller's transaction, which holds the
/// projection's lock; the caller checkpoints.
async fn apply_batch(
    mut conn: Connection<'_>,
    projection: &dyn Projection,
    events: &[RecordedEvent],
) -> anyhow::Result<()> {
    let relevant: Vec<&RecordedEvent> = events
        .iter()
        .filter(|event| projection.aggregate_types().contains(&event.aggregate_type.as_str()))
        .collect();
    let keys: Vec<(&str, &str)> = relevant
        .iter()
        .map(|e| (e.aggregate_type.as_str(), e.aggregate_id.as_str()))
        .collect();
    let mut last_sequences = if keys.is_empty() {
        HashMap::new()
    } else {
        projection.last_sequences(conn.reborrow(), &keys).await?
    };
    let mut to_apply: Vec<RecordedEvent> = Vec::with_capacity(relevant.len());
    for event in relevant {
        let key = (event.aggregate_type.clone(), event.aggregate_id.clone());
        let last = last_sequences.get(&key).copied().unwrap_or(0);
        if event.sequence <= last {
            continue; // re-delivered, or already filled in from the event store
        }
        if event.sequence > last + 1 {
            // Arrived before its predecessors: take them from the event store first.
            let missing = aggregate_events_between(
                conn.reborrow(),
                &event.aggregate_type,
                &event.aggregate_id,
                last,
                event.sequence,
            )
            .await?;
            to_apply.extend(missing);
        }
        to_apply.push(event.clone());
        last_sequences.insert(key, event.sequence);
    }
    if !to_apply.is_empty() {
        projection.apply(conn, &to_apply).await?;
    }
    Ok(())
}

/// Advances a projection's checkpoint to `newest` (never backwards).
async fn save_checkpoint(conn: Connection<'_>, name: &str, newest: LogPosition) -> anyhow::Result<()> {
    crate::consumers::advance(conn, "projection_checkpoints", "projection", name, newest).await?;
    Ok(())
}

/// The statement reading one projection's checkpoint, in either dialect.
const CHECKPOINT: &str =
    "SELECT CAST(tx_id AS TEXT), global_position FROM projection_checkpoints WHERE projection = $1";

/// A checkpoint row: the transaction id as text, and the position.
fn checkpoint_of((tx, global_position): (String, i64)) -> Option<LogPosition> {
    tx.parse().ok().map(|tx_id| LogPosition { tx_id, global_position })
}

/// One projection's checkpoint, read on `conn` (inside the caller's transaction, if any).
async fn checkpoint_in(mut conn: Connection<'_>, projection: &str) -> Result<Option<LogPosition>, sqlx::Error> {
    let row: Option<(String, i64)> = portable!(conn.reborrow(), conn => {
        sqlx::query_as(CHECKPOINT).bind(projection).fetch_optional(conn).await
    })?;
    Ok(row.and_then(checkpoint_of))
}

/// Moves each checkpoint of `expected` to `newest` if it is still at the position given with it
/// (`None`: it does not exist yet), in one statement (on SQLite, one per checkpoint). Answers
/// the names of those it moved.
async fn move_checkpoints(
    conn: Connection<'_>,
    expected: &[(&str, Option<LogPosition>)],
    newest: LogPosition,
) -> Result<Vec<String>, sqlx::Error> {
    if expected.is_empty() {
        return Ok(Vec::new());
    }
    let conn = match conn {
        Backend::Postgres(conn) => conn,
        Backend::Sqlite(conn) => {
            let mut moved = Vec::new();
            for (name, at) in expected {
                let query = match at {
                    Some(at) => sqlx::query_scalar(
                        "UPDATE projection_checkpoints SET tx_id = $2, global_position = $3, updated_at = $4
                         WHERE projection = $1 AND tx_id = $5 AND global_position = $6
                         RETURNING projection",
                    )
                    .bind(*name)
                    .bind(sqlite_tx_id(newest))
                    .bind(newest.global_position)
                    .bind(keyframe_domain::clock::now())
                    .bind(sqlite_tx_id(*at))
                    .bind(at.global_position),
                    None => sqlx::query_scalar(
                        "INSERT INTO projection_checkpoints (projection, tx_id, global_position, updated_at)
                         VALUES ($1, $2, $3, $4) ON CONFLICT (projection) DO NOTHING
                         RETURNING projection",
                    )
                    .bind(*name)
                    .bind(sqlite_tx_id(newest))
                    .bind(newest.global_position)
                    .bind(keyframe_domain::clock::now()),
                };
                moved.extend(query.fetch_optional(&mut *conn).await?);
            }
            return Ok(moved);
        }
    };
    let names: Vec<&str> = expected.iter().map(|(name, _)| *name).collect();
    let tx_ids: Vec<Option<String>> = expected
        .iter()
        .map(|(_, at)| at.map(|at| at.tx_id.to_string()))
        .collect();
    let positions: Vec<Option<i64>> = expected.iter().map(|(_, at)| at.map(|at| at.global_position)).collect();
    sqlx::query_scalar(
        "WITH expected AS (
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) AS e(name, tx_id, global_position)
         ),
         moved AS (
             UPDATE projection_checkpoints c
             SET tx_id = $4::text::xid8, global_position = $5, updated_at = now()
             FROM expected e
             WHERE c.projection = e.name AND c.tx_id = e.tx_id::xid8 AND c.global_position = e.global_position
             RETURNING c.projection
         ),
         created AS (
             INSERT INTO projection_checkpoints (projection, tx_id, global_position)
             SELECT e.name, $4::text::xid8, $5 FROM expected e WHERE e.tx_id IS NULL
             ON CONFLICT (projection) DO NOTHING
             RETURNING projection
         )
         SELECT projection FROM moved UNION ALL SELECT projection FROM created",
    )
    .bind(&names)
    .bind(&tx_ids)
    .bind(&positions)
    .bind(newest.tx_id.to_string())
    .bind(newest.global_position)
    .fetch_all(&mut *conn)
    .await
}

/// A projection's checkpoint, if it has applied anything.
pub async fn checkpoint(database: &Database, projection: &str) -> Result<Option<LogPosition>, sqlx::Error> {
    let row: Option<(String, i64)> = portable!(database.reader(), pool => {
        sqlx::query_as(CHECKPOINT).bind(projection).fetch_optional(pool).await
    })?;
    Ok(row.and_then(checkpoint_of))
}

/// The checkpoints of the read models `projections` that have applied anything, in one
/// statement.
pub async fn checkpoints(
    database: &Database,
    projections: &[&str],
) -> Result<HashMap<String, LogPosition>, sqlx::Error> {
    let select = "SELECT projection, CAST(tx_id AS TEXT), global_position FROM projection_checkpoints WHERE projection";
    let rows: Vec<(String, String, i64)> = match database.reader() {
        Backend::Postgres(pool) => {
            sqlx::query_as(&format!("{select} = ANY($1)"))
                .bind(projections)
                .fetch_all(pool)
                .await?
        }
        Backend::Sqlite(pool) => {
            sqlx::query_as(&format!("{select} IN (SELECT value FROM json_each($1))"))
                .bind(text_list(projections))
                .fetch_all(pool)
                .await?
        }
    };
    Ok(rows
        .into_iter()
        .filter_map(|(name, tx, global_position)| Some((name, checkpoint_of((tx, global_position))?)))
        .collect())
}

/// Waits up to `timeout` for `projection` to have applied the event at `global_position`.
/// Answers whether it has; an unknown position answers `false` at once.
pub async fn wait_until_applied(
    database: &Database,
    projection: &str,
    global_position: i64,
    timeout: Duration,
) -> Result<bool, sqlx::Error> {
    let Some(target) = position_of(database, global_position).await? else {
        return Ok(false);
    };
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if checkpoint(database, projection)
            .await?
            .is_some_and(|reached| reached >= target)
        {
            return Ok(true);
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// What a replay did.
#[derive(Debug, Clone, Copy)]
pub struct ReplayReport {
    /// Events read from the log (all types; the projection applied its own).
    pub events: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl ReplayReport {
    /// Events read per second.
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// Longest a replay waits for transactions open when it started to finish.
const REPLAY_FENCE_WAIT: Duration = Duration::from_secs(30);

/// Empties `projection`'s tables and rebuilds them from the event store, in batches, calling
/// `progress` with the events read so far. The live projector waits meanwhile (advisory lock)
/// and afterwards skips what the replay applied.
///
/// The commit-safe order is also each aggregate's sequence order, and the tables start empty,
/// so a replay applies every event once without the live path's sequence lookups. The
/// checkpoint is written at the end, and the tables' planner statistics refreshed; a replay
/// that fails part-way must be run again.
///
/// On SQLite the process that replays is the only one with the database open, so nothing runs
/// beside it; each batch is applied in a transaction of its own.
pub async fn replay(
    database: &Database,
    projection: &dyn Projection,
    batch_size: i64,
    progress: &mut (dyn FnMut(u64) + Send),
) -> anyhow::Result<ReplayReport> {
    match database.postgres() {
        Some(pool) => replay_postgres(database, pool, projection, batch_size, progress).await,
        None => replay_embedded(database, projection, batch_size, progress).await,
    }
}

async fn replay_embedded(
    database: &Database,
    projection: &dyn Projection,
    batch_size: i64,
    progress: &mut (dyn FnMut(u64) + Send),
) -> anyhow::Result<ReplayReport> {
    let started = Instant::now();
    let name = projection.name();
    let mut tx = database.begin().await?;
    for table in projection.tables() {
        portable!(tx.conn(), conn => sqlx::query(&format!("DELETE FROM {table}")).execute(conn).await.map(|done| done.rows_affected()))?;
    }
    portable!(tx.conn(), conn => {
        sqlx::query("DELETE FROM projection_checkpoints WHERE projection = $1").bind(name).execute(conn).await
    .map(|done| done.rows_affected()) })?;
    tx.commit().await?;
    let mut events = 0_u64;
    let mut position = LogPosition::default();
    loop {
        let batch = read_committed_after(database, position, batch_size).await?;
        let Some(last) = batch.last().map(LogPosition::of) else {
            break;
        };
        let relevant: Vec<RecordedEvent> = batch
            .iter()
            .filter(|event| projection.aggregate_types().contains(&event.aggregate_type.as_str()))
            .cloned()
            .collect();
        let mut tx = database.begin().await?;
        if !relevant.is_empty() {
            projection.apply(tx.conn(), &relevant).await?;
        }
        save_checkpoint(tx.conn(), name, last).await?;
        tx.commit().await?;
        position = last;
        events += batch.len() as u64;
        progress(events);
    }
    for table in projection.tables() {
        portable!(database.writer(), pool => sqlx::query(&format!("ANALYZE {table}")).execute(pool).await.map(|done| done.rows_affected()))?;
    }
    Ok(ReplayReport {
        events,
        elapsed: started.elapsed(),
    })
}

async fn replay_postgres(
    database: &Database,
    pool: &PgPool,
    projection: &dyn Projection,
    batch_size: i64,
    progress: &mut (dyn FnMut(u64) + Send),
) -> anyhow::Result<ReplayReport> {
    let started = Instant::now();
    let name = projection.name();
    let mut conn = pool.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(projection_lock_key(name))
        .execute(&mut *conn)
        .await?;
    let result = async {
        let mut tx = sqlx::Acquire::begin(&mut *conn).await?;
        for table in projection.tables() {
            sqlx::query(&format!("TRUNCATE {table}")).execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM projection_checkpoints WHERE projection = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;

        // Every event committed by now must be in the rebuilt model. The reader stops below the
        // oldest append still open, so while one that began before now is still open the log
        // can look shorter than it is: read on until the fence has passed every transaction
        // this snapshot could not yet see as finished.
        let visible_before = committed_horizon(pool).await?;
        let waited_since = Instant::now();

        // Read the next batch while the current one is applied (two connections).
        let mut events = 0_u64;
        let mut position = None;
        let mut batch = read_committed_after(database, LogPosition::default(), batch_size).await?;
        loop {
            if batch.is_empty() {
                if append_fence(pool).await? >= visible_before {
                    break;
                }
                if waited_since.elapsed() > REPLAY_FENCE_WAIT {
                    tracing::warn!(
                        projection = name,
                        "an open append kept part of the log out of the replay; the live projector will apply the rest"
                    );
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                batch = read_committed_after(database, position.unwrap_or_default(), batch_size).await?;
                continue;
            }
            let Some(last) = batch.last() else { break };
            position = Some(LogPosition::of(last));
            let relevant: Vec<RecordedEvent> = batch
                .iter()
                .filter(|event| projection.aggregate_types().contains(&event.aggregate_type.as_str()))
                .cloned()
                .collect();
            let apply = async {
                if !relevant.is_empty() {
                    projection.apply(Backend::Postgres(&mut *conn), &relevant).await?;
                }
                anyhow::Ok(())
            };
            let (applied, next) =
                tokio::join!(apply, read_committed_after(database, LogPosition::of(last), batch_size));
            applied?;
            events += batch.len() as u64;
            progress(events);
            batch = next?;
        }
        if let Some(position) = position {
            save_checkpoint(Backend::Postgres(&mut *conn), name, position).await?;
        }
        // The tables were emptied and refilled faster than autovacuum looks (once a minute).
        // Without statistics Postgres guesses a couple of rows per owner and plans a list as a
        // scan of all the owner's rows and a sort (27 ms at 100,000 projects) instead of an
        // index walk (0.1 ms).
        for table in projection.tables() {
            sqlx::query(&format!("ANALYZE {table}")).execute(&mut *conn).await?;
        }
        anyhow::Ok(events)
    }
    .await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(projection_lock_key(name))
        .execute(&mut *conn)
        .await?;
    Ok(ReplayReport {
        events: result?,
        elapsed: started.elapsed(),
    })
}
