//! `fraudlens serve`, driven over HTTP: scoring with durable idempotent
//! decisions, the review queue and its audit trail, labels, keys and roles,
//! limits and JSON errors, model promotion, probes, metrics, shutdown and
//! crash recovery — on SQLite and on PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use fraudlens_testkit::{Backend, TestDb};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::model::trained;
use crate::{fraudlens, read_csv, spawn_service, terminate};

pub(crate) mod limits;
mod promotion;

/// A running `fraudlens serve`.
pub(crate) struct Server {
    child: Child,
    base: String,
    dir: PathBuf,
    stderr: PathBuf,
}

impl Server {
    /// Starts a server on a free port in `dir`, on `database`, serving `model` (or the registry's).
    pub(crate) fn start(dir: &Path, database: &str, model: Option<&Path>) -> Self {
        Self::start_with(dir, database, model, &[])
    }

    /// [`Self::start`] with configuration from the environment.
    pub(crate) fn start_with(dir: &Path, database: &str, model: Option<&Path>, env: &[(&str, &str)]) -> Self {
        let stderr = dir.join(format!(
            "serve-{}.log",
            std::time::UNIX_EPOCH.elapsed().unwrap().as_nanos()
        ));
        let model = model.map(|model| model.to_str().unwrap());
        let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--database", database];
        args.extend(model.iter().flat_map(|model| ["--model", model]));
        let (child, base) = spawn_service(dir, &args, env, &stderr, "listening on ");
        Self {
            child,
            base,
            dir: dir.to_owned(),
            stderr,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The Prometheus text of `/metrics`.
    pub(crate) async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics")).await.unwrap().text().await.unwrap()
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit code.
    pub(crate) fn terminate(mut self) -> i32 {
        terminate(&mut self.child)
    }

    /// `kill -9`.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A new API key of `role` on `database`.
pub(crate) fn key(dir: &Path, database: &str, role: &str) -> String {
    let run = fraudlens(
        dir,
        &["keys", "create", "--role", role, "--name", role, "--database", database],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.stdout.trim().to_owned()
}

/// Transactions of the simulated data after the model's training period, as JSON objects.
pub(crate) fn transactions(n: usize) -> Vec<Value> {
    let (header, rows) = read_csv(&trained().data());
    rows[rows.len() - n..]
        .iter()
        .map(|row| {
            let object: serde_json::Map<String, Value> = header
                .iter()
                .zip(row)
                .filter(|(name, _)| name.as_str() != "is_fraud" && name.as_str() != "fraud_scenario")
                .map(|(name, value)| (name.clone(), Value::String(value.clone())))
                .collect();
            Value::Object(object)
        })
        .collect()
}

/// The same rows as CSV (with their header).
fn csv_of(n: usize) -> String {
    let text = std::fs::read_to_string(trained().data()).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let rows: Vec<&str> = lines.collect();
    let mut out = format!("{header}\n");
    for row in &rows[rows.len() - n..] {
        out.push_str(row);
        out.push('\n');
    }
    out
}

/// Uploads `csv` as a CSV file; every row accepted; how many.
pub(crate) async fn upload(client: &reqwest::Client, server: &Server, service: &str, csv: String) -> u64 {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(csv.into_bytes()).file_name("tx.csv"),
    );
    let response = client
        .post(server.url("/api/v1/transactions/upload"))
        .header("x-api-key", service)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["rejected"], 0, "{body}");
    body["accepted"].as_u64().unwrap()
}

/// Posts a fraud label (a chargeback) for each of `frauds`.
pub(crate) async fn chargebacks(client: &reqwest::Client, server: &Server, admin: &str, frauds: &[String]) {
    let mut labels = "transaction_id,label,source\n".to_owned();
    for id in frauds {
        labels.push_str(&format!("{id},fraud,chargeback\n"));
    }
    let response = client
        .post(server.url("/api/v1/labels"))
        .header("x-api-key", admin)
        .header("content-type", "text/csv")
        .body(labels)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

pub(crate) async fn post(client: &reqwest::Client, url: &str, key: &str, body: &Value) -> (StatusCode, Value) {
    let response = client
        .post(url)
        .header("x-api-key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn get(client: &reqwest::Client, url: &str, key: &str) -> (StatusCode, Value) {
    let response = client.get(url).header("x-api-key", key).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

pub(crate) fn is_error_body(body: &Value) -> bool {
    body["code"].is_string() && body["message"].is_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoring_review_and_audit_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let service = key(dir.path(), &db.url, "service");
    let analyst = key(dir.path(), &db.url, "analyst");
    let server = Server::start(dir.path(), &db.url, Some(&trained().model()));
    let client = reqwest::Client::new();

    // probes need no key
    let health: Value = client
        .get(server.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (health["status"].as_str(), health["service"].as_str()),
        (Some("healthy"), Some("fraudlens"))
    );
    assert!(health["timestamp"].is_string());
    let ready = client.get(server.url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    // one transaction: a decision with the contract's fields, stored
    let txs = transactions(400);
    let (status, decision) = post(&client, &server.url("/api/v1/transactions"), &service, &txs[0]).await;
    assert_eq!(status, StatusCode::OK, "{decision}");
    assert_eq!(decision["transaction_id"], txs[0]["transaction_id"]);
    let p = decision["fraud_probability"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p));
    assert!(["approve", "review", "decline"].contains(&decision["decision"].as_str().unwrap()));
    assert!(["LOW", "MEDIUM", "HIGH"].contains(&decision["confidence"].as_str().unwrap()));
    assert!(decision["model_version"].as_str().unwrap().starts_with("gbdt-"));

    // idempotency: same body → the stored decision, flagged as a replay; other body → 409
    let again = client
        .post(server.url("/api/v1/transactions"))
        .header("x-api-key", &service)
        .json(&txs[0])
        .send()
        .await
        .unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        decision,
        "a replay returns the stored decision unchanged"
    );
    let mut changed = txs[0].clone();
    changed["amount"] = json!("9999.99");
    let (status, body) = post(&client, &server.url("/api/v1/transactions"), &service, &changed).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(is_error_body(&body), "{body}");

    // batch: one commit, per-record results
    let mut batch: Vec<Value> = txs[1..100].to_vec();
    batch.push(json!({"transaction_id": "broken", "timestamp": "yesterday"}));
    let (status, body) = post(
        &client,
        &server.url("/api/v1/transactions/batch"),
        &service,
        &Value::from(batch),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["scored"].as_u64(), body["failed"].as_u64()), (Some(99), Some(1)));
    assert_eq!(body["results"][99]["status"], 422);
    assert!(
        body["results"][99]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timestamp")
    );

    // CSV upload, with two bad rows reported by line number
    let mut csv = csv_of(300);
    csv.push_str("bad1,not-a-time,c1,t1,12.5,EUR,,,,0,\n");
    csv.push_str("bad2,2026-02-20T10:00:00Z,c1,t1,-x,EUR,,,,0,\n");
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(csv.clone().into_bytes()).file_name("tx.csv"),
    );
    let upload = client
        .post(server.url("/api/v1/transactions/upload"))
        .header("x-api-key", &service)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), StatusCode::OK);
    let upload: Value = upload.json().await.unwrap();
    assert_eq!(upload["accepted"], 300, "{upload}");
    assert_eq!(upload["rejected"], 2, "{upload}");
    let lines: Vec<u64> = upload["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [302, 303]);
    let flagged = upload["review"].as_u64().unwrap() + upload["decline"].as_u64().unwrap();
    assert!(flagged > 0, "the simulated frauds should flag something: {upload}");

    // the review queue: analyst only
    let (status, body) = get(&client, &server.url("/api/v1/anomalies?limit=5"), &service).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(is_error_body(&body));
    let (status, page) = get(&client, &server.url("/api/v1/anomalies?limit=5"), &analyst).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let items = page["items"].as_array().unwrap();
    assert!(!items.is_empty());
    let scores: Vec<f64> = items.iter().map(|i| i["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "worst first: {scores:?}");
    assert!(
        !items[0]["reasons"].as_array().unwrap().is_empty(),
        "flagged decisions carry reasons"
    );
    let id = items[0]["transaction_id"].as_str().unwrap().to_owned();

    // review it: audit entry and label
    let response = client
        .put(server.url(&format!("/api/v1/anomalies/{id}")))
        .header("x-api-key", &analyst)
        .json(&json!({"status": "confirmed_fraud", "note": "customer confirmed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let review: Value = response.json().await.unwrap();
    assert_eq!(
        (review["before"].as_str(), review["label"].as_str()),
        (Some("pending_review"), Some("fraud"))
    );
    let (status, detail) = get(&client, &server.url(&format!("/api/v1/transactions/{id}")), &analyst).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["review_status"], "confirmed_fraud");
    assert_eq!(detail["label"], "fraud");
    let history = detail["history"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["after"], "confirmed_fraud");
    assert_eq!(history[0]["note"], "customer confirmed");
    assert!(history[0]["actor"].as_str().unwrap().starts_with("analyst"));
    assert!(detail["features"].as_object().unwrap().len() > 10);
    assert!(
        detail["transaction"]["entities"]["customer"]
            .as_str()
            .unwrap()
            .starts_with("cust_"),
        "{detail}"
    );
    assert!(detail["transaction"]["attributes"]["channel"].is_string(), "{detail}");
    let (status, _) = get(&client, &server.url("/api/v1/transactions/nope"), &analyst).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let bad_status = client
        .put(server.url(&format!("/api/v1/anomalies/{id}")))
        .header("x-api-key", &analyst)
        .json(&json!({"status": "maybe"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_status.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // labels as CSV
    let labels = client
        .post(server.url("/api/v1/labels"))
        .header("x-api-key", &analyst)
        .header("content-type", "text/csv")
        .body(format!(
            "transaction_id,label\n{},1\nunknown-tx,0\n",
            txs[5]["transaction_id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(labels.status(), StatusCode::OK);
    assert_eq!(labels.json::<Value>().await.unwrap()["recorded"], 2);

    // the compatibility alias
    let mut fresh = txs[399].clone();
    fresh["transaction_id"] = json!("predict-1");
    let (status, prediction) = post(&client, &server.url("/predict"), &service, &fresh).await;
    assert_eq!(status, StatusCode::OK, "{prediction}");
    assert!(prediction["fraud_probability"].is_number() && prediction["is_fraud"].is_boolean());

    // metrics
    let metrics = server.metrics().await;
    for name in [
        "fraud_predictions_total",
        "prediction_duration_seconds_bucket",
        "http_requests_total{",
        "http_request_duration_seconds_bucket",
        "store_commit_duration_seconds_bucket",
        "store_commit_batch_size_bucket",
        "fraudlens_model_info{",
        "fraudlens_score_bucket{le=\"0.5\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
    // the process and the build (issue 17, item 3)
    for name in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "fraudlens_uptime_seconds",
    ] {
        let value = series_value(&metrics, name);
        assert!(value > 0.0, "{name} = {value}");
    }
    assert!(
        metrics.contains(&format!(
            "fraudlens_build_info{{version=\"{}\",",
            env!("CARGO_PKG_VERSION")
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("route=\"/api/v1/transactions/{id}\""),
        "routes are templates, not raw paths"
    );

    // docs are served from the binary
    let openapi: Value = client
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(openapi["paths"]["/api/v1/transactions"]["post"].is_object());
    let docs = client.get(server.url("/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.unwrap().contains("swagger"));

    // graceful shutdown snapshots the entity state
    let state = server.dir.join("fraudlens-data/entity-state.bin");
    assert_eq!(server.terminate(), 0);
    assert!(state.exists(), "no entity-state snapshot at {}", state.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let service = key(dir.path(), &db.url, "service");
    let server = Server::start(dir.path(), &db.url, Some(&trained().model()));
    let client = reqwest::Client::new();
    let url = server.url("/api/v1/transactions");

    let send = |body: Vec<u8>, content_type: &'static str, key: Option<String>| {
        let mut request = client.post(&url).header("content-type", content_type).body(body);
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        request.send()
    };
    let cases: Vec<(Vec<u8>, &str, Option<String>, StatusCode)> = vec![
        (b"{}".to_vec(), "application/json", None, StatusCode::UNAUTHORIZED),
        (b"{}".to_vec(), "application/json", Some("fl_000000000000_wrong".to_owned()), StatusCode::UNAUTHORIZED),
        (b"{\"transaction_id\":".to_vec(), "application/json", Some(service.clone()), StatusCode::BAD_REQUEST),
        (b"{}".to_vec(), "text/plain", Some(service.clone()), StatusCode::UNSUPPORTED_MEDIA_TYPE),
        (vec![0xff, 0xfe, b'{'], "application/json", Some(service.clone()), StatusCode::BAD_REQUEST),
        (b"[1,2]".to_vec(), "application/json", Some(service.clone()), StatusCode::UNPROCESSABLE_ENTITY),
        (b"{}".to_vec(), "application/json", Some(service.clone()), StatusCode::UNPROCESSABLE_ENTITY),
        (
            br#"{"transaction_id":"x","timestamp":"2026-02-01T00:00:00Z","customer_id":"c","terminal_id":"t","amount":1e400}"#.to_vec(),
            "application/json",
            Some(service.clone()),
            StatusCode::BAD_REQUEST,
        ),
        (
            br#"{"transaction_id":"x","timestamp":"2026-02-01T00:00:00Z","customer_id":"c","terminal_id":"t","amount":"12.5.5"}"#.to_vec(),
            "application/json",
            Some(service.clone()),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (vec![b' '; 2 << 20], "application/json", Some(service.clone()), StatusCode::PAYLOAD_TOO_LARGE),
    ];
    // the attack pass: a duplicate key (the last one used to win), more decimals
    // than the currency has (used to be rounded), a bidi override in an id
    let hostile = [
        (
            r#""customer_id":"c","amount":"1.00","amount":"9999.00""#,
            "duplicate_key",
            r#"duplicate key "amount" at line 1 column 128"#,
        ),
        (
            r#""customer_id":"c","amount":0.001"#,
            "invalid_request",
            r#"field "amount": amount "0.001" has more decimals than EUR has (2)"#,
        ),
        (
            r#""customer_id":"c\u202e1","amount":1"#,
            "invalid_request",
            r#"customer key in field "customer_id" contains the invisible or format character U+202E"#,
        ),
    ];
    for (fields, code, message) in hostile {
        let body = format!(r#"{{"transaction_id":"h","timestamp":"2026-02-01T00:00:00Z","terminal_id":"t",{fields}}}"#);
        let response = send(body.clone().into_bytes(), "application/json", Some(service.clone()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(
            (error["code"].as_str(), error["message"].as_str()),
            (Some(code), Some(message)),
            "{body}"
        );
    }
    for (body, content_type, key, expected) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        let response = send(body, content_type, key).await.unwrap();
        assert_eq!(response.status(), expected, "{shown}");
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(is_error_body(&body), "{shown}: {body}");
    }
    // the server closes a connection whose oversized body it did not read: start afresh
    let client = reqwest::Client::new();
    let unknown = client.get(server.url("/nope")).send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert!(is_error_body(&unknown.json().await.unwrap()));
    let headers = client.get(server.url("/health")).send().await.unwrap();
    assert_eq!(headers.headers()["x-content-type-options"], "nosniff");
    assert_eq!(headers.headers()["x-frame-options"], "DENY");
    // still healthy after all that
    assert_eq!(
        client.get(server.url("/health/ready")).send().await.unwrap().status(),
        StatusCode::OK
    );
}

/// Acknowledged decisions survive `kill -9`; a restart replays the entity
/// state from the store and keeps idempotency.
async fn crash_loses_nothing(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(backend).await;
    let service = key(dir.path(), &db.url, "service");
    let server = Server::start(dir.path(), &db.url, Some(&trained().model()));
    let client = reqwest::Client::new();
    let txs = transactions(3_000);
    let url = server.url("/api/v1/transactions");

    // 8 concurrent clients; the server is killed while they send
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (client, url, key, acknowledged) = (client.clone(), url.clone(), service.clone(), acknowledged.clone());
        let mine: Vec<Value> = txs.iter().skip(worker).step_by(8).cloned().collect();
        tasks.push(tokio::spawn(async move {
            for tx in mine {
                match client.post(&url).header("x-api-key", &key).json(&tx).send().await {
                    Ok(response) if response.status().is_success() => {
                        acknowledged
                            .lock()
                            .unwrap()
                            .push(tx["transaction_id"].as_str().unwrap().to_owned());
                    }
                    _ => {}
                }
            }
        }));
    }
    let waiting = Instant::now();
    while acknowledged.lock().unwrap().len() < 500 {
        assert!(
            waiting.elapsed() < Duration::from_secs(120),
            "500 acknowledged decisions did not arrive within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();
    for task in tasks {
        task.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= 500 && acknowledged.len() < txs.len(),
        "{}",
        acknowledged.len()
    );

    let server = Server::start(dir.path(), &db.url, None);
    let analyst = key(dir.path(), &db.url, "analyst");
    for id in &acknowledged {
        let (status, _) = get(&client, &server.url(&format!("/api/v1/transactions/{id}")), &analyst).await;
        assert_eq!(status, StatusCode::OK, "acknowledged {id} lost after kill -9");
    }
    assert!(
        server.log().contains("entity state caught up with the store"),
        "{}",
        server.log()
    );
    let store = fraudlens_store::connect(&db.url, &fraudlens_store::StoreOptions::default())
        .await
        .unwrap();
    let stored = store.count_transactions().await.unwrap();
    println!(
        "kill -9 on {backend:?}: sent {}, acknowledged {}, acknowledged and found after restart {}, \
         stored {stored} (one row per id: the store's unique key)",
        txs.len(),
        acknowledged.len(),
        acknowledged.len()
    );
    assert!(stored as usize >= acknowledged.len());
    // a retry of an acknowledged transaction is a replay, not a second row
    let first = txs
        .iter()
        .find(|tx| tx["transaction_id"] == acknowledged[0].as_str())
        .unwrap();
    let retry = client
        .post(server.url("/api/v1/transactions"))
        .header("x-api-key", &service)
        .json(first)
        .send()
        .await
        .unwrap();
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(server.terminate(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loses_nothing_on_sqlite() {
    crash_loses_nothing(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loses_nothing_on_postgres() {
    crash_loses_nothing(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_model_is_refused_under_load_and_the_current_one_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Postgres).await;
    let service = key(dir.path(), &db.url, "service");
    let admin = key(dir.path(), &db.url, "admin");
    let server = Server::start(dir.path(), &db.url, Some(&trained().model()));
    let client = reqwest::Client::new();
    let (_, info) = get(&client, &server.url("/model/info"), &service).await;
    let version = info["version"].as_str().unwrap().to_owned();

    // a copy of the model with one flipped bit: the CLI refuses to register it
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(trained().model()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    let trees = copy.join("trees.json");
    let mut bytes = std::fs::read(&trees).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&trees, bytes).unwrap();
    let run = fraudlens(dir.path(), &["models", "register", "copy", "--database", &db.url], &[]);
    assert_eq!(run.code, 65, "a corrupt model cannot be registered: {}", run.stderr);
    // ... but an artifact can rot after registration: put such an entry in the registry
    let store = fraudlens_store::connect(&db.url, &fraudlens_store::StoreOptions::default())
        .await
        .unwrap();
    store
        .register_model(&fraudlens_store::NewModel {
            version: "rotten".to_owned(),
            path: copy.display().to_string(),
            summary: "{}".to_owned(),
            feature_names: Vec::new(),
            registered_at: fraudlens_core::Timestamp::from_millis(1),
            digest: String::new(),
        })
        .await
        .unwrap();

    // promote it repeatedly while clients score
    let txs = transactions(800);
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let (client, url, key) = (client.clone(), server.url("/api/v1/transactions"), service.clone());
        let mine: Vec<Value> = txs.iter().skip(worker).step_by(4).cloned().collect();
        tasks.push(tokio::spawn(async move {
            let mut failed = 0;
            for tx in mine {
                let response = client
                    .post(&url)
                    .header("x-api-key", &key)
                    .json(&tx)
                    .send()
                    .await
                    .unwrap();
                failed += usize::from(!response.status().is_success());
            }
            failed
        }));
    }
    let promote = server.url("/api/v1/models/rotten/promote");
    let (status, _) = post(&client, &promote, &service, &Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for _ in 0..5 {
        let (status, body) = post(&client, &promote, &admin, &Value::Null).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body["message"].as_str().unwrap().contains("checksum"), "{body}");
    }
    let mut failed = 0;
    for task in tasks {
        failed += task.await.unwrap();
    }
    assert_eq!(failed, 0, "requests failed while a corrupt model was refused");
    let (_, after) = get(&client, &server.url("/model/info"), &service).await;
    assert_eq!(after["version"], version.as_str(), "the current model keeps serving");
    let models = store.models().await.unwrap();
    let production: Vec<_> = models
        .iter()
        .filter(|m| m.stage == fraudlens_store::ModelStage::Production)
        .collect();
    assert_eq!(production.len(), 1);
    assert_eq!(production[0].version, version);
    let (status, _) = post(
        &client,
        &server.url("/api/v1/models/nope/promote"),
        &admin,
        &Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // re-promoting the intact production model is allowed (a no-op swap)
    let (status, body) = post(
        &client,
        &server.url(&format!("/api/v1/models/{version}/promote")),
        &admin,
        &Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A small deterministic generator for the malformed-input test.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// A malformed (or, by chance, still valid) variant of a valid JSON body.
fn mutate(valid: &str, rng: &mut Lcg) -> Vec<u8> {
    let mut bytes = valid.as_bytes().to_vec();
    let replacements: [&[u8]; 14] = [
        b"null",
        b"[]",
        b"{}",
        b"true",
        b"\"\"",
        b"1e309",
        b"-1e309",
        b"123456789012345678901234567890",
        b"\"\xff\xfe\"",
        b"\"2026-13-45T99:99:99Z\"",
        b"-5",
        b"\"\\u0000\"",
        b"NaN",
        b"\"x\"",
    ];
    match rng.below(8) {
        // cut somewhere
        0 => bytes.truncate(rng.below(bytes.len())),
        // random bytes in the middle (invalid UTF-8 among them)
        1 => {
            let at = rng.below(bytes.len());
            let junk: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
            bytes.splice(at..at, junk);
        }
        // a value replaced by another type or an out-of-range value
        2 | 3 => {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let colons: Vec<usize> = text.match_indices(':').map(|(i, _)| i).collect();
            let start = colons[rng.below(colons.len())] + 1;
            let end = text[start..].find([',', '}']).map_or(text.len(), |e| start + e);
            let replacement = replacements[rng.below(replacements.len())];
            bytes.splice(start..end, replacement.iter().copied());
        }
        // a field removed
        4 => {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let commas: Vec<usize> = text.match_indices(',').map(|(i, _)| i).collect();
            let start = commas[rng.below(commas.len())];
            let end = text[start + 1..].find(',').map_or(text.len() - 1, |e| start + 1 + e);
            bytes.drain(start..end);
        }
        // very long strings, deep nesting, not JSON at all
        5 => bytes = format!("{{\"transaction_id\":\"{}\"}}", "x".repeat(5_000 + rng.below(50_000))).into_bytes(),
        6 => bytes = format!("{}1{}", "[".repeat(200 + rng.below(5_000)), "]".repeat(10)).into_bytes(),
        _ => bytes = (0..rng.below(300)).map(|_| rng.next() as u8).collect(),
    }
    bytes
}

/// A malformed CSV upload.
fn bad_csv(valid: &str, rng: &mut Lcg) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = valid.lines().map(|line| line.as_bytes().to_vec()).collect();
    for _ in 0..1 + rng.below(5) {
        let idx = rng.below(lines.len());
        match rng.below(6) {
            0 => {
                let keep = rng.below(lines[idx].len());
                lines[idx].truncate(keep);
            }
            1 => lines[idx].extend((0..1 + rng.below(20)).map(|_| rng.next() as u8)),
            2 => lines[idx] = b"\"unterminated,quote".to_vec(),
            3 => lines[idx].extend_from_slice(b",extra,columns,here"),
            4 => lines[0] = b"nothing,we,know".to_vec(),
            _ => lines.insert(idx, vec![0xff, 0xfe, b',', 0x80]),
        }
    }
    lines.join(&b"\n"[..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_malformed_requests_get_4xx_json_and_never_5xx() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let service = key(dir.path(), &db.url, "service");
    let analyst = key(dir.path(), &db.url, "analyst");
    let server = Server::start(dir.path(), &db.url, Some(&trained().model()));
    let client = reqwest::Client::new();
    let valid = transactions(1)[0].to_string();
    let valid_csv = csv_of(20);
    let mut rng = Lcg(20_261_126);

    let mut requests = Vec::new();
    for i in 0..3_000 {
        let body = mutate(&valid, &mut rng);
        let (path, key, body) = match i % 6 {
            0 | 1 => ("/api/v1/transactions", &service, body),
            2 => ("/predict", &service, body),
            3 => {
                let mut batch = b"[".to_vec();
                batch.extend_from_slice(valid.as_bytes());
                batch.push(b',');
                batch.extend_from_slice(&body);
                batch.push(b']');
                ("/api/v1/transactions/batch", &service, batch)
            }
            4 => ("/api/v1/labels", &analyst, body),
            _ => ("/predict/batch", &service, body),
        };
        requests.push(
            client
                .post(server.url(path))
                .header("x-api-key", key)
                .header("content-type", "application/json")
                .body(body),
        );
    }
    for _ in 0..300 {
        let queries = [
            "limit=0",
            "limit=abc",
            "min_score=nan",
            "status=unknown",
            "sort=sideways",
            "from=yesterday",
            "cursor=zzz",
            "cursor=s00.1",
            "limit=99999",
            "entity=%ff",
        ];
        let query = queries[rng.below(queries.len())];
        requests.push(
            client
                .get(server.url(&format!("/api/v1/anomalies?{query}")))
                .header("x-api-key", &analyst),
        );
        let review = mutate(r#"{"status":"confirmed_fraud","note":"n"}"#, &mut rng);
        requests.push(
            client
                .put(server.url("/api/v1/anomalies/some-id"))
                .header("x-api-key", &analyst)
                .header("content-type", "application/json")
                .body(review),
        );
    }
    for _ in 0..500 {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bad_csv(&valid_csv, &mut rng)).file_name("x.csv"),
        );
        requests.push(
            client
                .post(server.url("/api/v1/transactions/upload"))
                .header("x-api-key", &service)
                .multipart(form),
        );
    }
    let total = requests.len();
    let mut counts = std::collections::BTreeMap::new();
    let mut bodies_without_json = 0;
    let mut pending = futures_util::stream::iter(requests.into_iter().map(|request| async move {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }))
    .buffer_unordered(16);
    use futures_util::StreamExt as _;
    while let Some((status, body)) = pending.next().await {
        *counts.entry(status).or_insert(0usize) += 1;
        if status >= 400 && !is_error_body(&body) {
            bodies_without_json += 1;
        }
    }
    println!("malformed requests: {total}, by status: {counts:?}");
    let server_errors: usize = counts
        .iter()
        .filter(|(status, _)| **status >= 500)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(server_errors, 0, "{counts:?}");
    assert_eq!(bodies_without_json, 0, "every error is {{code, message}} JSON");
    let client_errors: usize = counts
        .iter()
        .filter(|(status, _)| (400..500).contains(*status))
        .map(|(_, n)| n)
        .sum();
    assert!(client_errors > total * 3 / 4, "{counts:?}");
    assert_eq!(
        client.get(server.url("/health/ready")).send().await.unwrap().status(),
        StatusCode::OK
    );
    let mut fresh = transactions(1)[0].clone();
    fresh["transaction_id"] = json!("after-the-storm");
    let (status, body) = post(&client, &server.url("/api/v1/transactions"), &service, &fresh).await;
    assert_eq!(status, StatusCode::OK, "still scoring after the storm: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_cors_follow_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let service = key(dir.path(), &db.url, "service");
    let other = key(dir.path(), &db.url, "service");
    let server = Server::start_with(
        dir.path(),
        &db.url,
        Some(&trained().model()),
        &[
            ("FRAUDLENS_SERVE__RATE_LIMIT_PER_KEY", "5"),
            ("FRAUDLENS_SERVE__CORS_ORIGINS", "[\"https://review.example.com\"]"),
        ],
    );
    let client = reqwest::Client::new();
    let mut limited = 0;
    for _ in 0..20 {
        let response = client
            .get(server.url("/model/info"))
            .header("x-api-key", &service)
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            limited += 1;
            assert!(
                response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
                    >= 1
            );
            assert!(is_error_body(&response.json().await.unwrap()));
        }
    }
    assert!(limited >= 10, "a burst of 20 at 5/s: {limited} limited");
    let response = client
        .get(server.url("/model/info"))
        .header("x-api-key", &other)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "limits are per key");

    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, server.url("/api/v1/transactions"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "x-api-key,content-type")
            .send()
    };
    let allowed = preflight("https://review.example.com").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://review.example.com"
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(refused.headers().get("access-control-allow-origin").is_none());
}

/// Attack pass, defect 4: the URLs the binary logs hide their password (the
/// startup line names the store it opened).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_logs_the_store_url_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Postgres).await;
    // the test server trusts local connections: the password is only carried along
    let (scheme, rest) = db.url.split_once("://").unwrap();
    let (user, host) = rest.split_once('@').unwrap();
    let with_password = format!("{scheme}://{user}:pw-s3cret@{host}");
    let server = Server::start(dir.path(), &with_password, Some(&trained().model()));
    let log = server.log();
    assert!(log.contains(&format!("{scheme}://{user}:***@{host}")), "{log}");
    assert!(!log.contains("pw-s3cret"), "{log}");
}

/// Weak point: `/predict` replays lacked `Idempotent-Replayed: true`, which
/// `/api/v1/transactions` sets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predict_replays_are_flagged_like_the_main_route() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let service = key(dir.path(), &db.url, "service");
    let server = Server::start(dir.path(), &db.url, Some(&trained().model()));
    let client = reqwest::Client::new();
    let tx = &transactions(1)[0];
    let send = || {
        client
            .post(server.url("/predict"))
            .header("x-api-key", &service)
            .json(tx)
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let again = send().await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
}

/// A copy of the trained model at `dir/name` with `edit` applied to its
/// manifest, and `SHA256SUMS` regenerated — what anyone who can write the
/// files can do, so the checksums alone prove nothing about who made them.
pub(crate) fn edited_model(dir: &Path, name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let copy = dir.join(name);
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(trained().model()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    edit_model(&copy, edit);
    copy
}

/// Edits the manifest of the model at `dir` in place and regenerates its `SHA256SUMS`.
fn edit_model(dir: &Path, edit: impl FnOnce(&mut Value)) {
    let manifest_path = dir.join("model.json");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    edit(&mut manifest);
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    let regenerated: String = sums
        .lines()
        .map(|line| {
            let (_, file) = line.split_once("  ").unwrap();
            let hash = fraudlens_model::artifact::sha256_hex(&std::fs::read(dir.join(file)).unwrap());
            format!("{hash}  {file}\n")
        })
        .collect();
    std::fs::write(dir.join("SHA256SUMS"), regenerated).unwrap();
}

/// The value of an unlabelled series of a /metrics page (panics when absent).
pub(crate) fn series_value(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
        .trim()
        .parse()
        .unwrap()
}

/// The `fraudlens_model_info` series of a /metrics page: (labels, value).
fn model_info_series(metrics: &str) -> Vec<(String, f64)> {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("fraudlens_model_info{"))
        .map(|rest| {
            let (labels, value) = rest.split_once("} ").unwrap();
            (labels.to_owned(), value.trim().parse().unwrap())
        })
        .collect()
}

/// Attack pass, defect 5: after promoting B and then A, both versions read 1
/// (the reset went to a series without the `kind` label). Exactly one series
/// reads 1, the serving model's, after every promotion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_info_has_one_series_at_one_after_any_promotions() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let admin = key(dir.path(), &db.url, "admin");
    let server = Server::start(dir.path(), &db.url, Some(&trained().model()));
    let client = reqwest::Client::new();
    let (_, info) = get(&client, &server.url("/model/info"), &admin).await;
    let first = info["version"].as_str().unwrap().to_owned();
    let second_dir = edited_model(dir.path(), "second", |manifest| {
        manifest["model_id"] = json!("gbdt-second");
    });
    let run = fraudlens(
        dir.path(),
        &[
            "models",
            "register",
            second_dir.to_str().unwrap(),
            "--database",
            &db.url,
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);

    for version in ["gbdt-second", first.as_str(), "gbdt-second", first.as_str()] {
        let (status, body) = post(
            &client,
            &server.url(&format!("/api/v1/models/{version}/promote")),
            &admin,
            &Value::Null,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let metrics = server.metrics().await;
        let series = model_info_series(&metrics);
        let at_one: Vec<&(String, f64)> = series.iter().filter(|(_, value)| *value == 1.0).collect();
        assert_eq!(at_one.len(), 1, "after promoting {version}: {series:?}");
        assert!(
            at_one[0].0.contains(&format!("version=\"{version}\"")) && at_one[0].0.contains("kind=\"gbdt\""),
            "after promoting {version}: {series:?}"
        );
        assert!(
            series.iter().all(|(labels, _)| labels.contains("kind=")),
            "every series carries both labels: {series:?}"
        );
    }
}

/// Every string in `value` that names or looks like a time, with its JSON path.
fn timestamps(value: &Value, path: &str, found: &mut Vec<(String, String)>) {
    let looks_like_time = |text: &str| {
        let bytes = text.as_bytes();
        bytes.len() >= 10 && bytes[..4].iter().all(u8::is_ascii_digit) && bytes[4] == b'-' && bytes[7] == b'-'
    };
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let child_path = format!("{path}.{key}");
                let named_time = key.ends_with("_at") || key == "at" || key == "timestamp" || key == "event_time";
                match child {
                    Value::String(text) if named_time || looks_like_time(text) => {
                        found.push((child_path, text.clone()));
                    }
                    Value::Number(_) | Value::Bool(_) | Value::Array(_) | Value::Object(_) if named_time => {
                        panic!("{child_path} is a time but not a string: {child}")
                    }
                    _ => timestamps(child, &child_path, found),
                }
            }
        }
        Value::Array(items) => {
            for (idx, item) in items.iter().enumerate() {
                timestamps(item, &format!("{path}[{idx}]"), found);
            }
        }
        Value::String(text) if looks_like_time(text) => found.push((path.to_owned(), text.clone())),
        _ => {}
    }
}

/// Attack pass, defect 6: a model's `created_at` read `…724ZZ`. Walks the JSON
/// of every endpoint that returns times (scoring, the queue, a transaction's
/// detail with its audit history and labels, a review, the registry, the
/// serving model, health) and parses each time with a strict RFC 3339 parser
/// — also for an artifact written by a build with the bug.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_timestamp_the_api_returns_is_strict_rfc3339() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let admin = key(dir.path(), &db.url, "admin");
    let server = Server::start(dir.path(), &db.url, Some(&trained().model()));
    let client = reqwest::Client::new();
    let mut responses: Vec<(String, Value)> = Vec::new();
    let mut record = |name: &str, status: StatusCode, body: Value| {
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        responses.push((name.to_owned(), body));
    };

    let txs = transactions(60);
    let (status, body) = post(&client, &server.url("/api/v1/transactions"), &admin, &txs[0]).await;
    record("POST /api/v1/transactions", status, body);
    let (status, body) = post(
        &client,
        &server.url("/api/v1/transactions/batch"),
        &admin,
        &Value::from(txs[1..59].to_vec()),
    )
    .await;
    record("POST /api/v1/transactions/batch", status, body);
    let (status, body) = post(&client, &server.url("/predict"), &admin, &txs[59]).await;
    record("POST /predict", status, body);
    let (status, page) = get(&client, &server.url("/api/v1/anomalies?limit=5"), &admin).await;
    let id = page["items"][0]["transaction_id"]
        .as_str()
        .unwrap_or_else(|| txs[0]["transaction_id"].as_str().unwrap())
        .to_owned();
    record("GET /api/v1/anomalies", status, page);
    let review = client
        .put(server.url(&format!("/api/v1/anomalies/{id}")))
        .header("x-api-key", &admin)
        .json(&json!({"status": "confirmed_fraud", "note": "checked"}))
        .send()
        .await
        .unwrap();
    let status = review.status();
    record("PUT /api/v1/anomalies/{id}", status, review.json().await.unwrap());
    let (status, body) = post(
        &client,
        &server.url("/api/v1/labels"),
        &admin,
        &json!([{"transaction_id": id, "label": "fraud", "source": "chargeback"}]),
    )
    .await;
    record("POST /api/v1/labels", status, body);
    let (status, body) = get(&client, &server.url(&format!("/api/v1/transactions/{id}")), &admin).await;
    record("GET /api/v1/transactions/{id}", status, body);

    // a model written by a build with the bug (its manifest says `…ZZ`), promoted
    let legacy = edited_model(dir.path(), "legacy", |manifest| {
        manifest["model_id"] = json!("gbdt-legacy");
        manifest["created_at"] = json!("2026-11-25T23:06:24.631ZZ");
    });
    let run = fraudlens(
        dir.path(),
        &["models", "register", legacy.to_str().unwrap(), "--database", &db.url],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (status, body) = get(&client, &server.url("/api/v1/models/production"), &admin).await;
    record("GET /api/v1/models/production (trained by this build)", status, body);
    let (status, body) = post(
        &client,
        &server.url("/api/v1/models/gbdt-legacy/promote"),
        &admin,
        &Value::Null,
    )
    .await;
    record("POST /api/v1/models/{version}/promote", status, body);
    for path in ["/api/v1/models", "/api/v1/models/production", "/model/info", "/health"] {
        let (status, body) = get(&client, &server.url(path), &admin).await;
        record(&format!("GET {path}"), status, body);
    }

    let mut seen_keys = std::collections::BTreeSet::new();
    for (name, body) in &responses {
        let mut found = Vec::new();
        timestamps(body, "", &mut found);
        for (path, text) in found {
            assert!(
                chrono::DateTime::parse_from_rfc3339(&text).is_ok(),
                "{name}: {path} = {text:?} is not RFC 3339"
            );
            seen_keys.insert(path.rsplit('.').next().unwrap().to_owned());
        }
    }
    for key in [
        "created_at",
        "registered_at",
        "promoted_at",
        "received_at",
        "event_time",
        "at",
        "timestamp",
    ] {
        assert!(seen_keys.contains(key), "no {key} checked; saw {seen_keys:?}");
    }
    let (_, info) = get(&client, &server.url("/model/info"), &admin).await;
    assert_eq!(
        info["created_at"], "2026-11-25T23:06:24.631Z",
        "a legacy time is repaired, not dropped"
    );
}

/// Weak point: 405 and 414 answered with empty bodies, though every error is
/// `{code, message}` JSON. Checks each error the framework makes on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framework_errors_are_json_too() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let service = key(dir.path(), &db.url, "service");
    let analyst = key(dir.path(), &db.url, "analyst");
    let server = Server::start(dir.path(), &db.url, Some(&trained().model()));
    let client = reqwest::Client::new();
    let long_query = format!("/api/v1/anomalies?entity={}", "x".repeat(20_000));
    let cases = [
        (
            reqwest::Method::GET,
            "/api/v1/transactions".to_owned(),
            &service,
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            reqwest::Method::DELETE,
            "/predict".to_owned(),
            &service,
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            reqwest::Method::PUT,
            "/health".to_owned(),
            &service,
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            reqwest::Method::GET,
            "/no/such/route".to_owned(),
            &service,
            StatusCode::NOT_FOUND,
        ),
        (
            reqwest::Method::GET,
            "/docs/no-such-file.js".to_owned(),
            &service,
            StatusCode::NOT_FOUND,
        ),
        (reqwest::Method::GET, long_query, &analyst, StatusCode::URI_TOO_LONG),
        // a path parameter that is not UTF-8: axum's plain-text rejection
        (
            reqwest::Method::GET,
            "/api/v1/transactions/%ff".to_owned(),
            &analyst,
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (method, path, key, expected) in cases {
        let shown = format!("{method} {}", &path[..path.len().min(60)]);
        let response = client
            .request(method, server.url(&path))
            .header("x-api-key", key.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected, "{shown}");
        if expected == StatusCode::METHOD_NOT_ALLOWED {
            assert!(
                response.headers().contains_key("allow"),
                "{shown}: 405 keeps its Allow header"
            );
        }
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{shown}"
        );
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(is_error_body(&body), "{shown}: {body}");
    }
}

/// Weak point: refused keys (401/403) were never logged. Each is logged at
/// WARN with the key id, route and client (never the secret), and counted by
/// reason; the log lines are rate-limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_keys_are_logged_without_their_secret_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let service = key(dir.path(), &db.url, "service");
    let server = Server::start(dir.path(), &db.url, Some(&trained().model()));
    let client = reqwest::Client::new();
    let key_id = service.split('_').nth(1).unwrap().to_owned();
    let wrong_secret = format!("fl_{key_id}_not-the-secret-but-also-private");
    let url = server.url("/api/v1/transactions");
    let (status, _) = post(&client, &url, &wrong_secret, &json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = get(&client, &server.url("/api/v1/anomalies"), &service).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // a flood: answered, counted, but the log keeps to its budget
    for _ in 0..100 {
        let (status, _) = post(&client, &url, "fl_000000000000_flood-secret", &json!({})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    let metrics = server.metrics().await;
    let counted = |reason: &str| {
        metrics
            .lines()
            .find(|line| {
                line.starts_with("fraudlens_auth_failures_total{") && line.contains(&format!("reason=\"{reason}\""))
            })
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse::<f64>().ok())
    };
    assert_eq!(counted("wrong_secret"), Some(1.0), "{metrics}");
    assert_eq!(counted("wrong_role"), Some(1.0), "{metrics}");
    assert_eq!(counted("unknown_key"), Some(100.0), "{metrics}");
    let log = server.log();
    let refused: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("authentication failed"))
        .collect();
    let wrong = refused
        .iter()
        .find(|line| line.contains("wrong_secret"))
        .unwrap_or_else(|| panic!("no log line for the wrong secret:\n{log}"));
    assert!(wrong.contains("WARN") && wrong.contains(&key_id), "{wrong}");
    assert!(
        wrong.contains("/api/v1/transactions") && wrong.contains("127.0.0.1"),
        "{wrong}"
    );
    assert!(refused.iter().any(|line| line.contains("wrong_role")), "{log}");
    assert!(
        !log.contains("not-the-secret") && !log.contains("flood-secret"),
        "{log}"
    );
    let secret = service.split('_').nth(2).unwrap();
    assert!(!log.contains(secret), "{log}");
    assert!(
        refused.len() < 50,
        "{} lines for 102 refusals: the log is not rate-limited",
        refused.len()
    );
}

/// Weak point: the registry kept only a path, so files edited after
/// registration (with `SHA256SUMS` regenerated) were promoted and served. The
/// content digest taken at registration now refuses them — through the API
/// (409, the current model keeps serving), the CLI, and at server start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_edited_after_registration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Postgres).await;
    let admin = key(dir.path(), &db.url, "admin");
    let server = Server::start(dir.path(), &db.url, Some(&trained().model()));
    let client = reqwest::Client::new();
    let (_, info) = get(&client, &server.url("/model/info"), &admin).await;
    let serving = info["version"].as_str().unwrap().to_owned();

    let tampered = edited_model(dir.path(), "tampered", |manifest| {
        manifest["model_id"] = json!("gbdt-tampered");
    });
    let run = fraudlens(
        dir.path(),
        &["models", "register", tampered.to_str().unwrap(), "--database", &db.url],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    // after registration: decline everything, checksums regenerated
    edit_model(&tampered, |manifest| {
        manifest["thresholds"] = json!({"review": 0.000_001, "decline": 0.000_001});
    });
    let (status, body) = post(
        &client,
        &server.url("/api/v1/models/gbdt-tampered/promote"),
        &admin,
        &Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "model_changed", "{body}");
    let (_, after) = get(&client, &server.url("/model/info"), &admin).await;
    assert_eq!(after["version"], serving.as_str(), "the current model keeps serving");
    let txs = transactions(3);
    let (status, decision) = post(&client, &server.url("/api/v1/transactions"), &admin, &txs[0]).await;
    assert_eq!(status, StatusCode::OK, "{decision}");
    assert_eq!(decision["model_version"], serving.as_str());
    let cli = fraudlens(
        dir.path(),
        &["models", "promote", "gbdt-tampered", "--database", &db.url],
        &[],
    );
    assert_eq!(cli.code, 65, "{}", cli.stderr);
    assert!(cli.stderr.contains("changed since"), "{}", cli.stderr);
    // registering the edited files again under the same version is refused too
    let again = fraudlens(
        dir.path(),
        &["models", "register", tampered.to_str().unwrap(), "--database", &db.url],
        &[],
    );
    assert_ne!(again.code, 0, "{}", again.stderr);
    assert!(again.stderr.contains("changed since"), "{}", again.stderr);

    // a production model edited while the server is down: the next start refuses it
    let next = edited_model(dir.path(), "next", |manifest| {
        manifest["model_id"] = json!("gbdt-next");
    });
    let run = fraudlens(
        dir.path(),
        &["models", "register", next.to_str().unwrap(), "--database", &db.url],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (status, body) = post(
        &client,
        &server.url("/api/v1/models/gbdt-next/promote"),
        &admin,
        &Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "an intact registered model is promoted: {body}");
    assert_eq!(server.terminate(), 0);
    edit_model(&next, |manifest| {
        manifest["thresholds"] = json!({"review": 0.000_001, "decline": 0.000_001});
    });
    let start = fraudlens(
        dir.path(),
        &["serve", "--listen", "127.0.0.1:0", "--database", &db.url],
        &[],
    );
    assert_eq!(start.code, 65, "{}", start.stderr);
    assert!(start.stderr.contains("changed since"), "{}", start.stderr);
}
