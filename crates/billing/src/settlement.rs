//! The settlement process manager: when a job's run ends, charge or give back the credits
//! reserved for it.
//!
//! It reads `Job` events from its own durable JetStream consumer (`billing_settlement`,
//! filtered to `<prefix>.events.Job.>`: one filter subject, as nats-server 2.9 allows), turns
//! each run's end into a `CreditLedger` command ([`keyframe_domain::settlement`]) and acks
//! the message only once the command is recorded. Delivery is at least once: a message whose
//! ack was lost, or that a process stopped before acking, comes again. The effect is still
//! exactly once because the ledger ignores a second settlement or release of the same run of
//! the same job. After a restart the durable consumer resumes where the acks stopped.

use anyhow::Context as _;
use async_nats::jetstream::{self, AckKind, consumer::AckPolicy, consumer::pull};
use chrono::Utc;
use futures::StreamExt;
use keyframe_domain::ids::JobId;
use keyframe_domain::job::{Job, JobEvent};
use keyframe_domain::ledger::{CreditLedger, LedgerError};
use keyframe_domain::log::RecordedEvent;
use keyframe_domain::settlement::ledger_command_for;
use keyframe_eventlog::commands::{CommandBus, CommandError};
use keyframe_eventlog::metadata::{Actor, CommandMetadata};
use keyframe_eventlog::streams::Naming;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The durable consumer's name.
pub const SETTLEMENT_CONSUMER: &str = "billing_settlement";

/// How long JetStream waits for an ack before delivering a message again.
const ACK_WAIT: Duration = Duration::from_secs(30);

/// What became of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// A run's end was recorded in the ledger (or had been already: a repeat changes nothing).
    Recorded,
    /// The event ends no run.
    NothingToDo,
    /// The run holds no reservation (a job requested before billing): nothing to settle.
    NoReservation,
}

/// Settles job credits from the event stream.
pub struct Settlement {
    jobs: CommandBus<Job>,
    ledgers: CommandBus<CreditLedger>,
    jetstream: jetstream::Context,
    naming: Naming,
}

impl Settlement {
    /// A settlement process over these buses.
    pub fn new(
        jobs: CommandBus<Job>,
        ledgers: CommandBus<CreditLedger>,
        jetstream: jetstream::Context,
        naming: Naming,
    ) -> Self {
        Self {
            jobs,
            ledgers,
            jetstream,
            naming,
        }
    }

    /// Runs until `shutdown`; on an error it logs, pauses and resumes from the consumer.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        while !shutdown.is_cancelled() {
            match self.consume(&shutdown).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::error!(error = format!("{error:#}"), "settlement failed; resuming");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        Ok(())
    }

    async fn consume(&self, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let stream_name = self.naming.events_stream();
        let config = pull::Config {
            durable_name: Some(SETTLEMENT_CONSUMER.to_owned()),
            description: Some("Keyframe billing: settles job credits when a run ends".to_owned()),
            filter_subject: format!("{}.events.Job.>", self.naming.prefix()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            max_deliver: -1,
            max_ack_pending: 1_000,
            ..Default::default()
        };
        let stream = self
            .jetstream
            .get_stream(&stream_name)
            .await
            .context("finding the events stream")?;
        let consumer: jetstream::consumer::PullConsumer = match stream.create_consumer(config.clone()).await {
            Ok(consumer) => consumer,
            Err(_) => {
                self.jetstream
                    .update_consumer_on_stream(config, &stream_name)
                    .await
                    .context("updating the settlement consumer")?;
                stream
                    .get_consumer(SETTLEMENT_CONSUMER)
                    .await
                    .map_err(|e| anyhow::anyhow!("loading the settlement consumer: {e}"))?
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
            if !self.settle_until_done(&event, shutdown).await {
                // Stopping: unacked, the message comes again to the next run.
                return Ok(());
            }
            message.ack().await.map_err(anyhow::Error::msg)?;
        }
    }

    /// Settles `event`, retrying what may pass (the database away, other writers) with a
    /// growing pause; `false` when stopped first.
    async fn settle_until_done(&self, event: &RecordedEvent, shutdown: &CancellationToken) -> bool {
        let mut pause = Duration::from_millis(100);
        loop {
            match self.settle(event).await {
                Ok(outcome) => {
                    if outcome == Settled::NoReservation {
                        tracing::info!(job_id = %event.aggregate_id, "a job without a reservation ended; nothing to settle");
                    }
                    return true;
                }
                Err(SettleError::Permanent(error)) => {
                    tracing::error!(job_id = %event.aggregate_id, event = %event.message_id(), error = format!("{error:#}"),
                        "this job event cannot be settled; skipping it");
                    return true;
                }
                Err(SettleError::Transient(error)) => {
                    tracing::warn!(job_id = %event.aggregate_id, error = format!("{error:#}"), "settling failed; retrying");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    }

    /// Records in the owner's ledger what `event` asks of it. Safe to call again for the same
    /// event: the ledger answers a repeat with no change.
    pub async fn settle(&self, event: &RecordedEvent) -> Result<Settled, SettleError> {
        if event.aggregate_type != "Job"
            || !matches!(event.event_type.as_str(), "JobSucceeded" | "JobFailed" | "JobCancelled")
        {
            return Ok(Settled::NothingToDo);
        }
        let job_event: JobEvent =
            serde_json::from_str(event.payload.get()).map_err(|e| SettleError::Permanent(e.into()))?;
        let job_id = event
            .aggregate_id
            .parse()
            .map(JobId)
            .map_err(|e: uuid::Error| SettleError::Permanent(e.into()))?;
        let job = match self.jobs.load(&event.aggregate_id).await {
            Ok(job) => job.unwrap_or_default(),
            Err(error) => return Err(SettleError::Transient(anyhow::anyhow!("loading the job: {error}"))),
        };
        let Some((owner_id, command)) = ledger_command_for(job_id, &job_event, &job, Utc::now()) else {
            return Err(SettleError::Permanent(anyhow::anyhow!("the job's request is missing")));
        };
        let recorded = self
            .ledgers
            .execute(&owner_id.to_string(), || command.clone(), &Self::metadata(event))
            .await;
        match recorded {
            Ok(_) => Ok(Settled::Recorded),
            Err(CommandError::Rejected(LedgerError::NoReservation)) => Ok(Settled::NoReservation),
            Err(CommandError::Rejected(error)) => Err(SettleError::Permanent(error.into())),
            Err(error) => Err(SettleError::Transient(error.into())),
        }
    }

    /// The system acts, caused by the event, in the chain of the request that started the job.
    fn metadata(event: &RecordedEvent) -> CommandMetadata {
        let mut metadata = CommandMetadata::system().with_actor(Actor::System);
        metadata.causation_id = event.message_id();
        if let Some(correlation) = event.metadata.get("correlation_id") {
            metadata.correlation_id = correlation.clone();
        }
        metadata
    }
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
