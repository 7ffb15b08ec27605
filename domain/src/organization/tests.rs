//! Given / when / then for every command: the exact events, or the exact error.

use super::*;
use crate::ids::{InvitationId, OrganizationId, UserId};
use crate::values::{EmailAddress, OrganizationName, TokenHash};
use chrono::{DateTime, Duration, Utc};
use cqrs_es::test::TestFramework;

type Test = TestFramework<Organization>;

fn email(raw: &str) -> EmailAddress {
    EmailAddress::parse("email", raw).expect("valid")
}

fn name(raw: &str) -> OrganizationName {
    OrganizationName::parse("name", raw).expect("valid")
}

fn token(raw: &str) -> TokenHash {
    TokenHash(format!("hash-of-{raw}"))
}

/// An organisation "Studio" whose owner is `owner`, and the people around it.
struct Given {
    id: OrganizationId,
    owner: UserId,
    other: UserId,
    at: DateTime<Utc>,
}

impl Given {
    fn new() -> Self {
        Self {
            id: OrganizationId::new(),
            owner: UserId::new(),
            other: UserId::new(),
            at: Utc::now(),
        }
    }

    fn created(&self) -> OrganizationEvent {
        OrganizationEvent::OrganizationCreated {
            organization_id: self.id,
            name: name("Studio"),
            created_by: self.owner,
            creator_email: email("owner@example.com"),
            created_at: self.at,
        }
    }

    /// The owner invited `address` with `role`; the token is named after the address.
    fn invited(&self, invitation: InvitationId, address: &str, role: MemberRole) -> OrganizationEvent {
        self.invited_again(invitation, address, role, address, None)
    }

    /// The owner invited `address`, with the token `token_of` and replacing `replaces`.
    fn invited_again(
        &self,
        invitation: InvitationId,
        address: &str,
        role: MemberRole,
        token_of: &str,
        replaces: Option<InvitationId>,
    ) -> OrganizationEvent {
        OrganizationEvent::MemberInvited {
            invitation_id: invitation,
            email: email(address),
            role,
            token_hash: token(token_of),
            invited_by: self.owner,
            expires_at: self.at + Duration::days(7),
            replaces,
            invited_at: self.at,
        }
    }

    fn invite(&self, actor: UserId, invitation: InvitationId, address: &str, role: MemberRole) -> OrganizationCommand {
        OrganizationCommand::InviteMember {
            actor,
            invitation_id: invitation,
            email: email(address),
            role,
            token_hash: token(address),
            expires_at: self.at + Duration::days(7),
            at: self.at,
        }
    }

    fn accept(&self, user: UserId, address: &str, token_of: &str) -> OrganizationCommand {
        OrganizationCommand::AcceptInvitation {
            user_id: user,
            email: email(address),
            token_hash: token(token_of),
            at: self.at,
        }
    }

    /// `user` joined with `role` (through an invitation to `address`).
    fn joined(&self, user: UserId, address: &str, role: MemberRole) -> Vec<OrganizationEvent> {
        let invitation = InvitationId::new();
        vec![
            self.invited(invitation, address, role),
            OrganizationEvent::MemberJoined {
                user_id: user,
                email: email(address),
                role,
                invitation_id: invitation,
                joined_at: self.at,
            },
        ]
    }

    /// The organisation with `other` as a member of `role`.
    fn with_other(&self, role: MemberRole) -> Vec<OrganizationEvent> {
        let mut events = vec![self.created()];
        events.extend(self.joined(self.other, "other@example.com", role));
        events
    }

    fn change_role(&self, actor: UserId, member: UserId, role: MemberRole) -> OrganizationCommand {
        OrganizationCommand::ChangeRole {
            actor,
            member,
            role,
            at: self.at,
        }
    }
}

