//! `/api/v1/auth/2fa/*` and `/api/v1/auth/login/totp`: TOTP second factor (RFC 6238: SHA-1,
//! six digits, 30-second steps, one step of clock skew either way).
//!
//! The secret is sealed under the master key before it reaches an event. Every accepted code
//! records its time step, and the `User` aggregate refuses a step at or before the last one, so
//! no code works twice. A wrong code counts as a failed login, so the lockout also bounds
//! guessing the six digits.

use crate::auth::AuthUser;
use crate::auth::lockout::{Judgment, refused_guess};
use crate::consistency::with_position;
use crate::context::RequestContext;
use crate::error::{ApiError, Code};
use crate::extract::ApiJson;
use crate::routes::auth::{execute_as_user, load_caller, start_session};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use keyframe_domain::ids::UserId;
use keyframe_domain::user::{User, UserCommand};
use keyframe_domain::values::SealedSecret;
use keyframe_eventlog::metadata::Actor;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use totp_rs::{Algorithm, TOTP};
use utoipa::ToSchema;

/// Bytes of a new secret: 160 bits, RFC 4226's recommendation for SHA-1.
const SECRET_BYTES: usize = 20;
/// Seconds per step.
const STEP_SECS: u64 = 30;
/// The issuer shown in authenticator apps.
const ISSUER: &str = "Keyframe";

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

fn sealing_context(user: UserId) -> String {
    format!("totp-secret:{user}")
}

fn totp(secret: Vec<u8>, account: &str) -> Result<TOTP, ApiError> {
    TOTP::new(
        Algorithm::SHA1,
        6,
        0,
        STEP_SECS,
        secret,
        Some(ISSUER.to_owned()),
        // The label may not hold ':' (the otpauth URL's issuer separator); an address may.
        account.replace(':', "_"),
    )
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("building the TOTP: {e}")))
}

/// The time step whose code `code` is, among the current one and one either side; `None` when
/// it is none of them.
fn matching_step(
    state: &AppState,
    user_id: UserId,
    user: &User,
    sealed: &SealedSecret,
    code: &str,
) -> Result<Option<u64>, ApiError> {
    let secret = state
        .master_key
        .open(sealed, &sealing_context(user_id))
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("opening a TOTP secret: {e}")))?;
    let totp = totp(secret, user.email().as_str())?;
    let code = code.trim();
    if code.len() != 6 || !code.chars().all(|c| c.is_ascii_digit()) {
        return Ok(None);
    }
    let now = u64::try_from(Utc::now().timestamp()).unwrap_or_default();
    Ok([now.saturating_sub(STEP_SECS), now, now + STEP_SECS]
        .into_iter()
        .find(|time| totp.check(code, *time))
        .map(|time| time / STEP_SECS))
}

