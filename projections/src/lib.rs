//! Keyframe's read models: how each event changes rows, and how the API reads those rows.
//!
//! A [`Projection`] only says what an event does to its tables. The projector runtime in
//! `keyframe-eventlog` supplies the rest: the feed, the per-aggregate sequence check that makes
//! re-delivery and out-of-order delivery harmless, and the checkpoint written in the same
//! transaction as the rows.
//!
//! Every read model runs on both databases. Postgres writes a batch's rows in one statement
//! from arrays (`unnest`), since there each statement is a round trip; SQLite runs in the
//! process, so there a statement per row costs little and is written plainly.

pub mod asset_list;
pub mod credit_transactions;
pub mod job_list;
pub mod organizations;
pub mod project_list;
pub mod session_list;
pub mod user_directory;

use async_trait::async_trait;
use keyframe_database::lists::{sqlite_uuids, uuid_list};
use keyframe_database::{Backend, Connection};
use keyframe_domain::log::RecordedEvent;
use std::collections::HashMap;

/// One read model.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// Stable name: the checkpoint key, the consumer name and `replay --projection NAME`.
    fn name(&self) -> &'static str;

    /// The aggregate types whose events it reads.
    fn aggregate_types(&self) -> &'static [&'static str];

    /// The tables it owns, emptied before a replay.
    fn tables(&self) -> &'static [&'static str];

    /// The sequence of the last event applied, per aggregate `(type, id)` among `aggregates`;
    /// aggregates it has never seen are absent. Each projection keeps this in its own rows
    /// (written by [`Projection::apply`] with the row change), which is what makes
    /// re-delivered events harmless and gaps visible.
    async fn last_sequences(
        &self,
        conn: Connection<'_>,
        aggregates: &[(&str, &str)],
    ) -> Result<HashMap<(String, String), i64>, ProjectionError>;

    /// Applies events inside the runtime's transaction. The runtime passes each event once, per
    /// aggregate in sequence order and only of [`Projection::aggregate_types`], so `apply` need
    /// not check positions itself. A batch lets it write many rows in few statements.
    async fn apply(&self, conn: Connection<'_>, events: &[RecordedEvent]) -> Result<(), ProjectionError>;
}

/// Why an event could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The payload does not match the event type (a bug, or an event this build does not know).
    #[error("cannot read {event_type} #{global_position}: {source}")]
    Payload {
        /// The event's type.
        event_type: String,
        /// Its place in the log.
        global_position: i64,
        /// What serde said.
        source: serde_json::Error,
    },
    /// The database refused the change.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Every projection Keyframe has, in a fixed order.
pub fn all() -> Vec<std::sync::Arc<dyn Projection>> {
    vec![
        std::sync::Arc::new(project_list::ProjectList),
        std::sync::Arc::new(session_list::SessionList),
        std::sync::Arc::new(user_directory::UserDirectory),
        std::sync::Arc::new(asset_list::AssetList),
        std::sync::Arc::new(job_list::JobList),
        std::sync::Arc::new(credit_transactions::CreditTransactions),
        std::sync::Arc::new(organizations::Organizations),
    ]
}

/// The names of every projection, in [`all`]'s order.
pub fn names() -> Vec<&'static str> {
    all().iter().map(|projection| projection.name()).collect()
}

/// Reads an event's payload as the aggregate's event enum.
pub fn decode<E: serde::de::DeserializeOwned>(event: &RecordedEvent) -> Result<E, ProjectionError> {
    serde_json::from_str(event.payload.get()).map_err(|source| ProjectionError::Payload {
        event_type: event.event_type.clone(),
        global_position: event.global_position,
        source,
    })
}

/// The aggregate id of an event, as a UUID (every Keyframe aggregate id is one).
pub fn parse_uuid(event: &RecordedEvent) -> Result<uuid::Uuid, ProjectionError> {
    event.aggregate_id.parse().map_err(|_| ProjectionError::Payload {
        event_type: event.event_type.clone(),
        global_position: event.global_position,
        source: serde::de::Error::custom("aggregate id is not a UUID"),
    })
}

/// [`Projection::last_sequences`] for a read model that keeps, per aggregate id, the last
/// sequence applied: `sql` selects `(id, sequence)` for the ids the text `{ids}` stands for
/// (`= ANY($1)` on Postgres, a JSON list on SQLite), as in
/// `SELECT project_id, last_sequence FROM project_list WHERE project_id {ids}`.
pub async fn last_sequences_by_id(
    conn: Connection<'_>,
    sql: &str,
    aggregate_type: &str,
    aggregates: &[(&str, &str)],
) -> Result<HashMap<(String, String), i64>, ProjectionError> {
    let ids: Vec<uuid::Uuid> = aggregates.iter().filter_map(|(_, id)| id.parse().ok()).collect();
    let rows: Vec<(uuid::Uuid, i64)> = match conn {
        Backend::Postgres(conn) => {
            let sql = sql.replace("{ids}", "= ANY($1)");
            sqlx::query_as(&sql).bind(&ids).fetch_all(conn).await?
        }
        Backend::Sqlite(conn) => {
            let sql = sql.replace("{ids}", &format!("IN {}", sqlite_uuids(1)));
            sqlx::query_as(&sql).bind(uuid_list(&ids)).fetch_all(conn).await?
        }
    };
    Ok(rows
        .into_iter()
        .map(|(id, sequence)| ((aggregate_type.to_owned(), id.to_string()), sequence))
        .collect())
}
