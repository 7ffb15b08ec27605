//! The caller's own account under `/api/v1/auth`: proving the e-mail address, resetting a
//! forgotten password by mail, changing the password, and the profile (use cases of
//! `keyframe_app::accounts`).
//!
//! The endpoints that take only an e-mail address (resend verification, request a reset)
//! answer 202 whatever the address, and do their work on a task of their own, so neither the
//! answer nor its timing tells whether an account exists.

use crate::auth::AuthUser;
use crate::consistency::with_position;
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::throttle::limit_per_account;
use crate::views::UserView;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyframe_app::accounts::MailedToken;
use keyframe_domain::values::FullName;
use keyframe_eventlog::metadata::Actor;
use serde::Deserialize;
use utoipa::ToSchema;

/// A mailed token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// The token from the mail.
    pub token: String,
}

/// An e-mail address.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailRequest {
    /// The account's address.
    #[schema(schema_with = crate::openapi::fields::email)]
    pub email: String,
}

/// `POST /password-reset/confirm` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPasswordRequest {
    /// The token from the mail.
    pub token: String,
    /// The new password (same policy as at registration).
    #[schema(schema_with = crate::openapi::fields::new_password)]
    pub new_password: String,
}

/// `POST /me/password` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    /// The password now in use.
    pub current_password: String,
    /// The new one (same policy as at registration).
    #[schema(schema_with = crate::openapi::fields::new_password)]
    pub new_password: String,
}

/// `PATCH /me` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfileRequest {
    /// Display name, up to 200 characters; `null` removes it.
    #[schema(schema_with = crate::openapi::fields::full_name_or_null)]
    pub full_name: Option<String>,
}

/// Prove the e-mail address with the token from the verification mail.
#[utoipa::path(post, path = "/api/v1/auth/verify-email", tag = "auth", request_body = TokenRequest,
    responses((status = 200, body = UserView),
        (status = 400, description = "`invalid_token` (unknown or used) or `token_expired`", body = crate::error::Problem)))]
pub async fn verify_email(
    State(state): State<AppState>,
    context: RequestContext,
    ApiJson(body): ApiJson<TokenRequest>,
) -> Result<Response, ApiError> {
    let (user_id, user, position) = state
        .app
        .verify_email(&body.token, &context.metadata(Actor::Anonymous))
        .await?;
    Ok(with_position(position, Json(UserView::of(user_id, &user))))
}

/// Send another verification mail (the previous link stops working). Always 202.
#[utoipa::path(post, path = "/api/v1/auth/resend-verification", tag = "auth", request_body = EmailRequest,
    responses((status = 202, description = "A mail is on its way if the address has an unverified account"),
        (status = 422, description = "`validation_failed`: not an e-mail address", body = crate::error::Problem)))]
pub async fn resend_verification(
    State(state): State<AppState>,
    context: RequestContext,
    ApiJson(body): ApiJson<EmailRequest>,
) -> Result<StatusCode, ApiError> {
    mail_token(state, context, body.email, MailedToken::Verification)
}

/// Mail a password-reset link. Always 202, whether or not the address has an account.
#[utoipa::path(post, path = "/api/v1/auth/password-reset/request", tag = "auth", request_body = EmailRequest,
    responses((status = 202, description = "A mail is on its way if the address has an account"),
        (status = 422, description = "`validation_failed`: not an e-mail address", body = crate::error::Problem)))]
pub async fn request_password_reset(
    State(state): State<AppState>,
    context: RequestContext,
    ApiJson(body): ApiJson<EmailRequest>,
) -> Result<StatusCode, ApiError> {
    mail_token(state, context, body.email, MailedToken::PasswordReset)
}

/// Counts the request against the address, checks only its shape (which tells nothing about
/// accounts), and mails the token on a task of its own, so the answer is the same at once for
/// every address.
fn mail_token(
    state: AppState,
    context: RequestContext,
    email: String,
    kind: MailedToken,
) -> Result<StatusCode, ApiError> {
    limit_per_account(&state, &context, &email)?;
    keyframe_domain::values::EmailAddress::parse("email", &email)?;
    tokio::spawn(async move {
        let origin = context.metadata(Actor::Anonymous);
        state.app.mail_token(&email, kind, &origin).await;
    });
    Ok(StatusCode::ACCEPTED)
}

/// Set a new password with the token from the reset mail. Ends every session of the account
/// and lifts a lockout.
#[utoipa::path(post, path = "/api/v1/auth/password-reset/confirm", tag = "auth", request_body = ResetPasswordRequest,
    responses((status = 200, body = UserView),
        (status = 400, description = "`invalid_token` (unknown or used) or `token_expired`", body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)))]
pub async fn confirm_password_reset(
    State(state): State<AppState>,
    context: RequestContext,
    ApiJson(body): ApiJson<ResetPasswordRequest>,
) -> Result<Response, ApiError> {
    let (user_id, user, position) = state
        .app
        .reset_password(&body.token, &body.new_password, &context.metadata(Actor::Anonymous))
        .await?;
    Ok(with_position(position, Json(UserView::of(user_id, &user))))
}

/// Change the password; every other session of the account ends.
#[utoipa::path(post, path = "/api/v1/auth/me/password", tag = "auth", security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses((status = 204), (status = 401, body = crate::error::Problem),
        (status = 403, description = "`account_locked`", body = crate::error::Problem),
        (status = 409, description = "`too_many_attempts`: guesses for the account are being judged", body = crate::error::Problem),
        (status = 422, description = "`validation_failed`: a wrong current password or a weak new one", body = crate::error::Problem)))]
pub async fn change_password(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    ApiJson(body): ApiJson<ChangePasswordRequest>,
) -> Result<Response, ApiError> {
    let position = state
        .app
        .change_password(
            caller.user_id,
            caller.session_id,
            &body.current_password,
            &body.new_password,
            &caller.metadata(&context),
        )
        .await?;
    Ok(with_position(position, StatusCode::NO_CONTENT))
}

/// Change the display name.
#[utoipa::path(patch, path = "/api/v1/auth/me", tag = "auth", security(("bearer" = [])),
    request_body = UpdateProfileRequest,
    responses((status = 200, body = UserView), (status = 401, body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)))]
pub async fn update_profile(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    ApiJson(body): ApiJson<UpdateProfileRequest>,
) -> Result<Response, ApiError> {
    let full_name = body
        .full_name
        .as_deref()
        .map(|name| FullName::parse("full_name", name))
        .transpose()?;
    let (user, position) = state
        .app
        .update_profile(caller.user_id, full_name, &caller.metadata(&context))
        .await?;
    Ok(with_position(position, Json(UserView::of(caller.user_id, &user))).into_response())
}
