//! The answers every operation can give because of its shape, added to the document from that
//! shape, so the document lists them wherever the server can give them and nowhere else.
//!
//! The shared extractors and layers answer the same way on every route: a non-UUID path id is
//! 400 `invalid_id`, a body that is not JSON 415, a missing token 401, an admin route for a
//! non-admin 403, and so on. Writing these into each `#[utoipa::path]` by hand drifts (the
//! document once listed `application/json` for problems the server answers as
//! `application/problem+json`, and missed most of these statuses), so they are derived here from
//! what each operation declares: its path and query parameters, its body, its security.

use crate::consistency::MIN_POSITION;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{Content, OpenApi, PathItem, Ref, RefOr, Response};

/// The media type of every problem answer (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Adds to every operation the answers its shape allows, and labels problem answers with their
/// real media type.
pub fn complete(openapi: &mut OpenApi) {
    for (path, item) in openapi.paths.paths.iter_mut() {
        for (changes, operation) in operations(item) {
            for (status, description) in shape_answers(path, changes, operation) {
                let response = operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| RefOr::T(problem(&description)));
                if let RefOr::T(response) = response
                    && response.description.is_empty()
                {
                    response.description = description;
                }
            }
            unique_operation_id(operation);
            describe_binary_bodies(operation);
            for response in operation.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    relabel_problem(response);
                }
            }
            tighten_parameters(operation);
        }
    }
}

/// A body that is a file (any media type but JSON and event streams) is a string of bytes,
/// not the array of integers `Vec<u8>` would otherwise be documented as; a multipart body is a
/// form whose `file` part is the file.
fn describe_binary_bodies(operation: &mut Operation) {
    let binary = || {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
    };
    let request = operation
        .request_body
        .iter_mut()
        .flat_map(|body| body.content.iter_mut());
    let answers = operation
        .responses
        .responses
        .values_mut()
        .filter_map(|response| match response {
            RefOr::T(response) => Some(response.content.iter_mut()),
            RefOr::Ref(_) => None,
        })
        .flatten();
    for (media_type, content) in request.chain(answers) {
        let schema = if media_type == "multipart/form-data" {
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("file", binary())
                .required("file")
                .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(false)))
                .build()
        } else if media_type.ends_with("json") || media_type == "text/event-stream" {
            continue;
        } else {
            binary().build()
        };
        content.schema = Some(RefOr::T(Schema::Object(schema)));
    }
}

/// Handlers of different resources share names (`list`, `show`): the id is prefixed with the
/// operation's tag, since OpenAPI wants operation ids unique.
fn unique_operation_id(operation: &mut Operation) {
    let tag = operation.tags.as_ref().and_then(|tags| tags.first()).cloned();
    if let (Some(tag), Some(id)) = (tag, operation.operation_id.as_mut())
        && !id.starts_with(&format!("{tag}_"))
    {
        *id = format!("{tag}_{id}");
    }
}

/// The operations of a path, each with whether it changes anything (every method but GET).
fn operations(item: &mut PathItem) -> impl Iterator<Item = (bool, &mut Operation)> {
    [
        (false, item.get.as_mut()),
        (true, item.put.as_mut()),
        (true, item.post.as_mut()),
        (true, item.delete.as_mut()),
        (true, item.patch.as_mut()),
    ]
    .into_iter()
    .filter_map(|(changes, operation)| Some((changes, operation?)))
}

