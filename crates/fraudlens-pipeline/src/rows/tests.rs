use fraudlens_core::tabular::{CategoryEncoder, ColumnKind, Exclusion, TabularEncoding, TabularFeature};
use serde_json::json;

use super::*;

/// `amount` and `v1` numeric, `channel` categorical (web, pos); `Class` the
/// label; `tx_id` an id column, `seq` a counter and `pan` card numbers set aside.
fn inputs() -> RowInputs {
    let feature = |name: &str, kind| TabularFeature {
        name: name.to_owned(),
        kind,
    };
    RowInputs::new(TabularEncoding {
        format_version: TabularEncoding::FORMAT_VERSION,
        label: Some("Class".to_owned()),
        features: vec![
            feature("amount", ColumnKind::Numeric),
            feature(
                "channel",
                ColumnKind::Categorical(CategoryEncoder::from_categories(vec![
                    "web".to_owned(),
                    "pos".to_owned(),
                ])),
            ),
            feature("v1", ColumnKind::Numeric),
        ],
        excluded: vec![
            ("tx_id".to_owned(), Exclusion::IdLike),
            ("seq".to_owned(), Exclusion::IdLike),
            ("pan".to_owned(), Exclusion::CardNumber),
        ],
    })
}

fn generated() -> String {
    "generated".to_owned()
}

fn parse(record: Value) -> Result<FeatureRow, String> {
    inputs().parse_json(&record, generated)
}

