//! Paging of lists: the `limit` and `cursor` every list takes, the cursor of the next page, and
//! the one page type every list answers.

use crate::error::{ApiError, Code, FieldError};
use crate::rules::{DEFAULT_PAGE, MAX_PAGE};
use serde::Serialize;
use std::borrow::Cow;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

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

/// A page of a list: the one shape every list answers.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// What a list is a list of: the name and wording its page has in the OpenAPI document (each
/// list's page is a schema of its own there, `ProjectPage` for `Page<ProjectView>`, so the
/// document reads as it always has).
pub trait Listed: ToSchema {
    /// The page's schema name.
    const PAGE: &'static str;
    /// What a page is, in the document.
    const PAGE_DESCRIPTION: &'static str;
    /// What its `next_cursor` says.
    const NEXT_CURSOR: &'static str = "Pass as `cursor` for the next page; `null` on the last.";
}

impl<T: Listed> PartialSchema for Page<T> {
    fn schema() -> RefOr<Schema> {
        let items = ArrayBuilder::new()
            .items(Ref::from_schema_name(T::name()))
            .description(Some("Newest first."));
        let next_cursor = ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
            .description(Some(T::NEXT_CURSOR));
        ObjectBuilder::new()
            .description(Some(T::PAGE_DESCRIPTION))
            .property("items", items)
            .required("items")
            .property("next_cursor", next_cursor)
            .into()
    }
}

impl<T: Listed> ToSchema for Page<T> {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed(T::PAGE)
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((T::name().into_owned(), T::schema()));
        T::schemas(schemas);
    }
}
