//! `/api/v1/auth`: registration, login, token refresh, logout and the caller's own account.

use crate::auth::AuthUser;
use crate::auth::lockout::Judgment;
use crate::auth::tokens::{MFA_TOKEN_TTL_SECS, hash_opaque_token, new_opaque_token, opaque_token_owner};
use crate::consistency::with_position;
use crate::context::RequestContext;
use crate::error::{ApiError, Code, FieldError};
use crate::extract::{ApiJson, json_problem};
use crate::routes::sessions::end_session;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate as _;
use keyframe_domain::ids::{SessionId, UserId};
use keyframe_domain::session::{EndRequester, SessionCommand, SessionEndReason, SessionError};
use keyframe_domain::user::{ExpiringToken, User, UserCommand};
use keyframe_domain::values::{EmailAddress, FullName, Password, PasswordHash, TokenHash, ValidationError};
use keyframe_eventlog::commands::CommandError;
use keyframe_eventlog::metadata::{Actor, CommandMetadata};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use utoipa::ToSchema;
use uuid::Uuid;

/// Name of the refresh-token cookie.
pub const REFRESH_COOKIE: &str = "keyframe_refresh";

/// Every `/api/v1/auth` route. Those a client calls without a session are counted against its
/// address (the `auth-ip` rate limit) in one layer; the others need an access token, which
/// counts against the user (`api-user`).
pub(crate) fn router(state: AppState) -> Router<AppState> {
    use super::{account, sessions, two_factor};
    let without_session = Router::new()
        .route("/register", post(register))
        .route("/login", post(login))
        .route("/login/totp", post(two_factor::login_totp))
        .route("/refresh", post(refresh))
        .route("/verify-email", post(account::verify_email))
        .route("/resend-verification", post(account::resend_verification))
        .route("/password-reset/request", post(account::request_password_reset))
        .route("/password-reset/confirm", post(account::confirm_password_reset))
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            crate::throttle::limit_by_client_address,
        ));
    let with_session = Router::new()
        .route("/logout", post(logout))
        .route("/logout-all", post(sessions::logout_all))
        .route("/me", get(me).patch(account::update_profile))
        .route("/me/password", post(account::change_password))
        .route("/sessions", get(sessions::list))
        .route("/sessions/{id}", axum::routing::delete(sessions::revoke))
        .route("/2fa/setup", post(two_factor::setup))
        .route("/2fa/enable", post(two_factor::enable))
        .route("/2fa/disable", post(two_factor::disable));
    without_session.merge(with_session)
}

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

/// A user as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// The user's id.
    pub id: Uuid,
    /// Normalised e-mail address.
    pub email: String,
    /// Display name.
    pub full_name: Option<String>,
    /// Roles held.
    pub roles: Vec<String>,
    /// Whether the address was proven with a mailed link.
    pub email_verified: bool,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
}

impl UserView {
    pub(crate) fn of(id: UserId, user: &User) -> Self {
        Self {
            id: id.0,
            email: user.email().to_string(),
            full_name: user.full_name().map(|name| name.as_str().to_owned()),
            roles: user.role_names(),
            email_verified: user.email_verified(),
            created_at: user.registered_at().unwrap_or_default(),
        }
    }
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

    let password_hash = state.passwords.hash(password).await?;
    let user_id = UserId::new();
    let (verification_token, verification_hash) = new_opaque_token(user_id.0);
    let verification = ExpiringToken {
        hash: verification_hash,
        expires_at: Utc::now() + state.settings.email_verification_ttl,
    };
    let account = NewAccount {
        user_id,
        email: email.clone(),
        password_hash,
        full_name,
        verification: Some(verification),
    };
    let position = create_account(&state, account, &context.metadata(Actor::Anonymous)).await?;
    state
        .app
        .grant_signup_bonus(user_id, &context.metadata(Actor::User(user_id)))
        .await;
    let user = state
        .buses()
        .users
        .load_current(&user_id.to_string())
        .await
        .map_err(ApiError::from)?;
    let user = user.ok_or_else(|| anyhow::anyhow!("user {user_id} vanished after registration"))?;
    let mail = state
        .mailer
        .verification(&email, &verification_token, state.settings.email_verification_ttl);
    state.mailer.send_in_background(mail);
    let body = RegisterResponse {
        user: UserView::of(user_id, &user),
    };
    Ok(with_position(position, (StatusCode::CREATED, Json(body))))
}

