//! The rules an `Organization` command can break.

use super::MemberRole;

/// Rules an [`OrganizationCommand`](super::OrganizationCommand) can break.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrganizationError {
    /// `CreateOrganization` for an id that exists.
    #[error("an organisation with this id already exists")]
    AlreadyExists,
    /// No such organisation, it was deleted, or the actor is not a member.
    #[error("no such organisation")]
    NotFound,
    /// The actor's role does not allow this.
    #[error("this needs the role {needed} (you are {held})")]
    NotPermitted {
        /// The least role that may.
        needed: MemberRole,
        /// The actor's role.
        held: MemberRole,
    },
    /// An admin tried to act on an owner, or to grant the owner role.
    #[error("only an owner may change, invite or remove an owner")]
    OwnersOnly,
    /// The change would leave the organisation without an owner.
    #[error("an organisation keeps at least one owner: make another member owner first")]
    LastOwner,
    /// The named user is not a member.
    #[error("no such member")]
    MemberNotFound,
    /// The invited address, or the accepting user, is a member already.
    #[error("already a member of this organisation")]
    AlreadyMember,
    /// Removing oneself: that is leaving.
    #[error("to remove yourself, leave the organisation")]
    CannotRemoveSelf,
    /// Transferring to oneself, to an owner, or to someone who is not a member.
    #[error("ownership goes to a member who is not an owner yet")]
    InvalidTransfer,
    /// A negative credit limit.
    #[error("a monthly credit limit is zero or more")]
    InvalidCreditLimit,
    /// Deleting while jobs of the organisation are queued or running.
    #[error("{active_jobs} jobs of this organisation are queued or running: cancel them or let them finish first")]
    JobsActive {
        /// How many.
        active_jobs: u64,
    },
    /// Deleting while the organisation pays for a plan.
    #[error("this organisation pays for a plan: cancel the subscription first")]
    PlanActive,
    /// No invitation has this id or token.
    #[error("this invitation does not exist")]
    InvitationNotFound,
    /// The invitation was accepted already: a token works once.
    #[error("this invitation was used already")]
    InvitationUsed,
    /// The invitation was revoked.
    #[error("this invitation was revoked")]
    InvitationRevoked,
    /// A newer invitation to the same address replaced it.
    #[error("a newer invitation to the same address replaced this one: use the newest mail")]
    InvitationReplaced,
    /// The invitation is past its time.
    #[error("this invitation has expired: ask for a new one")]
    InvitationExpired,
    /// The accepting account's address is not the invited one.
    #[error("this invitation is for another e-mail address ({invited}); log in with that address to accept it")]
    InvitationForAnotherAddress {
        /// The invited address, partly hidden.
        invited: String,
    },
}
