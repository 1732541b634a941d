//! Regressions of the hardening issue that the API shares with the detector:
//! a reused transaction id with other content is a conflict even inside one
//! batch (defect 10), and labels for transactions that are not stored are
//! reported (defect 12).

use fraudlens_testkit::{Backend, TestDb};
use reqwest::StatusCode;
use serde_json::json;

use crate::model::trained;
use crate::serve::{Server, get, key, post};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_id_in_one_batch_is_a_conflict_and_unmatched_labels_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let service = key(dir.path(), &db.url, "service");
    let analyst = key(dir.path(), &db.url, "analyst");
    let server = Server::start(dir.path(), &db.url, Some(&trained().model()));
    let client = reqwest::Client::new();
    let tx = |amount: &str| {
        json!({"transaction_id": "dup-1", "timestamp": "2026-03-01T10:00:00Z", "customer_id": "c1",
               "terminal_id": "t1", "amount": amount, "currency": "EUR"})
    };
    let batch = json!([tx("10.00"), tx("9999.00"), tx("10.00")]);
    let (status, body) = post(&client, &server.url("/api/v1/transactions/batch"), &service, &batch).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let statuses: Vec<u64> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| result["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [200, 409, 200], "{body}");
    assert_eq!(body["results"][1]["error"]["code"], "conflict", "{body}");

    let labels = json!([{"transaction_id": "dup-1", "label": "fraud"}, {"transaction_id": "nope", "label": "fraud"}]);
    let (status, body) = post(&client, &server.url("/api/v1/labels"), &analyst, &labels).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["recorded"].as_u64(), body["unmatched"].as_u64()),
        (Some(2), Some(1)),
        "{body}"
    );
    assert_eq!(body["unmatched_ids"], json!(["nope"]), "{body}");
    let metrics = server.metrics().await;
    assert!(metrics.contains("fraudlens_labels_unmatched_total 1"), "{metrics}");
    assert_eq!(server.terminate(), 0);
}

/// Attack: 40 concurrent copies of one new transaction, half of them with
/// another amount. Exactly one is stored; every copy gets 200 (same content)
/// or 409 (other content); the entity state counts it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copies_of_one_transaction_are_stored_and_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let service = key(dir.path(), &db.url, "service");
    let analyst = key(dir.path(), &db.url, "analyst");
    let server = Server::start(dir.path(), &db.url, Some(&trained().model()));
    let client = reqwest::Client::new();
    let url = server.url("/api/v1/transactions");
    let tx = |id: &str, minute: u32, amount: &str| {
        json!({"transaction_id": id, "timestamp": format!("2026-03-01T10:{minute:02}:00Z"), "customer_id": "c1",
               "terminal_id": "t1", "amount": amount, "currency": "EUR"})
    };
    let copies: Vec<serde_json::Value> = (0..40)
        .map(|idx| tx("race-1", 0, if idx % 2 == 0 { "10.00" } else { "20.00" }))
        .collect();
    let answers = futures_util::future::join_all(copies.iter().map(|body| post(&client, &url, &service, body))).await;
    let stored = get(&client, &server.url("/api/v1/transactions/race-1"), &analyst)
        .await
        .1;
    let stored_minor = stored["amount_minor"].as_i64().unwrap();
    for ((status, body), copy) in answers.iter().zip(&copies) {
        match status.as_u16() {
            200 => assert_eq!(body["transaction_id"], "race-1", "{body}"),
            409 => assert_eq!(body["code"], "conflict", "{body}"),
            other => panic!("{other}: {body}"),
        }
        // a 200 only for the stored content, a 409 only for the other
        let minor = if copy["amount"] == "10.00" { 1000 } else { 2000 };
        assert_eq!(
            status.as_u16() == 200,
            minor == stored_minor,
            "{body} vs stored {stored_minor}"
        );
    }
    let (status, _) = post(&client, &url, &service, &tx("race-2", 1, "10.00")).await;
    assert_eq!(status, StatusCode::OK);
    let detail = get(&client, &server.url("/api/v1/transactions/race-2"), &analyst)
        .await
        .1;
    assert_eq!(detail["features"]["customer_count_1d"], 2.0, "{detail}");
    assert_eq!(server.terminate(), 0);
}
