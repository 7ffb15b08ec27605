//! The free plan's monthly allowance: every account without a paid subscription is granted the
//! free plan's credits once per calendar month (UTC).
//!
//! Two paths grant it, and the ledger grants one allowance per account and month
//! (`GrantSource::Allowance`), so they never add up:
//! - a new account gets its month's allowance with its signup bonus, from the settlement's
//!   `billing_signups` consumer;
//! - the monthly sweep pages through the account directory and grants every account the month
//!   it is in. Its progress is kept in `allowance_sweeps` (a cursor per month), so a stopped
//!   process resumes where it was, a finished month costs one query to skip, and a month left
//!   unfinished (the process was down at its end) is finished before the next one starts.
//!
//! An account paying for a plan gets that plan's credits with each paid invoice instead, and no
//! allowance for a month it is subscribed in when the sweep reaches it.

use crate::plans::Plan;
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use keyframe_domain::ids::UserId;
use keyframe_domain::ledger::{CreditLedger, GrantSource, LedgerCommand, allowance_period};
use keyframe_domain::subscription::Subscription;
use keyframe_eventlog::commands::{CommandBus, CommandError};
use keyframe_eventlog::metadata::{Actor, CommandMetadata};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often the sweep looks whether a month is due: a finished month costs one query.
const CHECK_EVERY: Duration = Duration::from_secs(300);
/// Accounts granted between two saves of the sweep's cursor.
const PAGE: i64 = 200;

/// What one account got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowanceOutcome {
    /// The month's allowance was granted (or had been: a repeat changes nothing).
    Granted,
    /// The account pays for a plan: its invoices grant its credits.
    Subscribed,
    /// The ledger refused (logged): the sweep goes on with the next account.
    Refused,
}

/// Grants the free plan's monthly allowance.
pub struct Allowances {
    pool: PgPool,
    ledgers: Arc<CommandBus<CreditLedger>>,
    subscriptions: Arc<CommandBus<Subscription>>,
    plan: Plan,
}

impl Allowances {
    /// Grants `free_plan`'s monthly credits; `None` when there is no free plan or it grants
    /// nothing.
    pub fn new(
        pool: PgPool,
        ledgers: Arc<CommandBus<CreditLedger>>,
        subscriptions: Arc<CommandBus<Subscription>>,
        free_plan: Option<Plan>,
    ) -> Option<Self> {
        let plan = free_plan.filter(|plan| plan.monthly_credits > 0)?;
        Some(Self {
            pool,
            ledgers,
            subscriptions,
            plan,
        })
    }

