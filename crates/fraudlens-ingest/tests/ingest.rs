//! Reading files: bad rows are reported by line and reason, good rows kept;
//! the offline replay and the choice of event or tabular mode.

// a failed unwrap in a test helper is a failed test with a backtrace
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use fraudlens_core::tabular::{ColumnKind, Exclusion, TabularEncoding, find_label_column};
use fraudlens_core::{Schema, SchemaConfig};
use fraudlens_features::{EventTimePolicy, FeatureSpec, FeatureSpecConfig};
use fraudlens_ingest::{
    DetectedMode, EventReader, IngestError, InputFormat, ReadOptions, TabularReader, detect_mode, profile_csv,
    replay_file,
};

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn schema() -> Schema {
    Schema::new(SchemaConfig::default(), None).unwrap()
}

fn read_all(reader: &mut EventReader<'_>) -> Vec<String> {
    let mut ids = Vec::new();
    while let Some(tx) = reader.next_transaction().unwrap() {
        ids.push(tx.id.to_string());
    }
    ids
}

#[test]
fn broken_csv_keeps_good_rows_and_reports_bad_ones_by_line() {
    let schema = schema();
    let mut reader = EventReader::open(&fixture("broken.csv"), InputFormat::Csv, &schema, false, 20).unwrap();
    let ids = read_all(&mut reader);
    assert_eq!(ids, ["tx1", "tx3", "tx9", "tx12"]);
    let report = reader.bad_rows().to_string();
    let expected = "\
8 bad rows skipped (first 8 shown):
  line 3: field \"amount\": unparsable amount \"not-a-number\"
  line 5: expected 7 columns, found 5
  line 6: field \"timestamp\": unparsable timestamp \"yesterday\" (expected RFC 3339, `YYYY-MM-DD HH:MM:SS`, unix seconds or milliseconds)
  line 7: missing entity customer (field \"customer_id\")
  line 8: field \"amount\": unparsable amount \"1,5\"
  line 9: customer key in field \"customer_id\" contains a control character
  line 12: field \"is_fraud\": unrecognised label \"maybe\" (expected 1/0, true/false, yes/no or fraud/legit)
  line 13: invalid utf-8";
    assert_eq!(report, expected);
    assert_eq!(reader.bad_rows().count(), 8);
    assert_eq!(reader.n_good(), 4);
}

#[test]
fn examples_are_capped_but_all_bad_rows_counted() {
    let schema = schema();
    let mut reader = EventReader::open(&fixture("broken.csv"), InputFormat::Csv, &schema, false, 2).unwrap();
    read_all(&mut reader);
    assert_eq!(reader.bad_rows().count(), 8);
    assert_eq!(reader.bad_rows().examples().len(), 2);
    assert!(
        reader
            .bad_rows()
            .to_string()
            .starts_with("8 bad rows skipped (first 2 shown):")
    );
}

#[test]
fn strict_mode_stops_at_the_first_bad_row() {
    let schema = schema();
    let mut reader = EventReader::open(&fixture("broken.csv"), InputFormat::Csv, &schema, true, 20).unwrap();
    assert_eq!(reader.next_transaction().unwrap().unwrap().id.as_str(), "tx1");
    let error = reader.next_transaction().unwrap_err();
    assert!(error.is_data_error());
    let message = error.to_string();
    assert!(
        message.ends_with("broken.csv:3: field \"amount\": unparsable amount \"not-a-number\""),
        "{message}"
    );
}

#[test]
fn json_lines_report_bad_lines() {
    let schema = schema();
    let path = fixture("broken.jsonl");
    assert_eq!(InputFormat::from_path(&path), InputFormat::JsonLines);
    let mut reader = EventReader::open(&path, InputFormat::JsonLines, &schema, false, 20).unwrap();
    assert_eq!(read_all(&mut reader), ["j1", "j3"]);
    let lines: Vec<u64> = reader.bad_rows().examples().iter().map(|issue| issue.line).collect();
    assert_eq!(lines, [2, 3, 6]);
    let reasons: Vec<&str> = reader
        .bad_rows()
        .examples()
        .iter()
        .map(|issue| issue.reason.as_str())
        .collect();
    assert!(reasons[0].starts_with("invalid json: "), "{}", reasons[0]);
    assert_eq!(
        reasons[1],
        "expected a json object per line, found an array (convert with: jq -c '.[]')"
    );
    assert_eq!(
        reasons[2],
        "field \"customer_id\" (entity customer) is not a single value"
    );
}

#[test]
fn header_problems_are_fatal_and_clear() {
    let schema = schema();
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    let error = EventReader::open(&empty, InputFormat::Csv, &schema, false, 5)
        .err()
        .unwrap();
    assert!(matches!(error, IngestError::Empty { .. }), "{error}");
    let other = dir.path().join("other.csv");
    std::fs::write(&other, "id,when,amount\n1,2026-01-01,3\n").unwrap();
    let error = EventReader::open(&other, InputFormat::Csv, &schema, false, 5)
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("column \"transaction_id\" (transaction id) not found in header"),
        "{error}"
    );
    let error = EventReader::open(&dir.path().join("nope.csv"), InputFormat::Csv, &schema, false, 5)
        .err()
        .unwrap();
    assert!(matches!(error, IngestError::Io { .. }) && !error.is_data_error());
}