#[test]
fn creating_an_organisation_makes_its_creator_the_owner() {
    let g = Given::new();
    Test::with(())
        .given_no_previous_events()
        .when(OrganizationCommand::CreateOrganization {
            organization_id: g.id,
            name: name("Studio"),
            creator: g.owner,
            creator_email: email("owner@example.com"),
            at: g.at,
        })
        .then_expect_events(vec![g.created()]);
    let mut organization = Organization::default();
    cqrs_es::Aggregate::apply(&mut organization, g.created());
    assert_eq!(organization.role_of(g.owner), Some(MemberRole::Owner));
    assert_eq!(organization.role_of(g.other), None);
}

#[test]
fn creating_an_existing_organisation_is_refused() {
    let g = Given::new();
    Test::with(())
        .given(vec![g.created()])
        .when(OrganizationCommand::CreateOrganization {
            organization_id: g.id,
            name: name("Studio"),
            creator: g.other,
            creator_email: email("other@example.com"),
            at: g.at,
        })
        .then_expect_error(OrganizationError::AlreadyExists);
}

#[test]
fn owners_and_admins_rename_and_the_same_name_records_nothing() {
    let g = Given::new();
    Test::with(())
        .given(g.with_other(MemberRole::Admin))
        .when(OrganizationCommand::RenameOrganization {
            actor: g.other,
            name: name("Studio North"),
            at: g.at,
        })
        .then_expect_events(vec![OrganizationEvent::OrganizationRenamed {
            name: name("Studio North"),
            renamed_by: g.other,
            renamed_at: g.at,
        }]);
    Test::with(())
        .given(vec![g.created()])
        .when(OrganizationCommand::RenameOrganization {
            actor: g.owner,
            name: name("Studio"),
            at: g.at,
        })
        .then_expect_events(vec![]);
}

#[test]
fn members_may_not_rename_and_strangers_are_told_it_does_not_exist() {
    let g = Given::new();
    Test::with(())
        .given(g.with_other(MemberRole::Member))
        .when(OrganizationCommand::RenameOrganization {
            actor: g.other,
            name: name("Mine now"),
            at: g.at,
        })
        .then_expect_error(OrganizationError::NotPermitted {
            needed: MemberRole::Admin,
            held: MemberRole::Member,
        });
    Test::with(())
        .given(vec![g.created()])
        .when(OrganizationCommand::RenameOrganization {
            actor: UserId::new(),
            name: name("Mine now"),
            at: g.at,
        })
        .then_expect_error(OrganizationError::NotFound);
}

#[test]
fn only_an_owner_deletes_and_never_while_jobs_are_active() {
    let g = Given::new();
    Test::with(())
        .given(vec![g.created()])
        .when(OrganizationCommand::DeleteOrganization {
            actor: g.owner,
            active_jobs: 0,
            paid_plan: false,
            at: g.at,
        })
        .then_expect_events(vec![OrganizationEvent::OrganizationDeleted {
            deleted_by: g.owner,
            deleted_at: g.at,
        }]);
    Test::with(())
        .given(vec![g.created()])
        .when(OrganizationCommand::DeleteOrganization {
            actor: g.owner,
            active_jobs: 2,
            paid_plan: false,
            at: g.at,
        })
        .then_expect_error(OrganizationError::JobsActive { active_jobs: 2 });
    Test::with(())
        .given(vec![g.created()])
        .when(OrganizationCommand::DeleteOrganization {
            actor: g.owner,
            active_jobs: 0,
            paid_plan: true,
            at: g.at,
        })
        .then_expect_error(OrganizationError::PlanActive);
    Test::with(())
        .given(g.with_other(MemberRole::Admin))
        .when(OrganizationCommand::DeleteOrganization {
            actor: g.other,
            active_jobs: 0,
            paid_plan: false,
            at: g.at,
        })
        .then_expect_error(OrganizationError::NotPermitted {
            needed: MemberRole::Owner,
            held: MemberRole::Admin,
        });
}

