//! `GET /api/v1/search`: a review's note found by its words, a case by its
//! id's prefix; bad queries 422; the analyst's, not the service's.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use fraudlens_store::Role;
use serde_json::json;

use crate::Api;

fn get(path: &str, key: &str) -> Request<Body> {
    Request::get(path).header("x-api-key", key).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn notes_and_cases_are_found_and_bad_queries_refused() {
    let api = Api::new().await;
    api.score("case-42").await;
    let analyst = api.key(Role::Analyst, "ana").await;
    let review = Request::put("/api/v1/anomalies/case-42")
        .header("x-api-key", &analyst)
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"status": "escalated", "note": "Skimmer found on the fuel pump"}).to_string(),
        ))
        .unwrap();
    let (status, _, body) = api.send(review).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, _, body) = api.send(get("/api/v1/search?q=case-4", &analyst)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["query"], "case-4");
    assert_eq!(body["hits"][0]["kind"], "case");
    assert_eq!(body["hits"][0]["subject"], "case-42");
    let (status, _, found) = api.send(get("/api/v1/search?q=skimmer%20PUMP", &analyst)).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let hits = found["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{found}");
    assert_eq!(
        (hits[0]["kind"].as_str(), hits[0]["subject"].as_str()),
        (Some("note"), Some("case-42"))
    );
    assert_eq!(hits[0]["text"], "Skimmer found on the fuel pump");

    for bad in [
        "",
        "q=",
        "q=%20%20",
        "q=a&limit=0",
        "q=a&limit=101",
        &format!("q={}", "x".repeat(201)),
        "q=a%00b",
    ] {
        let (status, _, body) = api.send(get(&format!("/api/v1/search?{bad}"), &analyst)).await;
        assert!(
            status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST,
            "{bad}: {status} {body}"
        );
        assert!(body["code"].is_string() && body["message"].is_string(), "{body}");
    }
    let (status, _, _) = api.send(get("/api/v1/search?q=case", &api.key)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn analyses_of_odd_ids_are_404_and_concurrent_writes_each_keep_a_narrative() {
    let api = Api::new().await;
    api.score("case-7").await;
    let analyst = api.key(Role::Analyst, "ana").await;
    for id in [
        "no-such-case",
        "..%2F..%2Fetc",
        "%E2%80%AEcase-7",
        "case-7%00",
        &"x".repeat(2_000),
    ] {
        for method in ["GET", "POST"] {
            let request = Request::builder()
                .method(method)
                .uri(format!("/api/v1/transactions/{id}/analysis"))
                .header("x-api-key", &analyst)
                .body(Body::empty())
                .unwrap();
            let (status, _, body) = api.send(request).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {id}: {body}");
            assert!(body["code"].is_string() && body["message"].is_string(), "{body}");
        }
    }
    // a GET keeps nothing; ten POSTs at once keep ten narratives, none lost
    let (status, _, read) = api.send(get("/api/v1/transactions/case-7/analysis", &analyst)).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert!(read["narrative_id"].is_null());
    let posts = (0..10).map(|_| {
        api.send(
            Request::post("/api/v1/transactions/case-7/analysis")
                .header("x-api-key", &analyst)
                .body(Body::empty())
                .unwrap(),
        )
    });
    let answers = futures_util::future::join_all(posts).await;
    let mut ids: Vec<i64> = answers
        .iter()
        .map(|(status, _, body)| {
            assert_eq!(*status, StatusCode::OK, "{body}");
            body["narrative_id"].as_i64().unwrap()
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 10);
    let kept = api.state.pipeline.store().narratives("case-7", 100).await.unwrap();
    assert_eq!(kept.len(), 10);
}
