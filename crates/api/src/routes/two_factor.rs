//! `/api/v1/auth/2fa/*` and `/api/v1/auth/login/totp`: the TOTP second factor (use cases of
//! `keyframe_app::two_factor`).

use crate::auth::AuthUser;
use crate::auth::answers::session_answer;
use crate::consistency::with_position;
use crate::context::RequestContext;
use crate::error::{ApiError, Code};
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::throttle::limit_per_account;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use keyframe_eventlog::metadata::Actor;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A new secret, for an authenticator app.
#[derive(Debug, Serialize, ToSchema)]
pub struct TotpSetup {
    /// The secret, base32 (to type in).
    pub secret: String,
    /// `otpauth://totp/...` (to show as a QR code).
    pub otpauth_url: String,
}

/// A code from the authenticator app.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// Six digits.
    #[schema(schema_with = crate::openapi::fields::totp_code)]
    pub code: String,
}

/// The second step of a login.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpLoginRequest {
    /// From the first step's answer.
    pub mfa_token: String,
    /// Six digits from the authenticator app.
    #[schema(schema_with = crate::openapi::fields::totp_code)]
    pub code: String,
}

/// `POST /2fa/setup` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetupRequest {
    /// The account's password: a stolen access token alone must not be able to put a second
    /// factor of its own in front of the owner.
    pub password: String,
}

/// Make a new TOTP secret (replacing one set up and not yet enabled); needs the password.
#[utoipa::path(post, path = "/api/v1/auth/2fa/setup", tag = "auth", security(("bearer" = [])), request_body = SetupRequest,
    responses((status = 200, body = TotpSetup), (status = 401, body = crate::error::Problem),
        (status = 403, description = "`account_locked`", body = crate::error::Problem),
        (status = 409, description = "`totp_already_enabled`, or `too_many_attempts` (guesses for the account being judged)", body = crate::error::Problem),
        (status = 422, description = "a wrong password", body = crate::error::Problem)))]
pub async fn setup(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    ApiJson(body): ApiJson<SetupRequest>,
) -> Result<Response, ApiError> {
    let (enrolment, position) = state
        .app
        .set_up_totp(caller.user_id, &body.password, &caller.metadata(&context))
        .await?;
    let body = TotpSetup {
        secret: enrolment.secret_base32,
        otpauth_url: enrolment.otpauth_url,
    };
    Ok(with_position(position, Json(body)))
}

/// Turn the second factor on with a code of the secret just set up.
#[utoipa::path(post, path = "/api/v1/auth/2fa/enable", tag = "auth", security(("bearer" = [])), request_body = CodeRequest,
    responses((status = 204), (status = 400, description = "`invalid_totp_code`", body = crate::error::Problem),
        (status = 409, description = "`totp_not_set_up` or `totp_already_enabled`", body = crate::error::Problem)))]
pub async fn enable(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    ApiJson(body): ApiJson<CodeRequest>,
) -> Result<Response, ApiError> {
    let position = state
        .app
        .enable_totp(caller.user_id, &body.code, &caller.metadata(&context))
        .await?;
    Ok(with_position(position, StatusCode::NO_CONTENT))
}

/// Turn the second factor off; needs a current code.
#[utoipa::path(post, path = "/api/v1/auth/2fa/disable", tag = "auth", security(("bearer" = [])), request_body = CodeRequest,
    responses((status = 204), (status = 400, description = "`invalid_totp_code` or `totp_code_reused`", body = crate::error::Problem),
        (status = 403, description = "`account_locked`", body = crate::error::Problem),
        (status = 409, description = "`totp_not_enabled`, or `too_many_attempts` (guesses for the account being judged)", body = crate::error::Problem)))]
pub async fn disable(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    ApiJson(body): ApiJson<CodeRequest>,
) -> Result<Response, ApiError> {
    let position = state
        .app
        .disable_totp(caller.user_id, &body.code, &caller.metadata(&context))
        .await?;
    Ok(with_position(position, StatusCode::NO_CONTENT))
}

/// The second step of a login with a second factor: the `mfa_token` and a current code.
#[utoipa::path(post, path = "/api/v1/auth/login/totp", tag = "auth", request_body = TotpLoginRequest,
    responses((status = 200, body = crate::auth::answers::TokenResponse),
        (status = 401, description = "`invalid_mfa_token`, `invalid_totp_code` or `totp_code_reused`", body = crate::error::Problem),
        (status = 403, description = "`account_locked` or `account_suspended`", body = crate::error::Problem),
        (status = 409, description = "`too_many_attempts`: guesses for the account are being judged", body = crate::error::Problem)))]
pub async fn login_totp(
    State(state): State<AppState>,
    context: RequestContext,
    ApiJson(body): ApiJson<TotpLoginRequest>,
) -> Result<Response, ApiError> {
    let user_id = state.tokens.verify_mfa(&body.mfa_token).map_err(|_| {
        ApiError::unauthorized(
            Code::InvalidMfaToken,
            "the mfa_token is invalid or expired; log in again",
        )
    })?;
    let user = state.app.account(user_id).await?;
    limit_per_account(&state, &context, user.email().as_str())?;
    let session = state
        .app
        .log_in_with_code(user_id, &body.code, &context.metadata(Actor::Anonymous))
        .await?;
    Ok(session_answer(&state, session))
}