#[test]
fn a_deleted_organisation_is_not_found_to_its_own_members() {
    let g = Given::new();
    let mut events = g.with_other(MemberRole::Admin);
    events.push(OrganizationEvent::OrganizationDeleted {
        deleted_by: g.owner,
        deleted_at: g.at,
    });
    Test::with(())
        .given(events.clone())
        .when(OrganizationCommand::RenameOrganization {
            actor: g.owner,
            name: name("Back"),
            at: g.at,
        })
        .then_expect_error(OrganizationError::NotFound);
    Test::with(())
        .given(events)
        .when(g.accept(UserId::new(), "late@example.com", "late@example.com"))
        .then_expect_error(OrganizationError::InvitationNotFound);
}

#[test]
fn inviting_records_the_invitation_with_its_token_hash() {
    let g = Given::new();
    let invitation = InvitationId::new();
    Test::with(())
        .given(vec![g.created()])
        .when(g.invite(g.owner, invitation, "bob@example.com", MemberRole::Member))
        .then_expect_events(vec![g.invited(invitation, "bob@example.com", MemberRole::Member)]);
}

#[test]
fn inviting_the_same_address_again_replaces_the_pending_invitation() {
    let g = Given::new();
    let first = InvitationId::new();
    let second = InvitationId::new();
    Test::with(())
        .given(vec![
            g.created(),
            g.invited(first, "bob@example.com", MemberRole::Viewer),
        ])
        .when(g.invite(g.owner, second, "bob@example.com", MemberRole::Member))
        .then_expect_events(vec![g.invited_again(
            second,
            "bob@example.com",
            MemberRole::Member,
            "bob@example.com",
            Some(first),
        )]);
}

#[test]
fn admins_invite_below_owner_and_members_do_not_invite() {
    let g = Given::new();
    Test::with(())
        .given(g.with_other(MemberRole::Admin))
        .when(g.invite(g.other, InvitationId::new(), "boss@example.com", MemberRole::Owner))
        .then_expect_error(OrganizationError::OwnersOnly);
    Test::with(())
        .given(g.with_other(MemberRole::Member))
        .when(g.invite(g.other, InvitationId::new(), "pal@example.com", MemberRole::Member))
        .then_expect_error(OrganizationError::NotPermitted {
            needed: MemberRole::Admin,
            held: MemberRole::Member,
        });
}

#[test]
fn inviting_a_member_is_refused() {
    let g = Given::new();
    Test::with(())
        .given(g.with_other(MemberRole::Viewer))
        .when(g.invite(g.owner, InvitationId::new(), "other@example.com", MemberRole::Admin))
        .then_expect_error(OrganizationError::AlreadyMember);
}

#[test]
fn accepting_joins_with_the_invited_role() {
    let g = Given::new();
    let invitation = InvitationId::new();
    let bob = UserId::new();
    Test::with(())
        .given(vec![
            g.created(),
            g.invited(invitation, "bob@example.com", MemberRole::Admin),
        ])
        .when(g.accept(bob, "bob@example.com", "bob@example.com"))
        .then_expect_events(vec![OrganizationEvent::MemberJoined {
            user_id: bob,
            email: email("bob@example.com"),
            role: MemberRole::Admin,
            invitation_id: invitation,
            joined_at: g.at,
        }]);
}

#[test]
fn accepting_from_another_address_is_refused_naming_the_invited_one_partly() {
    let g = Given::new();
    Test::with(())
        .given(vec![
            g.created(),
            g.invited(InvitationId::new(), "bob@example.com", MemberRole::Member),
        ])
        .when(g.accept(UserId::new(), "eve@example.com", "bob@example.com"))
        .then_expect_error(OrganizationError::InvitationForAnotherAddress {
            invited: "b**@example.com".to_owned(),
        });
}

