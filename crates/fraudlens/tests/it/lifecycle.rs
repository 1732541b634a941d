//! The model lifecycle through the real binary, on both stores: a weak model
//! serves two weeks of transactions, chargebacks arrive as labels, `retrain`
//! trains a candidate on the stored decisions, compares it with production
//! on the latest matured days it did not train on, records the comparison
//! and promotes it (the running server swaps to it); `models compare` and
//! `models list` show the comparisons, and a worse challenger is refused.
//! `fraudlens drift` finds the inputs that moved, in a file or the store.

use std::path::Path;
use std::time::{Duration, Instant};

use fraudlens_testkit::{Backend, TestDb};
use reqwest::StatusCode;
use serde_json::Value;

use crate::model::{train_shared, trained};
use crate::serve::{Server, chargebacks, get, key, upload};
use crate::{fraudlens, ok, read_csv};

/// The first day the shared model did not train on.
const SERVED_FROM: &str = "2026-02-05";

/// A model trained on the shared data's training window, with one tree of two leaves.
fn weak_model(dir: &Path) -> std::path::PathBuf {
    let run = train_shared(dir, "weak", &["--trees", "1", "--num-leaves", "2"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    dir.join("weak")
}

/// The shared data's transactions from [`SERVED_FROM`] on, as CSV, and the ids of their frauds.
fn served_rows() -> (String, Vec<String>) {
    let (header, rows) = read_csv(&trained().data());
    let at = |name: &str| header.iter().position(|column| column == name).unwrap();
    let (time, id, fraud) = (at("timestamp"), at("transaction_id"), at("is_fraud"));
    let mut csv = header.join(",") + "\n";
    let mut frauds = Vec::new();
    for row in rows.iter().filter(|row| row[time].as_str() >= SERVED_FROM) {
        csv.push_str(&row.join(","));
        csv.push('\n');
        if row[fraud] == "1" {
            frauds.push(row[id].clone());
        }
    }
    (csv, frauds)
}

/// Retrain settings that fit two weeks of data: labels mature in a day, the last 7 matured days judge.
const SETTINGS: [(&str, &str); 3] = [
    ("FRAUDLENS_RETRAIN__LABEL_MATURITY", "1d"),
    ("FRAUDLENS_RETRAIN__HOLDOUT", "7d"),
    ("FRAUDLENS_RETRAIN__RESAMPLES", "300"),
];

async fn retrain_promotes_a_better_model_and_refuses_a_worse_one(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let db = TestDb::new(backend).await;
    let weak = weak_model(path);
    let (service, admin) = (key(path, &db.url, "service"), key(path, &db.url, "admin"));

    // nothing stored yet: no production model to retrain
    let run = fraudlens(path, &["retrain", "--database", &db.url], &SETTINGS);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("no production model"), "{}", run.stderr);

    let server = Server::start(path, &db.url, Some(&weak));
    let client = reqwest::Client::new();
    let (_, info) = get(&client, &server.url("/model/info"), &service).await;
    let weak_version = info["version"].as_str().unwrap().to_owned();

    // two weeks of traffic, then the chargebacks
    let (csv, frauds) = served_rows();
    let served = upload(&client, &server, &service, csv).await;
    assert!(frauds.len() > 50, "{} frauds", frauds.len());
    chargebacks(&client, &server, &admin, &frauds).await;

    // the live drift of the served traffic: the last 10,000 decisions, and the PSI gauges
    let (status, drift) = get(&client, &server.url("/api/v1/models/production/drift"), &service).await;
    assert_eq!(status, StatusCode::OK, "{drift}");
    assert_eq!(drift["version"], weak_version.as_str());
    assert_eq!(
        (drift["rows"].as_u64(), drift["window"].as_u64()),
        (Some(10_000), Some(10_000))
    );
    let inputs = drift["report"]["features"].as_array().unwrap();
    assert!(inputs.len() > 50 && inputs.iter().all(|input| input["psi"].as_f64().unwrap() >= 0.0));
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("fraudlens_feature_psi{feature=\"amount\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("fraudlens_score_psi "), "{metrics}");
    // the rolling precision of flagged decisions is published from the start
    assert!(metrics.contains("fraudlens_review_precision "), "{metrics}");
    assert!(
        metrics.contains("fraudlens_flagged_decisions{label=\"unlabelled\"}"),
        "{metrics}"
    );

    // a refused margin is a usage error, before anything is read
    let run = fraudlens(
        path,
        &["retrain", "--promote-if-better", "NaN", "--database", &db.url],
        &SETTINGS,
    );
    assert_eq!(run.code, 2, "{}", run.stderr);

    // the candidate: the configuration's parameters on the stored decisions
    let run = fraudlens(
        path,
        &[
            "retrain",
            "--params",
            "config",
            "--promote-if-better",
            "0.01",
            "--out",
            "candidate",
            "--json",
            "--database",
            &db.url,
        ],
        &SETTINGS,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let output: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let candidate = output["candidate"].as_str().unwrap().to_owned();
    assert_ne!(candidate, weak_version);
    assert_eq!(output["production"], weak_version.as_str());
    let rows = &output["train_rows"];
    assert_eq!(
        rows["fraud"].as_u64().unwrap() + rows["legit"].as_u64().unwrap() + rows["matured"].as_u64().unwrap(),
        rows["in_window"].as_u64().unwrap(),
        "the training window is matured: every row is kept: {rows}"
    );
    assert!(rows["fraud"].as_u64().unwrap() > 20, "{rows}");
    let compared = &output["comparison"];
    let held_out = compared["counts"]["in_window"].as_u64().unwrap();
    assert!(
        held_out > 0 && held_out + rows["in_window"].as_u64().unwrap() < served,
        "{compared}"
    );
    let ap = compared["comparison"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|metric| metric["metric"] == "average_precision")
        .unwrap();
    assert!(
        ap["difference"].as_f64().unwrap() > 0.01 && ap["low"].as_f64().unwrap() > 0.0,
        "{ap}"
    );
    assert_eq!(output["verdict"]["promote"], true, "{}", output["verdict"]);
    assert_eq!(output["promoted"], true);
    assert!(run.stderr.contains("average_precision"), "{}", run.stderr);

    // the running server follows the registry
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, info) = get(&client, &server.url("/model/info"), &service).await;
        if info["version"] == candidate.as_str() {
            break;
        }
        assert!(Instant::now() < deadline, "the server still serves {info}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // windows with nothing in them: a data error, with the reason
    let future = ["--from", "2030-01-01", "--to", "2030-02-01", "--database", &db.url];
    let run = fraudlens(path, &[&["drift"][..], &future].concat(), &[]);
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(run.stderr.contains("no transactions"), "{}", run.stderr);
    let run = fraudlens(path, &[&["retrain"][..], &future].concat(), &SETTINGS);
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(run.stderr.contains("retrain.holdout"), "{}", run.stderr);
    let run = fraudlens(
        path,
        &[
            "drift",
            "--from",
            "2026-02-10",
            "--to",
            "2026-02-01",
            "--database",
            &db.url,
        ],
        &[],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);

    // the new model starts an empty live window
    let (_, drift) = get(&client, &server.url("/api/v1/models/production/drift"), &service).await;
    assert_eq!(drift["version"], candidate.as_str());
    assert_eq!(drift["rows"], 0);

    // drift of the production model on the last stored week: the served days are the training's
    // kind of traffic
    let run = fraudlens(path, &["drift", "--json", "--database", &db.url], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let drift: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(drift["model"], candidate.as_str());
    assert!(
        drift["report"]["rows"].as_u64().unwrap() > 1000,
        "{}",
        drift["report"]["rows"]
    );
    assert_eq!(drift["window"]["to"].as_str().unwrap().get(..10), Some("2026-02-19"));

    // the weak model challenging the new production model, on the days after both trained: not better
    let run = fraudlens(
        path,
        &["models", "compare", &weak_version, "--database", &db.url],
        &SETTINGS,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("the candidate is not better"), "{}", run.stdout);
    let ap_line = run
        .stdout
        .lines()
        .find(|line| line.trim_start().starts_with("average_precision"))
        .unwrap();
    assert!(ap_line.ends_with("worse"), "{}", run.stdout);
    // days the production model trained on are refused unless asked for
    let overlapping = [
        "models",
        "compare",
        &weak_version,
        "--from",
        "2026-02-10",
        "--database",
        &db.url,
    ];
    let run = fraudlens(path, &overlapping, &SETTINGS);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("model {candidate} trained on transactions up to")),
        "{}",
        run.stderr
    );
    let run = fraudlens(
        path,
        &[&overlapping[..], &["--allow-overlap", "--json"]].concat(),
        &SETTINGS,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let compared: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(compared["verdict"]["promote"], false);
    assert_eq!(
        compared["comparison"]["overlap"], true,
        "an overlapping comparison says so"
    );
    assert_eq!(compared["comparison"]["window"]["from"], "2026-02-10T00:00:00Z");
    // unknown versions are usage errors
    let run = fraudlens(
        path,
        &["models", "compare", "gbdt-nope", "--database", &db.url],
        &SETTINGS,
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("not registered"), "{}", run.stderr);

    let run = ok(path, &["models", "list", "--database", &db.url]);
    let line_of = |version: &str| {
        run.stdout
            .lines()
            .find(|line| line.starts_with(version))
            .unwrap_or_else(|| panic!("{version} not listed:\n{}", run.stdout))
            .to_owned()
    };
    assert!(
        line_of(&candidate).contains(&format!("vs {weak_version}: average_precision +")),
        "{}",
        run.stdout
    );
    assert!(line_of(&candidate).contains(", better"), "{}", run.stdout);
    assert!(line_of(&weak_version).contains(", not better"), "{}", run.stdout);

    // a retrain whose candidate is worse (one stump, with production's window of labels) is not promoted
    let run = fraudlens(
        path,
        &[
            "retrain",
            "--params",
            "config",
            "--promote-if-better",
            "0",
            "--out",
            "stump",
            "--database",
            &db.url,
        ],
        &[
            &SETTINGS[..],
            &[
                ("FRAUDLENS_TRAIN__GBDT__N_TREES", "1"),
                ("FRAUDLENS_TRAIN__GBDT__NUM_LEAVES", "2"),
            ],
        ]
        .concat(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.trim().ends_with("not promoted"), "{}", run.stdout);
    assert!(
        run.stdout.starts_with("retrained "),
        "one line for cron: {}",
        run.stdout
    );
    assert!(
        run.stderr.contains(&format!("{candidate} stays in production")),
        "{}",
        run.stderr
    );
    let (_, info) = get(&client, &server.url("/model/info"), &service).await;
    assert_eq!(info["version"], candidate.as_str());

    // other features: the stored transactions replayed through the configuration's spec, and
    // each model compared on its own features of the same transactions
    let run = fraudlens(
        path,
        &[
            "retrain",
            "--features",
            "config",
            "--params",
            "config",
            "--out",
            "no-calendar",
            "--json",
            "--database",
            &db.url,
        ],
        &[&SETTINGS[..], &[("FRAUDLENS_FEATURES__CALENDAR", "false")]].concat(),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let replayed: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    // the same transactions, labelled alike, but replayed
    let without_source = |counts: &Value| {
        let mut counts = counts.clone();
        counts.as_object_mut().unwrap().remove("replayed");
        counts
    };
    assert_eq!(replayed["train_rows"]["replayed"], true);
    assert_eq!(output["train_rows"]["replayed"], false);
    assert_eq!(
        without_source(&replayed["train_rows"]),
        without_source(&output["train_rows"])
    );
    assert_eq!(
        without_source(&replayed["comparison"]["counts"]),
        without_source(&output["comparison"]["counts"])
    );
    assert!(
        run.stderr.contains("replaying the stored transactions"),
        "{}",
        run.stderr
    );
    assert_eq!(
        replayed["comparison"]["comparison"]["frauds"],
        output["comparison"]["comparison"]["frauds"]
    );
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(path.join("no-calendar/model.json")).unwrap()).unwrap();
    let names: Vec<&str> = manifest["feature_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        !names.contains(&"hour") && names.contains(&"customer_count_1d"),
        "{names:?}"
    );
    assert_eq!(server.terminate(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrain_on_sqlite() {
    retrain_promotes_a_better_model_and_refuses_a_worse_one(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrain_on_postgres() {
    retrain_promotes_a_better_model_and_refuses_a_worse_one(Backend::Postgres).await;
}

#[test]
fn drift_finds_the_inputs_that_moved() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let (model, data) = (trained().model(), trained().data());
    let drift = |data: &Path, window: &[&str], env: &[(&str, &str)]| {
        let mut args = vec![
            "drift",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--json",
        ];
        args.extend(window);
        fraudlens(path, &args, env)
    };

    // the rows the reference was taken from (the validation days), scored by the served model:
    // nothing moved, the score neither
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(model.join("model.json")).unwrap()).unwrap();
    let valid = &manifest["training"]["valid_period"];
    let (first, last) = (valid[0].as_str().unwrap(), valid[1].as_str().unwrap());
    let end = fraudlens_core::Timestamp::parse(last, fraudlens_core::TimestampFormat::Datetime).unwrap();
    let end = fraudlens_core::Timestamp::from_millis(end.as_millis() + 1).to_string();
    let validation_days = ["--from", first, "--to", &end];
    let run = drift(&data, &validation_days, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let features = report["report"]["features"].as_array().unwrap();
    assert!(features.len() > 50);
    for feature in features {
        assert!(feature["psi"].as_f64().unwrap() < 1e-9, "{feature}");
    }
    assert!(
        report["report"]["score"]["psi"].as_f64().unwrap() < 1e-9,
        "{}",
        report["report"]["score"]
    );
    // categorical inputs have no KS
    let channel = features.iter().find(|feature| feature["name"] == "channel").unwrap();
    assert!(channel["ks"].is_null(), "{channel}");

    // the same days with every amount five times larger
    let (header, rows) = read_csv(&data);
    let amount = header.iter().position(|name| name == "amount").unwrap();
    let mut shifted = header.join(",") + "\n";
    for mut row in rows {
        row[amount] = format!("{:.2}", row[amount].parse::<f64>().unwrap() * 5.0);
        shifted.push_str(&row.join(","));
        shifted.push('\n');
    }
    let shifted_path = path.join("shifted.csv");
    std::fs::write(&shifted_path, shifted).unwrap();
    let run = drift(&shifted_path, &validation_days, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let report: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let features = report["report"]["features"].as_array().unwrap();
    let psi = |feature: &Value| feature["psi"].as_f64().unwrap();
    assert!(
        features.windows(2).all(|pair| psi(&pair[0]) >= psi(&pair[1])),
        "the largest PSI first"
    );
    let of = |name: &str| features.iter().find(|feature| feature["name"] == name).unwrap();
    assert_eq!(of("amount")["status"], "act", "{}", of("amount"));
    assert!(psi(of("amount")) > 1.0);
    // counts do not depend on amounts
    assert_eq!(
        of("customer_count_1d")["status"],
        "stable",
        "{}",
        of("customer_count_1d")
    );
    assert!(report["report"]["score"]["psi"].is_number());

    // the text report
    let text_args = [
        &[
            "drift",
            "--model",
            model.to_str().unwrap(),
            "--data",
            shifted_path.to_str().unwrap(),
        ][..],
        &validation_days,
    ]
    .concat();
    let run = fraudlens(path, &text_args, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with("drift of gbdt-"), "{}", run.stdout);
    assert!(
        run.stdout.contains(" act\n") && run.stdout.contains("inputs to act on"),
        "{}",
        run.stdout
    );

    // thresholds that contradict each other, and a file without a model
    let run = drift(
        &data,
        &[],
        &[("FRAUDLENS_DRIFT__WATCH", "0.5"), ("FRAUDLENS_DRIFT__ACT", "0.2")],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    let run = fraudlens(path, &["drift", "--data", data.to_str().unwrap()], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--model"), "{}", run.stderr);
}

#[test]
fn a_store_that_is_down_fails_each_command_loudly_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let url = "postgres://fraud:s3cret-pw@127.0.0.1:1/fraud";
    for command in [
        &["retrain"][..],
        &["models", "compare", "gbdt-x"],
        &["models", "list"],
        &["drift"],
    ] {
        let run = fraudlens(dir.path(), &[command, &["--database", url]].concat(), &[]);
        assert_eq!(run.code, 1, "{command:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("opening the store postgres://fraud:***@"),
            "{command:?}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("s3cret-pw"), "{command:?}: {}", run.stderr);
    }
}

/// A model of the same inputs as [`weak_model`], with more trees.
fn stronger_model(dir: &Path) -> std::path::PathBuf {
    let run = train_shared(dir, "stronger", &["--trees", "30"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    dir.join("stronger")
}

/// The value of the metric line starting with `series` (0 when absent).
fn metric(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .map_or(0.0, |value| value.parse().unwrap())
}

/// `count` of the simulated data's last transactions under new ids (`{prefix}-{id}`).
fn renamed(prefix: &str, count: usize) -> Vec<Value> {
    crate::serve::transactions(count)
        .into_iter()
        .map(|mut tx| {
            let id = format!("{prefix}-{}", tx["transaction_id"].as_str().unwrap());
            tx["transaction_id"] = Value::String(id);
            tx
        })
        .collect()
}

/// Waits (at most 10 s) until the server scores beside `shadow`.
async fn shadowing(client: &reqwest::Client, server: &Server, key: &str, shadow: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, info) = get(client, &server.url("/model/info"), key).await;
        if info["shadow"] == shadow {
            return;
        }
        assert!(Instant::now() < deadline, "no shadow after 10 s: {info}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_model_scores_beside_production_and_a_failing_one_fails_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let db = TestDb::new(Backend::Sqlite).await;
    let weak = weak_model(path);
    let stronger = stronger_model(path);
    let (service, admin) = (key(path, &db.url, "service"), key(path, &db.url, "admin"));
    let server = Server::start(path, &db.url, Some(&weak));
    let client = reqwest::Client::new();
    let (_, info) = get(&client, &server.url("/model/info"), &service).await;
    let weak_version = info["version"].as_str().unwrap().to_owned();
    assert_eq!(info["shadow"], Value::Null);

    // the production model cannot shadow itself; nothing is set
    let run = fraudlens(path, &["models", "shadow", &weak_version, "--database", &db.url], &[]);
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(run.stderr.contains("production model"), "{}", run.stderr);
    let shadow = ok(
        path,
        &["models", "register", stronger.to_str().unwrap(), "--database", &db.url],
    )
    .stdout
    .trim()
    .to_owned();
    let run = ok(path, &["models", "shadow", &shadow, "--database", &db.url]);
    assert!(run.stderr.contains("is the shadow model"), "{}", run.stderr);
    let listed = ok(path, &["models", "list", "--database", &db.url]).stdout;
    assert!(
        listed
            .lines()
            .any(|line| line.starts_with(&shadow) && line.contains(" staging+shadow ")),
        "{listed}"
    );
    shadowing(&client, &server, &service, &shadow).await;

    // two weeks of traffic and their chargebacks
    let (csv, frauds) = served_rows();
    let served = upload(&client, &server, &service, csv).await;
    chargebacks(&client, &server, &admin, &frauds).await;
    // every decision is shadowed (the server scores them after answering)
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&server.metrics().await, "fraudlens_shadow_scored_total") < served as f64 {
        assert!(Instant::now() < deadline, "{}", server.metrics().await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = server.metrics().await;
    let agreement = metric(&metrics, "fraudlens_shadow_agreement");
    // the one-split model declines nearly everything; the stronger one a few
    assert!(agreement > 0.0 && agreement < 0.5, "{metrics}");
    // the decisions are production's
    let (_, stored) = get(
        &client,
        &server.url(&format!("/api/v1/transactions/{}", frauds[0])),
        &admin,
    )
    .await;
    assert_eq!(stored["model_version"], weak_version.as_str(), "{stored}");
    // SIGTERM writes what the shadow has scored
    assert_eq!(server.terminate(), 0);

    // the comparison reads the shadow's scores beside the served decisions
    let run = fraudlens(
        path,
        &["models", "compare", &shadow, "--json", "--database", &db.url],
        &SETTINGS,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let compared: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let traffic = &compared["comparison"]["shadow"];
    assert_eq!(
        traffic["scored"], compared["comparison"]["counts"]["in_window"],
        "every decision of the window was shadowed: {traffic}"
    );
    assert_eq!(traffic["counts"], compared["comparison"]["counts"]);
    let ap = |model: &str| traffic[model]["average_precision"].as_f64().unwrap();
    assert!(ap("shadow") > ap("served"), "{traffic}");
    // the served model's metrics on its own stored scores are the comparison's of that model
    let against_ap = compared["comparison"]["comparison"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|metric| metric["metric"] == "average_precision")
        .unwrap()["against"]
        .as_f64()
        .unwrap();
    assert!((against_ap - ap("served")).abs() < 1e-9, "{against_ap} vs {traffic}");
    let run = fraudlens(path, &["models", "compare", &shadow, "--database", &db.url], &SETTINGS);
    assert!(run.stdout.contains("as shadow: "), "{}", run.stdout);
    // shown with --nocapture: the comparison as an operator reads it
    println!("$ fraudlens models compare {shadow}\n{}", run.stdout);

    // a shadow that panics on every row: every request is answered, with production's decisions,
    // the failures are counted and the shadow switched off
    let server = Server::start_with(path, &db.url, None, &[("FRAUDLENS_TEST_SHADOW_FAULT", "panic")]);
    shadowing(&client, &server, &service, &shadow).await;
    let batch = renamed("panic", 300);
    let (status, body) = crate::serve::post(
        &client,
        &server.url("/api/v1/transactions/batch"),
        &service,
        &Value::Array(batch.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for tx in batch.iter().step_by(50) {
        let (status, stored) = crate::serve::post(&client, &server.url("/api/v1/transactions"), &service, tx).await;
        assert_eq!(status, StatusCode::OK, "{stored}");
        assert_eq!(stored["model_version"], weak_version.as_str());
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&server.metrics().await, "fraudlens_shadow_switched_off_total") < 1.0 {
        assert!(Instant::now() < deadline, "{}", server.metrics().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = server.metrics().await;
    assert_eq!(
        metric(&metrics, "fraudlens_shadow_errors_total{kind=\"panic\"}"),
        100.0,
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "fraudlens_shadow_scored_total"), 0.0, "{metrics}");
    assert!(server.log().contains("switched off"), "{}", server.log());
    // set again: the server tries it again (and switches it off again)
    ok(path, &["models", "shadow", &shadow, "--database", &db.url]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _) = crate::serve::post(
        &client,
        &server.url("/api/v1/transactions/batch"),
        &service,
        &Value::Array(renamed("again", 150)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&server.metrics().await, "fraudlens_shadow_switched_off_total") < 2.0 {
        assert!(Instant::now() < deadline, "{}", server.metrics().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        metric(&server.metrics().await, "fraudlens_shadow_errors_total{kind=\"panic\"}"),
        200.0
    );
    assert_eq!(server.terminate(), 0);

    // a slow shadow: requests are answered long before it has scored them
    let server = Server::start_with(path, &db.url, None, &[("FRAUDLENS_TEST_SHADOW_FAULT", "sleep:200")]);
    shadowing(&client, &server, &service, &shadow).await;
    for tx in renamed("slow", 50) {
        let (status, stored) = crate::serve::post(&client, &server.url("/api/v1/transactions"), &service, &tx).await;
        assert_eq!(status, StatusCode::OK, "{stored}");
        assert_eq!(stored["model_version"], weak_version.as_str());
    }
    // 50 rows take the shadow 10 s: the answers did not wait for it
    let scored = metric(&server.metrics().await, "fraudlens_shadow_scored_total");
    assert!(scored < 50.0, "the shadow scored {scored} rows before the last answer");
    // ended through the API: the registry and the server have no shadow
    let response = client
        .delete(server.url("/api/v1/models/shadow"))
        .header("x-api-key", &admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let ended: Value = response.json().await.unwrap();
    assert_eq!(
        (ended["version"].clone(), ended["before"].as_str()),
        (Value::Null, Some(shadow.as_str()))
    );
    let (_, info) = get(&client, &server.url("/model/info"), &service).await;
    assert_eq!(info["shadow"], Value::Null);
    assert_eq!(server.terminate(), 0);
}
