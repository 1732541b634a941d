//! `train`, `evaluate` and `score` on a small simulated dataset.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

use crate::{fraudlens, ok};

/// A simulated dataset and a model trained on its first 35 days, shared by the tests.
pub(crate) struct Trained {
    dir: tempfile::TempDir,
}

impl Trained {
    pub(crate) fn data(&self) -> PathBuf {
        self.dir.path().join("tx.csv")
    }

    pub(crate) fn model(&self) -> PathBuf {
        self.dir.path().join("model")
    }
}

pub(crate) fn trained() -> &'static Trained {
    static TRAINED: OnceLock<Trained> = OnceLock::new();
    TRAINED.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        ok(
            path,
            &[
                "simulate",
                "--customers",
                "800",
                "--terminals",
                "1600",
                "--days",
                "50",
                "--seed",
                "7",
                "--stolen-card-rate",
                "0.004",
                "--out",
                "tx.csv",
            ],
        );
        let run = ok(
            path,
            &[
                "train",
                "--data",
                "tx.csv",
                "--train-to",
                "2026-02-05",
                "--out",
                "model",
                "--anomaly",
            ],
        );
        assert!(run.stderr.contains("model written to model"), "{}", run.stderr);
        Trained { dir }
    })
}

/// Trains a model on the shared data's training window (before
/// 2026-02-05) into `dir/out`, with `extra` flags and `env`.
pub(crate) fn train_shared(dir: &Path, out: &str, extra: &[&str], env: &[(&str, &str)]) -> crate::Run {
    let data = trained().data();
    let args = [
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--train-to",
            "2026-02-05",
            "--out",
            out,
        ][..],
        extra,
    ]
    .concat();
    fraudlens(dir, &args, env)
}

/// The model id of the model directory `dir`.
pub(crate) fn version_of(dir: &Path) -> String {
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("model.json")).unwrap()).unwrap();
    manifest["model_id"].as_str().unwrap().to_owned()
}

