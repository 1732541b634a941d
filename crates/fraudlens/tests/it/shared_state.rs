//! Scale-out exactness: two `fraudlens serve` replicas on one PostgreSQL
//! store and one Redis (`[state] backend = "redis://…"`), fed interleaved
//! traffic — single requests and batches, sent to both at once — compute
//! every stored feature vector exactly as one engine does when it replays the
//! stored transactions in the order the shared state applied them (recorded
//! per entity in Redis). The same traffic with the in-process state (each
//! replica its own) shows the error this replaces. A label sent to one
//! replica changes the next decision's risk features on the other.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fraudlens_core::Transaction;
use fraudlens_features::{EntityRef, FeatureEngine};
use fraudlens_pipeline::ServingModel;
use fraudlens_state::{SharedState, StateOptions};
use fraudlens_store::StoredDecision;
use fraudlens_testkit::{Backend, TestDb};
use serde_json::Value;

use crate::model::trained;
use crate::serve::{Server, key, post, transactions};

pub(crate) fn redis_url() -> String {
    std::env::var("FRAUDLENS_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A namespace of its own per run: keys never meet another test's. Its keys in
/// the shared test Redis go with it (their TTL, the features' horizon, is days),
/// so hold it in a variable for the whole test, never as a temporary.
pub(crate) struct Namespace(String);

impl std::ops::Deref for Namespace {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let url = redis_url();
        let Ok(scan) = std::process::Command::new("redis-cli")
            .args(["-u", &url, "--scan", "--pattern", &format!("{}:*", self.0)])
            .output()
        else {
            return;
        };
        let keys = String::from_utf8_lossy(&scan.stdout);
        let keys: Vec<&str> = keys.lines().filter(|key| !key.is_empty()).collect();
        for chunk in keys.chunks(500) {
            let _ = std::process::Command::new("redis-cli")
                .args(["-u", &url, "unlink"])
                .args(chunk)
                .output();
        }
    }
}

pub(crate) fn namespace() -> Namespace {
    Namespace(unique_name())
}

/// A name no other run uses (for a private Redis, dropped with its server).
pub(crate) fn unique_name() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "fl-test-{}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        std::time::UNIX_EPOCH.elapsed().unwrap().as_nanos()
    )
}

/// The environment of a process on the shared state in `namespace`, with the order recorded.
pub(crate) fn shared_env(namespace: &str) -> Vec<(&'static str, String)> {
    vec![
        ("FRAUDLENS_STATE__BACKEND", redis_url()),
        ("FRAUDLENS_STATE__NAMESPACE", namespace.to_owned()),
        ("FRAUDLENS_STATE__RECORD_ORDER", "true".to_owned()),
    ]
}

pub(crate) fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The test's own connection to the shared state in `namespace`.
pub(crate) async fn connect(model: &ServingModel, namespace: &str) -> SharedState {
    connect_to(&redis_url(), model, namespace).await
}

/// The test's own connection to the shared state in `namespace` on the Redis at `url`.
pub(crate) async fn connect_to(url: &str, model: &ServingModel, namespace: &str) -> SharedState {
    SharedState::connect(
        url,
        model.spec().unwrap().fingerprint(),
        StateOptions {
            namespace: namespace.to_owned(),
            ttl: Duration::from_secs(60),
            record_order: false,
            timeout: Duration::from_secs(5),
            cache_entities: 1_000,
        },
    )
    .await
    .unwrap()
}

