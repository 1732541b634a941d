//! Promotions reach every running `serve` (issue 14, item 3): through a
//! replica's API or the CLI, notified on PostgreSQL and polled on SQLite,
//! with the verify-then-swap rule on every replica. The propagation times
//! are printed (`--nocapture`); the only bound asserted is a generous deadline.

use super::*;

/// Waits (at most 10 s) until `server` serves `version`; the time since `since`.
async fn served_within(
    client: &reqwest::Client,
    server: &Server,
    key: &str,
    version: &str,
    since: Instant,
) -> Duration {
    let deadline = since + Duration::from_secs(10);
    loop {
        let (status, info) = get(client, &server.url("/api/v1/models/production"), key).await;
        assert_eq!(status, StatusCode::OK, "{info}");
        if info["version"] == version {
            return since.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{version} not served within 10 s: {info}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The value of a counter series (`name{labels}`) on a /metrics page (0 when absent).
fn counter(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A copy of the trained model registered under `version` through the CLI.
fn register(dir: &Path, database: &str, name: &str, version: &str) -> PathBuf {
    let copy = edited_model(dir, name, |manifest| manifest["model_id"] = json!(version));
    let run = fraudlens(
        dir,
        &["models", "register", copy.to_str().unwrap(), "--database", database],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    copy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_through_one_replica_is_served_by_the_other_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Postgres).await;
    let admin = key(dir.path(), &db.url, "admin");
    let (dir_a, dir_b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let replica_a = Server::start(&dir_a, &db.url, Some(&trained().model()));
    // B serves the registry's production model, as a second replica does
    let replica_b = Server::start(&dir_b, &db.url, None);
    let client = reqwest::Client::new();
    let (_, info) = get(&client, &replica_b.url("/api/v1/models/production"), &admin).await;
    let first = info["version"].as_str().unwrap().to_owned();
    register(dir.path(), &db.url, "second", "gbdt-second");
    // the replicas' watchers start listening right after the port is bound
    tokio::time::sleep(Duration::from_millis(500)).await;

    let since = Instant::now();
    let (status, body) = post(
        &client,
        &replica_a.url("/api/v1/models/gbdt-second/promote"),
        &admin,
        &Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let committed = Instant::now();
    let took = served_within(&client, &replica_b, &admin, "gbdt-second", committed).await;
    println!(
        "notify: promoted through replica A (answered after {:?}), served by replica B {took:?} after A's answer",
        committed - since
    );
    let metrics_b = replica_b.metrics().await;
    assert_eq!(
        counter(&metrics_b, "fraudlens_model_swaps_total{source=\"notify\"}"),
        1.0,
        "{metrics_b}"
    );
    let metrics_a = replica_a.metrics().await;
    assert_eq!(
        counter(&metrics_a, "fraudlens_model_swaps_total{source=\"api\"}"),
        1.0,
        "{metrics_a}"
    );

    // rolled back from the CLI: both replicas follow
    let since = Instant::now();
    let run = fraudlens(dir.path(), &["models", "rollback", "--database", &db.url], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("within a second"), "{}", run.stderr);
    let done = Instant::now();
    let took_a = served_within(&client, &replica_a, &admin, &first, done).await;
    let took_b = served_within(&client, &replica_b, &admin, &first, done).await;
    println!(
        "notify: rolled back by the CLI (ran {:?}), served by A {took_a:?} and by B {took_b:?} after it exited",
        done - since
    );

    // an artifact corrupted after registration: the CLI's check refuses it ...
    let rotten = register(dir.path(), &db.url, "rotten", "gbdt-rotten");
    let trees = rotten.join("trees.json");
    let mut bytes = std::fs::read(&trees).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&trees, bytes).unwrap();
    let run = fraudlens(
        dir.path(),
        &["models", "promote", "gbdt-rotten", "--database", &db.url],
        &[],
    );
    assert_eq!(run.code, 65, "{}", run.stderr);
    // ... and a registry changed behind the checks' back reaches the
    // watchers, which refuse it: both replicas keep serving, and count it
    let store = fraudlens_store::connect(&db.url, &fraudlens_store::StoreOptions::default())
        .await
        .unwrap();
    store
        .promote_model("gbdt-rotten", fraudlens_core::Timestamp::from_millis(1), "raw")
        .await
        .unwrap();
    for replica in [&replica_a, &replica_b] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while counter(&replica.metrics().await, "fraudlens_model_swap_refused_total") < 1.0 {
            assert!(Instant::now() < deadline, "refusal not counted:\n{}", replica.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (_, info) = get(&client, &replica.url("/api/v1/models/production"), &admin).await;
        assert_eq!(info["version"], first.as_str(), "the current model keeps serving");
        let (status, decision) = post(
            &client,
            &replica.url("/api/v1/transactions"),
            &admin,
            &transactions(1)[0],
        )
        .await;
        assert!(status.is_success(), "{decision}");
        assert!(
            replica.log().contains("promoted model refused"),
            "the refusal is logged:\n{}",
            replica.log()
        );
    }
    // polled again and again, the refusal is counted once
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        counter(&replica_b.metrics().await, "fraudlens_model_swap_refused_total"),
        1.0
    );
    store.close().await;
    assert_eq!(replica_a.terminate(), 0);
    assert_eq!(replica_b.terminate(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_promotion_is_picked_up_by_polling_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let admin = key(dir.path(), &db.url, "admin");
    let server = Server::start(dir.path(), &db.url, Some(&trained().model()));
    let client = reqwest::Client::new();
    register(dir.path(), &db.url, "second", "gbdt-second");
    let since = Instant::now();
    let run = fraudlens(
        dir.path(),
        &["models", "promote", "gbdt-second", "--database", &db.url],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("pick it up within a second"), "{}", run.stderr);
    let done = Instant::now();
    let took = served_within(&client, &server, &admin, "gbdt-second", done).await;
    println!(
        "poll (1 s): promoted by the CLI (ran {:?}), served {took:?} after it exited",
        done - since
    );
    let metrics = server.metrics().await;
    assert_eq!(
        counter(&metrics, "fraudlens_model_swaps_total{source=\"poll\"}"),
        1.0,
        "{metrics}"
    );
    assert_eq!(server.terminate(), 0);
}
