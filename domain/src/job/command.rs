//! The commands of the `Job` aggregate.

use super::{Backoff, JobSource, JobType};
use crate::ids::{JobId, ProjectId, UserId};
use crate::media::Artifact;
use crate::owner::Owner;
use chrono::{DateTime, Utc};

/// Commands for [`Job`](super::Job). Who may cancel, retry or delete a job is the authorization
/// policy's to decide, before the command.
#[derive(Debug)]
pub enum JobCommand {
    /// Request a job; it is queued at once.
    RequestJob {
        /// The new job's id (also the aggregate id).
        job_id: JobId,
        /// Whose it is: its project's owner.
        owner: Owner,
        /// The member who asks (the owner, for a personal project).
        requested_by: UserId,
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
        /// When.
        at: DateTime<Utc>,
    },
    /// The owner runs a failed or cancelled job again.
    Retry {
        /// The run it starts, whose credits the caller reserved: the job's next. A retry made
        /// from an older view of the job (another retry got there first) is refused, so no run
        /// starts without its own reservation.
        run: u32,
        /// When.
        at: DateTime<Utc>,
    },
    /// The owner deletes a finished job.
    Delete {
        /// When.
        at: DateTime<Utc>,
    },
}
