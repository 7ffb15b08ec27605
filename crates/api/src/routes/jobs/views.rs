//! What the job routes answer: a job, a job in a list, the statistics, a quote.

use crate::paging::{Listed, Page};
use chrono::{DateTime, Utc};
use keyframe_domain::job::Job;
use keyframe_projections::job_list::JobRow;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// A file a job produced.
#[derive(Debug, Serialize, ToSchema)]
pub struct ArtifactView {
    /// Its name.
    pub name: String,
    /// Its media type.
    pub content_type: String,
    /// Its size.
    pub size_bytes: u64,
    /// Where to download it.
    pub url: String,
}

/// A job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    /// Its id.
    pub id: Uuid,
    /// `analyze` or `clip`.
    #[serde(rename = "type")]
    pub job_type: String,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    /// Percent done, as last recorded (coarse steps).
    pub progress: u8,
    /// Attempts started.
    pub attempts: u32,
    /// Automatic retries allowed after a failed attempt.
    pub max_retries: u32,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// The result, once succeeded.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// Files it produced.
    pub artifacts: Vec<ArtifactView>,
    /// Its cost in credits: its price, reserved while it waits or runs and charged when it
    /// succeeds; 0 once it failed or was cancelled (nothing is charged).
    pub cost_credits: Option<i64>,
    /// Its project.
    pub project_id: Uuid,
    /// The video it works on.
    pub asset_id: Option<Uuid>,
    /// Free text.
    pub prompt: Option<String>,
    /// Type-specific parameters.
    #[schema(value_type = Object)]
    pub parameters: serde_json::Value,
    /// When requested.
    pub created_at: Option<DateTime<Utc>>,
    /// When the last attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// When it last changed.
    pub updated_at: Option<DateTime<Utc>>,
}

impl JobView {
    pub(super) fn of(job: &Job) -> Option<Self> {
        let id = job.id()?.0;
        Some(Self {
            id,
            job_type: job.job_type()?.as_str().to_owned(),
            status: job.status().as_str().to_owned(),
            progress: job.progress(),
            attempts: job.attempts(),
            max_retries: job.max_retries(),
            error: job.error().map(str::to_owned),
            result: job.result().cloned(),
            artifacts: job
                .artifacts()
                .iter()
                .map(|artifact| ArtifactView {
                    name: artifact.name.clone(),
                    content_type: artifact.content_type.clone(),
                    size_bytes: artifact.size_bytes,
                    url: format!("/api/v1/jobs/{id}/artifacts/{}", artifact.name),
                })
                .collect(),
            cost_credits: Some(job.charge()),
            project_id: job.project_id()?.0,
            asset_id: job.source().map(|source| source.asset_id.0),
            prompt: job.prompt().map(str::to_owned),
            parameters: job.parameters().clone(),
            created_at: job.created_at(),
            started_at: job.started_at(),
            finished_at: job.finished_at(),
            updated_at: job.updated_at(),
        })
    }
}

/// A job in a list (without its result: fetch the job for that).
#[derive(Debug, Serialize, ToSchema)]
pub struct JobSummary {
    /// Its id.
    pub id: Uuid,
    /// `analyze` or `clip`.
    #[serde(rename = "type")]
    pub job_type: String,
    /// Where it stands.
    pub status: String,
    /// Percent done.
    pub progress: i16,
    /// Attempts started.
    pub attempts: i32,
    /// Automatic retries allowed.
    pub max_retries: i32,
    /// Why the last attempt failed.
    pub error: Option<String>,
    /// Its cost in credits (as on the job; `null` for jobs from before billing).
    pub cost_credits: Option<i64>,
    /// Its project.
    pub project_id: Uuid,
    /// The video.
    pub asset_id: Option<Uuid>,
    /// When requested.
    pub created_at: DateTime<Utc>,
    /// When the last attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<JobRow> for JobSummary {
    fn from(row: JobRow) -> Self {
        Self {
            id: row.job_id,
            job_type: row.job_type,
            status: row.status,
            progress: row.progress,
            attempts: row.attempts,
            max_retries: row.max_retries,
            error: row.error,
            cost_credits: row.cost_credits,
            project_id: row.project_id,
            asset_id: row.asset_id,
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            updated_at: row.updated_at,
        }
    }
}

/// A page of the list (see [`Page`]).
pub type JobPage = Page<JobSummary>;

impl Listed for JobSummary {
    const PAGE: &'static str = "JobPage";
    const PAGE_DESCRIPTION: &'static str = "A page of jobs.";
}

/// Counts of the caller's jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobStats {
    /// All jobs.
    pub total: i64,
    /// By status.
    pub by_status: std::collections::BTreeMap<String, i64>,
    /// By type.
    pub by_type: std::collections::BTreeMap<String, i64>,
    /// Mean run time of the finished attempts (succeeded or failed), in milliseconds.
    pub mean_run_ms: Option<f64>,
}

/// What a job would cost, and what the caller has.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobQuote {
    /// The job's price in credits.
    pub cost_credits: i64,
    /// The caller's available credits now.
    pub available_credits: i64,
    /// Whether the job could be requested now.
    pub affordable: bool,
}
