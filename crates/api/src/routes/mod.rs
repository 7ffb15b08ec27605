//! The routes, one module per resource.

pub mod account;
pub mod admin;
pub mod auth;
pub mod health;
pub mod projects;
pub mod sessions;
pub mod settings;
pub mod two_factor;

use crate::error::ApiError;
use axum::http::StatusCode;

/// Any path Keyframe does not serve.
pub async fn not_found() -> ApiError {
    ApiError::NotFound {
        detail: "no such endpoint".to_owned(),
    }
}

/// A known path with a method it does not take.
pub async fn method_not_allowed() -> ApiError {
    ApiError::BadRequest {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        detail: "this endpoint does not take that method".to_owned(),
    }
}