#[test]
fn a_used_revoked_replaced_expired_or_unknown_token_is_refused_saying_which() {
    let g = Given::new();
    let bob = UserId::new();
    let invitation = InvitationId::new();
    let invited = || {
        vec![
            g.created(),
            g.invited(invitation, "bob@example.com", MemberRole::Member),
        ]
    };
    let mut used = invited();
    used.push(OrganizationEvent::MemberJoined {
        user_id: bob,
        email: email("bob@example.com"),
        role: MemberRole::Member,
        invitation_id: invitation,
        joined_at: g.at,
    });
    Test::with(())
        .given(used)
        .when(g.accept(bob, "bob@example.com", "bob@example.com"))
        .then_expect_error(OrganizationError::InvitationUsed);

    let mut revoked = invited();
    revoked.push(OrganizationEvent::InvitationRevoked {
        invitation_id: invitation,
        revoked_by: g.owner,
        revoked_at: g.at,
    });
    Test::with(())
        .given(revoked)
        .when(g.accept(bob, "bob@example.com", "bob@example.com"))
        .then_expect_error(OrganizationError::InvitationRevoked);

    let mut replaced = invited();
    replaced.push(g.invited_again(
        InvitationId::new(),
        "bob@example.com",
        MemberRole::Member,
        "newer",
        Some(invitation),
    ));
    Test::with(())
        .given(replaced)
        .when(g.accept(bob, "bob@example.com", "bob@example.com"))
        .then_expect_error(OrganizationError::InvitationReplaced);

    Test::with(())
        .given(invited())
        .when(OrganizationCommand::AcceptInvitation {
            user_id: bob,
            email: email("bob@example.com"),
            token_hash: token("bob@example.com"),
            at: g.at + Duration::days(7),
        })
        .then_expect_error(OrganizationError::InvitationExpired);

    Test::with(())
        .given(invited())
        .when(g.accept(bob, "bob@example.com", "forged"))
        .then_expect_error(OrganizationError::InvitationNotFound);
}

#[test]
fn revoking_withdraws_a_pending_invitation_once() {
    let g = Given::new();
    let invitation = InvitationId::new();
    let revoked = OrganizationEvent::InvitationRevoked {
        invitation_id: invitation,
        revoked_by: g.owner,
        revoked_at: g.at,
    };
    let revoke = || OrganizationCommand::RevokeInvitation {
        actor: g.owner,
        invitation_id: invitation,
        at: g.at,
    };
    Test::with(())
        .given(vec![
            g.created(),
            g.invited(invitation, "bob@example.com", MemberRole::Member),
        ])
        .when(revoke())
        .then_expect_events(vec![revoked.clone()]);
    Test::with(())
        .given(vec![
            g.created(),
            g.invited(invitation, "bob@example.com", MemberRole::Member),
            revoked,
        ])
        .when(revoke())
        .then_expect_error(OrganizationError::InvitationRevoked);
    Test::with(())
        .given(vec![g.created()])
        .when(revoke())
        .then_expect_error(OrganizationError::InvitationNotFound);
}

#[test]
fn an_admin_may_not_revoke_an_invitation_to_be_owner() {
    let g = Given::new();
    let invitation = InvitationId::new();
    let mut events = g.with_other(MemberRole::Admin);
    events.push(g.invited(invitation, "boss@example.com", MemberRole::Owner));
    Test::with(())
        .given(events)
        .when(OrganizationCommand::RevokeInvitation {
            actor: g.other,
            invitation_id: invitation,
            at: g.at,
        })
        .then_expect_error(OrganizationError::OwnersOnly);
}

#[test]
fn changing_a_role_records_from_and_to() {
    let g = Given::new();
    Test::with(())
        .given(g.with_other(MemberRole::Viewer))
        .when(g.change_role(g.owner, g.other, MemberRole::Admin))
        .then_expect_events(vec![OrganizationEvent::MemberRoleChanged {
            user_id: g.other,
            from: MemberRole::Viewer,
            to: MemberRole::Admin,
            changed_by: g.owner,
            changed_at: g.at,
        }]);
    Test::with(())
        .given(g.with_other(MemberRole::Viewer))
        .when(g.change_role(g.owner, g.other, MemberRole::Viewer))
        .then_expect_events(vec![]);
    Test::with(())
        .given(vec![g.created()])
        .when(g.change_role(g.owner, UserId::new(), MemberRole::Admin))
        .then_expect_error(OrganizationError::MemberNotFound);
}

