//! Given / when / then for every `Job` command, its success and each error.

use super::*;
use crate::ids::{AssetId, JobId, ProjectId, UserId};
use crate::media::Artifact;
use crate::owner::Owner;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::test::TestFramework;

struct Given {
    job_id: JobId,
    owner_id: UserId,
    project_id: ProjectId,
    at: DateTime<Utc>,
}

const BACKOFF: Backoff = Backoff {
    base: chrono::Duration::seconds(5),
    max: chrono::Duration::seconds(60),
};

impl Given {
    fn new() -> Self {
        Self {
            job_id: JobId::new(),
            owner_id: UserId::new(),
            project_id: ProjectId::new(),
            at: Utc::now(),
        }
    }

    fn source() -> JobSource {
        JobSource {
            asset_id: AssetId(uuid::Uuid::nil()),
            storage_key: "assets/video".to_owned(),
            duration_ms: Some(10_000),
        }
    }

    fn requested(&self, max_retries: u32) -> JobEvent {
        JobEvent::JobRequested {
            job_id: self.job_id,
            owner: Owner::User(self.owner_id),
            requested_by: Some(self.owner_id),
            project_id: self.project_id,
            job_type: JobType::Analyze,
            source: Some(Self::source()),
            prompt: None,
            parameters: serde_json::json!({}),
            max_retries,
            cost_credits: 3,
            requested_at: self.at,
        }
    }

    fn queued(&self, ticket: u32, not_before: Option<DateTime<Utc>>) -> JobEvent {
        JobEvent::JobQueued {
            ticket,
            not_before,
            queued_at: self.at,
        }
    }

    fn started(&self, attempt: u32, ticket: u32, claim: &str) -> JobEvent {
        JobEvent::JobStarted {
            attempt,
            ticket,
            claim: claim.to_owned(),
            worker: "w1".to_owned(),
            started_at: self.at,
        }
    }

    fn start(&self, ticket: u32, claim: &str) -> JobCommand {
        JobCommand::StartAttempt {
            ticket,
            claim: claim.to_owned(),
            worker: "w1".to_owned(),
            at: self.at,
        }
    }

    fn fail(&self, attempt: u32) -> JobCommand {
        JobCommand::FailAttempt {
            attempt,
            reason: "ffmpeg: invalid data".to_owned(),
            backoff: BACKOFF,
            at: self.at,
        }
    }

    fn attempt_failed(&self, attempt: u32, reason: &str) -> JobEvent {
        JobEvent::JobAttemptFailed {
            attempt,
            reason: reason.to_owned(),
            failed_at: self.at,
        }
    }

    fn job_failed(&self, attempt: u32, reason: &str, run: u32) -> JobEvent {
        JobEvent::JobFailed {
            attempt,
            reason: reason.to_owned(),
            run,
            failed_at: self.at,
        }
    }

    fn running(&self, max_retries: u32) -> Vec<JobEvent> {
        vec![
            self.requested(max_retries),
            self.queued(1, None),
            self.started(1, 1, "c1"),
        ]
    }

    fn succeeded(&self) -> JobEvent {
        JobEvent::JobSucceeded {
            attempt: 1,
            result: serde_json::json!({"ok": true}),
            artifacts: vec![],
            run: 0,
            finished_at: self.at,
        }
    }

    fn cancelled(&self, previous_status: JobStatus) -> JobEvent {
        JobEvent::JobCancelled {
            previous_status,
            run: 0,
            cancelled_at: self.at,
        }
    }
}

fn job() -> TestFramework<Job> {
    TestFramework::<Job>::with(())
}

#[test]
fn requesting_a_job_records_it_and_queues_it() {
    let g = Given::new();
    job()
        .given_no_previous_events()
        .when(JobCommand::RequestJob {
            job_id: g.job_id,
            owner: Owner::User(g.owner_id),
            requested_by: g.owner_id,
            project_id: g.project_id,
            job_type: JobType::Analyze,
            source: Some(Given::source()),
            prompt: None,
            parameters: serde_json::json!({}),
            max_retries: 2,
            cost_credits: 3,
            at: g.at,
        })
        .then_expect_events(vec![g.requested(2), g.queued(1, None)]);
}

