//! Keyframe's HTTP API: a thin axum layer that turns requests into commands and queries.
//!
//! Handlers validate input into domain values, run one command through a `CommandBus` or read
//! a read model, and answer. Errors leave through one type, [`error::ApiError`], as RFC 9457
//! problem details with a stable `code`.

pub mod auth;
pub mod consistency;
pub mod context;
pub mod error;
pub mod extract;
pub mod job_events;
pub mod limits;
pub mod openapi;
pub mod own_writes;
pub mod paging;
pub mod prometheus;
pub mod protection;
pub mod routes;
pub mod rules;
pub mod settings;
pub mod state;
pub mod throttle;
pub mod views;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use state::AppState;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// The request-id header, set on every response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// One answer as a route gave it: the method, the route's path template as the OpenAPI
/// document writes it (`/api/v1/jobs/{id}`), the status and the media type (without parameters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The request's method.
    pub method: axum::http::Method,
    /// The matched route.
    pub route: String,
    /// The status.
    pub status: axum::http::StatusCode,
    /// The `Content-Type`'s media type, if the answer has one.
    pub media_type: Option<String>,
}

/// Sees each [`Answer`] a route gives.
pub type AnswerObserver = std::sync::Arc<dyn Fn(Answer) + Send + Sync>;

/// Middleware: shows each answer of a matched route to `observer`.
async fn observe_answer(
    observer: AnswerObserver,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|path| path.as_str().to_owned());
    let response = next.run(request).await;
    if let Some(route) = route {
        let media_type = response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .map(|value| value.split(';').next().unwrap_or_default().trim().to_owned());
        observer(Answer {
            method,
            route,
            status: response.status(),
            media_type,
        });
    }
    response
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.json_body_limit_bytes;
    let behind_tls = state.settings.behind_tls;
    let cors = protection::cors(&state.settings.cors_origins);
    // Installed before the first request, so that every count from the start is kept.
    prometheus::recorder();
    let metrics_on_api = state.settings.metrics_addr.is_none();
    let routes = Router::new()
        .merge(routes::ApiRoutes::new().into_router(&state))
        .merge(routes::pages::router(state.clone()))
        .merge(openapi::router(&state.settings))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed);
    let routes = if metrics_on_api {
        routes.route("/metrics", axum::routing::get(prometheus::metrics))
    } else {
        routes
    };
    // Around each route, so that it sees the matched one.
    let routes = routes.layer(axum::middleware::from_fn(prometheus::time_requests));
    // Innermost, so that it sees the route each answer came from.
    let routes = match state.settings.answer_observer.clone() {
        Some(observer) => routes.layer(axum::middleware::from_fn(move |request, next| {
            observe_answer(observer.clone(), request, next)
        })),
        None => routes,
    };
    routes
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

/// `GET /metrics` alone, for a listener of its own (`KEYFRAME_METRICS_ADDR`), off the public
/// one.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(prometheus::metrics))
        .fallback(routes::not_found)
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
