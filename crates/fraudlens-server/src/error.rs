//! Errors as the API shows them: a status and `{"code", "message"}` JSON with
//! no internal detail. Extractor rejections (bad JSON, wrong content type, a
//! body over the limit) go through the same type, and [`json_errors`] turns
//! whatever the framework answers on its own (405, a path rejection…) into
//! the same shape.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fraudlens_pipeline::ScoreError;
use fraudlens_store::StoreError;
use serde::Serialize;

/// The error body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code (`invalid_request`, `unauthorized`, `conflict`…).
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
}

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Code and message.
    pub body: ErrorBody,
    /// Seconds to wait before retrying (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                code,
                message: message.into(),
            },
            retry_after: None,
        }
    }

    /// 400/422: the request is wrong.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 503: try again later.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }

    fn code_for(status: StatusCode) -> &'static str {
        match status {
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::URI_TOO_LONG => "uri_too_long",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::CONFLICT => "conflict",
            StatusCode::TOO_MANY_REQUESTS => "rate_limited",
            _ if status.is_server_error() => "internal",
            _ => "error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<ScoreError> for ApiError {
    fn from(error: ScoreError) -> Self {
        match error {
            ScoreError::Invalid(message) => Self::invalid(message),
            ScoreError::Conflict(_) => Self::new(StatusCode::CONFLICT, "conflict", error.to_string()),
            ScoreError::EventTime(message) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "event_time_out_of_range", message)
            }
            ScoreError::Unavailable(message) => {
                tracing::error!(message, "decision not stored");
                Self::unavailable("the decision could not be stored; retry")
            }
            ScoreError::Overloaded(message) => Self::unavailable(message),
            // the API's pipeline holds the whole-store state: a bug if it happens
            ScoreError::NotOwned(shard) => {
                tracing::error!(shard, "no entity state for the record");
                Self::unavailable("the entity state is not available; retry")
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => Self::not_found(format!("{what} not found")),
            StoreError::Invalid(message) => Self::invalid(message),
            StoreError::Conflict(message) => Self::new(StatusCode::CONFLICT, "conflict", message),
            other => {
                tracing::error!(error = %other, "store error");
                Self::unavailable("the store is unavailable; retry")
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        Self::new(status, Self::code_for(status), rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", rejection.body_text())
    }
}

/// `axum::Json` whose rejections are [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    axum::Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(request, state).await?;
        Ok(Self(value))
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Query` whose rejections are [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(value) = axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

/// The JSON 404 for unknown routes.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// Longest request target (path and query string) the API reads, in bytes.
/// Well below hyper's own limit (64 KiB, answered with a bare 414 before any
/// middleware runs), so a long URI gets the JSON error every other refusal gets.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// The most of a framework-made error body kept as the message.
const MAX_REWRAPPED_BODY_BYTES: usize = 1024;

/// Middleware: refuses request targets over [`MAX_URI_BYTES`] (414), and
/// rewrites every error response that is not JSON yet (axum's 405 with an
/// empty body, plain-text path rejections, a 404 of the embedded docs) as
/// `{code, message}`, keeping its status and headers (`Allow` on a 405).
pub async fn json_errors(request: Request, next: Next) -> Response {
    let uri_bytes = request.uri().path_and_query().map_or(0, |target| target.as_str().len());
    if uri_bytes > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request target is {uri_bytes} bytes; at most {MAX_URI_BYTES} are read"),
        )
        .into_response();
    }
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_REWRAPPED_BODY_BYTES)
        .await
        .ok()
        .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty());
    let message = text.unwrap_or_else(|| match status {
        StatusCode::METHOD_NOT_ALLOWED => "this route does not take this method".to_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
    });
    let rewrapped = ApiError::new(status, ApiError::code_for(status), message).into_response();
    let (rewrapped_parts, rewrapped_body) = rewrapped.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in &rewrapped_parts.headers {
        parts.headers.insert(name, value.clone());
    }
    Response::from_parts(parts, rewrapped_body)
}
