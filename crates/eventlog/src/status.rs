//! How far behind the pipeline is, read from Postgres: the relay's backlog and each read
//! model's, in events and in seconds. Readiness and metrics ask it; it works whichever process
//! runs the relay and the projector runtime.

use crate::reader::{LogPosition, count_after};
use crate::relay::{RelayLag, lag};
use sqlx::PgPool;

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

/// The relay's lag and each read model's.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineStatus {
    /// The relay (the default one, `serve`'s).
    pub relay: RelayLag,
    /// Each read model, in the order asked.
    pub projections: Vec<ProjectionLag>,
}

impl PipelineStatus {
    /// The read models whose oldest unapplied event is older than `bound`, and the relay as
    /// `relay` if its oldest unpublished event is.
    pub fn stalled(&self, bound: std::time::Duration) -> Vec<&'static str> {
        let bound = bound.as_secs_f64();
        let relay = (self.relay.oldest_unpublished_seconds > bound).then_some("relay");
        relay
            .into_iter()
            .chain(self.projections.iter().filter(|p| p.seconds > bound).map(|p| p.name))
            .collect()
    }
}

/// The pipeline's status, for the read models named.
pub async fn pipeline_status(pool: &PgPool, projections: &[&'static str]) -> anyhow::Result<PipelineStatus> {
    let relay = lag(pool, crate::relay::DEFAULT_RELAY, COUNT_CAP).await?;
    let mut lags = Vec::with_capacity(projections.len());
    for &name in projections {
        let checkpoint = crate::projector::checkpoint(pool, name).await?.unwrap_or_default();
        lags.push(ProjectionLag {
            name,
            events: count_after(pool, checkpoint, COUNT_CAP).await?,
            seconds: oldest_after(pool, checkpoint).await?,
        });
    }
    Ok(PipelineStatus {
        relay,
        projections: lags,
    })
}

/// Seconds since the first event after `after` in commit order was written (0 when none).
pub(crate) async fn oldest_after(pool: &PgPool, after: LogPosition) -> Result<f64, sqlx::Error> {
    // The first event after a position in commit order is the oldest one there (its
    // `recorded_at` is its transaction's start, which for Keyframe's appends is the commit's).
    let oldest: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM clock_timestamp() - recorded_at)::float8 FROM events
         WHERE (tx_id, global_position) > ($1::text::xid8, $2)
         ORDER BY tx_id, global_position LIMIT 1",
    )
    .bind(after.tx_id.to_string())
    .bind(after.global_position)
    .fetch_optional(pool)
    .await?;
    Ok(oldest.unwrap_or(0.0).max(0.0))
}
