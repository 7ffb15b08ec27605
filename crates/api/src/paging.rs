//! Paging of lists: the `limit` and `cursor` every list takes, and the cursor of the next page.

use crate::error::{ApiError, Code, FieldError};
use crate::rules::{DEFAULT_PAGE, MAX_PAGE};

/// A list's `limit` (default 20, 1 to 100) and `cursor` (an id from `next_cursor`), checked.
pub fn page(limit: Option<i64>, cursor: Option<&str>) -> Result<(i64, Option<uuid::Uuid>), ApiError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::Validation(vec![FieldError {
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
pub fn split_page<T, K: ToString>(mut rows: Vec<T>, limit: i64, id: impl Fn(&T) -> K) -> (Vec<T>, Option<String>) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if rows.len() > limit {
        rows.truncate(limit);
        let next = rows.last().map(|row| id(row).to_string());
        (rows, next)
    } else {
        (rows, None)
    }
}
