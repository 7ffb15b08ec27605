//! `/api/v1/projects/{id}/assets`: uploading videos into a project, and listing them.
//!
//! An upload streams to storage as it arrives, hashed and counted on the way, and is never
//! held in memory whole. It must start like an accepted container (checked before a byte is
//! stored), stay under the size limit and the caller's remaining quota, and ffprobe must find
//! a video stream in it. Then the caller's `MediaLibrary` records it, which is where the quota
//! holds against concurrent uploads. Anything refused is removed from storage before the
//! answer goes out.

use crate::auth::AuthUser;
use crate::consistency::{await_min_position, mark_consistency, with_position};
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::extract::{ApiQuery, PathId};
use crate::state::AppState;
use anyhow::Context as _;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;
use keyframe_domain::ids::{AssetId, ProjectId, UserId};
use keyframe_domain::library::{LibraryCommand, LibraryError, MediaLibrary, StoredVideo};
use keyframe_domain::media::VideoFacts;
use keyframe_eventlog::metadata::Actor;
use keyframe_media::container::{SNIFF_LEN, sniff};
use keyframe_media::probe::{self, ProbeError};
use keyframe_media::storage::ObjectWriter;
use keyframe_projections::asset_list::{self, AssetRow};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/{id}/assets", get(list).post(upload))
        .route("/{id}/analyze", post(crate::routes::jobs::analyze_asset))
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

/// A page of videos.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssetPage {
    /// Newest first.
    pub items: Vec<AssetView>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
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

/// Checks that `project_id` is one of `caller`'s live projects.
pub(crate) async fn ensure_own_project(state: &AppState, caller: UserId, project_id: Uuid) -> Result<(), ApiError> {
    let project = state
        .projects
        .load(&project_id.to_string())
        .await
        .map_err(|e| ApiError::from_command(e, |_| ApiError::not_found("project")))?;
    match project {
        Some(project) if project.is_visible_to(caller) => Ok(()),
        _ => Err(ApiError::not_found("project")),
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::BadRequest {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "too_large",
        detail: format!("uploads are limited to {limit} bytes"),
    }
}

fn quota_exceeded(used: u64, quota: u64) -> ApiError {
    ApiError::BadRequest {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "quota_exceeded",
        detail: format!(
            "the upload does not fit in your storage quota: {used} of {quota} bytes used; delete a project to free space"
        ),
    }
}

fn unsupported_media() -> ApiError {
    ApiError::BadRequest {
        status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        code: "unsupported_media",
        detail: "not a video Keyframe accepts: upload MP4, MOV, WebM or Matroska".to_owned(),
    }
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
    responses((status = 201, body = AssetView), (status = 404, body = crate::error::Problem),
        (status = 413, body = crate::error::Problem, description = "`too_large` or `quota_exceeded`"),
        (status = 415, body = crate::error::Problem, description = "`unsupported_media`"),
        (status = 422, body = crate::error::Problem, description = "`invalid_video`: no readable video stream"),
        (status = 429, body = crate::error::Problem)))]
pub async fn upload(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    PathId(project_id): PathId,
    ApiQuery(query): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    crate::limits::enforce(
        state.limiter.as_ref(),
        state.settings.rate_limits.uploads_user(),
        &caller.user_id.to_string(),
        context.limits.as_ref(),
    )?;
    ensure_own_project(&state, caller.user_id, project_id).await?;
    let (chunks, sent_name, declared) = upload_stream(&headers, body).await?;
    let filename = display_name(query.filename.as_deref().or(sent_name.as_deref()), &headers);
    // On a task of its own: a client that goes away must not stop the clean-up half-way (the
    // handler's future is dropped on disconnect; the task runs to the end and removes what it
    // stored if the upload does not complete).
    let receiving = tokio::spawn(receive(
        state.clone(),
        context,
        caller.user_id,
        project_id,
        filename,
        declared,
        chunks,
    ));
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
        uploaded_at: Utc::now(),
    };
    Ok(with_position(
        position,
        (StatusCode::CREATED, Json(view)).into_response(),
    ))
}

