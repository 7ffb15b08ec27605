//! `/api/v1/auth/sessions` and `/logout-all`: the caller's sessions, read from the
//! `session_list` read model, and ended by the session use cases (`keyframe_app::sessions`).

use crate::auth::AuthUser;
use crate::auth::answers::session_ended;
use crate::consistency::{ReadYourWrites, mark_consistency, with_position};
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::extract::PathId;
use crate::paging::{Listed, Page};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use keyframe_domain::ids::SessionId;
use keyframe_projections::session_list;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// One of the caller's sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// The session's id.
    pub id: Uuid,
    /// The client's `User-Agent` when it logged in.
    pub device: Option<String>,
    /// The client's address when it logged in.
    pub ip: Option<String>,
    /// When it logged in.
    pub created_at: DateTime<Utc>,
    /// The login or the latest refresh (using an access token does not count).
    pub last_used_at: DateTime<Utc>,
    /// Whether this is the session of the token that asks.
    pub current: bool,
}

/// A page of the list (see [`Page`]).
pub type SessionPage = Page<SessionView>;

impl Listed for SessionView {
    const PAGE: &'static str = "SessionPage";
    const PAGE_DESCRIPTION: &'static str = "The caller's live sessions.";
    const NEXT_CURSOR: &'static str = "Always `null`: every live session fits in one page.";
}

/// The caller's sessions that have not ended.
#[utoipa::path(get, path = "/api/v1/auth/sessions", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = SessionPage), (status = 401, body = crate::error::Problem)))]
pub async fn list(
    State(state): State<AppState>,
    caller: AuthUser,
    read_your_writes: ReadYourWrites,
) -> Result<Response, ApiError> {
    let caught_up = read_your_writes.wait(&state, session_list::NAME).await?;
    let rows = session_list::active_for_user(state.database(), caller.user_id.0, keyframe_domain::clock::now()).await?;
    let items = rows
        .into_iter()
        .map(|row| SessionView {
            current: row.session_id == caller.session_id.0,
            id: row.session_id,
            device: row.user_agent,
            ip: row.ip,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
        })
        .collect();
    let page = Page {
        items,
        next_cursor: None,
    };
    Ok(mark_consistency(caught_up, Json(page)))
}

/// End one of the caller's sessions (another device, or this one).
#[utoipa::path(delete, path = "/api/v1/auth/sessions/{id}", tag = "auth", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Session id")),
    responses((status = 204), (status = 401, body = crate::error::Problem), (status = 404, body = crate::error::Problem)))]
pub async fn revoke(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    PathId(id): PathId,
) -> Result<Response, ApiError> {
    let position = state
        .app
        .revoke_session(caller.user_id, SessionId(id), &caller.metadata(&context))
        .await?;
    let response = StatusCode::NO_CONTENT.into_response();
    Ok(match position {
        Some(position) => with_position(position, response),
        None => response,
    })
}

/// End every session of the caller, this one included.
#[utoipa::path(post, path = "/api/v1/auth/logout-all", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = crate::error::Problem)))]
pub async fn logout_all(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
) -> Result<Response, ApiError> {
    let position = state
        .app
        .logout_everywhere(caller.user_id, caller.session_id, &caller.metadata(&context))
        .await?;
    Ok(session_ended(&state, position))
}
