//! The settlement process manager: when a job's run ends, charge or give back the credits
//! reserved for it; and when a reservation's job never appears, give its credits back.
//!
//! It reads two durable JetStream consumers (one filter subject each, as nats-server 2.9
//! allows):
//! - `billing_settlement`, on `<prefix>.events.Job.>`: each run's end becomes a
//!   `CreditLedger` command ([`keyframe_domain::settlement`]): success settles, failure and
//!   cancellation release;
//! - `billing_reservations`, on `<prefix>.events.CreditLedger.*.CreditsReserved`: the sweep.
//!   The API reserves before it records the job (or the retry); should the process stop in
//!   between, nothing else would ever release that reservation. A reservation whose job does
//!   not hold its run is looked at again a few seconds later (the job is usually recorded by
//!   then), then once more after the grace period, and released only if the job still does not
//!   hold it. The waits are delayed NAKs: JetStream keeps the timers, and no two clocks are
//!   compared;
//! - `billing_signups`, on `<prefix>.events.User.*.UserRegistered`: the signup bonus. The API
//!   grants it in the registration request; should that fail (or the process stop), this
//!   grants it. The ledger grants one signup bonus per user, so the two never add up. With a
//!   free plan that grants credits, the new account also gets the month's allowance
//!   ([`crate::allowance`]).
//!
//! Every message is acked only once its command is recorded. Delivery is at least once: a
//! message whose ack was lost, or that a stopped process never acked, comes again. The effect
//! is still exactly once because the ledger ignores a second settlement or release of the same
//! run of the same job. After a restart the durable consumers resume where the acks stopped.
//!
//! In a process without NATS the same three readers follow the log itself, each keeping its
//! place in `consumer_checkpoints` ([`keyframe_eventlog::consumers`]): the place moves past an
//! event once it is handled, but never past a reservation still waiting for its second look
//! (kept in memory, and looked at afresh after a restart).

use crate::allowance::{AllowanceOutcome, Allowances, GrantError};
use anyhow::Context as _;
use async_nats::jetstream::{self, AckKind, consumer::AckPolicy, consumer::pull};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use keyframe_database::Database;
use keyframe_domain::ids::{JobId, UserId};
use keyframe_domain::job::{Job, JobEvent};
use keyframe_domain::ledger::{CreditLedger, GrantSource, LedgerCommand, LedgerError, LedgerEvent, allowance_period};
use keyframe_domain::log::RecordedEvent;
use keyframe_domain::owner::Owner;
use keyframe_domain::settlement::ledger_command_for;
use keyframe_eventlog::commands::{CommandBus, CommandError};
use keyframe_eventlog::consumers;
use keyframe_eventlog::feed::tail::{TailFeed, TailSettings};
use keyframe_eventlog::metadata::{Actor, CommandMetadata};
use keyframe_eventlog::reader::LogPosition;
use keyframe_eventlog::streams::Naming;
use keyframe_eventlog::wake::LocalRelay;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The durable consumer of run ends.
pub const SETTLEMENT_CONSUMER: &str = "billing_settlement";
/// The durable consumer of reservations (the sweep).
pub const RESERVATION_CONSUMER: &str = "billing_reservations";
/// The durable consumer of registrations (the signup bonus and the month's allowance).
pub const SIGNUP_CONSUMER: &str = "billing_signups";

/// How long JetStream waits for an ack before delivering a message again; a message being
/// retried is kept in progress meanwhile.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// Where a reader of the log is done: everything it has read, but for the reservations still
/// to be looked at again (its place stays just before the oldest of them).
fn done_with(later: &BTreeMap<LogPosition, (Instant, RecordedEvent, i64)>, tail: &TailFeed) -> LogPosition {
    later
        .keys()
        .next()
        .map_or(tail.position(), |waiting| consumers::just_before(*waiting))
}

/// How often a reader of the log (without NATS) saves its place at most.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The sweep's second look at a reservation whose job did not hold the run at the first: the
/// request that reserved records the job milliseconds later, so this settles nearly all.
const SECOND_LOOK: Duration = Duration::from_secs(3);

