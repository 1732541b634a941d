//! Probes ([`probe_router`], shared by the API and the detector), Prometheus
//! metrics, and the middleware every request passes:
//! request metrics by route (the matched route template, never the raw path,
//! so labels stay low-cardinality) and security headers.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use fraudlens_pipeline::{Pipeline, ServingModel};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::Json;

/// When the process installed its metrics: `fraudlens_uptime_seconds` counts from here.
static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle).
pub fn install_metrics() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    STARTED.get_or_init(Instant::now);
    HANDLE
        .get_or_init(|| {
            let seconds = [
                0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05,
                0.1, 0.25, 0.5, 1.0, 2.5,
            ];
            let sizes = [
                1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
            ];
            let scores = [
                0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 1.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &seconds)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full("store_commit_batch_size".to_owned()), &sizes))
                .and_then(|b| b.set_buckets_for_metric(Matcher::Full("fraudlens_score".to_owned()), &scores));
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
/// (`fraudlens_model_info{version, kind} 1`): [`fraudlens_pipeline::publish_model_info`]
/// (every swap publishes its model too).
pub fn set_model_info(model: &ServingModel) {
    fraudlens_pipeline::publish_model_info(model);
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
    record_minute(status, elapsed);
    if status.is_server_error() {
        span.in_scope(|| tracing::warn!(status = status.as_u16(), "server error"));
    }
    response
}

/// The requests of one minute of this process (the console's overview).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MinuteStats {
    /// Minutes since the epoch.
    pub minute: i64,
    /// Requests answered.
    pub requests: u64,
    /// Answered 4xx.
    pub client_errors: u64,
    /// Answered 5xx.
    pub server_errors: u64,
    /// The slowest, in seconds.
    pub max_seconds: f64,
}

/// Minutes of request counts kept (a day).
const MINUTES_KEPT: usize = 24 * 60;

/// One minute's counters, updated without a lock (every request passes here).
struct MinuteSlot {
    minute: AtomicI64,
    requests: AtomicU64,
    client_errors: AtomicU64,
    server_errors: AtomicU64,
    max_micros: AtomicU64,
}

fn minutes() -> &'static [MinuteSlot] {
    static MINUTES: std::sync::OnceLock<Vec<MinuteSlot>> = std::sync::OnceLock::new();
    MINUTES.get_or_init(|| {
        (0..MINUTES_KEPT)
            .map(|_| MinuteSlot {
                minute: AtomicI64::new(i64::MIN),
                requests: AtomicU64::new(0),
                client_errors: AtomicU64::new(0),
                server_errors: AtomicU64::new(0),
                max_micros: AtomicU64::new(0),
            })
            .collect()
    })
}

fn this_minute() -> i64 {
    crate::now().as_millis().div_euclid(60_000)
}

/// Counts a request in this minute's slot. The first request of a minute
/// claims the slot (a day old by then) and zeroes it; a request racing that
/// claim may be counted in neither minute, which a dashboard can bear.
fn record_minute(status: StatusCode, elapsed: std::time::Duration) {
    let minute = this_minute();
    let slot = &minutes()[minute.rem_euclid(MINUTES_KEPT as i64) as usize];
    let seen = slot.minute.load(Ordering::Acquire);
    if seen != minute {
        if seen > minute {
            return; // the clock went back: the slot holds a later minute
        }
        if slot
            .minute
            .compare_exchange(seen, minute, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            for counter in [
                &slot.requests,
                &slot.client_errors,
                &slot.server_errors,
                &slot.max_micros,
            ] {
                counter.store(0, Ordering::Release);
            }
        }
    }
    slot.requests.fetch_add(1, Ordering::AcqRel);
    if status.is_client_error() {
        slot.client_errors.fetch_add(1, Ordering::AcqRel);
    }
    if status.is_server_error() {
        slot.server_errors.fetch_add(1, Ordering::AcqRel);
    }
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    slot.max_micros.fetch_max(micros, Ordering::AcqRel);
}

/// This process's requests of the last `n` minutes (at most a day), oldest
/// first, this minute last; minutes without requests are zeros.
pub fn recent_minutes(n: usize) -> Vec<MinuteStats> {
    let now = this_minute();
    let slots = minutes();
    let n = n.clamp(1, MINUTES_KEPT) as i64;
    (now - n + 1..=now)
        .map(|minute| {
            let slot = &slots[minute.rem_euclid(MINUTES_KEPT as i64) as usize];
            if slot.minute.load(Ordering::Acquire) == minute {
                MinuteStats {
                    minute,
                    requests: slot.requests.load(Ordering::Acquire),
                    client_errors: slot.client_errors.load(Ordering::Acquire),
                    server_errors: slot.server_errors.load(Ordering::Acquire),
                    max_seconds: slot.max_micros.load(Ordering::Acquire) as f64 / 1e6,
                }
            } else {
                MinuteStats {
                    minute,
                    ..MinuteStats::default()
                }
            }
        })
        .collect()
}

/// Middleware: standard security headers on every response.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let docs = request.uri().path().starts_with("/docs");
    let console = request.uri().path() == "/ui" || request.uri().path().starts_with("/ui/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !docs {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(if console {
                crate::console::CSP
            } else {
                "default-src 'none'; frame-ancestors 'none'"
            }),
        );
    }
    response
}

