//! Configuration layers and exit codes.

use crate::{fraudlens, ok};

#[test]
fn layers_defaults_file_env_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fraudlens.toml");
    std::fs::write(&file, "[log]\nlevel = \"debug\"\n[ingest]\nmax_error_examples = 3\n").unwrap();
    let file = file.to_str().unwrap();

    let defaults = ok(dir.path(), &["config"]).stdout;
    assert!(defaults.contains("level = \"info\"") && defaults.contains("max_error_examples = 10"));

    let from_file = ok(dir.path(), &["--config", file, "config"]).stdout;
    assert!(from_file.contains("level = \"debug\"") && from_file.contains("max_error_examples = 3"));

    let from_env = fraudlens(
        dir.path(),
        &["config"],
        &[("FRAUDLENS_CONFIG", file), ("FRAUDLENS_LOG__LEVEL", "warn")],
    );
    assert_eq!(from_env.code, 0, "{}", from_env.stderr);
    assert!(from_env.stdout.contains("level = \"warn\"") && from_env.stdout.contains("max_error_examples = 3"));

    let from_flag = fraudlens(
        dir.path(),
        &["--config", file, "--log-level", "error", "config"],
        &[("FRAUDLENS_LOG__LEVEL", "warn")],
    );
    assert!(from_flag.stdout.contains("level = \"error\""), "{}", from_flag.stdout);
}

#[test]
fn example_config_documents_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fraudlens.example.toml");
    let with_example = ok(dir.path(), &["--config", example, "config"]).stdout;
    assert_eq!(with_example, ok(dir.path(), &["config"]).stdout);
}

#[test]
fn usage_errors_exit_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let bad_key = dir.path().join("bad.toml");
    std::fs::write(&bad_key, "[ingest]\nstrickt = true\n").unwrap();
    for (args, env, expected) in [
        (
            vec!["--config", bad_key.to_str().unwrap(), "config"],
            vec![],
            "unknown field: found `strickt`",
        ),
        (
            vec!["--config", "missing.toml", "config"],
            vec![],
            "config file missing.toml not found",
        ),
        (
            vec!["config"],
            vec![("FRAUDLENS_INGEST__STRICT", "perhaps")],
            "invalid configuration",
        ),
        (
            vec!["simulate", "--days", "0"],
            vec![],
            "days must be between 1 and 3650",
        ),
        (
            vec!["simulate", "--start-date", "soon"],
            vec![],
            "start_date must be a date",
        ),
        (
            vec![
                "features",
                "--data",
                "x.csv",
                "--out",
                "y.csv",
                "--timestamp-format",
                "iso",
            ],
            vec![],
            "invalid timestamp format \"iso\"",
        ),
    ] {
        let run = fraudlens(dir.path(), &args, &env);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
        assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    }
    let run = fraudlens(dir.path(), &["features", "--no-such-flag"], &[]);
    assert_eq!(run.code, 2, "clap usage errors exit 2 too");
}

#[test]
fn json_logs() {
    let dir = tempfile::tempdir().unwrap();
    let tabular = crate::ingest_fixture("messy_tabular.csv");
    let run = fraudlens(
        dir.path(),
        &[
            "--log-format",
            "json",
            "features",
            "--data",
            tabular.to_str().unwrap(),
            "--out",
            "t.csv",
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let line = run
        .stderr
        .lines()
        .find(|line| line.starts_with('{'))
        .expect("a json log line");
    let event: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(event["level"], "INFO");
    assert!(
        event["message"]
            .as_str()
            .unwrap()
            .contains("reading as a tabular dataset")
    );
}

#[test]
fn other_fraudlens_variables_and_numeric_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("FRAUDLENS_CACHE_DIR", "/tmp/somewhere"),
        ("FRAUDLENS_BENCH_EVENTS", "10"),
        ("FRAUDLENS_SECURITY__CARD_HASH_KEY", "0123456789012345"),
    ];
    let run = fraudlens(dir.path(), &["config"], &env);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stdout.contains("0123456789012345") && !run.stderr.contains("123456789012345"));
    assert!(run.stdout.contains("card_hash_key = \"[redacted]\""), "{}", run.stdout);
}

#[test]
fn environment_beats_the_schema_file() {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("schema.toml");
    std::fs::write(&schema, "[schema]\ntimestamp = \"when\"\ndefault_currency = \"USD\"\n").unwrap();
    std::fs::write(
        dir.path().join("t.csv"),
        "transaction_id,when,customer_id,terminal_id,amount\nt1,1767261600,c,k,1500\n",
    )
    .unwrap();
    let args = ["inspect", "--data", "t.csv", "--schema", schema.to_str().unwrap()];
    let run = fraudlens(dir.path(), &args, &[]);
    assert!(run.stdout.contains("(default USD)"), "{}{}", run.stdout, run.stderr);
    let run = fraudlens(dir.path(), &args, &[("FRAUDLENS_SCHEMA__DEFAULT_CURRENCY", "JPY")]);
    assert!(run.stdout.contains("(default JPY)"), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("timestamp       <- when"), "{}", run.stdout);
}
