//! What every answer carries for the browser's and the proxies' sake: security headers, and
//! CORS for the origins the configuration names.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// HSTS behind TLS: two years, subdomains included (the value preload lists ask for).
const HSTS: &str = "max-age=63072000; includeSubDomains";

/// Security headers on every answer; `no-store` on the API's; HSTS when `behind_tls`.
pub async fn security_headers(behind_tls: bool, request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("frame-ancestors 'none'"),
        );
    }
    if api {
        // Answers hold tokens and personal data: no cache of any kind keeps them.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if behind_tls {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
    response
}

/// CORS for `origins` (exact `scheme://host[:port]` strings); `None` when there are none, so
/// browsers keep the same-origin policy.
pub fn cors(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin.trim()).ok())
        .collect();
    if origins.is_empty() {
        return None;
    }
    let exposed = [
        "x-request-id",
        "x-keyframe-position",
        "x-keyframe-consistent",
        "retry-after",
        "ratelimit",
        "ratelimit-policy",
    ]
    .map(HeaderName::from_static);
    let allowed = [
        header::AUTHORIZATION,
        header::CONTENT_TYPE,
        HeaderName::from_static("x-request-id"),
        HeaderName::from_static("x-keyframe-min-position"),
    ];
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
            .allow_headers(allowed)
            .expose_headers(exposed)
            // The refresh cookie is sent cross-origin only to these origins.
            .allow_credentials(true)
            .max_age(std::time::Duration::from_secs(600)),
    )
}
