//! `organizations`: the organisations (`organization_list`), their members with roles
//! (`organization_members`) and the invitations sent (`organization_invitations`), for listing
//! and showing them. Access is never decided from these rows (the use cases ask the aggregate),
//! so they may lag without letting a removed member in.
//!
//! Organisation events are rare (people managing teams), so each is applied with plain
//! statements, in order; the row of `organization_list` carries the sequence for every table.

use crate::{Projection, ProjectionError, decode, last_sequences_by_id, parse_uuid};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use keyframe_database::{Connection, Database, portable};
use keyframe_domain::log::RecordedEvent;
use keyframe_domain::organization::{MemberRole, Organization, OrganizationEvent};
use std::collections::HashMap;
use uuid::Uuid;

/// The `organizations` projection.
pub struct Organizations;

/// Its name, as used by checkpoints, consumers and read-your-writes.
pub const NAME: &str = "organizations";

#[async_trait]
impl Projection for Organizations {
    fn name(&self) -> &'static str {
        NAME
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[Organization::TYPE]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["organization_list", "organization_members", "organization_invitations"]
    }

    async fn last_sequences(
        &self,
        conn: Connection<'_>,
        aggregates: &[(&str, &str)],
    ) -> Result<HashMap<(String, String), i64>, ProjectionError> {
        last_sequences_by_id(
            conn,
            "SELECT organization_id, last_sequence FROM organization_list WHERE organization_id {ids}",
            Organization::TYPE,
            aggregates,
        )
        .await
    }

    async fn apply(&self, mut conn: Connection<'_>, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        for event in events {
            let organization_id = parse_uuid(event)?;
            let payload = decode::<OrganizationEvent>(event)?;
            apply_one(conn.reborrow(), organization_id, payload).await?;
            portable!(conn.reborrow(), conn => { sqlx::query("UPDATE organization_list SET last_sequence = $2 WHERE organization_id = $1")
                .bind(organization_id)
                .bind(event.sequence)
                .execute(conn)
                .await .map(|done| done.rows_affected()) })?;
        }
        Ok(())
    }
}

