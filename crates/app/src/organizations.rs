//! Organisations: creating, renaming and deleting them, their members and roles, invitations
//! by e-mail, leaving and handing over the ownership; and the actor's [`Standing`] towards any
//! owner, which the authorization policy decides by.
//!
//! Each use case asks the policy first (a stranger gets "not found", a member whose role is too
//! low a refusal naming the role needed) and then runs one command on the `Organization`
//! aggregate, which checks the roles again against its current members under optimistic
//! concurrency: that is what keeps the last owner, whatever runs at the same time.

use crate::App;
use crate::error::{AppError, Refusal};
use crate::opaque_tokens::{hash_opaque_token, new_opaque_token, opaque_token_owner};
use crate::policy::{Action, Actor, Resource, Standing, require};
use chrono::{DateTime, Utc};
use keyframe_domain::ids::{InvitationId, OrganizationId, ProjectId, UserId};
use keyframe_domain::ledger::{GrantSource, allowance_period};
use keyframe_domain::organization::{
    InvitationState, MemberRole, Membership, Organization, OrganizationCommand, OrganizationError,
};
use keyframe_domain::owner::Owner;
use keyframe_domain::project::{ProjectCommand, ProjectError};
use keyframe_domain::values::{EmailAddress, OrganizationName};
use keyframe_eventlog::commands::CommandError;
use keyframe_eventlog::metadata::CommandMetadata;
use keyframe_projections::{job_list, organizations, project_list};
use std::sync::Arc;

/// An invitation just sent.
#[derive(Debug, Clone)]
pub struct SentInvitation {
    /// Its id.
    pub invitation_id: InvitationId,
    /// The invited address.
    pub email: EmailAddress,
    /// The role it grants.
    pub role: MemberRole,
    /// Who invited.
    pub invited_by: UserId,
    /// When.
    pub invited_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// What the page behind an invitation's link shows: enough to decide, nothing to harvest.
#[derive(Debug, Clone)]
pub struct InvitationPreview {
    /// The organisation's name.
    pub organization_name: String,
    /// The role offered.
    pub role: MemberRole,
    /// Who invited: their name, else their address.
    pub invited_by: String,
    /// The invited address.
    pub email: EmailAddress,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// Whether it can still be accepted, or why not.
    pub usable: Result<(), OrganizationError>,
}

/// A member's new role and credit limit; `None` keeps what is there.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemberChange {
    /// The new role.
    pub role: Option<MemberRole>,
    /// The new monthly credit limit (`Some(None)` lifts it).
    pub monthly_credit_limit: Option<Option<i64>>,
}

impl App {
    /// How `actor` stands towards `owner`: their own, a member's role in the owning
    /// organisation (from its aggregate, at most the guard's TTL old), or a stranger.
    pub async fn standing(&self, actor: &Actor, owner: Owner) -> Result<Standing, AppError> {
        Ok(match owner {
            Owner::User(user) if user == actor.user_id => Standing::Personal,
            Owner::User(_) => Standing::Stranger,
            Owner::Organization(organization_id) => self
                .memberships
                .organization(&self.buses.organizations, organization_id)
                .await?
                .role_of(actor.user_id)
                .map_or(Standing::Stranger, Standing::Member),
        })
    }

    /// Whose items `actor` lists: their own and every organisation's they are a member of, or
    /// only `organization`'s (not found unless they are a member). Each organisation the read
    /// model names is checked against its aggregate, so a member removed a moment ago lists
    /// none of its items.
    pub async fn owners_visible_to(
        &self,
        actor: &Actor,
        organization: Option<OrganizationId>,
    ) -> Result<Vec<Owner>, AppError> {
        if let Some(organization_id) = organization {
            self.organization_for(actor, Action::View, organization_id).await?;
            return Ok(vec![Owner::Organization(organization_id)]);
        }
        let mut owners = vec![Owner::User(actor.user_id)];
        for organization_id in organizations::organization_ids_of(&self.database, actor.user_id.0).await? {
            let owner = Owner::Organization(OrganizationId(organization_id));
            if self.standing(actor, owner).await? != Standing::Stranger {
                owners.push(owner);
            }
        }
        Ok(owners)
    }