/// Runs `fraudlens evaluate` on the shared model, or `score` with `--input`, plus `extra` flags.
fn with_model(dir: &Path, command: &str, data: &Path, extra: &[&str]) -> crate::Run {
    let model = trained().model();
    let data_flag = if command == "score" { "--input" } else { "--data" };
    let mut args = vec![
        command,
        "--model",
        model.to_str().unwrap(),
        data_flag,
        data.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ok(dir, &args)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn copy_model(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn the_artifact_holds_what_serving_needs() {
    let trained = trained();
    let model = trained.model();
    for file in [
        "model.json",
        "trees.json",
        "anomaly.json",
        "model.lgb.txt",
        "SHA256SUMS",
    ] {
        assert!(model.join(file).is_file(), "{file} missing");
    }
    let manifest = read_json(&model.join("model.json"));
    assert_eq!(manifest["format_version"], 1);
    assert_eq!(manifest["inputs"]["mode"], "events");
    let names = manifest["feature_names"].as_array().unwrap();
    assert_eq!(
        names.len(),
        61,
        "57 engine features, 3 attributes and the anomaly score"
    );
    assert_eq!(names[60], "ml_anomaly_score");
    assert_eq!(manifest["anomaly_input"], true);
    let training = &manifest["training"];
    assert_eq!(training["data_fingerprint"].as_str().unwrap().len(), 64);
    // validation rows come after every training row
    let (train_end, valid_start) = (
        training["train_period"][1].as_str().unwrap(),
        training["valid_period"][0].as_str().unwrap(),
    );
    assert!(train_end <= valid_start, "{train_end} > {valid_start}");
    assert!(training["valid_period"][1].as_str().unwrap() < "2026-02-05");
    let validation = &manifest["validation"];
    assert!(validation["roc_auc"].as_f64().unwrap() > 0.85, "{validation}");
    let thresholds = &manifest["thresholds"];
    assert!(thresholds["review"].as_f64().unwrap() > 0.0);
    assert!(manifest["calibration"]["method"].is_string());
}

#[test]
fn evaluate_a_later_window() {
    let trained = trained();
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("eval.json");
    let data = trained.data();
    let run = with_model(
        out.path(),
        "evaluate",
        &data,
        &[
            "--test-from",
            "2026-02-12",
            "--test-to",
            "2026-02-20",
            "--k",
            "20",
            "--json",
            json.to_str().unwrap(),
        ],
    );
    assert!(run.stdout.contains("ROC AUC"), "{}", run.stdout);
    assert!(run.stdout.contains("card precision@k"), "{}", run.stdout);
    let report = read_json(&json);
    let window = &report["windows"][0];
    assert!(window["test"][0].as_str().unwrap() >= "2026-02-12");
    assert!(window["test"][1].as_str().unwrap() < "2026-02-20");
    let metrics = &window["metrics"];
    assert!(metrics["roc_auc"].as_f64().unwrap() > 0.8, "{metrics}");
    assert_eq!(metrics["card_precision_at_k"]["per_day"].as_array().unwrap().len(), 8);
    assert!(metrics["brier"].as_f64().unwrap() < 0.05);
}

#[test]
fn prequential_evaluation_retrains_per_fold() {
    let trained = trained();
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("folds.json");
    let data = trained.data();
    let run = with_model(
        out.path(),
        "evaluate",
        &data,
        &[
            "--prequential",
            "2",
            "--fold-days",
            "5",
            "--train-days",
            "21",
            "--json",
            json.to_str().unwrap(),
            "--report",
            "folds.html",
        ],
    );
    assert!(run.stdout.contains("prequential, 2 folds"), "{}", run.stdout);
    // the HTML report: both folds with their own charts, and their curves together
    let html = std::fs::read_to_string(out.path().join("folds.html")).unwrap();
    for heading in ["<h2>Every window</h2>", "<h2>fold 1</h2>", "<h2>fold 2</h2>"] {
        assert!(html.contains(heading), "{heading} missing");
    }
    assert_eq!(html.matches("class=\"window\"").count(), 2);
    assert!(
        html.matches("<svg").count() >= 2 + 2 * 5,
        "two overview charts and five per fold"
    );
    let report = read_json(&json);
    let windows = report["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 2);
    // fold 1 is the latest; each trains on days before its test window minus the gap
    let (train_end, test_start) = (
        windows[0]["train"][1].as_str().unwrap(),
        windows[0]["test"][0].as_str().unwrap(),
    );
    assert!(train_end < test_start);
    assert!(windows[1]["test"][1].as_str().unwrap() < test_start);
    let auc = &report["summary"]["roc_auc"];
    assert_eq!(auc["n"], 2);
    assert!(auc["mean"].as_f64().unwrap() > 0.8, "{auc}");
    assert!(auc["std"].as_f64().unwrap() >= 0.0);
}

#[test]
fn score_writes_predictions_with_reasons_and_stats() {
    let trained = trained();
    let out = tempfile::tempdir().unwrap();
    let data = trained.data();
    with_model(
        out.path(),
        "score",
        &data,
        &["--from", "2026-02-10", "--output", "pred.csv", "--stats", "stats.json"],
    );
    let mut reader = csv::Reader::from_path(out.path().join("pred.csv")).unwrap();
    let header: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (probability, decision, reason, timestamp) = (
        column("fraud_probability"),
        column("decision"),
        column("reason_1"),
        column("timestamp"),
    );
    let anomaly = column("anomaly_score");
    let mut rows = 0u64;
    let mut flagged = 0u64;
    for record in reader.records() {
        let record = record.unwrap();
        rows += 1;
        assert!(&record[timestamp] >= "2026-02-10");
        let p: f64 = record[probability].parse().unwrap();
        assert!((0.0..=1.0).contains(&p));
        let a: f64 = record[anomaly].parse().unwrap();
        assert!(a > 0.0 && a <= 1.0);
        if &record[decision] != "approve" {
            flagged += 1;
            assert!(!record[reason].is_empty(), "a flagged row without reasons: {record:?}");
        }
    }
    assert!(flagged > 0);
    let stats = read_json(&out.path().join("stats.json"));
    assert_eq!(stats["rows_scored"].as_u64().unwrap(), rows);
    let decisions = &stats["decisions"];
    let total: u64 = ["approve", "review", "decline"]
        .iter()
        .map(|d| decisions[d].as_u64().unwrap())
        .sum();
    assert_eq!(total, rows);
    assert_eq!(
        decisions["review"].as_u64().unwrap() + decisions["decline"].as_u64().unwrap(),
        flagged
    );
    let histogram: u64 = stats["score_histogram"]
        .as_array()
        .unwrap()
        .iter()
        .map(|bin| bin["count"].as_u64().unwrap())
        .sum();
    assert_eq!(histogram, rows);
    assert!(stats["roc_auc"].as_f64().unwrap() > 0.8);
    assert!(stats["rows_per_second"].as_f64().unwrap() > 0.0);
}

#[test]
fn training_is_deterministic_across_thread_counts() {
    let trained = trained();
    let out = tempfile::tempdir().unwrap();
    let data = trained.data();
    for threads in ["1", "2"] {
        ok(
            out.path(),
            &[
                "train",
                "--data",
                data.to_str().unwrap(),
                "--train-to",
                "2026-02-05",
                "--trees",
                "40",
                "--threads",
                threads,
                "--out",
                threads,
            ],
        );
    }
    let one = std::fs::read(out.path().join("1/trees.json")).unwrap();
    let two = std::fs::read(out.path().join("2/trees.json")).unwrap();
    assert!(one == two, "trees differ between 1 and 2 threads");
}

/// A damaged or inconsistent model directory is refused with a clear error (exit 65).
#[test]
fn corrupt_artifacts_are_refused() {
    let trained = trained();
    let data = trained.data();
    let out = tempfile::tempdir().unwrap();
    let check = |name: &str, damage: &dyn Fn(&Path), expected: &str| {
        let model = out.path().join(name);
        copy_model(&trained.model(), &model);
        damage(&model);
        let run = fraudlens(
            out.path(),
            &[
                "score",
                "--model",
                model.to_str().unwrap(),
                "--input",
                data.to_str().unwrap(),
                "--output",
                "p.csv",
            ],
            &[],
        );
        assert_eq!(run.code, 65, "{name}: {}", run.stderr);
        assert!(
            run.stderr.contains(expected),
            "{name}: expected {expected:?} in {}",
            run.stderr
        );
        assert!(
            !out.path().join("p.csv").exists(),
            "{name}: no output for a refused model"
        );
    };
    let rewrite = |model: &Path, file: &str, edit: &dyn Fn(String) -> String| {
        let path = model.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, edit(text)).unwrap();
    };
    // re-sign a changed file, as a careless edit with a fixed checksum would
    let resign = |model: &Path| {
        let sums: String = std::fs::read_to_string(model.join("SHA256SUMS"))
            .unwrap()
            .lines()
            .map(|line| {
                let file = line.split_once("  ").unwrap().1;
                let bytes = std::fs::read(model.join(file)).unwrap();
                format!("{}  {file}\n", sha256_hex(&bytes))
            })
            .collect();
        std::fs::write(model.join("SHA256SUMS"), sums).unwrap();
    };
    check(
        "flipped",
        &|m| rewrite(m, "trees.json", &|t| t.replacen("\"value\": ", "\"value\": 1", 1)),
        "checksum mismatch",
    );
    check(
        "truncated",
        &|m| {
            let path = m.join("model.json");
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        },
        "checksum mismatch",
    );
    check(
        "no checksums",
        &|m| std::fs::remove_file(m.join("SHA256SUMS")).unwrap(),
        "missing SHA256SUMS",
    );
    check(
        "no trees",
        &|m| std::fs::remove_file(m.join("trees.json")).unwrap(),
        "missing trees.json",
    );
    check(
        "future version",
        &|m| {
            rewrite(m, "model.json", &|t| {
                t.replacen("\"format_version\": 1", "\"format_version\": 99", 1)
            });
            resign(m);
        },
        "format version 99 is not supported",
    );
    check(
        "other feature spec",
        &|m| {
            rewrite(m, "model.json", &|t| t.replacen("\"1d\"", "\"2d\"", 1));
            resign(m);
        },
        "inconsistent model",
    );
    check(
        "truncated json, re-signed",
        &|m| {
            rewrite(m, "trees.json", &|t| t[..t.len() / 3].to_owned());
            resign(m);
        },
        "trees.json",
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A file whose columns already are features trains and scores in tabular mode.
#[test]
fn tabular_training_and_scoring() {
    let trained = trained();
    let out = tempfile::tempdir().unwrap();
    let data = trained.data();
    ok(
        out.path(),
        &["features", "--data", data.to_str().unwrap(), "--out", "features.csv"],
    );
    let run = ok(
        out.path(),
        &[
            "train",
            "--mode",
            "tabular",
            "--data",
            "features.csv",
            "--label",
            "is_fraud",
            "--exclude",
            "timestamp",
            "--exclude",
            "fraud_scenario",
            "--trees",
            "60",
            "--out",
            "tabular",
        ],
    );
    assert!(run.stderr.contains("ROC AUC"), "{}", run.stderr);
    let manifest = read_json(&out.path().join("tabular/model.json"));
    assert_eq!(manifest["inputs"]["mode"], "tabular");
    let names: Vec<&str> = manifest["feature_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(!names.contains(&"transaction_id") && !names.contains(&"timestamp") && !names.contains(&"is_fraud"));
    assert!(
        names.contains(&"channel"),
        "categorical attributes are model inputs: {names:?}"
    );
    ok(
        out.path(),
        &[
            "score",
            "--model",
            "tabular",
            "--input",
            "features.csv",
            "--output",
            "p.csv",
            "--stats",
            "s.json",
        ],
    );
    let stats = read_json(&out.path().join("s.json"));
    assert!(stats["roc_auc"].as_f64().unwrap() > 0.85, "{stats}");
    // a time window needs transactions
    let run = fraudlens(
        out.path(),
        &[
            "score",
            "--model",
            "tabular",
            "--input",
            "features.csv",
            "--output",
            "q.csv",
            "--from",
            "2026-02-01",
        ],
        &[],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
}

/// Models trained in Python serve through fraudlens: imported, then scored on
/// the same rows, they give the libraries' own probabilities (fixtures made by
/// the pinned LightGBM and XGBoost, see scripts/parity).
#[test]
fn imported_python_models_score_like_the_library() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fraudlens-model/tests/fixtures/interop");
    let out = tempfile::tempdir().unwrap();
    for (name, flag) in [
        ("lightgbm", "--lightgbm"),
        ("xgboost", "--xgboost"),
        ("lightgbm_zero", "--lightgbm"),
    ] {
        let model_file = fixtures.join(if flag == "--lightgbm" {
            format!("{name}.txt")
        } else {
            format!("{name}.json")
        });
        ok(
            out.path(),
            &["import", flag, model_file.to_str().unwrap(), "--out", name],
        );
        let rows = fixtures.join(format!("{name}_rows.csv"));
        let predictions = format!("{name}.csv");
        ok(
            out.path(),
            &[
                "score",
                "--model",
                name,
                "--input",
                rows.to_str().unwrap(),
                "--output",
                &predictions,
            ],
        );
        let ours: Vec<f64> = csv::Reader::from_path(out.path().join(&predictions))
            .unwrap()
            .deserialize::<std::collections::HashMap<String, String>>()
            .map(|row| row.unwrap()["fraud_probability"].parse().unwrap())
            .collect();
        let theirs: Vec<f64> = csv::Reader::from_path(fixtures.join(format!("{name}_expected.csv")))
            .unwrap()
            .deserialize::<std::collections::HashMap<String, String>>()
            .map(|row| row.unwrap()["proba"].parse().unwrap())
            .collect();
        assert_eq!(ours.len(), theirs.len(), "{name}");
        for (idx, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert!((a - b).abs() < 1e-6, "{name} row {idx}: {a} vs {b}");
        }
    }
    let run = fraudlens(out.path(), &["import", "--xgboost", "/dev/null", "--out", "bad"], &[]);
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(!out.path().join("bad").exists());
}

/// Without labels, an isolation forest alone ranks transactions by anomaly.
#[test]
fn unsupervised_models_need_no_labels() {
    let trained = trained();
    let out = tempfile::tempdir().unwrap();
    let data = trained.data();
    // drop the label column: nothing to learn from but the transactions themselves
    let text = std::fs::read_to_string(&data).unwrap();
    let mut unlabeled = String::new();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let label = header.iter().position(|h| *h == "is_fraud").unwrap();
    for line in text.lines() {
        let cells: Vec<&str> = line.split(',').collect();
        let kept: Vec<&str> = cells
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != label)
            .map(|(_, c)| *c)
            .collect();
        unlabeled.push_str(&kept.join(","));
        unlabeled.push('\n');
    }
    std::fs::write(out.path().join("unlabeled.csv"), unlabeled).unwrap();
    let run = fraudlens(
        out.path(),
        &["train", "--data", "unlabeled.csv", "--out", "supervised"],
        &[],
    );
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(run.stderr.contains("--unsupervised"), "{}", run.stderr);
    ok(
        out.path(),
        &["train", "--unsupervised", "--data", "unlabeled.csv", "--out", "iforest"],
    );
    let manifest = read_json(&out.path().join("iforest/model.json"));
    assert_eq!(manifest["kind"], "isolation_forest");
    assert!(!out.path().join("iforest/trees.json").exists());
    ok(
        out.path(),
        &[
            "score",
            "--model",
            "iforest",
            "--input",
            "unlabeled.csv",
            "--output",
            "p.csv",
            "--stats",
            "s.json",
        ],
    );
    let stats = read_json(&out.path().join("s.json"));
    let rows = stats["rows_scored"].as_u64().unwrap() as f64;
    let flagged = stats["decisions"]["review"].as_u64().unwrap() + stats["decisions"]["decline"].as_u64().unwrap();
    // the thresholds flag the most anomalous 1 % of the training rows
    assert!((flagged as f64 / rows - 0.01).abs() < 0.003, "{flagged} of {rows}");
    let mut reader = csv::Reader::from_path(out.path().join("p.csv")).unwrap();
    let record = reader.records().next().unwrap().unwrap();
    assert_eq!(&record[2], "", "no fraud probability without labels");
    // on labelled data the anomaly ranking is still evaluated the usual way
    let run = ok(
        out.path(),
        &[
            "evaluate",
            "--model",
            "iforest",
            "--data",
            data.to_str().unwrap(),
            "--test-from",
            "2026-02-10",
        ],
    );
    assert!(run.stdout.contains("ROC AUC"), "{}", run.stdout);
}

/// A file that is not in time order evaluates like the sorted file: windows
/// are cut on time, not on file position.
#[test]
fn late_rows_do_not_move_rows_between_windows() {
    let trained = trained();
    let out = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(trained.data()).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    // move a block of rows from inside the test window to the end of the file
    let start = lines.iter().position(|line| line.contains(",2026-02-10")).unwrap();
    let block: Vec<&str> = lines.drain(start..start + 500).collect();
    lines.extend(block);
    std::fs::write(out.path().join("late.csv"), lines.join("\n") + "\n").unwrap();
    let model = trained.model();
    let mut counts = Vec::new();
    let mut reports = Vec::new();
    // with the lateness bound off, and then with the default bound (7 days)
    let unbounded = [("FRAUDLENS_EVENT_TIME__MAX_LATENESS", "off")];
    for (data, json, env) in [
        (trained.data(), "sorted.json", &unbounded[..]),
        (out.path().join("late.csv"), "late.json", &unbounded[..]),
        (out.path().join("late.csv"), "refused.json", &[][..]),
    ] {
        let args = [
            "evaluate",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--test-from",
            "2026-02-08",
            "--test-to",
            "2026-02-15",
            "--json",
            json,
        ];
        let run = fraudlens(out.path(), &args, env);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let report = read_json(&out.path().join(json));
        counts.push(report["windows"][0]["metrics"]["n"].as_u64().unwrap());
        reports.push(run.stderr);
    }
    assert_eq!(counts[0], counts[1], "the same transactions fall in the window");
    // rows seven weeks late are beyond event_time.max_lateness: reported by line, not scored
    assert_eq!(counts[2], counts[0] - 500, "{}", reports[2]);
    assert!(
        reports[2].contains("event time out of range: 500 bad rows skipped"),
        "{}",
        reports[2]
    );
}

/// The `[train]` fractions and the calibration method are checked when the
/// configuration is read: a usage error (exit 2) naming the key, before any
/// data is read (the data file here does not exist).
#[test]
fn training_parameters_are_checked_before_any_data_is_read() {
    let out = tempfile::tempdir().unwrap();
    for (key, value, expected) in [
        ("FRAUDLENS_TRAIN__VALID_FRACTION", "1.5", "valid_fraction"),
        ("FRAUDLENS_TRAIN__DECLINE_PRECISION", "0", "decline_precision"),
        (
            "FRAUDLENS_TRAIN__UNSUPERVISED_DECLINE_SHARE",
            "0.5",
            "unsupervised_decline_share",
        ),
        ("FRAUDLENS_TRAIN__CALIBRATION", "sigmoid", "sigmoid"),
    ] {
        let run = fraudlens(
            out.path(),
            &["train", "--data", "missing.csv", "--out", "model"],
            &[(key, value)],
        );
        assert_eq!(run.code, 2, "{key}={value}: {}", run.stderr);
        assert!(run.stderr.contains(expected), "{key}={value}: {}", run.stderr);
    }
}

/// Where precision is already at the decline target at the review threshold,
/// every flagged transaction is declined and the analysts get nothing: `train`
/// warns. With an analyst capacity the very precise top is still declined and
/// the band below it goes to review, at most the capacity per day of the
/// validation rows.
#[test]
fn thresholds_by_analyst_capacity_fill_the_review_band() {
    let trained = trained();
    let out = tempfile::tempdir().unwrap();
    let data = trained.data();
    let train = |name: &str, extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec![
            "train",
            "--data",
            data.to_str().unwrap(),
            "--train-to",
            "2026-02-05",
            "--trees",
            "80",
            "--out",
            name,
        ];
        args.extend_from_slice(extra);
        let run = fraudlens(out.path(), &args, env);
        assert_eq!(run.code, 0, "{}", run.stderr);
        (run.stderr, read_json(&out.path().join(name).join("model.json")))
    };
    // review where precision reaches 0.95 = decline where it does: an empty band, by construction
    let (report, manifest) = train(
        "precise",
        &[],
        &[
            ("FRAUDLENS_TRAIN__THRESHOLD_OBJECTIVE__KIND", "target_precision"),
            ("FRAUDLENS_TRAIN__THRESHOLD_OBJECTIVE__PRECISION", "0.95"),
        ],
    );
    assert_eq!(manifest["thresholds"]["review"], manifest["thresholds"]["decline"]);
    assert!(
        report.contains("review band (reviewed, not declined): 0 transactions"),
        "{report}"
    );
    assert!(report.contains("warning: the review band is empty"), "{report}");

    let (report, manifest) = train("capacity", &["--review-capacity", "12"], &[]);
    assert!(!report.contains("warning"), "{report}");
    let choice = &manifest["threshold_choice"];
    assert_eq!(
        choice["objective"],
        serde_json::json!({"kind": "review_capacity", "per_day": 12.0})
    );
    let days = choice["valid_days"].as_f64().unwrap();
    assert!(days > 6.0 && days <= 7.0, "the last 20 % of 35 days: {days}");
    let flagged = |point: &str| choice[point]["flagged"].as_u64().unwrap();
    let band = flagged("at_review") - flagged("at_decline");
    // the band is as full as the capacity allows: at most 12 a day, and not far below it
    assert!(band as f64 <= (12.0 * days).floor(), "{band} reviews over {days} days");
    assert!(band as f64 >= 10.0 * days, "{band} reviews over {days} days");
    assert!(choice["at_decline"]["precision"].as_f64().unwrap() >= 0.95, "{choice}");
    let (review, decline) = (
        manifest["thresholds"]["review"].as_f64().unwrap(),
        manifest["thresholds"]["decline"].as_f64().unwrap(),
    );
    assert!(review < decline, "{review} {decline}");
    assert!(
        report.contains(&format!(
            "review band (reviewed, not declined): {band} transactions, {:.1} a day over {days:.1} days (capacity 12 a day)",
            band as f64 / days
        )),
        "{report}"
    );

    // refused before any data is read: not a positive number, or beside another objective
    for (env, expected) in [
        (
            vec![("FRAUDLENS_TRAIN__REVIEW_CAPACITY_PER_DAY", "0")],
            "review_capacity_per_day must be a positive number",
        ),
        (
            vec![
                ("FRAUDLENS_TRAIN__REVIEW_CAPACITY_PER_DAY", "20"),
                ("FRAUDLENS_TRAIN__THRESHOLD_OBJECTIVE__KIND", "target_recall"),
                ("FRAUDLENS_TRAIN__THRESHOLD_OBJECTIVE__RECALL", "0.8"),
            ],
            "set one",
        ),
    ] {
        let run = fraudlens(out.path(), &["train", "--data", "missing.csv", "--out", "m"], &env);
        assert_eq!(run.code, 2, "{env:?}: {}", run.stderr);
        assert!(run.stderr.contains(expected), "{env:?}: {}", run.stderr);
    }
    // tabular rows have no times to count reviews per day by
    std::fs::write(out.path().join("rows.csv"), "a,b,is_fraud\n1,2,0\n3,4,1\n").unwrap();
    let run = fraudlens(
        out.path(),
        &[
            "train",
            "--mode",
            "tabular",
            "--data",
            "rows.csv",
            "--label",
            "is_fraud",
            "--review-capacity",
            "5",
            "--out",
            "m",
        ],
        &[],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("needs transactions with timestamps"),
        "{}",
        run.stderr
    );
}

/// `train --tune`: the trial table while it runs, every trial and the chosen
/// parameters in the model, which is then trained with them; `--trials`
/// caps the draws; `--budget` alone is a usage error.
#[test]
fn tuning_searches_by_time_and_trains_with_the_chosen_parameters() {
    let trained = trained();
    let out = tempfile::tempdir().unwrap();
    let data = trained.data();
    let run = ok(
        out.path(),
        &[
            "train",
            "--data",
            data.to_str().unwrap(),
            "--train-to",
            "2026-02-05",
            "--trees",
            "60",
            "--tune",
            "--budget",
            "10m",
            "--trials",
            "3",
            "--out",
            "tuned",
            "--report",
            "tuned.html",
        ],
    );
    assert!(
        run.stderr.contains("on 3 prequential folds of the window"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("trial folds  mean AP"), "{}", run.stderr);
    assert!(run.stderr.contains("← chosen"), "{}", run.stderr);
    let manifest = read_json(&out.path().join("tuned/model.json"));
    let tuning = &manifest["tuning"];
    let trials = tuning["trials"].as_array().unwrap();
    // --trials caps the draws: with an ample budget, exactly that many
    assert_eq!(trials.len(), 3, "{}", run.stderr);
    assert!(run.stderr.contains("(3 parameter sets at most)"), "{}", run.stderr);
    // each fold trains before a gap as long as its validation rows
    assert_eq!(tuning["gap_share"], tuning["fold_share"]);
    assert_eq!(trials[0]["id"], 0, "trial 0 is the configured parameters");
    assert_eq!(trials[0]["params"]["learning_rate"], 0.1);
    let chosen = trials
        .iter()
        .find(|trial| trial["id"] == tuning["trials"][tuning["chosen"].as_u64().unwrap() as usize]["id"])
        .unwrap();
    // the model is trained with the chosen trial's values, the rest as configured
    for key in [
        "learning_rate",
        "num_leaves",
        "min_data_in_leaf",
        "lambda_l2",
        "subsample",
        "scale_pos_weight",
    ] {
        assert_eq!(manifest["params"][key], chosen["params"][key], "{key}");
    }
    assert_eq!(manifest["params"]["n_trees"], 60);
    // the chosen trial is the best mean over the most folds, or trial 0 when the best beat it by
    // no more than one standard error
    let folds = |trial: &Value| trial["fold_ap"].as_array().unwrap().len();
    let most = trials.iter().map(folds).max().unwrap();
    assert_eq!(folds(&trials[0]), most, "trial 0 goes through every rung");
    let mean = |trial: &Value| trial["mean_ap"].as_f64().unwrap();
    let best = trials
        .iter()
        .filter(|trial| folds(trial) == most)
        .max_by(|a, b| mean(a).total_cmp(&mean(b)))
        .unwrap();
    if chosen["id"] != best["id"] {
        assert_eq!(chosen["id"], 0);
        let other = &tuning["best_other"];
        assert_eq!(other["id"], best["id"]);
        assert!(other["standard_error"].is_null() || other["gain"].as_f64() <= other["standard_error"].as_f64());
        assert!(
            run.stderr.contains("within noise, the configuration is kept"),
            "{}",
            run.stderr
        );
    }
    let html = std::fs::read_to_string(out.path().join("tuned.html")).unwrap();
    assert!(html.contains("<h3 id=\"tuning\">Tuning</h3>") && html.contains("class=\"chosen\""));

    let run = fraudlens(
        out.path(),
        &["train", "--data", "x.csv", "--out", "m", "--budget", "1m"],
        &[],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--tune"), "{}", run.stderr);
    // no parameter set at all (or more than a u16) is a usage error, before any data is read
    for trials in ["0", "70000"] {
        let run = fraudlens(
            out.path(),
            &["train", "--data", "x.csv", "--out", "m", "--tune", "--trials", trials],
            &[],
        );
        assert_eq!(run.code, 2, "--trials {trials}: {}", run.stderr);
        assert!(run.stderr.contains("--trials"), "{}", run.stderr);
    }
}

/// A report or stats path that names the input is refused (exit 2) and the
/// input is untouched; a training report among the model's files is refused
/// before any training.
#[test]
fn reports_never_replace_the_data_or_the_model() {
    let trained = trained();
    let out = tempfile::tempdir().unwrap();
    let data = out.path().join("tx.csv");
    std::fs::copy(trained.data(), &data).unwrap();
    let before = std::fs::read(&data).unwrap();
    let model = trained.model();
    let model = model.to_str().unwrap();
    for args in [
        vec!["train", "--data", "tx.csv", "--out", "m", "--report", "tx.csv"],
        vec!["train", "--data", "tx.csv", "--out", "m", "--report", "m/model.json"],
        vec!["train", "--data", "tx.csv", "--out", "m", "--report", "./m/report.html"],
        vec!["evaluate", "--model", model, "--data", "tx.csv", "--report", "tx.csv"],
        vec!["evaluate", "--model", model, "--data", "tx.csv", "--json", "./tx.csv"],
        vec![
            "score", "--model", model, "--input", "tx.csv", "--output", "p.csv", "--stats", "tx.csv",
        ],
    ] {
        let run = fraudlens(out.path(), &args, &[]);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(std::fs::read(&data).unwrap() == before, "{args:?} changed the data");
    }
    assert!(!out.path().join("m").exists(), "refused before training");
}