#[test]
fn messy_tabular_csv_needs_no_schema() {
    let path = fixture("messy_tabular.csv");
    let profile = profile_csv(&path, false, 5).unwrap();
    assert_eq!(profile.n_rows, 60);
    assert_eq!(profile.header[3..5], ["amount".to_owned(), "amount.1".to_owned()]);
    assert_eq!(profile.header_notes.len(), 1);
    let label = find_label_column(&profile.header, None);
    assert_eq!(label, Some(9), "Class is found as the label");
    let (encoding, inferred) = TabularEncoding::fit(&profile.columns, label, &[]);
    let kinds: Vec<(&str, String)> = inferred
        .iter()
        .map(|column| {
            let kind = match &column.kind {
                ColumnKind::Numeric => "numeric".to_owned(),
                ColumnKind::Categorical(encoder) => {
                    format!("categorical({})", encoder.categories().len())
                }
                ColumnKind::Label => "label".to_owned(),
                ColumnKind::Excluded(reason) => format!("excluded({reason:?})"),
            };
            (column.name.as_str(), kind)
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("row", "excluded(IdLike)".to_owned()),
            ("Account ID", "excluded(IdLike)".to_owned()),
            ("Amount (EUR)", "numeric".to_owned()),
            ("amount", "numeric".to_owned()),
            ("amount.1", "numeric".to_owned()),
            ("merchant type", "categorical(4)".to_owned()),
            ("const", "excluded(Constant)".to_owned()),
            ("empty col", "excluded(Empty)".to_owned()),
            ("is fraud?", "categorical(2)".to_owned()),
            ("Class", "label".to_owned()),
        ]
    );
    assert!(inferred[2].n_infinite > 0 && inferred[2].n_missing > 0);
    assert_eq!(encoding.excluded.len(), 4);
    assert!(encoding.excluded.contains(&("const".to_owned(), Exclusion::Constant)));

    let mut reader = TabularReader::open(&path, &encoding, false, 5).unwrap();
    let mut row = Vec::new();
    let mut n_rows = 0;
    let mut n_fraud = 0;
    while let Some(label) = reader.next_row(&mut row).unwrap() {
        assert_eq!(row.len(), 5);
        n_rows += 1;
        n_fraud += usize::from(label.unwrap().is_fraud());
    }
    assert_eq!((n_rows, n_fraud), (60, 6));
}

#[test]
fn crlf_and_blank_lines_do_not_shift_line_numbers() {
    let schema = schema();
    let original = std::fs::read(fixture("broken.csv")).unwrap();
    let lines_of = |bytes: Vec<u8>| {
        let mut reader = EventReader::from_reader(
            Box::new(std::io::Cursor::new(bytes)),
            Path::new("mem.csv"),
            InputFormat::Csv,
            &schema,
            false,
            20,
        )
        .unwrap();
        read_all(&mut reader);
        reader
            .bad_rows()
            .examples()
            .iter()
            .map(|issue| issue.line)
            .collect::<Vec<_>>()
    };
    let expected = lines_of(original.clone());
    assert_eq!(expected, [3, 5, 6, 7, 8, 9, 12, 13]);
    let mut crlf = Vec::new();
    for byte in &original {
        if *byte == b'\n' {
            crlf.push(b'\r');
        }
        crlf.push(*byte);
    }
    assert_eq!(lines_of(crlf), expected, "CRLF line endings");
    // a blank line after the header shifts every later line by one
    let mut blank = original.clone();
    let header_end = blank.iter().position(|b| *b == b'\n').unwrap();
    blank.insert(header_end + 1, b'\n');
    assert_eq!(
        lines_of(blank),
        expected.iter().map(|line| line + 1).collect::<Vec<_>>()
    );
}