    /// The organisation `organization_id`, for `actor` to do `action` to (not found unless
    /// they are a member; refused when their role is too low).
    pub async fn organization_for(
        &self,
        actor: &Actor,
        action: Action,
        organization_id: OrganizationId,
    ) -> Result<Arc<Organization>, AppError> {
        let organization = self
            .memberships
            .organization(&self.buses.organizations, organization_id)
            .await?;
        let standing = organization
            .role_of(actor.user_id)
            .map_or(Standing::Stranger, Standing::Member);
        require(actor, action, &Resource::Organization { standing })?;
        Ok(organization)
    }

    /// Runs a command on `organization_id` and makes this process's membership guard forget
    /// it, so the change counts at once here. Answers the position of the change.
    async fn change_organization(
        &self,
        organization_id: OrganizationId,
        command: impl FnMut() -> OrganizationCommand,
        metadata: &CommandMetadata,
    ) -> Result<i64, AppError> {
        let outcome = self
            .buses
            .organizations
            .execute(&organization_id.to_string(), command, metadata)
            .await;
        self.memberships.changed(organization_id);
        Ok(outcome?)
    }

    /// The organisation as it stands now (from the store, not the guard's copy).
    async fn current_organization(&self, organization_id: OrganizationId) -> Result<Organization, AppError> {
        self.buses
            .organizations
            .load_current(&organization_id.to_string())
            .await?
            .filter(Organization::is_live)
            .ok_or(AppError::NotFound("organization"))
    }

    /// `actor` creates an organisation and becomes its owner; answers it and the position.
    pub async fn create_organization(
        &self,
        actor: &Actor,
        name: OrganizationName,
        metadata: &CommandMetadata,
    ) -> Result<(Organization, i64), AppError> {
        let user = self
            .buses
            .users
            .load_current(&actor.user_id.to_string())
            .await?
            .ok_or(AppError::NotFound("account"))?;
        let organization_id = OrganizationId::new();
        let now = keyframe_domain::clock::now();
        let command = || OrganizationCommand::CreateOrganization {
            organization_id,
            name: name.clone(),
            creator: actor.user_id,
            creator_email: user.email().clone(),
            at: now,
        };
        let position = self
            .buses
            .organizations
            .execute_new(&organization_id.to_string(), command, metadata)
            .await?;
        self.grant_first_allowance(Owner::Organization(organization_id), metadata)
            .await;
        Ok((self.current_organization(organization_id).await?, position))
    }

    /// The free plan's allowance of this month for a new organisation, as a user gets at
    /// registration; later months come from the settlement's monthly sweep. A failure is
    /// logged: the sweep of the month grants it then.
    async fn grant_first_allowance(&self, owner: Owner, metadata: &CommandMetadata) {
        let Some(free) = self
            .billing
            .settings
            .plans
            .free()
            .filter(|plan| plan.monthly_credits > 0)
        else {
            return;
        };
        let period = allowance_period(keyframe_domain::clock::now());
        let source = GrantSource::Allowance {
            plan: free.name.clone(),
            period: period.clone(),
        };
        let reason = format!("{} plan allowance, {period}", free.name);
        if let Err(error) = self.grant(owner, free.monthly_credits, source, &reason, metadata).await {
            tracing::warn!(%error, %owner, "the first allowance was not granted here; the monthly sweep grants it");
        }
    }

    /// Owners and admins rename the organisation; answers it and the position.
    pub async fn rename_organization(
        &self,
        actor: &Actor,
        organization_id: OrganizationId,
        name: OrganizationName,
        metadata: &CommandMetadata,
    ) -> Result<(Organization, i64), AppError> {
        self.organization_for(actor, Action::Change, organization_id).await?;
        let now = keyframe_domain::clock::now();
        let command = || OrganizationCommand::RenameOrganization {
            actor: actor.user_id,
            name: name.clone(),
            at: now,
        };
        let position = self.change_organization(organization_id, command, metadata).await?;
        Ok((self.current_organization(organization_id).await?, position))
    }

