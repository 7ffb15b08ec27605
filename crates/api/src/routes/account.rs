//! The caller's own account under `/api/v1/auth`: proving the e-mail address, resetting a
//! forgotten password by mail, changing the password, and the profile.
//!
//! The endpoints that take only an e-mail address (resend verification, request a reset)
//! answer 202 whatever the address, and do their work on a task of their own, so neither the
//! answer nor its timing tells whether an account exists.

use crate::auth::AuthUser;
use crate::auth::lockout::{Judgment, refused_guess};
use crate::auth::tokens::{hash_opaque_token, new_opaque_token, opaque_token_owner};
use crate::consistency::with_position;
use crate::context::RequestContext;
use crate::error::{ApiError, FieldError};
use crate::extract::ApiJson;
use crate::routes::auth::{UserView, execute_as_user, find_user, limit_per_account, load_caller};
use crate::routes::sessions::{EveryLiveSession, end_all_sessions};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use keyframe_domain::ids::UserId;
use keyframe_domain::session::{EndRequester, SessionEndReason};
use keyframe_domain::user::{ExpiringToken, User, UserCommand, UserError};
use keyframe_domain::values::{FullName, Password};
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

/// The user a mailed token names, loaded; an unknown or malformed token is `invalid_token`.
async fn token_user(state: &AppState, token: &str) -> Result<(UserId, User), ApiError> {
    let invalid = || ApiError::from(UserError::TokenInvalid);
    let user_id = opaque_token_owner(token).map(UserId).ok_or_else(invalid)?;
    let user = state
        .buses()
        .users
        .load_current(&user_id.to_string())
        .await
        .map_err(ApiError::from)?;
    Ok((user_id, user.ok_or_else(invalid)?))
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
    let (user_id, _) = token_user(&state, &body.token).await?;
    let token_hash = hash_opaque_token(&body.token);
    let command = || UserCommand::VerifyEmail {
        token_hash: token_hash.clone(),
        at: Utc::now(),
    };
    let position = execute_as_user(&state, &context, user_id, command).await?;
    let view = current_view(&state, user_id).await?;
    Ok(with_position(position, Json(view)))
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
    limit_per_account(&state, &context, &body.email)?;
    // Only the shape is checked here, which tells nothing about accounts.
    keyframe_domain::values::EmailAddress::parse("email", &body.email)?;
    mail_token_in_background(state, context, body.email, MailedToken::Verification);
    Ok(StatusCode::ACCEPTED)
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
    limit_per_account(&state, &context, &body.email)?;
    // Only the shape is checked here, which tells nothing about accounts.
    keyframe_domain::values::EmailAddress::parse("email", &body.email)?;
    mail_token_in_background(state, context, body.email, MailedToken::PasswordReset);
    Ok(StatusCode::ACCEPTED)
}

/// The kinds of single-use token Keyframe mails.
#[derive(Debug, Clone, Copy)]
enum MailedToken {
    Verification,
    PasswordReset,
}

