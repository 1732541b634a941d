//! The REST API of fraudlens: [`app`] builds the axum router over an
//! [`AppState`] (the shared scoring pipeline, key checks, metrics).
//!
//! | path | who | what |
//! |---|---|---|
//! | `POST /api/v1/transactions` (`/batch`, `/upload`) | service, admin | score and store |
//! | `GET /api/v1/anomalies`, `GET /api/v1/transactions/{id}`, `PUT /api/v1/anomalies/{id}`, `POST /api/v1/labels` | analyst, admin | review |
//! | `GET /api/v1/models`, `GET /api/v1/models/production`, `GET /model/info` | any key | models |
//! | `GET /api/v1/models/production/drift` | any key | live drift of the serving model |
//! | `POST /api/v1/models/{version}/promote` | admin | hot swap |
//! | `POST /api/v1/models/{version}/shadow`, `DELETE /api/v1/models/shadow` | admin | shadow model |
//! | `POST /predict`, `/predict/batch`, `/upload` | service, admin | aliases of the common Python services |
//! | `/ui` (and `/`) | analyst, admin (signed in) | the analyst console ([`console`]) |
//! | `/health`, `/health/live`, `/health/ready`, `/metrics`, `/openapi.json`, `/docs` | public | operations |
//!
//! [`serve`] runs the API on a bound listener until a shutdown future
//! resolves, then drains and flushes.
//!
//! Every error is `{"code", "message"}` JSON (also the framework's own 404,
//! 405 and 414); bodies are size-limited (413),
//! JSON routes need `application/json` (415), keys are checked in constant
//! time with per-key rate limits (429 + `Retry-After`).

pub mod admission;
pub mod api;
pub mod auth;
pub mod cases;
pub mod compat;
pub mod console;
pub mod error;
pub mod eth;
pub mod ops;
pub mod predictions;
mod serve;
mod settings;
pub mod tls;
pub mod transport;
pub mod upload;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use admission::InFlight;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{delete, get, post, put};
use fraudlens_core::Secret;
use fraudlens_pipeline::Pipeline;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};

pub use auth::{Auth, Caller, new_key};
pub(crate) use fraudlens_pipeline::now;
pub use serve::{ServeOptions, serve};
pub use settings::ServeSettings;

/// Limits and options of the API.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Largest JSON body, in bytes.
    pub max_body_bytes: usize,
    /// Largest CSV upload, in bytes.
    pub max_upload_bytes: usize,
    /// Most transactions per batch request.
    pub max_batch: usize,
    /// Requests per second per API key (0: unlimited).
    pub rate_limit_per_key: u32,
    /// Origins allowed by CORS (empty: no CORS headers, browsers on other origins are refused).
    pub cors_origins: Vec<String>,
    /// The key that tokenises card numbers (needed to load models whose schema has a card field).
    pub card_hash_key: Option<Secret>,
    /// Transactions being scored at once across all scoring requests; a
    /// request that would go over gets 503 with `Retry-After` at once.
    pub max_transactions_in_flight: usize,
    /// The MLflow tracking server whose aliases follow promotions and shadow
    /// changes made through this API (`None`: none configured).
    pub mlflow: Option<fraudlens_mlflow::Client>,
    /// The console's cookies carry `Secure` (the server speaks TLS).
    pub secure_cookies: bool,
    /// The Ethereum provider addresses are scored from (`None`: `[eth]` not configured).
    pub chain: Option<Arc<fraudlens_chain::Chain>>,
    /// How much evidence a case analysis gathers.
    pub cases: fraudlens_cases::CaseSettings,
    /// The LLM that writes case narratives (`None`: the rules write them).
    pub llm: Option<Arc<fraudlens_cases::Llm>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_upload_bytes: 256 << 20,
            max_batch: 1_000,
            rate_limit_per_key: 0,
            cors_origins: Vec::new(),
            card_hash_key: None,
            max_transactions_in_flight: 16_384,
            mlflow: None,
            secure_cookies: false,
            chain: None,
            cases: fraudlens_cases::CaseSettings::default(),
            llm: None,
        }
    }
}

/// What every handler shares.
pub struct AppState {
    /// The scoring path (and through it, the store).
    pub pipeline: Arc<Pipeline>,
    /// Key checks and rate limits.
    pub auth: Arc<Auth>,
    /// Limits.
    pub config: ServerConfig,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Set once shutdown begins (readiness turns 503).
    pub shutting_down: AtomicBool,
    /// The budget of transactions being scored ([`admission`]).
    pub in_flight: InFlight,
    /// The console's signed-in browsers.
    pub sessions: console::Sessions,
}

impl AppState {
    /// State over a started pipeline.
    pub fn new(pipeline: Arc<Pipeline>, config: ServerConfig) -> Arc<Self> {
        let auth = Arc::new(Auth::new(pipeline.store().clone(), config.rate_limit_per_key));
        let metrics = ops::install_metrics();
        ops::set_model_info(&pipeline.model());
        Arc::new(Self {
            pipeline,
            auth,
            metrics,
            shutting_down: AtomicBool::new(false),
            in_flight: InFlight::new(config.max_transactions_in_flight),
            sessions: console::Sessions::new(config.secure_cookies),
            config,
        })
    }
}