/// A counter summed over the lines of Prometheus texts.
pub(crate) fn sum_counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with([' ', '{']))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Two `serve` replicas on `database`, sharing the state in `namespace` (the
/// first registers and promotes the model), and a service key.
pub(crate) fn two_replicas(dir: &Path, database: &str, model_dir: &Path, namespace: &str) -> (Server, Server, String) {
    let env = shared_env(namespace);
    let env = borrowed(&env);
    let a = Server::start_with(dir, database, Some(model_dir), &env);
    let b = Server::start_with(dir, database, None, &env);
    (a, b, key(dir, database, "service"))
}

/// Sends `txs` to the replicas, interleaved: four clients, each alternating
/// between the replicas and between single requests and batches of 1–24.
pub(crate) async fn send_interleaved(servers: &[&Server], service: &str, txs: &[Value]) {
    let client = reqwest::Client::new();
    let chunks: Vec<Vec<Value>> = {
        let mut chunks = Vec::new();
        let mut rest = txs;
        let mut size = 1;
        while !rest.is_empty() {
            let n = size.min(rest.len());
            chunks.push(rest[..n].to_vec());
            rest = &rest[n..];
            size = size % 24 + 1;
        }
        chunks
    };
    let urls: Vec<(String, String)> = servers
        .iter()
        .map(|server| {
            (
                server.url("/api/v1/transactions"),
                server.url("/api/v1/transactions/batch"),
            )
        })
        .collect();
    let chunks = Arc::new(chunks);
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let (client, urls, chunks, service) = (client.clone(), urls.clone(), chunks.clone(), service.to_owned());
        tasks.push(tokio::spawn(async move {
            for (idx, chunk) in chunks.iter().enumerate().skip(worker).step_by(4) {
                let (one, batch) = &urls[idx % urls.len()];
                if chunk.len() == 1 {
                    let (status, body) = post(&client, one, &service, &chunk[0]).await;
                    assert!(status.is_success(), "{status} {body}");
                } else {
                    let (status, body) = post(&client, batch, &service, &Value::Array(chunk.clone())).await;
                    assert!(status.is_success(), "{status} {body}");
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

pub(crate) async fn stored(database: &str) -> Vec<StoredDecision> {
    let store = fraudlens_store::connect(database, &fraudlens_store::StoreOptions::default())
        .await
        .unwrap();
    let mut all = Vec::new();
    loop {
        let page = store
            .transactions_after(all.last().map_or(0, |d: &StoredDecision| d.seq), 10_000, None)
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        all.extend(page);
    }
    store.close().await;
    all
}

/// Per block, how many stored vectors differ from one engine's replay of
/// each entity's transactions in `order(entity)`; and how many were compared.
pub(crate) fn mismatches(
    model: &ServingModel,
    stored: &[StoredDecision],
    order: &HashMap<EntityRef, Vec<String>>,
) -> (Vec<usize>, usize) {
    mismatches_except(model, stored, order, &std::collections::HashSet::new())
}

/// [`mismatches`] where the stored vectors of `skip` are not compared (they
/// still take their place in the replay).
pub(crate) fn mismatches_except(
    model: &ServingModel,
    stored: &[StoredDecision],
    order: &HashMap<EntityRef, Vec<String>>,
    skip: &std::collections::HashSet<String>,
) -> (Vec<usize>, usize) {
    let spec = model.spec().unwrap().clone();
    let by_id: HashMap<&str, (Transaction, &[f64])> = stored
        .iter()
        .map(|d| {
            let tx: Transaction = serde_json::from_str(&d.decision.body).unwrap();
            (d.decision.transaction_id.as_str(), (tx, d.decision.features.as_slice()))
        })
        .collect();
    let n_features = spec.feature_names().len();
    let mut differ = vec![0; spec.config().entities.len()];
    let mut compared = 0;
    for (at, ids) in order {
        let mut engine = FeatureEngine::new(spec.clone());
        let range = engine.block_features(at.block);
        let mut row = vec![0.0; n_features];
        for id in ids {
            let (tx, features) = &by_id[id.as_str()];
            engine.observe_block(tx, at.block, &mut row);
            if skip.contains(id) {
                continue;
            }
            compared += 1;
            let same = row[range.clone()]
                .iter()
                .zip(&features[range.clone()])
                .all(|(a, b)| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()));
            if !same {
                differ[at.block] += 1;
            }
        }
    }
    (differ, compared)
}

/// Each entity's transactions in store order (what one process would have seen).
pub(crate) fn store_order(model: &ServingModel, stored: &[StoredDecision]) -> HashMap<EntityRef, Vec<String>> {
    let engine = FeatureEngine::new(model.spec().unwrap().clone());
    let mut order: HashMap<EntityRef, Vec<String>> = HashMap::new();
    for d in stored {
        let tx: Transaction = serde_json::from_str(&d.decision.body).unwrap();
        for at in engine.entity_refs(&tx) {
            order.entry(at).or_default().push(d.decision.transaction_id.clone());
        }
    }
    order
}

/// Each entity's transactions in the order the shared state applied them.
pub(crate) async fn applied_order(
    shared: &SharedState,
    model: &ServingModel,
    stored: &[StoredDecision],
) -> HashMap<EntityRef, Vec<String>> {
    let mut order = HashMap::new();
    for at in store_order(model, stored).into_keys() {
        let lines = shared.applied_order(at).await.unwrap();
        let ids: Vec<String> = lines
            .iter()
            .filter_map(|line| {
                let (_, what) = line.split_once(' ')?;
                (!what.starts_with("label ")).then(|| what.to_owned())
            })
            .collect();
        order.insert(at, ids);
    }
    order
}

pub(crate) fn load_model(dir: &Path) -> ServingModel {
    ServingModel::load(dir, None).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_on_redis_compute_what_one_engine_computes() {
    let model_dir = trained().model();
    let model = load_model(&model_dir);
    let txs = transactions(2_000);
    let names: Vec<String> = model
        .spec()
        .unwrap()
        .config()
        .entities
        .iter()
        .map(|b| b.entity.clone())
        .collect();

    // shared state on Redis
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Postgres).await;
    let namespace = namespace();
    let (a, b, service) = two_replicas(dir.path(), &db.url, &model_dir, &namespace);
    send_interleaved(&[&a, &b], &service, &txs).await;
    let metrics = format!("{}{}", a.metrics().await, b.metrics().await);
    let stored_shared = stored(&db.url).await;
    assert_eq!(stored_shared.len(), txs.len());
    let shared = connect(&model, &namespace).await;
    let order = applied_order(&shared, &model, &stored_shared).await;
    let (differ, compared) = mismatches(&model, &stored_shared, &order);
    let conflicts = sum_counter(&metrics, "fraudlens_state_conflicts_total");
    println!(
        "redis: {} transactions through 2 replicas, {compared} entity feature blocks compared with one engine's replay \
         in the applied order, mismatches per block {:?} ({names:?}); compare-and-set conflicts redone: {conflicts}",
        stored_shared.len(),
        differ
    );
    assert_eq!(
        differ.iter().sum::<usize>(),
        0,
        "mismatches with the shared state: {differ:?}"
    );
    assert!(compared >= txs.len(), "every transaction compared at least once");
    assert_eq!(a.terminate(), 0);
    assert_eq!(b.terminate(), 0);

    // the same traffic with each replica's own in-process state
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Postgres).await;
    let a = Server::start(dir.path(), &db.url, Some(&model_dir));
    let b = Server::start(dir.path(), &db.url, None);
    let service = key(dir.path(), &db.url, "service");
    send_interleaved(&[&a, &b], &service, &txs).await;
    let stored_local = stored(&db.url).await;
    let (differ, compared) = mismatches(&model, &stored_local, &store_order(&model, &stored_local));
    println!(
        "memory: the same traffic with each replica's own state: {compared} compared with one engine's replay in \
         store order, mismatches per block {differ:?} ({names:?})"
    );
    assert!(
        differ.iter().all(|n| *n > 0),
        "each replica sees only part of every entity's traffic: its features must differ ({differ:?})"
    );
    assert_eq!(a.terminate(), 0);
    assert_eq!(b.terminate(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_sent_to_one_replica_changes_the_next_decision_on_the_other() {
    let model_dir = trained().model();
    let model = load_model(&model_dir);
    let risk = model
        .spec()
        .unwrap()
        .feature_names()
        .iter()
        .position(|name| name == "terminal_risk_7d")
        .expect("the default spec has terminal_risk_7d");
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Postgres).await;
    let namespace = namespace();
    let (a, b, service) = two_replicas(dir.path(), &db.url, &model_dir, &namespace);
    let analyst = key(dir.path(), &db.url, "analyst");
    let client = reqwest::Client::new();
    // one terminal, two customers: a transaction 8 days ago on replica A (past
    // the 7-day label delay of the risk features), then one now on replica B
    let template = transactions(1).remove(0);
    let at = |id: &str, customer: &str, time: &str| {
        let mut tx = template.clone();
        tx["transaction_id"] = Value::from(id);
        tx["customer_id"] = Value::from(customer);
        tx["terminal_id"] = Value::from("term_shared_label");
        tx["timestamp"] = Value::from(time);
        tx
    };
    let now = fraudlens_pipeline::now().as_millis();
    let time = |days_ago: i64| fraudlens_core::Timestamp::from_millis(now - days_ago * 86_400_000).to_string();
    let (status, body) = post(
        &client,
        &a.url("/api/v1/transactions"),
        &service,
        &at("lbl-1", "c-1", &time(8)),
    )
    .await;
    assert!(status.is_success(), "{body}");
    // labelled fraud through replica A
    let (status, body) = post(
        &client,
        &a.url("/api/v1/labels"),
        &analyst,
        &serde_json::json!([{"transaction_id": "lbl-1", "label": "fraud"}]),
    )
    .await;
    assert!(status.is_success(), "{status} {body}");
    // the next transaction of that terminal, on replica B, a moment later
    let (status, body) = post(
        &client,
        &b.url("/api/v1/transactions"),
        &service,
        &at("lbl-2", "c-2", &time(0)),
    )
    .await;
    assert!(status.is_success(), "{body}");
    let stored = stored(&db.url).await;
    let second = stored.iter().find(|d| d.decision.transaction_id == "lbl-2").unwrap();
    assert_eq!(
        second.decision.features[risk], 1.0,
        "terminal_risk_7d on replica B after the label on replica A"
    );
    assert_eq!(a.terminate(), 0);
    assert_eq!(b.terminate(), 0);
}

/// A Redis that restarts empty (no persistence) is found not built by the
/// next request, which gets 503 with `Retry-After`; the state is rebuilt
/// from the store without operator action (logged, counted), and every
/// decision after it has exactly the features one engine computes over all
/// stored transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_lost_its_data_is_rebuilt_from_the_store() {
    let mut redis = fraudlens_testkit::RedisServer::start();
    let model_dir = trained().model();
    let model = load_model(&model_dir);
    let txs = transactions(900);
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Postgres).await;
    let env = [
        ("FRAUDLENS_STATE__BACKEND", redis.url.clone()),
        ("FRAUDLENS_STATE__NAMESPACE", unique_name()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = Server::start_with(dir.path(), &db.url, Some(&model_dir), &env);
    let service = key(dir.path(), &db.url, "service");
    let client = reqwest::Client::new();
    let url = server.url("/api/v1/transactions");
    for tx in &txs[..500] {
        let (status, body) = post(&client, &url, &service, tx).await;
        assert!(status.is_success(), "{status} {body}");
    }

    // Redis unreachable: not ready, and nothing is scored without it
    redis.kill();
    let (status, body) = post(&client, &url, &service, &txs[500]).await;
    assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let ready = client.get(server.url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    let ready: Value = ready.json().await.unwrap();
    assert!(
        ready["reasons"]
            .to_string()
            .contains("shared entity state: unreachable"),
        "{ready}"
    );

    redis.restart();
    // the next transaction: 503 until the state is rebuilt, then scored
    let started = std::time::Instant::now();
    let mut refused = Vec::new();
    loop {
        let response = client
            .post(&url)
            .header("x-api-key", &service)
            .json(&txs[500])
            .send()
            .await
            .unwrap();
        let status = response.status();
        if status.is_success() {
            break;
        }
        assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key("retry-after"));
        refused.push(response.json::<Value>().await.unwrap());
        assert!(started.elapsed() < Duration::from_secs(60), "not rebuilt within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "redis restarted empty: {} requests answered 503 until the rebuild, scored after {:.2} s",
        refused.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(!refused.is_empty(), "the lost state was noticed");
    for tx in &txs[501..] {
        let (status, body) = post(&client, &url, &service, tx).await;
        assert!(status.is_success(), "{status} {body}");
    }
    let metrics = server.metrics().await;
    // the metrics of the redis backend only (the in-process ones are not in this process)
    let value = |name: &str| sum_counter(&metrics, name);
    assert!(value("fraudlens_state_rebuilds_total") >= 1.0, "{metrics}");
    assert_eq!(
        value("fraudlens_state_rebuild_rows_total"),
        500.0,
        "the 500 stored rows replayed: {metrics}"
    );
    assert!(
        server.log().contains("the shared entity state is rebuilt"),
        "{}",
        server.log()
    );
    // one client, one request at a time: the store order is the order applied
    let stored = stored(&db.url).await;
    assert_eq!(stored.len(), txs.len());
    let (differ, compared) = mismatches(&model, &stored, &store_order(&model, &stored));
    println!("after the rebuild: {compared} entity feature blocks compared, mismatches {differ:?}");
    assert_eq!(differ.iter().sum::<usize>(), 0);
    assert_eq!(server.terminate(), 0);
}

/// Every transaction sent to both replicas at the same moment (a client
/// retrying on another replica): one decision per id is stored, and no
/// entity's state applies an id twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_id_sent_to_two_replicas_at_once_is_applied_once() {
    let model_dir = trained().model();
    let model = load_model(&model_dir);
    let txs = transactions(300);
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Postgres).await;
    let namespace = namespace();
    let (a, b, service) = two_replicas(dir.path(), &db.url, &model_dir, &namespace);
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let (client, service) = (client.clone(), service.clone());
        let urls = (a.url("/api/v1/transactions"), b.url("/api/v1/transactions"));
        let mine: Vec<Value> = txs.iter().skip(worker).step_by(4).cloned().collect();
        tasks.push(tokio::spawn(async move {
            for tx in mine {
                let (first, second) = tokio::join!(
                    post(&client, &urls.0, &service, &tx),
                    post(&client, &urls.1, &service, &tx)
                );
                // both answer the one decision (one of them as a replay), or one
                // is asked to retry while the other stores it
                for (status, body) in [first, second] {
                    assert!(
                        status.is_success() || status == reqwest::StatusCode::SERVICE_UNAVAILABLE,
                        "{status} {body}"
                    );
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stored = stored(&db.url).await;
    assert_eq!(stored.len(), txs.len(), "one stored decision per id");
    let shared = connect(&model, &namespace).await;
    let order = applied_order(&shared, &model, &stored).await;
    let mut applications = 0;
    for (at, ids) in &order {
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "an id applied twice to {at:?}: {ids:?}");
        applications += ids.len();
    }
    let metrics = format!("{}{}", a.metrics().await, b.metrics().await);
    let counter = |name: &str| sum_counter(&metrics, name);
    println!(
        "{} ids each sent to both replicas at once: {} stored, {applications} entity applications (2 per id), \
         conflicts {}, skipped as applied by the other replica {}",
        txs.len(),
        stored.len(),
        counter("fraudlens_state_conflicts_total"),
        counter("fraudlens_state_applied_elsewhere_total")
    );
    assert_eq!(
        applications,
        2 * txs.len(),
        "each id applied once to its customer and once to its terminal"
    );
    assert_eq!(a.terminate(), 0);
    assert_eq!(b.terminate(), 0);
}

/// Attack: a Redis that hangs (frozen: connections open, no answer). Scoring
/// must not hang with it — 503 with `Retry-After` once the round trip times
/// out, readiness 503 — and it scores again once Redis answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_redis_gets_503_not_a_hung_request_and_scoring_resumes() {
    let redis = fraudlens_testkit::RedisServer::start();
    let model_dir = trained().model();
    let txs = transactions(40);
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let env = [
        ("FRAUDLENS_STATE__BACKEND", redis.url.clone()),
        ("FRAUDLENS_STATE__NAMESPACE", unique_name()),
        ("FRAUDLENS_STATE__TIMEOUT_MS", "300".to_owned()),
    ];
    let env = borrowed(&env);
    let server = Server::start_with(dir.path(), &db.url, Some(&model_dir), &env);
    let service = key(dir.path(), &db.url, "service");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let url = server.url("/api/v1/transactions");
    for tx in &txs[..10] {
        let (status, body) = post(&client, &url, &service, tx).await;
        assert!(status.is_success(), "{status} {body}");
    }

    redis.pause();
    let started = std::time::Instant::now();
    let response = client
        .post(&url)
        .header("x-api-key", &service)
        .json(&txs[10])
        .send()
        .await
        .expect("an answer, not a hung request");
    let waited = started.elapsed();
    assert_eq!(response.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key("retry-after"));
    let ready = client.get(server.url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    println!(
        "redis frozen: 503 after {:.2} s (round-trip timeout 0.3 s)",
        waited.as_secs_f64()
    );

    redis.resume();
    let started = std::time::Instant::now();
    loop {
        let (status, _) = post(&client, &url, &service, &txs[10]).await;
        if status.is_success() {
            break;
        }
        assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() < Duration::from_secs(30), "scoring did not resume");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for tx in &txs[11..] {
        let (status, body) = post(&client, &url, &service, tx).await;
        assert!(status.is_success(), "{status} {body}");
    }
    assert_eq!(stored(&db.url).await.len(), txs.len(), "nothing lost, nothing twice");
    assert_eq!(server.terminate(), 0);
}