#[test]
fn an_admin_changes_roles_below_owner_only() {
    let g = Given::new();
    Test::with(())
        .given(g.with_other(MemberRole::Admin))
        .when(g.change_role(g.other, g.owner, MemberRole::Member))
        .then_expect_error(OrganizationError::OwnersOnly);
    Test::with(())
        .given(g.with_other(MemberRole::Admin))
        .when(g.change_role(g.other, g.other, MemberRole::Owner))
        .then_expect_error(OrganizationError::OwnersOnly);
    Test::with(())
        .given(g.with_other(MemberRole::Member))
        .when(g.change_role(g.other, g.other, MemberRole::Admin))
        .then_expect_error(OrganizationError::NotPermitted {
            needed: MemberRole::Admin,
            held: MemberRole::Member,
        });
}

#[test]
fn the_last_owner_cannot_be_demoted() {
    let g = Given::new();
    Test::with(())
        .given(vec![g.created()])
        .when(g.change_role(g.owner, g.owner, MemberRole::Admin))
        .then_expect_error(OrganizationError::LastOwner);
}

#[test]
fn of_two_owners_demoting_each_other_the_second_finds_itself_no_longer_owner() {
    let g = Given::new();
    let mut events = g.with_other(MemberRole::Owner);
    events.push(OrganizationEvent::MemberRoleChanged {
        user_id: g.other,
        from: MemberRole::Owner,
        to: MemberRole::Admin,
        changed_by: g.owner,
        changed_at: g.at,
    });
    Test::with(())
        .given(events)
        .when(g.change_role(g.other, g.owner, MemberRole::Admin))
        .then_expect_error(OrganizationError::OwnersOnly);
}

#[test]
fn owners_set_and_lift_credit_limits() {
    let g = Given::new();
    let set = |limit: Option<i64>| OrganizationCommand::SetCreditLimit {
        actor: g.owner,
        member: g.other,
        monthly_credit_limit: limit,
        at: g.at,
    };
    Test::with(())
        .given(g.with_other(MemberRole::Member))
        .when(set(Some(500)))
        .then_expect_events(vec![OrganizationEvent::MemberCreditLimitSet {
            user_id: g.other,
            monthly_credit_limit: Some(500),
            set_by: g.owner,
            set_at: g.at,
        }]);
    Test::with(())
        .given(g.with_other(MemberRole::Member))
        .when(set(None))
        .then_expect_events(vec![]);
    Test::with(())
        .given(g.with_other(MemberRole::Member))
        .when(set(Some(-1)))
        .then_expect_error(OrganizationError::InvalidCreditLimit);
    Test::with(())
        .given(g.with_other(MemberRole::Admin))
        .when(OrganizationCommand::SetCreditLimit {
            actor: g.other,
            member: g.other,
            monthly_credit_limit: None,
            at: g.at,
        })
        .then_expect_error(OrganizationError::NotPermitted {
            needed: MemberRole::Owner,
            held: MemberRole::Admin,
        });
}

#[test]
fn removing_a_member_records_who_removed_whom() {
    let g = Given::new();
    Test::with(())
        .given(g.with_other(MemberRole::Member))
        .when(OrganizationCommand::RemoveMember {
            actor: g.owner,
            member: g.other,
            at: g.at,
        })
        .then_expect_events(vec![OrganizationEvent::MemberRemoved {
            user_id: g.other,
            removed_by: g.owner,
            removed_at: g.at,
        }]);
}

