//! Extractors that turn malformed input into clear problems instead of axum's plain-text
//! rejections: bad JSON, unknown fields, wrong types, oversized bodies, malformed ids.

use crate::error::{ApiError, Code};
use axum::extract::path::ErrorKind;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Deserialize as _;
use serde::de::DeserializeOwned;
use uuid::Uuid;

/// A JSON object body whose problems answer as problem details. Every request body of the API
/// is an object: serde would also read a struct from an array of its fields, which no client
/// means, so anything but an object is refused.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        if !json_content_type(request.headers()) {
            return Err(not_json());
        }
        let body = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| json_problem(rejection.into()))?;
        let starts_as_object = body.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'{');
        if !starts_as_object && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok() {
            return Err(ApiError::BadRequest {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                code: Code::InvalidBody,
                detail: "the body must be a JSON object".to_owned(),
            });
        }
        axum::Json::<T>::from_bytes(&body)
            .map(|axum::Json(value)| Self(value))
            .map_err(json_problem)
    }
}

/// Reads an integer that JSON may write with a zero fraction (`5.0`): JSON Schema counts it an
/// integer, so a client may send it so.
pub fn whole_number<'de, D, N>(deserializer: D) -> Result<N, D::Error>
where
    D: serde::Deserializer<'de>,
    N: TryFrom<i64>,
{
    use serde::de::Error as _;
    let number = serde_json::Number::deserialize(deserializer)?;
    let whole = number
        .as_i64()
        .or_else(|| {
            number
                .as_f64()
                .filter(|n| n.fract() == 0.0 && n.abs() < 9.0e15)
                .map(|n| n as i64)
        })
        .ok_or_else(|| D::Error::custom(format!("{number} is not a whole number")))?;
    N::try_from(whole).map_err(|_| D::Error::custom(format!("{whole} is out of range")))
}

/// [`whole_number`] for a field that may be `null` or absent.
pub fn whole_number_or_null<'de, D, N>(deserializer: D) -> Result<Option<N>, D::Error>
where
    D: serde::Deserializer<'de>,
    N: TryFrom<i64>,
{
    #[derive(serde::Deserialize)]
    struct Whole<N: TryFrom<i64>>(#[serde(deserialize_with = "whole_number")] N);
    Ok(Option::<Whole<N>>::deserialize(deserializer)?.map(|Whole(number)| number))
}

/// [`whole_number`] for a field where absent (`None`, with `#[serde(default)]`), `null`
/// (`Some(None)`) and a number mean three different things.
pub fn present_whole_number_or_null<'de, D, N>(deserializer: D) -> Result<Option<Option<N>>, D::Error>
where
    D: serde::Deserializer<'de>,
    N: TryFrom<i64>,
{
    whole_number_or_null(deserializer).map(Some)
}

/// A path whose parameters answer as problem details when they do not parse: 400 `invalid_id`
/// (a UUID that is not one) or `invalid_path`.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(PathRejection::FailedToDeserializePathParams(error)) => match error.kind() {
                ErrorKind::ParseErrorAtKey { .. }
                | ErrorKind::ParseErrorAtIndex { .. }
                | ErrorKind::ParseError { .. } => Err(ApiError::bad_request(
                    Code::InvalidId,
                    "the id in the path must be a UUID",
                )),
                _ => Err(ApiError::bad_request(Code::InvalidPath, error.body_text())),
            },
            Err(other) => Err(ApiError::bad_request(Code::BadRequest, other.body_text())),
        }
    }
}

/// Whether the request says its body is JSON (`application/json` or `application/*+json`), as
/// axum's own `Json` decides.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", subtype)) => subtype == "json" || subtype.ends_with("+json"),
        _ => false,
    }
}

fn not_json() -> ApiError {
    ApiError::BadRequest {
        status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
        code: Code::UnsupportedMediaType,
        detail: "send the body as JSON with `Content-Type: application/json`".to_owned(),
    }
}

/// Maps a JSON rejection to a problem with a stable code.
pub fn json_problem(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(error) => ApiError::BadRequest {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: Code::InvalidBody,
            detail: error.body_text(),
        },
        JsonRejection::JsonSyntaxError(error) => ApiError::bad_request(Code::MalformedJson, error.body_text()),
        JsonRejection::MissingJsonContentType(_) => not_json(),
        JsonRejection::BytesRejection(error) if error.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::BadRequest {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: Code::PayloadTooLarge,
                detail: "the request body is larger than this endpoint accepts".to_owned(),
            }
        }
        other => ApiError::bad_request(Code::BadRequest, other.body_text()),
    }
}

/// A UUID path parameter; anything else is a 400 `invalid_id`.
pub struct PathId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<Uuid>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(Self(id)),
            Err(PathRejection::FailedToDeserializePathParams(_)) => Err(ApiError::bad_request(
                Code::InvalidId,
                "the id in the path must be a UUID",
            )),
            Err(other) => Err(ApiError::bad_request(Code::BadRequest, other.body_text())),
        }
    }
}

/// A query string whose problems answer as problem details (400 `invalid_query`).
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection| ApiError::bad_request(Code::InvalidQuery, rejection.body_text()))
    }
}
