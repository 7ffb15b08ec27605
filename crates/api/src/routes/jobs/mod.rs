//! `/api/v1/jobs`: requesting analyses and clip cuts, following them live, and fetching what
//! they produced. Requests, retries, cancellations and deletions are use cases of
//! `keyframe_app::jobs` (which reserve and release credits around them); one job is read from
//! its events (it is live, and a client polling it should never see it go back), lists and
//! statistics come from the `job_list` read model. Another user's job is a 404.

use crate::auth::AuthUser;
use crate::consistency::{ReadYourWrites, mark_consistency, with_position};
use crate::context::RequestContext;
use crate::error::{ApiError, FieldError};
use crate::extract::{ApiJson, ApiPath, ApiQuery, PathId};
use crate::paging::Page;
use crate::state::AppState;
use anyhow::Context as _;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyframe_app::jobs::JobRequest;
use keyframe_app::policy::Action;
use keyframe_domain::ids::OrganizationId;
use keyframe_domain::ids::{AssetId, JobId, ProjectId};
use keyframe_domain::job::{Job, JobType};
use keyframe_domain::owner::Owner;
use keyframe_projections::job_list::{self, JobCount, JobFilter};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

mod follow;
mod views;

pub use follow::{JobUpdate, events};
pub use views::{ArtifactView, JobPage, JobQuote, JobStats, JobSummary, JobView};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(quote))
        .routes(routes!(stats))
        .routes(routes!(show, delete))
        .routes(routes!(cancel))
        .routes(routes!(retry))
        .routes(routes!(follow::events))
        .routes(routes!(artifact))
        .routes(routes!(analyze_asset))
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
    /// Only jobs of this organisation (else the caller's own and all their organisations').
    pub organization_id: Option<Uuid>,
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

/// The ids of `owners`, as the read models key them.
fn owner_ids(owners: Vec<Owner>) -> Vec<Uuid> {
    owners.into_iter().map(Owner::id).collect()
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
pub(super) async fn job_for(state: &AppState, caller: &AuthUser, action: Action, id: Uuid) -> Result<Job, ApiError> {
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
        (status = 402, body = crate::error::Problem, description = "`insufficient_credits` or `member_credit_limit`: no job was made"),
        (status = 403, body = crate::error::Problem, description = "`insufficient_role`: a viewer of the organisation"),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub async fn create(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    ApiJson(body): ApiJson<CreateJobRequest>,
) -> Result<Response, ApiError> {
    requested(&state, &context, &caller, body.parse()?).await
}

/// Price a job without requesting it: the same body and checks as `POST /jobs`.
#[utoipa::path(post, path = "/api/v1/jobs/quote", tag = "jobs", security(("bearer" = [])), request_body = CreateJobRequest,
    responses((status = 200, body = JobQuote), (status = 403, body = crate::error::Problem, description = "`insufficient_role`: a viewer of the organisation"),
        (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
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
        (status = 402, body = crate::error::Problem, description = "`insufficient_credits` or `member_credit_limit`: no job was made"),
        (status = 403, body = crate::error::Problem, description = "`insufficient_role`: a viewer of the organisation"),
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
    responses((status = 200, body = JobPage), (status = 404, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: AuthUser,
    read_your_writes: ReadYourWrites,
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
    let owners = owner_ids(
        state
            .app
            .owners_visible_to(&caller.actor(), query.organization_id.map(OrganizationId))
            .await?,
    );
    let caught_up = read_your_writes.wait(&state, job_list::NAME).await?;
    let rows = job_list::list_for_owners(state.database(), &owners, &filter, cursor, limit + 1)
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
pub async fn stats(
    State(state): State<AppState>,
    caller: AuthUser,
    read_your_writes: ReadYourWrites,
) -> Result<Response, ApiError> {
    let owners = owner_ids(state.app.owners_visible_to(&caller.actor(), None).await?);
    let caught_up = read_your_writes.wait(&state, job_list::NAME).await?;
    let counts: Vec<JobCount> = job_list::counts_for_owners(state.database(), &owners)
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
    responses((status = 200, body = JobView), (status = 403, body = crate::error::Problem, description = "`insufficient_role`: a viewer of the organisation"),
        (status = 404, body = crate::error::Problem),
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
        (status = 402, body = crate::error::Problem, description = "`insufficient_credits` or `member_credit_limit`: the job stays as it was"),
        (status = 403, body = crate::error::Problem, description = "`insufficient_role`: a viewer of the organisation"),
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
    responses((status = 204), (status = 403, body = crate::error::Problem, description = "`insufficient_role`: not theirs, or a viewer"),
        (status = 404, body = crate::error::Problem),
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
