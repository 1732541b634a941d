//! Tabular mode: a messy CSV read with no schema.

use crate::{fraudlens, ingest_fixture, ok, read_csv};

#[test]
fn messy_csv_types_inferred_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let data = ingest_fixture("messy_tabular.csv");
    let inspect = ok(dir.path(), &["inspect", "--data", data.to_str().unwrap()]);
    let table = inspect.stdout;
    for expected in [
        "tabular dataset, 60 rows, 10 columns",
        "note: column 5 repeats the name \"amount\": called \"amount.1\"",
        "id-like: every value distinct",
        "constant: one value in every row",
        "empty: no values",
        "label: Class",
    ] {
        assert!(table.contains(expected), "{expected:?} missing from\n{table}");
    }
    let type_of = |column: &str| {
        table
            .lines()
            .find(|line| line.starts_with(&format!("{column} ")))
            .unwrap()
            .split_whitespace()
            .nth(column.split(' ').count())
            .unwrap()
            .to_owned()
    };
    assert_eq!(type_of("Amount (EUR)"), "numeric");
    assert_eq!(type_of("merchant type"), "categorical");
    assert_eq!(type_of("Account ID"), "excluded");

    ok(
        dir.path(),
        &[
            "features",
            "--data",
            data.to_str().unwrap(),
            "--out",
            "m.csv",
            "--encoding-out",
            "enc.json",
            "--exclude",
            "is fraud?",
        ],
    );
    let (header, rows) = read_csv(&dir.path().join("m.csv"));
    assert_eq!(header, ["Amount (EUR)", "amount", "amount.1", "merchant type", "Class"]);
    assert_eq!(rows.len(), 60);
    let encoding: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("enc.json")).unwrap()).unwrap();
    assert_eq!(encoding["format_version"], 1);
    assert_eq!(encoding["features"][3]["kind"]["type"], "categorical");
}

#[test]
fn missing_label_column_is_a_data_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = ingest_fixture("messy_tabular.csv");
    let run = fraudlens(
        dir.path(),
        &[
            "features",
            "--data",
            data.to_str().unwrap(),
            "--out",
            "m.csv",
            "--label",
            "target",
        ],
        &[],
    );
    assert_eq!(run.code, 65, "{}", run.stderr);
    assert!(
        run.stderr.contains("label column \"target\" not found"),
        "{}",
        run.stderr
    );
}