fn same(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn a_json_row_becomes_the_model_inputs_in_order() {
    let row = parse(json!({"v1": -0.5, "channel": "pos", "amount": "12.5", "transaction_id": "t-1"})).unwrap();
    assert_eq!(row.id, "t-1");
    assert!(same(&row.values, &[12.5, 1.0, -0.5]), "{:?}", row.values);
    assert_eq!(row.body, r#"{"row":{"amount":12.5,"channel":"pos","v1":-0.5}}"#);
}

#[test]
fn absent_and_null_and_missing_tokens_are_missing() {
    let row = parse(json!({"amount": null, "v1": "NA"})).unwrap();
    assert!(row.values.iter().all(|x| x.is_nan()), "{:?}", row.values);
    assert_eq!(row.id, "generated");
}

#[test]
fn an_unknown_category_takes_the_other_code() {
    let row = parse(json!({"channel": "atm"})).unwrap();
    assert_eq!(row.values[1], 2.0);
}

#[test]
fn unknown_fields_are_refused_by_name_with_the_close_spelling() {
    let error = parse(json!({"Amount": 3})).unwrap_err();
    assert!(error.contains("unknown feature \"Amount\""), "{error}");
    assert!(error.contains("did you mean \"amount\""), "{error}");
    assert!(error.contains("amount, channel, v1"), "{error}");
}

#[test]
fn mistyped_values_are_refused_by_name() {
    for (record, expected) in [
        (json!({"v1": "abc"}), "feature \"v1\": expected a number, got \"abc\""),
        (
            json!({"v1": true}),
            "feature \"v1\": expected a number or a string, got a boolean",
        ),
        (
            json!({"channel": [1]}),
            "feature \"channel\": expected a number or a string, got an array",
        ),
        (json!({"amount": {"x": 1}}), "got an object"),
    ] {
        let error = parse(record.clone()).unwrap_err();
        assert!(error.contains(expected), "{record}: {error}");
    }
    assert!(parse(json!([1, 2])).unwrap_err().contains("JSON object"));
}

#[test]
fn the_label_and_excluded_columns_are_ignored_and_never_stored() {
    let row = parse(json!({"amount": 1, "Class": 1, "pan": "4111111111111111"})).unwrap();
    assert!(!row.body.contains("4111"), "{}", row.body);
    assert!(!row.body.contains("Class"), "{}", row.body);
}

#[test]
fn card_numbers_in_a_category_are_redacted_in_the_stored_form() {
    let row = parse(json!({"channel": "4111 1111 1111 1111"})).unwrap();
    assert!(!row.body.contains("4111 1111 1111 1111"), "{}", row.body);
    let error = parse(json!({"v1": "4111111111111111x"})).unwrap_err();
    assert!(!error.contains("4111111111111111"), "{error}");
}

#[test]
fn the_id_comes_from_transaction_id_then_an_id_like_column_then_id() {
    assert_eq!(parse(json!({"id": "c", "tx_id": "b"})).unwrap().id, "b");
    assert_eq!(
        parse(json!({"id": "c", "tx_id": "b", "transaction_id": "a"}))
            .unwrap()
            .id,
        "a"
    );
    assert_eq!(parse(json!({"id": 42})).unwrap().id, "42");
    // a counter set aside as id-like is no id: ignored
    assert_eq!(parse(json!({"seq": 7.5})).unwrap().id, "generated");
    assert!(parse(json!({"id": " "})).unwrap_err().contains("\"id\": is empty"));
    assert!(parse(json!({"id": "a\u{0}b"})).unwrap_err().contains("control"));
    assert!(parse(json!({"id": 1.5})).unwrap_err().contains("expected a string id"));
}

#[test]
fn key_order_and_spelling_of_numbers_do_not_change_the_fingerprint() {
    let a = parse(json!({"amount": 1, "v1": 2})).unwrap();
    let b = parse(json!({"v1": "2.0", "amount": 1.0})).unwrap();
    assert_eq!(a.fingerprint, b.fingerprint);
    let c = parse(json!({"amount": 1, "v1": 3})).unwrap();
    assert_ne!(a.fingerprint, c.fingerprint);
}

#[test]
fn infinities_are_values_and_stored_as_text() {
    let row = parse(json!({"amount": "inf", "v1": 1e308})).unwrap();
    assert_eq!(row.values[0], f64::INFINITY);
    assert!(row.body.contains(r#""amount":"inf""#), "{}", row.body);
}

#[test]
fn a_csv_header_binds_by_name_and_refuses_unknown_columns() {
    let inputs = inputs();
    let header: Vec<String> = ["tx_id", "v1", "Class", "amount", "pan"]
        .iter()
        .map(|name| (*name).to_owned())
        .collect();
    let columns = inputs.bind(&header).unwrap();
    let cells = ["r-9", "0.25", "1", "7", "4111111111111111"];
    let row = inputs
        .parse_record(&columns, |column| cells.get(column).copied(), generated)
        .unwrap();
    assert_eq!(row.id, "r-9");
    assert!(same(&row.values, &[7.0, f64::NAN, 0.25]), "{:?}", row.values);
    let json = inputs
        .parse_json(&json!({"tx_id": "r-9", "v1": 0.25, "amount": 7}), generated)
        .unwrap();
    assert_eq!(
        row.fingerprint, json.fingerprint,
        "a CSV row and its JSON form are the same row"
    );

    let bad: Vec<String> = vec!["amount".to_owned(), "V2".to_owned()];
    assert!(inputs.bind(&bad).unwrap_err().contains("unknown feature \"V2\""));
    let short = ["", "", "", ""];
    let row = inputs
        .parse_record(&columns, |column| short.get(column).copied(), generated)
        .unwrap();
    assert_eq!(row.id, "generated", "a blank id cell is no id");
}

#[test]
fn a_feature_named_id_is_a_feature() {
    let inputs = RowInputs::new(TabularEncoding {
        format_version: TabularEncoding::FORMAT_VERSION,
        label: None,
        features: vec![TabularFeature {
            name: "id".to_owned(),
            kind: ColumnKind::Numeric,
        }],
        excluded: Vec::new(),
    });
    let row = inputs.parse_json(&json!({"id": 5}), generated).unwrap();
    assert_eq!((row.id.as_str(), row.values[0]), ("generated", 5.0));
}

#[test]
fn random_ids_differ() {
    let (a, b) = (random_row_id(), random_row_id());
    assert_ne!(a, b);
    assert_eq!(a.len(), 36);
    assert!(a.starts_with("row-"));
}

#[test]
fn card_numbers_are_never_stored_nor_echoed() {
    // a card number as a JSON number in a category
    let row = parse(json!({"channel": 4111111111111111u64})).unwrap();
    assert!(!row.body.contains("4111111111111111"), "{}", row.body);
    // as an id
    let error = parse(json!({"transaction_id": "4111 1111 1111 1111"})).unwrap_err();
    assert!(error.contains("card number") && !error.contains("4111 1111"), "{error}");
    // as a field name
    let error = parse(json!({"4111111111111111": 1})).unwrap_err();
    assert!(!error.contains("4111111111111111"), "{error}");
}

#[test]
fn rows_the_redaction_makes_alike_keep_their_own_fingerprints() {
    // one category known (pos), the other not: other inputs, other rows
    let a = parse(json!({"transaction_id": "k", "channel": "pos"})).unwrap();
    let b = parse(json!({"transaction_id": "k", "channel": "atm"})).unwrap();
    assert_ne!(a.fingerprint, b.fingerprint);
    let c = parse(json!({"channel": "4111111111111111"})).unwrap();
    let d = parse(json!({"channel": "5500000000000004"})).unwrap();
    assert_eq!(c.body, d.body, "both redacted");
    assert!(same(&c.values, &d.values), "both unknown categories: the same input");
    assert_eq!(
        c.fingerprint, d.fingerprint,
        "the same input and stored form: the same row"
    );
}

#[test]
fn minus_zero_is_zero() {
    let a = parse(json!({"v1": 0})).unwrap();
    let b = parse(json!({"v1": -0.0})).unwrap();
    let c = parse(json!({"v1": "-0"})).unwrap();
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_eq!(a.fingerprint, c.fingerprint);
}

#[test]
fn a_bad_id_in_a_csv_is_named_by_its_column() {
    let inputs = inputs();
    let header = vec!["tx_id".to_owned(), "v1".to_owned()];
    let columns = inputs.bind(&header).unwrap();
    assert!(columns.has_id());
    let cells = ["a\u{202e}b", "1"];
    let error = inputs
        .parse_record(&columns, |column| cells.get(column).copied(), generated)
        .unwrap_err();
    assert!(error.starts_with("\"tx_id\""), "{error}");
}

#[test]
fn a_replacement_must_know_every_field_clients_send() {
    let current = inputs();
    assert_eq!(current.knows_all_of(&current), Ok(()));
    let without_label = RowInputs::new(TabularEncoding {
        label: None,
        ..current.encoding().clone()
    });
    let error = without_label.knows_all_of(&current).unwrap_err();
    assert!(error.contains("unknown feature \"Class\""), "{error}");
    assert_eq!(
        current.knows_all_of(&without_label),
        Ok(()),
        "more fields known is fine"
    );
}
