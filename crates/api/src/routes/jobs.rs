//! `/api/v1/jobs`: requesting analyses and clip cuts, following them live, and fetching what
//! they produced. Requests, retries, cancellations and deletions are use cases of
//! `keyframe_app::jobs` (which reserve and release credits around them); one job is read from
//! its events (it is live, and a client polling it should never see it go back), lists and
//! statistics come from the `job_list` read model. Another user's job is a 404.

use crate::auth::AuthUser;
use crate::consistency::{await_min_position, mark_consistency, with_position};
use crate::context::RequestContext;
use crate::error::{ApiError, Code, FieldError};
use crate::extract::{ApiJson, ApiPath, ApiQuery, PathId};
use crate::paging::{Listed, Page};
use crate::state::AppState;
use anyhow::Context as _;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use keyframe_app::jobs::JobRequest;
use keyframe_app::policy::Action;
use keyframe_domain::ids::{AssetId, JobId, ProjectId};
use keyframe_domain::job::{Job, JobEvent, JobType};
use keyframe_projections::job_list::{self, JobCount, JobFilter, JobRow};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// How often an event stream looks for new events of its job.
const STREAM_POLL: Duration = Duration::from_millis(200);

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(quote))
        .routes(routes!(stats))
        .routes(routes!(show, delete))
        .routes(routes!(cancel))
        .routes(routes!(retry))
        .routes(routes!(events))
        .routes(routes!(artifact))
        .routes(routes!(analyze_asset))
}

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
    fn of(job: &Job) -> Option<Self> {
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

/// `POST /jobs` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJobRequest {
    /// `analyze` or `clip`.
    #[schema(schema_with = crate::openapi::fields::job_type)]
    #[serde(rename = "type")]
    pub job_type: String,
    /// The project.
    pub project_id: Uuid,
    /// The video (required for `analyze`).
    pub asset_id: Option<Uuid>,
    /// Free text (kept for job types that take one).
    #[schema(schema_with = crate::openapi::fields::prompt_or_null)]
    pub prompt: Option<String>,
    /// Type-specific: for `clip`, `{"source_job_id": "<a succeeded analyze job>", "count": 1..5}`.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<serde_json::Value>,
    /// Automatic retries after a failed attempt, 0 to 5 (default from configuration).
    #[schema(schema_with = crate::openapi::fields::max_retries_or_null)]
    #[serde(default, deserialize_with = "crate::extract::whole_number_or_null")]
    pub max_retries: Option<u32>,
}

/// `POST /projects/{id}/analyze` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeRequest {
    /// The video.
    pub asset_id: Uuid,
    /// Options (none yet; must be an object when present).
    #[schema(value_type = Option<Object>)]
    pub options: Option<serde_json::Value>,
}

/// List query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobListQuery {
    /// Only jobs with this status.
    #[param(schema_with = crate::openapi::fields::job_status)]
    pub status: Option<String>,
    /// Only jobs of this project.
    pub project_id: Option<Uuid>,
    /// Only jobs of this type.
    #[serde(rename = "type")]
    #[param(rename = "type", schema_with = crate::openapi::fields::job_type)]
    pub job_type: Option<String>,
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<Uuid>)]
    pub cursor: Option<String>,
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

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::Validation(vec![FieldError {
        field: field.to_owned(),
        message: message.into(),
    }])
}

impl CreateJobRequest {
    /// The request as the use cases take it.
    fn parse(self) -> Result<JobRequest, ApiError> {
        let job_type = match self.job_type.as_str() {
            "analyze" => JobType::Analyze,
            "clip" => JobType::Clip,
            _ => return Err(invalid("type", "must be analyze or clip")),
        };
        Ok(JobRequest {
            job_type,
            project_id: ProjectId(self.project_id),
            asset_id: self.asset_id.map(AssetId),
            prompt: self.prompt,
            parameters: self.parameters,
            max_retries: self.max_retries,
        })
    }
}

/// One of the caller's jobs, for `action`.
async fn job_for(state: &AppState, caller: &AuthUser, action: Action, id: Uuid) -> Result<Job, ApiError> {
    Ok(state.app.job_for(&caller.actor(), action, JobId(id)).await?)
}

/// The answer to a request: 202 with the job and where to follow it.
async fn requested(
    state: &AppState,
    context: &RequestContext,
    caller: &AuthUser,
    request: JobRequest,
) -> Result<Response, ApiError> {
    let (job, position) = state
        .app
        .request_job(&caller.actor(), request, &caller.metadata(context))
        .await?;
    let view = JobView::of(&job).context("a job without its request")?;
    let location = format!("/api/v1/jobs/{}", view.id);
    let mut response = (StatusCode::ACCEPTED, Json(view)).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(with_position(position, response))
}