fn invalid_code() -> ApiError {
    ApiError::bad_request(
        Code::InvalidTotpCode,
        "the code is not the current one of the authenticator",
    )
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
    let user = load_caller(&state, caller.user_id).await?;
    crate::routes::account::refuse_while_locked(&user)?;
    if user.totp_secret().is_some() {
        return Err(ApiError::from(keyframe_domain::user::UserError::TotpAlreadyEnabled));
    }
    let check = async |user: &User| {
        let hash = Some(user.password_hash().clone());
        Ok(state.passwords.verify(body.password.clone(), hash).await?.then_some(()))
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
            return Err(ApiError::Validation(vec![crate::error::FieldError {
                field: "password".to_owned(),
                message: "is not the account's password".to_owned(),
            }]));
        }
        Judgment::NotAdmitted { locked_until } => {
            return Err(refused_guess(locked_until, state.settings.lockout.threshold));
        }
    };
    let mut secret = vec![0_u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut secret);
    let sealed = state.master_key.seal(&secret, &sealing_context(caller.user_id));
    let totp = totp(secret, user.email().as_str())?;
    let command = || UserCommand::StartTotpEnrolment {
        secret: sealed.clone(),
        at: Utc::now(),
    };
    let position = execute_as_user(&state, &context, caller.user_id, command).await?;
    let body = TotpSetup {
        secret: totp.get_secret_base32(),
        otpauth_url: totp.get_url(),
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
    let user = load_caller(&state, caller.user_id).await?;
    if user.totp_secret().is_some() {
        return Err(ApiError::from(keyframe_domain::user::UserError::TotpAlreadyEnabled));
    }
    let pending = user
        .totp_pending()
        .ok_or_else(|| ApiError::from(keyframe_domain::user::UserError::TotpNotSetUp))?;
    let step = matching_step(&state, caller.user_id, &user, pending, &body.code)?.ok_or_else(invalid_code)?;
    let command = || UserCommand::EnableTotp {
        secret: pending.clone(),
        step,
        at: Utc::now(),
    };
    let position = execute_as_user(&state, &context, caller.user_id, command).await?;
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
    let user = load_caller(&state, caller.user_id).await?;
    crate::routes::account::refuse_while_locked(&user)?;
    if user.totp_secret().is_none() {
        return Err(ApiError::from(keyframe_domain::user::UserError::TotpNotEnabled));
    }
    let check = async |user: &User| match user.totp_secret() {
        Some(secret) => matching_step(&state, caller.user_id, user, secret, &body.code),
        None => Err(ApiError::from(keyframe_domain::user::UserError::TotpNotEnabled)),
    };
    let step = match state
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
        Judgment::Right(_, step) => step,
        Judgment::Wrong { .. } => return Err(invalid_code()),
        Judgment::NotAdmitted { locked_until } => {
            return Err(refused_guess(locked_until, state.settings.lockout.threshold));
        }
    };
    let command = || UserCommand::DisableTotp { step, at: Utc::now() };
    let position = execute_as_user(&state, &context, caller.user_id, command).await?;
    Ok(with_position(position, StatusCode::NO_CONTENT))
}

/// The second step of a login with a second factor: the `mfa_token` and a current code.
#[utoipa::path(post, path = "/api/v1/auth/login/totp", tag = "auth", request_body = TotpLoginRequest,
    responses((status = 200, body = crate::routes::auth::TokenResponse),
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
    let user = load_caller(&state, user_id).await?;
    crate::routes::auth::limit_per_account(&state, &context, user.email().as_str())?;
    crate::routes::account::refuse_while_locked(&user)?;
    if user.suspension().is_some() {
        return Err(ApiError::Forbidden {
            code: Code::AccountSuspended,
            detail: "this account is suspended; contact support".to_owned(),
        });
    }
    let totp_off = || ApiError::unauthorized(Code::InvalidMfaToken, "two-factor authentication is off; log in again");
    if user.totp_secret().is_none() {
        return Err(totp_off());
    }
    let check = async |user: &User| match user.totp_secret() {
        Some(secret) => matching_step(&state, user_id, user, secret, &body.code),
        None => Err(totp_off()),
    };
    let (user, step) = match state
        .logins
        .judge(&state.buses().users, state.settings.lockout, &context, user_id, check)
        .await?
    {
        Judgment::Right(user, step) => (*user, step),
        Judgment::Wrong { .. } => {
            return Err(ApiError::unauthorized(
                Code::InvalidTotpCode,
                "the code is not the current one of the authenticator",
            ));
        }
        Judgment::NotAdmitted { locked_until } => {
            return Err(refused_guess(locked_until, state.settings.lockout.threshold));
        }
    };
    let command = || UserCommand::AcceptTotpCode { step, at: Utc::now() };
    let metadata = context.metadata(Actor::User(user_id));
    state
        .buses()
        .users
        .execute(&user_id.to_string(), command, &metadata)
        .await
        .map_err(|e| {
            ApiError::from_command(e, |error| match error {
                keyframe_domain::user::UserError::TotpCodeReused => ApiError::unauthorized(
                    Code::TotpCodeReused,
                    "this code was already used; wait for the next one",
                ),
                other => ApiError::from(other),
            })
        })?;
    start_session(&state, &context, user_id, &user)
        .await
        .map(IntoResponse::into_response)
}
