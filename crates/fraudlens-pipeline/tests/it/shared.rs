//! The shared entity state, in process: two pipelines (two processes) on one
//! store and one Redis namespace, fed in turn, score every transaction
//! exactly as one pipeline with its own state does — labels included.
//! Redis: `FRAUDLENS_TEST_REDIS` (default redis://127.0.0.1:6379; `scripts/redis`).

use std::sync::Arc;
use std::time::Duration;

use fraudlens_core::Label;
use fraudlens_pipeline::{Pipeline, PipelineConfig};
use fraudlens_state::{SharedState, StateOptions};
use fraudlens_store::{NewLabel, Store as _};
use fraudlens_testkit::{Backend, TestDb};

use crate::{Fixture, model, record};

fn redis_url() -> String {
    std::env::var("FRAUDLENS_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

async fn shared_state() -> SharedState {
    shared_state_in(namespace()).await
}

fn namespace() -> String {
    format!(
        "fl-pipeline-test-{}-{}",
        std::process::id(),
        std::time::UNIX_EPOCH.elapsed().unwrap().as_nanos()
    )
}

async fn shared_state_in(namespace: String) -> SharedState {
    let url = redis_url();
    let options = StateOptions {
        namespace,
        ttl: Duration::from_secs(600),
        record_order: false,
        timeout: Duration::from_secs(5),
        cache_entities: 1_000,
    };
    SharedState::connect(&url, model().spec().unwrap().fingerprint(), options)
        .await
        .expect("redis at FRAUDLENS_TEST_REDIS (default 127.0.0.1:6379)")
}

fn label(id: &str) -> NewLabel {
    NewLabel {
        transaction_id: id.to_owned(),
        label: Label::Fraud,
        source: "test".to_owned(),
        actor: "test".to_owned(),
        at: fraudlens_pipeline::now(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pipelines_on_one_shared_state_score_like_one_pipeline() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = fraudlens_store::connect(&db.url, &fraudlens_store::StoreOptions::default())
        .await
        .unwrap();
    let shared = shared_state().await;
    let config = || PipelineConfig {
        shared_state: Some(shared.clone()),
        ..PipelineConfig::default()
    };
    let a = Pipeline::start(store.clone(), model(), config()).await.unwrap();
    let b = Pipeline::start(store.clone(), model(), config()).await.unwrap();
    let single = Fixture::new(false).await;
    let pipelines: [&Arc<Pipeline>; 2] = [&a, &b];
    let mut compared = 0;
    for idx in 0..60usize {
        // every 4 hours over 10 days: early labels reach the later risk features
        let offset = idx as i64 * 4 * 3_600 - 10 * 86_400;
        let tx = record(
            &format!("sh-{idx}"),
            &format!("cust-{}", idx % 3),
            5.0 + idx as f64,
            offset,
        );
        let (one, reference) = (pipelines[idx % 2], &single.pipeline);
        let got = one.score(&tx).await.unwrap();
        let expected = reference.score(&tx).await.unwrap();
        let same = got
            .record
            .features
            .iter()
            .zip(&expected.record.features)
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(
            same,
            "sh-{idx}: {:?} != {:?}",
            got.record.features, expected.record.features
        );
        compared += 1;
        // a label through the other pipeline, and through the reference
        if idx % 10 == 5 {
            let other = pipelines[(idx + 1) % 2];
            assert_eq!(
                other
                    .apply_labels(&[label(&format!("sh-{idx}"))])
                    .await
                    .unwrap()
                    .applied,
                1
            );
            assert_eq!(
                reference
                    .apply_labels(&[label(&format!("sh-{idx}"))])
                    .await
                    .unwrap()
                    .applied,
                1
            );
        }
    }
    assert_eq!(compared, 60);
    // the labels reached the risk features (the comparison above saw them)
    let risk = model()
        .spec()
        .unwrap()
        .feature_names()
        .iter()
        .position(|name| name == "terminal_risk_7d")
        .unwrap();
    let last = single.store.transaction("sh-59").await.unwrap().unwrap();
    assert!(last.decision.features[risk] > 0.0, "{:?}", last.decision.features[risk]);
    // a repeat through the other pipeline is a replay of the stored decision
    let again = b.score(&record("sh-0", "cust-0", 5.0, -10 * 86_400)).await.unwrap();
    assert!(again.replayed);
}

/// Deletes the keys of `namespace` that `delete` picks; how many.
fn delete_keys(namespace: &str, delete: impl Fn(&str) -> bool) -> usize {
    let url = redis_url();
    let scan = std::process::Command::new("redis-cli")
        .args(["-u", &url, "--scan", "--pattern", &format!("{namespace}:*")])
        .output()
        .expect("redis-cli (scripts/redis installs it)");
    let keys = String::from_utf8_lossy(&scan.stdout);
    let keys: Vec<&str> = keys.lines().filter(|key| !key.is_empty() && delete(key)).collect();
    if keys.is_empty() {
        return 0;
    }
    let deleted = std::process::Command::new("redis-cli")
        .args(["-u", &url, "unlink"])
        .args(&keys)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&deleted.stdout).trim(), keys.len().to_string());
    keys.len()
}

/// Every key of `namespace` deleted, as a Redis that lost its data.
fn lose_namespace(namespace: &str) {
    assert!(delete_keys(namespace, |_| true) >= 3);
}

/// Every entity key of `namespace` deleted, the build marker kept: entities
/// that expired (idle past the features' horizon).
fn expire_entities(namespace: &str) {
    assert!(delete_keys(namespace, |key| !key.ends_with(":built")) >= 2);
}

/// A SQLite store and a shared state in a namespace of its own, for pipelines
/// of several "processes".
struct Processes {
    store: Arc<dyn fraudlens_store::Store>,
    shared: SharedState,
    namespace: String,
    _db: TestDb,
}

impl Processes {
    async fn new() -> Self {
        let db = TestDb::new(Backend::Sqlite).await;
        let store = fraudlens_store::connect(&db.url, &fraudlens_store::StoreOptions::default())
            .await
            .unwrap();
        let namespace = namespace();
        let shared = shared_state_in(namespace.clone()).await;
        Self {
            store,
            shared,
            namespace,
            _db: db,
        }
    }

    /// One more process on the store and the shared state.
    async fn start(&self) -> Arc<Pipeline> {
        let config = PipelineConfig {
            shared_state: Some(self.shared.clone()),
            ..PipelineConfig::default()
        };
        Pipeline::start(self.store.clone(), model(), config).await.unwrap()
    }
}

/// The features that differ, by name: `name: got != expected`.
fn differing(got: &[f64], expected: &[f64]) -> Vec<String> {
    model()
        .spec()
        .unwrap()
        .feature_names()
        .iter()
        .zip(got.iter().zip(expected))
        .filter(|(_, (x, y))| x.to_bits() != y.to_bits())
        .map(|(name, (x, y))| format!("{name}: {x} != {y}"))
        .collect()
}

/// The position of the first feature whose name starts with `prefix`.
fn feature(prefix: &str) -> usize {
    model()
        .spec()
        .unwrap()
        .feature_names()
        .iter()
        .position(|name| name.starts_with(prefix))
        .unwrap()
}

/// A process keeps the entities it wrote between batches and asks Redis only
/// for their versions. When Redis lost its data and another process rebuilt
/// it, versions start again: here they come back to exactly the kept ones
/// (3) with other content, and the kept entities must not be used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entities_kept_from_before_a_rebuild_are_not_taken_for_the_rebuilt_ones() {
    let processes = Processes::new().await;
    let single = Fixture::new(false).await;
    let tx = |idx: usize| {
        record(
            &format!("rb-{idx}"),
            "cust-rb",
            10.0 + idx as f64,
            idx as i64 * 60 - 3_600,
        )
    };
    let a = processes.start().await;
    for idx in 0..3 {
        a.score(&tx(idx)).await.unwrap();
        single.pipeline.score(&tx(idx)).await.unwrap();
    }
    lose_namespace(&processes.namespace);
    // rebuilt from the store, then two more writes
    let b = processes.start().await;
    for idx in 3..5 {
        b.score(&tx(idx)).await.unwrap();
        single.pipeline.score(&tx(idx)).await.unwrap();
    }
    let got = a.score(&tx(5)).await.unwrap();
    let expected = single.pipeline.score(&tx(5)).await.unwrap();
    let differ = differing(&got.record.features, &expected.record.features);
    assert!(differ.is_empty(), "{differ:?}");
    assert_eq!(
        expected.record.features[feature("customer_count_")],
        6.0,
        "the six transactions of the customer"
    );
}

/// A process keeps the entities it wrote. When their keys expire and
/// another process creates them anew, the first one's next transaction sees
/// the new entities, not its kept copies — and the other's event is not
/// overwritten (a new entity never comes back at a version it had).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entity_that_expired_and_was_created_again_is_not_taken_for_the_kept_one() {
    let processes = Processes::new().await;
    let tx = |idx: usize, amount: f64| record(&format!("ex-{idx}"), "cust-ex", amount, idx as i64 * 60 - 3_600);
    let a = processes.start().await;
    a.score(&tx(0, 10.0)).await.unwrap();
    expire_entities(&processes.namespace);
    let b = processes.start().await;
    b.score(&tx(1, 100.0)).await.unwrap();
    let got = a.score(&tx(2, 1_000.0)).await.unwrap();
    // what the shared state holds once the first entities expired: the last two
    let reference = Fixture::new(false).await;
    reference.pipeline.score(&tx(1, 100.0)).await.unwrap();
    let expected = reference.pipeline.score(&tx(2, 1_000.0)).await.unwrap();
    let differ = differing(&got.record.features, &expected.record.features);
    assert!(differ.is_empty(), "{differ:?}");
    assert_eq!(expected.record.features[feature("customer_sum_")], 1_100.0);
}

