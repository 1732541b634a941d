//! A few routes of the router, in process: scoring, replay, keys, error bodies, probes.

use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

use crate::Api;

/// A transaction an hour ago.
fn transaction(id: &str, amount: f64) -> Value {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let at = *BASE.get_or_init(|| fraudlens_pipeline::now_ms() - 3_600_000);
    json!({
        "transaction_id": id,
        "timestamp": fraudlens_core::Timestamp::from_millis(at).to_string(),
        "customer_id": "cust-1",
        "terminal_id": "term-1",
        "amount": amount,
    })
}

/// An error body is exactly `{code, message}`.
fn assert_error_body(body: &Value, code: &str) {
    let object = body.as_object().unwrap_or_else(|| panic!("not an object: {body}"));
    assert_eq!(object.len(), 2, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|message| !message.is_empty()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_transaction_is_scored_and_its_replay_flagged() {
    let api = Api::new().await;
    let tx = transaction("tx-1", 42.0);
    let (status, headers, first) = api.send(api.post("/api/v1/transactions", &tx)).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["transaction_id"], "tx-1");
    assert!(["approve", "review", "decline"].contains(&first["decision"].as_str().unwrap()));
    assert!(headers.get("idempotent-replayed").is_none());

    let (status, headers, again) = api.send(api.post("/api/v1/transactions", &tx)).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(headers.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(again, first, "the stored decision, unchanged");

    let (status, _, body) = api
        .send(api.post("/api/v1/transactions", &transaction("tx-1", 43.0)))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error_body(&body, "conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_a_key_is_401_json() {
    let api = Api::new().await;
    let request = Request::post("/api/v1/transactions")
        .header("content-type", "application/json")
        .body(Body::from(transaction("tx-1", 1.0).to_string()))
        .unwrap();
    let (status, _, body) = api.send(request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error_body(&body, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_transaction_is_422_with_code_and_message() {
    let api = Api::new().await;
    let (status, _, body) = api
        .send(api.post("/api/v1/transactions", &json!({"transaction_id": "tx-1"})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_error_body(&body, "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_wrong_methods_are_json() {
    let api = Api::new().await;
    let (status, _, body) = api.send(Request::get("/nope").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error_body(&body, "not_found");
    let request = Request::get("/api/v1/transactions")
        .header("x-api-key", &api.key)
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = api.send(request).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body.as_object().map(serde_json::Map::len), Some(2), "{body}");
    assert!(body["code"].is_string() && body["message"].is_string(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_names_the_model_and_turns_503_at_shutdown() {
    let api = Api::new().await;
    let ready = || Request::get("/health/ready").body(Body::empty()).unwrap();
    let (status, _, body) = api.send(ready()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");
    assert_eq!(body["model"], api.state.pipeline.model().version());

    api.state.shutting_down.store(true, Ordering::Release);
    let (status, _, body) = api.send(ready()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["code"], "not_ready", "{body}");
    assert!(body["message"].as_str().unwrap().contains("shutting down"), "{body}");
    assert_eq!(body["reasons"], json!(["shutting down"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_both_readiness_answers() {
    let api = Api::new().await;
    let (status, _, doc) = api
        .send(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    let responses = &doc["paths"]["/health/ready"]["get"]["responses"];
    assert!(
        responses["200"].is_object() && responses["503"].is_object(),
        "{responses}"
    );
    for schema in ["Ready", "NotReady"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema} missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_of_a_model_without_a_reference_is_409_json() {
    // the fixture model was made before models kept their distributions
    let api = Api::new().await;
    let (status, _, _) = api
        .send(api.post("/api/v1/transactions", &transaction("tx-d", 5.0)))
        .await;
    assert_eq!(status, StatusCode::OK);
    let request = Request::get("/api/v1/models/production/drift")
        .header("x-api-key", &api.key)
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = api.send(request).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_error_body(&body, "no_reference");
}
