//! The service side of the worker protocol: answers the workers' requests by running `Job`
//! commands ([`JobDesk`]), and makes the workers' consumer.
//!
//! Over NATS ([`Coordinator`]), every `serve` process running the `jobs` component listens in
//! one queue group, so each request is answered once whichever replica gets it. In a process
//! without NATS its own workers ask the desk directly. The answers come from the aggregate
//! after the command, never from memory, so a replica that restarts answers the same way.

use crate::protocol::{
    FailedRequest, OutcomeReply, ProgressReply, ProgressRequest, StartReply, StartRequest, SucceededRequest,
    WORKER_CONSUMER, WorkOrder, WorkerSubjects, kind,
};
use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::AckPolicy, consumer::pull};
use futures::StreamExt;
use keyframe_domain::job::{Backoff, Job, JobCommand, JobStatus};
use keyframe_eventlog::commands::{CommandBus, CommandError};
use keyframe_eventlog::metadata::CommandMetadata;
use keyframe_eventlog::streams::Naming;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Requests answered at once; more wait for a turn.
const CONCURRENT_REQUESTS: usize = 64;

/// Tuning.
#[derive(Debug, Clone, Copy)]
pub struct CoordinatorSettings {
    /// How long JetStream waits for a worker's ack (or progress) before handing its job to
    /// another worker: how soon a killed worker's job moves on.
    pub worker_ack_wait: Duration,
    /// Delay before automatic retries.
    pub retry_backoff: Backoff,
}

impl Default for CoordinatorSettings {
    fn default() -> Self {
        Self {
            worker_ack_wait: Duration::from_secs(30),
            retry_backoff: Backoff {
                base: chrono::Duration::seconds(5),
                max: chrono::Duration::minutes(5),
            },
        }
    }
}

/// Creates the workers' durable consumer on the events stream, or brings it to this
/// configuration. Workers cannot make it themselves: their NATS user may only read from it.
pub async fn ensure_worker_consumer(
    jetstream: &jetstream::Context,
    naming: &Naming,
    ack_wait: Duration,
) -> anyhow::Result<()> {
    let subjects = WorkerSubjects::new(naming.prefix());
    let config = pull::Config {
        durable_name: Some(WORKER_CONSUMER.to_owned()),
        description: Some("Keyframe video workers: queued jobs".to_owned()),
        filter_subject: subjects.queued_jobs(),
        ack_policy: AckPolicy::Explicit,
        ack_wait,
        // Redelivery never ends by itself: the Job aggregate bounds the attempts.
        max_deliver: -1,
        max_ack_pending: 1_000,
        ..Default::default()
    };
    let stream = naming.events_stream();
    if jetstream
        .create_consumer_on_stream(config.clone(), &stream)
        .await
        .is_err()
    {
        jetstream
            .update_consumer_on_stream(config, &stream)
            .await
            .map_err(|e| anyhow::anyhow!("making the workers' consumer: {e}"))?;
    }
    Ok(())
}

/// Answers the workers' requests over NATS.
pub struct Coordinator {
    desk: Arc<JobDesk>,
    client: async_nats::Client,
    subjects: WorkerSubjects,
}

impl Coordinator {
    /// A coordinator running commands through `jobs`.
    pub fn new(
        jobs: Arc<CommandBus<Job>>,
        client: async_nats::Client,
        naming: &Naming,
        settings: CoordinatorSettings,
    ) -> Self {
        Self {
            desk: Arc::new(JobDesk::new(jobs, settings)),
            client,
            subjects: WorkerSubjects::new(naming.prefix()),
        }
    }

    /// Listens until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let this = Arc::new(self);
        let mut requests = this
            .client
            .queue_subscribe(this.subjects.all_requests(), this.subjects.service_queue_group())
            .await
            .context("listening for worker requests")?;
        let turns = Arc::new(Semaphore::new(CONCURRENT_REQUESTS));
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                message = requests.next() => match message {
                    Some(message) => message,
                    None => anyhow::bail!("the worker request subscription closed"),
                },
            };
            let Ok(turn) = turns.clone().acquire_owned().await else {
                return Ok(());
            };
            let this = this.clone();
            tokio::spawn(async move {
                this.answer(message).await;
                drop(turn);
            });
        }
    }

    async fn answer(&self, message: async_nats::Message) {
        let Some(reply_to) = message.reply.clone() else {
            return;
        };
        let tokens: Vec<&str> = message.subject.split('.').collect();
        let (job_id, request_kind) = match tokens.as_slice() {
            [.., job_id, request_kind] if job_id.parse::<uuid::Uuid>().is_ok() => (*job_id, *request_kind),
            _ => return,
        };
        let Some(answer) = self.desk.answer(job_id, request_kind, &message.payload).await else {
            return;
        };
        if let Err(error) = self.client.publish(reply_to, answer.into()).await {
            tracing::warn!(%error, job_id, "could not answer a worker");
        }
    }
}

/// Turns workers' requests into `Job` commands, whatever carries them.
pub struct JobDesk {
    jobs: Arc<CommandBus<Job>>,
    settings: CoordinatorSettings,
}