/// An account to create.
pub(crate) struct NewAccount {
    /// Its id.
    pub user_id: UserId,
    /// The address, unique across accounts.
    pub email: EmailAddress,
    /// The password's hash.
    pub password_hash: PasswordHash,
    /// Display name.
    pub full_name: Option<FullName>,
    /// The verification token to mail, if any.
    pub verification: Option<ExpiringToken>,
}

/// Reserves the address (409 `email_taken` when another account holds it) and registers the
/// account; a failed registration frees the address again.
pub(crate) async fn create_account(
    state: &AppState,
    account: NewAccount,
    metadata: &CommandMetadata,
) -> Result<i64, ApiError> {
    let NewAccount {
        user_id,
        email,
        password_hash,
        full_name,
        verification,
    } = account;
    let reserved =
        sqlx::query("INSERT INTO email_reservations (email, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(email.as_str())
            .bind(user_id.0)
            .execute(state.pool())
            .await?
            .rows_affected()
            == 1;
    if !reserved {
        return Err(ApiError::Conflict {
            code: Code::EmailTaken,
            detail: "an account with this e-mail exists".to_owned(),
        });
    }
    let now = Utc::now();
    let command = || UserCommand::RegisterUser {
        user_id,
        email: email.clone(),
        password_hash: password_hash.clone(),
        full_name: full_name.clone(),
        verification: verification.clone(),
        at: now,
    };
    match state
        .buses()
        .users
        .execute_new(&user_id.to_string(), command, metadata)
        .await
    {
        Ok(position) => Ok(position),
        Err(error) => {
            // Registration failed: free the address for another try, unless the user was
            // written after all (a connection lost after the commit answers like a failure).
            let freed = sqlx::query(
                "DELETE FROM email_reservations WHERE email = $1 AND user_id = $2
                 AND NOT EXISTS (SELECT 1 FROM events WHERE aggregate_type = $3 AND aggregate_id = $4)",
            )
            .bind(email.as_str())
            .bind(user_id.0)
            .bind(User::TYPE)
            .bind(user_id.to_string())
            .execute(state.pool())
            .await;
            if let Err(cleanup) = freed {
                tracing::warn!(error = %cleanup, email_owner = %user_id, "an e-mail reservation stays behind");
            }
            Err(ApiError::from(error))
        }
    }
}

/// Runs a command on `user_id`'s account on the user's own behalf, answering refusals as
/// problems; answers the position of what it wrote.
pub(crate) async fn execute_as_user(
    state: &AppState,
    context: &RequestContext,
    user_id: UserId,
    command: impl FnMut() -> UserCommand,
) -> Result<i64, ApiError> {
    let metadata = context.metadata(Actor::User(user_id));
    state
        .buses()
        .users
        .execute(&user_id.to_string(), command, &metadata)
        .await
        .map_err(ApiError::from)
}

/// The caller's account; gone (it never is, but the token outlived it) answers 401.
pub(crate) async fn load_caller(state: &AppState, user_id: UserId) -> Result<User, ApiError> {
    state
        .buses()
        .users
        .load_current(&user_id.to_string())
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| ApiError::unauthorized(Code::InvalidToken, "the account no longer exists"))
}

/// How the `User` aggregate's refusals answer.
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
    let started = Instant::now();
    let invalid = || ApiError::unauthorized(Code::InvalidCredentials, "the e-mail or password is wrong");
    limit_per_account(&state, &context, &credentials.email)?;
    let Credentials { email, password } = credentials;
    let user_id = find_user_id(&state, &email).await?;
    let judgment = match user_id {
        Some(user_id) => {
            let check = async |user: &User| {
                let hash = Some(user.password_hash().clone());
                Ok(state.passwords.verify(password.clone(), hash).await?.then_some(()))
            };
            state
                .logins
                .judge(&state.buses().users, state.settings.lockout, &context, user_id, check)
                .await?
        }
        None => Judgment::NotAdmitted { locked_until: None },
    };
    let (user_id, user) = match (user_id, judgment) {
        (Some(user_id), Judgment::Right(user, ())) => (user_id, *user),
        (_, Judgment::Wrong { queued }) => {
            state.logins.judged_wrong(started, queued);
            return Err(invalid());
        }
        // No such account, or a locked one: the same answer as a wrong password, after the
        // same work and about the same time, or the answer would tell that the address has an
        // account. The owner of a locked one gets out by a reset.
        _ => {
            state.passwords.verify(password, None).await?;
            state.logins.pad_refusal(started).await;
            return Err(invalid());
        }
    };
    let now = Utc::now();
    if user.suspension().is_some() {
        return Err(ApiError::Forbidden {
            code: Code::AccountSuspended,
            detail: "this account is suspended; contact support".to_owned(),
        });
    }
    if state.settings.require_email_verification && !user.email_verified() {
        return Err(ApiError::Forbidden {
            code: Code::EmailNotVerified,
            detail: "confirm the e-mail address with the link we sent first (POST /api/v1/auth/resend-verification sends another)"
                .to_owned(),
        });
    }
    if user.totp_secret().is_some() {
        let body = MfaChallenge {
            mfa_required: true,
            mfa_token: state.tokens.issue_mfa(user_id, now),
            expires_in: MFA_TOKEN_TTL_SECS.unsigned_abs(),
        };
        return Ok(Json(body).into_response());
    }
    start_session(&state, &context, user_id, &user).await
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

