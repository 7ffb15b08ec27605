//! The `Organization` aggregate: a team whose members share projects, videos, jobs, credits and
//! storage, each member with one role.
//!
//! The members, their roles and the pending invitations live on this one aggregate so that the
//! rules over all of them are checked under optimistic concurrency: at least one owner always
//! (two owners demoting each other at the same moment cannot both succeed: the second finds
//! itself no longer an owner), one pending invitation per address, and who may change whom
//! (an admin never acts on an owner). Every command names its actor, and every event says who
//! acted, so an organisation's history is its audit trail.
//!
//! Invitations carry only the hash of their mailed token. Accepting one needs the token and an
//! account whose verified address is the invited one; a token works once, until it expires, is
//! revoked, or a newer invitation to the same address replaces it.

mod aggregate;
mod command;
mod error;
mod event;

pub use command::OrganizationCommand;
pub use error::OrganizationError;
pub use event::OrganizationEvent;

use crate::ids::{InvitationId, OrganizationId, UserId};
use crate::values::{EmailAddress, OrganizationName, TokenHash};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A member's role. Ordered by rank: `Viewer < Member < Admin < Owner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// Sees everything of the organisation; changes nothing.
    Viewer,
    /// Works in the organisation: projects, uploads, jobs.
    Member,
    /// A member who also manages the members below owner and renames the organisation.
    Admin,
    /// Holds the organisation: billing, credit limits, transfer and deletion.
    Owner,
}

impl MemberRole {
    /// Every role, lowest first.
    pub const ALL: [MemberRole; 4] = [
        MemberRole::Viewer,
        MemberRole::Member,
        MemberRole::Admin,
        MemberRole::Owner,
    ];

    /// The name clients use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Member => "member",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }

    /// The role named `raw` (`owner`, `admin`, `member`, `viewer`).
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, crate::values::ValidationError> {
        Self::ALL
            .into_iter()
            .find(|role| role.as_str() == raw)
            .ok_or_else(|| crate::values::ValidationError {
                field,
                message: "must be one of owner, admin, member, viewer".to_owned(),
            })
    }
}

impl std::fmt::Display for MemberRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Membership {
    /// Their role.
    pub role: MemberRole,
    /// Their address when they joined (the one invited, or the creator's).
    pub email: EmailAddress,
    /// The most credits their jobs may use in a calendar month (UTC); `None`: no limit.
    pub monthly_credit_limit: Option<i64>,
    /// When they joined.
    pub joined_at: DateTime<Utc>,
}

/// Where an invitation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvitationState {
    /// Waiting to be accepted (until it expires).
    Pending,
    /// Accepted: its token is spent.
    Accepted,
    /// Revoked by an owner or admin.
    Revoked,
    /// Replaced by a newer invitation to the same address.
    Replaced,
}

/// An invitation to join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    /// The invited address.
    pub email: EmailAddress,
    /// The role it grants.
    pub role: MemberRole,
    /// The hash of its mailed token.
    pub token_hash: TokenHash,
    /// Who invited.
    pub invited_by: UserId,
    /// When it was sent.
    pub invited_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// Where it stands.
    pub state: InvitationState,
}

impl Invitation {
    /// Whether it can still be accepted at `at`.
    pub fn is_pending_at(&self, at: DateTime<Utc>) -> bool {
        self.state == InvitationState::Pending && at < self.expires_at
    }
}

/// An organisation.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Organization {
    id: Option<OrganizationId>,
    name: OrganizationName,
    members: BTreeMap<UserId, Membership>,
    invitations: BTreeMap<InvitationId, Invitation>,
    created_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
    deleted: bool,
}

impl Organization {
    /// Its id; `None` before creation.
    pub fn id(&self) -> Option<OrganizationId> {
        self.id
    }

    /// Its name.
    pub fn name(&self) -> &OrganizationName {
        &self.name
    }

    /// When it was created.
    pub fn created_at(&self) -> Option<DateTime<Utc>> {
        self.created_at
    }

    /// When it last changed.
    pub fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.updated_at
    }

    /// Whether it was deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted
    }

    /// Whether it exists and is not deleted.
    pub fn is_live(&self) -> bool {
        self.id.is_some() && !self.deleted
    }

    /// `user`'s role, when the organisation is live and they are a member.
    pub fn role_of(&self, user: UserId) -> Option<MemberRole> {
        self.membership(user).map(|membership| membership.role)
    }

    /// `user`'s membership, when the organisation is live and they are a member.
    pub fn membership(&self, user: UserId) -> Option<&Membership> {
        if !self.is_live() {
            return None;
        }
        self.members.get(&user)
    }

    /// Every member.
    pub fn members(&self) -> &BTreeMap<UserId, Membership> {
        &self.members
    }

    /// Every invitation ever sent, whatever became of it.
    pub fn invitations(&self) -> &BTreeMap<InvitationId, Invitation> {
        &self.invitations
    }

    /// How many owners it has.
    pub fn owner_count(&self) -> usize {
        self.members.values().filter(|m| m.role == MemberRole::Owner).count()
    }
}

#[cfg(test)]
mod tests;
