//! The commands of the `Organization` aggregate. Each names who acts: the aggregate checks
//! their role against its current members, under optimistic concurrency.

use super::MemberRole;
use crate::ids::{InvitationId, OrganizationId, UserId};
use crate::values::{EmailAddress, OrganizationName, TokenHash};
use chrono::{DateTime, Utc};

/// Commands for [`Organization`](super::Organization).
#[derive(Debug, Clone)]
pub enum OrganizationCommand {
    /// Create an organisation; its creator is its first owner.
    CreateOrganization {
        /// The new organisation's id (also the aggregate id).
        organization_id: OrganizationId,
        /// Its name.
        name: OrganizationName,
        /// Who creates it.
        creator: UserId,
        /// The creator's address.
        creator_email: EmailAddress,
        /// When.
        at: DateTime<Utc>,
    },
    /// Rename it (owners and admins).
    RenameOrganization {
        /// Who asks.
        actor: UserId,
        /// The new name.
        name: OrganizationName,
        /// When.
        at: DateTime<Utc>,
    },
    /// Delete it (owners, and only while none of its jobs waits or runs).
    DeleteOrganization {
        /// Who asks.
        actor: UserId,
        /// Its jobs that are queued or running now (looked up by the caller).
        active_jobs: u64,
        /// Whether it pays for a plan now (looked up by the caller): its invoices would keep
        /// coming.
        paid_plan: bool,
        /// When.
        at: DateTime<Utc>,
    },
    /// Invite an address with a role; a pending invitation to the same address is replaced.
    InviteMember {
        /// Who invites (owners; admins for roles below owner).
        actor: UserId,
        /// The new invitation's id.
        invitation_id: InvitationId,
        /// The invited address.
        email: EmailAddress,
        /// The role it grants.
        role: MemberRole,
        /// The hash of the token that is mailed.
        token_hash: TokenHash,
        /// When it stops working.
        expires_at: DateTime<Utc>,
        /// When.
        at: DateTime<Utc>,
    },
    /// Withdraw a pending invitation.
    RevokeInvitation {
        /// Who asks.
        actor: UserId,
        /// Which.
        invitation_id: InvitationId,
        /// When.
        at: DateTime<Utc>,
    },
    /// Join through an invitation's token.
    AcceptInvitation {
        /// Who accepts.
        user_id: UserId,
        /// Their verified address (the caller checked it is verified).
        email: EmailAddress,
        /// The hash of the token they hold.
        token_hash: TokenHash,
        /// When.
        at: DateTime<Utc>,
    },
    /// Give a member another role.
    ChangeRole {
        /// Who asks.
        actor: UserId,
        /// Whose role changes.
        member: UserId,
        /// The new role.
        role: MemberRole,
        /// When.
        at: DateTime<Utc>,
    },
    /// Set or clear a member's monthly credit limit (owners).
    SetCreditLimit {
        /// Who asks.
        actor: UserId,
        /// Whose limit.
        member: UserId,
        /// Credits a calendar month, zero or more; `None` lifts the limit.
        monthly_credit_limit: Option<i64>,
        /// When.
        at: DateTime<Utc>,
    },
    /// Remove a member (not oneself: that is leaving).
    RemoveMember {
        /// Who asks.
        actor: UserId,
        /// Who goes.
        member: UserId,
        /// When.
        at: DateTime<Utc>,
    },
    /// Leave the organisation.
    Leave {
        /// Who leaves.
        actor: UserId,
        /// When.
        at: DateTime<Utc>,
    },
    /// An owner hands the ownership to another member, and becomes an admin or leaves.
    TransferOwnership {
        /// The owner handing over.
        actor: UserId,
        /// The member who becomes owner.
        to: UserId,
        /// Whether the old owner leaves instead of staying as admin.
        leave: bool,
        /// When.
        at: DateTime<Utc>,
    },
}
