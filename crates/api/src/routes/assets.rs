//! `/api/v1/projects/{id}/assets`: uploading videos into a project, and listing them.
//!
//! The route reads the file out of the request (a raw body or a multipart part, streamed) and
//! hands it to the upload use case (`keyframe_app::library`), which checks, stores, probes and
//! records it under the quota, and leaves nothing in storage when it refuses.

use crate::auth::AuthUser;
use crate::consistency::{ReadYourWrites, mark_consistency, with_position};
use crate::context::RequestContext;
use crate::error::{ApiError, Code};
use crate::extract::{ApiQuery, PathId};
use crate::paging::{Listed, Page};
use crate::state::AppState;
use anyhow::Context as _;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use keyframe_app::library::{NewUpload, Upload};
use keyframe_app::policy::Action;
use keyframe_domain::ids::ProjectId;
use keyframe_projections::asset_list::{self, AssetRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, upload))
}

/// An uploaded video.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssetView {
    /// Its id.
    pub id: Uuid,
    /// Its project.
    pub project_id: Uuid,
    /// The name it was uploaded under.
    pub filename: String,
    /// Its size.
    pub size_bytes: u64,
    /// SHA-256 of its bytes, hex.
    pub sha256: String,
    /// Its media type, from its container (not from what the client said).
    pub content_type: String,
    /// Its length, when known.
    pub duration_ms: Option<u64>,
    /// Frame width.
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// Video codec.
    pub video_codec: String,
    /// Audio codec, if it has sound.
    pub audio_codec: Option<String>,
    /// When it was uploaded.
    pub uploaded_at: DateTime<Utc>,
}

impl From<AssetRow> for AssetView {
    fn from(row: AssetRow) -> Self {
        Self {
            id: row.asset_id,
            project_id: row.project_id,
            filename: row.filename,
            size_bytes: row.size_bytes.max(0) as u64,
            sha256: row.sha256,
            content_type: row.content_type,
            duration_ms: row.duration_ms.map(|ms| ms.max(0) as u64),
            width: row.width.max(0) as u32,
            height: row.height.max(0) as u32,
            video_codec: row.video_codec,
            audio_codec: row.audio_codec,
            uploaded_at: row.uploaded_at,
        }
    }
}

/// A page of the list (see [`Page`]).
pub type AssetPage = Page<AssetView>;

impl Listed for AssetView {
    const PAGE: &'static str = "AssetPage";
    const PAGE_DESCRIPTION: &'static str = "A page of videos.";
}

/// Upload query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// The file's name, for display (else from `Content-Disposition`, else `video`).
    pub filename: Option<String>,
}

/// List query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AssetListQuery {
    /// Page size, 1 to 100 (default 20).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<Uuid>)]
    pub cursor: Option<String>,
}

/// The display name: the last path component of what the client sent, without control
/// characters, at most 255 characters.
fn display_name(query: Option<&str>, headers: &HeaderMap) -> String {
    let from_disposition = headers
        .get(header::CONTENT_DISPOSITION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').find_map(|part| part.trim().strip_prefix("filename=")))
        .map(|name| name.trim_matches('"'));
    let raw = query.or(from_disposition).unwrap_or("video");
    let last = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let clean: String = last.chars().filter(|c| !c.is_control()).take(255).collect();
    if clean.trim().is_empty() {
        "video".to_owned()
    } else {
        clean.trim().to_owned()
    }
}

/// Upload a video: the raw file as the body, or the first file part of a `multipart/form-data`
/// body. The container is told by the bytes, not by the media type sent.
#[utoipa::path(post, path = "/api/v1/projects/{id}/assets", tag = "assets", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Project id"), UploadQuery),
    request_body(content((Vec<u8> = "application/octet-stream"), (Vec<u8> = "video/*"), (Vec<u8> = "multipart/form-data")),
        description = "The video file"),
    responses((status = 201, body = AssetView),
        (status = 403, body = crate::error::Problem, description = "`insufficient_role`: a viewer of the organisation"),
        (status = 404, body = crate::error::Problem),
        (status = 413, body = crate::error::Problem, description = "`too_large` or `quota_exceeded`"),
        (status = 415, body = crate::error::Problem, description = "`unsupported_media`"),
        (status = 422, body = crate::error::Problem, description = "`invalid_video`: no readable video stream"),
        (status = 429, body = crate::error::Problem),
        (status = 503, body = crate::error::Problem, description = "`video_tools_unavailable`: the server cannot read videos (ffmpeg is not installed on it)")))]
