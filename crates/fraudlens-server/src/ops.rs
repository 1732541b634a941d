//! Probes, Prometheus metrics, and the middleware every request passes:
//! request metrics by route (the matched route template, never the raw path,
//! so labels stay low-cardinality) and security headers.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fraudlens_pipeline::ServingModel;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::Json;

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle).
pub fn install_metrics() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let seconds = [
                0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 0.5, 1.0, 2.5,
            ];
            let sizes = [
                1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &seconds)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full("store_commit_batch_size".to_owned()), &sizes));
            match builder.and_then(|b| b.install_recorder()) {
                Ok(handle) => handle,
                Err(error) => {
                    // another recorder is installed (tests): render an empty registry
                    tracing::debug!(%error, "metrics recorder not installed");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
}

/// Publishes the serving model as an info metric
/// (`fraudlens_model_info{version, kind} 1`); the series of the model it
/// replaces drops to 0. Exactly one series reads 1 after any sequence of
/// calls: the reset names the previous series with every one of its labels
/// (a reset without `kind` would land on another series and leave the old one
/// at 1).
pub fn set_model_info(model: &ServingModel) {
    static CURRENT: std::sync::Mutex<Option<(String, &'static str)>> = std::sync::Mutex::new(None);
    let mut current = CURRENT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((version, kind)) = current.take() {
        metrics::gauge!("fraudlens_model_info", "version" => version, "kind" => kind).set(0.0);
    }
    metrics::gauge!("fraudlens_model_info", "version" => model.version().to_owned(), "kind" => model.kind()).set(1.0);
    *current = Some((model.version().to_owned(), model.kind()));
}

/// Middleware: `http_requests_total{route,method,status}` and
/// `http_request_duration_seconds{route}`, and one tracing span per request.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let span = tracing::info_span!("request", route = %route, method = %method);
    let response = tracing::Instrument::instrument(next.run(request), span.clone()).await;
    let status = response.status();
    let elapsed = started.elapsed();
    metrics::counter!("http_requests_total", "route" => route.clone(), "method" => method, "status" => status.as_u16().to_string())
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "route" => route).record(elapsed.as_secs_f64());
    if status.is_server_error() {
        span.in_scope(|| tracing::warn!(status = status.as_u16(), "server error"));
    }
    response
}

/// Middleware: standard security headers on every response.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let docs = request.uri().path().starts_with("/docs");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !docs {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    response
}

/// `/health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `healthy`.
    pub status: &'static str,
    /// Now (RFC 3339).
    pub timestamp: String,
    /// `fraudlens`.
    pub service: &'static str,
    /// fraudlens version.
    pub version: &'static str,
    /// Serving model version.
    pub model_version: String,
}

/// Liveness and basic facts (no key needed).
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, body = Health)))]
pub async fn health(State(state): State<Arc<AppState>>) -> Json<Health> {
    Json(Health {
        status: "healthy",
        timestamp: fraudlens_core::Timestamp::from_millis(crate::now_ms()).to_string(),
        service: "fraudlens",
        version: env!("CARGO_PKG_VERSION"),
        model_version: state.pipeline.model().version().to_owned(),
    })
}

/// `/health/ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`.
    pub status: &'static str,
    /// Each check: `ok` or why not.
    pub checks: std::collections::BTreeMap<&'static str, String>,
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200, body = Health)))]
pub async fn live(state: State<Arc<AppState>>) -> Json<Health> {
    health(state).await
}

/// Ready to take traffic: the store answers and a model is loaded; else 503 naming the failed check.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let mut checks = std::collections::BTreeMap::new();
    let store = match tokio::time::timeout(std::time::Duration::from_secs(2), state.pipeline.store().ping()).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(error)) => format!("unreachable: {error}"),
        Err(_) => "no answer within 2 s".to_owned(),
    };
    checks.insert("store", store);
    checks.insert("model", format!("ok ({})", state.pipeline.model().version()));
    if state.shutting_down.load(std::sync::atomic::Ordering::Acquire) {
        checks.insert("accepting", "shutting down".to_owned());
    }
    let ready = checks.values().all(|value| value.starts_with("ok"));
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" },
        checks,
    };
    (status, Json(body)).into_response()
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let body = state.metrics.render();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}