async fn apply_one(
    mut conn: Connection<'_>,
    organization_id: Uuid,
    event: OrganizationEvent,
) -> Result<(), sqlx::Error> {
    use OrganizationEvent as E;
    let touched_at = match &event {
        E::OrganizationCreated { created_at, .. } => *created_at,
        E::OrganizationRenamed { renamed_at, .. } => *renamed_at,
        E::OrganizationDeleted { deleted_at, .. } => *deleted_at,
        E::MemberInvited { invited_at, .. } => *invited_at,
        E::InvitationRevoked { revoked_at, .. } => *revoked_at,
        E::MemberJoined { joined_at, .. } => *joined_at,
        E::MemberRoleChanged { changed_at, .. } => *changed_at,
        E::MemberCreditLimitSet { set_at, .. } => *set_at,
        E::MemberRemoved { removed_at, .. } => *removed_at,
        E::MemberLeft { left_at, .. } => *left_at,
        E::OwnershipTransferred { transferred_at, .. } => *transferred_at,
    };
    match event {
        E::OrganizationCreated {
            name,
            created_by,
            creator_email,
            created_at,
            ..
        } => {
            portable!(conn.reborrow(), conn => { sqlx::query(
                "INSERT INTO organization_list (organization_id, name, created_at, updated_at, last_sequence)
                 VALUES ($1, $2, $3, $3, 0) ON CONFLICT (organization_id) DO NOTHING",
            )
            .bind(organization_id)
            .bind(name.as_str())
            .bind(created_at)
            .execute(conn)
            .await .map(|done| done.rows_affected()) })?;
            add_member(
                conn.reborrow(),
                organization_id,
                created_by.0,
                creator_email.as_str(),
                MemberRole::Owner,
                created_at,
            )
            .await?;
        }
        E::OrganizationRenamed { name, .. } => {
            portable!(conn.reborrow(), conn => { sqlx::query("UPDATE organization_list SET name = $2 WHERE organization_id = $1")
                .bind(organization_id)
                .bind(name.as_str())
                .execute(conn)
                .await .map(|done| done.rows_affected()) })?;
        }
        E::OrganizationDeleted { deleted_at, .. } => {
            portable!(conn.reborrow(), conn => { sqlx::query("UPDATE organization_list SET deleted_at = $2 WHERE organization_id = $1")
                .bind(organization_id)
                .bind(deleted_at)
                .execute(conn)
                .await .map(|done| done.rows_affected()) })?;
        }
        E::MemberInvited {
            invitation_id,
            email,
            role,
            invited_by,
            expires_at,
            replaces,
            invited_at,
            ..
        } => {
            if let Some(replaced) = replaces {
                set_invitation_state(conn.reborrow(), replaced.0, "replaced").await?;
            }
            portable!(conn.reborrow(), conn => { sqlx::query(
                "INSERT INTO organization_invitations
                     (invitation_id, organization_id, email, role, invited_by, invited_at, expires_at, state)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending') ON CONFLICT (invitation_id) DO NOTHING",
            )
            .bind(invitation_id.0)
            .bind(organization_id)
            .bind(email.as_str())
            .bind(role.as_str())
            .bind(invited_by.0)
            .bind(invited_at)
            .bind(expires_at)
            .execute(conn)
            .await .map(|done| done.rows_affected()) })?;
        }
        E::InvitationRevoked { invitation_id, .. } => {
            set_invitation_state(conn.reborrow(), invitation_id.0, "revoked").await?
        }
        E::MemberJoined {
            user_id,
            email,
            role,
            invitation_id,
            joined_at,
        } => {
            set_invitation_state(conn.reborrow(), invitation_id.0, "accepted").await?;
            add_member(
                conn.reborrow(),
                organization_id,
                user_id.0,
                email.as_str(),
                role,
                joined_at,
            )
            .await?;
        }
        E::MemberRoleChanged { user_id, to, .. } => set_role(conn.reborrow(), organization_id, user_id.0, to).await?,
        E::MemberCreditLimitSet {
            user_id,
            monthly_credit_limit,
            ..
        } => {
            portable!(conn.reborrow(), conn => { sqlx::query(
                "UPDATE organization_members SET monthly_credit_limit = $3 WHERE organization_id = $1 AND user_id = $2",
            )
            .bind(organization_id)
            .bind(user_id.0)
            .bind(monthly_credit_limit)
            .execute(conn)
            .await .map(|done| done.rows_affected()) })?;
        }
        E::MemberRemoved { user_id, .. } | E::MemberLeft { user_id, .. } => {
            remove_member(conn.reborrow(), organization_id, user_id.0).await?;
        }
        E::OwnershipTransferred { from, to, from_now, .. } => {
            set_role(conn.reborrow(), organization_id, to.0, MemberRole::Owner).await?;
            match from_now {
                Some(role) => set_role(conn.reborrow(), organization_id, from.0, role).await?,
                None => remove_member(conn.reborrow(), organization_id, from.0).await?,
            }
        }
    }
    portable!(conn.reborrow(), conn => { sqlx::query("UPDATE organization_list SET updated_at = $2 WHERE organization_id = $1")
        .bind(organization_id)
        .bind(touched_at)
        .execute(conn)
        .await .map(|done| done.rows_affected()) })?;
    Ok(())
}

async fn add_member(
    mut conn: Connection<'_>,
    organization_id: Uuid,
    user_id: Uuid,
    email: &str,
    role: MemberRole,
    joined_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    portable!(conn.reborrow(), conn => { sqlx::query(
        "INSERT INTO organization_members (organization_id, user_id, email, role, joined_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (organization_id, user_id) DO UPDATE SET email = $3, role = $4, joined_at = $5,
             monthly_credit_limit = NULL",
    )
    .bind(organization_id)
    .bind(user_id)
    .bind(email)
    .bind(role.as_str())
    .bind(joined_at)
    .execute(conn)
    .await .map(|done| done.rows_affected()) })?;
    Ok(())
}

