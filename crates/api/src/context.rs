//! What a request tells about its origin: the request id, the client, the caller. It becomes
//! the metadata of the events the request causes.

use crate::REQUEST_ID;
use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use keyframe_eventlog::metadata::{Actor, CommandMetadata};
use std::convert::Infallible;
use std::net::SocketAddr;

tokio::task_local! {
    static REQUEST_ID_SCOPE: String;
}

/// Middleware: makes the request id available to [`current_request_id`] while the request is
/// handled, so error responses can quote it.
pub async fn scope_request_id(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    REQUEST_ID_SCOPE.scope(id, next.run(request)).await
}

/// The id of the request being handled ('' outside a request).
pub fn current_request_id() -> String {
    REQUEST_ID_SCOPE.try_with(Clone::clone).unwrap_or_default()
}

/// The origin of a request, ready to become event metadata.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request id (from `x-request-id`, generated when absent).
    pub request_id: String,
    /// The client's address (the TCP peer).
    pub client_ip: Option<String>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// Where the request stands under the rate limits (for the answer's headers).
    pub limits: Option<crate::limits::RequestLimits>,
}

impl RequestContext {
    /// Metadata for a command this request issues on behalf of `actor`.
    pub fn metadata(&self, actor: Actor) -> CommandMetadata {
        CommandMetadata {
            actor,
            request_id: self.request_id.clone(),
            correlation_id: self.request_id.clone(),
            causation_id: self.request_id.clone(),
            client_ip: self.client_ip.clone(),
            user_agent: self.user_agent.clone(),
        }
    }
}

/// Longest `User-Agent` kept: it is free text from the client.
const USER_AGENT_MAX: usize = 512;

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let request_id = parts
            .headers
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let client_ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip().to_string());
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|agent| agent.chars().take(USER_AGENT_MAX).collect());
        Ok(Self {
            request_id,
            client_ip,
            user_agent,
            limits: parts.extensions.get().cloned(),
        })
    }
}
