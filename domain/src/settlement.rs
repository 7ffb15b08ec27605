//! What the end of a job's run asks of its owner's credit ledger: the policy of the settlement
//! process manager, without its I/O. A run that succeeded is charged its price; a run that
//! failed or was cancelled gets its reservation back. Every other job event asks nothing.

use crate::ids::JobId;
use crate::job::{Job, JobEvent};
use crate::ledger::LedgerCommand;
use crate::owner::Owner;
use chrono::{DateTime, Utc};

/// The ledger command `event` of job `job_id` calls for, and whose ledger it goes to; `None`
/// when the event ends no run, or the job's request is unknown.
pub fn ledger_command_for(
    job_id: JobId,
    event: &JobEvent,
    job: &Job,
    at: DateTime<Utc>,
) -> Option<(Owner, LedgerCommand)> {
    let owner = job.owner()?;
    let command = match event {
        JobEvent::JobSucceeded { run, .. } => LedgerCommand::Settle {
            job_id,
            run: *run,
            cost: job.cost_credits(),
            at,
        },
        JobEvent::JobFailed { run, reason, .. } => LedgerCommand::Release {
            job_id,
            run: *run,
            reason: format!("the job failed: {reason}"),
            at,
        },
        JobEvent::JobCancelled { run, .. } => LedgerCommand::Release {
            job_id,
            run: *run,
            reason: "the job was cancelled".to_owned(),
            at,
        },
        _ => return None,
    };
    Some((owner, command))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ProjectId, UserId};
    use crate::job::{JobStatus, JobType};
    use cqrs_es::Aggregate;

    fn requested_job(owner_id: UserId, job_id: JobId) -> Job {
        let mut job = Job::default();
        job.apply(JobEvent::JobRequested {
            job_id,
            owner: Owner::User(owner_id),
            requested_by: None,
            project_id: ProjectId::new(),
            job_type: JobType::Analyze,
            source: None,
            prompt: None,
            parameters: serde_json::json!({}),
            max_retries: 0,
            cost_credits: 7,
            requested_at: Utc::now(),
        });
        job
    }

    #[test]
    fn success_settles_the_run_at_the_jobs_price_in_the_owners_ledger() {
        let (owner_id, job_id, at) = (UserId::new(), JobId::new(), Utc::now());
        let job = requested_job(owner_id, job_id);
        let succeeded = JobEvent::JobSucceeded {
            attempt: 1,
            result: serde_json::json!({}),
            artifacts: vec![],
            run: 2,
            finished_at: at,
        };
        let (owner, command) = ledger_command_for(job_id, &succeeded, &job, at).expect("a command");
        assert_eq!(owner, Owner::User(owner_id));
        assert!(
            matches!(command, LedgerCommand::Settle { run: 2, cost: 7, .. }),
            "{command:?}"
        );
    }

    #[test]
    fn failure_and_cancellation_release_the_run() {
        let (owner_id, job_id, at) = (UserId::new(), JobId::new(), Utc::now());
        let job = requested_job(owner_id, job_id);
        let failed = JobEvent::JobFailed {
            attempt: 3,
            reason: "ffmpeg: invalid data".to_owned(),
            run: 1,
            failed_at: at,
        };
        let cancelled = JobEvent::JobCancelled {
            previous_status: JobStatus::Running,
            run: 0,
            cancelled_at: at,
        };
        let (_, release) = ledger_command_for(job_id, &failed, &job, at).expect("a command");
        assert!(
            matches!(&release, LedgerCommand::Release { run: 1, reason, .. } if reason == "the job failed: ffmpeg: invalid data"),
            "{release:?}"
        );
        let (_, release) = ledger_command_for(job_id, &cancelled, &job, at).expect("a command");
        assert!(matches!(release, LedgerCommand::Release { run: 0, .. }), "{release:?}");
    }

    #[test]
    fn events_that_end_no_run_ask_nothing() {
        let (owner_id, job_id, at) = (UserId::new(), JobId::new(), Utc::now());
        let job = requested_job(owner_id, job_id);
        let queued = JobEvent::JobQueued {
            ticket: 1,
            not_before: None,
            queued_at: at,
        };
        let attempt_failed = JobEvent::JobAttemptFailed {
            attempt: 1,
            reason: "x".to_owned(),
            failed_at: at,
        };
        assert!(ledger_command_for(job_id, &queued, &job, at).is_none());
        assert!(ledger_command_for(job_id, &attempt_failed, &job, at).is_none());
        let unknown_job = Job::default();
        let cancelled = JobEvent::JobCancelled {
            previous_status: JobStatus::Queued,
            run: 0,
            cancelled_at: at,
        };
        assert!(ledger_command_for(job_id, &cancelled, &unknown_job, at).is_none());
    }
}