    /// The owner deletes the organisation, refused while any of its jobs waits or runs (as the
    /// jobs read model knows them). Its members lose access at once; its projects are deleted
    /// and their videos released, which frees its storage; its events stay. Answers the
    /// position of the deletion.
    pub async fn delete_organization(
        &self,
        actor: &Actor,
        organization_id: OrganizationId,
        metadata: &CommandMetadata,
    ) -> Result<i64, AppError> {
        self.organization_for(actor, Action::Delete, organization_id).await?;
        let owner = Owner::Organization(organization_id);
        let active_jobs = self.active_jobs_of(owner).await?;
        let paid_plan = !self.subscription(owner).await?.has_ended();
        let now = keyframe_domain::clock::now();
        let command = || OrganizationCommand::DeleteOrganization {
            actor: actor.user_id,
            active_jobs,
            paid_plan,
            at: now,
        };
        let position = self.change_organization(organization_id, command, metadata).await?;
        // Should this process stop in between, the projects stay unseen (no one stands in a
        // deleted organisation) and their bytes stay until an operator replays this.
        self.release_projects_of(owner, metadata).await?;
        Ok(position)
    }

    /// Deletes every project of `owner` and releases their videos from its library.
    async fn release_projects_of(&self, owner: Owner, metadata: &CommandMetadata) -> Result<(), AppError> {
        let mut projects = project_list::live_ids_of(&self.database, owner.id()).await?;
        if let Some(library) = self.library(owner).await? {
            projects.extend(library.projects().into_iter().map(|project| project.0));
        }
        projects.sort_unstable();
        projects.dedup();
        for project_id in projects.into_iter().map(ProjectId) {
            let command = || ProjectCommand::DeleteProject {
                at: keyframe_domain::clock::now(),
            };
            match self
                .buses
                .projects
                .execute(&project_id.to_string(), command, metadata)
                .await
            {
                Ok(_) | Err(CommandError::Rejected(ProjectError::NotFound)) => {}
                Err(error) => return Err(error.into()),
            }
            self.release_project(owner, project_id, metadata).await?;
        }
        Ok(())
    }

    /// How many jobs of `owner` are queued or running, as the jobs read model knows them.
    async fn active_jobs_of(&self, owner: Owner) -> Result<u64, AppError> {
        let count = job_list::active_count_of(&self.database, owner.id()).await?;
        Ok(u64::try_from(count).unwrap_or_default())
    }

    /// Owners and admins invite `email` with `role` (only owners invite owners); a pending
    /// invitation to the same address is replaced. The token goes out by mail; answers the
    /// invitation and the position.
    pub async fn invite_member(
        &self,
        actor: &Actor,
        organization_id: OrganizationId,
        email: EmailAddress,
        role: MemberRole,
        metadata: &CommandMetadata,
    ) -> Result<(SentInvitation, i64), AppError> {
        let organization = self
            .organization_for(actor, Action::ManageMembers, organization_id)
            .await?;
        let invitation_id = InvitationId::new();
        let ttl = self.settings.identity.invitation_ttl;
        // The token names the organisation: accepting it loads that aggregate alone.
        let (token, token_hash) = new_opaque_token(organization_id.0);
        let now = keyframe_domain::clock::now();
        let expires_at = now + ttl;
        let command = || OrganizationCommand::InviteMember {
            actor: actor.user_id,
            invitation_id,
            email: email.clone(),
            role,
            token_hash: token_hash.clone(),
            expires_at,
            at: now,
        };
        let position = self.change_organization(organization_id, command, metadata).await?;
        let inviter = self.display_name(actor.user_id).await?;
        let mail = self.mailer.invitation(
            &email,
            &crate::mail::InvitationMail {
                organization: organization.name().as_str(),
                role: role.as_str(),
                invited_by: &inviter,
                token: &token,
                valid_for: ttl,
            },
        );
        self.mailer.send_in_background(mail);
        let sent = SentInvitation {
            invitation_id,
            email,
            role,
            invited_by: actor.user_id,
            invited_at: now,
            expires_at,
        };
        Ok((sent, position))
    }

