//! How the `Job` aggregate decides (commands into events) and evolves (events into state).

use super::{Backoff, Job, JobCommand, JobError, JobEvent, JobStatus, PROGRESS_STEP};
use crate::media::Artifact;
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;

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
                owner,
                requested_by,
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
                    owner,
                    requested_by: Some(requested_by),
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
            JobCommand::Cancel { at } => {
                self.ensure_live()?;
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
            JobCommand::Retry { run, at } => {
                self.ensure_live()?;
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
            JobCommand::Delete { at } => {
                self.ensure_live()?;
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
                owner,
                requested_by,
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
                self.owner = Some(owner);
                // Before organisations every job was requested by its owner.
                self.requested_by = requested_by.or(owner.user());
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
                self.queued_at = Some(queued_at);
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
    fn ensure_live(&self) -> Result<(), JobError> {
        if self.id.is_some() && !self.deleted {
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
