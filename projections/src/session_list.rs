//! `session_list`: one row per session, for listing a user's sessions and ending them in bulk.

use crate::{Projection, ProjectionError, decode, last_sequences_by_id, parse_uuid};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use keyframe_database::{Connection, Database, portable};
use keyframe_domain::log::RecordedEvent;
use keyframe_domain::session::{Session, SessionEvent};
use std::collections::HashMap;
use uuid::Uuid;

/// The `session_list` projection.
pub struct SessionList;

/// Its name, as used by checkpoints, consumers and read-your-writes.
pub const NAME: &str = "session_list";

#[async_trait]
impl Projection for SessionList {
    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[Session::TYPE]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["session_list"]
    }

    async fn last_sequences(
        &self,
        conn: Connection<'_>,
        aggregates: &[(&str, &str)],
    ) -> Result<HashMap<(String, String), i64>, ProjectionError> {
        last_sequences_by_id(
            conn,
            "SELECT session_id, last_sequence FROM session_list WHERE session_id {ids}",
            Session::TYPE,
            aggregates,
        )
        .await
    }

    // Sessions change at the pace of logins and refreshes, so a statement per event is cheap
    // enough; `last_sequence < $n` keeps a stale write from overwriting a newer one.
    async fn apply(&self, mut conn: Connection<'_>, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        for event in events {
            let session_id = parse_uuid(event)?;
            let sequence = event.sequence;
            match decode::<SessionEvent>(event)? {
                SessionEvent::SessionStarted {
                    user_id,
                    refresh_expires_at,
                    user_agent,
                    ip,
                    started_at,
                    ..
                } => {
                    portable!(conn.reborrow(), conn => { sqlx::query(
                        "INSERT INTO session_list (session_id, user_id, user_agent, ip, created_at, last_used_at,
                             refresh_expires_at, last_sequence)
                         VALUES ($1, $2, $3, $4, $5, $5, $6, $7) ON CONFLICT (session_id) DO NOTHING",
                    )
                    .bind(session_id)
                    .bind(user_id.0)
                    .bind(user_agent)
                    .bind(ip)
                    .bind(started_at)
                    .bind(refresh_expires_at)
                    .bind(sequence)
                    .execute(conn)
                    .await .map(|done| done.rows_affected()) })?;
                }
                SessionEvent::RefreshTokenRotated {
                    refresh_expires_at,
                    rotated_at,
                    ..
                } => {
                    portable!(conn.reborrow(), conn => { sqlx::query(
                        "UPDATE session_list SET last_used_at = $2, refresh_expires_at = $3, last_sequence = $4
                         WHERE session_id = $1 AND last_sequence < $4",
                    )
                    .bind(session_id)
                    .bind(rotated_at)
                    .bind(refresh_expires_at)
                    .bind(sequence)
                    .execute(conn)
                    .await .map(|done| done.rows_affected()) })?;
                }
                SessionEvent::RefreshTokenReuseDetected { .. } => {
                    portable!(conn.reborrow(), conn => { sqlx::query(
                        "UPDATE session_list SET last_sequence = $2 WHERE session_id = $1 AND last_sequence < $2",
                    )
                    .bind(session_id)
                    .bind(sequence)
                    .execute(conn)
                    .await .map(|done| done.rows_affected()) })?;
                }
                SessionEvent::SessionEnded { reason, ended_at } => {
                    let reason = serde_json::to_value(reason)
                        .ok()
                        .and_then(|value| value.as_str().map(str::to_owned));
                    portable!(conn.reborrow(), conn => { sqlx::query(
                        "UPDATE session_list SET ended_at = $2, end_reason = $3, last_sequence = $4
                         WHERE session_id = $1 AND last_sequence < $4",
                    )
                    .bind(session_id)
                    .bind(ended_at)
                    .bind(reason)
                    .bind(sequence)
                    .execute(conn)
                    .await .map(|done| done.rows_affected()) })?;
                }
            }
        }
        Ok(())
    }
}

/// A live session as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRow {
    /// The session's id.
    pub session_id: Uuid,
    /// The client's `User-Agent` at login.
    pub user_agent: Option<String>,
    /// The client's address at login.
    pub ip: Option<String>,
    /// When the user logged in.
    pub created_at: DateTime<Utc>,
    /// The login or the latest refresh.
    pub last_used_at: DateTime<Utc>,
}

/// The user's sessions that have not ended, newest first. Sessions whose refresh token expired
/// are left out: nothing can renew them.
pub async fn active_for_user(
    database: &Database,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<SessionRow>, sqlx::Error> {
    portable!(database.reader(), pool => { sqlx::query_as(
        "SELECT session_id, user_agent, ip, created_at, last_used_at FROM session_list
         WHERE user_id = $1 AND ended_at IS NULL AND refresh_expires_at > $2
         ORDER BY session_id DESC LIMIT 1000",
    )
    .bind(user_id)
    .bind(now)
    .fetch_all(pool)
    .await })
}