/// Request a job.
#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs", security(("bearer" = [])), request_body = CreateJobRequest,
    responses((status = 202, body = JobView),
        (status = 402, body = crate::error::Problem, description = "`insufficient_credits`: no job was made"),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub async fn create(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    ApiJson(body): ApiJson<CreateJobRequest>,
) -> Result<Response, ApiError> {
    requested(&state, &context, &caller, body.parse()?).await
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

/// Price a job without requesting it: the same body and checks as `POST /jobs`.
#[utoipa::path(post, path = "/api/v1/jobs/quote", tag = "jobs", security(("bearer" = [])), request_body = CreateJobRequest,
    responses((status = 200, body = JobQuote), (status = 404, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)))]
pub async fn quote(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiJson(body): ApiJson<CreateJobRequest>,
) -> Result<Json<JobQuote>, ApiError> {
    let quote = state.app.quote_job(&caller.actor(), body.parse()?).await?;
    Ok(Json(JobQuote {
        cost_credits: quote.cost,
        available_credits: quote.available,
        affordable: quote.cost <= quote.available,
    }))
}

/// Analyse a video of the project (the same as requesting an `analyze` job).
#[utoipa::path(post, path = "/api/v1/projects/{id}/analyze", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Project id")), request_body = AnalyzeRequest,
    responses((status = 202, body = JobView),
        (status = 402, body = crate::error::Problem, description = "`insufficient_credits`: no job was made"),
        (status = 404, body = crate::error::Problem)))]
pub async fn analyze_asset(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    PathId(project_id): PathId,
    ApiJson(body): ApiJson<AnalyzeRequest>,
) -> Result<Response, ApiError> {
    let request = CreateJobRequest {
        job_type: "analyze".to_owned(),
        project_id,
        asset_id: Some(body.asset_id),
        prompt: None,
        parameters: body.options,
        max_retries: None,
    };
    requested(&state, &context, &caller, request.parse()?).await
}

/// The caller's jobs, newest first.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", security(("bearer" = [])), params(JobListQuery,
        ("x-keyframe-min-position" = Option<i64>, Header, description = "Wait until the list includes this write")),
    responses((status = 200, body = JobPage), (status = 422, body = crate::error::Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: AuthUser,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<JobListQuery>,
) -> Result<Response, ApiError> {
    let (limit, cursor) = crate::paging::page(query.limit, query.cursor.as_deref())?;
    if let Some(status) = &query.status
        && !["queued", "running", "succeeded", "failed", "cancelled"].contains(&status.as_str())
    {
        return Err(invalid(
            "status",
            "must be queued, running, succeeded, failed or cancelled",
        ));
    }
    if let Some(job_type) = &query.job_type
        && !["analyze", "clip"].contains(&job_type.as_str())
    {
        return Err(invalid("type", "must be analyze or clip"));
    }
    let filter = JobFilter {
        status: query.status,
        project_id: query.project_id,
        job_type: query.job_type,
    };
    let caught_up = await_min_position(&state, &headers, job_list::NAME).await?;
    let rows = job_list::list_for_owner(state.pool(), caller.user_id.0, &filter, cursor, limit + 1)
        .await
        .context("listing jobs")?;
    let (rows, next_cursor) = crate::paging::split_page(rows, limit, |row| row.job_id);
    let page = Page {
        items: rows.into_iter().map(JobSummary::from).collect(),
        next_cursor,
    };
    Ok(mark_consistency(caught_up, Json(page)))
}

/// Counts of the caller's jobs by status and type, and their mean run time.
#[utoipa::path(get, path = "/api/v1/jobs/stats", tag = "jobs", security(("bearer" = [])),
    responses((status = 200, body = JobStats)))]
pub async fn stats(State(state): State<AppState>, caller: AuthUser, headers: HeaderMap) -> Result<Response, ApiError> {
    let caught_up = await_min_position(&state, &headers, job_list::NAME).await?;
    let counts: Vec<JobCount> = job_list::counts_for_owner(state.pool(), caller.user_id.0)
        .await
        .context("counting jobs")?;
    let mut stats = JobStats {
        total: 0,
        by_status: Default::default(),
        by_type: Default::default(),
        mean_run_ms: None,
    };
    let (mut run_total, mut run_count) = (0.0, 0);
    for count in counts {
        stats.total += count.count;
        *stats.by_status.entry(count.status.clone()).or_default() += count.count;
        *stats.by_type.entry(count.job_type.clone()).or_default() += count.count;
        if let Some(mean) = count.mean_run_ms
            && matches!(count.status.as_str(), "succeeded" | "failed")
        {
            run_total += mean * count.count as f64;
            run_count += count.count;
        }
    }
    if run_count > 0 {
        stats.mean_run_ms = Some((run_total / run_count as f64).round());
    }
    Ok(mark_consistency(caught_up, Json(stats)))
}