/// The probes and metrics of a fraudlens process (the API's and the
/// detector's): `/health`, `/health/live`, `/health/ready`, `/metrics`.
/// Readiness always checks the store and the shared entity state, if any
/// (each within [`STORE_PING_TIMEOUT`]), and names the serving model; the process adds its own checks.
pub struct Probes {
    /// The scoring path: its store is pinged, its model named.
    pub pipeline: Arc<Pipeline>,
    /// The service name `/health` reports (`fraudlens`, `fraudlens-detect`).
    pub service: &'static str,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// The process's own readiness checks: every reason it is not ready
    /// (none: ready), e.g. shutting down, or the detector's Kafka health.
    /// Reasons are shown to the caller: they must hold no internal detail.
    pub not_ready: Box<dyn Fn() -> Vec<String> + Send + Sync>,
}

/// How long readiness waits for the store before answering 503.
pub const STORE_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The probe routes over `probes` (public: no key).
pub fn probe_router<S>(probes: Arc<Probes>) -> Router<S> {
    Router::new()
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(probes)
}

/// `/health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `healthy`.
    pub status: &'static str,
    /// Now (RFC 3339).
    pub timestamp: String,
    /// `fraudlens` (the API) or `fraudlens-detect` (the detector).
    pub service: &'static str,
    /// fraudlens version.
    pub version: &'static str,
    /// Serving model version.
    pub model_version: String,
}

/// Liveness and basic facts (no key needed).
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, body = Health)))]
pub async fn health(State(probes): State<Arc<Probes>>) -> Json<Health> {
    Json(Health {
        status: "healthy",
        timestamp: crate::now().to_string(),
        service: probes.service,
        version: env!("CARGO_PKG_VERSION"),
        model_version: probes.pipeline.model().version().to_owned(),
    })
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200, body = Health)))]
pub async fn live(probes: State<Arc<Probes>>) -> Json<Health> {
    health(probes).await
}

/// `/health/ready` when ready.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// `ready`.
    pub status: &'static str,
    /// Serving model version.
    pub model: String,
}

/// `/health/ready` when not ready (503): the error body and every reason.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotReady {
    /// `not_ready`.
    pub code: &'static str,
    /// The reasons, for people.
    pub message: String,
    /// Each reason it is not ready.
    pub reasons: Vec<String>,
}

/// Ready to take traffic: the store answers (within a second), a model is
/// loaded, and the process's own checks pass; else 503 with every reason
/// (the store's error itself is logged, not shown).
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses((status = 200, body = Ready), (status = 503, body = NotReady)))]
pub async fn ready(State(probes): State<Arc<Probes>>) -> Response {
    let mut reasons = (probes.not_ready)();
    match tokio::time::timeout(STORE_PING_TIMEOUT, probes.pipeline.store().ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness: store ping failed");
            reasons.push("store: unreachable".to_owned());
        }
        Err(_) => reasons.push(format!("store: no answer within {} ms", STORE_PING_TIMEOUT.as_millis())),
    }
    match tokio::time::timeout(STORE_PING_TIMEOUT, probes.pipeline.ping_shared_state()).await {
        Ok(Ok(())) => {}
        Ok(Err(why)) => reasons.push(format!("shared entity state: {why}")),
        Err(_) => reasons.push(format!(
            "shared entity state: no answer within {} ms",
            STORE_PING_TIMEOUT.as_millis()
        )),
    }
    if reasons.is_empty() {
        let body = Ready {
            status: "ready",
            model: probes.pipeline.model().version().to_owned(),
        };
        return (StatusCode::OK, Json(body)).into_response();
    }
    let body = NotReady {
        code: "not_ready",
        message: format!("not ready: {}", reasons.join("; ")),
        reasons,
    };
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// The process's own and build metrics, read at each scrape: the `process_*`
/// set of Prometheus's client libraries (CPU seconds, resident and virtual
/// memory, open and most file descriptors, threads, start time),
/// `fraudlens_uptime_seconds` and `fraudlens_build_info{version, commit,
/// profile} 1` (commit: `FRAUDLENS_BUILD_COMMIT` at build time, else
/// `unknown`).
fn collect_process_metrics() {
    static COLLECTOR: std::sync::OnceLock<metrics_process::Collector> = std::sync::OnceLock::new();
    COLLECTOR
        .get_or_init(|| {
            let collector = metrics_process::Collector::default();
            collector.describe();
            collector
        })
        .collect();
    let started = STARTED.get_or_init(Instant::now);
    metrics::gauge!("fraudlens_uptime_seconds").set(started.elapsed().as_secs_f64());
    metrics::gauge!(
        "fraudlens_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "commit" => option_env!("FRAUDLENS_BUILD_COMMIT").unwrap_or("unknown"),
        "profile" => if cfg!(debug_assertions) { "debug" } else { "release" },
    )
    .set(1.0);
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain")))]
pub async fn metrics(State(probes): State<Arc<Probes>>) -> Response {
    collect_process_metrics();
    let body = probes.metrics.render();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}