pub async fn upload(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    PathId(project_id): PathId,
    ApiQuery(query): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    crate::throttle::enforce(
        state.limiter.as_ref(),
        state.settings.rate_limits.uploads_user(),
        &caller.user_id.to_string(),
        context.limits.as_ref(),
    )?;
    let (chunks, sent_name, declared) = upload_stream(&headers, body).await?;
    let filename = display_name(query.filename.as_deref().or(sent_name.as_deref()), &headers);
    let upload = NewUpload {
        project_id: ProjectId(project_id),
        filename,
        declared_bytes: declared,
        chunks,
    };
    // On a task of its own: a client that goes away must not stop the clean-up half-way (the
    // handler's future is dropped on disconnect; the task runs to the end and removes what it
    // stored if the upload does not complete).
    let receiving = {
        let state = state.clone();
        let (actor, metadata) = (caller.actor(), caller.metadata(&context));
        tokio::spawn(async move { state.app.upload_video(&actor, upload, &metadata).await })
    };
    let (video, position) = receiving.await.context("the upload task failed")??;
    let container = video.container;
    let view = AssetView {
        id: video.asset_id.0,
        project_id,
        filename: video.filename,
        size_bytes: video.size_bytes,
        sha256: video.sha256,
        content_type: container.content_type().to_owned(),
        duration_ms: video.facts.duration_ms,
        width: video.facts.width,
        height: video.facts.height,
        video_codec: video.facts.video_codec,
        audio_codec: video.facts.audio_codec,
        uploaded_at: keyframe_domain::clock::now(),
    };
    Ok(with_position(
        position,
        (StatusCode::CREATED, Json(view)).into_response(),
    ))
}

/// The file of a request: the raw body, or the first file part of a `multipart/form-data` body
/// (streamed, like the raw body). Also the part's file name, and the declared length of a raw
/// body (a multipart body's length is not the file's).
async fn upload_stream(headers: &HeaderMap, body: Body) -> Result<(Upload, Option<String>, Option<u64>), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Ok(boundary) = multer::parse_boundary(content_type) else {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let chunks = body.into_data_stream().map(|chunk| chunk.map_err(|e| e.to_string()));
        return Ok((Box::pin(chunks), None, declared));
    };
    let mut multipart = multer::Multipart::new(body.into_data_stream(), boundary);
    loop {
        let field = multipart.next_field().await.map_err(|e| {
            ApiError::bad_request(
                Code::InvalidMultipart,
                format!("the multipart body could not be read: {e}"),
            )
        })?;
        let Some(field) = field else {
            return Err(ApiError::bad_request(
                Code::MissingFile,
                "the multipart body holds no file part",
            ));
        };
        if field.file_name().is_none() {
            continue;
        }
        let name = field.file_name().map(str::to_owned);
        // The parts share the body: keep the reader alive for as long as the file streams.
        let chunks = futures::stream::unfold((field, multipart), |(mut field, multipart)| async move {
            match field.chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), (field, multipart))),
                Ok(None) => None,
                Err(error) => Some((Err(error.to_string()), (field, multipart))),
            }
        });
        // Fused: the checks read ahead and may ask again after the end, which `unfold` forbids.
        return Ok((Box::pin(chunks.fuse()), name, None));
    }
}

/// The videos of a project the caller may see, newest first.
#[utoipa::path(get, path = "/api/v1/projects/{id}/assets", tag = "assets", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Project id"), AssetListQuery,
        ("x-keyframe-min-position" = Option<i64>, Header, description = "Wait until the list includes this write")),
    responses((status = 200, body = AssetPage), (status = 404, body = crate::error::Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: AuthUser,
    read_your_writes: ReadYourWrites,
    PathId(project_id): PathId,
    ApiQuery(query): ApiQuery<AssetListQuery>,
) -> Result<Response, ApiError> {
    let (limit, cursor) = crate::paging::page(query.limit, query.cursor.as_deref())?;
    let project = state
        .app
        .project_for(&caller.actor(), Action::View, ProjectId(project_id))
        .await?;
    let owner = project.owner().ok_or_else(|| ApiError::not_found("project"))?;
    let caught_up = read_your_writes.wait(&state, asset_list::NAME).await?;
    let rows = asset_list::list_for_project(state.database(), owner.id(), project_id, cursor, limit + 1)
        .await
        .context("listing assets")?;
    let (rows, next_cursor) = crate::paging::split_page(rows, limit, |row| row.asset_id);
    let page = Page {
        items: rows.into_iter().map(AssetView::from).collect(),
        next_cursor,
    };
    Ok(mark_consistency(caught_up, Json(page)))
}