/// Tuning.
#[derive(Debug, Clone)]
pub struct SettlementSettings {
    /// How long the sweep waits, after its second look, for a job (or a retry) to hold the run
    /// it reserved before releasing the reservation. Requests record the job milliseconds
    /// after reserving; the margin covers a slow database.
    pub reservation_grace: Duration,
    /// Credits every new account is granted (0: none); the same setting as the API's.
    pub signup_bonus_credits: i64,
    /// The plan of accounts without a paid subscription, whose monthly credits (if any) the
    /// `billing` component grants them each month ([`crate::allowance`]).
    pub free_plan: Option<crate::plans::Plan>,
}

impl Default for SettlementSettings {
    fn default() -> Self {
        Self {
            reservation_grace: Duration::from_secs(120),
            signup_bonus_credits: 100,
            free_plan: None,
        }
    }
}

/// What became of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Recorded in the ledger (or recorded before: a repeat changes nothing).
    Recorded,
    /// The event asks nothing (it ends no run; the reservation's job holds its run; the
    /// bonus is off).
    NothingToDo,
    /// The run holds no reservation (a job requested before billing): nothing to settle.
    NoReservation,
    /// A reservation whose job does not hold its run yet, still within the grace: look again
    /// after this long.
    LookAgainIn(Duration),
}

/// Which stream of events a consumer reads.
#[derive(Debug, Clone, Copy)]
enum Feed {
    RunEnds,
    Reservations,
    Signups,
}

impl Feed {
    /// The consumer's durable name.
    fn consumer(self) -> &'static str {
        match self {
            Self::RunEnds => SETTLEMENT_CONSUMER,
            Self::Reservations => RESERVATION_CONSUMER,
            Self::Signups => SIGNUP_CONSUMER,
        }
    }

    /// Whether an event of the log is this feed's (what its JetStream filter subject passes).
    fn wants(self, event: &RecordedEvent) -> bool {
        match self {
            Self::RunEnds => event.aggregate_type == "Job",
            Self::Reservations => event.aggregate_type == "CreditLedger" && event.event_type == "CreditsReserved",
            Self::Signups => event.aggregate_type == "User" && event.event_type == "UserRegistered",
        }
    }
}

/// Settles job credits from the event stream.
pub struct Settlement {
    jobs: Arc<CommandBus<Job>>,
    ledgers: Arc<CommandBus<CreditLedger>>,
    source: Source,
    settings: SettlementSettings,
    allowances: Option<Arc<Allowances>>,
}

/// Where the settlement reads the events from.
enum Source {
    /// JetStream durable consumers.
    JetStream {
        jetstream: Box<jetstream::Context>,
        naming: Naming,
    },
    /// The log itself, in a process without NATS, woken by the process's commits.
    Log { database: Database, local: LocalRelay },
}

impl Settlement {
    /// A settlement process over these buses (the API's, when both run in one process).
    pub fn new(
        jobs: Arc<CommandBus<Job>>,
        ledgers: Arc<CommandBus<CreditLedger>>,
        jetstream: jetstream::Context,
        naming: Naming,
        settings: SettlementSettings,
    ) -> Self {
        Self {
            jobs,
            ledgers,
            source: Source::JetStream {
                jetstream: Box::new(jetstream),
                naming,
            },
            settings,
            allowances: None,
        }
    }

    /// A settlement process following `database`'s log in this process (a deployment without
    /// NATS), woken by the commits of appends made through `local`.
    pub fn over_log(
        jobs: Arc<CommandBus<Job>>,
        ledgers: Arc<CommandBus<CreditLedger>>,
        database: Database,
        local: LocalRelay,
        settings: SettlementSettings,
    ) -> Self {
        Self {
            jobs,
            ledgers,
            source: Source::Log { database, local },
            settings,
            allowances: None,
        }
    }

    /// This settlement, also granting each new account its month's free allowance.
    pub fn with_allowances(mut self, allowances: Arc<Allowances>) -> Self {
        self.allowances = Some(allowances);
        self
    }

