//! In-process tests of the HTTP router: requests go through
//! `app(state).oneshot(request)` (no socket), on a SQLite store in a
//! temporary directory and the model fixture of `fraudlens-model`. The
//! whole-process tests of the binary (`crates/fraudlens/tests/it/serve.rs`)
//! cover the transport, limits and shutdown.

// a failed unwrap in a test is a failed test with a backtrace
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod console;
mod eth;
mod router;
mod search;

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use fraudlens_pipeline::{Pipeline, PipelineConfig, ServingModel};
use fraudlens_server::{AppState, ServerConfig};
use fraudlens_store::Role;
use fraudlens_testkit::{Backend, TestDb};
use serde_json::Value;
use tower::ServiceExt as _;

/// An event-mode GBDT artifact (customer and terminal entities).
const MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fraudlens-model/tests/fixtures/artifact-v1"
);

/// The API state over a fresh store, and a service key.
pub struct Api {
    /// What the router serves.
    pub state: Arc<AppState>,
    /// An `X-API-Key` of the service role.
    pub key: String,
    _db: TestDb,
}

impl Api {
    /// A started pipeline on a fresh SQLite store, with one service key.
    pub async fn new() -> Self {
        Self::with(ServerConfig::default()).await
    }

    /// [`Self::new`] with `config`.
    pub async fn with(config: ServerConfig) -> Self {
        let db = TestDb::new(Backend::Sqlite).await;
        let store = fraudlens_store::connect(&db.url, &fraudlens_store::StoreOptions::default())
            .await
            .unwrap();
        let (key, entry) = fraudlens_server::new_key("test", Role::Service, fraudlens_pipeline::now()).unwrap();
        store.create_key(&entry).await.unwrap();
        let model = ServingModel::load(Path::new(MODEL), None).unwrap();
        let pipeline = Pipeline::start(store, model, PipelineConfig::default()).await.unwrap();
        let state = AppState::new(pipeline, config);
        Self { state, key, _db: db }
    }

    /// Sends one request through a fresh router; the status, headers and JSON body.
    pub async fn send(&self, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
        let (status, headers, text) = self.send_text(request).await;
        (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Sends one request; the status, headers and body as text.
    pub async fn send_text(&self, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
        let response = fraudlens_server::app(self.state.clone())
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// A key of `role`, stored.
    pub async fn key(&self, role: Role, name: &str) -> String {
        let (key, entry) = fraudlens_server::new_key(name, role, fraudlens_pipeline::now()).unwrap();
        self.state.pipeline.store().create_key(&entry).await.unwrap();
        key
    }

    /// Scores one transaction (customer `c1` on terminal `k1`) with the service key.
    pub async fn score(&self, id: &str) {
        let transaction = serde_json::json!({
            "transaction_id": id, "timestamp": "2026-01-01T00:00:00Z", "customer_id": "c1",
            "terminal_id": "k1", "amount": 10.0
        });
        let (status, _, body) = self.send(self.post("/api/v1/transactions", &transaction)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// A JSON POST with the service key.
    pub fn post(&self, path: &str, body: &Value) -> Request<Body> {
        Request::post(path)
            .header("content-type", "application/json")
            .header("x-api-key", &self.key)
            .body(Body::from(body.to_string()))
            .unwrap()
    }
}