/// The OpenAPI document (served at `/openapi.json`).
#[derive(OpenApi)]
#[openapi(
    info(title = "fraudlens", description = "Fraud scoring, review queue and models. Send `X-API-Key` (create one with `fraudlens keys create`)."),
    paths(
        api::score_one, api::score_batch, upload::upload, api::anomalies, api::transaction, cases::analysis, cases::write_narrative, cases::search, api::review, api::labels,
        predictions::predict_one, predictions::predict_many, predictions::upload_rows, eth::score_address,
        api::models, api::production, api::production_drift, api::promote, api::shadow, api::end_shadow, compat::predict, compat::predict_batch,
        ops::health, ops::live, ops::ready, ops::metrics,
    ),
    components(schemas(
        error::ErrorBody,
        fraudlens_store::QueueOrder,
        fraudlens_core::ReviewStatus,
    )),
    modifiers(&SecurityAddon),
    tags(
        (name = "scoring", description = "Score transactions; every decision is stored before the response"),
        (name = "review", description = "The analyst review queue, audit trail and labels"),
        (name = "models", description = "Model registry and hot swap"),
        (name = "compatibility", description = "Paths of common Python fraud services"),
        (name = "operations", description = "Probes and metrics (no key)"),
    )
)]
pub struct ApiDoc;

struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    /// The key scheme, and the errors any keyed operation can answer (the
    /// limits and checks in front of every handler), each with the error body.
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        let common = [
            ("400", "Malformed request (not JSON, bad query string)"),
            ("401", "Missing or invalid API key"),
            ("403", "The key's role may not do this"),
            ("413", "Body over the size limit"),
            ("414", "Request target (path and query) over 8 KiB"),
            ("415", "Wrong content type"),
            ("422", "A well-formed request that is not valid"),
            ("429", "Rate limit of the key exceeded (see Retry-After)"),
            (
                "503",
                "The store is unavailable, the server is overloaded or it is shutting down (see Retry-After)",
            ),
        ];
        for item in openapi.paths.paths.values_mut() {
            for operation in [&mut item.get, &mut item.post, &mut item.put].into_iter().flatten() {
                if operation.security.is_none() {
                    continue;
                }
                for (status, description) in common {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| {
                            ResponseBuilder::new()
                                .description(description)
                                .content(
                                    "application/json",
                                    ContentBuilder::new()
                                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                                        .build(),
                                )
                                .build()
                                .into()
                        });
                }
            }
        }
    }
}

/// The router.
pub fn app(state: Arc<AppState>) -> Router {
    let guard = |allowed| from_fn_with_state((state.auth.clone(), allowed), auth::require);
    // the upload handler enforces `max_upload_bytes` itself (before reading,
    // from Content-Length; while streaming, on the file's bytes) and then drains
    // a little so its answer reaches the client; this is the hard stop behind it
    let upload_limit = DefaultBodyLimit::max(state.config.max_upload_bytes.saturating_add(upload::DRAIN_BYTES));
    let scoring = Router::new()
        .route("/api/v1/transactions", post(api::score_one))
        .route("/api/v1/transactions/batch", post(api::score_batch))
        .route("/api/v1/predictions", post(predictions::predict_one))
        .route("/api/v1/predictions/batch", post(predictions::predict_many))
        .route("/predict", post(compat::predict))
        .route("/predict/batch", post(compat::predict_batch))
        .route_layer(from_fn_with_state(state.clone(), admission::admit_before_parsing))
        .merge(
            Router::new()
                .route("/api/v1/transactions/upload", post(upload::upload))
                .route("/upload", post(upload::upload))
                .route("/api/v1/predictions/upload", post(predictions::upload_rows))
                .layer(upload_limit),
        )
        .route_layer(guard(auth::SCORE));
    // chain data is fetched before the work in flight is admitted: a slow provider holds no slot
    let addresses = Router::new()
        .route("/api/v1/eth/addresses/{address}/score", post(eth::score_address))
        .route_layer(guard(auth::SCORE));
    let review = Router::new()
        .route("/api/v1/anomalies", get(api::anomalies))
        .route("/api/v1/anomalies/{id}", put(api::review))
        .route("/api/v1/transactions/{id}", get(api::transaction))
        .route(
            "/api/v1/transactions/{id}/analysis",
            get(cases::analysis).post(cases::write_narrative),
        )
        .route("/api/v1/search", get(cases::search))
        .route("/api/v1/labels", post(api::labels))
        .route_layer(guard(auth::REVIEW));
    let read = Router::new()
        .route("/api/v1/models", get(api::models))
        .route("/api/v1/models/production", get(api::production))
        .route("/api/v1/models/production/drift", get(api::production_drift))
        .route("/model/info", get(api::production))
        .route_layer(guard(auth::ANY));
    let admin = Router::new()
        .route("/api/v1/models/{version}/promote", post(api::promote))
        .route("/api/v1/models/{version}/shadow", post(api::shadow))
        .route("/api/v1/models/shadow", delete(api::end_shadow))
        .route_layer(guard(auth::ADMIN));
    let shutting_down = state.clone();
    let public = ops::probe_router(Arc::new(ops::Probes {
        pipeline: state.pipeline.clone(),
        service: "fraudlens",
        metrics: state.metrics.clone(),
        not_ready: Box::new(move || {
            if shutting_down.shutting_down.load(Ordering::Acquire) {
                vec!["shutting down".to_owned()]
            } else {
                Vec::new()
            }
        }),
    }));
    let docs = utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi());

    let mut router = Router::new()
        .merge(scoring)
        .merge(addresses)
        .merge(review)
        .merge(read)
        .merge(admin)
        .merge(public)
        .merge(console::router(state.clone()))
        .with_state(state.clone())
        .merge(docs)
        .fallback(error::not_found)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(from_fn(error::json_errors))
        .layer(from_fn(ops::track))
        .layer(from_fn(ops::security_headers));
    if !state.config.cors_origins.is_empty() {
        let origins: Vec<HeaderValue> = state
            .config
            .cors_origins
            .iter()
            .filter_map(|origin| HeaderValue::from_str(origin).ok())
            .collect();
        router = router.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
                .allow_headers([axum::http::header::CONTENT_TYPE, HeaderName::from_static("x-api-key")]),
        );
    }
    router
}
