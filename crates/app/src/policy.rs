//! Who may do what: Keyframe's one authorization policy.
//!
//! Every use case asks [`authorize`] before it acts on something it loaded, and no handler or
//! use case compares owners or roles itself. The rules are one table, [`RULES`]: for each kind
//! of resource and each action, the least standing allowed. Anything not in the table is
//! refused.
//!
//! Access to an owned resource depends on the actor's [`Standing`] towards its owner: the user
//! who owns it personally stands as its owner; a member of the organisation that owns it stands
//! with their role (`viewer < member < admin < owner`); anyone else is a stranger. The use case
//! finds the standing (an organisation's roles come from its aggregate, through the membership
//! guard, so a removal counts on the next request) and the table decides.
//!
//! A refusal is one of two answers. A stranger may not even learn that the resource exists, so
//! they get [`Decision::NotFound`], the same answer as for a resource that does not exist, and
//! ids cannot be probed. A member whose role is too low, or a plain user on an administrator's
//! endpoint, may know it exists and is refused openly ([`Decision::Forbidden`]).

use crate::error::AppError;
use keyframe_domain::organization::MemberRole;

/// Who is asking: a signed-in user, as their access token proved them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    /// The user.
    pub user_id: keyframe_domain::ids::UserId,
    /// Whether they hold the administrator role.
    pub admin: bool,
}

/// How the actor stands towards the owner of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// They own it themselves (a personal resource): every right an owner has.
    Personal,
    /// It belongs to an organisation they are a member of, with this role.
    Member(MemberRole),
    /// Neither: they may not learn it exists.
    Stranger,
}

impl Standing {
    /// The role the standing counts as; a personal owner counts as an owner.
    fn rank(self) -> Option<MemberRole> {
        match self {
            Self::Personal => Some(MemberRole::Owner),
            Self::Member(role) => Some(role),
            Self::Stranger => None,
        }
    }
}

/// What the actor wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read it (and what it holds: a project's videos, a job's artifacts and events).
    View,
    /// Change it (rename a project or an organisation; cancel or retry a job).
    Change,
    /// Delete it.
    Delete,
    /// Put something into it: upload a video into a project, request a job in it, use a job's
    /// result as another job's source.
    AddTo,
    /// Grant credits into a ledger.
    Grant,
    /// See one's own use of a shared ledger (what one's jobs cost).
    ViewOwnUsage,
    /// Pay: buy a plan, set the members' credit limits.
    Pay,
    /// Invite, change the roles of and remove members.
    ManageMembers,
    /// Hand the ownership to another member.
    Transfer,
    /// Act on other people's accounts (the administration area).
    Administer,
}

/// What the action is done to, with the facts access depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// A project.
    Project {
        /// The actor's standing towards its owner.
        standing: Standing,
        /// Whether the actor created it.
        created_by_actor: bool,
        /// Whether it is missing or deleted.
        gone: bool,
    },
    /// A job.
    Job {
        /// The actor's standing towards its owner.
        standing: Standing,
        /// Whether the actor requested it.
        created_by_actor: bool,
        /// Whether it is missing or deleted.
        gone: bool,
    },
    /// A credit ledger (a user's or an organisation's).
    Ledger {
        /// The actor's standing towards its owner.
        standing: Standing,
    },
    /// A media library (the videos and storage quota of a user or an organisation).
    Library {
        /// The actor's standing towards its owner.
        standing: Standing,
    },
    /// An organisation itself: its name, members, invitations and ownership.
    Organization {
        /// The actor's standing in it (`Stranger` when it is missing or deleted).
        standing: Standing,
    },
    /// The accounts of everyone (the administration area).
    Accounts,
}

impl Resource {
    fn kind(&self) -> Kind {
        match self {
            Self::Project { .. } => Kind::Project,
            Self::Job { .. } => Kind::Job,
            Self::Ledger { .. } => Kind::Ledger,
            Self::Library { .. } => Kind::Library,
            Self::Organization { .. } => Kind::Organization,
            Self::Accounts => Kind::Accounts,
        }
    }

    /// The actor's standing and whether they created it; `Err` when it does not exist (or is
    /// deleted). `None` for what no one owns.
    fn standing(&self) -> Result<Option<(Standing, bool)>, Missing> {
        match *self {
            Self::Project {
                standing,
                created_by_actor,
                gone,
            }
            | Self::Job {
                standing,
                created_by_actor,
                gone,
            } => {
                if gone {
                    Err(Missing)
                } else {
                    Ok(Some((standing, created_by_actor)))
                }
            }
            Self::Ledger { standing } | Self::Library { standing } | Self::Organization { standing } => {
                Ok(Some((standing, false)))
            }
            Self::Accounts => Ok(None),
        }
    }

    /// What the resource is called in a not-found answer.
    pub fn name(&self) -> &'static str {
        match self.kind() {
            Kind::Project => "project",
            Kind::Job => "job",
            Kind::Ledger => "ledger",
            Kind::Library => "library",
            Kind::Organization => "organization",
            Kind::Accounts => "accounts",
        }
    }
}

