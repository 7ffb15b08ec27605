//! Read-your-writes across the eventually consistent read models.
//!
//! A command answers `x-keyframe-position` (the global position of what it wrote). A query
//! that sends it back as `x-keyframe-min-position` waits, up to a bound, until the read model
//! it reads has applied that event. If the bound passes first the query answers anyway, with
//! `x-keyframe-consistent: false`, rather than failing the read.

use crate::error::{ApiError, Code};
use crate::state::AppState;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};

/// Header a command answers with.
pub const POSITION: HeaderName = HeaderName::from_static("x-keyframe-position");
/// Header a query honours.
pub const MIN_POSITION: HeaderName = HeaderName::from_static("x-keyframe-min-position");
/// Header a query answers with when it gave up waiting.
pub const CONSISTENT: HeaderName = HeaderName::from_static("x-keyframe-consistent");

/// Adds `x-keyframe-position` to a command's response.
pub fn with_position(position: i64, response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    response.headers_mut().insert(POSITION, HeaderValue::from(position));
    response
}

/// Waits for `projection` when the request asks for a minimum position. Answers whether the
/// read model is known to be caught up (`true` when nothing was asked).
pub async fn await_min_position(state: &AppState, headers: &HeaderMap, projection: &str) -> Result<bool, ApiError> {
    let Some(raw) = headers.get(MIN_POSITION) else {
        return Ok(true);
    };
    let position: i64 = raw
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|p| *p > 0)
        .ok_or_else(|| {
            ApiError::bad_request(
                Code::InvalidPosition,
                "x-keyframe-min-position must be a positive integer",
            )
        })?;
    let timeout = state.settings.read_your_writes_timeout;
    Ok(keyframe_eventlog::projector::wait_until_applied(state.pool(), projection, position, timeout).await?)
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
