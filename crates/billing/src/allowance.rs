//! The free plan's monthly allowance: every account without a paid subscription is granted the
//! free plan's credits once per calendar month (UTC).
//!
//! Two paths grant it, and the ledger grants one allowance per account and month
//! (`GrantSource::Allowance`), so they never add up:
//! - a new account gets the current month's allowance with its signup bonus, from the
//!   settlement's `billing_signups` consumer;
//! - the monthly sweep pages through every registered account and grants it the month. It
//!   reads the accounts from the event store, not from the account directory (a read model that
//!   may lag, or be rebuilding), so no account is missed because a projector was behind. Its
//!   progress is kept in `allowance_sweeps` (a cursor per month): a stopped process resumes
//!   where it was, a finished month costs two small queries to skip, and months the process was
//!   down for, or left unfinished, are swept before the current one.
//!
//! An account is on the free plan when `GET /subscriptions/current` says so: it has no
//! subscription, or its subscription ended (see `Subscription::plan`). One paying for a plan
//! gets that plan's credits with each paid invoice instead. The sweep looks at an account once
//! a month: one that subscribes later in the month keeps the allowance it was granted, and one
//! whose subscription ends gets the free allowance from the next month.

use crate::plans::Plan;
use anyhow::Context as _;
use chrono::{DateTime, Utc};
use keyframe_database::{Database, portable};
use keyframe_domain::ids::{OrganizationId, UserId};
use keyframe_domain::ledger::{CreditLedger, GrantSource, LedgerCommand, allowance_period};
use keyframe_domain::owner::Owner;
use keyframe_domain::subscription::Subscription;
use keyframe_eventlog::commands::{CommandBus, CommandError};
use keyframe_eventlog::metadata::{Actor, CommandMetadata};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the sweep looks whether a month is due.
const CHECK_EVERY: Duration = Duration::from_secs(300);
/// Accounts granted between two saves of the sweep's cursor.
const PAGE: i64 = 200;
/// Tries of one account's grant while its failure may pass (pauses of 0.2, 0.8 s between).
const GRANT_ATTEMPTS: u32 = 3;

/// Why an allowance was not granted.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// The store was away, or other writers kept changing the ledger: trying later may pass.
    #[error("{0:#}")]
    Passing(anyhow::Error),
    /// Trying again cannot help (an event that does not read, a malformed id).
    #[error("{0:#}")]
    Lasting(anyhow::Error),
}

impl GrantError {
    fn of<E: std::error::Error>(error: CommandError<E>, doing: String) -> Self {
        let passing = matches!(error, CommandError::Unavailable(_) | CommandError::Conflict { .. });
        let error = anyhow::anyhow!("{doing}: {error}");
        if passing {
            Self::Passing(error)
        } else {
            Self::Lasting(error)
        }
    }
}

/// What became of one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowanceOutcome {
    /// The account holds the month's allowance: granted now, or before (a repeat changes
    /// nothing).
    Holds,
    /// The account pays for a plan: its invoices grant its credits.
    Subscribed,
    /// The ledger refused (logged): the sweep goes on with the next account.
    Refused,
}

/// Grants the free plan's monthly allowance.
pub struct Allowances {
    database: Database,
    ledgers: Arc<CommandBus<CreditLedger>>,
    subscriptions: Arc<CommandBus<Subscription>>,
    plan: Plan,
}

impl Allowances {
    /// Grants `free_plan`'s monthly credits; `None` when there is no free plan or it grants
    /// nothing.
    pub fn new(
        database: Database,
        ledgers: Arc<CommandBus<CreditLedger>>,
        subscriptions: Arc<CommandBus<Subscription>>,
        free_plan: Option<Plan>,
    ) -> Option<Self> {
        let plan = free_plan.filter(|plan| plan.monthly_credits > 0)?;
        Some(Self {
            database,
            ledgers,
            subscriptions,
            plan,
        })
    }