/// On a task of its own, so the answer is the same at once for every address: if `email` has
/// an account (for a verification, an unverified one), records a new token and mails it.
fn mail_token_in_background(state: AppState, context: RequestContext, email: String, kind: MailedToken) {
    tokio::spawn(async move {
        let account = match find_user(&state, &email).await {
            Ok(account) => account,
            Err(error) => {
                tracing::error!(error = %error, "looking up an account for a mail failed");
                return;
            }
        };
        let Some((user_id, user)) = account else {
            return;
        };
        if matches!(kind, MailedToken::Verification) && user.email_verified() {
            return;
        }
        let ttl = match kind {
            MailedToken::Verification => state.settings.email_verification_ttl,
            MailedToken::PasswordReset => state.settings.password_reset_ttl,
        };
        let (token, hash) = new_opaque_token(user_id.0);
        let command = || {
            let token = ExpiringToken {
                hash: hash.clone(),
                expires_at: Utc::now() + ttl,
            };
            match kind {
                MailedToken::Verification => UserCommand::RequestEmailVerification { token, at: Utc::now() },
                MailedToken::PasswordReset => UserCommand::RequestPasswordReset { token, at: Utc::now() },
            }
        };
        let metadata = context.metadata(Actor::Anonymous);
        if let Err(error) = state
            .buses()
            .users
            .execute(&user_id.to_string(), command, &metadata)
            .await
        {
            tracing::error!(user = %user_id, error = %error, "recording a mailed token failed");
            return;
        }
        let mail = match kind {
            MailedToken::Verification => state.mailer.verification(user.email(), &token, ttl),
            MailedToken::PasswordReset => state.mailer.password_reset(user.email(), &token, ttl),
        };
        state.mailer.send_in_background(mail);
    });
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
    let (user_id, user) = token_user(&state, &body.token).await?;
    let password = new_password(&body.new_password, &user)?;
    let password_hash = state.passwords.hash(password).await?;
    let token_hash = hash_opaque_token(&body.token);
    let command = || UserCommand::ResetPassword {
        token_hash: token_hash.clone(),
        password_hash: password_hash.clone(),
        at: Utc::now(),
    };
    let position = execute_as_user(&state, &context, user_id, command).await?;
    state.session_guard.user_changed(user_id);
    // The reset already ends every older session (the guard and refresh check the reset's
    // time); ending each one as well puts it on the record and out of the sessions list.
    let which = EveryLiveSession {
        user: user_id,
        requested_by: EndRequester::Authority,
        reason: SessionEndReason::PasswordReset,
        also: None,
        keep: None,
        listed_after: Some(position),
    };
    end_all_sessions(&state, which, &context.metadata(Actor::User(user_id))).await?;
    let view = current_view(&state, user_id).await?;
    Ok(with_position(position, Json(view)))
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
    let user = load_caller(&state, caller.user_id).await?;
    refuse_while_locked(&user)?;
    // A stolen session guessing the password counts against the account like a login.
    let check = async |user: &User| {
        let current = Some(user.password_hash().clone());
        Ok(state
            .passwords
            .verify(body.current_password.clone(), current)
            .await?
            .then_some(()))
    };
    let user = match state
        .logins
        .judge(
            &state.buses().users,
            state.settings.lockout,
            &context,
            caller.user_id,
            check,
        )
        .await?
    {
        Judgment::Right(user, ()) => *user,
        Judgment::Wrong { .. } => {
            return Err(ApiError::Validation(vec![FieldError {
                field: "current_password".to_owned(),
                message: "is not the account's current password".to_owned(),
            }]));
        }
        Judgment::NotAdmitted { locked_until } => {
            return Err(refused_guess(locked_until, state.settings.lockout.threshold));
        }
    };
    let password = new_password(&body.new_password, &user)?;
    let password_hash = state.passwords.hash(password).await?;
    let command = || UserCommand::ChangePassword {
        password_hash: password_hash.clone(),
        kept_session: Some(caller.session_id),
        at: Utc::now(),
    };
    let position = execute_as_user(&state, &context, caller.user_id, command).await?;
    state.session_guard.user_changed(caller.user_id);
    let which = EveryLiveSession {
        user: caller.user_id,
        requested_by: EndRequester::Owner(caller.user_id),
        reason: SessionEndReason::PasswordChanged,
        also: None,
        keep: Some(caller.session_id),
        listed_after: Some(position),
    };
    let ended = end_all_sessions(&state, which, &context.metadata(Actor::User(caller.user_id))).await?;
    Ok(with_position(
        ended.unwrap_or(position).max(position),
        StatusCode::NO_CONTENT,
    ))
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
    let command = || UserCommand::UpdateProfile {
        full_name: full_name.clone(),
        at: Utc::now(),
    };
    let position = execute_as_user(&state, &context, caller.user_id, command).await?;
    let view = current_view(&state, caller.user_id).await?;
    Ok(with_position(position, Json(view)).into_response())
}

/// While failed logins lock the account, nothing that checks a password or code may run: the
/// lock would not bound guessing otherwise.
pub(crate) fn refuse_while_locked(user: &User) -> Result<(), ApiError> {
    match user.locked_until(Utc::now()) {
        Some(until) => Err(crate::auth::lockout::account_locked(until)),
        None => Ok(()),
    }
}

/// A new password for `user`, checked against the policy with the account's own details.
fn new_password(raw: &str, user: &User) -> Result<Password, ApiError> {
    let full_name = user.full_name().map(FullName::as_str).unwrap_or_default();
    Ok(Password::parse(
        "new_password",
        raw,
        &[user.email().as_str(), full_name],
    )?)
}

async fn current_view(state: &AppState, user_id: UserId) -> Result<UserView, ApiError> {
    Ok(UserView::of(user_id, &load_caller(state, user_id).await?))
}