/// One of the caller's jobs, as it stands now.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses((status = 200, body = JobView), (status = 404, body = crate::error::Problem)))]
pub async fn show(
    State(state): State<AppState>,
    caller: AuthUser,
    PathId(id): PathId,
) -> Result<Json<JobView>, ApiError> {
    let job = job_for(&state, &caller, Action::View, id).await?;
    Ok(Json(JobView::of(&job).ok_or_else(|| ApiError::not_found("job"))?))
}

/// The answer to a change: the job as it stands after it, with the change's position.
fn changed(job: &Job, position: i64) -> Result<Response, ApiError> {
    let view = JobView::of(job).ok_or_else(|| ApiError::not_found("job"))?;
    Ok(with_position(position, Json(view)))
}

/// Cancel a queued or running job (a running ffmpeg stops within about a second).
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses((status = 200, body = JobView), (status = 404, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem, description = "`job_not_cancellable`: it has ended")))]
pub async fn cancel(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let (job, position) = state
        .app
        .cancel_job(&caller.actor(), JobId(id), &caller.metadata(&context))
        .await?;
    changed(&job, position)
}

/// Run a failed or cancelled job again: a new run, which reserves the job's price again.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/retry", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses((status = 200, body = JobView),
        (status = 402, body = crate::error::Problem, description = "`insufficient_credits`: the job stays as it was"),
        (status = 404, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem, description = "`job_not_retryable`")))]
pub async fn retry(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let (job, position) = state
        .app
        .retry_job(&caller.actor(), JobId(id), &caller.metadata(&context))
        .await?;
    changed(&job, position)
}

/// Delete a finished job.
#[utoipa::path(delete, path = "/api/v1/jobs/{id}", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id")),
    responses((status = 204), (status = 404, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem, description = "`job_active`: cancel it first")))]
pub async fn delete(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let position = state
        .app
        .delete_job(&caller.actor(), JobId(id), &caller.metadata(&context))
        .await?;
    Ok(with_position(position, StatusCode::NO_CONTENT))
}

/// Download a thumbnail or clip.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/artifacts/{name}", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id"), ("name" = String, Path, description = "Artifact name")),
    responses((status = 200, description = "The file: a JPEG thumbnail or an MP4 clip",
            content((Vec<u8> = "image/jpeg"), (Vec<u8> = "video/mp4"))),
        (status = 404, body = crate::error::Problem)))]
pub async fn artifact(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiPath((id, name)): ApiPath<(Uuid, String)>,
) -> Result<Response, ApiError> {
    let job = job_for(&state, &caller, Action::View, id).await?;
    let artifact = job
        .artifacts()
        .iter()
        .find(|artifact| artifact.name == name)
        .ok_or_else(|| ApiError::not_found("artifact"))?;
    let (size, chunks) = state
        .app
        .storage
        .read(&artifact.storage_key)
        .await
        .map_err(|_| ApiError::not_found("artifact"))?;
    let disposition = format!("inline; filename=\"{}\"", artifact.name);
    Ok((
        [
            (header::CONTENT_TYPE, artifact.content_type.clone()),
            (header::CONTENT_LENGTH, size.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "private, max-age=3600".to_owned()),
        ],
        Body::from_stream(chunks),
    )
        .into_response())
}

/// One change of a job, as a Server-Sent Event: `id` is the job's event sequence (send it
/// back as `Last-Event-ID` to resume), `event` the event type (`snapshot` for the state at
/// connection), `data` the job's status after it.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobUpdate {
    /// The event type (`JobStarted`, `JobProgressed`, ...), or `snapshot`.
    pub event: String,
    /// Status after it.
    pub status: String,
    /// Percent done.
    pub progress: u8,
    /// Attempts started.
    pub attempts: u32,
    /// What the attempt is doing.
    pub stage: Option<String>,
    /// The last failure's reason.
    pub error: Option<String>,
}