    /// Sweeps whatever month is due, then looks again every few minutes, until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> anyhow::Result<()> {
        while !shutdown.is_cancelled() {
            match self.sweep_due(keyframe_domain::clock::now()).await {
                Ok(0) => {}
                Ok(covered) => tracing::info!(covered, plan = %self.plan.name, "monthly allowance sweep done"),
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

    /// Finishes every month not yet swept, up to the one `now` falls in (the months since the
    /// last one swept included, should the process have been down for some); answers how many
    /// accounts it found holding their allowance.
    pub async fn sweep_due(&self, now: DateTime<Utc>) -> anyhow::Result<u64> {
        let latest: Option<String> =
            portable!(self.database.reader(), pool => { sqlx::query_scalar("SELECT max(period) FROM allowance_sweeps")
            .fetch_one(pool)
            .await })
            .context("finding the last month swept")?;
        for period in periods_after(latest.as_deref(), now) {
            portable!(self.database.writer(), pool => { sqlx::query("INSERT INTO allowance_sweeps (period) VALUES ($1) ON CONFLICT (period) DO NOTHING")
                .bind(period)
                .execute(pool)
                .await .map(|done| done.rows_affected()) })
                .context("starting a month's sweep")?;
        }
        let due: Vec<String> = portable!(self.database.reader(), pool => { sqlx::query_scalar(
            "SELECT period FROM allowance_sweeps WHERE finished_at IS NULL AND period <= $1 ORDER BY period",
        )
        .bind(allowance_period(now))
        .fetch_all(pool)
        .await })
        .context("finding the months due")?;
        let mut covered = 0;
        for period in due {
            covered += self.sweep(&period).await?;
        }
        Ok(covered)
    }

    /// Grants month `period` (`YYYY-MM`) to every account registered before it ended, from
    /// where the last sweep of it stopped; answers how many accounts hold it.
    ///
    /// An account whose grant fails (after a few tries, for a failure that may pass) is logged
    /// and passed over: it must not hold up everyone after it, month after month. A page where
    /// every grant failed for the store being away stops the sweep there, to resume from the
    /// same place at its next look.
    async fn sweep(&self, period: &str) -> anyhow::Result<u64> {
        let mut covered = 0;
        // Accounts that existed in the month: created before the next one began.
        let period_end = month_after(period).with_context(|| format!("the sweep's month {period}"))?;
        loop {
            let after: Option<String> =
                portable!(self.database.reader(), pool => { sqlx::query_scalar("SELECT last_account FROM allowance_sweeps WHERE period = $1")
                    .bind(period)
                    .fetch_one(pool)
                    .await })
                    .context("reading the sweep's cursor")?;
            // The first event of every account and of every organisation (their UUIDv7 ids
            // never meet), each read in the primary key's order up to the page, then merged;
            // an organisation deleted by then is passed over.
            let accounts: Vec<(String, String)> = portable!(self.database.reader(), pool => { sqlx::query_as(
                "SELECT aggregate_type, aggregate_id FROM (
                     SELECT * FROM (
                         SELECT aggregate_type, aggregate_id FROM events
                         WHERE aggregate_type = 'User' AND aggregate_id > $2 AND event_type = 'UserRegistered'
                           AND recorded_at < $1
                         ORDER BY aggregate_id LIMIT $3
                     ) users
                     UNION ALL
                     SELECT * FROM (
                         SELECT aggregate_type, aggregate_id FROM events e
                         WHERE aggregate_type = 'Organization' AND aggregate_id > $2
                           AND event_type = 'OrganizationCreated' AND recorded_at < $1
                           AND NOT EXISTS (SELECT 1 FROM events d WHERE d.aggregate_type = 'Organization'
                               AND d.aggregate_id = e.aggregate_id AND d.event_type = 'OrganizationDeleted')
                         ORDER BY aggregate_id LIMIT $3
                     ) organizations
                 ) owners ORDER BY aggregate_id LIMIT $3",
            )
            .bind(period_end)
            .bind(after.unwrap_or_default())
            .bind(PAGE)
            .fetch_all(pool)
            .await })
            .context("listing accounts")?;
            let Some((_, last)) = accounts.last().cloned() else {
                portable!(self.database.writer(), pool => { sqlx::query(
                    "UPDATE allowance_sweeps SET finished_at = $2 WHERE period = $1 AND finished_at IS NULL",
                )
                .bind(period)
                .bind(keyframe_domain::clock::now())
                .execute(pool)
                .await .map(|done| done.rows_affected()) })
                .context("finishing the sweep")?;
                return Ok(covered);
            };
            let metadata = Self::metadata(&format!("allowance:{period}"));
            let (mut unreachable, mut last_error) = (0, None);
            for (kind, account) in &accounts {
                let outcome = match account.parse() {
                    Ok(id) if kind == "Organization" => {
                        self.grant_retrying(Owner::Organization(OrganizationId(id)), period, &metadata)
                            .await
                    }
                    Ok(id) => self.grant_retrying(Owner::User(UserId(id)), period, &metadata).await,
                    Err(error) => Err(GrantError::Lasting(anyhow::anyhow!("account id {account:?}: {error}"))),
                };
                match outcome {
                    Ok(AllowanceOutcome::Holds) => covered += 1,
                    Ok(_) => {}
                    Err(error) => {
                        tracing::error!(
                            account,
                            period,
                            error = %error,
                            "could not grant the monthly allowance; passing this account over"
                        );
                        if matches!(error, GrantError::Passing(_)) {
                            unreachable += 1;
                        }
                        last_error = Some(error);
                    }
                }
            }
            if let Some(error) = last_error.filter(|_| unreachable == accounts.len()) {
                return Err(anyhow::Error::new(error).context("the store was away for a whole page"));
            }
            // Another process sweeping the same month may be further on: the cursor only
            // moves forward.
            portable!(self.database.writer(), pool => { sqlx::query(
                "UPDATE allowance_sweeps SET last_account = $2
                 WHERE period = $1 AND (last_account IS NULL OR last_account < $2)",
            )
            .bind(period)
            .bind(last)
            .execute(pool)
            .await .map(|done| done.rows_affected()) })
            .context("saving the sweep's cursor")?;
        }
    }

    /// [`Self::grant`], tried again after a pause while the failure may pass.
    async fn grant_retrying(
        &self,
        owner: Owner,
        period: &str,
        metadata: &CommandMetadata,
    ) -> Result<AllowanceOutcome, GrantError> {
        let mut pause = Duration::from_millis(200);
        for _ in 1..GRANT_ATTEMPTS {
            match self.grant(owner, period, metadata).await {
                Err(GrantError::Passing(_)) => tokio::time::sleep(pause).await,
                outcome => return outcome,
            }
            pause *= 4;
        }
        self.grant(owner, period, metadata).await
    }

    /// Grants `owner` (a user or an organisation) the allowance of month `period` unless it pays
    /// for a plan (or has it already: the ledger grants one per month).
    pub async fn grant(
        &self,
        owner: Owner,
        period: &str,
        metadata: &CommandMetadata,
    ) -> Result<AllowanceOutcome, GrantError> {
        let subscription = self
            .subscriptions
            .load(&owner.id().to_string())
            .await
            .map_err(|error| GrantError::of(error, format!("loading the subscription of {owner}")))?;
        if subscription.as_ref().and_then(Subscription::plan).is_some() {
            return Ok(AllowanceOutcome::Subscribed);
        }
        let amount = self.plan.monthly_credits;
        let command = LedgerCommand::Grant {
            owner,
            amount,
            source: GrantSource::Allowance {
                plan: self.plan.name.clone(),
                period: period.to_owned(),
            },
            reason: format!("{} plan allowance, {period}", self.plan.name),
            at: keyframe_domain::clock::now(),
        };
        match self
            .ledgers
            .execute(&owner.id().to_string(), || command.clone(), metadata)
            .await
        {
            Ok(_) => Ok(AllowanceOutcome::Holds),
            Err(CommandError::Rejected(error)) => {
                tracing::error!(%owner, %error, "the ledger refused the monthly allowance");
                Ok(AllowanceOutcome::Refused)
            }
            Err(error) => Err(GrantError::of(error, format!("granting {owner} the allowance"))),
        }
    }

    /// The system acts, for the month's sweep.
    fn metadata(causation: &str) -> CommandMetadata {
        let mut metadata = CommandMetadata::system().with_actor(Actor::System);
        metadata.causation_id = causation.to_owned();
        metadata
    }
}

/// The months after `latest` (`YYYY-MM`, the last one swept) up to the one `now` falls in; only
/// `now`'s when nothing was swept yet (an allowance is not owed for months before the first
/// sweep).
fn periods_after(latest: Option<&str>, now: DateTime<Utc>) -> Vec<String> {
    let current = allowance_period(now);
    let first_day = |period: &str| chrono::NaiveDate::parse_from_str(&format!("{period}-01"), "%Y-%m-%d").ok();
    let Some(mut month) = latest.and_then(first_day) else {
        return vec![current];
    };
    let mut periods = Vec::new();
    while let Some(next) = month.checked_add_months(chrono::Months::new(1)) {
        month = next;
        let period = month.format("%Y-%m").to_string();
        if period > current {
            break;
        }
        periods.push(period);
    }
    periods
}

/// The first instant of the month after `period` (`YYYY-MM`), in UTC.
fn month_after(period: &str) -> Option<DateTime<Utc>> {
    let first = chrono::NaiveDate::parse_from_str(&format!("{period}-01"), "%Y-%m-%d").ok()?;
    let next = first.checked_add_months(chrono::Months::new(1))?;
    Some(next.and_hms_opt(0, 0, 0)?.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(raw: &str) -> DateTime<Utc> {
        raw.parse().expect("a timestamp")
    }

    #[test]
    fn the_months_due_are_those_since_the_last_swept_up_to_now() {
        assert_eq!(periods_after(None, at("2026-11-26T08:00:00Z")), ["2026-11"]);
        assert_eq!(
            periods_after(Some("2026-11"), at("2026-11-26T08:00:00Z")),
            Vec::<String>::new()
        );
        assert_eq!(periods_after(Some("2026-11"), at("2026-12-01T00:00:00Z")), ["2026-12"]);
        assert_eq!(
            periods_after(Some("2026-10"), at("2027-01-05T00:00:00Z")),
            ["2026-11", "2026-12", "2027-01"]
        );
        // A clock set back finds nothing due.
        assert_eq!(
            periods_after(Some("2026-12"), at("2026-11-26T08:00:00Z")),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_month_ends_where_the_next_begins_in_utc_across_a_year() {
        assert_eq!(month_after("2026-11"), Some(at("2026-12-01T00:00:00Z")));
        assert_eq!(month_after("2026-12"), Some(at("2027-01-01T00:00:00Z")));
        assert_eq!(month_after("2026-13"), None);
    }
}
