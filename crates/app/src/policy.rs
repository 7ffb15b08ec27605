//! Who may do what: Keyframe's one authorization policy.
//!
//! Every use case asks [`authorize`] before it acts on something it loaded, and no handler or
//! use case compares owners itself. The rules are one table, [`RULES`]: for each kind of
//! resource and each action, who is allowed. Anything not in the table is refused.
//!
//! A refusal is one of two answers. Where the actor may not even know the resource exists
//! (someone else's project or job), it is [`Decision::NotFound`], the same answer as for a
//! resource that does not exist, so ids cannot be probed. Where the actor may know it exists but
//! lacks the standing (a plain user on an administrator's endpoint), it is
//! [`Decision::Forbidden`].

use crate::error::AppError;
use keyframe_domain::ids::UserId;
use keyframe_domain::job::Job;
use keyframe_domain::project::Project;

/// Who is asking: a signed-in user, as their access token proved them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    /// The user.
    pub user_id: UserId,
    /// Whether they hold the administrator role.
    pub admin: bool,
}

/// What the actor wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read it (and what it holds: a project's videos, a job's artifacts and events).
    View,
    /// Change it (rename a project; cancel or retry a job).
    Change,
    /// Delete it.
    Delete,
    /// Put something into it: upload a video into a project, request a job in it, use a job's
    /// result as another job's source.
    AddTo,
    /// Grant credits into a ledger.
    Grant,
    /// Act on other people's accounts (the administration area).
    Administer,
}

/// What the action is done to, with the facts access depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// A project.
    Project {
        /// Its owner; `None` when it does not exist.
        owner: Option<UserId>,
        /// Whether it is deleted.
        deleted: bool,
    },
    /// A job.
    Job {
        /// Its owner; `None` when it does not exist.
        owner: Option<UserId>,
        /// Whether it is deleted.
        deleted: bool,
    },
    /// A user's credit ledger.
    Ledger {
        /// Whose it is.
        owner: UserId,
    },
    /// A user's media library (their videos and storage quota).
    Library {
        /// Whose it is.
        owner: UserId,
    },
    /// The accounts of everyone (the administration area).
    Accounts,
}

impl Resource {
    /// `project` as the policy sees it.
    pub fn project(project: &Project) -> Self {
        Self::Project {
            owner: project.owner_id(),
            deleted: project.is_deleted(),
        }
    }

