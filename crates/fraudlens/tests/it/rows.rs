//! A model of feature rows (tabular mode) served by `serve` —
//! `/api/v1/predictions` one row, a batch and a CSV file answered as CSV,
//! `/predict` with a row; the decisions stored, queued, reviewed and
//! labelled like transactions — and by `detect` from a Kafka topic.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use fraudlens_testkit::{Backend, TestDb};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::detect::{Detect, broker_with_topics, wait_for};
use crate::serve::{Server, get, is_error_body, key, post};
use crate::{Run, ok, read_csv};

/// A creditcard.csv-like export: `TransactionID` (an id), `Time`, `V1`…`V28`,
/// `Amount`, `Class`; fraud where `V1` and `V4` are high.
pub(crate) struct Cards {
    dir: tempfile::TempDir,
}

impl Cards {
    pub(crate) fn data(&self) -> PathBuf {
        self.dir.path().join("cards.csv")
    }

    pub(crate) fn model(&self) -> PathBuf {
        self.dir.path().join("model")
    }
}

/// Deterministic normal draws (xorshift and Box-Muller).
pub(crate) struct Draws(pub(crate) u64);

impl Draws {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        (-2.0 * self.uniform().ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()
    }
}

/// One row's features by name (`V1`…`V28`, `Time`, `Amount`) and its class.
pub(crate) fn card_row(draws: &mut Draws, fraud: bool, time: u64) -> (Vec<(String, f64)>, bool) {
    let mut features = vec![("Time".to_owned(), time as f64)];
    for v in 1..=28 {
        let shift = if fraud && (v == 1 || v == 4) { 3.0 } else { 0.0 };
        features.push((format!("V{v}"), ((draws.normal() + shift) * 1000.0).round() / 1000.0));
    }
    let amount = if fraud {
        20.0 + 400.0 * draws.uniform()
    } else {
        150.0 * draws.uniform()
    };
    features.push(("Amount".to_owned(), (amount * 100.0).round() / 100.0));
    (features, fraud)
}

pub(crate) fn cards() -> &'static Cards {
    static CARDS: OnceLock<Cards> = OnceLock::new();
    CARDS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut draws = Draws(0x9e37_79b9_7f4a_7c15);
        let mut csv = String::from("TransactionID,Time");
        for v in 1..=28 {
            csv.push_str(&format!(",V{v}"));
        }
        csv.push_str(",Amount,Class\n");
        for idx in 0..3_000u64 {
            let fraud = draws.uniform() < 0.04;
            let (features, _) = card_row(&mut draws, fraud, idx / 3 * 7);
            csv.push_str(&format!("T{idx:05}"));
            for (_, value) in &features {
                csv.push_str(&format!(",{value}"));
            }
            csv.push_str(if fraud { ",1\n" } else { ",0\n" });
        }
        std::fs::write(dir.path().join("cards.csv"), csv).unwrap();
        let run = ok(dir.path(), &["train", "--data", "cards.csv", "--out", "model"]);
        assert!(run.stderr.contains("tabular"), "{}", run.stderr);
        Cards { dir }
    })
}

fn row_json(id: Option<&str>, fraud: bool, seed: u64) -> Value {
    let mut draws = Draws(seed | 1);
    let (features, _) = card_row(&mut draws, fraud, 5_000);
    let mut object: serde_json::Map<String, Value> =
        features.into_iter().map(|(name, value)| (name, json!(value))).collect();
    if fraud {
        // unmistakable: the test is about serving, not about the model
        object.insert("V1".to_owned(), json!(4.0));
        object.insert("V4".to_owned(), json!(4.0));
        object.insert("Amount".to_owned(), json!(400.0));
    }
    if let Some(id) = id {
        object.insert("transaction_id".to_owned(), json!(id));
    }
    Value::Object(object)
}

