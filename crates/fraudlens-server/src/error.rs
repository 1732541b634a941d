//! Errors as the API shows them: a status and `{"code", "message"}` JSON with
//! no internal detail. Extractor rejections (bad JSON, wrong content type, a
//! body over the limit) go through the same type, and [`json_errors`] turns
//! whatever the framework answers on its own (405, a path rejection…) into
//! the same shape.

use std::any::Any;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fraudlens_core::json::JsonError;
use fraudlens_pipeline::ScoreError;
use fraudlens_pipeline::registry::RegistryError;
use fraudlens_store::StoreError;
use serde::Serialize;
use serde::de::DeserializeOwned;

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

    /// 503 `overloaded`: more work in flight than the server takes; retry after a second.
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message)
        }
    }

    fn code_for(status: StatusCode) -> &'static str {
        match status {
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::REQUEST_TIMEOUT => "request_timeout",
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

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::NotRegistered(_) | RegistryError::NoProduction | RegistryError::NoPrevious => {
                Self::not_found(error.to_string())
            }
            RegistryError::Unloadable { .. } | RegistryError::OtherVersion { .. } | RegistryError::Replacement(_) => {
                Self::invalid(error.to_string())
            }
            RegistryError::ContentChanged { .. } => Self::new(StatusCode::CONFLICT, "model_changed", error.to_string()),
            RegistryError::Store(error) => error.into(),
            RegistryError::Loading | RegistryError::Path { .. } => {
                tracing::error!(%error, "model registry");
                Self::unavailable("loading the model failed")
            }
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        let status = rejection.status();
        Self::new(status, Self::code_for(status), rejection.body_text())
    }
}

impl From<JsonError> for ApiError {
    fn from(error: JsonError) -> Self {
        match error {
            // readable, but two readers may disagree on what it says
            JsonError::DuplicateKey { .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "duplicate_key", error.to_string())
            }
            JsonError::Syntax { .. } | JsonError::TooDeep { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_request", error.to_string())
            }
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", rejection.body_text())
    }
}

/// A JSON body read with [`fraudlens_core::json::parse`] (duplicate keys and
/// deep nesting refused, unlike `axum::Json`), whose rejections are
/// [`ApiError`]s: 415 without a JSON content type, 413 over the body limit,
/// 400 unreadable, 422 with a duplicate key or the wrong shape for `T`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned + 'static,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json_content_type(request.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected a request with content-type: application/json",
            ));
        }
        let bytes = Bytes::from_request(request, state).await?;
        let value = fraudlens_core::json::parse(&bytes)?;
        from_value(value)
            .map(Self)
            .map_err(|error| ApiError::invalid(format!("invalid request body: {error}")))
    }
}

/// `application/json` or any `application/*+json`, parameters ignored (what
/// `axum::Json` accepts).
fn is_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.split_once('/') {
        Some((kind, subtype)) => kind == "application" && (subtype == "json" || subtype.ends_with("+json")),
        None => false,
    }
}

