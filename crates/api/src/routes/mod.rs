//! The routes, one module per resource.

pub mod account;
pub mod admin;
pub mod assets;
pub mod auth;
pub mod credits;
pub mod health;
pub mod jobs;
pub mod pages;
pub mod projects;
pub mod sessions;
pub mod settings;
pub mod subscriptions;
pub mod two_factor;

use crate::error::{ApiError, Code};
use crate::rules::{DEFAULT_PAGE, MAX_PAGE};
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
        code: Code::MethodNotAllowed,
        detail: "this endpoint does not take that method".to_owned(),
    }
}

/// A list's `limit` (default 20, 1 to 100) and `cursor` (an id from `next_cursor`), checked.
pub(crate) fn page(limit: Option<i64>, cursor: Option<&str>) -> Result<(i64, Option<uuid::Uuid>), ApiError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::Validation(vec![crate::error::FieldError {
            field: "limit".to_owned(),
            message: format!("must be between 1 and {MAX_PAGE}"),
        }]));
    }
    let cursor = cursor
        .map(|raw| {
            raw.parse::<uuid::Uuid>().map_err(|_| {
                ApiError::bad_request(Code::InvalidCursor, "cursor must be a next_cursor from a previous page")
            })
        })
        .transpose()?;
    Ok((limit, cursor))
}

/// Trims rows fetched with `limit + 1` to the page and names the cursor of the next: the id of
/// the page's last row, when there are more.
pub(crate) fn split_page<T, K: ToString>(
    mut rows: Vec<T>,
    limit: i64,
    id: impl Fn(&T) -> K,
) -> (Vec<T>, Option<String>) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(|row| id(row).to_string());
        (rows, next)
    } else {
        (rows, None)
    }
}