impl JobDesk {
    /// A desk running commands through `jobs`.
    pub fn new(jobs: Arc<CommandBus<Job>>, settings: CoordinatorSettings) -> Self {
        Self { jobs, settings }
    }

    /// The answer, as JSON, to a request of `request_kind` ([`kind`]) about `job_id` whose
    /// body is `payload`; `None` for a kind it does not know.
    pub async fn answer(&self, job_id: &str, request_kind: &str, payload: &[u8]) -> Option<Vec<u8>> {
        Some(match request_kind {
            kind::STARTED => self.decode_then(payload, |r| self.start(job_id, r)).await,
            kind::PROGRESS => self.decode_then(payload, |r| self.progress(job_id, r)).await,
            kind::SUCCEEDED => self.decode_then(payload, |r| self.succeeded(job_id, r)).await,
            kind::FAILED => self.decode_then(payload, |r| self.failed(job_id, r)).await,
            _ => return None,
        })
    }

    async fn decode_then<R, A, F>(&self, payload: &[u8], handle: impl FnOnce(R) -> F) -> Vec<u8>
    where
        R: serde::de::DeserializeOwned,
        A: serde::Serialize,
        F: Future<Output = A>,
    {
        match serde_json::from_slice::<R>(payload) {
            Ok(request) => serde_json::to_vec(&handle(request).await).unwrap_or_default(),
            Err(error) => {
                tracing::warn!(%error, "unreadable worker request");
                serde_json::to_vec(&serde_json::json!({"outcome": "skip", "reason": "unreadable request"}))
                    .unwrap_or_default()
            }
        }
    }

    async fn start(&self, job_id: &str, request: StartRequest) -> StartReply {
        let command = || JobCommand::StartAttempt {
            ticket: request.ticket,
            claim: request.claim.clone(),
            worker: request.worker.clone(),
            at: keyframe_domain::clock::now(),
        };
        match self.jobs.execute(job_id, command, &metadata()).await {
            Ok(_) => {}
            Err(CommandError::Rejected(error)) => {
                return StartReply::Skip {
                    reason: error.to_string(),
                };
            }
            Err(error) => {
                return StartReply::Unavailable {
                    reason: error.to_string(),
                };
            }
        }
        let job = match self.jobs.load(job_id).await {
            Ok(Some(job)) => job,
            Ok(None) => {
                return StartReply::Skip {
                    reason: "no such job".to_owned(),
                };
            }
            Err(error) => {
                return StartReply::Unavailable {
                    reason: error.to_string(),
                };
            }
        };
        // The start may have ended the job instead (a lost worker's last retry).
        let ours = job.status() == JobStatus::Running && job.claim() == Some(request.claim.as_str());
        if ours && let (Some(queued), Some(started)) = (job.queued_at(), job.started_at()) {
            let waited = (started - queued).to_std().unwrap_or_default();
            metrics::histogram!("keyframe_job_queue_wait_seconds").record(waited.as_secs_f64());
        }
        match (ours, job.job_type(), job.source()) {
            (true, Some(job_type), Some(source)) => StartReply::Run(WorkOrder {
                attempt: job.attempts(),
                job_type,
                source: source.clone(),
                parameters: job.parameters().clone(),
            }),
            _ => StartReply::Skip {
                reason: format!("the job is {}", job.status()),
            },
        }
    }

    async fn progress(&self, job_id: &str, request: ProgressRequest) -> ProgressReply {
        // A running worker reports at least every heartbeat interval.
        metrics::counter!("keyframe_worker_heartbeats_total").increment(1);
        let command = || JobCommand::ReportProgress {
            attempt: request.attempt,
            percent: request.percent,
            stage: request.stage.clone(),
            at: keyframe_domain::clock::now(),
        };
        match self.jobs.execute(job_id, command, &metadata()).await {
            Ok(_) => ProgressReply::Continue,
            Err(CommandError::Rejected(error)) => ProgressReply::Stop {
                reason: error.to_string(),
            },
            Err(error) => ProgressReply::Unavailable {
                reason: error.to_string(),
            },
        }
    }

    async fn succeeded(&self, job_id: &str, request: SucceededRequest) -> OutcomeReply {
        let command = || JobCommand::CompleteAttempt {
            attempt: request.attempt,
            result: request.result.clone(),
            artifacts: request.artifacts.clone(),
            at: keyframe_domain::clock::now(),
        };
        outcome(self.jobs.execute(job_id, command, &metadata()).await)
    }

    async fn failed(&self, job_id: &str, request: FailedRequest) -> OutcomeReply {
        let command = || JobCommand::FailAttempt {
            attempt: request.attempt,
            reason: request.reason.clone(),
            backoff: self.settings.retry_backoff,
            at: keyframe_domain::clock::now(),
        };
        outcome(self.jobs.execute(job_id, command, &metadata()).await)
    }
}

fn metadata() -> CommandMetadata {
    CommandMetadata::system()
}

fn outcome<E: std::error::Error>(result: Result<i64, CommandError<E>>) -> OutcomeReply {
    match result {
        Ok(_) => OutcomeReply::Recorded,
        Err(CommandError::Rejected(error)) => OutcomeReply::Refused {
            reason: error.to_string(),
        },
        Err(error) => OutcomeReply::Unavailable {
            reason: error.to_string(),
        },
    }
}
