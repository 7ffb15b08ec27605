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

mod aggregate;
mod command;
mod error;
mod event;
mod spec;

pub use command::JobCommand;
pub use error::JobError;
pub use event::JobEvent;
pub use spec::{ClipParameters, read_analysis};

use crate::ids::{AssetId, JobId, ProjectId, UserId};
use crate::media::Artifact;
use crate::owner::Owner;
use chrono::{DateTime, Utc};
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
    owner: Option<Owner>,
    requested_by: Option<UserId>,
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
    queued_at: Option<DateTime<Utc>>,
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
    pub fn owner(&self) -> Option<Owner> {
        self.owner
    }
    /// The member who requested it.
    pub fn requested_by(&self) -> Option<UserId> {
        self.requested_by
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
    /// When it was last queued, or became runnable if that was later (`not_before`): where
    /// its wait for a worker began.
    pub fn queued_at(&self) -> Option<DateTime<Utc>> {
        self.queued_at.max(self.not_before)
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
}

#[cfg(test)]
mod tests;