/// `T` from a parsed body. The scoring routes take the `Value` itself or a
/// list of them: those are handed over as they are instead of being rebuilt
/// node by node through serde (this is the hot path).
fn from_value<T: DeserializeOwned + 'static>(value: serde_json::Value) -> Result<T, serde_json::Error> {
    let mut slot = Some(value);
    if let Some(same) = (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<T>>()
        .and_then(Option::take)
    {
        return Ok(same);
    }
    let value = slot.unwrap_or_default();
    if let serde_json::Value::Array(items) = value {
        let mut slot = Some(items);
        if let Some(same) = (&mut slot as &mut dyn Any)
            .downcast_mut::<Option<T>>()
            .and_then(Option::take)
        {
            return Ok(same);
        }
        return T::deserialize(serde_json::Value::Array(slot.unwrap_or_default()));
    }
    T::deserialize(value)
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
    T: DeserializeOwned,
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
/// Well below hyper's own limit (64 KiB, refused before any middleware runs;
/// the transport gives that 414 its JSON body), so a long target is refused
/// with a message that says how long it was.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// The most of a framework-made error body kept as the message.
const MAX_REWRAPPED_BODY_BYTES: usize = 1024;

/// Middleware: refuses request targets over [`MAX_URI_BYTES`] (414), and
/// rewrites every error response that is not JSON yet (axum's 405 with an
/// empty body, plain-text path rejections, a 404 of the embedded docs) as
/// `{code, message}`, keeping its status and headers (`Allow` on a 405).
/// The console's HTML error pages (under `/ui`) pass as they are.
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
    let console = request.uri().path() == "/ui" || request.uri().path().starts_with("/ui/");
    let response = next.run(request).await;
    let status = response.status();
    let shaped = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json") || (console && value.starts_with("text/html")));
    if !(status.is_client_error() || status.is_server_error()) || shaped {
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

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::extract::DefaultBodyLimit;
    use axum::routing::post;
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use super::*;

    #[derive(Debug, serde::Deserialize, Serialize)]
    struct Review {
        status: String,
    }

    fn router() -> Router {
        Router::new()
            .route("/value", post(|Json(value): Json<Value>| async move { Json(value) }))
            .route("/list", post(|Json(list): Json<Vec<Value>>| async move { Json(list) }))
            .route("/typed", post(|Json(review): Json<Review>| async move { Json(review) }))
            .layer(DefaultBodyLimit::max(1024))
    }

    /// Status and body of one request.
    async fn check(path: &str, content_type: Option<&str>, body: &str) -> (StatusCode, Value) {
        let mut request = axum::http::Request::post(path);
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let request = request.body(Body::from(body.to_owned())).unwrap();
        let response = router().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    const JSON: Option<&str> = Some("application/json");

    #[tokio::test]
    async fn duplicate_keys_are_422_naming_the_key() {
        // axum::Json<Value> kept the last one: {"amount":"9999.00"}
        let (status, body) = check("/value", JSON, r#"{"amount":"1.00","amount":"9999.00"}"#).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["code"], "duplicate_key");
        assert_eq!(body["message"], r#"duplicate key "amount" at line 1 column 36"#);
        let (status, body) = check("/list", JSON, r#"[{"a":1},{"a":1,"b":{"c":1,"c":2}}]"#).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["message"], r#"duplicate key "c" in "1.b" at line 1 column 33"#);
        // derived structs refused duplicate fields before; they still do, with the same code
        let (status, body) = check("/typed", JSON, r#"{"status":"a","status":"b"}"#).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("duplicate_key"))
        );
    }

    #[tokio::test]
    async fn bodies_are_read_as_before_otherwise() {
        let record = json!({"transaction_id": "t1", "amount": 12.5, "nested": {"k": [1, null, true]}});
        assert_eq!(
            check("/value", JSON, &record.to_string()).await,
            (StatusCode::OK, record.clone())
        );
        let list = json!([record, {}]);
        assert_eq!(check("/list", JSON, &list.to_string()).await, (StatusCode::OK, list));
        let typed = json!({"status": "confirmed_fraud"});
        for content_type in [
            "application/json; charset=utf-8",
            "application/merge-patch+json",
            "Application/JSON",
        ] {
            assert_eq!(
                check("/typed", Some(content_type), &typed.to_string()).await,
                (StatusCode::OK, typed.clone()),
                "{content_type}"
            );
        }
        for (path, content_type, body, status, code) in [
            (
                "/value",
                None,
                "{}",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
            (
                "/value",
                Some("text/plain"),
                "{}",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
            (
                "/value",
                Some("application/jsonx"),
                "{}",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
            ("/value", JSON, "{\"a\":", StatusCode::BAD_REQUEST, "invalid_request"),
            ("/value", JSON, "{} {}", StatusCode::BAD_REQUEST, "invalid_request"),
            (
                "/value",
                JSON,
                &"[".repeat(65),
                StatusCode::BAD_REQUEST,
                "invalid_request",
            ),
            ("/list", JSON, "{}", StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
            (
                "/typed",
                JSON,
                r#"{"status":1}"#,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
            ),
            (
                "/value",
                JSON,
                &" ".repeat(2048),
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
            ),
        ] {
            let (got, body) = check(path, content_type, body).await;
            assert_eq!(
                (got, body["code"].as_str()),
                (status, Some(code)),
                "{path} {content_type:?} {body}"
            );
        }
    }
}
