//! The policy's matrix, written out: every kind of resource and action, for every standing.

use super::*;
use keyframe_domain::ids::UserId;

const ACTIONS: [Action; 10] = [
    Action::View,
    Action::Change,
    Action::Delete,
    Action::AddTo,
    Action::Grant,
    Action::ViewOwnUsage,
    Action::Pay,
    Action::ManageMembers,
    Action::Transfer,
    Action::Administer,
];

const STANDINGS: [Standing; 6] = [
    Standing::Personal,
    Standing::Member(MemberRole::Owner),
    Standing::Member(MemberRole::Admin),
    Standing::Member(MemberRole::Member),
    Standing::Member(MemberRole::Viewer),
    Standing::Stranger,
];

fn user(admin: bool) -> Actor {
    Actor {
        user_id: UserId::new(),
        admin,
    }
}

fn resources(standing: Standing, created_by_actor: bool) -> [Resource; 6] {
    [
        Resource::Project {
            standing,
            created_by_actor,
            gone: false,
        },
        Resource::Job {
            standing,
            created_by_actor,
            gone: false,
        },
        Resource::Ledger { standing },
        Resource::Library { standing },
        Resource::Organization { standing },
        Resource::Accounts,
    ]
}

/// The least role each pair needs (`None`: administrators only, whatever the standing).
fn needed(kind: Kind, action: Action, created_by_actor: bool) -> Option<MemberRole> {
    use MemberRole::{Admin as A, Member as M, Owner as O, Viewer as V};
    match (kind, action) {
        (Kind::Project | Kind::Job, Action::View) => Some(V),
        (Kind::Project | Kind::Job, Action::Change | Action::AddTo) => Some(M),
        (Kind::Project | Kind::Job, Action::Delete) => Some(if created_by_actor { M } else { A }),
        (Kind::Ledger, Action::View) => Some(A),
        (Kind::Ledger, Action::ViewOwnUsage) => Some(M),
        (Kind::Ledger, Action::Pay) => Some(O),
        (Kind::Library, Action::View) => Some(V),
        (Kind::Library, Action::AddTo | Action::Change) => Some(M),
        (Kind::Organization, Action::View) => Some(V),
        (Kind::Organization, Action::Change | Action::ManageMembers) => Some(A),
        (Kind::Organization, Action::Pay | Action::Transfer | Action::Delete) => Some(O),
        _ => None,
    }
}

#[test]
fn the_matrix_of_standings_and_actions_is_as_written() {
    let plain = user(false);
    let admin = user(true);
    for created_by_actor in [false, true] {
        for standing in STANDINGS {
            for resource in resources(standing, created_by_actor) {
                for action in ACTIONS {
                    let expected = match needed(resource.kind(), action, created_by_actor) {
                        None if resource.kind() == Kind::Ledger && action == Action::Grant => {
                            (Decision::AdministratorsOnly, Decision::Allowed)
                        }
                        None if resource.kind() == Kind::Accounts
                            && matches!(action, Action::View | Action::Administer) =>
                        {
                            (Decision::AdministratorsOnly, Decision::Allowed)
                        }
                        None => (Decision::AdministratorsOnly, Decision::AdministratorsOnly),
                        Some(_) if standing == Standing::Stranger => (Decision::NotFound, Decision::NotFound),
                        Some(needed) => {
                            let held = standing.rank().expect("not a stranger");
                            let answer = if held >= needed {
                                Decision::Allowed
                            } else {
                                Decision::RoleTooLow { needed, held }
                            };
                            // Being a platform administrator changes nothing here.
                            (answer, answer)
                        }
                    };
                    let got = (
                        authorize(&plain, action, &resource),
                        authorize(&admin, action, &resource),
                    );
                    assert_eq!(got, expected, "{action:?} on {resource:?}");
                }
            }
        }
    }
}

#[test]
fn the_roles_table_of_the_organisations_contract_holds() {
    // The contract's table, row by row: (action on kind, lowest role allowed).
    use MemberRole::{Admin, Member, Owner, Viewer};
    let rows = [
        (Kind::Project, Action::View, Viewer),
        (Kind::Job, Action::View, Viewer),
        (Kind::Project, Action::AddTo, Member),
        (Kind::Job, Action::Change, Member),
        (Kind::Project, Action::Change, Member),
        (Kind::Organization, Action::ManageMembers, Admin),
        (Kind::Ledger, Action::View, Admin),
        (Kind::Ledger, Action::Pay, Owner),
        (Kind::Organization, Action::Change, Admin),
        (Kind::Organization, Action::Transfer, Owner),
        (Kind::Organization, Action::Delete, Owner),
    ];
    for (kind, action, lowest) in rows {
        assert_eq!(needed(kind, action, false), Some(lowest), "{kind:?} {action:?}");
    }
    // A member deletes their own project, not another's.
    let member = Standing::Member(MemberRole::Member);
    let project = |created_by_actor| Resource::Project {
        standing: member,
        created_by_actor,
        gone: false,
    };
    assert_eq!(
        authorize(&user(false), Action::Delete, &project(true)),
        Decision::Allowed
    );
    assert_eq!(
        authorize(&user(false), Action::Delete, &project(false)),
        Decision::RoleTooLow {
            needed: MemberRole::Admin,
            held: MemberRole::Member
        }
    );
}

#[test]
fn a_deleted_or_missing_resource_is_not_found_even_to_its_owner_and_administrators() {
    for standing in STANDINGS {
        for resource in [
            Resource::Project {
                standing,
                created_by_actor: true,
                gone: true,
            },
            Resource::Job {
                standing,
                created_by_actor: true,
                gone: true,
            },
        ] {
            for action in ACTIONS {
                assert_eq!(authorize(&user(false), action, &resource), Decision::NotFound);
                assert_eq!(authorize(&user(true), action, &resource), Decision::NotFound);
            }
        }
    }
}

#[test]
fn a_refusal_becomes_the_matching_error() {
    let actor = user(false);
    let personal = Resource::Project {
        standing: Standing::Personal,
        created_by_actor: true,
        gone: false,
    };
    assert!(require(&actor, Action::View, &personal).is_ok());
    let strangers = Resource::Project {
        standing: Standing::Stranger,
        created_by_actor: false,
        gone: false,
    };
    assert!(matches!(
        require(&actor, Action::View, &strangers),
        Err(AppError::NotFound("project"))
    ));
    assert!(matches!(
        require(&actor, Action::Administer, &Resource::Accounts),
        Err(AppError::Forbidden)
    ));
    let viewer = Resource::Organization {
        standing: Standing::Member(MemberRole::Viewer),
    };
    assert!(matches!(
        require(&actor, Action::ManageMembers, &viewer),
        Err(AppError::RoleTooLow {
            needed: MemberRole::Admin,
            held: MemberRole::Viewer
        })
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