#[test]
fn json_lines_with_invalid_utf8_or_overlong_lines_are_bad_rows() {
    let schema = schema();
    let good = r#"{"transaction_id":"j1","timestamp":"2026-01-01T10:00:00Z","customer_id":"c1","terminal_id":"t1","amount":1}"#;
    let mut bytes = Vec::new();
    bytes.extend_from_slice(good.as_bytes());
    bytes.extend_from_slice(b"\n{\"transaction_id\":\"j\xff\"}\n");
    bytes.extend_from_slice(format!("{{\"pad\":\"{}\"}}\n", "x".repeat(fraudlens_ingest::MAX_JSON_LINE)).as_bytes());
    bytes.extend_from_slice(good.replace("j1", "j4").as_bytes());
    let mut reader = EventReader::from_reader(
        Box::new(std::io::Cursor::new(bytes)),
        Path::new("mem.jsonl"),
        InputFormat::JsonLines,
        &schema,
        false,
        20,
    )
    .unwrap();
    assert_eq!(read_all(&mut reader), ["j1", "j4"]);
    let issues: Vec<(u64, &str)> = reader
        .bad_rows()
        .examples()
        .iter()
        .map(|issue| (issue.line, issue.reason.as_str()))
        .collect();
    assert_eq!(issues, [(2, "invalid utf-8"), (3, "line longer than 1048576 bytes")]);
}

/// The attack pass's records in a file: each bad one reported by line with
/// its reason, the good ones kept (normalised).
#[test]
fn hostile_rows_are_reported_by_line() {
    let schema = schema();
    let reasons = |reader: &EventReader<'_>| -> Vec<(u64, String)> {
        let examples = reader.bad_rows().examples();
        examples
            .iter()
            .map(|issue| (issue.line, issue.reason.clone()))
            .collect()
    };

    let mut reader = EventReader::open(&fixture("hostile.jsonl"), InputFormat::JsonLines, &schema, false, 20).unwrap();
    let tx = reader.next_transaction().unwrap().unwrap();
    assert_eq!(tx.id.as_str(), "h4");
    assert_eq!(tx.entity(0).unwrap().as_str(), "Jos\u{e9}");
    assert_eq!(tx.amount.minor(), 150);
    assert!(reader.next_transaction().unwrap().is_none());
    assert_eq!(
        reasons(&reader),
        [
            (1, r#"duplicate key "amount" at line 1 column 131"#.to_owned()),
            (
                2,
                r#"field "amount": amount "0.001" has more decimals than EUR has (2)"#.to_owned()
            ),
            (
                3,
                r#"customer key in field "customer_id" contains the invisible or format character U+202E"#.to_owned()
            ),
        ]
    );

    let mut reader = EventReader::open(&fixture("hostile.csv"), InputFormat::Csv, &schema, false, 20).unwrap();
    assert_eq!(read_all(&mut reader), ["h3"]);
    assert_eq!(
        reasons(&reader),
        [
            (
                2,
                r#"field "amount": amount "0.001" has more decimals than USD has (2)"#.to_owned()
            ),
            (
                3,
                r#"customer key in field "customer_id" contains the invisible or format character U+200B"#.to_owned()
            ),
            (
                5,
                r#"field "amount": amount "500.5" has more decimals than JPY has (0)"#.to_owned()
            ),
        ]
    );
}

/// The offline replay skips, by line, what the engine must not observe: a
/// repeated id, then an event time the policy refuses; the rest is replayed in
/// file order (a late row is counted, not skipped).
#[test]
fn replay_skips_repeated_ids_and_refused_times_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tx.csv");
    std::fs::write(
        &path,
        "transaction_id,timestamp,customer_id,terminal_id,amount\n\
         t1,2026-01-01T10:00:00Z,c1,k1,10\n\
         t1,2026-01-01T10:00:00Z,c1,k1,10\n\
         t2,2030-01-01T11:00:00Z,c1,k1,10\n\
         t3,2026-01-01T09:00:00Z,c1,k1,10\n",
    )
    .unwrap();
    let schema = schema();
    let spec = Arc::new(FeatureSpec::new(FeatureSpecConfig::default(), &schema).unwrap());
    let options = ReadOptions {
        strict: false,
        max_examples: 10,
        sort: false,
        time_policy: EventTimePolicy::default(),
    };
    let now = 1_767_312_000_000; // 2026-01-02: t2 is years ahead of it
    let mut replayed = Vec::new();
    let summary = replay_file::<IngestError>(&schema, spec.clone(), &path, options, now, |tx, _, features| {
        assert_eq!(features.len(), spec.feature_names().len());
        replayed.push(tx.id.to_string());
        Ok(())
    })
    .unwrap();
    assert_eq!(replayed, ["t1", "t3"]);
    assert_eq!(summary.rows, 2);
    assert_eq!(summary.late_rows, 1);
    assert_eq!(summary.duplicates.count(), 1);
    assert_eq!(summary.duplicates.examples()[0].line, 3);
    assert_eq!(summary.refused_times.count(), 1);
    assert_eq!(summary.refused_times.examples()[0].line, 4);
    assert!(
        summary.report().contains("duplicates: 1 bad row skipped"),
        "{}",
        summary.report()
    );

    // strict: the first skipped row stops the replay, with its line
    let strict = ReadOptions {
        strict: true,
        ..options
    };
    let stopped = replay_file::<IngestError>(&schema, spec, &path, strict, now, |_, _, _| Ok(()));
    assert!(
        matches!(stopped, Err(IngestError::Strict { line: 3, .. })),
        "{:?}",
        stopped.err()
    );
}

