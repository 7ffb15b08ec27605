//! The routes, one module per resource. No route module imports another: what several share
//! lives outside `routes` (wire types in `views`, paging in `paging`, session answers in
//! `auth::answers`), and the routers are put together here.

pub mod account;
pub mod admin;
pub mod assets;
pub mod auth;
pub mod credits;
pub mod health;
pub mod jobs;
pub mod pages;
pub mod projects;
pub mod sessions;
pub mod settings;
pub mod subscriptions;
pub mod two_factor;

use crate::error::{ApiError, Code};
use crate::state::AppState;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};

/// Every `/api/v1/auth` route. Those a client calls without a session are counted against its
/// address (the `auth-ip` rate limit) in one layer; the others need an access token, which
/// counts against the user (`api-user`).
pub(crate) fn auth_router(state: AppState) -> Router<AppState> {
    let without_session = Router::new()
        .route("/register", post(auth::register))
        .route("/login", post(auth::login))
        .route("/login/totp", post(two_factor::login_totp))
        .route("/refresh", post(auth::refresh))
        .route("/verify-email", post(account::verify_email))
        .route("/resend-verification", post(account::resend_verification))
        .route("/password-reset/request", post(account::request_password_reset))
        .route("/password-reset/confirm", post(account::confirm_password_reset))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            crate::throttle::limit_by_client_address,
        ));
    let with_session = Router::new()
        .route("/logout", post(auth::logout))
        .route("/logout-all", post(sessions::logout_all))
        .route("/me", get(auth::me).patch(account::update_profile))
        .route("/me/password", post(account::change_password))
        .route("/sessions", get(sessions::list))
        .route("/sessions/{id}", axum::routing::delete(sessions::revoke))
        .route("/2fa/setup", post(two_factor::setup))
        .route("/2fa/enable", post(two_factor::enable))
        .route("/2fa/disable", post(two_factor::disable));
    without_session.merge(with_session)
}

/// Any path Keyframe does not serve.
pub async fn not_found() -> ApiError {
    ApiError::NotFound {
        detail: "no such endpoint".to_owned(),
    }
}

/// A known path with a method it does not take.
pub async fn method_not_allowed() -> ApiError {
    ApiError::BadRequest {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: Code::MethodNotAllowed,
        detail: "this endpoint does not take that method".to_owned(),
    }
}
