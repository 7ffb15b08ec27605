//! How the `Organization` aggregate decides (commands into events) and evolves (events into
//! state).

use super::{
    Invitation, InvitationState, MemberRole, Membership, Organization, OrganizationCommand, OrganizationError,
    OrganizationEvent,
};
use crate::ids::UserId;
use crate::values::EmailAddress;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;

impl Aggregate for Organization {
    const TYPE: &'static str = "Organization";
    type Command = OrganizationCommand;
    type Event = OrganizationEvent;
    type Error = OrganizationError;
    type Services = ();

    async fn handle(
        &mut self,
        command: OrganizationCommand,
        _: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), OrganizationError> {
        let event = self.decide(command)?;
        for event in event {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: OrganizationEvent) {
        match event {
            OrganizationEvent::OrganizationCreated {
                organization_id,
                name,
                created_by,
                creator_email,
                created_at,
            } => {
                self.id = Some(organization_id);
                self.name = name;
                self.created_at = Some(created_at);
                self.updated_at = Some(created_at);
                self.members.insert(
                    created_by,
                    Membership {
                        role: MemberRole::Owner,
                        email: creator_email,
                        monthly_credit_limit: None,
                        joined_at: created_at,
                    },
                );
            }
            OrganizationEvent::OrganizationRenamed { name, renamed_at, .. } => {
                self.name = name;
                self.updated_at = Some(renamed_at);
            }
            OrganizationEvent::OrganizationDeleted { deleted_at, .. } => {
                self.deleted = true;
                self.updated_at = Some(deleted_at);
            }
            OrganizationEvent::MemberInvited {
                invitation_id,
                email,
                role,
                token_hash,
                invited_by,
                expires_at,
                replaces,
                invited_at,
            } => {
                if let Some(replaced) = replaces.and_then(|id| self.invitations.get_mut(&id)) {
                    replaced.state = InvitationState::Replaced;
                }
                self.invitations.insert(
                    invitation_id,
                    Invitation {
                        email,
                        role,
                        token_hash,
                        invited_by,
                        invited_at,
                        expires_at,
                        state: InvitationState::Pending,
                    },
                );
                self.updated_at = Some(invited_at);
            }
            OrganizationEvent::InvitationRevoked {
                invitation_id,
                revoked_at,
                ..
            } => {
                if let Some(invitation) = self.invitations.get_mut(&invitation_id) {
                    invitation.state = InvitationState::Revoked;
                }
                self.updated_at = Some(revoked_at);
            }
            OrganizationEvent::MemberJoined {
                user_id,
                email,
                role,
                invitation_id,
                joined_at,
            } => {
                if let Some(invitation) = self.invitations.get_mut(&invitation_id) {
                    invitation.state = InvitationState::Accepted;
                }
                self.members.insert(
                    user_id,
                    Membership {
                        role,
                        email,
                        monthly_credit_limit: None,
                        joined_at,
                    },
                );
                self.updated_at = Some(joined_at);
            }
            OrganizationEvent::MemberRoleChanged {
                user_id,
                to,
                changed_at,
                ..
            } => {
                if let Some(member) = self.members.get_mut(&user_id) {
                    member.role = to;
                }
                self.updated_at = Some(changed_at);
            }
            OrganizationEvent::MemberCreditLimitSet {
                user_id,
                monthly_credit_limit,
                set_at,
                ..
            } => {
                if let Some(member) = self.members.get_mut(&user_id) {
                    member.monthly_credit_limit = monthly_credit_limit;
                }
                self.updated_at = Some(set_at);
            }
            OrganizationEvent::MemberRemoved {
                user_id, removed_at, ..
            } => {
                self.members.remove(&user_id);
                self.updated_at = Some(removed_at);
            }
            OrganizationEvent::MemberLeft { user_id, left_at } => {
                self.members.remove(&user_id);
                self.updated_at = Some(left_at);
            }
            OrganizationEvent::OwnershipTransferred {
                from,
                to,
                from_now,
                transferred_at,
            } => {
                if let Some(member) = self.members.get_mut(&to) {
                    member.role = MemberRole::Owner;
                }
                match from_now {
                    Some(role) => {
                        if let Some(member) = self.members.get_mut(&from) {
                            member.role = role;
                        }
                    }
                    None => {
                        self.members.remove(&from);
                    }
                }
                self.updated_at = Some(transferred_at);
            }
        }
    }
}

impl Organization {
    /// The events `command` leads to, or the rule it breaks.
    fn decide(&self, command: OrganizationCommand) -> Result<Vec<OrganizationEvent>, OrganizationError> {
        use OrganizationCommand as C;
        use OrganizationEvent as E;
        let events = match command {
            C::CreateOrganization {
                organization_id,
                name,
                creator,
                creator_email,
                at,
            } => {
                if self.id.is_some() {
                    return Err(OrganizationError::AlreadyExists);
                }
                vec![E::OrganizationCreated {
                    organization_id,
                    name,
                    created_by: creator,
                    creator_email,
                    created_at: at,
                }]
            }
            C::RenameOrganization { actor, name, at } => {
                self.require(actor, MemberRole::Admin)?;
                if name == self.name {
                    return Ok(Vec::new());
                }
                vec![E::OrganizationRenamed {
                    name,
                    renamed_by: actor,
                    renamed_at: at,
                }]
            }
            C::DeleteOrganization {
                actor,
                active_jobs,
                paid_plan,
                at,
            } => {
                self.require(actor, MemberRole::Owner)?;
                if active_jobs > 0 {
                    return Err(OrganizationError::JobsActive { active_jobs });
                }
                if paid_plan {
                    return Err(OrganizationError::PlanActive);
                }
                vec![E::OrganizationDeleted {
                    deleted_by: actor,
                    deleted_at: at,
                }]
            }
            C::InviteMember {
                actor,
                invitation_id,
                email,
                role,
                token_hash,
                expires_at,
                at,
            } => {
                let held = self.require(actor, MemberRole::Admin)?;
                if role == MemberRole::Owner && held != MemberRole::Owner {
                    return Err(OrganizationError::OwnersOnly);
                }
                if self.members.values().any(|member| member.email == email) {
                    return Err(OrganizationError::AlreadyMember);
                }
                let replaces = self.pending_invitation_to(&email, at);
                if let Some(replaced) = replaces.and_then(|id| self.invitations.get(&id))
                    && replaced.role == MemberRole::Owner
                    && held != MemberRole::Owner
                {
                    return Err(OrganizationError::OwnersOnly);
                }
                vec![E::MemberInvited {
                    invitation_id,
                    email,
                    role,
                    token_hash,
                    invited_by: actor,
                    expires_at,
                    replaces,
                    invited_at: at,
                }]
            }
            C::RevokeInvitation {
                actor,
                invitation_id,
                at,
            } => {
                let held = self.require(actor, MemberRole::Admin)?;
                let invitation = self
                    .invitations
                    .get(&invitation_id)
                    .ok_or(OrganizationError::InvitationNotFound)?;
                Self::ensure_open(invitation, at)?;
                if invitation.role == MemberRole::Owner && held != MemberRole::Owner {
                    return Err(OrganizationError::OwnersOnly);
                }
                vec![E::InvitationRevoked {
                    invitation_id,
                    revoked_by: actor,
                    revoked_at: at,
                }]
            }
            C::AcceptInvitation {
                user_id,
                email,
                token_hash,
                at,
            } => {
                if !self.is_live() {
                    return Err(OrganizationError::InvitationNotFound);
                }
                let (invitation_id, invitation) = self
                    .invitations
                    .iter()
                    .find(|(_, invitation)| invitation.token_hash == token_hash)
                    .ok_or(OrganizationError::InvitationNotFound)?;
                Self::ensure_open(invitation, at)?;
                if invitation.email != email {
                    return Err(OrganizationError::InvitationForAnotherAddress {
                        invited: masked(&invitation.email),
                    });
                }
                if self.members.contains_key(&user_id) {
                    return Err(OrganizationError::AlreadyMember);
                }
                vec![E::MemberJoined {
                    user_id,
                    email,
                    role: invitation.role,
                    invitation_id: *invitation_id,
                    joined_at: at,
                }]
            }
            C::ChangeRole {
                actor,
                member,
                role,
                at,
            } => {
                let held = self.require(actor, MemberRole::Admin)?;
                let current = self.member_role(member)?;
                if held != MemberRole::Owner && (current == MemberRole::Owner || role == MemberRole::Owner) {
                    return Err(OrganizationError::OwnersOnly);
                }
                if current == role {
                    return Ok(Vec::new());
                }
                if current == MemberRole::Owner && self.owner_count() == 1 {
                    return Err(OrganizationError::LastOwner);
                }
                vec![E::MemberRoleChanged {
                    user_id: member,
                    from: current,
                    to: role,
                    changed_by: actor,
                    changed_at: at,
                }]
            }
            C::SetCreditLimit {
                actor,
                member,
                monthly_credit_limit,
                at,
            } => {
                self.require(actor, MemberRole::Owner)?;
                let membership = self.members.get(&member).ok_or(OrganizationError::MemberNotFound)?;
                if monthly_credit_limit.is_some_and(|limit| limit < 0) {
                    return Err(OrganizationError::InvalidCreditLimit);
                }
                if membership.monthly_credit_limit == monthly_credit_limit {
                    return Ok(Vec::new());
                }
                vec![E::MemberCreditLimitSet {
                    user_id: member,
                    monthly_credit_limit,
                    set_by: actor,
                    set_at: at,
                }]
            }
            C::RemoveMember { actor, member, at } => {
                let held = self.require(actor, MemberRole::Admin)?;
                if actor == member {
                    return Err(OrganizationError::CannotRemoveSelf);
                }
                let current = self.member_role(member)?;
                if current == MemberRole::Owner && held != MemberRole::Owner {
                    return Err(OrganizationError::OwnersOnly);
                }
                vec![E::MemberRemoved {
                    user_id: member,
                    removed_by: actor,
                    removed_at: at,
                }]
            }
            C::Leave { actor, at } => {
                let held = self.require(actor, MemberRole::Viewer)?;
                if held == MemberRole::Owner && self.owner_count() == 1 {
                    return Err(OrganizationError::LastOwner);
                }
                vec![E::MemberLeft {
                    user_id: actor,
                    left_at: at,
                }]
            }
            C::TransferOwnership { actor, to, leave, at } => {
                self.require(actor, MemberRole::Owner)?;
                if to == actor {
                    return Err(OrganizationError::InvalidTransfer);
                }
                // To someone outside it, as to an owner: the organisation the caller named is
                // there, so this is not "not found".
                if self.role_of(to).is_none_or(|role| role == MemberRole::Owner) {
                    return Err(OrganizationError::InvalidTransfer);
                }
                vec![E::OwnershipTransferred {
                    from: actor,
                    to,
                    from_now: (!leave).then_some(MemberRole::Admin),
                    transferred_at: at,
                }]
            }
        };
        Ok(events)
    }

