//! The event-time policy on every path (hardening issue, defects 1 and 8):
//! the API refuses events dated ahead of its clock or far behind the events
//! it accepted (422), an accepted event of one customer never moves another's
//! windows, an idempotent retry of an old transaction still gets its stored
//! decision, and offline replay reports the same events as bad rows by line.

use fraudlens_core::Timestamp;
use fraudlens_testkit::{Backend, TestDb};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::fraudlens;
use crate::model::trained;
use crate::serve::{Server, get, is_error_body, key, post};

const HOUR: i64 = 3_600_000;

fn now_ms() -> i64 {
    std::time::UNIX_EPOCH.elapsed().unwrap().as_millis() as i64
}

fn at(ms: i64) -> String {
    Timestamp::from_millis(ms).to_string()
}

fn transaction(id: &str, ms: i64, customer: &str, terminal: &str) -> Value {
    json!({"transaction_id": id, "timestamp": at(ms), "customer_id": customer, "terminal_id": terminal,
           "amount": "25.00", "currency": "EUR"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_keeps_each_entitys_clock_and_refuses_out_of_range_times() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let service = key(dir.path(), &db.url, "service");
    let analyst = key(dir.path(), &db.url, "analyst");
    let server = Server::start(dir.path(), &db.url, Some(&trained().model()));
    let client = reqwest::Client::new();
    let score = server.url("/api/v1/transactions");
    let t0 = now_ms() - 10 * 24 * HOUR;

    // a customer with six transactions in five hours
    for idx in 0..6 {
        let tx = transaction(&format!("a{idx}"), t0 + idx * HOUR, "cust_a", &format!("term_a{idx}"));
        let (status, body) = post(&client, &score, &service, &tx).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // another customer at another terminal, 23 hours later (accepted: it is in the past)
    let (status, body) = post(
        &client,
        &score,
        &service,
        &transaction("b0", t0 + 28 * HOUR, "cust_b", "term_b"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // dated ahead of the server's clock, or in the year 9999: refused, nothing stored
    for (id, when) in [
        ("future", at(now_ms() + 2 * HOUR)),
        ("y9999", "9999-12-31T00:00:00Z".to_owned()),
    ] {
        let mut tx = transaction(id, 0, "someone_else", "other_term");
        tx["timestamp"] = json!(when);
        let (status, body) = post(&client, &score, &service, &tx).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(is_error_body(&body), "{body}");
        assert_eq!(body["code"], "event_time_out_of_range", "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("ahead of the current time"),
            "{body}"
        );
        let (status, _) = get(&client, &server.url(&format!("/api/v1/transactions/{id}")), &analyst).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    // far behind the events accepted (more than 7 days before cust_b's): refused
    let (status, body) = post(
        &client,
        &score,
        &service,
        &transaction("old", t0 - 8 * 24 * HOUR, "c_old", "t_old"),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("before the latest accepted event time"),
        "{body}"
    );

    // cust_a again, one minute after its last transaction: its one-day window still holds all six
    let (status, body) = post(
        &client,
        &score,
        &service,
        &transaction("a6", t0 + 5 * HOUR + 60_000, "cust_a", "term_a6"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, detail) = get(&client, &server.url("/api/v1/transactions/a6"), &analyst).await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["features"]["customer_count_1d"], 7.0, "{detail}");
    assert_eq!(detail["features"]["customer_secs_since_prev"], 60.0, "{detail}");

    // an idempotent retry of a transaction now too late for the state (8 days later): its stored decision
    let (status, body) = post(
        &client,
        &score,
        &service,
        &transaction("b1", t0 + 8 * 24 * HOUR, "cust_b", "term_b"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let response = client
        .post(&score)
        .header("x-api-key", &service)
        .json(&transaction("a0", t0, "cust_a", "term_a0"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["idempotent-replayed"], "true");
    // the same id with other content is still a conflict, not a time error
    let mut changed = transaction("a0", t0, "cust_a", "term_a0");
    changed["amount"] = json!("99.00");
    let (status, body) = post(&client, &score, &service, &changed).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // a batch: the future record fails alone
    let batch = json!([
        transaction("a7", t0 + 8 * 24 * HOUR + HOUR, "cust_a", "term_a7"),
        transaction("f2", now_ms() + 3 * HOUR, "x", "y")
    ]);
    let (status, body) = post(&client, &server.url("/api/v1/transactions/batch"), &service, &batch).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let results = body["results"].as_array().unwrap();
    assert!(results[0]["error"].is_null(), "{body}");
    assert_eq!(results[1]["error"]["code"], "event_time_out_of_range", "{body}");

    // an upload: the future row is reported by line, the others are stored
    let csv = format!(
        "transaction_id,timestamp,customer_id,terminal_id,amount,currency\n\
         u1,{},cust_u,term_u,10.00,EUR\nu2,{},cust_u,term_u,10.00,EUR\nu3,{},cust_u,term_u,10.00,EUR\n",
        at(t0 + 8 * 24 * HOUR + 2 * HOUR),
        at(now_ms() + 24 * HOUR),
        at(t0 + 8 * 24 * HOUR + 3 * HOUR)
    );
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(csv.into_bytes()).file_name("tx.csv"),
    );
    let upload: Value = client
        .post(server.url("/api/v1/transactions/upload"))
        .header("x-api-key", &service)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (upload["accepted"].as_u64(), upload["rejected"].as_u64()),
        (Some(2), Some(1)),
        "{upload}"
    );
    assert_eq!(upload["errors"][0]["line"], 3, "{upload}");
    assert!(
        upload["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("ahead of the current time"),
        "{upload}"
    );

    // the refusals are counted
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("fraudlens_event_time_refused_total{reason=\"future\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("fraudlens_event_time_refused_total{reason=\"too_late\"}"),
        "{metrics}"
    );
    assert_eq!(server.terminate(), 0);
}

/// Offline replay applies the same rules: refused events are bad rows with
/// their line numbers, and the other rows are kept.
#[test]
fn offline_replay_reports_out_of_range_times_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = now_ms() - 10 * 24 * HOUR;
    let csv = format!(
        "transaction_id,timestamp,customer_id,terminal_id,amount,currency,mcc,channel,country,is_fraud,fraud_scenario\n\
         r1,{},c1,t1,10.00,EUR,5411,pos,SE,0,\n\
         r2,9999-12-31T00:00:00Z,c2,t2,10.00,EUR,5411,pos,SE,0,\n\
         r3,{},c1,t1,10.00,EUR,5411,pos,SE,0,\n\
         r4,{},c3,t3,10.00,EUR,5411,pos,SE,0,\n",
        at(t0),
        at(t0 + HOUR),
        at(t0 - 9 * 24 * HOUR),
    );
    std::fs::write(dir.path().join("tx.csv"), csv).unwrap();
    let run = fraudlens(dir.path(), &["features", "--data", "tx.csv", "--out", "f.csv"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("event time out of range: 2 bad rows skipped"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("line 3: event time 9999-12-31T00:00:00Z"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("line 5: event time"), "{}", run.stderr);
    let written = std::fs::read_to_string(dir.path().join("f.csv")).unwrap();
    let ids: Vec<&str> = written
        .lines()
        .skip(1)
        .map(|line| line.split(',').next().unwrap())
        .collect();
    assert_eq!(ids, ["r1", "r3"]);
    // the bounds are configuration: off lets the late row through
    let run = fraudlens(
        dir.path(),
        &["features", "--data", "tx.csv", "--out", "g.csv"],
        &[("FRAUDLENS_EVENT_TIME__MAX_LATENESS", "off")],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("event time out of range: 1 bad row skipped"),
        "{}",
        run.stderr
    );
}

/// A store and a snapshot poisoned by a version without the policy (here: the
/// policy turned off) heal at the next start: the snapshot dated in the future
/// is not used, the poisoning row stays stored but out of the state, and the
/// customers' windows are whole again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_store_and_snapshot_heal_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let service = key(dir.path(), &db.url, "service");
    let analyst = key(dir.path(), &db.url, "analyst");
    let client = reqwest::Client::new();
    let t0 = now_ms() - 10 * 24 * HOUR;
    let unchecked = [
        ("FRAUDLENS_EVENT_TIME__MAX_FUTURE", "off"),
        ("FRAUDLENS_EVENT_TIME__MAX_LATENESS", "off"),
    ];
    let server = Server::start_with(dir.path(), &db.url, Some(&trained().model()), &unchecked);
    let score = server.url("/api/v1/transactions");
    for idx in 0..6 {
        let tx = transaction(&format!("a{idx}"), t0 + idx * HOUR, "cust_a", "term_a");
        assert_eq!(post(&client, &score, &service, &tx).await.0, StatusCode::OK);
    }
    let mut poison = transaction("poison", 0, "someone_else", "other_term");
    poison["timestamp"] = json!("9999-12-31T00:00:00Z");
    assert_eq!(post(&client, &score, &service, &poison).await.0, StatusCode::OK);
    assert_eq!(server.terminate(), 0);
    assert!(dir.path().join("fraudlens-data/entity-state.bin").exists());

    let server = Server::start(dir.path(), &db.url, Some(&trained().model()));
    let log = server.log();
    assert!(log.contains("entity-state snapshot is dated in the future"), "{log}");
    assert!(log.contains("stored transaction left out of the entity state"), "{log}");
    let tx = transaction("a6", t0 + 5 * HOUR + 60_000, "cust_a", "term_a");
    let (status, body) = post(&client, &server.url("/api/v1/transactions"), &service, &tx).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, detail) = get(&client, &server.url("/api/v1/transactions/a6"), &analyst).await;
    assert_eq!(detail["features"]["customer_count_1d"], 7.0, "{detail}");
    assert_eq!(detail["features"]["terminal_count_1d"], 7.0, "{detail}");
    // the poisoning transaction is still in the store, for the audit
    assert_eq!(
        get(&client, &server.url("/api/v1/transactions/poison"), &analyst)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(server.terminate(), 0);
}
