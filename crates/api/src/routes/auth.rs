//! `/api/v1/auth`: registration, login, token refresh, logout and the caller's own account.
//! The work is the identity use cases' (`keyframe_app::{accounts, sessions}`); these handlers
//! read requests, count them under the rate limits and answer.

use crate::auth::AuthUser;
use crate::auth::answers::{TokenResponse, refresh_cookie_value, session_answer, session_ended};
use crate::auth::tokens::MFA_TOKEN_TTL_SECS;
use crate::consistency::with_position;
use crate::context::RequestContext;
use crate::error::{ApiError, Code, FieldError};
use crate::extract::{ApiJson, json_problem};
use crate::state::AppState;
use crate::throttle::limit_per_account;
use crate::views::UserView;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use keyframe_app::sessions::LoginOutcome;
use keyframe_domain::values::{EmailAddress, FullName, Password, ValidationError};
use keyframe_eventlog::metadata::Actor;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /register` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// E-mail address; trimmed and lower-cased.
    #[schema(schema_with = crate::openapi::fields::email)]
    pub email: String,
    /// At least 15 characters, at most 256; no composition rules; not a common or guessable
    /// password.
    #[schema(schema_with = crate::openapi::fields::new_password)]
    pub password: String,
    /// Display name, up to 200 characters.
    #[schema(schema_with = crate::openapi::fields::full_name_or_null)]
    pub full_name: Option<String>,
}

/// `POST /register` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegisterResponse {
    /// The new account.
    pub user: UserView,
}

/// Collects every field's problem before answering, so a client fixes a form in one round.
fn collect<T>(result: Result<T, ValidationError>, errors: &mut Vec<FieldError>) -> Option<T> {
    result
        .map_err(|error| {
            errors.push(FieldError {
                field: error.field.to_owned(),
                message: error.message,
            })
        })
        .ok()
}

/// Create an account; a mail with a verification link goes to the address.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = RegisterRequest,
    responses((status = 201, body = RegisterResponse), (status = 409, description = "`email_taken`", body = crate::error::Problem),
        (status = 422, body = crate::error::Problem)))]
pub async fn register(
    State(state): State<AppState>,
    context: RequestContext,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<Response, ApiError> {
    let mut errors = Vec::new();
    let email = collect(EmailAddress::parse("email", &body.email), &mut errors);
    let related = [body.email.as_str(), body.full_name.as_deref().unwrap_or_default()];
    let password = collect(Password::parse("password", &body.password, &related), &mut errors);
    let full_name = match body.full_name.as_deref() {
        Some(name) => collect(FullName::parse("full_name", name).map(Some), &mut errors),
        None => Some(None),
    };
    let (Some(email), Some(password), Some(full_name)) = (email, password, full_name) else {
        return Err(ApiError::Validation(errors));
    };
    let (user_id, user, position) = state
        .app
        .register(email, password, full_name, &context.metadata(Actor::Anonymous))
        .await?;
    let body = RegisterResponse {
        user: UserView::of(user_id, &user),
    };
    Ok(with_position(position, (StatusCode::CREATED, Json(body))))
}

/// `POST /login` body, as JSON.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The account's e-mail.
    pub email: String,
    /// Its password.
    pub password: String,
}

/// `POST /login` body, as an OAuth2 password-grant form (`username` is the e-mail).
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    /// The account's e-mail.
    pub username: String,
    /// Its password.
    pub password: String,
}

/// Credentials from either body kind.
pub struct Credentials {
    email: String,
    password: String,
}

impl<S: Send + Sync> FromRequest<S> for Credentials {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let is_form = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            let Form(form) = Form::<LoginForm>::from_request(request, state)
                .await
                .map_err(|rejection| ApiError::bad_request(Code::InvalidBody, rejection.body_text()))?;
            Ok(Self {
                email: form.username,
                password: form.password,
            })
        } else {
            let ApiJson(body) = ApiJson::<LoginRequest>::from_request(request, state).await?;
            Ok(Self {
                email: body.email,
                password: body.password,
            })
        }
    }
}

/// Log in with e-mail and password (JSON, or an OAuth2 password form).
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, description = "The token pair, or an `MfaChallenge` when the account has a second factor", body = TokenResponse),
        (status = 401, description = "`invalid_credentials`", body = crate::error::Problem),
        (status = 403, description = "`email_not_verified` or `account_suspended` (a locked account answers 401 like a wrong password)", body = crate::error::Problem)))]
pub async fn login(
    State(state): State<AppState>,
    context: RequestContext,
    credentials: Credentials,
) -> Result<Response, ApiError> {
    limit_per_account(&state, &context, &credentials.email)?;
    let outcome = state
        .app
        .login(
            &credentials.email,
            &credentials.password,
            &context.metadata(Actor::Anonymous),
        )
        .await?;
    match outcome {
        LoginOutcome::Started(session) => Ok(session_answer(&state, *session)),
        LoginOutcome::SecondFactorRequired(user_id) => {
            let body = MfaChallenge {
                mfa_required: true,
                mfa_token: state.tokens.issue_mfa(user_id, keyframe_domain::clock::now()),
                expires_in: MFA_TOKEN_TTL_SECS.unsigned_abs(),
            };
            Ok(Json(body).into_response())
        }
    }
}

/// The answer to a correct password when the account has a second factor.
#[derive(Debug, Serialize, ToSchema)]
pub struct MfaChallenge {
    /// Always `true`: send a TOTP code to `POST /api/v1/auth/login/totp`.
    pub mfa_required: bool,
    /// Proves the password; send it with the code.
    pub mfa_token: String,
    /// Seconds the `mfa_token` works.
    pub expires_in: u64,
}

/// `POST /refresh` body; may be omitted when the refresh cookie is sent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token from the last login or refresh.
    pub refresh_token: String,
}

/// Trade a refresh token for a new pair; the old refresh token stops working.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 401, description = "`invalid_refresh_token`", body = crate::error::Problem)))]
pub async fn refresh(
    State(state): State<AppState>,
    context: RequestContext,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let presented = if body.is_empty() {
        refresh_cookie_value(&headers).ok_or_else(|| {
            ApiError::unauthorized(
                Code::MissingRefreshToken,
                "send the refresh token in the body or cookie",
            )
        })?
    } else {
        let axum::Json(request) = axum::Json::<RefreshRequest>::from_bytes(&body).map_err(json_problem)?;
        request.refresh_token
    };
    let session = state
        .app
        .refresh_session(&presented, &context.metadata(Actor::Anonymous))
        .await?;
    Ok(session_answer(&state, session))
}

/// End the current session: its refresh token stops working.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = crate::error::Problem)))]
pub async fn logout(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
) -> Result<Response, ApiError> {
    let position = state
        .app
        .logout(caller.user_id, caller.session_id, &caller.metadata(&context))
        .await?;
    Ok(session_ended(&state, position))
}

/// The caller's account.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = crate::error::Problem)))]
pub async fn me(State(state): State<AppState>, caller: AuthUser) -> Result<Json<UserView>, ApiError> {
    let user = state.app.account(caller.user_id).await?;
    Ok(Json(UserView::of(caller.user_id, &user)))
}
