//! `/api/v1/auth/sessions` and `/logout-all`: the caller's sessions, read from the
//! `session_list` read model, and ended through the `Session` aggregate.

use crate::auth::AuthUser;
use crate::consistency::{await_min_position, mark_consistency, with_position};
use crate::context::RequestContext;
use crate::error::{ApiError, Code};
use crate::extract::PathId;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use keyframe_domain::ids::{SessionId, UserId};
use keyframe_domain::session::{EndRequester, SessionCommand, SessionEndReason, SessionError};
use keyframe_eventlog::commands::CommandError;
use keyframe_eventlog::metadata::CommandMetadata;
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

/// The caller's live sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionPage {
    /// Newest first.
    pub items: Vec<SessionView>,
    /// Always `null`: every live session fits in one page.
    pub next_cursor: Option<String>,
}

/// The caller's sessions that have not ended.
#[utoipa::path(get, path = "/api/v1/auth/sessions", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = SessionPage), (status = 401, body = crate::error::Problem)))]
pub async fn list(State(state): State<AppState>, caller: AuthUser, headers: HeaderMap) -> Result<Response, ApiError> {
    let caught_up = await_min_position(&state, &headers, session_list::NAME).await?;
    let rows = session_list::active_for_user(state.pool(), caller.user_id.0, Utc::now()).await?;
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
    let page = SessionPage {
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
    let metadata = context.metadata(keyframe_eventlog::metadata::Actor::User(caller.user_id));
    let requested_by = EndRequester::Owner(caller.user_id);
    let position = end_session(
        &state,
        SessionId(id),
        requested_by,
        SessionEndReason::Revoked,
        &metadata,
    )
    .await
    .map_err(|error| {
        ApiError::from_command(error, |error| match error {
            SessionError::NotFound => ApiError::not_found("session"),
            other => ApiError::Conflict {
                code: Code::SessionConflict,
                detail: other.to_string(),
            },
        })
    })?;
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
    let metadata = context.metadata(keyframe_eventlog::metadata::Actor::User(caller.user_id));
    // The fence first: it ends every session started before it at once, listed or not (the
    // guard and refresh check it); ending each listed one then puts it on the record.
    let fenced = crate::routes::auth::execute_as_user(&state, &context, caller.user_id, || {
        keyframe_domain::user::UserCommand::EndAllSessions { at: Utc::now() }
    })
    .await?;
    state.session_guard.user_changed(caller.user_id);
    let which = EveryLiveSession {
        user: caller.user_id,
        requested_by: EndRequester::Owner(caller.user_id),
        reason: SessionEndReason::LogoutAll,
        also: Some(caller.session_id),
        keep: None,
        listed_after: Some(fenced),
    };
    let position = end_all_sessions(&state, which, &metadata).await?;
    let response = super::auth::clear_refresh_cookie(&state, StatusCode::NO_CONTENT.into_response());
    Ok(match position {
        Some(position) => with_position(position, response),
        None => response,
    })
}

/// Ends one session and tells the guard, so its access tokens stop working at once. A session
/// that had already ended is no error: `None`, nothing written.
pub(crate) async fn end_session(
    state: &AppState,
    session: SessionId,
    requested_by: EndRequester,
    reason: SessionEndReason,
    metadata: &CommandMetadata,
) -> Result<Option<i64>, CommandError<SessionError>> {
    let command = || SessionCommand::EndSession {
        requested_by,
        reason,
        at: Utc::now(),
    };
    let position = match state
        .buses()
        .sessions
        .execute(&session.to_string(), command, metadata)
        .await
    {
        Ok(position) => Some(position),
        Err(CommandError::Rejected(SessionError::Ended)) => None,
        // Not ended, and perhaps not the requester's: the guard must not hear of it.
        Err(error) => return Err(error),
    };
    state.session_guard.ended(session);
    Ok(position)
}

/// Which sessions [`end_all_sessions`] ends, and why.
pub(crate) struct EveryLiveSession {
    /// Whose.
    pub user: UserId,
    /// Who asks.
    pub requested_by: EndRequester,
    /// Why.
    pub reason: SessionEndReason,
    /// One more, which may be too new to be in the read model yet (the caller's).
    pub also: Option<SessionId>,
    /// One to leave alone (the caller's, when changing the password).
    pub keep: Option<SessionId>,
    /// Wait (bounded) until the read model has applied this position first: the command that
    /// ends every older session, so that none started before it is missed.
    pub listed_after: Option<i64>,
}

/// Ends every live session of a user, as listed by the `session_list` read model. Answers the
/// position of the last event written.
pub(crate) async fn end_all_sessions(
    state: &AppState,
    which: EveryLiveSession,
    metadata: &CommandMetadata,
) -> Result<Option<i64>, ApiError> {
    let EveryLiveSession {
        user,
        requested_by,
        reason,
        also,
        keep,
        listed_after,
    } = which;
    if let Some(position) = listed_after {
        let timeout = state.settings.read_your_writes_timeout;
        let listed =
            keyframe_eventlog::projector::wait_until_applied(state.pool(), session_list::NAME, position, timeout)
                .await?;
        if !listed {
            // The user-wide fence has ended them all already; only the record of each waits.
            tracing::warn!(user = %user, "the sessions list lags; sessions it misses end by the fence alone");
        }
    }
    let mut sessions: Vec<SessionId> = session_list::active_for_user(state.pool(), user.0, Utc::now())
        .await?
        .into_iter()
        .map(|row| SessionId(row.session_id))
        .collect();
    sessions.extend(also.filter(|session| !sessions.contains(session)));
    let mut last = None;
    for session in sessions.into_iter().filter(|session| Some(*session) != keep) {
        let ended = end_session(state, session, requested_by, reason, metadata).await;
        match ended {
            Ok(position) => last = position.or(last),
            // Gone meanwhile, or not the user's after all: nothing to end.
            Err(CommandError::Rejected(_)) => {}
            Err(error) => return Err(ApiError::from_command(error, |_| ApiError::not_found("session"))),
        }
    }
    Ok(last)
}
