//! Two simulated months through the real binary, on both stores: a model
//! trained on the first three weeks serves; from day 30 a new fraud pattern
//! appears (the simulator's night ring: online purchases of everyday amounts
//! at night). The stale model's recall on the served weeks falls and the
//! drift report shows the inputs the ring moved; chargebacks arrive,
//! `retrain --promote-if-better` trains on the served decisions and their
//! labels and promotes; the server swaps, and the last week, decided by the
//! new model, recovers. The weekly table is printed (`--nocapture`).

use std::path::Path;
use std::time::{Duration, Instant};

use fraudlens_testkit::{Backend, TestDb};
use serde_json::Value;

use crate::serve::{Server, chargebacks, get, key, upload};
use crate::{fraudlens, ok, read_csv};

/// The served weeks (the first four by the stale model, the last by the retrained one).
const WEEKS: [&str; 6] = [
    "2026-01-23",
    "2026-01-30",
    "2026-02-06",
    "2026-02-13",
    "2026-02-20",
    "2026-02-27",
];

/// The simulated world: 57 days from 2026-01-01.
const SIMULATE: [&str; 11] = [
    "simulate",
    "--customers",
    "800",
    "--terminals",
    "1600",
    "--days",
    "57",
    "--seed",
    "7",
    "--stolen-card-rate",
    "0.004",
];

/// Retrain settings for a short history: labels mature in a day, the last 7 matured days judge.
const SETTINGS: [(&str, &str); 3] = [
    ("FRAUDLENS_RETRAIN__LABEL_MATURITY", "1d"),
    ("FRAUDLENS_RETRAIN__HOLDOUT", "7d"),
    ("FRAUDLENS_RETRAIN__RESAMPLES", "300"),
];

/// The rows dated in `[from, to)` as CSV, and the ids of their frauds.
fn rows_between(data: &Path, from: &str, to: &str) -> (String, Vec<String>) {
    let (header, rows) = read_csv(data);
    let at = |name: &str| header.iter().position(|column| column == name).unwrap();
    let (time, id, fraud) = (at("timestamp"), at("transaction_id"), at("is_fraud"));
    let mut csv = header.join(",") + "\n";
    let mut frauds = Vec::new();
    for row in rows
        .iter()
        .filter(|row| row[time].as_str() >= from && row[time].as_str() < to)
    {
        csv.push_str(&row.join(","));
        csv.push('\n');
        if row[fraud] == "1" {
            frauds.push(row[id].clone());
        }
    }
    (csv, frauds)
}