    /// Sweeps whatever month is due, then looks again every few minutes, until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> anyhow::Result<()> {
        while !shutdown.is_cancelled() {
            match self.sweep_due(Utc::now()).await {
                Ok(0) => {}
                Ok(granted) => tracing::info!(granted, plan = %self.plan.name, "monthly allowances granted"),
                // The cursor keeps what was done: the next look resumes from there.
                Err(error) => tracing::error!(
                    error = format!("{error:#}"),
                    "the allowance sweep failed; resuming later"
                ),
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(CHECK_EVERY) => {}
            }
        }
        Ok(())
    }

    /// Finishes every month not yet swept, up to the one `now` falls in; answers how many
    /// accounts were granted an allowance.
    pub async fn sweep_due(&self, now: DateTime<Utc>) -> anyhow::Result<u64> {
        sqlx::query("INSERT INTO allowance_sweeps (period) VALUES ($1) ON CONFLICT (period) DO NOTHING")
            .bind(allowance_period(now))
            .execute(&self.pool)
            .await
            .context("starting this month's sweep")?;
        let due: Vec<String> = sqlx::query_scalar(
            "SELECT period FROM allowance_sweeps WHERE finished_at IS NULL AND period <= $1 ORDER BY period",
        )
        .bind(allowance_period(now))
        .fetch_all(&self.pool)
        .await
        .context("finding the months due")?;
        let mut granted = 0;
        for period in due {
            granted += self.sweep(&period).await?;
        }
        Ok(granted)
    }

    /// Grants month `period` (`YYYY-MM`) to every account created before it ended, from where
    /// the last sweep of it stopped; answers how many were granted.
    async fn sweep(&self, period: &str) -> anyhow::Result<u64> {
        let mut granted = 0;
        loop {
            let after: Option<Uuid> = sqlx::query_scalar("SELECT last_user_id FROM allowance_sweeps WHERE period = $1")
                .bind(period)
                .fetch_one(&self.pool)
                .await
                .context("reading the sweep's cursor")?;
            let accounts: Vec<Uuid> = sqlx::query_scalar(
                "SELECT user_id FROM user_directory
                 WHERE user_id > $2
                   AND created_at < ((($1 || '-01')::date + interval '1 month') AT TIME ZONE 'UTC')
                 ORDER BY user_id LIMIT $3",
            )
            .bind(period)
            .bind(after.unwrap_or(Uuid::nil()))
            .bind(PAGE)
            .fetch_all(&self.pool)
            .await
            .context("listing accounts")?;
            let Some(&last) = accounts.last() else {
                sqlx::query(
                    "UPDATE allowance_sweeps SET finished_at = now() WHERE period = $1 AND finished_at IS NULL",
                )
                .bind(period)
                .execute(&self.pool)
                .await
                .context("finishing the sweep")?;
                return Ok(granted);
            };
            let metadata = Self::metadata(&format!("allowance:{period}"));
            for account in accounts {
                if self.grant(UserId(account), period, &metadata).await? == AllowanceOutcome::Granted {
                    granted += 1;
                }
            }
            // Another process sweeping the same month may be further on: the cursor only
            // moves forward.
            sqlx::query(
                "UPDATE allowance_sweeps SET last_user_id = $2
                 WHERE period = $1 AND (last_user_id IS NULL OR last_user_id < $2)",
            )
            .bind(period)
            .bind(last)
            .execute(&self.pool)
            .await
            .context("saving the sweep's cursor")?;
        }
    }

    /// Grants `owner_id` the allowance of month `period` unless it pays for a plan (or has it
    /// already: the ledger grants one per month).
    pub async fn grant(
        &self,
        owner_id: UserId,
        period: &str,
        metadata: &CommandMetadata,
    ) -> anyhow::Result<AllowanceOutcome> {
        let subscription = self
            .subscriptions
            .load(&owner_id.to_string())
            .await
            .map_err(|e| anyhow::anyhow!("loading the subscription of {owner_id}: {e}"))?;
        if subscription.as_ref().and_then(Subscription::plan).is_some() {
            return Ok(AllowanceOutcome::Subscribed);
        }
        let amount = self.plan.monthly_credits;
        let command = LedgerCommand::Grant {
            owner_id,
            amount,
            source: GrantSource::Allowance {
                plan: self.plan.name.clone(),
                period: period.to_owned(),
            },
            reason: format!("{} plan allowance, {period}", self.plan.name),
            at: Utc::now(),
        };
        match self
            .ledgers
            .execute(&owner_id.to_string(), || command.clone(), metadata)
            .await
        {
            Ok(_) => Ok(AllowanceOutcome::Granted),
            Err(CommandError::Rejected(error)) => {
                tracing::error!(%owner_id, %error, "the ledger refused the monthly allowance");
                Ok(AllowanceOutcome::Refused)
            }
            Err(error) => Err(anyhow::anyhow!("granting {owner_id} the allowance: {error}")),
        }
    }

    /// The system acts, for the month's sweep.
    fn metadata(causation: &str) -> CommandMetadata {
        let mut metadata = CommandMetadata::system().with_actor(Actor::System);
        metadata.causation_id = causation.to_owned();
        metadata
    }
}