/// Starts a session for a user whose credentials were checked, and answers the token pair.
pub(crate) async fn start_session(
    state: &AppState,
    context: &RequestContext,
    user_id: UserId,
    user: &User,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    // Only a whole login (password, and code when 2FA is on) clears the failures: clearing after
    // the password alone would let a guesser of TOTP codes reset the count at will.
    if user.has_failed_logins() {
        execute_as_user(state, context, user_id, || UserCommand::ClearFailedLogins { at: now }).await?;
    }
    let session_id = SessionId::new();
    let (refresh_token, refresh_hash) = new_opaque_token(session_id.0);
    let refresh_expires_at = now + state.settings.refresh_token_ttl;
    let command = || SessionCommand::StartSession {
        session_id,
        user_id,
        refresh_token_hash: refresh_hash.clone(),
        refresh_expires_at,
        user_agent: context.user_agent.clone(),
        ip: context.client_ip.clone(),
        at: now,
    };
    let metadata = context.metadata(Actor::User(user_id));
    let position = state
        .buses()
        .sessions
        .execute_new(&session_id.to_string(), command, &metadata)
        .await
        .map_err(ApiError::from)?;
    let token_user = TokenUser {
        id: user_id.0,
        email: user.email().to_string(),
        roles: user.role_names(),
    };
    Ok(with_position(
        position,
        token_response(state, user_id, session_id, refresh_token, token_user, now),
    ))
}

/// Counts a login or mail request against the account it names (the `auth-account` rate
/// limit), whether or not the account exists.
pub(crate) fn limit_per_account(state: &AppState, context: &RequestContext, raw_email: &str) -> Result<(), ApiError> {
    crate::throttle::enforce(
        state.limiter.as_ref(),
        state.settings.rate_limits.auth_account(),
        &raw_email.trim().to_lowercase(),
        context.limits.as_ref(),
    )
}

/// The account registered under `raw_email`, if any. A malformed address has none.
pub(crate) async fn find_user(state: &AppState, raw_email: &str) -> Result<Option<(UserId, User)>, ApiError> {
    let Some(user_id) = find_user_id(state, raw_email).await? else {
        return Ok(None);
    };
    let user = state
        .buses()
        .users
        .load_current(&user_id.to_string())
        .await
        .map_err(ApiError::from)?;
    Ok(user.map(|user| (user_id, user)))
}

/// The id of the account registered under `raw_email`, if any, without loading it.
async fn find_user_id(state: &AppState, raw_email: &str) -> Result<Option<UserId>, ApiError> {
    let Ok(email) = EmailAddress::parse("email", raw_email) else {
        return Ok(None);
    };
    let user_id = sqlx::query_scalar::<_, Uuid>("SELECT user_id FROM email_reservations WHERE email = $1")
        .bind(email.as_str())
        .fetch_optional(state.pool())
        .await?;
    Ok(user_id.map(UserId))
}