/// The statuses an operation can answer because of its shape, with what they mean.
fn shape_answers(path: &str, changes: bool, operation: &Operation) -> Vec<(&'static str, String)> {
    let mut answers = Vec::new();
    let parameters = operation.parameters.as_deref().unwrap_or_default();
    let has = |place: ParameterIn| parameters.iter().any(|p| p.parameter_in == place);
    let mut bad_request = Vec::new();
    if parameters
        .iter()
        .any(|p| p.parameter_in == ParameterIn::Path && is_uuid(p))
    {
        bad_request.push("`invalid_id` (a path id that is not a UUID)");
    }
    if parameters
        .iter()
        .any(|p| p.parameter_in == ParameterIn::Path && !is_uuid(p))
    {
        bad_request.push("`invalid_path` (a path segment that is not UTF-8)");
    }
    if has(ParameterIn::Query) {
        bad_request.push("`invalid_query` (an unknown or malformed query parameter), `invalid_cursor`");
    }
    if parameters.iter().any(|p| p.name == MIN_POSITION.as_str()) {
        bad_request.push("`invalid_position` (`x-keyframe-min-position` not a positive integer)");
    }
    if operation.request_body.is_some() {
        bad_request.push("`malformed_json` (a body that is not JSON)");
        answers.push(("413", "`payload_too_large`: the body is over the size limit".to_owned()));
        answers.push((
            "415",
            "`unsupported_media_type`: the body is not of the documented media type".to_owned(),
        ));
        answers.push((
            "422",
            "`validation_failed`: fields broke their rules (see `errors`); `invalid_body`: JSON that is not \
             this body (not an object, a missing field, a wrong type)"
                .to_owned(),
        ));
    }
    if parameters.iter().any(|p| p.name == "limit") {
        answers.push(("422", "`validation_failed`: `limit` out of range".to_owned()));
    }
    if !bad_request.is_empty() {
        answers.push(("400", bad_request.join("; ")));
    }
    let secured = operation.security.as_ref().is_some_and(|security| !security.is_empty());
    if secured {
        answers.push((
            "401",
            "`missing_token`, `invalid_token` or `session_ended`: no valid access token".to_owned(),
        ));
    }
    if path.starts_with("/api/v1/admin/") {
        answers.push(("403", "`admin_only`: the caller is not an administrator".to_owned()));
    }
    if changes && path.starts_with("/api/") {
        answers.push((
            "409",
            "`concurrent_modification`: other requests kept changing the same resource; try again".to_owned(),
        ));
    }
    if path.starts_with("/api/") {
        // Every API route counts against a rate limit: the caller's, or the client address's
        // for the routes that take no token.
        answers.push(("429", "`rate_limited`: see `Retry-After` and `RateLimit`".to_owned()));
        answers.push((
            "503",
            "`unavailable`: the database is unreachable; try again".to_owned(),
        ));
    }
    answers
}

/// Whether a parameter is a UUID.
fn is_uuid(parameter: &utoipa::openapi::path::Parameter) -> bool {
    matches!(
        &parameter.schema,
        Some(RefOr::T(Schema::Object(object)))
            if object.format == Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))
    )
}

/// A problem answer described by `description`.
fn problem(description: &str) -> Response {
    let mut response = Response::new(description);
    response.content.insert(
        PROBLEM_JSON.to_owned(),
        Content::new(Some(Ref::from_schema_name("Problem"))),
    );
    response
}

/// A response documented as JSON with the `Problem` schema is answered as problem JSON.
fn relabel_problem(response: &mut Response) {
    let is_problem = response.content.get("application/json").is_some_and(|content| {
        matches!(&content.schema, Some(RefOr::Ref(reference)) if reference.ref_location.ends_with("/Problem"))
    });
    if is_problem && let Some(content) = response.content.shift_remove("application/json") {
        response.content.insert(PROBLEM_JSON.to_owned(), content);
    }
}

/// The constraints the shared extractors check on common parameters.
fn tighten_parameters(operation: &mut Operation) {
    for parameter in operation.parameters.iter_mut().flatten() {
        let schema = match parameter.name.as_str() {
            "limit" => ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(1))
                .maximum(Some(crate::rules::MAX_PAGE)),
            name if name == MIN_POSITION.as_str() => ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                .minimum(Some(1)),
            "Idempotency-Key" => ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(crate::rules::IDEMPOTENCY_KEY_MAX))
                .pattern(Some(r"^[\x21-\x7e]+$")),
            "provider" => ObjectBuilder::new().schema_type(Type::String).pattern(Some(format!(
                "^[a-z0-9-]{{1,{}}}$",
                keyframe_domain::values::ApiKeyProvider::MAX_CHARS
            ))),
            _ => continue,
        };
        parameter.schema = Some(RefOr::T(Schema::Object(schema.build())));
    }
}
