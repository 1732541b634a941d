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

#[test]
fn card_number_columns_are_never_used_or_shown() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("card,amount,Class\n");
    for (idx, pan) in ["4111 1111 1111 1111", "5500 0000 0000 0004", "4012 8888 8888 1881"]
        .iter()
        .cycle()
        .take(30)
        .enumerate()
    {
        csv.push_str(&format!("{pan},{idx}.5,{}\n", idx % 2));
    }
    std::fs::write(dir.path().join("cards.csv"), csv).unwrap();
    let run = ok(
        dir.path(),
        &[
            "features",
            "--data",
            "cards.csv",
            "--out",
            "m.csv",
            "--encoding-out",
            "enc.json",
        ],
    );
    assert!(run.stderr.contains("card numbers: never used"), "{}", run.stderr);
    let written = [
        run.stderr.clone(),
        std::fs::read_to_string(dir.path().join("m.csv")).unwrap(),
        std::fs::read_to_string(dir.path().join("enc.json")).unwrap(),
    ];
    for text in written {
        assert!(!text.contains("4111") && !text.contains("5500"), "{text}");
    }
}
