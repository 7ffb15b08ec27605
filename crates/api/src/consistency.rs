//! Read-your-writes across the eventually consistent read models.
//!
//! A command answers `x-keyframe-position` (the global position of what it wrote), and this
//! process remembers it as the last write of the caller's session ([`OwnWrites`]). A query of
//! that session then waits, up to a bound, until the read model it reads has applied that
//! write: a client sees its own writes without asking. A query may also send a position as
//! `x-keyframe-min-position` (the way to see one's writes across replicas, or another
//! session's); it waits for the later of the two. If the bound passes first the query answers
//! anyway, with `x-keyframe-consistent: false`, rather than failing the read.

use crate::auth::AuthUser;
use crate::error::{ApiError, Code};
use crate::state::AppState;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keyframe_domain::ids::SessionId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Header a command answers with.
pub const POSITION: HeaderName = HeaderName::from_static("x-keyframe-position");
/// Header a query honours.
pub const MIN_POSITION: HeaderName = HeaderName::from_static("x-keyframe-min-position");
/// Header a query answers with when it gave up waiting.
pub const CONSISTENT: HeaderName = HeaderName::from_static("x-keyframe-consistent");

/// Sessions remembered at most; beyond it, those idle longest are forgotten first.
const REMEMBERED_SESSIONS: usize = 100_000;

/// How long a session's last write is remembered: far longer than any read model takes to
/// apply it, and a forgotten one only means a read waits for nothing.
const REMEMBERED_FOR: Duration = Duration::from_secs(10 * 60);

/// The last write of each session this process took a command from.
#[derive(Debug, Default)]
pub struct OwnWrites {
    sessions: Mutex<HashMap<SessionId, OwnWrite>>,
}

#[derive(Debug)]
struct OwnWrite {
    /// The global position of the session's newest write.
    position: i64,
    /// When it was written.
    at: Instant,
    /// The read models already seen to have applied it: their reads need not look again.
    applied_by: Vec<&'static str>,
}

impl OwnWrites {
    /// Remembers `position` as `session`'s newest write (an older one changes nothing).
    pub fn record(&self, session: SessionId, position: i64) {
        let mut sessions = self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if sessions.len() >= REMEMBERED_SESSIONS && !sessions.contains_key(&session) {
            forget_oldest(&mut sessions);
        }
        let now = Instant::now();
        let write = sessions.entry(session).or_insert(OwnWrite {
            position,
            at: now,
            applied_by: Vec::new(),
        });
        if position >= write.position {
            if position > write.position {
                write.applied_by.clear();
            }
            write.position = position;
            write.at = now;
        }
    }

    /// The session's newest write, unless `projection` is known to have applied it.
    fn pending(&self, session: SessionId, projection: &str) -> Option<i64> {
        let sessions = self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let write = sessions.get(&session)?;
        (write.at.elapsed() < REMEMBERED_FOR && !write.applied_by.contains(&projection)).then_some(write.position)
    }

    /// `projection` has applied everything up to `position`.
    fn applied(&self, session: SessionId, projection: &'static str, position: i64) {
        let mut sessions = self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(write) = sessions.get_mut(&session)
            && write.position <= position
            && !write.applied_by.contains(&projection)
        {
            write.applied_by.push(projection);
        }
    }
}

/// Makes room: forgets the writes older than [`REMEMBERED_FOR`], or, when none is, the oldest
/// tenth.
fn forget_oldest(sessions: &mut HashMap<SessionId, OwnWrite>) {
    sessions.retain(|_, write| write.at.elapsed() < REMEMBERED_FOR);
    if sessions.len() >= REMEMBERED_SESSIONS {
        let mut ages: Vec<Instant> = sessions.values().map(|write| write.at).collect();
        let cut = ages.len() / 10;
        let (_, threshold, _) = ages.select_nth_unstable(cut);
        let threshold = *threshold;
        sessions.retain(|_, write| write.at > threshold);
    }
}

/// The session a request was authenticated as, filled in by [`AuthUser`]'s extractor and read
/// by [`remember_own_writes`] once the response is ready.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallerSlot(Arc<OnceLock<SessionId>>);

impl CallerSlot {
    /// Notes the request's session.
    pub(crate) fn fill(&self, session: SessionId) {
        let _ = self.0.set(session);
    }
}

/// Middleware: remembers the position a command answers as its session's newest write.
pub(crate) async fn remember_own_writes(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let slot = CallerSlot::default();
    request.extensions_mut().insert(slot.clone());
    let response = next.run(request).await;
    if let Some(session) = slot.0.get()
        && let Some(position) = written_position(response.headers())
    {
        state.own_writes.record(*session, position);
    }
    response
}

fn written_position(headers: &HeaderMap) -> Option<i64> {
    headers.get(POSITION)?.to_str().ok()?.parse().ok()
}

/// What a query must see before it answers: its session's own newest write, and the position
/// the client asked for in `x-keyframe-min-position`. Take it after the [`AuthUser`].
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
            session: parts.extensions.get::<AuthUser>().map(|caller| caller.session_id),
            asked,
        })
    }
}

impl ReadYourWrites {
    /// Waits until `projection` has applied what this query must see. Answers whether it has
    /// (`true` when there was nothing to wait for).
    pub async fn wait(&self, state: &AppState, projection: &'static str) -> Result<bool, ApiError> {
        let own = self
            .session
            .and_then(|session| state.own_writes.pending(session, projection));
        let Some(target) = self.asked.max(own) else {
            return Ok(true);
        };
        let timeout = state.settings.read_your_writes_timeout;
        let applied =
            keyframe_eventlog::projector::wait_until_applied(state.pool(), projection, target, timeout).await?;
        if applied && let Some(session) = self.session {
            state.own_writes.applied(session, projection, target);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sessions_newest_write_is_pending_until_a_read_model_has_applied_it() {
        let writes = OwnWrites::default();
        let session = SessionId::new();
        assert_eq!(writes.pending(session, "project_list"), None);
        writes.record(session, 10);
        writes.record(session, 7); // older: changes nothing
        assert_eq!(writes.pending(session, "project_list"), Some(10));
        writes.applied(session, "project_list", 10);
        assert_eq!(writes.pending(session, "project_list"), None);
        assert_eq!(writes.pending(session, "job_list"), Some(10), "per read model");
        writes.record(session, 12);
        assert_eq!(
            writes.pending(session, "project_list"),
            Some(12),
            "a newer write waits again"
        );
        assert_eq!(writes.pending(SessionId::new(), "project_list"), None, "per session");
    }
}
