//! Jobs: pricing and requesting analyses and clip cuts, retrying, cancelling and deleting
//! them.
//!
//! Billing: a job's price is reserved in its owner's `CreditLedger` (the user's, or the
//! organisation's that owns the project, naming the member who asks and their monthly limit)
//! before the job is recorded (too few credits: `InsufficientCredits` and no job; past the
//! member's limit: `MemberCreditLimit`), and so is each manual retry's run. The settlement process charges or releases it when the run ends.

use crate::App;
use crate::error::AppError;
use crate::policy::{Action, Actor, Resource, Standing, require};
use anyhow::Context as _;
use keyframe_domain::ids::{AssetId, JobId, ProjectId};
use keyframe_domain::job::{ClipParameters, Job, JobCommand, JobError, JobSource, JobStatus, JobType, read_analysis};
use keyframe_domain::media::Span;
use keyframe_domain::owner::Owner;
use keyframe_eventlog::commands::CommandError;
use keyframe_eventlog::metadata::CommandMetadata;

/// Automatic retries a job may ask for.
pub const MAX_JOB_RETRIES: u32 = 5;
/// Longest prompt, in characters.
pub const MAX_PROMPT_CHARS: usize = 2000;
/// Clips a `clip` job cuts when it does not say.
const DEFAULT_CLIPS: usize = 3;
/// Most clips a `clip` job cuts.
const MAX_CLIPS: u64 = 5;

/// A job as a client asks for it, before any check.
#[derive(Debug, Clone)]
pub struct JobRequest {
    /// What it does.
    pub job_type: JobType,
    /// The project it belongs to.
    pub project_id: ProjectId,
    /// The video (required for an analysis).
    pub asset_id: Option<AssetId>,
    /// Free text.
    pub prompt: Option<String>,
    /// Type-specific parameters (an object); for a clip job, `source_job_id` and `count`.
    pub parameters: Option<serde_json::Value>,
    /// Automatic retries; `None`: the configured default.
    pub max_retries: Option<u32>,
}

/// A request once checked: everything `RequestJob` needs, and its price.
#[derive(Debug, Clone)]
pub struct PricedJob {
    /// Whose it would be: its project's owner.
    pub owner: Owner,
    project_id: ProjectId,
    job_type: JobType,
    source: JobSource,
    prompt: Option<String>,
    parameters: serde_json::Value,
    max_retries: u32,
    /// Its price in credits.
    pub cost: i64,
}

/// What a job would cost, and what its owner has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    /// The job's price in credits.
    pub cost: i64,
    /// The owner's available credits now.
    pub available: i64,
}

impl App {
    /// The job `job_id`, for `actor` to do `action` to (not found unless allowed).
    pub async fn job_for(&self, actor: &Actor, action: Action, job_id: JobId) -> Result<Job, AppError> {
        let job = self.buses.jobs.load(&job_id.to_string()).await?.unwrap_or_default();
        let standing = match job.owner() {
            Some(owner) => self.standing(actor, owner).await?,
            None => Standing::Stranger,
        };
        let resource = Resource::Job {
            standing,
            created_by_actor: job.requested_by() == Some(actor.user_id),
            gone: job.id().is_none() || job.is_deleted(),
        };
        require(actor, action, &resource)?;
        Ok(job)
    }

    /// Checks `request` for `actor` and prices it, without requesting anything.
    pub async fn price_job(&self, actor: &Actor, request: JobRequest) -> Result<PricedJob, AppError> {
        let max_retries = request.max_retries.unwrap_or(self.settings.default_max_retries);
        if max_retries > MAX_JOB_RETRIES {
            return Err(AppError::invalid(
                "max_retries",
                format!("must be between 0 and {MAX_JOB_RETRIES}"),
            ));
        }
        if request
            .prompt
            .as_ref()
            .is_some_and(|p| p.chars().count() > MAX_PROMPT_CHARS)
        {
            return Err(AppError::invalid(
                "prompt",
                format!("at most {MAX_PROMPT_CHARS} characters"),
            ));
        }
        let parameters = request.parameters.unwrap_or_else(|| serde_json::json!({}));
        if !parameters.is_object() {
            return Err(AppError::invalid("parameters", "must be an object"));
        }
        let project = self.project_for(actor, Action::AddTo, request.project_id).await?;
        let owner = project.owner().ok_or(AppError::NotFound("project"))?;
        let (source, parameters) = match request.job_type {
            JobType::Analyze => {
                let asset_id = request
                    .asset_id
                    .ok_or_else(|| AppError::invalid("asset_id", "an analysis needs a video"))?;
                (
                    self.asset_source(owner, request.project_id, asset_id).await?,
                    parameters,
                )
            }
            JobType::Clip => self.clip_source(actor, request.project_id, parameters).await?,
        };
        let cost = self
            .settings
            .pricing
            .price(request.job_type, source.duration_ms)
            .ok_or_else(|| {
                AppError::invalid(
                    "asset_id",
                    "the video's length is unknown, so its analysis cannot be priced",
                )
            })?;
        Ok(PricedJob {
            owner,
            project_id: request.project_id,
            job_type: request.job_type,
            source,
            prompt: request.prompt,
            parameters,
            max_retries,
            cost,
        })
    }