/// An entity whose stored value is damaged in Redis (3 bytes: not even a
/// version) fails the batches that touch it with 503-style "unavailable",
/// and only those: batches admitted in the same group as one of them are
/// admitted again on their own and scored. Twenty batches at once, each of
/// its own customer and terminal; every fifth touches the damaged customer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_entity_in_redis_fails_only_the_batches_that_touch_it() {
    let processes = Processes::new().await;
    let pipeline = processes.start().await;
    // the damaged customer's key, found from its first (healthy) write
    pipeline
        .score(&record("dmg-seed", "cust-damaged", 5.0, -3_600))
        .await
        .unwrap();
    let url = redis_url();
    let scan = std::process::Command::new("redis-cli")
        .args(["-u", &url, "--scan", "--pattern", &format!("{}:*", processes.namespace)])
        .output()
        .unwrap();
    let keys: Vec<String> = String::from_utf8_lossy(&scan.stdout)
        .lines()
        .filter(|key| !key.ends_with(":built"))
        .map(str::to_owned)
        .collect();
    // the customer and its terminal
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in &keys {
        let set = std::process::Command::new("redis-cli")
            .args(["-u", &url, "set", key, "abc"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&set.stdout).trim(), "OK");
    }
    let batches = (0..20usize).map(|batch| {
        let pipeline = pipeline.clone();
        async move {
            let records: Vec<serde_json::Value> = (0..20usize)
                .map(|idx| {
                    let (customer, terminal) = if batch % 5 == 0 {
                        ("cust-damaged".to_owned(), "term-1".to_owned())
                    } else {
                        (format!("cust-b{batch}"), format!("term-b{batch}"))
                    };
                    let mut tx = record(&format!("dmg-{batch}-{idx}"), &customer, 7.0, idx as i64 - 1_800);
                    tx["terminal_id"] = serde_json::Value::String(terminal);
                    tx
                })
                .collect();
            (batch, pipeline.score_many(&records).await)
        }
    });
    let results = futures_util::future::join_all(batches).await;
    for (batch, results) in results {
        for result in results {
            if batch % 5 == 0 {
                let error = result.expect_err("a batch touching the damaged entity is not scored");
                assert!(
                    matches!(error, fraudlens_pipeline::ScoreError::Unavailable(_)),
                    "batch {batch}: {error:?}"
                );
            } else {
                assert!(result.is_ok(), "batch {batch}: {result:?}");
            }
        }
    }
}
