//! Idempotency on the transaction id, racing requests and group commit.

use fraudlens_pipeline::ScoreError;
use fraudlens_store::Store as _;

use crate::{Fixture, record};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_and_content_returns_the_stored_decision() {
    let fixture = Fixture::new(false).await;
    let tx = record("tx-1", "cust-1", 12.5, 0);
    let first = fixture.pipeline.score(&tx).await.unwrap();
    assert!(!first.replayed);
    // the same content with the keys in another order: the same fingerprint
    let mut reordered = serde_json::Map::new();
    for (key, value) in tx.as_object().unwrap().iter().rev() {
        reordered.insert(key.clone(), value.clone());
    }
    let again = fixture.pipeline.score(&reordered.into()).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.record.score, first.record.score);
    assert_eq!(again.record.fingerprint, first.record.fingerprint);
    assert_eq!(fixture.store.count_transactions().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_with_other_content_is_a_conflict() {
    let fixture = Fixture::new(false).await;
    fixture
        .pipeline
        .score(&record("tx-1", "cust-1", 12.5, 0))
        .await
        .unwrap();
    let other = fixture.pipeline.score(&record("tx-1", "cust-1", 99.0, 0)).await;
    assert_eq!(other, Err(ScoreError::Conflict("tx-1".to_owned())));
    let stored = fixture.store.transaction("tx-1").await.unwrap().unwrap();
    assert_eq!(stored.decision.amount_minor, 1_250, "the first content stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_racing_for_one_id_store_it_once() {
    let fixture = Fixture::new(false).await;
    let mut tasks = Vec::new();
    for idx in 0..40 {
        let pipeline = fixture.pipeline.clone();
        // half send other content
        let amount = if idx % 2 == 0 { 10.0 } else { 20.0 };
        tasks.push(tokio::spawn(async move {
            (amount, pipeline.score(&record("race", "cust-1", amount, 0)).await)
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    assert_eq!(fixture.store.count_transactions().await.unwrap(), 1);
    let fresh: Vec<_> = results
        .iter()
        .filter_map(|(amount, result)| result.as_ref().ok().filter(|s| !s.replayed).map(|_| *amount))
        .collect();
    assert_eq!(fresh.len(), 1, "scored once: {results:?}");
    let winner = fresh[0];
    for (amount, result) in &results {
        match result {
            Ok(scored) => assert_eq!(*amount, winner, "a 200 only for the stored content: {scored:?}"),
            Err(error) => {
                assert_ne!(*amount, winner);
                assert_eq!(*error, ScoreError::Conflict("race".to_owned()));
            }
        }
    }
    let n_conflicts = results.iter().filter(|(_, result)| result.is_err()).count();
    assert_eq!(n_conflicts, 20, "every request with the other content is a conflict");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submits_share_commits_and_are_all_durable() {
    let fixture = Fixture::new(false).await;
    let n = 300;
    let mut tasks = Vec::new();
    for idx in 0..n {
        let pipeline = fixture.pipeline.clone();
        let tx = record(
            &format!("tx-{idx}"),
            &format!("cust-{}", idx % 17),
            5.0 + idx as f64,
            idx,
        );
        tasks.push(tokio::spawn(async move { pipeline.score(&tx).await }));
    }
    for task in tasks {
        let scored = task.await.unwrap().unwrap();
        assert!(!scored.replayed);
    }
    // every answer came after its commit: all are in the store now
    assert_eq!(fixture.store.count_transactions().await.unwrap(), n as u64);
    let commits = fixture.store.commits();
    assert!(
        commits < n as usize,
        "{commits} commits for {n} concurrent transactions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_one_commit_and_a_bad_record_fails_alone() {
    let fixture = Fixture::new(false).await;
    let mut records: Vec<_> = (0..10)
        .map(|idx| record(&format!("b-{idx}"), "cust-1", 1.0 + f64::from(idx), i64::from(idx)))
        .collect();
    records[3] = serde_json::json!({"transaction_id": "bad"});
    let results = fixture.pipeline.score_many(&records).await;
    assert!(matches!(results[3], Err(ScoreError::Invalid(_))), "{:?}", results[3]);
    assert_eq!(results.iter().filter(|result| result.is_ok()).count(), 9);
    assert_eq!(fixture.store.commits(), 1);
    assert_eq!(fixture.store.count_transactions().await.unwrap(), 9);
}