/// `--mode auto`: a header that fits the schema is read as transactions; one
/// that does not is a tabular dataset under the built-in schema only.
#[test]
fn detect_mode_falls_back_to_tabular_only_for_the_built_in_schema() {
    let events = detect_mode(&fixture("broken.csv"), &schema()).unwrap();
    assert!(matches!(events, DetectedMode::Event), "{events:?}");
    let tabular = detect_mode(&fixture("messy_tabular.csv"), &schema()).unwrap();
    assert!(matches!(tabular, DetectedMode::Tabular(_)), "{tabular:?}");
    let configured = Schema::new(
        SchemaConfig {
            amount: "amt".to_owned(),
            ..SchemaConfig::default()
        },
        None,
    )
    .unwrap();
    let refused = detect_mode(&fixture("messy_tabular.csv"), &configured);
    assert!(matches!(refused, Err(IngestError::Schema { .. })), "{refused:?}");
    let missing = detect_mode(Path::new("no-such-file.csv"), &schema());
    assert!(
        matches!(&missing, Err(error @ IngestError::Header { .. }) if !error.is_data_error()),
        "{missing:?}"
    );
}

/// A transactions file exported with a UTF-8 byte-order mark is still read as
/// transactions in `--mode auto` (the mode check reads the header the way the
/// readers do); an empty file is refused, not taken for a tabular dataset.
#[test]
fn detect_mode_reads_a_header_with_a_byte_order_mark_as_the_readers_do() {
    let dir = tempfile::tempdir().unwrap();
    let with_bom = dir.path().join("bom.csv");
    let mut bytes = "\u{feff}".as_bytes().to_vec();
    bytes.extend(std::fs::read(fixture("broken.csv")).unwrap());
    std::fs::write(&with_bom, bytes).unwrap();
    let mode = detect_mode(&with_bom, &schema()).unwrap();
    assert!(matches!(mode, DetectedMode::Event), "{mode:?}");
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    let refused = detect_mode(&empty, &schema());
    assert!(matches!(refused, Err(IngestError::Empty { .. })), "{refused:?}");
}

/// `inspect`'s counts are over the valid rows only.
#[test]
fn event_counts_cover_the_valid_rows() {
    let schema = schema();
    let mut reader = EventReader::open(&fixture("broken.csv"), InputFormat::Csv, &schema, false, 20).unwrap();
    let counts = fraudlens_ingest::EventCounts::read(&mut reader).unwrap().unwrap();
    assert_eq!(counts.rows, 4);
    assert!(counts.first <= counts.last);
    assert!(counts.labeled <= counts.rows && counts.fraud <= counts.labeled);
}

/// Training keeps the rows of its window (all of them replayed), labelled.
#[test]
fn training_rows_are_the_rows_of_the_window() {
    let schema = schema();
    let spec = Arc::new(FeatureSpec::new(FeatureSpecConfig::default(), &schema).unwrap());
    let options = ReadOptions {
        strict: false,
        max_examples: 10,
        sort: false,
        time_policy: EventTimePolicy::default(),
    };
    let now = 1_767_312_000_000; // 2026-01-02
    let from = 1_767_262_020_000; // 2026-01-01T10:07:00Z, tx3
    let to = 1_767_262_560_000; // 10:16, after tx9
    let read = fraudlens_ingest::training_rows(
        &schema,
        &spec,
        &fixture("broken.csv"),
        options,
        now,
        from..to,
        false,
        || {},
    )
    .unwrap();
    assert_eq!((read.summary.rows, read.unlabeled), (4, 0));
    let params = fraudlens_model::fit::FitParams::default().check().unwrap();
    let table = read.rows.finish(&schema, &spec, &params).table;
    assert_eq!((table.len(), table.frauds()), (2, 1));
}
