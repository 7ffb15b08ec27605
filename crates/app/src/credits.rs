//! Credits: the ledger of an owner (a user or an organisation), grants, and the reservation each
//! run of a job holds from before it is recorded until the settlement charges or releases it.

use crate::App;
use crate::error::AppError;
use crate::policy::{Action, Actor, Resource, Standing, require};
use keyframe_domain::ids::{JobId, UserId};
use keyframe_domain::ledger::{CreditLedger, GrantSource, LedgerCommand, LedgerError, MemberCharge};
use keyframe_domain::owner::Owner;
use keyframe_domain::values::Reason;
use keyframe_eventlog::commands::CommandError;
use keyframe_eventlog::metadata::CommandMetadata;

impl App {
    /// `owner`'s ledger as it stands (empty before its first movement).
    pub async fn ledger(&self, owner: Owner) -> Result<CreditLedger, AppError> {
        Ok(self
            .buses
            .ledgers
            .load(&owner.id().to_string())
            .await?
            .unwrap_or_default())
    }

    /// The ledger of `owner`, for `actor` to read (their own; an organisation's owners and
    /// admins).
    pub async fn view_ledger(&self, actor: &Actor, owner: Owner) -> Result<CreditLedger, AppError> {
        let standing = self.standing(actor, owner).await?;
        require(actor, Action::View, &Resource::Ledger { standing })?;
        self.ledger(owner).await
    }

    /// Whose usage of `owner`'s credits `actor` may see: everyone's (`None`: owners and admins
    /// of an organisation, or the user for their own) or only their own (other members).
    pub async fn usage_visible_to(&self, actor: &Actor, owner: Owner) -> Result<Option<UserId>, AppError> {
        let standing = self.standing(actor, owner).await?;
        if require(actor, Action::View, &Resource::Ledger { standing }).is_ok() {
            return Ok(None);
        }
        require(actor, Action::ViewOwnUsage, &Resource::Ledger { standing })?;
        Ok(Some(actor.user_id))
    }

    /// On an organisation's ledger, who `actor`'s job reservations are for and their monthly
    /// limit there; nothing on a user's own ledger.
    pub(crate) async fn member_charge(&self, actor: &Actor, owner: Owner) -> Result<Option<MemberCharge>, AppError> {
        let Owner::Organization(organization_id) = owner else {
            return Ok(None);
        };
        // From the store, not the membership guard's copy: a limit an owner just set holds on
        // every process at once, not only after the guard's TTL.
        let organization = self
            .buses
            .organizations
            .load_current(&organization_id.to_string())
            .await?
            .unwrap_or_default();
        let monthly_limit = organization
            .membership(actor.user_id)
            .and_then(|membership| membership.monthly_credit_limit);
        Ok(Some(MemberCharge {
            member: actor.user_id,
            monthly_limit,
        }))
    }

    /// An administrator grants `amount` credits to `owner` (a user or an organisation); answers
    /// the grant's position and the ledger after it.
    pub async fn grant_by_administrator(
        &self,
        actor: &Actor,
        owner: Owner,
        amount: i64,
        reason: &Reason,
        metadata: &CommandMetadata,
    ) -> Result<(i64, CreditLedger), AppError> {
        // Granting is for administrators whoever owns the ledger.
        let standing = Standing::Stranger;
        require(actor, Action::Grant, &Resource::Ledger { standing })?;
        match owner {
            Owner::User(user) => {
                if self.buses.users.load_current(&user.to_string()).await?.is_none() {
                    return Err(AppError::NotFound("user"));
                }
            }
            Owner::Organization(organization) => {
                let live = self
                    .buses
                    .organizations
                    .load_current(&organization.to_string())
                    .await?
                    .is_some_and(|organization| organization.is_live());
                if !live {
                    return Err(AppError::NotFound("organization"));
                }
            }
        }
        let source = GrantSource::Admin {
            admin_id: actor.user_id,
        };
        let position = self.grant(owner, amount, source, reason.as_str(), metadata).await?;
        Ok((position, self.ledger(owner).await?))
    }

    /// Grants `amount` credits to `owner_id`; answers the position of the grant. For Keyframe's
    /// own grants (signup bonus, invoices): a person's grant goes through
    /// [`App::grant_by_administrator`].
    pub async fn grant(
        &self,
        owner: Owner,
        amount: i64,
        source: GrantSource,
        reason: &str,
        metadata: &CommandMetadata,
    ) -> Result<i64, AppError> {
        let command = || LedgerCommand::Grant {
            owner,
            amount,
            source: source.clone(),
            reason: reason.to_owned(),
            at: keyframe_domain::clock::now(),
        };
        Ok(self
            .buses
            .ledgers
            .execute(&owner.id().to_string(), command, metadata)
            .await?)
    }

    /// The signup bonus for a new account, at once. Should it fail, the account stands and the
    /// settlement process grants the bonus from the `UserRegistered` event (one per user).
    pub async fn grant_signup_bonus(&self, owner_id: UserId, metadata: &CommandMetadata) {
        let amount = self.settings.signup_bonus_credits;
        if amount == 0 {
            return;
        }
        if let Err(error) = self
            .grant(
                Owner::User(owner_id),
                amount,
                GrantSource::SignupBonus,
                "signup bonus",
                metadata,
            )
            .await
        {
            tracing::warn!(error = %error, user_id = %owner_id, "the signup bonus was not granted here; the settlement process grants it");
        }
    }

    /// Holds `amount` credits of `owner` for `run` of `job_id` (for `member`'s job, on an
    /// organisation's ledger), before the run is recorded on the job: too few available credits
    /// is [`LedgerError::InsufficientCredits`], past the member's monthly limit
    /// [`LedgerError::MemberCreditLimit`].
    pub(crate) async fn reserve_for_job(
        &self,
        owner: Owner,
        member: Option<MemberCharge>,
        job_id: JobId,
        run: u32,
        amount: i64,
        metadata: &CommandMetadata,
    ) -> Result<(), AppError> {
        let command = || LedgerCommand::Reserve {
            owner,
            job_id,
            run,
            amount,
            member,
            at: keyframe_domain::clock::now(),
        };
        let reserved = self
            .buses
            .ledgers
            .execute(&owner.id().to_string(), command, metadata)
            .await;
        let outcome = match &reserved {
            Ok(_) => "reserved",
            Err(keyframe_eventlog::commands::CommandError::Rejected(_)) => "refused",
            Err(_) => "failed",
        };
        metrics::counter!("keyframe_credit_reservations_total", "outcome" => outcome).increment(1);
        reserved?;
        Ok(())
    }

    /// Gives back the reservation of `run` of `job_id`. Repeats, and runs that never reserved
    /// (jobs from before billing), change nothing. A failure is logged, not answered: it runs on
    /// the way out of a request that already failed, or as housekeeping the settlement repeats.
    pub(crate) async fn release_for_job(
        &self,
        owner: Owner,
        job_id: JobId,
        run: u32,
        reason: &str,
        metadata: &CommandMetadata,
    ) {
        let command = || LedgerCommand::Release {
            job_id,
            run,
            reason: reason.to_owned(),
            at: keyframe_domain::clock::now(),
        };
        match self
            .buses
            .ledgers
            .execute(&owner.id().to_string(), command, metadata)
            .await
        {
            Ok(_) | Err(CommandError::Rejected(LedgerError::NoReservation)) => {}
            Err(error) => {
                tracing::error!(%error, %job_id, run, "releasing a job's reservation failed; its credits stay held");
            }
        }
    }
}
