//! Applying the rate limits of [`crate::limits`] to requests: counting a request under a
//! policy and refusing it with 429 over the quota.

use crate::context::RequestContext;
use crate::error::ApiError;
use crate::limits::{Policy, RateLimiter, RequestLimits, client_key};
use crate::state::AppState;
use axum::extract::Request;
use axum::http::Response;
use axum::middleware::Next;

/// Counts one request of `key` under `policy` (nothing when the policy is off), records the
/// standing for the answer's headers, and refuses with 429 over the quota.
pub fn enforce(
    limiter: &dyn RateLimiter,
    policy: Policy,
    key: &str,
    request: Option<&RequestLimits>,
) -> Result<(), ApiError> {
    if policy.quota == 0 {
        return Ok(());
    }
    let standing = limiter.hit(policy, key);
    if let Some(request) = request {
        request.record(standing);
    }
    if standing.allowed {
        Ok(())
    } else {
        Err(ApiError::RateLimited(standing))
    }
}

/// Middleware for the unauthenticated auth endpoints: counts the request against its client
/// address.
pub async fn limit_by_client_address(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: Next,
) -> Response<axum::body::Body> {
    use axum::response::IntoResponse as _;
    if let Err(refused) = count_client_address(&state, &request) {
        return refused.into_response();
    }
    next.run(request).await
}

/// Counts `request` against its client's address under the `auth-ip` policy.
pub fn count_client_address(state: &AppState, request: &Request) -> Result<(), ApiError> {
    let address = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| client_key(info.0.ip()))
        .unwrap_or_default();
    let policy = state.settings.rate_limits.auth_ip();
    enforce(state.limiter.as_ref(), policy, &address, request.extensions().get())
}

/// Counts a login or mail request against the account it names (the `auth-account` rate
/// limit), whether or not the account exists.
pub fn limit_per_account(state: &AppState, context: &RequestContext, raw_email: &str) -> Result<(), ApiError> {
    enforce(
        state.limiter.as_ref(),
        state.settings.rate_limits.auth_account(),
        &raw_email.trim().to_lowercase(),
        context.limits.as_ref(),
    )
}