    /// A user's name as others see it: their full name, else their address.
    async fn display_name(&self, user_id: UserId) -> Result<String, AppError> {
        let user = self.buses.users.load_current(&user_id.to_string()).await?;
        Ok(user.map_or_else(
            || "a former member".to_owned(),
            |user| {
                user.full_name()
                    .map_or_else(|| user.email().as_str().to_owned(), |name| name.as_str().to_owned())
            },
        ))
    }

    /// Owners and admins withdraw a pending invitation; answers the position.
    pub async fn revoke_invitation(
        &self,
        actor: &Actor,
        organization_id: OrganizationId,
        invitation_id: InvitationId,
        metadata: &CommandMetadata,
    ) -> Result<i64, AppError> {
        self.organization_for(actor, Action::ManageMembers, organization_id)
            .await?;
        let now = keyframe_domain::clock::now();
        let command = || OrganizationCommand::RevokeInvitation {
            actor: actor.user_id,
            invitation_id,
            at: now,
        };
        self.change_organization(organization_id, command, metadata).await
    }

    /// `actor` joins through the invitation `token`: their address must be verified and be the
    /// invited one. Answers the organisation, their role and the position.
    pub async fn accept_invitation(
        &self,
        actor: &Actor,
        token: &str,
        metadata: &CommandMetadata,
    ) -> Result<(Organization, MemberRole, i64), AppError> {
        let organization_id = opaque_token_owner(token)
            .map(OrganizationId)
            .ok_or(OrganizationError::InvitationNotFound)?;
        let user = self
            .buses
            .users
            .load_current(&actor.user_id.to_string())
            .await?
            .ok_or(AppError::NotFound("account"))?;
        if !user.email_verified() {
            return Err(Refusal::EmailNotVerified.into());
        }
        let token_hash = hash_opaque_token(token);
        let now = keyframe_domain::clock::now();
        let command = || OrganizationCommand::AcceptInvitation {
            user_id: actor.user_id,
            email: user.email().clone(),
            token_hash: token_hash.clone(),
            at: now,
        };
        let position = self.change_organization(organization_id, command, metadata).await?;
        let organization = self.current_organization(organization_id).await?;
        let role = organization
            .role_of(actor.user_id)
            .ok_or(AppError::NotFound("organization"))?;
        Ok((organization, role, position))
    }

    /// What the invitation behind `token` offers, for the page its mail links to. Needs no
    /// login: the token is the proof. `None` when the token names no invitation.
    pub async fn preview_invitation(&self, token: &str) -> Result<Option<InvitationPreview>, AppError> {
        let Some(organization_id) = opaque_token_owner(token).map(OrganizationId) else {
            return Ok(None);
        };
        let Some(organization) = self
            .buses
            .organizations
            .load_current(&organization_id.to_string())
            .await?
            .filter(Organization::is_live)
        else {
            return Ok(None);
        };
        let token_hash = hash_opaque_token(token);
        let Some(invitation) = organization
            .invitations()
            .values()
            .find(|invitation| invitation.token_hash == token_hash)
        else {
            return Ok(None);
        };
        let usable = match invitation.state {
            InvitationState::Accepted => Err(OrganizationError::InvitationUsed),
            InvitationState::Revoked => Err(OrganizationError::InvitationRevoked),
            InvitationState::Replaced => Err(OrganizationError::InvitationReplaced),
            InvitationState::Pending if invitation.expires_at <= keyframe_domain::clock::now() => {
                Err(OrganizationError::InvitationExpired)
            }
            InvitationState::Pending => Ok(()),
        };
        Ok(Some(InvitationPreview {
            organization_name: organization.name().as_str().to_owned(),
            role: invitation.role,
            invited_by: self.display_name(invitation.invited_by).await?,
            email: invitation.email.clone(),
            expires_at: invitation.expires_at,
            usable,
        }))
    }