    /// What `request` would cost `actor`, and what its owner (they, or their organisation)
    /// has.
    pub async fn quote_job(&self, actor: &Actor, request: JobRequest) -> Result<Quote, AppError> {
        let priced = self.price_job(actor, request).await?;
        let available = self.ledger(priced.owner).await?.available();
        Ok(Quote {
            cost: priced.cost,
            available,
        })
    }

    async fn asset_source(
        &self,
        owner: Owner,
        project_id: ProjectId,
        asset_id: AssetId,
    ) -> Result<JobSource, AppError> {
        let library = self.library(owner).await?;
        let asset = library
            .as_ref()
            .and_then(|library| library.asset_in(project_id, asset_id))
            .ok_or(AppError::NotFound("asset"))?;
        Ok(JobSource {
            asset_id,
            storage_key: asset.storage_key.clone(),
            duration_ms: asset.facts.duration_ms,
        })
    }

    /// A clip job cuts the best highlights of a succeeded analysis of the same project: they
    /// are chosen now and written into its parameters, so the worker needs nothing else.
    async fn clip_source(
        &self,
        actor: &Actor,
        project_id: ProjectId,
        parameters: serde_json::Value,
    ) -> Result<(JobSource, serde_json::Value), AppError> {
        let source_job_id = parameters
            .get("source_job_id")
            .and_then(|v| v.as_str())
            .and_then(|v| v.parse::<uuid::Uuid>().ok())
            .ok_or_else(|| {
                AppError::invalid(
                    "parameters.source_job_id",
                    "name the succeeded analyze job to cut clips from",
                )
            })?;
        let count = match parameters.get("count") {
            None => DEFAULT_CLIPS,
            Some(count) => count
                .as_u64()
                .filter(|count| (1..=MAX_CLIPS).contains(count))
                .map(|count| count as usize)
                .ok_or_else(|| AppError::invalid("parameters.count", "must be between 1 and 5"))?,
        };
        let analysis = self.job_for(actor, Action::AddTo, JobId(source_job_id)).await?;
        if analysis.job_type() != Some(JobType::Analyze)
            || analysis.project_id() != Some(project_id)
            || analysis.status() != JobStatus::Succeeded
        {
            return Err(AppError::invalid(
                "parameters.source_job_id",
                "must be a succeeded analyze job of the same project",
            ));
        }
        let report = analysis
            .result()
            .map(read_analysis)
            .transpose()
            .context("reading the analysis")?
            .ok_or_else(|| AppError::invalid("parameters.source_job_id", "the analysis has no result"))?;
        let clips: Vec<Span> = report
            .highlights
            .iter()
            .take(count)
            .map(|h| Span {
                start_ms: h.start_ms,
                end_ms: h.end_ms,
            })
            .collect();
        if clips.is_empty() {
            return Err(AppError::invalid(
                "parameters.source_job_id",
                "the analysis found no highlights to cut",
            ));
        }
        let source = analysis
            .source()
            .cloned()
            .ok_or_else(|| AppError::invalid("parameters.source_job_id", "the analysis has no video"))?;
        let serde_json::Value::Object(mut other) = parameters else {
            return Err(AppError::invalid("parameters", "must be an object"));
        };
        let asked_count = other.remove("count").and_then(|count| count.as_u64());
        other.remove("source_job_id");
        other.remove("clips");
        let parameters = ClipParameters {
            source_job_id,
            count: asked_count,
            clips,
            other,
        };
        Ok((source, parameters.to_value()))
    }

