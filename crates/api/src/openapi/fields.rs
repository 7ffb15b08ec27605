//! The JSON Schemas of request fields, built from the value types that check them, so the
//! document states exactly the rules the server applies and cannot drift from them. Used with
//! `#[schema(schema_with = ...)]` on the request types.

use keyframe_domain::values::{
    ApiKeySecret, EMAIL_MAX_LEN, FullName, PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS, ProjectDescription, ProjectName,
    Reason,
};
use utoipa::openapi::schema::{ArrayBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{Object, RefOr, Schema};

/// Characters no text field takes: the control characters (Unicode category Cc), but for the
/// line feed and tab that multi-line text may hold.
const CONTROL: &str = r"\u0000-\u0008\u000b-\u001f\u007f-\u009f";

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// Free text of at most `max` characters without control characters; `required` text must
/// hold something besides white space.
fn text(max: usize, required: bool) -> Object {
    let pattern = if required {
        format!(r"^[^{CONTROL}]*[^\s\u0000-\u001f\u007f-\u009f][^{CONTROL}]*$")
    } else {
        format!(r"^[^{CONTROL}]*$")
    };
    string()
        .min_length(required.then_some(1))
        .max_length(Some(max))
        .pattern(Some(pattern))
        .build()
}

/// An e-mail address, as `EmailAddress::parse` takes it: something, `@`, and a domain with a
/// dot inside it, no white space or control characters inside (spaces around it are trimmed).
/// A pattern and no `format`:
/// JSON Schema's `email` format is ASCII only, and Keyframe takes internationalised addresses.
pub fn email() -> Object {
    string()
        .max_length(Some(EMAIL_MAX_LEN))
        .pattern(Some(
            r"^ *[^@\s\u0000-\u001f\u007f-\u009f]+@[^@.\s\u0000-\u001f\u007f-\u009f][^@\s\u0000-\u001f\u007f-\u009f]*\.[^@\s\u0000-\u001f\u007f-\u009f]*[^@.\s\u0000-\u001f\u007f-\u009f] *$",
        ))
        .build()
}

/// A new password: its length (the strength check, against common and guessable passwords,
/// cannot be written as a schema and answers 422 with the reason).
pub fn new_password() -> Object {
    string()
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Password)))
        .min_length(Some(PASSWORD_MIN_CHARS))
        .max_length(Some(PASSWORD_MAX_CHARS))
        .build()
}

/// A person's name.
pub fn full_name() -> Object {
    text(FullName::MAX_CHARS, true)
}

/// A person's name, or `null` to remove it.
pub fn full_name_or_null() -> Object {
    nullable(full_name())
}

/// A project's name.
pub fn project_name() -> Object {
    text(ProjectName::MAX_CHARS, true)
}

/// A project's description.
pub fn project_description() -> Object {
    text(ProjectDescription::MAX_CHARS, false)
}

/// A third-party API key.
pub fn api_key() -> Object {
    string()
        .min_length(Some(ApiKeySecret::MIN_CHARS))
        .max_length(Some(ApiKeySecret::MAX_CHARS))
        .pattern(Some(r"^[^\s\u0000-\u001f\u007f-\u009f]*$"))
        .build()
}

/// A suspension's or a grant's reason, as `Reason::parse` takes it.
pub fn reason() -> Object {
    text(Reason::MAX_CHARS, true)
}

/// An organisation's name.
pub fn organization_name() -> Object {
    text(keyframe_domain::values::OrganizationName::MAX_CHARS, true)
}

/// A member's role in an organisation.
pub fn member_role() -> Object {
    string()
        .enum_values(Some(
            keyframe_domain::organization::MemberRole::ALL.map(|role| role.as_str()),
        ))
        .build()
}

/// A member's role, when it changes (`null` keeps it).
pub fn member_role_or_null() -> Object {
    let roles = keyframe_domain::organization::MemberRole::ALL.map(|role| serde_json::Value::from(role.as_str()));
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::String,
            Type::Null,
        ]))
        .enum_values(Some(roles.into_iter().chain([serde_json::Value::Null])))
        .build()
}

/// A member's monthly credit limit: zero or more, or `null` for none.
pub fn credit_limit_or_null() -> Object {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::Integer,
            Type::Null,
        ]))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(0))
        .maximum(Some(crate::rules::CREDIT_LIMIT_MAX))
        .build()
}

/// A job type.
pub fn job_type() -> Object {
    string().enum_values(Some(["analyze", "clip"])).build()
}

/// A job's status.
pub fn job_status() -> Object {
    string()
        .enum_values(Some(["queued", "running", "succeeded", "failed", "cancelled"]))
        .build()
}

/// The roles a user may hold.
pub fn roles() -> utoipa::openapi::schema::Array {
    ArrayBuilder::new()
        .items(RefOr::T(Schema::Object(
            string().enum_values(Some(["user", "admin"])).build(),
        )))
        .build()
}

/// A six-digit code of an authenticator app.
pub fn totp_code() -> Object {
    string().pattern(Some(r"^\s*[0-9]{6}\s*$")).build()
}

/// A project's new name, when it changes.
pub fn project_name_or_null() -> Object {
    nullable(project_name())
}

/// A project's description, when given.
pub fn project_description_or_null() -> Object {
    nullable(project_description())
}

/// A job's free-text prompt, when given.
pub fn prompt_or_null() -> Object {
    nullable(string().max_length(Some(keyframe_app::jobs::MAX_PROMPT_CHARS)).build())
}

/// A job's automatic retries, when given.
pub fn max_retries_or_null() -> Object {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::Integer,
            Type::Null,
        ]))
        .minimum(Some(0))
        .maximum(Some(keyframe_app::jobs::MAX_JOB_RETRIES))
        .build()
}

/// Credits an administrator grants at once.
pub fn granted_credits() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(1))
        .maximum(Some(crate::rules::GRANT_MAX_CREDITS))
        .build()
}

fn nullable(mut object: Object) -> Object {
    object.schema_type = utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null]);
    object
}
