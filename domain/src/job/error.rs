//! The rules a `Job` command can break.

use super::JobStatus;

/// Rules a [`JobCommand`](super::JobCommand) can break.
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