fn token_response(
    state: &AppState,
    user_id: UserId,
    session_id: SessionId,
    refresh_token: String,
    user: TokenUser,
    now: DateTime<Utc>,
) -> Response {
    let (access_token, expires_in) = state.tokens.issue_access(user_id, session_id, now);
    let cookie = refresh_cookie(state, &refresh_token, state.settings.refresh_token_ttl.as_secs());
    let body = TokenResponse {
        access_token,
        token_type: "bearer",
        expires_in,
        refresh_token,
        user,
    };
    let mut response = Json(body).into_response();
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
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
        cookie_value(&headers, REFRESH_COOKIE).ok_or_else(|| {
            ApiError::unauthorized(
                Code::MissingRefreshToken,
                "send the refresh token in the body or cookie",
            )
        })?
    } else {
        let axum::Json(request) = axum::Json::<RefreshRequest>::from_bytes(&body).map_err(json_problem)?;
        request.refresh_token
    };
    let session_id = opaque_token_owner(&presented)
        .map(SessionId)
        .ok_or_else(|| ApiError::from(SessionError::RefreshTokenInvalid))?;
    let session = state
        .buses()
        .sessions
        .load(&session_id.to_string())
        .await
        .map_err(ApiError::from)?;
    let (user_id, started_at) = session
        .and_then(|session| Some((session.user_id()?, session.started_at()?)))
        .ok_or_else(|| ApiError::from(SessionError::NotFound))?;
    let user = state
        .buses()
        .users
        .load_current(&user_id.to_string())
        .await
        .map_err(ApiError::from)?;
    let user = user.ok_or_else(|| ApiError::from(SessionError::NotFound))?;
    // A user-wide "end every session" (reset, change, suspension, logout-all) ended this one,
    // whether or not it was reached one by one.
    if user.suspension().is_some() || user.ended_session(session_id, started_at) {
        return Err(ApiError::from(SessionError::Ended));
    }

    let now = Utc::now();
    let presented_hash = hash_opaque_token(&presented);
    let (refresh_token, new_hash) = new_opaque_token(session_id.0);
    let refresh_expires_at = now + state.settings.refresh_token_ttl;
    let command = || SessionCommand::RotateRefreshToken {
        presented_hash: presented_hash.clone(),
        new_hash: new_hash.clone(),
        refresh_expires_at,
        at: now,
    };
    let metadata = context.metadata(Actor::User(user_id));
    let position = match state
        .buses()
        .sessions
        .execute(&session_id.to_string(), command, &metadata)
        .await
    {
        Ok(position) => position,
        Err(CommandError::Rejected(SessionError::RefreshTokenReused)) => {
            return Err(revoke_for_reuse(&state, session_id, presented_hash, &metadata).await);
        }
        Err(error) => return Err(ApiError::from(error)),
    };
    let token_user = TokenUser {
        id: user_id.0,
        email: user.email().to_string(),
        roles: user.role_names(),
    };
    Ok(with_position(
        position,
        token_response(&state, user_id, session_id, refresh_token, token_user, now),
    ))
}

/// A replaced refresh token came back: whoever holds it, the family is no longer safe. Ends the
/// session (recording why) and answers the 401 the client gets.
async fn revoke_for_reuse(
    state: &AppState,
    session_id: SessionId,
    presented_hash: TokenHash,
    metadata: &CommandMetadata,
) -> ApiError {
    let command = || SessionCommand::RevokeForReuse {
        presented_hash: presented_hash.clone(),
        at: Utc::now(),
    };
    match state
        .buses()
        .sessions
        .execute(&session_id.to_string(), command, metadata)
        .await
    {
        // Revoked now, or already ended by a concurrent request: either way, refused.
        Ok(_) | Err(CommandError::Rejected(SessionError::Ended)) => {
            state.session_guard.ended(session_id);
            tracing::warn!(session = %session_id, "a replaced refresh token was presented; the session is revoked");
            ApiError::unauthorized(
                Code::RefreshTokenReused,
                "this refresh token was already used; the session is revoked for safety, log in again",
            )
        }
        Err(error) => ApiError::from(error),
    }
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// End the current session: its refresh token stops working.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = crate::error::Problem)))]
pub async fn logout(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
) -> Result<Response, ApiError> {
    let metadata = context.metadata(Actor::User(caller.user_id));
    let requested_by = EndRequester::Owner(caller.user_id);
    let position = end_session(
        &state,
        caller.session_id,
        requested_by,
        SessionEndReason::Logout,
        &metadata,
    )
    .await
    .map_err(ApiError::from)?;
    let response = clear_refresh_cookie(&state, StatusCode::NO_CONTENT.into_response());
    Ok(match position {
        Some(position) => with_position(position, response),
        None => response,
    })
}

/// Adds a `Set-Cookie` that deletes the refresh cookie.
pub(crate) fn clear_refresh_cookie(state: &AppState, mut response: Response) -> Response {
    if let Ok(cookie) = HeaderValue::from_str(&refresh_cookie(state, "", 0)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// The caller's account.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = crate::error::Problem)))]
pub async fn me(State(state): State<AppState>, caller: AuthUser) -> Result<Json<UserView>, ApiError> {
    let user = state
        .buses()
        .users
        .load_current(&caller.user_id.to_string())
        .await
        .map_err(ApiError::from)?;
    let user = user.ok_or_else(|| ApiError::unauthorized(Code::InvalidToken, "the account no longer exists"))?;
    Ok(Json(UserView::of(caller.user_id, &user)))
}
