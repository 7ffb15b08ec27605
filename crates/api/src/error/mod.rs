//! The one error type at the HTTP edge, answered as RFC 9457 problem details.
//!
//! Every problem carries a stable machine-readable `code` and the request id. Unexpected
//! failures are logged once, here, with the request id, and say nothing internal to the client.

mod code;
mod domain;

pub use code::Code;

use crate::context::current_request_id;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyframe_domain::values::ValidationError;
use keyframe_eventlog::commands::CommandError;
use serde::Serialize;
use utoipa::ToSchema;

/// Everything a handler can answer instead of success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Fields broke their rules: 422 `validation_failed` with one entry per field.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// The request itself is malformed: 400 (or 413/415 by `status`).
    #[error("{detail}")]
    BadRequest {
        /// HTTP status (400, 402, 413 or 415).
        status: StatusCode,
        /// Stable code.
        code: Code,
        /// What is wrong.
        detail: String,
    },
    /// Missing or bad credentials: 401.
    #[error("{detail}")]
    Unauthorized {
        /// Stable code.
        code: Code,
        /// What is wrong.
        detail: String,
    },
    /// The caller is known but may not do this: 403.
    #[error("{detail}")]
    Forbidden {
        /// Stable code.
        code: Code,
        /// Why not.
        detail: String,
    },
    /// Does not exist, or is not the caller's: 404.
    #[error("{detail}")]
    NotFound {
        /// What was looked for.
        detail: String,
    },
    /// The state forbids it: 409.
    #[error("{detail}")]
    Conflict {
        /// Stable code.
        code: Code,
        /// What conflicts.
        detail: String,
    },
    /// Over a rate limit: 429 with `Retry-After` and the `RateLimit` fields.
    #[error("too many requests; try again in {} s", .0.reset_secs())]
    RateLimited(crate::limits::Standing),
    /// A service Keyframe calls for the client (Stripe) refused or failed: 502, or 503 when
    /// it is not configured or cannot be reached.
    #[error("{detail}")]
    Upstream {
        /// 502 or 503.
        status: StatusCode,
        /// Stable code.
        code: Code,
        /// What happened.
        detail: String,
    },
    /// A dependency is down: 503.
    #[error("{detail}")]
    Unavailable {
        /// What is down.
        detail: String,
    },
    /// Anything unexpected: 500, logged, never described to the client.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// One field's problem, in a 422.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// The request field.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem kind (`urn:keyframe:problem:<code>`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Short human summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened in this case.
    pub detail: String,
    /// Stable machine-readable code.
    pub code: String,
    /// The request's id, to quote when asking for help.
    pub request_id: String,
    /// Per-field problems, for 422.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

impl ApiError {
    /// A 400 with a code.
    pub fn bad_request(code: Code, detail: impl Into<String>) -> Self {
        Self::BadRequest {
            status: StatusCode::BAD_REQUEST,
            code,
            detail: detail.into(),
        }
    }

    /// A 404 for `what`.
    pub fn not_found(what: &str) -> Self {
        Self::NotFound {
            detail: format!("{what} not found"),
        }
    }

    /// A 401 with a code.
    pub fn unauthorized(code: Code, detail: impl Into<String>) -> Self {
        Self::Unauthorized {
            code,
            detail: detail.into(),
        }
    }

    /// 503: Postgres is down or dropped the connection. Logged here as a warning (it is an
    /// outage, not a bug); the client is told only to try again.
    pub(crate) fn database_unreachable(cause: &dyn std::fmt::Display) -> Self {
        tracing::warn!(cause = %cause, "the database is unreachable");
        Self::Unavailable {
            detail: "the database is unreachable; try again shortly".to_owned(),
        }
    }

    /// Maps a command's failure, with `rejected` for the domain's own errors (where a use
    /// answers them otherwise than the domain error's own mapping does).
    pub fn from_command<E: std::error::Error>(error: CommandError<E>, rejected: impl FnOnce(E) -> ApiError) -> Self {
        match error {
            CommandError::Rejected(error) => rejected(error),
            CommandError::Conflict { .. } => Self::concurrent_modification(),
            CommandError::Unavailable(detail) => Self::database_unreachable(&detail),
            CommandError::Store(detail) => Self::Internal(anyhow::anyhow!("event store: {detail}")),
        }
    }

    /// 409 `concurrent_modification`: other writers kept changing the resource.
    pub fn concurrent_modification() -> Self {
        Self::Conflict {
            code: Code::ConcurrentModification,
            detail: "the resource was being changed by other requests; try again".to_owned(),
        }
    }

    /// The status and stable code of this problem.
    pub fn status_and_code(&self) -> (StatusCode, Code) {
        match self {
            Self::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, Code::ValidationFailed),
            Self::BadRequest { status, code, .. } => (*status, *code),
            Self::Unauthorized { code, .. } => (StatusCode::UNAUTHORIZED, *code),
            Self::Forbidden { code, .. } => (StatusCode::FORBIDDEN, *code),
            Self::NotFound { .. } => (StatusCode::NOT_FOUND, Code::NotFound),
            Self::Conflict { code, .. } => (StatusCode::CONFLICT, *code),
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, Code::RateLimited),
            Self::Upstream { status, code, .. } => (*status, *code),
            Self::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, Code::Unavailable),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, Code::InternalError),
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> Self {
        Self::Validation(vec![FieldError {
            field: error.field.to_owned(),
            message: error.message,
        }])
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if keyframe_database::errors::database_unreachable(&error) {
            Self::database_unreachable(&error)
        } else {
            Self::Internal(anyhow::Error::new(error).context("database"))
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let title = status.canonical_reason().unwrap_or("Error");
        let request_id = current_request_id();
        let detail = match &self {
            Self::Internal(error) => {
                tracing::error!(request_id, error = format!("{error:#}"), "request failed");
                "something went wrong on our side; quote the request id if you report it".to_owned()
            }
            Self::Validation(errors) => {
                let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                format!("invalid fields: {}", fields.join(", "))
            }
            other => other.to_string(),
        };
        let limited = match &self {
            Self::RateLimited(standing) => Some(*standing),
            _ => None,
        };
        let errors = match self {
            Self::Validation(errors) => Some(errors),
            _ => None,
        };
        let problem = Problem {
            kind: format!("urn:keyframe:problem:{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail,
            code: code.as_str().to_owned(),
            request_id,
            errors,
        };
        let mut response = (status, Json(problem)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(standing) = limited {
            let (policy, state) = standing.header_values();
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, HeaderValue::from(standing.reset_secs()));
            if let (Ok(policy), Ok(state)) = (HeaderValue::from_str(&policy), HeaderValue::from_str(&state)) {
                headers.insert(crate::limits::RATELIMIT_POLICY, policy);
                headers.insert(crate::limits::RATELIMIT, state);
            }
        }
        response
    }
}