/// `POST /api/v1/predictions/upload` of `csv` as a `text/csv` body.
async fn upload_csv(
    client: &reqwest::Client,
    server: &Server,
    key: &str,
    csv: impl Into<reqwest::Body>,
) -> reqwest::Response {
    client
        .post(server.url("/api/v1/predictions/upload"))
        .header("x-api-key", key)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feature_rows_are_scored_stored_and_reviewed_on_sqlite() {
    rows_served(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feature_rows_are_scored_stored_and_reviewed_on_postgres() {
    rows_served(Backend::Postgres).await;
}

async fn rows_served(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(backend).await;
    let service = key(dir.path(), &db.url, "service");
    let analyst = key(dir.path(), &db.url, "analyst");
    let server = Server::start(dir.path(), &db.url, Some(&cards().model()));
    let client = reqwest::Client::new();
    let url = server.url("/api/v1/predictions");

    // one row: decided, explained, stored
    let fraud = row_json(Some("r-fraud"), true, 11);
    let (status, body) = post(&client, &url, &service, &fraud).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["transaction_id"], "r-fraud");
    assert_ne!(body["decision"], "approve", "{body}");
    assert!(body["fraud_probability"].as_f64().unwrap() > 0.5, "{body}");
    let reasons = body["reasons"].as_array().unwrap();
    assert!(!reasons.is_empty(), "{body}");
    let top: Vec<&str> = reasons.iter().map(|r| r["feature"].as_str().unwrap()).collect();
    assert!(
        top.iter().any(|name| ["V1", "V4", "Amount"].contains(name)),
        "reasons {top:?}"
    );
    let (status, body) = post(&client, &url, &service, &row_json(Some("r-legit"), false, 12)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["decision"], "approve", "{body}");
    assert!(body["fraud_probability"].as_f64().unwrap() < 0.5, "{body}");

    // the same id: the stored decision (keys in another order are the same row); another row: 409
    let mut reordered: Vec<(String, Value)> = fraud.as_object().unwrap().clone().into_iter().collect();
    reordered.reverse();
    let reordered = Value::Object(reordered.into_iter().collect());
    let response = client
        .post(&url)
        .header("x-api-key", &service)
        .json(&reordered)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["idempotent-replayed"], "true");
    let (status, body) = post(&client, &url, &service, &row_json(Some("r-fraud"), true, 13)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict")),
        "{body}"
    );

    // unknown and mistyped features: 422 naming them
    let mut unknown = row_json(Some("r-bad"), false, 14);
    unknown["v1"] = json!(1.0);
    let (status, body) = post(&client, &url, &service, &unknown).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("unknown feature \"v1\"") && message.contains("did you mean \"V1\""),
        "{message}"
    );
    let mut mistyped = row_json(Some("r-bad"), false, 14);
    mistyped["Amount"] = json!("twelve");
    let (status, body) = post(&client, &url, &service, &mistyped).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("feature \"Amount\""),
        "{body}"
    );
    // the label and the id-like column the training set aside are not unknown
    let mut with_label = row_json(None, false, 15);
    with_label["Class"] = json!(0);
    with_label["TransactionID"] = json!("T-live-1");
    let (status, body) = post(&client, &url, &service, &with_label).await;
    assert_eq!(
        (status, body["transaction_id"].as_str()),
        (StatusCode::OK, Some("T-live-1")),
        "{body}"
    );
    // no id: one is generated
    let (status, body) = post(&client, &url, &service, &row_json(None, false, 16)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["transaction_id"].as_str().unwrap().starts_with("row-"), "{body}");

    // a transaction sent to a model of rows, and the other way round
    let (status, body) = post(&client, &server.url("/api/v1/transactions"), &service, &fraud).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["code"], "model_reads_rows", "{body}");
    assert!(is_error_body(&body));

    // a batch: each row on its own
    let batch = json!([row_json(Some("b-1"), true, 21), {"V3": "x"}, row_json(Some("b-3"), false, 23)]);
    let (status, body) = post(&client, &server.url("/api/v1/predictions/batch"), &service, &batch).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["scored"].as_u64(), body["failed"].as_u64()),
        (Some(2), Some(1)),
        "{body}"
    );
    assert_eq!(body["results"][1]["status"], 422);
    assert!(
        body["results"][1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"V3\""),
        "{body}"
    );

    // /predict takes what the serving model reads
    let (status, body) = post(
        &client,
        &server.url("/predict"),
        &service,
        &row_json(Some("p-1"), true, 31),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["transaction_id"].as_str(), body["is_fraud"].as_bool()),
        (Some("p-1"), Some(true)),
        "{body}"
    );

    // a CSV file, answered as CSV in the same order; the bad row says why
    let mut csv = String::from("TransactionID,Time,Amount,V1,V2,V3,V4,Class\n");
    for idx in 0..40 {
        let fraud = idx % 10 == 0;
        let (v1, v4, amount) = if fraud { (3.5, 3.2, 420.0) } else { (0.1, -0.2, 12.5) };
        csv.push_str(&format!("u-{idx},{},{amount},{v1},0.3,-0.1,{v4},\n", 5_000 + idx));
    }
    csv.push_str("u-bad,1,not-a-number,0,0,0,0,\n");
    csv.push_str("u-short,1,2\n");
    csv.push_str(",5,10,0,0,0,0,\n");
    let response = upload_csv(&client, &server, &service, csv.clone()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let answer = response.text().await.unwrap();
    let lines: Vec<&str> = answer.lines().collect();
    assert_eq!(
        lines[0],
        "line,transaction_id,decision,fraud_probability,score,review_status,replayed,reasons,error"
    );
    assert_eq!(lines.len(), 1 + 43, "{answer}");
    assert!(
        lines[1].starts_with("2,u-0,decline,") || lines[1].starts_with("2,u-0,review,"),
        "{}",
        lines[1]
    );
    assert!(lines[2].starts_with("3,u-1,approve,"), "{}", lines[2]);
    assert!(
        lines[41].starts_with("42,,,") && lines[41].contains("feature \"\"Amount\"\""),
        "{}",
        lines[41]
    );
    assert!(
        lines[42].starts_with("43,,,") && lines[42].contains("3 fields where the header has 8"),
        "{}",
        lines[42]
    );
    assert!(lines[43].starts_with("44,row-"), "{}", lines[43]);
    // CRLF and blank lines: the lines an editor shows; a header naming a column twice is refused
    let response = upload_csv(
        &client,
        &server,
        &service,
        "TransactionID,V1\r\ncr-1,1\r\n\r\ncr-2,oops\r\n",
    )
    .await
    .text()
    .await
    .unwrap();
    let lines: Vec<&str> = response.lines().collect();
    assert!(
        lines[1].starts_with("2,cr-1,") && lines[2].starts_with("4,,"),
        "{response}"
    );
    let response = upload_csv(&client, &server, &service, "V1,V1\n1,2\n").await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("\"V1\" twice"), "{body}");
    // sent again: the stored decisions, as replays
    let again = upload_csv(
        &client,
        &server,
        &service,
        csv.lines().take(3).collect::<Vec<_>>().join("\n"),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(again.lines().nth(1).unwrap().contains(",true,"), "{again}");
    // a multipart form works the same; a header the model cannot read stores nothing
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"V1,Amount\n0.5,10\n".to_vec()).file_name("rows.csv"),
    );
    let answer = client
        .post(server.url("/api/v1/predictions/upload"))
        .header("x-api-key", &service)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(answer.lines().count(), 2, "{answer}");
    let response = upload_csv(&client, &server, &service, "V1,Amount,merchant\n0.5,10,x\n").await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("unknown feature \"merchant\""),
        "{body}"
    );

    // stored and shown: the row as the model read it
    let (status, body) = get(&client, &server.url("/api/v1/transactions/u-0"), &analyst).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["transaction"]["row"]["V1"], 3.5, "{body}");
    assert!(body["transaction"]["row"]["V28"].is_null(), "{body}");
    assert!(body["transaction"]["row"].get("TransactionID").is_none(), "{body}");

    // the review queue holds the flagged rows; a review labels one
    let (status, queue) = get(&client, &server.url("/api/v1/anomalies?limit=500"), &analyst).await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    let queued: Vec<&str> = queue["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["transaction_id"].as_str().unwrap())
        .collect();
    for id in ["r-fraud", "b-1", "p-1", "u-0", "u-10"] {
        assert!(queued.contains(&id), "{id} not in {queued:?}");
    }
    assert!(!queued.contains(&"r-legit"), "{queued:?}");
    let response = client
        .put(server.url("/api/v1/anomalies/u-0"))
        .header("x-api-key", &analyst)
        .json(&json!({"status": "confirmed_fraud", "note": "row model"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let review: Value = response.json().await.unwrap();
    assert_eq!(
        (review["label"].as_str(), review["label_applied"].as_bool()),
        (Some("fraud"), Some(false))
    );
    let (status, body) = post(
        &client,
        &server.url("/api/v1/labels"),
        &analyst,
        &json!([{"transaction_id": "r-legit", "label": "legit"}]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = get(&client, &server.url("/api/v1/transactions/u-0"), &analyst).await;
    assert_eq!(body["label"], "fraud", "{body}");
    assert_eq!(body["review_status"], "confirmed_fraud", "{body}");

    let metrics = server.metrics().await;
    assert!(
        metrics.contains("fraud_predictions_total{decision=\"approve\"}"),
        "{metrics}"
    );
    assert_eq!(server.terminate(), 0);

    // rows stored beside transactions do not stop a transaction model from starting on the store
    let transactions = crate::model::trained();
    let server = Server::start(dir.path(), &db.url, Some(&transactions.model()));
    let (status, body) = post(&client, &server.url("/api/v1/predictions"), &service, &fraud).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("model_reads_transactions"))
    );
    assert_eq!(server.terminate(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detect_scores_feature_rows_from_kafka_once_and_dead_letters_bad_rows() {
    use rdkafka::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let broker = broker_with_topics(2);
    let db = TestDb::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().unwrap();
    let model = cards().model();
    let version = ok(
        dir.path(),
        &["models", "register", model.to_str().unwrap(), "--database", &db.url],
    )
    .stdout
    .trim()
    .to_owned();
    ok(dir.path(), &["models", "promote", &version, "--database", &db.url]);

    // 300 rows of the training file (200 with their id, 100 without), and bad rows
    let (header, rows) = read_csv(&cards().data());
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .create()
        .unwrap();
    for (idx, row) in rows.iter().take(300).enumerate() {
        let mut object: serde_json::Map<String, Value> = header
            .iter()
            .zip(row)
            .map(|(name, value)| (name.clone(), json!(value.parse::<f64>().ok())))
            .collect();
        object.insert("TransactionID".to_owned(), json!(row[0]));
        if idx >= 200 {
            object.remove("TransactionID");
        }
        let payload = Value::Object(object).to_string();
        producer.send(BaseRecord::<(), _>::to("tx").payload(&payload)).unwrap();
    }
    let bad: [&[u8]; 3] = [br#"{"V1": 1, "merchant": "x"}"#, br#"{"V1": [1]}"#, b"not json"];
    for payload in bad {
        producer.send(BaseRecord::<(), _>::to("tx").payload(payload)).unwrap();
    }
    producer.flush(std::time::Duration::from_secs(10)).unwrap();

    let group = format!("rows-{}", std::process::id());
    let detect = Detect::start(dir.path(), &broker.address, &group, &db.url, "rows");
    let store = fraudlens_store::connect(&db.url, &fraudlens_store::StoreOptions::default())
        .await
        .unwrap();
    wait_for(
        "every row stored or dead-lettered",
        std::time::Duration::from_secs(90),
        async || {
            let stored = store.count_transactions().await.unwrap();
            let dead = store.dead_letters(100).await.unwrap().len();
            stored == 300 && dead == 3
        },
    )
    .await;
    let letters = store.dead_letters(100).await.unwrap();
    let reasons: Vec<&str> = letters.iter().map(|letter| letter.letter.error.as_str()).collect();
    assert!(
        reasons
            .iter()
            .any(|reason| reason.contains("unknown feature \"merchant\"")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|reason| reason.contains("feature \"V1\": expected a number or a string")),
        "{reasons:?}"
    );
    // the rows sent with an id keep it; the others are named by their place in the log
    assert!(store.transaction(&rows[0][0]).await.unwrap().is_some());
    let all = crate::detect::all_rows(store.as_ref()).await;
    let named = all
        .iter()
        .filter(|row| row.decision.transaction_id.starts_with("tx-"))
        .count();
    assert_eq!(named, 100, "ids of the rows sent without one");
    assert!(all.iter().all(|row| row.decision.body.starts_with("{\"row\":")));
    // one decision message per row
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .set("group.id", format!("rows-reader-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    reader.subscribe(&["decisions"]).unwrap();
    let mut decided = std::collections::HashSet::new();
    let started = std::time::Instant::now();
    while decided.len() < 300 && started.elapsed() < std::time::Duration::from_secs(60) {
        if let Some(Ok(message)) = reader.poll(std::time::Duration::from_millis(500)) {
            let decision: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
            assert!(decision["fraud_probability"].is_f64(), "{decision}");
            decided.insert(decision["transaction_id"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(decided.len(), 300);
    let frauds = all.iter().filter(|row| row.decision.decision.is_flagged()).count();
    assert!(frauds > 0, "some rows of the training file are flagged");
    assert_eq!(detect.terminate(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_row_upload_over_the_limit_says_where_it_stopped_and_is_cut_off() {
    use axum::body::Bytes;

    const LIMIT: usize = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let service = key(dir.path(), &db.url, "service");
    let server = Server::start_with(
        dir.path(),
        &db.url,
        Some(&cards().model()),
        &[("FRAUDLENS_SERVE__MAX_UPLOAD_BYTES", &LIMIT.to_string())],
    );
    let csv = std::fs::read_to_string(cards().data()).unwrap();
    assert!(csv.len() > LIMIT * 2, "{} bytes", csv.len());
    // no Content-Length (chunked): the server learns the size as it reads
    let chunks: std::collections::VecDeque<Bytes> =
        csv.as_bytes().chunks(8 << 10).map(Bytes::copy_from_slice).collect();
    let mut response = reqwest::Client::new()
        .post(server.url("/api/v1/predictions/upload"))
        .header("x-api-key", &service)
        .header("content-type", "text/csv")
        .body(reqwest::Body::wrap(crate::serve::limits::UnsizedBody(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "the answer starts before the file is read"
    );
    let mut answer = Vec::new();
    let cut_off = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => answer.extend_from_slice(&chunk),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    let answer = String::from_utf8(answer).unwrap();
    assert!(
        cut_off,
        "an answer that stopped part-way must not end like a complete one"
    );
    let lines: Vec<&str> = answer.lines().collect();
    let stop = lines.last().unwrap();
    assert!(
        stop.starts_with(",,,,,,,,") && stop.contains("stopped: ") && stop.contains("payload_too_large"),
        "{stop}"
    );
    let decided: Vec<&str> = lines[1..lines.len() - 1].to_vec();
    assert!(
        decided.len() > 100,
        "rows before the limit are answered: {}",
        decided.len()
    );
    // every answered row is stored, in order, and nothing after them
    let store = fraudlens_store::connect(&db.url, &fraudlens_store::StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(store.count_transactions().await.unwrap() as usize, decided.len());
    for (idx, line) in decided.iter().enumerate() {
        let expected = format!("{},T{idx:05},", idx + 2);
        assert!(line.starts_with(&expected), "{line} (expected {expected}…)");
    }
    let next = format!("T{:05}", decided.len());
    assert!(
        store.transaction(&next).await.unwrap().is_none(),
        "{next} is not stored"
    );
    assert!(stop.contains(&format!("up to line {}", decided.len() + 1)), "{stop}");
    // the server goes on
    let (status, _) = post(
        &reqwest::Client::new(),
        &server.url("/api/v1/predictions"),
        &service,
        &row_json(Some("after"), false, 3),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

/// The ONNX fixtures of `fraudlens-model` (scikit-learn, PyTorch-style), with onnxruntime's outputs.
fn onnx_fixture(name: &str, file: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fraudlens-model/tests/fixtures/onnx"
    ))
    .join(format!("{name}.{file}"))
}

/// `fraudlens import --onnx` of a fixture (its model and feature names) into `dir/onnx-model`.
fn import_onnx(dir: &Path, fixture: &str, extra: &[&str]) -> Run {
    let (model, features) = (onnx_fixture(fixture, "onnx"), onnx_fixture(fixture, "features.json"));
    let mut args = vec![
        "import",
        "--onnx",
        model.to_str().unwrap(),
        "--features",
        features.to_str().unwrap(),
        "--out",
        "onnx-model",
    ];
    args.extend_from_slice(extra);
    ok(dir, &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_onnx_model_is_served_with_onnxruntimes_probabilities_and_occlusion_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let reference = onnx_fixture("sklearn_pipeline", "rows.csv");
    let run = import_onnx(
        dir.path(),
        "sklearn_pipeline",
        &["--reference", reference.to_str().unwrap(), "--review-threshold", "0.3"],
    );
    assert!(run.stderr.contains("output \"output_probability\""), "{}", run.stderr);
    let db = TestDb::new(Backend::Sqlite).await;
    let service = key(dir.path(), &db.url, "service");
    let server = Server::start(dir.path(), &db.url, Some(&dir.path().join("onnx-model")));
    let client = reqwest::Client::new();
    let (header, rows) = read_csv(&onnx_fixture("sklearn_pipeline", "rows.csv"));
    let expected: Vec<f64> = std::fs::read_to_string(onnx_fixture("sklearn_pipeline", "expected.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|line| line.parse().unwrap())
        .collect();
    let mut flagged = 0;
    for (idx, row) in rows.iter().enumerate() {
        let mut object: serde_json::Map<String, Value> = header
            .iter()
            .zip(row)
            .map(|(name, value)| (name.clone(), json!(value.parse::<f64>().unwrap())))
            .collect();
        object.insert("transaction_id".to_owned(), json!(format!("onnx-{idx}")));
        let (status, body) = post(
            &client,
            &server.url("/api/v1/predictions"),
            &service,
            &Value::Object(object),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let p = body["fraud_probability"].as_f64().unwrap();
        assert!(
            (p - expected[idx]).abs() <= 1e-5,
            "row {idx}: {p} vs onnxruntime {}",
            expected[idx]
        );
        if body["is_fraud"] == true {
            flagged += 1;
            let reasons = body["reasons"].as_array().unwrap();
            assert!(!reasons.is_empty(), "a flagged decision is explained: {body}");
            assert!(reasons[0]["contribution"].as_f64().unwrap().abs() > 0.0, "{body}");
        }
    }
    assert!(flagged > 0, "some rows are flagged at 0.3");
    // a logistic regression cannot take a missing value: 422 naming it, nothing stored
    let (status, body) = post(
        &client,
        &server.url("/api/v1/predictions"),
        &service,
        &json!({"transaction_id": "onnx-missing", "amount": 10.0}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("cannot take missing values") && message.contains("velocity"),
        "{message}"
    );
    let (_, info) = get(&client, &server.url("/model/info"), &service).await;
    assert_eq!(info["kind"], "onnx", "{info}");
    assert_eq!(server.terminate(), 0);
}

#[test]
fn scoring_a_file_with_an_onnx_model_refuses_rows_with_a_missing_feature_by_line() {
    let dir = tempfile::tempdir().unwrap();
    import_onnx(dir.path(), "torch_mlp", &[]);
    let rows = std::fs::read_to_string(onnx_fixture("torch_mlp", "rows.csv")).unwrap();
    let mut lines: Vec<String> = rows.lines().take(6).map(str::to_owned).collect();
    // line 4: the third row loses its "risk" (7th column)
    let mut cells: Vec<&str> = lines[3].split(',').collect();
    cells[6] = "";
    lines[3] = cells.join(",");
    std::fs::write(dir.path().join("rows.csv"), lines.join("\n") + "\n").unwrap();
    let run = ok(
        dir.path(),
        &[
            "score",
            "--model",
            "onnx-model",
            "--input",
            "rows.csv",
            "--output",
            "scored.csv",
        ],
    );
    assert!(
        run.stderr.contains("line 4")
            && run
                .stderr
                .contains("\"risk\": missing, and an ONNX model needs every feature"),
        "{}",
        run.stderr
    );
    let (_, scored) = read_csv(&dir.path().join("scored.csv"));
    assert_eq!(scored.len(), 4, "the other rows are scored");
}
