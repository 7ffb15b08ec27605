//! Read-your-writes across the eventually consistent read models.
//!
//! A command answers `x-keyframe-position` (the global position of what it wrote), and this
//! process remembers it as the last write of the caller's session (`own_writes`). A query of
//! that session then waits, up to a bound, until the read model it reads has applied that
//! write: a client sees its own writes without asking. A query may also send a position as
//! `x-keyframe-min-position` (the way to see one's writes across replicas, or another
//! session's); it waits for the later of the two. If the bound passes first the query answers
//! anyway, with `x-keyframe-consistent: false`, rather than failing the read.

use crate::error::{ApiError, Code};
use crate::own_writes::{CallerSlot, PendingWrite};
use crate::state::AppState;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keyframe_domain::ids::SessionId;
use std::time::Duration;

/// Header a command answers with.
pub const POSITION: HeaderName = HeaderName::from_static("x-keyframe-position");
/// Header a query honours.
pub const MIN_POSITION: HeaderName = HeaderName::from_static("x-keyframe-min-position");
/// Header a query answers with when it gave up waiting.
pub const CONSISTENT: HeaderName = HeaderName::from_static("x-keyframe-consistent");

/// Middleware: remembers the position a command answers as its session's newest write.
pub(crate) async fn remember_own_writes(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let slot = CallerSlot::default();
    request.extensions_mut().insert(slot.clone());
    let response = next.run(request).await;
    if let Some(session) = slot.session()
        && let Some(position) = written_position(response.headers())
    {
        state.own_writes.record(session, position);
    }
    response
}

fn written_position(headers: &HeaderMap) -> Option<i64> {
    headers.get(POSITION)?.to_str().ok()?.parse().ok()
}

/// What a query must see before it answers: its session's own newest write, and the position
/// the client asked for in `x-keyframe-min-position`. Take it after the [`AuthUser`](crate::auth::AuthUser).
#[derive(Debug, Clone, Copy)]
pub struct ReadYourWrites {
    session: Option<SessionId>,
    asked: Option<i64>,
}

impl FromRequestParts<AppState> for ReadYourWrites {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        let asked = match parts.headers.get(MIN_POSITION) {
            None => None,
            Some(raw) => Some(
                raw.to_str()
                    .ok()
                    .and_then(|v| v.trim().parse().ok())
                    .filter(|p: &i64| *p > 0)
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            Code::InvalidPosition,
                            "x-keyframe-min-position must be a positive integer",
                        )
                    })?,
            ),
        };
        Ok(Self {
            session: parts.extensions.get::<CallerSlot>().and_then(CallerSlot::session),
            asked,
        })
    }
}

impl ReadYourWrites {
    /// Waits until `projection` has applied what this query must see. Answers whether it has
    /// (`true` when there was nothing to wait for).
    pub async fn wait(&self, state: &AppState, projection: &'static str) -> Result<bool, ApiError> {
        let pending = self.session.map_or(PendingWrite::Nothing, |session| {
            state.own_writes.pending(session, projection)
        });
        let bound = state.settings.read_your_writes_timeout;
        // The position asked for always gets the whole bound; the session's own write gets it
        // once (while a read model stands still, each read would otherwise spend it again).
        let (target, timeout) = match pending {
            PendingWrite::Nothing => (self.asked, bound),
            PendingWrite::Wait(own) => (self.asked.max(Some(own)), bound),
            PendingWrite::Look(own) => match self.asked {
                Some(asked) => (Some(asked.max(own)), bound),
                None => (Some(own), Duration::ZERO),
            },
        };
        let Some(target) = target else {
            return Ok(true);
        };
        let applied =
            keyframe_eventlog::projector::wait_until_applied(state.database(), projection, target, timeout).await?;
        if let Some(session) = self.session {
            match (applied, pending) {
                (true, _) => state.own_writes.applied(session, projection, target),
                (false, PendingWrite::Wait(own)) => state.own_writes.waited_in_vain(session, projection, own),
                (false, _) => {}
            }
        }
        Ok(applied)
    }
}

/// Adds `x-keyframe-position` to a command's response.
pub fn with_position(position: i64, response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    response.headers_mut().insert(POSITION, HeaderValue::from(position));
    response
}

/// Marks a query's response as possibly stale when the wait ran out.
pub fn mark_consistency(caught_up: bool, response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    if !caught_up {
        response
            .headers_mut()
            .insert(CONSISTENT, HeaderValue::from_static("false"));
    }
    response
}