/// An upload's bytes as they arrive.
type Upload = BoxStream<'static, Result<Bytes, String>>;

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
                "invalid_multipart",
                format!("the multipart body could not be read: {e}"),
            )
        })?;
        let Some(field) = field else {
            return Err(ApiError::bad_request(
                "missing_file",
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

/// Streams, checks and records one upload; whatever it refuses leaves nothing in storage.
async fn receive(
    state: AppState,
    context: RequestContext,
    owner_id: UserId,
    project_id: Uuid,
    filename: String,
    declared: Option<u64>,
    mut chunks: Upload,
) -> Result<(StoredVideo, i64), ApiError> {
    let max = state.settings.max_upload_bytes;
    let quota = state.settings.storage_quota_bytes;
    let used = library(&state, owner_id)
        .await?
        .map_or(0, |library| library.used_bytes());
    let room = quota.saturating_sub(used);
    if declared.is_some_and(|length| length > max) {
        return Err(drained(&mut chunks, too_large(max)).await);
    }
    if declared.is_some_and(|length| length > room) {
        return Err(drained(&mut chunks, quota_exceeded(used, quota)).await);
    }
    // The first bytes decide whether anything is stored at all.
    let mut head = BytesMut::new();
    while head.len() < SNIFF_LEN {
        match chunks.next().await {
            Some(Ok(chunk)) => head.extend_from_slice(&chunk),
            Some(Err(_)) => return Err(ApiError::bad_request("upload_interrupted", "the upload broke off")),
            None => break,
        }
    }
    let Some(container) = sniff(&head) else {
        return Err(drained(&mut chunks, unsupported_media()).await);
    };

    let asset_id = AssetId::new();
    let storage_key = format!("assets/{owner_id}/{asset_id}");
    let mut writer = state.storage.writer(&storage_key).await.map_err(ApiError::Internal)?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut next = Some(Ok(head.freeze()));
    while let Some(chunk) = next {
        let chunk: Bytes = match chunk {
            Ok(chunk) => chunk,
            Err(_) => {
                return Err(abandon(
                    writer,
                    ApiError::bad_request("upload_interrupted", "the upload broke off"),
                )
                .await);
            }
        };
        size += chunk.len() as u64;
        if size > max {
            return Err(drained(&mut chunks, abandon(writer, too_large(max)).await).await);
        }
        if size > room {
            return Err(drained(&mut chunks, abandon(writer, quota_exceeded(used, quota)).await).await);
        }
        hasher.update(&chunk);
        if let Err(error) = writer.write(chunk).await {
            return Err(abandon(writer, ApiError::Internal(error)).await);
        }
        next = chunks.next().await;
    }
    writer.finish().await.map_err(ApiError::Internal)?;

    // From here the object exists: every refusal removes it.
    let stored = async {
        // From S3 the probe reads a copy, in a directory of this upload's own.
        let scratch = std::env::temp_dir().join(format!("keyframe-upload-{asset_id}"));
        tokio::fs::create_dir_all(&scratch)
            .await
            .context("making scratch space")?;
        let probed = async {
            let path = state
                .storage
                .local_copy(&storage_key, &scratch)
                .await
                .map_err(ApiError::Internal)?;
            Ok::<_, ApiError>(probe::probe(&path).await)
        }
        .await;
        let _ = tokio::fs::remove_dir_all(&scratch).await;
        let facts = probed?.map_err(|error| match error {
            ProbeError::Tool(error) => ApiError::Internal(anyhow::Error::new(error).context("running ffprobe")),
            refused => ApiError::BadRequest {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid_video",
                detail: refused.to_string(),
            },
        })?;
        if facts.duration_ms.is_some_and(|ms| ms > VideoFacts::MAX_DURATION_MS) {
            return Err(ApiError::BadRequest {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: "invalid_video",
                detail: "the video is longer than 12 hours".to_owned(),
            });
        }
        let video = StoredVideo {
            asset_id,
            project_id: ProjectId(project_id),
            filename,
            storage_key: storage_key.clone(),
            container,
            size_bytes: size,
            sha256: hex(&hasher.finalize()),
            facts,
        };
        let position = record(&state, &context, owner_id, &video).await?;
        Ok::<_, ApiError>((video, position))
    }
    .await;
    if stored.is_err()
        && let Err(cleanup) = state.storage.delete(&storage_key).await
    {
        tracing::error!(
            error = format!("{cleanup:#}"),
            storage_key,
            "a refused upload could not be removed"
        );
    }
    stored
}

/// Reads what is left of a refused upload, up to a bound, before answering. An HTTP/1.1
/// client still sending its body when the server answers and closes often sees only the broken
/// connection, never the answer; reading on (what lingering close does) lets the refusal reach
/// it. Past 64 MiB or two seconds the connection is dropped all the same.
async fn drained(chunks: &mut Upload, error: ApiError) -> ApiError {
    const DRAIN_LIMIT: usize = 64 * 1024 * 1024;
    let mut drained = 0;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while let Some(Ok(chunk)) = chunks.next().await {
            drained += chunk.len();
            if drained > DRAIN_LIMIT {
                break;
            }
        }
    })
    .await;
    error
}

async fn abandon(writer: ObjectWriter, error: ApiError) -> ApiError {
    if let Err(cleanup) = writer.abort().await {
        tracing::error!(
            error = format!("{cleanup:#}"),
            "an abandoned upload could not be removed"
        );
    }
    error
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) async fn library(state: &AppState, user_id: UserId) -> Result<Option<MediaLibrary>, ApiError> {
    state
        .libraries
        .load(&user_id.to_string())
        .await
        .map_err(|e| ApiError::from_command(e, |e| ApiError::Internal(anyhow::Error::new(e))))
}

/// Records the upload in the caller's library. Over the quota, the videos of projects that
/// were deleted but never released (the process stopped between the two) are released first,
/// and the upload is tried once more.
async fn record(
    state: &AppState,
    context: &RequestContext,
    owner_id: UserId,
    video: &StoredVideo,
) -> Result<i64, ApiError> {
    let metadata = context.metadata(Actor::User(owner_id));
    let quota_bytes = state.settings.storage_quota_bytes;
    let command = || LibraryCommand::RecordUpload {
        owner_id,
        video: video.clone(),
        quota_bytes,
        at: Utc::now(),
    };
    let rejected = |error: LibraryError| match error {
        LibraryError::QuotaExceeded {
            used_bytes,
            quota_bytes,
            ..
        } => quota_exceeded(used_bytes, quota_bytes),
        other => ApiError::Internal(anyhow::Error::new(other)),
    };
    match state.libraries.execute(&owner_id.to_string(), command, &metadata).await {
        Err(keyframe_eventlog::commands::CommandError::Rejected(LibraryError::QuotaExceeded { .. })) => {
            if release_deleted_projects(state, context, owner_id).await? {
                state
                    .libraries
                    .execute(&owner_id.to_string(), command, &metadata)
                    .await
                    .map_err(|e| ApiError::from_command(e, rejected))
            } else {
                let used = library(state, owner_id).await?.map_or(0, |l| l.used_bytes());
                Err(quota_exceeded(used, quota_bytes))
            }
        }
        other => other.map_err(|e| ApiError::from_command(e, rejected)),
    }
}

/// Releases the videos of `owner_id`'s deleted projects still counted in the library;
/// answers whether any were.
async fn release_deleted_projects(
    state: &AppState,
    context: &RequestContext,
    owner_id: UserId,
) -> Result<bool, ApiError> {
    let Some(library) = library(state, owner_id).await? else {
        return Ok(false);
    };
    let mut released = false;
    for project_id in library.projects() {
        let project = state
            .projects
            .load(&project_id.to_string())
            .await
            .map_err(|e| ApiError::from_command(e, |_| ApiError::not_found("project")))?;
        if project.is_none_or(|project| project.is_deleted()) {
            release_project(state, context, owner_id, project_id).await?;
            released = true;
        }
    }
    Ok(released)
}

/// Releases a deleted project's videos from the owner's quota and removes their bytes.
pub(crate) async fn release_project(
    state: &AppState,
    context: &RequestContext,
    owner_id: UserId,
    project_id: ProjectId,
) -> Result<(), ApiError> {
    let before = library(state, owner_id).await?;
    let keys = before
        .map(|library| library.storage_keys_of(project_id))
        .unwrap_or_default();
    let command = || LibraryCommand::ReleaseProject {
        project_id,
        at: Utc::now(),
    };
    state
        .libraries
        .execute(&owner_id.to_string(), command, &context.metadata(Actor::User(owner_id)))
        .await
        .map_err(|e| ApiError::from_command(e, |e| ApiError::Internal(anyhow::Error::new(e))))?;
    for key in keys {
        if let Err(error) = state.storage.delete(&key).await {
            tracing::warn!(
                error = format!("{error:#}"),
                key,
                "a released video's bytes could not be removed"
            );
        }
    }
    Ok(())
}

/// The caller's videos in a project, newest first.
#[utoipa::path(get, path = "/api/v1/projects/{id}/assets", tag = "assets", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Project id"), AssetListQuery,
        ("x-keyframe-min-position" = Option<i64>, Header, description = "Wait until the list includes this write")),
    responses((status = 200, body = AssetPage), (status = 404, body = crate::error::Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: AuthUser,
    headers: HeaderMap,
    PathId(project_id): PathId,
    ApiQuery(query): ApiQuery<AssetListQuery>,
) -> Result<Response, ApiError> {
    let (limit, cursor) = crate::routes::page(query.limit, query.cursor.as_deref())?;
    ensure_own_project(&state, caller.user_id, project_id).await?;
    let caught_up = await_min_position(&state, &headers, asset_list::NAME).await?;
    let rows = asset_list::list_for_project(&state.pool, caller.user_id.0, project_id, cursor, limit + 1)
        .await
        .context("listing assets")?;
    let (rows, next_cursor) = crate::routes::split_page(rows, limit, |row| row.asset_id);
    let page = AssetPage {
        items: rows.into_iter().map(AssetView::from).collect(),
        next_cursor,
    };
    Ok(mark_consistency(caught_up, Json(page)))
}
