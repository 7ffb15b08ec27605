//! Authentication at the HTTP edge: access tokens, and the extractor that turns a bearer token
//! into the caller.

pub mod answers;
pub mod tokens;

use crate::context::RequestContext;
use crate::error::{ApiError, Code};
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use keyframe_domain::ids::{SessionId, UserId};
use keyframe_eventlog::metadata::{Actor, CommandMetadata};

/// The caller, proven by a valid access token. Use it as an extractor on protected routes.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    /// Who.
    pub user_id: UserId,
    /// Through which session.
    pub session_id: SessionId,
    /// Whether the caller is an administrator.
    pub admin: bool,
}

impl AuthUser {
    /// The caller as the authorization policy sees them.
    pub fn actor(&self) -> keyframe_app::policy::Actor {
        keyframe_app::policy::Actor {
            user_id: self.user_id,
            admin: self.admin,
        }
    }

    /// The metadata of the events the caller's command causes within the request `context`.
    pub fn metadata(&self, context: &RequestContext) -> CommandMetadata {
        context.metadata(Actor::User(self.user_id))
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(caller) = parts.extensions.get::<Self>() {
            // Already checked by a layer in front of the handler (the admin routes').
            return Ok(*caller);
        }
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized(Code::MissingToken, "send `Authorization: Bearer <access token>`"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
            .ok_or_else(|| {
                ApiError::unauthorized(Code::InvalidToken, "the Authorization header must be `Bearer <token>`")
            })?;
        let invalid = || ApiError::unauthorized(Code::InvalidToken, "the access token is invalid or expired");
        let claims = state.tokens.verify_access(token.trim()).map_err(|_| invalid())?;
        let (user_id, session_id) = (UserId(claims.sub), SessionId(claims.sid));
        let access = state
            .app
            .session_guard
            .access(&state.buses().sessions, &state.buses().users, session_id, user_id)
            .await
            .map_err(|error| ApiError::from_command(error, |_| invalid()))?;
        let Some(access) = access else {
            return Err(ApiError::unauthorized(
                Code::SessionEnded,
                "the session of this token has ended; log in again",
            ));
        };
        crate::throttle::enforce(
            state.limiter.as_ref(),
            state.settings.rate_limits.api_user(),
            &user_id.to_string(),
            parts.extensions.get(),
        )?;
        let caller = Self {
            user_id,
            session_id,
            admin: access.admin,
        };
        // For what runs after: the request's later extractors (read-your-writes) and, once the
        // response is ready, the middleware that remembers the session's writes.
        if let Some(slot) = parts.extensions.get::<crate::own_writes::CallerSlot>() {
            slot.fill(session_id);
        }
        Ok(caller)
    }
}
