//! Snapshots of user-visible text: the `--help` of the binary and of every
//! subcommand, the reports of `simulate`, `inspect`, `features` and `score`
//! on a small fixed dataset, and the OpenAPI document the server serves. A
//! change of any of them fails here and shows up in review as a diff of a
//! `.snap` file under `tests/it/snapshots/`.
//!
//! `.config/insta.yaml` sets `update: no`: a mismatch fails and writes
//! nothing (as under `CI=true`). To accept a deliberate change, run the test
//! with `INSTA_UPDATE=always` and commit the rewritten `.snap` files.
//! Durations and rates are redacted; every path is relative to the run's
//! directory.

use std::path::Path;

use crate::{ingest_fixture, ok};

/// Redacts what changes from run to run: wall times and throughputs.
fn redacted() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"\d+\.\d+s \(\d+ rows/s\)", "[seconds] ([rate] rows/s)");
    settings.add_filter(r"\d+\.\d+s \(\d+/s", "[seconds] ([rate]/s");
    settings.add_filter(r"in \d+\.\d+s", "in [seconds]");
    settings
}

/// `fraudlens ARGS --help` with a fixed width (clap wraps at `COLUMNS` when
/// stdout is not a terminal).
fn help(args: &[&str]) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_fraudlens"))
        .args(args)
        .arg("--help")
        .env("COLUMNS", "100")
        .output()
        .expect("running fraudlens");
    assert!(output.status.success(), "fraudlens {args:?} --help failed");
    String::from_utf8(output.stdout).expect("help is UTF-8")
}

/// The subcommands listed under `Commands:` in a help text (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| *line != "Commands:")
        .skip(1)
        .take_while(|line| !line.is_empty())
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn help_of_the_binary_and_every_subcommand() {
    let top = help(&[]);
    insta::assert_snapshot!("help", top);
    let commands = subcommands(&top);
    assert!(commands.len() >= 10, "commands not found in\n{top}");
    for command in &commands {
        let text = help(&[command]);
        insta::assert_snapshot!(format!("help_{command}"), text);
        for nested in subcommands(&text) {
            let text = help(&[command, &nested]);
            insta::assert_snapshot!(format!("help_{command}_{nested}"), text);
        }
    }
}

#[test]
fn openapi_document() {
    use utoipa::OpenApi as _;
    let document = fraudlens_server::ApiDoc::openapi()
        .to_pretty_json()
        .expect("the document serialises");
    insta::assert_snapshot!("openapi", document);
}

/// A small simulated dataset in `dir` (`tx.csv`), with the simulate report.
fn simulate_small(dir: &Path) -> String {
    let args = [
        "simulate",
        "--customers",
        "60",
        "--terminals",
        "120",
        "--days",
        "12",
        "--seed",
        "11",
        "--stolen-card-rate",
        "0.01",
        "--card-testing-rate",
        "0.005",
        "--out",
        "tx.csv",
    ];
    ok(dir, &args).stderr
}

#[test]
fn reports_of_simulate_inspect_and_features() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let settings = redacted();
    let _bound = settings.bind_to_scope();
    insta::assert_snapshot!("simulate_report", simulate_small(path));

    let inspect = ok(path, &["inspect", "--data", "tx.csv"]);
    insta::assert_snapshot!("inspect_events", inspect.stdout);

    let features = ok(
        path,
        &[
            "features",
            "--data",
            "tx.csv",
            "--out",
            "features.csv",
            "--summary-by",
            "fraud_scenario",
            "--summary-features",
            "amount,customer_count_1d,customer_amount_ratio_7d,terminal_risk_7d",
        ],
    );
    insta::assert_snapshot!("features_report", features.stderr);
    insta::assert_snapshot!("features_summary", features.stdout);

    // bad rows, reported by line
    std::fs::copy(ingest_fixture("broken.csv"), path.join("broken.csv")).unwrap();
    let broken = ok(
        path,
        &["features", "--data", "broken.csv", "--out", "broken-features.csv"],
    );
    insta::assert_snapshot!("features_bad_rows", broken.stderr);

    // tabular mode: the inferred column types
    std::fs::copy(ingest_fixture("messy_tabular.csv"), path.join("messy.csv")).unwrap();
    let tabular = ok(path, &["inspect", "--data", "messy.csv"]);
    insta::assert_snapshot!("inspect_tabular", tabular.stdout);
}

#[test]
fn report_of_score() {
    let trained = crate::model::trained();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    std::fs::copy(trained.data(), path.join("tx.csv")).unwrap();
    let model = trained.model();
    let run = ok(
        path,
        &[
            "score",
            "--model",
            model.to_str().unwrap(),
            "--input",
            "tx.csv",
            "--from",
            "2026-02-10",
            "--output",
            "predictions.csv",
            "--stats",
            "stats.json",
        ],
    );
    let mut settings = redacted();
    settings.add_filter(r#""(seconds|rows_per_second)": [0-9.e+-]+"#, r#""$1": "[redacted]""#);
    let _bound = settings.bind_to_scope();
    insta::assert_snapshot!("score_report", run.stderr);
    insta::assert_snapshot!("score_stats", std::fs::read_to_string(path.join("stats.json")).unwrap());
}