    /// The actor's role when it is at least `needed`. A non-member (or a deleted organisation)
    /// is `NotFound`: they may not learn it exists.
    fn require(&self, actor: UserId, needed: MemberRole) -> Result<MemberRole, OrganizationError> {
        let held = self.role_of(actor).ok_or(OrganizationError::NotFound)?;
        if held < needed {
            return Err(OrganizationError::NotPermitted { needed, held });
        }
        Ok(held)
    }

    fn member_role(&self, member: UserId) -> Result<MemberRole, OrganizationError> {
        self.members
            .get(&member)
            .map(|membership| membership.role)
            .ok_or(OrganizationError::MemberNotFound)
    }

    /// The pending, unexpired invitation to `email`, if there is one.
    fn pending_invitation_to(&self, email: &EmailAddress, at: DateTime<Utc>) -> Option<crate::ids::InvitationId> {
        self.invitations
            .iter()
            .find(|(_, invitation)| invitation.email == *email && invitation.is_pending_at(at))
            .map(|(id, _)| *id)
    }

    /// Refuses an invitation that can no longer be used, saying why.
    fn ensure_open(invitation: &Invitation, at: DateTime<Utc>) -> Result<(), OrganizationError> {
        match invitation.state {
            InvitationState::Accepted => Err(OrganizationError::InvitationUsed),
            InvitationState::Revoked => Err(OrganizationError::InvitationRevoked),
            InvitationState::Replaced => Err(OrganizationError::InvitationReplaced),
            InvitationState::Pending if at >= invitation.expires_at => Err(OrganizationError::InvitationExpired),
            InvitationState::Pending => Ok(()),
        }
    }
}

/// `ada@example.com` as `a**@example.com`: enough for its holder to recognise, not to harvest.
fn masked(email: &EmailAddress) -> String {
    match email.as_str().split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!(
                "{first}{}@{domain}",
                "*".repeat(local.chars().count().saturating_sub(1).max(2))
            )
        }
        None => "***".to_owned(),
    }
}