    /// `job` as the policy sees it.
    pub fn job(job: &Job) -> Self {
        Self::Job {
            owner: job.owner_id(),
            deleted: job.is_deleted(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            Self::Project { .. } => Kind::Project,
            Self::Job { .. } => Kind::Job,
            Self::Ledger { .. } => Kind::Ledger,
            Self::Library { .. } => Kind::Library,
            Self::Accounts => Kind::Accounts,
        }
    }

    /// The owner, for resources that have one; `Err` when it does not exist (or is deleted).
    fn owner(&self) -> Result<Option<UserId>, Missing> {
        match *self {
            Self::Project { owner, deleted } | Self::Job { owner, deleted } => match owner {
                Some(owner) if !deleted => Ok(Some(owner)),
                _ => Err(Missing),
            },
            Self::Ledger { owner } | Self::Library { owner } => Ok(Some(owner)),
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
    /// [`Resource::Accounts`].
    Accounts,
}

/// Who a rule lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// The resource's owner; anyone else is told it does not exist.
    Owner,
    /// Administrators; anyone else is refused.
    Administrators,
}

/// The policy: who may do each action to each kind of resource. Not listed: refused.
pub const RULES: &[(Kind, Action, Allowed)] = &[
    (Kind::Project, Action::View, Allowed::Owner),
    (Kind::Project, Action::Change, Allowed::Owner),
    (Kind::Project, Action::Delete, Allowed::Owner),
    (Kind::Project, Action::AddTo, Allowed::Owner),
    (Kind::Job, Action::View, Allowed::Owner),
    (Kind::Job, Action::Change, Allowed::Owner),
    (Kind::Job, Action::Delete, Allowed::Owner),
    (Kind::Job, Action::AddTo, Allowed::Owner),
    (Kind::Ledger, Action::View, Allowed::Owner),
    (Kind::Ledger, Action::Grant, Allowed::Administrators),
    (Kind::Library, Action::View, Allowed::Owner),
    (Kind::Library, Action::AddTo, Allowed::Owner),
    (Kind::Library, Action::Change, Allowed::Owner),
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
    /// Refuse openly.
    Forbidden,
}

/// Whether `actor` may do `action` to `resource`.
pub fn authorize(actor: &Actor, action: Action, resource: &Resource) -> Decision {
    let Ok(owner) = resource.owner() else {
        return Decision::NotFound;
    };
    let rule = RULES
        .iter()
        .find(|(kind, listed, _)| *kind == resource.kind() && *listed == action)
        .map(|(_, _, allowed)| *allowed);
    match rule {
        Some(Allowed::Owner) if owner == Some(actor.user_id) => Decision::Allowed,
        Some(Allowed::Owner) => Decision::NotFound,
        Some(Allowed::Administrators) if actor.admin => Decision::Allowed,
        Some(Allowed::Administrators) | None => Decision::Forbidden,
    }
}

/// [`authorize`], as the error a use case returns when refused.
pub fn require(actor: &Actor, action: Action, resource: &Resource) -> Result<(), AppError> {
    match authorize(actor, action, resource) {
        Decision::Allowed => Ok(()),
        Decision::NotFound => Err(AppError::NotFound(resource.name())),
        Decision::Forbidden => Err(AppError::Forbidden),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACTIONS: [Action; 6] = [
        Action::View,
        Action::Change,
        Action::Delete,
        Action::AddTo,
        Action::Grant,
        Action::Administer,
    ];

    fn user(admin: bool) -> Actor {
        Actor {
            user_id: UserId::new(),
            admin,
        }
    }

    /// Every kind of resource, owned by `owner`.
    fn resources_of(owner: UserId) -> [Resource; 5] {
        [
            Resource::Project {
                owner: Some(owner),
                deleted: false,
            },
            Resource::Job {
                owner: Some(owner),
                deleted: false,
            },
            Resource::Ledger { owner },
            Resource::Library { owner },
            Resource::Accounts,
        ]
    }

    /// What each pair is expected to answer for its owner, another user and an administrator
    /// who does not own it: the whole matrix, written out.
    fn expected(kind: Kind, action: Action) -> (Decision, Decision, Decision) {
        use Decision::{Allowed as A, Forbidden as F, NotFound as N};
        match (kind, action) {
            (Kind::Project | Kind::Job, Action::View | Action::Change | Action::Delete | Action::AddTo) => (A, N, N),
            (Kind::Project | Kind::Job, Action::Grant | Action::Administer) => (F, F, F),
            (Kind::Ledger, Action::View) => (A, N, N),
            (Kind::Ledger, Action::Grant) => (F, F, A),
            (Kind::Ledger, _) => (F, F, F),
            (Kind::Library, Action::View | Action::AddTo | Action::Change) => (A, N, N),
            (Kind::Library, _) => (F, F, F),
            // No one owns the accounts as a whole: only the role counts.
            (Kind::Accounts, Action::View | Action::Administer) => (F, F, A),
            (Kind::Accounts, _) => (F, F, F),
        }
    }

    #[test]
    fn the_matrix_of_owner_stranger_and_administrator_is_as_written() {
        let owner = user(false);
        let stranger = user(false);
        let admin = user(true);
        for resource in resources_of(owner.user_id) {
            for action in ACTIONS {
                let got = (
                    authorize(&owner, action, &resource),
                    authorize(&stranger, action, &resource),
                    authorize(&admin, action, &resource),
                );
                assert_eq!(got, expected(resource.kind(), action), "{action:?} on {resource:?}");
            }
        }
    }

    #[test]
    fn an_administrator_who_owns_a_resource_is_its_owner() {
        let admin = user(true);
        let project = Resource::Project {
            owner: Some(admin.user_id),
            deleted: false,
        };
        assert_eq!(authorize(&admin, Action::Delete, &project), Decision::Allowed);
    }

    #[test]
    fn a_deleted_or_missing_resource_is_not_found_even_to_its_owner_and_administrators() {
        let owner = user(false);
        let admin = user(true);
        let gone = [
            Resource::Project {
                owner: Some(owner.user_id),
                deleted: true,
            },
            Resource::Job {
                owner: Some(owner.user_id),
                deleted: true,
            },
            Resource::Project {
                owner: None,
                deleted: false,
            },
            Resource::Job {
                owner: None,
                deleted: false,
            },
        ];
        for resource in gone {
            for action in ACTIONS {
                assert_eq!(authorize(&owner, action, &resource), Decision::NotFound);
                assert_eq!(authorize(&admin, action, &resource), Decision::NotFound);
            }
        }
    }

    #[test]
    fn a_refusal_becomes_the_matching_error() {
        let owner = user(false);
        let stranger = user(false);
        let project = Resource::Project {
            owner: Some(owner.user_id),
            deleted: false,
        };
        assert!(require(&owner, Action::View, &project).is_ok());
        assert!(matches!(
            require(&stranger, Action::View, &project),
            Err(AppError::NotFound("project"))
        ));
        assert!(matches!(
            require(&stranger, Action::Administer, &Resource::Accounts),
            Err(AppError::Forbidden)
        ));
    }

    #[test]
    fn every_rule_is_listed_once() {
        for (index, (kind, action, _)) in RULES.iter().enumerate() {
            assert!(
                !RULES[index + 1..].iter().any(|(k, a, _)| k == kind && a == action),
                "{kind:?} {action:?} is listed twice"
            );
        }
    }
}
