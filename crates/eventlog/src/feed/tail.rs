//! A feed that tails the log itself, for a deployment without NATS: it reads the events after
//! the last one it handed out, in commit-safe order, and waits for this process's next commit
//! when there are none (polling too, for what it was not told about).
//!
//! One process writes such a deployment, so its own commits are all there is to hear; the poll
//! catches events a fence held back (Postgres: an older append was still open) and anything
//! appended by a tool. It starts at the end of the log when opened: what came before is the
//! projector runtime's to catch up from the event store, as after any start.

use crate::feed::{Delivery, Feed};
use crate::reader::{LogPosition, log_end, read_committed_after};
use crate::wake::LocalRelay;
use async_trait::async_trait;
use keyframe_database::Database;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Tuning for a [`TailFeed`].
#[derive(Debug, Clone, Copy)]
pub struct TailSettings {
    /// Events handed out at most per delivery.
    pub batch: i64,
    /// How often to look without being woken.
    pub poll: Duration,
}

impl Default for TailSettings {
    fn default() -> Self {
        Self {
            batch: 1_000,
            poll: Duration::from_millis(500),
        }
    }
}

/// Tails the log in this process.
pub struct TailFeed {
    database: Database,
    commits: watch::Receiver<u64>,
    position: LogPosition,
    settings: TailSettings,
}

impl TailFeed {
    /// A feed of `database`'s log, woken by the commits of appends made through `local`.
    pub fn new(database: Database, local: &LocalRelay, settings: TailSettings) -> Self {
        Self {
            database,
            commits: local.commits(),
            position: LogPosition::default(),
            settings,
        }
    }

    /// Where it has read up to.
    pub fn position(&self) -> LogPosition {
        self.position
    }

    /// The next events after its position, waiting up to `wait` for some; empty when none
    /// came.
    pub async fn next_events(&mut self, wait: Duration) -> anyhow::Result<Vec<keyframe_domain::log::RecordedEvent>> {
        let deadline = Instant::now() + wait;
        loop {
            // Seen before reading, so a commit during the read is heard afterwards.
            self.commits.borrow_and_update();
            let events = read_committed_after(&self.database, self.position, self.settings.batch).await?;
            if let Some(last) = events.last() {
                self.position = LogPosition::of(last);
                return Ok(events);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let nap = self.settings.poll.min(deadline - now);
            tokio::select! {
                changed = self.commits.changed() => {
                    if changed.is_err() {
                        // No writer left to wake it: poll.
                        tokio::time::sleep(nap).await;
                    }
                }
                () = tokio::time::sleep(nap) => {}
            }
        }
    }

    /// Moves to `position`: it hands out what comes after it.
    pub fn seek(&mut self, position: LogPosition) {
        self.position = position;
    }

    /// Moves to the end of the log: it hands out only what commits from now on.
    pub async fn skip_to_end(&mut self) -> anyhow::Result<()> {
        self.commits.borrow_and_update();
        self.position = log_end(&self.database).await?;
        Ok(())
    }
}

#[async_trait]
impl Feed for TailFeed {
    type Receipt = LogPosition;

    async fn open(&mut self) -> anyhow::Result<()> {
        self.skip_to_end().await
    }

    async fn next(&mut self, wait: Duration) -> anyhow::Result<Option<Delivery<LogPosition>>> {
        let events = self.next_events(wait).await?;
        let receipt = self.position;
        Ok((!events.is_empty()).then_some(Delivery { events, receipt }))
    }

    /// Nothing to acknowledge: a runtime that starts over opens the feed again, at the end of
    /// the log, and catches up from the event store.
    async fn applied(&mut self, _: LogPosition) -> anyhow::Result<()> {
        Ok(())
    }
}
