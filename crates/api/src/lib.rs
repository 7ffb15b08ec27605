//! Keyframe's HTTP API: a thin axum layer that turns requests into commands and queries.
//!
//! Handlers validate input into domain values, run one command through a `CommandBus` or read
//! a read model, and answer. Errors leave through one type, [`error::ApiError`], as RFC 9457
//! problem details with a stable `code`.

pub mod auth;
pub mod bootstrap;
pub mod consistency;
pub mod context;
pub mod error;
pub mod extract;
pub mod limits;
pub mod mail;
pub mod openapi;
pub mod protection;
pub mod routes;
pub mod secrets;
pub mod settings;
pub mod state;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use state::AppState;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// The request-id header, set on every response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.json_body_limit_bytes;
    let behind_tls = state.settings.behind_tls;
    let cors = protection::cors(&state.settings.cors_origins);
    Router::new()
        .merge(routes::health::router())
        .merge(routes::pages::router(state.clone()))
        .nest("/api/v1/auth", routes::auth::router(state.clone()))
        .nest(
            "/api/v1/projects",
            routes::projects::router().merge(routes::assets::router()),
        )
        .nest("/api/v1/jobs", routes::jobs::router())
        .nest("/api/v1/credits", routes::credits::router())
        .nest("/api/v1/subscriptions", routes::subscriptions::router())
        .nest("/api/v1/settings", routes::settings::router())
        .nest("/api/v1/admin", routes::admin::router(state.clone()))
        .merge(openapi::router())
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(limits::report_limits))
        .layer(axum::middleware::from_fn(move |request, next| {
            protection::security_headers(behind_tls, request, next)
        }))
        .layer(axum::middleware::from_fn(context::scope_request_id))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            let request_id = request
                .headers()
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::info_span!("http", method = %request.method(), path = %request.uri().path(), request_id)
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, NewRequestId))
        .layer(tower::util::option_layer(cors))
        .with_state(state)
}

/// Request ids for requests that arrive without one: UUIDv7, so they sort by time in logs.
#[derive(Clone, Copy)]
struct NewRequestId;

impl MakeRequestId for NewRequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        uuid::Uuid::now_v7().to_string().parse().ok().map(RequestId::new)
    }
}
