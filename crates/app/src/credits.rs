//! Credits: the ledger of an owner, grants, and the reservation each run of a job holds from
//! before it is recorded until the settlement charges or releases it.

use crate::App;
use crate::error::AppError;
use crate::policy::{Action, Actor, Resource, Standing, require};
use chrono::Utc;
use keyframe_domain::ids::{JobId, UserId};
use keyframe_domain::ledger::{CreditLedger, GrantSource, LedgerCommand, LedgerError};
use keyframe_domain::owner::Owner;
use keyframe_domain::values::Reason;
use keyframe_eventlog::commands::CommandError;
use keyframe_eventlog::metadata::CommandMetadata;

impl App {
    /// `owner_id`'s ledger as it stands (empty before its first movement).
    pub async fn ledger(&self, owner_id: UserId) -> Result<CreditLedger, AppError> {
        Ok(self
            .buses
            .ledgers
            .load(&owner_id.to_string())
            .await?
            .unwrap_or_default())
    }

    /// The ledger of `owner_id`, for `actor` to read.
    pub async fn view_ledger(&self, actor: &Actor, owner_id: UserId) -> Result<CreditLedger, AppError> {
        let standing = self.standing(actor, Owner::User(owner_id)).await?;
        require(actor, Action::View, &Resource::Ledger { standing })?;
        self.ledger(owner_id).await
    }

    /// An administrator grants `amount` credits to `owner_id`; answers the grant's position
    /// and the ledger after it.
    pub async fn grant_by_administrator(
        &self,
        actor: &Actor,
        owner_id: UserId,
        amount: i64,
        reason: &Reason,
        metadata: &CommandMetadata,
    ) -> Result<(i64, CreditLedger), AppError> {
        // Granting is for administrators whoever owns the ledger.
        let standing = Standing::Stranger;
        require(actor, Action::Grant, &Resource::Ledger { standing })?;
        let exists = self.buses.users.load_current(&owner_id.to_string()).await?.is_some();
        if !exists {
            return Err(AppError::NotFound("user"));
        }
        let source = GrantSource::Admin {
            admin_id: actor.user_id,
        };
        let position = self.grant(owner_id, amount, source, reason.as_str(), metadata).await?;
        Ok((position, self.ledger(owner_id).await?))
    }

    /// Grants `amount` credits to `owner_id`; answers the position of the grant. For Keyframe's
    /// own grants (signup bonus, invoices): a person's grant goes through
    /// [`App::grant_by_administrator`].
    pub async fn grant(
        &self,
        owner_id: UserId,
        amount: i64,
        source: GrantSource,
        reason: &str,
        metadata: &CommandMetadata,
    ) -> Result<i64, AppError> {
        let command = || LedgerCommand::Grant {
            owner_id,
            amount,
            source: source.clone(),
            reason: reason.to_owned(),
            at: Utc::now(),
        };
        Ok(self
            .buses
            .ledgers
            .execute(&owner_id.to_string(), command, metadata)
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
            .grant(owner_id, amount, GrantSource::SignupBonus, "signup bonus", metadata)
            .await
        {
            tracing::warn!(error = %error, user_id = %owner_id, "the signup bonus was not granted here; the settlement process grants it");
        }
    }

    /// Holds `amount` credits of `owner_id` for `run` of `job_id`, before the run is recorded on
    /// the job: too few available credits is [`LedgerError::InsufficientCredits`].
    pub(crate) async fn reserve_for_job(
        &self,
        owner_id: UserId,
        job_id: JobId,
        run: u32,
        amount: i64,
        metadata: &CommandMetadata,
    ) -> Result<(), AppError> {
        let command = || LedgerCommand::Reserve {
            owner_id,
            job_id,
            run,
            amount,
            at: Utc::now(),
        };
        let reserved = self
            .buses
            .ledgers
            .execute(&owner_id.to_string(), command, metadata)
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
        owner_id: UserId,
        job_id: JobId,
        run: u32,
        reason: &str,
        metadata: &CommandMetadata,
    ) {
        let command = || LedgerCommand::Release {
            job_id,
            run,
            reason: reason.to_owned(),
            at: Utc::now(),
        };
        match self
            .buses
            .ledgers
            .execute(&owner_id.to_string(), command, metadata)
            .await
        {
            Ok(_) | Err(CommandError::Rejected(LedgerError::NoReservation)) => {}
            Err(error) => {
                tracing::error!(%error, %job_id, run, "releasing a job's reservation failed; its credits stay held");
            }
        }
    }
}
