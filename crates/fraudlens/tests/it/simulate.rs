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

#[test]
fn stripe_shaped_events_give_the_same_features_through_the_bundled_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let sim = ["--customers", "150", "--terminals", "300", "--days", "8", "--seed", "5"];
    ok(path, &[&["simulate"][..], &sim, &["--out", "native.csv"]].concat());
    ok(
        path,
        &[
            &["simulate"][..],
            &sim,
            &["--format", "stripe", "--out", "stripe.jsonl"],
        ]
        .concat(),
    );
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(path.join("stripe.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    for field in ["id", "amount", "currency", "created", "customer", "metadata"] {
        assert!(!first[field].is_null(), "{field} in {first}");
    }
    assert!(first["payment_method_details"]["card"]["fingerprint"].is_string());
    assert!(first["billing_details"]["address"]["country"].is_string());
    assert!(first["amount"].is_i64(), "minor units");

    ok(
        path,
        &["features", "--data", "native.csv", "--out", "native-features.csv"],
    );
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/stripe-charge.toml");
    let run = ok(
        path,
        &[
            "features",
            "--schema",
            schema,
            "--data",
            "stripe.jsonl",
            "--out",
            "stripe-features.csv",
        ],
    );
    assert!(!run.stderr.contains("bad row"), "{}", run.stderr);
    let (native_header, native) = read_csv(&path.join("native-features.csv"));
    let (stripe_header, stripe) = read_csv(&path.join("stripe-features.csv"));
    assert_eq!(native.len(), stripe.len());
    assert!(
        stripe_header.iter().any(|h| h.starts_with("card_")),
        "the card fingerprint is an entity"
    );
    let mut compared = 0;
    for (idx, name) in native_header.iter().enumerate() {
        let Some(other) = stripe_header.iter().position(|h| h == name) else {
            continue;
        };
        if name == "transaction_id" {
            continue;
        }
        for (a, b) in native.iter().zip(&stripe) {
            assert_eq!(a[idx], b[other], "{name}");
        }
        compared += 1;
    }
    assert!(compared > 50, "{compared} columns compared");
}