/// The resource does not exist (or no longer does).
struct Missing;

/// The kinds of resource the table speaks of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// [`Resource::Project`].
    Project,
    /// [`Resource::Job`].
    Job,
    /// [`Resource::Ledger`].
    Ledger,
    /// [`Resource::Library`].
    Library,
    /// [`Resource::Organization`].
    Organization,
    /// [`Resource::Accounts`].
    Accounts,
}

/// Who a rule lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// Those standing at least at this role (a personal owner stands as owner); other
    /// members are refused, strangers are told it does not exist.
    AtLeast(MemberRole),
    /// At least the first role; or at least the second for what the actor created.
    AtLeastOrOwn(MemberRole, MemberRole),
    /// Administrators; anyone else is refused.
    Administrators,
}

use MemberRole::{Admin, Member, Owner, Viewer};

/// The policy: who may do each action to each kind of resource. Not listed: refused.
pub const RULES: &[(Kind, Action, Allowed)] = &[
    (Kind::Project, Action::View, Allowed::AtLeast(Viewer)),
    (Kind::Project, Action::Change, Allowed::AtLeast(Member)),
    (Kind::Project, Action::AddTo, Allowed::AtLeast(Member)),
    (Kind::Project, Action::Delete, Allowed::AtLeastOrOwn(Admin, Member)),
    (Kind::Job, Action::View, Allowed::AtLeast(Viewer)),
    (Kind::Job, Action::Change, Allowed::AtLeast(Member)),
    (Kind::Job, Action::AddTo, Allowed::AtLeast(Member)),
    (Kind::Job, Action::Delete, Allowed::AtLeastOrOwn(Admin, Member)),
    (Kind::Ledger, Action::View, Allowed::AtLeast(Admin)),
    (Kind::Ledger, Action::ViewOwnUsage, Allowed::AtLeast(Member)),
    (Kind::Ledger, Action::Pay, Allowed::AtLeast(Owner)),
    (Kind::Ledger, Action::Grant, Allowed::Administrators),
    (Kind::Library, Action::View, Allowed::AtLeast(Viewer)),
    (Kind::Library, Action::AddTo, Allowed::AtLeast(Member)),
    (Kind::Library, Action::Change, Allowed::AtLeast(Member)),
    (Kind::Organization, Action::View, Allowed::AtLeast(Viewer)),
    (Kind::Organization, Action::Change, Allowed::AtLeast(Admin)),
    (Kind::Organization, Action::ManageMembers, Allowed::AtLeast(Admin)),
    (Kind::Organization, Action::Pay, Allowed::AtLeast(Owner)),
    (Kind::Organization, Action::Transfer, Allowed::AtLeast(Owner)),
    (Kind::Organization, Action::Delete, Allowed::AtLeast(Owner)),
    (Kind::Accounts, Action::View, Allowed::Administrators),
    (Kind::Accounts, Action::Administer, Allowed::Administrators),
];

/// The policy's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allowed,
    /// Answer as if the resource did not exist.
    NotFound,
    /// Refuse openly: the endpoint is for administrators.
    AdministratorsOnly,
    /// Refuse openly: the actor's role is too low (or nothing allows this at all).
    RoleTooLow {
        /// The least role that may.
        needed: MemberRole,
        /// The actor's.
        held: MemberRole,
    },
}

/// Whether `actor` may do `action` to `resource`.
pub fn authorize(actor: &Actor, action: Action, resource: &Resource) -> Decision {
    let Ok(standing) = resource.standing() else {
        return Decision::NotFound;
    };
    let rule = RULES
        .iter()
        .find(|(kind, listed, _)| *kind == resource.kind() && *listed == action)
        .map(|(_, _, allowed)| *allowed);
    let Some(rule) = rule else {
        return Decision::AdministratorsOnly;
    };
    let created_by_actor = standing.is_some_and(|(_, created)| created);
    let needed = match rule {
        Allowed::Administrators if actor.admin => return Decision::Allowed,
        Allowed::Administrators => return Decision::AdministratorsOnly,
        Allowed::AtLeastOrOwn(_, own) if created_by_actor => own,
        Allowed::AtLeast(role) | Allowed::AtLeastOrOwn(role, _) => role,
    };
    // Only what no one owns (the accounts) has no standing, and only administrators act on it.
    let Some((standing, _)) = standing else {
        return Decision::AdministratorsOnly;
    };
    let Some(held) = standing.rank() else {
        return Decision::NotFound;
    };
    if held >= needed {
        Decision::Allowed
    } else {
        Decision::RoleTooLow { needed, held }
    }
}

/// [`authorize`], as the error a use case returns when refused.
pub fn require(actor: &Actor, action: Action, resource: &Resource) -> Result<(), AppError> {
    match authorize(actor, action, resource) {
        Decision::Allowed => Ok(()),
        Decision::NotFound => Err(AppError::NotFound(resource.name())),
        Decision::AdministratorsOnly => Err(AppError::Forbidden),
        Decision::RoleTooLow { needed, held } => Err(AppError::RoleTooLow { needed, held }),
    }
}

#[cfg(test)]
mod tests;