#[test]
fn removal_refuses_oneself_owners_by_admins_and_strangers() {
    let g = Given::new();
    let remove = |actor, member| OrganizationCommand::RemoveMember {
        actor,
        member,
        at: g.at,
    };
    Test::with(())
        .given(g.with_other(MemberRole::Admin))
        .when(remove(g.other, g.owner))
        .then_expect_error(OrganizationError::OwnersOnly);
    Test::with(())
        .given(g.with_other(MemberRole::Admin))
        .when(remove(g.other, g.other))
        .then_expect_error(OrganizationError::CannotRemoveSelf);
    Test::with(())
        .given(vec![g.created()])
        .when(remove(g.owner, UserId::new()))
        .then_expect_error(OrganizationError::MemberNotFound);
}

#[test]
fn members_leave_but_the_last_owner_stays() {
    let g = Given::new();
    Test::with(())
        .given(g.with_other(MemberRole::Viewer))
        .when(OrganizationCommand::Leave {
            actor: g.other,
            at: g.at,
        })
        .then_expect_events(vec![OrganizationEvent::MemberLeft {
            user_id: g.other,
            left_at: g.at,
        }]);
    Test::with(())
        .given(g.with_other(MemberRole::Admin))
        .when(OrganizationCommand::Leave {
            actor: g.owner,
            at: g.at,
        })
        .then_expect_error(OrganizationError::LastOwner);
    Test::with(())
        .given(g.with_other(MemberRole::Owner))
        .when(OrganizationCommand::Leave {
            actor: g.owner,
            at: g.at,
        })
        .then_expect_events(vec![OrganizationEvent::MemberLeft {
            user_id: g.owner,
            left_at: g.at,
        }]);
}

#[test]
fn transferring_makes_the_member_owner_and_the_old_owner_admin_or_gone() {
    let g = Given::new();
    for (leave, from_now) in [(false, Some(MemberRole::Admin)), (true, None)] {
        Test::with(())
            .given(g.with_other(MemberRole::Member))
            .when(OrganizationCommand::TransferOwnership {
                actor: g.owner,
                to: g.other,
                leave,
                at: g.at,
            })
            .then_expect_events(vec![OrganizationEvent::OwnershipTransferred {
                from: g.owner,
                to: g.other,
                from_now,
                transferred_at: g.at,
            }]);
    }
    let mut organization = Organization::default();
    for event in g.with_other(MemberRole::Member) {
        cqrs_es::Aggregate::apply(&mut organization, event);
    }
    cqrs_es::Aggregate::apply(
        &mut organization,
        OrganizationEvent::OwnershipTransferred {
            from: g.owner,
            to: g.other,
            from_now: None,
            transferred_at: g.at,
        },
    );
    assert_eq!(organization.role_of(g.other), Some(MemberRole::Owner));
    assert_eq!(organization.role_of(g.owner), None);
}

#[test]
fn transfer_goes_only_from_an_owner_to_another_member_not_yet_owner() {
    let g = Given::new();
    let transfer = |actor, to| OrganizationCommand::TransferOwnership {
        actor,
        to,
        leave: false,
        at: g.at,
    };
    Test::with(())
        .given(g.with_other(MemberRole::Admin))
        .when(transfer(g.other, g.owner))
        .then_expect_error(OrganizationError::NotPermitted {
            needed: MemberRole::Owner,
            held: MemberRole::Admin,
        });
    Test::with(())
        .given(g.with_other(MemberRole::Owner))
        .when(transfer(g.owner, g.other))
        .then_expect_error(OrganizationError::InvalidTransfer);
    Test::with(())
        .given(vec![g.created()])
        .when(transfer(g.owner, g.owner))
        .then_expect_error(OrganizationError::InvalidTransfer);
    Test::with(())
        .given(vec![g.created()])
        .when(transfer(g.owner, UserId::new()))
        .then_expect_error(OrganizationError::InvalidTransfer);
}

#[test]
fn roles_parse_by_name_and_rank_in_order() {
    assert_eq!(MemberRole::parse("role", "admin"), Ok(MemberRole::Admin));
    assert!(MemberRole::parse("role", "root").is_err());
    assert!(
        MemberRole::Viewer < MemberRole::Member
            && MemberRole::Member < MemberRole::Admin
            && MemberRole::Admin < MemberRole::Owner
    );
}
