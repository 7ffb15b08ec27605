//! The events of the `Organization` aggregate: a published contract (names and payloads never
//! change). Each says who acted.

use super::MemberRole;
use crate::ids::{InvitationId, OrganizationId, UserId};
use crate::values::{EmailAddress, OrganizationName, TokenHash};
use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

/// Events of [`Organization`](super::Organization).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrganizationEvent {
    /// An organisation was created; its creator is its first owner.
    OrganizationCreated {
        /// Its id.
        organization_id: OrganizationId,
        /// Its name.
        name: OrganizationName,
        /// Who created it.
        created_by: UserId,
        /// Their address.
        creator_email: EmailAddress,
        /// When.
        created_at: DateTime<Utc>,
    },
    /// It was renamed.
    OrganizationRenamed {
        /// The new name.
        name: OrganizationName,
        /// Who renamed it.
        renamed_by: UserId,
        /// When.
        renamed_at: DateTime<Utc>,
    },
    /// It was deleted: its members lose access, its projects and videos are released.
    OrganizationDeleted {
        /// Who deleted it.
        deleted_by: UserId,
        /// When.
        deleted_at: DateTime<Utc>,
    },
    /// An address was invited.
    MemberInvited {
        /// The invitation.
        invitation_id: InvitationId,
        /// The invited address.
        email: EmailAddress,
        /// The role it grants.
        role: MemberRole,
        /// The hash of its mailed token.
        token_hash: TokenHash,
        /// Who invited.
        invited_by: UserId,
        /// When it stops working.
        expires_at: DateTime<Utc>,
        /// The pending invitation to the same address it replaces, if any.
        replaces: Option<InvitationId>,
        /// When.
        invited_at: DateTime<Utc>,
    },
    /// A pending invitation was withdrawn.
    InvitationRevoked {
        /// Which.
        invitation_id: InvitationId,
        /// Who revoked it.
        revoked_by: UserId,
        /// When.
        revoked_at: DateTime<Utc>,
    },
    /// An invitation was accepted: its holder is a member now.
    MemberJoined {
        /// The new member.
        user_id: UserId,
        /// Their address (the invited one).
        email: EmailAddress,
        /// Their role.
        role: MemberRole,
        /// The invitation they accepted.
        invitation_id: InvitationId,
        /// When.
        joined_at: DateTime<Utc>,
    },
    /// A member's role changed.
    MemberRoleChanged {
        /// Whose.
        user_id: UserId,
        /// The role before.
        from: MemberRole,
        /// The role now.
        to: MemberRole,
        /// Who changed it.
        changed_by: UserId,
        /// When.
        changed_at: DateTime<Utc>,
    },
    /// A member's monthly credit limit was set or lifted.
    MemberCreditLimitSet {
        /// Whose.
        user_id: UserId,
        /// Credits a calendar month; `None`: no limit.
        monthly_credit_limit: Option<i64>,
        /// Who set it.
        set_by: UserId,
        /// When.
        set_at: DateTime<Utc>,
    },
    /// A member was removed; what they made stays with the organisation.
    MemberRemoved {
        /// Who was removed.
        user_id: UserId,
        /// Who removed them.
        removed_by: UserId,
        /// When.
        removed_at: DateTime<Utc>,
    },
    /// A member left; what they made stays with the organisation.
    MemberLeft {
        /// Who left.
        user_id: UserId,
        /// When.
        left_at: DateTime<Utc>,
    },
    /// An owner handed the ownership to another member.
    OwnershipTransferred {
        /// The owner who handed over.
        from: UserId,
        /// The new owner.
        to: UserId,
        /// The old owner's role now: `admin`, or `None` when they left.
        from_now: Option<MemberRole>,
        /// When.
        transferred_at: DateTime<Utc>,
    },
}

impl DomainEvent for OrganizationEvent {
    fn event_type(&self) -> String {
        match self {
            Self::OrganizationCreated { .. } => "OrganizationCreated",
            Self::OrganizationRenamed { .. } => "OrganizationRenamed",
            Self::OrganizationDeleted { .. } => "OrganizationDeleted",
            Self::MemberInvited { .. } => "MemberInvited",
            Self::InvitationRevoked { .. } => "InvitationRevoked",
            Self::MemberJoined { .. } => "MemberJoined",
            Self::MemberRoleChanged { .. } => "MemberRoleChanged",
            Self::MemberCreditLimitSet { .. } => "MemberCreditLimitSet",
            Self::MemberRemoved { .. } => "MemberRemoved",
            Self::MemberLeft { .. } => "MemberLeft",
            Self::OwnershipTransferred { .. } => "OwnershipTransferred",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
