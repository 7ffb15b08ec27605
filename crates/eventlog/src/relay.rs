//! The relay: publishes every committed event to JetStream exactly once, in commit-safe order.
//!
//! One relay publishes at a time: leadership is a Postgres advisory lock held on a dedicated
//! connection, and the checkpoint is written through that same connection, so a relay whose
//! lock connection died cannot move the checkpoint. It wakes when its own process appends
//! ([`crate::wake`]), on `NOTIFY keyframe_events` from other processes, and polls as a fallback.
//! Each batch is published pipelined, every PubAck awaited, and only then is the checkpoint
//! advanced; a restarted relay republishes from its checkpoint and JetStream drops the repeats
//! by `Nats-Msg-Id`.

use crate::reader::{LogPosition, count_after, held_back_after, oldest_after, read_committed_after};
use crate::streams::Naming;
use crate::wake::{LocalRelay, NOTIFY_CHANNEL};
use anyhow::Context as _;
use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use futures::FutureExt as _;
use keyframe_database::Database;
use keyframe_domain::log::RecordedEvent;
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection, PgPool};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Advisory-lock key of the relay leader ("kfrelay" in ASCII).
const LEADER_LOCK_KEY: i64 = 0x006b_6672_656c_6179;

/// The checkpoint name of the relay `serve` runs.
pub const DEFAULT_RELAY: &str = "events";

/// Tuning for the relay.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Checkpoint name (one relay per database and stream).
    pub name: String,
    /// Events read and published per round.
    pub batch_size: i64,
    /// How long to wait for a notification before looking anyway.
    pub poll_interval: Duration,
    /// How soon to look again when committed events are held back by a running transaction.
    pub held_back_retry: Duration,
    /// After a round smaller than a tenth of `batch_size`, how long to let pass before the next
    /// read, so that rounds carry more (it overlaps the PubAck wait). None by default: with one
    /// consumer feeding every read model, lingering saved no measurable CPU. Bench, serve phase
    /// on 2 cores: relay and feed at 1 ms each, lag under load p50 11.3 ms; feed at 0, 10.2 ms;
    /// both at 0, 8.9 ms (p99 26.7 ms), with commands at 54-56 % of raw inserts in all three.
    pub linger: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            name: DEFAULT_RELAY.to_owned(),
            batch_size: 2_000,
            poll_interval: Duration::from_millis(500),
            held_back_retry: Duration::from_millis(2),
            linger: Duration::ZERO,
        }
    }
}

/// Most queued notifications taken in one go; the rest wait for the next idle moment.
const MAX_DRAINED: usize = 100_000;

/// Takes the notifications already queued on the listener, without waiting for more. They all
/// say "something committed", and one read of the log answers them all. While the relay
/// publishes it does not listen, so a busy spell of appends in other processes leaves up to one
/// queued per append statement; answered one by one, each cost an empty read and a held-back
/// check once the relay had caught up.
fn drain_notifications(listener: &mut PgListener) -> Result<(), sqlx::Error> {
    for _ in 0..MAX_DRAINED {
        match listener.recv().now_or_never() {
            Some(notification) => {
                notification?;
            }
            None => break,
        }
    }
    Ok(())
}

/// Publishes the log to JetStream.
pub struct Relay {
    pool: PgPool,
    /// The same pool, as the log's readers take it.
    database: Database,
    database_url: String,
    jetstream: jetstream::Context,
    naming: Naming,
    settings: RelaySettings,
    local: LocalRelay,
}

impl Relay {
    /// A relay over `pool` (and one extra connection to `database_url` for the leader lock).
    pub fn new(
        pool: PgPool,
        database_url: String,
        jetstream: jetstream::Context,
        naming: Naming,
        settings: RelaySettings,
    ) -> Self {
        Self {
            database: Database::from(pool.clone()),
            pool,
            database_url,
            jetstream,
            naming,
            settings,
            local: LocalRelay::default(),
        }
    }

    /// Lets the appends of this process wake the relay through `local` while it leads, instead
    /// of through Postgres. It still listens for `NOTIFY` from other processes.
    #[must_use]
    pub fn woken_by(mut self, local: LocalRelay) -> Self {
        self.local = local;
        self
    }