#[test]
fn requesting_an_existing_job_is_refused() {
    let g = Given::new();
    job()
        .given(vec![g.requested(2), g.queued(1, None)])
        .when(JobCommand::RequestJob {
            job_id: g.job_id,
            owner: Owner::User(g.owner_id),
            requested_by: g.owner_id,
            project_id: g.project_id,
            job_type: JobType::Clip,
            source: None,
            prompt: None,
            parameters: serde_json::json!({}),
            max_retries: 0,
            cost_credits: 2,
            at: g.at,
        })
        .then_expect_error(JobError::AlreadyExists);
}

#[test]
fn a_worker_starts_the_first_attempt_of_a_queued_job() {
    let g = Given::new();
    job()
        .given(vec![g.requested(2), g.queued(1, None)])
        .when(g.start(1, "c1"))
        .then_expect_events(vec![g.started(1, 1, "c1")]);
}

#[test]
fn the_same_claim_asking_again_gets_the_same_attempt_without_events() {
    let g = Given::new();
    job()
        .given(g.running(2))
        .when(g.start(1, "c1"))
        .then_expect_events(vec![]);
}

#[test]
fn a_start_from_an_old_queue_entry_is_stale() {
    let g = Given::new();
    let mut given = g.running(2);
    given.extend([
        g.attempt_failed(1, "boom"),
        JobEvent::JobRetried {
            automatic: true,
            retries_left: 1,
            retried_at: g.at,
        },
        g.queued(2, None),
    ]);
    job()
        .given(given)
        .when(g.start(1, "c2"))
        .then_expect_error(JobError::StaleTicket);
}

#[test]
fn a_start_for_a_cancelled_job_is_refused() {
    let g = Given::new();
    job()
        .given(vec![g.requested(2), g.queued(1, None), g.cancelled(JobStatus::Queued)])
        .when(g.start(1, "c1"))
        .then_expect_error(JobError::NotRunnable {
            status: JobStatus::Cancelled,
        });
}

#[test]
fn another_delivery_while_running_counts_the_lost_attempt_and_starts_the_next() {
    let g = Given::new();
    job()
        .given(g.running(2))
        .when(g.start(1, "c2"))
        .then_expect_events(vec![
            g.attempt_failed(1, "the worker running this attempt stopped responding"),
            JobEvent::JobRetried {
                automatic: true,
                retries_left: 1,
                retried_at: g.at,
            },
            g.started(2, 1, "c2"),
        ]);
}

#[test]
fn a_lost_worker_with_no_retries_left_fails_the_job() {
    let g = Given::new();
    job()
        .given(g.running(0))
        .when(g.start(1, "c2"))
        .then_expect_events(vec![
            g.attempt_failed(1, "the worker running this attempt stopped responding"),
            g.job_failed(
                1,
                "the workers running it stopped responding and no retries are left",
                0,
            ),
        ]);
}

#[test]
fn progress_is_recorded_only_when_it_crosses_a_step() {
    let g = Given::new();
    let report = |percent| JobCommand::ReportProgress {
        attempt: 1,
        percent,
        stage: "analysing".to_owned(),
        at: g.at,
    };
    let progressed = JobEvent::JobProgressed {
        attempt: 1,
        percent: 30,
        stage: "analysing".to_owned(),
        at: g.at,
    };
    job()
        .given(g.running(2))
        .when(report(30))
        .then_expect_events(vec![progressed.clone()]);
    let mut given = g.running(2);
    given.push(progressed);
    job().given(given).when(report(45)).then_expect_events(vec![]);
}

#[test]
fn progress_from_a_superseded_attempt_is_refused() {
    let g = Given::new();
    job()
        .given(g.running(2))
        .when(JobCommand::ReportProgress {
            attempt: 2,
            percent: 50,
            stage: "analysing".to_owned(),
            at: g.at,
        })
        .then_expect_error(JobError::AttemptSuperseded { attempt: 2 });
}

