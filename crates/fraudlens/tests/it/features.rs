//! `fraudlens features` in event mode, and the demo.

use crate::{fraudlens, ingest_fixture, ok, read_csv};

#[test]
fn broken_csv_keeps_good_rows_reports_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data = ingest_fixture("broken.csv");
    let run = ok(
        dir.path(),
        &["features", "--data", data.to_str().unwrap(), "--out", "f.csv"],
    );
    assert!(
        run.stderr.contains("8 bad rows skipped (first 8 shown):"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("line 3: field \"amount\": unparsable amount \"not-a-number\""),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("line 13: invalid utf-8"), "{}", run.stderr);
    let (header, rows) = read_csv(&dir.path().join("f.csv"));
    let ids: Vec<&str> = rows.iter().map(|row| row[0].as_str()).collect();
    assert_eq!(ids, ["tx1", "tx3", "tx9", "tx12"]);
    assert_eq!(header[2], "amount");
    assert_eq!(rows[1][2], "3.1");

    let strict = fraudlens(
        dir.path(),
        &[
            "features",
            "--data",
            data.to_str().unwrap(),
            "--out",
            "g.csv",
            "--strict",
        ],
        &[],
    );
    assert_eq!(strict.code, 65, "{}", strict.stderr);
    assert!(
        strict
            .stderr
            .contains("broken.csv:3: field \"amount\": unparsable amount"),
        "{}",
        strict.stderr
    );
}

#[test]
fn header_that_fits_no_schema_is_a_data_error_in_event_mode() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.csv"), "a,b\n1,2\n").unwrap();
    let run = fraudlens(
        dir.path(),
        &["features", "--data", "x.csv", "--out", "f.csv", "--mode", "event"],
        &[],
    );
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("column \"transaction_id\" (transaction id) not found in header"),
        "{}",
        run.stderr
    );
    let run = fraudlens(
        dir.path(),
        &["features", "--data", "nope.csv", "--out", "f.csv", "--mode", "event"],
        &[],
    );
    assert_eq!(run.code, 1, "a missing file is not a data error: {}", run.stderr);
}

#[test]
fn flags_map_other_column_names() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bank.csv"),
        "ID,When,CUSTOMER_ID,Shop,Value,Class\n\
         1,1767261600,c1,s1,10,0\n\
         2,1767261660,c1,s2,30,1\n\
         3,1767261720,c2,s1,5,0\n",
    )
    .unwrap();
    let run = ok(
        dir.path(),
        &[
            "features",
            "--data",
            "bank.csv",
            "--out",
            "f.csv",
            "--id",
            "ID",
            "--timestamp",
            "When",
            "--amount",
            "Value",
            "--label",
            "Class",
            "--entity",
            "customer=CUSTOMER_ID",
            "--entity",
            "terminal=",
            "--entity",
            "shop=Shop",
            "--summary-by",
            "Class",
            "--summary-features",
            "amount,customer_count_1d,shop_count_1d",
        ],
    );
    let (header, rows) = read_csv(&dir.path().join("f.csv"));
    assert!(header.iter().any(|h| h == "shop_distinct_customer_1d"));
    assert!(!header.iter().any(|h| h.starts_with("terminal_")));
    let count = header.iter().position(|h| h == "customer_count_1d").unwrap();
    assert_eq!(
        rows.iter().map(|r| r[count].as_str()).collect::<Vec<_>>(),
        ["1", "2", "1"]
    );
    let label = header.iter().position(|h| h == "Class").unwrap();
    assert_eq!(rows[1][label], "1");
    assert!(run.stdout.contains("mean of each feature by Class"), "{}", run.stdout);
    assert!(run.stdout.contains("customer_count_1d"), "{}", run.stdout);
}

#[test]
fn snapshot_written_and_late_rows_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("late.csv"),
        "transaction_id,timestamp,customer_id,terminal_id,amount\n\
         t1,2026-01-02T10:00:00Z,c1,k1,10\n\
         t2,2026-01-01T10:00:00Z,c1,k1,10\n\
         t3,2026-01-03T10:00:00Z,c1,k1,10\n",
    )
    .unwrap();
    let run = ok(
        dir.path(),
        &[
            "features",
            "--data",
            "late.csv",
            "--out",
            "f.csv",
            "--snapshot-out",
            "state/engine.snap",
        ],
    );
    assert!(
        run.stderr
            .contains("warning: 1 rows were earlier than a row before them"),
        "{}",
        run.stderr
    );
    let snapshot = std::fs::read(dir.path().join("state/engine.snap")).unwrap();
    assert!(snapshot.starts_with(b"FLFEAT"));

    let sorted = ok(
        dir.path(),
        &["features", "--data", "late.csv", "--out", "s.csv", "--sort"],
    );
    assert!(!sorted.stderr.contains("warning"), "{}", sorted.stderr);
    let (header, rows) = read_csv(&dir.path().join("s.csv"));
    assert_eq!(
        rows.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(),
        ["t2", "t1", "t3"]
    );
    let since = header.iter().position(|h| h == "customer_secs_since_prev").unwrap();
    assert_eq!(rows[1][since], "86400");
}