fn update(event: &str, job: &Job) -> JobUpdate {
    JobUpdate {
        event: event.to_owned(),
        status: job.status().as_str().to_owned(),
        progress: job.progress(),
        attempts: job.attempts(),
        stage: job.stage().map(str::to_owned),
        error: job.error().map(str::to_owned),
    }
}

/// Follow a job: its status and progress as Server-Sent Events until it ends. Without
/// `Last-Event-ID` the stream opens with a `snapshot`; with it, it resumes after that event.
/// Resuming an ended job with nothing new answers 204 (an EventSource then stops).
#[utoipa::path(get, path = "/api/v1/jobs/{id}/events", tag = "jobs", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Job id"),
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event")),
    responses((status = 200, content_type = "text/event-stream", body = JobUpdate),
        (status = 204, description = "The job has ended and nothing followed `Last-Event-ID`"),
        (status = 404, body = crate::error::Problem)))]
pub async fn events(
    State(state): State<AppState>,
    caller: AuthUser,
    headers: HeaderMap,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let job = job_for(&state, &caller, Action::View, id).await?;
    let resume_after = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i64>().ok())
                .filter(|v| *v >= 0)
                .ok_or_else(|| ApiError::bad_request(Code::InvalidLastEventId, "Last-Event-ID must be an event id"))?,
        ),
    };
    if let Some(after) = resume_after
        && job.status().is_finished()
    {
        let newest: Option<i64> =
            sqlx::query_scalar("SELECT max(sequence) FROM events WHERE aggregate_type = $1 AND aggregate_id = $2")
                .bind(Job::TYPE)
                .bind(id.to_string())
                .fetch_one(state.pool())
                .await
                .context("reading the job's newest event")?;
        if newest.is_none_or(|newest| after >= newest) {
            // An ended job with nothing after what the client saw: 204 tells an EventSource
            // to stop reconnecting.
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
    }
    let pool = state.pool().clone();
    let job_id = id.to_string();
    let stream = follow_job(pool, job_id, resume_after);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

struct Follow {
    pool: sqlx::PgPool,
    job_id: String,
    job: Job,
    /// Events up to here are folded into `job`.
    folded: i64,
    /// Events up to here were sent.
    sent: i64,
    pending: std::collections::VecDeque<Event>,
    snapshot: bool,
    done: bool,
}

/// The job's events from the store, folded as they come, sent from `resume_after` on.
fn follow_job(
    pool: sqlx::PgPool,
    job_id: String,
    resume_after: Option<i64>,
) -> impl futures::Stream<Item = Result<Event, std::convert::Infallible>> {
    let follow = Follow {
        pool,
        job_id,
        job: Job::default(),
        folded: 0,
        sent: resume_after.unwrap_or(0),
        pending: Default::default(),
        snapshot: resume_after.is_none(),
        done: false,
    };
    futures::stream::unfold(follow, |mut follow| async move {
        loop {
            if let Some(event) = follow.pending.pop_front() {
                return Some((Ok(event), follow));
            }
            if follow.done {
                return None;
            }
            if follow.folded > 0 || !follow.snapshot {
                tokio::time::sleep(STREAM_POLL).await;
            }
            if let Err(error) = follow.read().await {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "a job event stream could not read; ending it"
                );
                return None;
            }
        }
    })
}

impl Follow {
    async fn read(&mut self) -> anyhow::Result<()> {
        let rows: Vec<(i64, String, serde_json::Value)> = sqlx::query_as(
            "SELECT sequence, event_type, payload FROM events
             WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 ORDER BY sequence",
        )
        .bind(Job::TYPE)
        .bind(&self.job_id)
        .bind(self.folded)
        .fetch_all(&self.pool)
        .await
        .context("reading the job's events")?;
        for (sequence, event_type, payload) in rows {
            let event: JobEvent = serde_json::from_value(payload).context("reading a job event")?;
            self.job.apply(event);
            self.folded = sequence;
            if sequence > self.sent && !self.snapshot {
                self.push(sequence, &event_type);
            }
        }
        if self.snapshot {
            self.snapshot = false;
            self.push(self.folded, "snapshot");
        }
        // Everything up to now is folded: a job that has ended has nothing more to say.
        self.done = self.job.status().is_finished();
        Ok(())
    }

    fn push(&mut self, sequence: i64, event_type: &str) {
        self.sent = sequence;
        let data = serde_json::to_string(&update(event_type, &self.job)).unwrap_or_default();
        self.pending
            .push_back(Event::default().id(sequence.to_string()).event(event_type).data(data));
    }
}
