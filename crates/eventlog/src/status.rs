//! How far behind the pipeline is, read from the database: the relay's backlog (when there is
//! a relay: Postgres with NATS), each read model's, and (without NATS) each durable reader's of
//! the log in the process, in events and in seconds. Readiness and metrics ask it; it works
//! whichever process runs the relay, the projector runtime and the readers.

use crate::reader::{LogPosition, count_after, oldest_after};
use crate::relay::{RelayLag, lag};
use keyframe_database::Database;
use std::collections::HashMap;

/// Events counted at most, per relay or read model: enough to tell "far behind".
pub const COUNT_CAP: i64 = 100_000;

/// How far one read model is behind the log.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionLag {
    /// Its name.
    pub name: &'static str,
    /// Committed events after its checkpoint (counted up to [`COUNT_CAP`]).
    pub events: i64,
    /// How long ago the oldest of them was written; zero when there is none. A number that
    /// keeps growing means it has stopped advancing.
    pub seconds: f64,
}

/// How far one durable reader of the log in the process (the settlement's, without NATS) is
/// behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerLag {
    /// Its name.
    pub name: String,
    /// Committed events after its saved place (counted up to [`COUNT_CAP`]).
    pub events: i64,
    /// How long ago the oldest of them was written; zero when there is none.
    pub seconds: f64,
}

/// Where each of `readers` (durable readers of the log in the process) stands against the log,
/// for those that have saved a place. A reader may
/// hold its place back on purpose (the settlement, at a reservation still in its grace), so
/// these are for watching, not for readiness.
pub async fn consumer_lags(database: &Database, readers: &[&str]) -> anyhow::Result<Vec<ConsumerLag>> {
    let mut lags = Vec::new();
    // Only the readers asked for: a row left by a reader that no longer runs would show a lag
    // that only grows.
    let saved = crate::consumers::all(database).await?;
    for (name, position) in saved.into_iter().filter(|(name, _)| readers.contains(&name.as_str())) {
        lags.push(ConsumerLag {
            name,
            events: count_after(database, position, COUNT_CAP).await?,
            seconds: oldest_after(database, position).await?,
        });
    }
    Ok(lags)
}

/// The relay's lag and each read model's.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineStatus {
    /// The relay (the default one, `serve`'s); `None` where there is no relay (SQLite).
    pub relay: Option<RelayLag>,
    /// Each read model, in the order asked.
    pub projections: Vec<ProjectionLag>,
}

impl PipelineStatus {
    /// The read models whose oldest unapplied event is older than `bound`, and the relay as
    /// `relay` if its oldest unpublished event is.
    pub fn stalled(&self, bound: std::time::Duration) -> Vec<&'static str> {
        let bound = bound.as_secs_f64();
        let relay = self
            .relay
            .as_ref()
            .filter(|relay| relay.oldest_unpublished_seconds > bound)
            .map(|_| "relay");
        relay
            .into_iter()
            .chain(self.projections.iter().filter(|p| p.seconds > bound).map(|p| p.name))
            .collect()
    }
}

/// The pipeline's status, for the read models named.
///
/// The runtime moves the checkpoints of all read models in step together, so most share one
/// position: the log after each distinct position is measured once.
///
/// `relayed` says whether the deployment relays its log (Postgres with NATS): only then is the
/// relay's lag measured.
pub async fn pipeline_status(
    database: &Database,
    relayed: bool,
    projections: &[&'static str],
) -> anyhow::Result<PipelineStatus> {
    let relay = match database.postgres().filter(|_| relayed) {
        Some(pool) => Some(lag(pool, crate::relay::DEFAULT_RELAY, COUNT_CAP).await?),
        None => None,
    };
    let checkpoints = crate::projector::checkpoints(database, projections).await?;
    let mut measured: HashMap<LogPosition, (i64, f64)> = HashMap::new();
    let mut lags = Vec::with_capacity(projections.len());
    for &name in projections {
        let checkpoint = checkpoints.get(name).copied().unwrap_or_default();
        let (events, seconds) = match measured.get(&checkpoint) {
            Some(known) => *known,
            None => {
                let behind = (
                    count_after(database, checkpoint, COUNT_CAP).await?,
                    oldest_after(database, checkpoint).await?,
                );
                measured.insert(checkpoint, behind);
                behind
            }
        };
        lags.push(ProjectionLag { name, events, seconds });
    }
    Ok(PipelineStatus {
        relay,
        projections: lags,
    })
}
