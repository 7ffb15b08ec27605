//! How a started or renewed session answers over HTTP: the token pair in the body (an access
//! JWT and the opaque refresh token) and the refresh token again as an HttpOnly cookie.

use crate::consistency::with_position;
use crate::state::AppState;
use axum::Json;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use keyframe_app::sessions::SessionStarted;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// Name of the refresh-token cookie.
pub const REFRESH_COOKIE: &str = "keyframe_refresh";

/// The user inside a token answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenUser {
    /// The user's id.
    pub id: Uuid,
    /// E-mail address.
    pub email: String,
    /// Roles held.
    pub roles: Vec<String>,
}

/// A token pair.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// The JWT to send as `Authorization: Bearer`.
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// Opaque; trade it at `/refresh` for a new pair. Works once.
    pub refresh_token: String,
    /// Who is logged in.
    pub user: TokenUser,
}

/// The answer to a session started or renewed: an access token for it, the refresh token in
/// the body and in the cookie, and the position of the session's event.
pub fn session_answer(state: &AppState, session: SessionStarted) -> Response {
    let (access_token, expires_in) = state
        .tokens
        .issue_access(session.user_id, session.session_id, session.at);
    let cookie = refresh_cookie(
        state,
        &session.refresh_token,
        state.settings.refresh_token_ttl.as_secs(),
    );
    let body = TokenResponse {
        access_token,
        token_type: "bearer",
        expires_in,
        refresh_token: session.refresh_token,
        user: TokenUser {
            id: session.user_id.0,
            email: session.user.email().to_string(),
            roles: session.user.role_names(),
        },
    };
    let mut response = Json(body).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    // The new session's first read (its list of sessions, say) must show it.
    state.own_writes.record(session.session_id, session.position);
    with_position(session.position, response)
}

/// The refresh cookie: HttpOnly, scoped to the auth endpoints, `Secure` behind TLS.
fn refresh_cookie(state: &AppState, value: &str, max_age_secs: u64) -> String {
    let secure = if state.settings.secure_cookies || state.settings.behind_tls {
        "; Secure"
    } else {
        ""
    };
    format!("{REFRESH_COOKIE}={value}; Path=/api/v1/auth; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}")
}

/// Adds a `Set-Cookie` that deletes the refresh cookie.
pub fn clear_refresh_cookie(state: &AppState, mut response: Response) -> Response {
    if let Ok(cookie) = HeaderValue::from_str(&refresh_cookie(state, "", 0)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// The refresh token from the cookie, if sent.
pub fn refresh_cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == REFRESH_COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// The answer to a session ended (with the position, when anything was written): the refresh
/// cookie is deleted.
pub fn session_ended(state: &AppState, position: Option<i64>) -> Response {
    let response = clear_refresh_cookie(state, axum::http::StatusCode::NO_CONTENT.into_response());
    match position {
        Some(position) => with_position(position, response),
        None => response,
    }
}