#[test]
fn progress_for_a_cancelled_job_tells_the_worker_to_stop() {
    let g = Given::new();
    let mut given = g.running(2);
    given.push(g.cancelled(JobStatus::Running));
    job()
        .given(given)
        .when(JobCommand::ReportProgress {
            attempt: 1,
            percent: 50,
            stage: "analysing".to_owned(),
            at: g.at,
        })
        .then_expect_error(JobError::NotRunnable {
            status: JobStatus::Cancelled,
        });
}

#[test]
fn completing_the_running_attempt_records_the_result() {
    let g = Given::new();
    job()
        .given(g.running(2))
        .when(JobCommand::CompleteAttempt {
            attempt: 1,
            result: serde_json::json!({"ok": true}),
            artifacts: vec![],
            at: g.at,
        })
        .then_expect_events(vec![g.succeeded()]);
}

#[test]
fn completing_again_records_nothing() {
    let g = Given::new();
    let mut given = g.running(2);
    given.push(g.succeeded());
    job()
        .given(given)
        .when(JobCommand::CompleteAttempt {
            attempt: 1,
            result: serde_json::json!({"ok": true}),
            artifacts: vec![],
            at: g.at,
        })
        .then_expect_events(vec![]);
}

#[test]
fn a_failed_attempt_with_retries_left_is_queued_again_after_the_backoff() {
    let g = Given::new();
    job().given(g.running(2)).when(g.fail(1)).then_expect_events(vec![
        g.attempt_failed(1, "ffmpeg: invalid data"),
        JobEvent::JobRetried {
            automatic: true,
            retries_left: 1,
            retried_at: g.at,
        },
        g.queued(2, Some(g.at + chrono::Duration::seconds(5))),
    ]);
}

#[test]
fn the_backoff_doubles_per_retry_made() {
    let g = Given::new();
    let mut given = g.running(2);
    given.extend([
        g.attempt_failed(1, "x"),
        JobEvent::JobRetried {
            automatic: true,
            retries_left: 1,
            retried_at: g.at,
        },
        g.queued(2, None),
        g.started(2, 2, "c2"),
    ]);
    job().given(given).when(g.fail(2)).then_expect_events(vec![
        g.attempt_failed(2, "ffmpeg: invalid data"),
        JobEvent::JobRetried {
            automatic: true,
            retries_left: 0,
            retried_at: g.at,
        },
        g.queued(3, Some(g.at + chrono::Duration::seconds(10))),
    ]);
}

#[test]
fn a_failed_attempt_without_retries_left_fails_the_job() {
    let g = Given::new();
    job().given(g.running(0)).when(g.fail(1)).then_expect_events(vec![
        g.attempt_failed(1, "ffmpeg: invalid data"),
        g.job_failed(1, "ffmpeg: invalid data", 0),
    ]);
}

#[test]
fn the_same_failure_reported_twice_is_recorded_once() {
    let g = Given::new();
    let mut given = g.running(0);
    given.extend([
        g.attempt_failed(1, "ffmpeg: invalid data"),
        g.job_failed(1, "ffmpeg: invalid data", 0),
    ]);
    job().given(given).when(g.fail(1)).then_expect_events(vec![]);
}

#[test]
fn cancelling_a_running_job_records_what_it_was_doing() {
    let g = Given::new();
    job()
        .given(g.running(2))
        .when(JobCommand::Cancel { at: g.at })
        .then_expect_events(vec![g.cancelled(JobStatus::Running)]);
}

#[test]
fn cancelling_a_finished_job_is_a_conflict() {
    let g = Given::new();
    let mut given = g.running(2);
    given.push(g.succeeded());
    job()
        .given(given)
        .when(JobCommand::Cancel { at: g.at })
        .then_expect_error(JobError::NotCancellable {
            status: JobStatus::Succeeded,
        });
}

#[test]
fn retrying_a_cancelled_job_queues_it_with_a_fresh_budget() {
    let g = Given::new();
    let mut given = g.running(2);
    given.push(g.cancelled(JobStatus::Running));
    job()
        .given(given)
        .when(JobCommand::Retry { run: 1, at: g.at })
        .then_expect_events(vec![
            JobEvent::JobRetried {
                automatic: false,
                retries_left: 2,
                retried_at: g.at,
            },
            g.queued(2, None),
        ]);
}

