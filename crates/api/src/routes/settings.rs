//! `/api/v1/settings`: the caller's settings, and the third-party API keys Keyframe keeps for
//! them (sealed by `keyframe_app::api_keys`; answers show only a key's last four characters).

use crate::auth::AuthUser;
use crate::consistency::with_position;
use crate::context::RequestContext;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use keyframe_domain::values::{ApiKeyProvider, ApiKeySecret};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(show))
        .routes(routes!(store_api_key, remove_api_key))
}

/// A stored API key, as far as it is ever shown again.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    /// Whose key it is.
    pub provider: String,
    /// Its last four characters.
    pub last4: String,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

/// The caller's settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsView {
    /// Stored third-party API keys, by provider name.
    pub api_keys: Vec<ApiKeyView>,
    /// Whether logins need a TOTP code.
    pub two_factor_enabled: bool,
    /// Whether the e-mail address is verified.
    pub email_verified: bool,
}

/// `PUT /api-keys/{provider}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreApiKeyRequest {
    /// The key, 8 to 4096 characters without spaces.
    #[schema(schema_with = crate::openapi::fields::api_key)]
    pub api_key: String,
}

fn provider(raw: &str) -> Result<ApiKeyProvider, ApiError> {
    Ok(ApiKeyProvider::parse("provider", raw)?)
}

/// The caller's settings.
#[utoipa::path(get, path = "/api/v1/settings", tag = "settings", security(("bearer" = [])),
    responses((status = 200, body = SettingsView), (status = 401, body = crate::error::Problem)))]
pub async fn show(State(state): State<AppState>, caller: AuthUser) -> Result<Json<SettingsView>, ApiError> {
    let user = state.app.account(caller.user_id).await?;
    let api_keys = user
        .api_keys()
        .iter()
        .map(|(provider, stored)| ApiKeyView {
            provider: provider.as_str().to_owned(),
            last4: stored.last4.clone(),
            created_at: stored.stored_at,
        })
        .collect();
    Ok(Json(SettingsView {
        api_keys,
        two_factor_enabled: user.totp_secret().is_some(),
        email_verified: user.email_verified(),
    }))
}

/// Store (or replace) the caller's API key for `provider`, encrypted.
#[utoipa::path(put, path = "/api/v1/settings/api-keys/{provider}", tag = "settings", security(("bearer" = [])),
    params(("provider" = String, Path, description = "Lower-case letters, digits and '-'")), request_body = StoreApiKeyRequest,
    responses((status = 200, body = ApiKeyView), (status = 401, body = crate::error::Problem), (status = 422, body = crate::error::Problem)))]
pub async fn store_api_key(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    ApiPath(raw_provider): ApiPath<String>,
    ApiJson(body): ApiJson<StoreApiKeyRequest>,
) -> Result<Response, ApiError> {
    let provider = provider(&raw_provider)?;
    let secret = ApiKeySecret::parse("api_key", &body.api_key)?;
    let stored = state
        .app
        .store_api_key(caller.user_id, provider.clone(), secret, &caller.metadata(&context))
        .await?;
    let view = ApiKeyView {
        provider: provider.as_str().to_owned(),
        last4: stored.last4,
        created_at: stored.stored_at,
    };
    let position = stored.position;
    Ok(with_position(position, Json(view)))
}

/// Forget the caller's API key for `provider`.
#[utoipa::path(delete, path = "/api/v1/settings/api-keys/{provider}", tag = "settings", security(("bearer" = [])),
    params(("provider" = String, Path, description = "Lower-case letters, digits and '-'")),
    responses((status = 204), (status = 401, body = crate::error::Problem), (status = 404, body = crate::error::Problem),
        (status = 422, description = "`validation_failed`: not a provider name", body = crate::error::Problem)))]
pub async fn remove_api_key(
    State(state): State<AppState>,
    context: RequestContext,
    caller: AuthUser,
    ApiPath(raw_provider): ApiPath<String>,
) -> Result<Response, ApiError> {
    let provider = provider(&raw_provider)?;
    let position = state
        .app
        .remove_api_key(caller.user_id, provider, &caller.metadata(&context))
        .await?;
    Ok(with_position(position, StatusCode::NO_CONTENT))
}
