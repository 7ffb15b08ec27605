//! The events of the `Job` aggregate: a published contract (names and payloads never change).

use super::{JobSource, JobStatus, JobType};
use crate::ids::{JobId, ProjectId, UserId};
use crate::media::Artifact;
use crate::owner::Owner;
use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

/// Events of [`Job`](super::Job).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobEvent {
    /// A job was requested.
    JobRequested {
        /// Its id.
        job_id: JobId,
        /// Whose: `owner_id`, and `owner_kind: "organization"` for an organisation's.
        #[serde(flatten)]
        owner: Owner,
        /// The member who asked (absent before organisations: the owner did).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        requested_by: Option<UserId>,
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
        /// The run that ended (see [`Job::run`](super::Job::run)): its reservation is settled.
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