#[test]
fn retrying_a_running_job_is_a_conflict() {
    let g = Given::new();
    job()
        .given(g.running(2))
        .when(JobCommand::Retry { run: 1, at: g.at })
        .then_expect_error(JobError::NotRetryable {
            status: JobStatus::Running,
        });
}

#[test]
fn deleting_a_finished_job_records_it() {
    let g = Given::new();
    let mut given = g.running(2);
    given.push(g.succeeded());
    job()
        .given(given)
        .when(JobCommand::Delete { at: g.at })
        .then_expect_events(vec![JobEvent::JobDeleted { deleted_at: g.at }]);
}

#[test]
fn deleting_a_queued_job_is_a_conflict() {
    let g = Given::new();
    job()
        .given(vec![g.requested(2), g.queued(1, None)])
        .when(JobCommand::Delete { at: g.at })
        .then_expect_error(JobError::StillActive {
            status: JobStatus::Queued,
        });
}

#[test]
fn an_outcome_with_an_artifact_name_that_is_a_path_is_refused() {
    let g = Given::new();
    job()
        .given(g.running(2))
        .when(JobCommand::CompleteAttempt {
            attempt: 1,
            result: serde_json::json!({}),
            artifacts: vec![Artifact {
                name: "../../etc/passwd".to_owned(),
                content_type: "text/plain".to_owned(),
                size_bytes: 1,
                storage_key: "jobs/x".to_owned(),
            }],
            at: g.at,
        })
        .then_expect_error(JobError::InvalidArtifact {
            name: "../../etc/passwd".to_owned(),
        });
}

#[test]
fn a_manual_retry_starts_a_new_run_that_the_end_names() {
    let g = Given::new();
    let mut given = g.running(0);
    given.extend([
        g.cancelled(JobStatus::Running),
        JobEvent::JobRetried {
            automatic: false,
            retries_left: 0,
            retried_at: g.at,
        },
        g.queued(2, None),
        g.started(2, 2, "c2"),
    ]);
    job().given(given).when(g.fail(2)).then_expect_events(vec![
        g.attempt_failed(2, "ffmpeg: invalid data"),
        g.job_failed(2, "ffmpeg: invalid data", 1),
    ]);
}

#[test]
fn automatic_retries_stay_in_the_same_run() {
    let g = Given::new();
    let mut given = g.running(1);
    given.extend([
        g.attempt_failed(1, "x"),
        JobEvent::JobRetried {
            automatic: true,
            retries_left: 0,
            retried_at: g.at,
        },
        g.queued(2, None),
        g.started(2, 2, "c2"),
    ]);
    job()
        .given(given)
        .when(JobCommand::Cancel { at: g.at })
        .then_expect_events(vec![JobEvent::JobCancelled {
            previous_status: JobStatus::Running,
            run: 0,
            cancelled_at: g.at,
        }]);
}

#[test]
fn the_charge_is_the_price_unless_the_job_failed_or_was_cancelled() {
    let g = Given::new();
    let mut job = Job::default();
    for event in g.running(0) {
        job.apply(event);
    }
    assert_eq!((job.cost_credits(), job.charge(), job.run()), (3, 3, 0));
    job.apply(g.cancelled(JobStatus::Running));
    assert_eq!(job.charge(), 0);
    job.apply(JobEvent::JobRetried {
        automatic: false,
        retries_left: 0,
        retried_at: g.at,
    });
    job.apply(g.queued(2, None));
    assert_eq!((job.charge(), job.run()), (3, 1));
}

#[test]
fn a_retry_for_a_run_that_is_not_the_next_is_refused() {
    let g = Given::new();
    let mut given = g.running(2);
    given.extend([
        g.cancelled(JobStatus::Running),
        JobEvent::JobRetried {
            automatic: false,
            retries_left: 2,
            retried_at: g.at,
        },
        g.queued(2, None),
        JobEvent::JobCancelled {
            previous_status: JobStatus::Queued,
            run: 1,
            cancelled_at: g.at,
        },
    ]);
    job()
        .given(given)
        .when(JobCommand::Retry { run: 1, at: g.at })
        .then_expect_error(JobError::StaleRun { run: 1, current: 1 });
}
