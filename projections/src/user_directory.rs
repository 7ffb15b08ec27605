//! `user_directory`: one row per account, for administrators. It keeps what an administrator
//! may see and nothing secret.

use crate::{Projection, ProjectionError, decode, last_sequences_by_id, parse_uuid};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use keyframe_database::lists::text_list;
use keyframe_database::{Backend, Connection, Database, Dialect, portable};
use keyframe_domain::log::RecordedEvent;
use keyframe_domain::user::{Role, User, UserEvent};
use std::collections::HashMap;
use uuid::Uuid;

/// The `user_directory` projection.
pub struct UserDirectory;

/// Its name, as used by checkpoints, consumers and read-your-writes.
pub const NAME: &str = "user_directory";

#[async_trait]
impl Projection for UserDirectory {
    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[User::TYPE]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["user_directory"]
    }

    async fn last_sequences(
        &self,
        conn: Connection<'_>,
        aggregates: &[(&str, &str)],
    ) -> Result<HashMap<(String, String), i64>, ProjectionError> {
        last_sequences_by_id(
            conn,
            "SELECT user_id, last_sequence FROM user_directory WHERE user_id {ids}",
            User::TYPE,
            aggregates,
        )
        .await
    }

    // Accounts change at the pace of people, so a statement per event is cheap enough. Every
    // update is guarded by `last_sequence < $2`, so a stale one never overwrites a newer one.
    async fn apply(&self, mut conn: Connection<'_>, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        for event in events {
            let user_id = parse_uuid(event)?;
            let sequence = event.sequence;
            let update = |set: &str| {
                format!("UPDATE user_directory SET {set}last_sequence = $2 WHERE user_id = $1 AND last_sequence < $2")
            };
            match decode::<UserEvent>(event)? {
                UserEvent::UserRegistered {
                    email,
                    full_name,
                    registered_at,
                    ..
                } => {
                    // Roles are an array on Postgres, a JSON array on SQLite.
                    let roles = match conn.dialect() {
                        Dialect::Postgres => "ARRAY['user']",
                        Dialect::Sqlite => "'[\"user\"]'",
                    };
                    let sql = format!(
                        "INSERT INTO user_directory (user_id, email, full_name, roles, created_at, last_sequence)
                         VALUES ($1, $2, $3, {roles}, $4, $5) ON CONFLICT (user_id) DO NOTHING"
                    );
                    portable!(conn.reborrow(), conn => { sqlx::query(&sql)
                    .bind(user_id)
                    .bind(email.as_str())
                    .bind(full_name.as_ref().map(|name| name.as_str().to_owned()))
                    .bind(registered_at)
                    .bind(sequence)
                    .execute(conn)
                    .await .map(|done| done.rows_affected()) })?;
                }
                UserEvent::EmailVerified { .. } | UserEvent::PasswordReset { .. } => {
                    // A reset link reaching the mailbox proves it too (see the aggregate).
                    portable!(conn.reborrow(), conn => { sqlx::query(&update("email_verified = true, "))
                        .bind(user_id)
                        .bind(sequence)
                        .execute(conn)
                        .await .map(|done| done.rows_affected()) })?;
                }
                UserEvent::ProfileUpdated { full_name, .. } => {
                    portable!(conn.reborrow(), conn => { sqlx::query(&update("full_name = $3, "))
                        .bind(user_id)
                        .bind(sequence)
                        .bind(full_name.as_ref().map(|name| name.as_str().to_owned()))
                        .execute(conn)
                        .await .map(|done| done.rows_affected()) })?;
                }
                UserEvent::RolesChanged { roles, .. } => {
                    let roles: Vec<&str> = roles.iter().map(|role: &Role| role.as_str()).collect();
                    let sql = update("roles = $3, ");
                    match conn.reborrow() {
                        Backend::Postgres(conn) => {
                            sqlx::query(&sql)
                                .bind(user_id)
                                .bind(sequence)
                                .bind(roles)
                                .execute(conn)
                                .await?;
                        }
                        Backend::Sqlite(conn) => {
                            let roles = text_list(&roles);
                            sqlx::query(&sql)
                                .bind(user_id)
                                .bind(sequence)
                                .bind(roles)
                                .execute(conn)
                                .await?;
                        }
                    }
                }
                UserEvent::TotpEnabled { .. } => {
                    portable!(conn.reborrow(), conn => { sqlx::query(&update("two_factor = true, "))
                        .bind(user_id)
                        .bind(sequence)
                        .execute(conn)
                        .await .map(|done| done.rows_affected()) })?;
                }
                UserEvent::TotpDisabled { .. } => {
                    portable!(conn.reborrow(), conn => { sqlx::query(&update("two_factor = false, "))
                        .bind(user_id)
                        .bind(sequence)
                        .execute(conn)
                        .await .map(|done| done.rows_affected()) })?;
                }
                UserEvent::UserSuspended { reason, .. } => {
                    portable!(conn.reborrow(), conn => { sqlx::query(&update("suspended_reason = $3, "))
                        .bind(user_id)
                        .bind(sequence)
                        .bind(reason)
                        .execute(conn)
                        .await .map(|done| done.rows_affected()) })?;
                }
                UserEvent::UserReactivated { .. } => {
                    portable!(conn.reborrow(), conn => { sqlx::query(&update("suspended_reason = NULL, "))
                        .bind(user_id)
                        .bind(sequence)
                        .execute(conn)
                        .await .map(|done| done.rows_affected()) })?;
                }
                UserEvent::EmailVerificationRequested { .. }
                | UserEvent::PasswordResetRequested { .. }
                | UserEvent::PasswordChanged { .. }
                | UserEvent::AllSessionsEnded { .. }
                | UserEvent::LoginAttemptAdmitted { .. }
                | UserEvent::LoginFailed { .. }
                | UserEvent::LoginAttemptPassed { .. }
                | UserEvent::AccountLocked { .. }
                | UserEvent::FailedLoginsCleared { .. }
                | UserEvent::TotpEnrolmentStarted { .. }
                | UserEvent::TotpCodeAccepted { .. }
                | UserEvent::ApiKeyStored { .. }
                | UserEvent::ApiKeyRemoved { .. } => {
                    portable!(conn.reborrow(), conn => { sqlx::query(&update(""))
                        .bind(user_id)
                        .bind(sequence)
                        .execute(conn)
                        .await .map(|done| done.rows_affected()) })?;
                }
            }
        }
        Ok(())
    }
}