async fn set_role(
    mut conn: Connection<'_>,
    organization_id: Uuid,
    user_id: Uuid,
    role: MemberRole,
) -> Result<(), sqlx::Error> {
    portable!(conn.reborrow(), conn => { sqlx::query("UPDATE organization_members SET role = $3 WHERE organization_id = $1 AND user_id = $2")
        .bind(organization_id)
        .bind(user_id)
        .bind(role.as_str())
        .execute(conn)
        .await .map(|done| done.rows_affected()) })?;
    Ok(())
}

async fn remove_member(mut conn: Connection<'_>, organization_id: Uuid, user_id: Uuid) -> Result<(), sqlx::Error> {
    portable!(conn.reborrow(), conn => { sqlx::query("DELETE FROM organization_members WHERE organization_id = $1 AND user_id = $2")
        .bind(organization_id)
        .bind(user_id)
        .execute(conn)
        .await .map(|done| done.rows_affected()) })?;
    Ok(())
}

async fn set_invitation_state(mut conn: Connection<'_>, invitation_id: Uuid, state: &str) -> Result<(), sqlx::Error> {
    portable!(conn.reborrow(), conn => { sqlx::query("UPDATE organization_invitations SET state = $2 WHERE invitation_id = $1")
        .bind(invitation_id)
        .bind(state)
        .execute(conn)
        .await .map(|done| done.rows_affected()) })?;
    Ok(())
}

/// An organisation as a member sees it in a list, with their role.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OrganizationRow {
    /// Its id.
    pub organization_id: Uuid,
    /// Its name.
    pub name: String,
    /// The member's role (`owner`, `admin`, `member`, `viewer`).
    pub role: String,
    /// How many members it has.
    pub member_count: i64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

const ORGANIZATION_COLUMNS: &str = "o.organization_id, o.name, m.role,
    (SELECT count(*) FROM organization_members c WHERE c.organization_id = o.organization_id) AS member_count,
    o.created_at, o.updated_at";

/// `user_id`'s organisations in creation order, after `cursor`; at most `limit`.
pub async fn list_for_member(
    database: &Database,
    user_id: Uuid,
    cursor: Option<Uuid>,
    limit: i64,
) -> Result<Vec<OrganizationRow>, sqlx::Error> {
    portable!(database.reader(), pool => { sqlx::query_as(&format!(
        "SELECT {ORGANIZATION_COLUMNS} FROM organization_members m
         JOIN organization_list o ON o.organization_id = m.organization_id
         WHERE m.user_id = $1 AND o.deleted_at IS NULL AND ($2 IS NULL OR m.organization_id > $2)
         ORDER BY m.organization_id LIMIT $3"
    ))
    .bind(user_id)
    .bind(cursor)
    .bind(limit.clamp(1, 1_000))
    .fetch_all(pool)
    .await })
}

/// One organisation as `user_id` sees it; `None` when it is gone or they are not (yet, in this
/// read model) a member.
pub async fn get_for_member(
    database: &Database,
    user_id: Uuid,
    organization_id: Uuid,
) -> Result<Option<OrganizationRow>, sqlx::Error> {
    portable!(database.reader(), pool => { sqlx::query_as(&format!(
        "SELECT {ORGANIZATION_COLUMNS} FROM organization_members m
         JOIN organization_list o ON o.organization_id = m.organization_id
         WHERE m.user_id = $1 AND m.organization_id = $2 AND o.deleted_at IS NULL"
    ))
    .bind(user_id)
    .bind(organization_id)
    .fetch_optional(pool)
    .await })
}

/// One organisation for the administration area (any state).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OrganizationSummary {
    /// Its id.
    pub organization_id: Uuid,
    /// Its name.
    pub name: String,
    /// How many members it has.
    pub member_count: i64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it was deleted.
    pub deleted_at: Option<DateTime<Utc>>,
}