    /// `actor` requests a job: checked and priced, its price reserved, then recorded; when it
    /// cannot be recorded, the reservation goes back. Answers the job and its position.
    pub async fn request_job(
        &self,
        actor: &Actor,
        request: JobRequest,
        metadata: &CommandMetadata,
    ) -> Result<(Job, i64), AppError> {
        let priced = self.price_job(actor, request).await?;
        let owner = priced.owner;
        let job_id = JobId::new();
        let now = keyframe_domain::clock::now();
        let member = self.member_charge(actor, owner).await?;
        self.reserve_for_job(owner, member, job_id, 0, priced.cost, metadata)
            .await?;
        let command = || JobCommand::RequestJob {
            job_id,
            owner,
            requested_by: actor.user_id,
            project_id: priced.project_id,
            job_type: priced.job_type,
            source: Some(priced.source.clone()),
            prompt: priced.prompt.clone(),
            parameters: priced.parameters.clone(),
            max_retries: priced.max_retries,
            cost_credits: priced.cost,
            at: now,
        };
        let position = match self
            .buses
            .jobs
            .execute_new(&job_id.to_string(), command, metadata)
            .await
        {
            Ok(position) => position,
            Err(error) => {
                // Refused, or outrun by other writers: certainly not recorded, so the credits go
                // back now. When the store failed, the job may have been recorded all the same
                // (the answer lost); the settlement's reservation sweep releases it later if the
                // job never appears.
                if matches!(error, CommandError::Rejected(_) | CommandError::Conflict { .. }) {
                    let reason = "the job could not be recorded";
                    self.release_for_job(owner, job_id, 0, reason, metadata).await;
                }
                return Err(error.into());
            }
        };
        let job = self.job_for(actor, Action::View, job_id).await?;
        Ok((job, position))
    }

    /// `actor` cancels a queued or running job; answers it after the change and the change's
    /// position.
    pub async fn cancel_job(
        &self,
        actor: &Actor,
        job_id: JobId,
        metadata: &CommandMetadata,
    ) -> Result<(Job, i64), AppError> {
        self.job_for(actor, Action::Change, job_id).await?;
        let command = || JobCommand::Cancel {
            at: keyframe_domain::clock::now(),
        };
        let position = self.buses.jobs.execute(&job_id.to_string(), command, metadata).await?;
        Ok((self.job_for(actor, Action::View, job_id).await?, position))
    }

    /// `actor` runs a failed or cancelled job again: a new run, which reserves the job's price
    /// again (the ended run's reservation is released first). Answers the job after the change
    /// and the change's position.
    pub async fn retry_job(
        &self,
        actor: &Actor,
        job_id: JobId,
        metadata: &CommandMetadata,
    ) -> Result<(Job, i64), AppError> {
        let job = self.job_for(actor, Action::Change, job_id).await?;
        if !matches!(job.status(), JobStatus::Failed | JobStatus::Cancelled) {
            return Err(JobError::NotRetryable { status: job.status() }.into());
        }
        let owner = job.owner().ok_or(AppError::NotFound("job"))?;
        let member = self.member_charge(actor, owner).await?;
        // The ended run's credits go back now rather than when the settlement process gets to
        // its end (that release is then a repeat): the next run may need them.
        let ended = job.run();
        let next = ended + 1;
        self.release_for_job(owner, job_id, ended, "the job ended", metadata)
            .await;
        self.reserve_for_job(owner, member, job_id, next, job.cost_credits(), metadata)
            .await?;
        let retry = || JobCommand::Retry {
            run: next,
            at: keyframe_domain::clock::now(),
        };
        let position = match self.buses.jobs.execute(&job_id.to_string(), retry, metadata).await {
            Ok(position) => position,
            Err(error) => {
                // Refused or outrun: release the reservation unless the job holds the run
                // (another retry may have started it first). When the store failed, the retry
                // may have been recorded all the same: the settlement's reservation sweep
                // decides later.
                if matches!(error, CommandError::Rejected(_) | CommandError::Conflict { .. }) {
                    match self.buses.jobs.load(&job_id.to_string()).await {
                        Ok(job) if job.as_ref().is_none_or(|job| job.run() < next) => {
                            let reason = "the retry could not be recorded";
                            self.release_for_job(owner, job_id, next, reason, metadata).await;
                        }
                        Ok(_) => {}
                        Err(error) => {
                            tracing::warn!(%error, %job_id, "a failed retry's reservation is left to the sweep");
                        }
                    }
                }
                return Err(error.into());
            }
        };
        Ok((self.job_for(actor, Action::View, job_id).await?, position))
    }

    /// `actor` deletes a finished job and the files it produced; answers the deletion's
    /// position.
    pub async fn delete_job(&self, actor: &Actor, job_id: JobId, metadata: &CommandMetadata) -> Result<i64, AppError> {
        let job = self.job_for(actor, Action::Delete, job_id).await?;
        let command = || JobCommand::Delete {
            at: keyframe_domain::clock::now(),
        };
        let position = self.buses.jobs.execute(&job_id.to_string(), command, metadata).await?;
        for artifact in job.artifacts() {
            if let Err(error) = self.storage.delete(&artifact.storage_key).await {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "a deleted job's artifact could not be removed"
                );
            }
        }
        Ok(position)
    }
}
