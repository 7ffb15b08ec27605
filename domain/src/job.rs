//! The `Job` aggregate: one piece of work on a video (an analysis, or cutting clips), from its
//! request through its attempts to its end.
//!
//! The worker never writes events. It asks (through the service) to start an attempt, reports
//! progress and reports the outcome; each of those is a command here, so the rules below guard
//! every change whatever the worker does: a queue entry that is no longer current cannot start,
//! an attempt that was superseded cannot report, a finished job cannot be cancelled.
//!
//! Attempts: each start is an attempt. A failed attempt is retried automatically, with an
//! exponential backoff, while the job has retries left; a start from another worker while an
//! attempt runs means the worker running it was lost, and counts that attempt as failed. A
//! manual retry, after failure or cancellation, queues the job again with a fresh retry budget.

use crate::ids::{AssetId, JobId, ProjectId, UserId};
use crate::media::Artifact;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobType {
    /// The full analysis of a video: cuts, black and silent spans, loudness, thumbnails,
    /// highlight candidates.
    Analyze,
    /// Cutting highlight clips out of a video, from a finished analysis.
    Clip,
}

impl JobType {
    /// The name clients use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Analyze => "analyze",
            Self::Clip => "clip",
        }
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Waiting for a worker.
    #[default]
    Queued,
    /// A worker runs an attempt.
    Running,
    /// Done, with a result.
    Succeeded,
    /// Gave up, with the last attempt's reason.
    Failed,
    /// Stopped by its owner.
    Cancelled,
}

impl JobStatus {
    /// The name clients use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the job has ended (nothing runs or waits).
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The video a job works on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSource {
    /// The asset.
    pub asset_id: AssetId,
    /// Where storage keeps it.
    pub storage_key: String,
    /// Its length, when the probe knew it (progress is measured against it).
    pub duration_ms: Option<u64>,
}

/// How long to wait before an automatic retry: `base` doubled per retry already made, at most
/// `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first retry's delay.
    pub base: chrono::Duration,
    /// The longest delay.
    pub max: chrono::Duration,
}

impl Backoff {
    fn delay(self, retries_made: u32) -> chrono::Duration {
        let factor = 1_i32.checked_shl(retries_made.min(20)).unwrap_or(i32::MAX);
        self.base.checked_mul(factor).unwrap_or(self.max).min(self.max)
    }
}

/// Progress is recorded when it crosses a multiple of this many percent: a handful of events
/// per attempt, not one per report.
pub const PROGRESS_STEP: u8 = 25;

/// A job.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Job {
    id: Option<JobId>,
    owner_id: Option<UserId>,
    project_id: Option<ProjectId>,
    job_type: Option<JobType>,
    source: Option<JobSource>,
    prompt: Option<String>,
    parameters: serde_json::Value,
    max_retries: u32,
    retries_left: u32,
    cost_credits: i64,
    run: u32,
    status: JobStatus,
    ticket: u32,
    not_before: Option<DateTime<Utc>>,
    attempts: u32,
    claim: Option<String>,
    last_failed_attempt: u32,
    progress: u8,
    stage: Option<String>,
    result: Option<serde_json::Value>,
    artifacts: Vec<Artifact>,
    error: Option<String>,
    created_at: Option<DateTime<Utc>>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
    deleted: bool,
}

