//! `fraudlens simulate`.

use crate::{fraudlens, ok, read_csv};

#[test]
fn deterministic_for_a_seed_and_readable_back() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["simulate", "--customers", "100", "--terminals", "200", "--days", "10"];
    ok(dir.path(), &[&args[..], &["--out", "a.csv"]].concat());
    ok(dir.path(), &[&args[..], &["--out", "b.csv"]].concat());
    ok(dir.path(), &[&args[..], &["--out", "c.csv", "--seed", "7"]].concat());
    let a = std::fs::read(dir.path().join("a.csv")).unwrap();
    assert_eq!(a, std::fs::read(dir.path().join("b.csv")).unwrap());
    assert_ne!(a, std::fs::read(dir.path().join("c.csv")).unwrap());
    let (header, rows) = read_csv(&dir.path().join("a.csv"));
    assert_eq!(
        header,
        [
            "transaction_id",
            "timestamp",
            "customer_id",
            "terminal_id",
            "amount",
            "currency",
            "mcc",
            "channel",
            "country",
            "is_fraud",
            "fraud_scenario"
        ]
    );
    assert!(rows.len() > 500);
    let inspect = ok(dir.path(), &["inspect", "--data", "a.csv"]).stdout;
    assert!(
        inspect.contains(&format!("{} valid rows from 2026-01-01", rows.len())),
        "{inspect}"
    );
    assert!(inspect.contains("0 bad rows skipped"), "{inspect}");
}

#[test]
fn json_lines_to_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let run = ok(
        dir.path(),
        &[
            "simulate",
            "--customers",
            "20",
            "--terminals",
            "50",
            "--days",
            "2",
            "--format",
            "jsonl",
        ],
    );
    let first: serde_json::Value = serde_json::from_str(run.stdout.lines().next().unwrap()).unwrap();
    assert!(first["transaction_id"].as_str().unwrap().starts_with("tx_"));
    assert!(first["amount"].is_number());
    assert!(
        run.stderr.contains("simulated"),
        "the report goes to stderr, not into the data"
    );
    std::fs::write(dir.path().join("t.jsonl"), &run.stdout).unwrap();
    let features = ok(dir.path(), &["features", "--data", "t.jsonl", "--out", "f.csv"]);
    let n_lines = run.stdout.lines().count();
    assert!(
        features.stderr.contains(&format!("wrote {n_lines} rows")),
        "{}",
        features.stderr
    );
}

#[test]
fn bad_rates_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let run = fraudlens(dir.path(), &["simulate", "--stolen-card-rate", "2"], &[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("stolen_card_rate must be a probability"),
        "{}",
        run.stderr
    );
}