    /// Runs until `shutdown`: waits to become leader, then relays. Errors are logged and the
    /// relay starts over from its checkpoint after a pause.
    pub async fn run(self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            match self.lead(&shutdown).await {
                Ok(()) => return,
                Err(error) => {
                    tracing::error!(
                        error = format!("{error:#}"),
                        "relay failed; restarting from its checkpoint"
                    );
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    async fn lead(&self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let mut leader = PgConnection::connect(&self.database_url)
            .await
            .context("connecting for the leader lock")?;
        loop {
            let acquired: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(LEADER_LOCK_KEY)
                .fetch_one(&mut leader)
                .await
                .context("trying the leader lock")?;
            if acquired {
                break;
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        // The checkpoint's commit need not wait for the WAL flush: a checkpoint lost in a crash
        // only means republishing a few rounds, which JetStream drops by `Nats-Msg-Id` and
        // projectors skip by sequence. Waiting for the flush put a disk sync between every two
        // rounds.
        sqlx::query("SET synchronous_commit TO off")
            .execute(&mut leader)
            .await
            .context("configuring the leader connection")?;
        tracing::info!(relay = %self.settings.name, "relay is leader");
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .context("connecting the listener")?;
        listener.listen(NOTIFY_CHANNEL).await.context("LISTEN")?;
        let mut checkpoint = load_checkpoint(&mut leader, &self.settings.name).await?;
        // From here until this function returns, this process's appends ring the relay directly.
        let _leading = self.local.lead();

        let mut batch = Vec::new();
        // A position whose batch JetStream has acknowledged, not yet written as the checkpoint.
        // It is written while the next batch is published: off the path from commit to
        // JetStream, which under load waited a round trip per round for it. A crash before it
        // is written republishes one round more, which JetStream drops by `Nats-Msg-Id`.
        let mut unsaved: Option<LogPosition> = None;
        loop {
            if shutdown.is_cancelled() {
                save_unsaved(&mut leader, &self.settings.name, unsaved.take()).await?;
                return Ok(());
            }
            if batch.is_empty() {
                batch = read_committed_after(&self.database, checkpoint, self.settings.batch_size)
                    .await
                    .context("reading the log")?;
            }
            if let Some(last) = batch.last() {
                // Read the next batch while this one's PubAcks come back.
                let next_checkpoint = LogPosition::of(last);
                // Only a linger set on purpose sleeps: Tokio rounds every timer up to the next
                // millisecond, so even a sleep of zero held each small round up to a millisecond.
                let linger = (batch.len() as i64) < self.settings.batch_size / 10 && !self.settings.linger.is_zero();
                let read_next = async {
                    if linger {
                        tokio::time::sleep(self.settings.linger).await;
                    }
                    read_committed_after(&self.database, next_checkpoint, self.settings.batch_size).await
                };
                let save_previous = save_unsaved(&mut leader, &self.settings.name, unsaved.take());
                let (published, next, saved) = tokio::join!(self.publish(&batch), read_next, save_previous);
                saved?;
                published?;
                checkpoint = next_checkpoint;
                unsaved = Some(checkpoint);
                batch = next.context("reading the log")?;
                continue;
            }
            // Caught up: the checkpoint is written before the relay waits.
            save_unsaved(&mut leader, &self.settings.name, unsaved.take()).await?;
            let wait = if held_back_after(&self.pool, checkpoint).await? {
                self.settings.held_back_retry
            } else {
                self.settings.poll_interval
            };
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                notification = listener.recv() => {
                    notification.context("waiting for NOTIFY")?;
                    drain_notifications(&mut listener).context("waiting for NOTIFY")?;
                }
                () = self.local.rung() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Publishes a batch pipelined and waits for every PubAck. A failed batch is retried whole:
    /// the messages JetStream already has are dropped as duplicates.
    async fn publish(&self, batch: &[RecordedEvent]) -> anyhow::Result<()> {
        const ATTEMPTS: u32 = 5;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.publish_once(batch).await {
                Ok(()) => return Ok(()),
                Err(error) if attempt < ATTEMPTS => {
                    tracing::warn!(
                        error = format!("{error:#}"),
                        attempt,
                        "publishing a batch failed; retrying"
                    );
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn publish_once(&self, batch: &[RecordedEvent]) -> anyhow::Result<()> {
        let mut acks: Vec<PublishAckFuture> = Vec::with_capacity(batch.len());
        for event in batch {
            let payload = serde_json::to_vec(event).context("encoding an event")?;
            let message = PublishMessage::build()
                .payload(payload.into())
                .message_id(event.message_id());
            let ack = self
                .jetstream
                .send_publish(self.naming.event_subject(event), message)
                .await
                .context("publishing an event")?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await.context("waiting for a PubAck")?;
        }
        Ok(())
    }
}

async fn load_checkpoint(conn: &mut PgConnection, relay: &str) -> anyhow::Result<LogPosition> {
    let row: Option<(String, i64)> =
        sqlx::query_as("SELECT tx_id::text, global_position FROM relay_checkpoints WHERE relay = $1")
            .bind(relay)
            .fetch_optional(conn)
            .await
            .context("loading the relay checkpoint")?;
    Ok(match row {
        Some((tx_id, global_position)) => LogPosition {
            tx_id: tx_id.parse()?,
            global_position,
        },
        None => LogPosition::default(),
    })
}

/// Writes `position` as the checkpoint, if there is one to write.
async fn save_unsaved(conn: &mut PgConnection, relay: &str, position: Option<LogPosition>) -> anyhow::Result<()> {
    match position {
        Some(position) => save_checkpoint(conn, relay, position).await,
        None => Ok(()),
    }
}

async fn save_checkpoint(conn: &mut PgConnection, relay: &str, position: LogPosition) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO relay_checkpoints (relay, tx_id, global_position) VALUES ($1, $2::text::xid8, $3)
         ON CONFLICT (relay) DO UPDATE SET tx_id = EXCLUDED.tx_id, global_position = EXCLUDED.global_position,
         updated_at = now()",
    )
    .bind(relay)
    .bind(position.tx_id.to_string())
    .bind(position.global_position)
    .execute(conn)
    .await
    .context("saving the relay checkpoint")?;
    Ok(())
}

/// How far the relay is behind.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RelayLag {
    /// Committed events after its checkpoint, counted up to the cap asked for.
    pub backlog: i64,
    /// How long ago the oldest of them was written; zero when there is none. A number that keeps
    /// growing means the relay is down, or held back by an append left open.
    pub oldest_unpublished_seconds: f64,
}

/// How far the relay is behind: committed events after its checkpoint, counted up to `cap` (at
/// least 1) so the answer stays cheap however large the backlog, and the age of the oldest.
/// Exposed by `/health/ready` and `/metrics`.
pub async fn lag(pool: &PgPool, relay: &str, cap: i64) -> anyhow::Result<RelayLag> {
    let checkpoint = load_checkpoint(&mut *pool.acquire().await?, relay).await?;
    let database = Database::from(pool.clone());
    let backlog = count_after(&database, checkpoint, cap).await?;
    let oldest_unpublished_seconds = oldest_after(&database, checkpoint).await?;
    Ok(RelayLag {
        backlog,
        oldest_unpublished_seconds,
    })
}