#[test]
fn demo_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let run = ok(
        dir.path(),
        &[
            "demo",
            "--customers",
            "300",
            "--terminals",
            "600",
            "--days",
            "45",
            "--dir",
            "out",
            "--no-serve",
        ],
    );
    for file in ["transactions.csv", "features.csv", "engine.snapshot"] {
        assert!(dir.path().join("out").join(file).is_file(), "{file}");
    }
    assert!(
        run.stdout.contains("mean of each feature by fraud_scenario"),
        "{}",
        run.stdout
    );
    for scenario in [
        "none",
        "stolen_card",
        "compromised_terminal",
        "account_takeover",
        "card_testing",
    ] {
        assert!(run.stdout.contains(scenario), "{scenario} missing from\n{}", run.stdout);
    }
}

#[test]
fn output_never_replaces_the_input_and_failed_runs_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    ok(
        dir.path(),
        &[
            "simulate",
            "--customers",
            "20",
            "--terminals",
            "40",
            "--days",
            "3",
            "--out",
            "tx.csv",
        ],
    );
    let before = std::fs::read(dir.path().join("tx.csv")).unwrap();
    let run = fraudlens(dir.path(), &["features", "--data", "tx.csv", "--out", "./tx.csv"], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("is the input file"), "{}", run.stderr);
    assert_eq!(std::fs::read(dir.path().join("tx.csv")).unwrap(), before);

    let data = ingest_fixture("broken.csv");
    let run = fraudlens(
        dir.path(),
        &[
            "features",
            "--data",
            data.to_str().unwrap(),
            "--out",
            "f.csv",
            "--strict",
        ],
        &[],
    );
    assert_eq!(run.code, 65);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        [std::ffi::OsString::from("tx.csv")],
        "no partial output, no temporary file"
    );
}

#[test]
fn duplicate_transactions_are_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dup.csv"),
        "transaction_id,timestamp,customer_id,terminal_id,amount\n\
         t1,2026-01-01T10:00:00Z,c1,k1,10\n\
         t1,2026-01-01T10:00:00Z,c1,k1,10\n\
         t2,2026-01-01T11:00:00Z,c1,k1,10\n",
    )
    .unwrap();
    let run = ok(dir.path(), &["features", "--data", "dup.csv", "--out", "f.csv"]);
    assert!(
        run.stderr.contains("line 3: duplicate transaction id \"t1\""),
        "{}",
        run.stderr
    );
    let (header, rows) = read_csv(&dir.path().join("f.csv"));
    let count = header.iter().position(|h| h == "customer_count_1d").unwrap();
    assert_eq!(
        rows.iter()
            .map(|r| (r[0].as_str(), r[count].as_str()))
            .collect::<Vec<_>>(),
        [("t1", "1"), ("t2", "2")]
    );
    let strict = fraudlens(
        dir.path(),
        &["features", "--data", "dup.csv", "--out", "g.csv", "--strict"],
        &[],
    );
    assert_eq!(strict.code, 65, "{}", strict.stderr);
}

#[test]
fn a_configured_schema_never_falls_back_to_tabular_mode() {
    let dir = tempfile::tempdir().unwrap();
    // a card file whose time column is not the one the schema names
    std::fs::write(
        dir.path().join("pan.csv"),
        "txn,created,pan,merchant,amt\na1,2026-02-01 09:00:00,4111 1111 1111 1111,m1,10.00\n",
    )
    .unwrap();
    let schema = crate::fixture("cards_schema.toml");
    let key = [("FRAUDLENS_SECURITY__CARD_HASH_KEY", "0123456789012345")];
    let run = fraudlens(
        dir.path(),
        &[
            "features",
            "--data",
            "pan.csv",
            "--out",
            "f.csv",
            "--schema",
            schema.to_str().unwrap(),
        ],
        &key,
    );
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(
        run.stderr.contains("column \"ts\" (timestamp) not found"),
        "{}",
        run.stderr
    );
    assert!(!dir.path().join("f.csv").exists());
    assert!(!run.stderr.contains("0123456789012345"));
}

#[test]
fn a_directory_is_not_a_data_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("adir")).unwrap();
    for mode in ["auto", "event", "tabular"] {
        let run = fraudlens(
            dir.path(),
            &["features", "--data", "adir", "--out", "f.csv", "--mode", mode],
            &[],
        );
        assert_eq!(run.code, 1, "{mode}: {}", run.stderr);
    }
}

/// Regression: the atomic rename once replaced `/dev/null` by a regular file.
#[test]
fn devices_and_symlinks_are_written_through() {
    use std::os::unix::fs::FileTypeExt;
    let dir = tempfile::tempdir().unwrap();
    ok(
        dir.path(),
        &[
            "simulate",
            "--customers",
            "5",
            "--terminals",
            "10",
            "--days",
            "1",
            "--out",
            "/dev/null",
        ],
    );
    assert!(
        std::fs::metadata("/dev/null").unwrap().file_type().is_char_device(),
        "/dev/null is still a device"
    );

    std::fs::write(dir.path().join("real.csv"), "old").unwrap();
    std::os::unix::fs::symlink(dir.path().join("real.csv"), dir.path().join("link.csv")).unwrap();
    ok(
        dir.path(),
        &[
            "simulate",
            "--customers",
            "5",
            "--terminals",
            "10",
            "--days",
            "1",
            "--out",
            "link.csv",
        ],
    );
    assert!(
        std::fs::symlink_metadata(dir.path().join("link.csv"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        std::fs::read_to_string(dir.path().join("real.csv"))
            .unwrap()
            .starts_with("transaction_id,")
    );
}
