//! What the worker and the service say to each other, and on which subjects.

use keyframe_domain::job::{JobSource, JobType};
use keyframe_domain::media::Artifact;
use serde::{Deserialize, Serialize};

/// The durable consumer all workers share, on the events stream (the name `nats.conf` grants
/// the worker user).
pub const WORKER_CONSUMER: &str = "worker";

/// The request kinds, the last token of a worker subject.
pub mod kind {
    /// [`super::StartRequest`].
    pub const STARTED: &str = "started";
    /// [`super::ProgressRequest`].
    pub const PROGRESS: &str = "progress";
    /// [`super::SucceededRequest`].
    pub const SUCCEEDED: &str = "succeeded";
    /// [`super::FailedRequest`].
    pub const FAILED: &str = "failed";
}

/// Subjects under the deployment's prefix.
#[derive(Debug, Clone)]
pub struct WorkerSubjects {
    prefix: String,
}

impl WorkerSubjects {
    /// Subjects under `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self { prefix: prefix.into() }
    }

    /// `<prefix>.worker.jobs.<job_id>.<kind>`.
    pub fn request(&self, job_id: &str, kind: &str) -> String {
        format!("{}.worker.jobs.{job_id}.{kind}", self.prefix)
    }

    /// Every worker request: what the service listens to.
    pub fn all_requests(&self) -> String {
        format!("{}.worker.jobs.>", self.prefix)
    }

    /// The one event type the workers' consumer delivers.
    pub fn queued_jobs(&self) -> String {
        format!("{}.events.Job.*.JobQueued", self.prefix)
    }

    /// The queue group the service's listeners share, so each request is answered once.
    pub fn service_queue_group(&self) -> String {
        format!("{}-job-coordinator", self.prefix)
    }
}

/// A worker asks to start the job from the queue entry it took.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartRequest {
    /// The queue entry (`JobQueued.ticket`).
    pub ticket: u32,
    /// One per delivery: the same claim asking again gets the same attempt.
    pub claim: String,
    /// The worker's name, for the record.
    pub worker: String,
}

/// Everything a worker needs to run an attempt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkOrder {
    /// The attempt's number: progress and outcome name it.
    pub attempt: u32,
    /// What to do.
    pub job_type: JobType,
    /// The video.
    pub source: JobSource,
    /// Type-specific parameters.
    pub parameters: serde_json::Value,
}

/// The answer to a [`StartRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum StartReply {
    /// Run it.
    Run(WorkOrder),
    /// Do not run it (cancelled, finished, or the entry is stale): acknowledge and drop it.
    Skip {
        /// Why, for the log.
        reason: String,
    },
    /// The service cannot decide now: leave the entry for later.
    Unavailable {
        /// Why.
        reason: String,
    },
}

/// The running attempt says how far it is; also its heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProgressRequest {
    /// Which attempt.
    pub attempt: u32,
    /// Percent done.
    pub percent: u8,
    /// What it is doing.
    pub stage: String,
}

/// The answer to a [`ProgressRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ProgressReply {
    /// Go on.
    Continue,
    /// Stop now (cancelled, or the attempt was superseded).
    Stop {
        /// Why.
        reason: String,
    },
    /// The service cannot tell now: go on.
    Unavailable {
        /// Why.
        reason: String,
    },
}

/// The attempt finished.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SucceededRequest {
    /// Which attempt.
    pub attempt: u32,
    /// The job's result.
    pub result: serde_json::Value,
    /// The files it stored.
    pub artifacts: Vec<Artifact>,
}

/// The attempt failed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedRequest {
    /// Which attempt.
    pub attempt: u32,
    /// Why, in words the job's owner can read.
    pub reason: String,
}

/// The answer to a [`SucceededRequest`] or [`FailedRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum OutcomeReply {
    /// Recorded (or recorded before): acknowledge the queue entry.
    Recorded,
    /// Refused for good (the attempt was superseded, the job cancelled): acknowledge and drop
    /// what it produced.
    Refused {
        /// Why.
        reason: String,
    },
    /// Not recorded now: ask again.
    Unavailable {
        /// Why.
        reason: String,
    },
}