    /// Owners and admins change a member's role (admins only below owner); owners set their
    /// monthly credit limit. Answers the membership after and the position of the last change.
    pub async fn update_member(
        &self,
        actor: &Actor,
        organization_id: OrganizationId,
        member: UserId,
        change: MemberChange,
        metadata: &CommandMetadata,
    ) -> Result<(Membership, i64), AppError> {
        self.organization_for(actor, Action::ManageMembers, organization_id)
            .await?;
        // Checked before any change, so a refused limit leaves the role as it was too.
        if change.monthly_credit_limit.is_some() {
            self.organization_for(actor, Action::Pay, organization_id).await?;
        }
        let now = keyframe_domain::clock::now();
        let mut position = None;
        if let Some(role) = change.role {
            let command = || OrganizationCommand::ChangeRole {
                actor: actor.user_id,
                member,
                role,
                at: now,
            };
            position = Some(self.change_organization(organization_id, command, metadata).await?);
        }
        if let Some(monthly_credit_limit) = change.monthly_credit_limit {
            let command = || OrganizationCommand::SetCreditLimit {
                actor: actor.user_id,
                member,
                monthly_credit_limit,
                at: now,
            };
            position = Some(self.change_organization(organization_id, command, metadata).await?);
        }
        let organization = self.current_organization(organization_id).await?;
        let membership = organization
            .membership(member)
            .cloned()
            .ok_or(OrganizationError::MemberNotFound)?;
        let position = match position {
            Some(position) => position,
            None => {
                self.buses
                    .organizations
                    .newest_position(&organization_id.to_string())
                    .await?
            }
        };
        Ok((membership, position))
    }

    /// Owners and admins remove a member (admins only below owner); what they made stays.
    /// Answers the position.
    pub async fn remove_member(
        &self,
        actor: &Actor,
        organization_id: OrganizationId,
        member: UserId,
        metadata: &CommandMetadata,
    ) -> Result<i64, AppError> {
        self.organization_for(actor, Action::ManageMembers, organization_id)
            .await?;
        let now = keyframe_domain::clock::now();
        let command = || OrganizationCommand::RemoveMember {
            actor: actor.user_id,
            member,
            at: now,
        };
        self.change_organization(organization_id, command, metadata).await
    }

    /// `actor` leaves the organisation (not its last owner); what they made stays. Answers the
    /// position.
    pub async fn leave_organization(
        &self,
        actor: &Actor,
        organization_id: OrganizationId,
        metadata: &CommandMetadata,
    ) -> Result<i64, AppError> {
        self.organization_for(actor, Action::View, organization_id).await?;
        let now = keyframe_domain::clock::now();
        let command = || OrganizationCommand::Leave {
            actor: actor.user_id,
            at: now,
        };
        self.change_organization(organization_id, command, metadata).await
    }

    /// The owner hands the ownership to member `to`, staying as admin unless `leave`. Answers
    /// the organisation after and the position.
    pub async fn transfer_organization(
        &self,
        actor: &Actor,
        organization_id: OrganizationId,
        to: UserId,
        leave: bool,
        metadata: &CommandMetadata,
    ) -> Result<(Organization, i64), AppError> {
        self.organization_for(actor, Action::Transfer, organization_id).await?;
        let now = keyframe_domain::clock::now();
        let command = || OrganizationCommand::TransferOwnership {
            actor: actor.user_id,
            to,
            leave,
            at: now,
        };
        let position = self.change_organization(organization_id, command, metadata).await?;
        Ok((self.current_organization(organization_id).await?, position))
    }
}