impl Job {
    /// Its id; `None` before the request.
    pub fn id(&self) -> Option<JobId> {
        self.id
    }
    /// Whose it is.
    pub fn owner_id(&self) -> Option<UserId> {
        self.owner_id
    }
    /// Its project.
    pub fn project_id(&self) -> Option<ProjectId> {
        self.project_id
    }
    /// What it does.
    pub fn job_type(&self) -> Option<JobType> {
        self.job_type
    }
    /// The video it works on.
    pub fn source(&self) -> Option<&JobSource> {
        self.source.as_ref()
    }
    /// Free text for job types that take one.
    pub fn prompt(&self) -> Option<&str> {
        self.prompt.as_deref()
    }
    /// Type-specific parameters.
    pub fn parameters(&self) -> &serde_json::Value {
        &self.parameters
    }
    /// Automatic retries allowed after a failed attempt.
    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }
    /// Where it stands.
    pub fn status(&self) -> JobStatus {
        self.status
    }
    /// The current queue entry: a start must name it.
    pub fn ticket(&self) -> u32 {
        self.ticket
    }
    /// Not to be started before this (an automatic retry's backoff).
    pub fn not_before(&self) -> Option<DateTime<Utc>> {
        self.not_before
    }
    /// Attempts started so far (the current one included).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
    /// The claim of the running attempt.
    pub fn claim(&self) -> Option<&str> {
        self.claim.as_deref()
    }
    /// Progress of the current attempt in percent, as last recorded.
    pub fn progress(&self) -> u8 {
        self.progress
    }
    /// What the current attempt was doing when progress was last recorded.
    pub fn stage(&self) -> Option<&str> {
        self.stage.as_deref()
    }
    /// The result, once succeeded.
    pub fn result(&self) -> Option<&serde_json::Value> {
        self.result.as_ref()
    }
    /// Files it produced.
    pub fn artifacts(&self) -> &[Artifact] {
        &self.artifacts
    }
    /// Why it failed (the last attempt's reason).
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
    /// When it was requested.
    pub fn created_at(&self) -> Option<DateTime<Utc>> {
        self.created_at
    }
    /// When its current (or last) attempt started.
    pub fn started_at(&self) -> Option<DateTime<Utc>> {
        self.started_at
    }
    /// When it ended.
    pub fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.finished_at
    }
    /// When it last changed.
    pub fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.updated_at
    }
    /// Its price in credits.
    pub fn cost_credits(&self) -> i64 {
        self.cost_credits
    }
    /// Which run it is on: 0 from its request, one more for each manual retry. Each run holds
    /// a reservation of its own, reserved before it starts and settled or released when it ends.
    pub fn run(&self) -> u32 {
        self.run
    }
    /// What it costs the owner as it stands: its price while it waits, runs or has succeeded;
    /// nothing once it failed or was cancelled (the reservation is released).
    pub fn charge(&self) -> i64 {
        match self.status {
            JobStatus::Failed | JobStatus::Cancelled => 0,
            _ => self.cost_credits,
        }
    }
    /// Whether its owner deleted it.
    pub fn is_deleted(&self) -> bool {
        self.deleted
    }
    /// Whether `actor` may see it: it exists, is not deleted, and is theirs.
    pub fn is_visible_to(&self, actor: UserId) -> bool {
        self.id.is_some() && !self.deleted && self.owner_id == Some(actor)
    }
}