    /// Runs both consumers until `shutdown`; on an error each logs, pauses and resumes.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tokio::join!(
            self.keep_consuming(Feed::RunEnds, &shutdown),
            self.keep_consuming(Feed::Reservations, &shutdown),
            self.keep_consuming(Feed::Signups, &shutdown)
        );
        Ok(())
    }

    async fn keep_consuming(&self, feed: Feed, shutdown: &CancellationToken) {
        while !shutdown.is_cancelled() {
            match self.consume(feed, shutdown).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::error!(?feed, error = format!("{error:#}"), "settlement failed; resuming");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    }

    fn consumer_config(feed: Feed, naming: &Naming) -> pull::Config {
        let prefix = naming.prefix();
        let (name, description, filter_subject) = match feed {
            Feed::RunEnds => (
                SETTLEMENT_CONSUMER,
                "Keyframe billing: settles job credits when a run ends",
                format!("{prefix}.events.Job.>"),
            ),
            Feed::Reservations => (
                RESERVATION_CONSUMER,
                "Keyframe billing: releases reservations whose job never appeared",
                format!("{prefix}.events.CreditLedger.*.CreditsReserved"),
            ),
            Feed::Signups => (
                SIGNUP_CONSUMER,
                "Keyframe billing: makes sure every new account has its signup bonus and month's allowance",
                format!("{prefix}.events.User.*.UserRegistered"),
            ),
        };
        pull::Config {
            durable_name: Some(name.to_owned()),
            description: Some(description.to_owned()),
            filter_subject,
            ack_policy: AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            max_deliver: -1,
            // Reservations waiting out their grace stay unacked: room for a busy few minutes.
            max_ack_pending: 100_000,
            ..Default::default()
        }
    }

    async fn consume(&self, feed: Feed, shutdown: &CancellationToken) -> anyhow::Result<()> {
        match &self.source {
            Source::JetStream { jetstream, naming } => self.consume_stream(feed, jetstream, naming, shutdown).await,
            Source::Log { database, local } => self.consume_log(feed, database, local, shutdown).await,
        }
    }

    /// Follows the log for `feed`, from where it last stood.
    async fn consume_log(
        &self,
        feed: Feed,
        database: &Database,
        local: &LocalRelay,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let name = feed.consumer();
        let mut tail = TailFeed::new(database.clone(), local, TailSettings::default());
        let mut saved = consumers::load(database, name).await?.unwrap_or_default();
        let mut saved_at = Instant::now();
        tail.seek(saved);
        // Reservations to look at again: when, and how often they were looked at.
        let mut later: BTreeMap<LogPosition, (Instant, RecordedEvent, i64)> = BTreeMap::new();
        loop {
            let now = Instant::now();
            let due: Vec<LogPosition> = later
                .iter()
                .filter(|(_, (at, _, _))| *at <= now)
                .map(|(position, _)| *position)
                .collect();
            for position in due {
                let Some((_, event, looked)) = later.remove(&position) else {
                    continue;
                };
                match self.handle_until_done(feed, &event, looked + 1, None, shutdown).await {
                    None => return Ok(()),
                    Some(Settled::LookAgainIn(delay)) => {
                        later.insert(position, (Instant::now() + delay, event, looked + 1));
                    }
                    Some(_) => {}
                }
            }
            // Reservations looked at again may have let the place move on.
            let done = done_with(&later, &tail);
            let mut wait = later
                .values()
                .map(|(at, _, _)| at.saturating_duration_since(Instant::now()))
                .min()
                .unwrap_or(Duration::from_secs(60));
            if done != saved {
                // A place not saved yet is saved once its second is up, even if the log stays
                // quiet: at rest the saved place is the reader's, as the lag gauges show it.
                wait = wait.min(CHECKPOINT_EVERY.saturating_sub(saved_at.elapsed()));
            }
            let events = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                events = tail.next_events(wait) => events?,
            };
            for event in events.iter().filter(|event| feed.wants(event)) {
                match self.handle_until_done(feed, event, 1, None, shutdown).await {
                    None => return Ok(()),
                    Some(Settled::LookAgainIn(delay)) => {
                        later.insert(LogPosition::of(event), (Instant::now() + delay, event.clone(), 1));
                    }
                    Some(_) => {}
                }
            }
            // Done with everything read, but for the reservations still to be looked at. Saved
            // at most once a second: each save is a write (and a sync to disk) of its own, and
            // a restart only handles again what came after the last one, safely.
            let done = done_with(&later, &tail);
            if done != saved && saved_at.elapsed() >= CHECKPOINT_EVERY {
                consumers::save(database, name, done).await?;
                saved = done;
                saved_at = Instant::now();
            }
        }
    }

    /// Reads `feed`'s durable JetStream consumer, made or brought to this configuration.
    async fn consume_stream(
        &self,
        feed: Feed,
        jetstream: &jetstream::Context,
        naming: &Naming,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let stream_name = naming.events_stream();
        let config = Self::consumer_config(feed, naming);
        let name = config.durable_name.clone().unwrap_or_default();
        let stream = jetstream
            .get_stream(&stream_name)
            .await
            .context("finding the events stream")?;
        let consumer: jetstream::consumer::PullConsumer = match stream.create_consumer(config.clone()).await {
            Ok(consumer) => consumer,
            Err(_) => {
                jetstream
                    .update_consumer_on_stream(config, &stream_name)
                    .await
                    .with_context(|| format!("updating the consumer {name}"))?;
                stream
                    .get_consumer(&name)
                    .await
                    .map_err(|e| anyhow::anyhow!("loading the consumer {name}: {e}"))?
            }
        };
        let mut messages = consumer.messages().await.context("pulling")?;
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                message = messages.next() => message.context("the consumer's message stream ended")?,
            };
            let message = message.map_err(|e| anyhow::anyhow!("receiving: {e}"))?;
            let Ok(event) = serde_json::from_slice::<RecordedEvent>(&message.payload) else {
                tracing::error!(subject = %message.subject, "not a Keyframe event; discarding it");
                message.ack_with(AckKind::Term).await.map_err(anyhow::Error::msg)?;
                continue;
            };
            let delivered = message.info().map(|info| info.delivered).unwrap_or(1);
            let Some(settled) = self
                .handle_until_done(feed, &event, delivered, Some(&message), shutdown)
                .await
            else {
                // Stopping: unacked, the message comes again to the next run.
                return Ok(());
            };
            let ack = match settled {
                Settled::LookAgainIn(delay) => AckKind::Nak(Some(delay)),
                _ => AckKind::Ack,
            };
            message.ack_with(ack).await.map_err(anyhow::Error::msg)?;
        }
    }

    /// Handles `event` on its `delivered`-th delivery, retrying what may pass (the database
    /// away, other writers) with a growing pause and keeping `message` (JetStream's) in progress
    /// meanwhile; `None` when stopped first.
    async fn handle_until_done(
        &self,
        feed: Feed,
        event: &RecordedEvent,
        delivered: i64,
        message: Option<&jetstream::Message>,
        shutdown: &CancellationToken,
    ) -> Option<Settled> {
        let mut pause = Duration::from_millis(100);
        loop {
            let outcome = match feed {
                Feed::RunEnds => self.settle(event).await,
                Feed::Reservations => self.sweep(event, delivered).await,
                Feed::Signups => self.signup_grants(event).await,
            };
            match outcome {
                Ok(Settled::NoReservation) => {
                    tracing::warn!(job_id = %event.aggregate_id, "a job run without a reservation ended; nothing to settle");
                    return Some(Settled::NoReservation);
                }
                Ok(settled) => return Some(settled),
                Err(SettleError::Permanent(error)) => {
                    tracing::error!(event = %event.message_id(), error = format!("{error:#}"),
                        "this event cannot be settled; skipping it");
                    return Some(Settled::NothingToDo);
                }
                Err(SettleError::Transient(error)) => {
                    tracing::warn!(event = %event.message_id(), error = format!("{error:#}"), "settling failed; retrying");
                }
            }
            if let Some(message) = message {
                let _ = message.ack_with(AckKind::Progress).await;
            }
            tokio::select! {
                () = shutdown.cancelled() => return None,
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    }

    /// Records in the owner's ledger what a run's end asks of it. Safe to call again for the
    /// same event: the ledger answers a repeat with no change.
    pub async fn settle(&self, event: &RecordedEvent) -> Result<Settled, SettleError> {
        if event.aggregate_type != "Job"
            || !matches!(event.event_type.as_str(), "JobSucceeded" | "JobFailed" | "JobCancelled")
        {
            return Ok(Settled::NothingToDo);
        }
        let job_event: JobEvent =
            serde_json::from_str(event.payload.get()).map_err(|e| SettleError::Permanent(e.into()))?;
        let job_id = parse_job_id(&event.aggregate_id)?;
        let job = self.job(&event.aggregate_id).await?.unwrap_or_default();
        let Some((owner, command)) = ledger_command_for(job_id, &job_event, &job, keyframe_domain::clock::now()) else {
            return Err(SettleError::Permanent(anyhow::anyhow!("the job's request is missing")));
        };
        self.record(owner.id().to_string(), command, event).await
    }

    /// Looks at a reservation on its `delivered`-th delivery: nothing to do when its job holds
    /// the reserved run; else look again shortly (first delivery), then after the grace
    /// (second), then release it.
    pub async fn sweep(&self, event: &RecordedEvent, delivered: i64) -> Result<Settled, SettleError> {
        if event.aggregate_type != "CreditLedger" || event.event_type != "CreditsReserved" {
            return Ok(Settled::NothingToDo);
        }
        let LedgerEvent::CreditsReserved { job_id, run, .. } =
            serde_json::from_str(event.payload.get()).map_err(|e| SettleError::Permanent(e.into()))?
        else {
            return Ok(Settled::NothingToDo);
        };
        let held = self
            .job(&job_id.to_string())
            .await?
            .is_some_and(|job| job.id().is_some() && job.run() >= run);
        if held {
            return Ok(Settled::NothingToDo);
        }
        match delivered {
            ..=1 => return Ok(Settled::LookAgainIn(SECOND_LOOK.min(self.settings.reservation_grace))),
            2 => return Ok(Settled::LookAgainIn(self.settings.reservation_grace)),
            _ => {}
        }
        tracing::warn!(%job_id, run, "releasing a reservation whose job never recorded the run");
        let command = LedgerCommand::Release {
            job_id,
            run,
            reason: "the job was never recorded".to_owned(),
            at: keyframe_domain::clock::now(),
        };
        self.record(event.aggregate_id.clone(), command, event).await
    }

    /// Grants a new account its signup bonus and its registration month's free allowance unless
    /// it has them (the ledger grants one bonus per user, one allowance per month: a repeat
    /// changes nothing). The allowance only while that month is this one or the one before: a
    /// registration handled late (billing was down over the month's end) still gets its month,
    /// which the month's sweep may have finished without it, but one delivered again long after
    /// (a recreated consumer reads the whole stream) grants no month long past. Both are tried
    /// before either's failure is answered.
    pub async fn signup_grants(&self, event: &RecordedEvent) -> Result<Settled, SettleError> {
        if event.aggregate_type != "User" || event.event_type != "UserRegistered" {
            return Ok(Settled::NothingToDo);
        }
        let owner_id = event
            .aggregate_id
            .parse()
            .map(UserId)
            .map_err(|e: uuid::Error| SettleError::Permanent(e.into()))?;
        let amount = self.settings.signup_bonus_credits;
        let bonus = if amount > 0 {
            let command = LedgerCommand::Grant {
                owner: Owner::User(owner_id),
                amount,
                source: GrantSource::SignupBonus,
                reason: "signup bonus".to_owned(),
                at: keyframe_domain::clock::now(),
            };
            self.record(event.aggregate_id.clone(), command, event).await
        } else {
            Ok(Settled::NothingToDo)
        };
        let registered_in = allowance_period(event.recorded_at);
        let allowance = match &self.allowances {
            Some(allowances) if is_this_or_last_month(&registered_in, keyframe_domain::clock::now()) => allowances
                .grant(Owner::User(owner_id), &registered_in, &Self::metadata(event))
                .await
                .map(|outcome| match outcome {
                    AllowanceOutcome::Holds => Settled::Recorded,
                    _ => Settled::NothingToDo,
                })
                .map_err(|error| match error {
                    GrantError::Passing(error) => SettleError::Transient(error),
                    GrantError::Lasting(error) => SettleError::Permanent(error),
                }),
            _ => Ok(Settled::NothingToDo),
        };
        match (bonus, allowance) {
            // Both are safe to repeat: a failure that may pass has the message handled again.
            (Err(error @ SettleError::Transient(_)), _) | (_, Err(error @ SettleError::Transient(_))) => Err(error),
            (Err(error), _) | (_, Err(error)) => Err(error),
            (Ok(Settled::Recorded), _) | (_, Ok(Settled::Recorded)) => Ok(Settled::Recorded),
            (Ok(bonus), Ok(_)) => Ok(bonus),
        }
    }

    async fn job(&self, id: &str) -> Result<Option<Job>, SettleError> {
        self.jobs
            .load(id)
            .await
            .map_err(|error| SettleError::Transient(anyhow::anyhow!("loading the job: {error}")))
    }

    async fn record(
        &self,
        ledger_id: String,
        command: LedgerCommand,
        cause: &RecordedEvent,
    ) -> Result<Settled, SettleError> {
        let recorded = self
            .ledgers
            .execute(&ledger_id, || command.clone(), &Self::metadata(cause))
            .await;
        match recorded {
            Ok(_) => Ok(Settled::Recorded),
            Err(CommandError::Rejected(LedgerError::NoReservation)) => Ok(Settled::NoReservation),
            Err(CommandError::Rejected(error)) => Err(SettleError::Permanent(error.into())),
            Err(error) => Err(SettleError::Transient(error.into())),
        }
    }

    /// The system acts, caused by the event, in the chain of the request that started it.
    fn metadata(event: &RecordedEvent) -> CommandMetadata {
        let mut metadata = CommandMetadata::system().with_actor(Actor::System);
        metadata.causation_id = event.message_id();
        if let Some(correlation) = event.metadata.get("correlation_id") {
            metadata.correlation_id = correlation.clone();
        }
        metadata
    }
}

/// Whether month `period` (`YYYY-MM`) is the month of `now` or the one before.
fn is_this_or_last_month(period: &str, now: DateTime<Utc>) -> bool {
    let last_month = now.checked_sub_months(chrono::Months::new(1)).unwrap_or(now);
    period == allowance_period(now) || period == allowance_period(last_month)
}

fn parse_job_id(raw: &str) -> Result<JobId, SettleError> {
    raw.parse()
        .map(JobId)
        .map_err(|e: uuid::Error| SettleError::Permanent(e.into()))
}

/// Why an event was not settled.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// Trying again may succeed (the database was away, other writers kept conflicting).
    #[error("{0:#}")]
    Transient(anyhow::Error),
    /// Trying again cannot succeed (a malformed event, a broken rule): logged and skipped.
    #[error("{0:#}")]
    Permanent(anyhow::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_is_granted_its_month_only_while_it_is_this_month_or_the_last() {
        let now: DateTime<Utc> = "2027-01-03T10:00:00Z".parse().expect("a timestamp");
        assert!(is_this_or_last_month("2027-01", now));
        assert!(
            is_this_or_last_month("2026-12", now),
            "handled late, over the month's end"
        );
        assert!(!is_this_or_last_month("2026-11", now), "delivered again long after");
        assert!(!is_this_or_last_month("2027-02", now));
    }
}