/// An account as administrators see it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRow {
    /// The user's id.
    pub user_id: Uuid,
    /// Normalised e-mail address.
    pub email: String,
    /// Display name.
    pub full_name: Option<String>,
    /// Role names (read as JSON: an array on Postgres, JSON text on SQLite).
    #[sqlx(json)]
    pub roles: Vec<String>,
    /// Whether the address is verified.
    pub email_verified: bool,
    /// Whether TOTP is on.
    pub two_factor: bool,
    /// Why it is suspended, while it is.
    pub suspended_reason: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// The columns of a [`UserRow`].
fn columns(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => {
            "user_id, email, full_name, array_to_json(roles) AS roles, email_verified, two_factor, \
             suspended_reason, created_at"
        }
        Dialect::Sqlite => "user_id, email, full_name, roles, email_verified, two_factor, suspended_reason, created_at",
    }
}

/// Accounts newest first, after `cursor` (the last id of the previous page); `limit` of them.
pub async fn list(database: &Database, cursor: Option<Uuid>, limit: i64) -> Result<Vec<UserRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {} FROM user_directory WHERE ($1 IS NULL OR user_id < $1) ORDER BY user_id DESC LIMIT $2",
        columns(database.dialect())
    );
    portable!(database.reader(), pool => { sqlx::query_as(&sql).bind(cursor).bind(limit).fetch_all(pool).await })
}

/// One account.
pub async fn get(database: &Database, user_id: Uuid) -> Result<Option<UserRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {} FROM user_directory WHERE user_id = $1",
        columns(database.dialect())
    );
    portable!(database.reader(), pool => { sqlx::query_as(&sql).bind(user_id).fetch_optional(pool).await })
}

/// Counts for the admin dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct UserCounts {
    /// Every account.
    pub total: i64,
    /// With a verified address.
    pub verified: i64,
    /// Suspended now.
    pub suspended: i64,
    /// Administrators.
    pub admins: i64,
    /// With TOTP on.
    pub two_factor: i64,
}

/// The counts.
pub async fn counts(database: &Database) -> Result<UserCounts, sqlx::Error> {
    let is_admin = match database.dialect() {
        Dialect::Postgres => "'admin' = ANY(roles)",
        Dialect::Sqlite => "EXISTS (SELECT 1 FROM json_each(roles) WHERE value = 'admin')",
    };
    let sql = format!(
        "SELECT count(*) AS total, count(*) FILTER (WHERE email_verified) AS verified,
             count(*) FILTER (WHERE suspended_reason IS NOT NULL) AS suspended,
             count(*) FILTER (WHERE {is_admin}) AS admins,
             count(*) FILTER (WHERE two_factor) AS two_factor
         FROM user_directory"
    );
    portable!(database.reader(), pool => { sqlx::query_as(&sql)
    .fetch_one(pool)
    .await })
}