/// Commands for [`Job`].
#[derive(Debug)]
pub enum JobCommand {
    /// Request a job; it is queued at once.
    RequestJob {
        /// The new job's id (also the aggregate id).
        job_id: JobId,
        /// Who asks.
        owner_id: UserId,
        /// The project it belongs to (checked to be the owner's).
        project_id: ProjectId,
        /// What to do.
        job_type: JobType,
        /// The video, for job types that work on one.
        source: Option<JobSource>,
        /// Free text, for job types that take one.
        prompt: Option<String>,
        /// Type-specific parameters (validated by the caller).
        parameters: serde_json::Value,
        /// Automatic retries allowed.
        max_retries: u32,
        /// Its price in credits, already reserved in the owner's ledger.
        cost_credits: i64,
        /// When.
        at: DateTime<Utc>,
    },
    /// A worker asks to start the job from queue entry `ticket`.
    StartAttempt {
        /// The queue entry the worker took.
        ticket: u32,
        /// The worker's claim: one per delivery, so a repeated request is recognised.
        claim: String,
        /// Which worker.
        worker: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// The running attempt reports how far it is.
    ReportProgress {
        /// Which attempt reports.
        attempt: u32,
        /// Percent done.
        percent: u8,
        /// What it is doing.
        stage: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// The running attempt finished with a result.
    CompleteAttempt {
        /// Which attempt.
        attempt: u32,
        /// The result.
        result: serde_json::Value,
        /// The files it produced.
        artifacts: Vec<Artifact>,
        /// When.
        at: DateTime<Utc>,
    },
    /// The running attempt failed.
    FailAttempt {
        /// Which attempt.
        attempt: u32,
        /// Why, readable by the job's owner.
        reason: String,
        /// How long before an automatic retry.
        backoff: Backoff,
        /// When.
        at: DateTime<Utc>,
    },
    /// The owner stops the job.
    Cancel {
        /// Who asks.
        actor: UserId,
        /// When.
        at: DateTime<Utc>,
    },
    /// The owner runs a failed or cancelled job again.
    Retry {
        /// Who asks.
        actor: UserId,
        /// The run it starts, whose credits the caller reserved: the job's next. A retry made
        /// from an older view of the job (another retry got there first) is refused, so no run
        /// starts without its own reservation.
        run: u32,
        /// When.
        at: DateTime<Utc>,
    },
    /// The owner deletes a finished job.
    Delete {
        /// Who asks.
        actor: UserId,
        /// When.
        at: DateTime<Utc>,
    },
}

/// Events of [`Job`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobEvent {
    /// A job was requested.
    JobRequested {
        /// Its id.
        job_id: JobId,
        /// Whose.
        owner_id: UserId,
        /// Its project.
        project_id: ProjectId,
        /// What it does.
        job_type: JobType,
        /// The video it works on.
        source: Option<JobSource>,
        /// Free text.
        prompt: Option<String>,
        /// Type-specific parameters.
        parameters: serde_json::Value,
        /// Automatic retries allowed.
        max_retries: u32,
        /// Its price in credits, reserved before the job existed (0 for jobs requested before
        /// billing).
        #[serde(default)]
        cost_credits: i64,
        /// When.
        requested_at: DateTime<Utc>,
    },
    /// The job waits for a worker: the workers' consumer delivers exactly this event type.
    JobQueued {
        /// The queue entry; a start must name the current one.
        ticket: u32,
        /// Not to be started before (an automatic retry's backoff).
        not_before: Option<DateTime<Utc>>,
        /// When.
        queued_at: DateTime<Utc>,
    },
    /// A worker started an attempt.
    JobStarted {
        /// The attempt's number, from 1.
        attempt: u32,
        /// The queue entry it came from.
        ticket: u32,
        /// The worker's claim.
        claim: String,
        /// Which worker.
        worker: String,
        /// When.
        started_at: DateTime<Utc>,
    },
    /// The running attempt passed a progress step.
    JobProgressed {
        /// Which attempt.
        attempt: u32,
        /// Percent done.
        percent: u8,
        /// What it is doing.
        stage: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// The job succeeded.
    JobSucceeded {
        /// The attempt that did it.
        attempt: u32,
        /// The result.
        result: serde_json::Value,
        /// The files it produced.
        artifacts: Vec<Artifact>,
        /// The run that ended (see [`Job::run`]): its reservation is settled.
        #[serde(default)]
        run: u32,
        /// When.
        finished_at: DateTime<Utc>,
    },
    /// An attempt failed (the job may be retried).
    JobAttemptFailed {
        /// Which attempt.
        attempt: u32,
        /// Why.
        reason: String,
        /// When.
        failed_at: DateTime<Utc>,
    },
    /// The job was put back in the queue after a failure or cancellation.
    JobRetried {
        /// By the retry policy (`true`) or by its owner.
        automatic: bool,
        /// Automatic retries left after this one.
        retries_left: u32,
        /// When.
        retried_at: DateTime<Utc>,
    },
    /// The job failed for good.
    JobFailed {
        /// The last attempt.
        attempt: u32,
        /// Why.
        reason: String,
        /// The run that ended: its reservation is released.
        #[serde(default)]
        run: u32,
        /// When.
        failed_at: DateTime<Utc>,
    },
    /// The owner cancelled the job.
    JobCancelled {
        /// What it was doing.
        previous_status: JobStatus,
        /// The run that ended: its reservation is released.
        #[serde(default)]
        run: u32,
        /// When.
        cancelled_at: DateTime<Utc>,
    },
    /// The owner deleted the finished job.
    JobDeleted {
        /// When.
        deleted_at: DateTime<Utc>,
    },
}

impl DomainEvent for JobEvent {
    fn event_type(&self) -> String {
        match self {
            Self::JobRequested { .. } => "JobRequested",
            Self::JobQueued { .. } => "JobQueued",
            Self::JobStarted { .. } => "JobStarted",
            Self::JobProgressed { .. } => "JobProgressed",
            Self::JobSucceeded { .. } => "JobSucceeded",
            Self::JobAttemptFailed { .. } => "JobAttemptFailed",
            Self::JobRetried { .. } => "JobRetried",
            Self::JobFailed { .. } => "JobFailed",
            Self::JobCancelled { .. } => "JobCancelled",
            Self::JobDeleted { .. } => "JobDeleted",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

/// Rules a [`JobCommand`] can break.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// `RequestJob` for an id that exists.
    #[error("a job with this id already exists")]
    AlreadyExists,
    /// No such job, it was deleted, or it is someone else's.
    #[error("no such job")]
    NotFound,
    /// A start from a queue entry that is no longer current (the job was retried or re-queued).
    #[error("this queue entry is no longer current")]
    StaleTicket,
    /// A start for a job that is not waiting to run.
    #[error("the job is {status}; it does not run")]
    NotRunnable {
        /// Where it stands.
        status: JobStatus,
    },
    /// A report from an attempt that is not the running one.
    #[error("attempt {attempt} is not the job's running attempt")]
    AttemptSuperseded {
        /// The reporting attempt.
        attempt: u32,
    },
    /// Cancelling a job that has ended.
    #[error("the job is {status}; only a queued or running job can be cancelled")]
    NotCancellable {
        /// Where it stands.
        status: JobStatus,
    },
    /// Retrying a job that has not failed or been cancelled.
    #[error("the job is {status}; only a failed or cancelled job can be retried")]
    NotRetryable {
        /// Where it stands.
        status: JobStatus,
    },
    /// A retry starting a run that is not the job's next.
    #[error("this retry starts run {run}, but the job is on run {current}")]
    StaleRun {
        /// The run the retry would start.
        run: u32,
        /// The job's current run.
        current: u32,
    },
    /// An outcome naming an artifact that is not a plain file name.
    #[error("artifact name {name:?} is not a plain file name")]
    InvalidArtifact {
        /// The name.
        name: String,
    },
    /// Deleting a job that has not ended.
    #[error("the job is {status}; cancel it before deleting it")]
    StillActive {
        /// Where it stands.
        status: JobStatus,
    },
}

impl Aggregate for Job {
    const TYPE: &'static str = "Job";
    type Command = JobCommand;
    type Event = JobEvent;
    type Error = JobError;
    type Services = ();

    async fn handle(&mut self, command: JobCommand, _: &(), sink: &EventSink<Self>) -> Result<(), JobError> {
        match command {
            JobCommand::RequestJob {
                job_id,
                owner_id,
                project_id,
                job_type,
                source,
                prompt,
                parameters,
                max_retries,
                cost_credits,
                at,
            } => {
                if self.id.is_some() {
                    return Err(JobError::AlreadyExists);
                }
                let requested = JobEvent::JobRequested {
                    job_id,
                    owner_id,
                    project_id,
                    job_type,
                    source,
                    prompt,
                    parameters,
                    max_retries,
                    cost_credits,
                    requested_at: at,
                };
                sink.write(requested, self).await;
                self.queue(None, at, sink).await;
            }
            JobCommand::StartAttempt {
                ticket,
                claim,
                worker,
                at,
            } => self.start(ticket, claim, worker, at, sink).await?,
            JobCommand::ReportProgress {
                attempt,
                percent,
                stage,
                at,
            } => {
                self.ensure_running_attempt(attempt)?;
                let percent = percent.min(99);
                if percent / PROGRESS_STEP > self.progress / PROGRESS_STEP {
                    let event = JobEvent::JobProgressed {
                        attempt,
                        percent,
                        stage,
                        at,
                    };
                    sink.write(event, self).await;
                }
            }
            JobCommand::CompleteAttempt {
                attempt,
                result,
                artifacts,
                at,
            } => {
                // The same outcome reported again (the worker did not hear the answer).
                if self.status == JobStatus::Succeeded && attempt == self.attempts {
                    return Ok(());
                }
                self.ensure_running_attempt(attempt)?;
                if let Some(bad) = artifacts.iter().find(|a| !Artifact::is_valid_name(&a.name)) {
                    return Err(JobError::InvalidArtifact { name: bad.name.clone() });
                }
                let event = JobEvent::JobSucceeded {
                    attempt,
                    result,
                    artifacts,
                    run: self.run,
                    finished_at: at,
                };
                sink.write(event, self).await;
            }
            JobCommand::FailAttempt {
                attempt,
                reason,
                backoff,
                at,
            } => {
                if attempt == self.last_failed_attempt {
                    return Ok(());
                }
                self.ensure_running_attempt(attempt)?;
                self.fail_attempt(attempt, reason, backoff, at, sink).await;
            }
            JobCommand::Cancel { actor, at } => {
                self.ensure_visible_to(actor)?;
                if self.status.is_finished() {
                    return Err(JobError::NotCancellable { status: self.status });
                }
                let event = JobEvent::JobCancelled {
                    previous_status: self.status,
                    run: self.run,
                    cancelled_at: at,
                };
                sink.write(event, self).await;
            }
            JobCommand::Retry { actor, run, at } => {
                self.ensure_visible_to(actor)?;
                if !matches!(self.status, JobStatus::Failed | JobStatus::Cancelled) {
                    return Err(JobError::NotRetryable { status: self.status });
                }
                if run != self.run + 1 {
                    return Err(JobError::StaleRun { run, current: self.run });
                }
                let retried = JobEvent::JobRetried {
                    automatic: false,
                    retries_left: self.max_retries,
                    retried_at: at,
                };
                sink.write(retried, self).await;
                self.queue(None, at, sink).await;
            }
            JobCommand::Delete { actor, at } => {
                self.ensure_visible_to(actor)?;
                if !self.status.is_finished() {
                    return Err(JobError::StillActive { status: self.status });
                }
                sink.write(JobEvent::JobDeleted { deleted_at: at }, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: JobEvent) {
        match event {
            JobEvent::JobRequested {
                job_id,
                owner_id,
                project_id,
                job_type,
                source,
                prompt,
                parameters,
                max_retries,
                cost_credits,
                requested_at,
            } => {
                self.id = Some(job_id);
                self.owner_id = Some(owner_id);
                self.project_id = Some(project_id);
                self.job_type = Some(job_type);
                self.source = source;
                self.prompt = prompt;
                self.parameters = parameters;
                self.max_retries = max_retries;
                self.retries_left = max_retries;
                self.cost_credits = cost_credits;
                self.created_at = Some(requested_at);
                self.updated_at = Some(requested_at);
            }
            JobEvent::JobQueued {
                ticket,
                not_before,
                queued_at,
            } => {
                self.status = JobStatus::Queued;
                self.progress = 0;
                self.ticket = ticket;
                self.not_before = not_before;
                self.claim = None;
                self.updated_at = Some(queued_at);
            }
            JobEvent::JobStarted {
                attempt,
                claim,
                started_at,
                ..
            } => {
                self.status = JobStatus::Running;
                self.attempts = attempt;
                self.claim = Some(claim);
                self.progress = 0;
                self.stage = None;
                self.error = None;
                self.started_at = Some(started_at);
                self.updated_at = Some(started_at);
            }
            JobEvent::JobProgressed { percent, stage, at, .. } => {
                self.progress = percent;
                self.stage = Some(stage);
                self.updated_at = Some(at);
            }
            JobEvent::JobSucceeded {
                result,
                artifacts,
                finished_at,
                ..
            } => {
                self.status = JobStatus::Succeeded;
                self.progress = 100;
                self.result = Some(result);
                self.artifacts = artifacts;
                self.claim = None;
                self.finished_at = Some(finished_at);
                self.updated_at = Some(finished_at);
            }
            JobEvent::JobAttemptFailed {
                attempt,
                reason,
                failed_at,
            } => {
                self.last_failed_attempt = attempt;
                self.error = Some(reason);
                self.claim = None;
                self.updated_at = Some(failed_at);
            }
            JobEvent::JobRetried {
                automatic,
                retries_left,
                retried_at,
            } => {
                if !automatic {
                    self.run += 1;
                }
                self.retries_left = retries_left;
                self.finished_at = None;
                self.updated_at = Some(retried_at);
            }
            JobEvent::JobFailed { reason, failed_at, .. } => {
                self.status = JobStatus::Failed;
                self.error = Some(reason);
                self.claim = None;
                self.finished_at = Some(failed_at);
                self.updated_at = Some(failed_at);
            }
            JobEvent::JobCancelled { cancelled_at, .. } => {
                self.status = JobStatus::Cancelled;
                self.claim = None;
                self.finished_at = Some(cancelled_at);
                self.updated_at = Some(cancelled_at);
            }
            JobEvent::JobDeleted { deleted_at } => {
                self.deleted = true;
                self.updated_at = Some(deleted_at);
            }
        }
    }
}

impl Job {
    fn ensure_visible_to(&self, actor: UserId) -> Result<(), JobError> {
        if self.is_visible_to(actor) {
            Ok(())
        } else {
            Err(JobError::NotFound)
        }
    }

    fn ensure_running_attempt(&self, attempt: u32) -> Result<(), JobError> {
        if self.id.is_none() || self.deleted {
            return Err(JobError::NotFound);
        }
        if self.status != JobStatus::Running {
            return Err(JobError::NotRunnable { status: self.status });
        }
        if attempt != self.attempts {
            return Err(JobError::AttemptSuperseded { attempt });
        }
        Ok(())
    }

    async fn queue(&mut self, not_before: Option<DateTime<Utc>>, at: DateTime<Utc>, sink: &EventSink<Self>) {
        let queued = JobEvent::JobQueued {
            ticket: self.ticket + 1,
            not_before,
            queued_at: at,
        };
        sink.write(queued, self).await;
    }

    async fn start(
        &mut self,
        ticket: u32,
        claim: String,
        worker: String,
        at: DateTime<Utc>,
        sink: &EventSink<Self>,
    ) -> Result<(), JobError> {
        if self.id.is_none() || self.deleted {
            return Err(JobError::NotFound);
        }
        if ticket != self.ticket {
            return Err(JobError::StaleTicket);
        }
        match self.status {
            JobStatus::Queued => {}
            // The same worker asking again for the same delivery: it already has the attempt.
            JobStatus::Running if self.claim.as_deref() == Some(claim.as_str()) => return Ok(()),
            // Another delivery of the same queue entry while an attempt runs: JetStream gave
            // up on the worker running it (no progress acks within the ack wait), so that
            // worker is lost. Its attempt counts as failed; a retry, if any is left, starts now.
            JobStatus::Running => {
                let lost = JobEvent::JobAttemptFailed {
                    attempt: self.attempts,
                    reason: "the worker running this attempt stopped responding".to_owned(),
                    failed_at: at,
                };
                sink.write(lost, self).await;
                if self.retries_left == 0 {
                    let failed = JobEvent::JobFailed {
                        attempt: self.attempts,
                        run: self.run,
                        reason: "the workers running it stopped responding and no retries are left".to_owned(),
                        failed_at: at,
                    };
                    sink.write(failed, self).await;
                    return Ok(());
                }
                let retried = JobEvent::JobRetried {
                    automatic: true,
                    retries_left: self.retries_left - 1,
                    retried_at: at,
                };
                sink.write(retried, self).await;
            }
            status => return Err(JobError::NotRunnable { status }),
        }
        let started = JobEvent::JobStarted {
            attempt: self.attempts + 1,
            ticket,
            claim,
            worker,
            started_at: at,
        };
        sink.write(started, self).await;
        Ok(())
    }

    async fn fail_attempt(
        &mut self,
        attempt: u32,
        reason: String,
        backoff: Backoff,
        at: DateTime<Utc>,
        sink: &EventSink<Self>,
    ) {
        let failed_attempt = JobEvent::JobAttemptFailed {
            attempt,
            reason: reason.clone(),
            failed_at: at,
        };
        sink.write(failed_attempt, self).await;
        if self.retries_left == 0 {
            let failed = JobEvent::JobFailed {
                attempt,
                reason,
                run: self.run,
                failed_at: at,
            };
            sink.write(failed, self).await;
            return;
        }
        let retries_made = self.max_retries - self.retries_left;
        let retried = JobEvent::JobRetried {
            automatic: true,
            retries_left: self.retries_left - 1,
            retried_at: at,
        };
        sink.write(retried, self).await;
        self.queue(Some(at + backoff.delay(retries_made)), at, sink).await;
    }
}

#[cfg(test)]
mod tests;