/// A model's recall at its threshold and average precision on a week of the data.
fn quality(dir: &Path, model: &Path, data: &Path, from: &str, to: &str) -> (f64, f64) {
    let json = dir.join(format!(
        "eval-{}-{from}.json",
        model.file_name().unwrap().to_str().unwrap()
    ));
    ok(
        dir,
        &[
            "evaluate",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--test-from",
            from,
            "--test-to",
            to,
            "--json",
            json.to_str().unwrap(),
        ],
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    let metrics = &report["windows"][0]["metrics"];
    let pick = |name: &str| {
        metrics[name]
            .as_f64()
            .unwrap_or_else(|| panic!("{name} not in {metrics}"))
    };
    (pick("recall"), pick("average_precision"))
}

/// The drift of the stored decisions of a week against `model`'s reference:
/// the PSI of each input by name, and the top three.
fn drift(dir: &Path, model: &Path, database: &str, from: &str, to: &str) -> (Value, Vec<String>) {
    let run = ok(
        dir,
        &[
            "drift",
            "--model",
            model.to_str().unwrap(),
            "--database",
            database,
            "--from",
            from,
            "--to",
            to,
            "--json",
        ],
    );
    let report: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let features = report["report"]["features"].as_array().unwrap().clone();
    let psi: serde_json::Map<String, Value> = features
        .iter()
        .map(|feature| (feature["name"].as_str().unwrap().to_owned(), feature["psi"].clone()))
        .collect();
    let top = features
        .iter()
        .take(3)
        .map(|feature| {
            format!(
                "{} {:.2}",
                feature["name"].as_str().unwrap(),
                feature["psi"].as_f64().unwrap()
            )
        })
        .collect();
    (Value::Object(psi), top)
}

async fn a_new_fraud_pattern_is_caught_by_retraining_on_what_was_served(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let db = TestDb::new(backend).await;
    ok(path, &[&SIMULATE[..], &["--out", "tx.csv"]].concat());
    let data = path.join("tx.csv");
    // the same world again, with the night ring from day 30 (2026-01-31): every other row is the same
    let run = fraudlens(
        path,
        &[&SIMULATE[..], &["--out", "ring.csv"]].concat(),
        &[
            ("FRAUDLENS_SIMULATE__NIGHT_RING_RATE", "0.03"),
            ("FRAUDLENS_SIMULATE__NIGHT_RING_FROM_DAY", "30"),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let ring = path.join("ring.csv");
    let (header, before) = read_csv(&data);
    let (with_ring, rows) = read_csv(&ring);
    assert_eq!(header, with_ring);
    let at = |name: &str| header.iter().position(|column| column == name).unwrap();
    let (id, scenario) = (at("transaction_id"), at("fraud_scenario"));
    assert!(rows.iter().filter(|row| row[scenario] == "night_ring").count() > 500);
    // every other row is the same (numbered after the ring's, so ids aside)
    let without_id = |row: &Vec<String>| {
        let mut row = row.clone();
        row.remove(id);
        row
    };
    let others: Vec<_> = rows
        .iter()
        .filter(|row| row[scenario] != "night_ring")
        .map(without_id)
        .collect();
    assert!(others == before.iter().map(without_id).collect::<Vec<_>>());
    std::fs::remove_file(&data).unwrap();

    ok(
        path,
        &["train", "--data", "ring.csv", "--train-to", WEEKS[0], "--out", "stale"],
    );
    let stale = path.join("stale");
    let (service, admin) = (key(path, &db.url, "service"), key(path, &db.url, "admin"));
    let server = Server::start(path, &db.url, Some(&stale));
    let client = reqwest::Client::new();
    let (_, info) = get(&client, &server.url("/model/info"), &service).await;
    let stale_version = info["version"].as_str().unwrap().to_owned();

    // four weeks served by the stale model, then the chargebacks
    let (csv, frauds) = rows_between(&ring, WEEKS[0], WEEKS[4]);
    let served = upload(&client, &server, &service, csv).await;
    chargebacks(&client, &server, &admin, &frauds).await;

    let run = fraudlens(
        path,
        &[
            "retrain",
            "--promote-if-better",
            "0.01",
            "--out",
            "retrained",
            "--json",
            "--database",
            &db.url,
        ],
        &SETTINGS,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let retrained: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(retrained["promoted"], true, "{}", run.stderr);
    let candidate = retrained["candidate"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, info) = get(&client, &server.url("/model/info"), &service).await;
        if info["version"] == candidate.as_str() {
            break;
        }
        assert!(Instant::now() < deadline, "the server still serves {info}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // the last week, decided by the retrained model
    let (csv, frauds) = rows_between(&ring, WEEKS[4], WEEKS[5]);
    upload(&client, &server, &service, csv).await;
    chargebacks(&client, &server, &admin, &frauds).await;
    assert_eq!(server.terminate(), 0);

    // the weekly table: the production model of each week, its recall and AP, the drift of the inputs
    let retrained_dir = path.join("retrained");
    let mut table = format!(
        "served {served} + 1 week; retrain: {}\n{:<12} {:<20} {:>7} {:>7}  {:>8} {:>8} {:>8}  top PSI\n",
        run.stdout.trim(),
        "week",
        "production",
        "recall",
        "AP",
        "hour",
        "is_night",
        "channel"
    );
    let mut rows = Vec::new();
    for week in 0..5 {
        let (from, to) = (WEEKS[week], WEEKS[week + 1]);
        let (model, version) = if week < 4 {
            (&stale, &stale_version)
        } else {
            (&retrained_dir, &candidate)
        };
        let (recall, ap) = quality(path, model, &ring, from, to);
        let (psi, top) = drift(path, &stale, &db.url, from, to);
        let of = |name: &str| psi[name].as_f64().unwrap();
        table.push_str(&format!(
            "{from:<12} {version:<20} {recall:>7.3} {ap:>7.3}  {:>8.4} {:>8.4} {:>8.4}  {}\n",
            of("hour"),
            of("is_night"),
            of("channel"),
            top.join(", ")
        ));
        rows.push((recall, ap, of("is_night"), of("channel")));
    }
    // the stale model on the last week, for comparison
    let (stale_recall, stale_ap) = quality(path, &stale, &ring, WEEKS[4], WEEKS[5]);
    table.push_str(&format!(
        "{:<12} {:<20} {stale_recall:>7.3} {stale_ap:>7.3}  (the stale model on the same week)\n",
        WEEKS[4], stale_version
    ));
    eprintln!("{table}");

    // before the ring the stale model catches most fraud; with it, far less
    let (first, ringed, recovered) = (rows[0], rows[3], rows[4]);
    assert!(ringed.0 < first.0 - 0.2 && ringed.1 < first.1 - 0.15, "{table}");
    // the drift report shows what the ring moved: night-time and online shares
    assert!(ringed.2 > 10.0 * first.2 + 0.005, "is_night: {table}");
    assert!(ringed.3 > 5.0 * first.3 + 0.005, "channel: {table}");
    // the retrained model, deciding the last week, recovers
    assert!(
        recovered.0 > stale_recall + 0.2 && recovered.1 > stale_ap + 0.15,
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_fraud_pattern_on_sqlite() {
    a_new_fraud_pattern_is_caught_by_retraining_on_what_was_served(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_fraud_pattern_on_postgres() {
    a_new_fraud_pattern_is_caught_by_retraining_on_what_was_served(Backend::Postgres).await;
}