const SUMMARY_COLUMNS: &str = "o.organization_id, o.name,
    (SELECT count(*) FROM organization_members c WHERE c.organization_id = o.organization_id) AS member_count,
    o.created_at, o.updated_at, o.deleted_at";

/// Every organisation, in creation order, after `cursor`; at most `limit`.
pub async fn list_all(
    database: &Database,
    cursor: Option<Uuid>,
    limit: i64,
) -> Result<Vec<OrganizationSummary>, sqlx::Error> {
    portable!(database.reader(), pool => { sqlx::query_as(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM organization_list o
         WHERE ($1 IS NULL OR o.organization_id > $1) ORDER BY o.organization_id LIMIT $2"
    ))
    .bind(cursor)
    .bind(limit.clamp(1, 1_000))
    .fetch_all(pool)
    .await })
}

/// One organisation for the administration area.
pub async fn get_any(database: &Database, organization_id: Uuid) -> Result<Option<OrganizationSummary>, sqlx::Error> {
    portable!(database.reader(), pool => { sqlx::query_as(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM organization_list o WHERE o.organization_id = $1"
    ))
    .bind(organization_id)
    .fetch_optional(pool)
    .await })
}

/// A member as the members list shows them.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MemberRow {
    /// The user.
    pub user_id: Uuid,
    /// Their address.
    pub email: String,
    /// Their role.
    pub role: String,
    /// Their monthly credit limit, when one is set.
    pub monthly_credit_limit: Option<i64>,
    /// When they joined.
    pub joined_at: DateTime<Utc>,
}

/// The members of `organization_id`, by user id, after `cursor`; at most `limit`.
pub async fn members(
    database: &Database,
    organization_id: Uuid,
    cursor: Option<Uuid>,
    limit: i64,
) -> Result<Vec<MemberRow>, sqlx::Error> {
    portable!(database.reader(), pool => { sqlx::query_as(
        "SELECT user_id, email, role, monthly_credit_limit, joined_at FROM organization_members
         WHERE organization_id = $1 AND ($2 IS NULL OR user_id > $2) ORDER BY user_id LIMIT $3",
    )
    .bind(organization_id)
    .bind(cursor)
    .bind(limit.clamp(1, 1_000))
    .fetch_all(pool)
    .await })
}

/// An invitation as the invitations list shows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InvitationRow {
    /// Its id.
    pub invitation_id: Uuid,
    /// The invited address.
    pub email: String,
    /// The role it grants.
    pub role: String,
    /// Who invited.
    pub invited_by: Uuid,
    /// When.
    pub invited_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// The pending, unexpired invitations of `organization_id` at `now`, newest first, after
/// `cursor`; at most `limit`.
pub async fn pending_invitations(
    database: &Database,
    organization_id: Uuid,
    now: DateTime<Utc>,
    cursor: Option<Uuid>,
    limit: i64,
) -> Result<Vec<InvitationRow>, sqlx::Error> {
    portable!(database.reader(), pool => { sqlx::query_as(
        "SELECT invitation_id, email, role, invited_by, invited_at, expires_at FROM organization_invitations
         WHERE organization_id = $1 AND state = 'pending' AND expires_at > $2
           AND ($3 IS NULL OR invitation_id < $3)
         ORDER BY invitation_id DESC LIMIT $4",
    )
    .bind(organization_id)
    .bind(now)
    .bind(cursor)
    .bind(limit.clamp(1, 1_000))
    .fetch_all(pool)
    .await })
}

/// The live organisations `user_id` is a member of, as this read model knows them.
pub async fn organization_ids_of(database: &Database, user_id: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    portable!(database.reader(), pool => { sqlx::query_scalar(
        "SELECT m.organization_id FROM organization_members m
         JOIN organization_list o ON o.organization_id = m.organization_id
         WHERE m.user_id = $1 AND o.deleted_at IS NULL ORDER BY m.organization_id",
    )
    .bind(user_id)
    .fetch_all(pool)
    .await })
}
