//! Feature rows (an imported LightGBM model) through the pipeline: the
//! store is the one arbiter of a repeated id — within a batch, across
//! concurrent requests — and a failed write stores nothing and is retried
//! cleanly.

use std::path::PathBuf;
use std::sync::Arc;

use fraudlens_model::artifact::Artifact;
use fraudlens_model::interop::import_lightgbm_text;
use fraudlens_model::threshold::Thresholds;
use fraudlens_pipeline::{Pipeline, PipelineConfig, ScoreError, ServingModel};
use fraudlens_store::Store as _;
use fraudlens_testkit::{Backend, TestDb};
use serde_json::{Value, json};

use crate::counting::CountingStore;

/// The LightGBM fixture of `fraudlens-model` (features `amount`,
/// `amount_ratio`, `hour`, `count_1d`, `merchant_category`, `risk`),
/// imported with review at 0.5.
pub fn row_model() -> ServingModel {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fraudlens-model/tests/fixtures/interop/lightgbm.txt"
    ));
    let text = std::fs::read_to_string(&path).unwrap();
    let imported = import_lightgbm_text(&text).unwrap();
    let thresholds = Thresholds::new(0.5, Some(0.9)).unwrap();
    let artifact = Artifact::imported(
        imported,
        text.as_bytes(),
        "lightgbm.txt".to_owned(),
        thresholds,
        fraudlens_pipeline::now(),
    )
    .unwrap();
    ServingModel::new(artifact, path, "digest".to_owned(), None).unwrap()
}

fn row(id: &str, amount: f64) -> Value {
    json!({"transaction_id": id, "amount": amount, "hour": 3, "risk": 0.5, "merchant_category": 2})
}

async fn pipeline() -> (Arc<Pipeline>, Arc<CountingStore>, TestDb) {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = fraudlens_store::connect(&db.url, &fraudlens_store::StoreOptions::default())
        .await
        .unwrap();
    let store = Arc::new(CountingStore::new(store));
    let pipeline = Pipeline::start(store.clone(), row_model(), PipelineConfig::default())
        .await
        .unwrap();
    (pipeline, store, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_one_commit_and_repeats_in_it_are_replays_or_conflicts() {
    let (pipeline, store, _db) = pipeline().await;
    let results = pipeline
        .score_many(&[
            row("a", 10.0),
            row("a", 10.0),
            row("a", 99.0),
            json!({"amount": "x"}),
            row("b", 1.0),
        ])
        .await;
    assert_eq!(store.commits(), 1, "one write for the batch");
    let first = results[0].as_ref().unwrap();
    assert!(!first.replayed);
    let second = results[1].as_ref().unwrap();
    assert!(second.replayed, "the same row again is the stored decision");
    assert_eq!(second.record.score, first.record.score);
    assert_eq!(results[2], Err(ScoreError::Conflict("a".to_owned())));
    assert!(matches!(&results[3], Err(ScoreError::Invalid(message)) if message.contains("\"amount\"")));
    assert!(!results[4].as_ref().unwrap().replayed);
    assert_eq!(store.count_transactions().await.unwrap(), 2);
    // the stored row is the model's features as read, in the model's order
    let stored = store.transaction("a").await.unwrap().unwrap();
    assert!(
        stored.decision.body.starts_with(r#"{"row":{"amount":10.0,"#),
        "{}",
        stored.decision.body
    );
    assert_eq!(stored.decision.features.len(), 6);
    assert!(stored.decision.entity.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_for_one_id_store_it_once() {
    let (pipeline, store, _db) = pipeline().await;
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let pipeline = pipeline.clone();
            tokio::spawn(async move { pipeline.score(&row("same", 42.0)).await })
        })
        .collect();
    let mut fresh = 0;
    let mut scores = Vec::new();
    for task in tasks {
        let scored = task.await.unwrap().unwrap();
        fresh += usize::from(!scored.replayed);
        scores.push(scored.record.score);
    }
    assert_eq!(fresh, 1, "exactly one request stored it; the others got it back");
    assert!(scores.windows(2).all(|pair| pair[0] == pair[1]));
    assert_eq!(store.count_transactions().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_between_rows_and_transactions_is_refused_and_rows_replace_rows() {
    let (pipeline, _store, _db) = pipeline().await;
    let error = pipeline.swap_model(crate::model()).unwrap_err().to_string();
    assert!(
        error.contains("reads transactions") && error.contains("restart"),
        "{error}"
    );
    pipeline.swap_model(row_model()).unwrap();
    // a transaction sent to a model of rows is an invalid row, naming the fields
    let outcome = pipeline.score(&crate::record("t-1", "c-1", 5.0, 0)).await;
    assert!(
        matches!(&outcome, Err(ScoreError::Invalid(message)) if message.contains("unknown feature")),
        "{outcome:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_stores_nothing_and_the_retry_stores_the_row() {
    let (pipeline, store, _db) = pipeline().await;
    store.fail_next_writes(1);
    let failed = pipeline.score(&row("r", 5.0)).await;
    assert!(matches!(failed, Err(ScoreError::Unavailable(_))), "{failed:?}");
    assert_eq!(store.count_transactions().await.unwrap(), 0);
    let retried = pipeline.score(&row("r", 5.0)).await.unwrap();
    assert!(!retried.replayed);
    assert_eq!(store.count_transactions().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_model_rebuilds_its_state_past_stored_rows() {
    let (pipeline, store, _db) = pipeline().await;
    pipeline.score(&row("r-1", 5.0)).await.unwrap();
    pipeline.shutdown().await.unwrap();
    // the same store, now with a model of transactions: its state skips the rows
    let transactions = Pipeline::start(store.clone(), crate::model(), PipelineConfig::default())
        .await
        .unwrap();
    let scored = transactions.score(&crate::record("t-1", "c-1", 5.0, 0)).await.unwrap();
    assert!(!scored.replayed);
}
