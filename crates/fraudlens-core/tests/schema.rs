//! Schema mapping through the public API: TOML in, transactions or errors out.

// a failed unwrap in a test helper is a failed test with a backtrace
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fraudlens_core::{AttributeValue, Label, RecordError, Schema, SchemaConfig, SchemaError, Secret};

const KEY: &str = "test-key-0123456789abcdef";

fn stripe_schema() -> Schema {
    let config: SchemaConfig = toml::from_str(include_str!("fixtures/stripe_schema.toml")).unwrap();
    Schema::new(config, Some(&Secret::new(KEY))).unwrap()
}

fn default_schema() -> Schema {
    Schema::new(SchemaConfig::default(), None).unwrap()
}

const NATIVE_HEADER: [&str; 11] = [
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
    "fraud_scenario",
];

fn parse_native(row: [&str; 11]) -> Result<fraudlens_core::Transaction, RecordError> {
    let schema = default_schema();
    let binding = schema.bind_columns(&NATIVE_HEADER).unwrap();
    schema.parse_row(&binding, |idx| row.get(idx).copied())
}

#[test]
fn default_schema_reads_the_simulator_format() {
    let tx = parse_native([
        "T1",
        "2026-01-01T10:00:00Z",
        "C1",
        "TERM9",
        "12.5",
        "EUR",
        "5411",
        "chip",
        "DE",
        "1",
        "stolen_card",
    ])
    .unwrap();
    assert_eq!(tx.id.as_str(), "T1");
    assert_eq!(tx.amount.minor(), 1250);
    assert_eq!(tx.label, Some(Label::Fraud));
    assert_eq!(tx.entity(0).unwrap().as_str(), "C1");
    assert_eq!(tx.entity(1).unwrap().as_str(), "TERM9");
    // attributes are ordered by name: channel, country, mcc
    assert_eq!(tx.attributes[0], AttributeValue::Categorical(Some("chip".into())));
    assert_eq!(tx.attributes[2], AttributeValue::Categorical(Some("5411".into())));
}

#[test]
fn row_errors_name_the_field() {
    let base = [
        "T1",
        "2026-01-01T10:00:00Z",
        "C1",
        "TERM9",
        "12.5",
        "EUR",
        "5411",
        "chip",
        "DE",
        "0",
        "none",
    ];
    let cases: [(usize, &str, &str); 6] = [
        (
            1,
            "yesterday",
            "field \"timestamp\": unparsable timestamp \"yesterday\"",
        ),
        (4, "12,50", "field \"amount\": unparsable amount \"12,50\""),
        (4, "-1", "field \"amount\": amount \"-1\" is negative"),
        (2, " ", "missing entity customer (field \"customer_id\")"),
        (5, "EURO", "field \"currency\": invalid currency \"EURO\""),
        (9, "maybe", "field \"is_fraud\": unrecognised label \"maybe\""),
    ];
    for (column, value, expected) in cases {
        let mut row = base;
        row[column] = value;
        let message = parse_native(row).unwrap_err().to_string();
        assert!(message.starts_with(expected), "{message}");
    }
}

#[test]
fn missing_required_column_is_a_schema_error() {
    let schema = default_schema();
    let error = schema
        .bind_columns(&["transaction_id", "timestamp", "amount", "customer_id"])
        .unwrap_err();
    assert!(
        matches!(error, SchemaError::MissingColumn { ref field, .. } if field == "terminal_id"),
        "{error}"
    );
    assert!(error.to_string().contains("columns are: \"transaction_id\""));
}

#[test]
fn optional_columns_are_reported_not_required() {
    let schema = default_schema();
    let binding = schema
        .bind_columns(&["TRANSACTION_ID", "timestamp", "amount", "customer_id", "terminal_id"])
        .unwrap();
    let notes = binding.notes().join("\n");
    assert!(notes.contains("currency column \"currency\" not found"), "{notes}");
    assert!(notes.contains("the data is unlabeled"), "{notes}");
    assert!(notes.contains("attribute mcc"), "{notes}");
    let row = ["t9", "1767261600", "3", "c", "t"];
    let tx = schema.parse_row(&binding, |idx| row.get(idx).copied()).unwrap();
    assert_eq!(tx.amount.currency().as_str(), "EUR");
    assert_eq!(tx.label, None);
    assert_eq!(tx.attributes[0], AttributeValue::Categorical(None));
}

#[test]
fn stripe_charge_by_dotted_paths_with_hashed_card() {
    let schema = stripe_schema();
    let charge: serde_json::Value = serde_json::from_str(include_str!("fixtures/stripe_charge.json")).unwrap();
    let tx = schema.parse_json(&charge).unwrap();
    assert_eq!(tx.amount.minor(), 1099);
    assert_eq!(tx.amount.currency().as_str(), "USD");
    assert_eq!(tx.timestamp.to_string(), "2023-03-17T22:02:19Z");
    assert_eq!(tx.label, None);
    // entities sorted by name: card, customer, pan
    assert_eq!(tx.entity(0).unwrap().as_str(), "Xt5EWLLDS7FJjR1c");
    assert_eq!(tx.entity(1).unwrap().as_str(), "cus_NXXO4LgLsyVSsm");
    let pan_token = tx.entity(2).unwrap().as_str();
    assert!(
        pan_token.starts_with("card_") && !pan_token.contains("4242"),
        "{pan_token}"
    );
    assert!(
        !format!("{tx:?}").contains("4242 4242"),
        "the clear card number must not survive parsing"
    );
    assert_eq!(tx.attributes[2], AttributeValue::Numeric(32.0));
    assert_eq!(schema.json_passthrough(&charge), [Some("6735".to_owned())]);
}

#[test]
fn bad_card_number_error_does_not_echo_the_value() {
    let schema = stripe_schema();
    let mut charge: serde_json::Value = serde_json::from_str(include_str!("fixtures/stripe_charge.json")).unwrap();
    charge["payment_method_details"]["card"]["number"] = "4242 4242 42xx 4242".into();
    let message = schema.parse_json(&charge).unwrap_err().to_string();
    assert_eq!(
        message,
        "field \"payment_method_details.card.number\" (pan) is not a card number (12-19 digits)"
    );
    charge["payment_method_details"]["card"] = serde_json::json!("flat");
    let error = schema.parse_json(&charge).unwrap_err();
    assert!(matches!(error, RecordError::MissingField { .. }), "{error}");
    let mut charge: serde_json::Value = serde_json::from_str(include_str!("fixtures/stripe_charge.json")).unwrap();
    charge["customer"] = serde_json::json!({"id": "x"});
    assert!(matches!(
        schema.parse_json(&charge).unwrap_err(),
        RecordError::NotScalar { .. }
    ));
}

#[test]
fn card_numbers_need_a_key() {
    let config: SchemaConfig = toml::from_str(include_str!("fixtures/stripe_schema.toml")).unwrap();
    let error = Schema::new(config.clone(), None).unwrap_err();
    assert!(error.to_string().contains("security.card_hash_key"), "{error}");
    assert!(Schema::new(config, Some(&Secret::new("short"))).is_err());
}

#[test]
fn schema_toml_is_checked() {
    for (text, expected) in [
        ("amount_column = \"x\"", "unknown field `amount_column`"),
        (
            "[entities]\ncard = { field = \"x\", hashed = true }",
            "unknown field `hashed`",
        ),
        (
            "[attributes]\nmcc = \"colour\"",
            "attribute mcc: unknown variant `colour`",
        ),
        ("timestamp_format = \"iso\"", "unknown variant `iso`"),
    ] {
        let error = toml::from_str::<SchemaConfig>(text).unwrap_err().to_string();
        assert!(error.contains(expected), "{text}: {error}");
    }
    let mut config = SchemaConfig::default();
    config
        .entities
        .insert("Bad Name".into(), config.entities["customer"].clone());
    assert!(matches!(
        Schema::new(config, None),
        Err(SchemaError::InvalidName { .. })
    ));
    let mut config = SchemaConfig::default();
    config.passthrough.push("is_fraud".into());
    assert!(matches!(
        Schema::new(config, None),
        Err(SchemaError::PassthroughOverlap { .. })
    ));
}

#[test]
fn card_number_fields_cannot_be_reused() {
    let base: SchemaConfig = toml::from_str(include_str!("fixtures/stripe_schema.toml")).unwrap();
    let key = Secret::new(KEY);
    let mut passthrough = base.clone();
    passthrough
        .passthrough
        .push("PAYMENT_METHOD_DETAILS.CARD.NUMBER".into());
    let error = Schema::new(passthrough, Some(&key)).unwrap_err();
    assert!(matches!(error, SchemaError::CardFieldReused { .. }), "{error}");
    let mut attribute = base.clone();
    attribute.attributes.insert(
        "digits".into(),
        fraudlens_core::AttributeField {
            field: Some("payment_method_details.card.number".into()),
            kind: fraudlens_core::AttributeKind::Categorical,
            required: true,
        },
    );
    assert!(error.to_string().contains("would be kept in clear"), "{error}");
    assert!(Schema::new(attribute, Some(&key)).is_err());

    // names are compared as the header binding compares them: ignoring case
    let mut csv = SchemaConfig::default();
    csv.entities.insert(
        "card".into(),
        fraudlens_core::EntityField {
            field: "pan".into(),
            card_number: true,
            optional: false,
        },
    );
    csv.passthrough = vec!["PAN".into()];
    let error = Schema::new(csv, Some(&key)).unwrap_err();
    assert!(matches!(error, SchemaError::CardFieldReused { .. }), "{error}");
}

/// Records from an attack pass on the input handling, kept as fixtures.
fn hostile(name: &str) -> Result<fraudlens_core::Transaction, String> {
    let path = format!("{}/tests/fixtures/hostile/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(path).unwrap();
    let record = fraudlens_core::json::parse(&bytes).map_err(|error| error.to_string())?;
    default_schema().parse_json(&record).map_err(|error| error.to_string())
}

#[test]
fn hostile_records_are_refused_with_the_field() {
    // serde_json alone keeps the last "amount" (9999.00)
    assert_eq!(
        hostile("duplicate_amount.json").unwrap_err(),
        r#"duplicate key "amount" at line 1 column 148"#
    );
    // 0.001 USD used to be stored as 0.00
    assert_eq!(
        hostile("extra_decimals.json").unwrap_err(),
        r#"field "amount": amount "0.001" has more decimals than USD has (2)"#
    );
    // a right-to-left override makes "c1\u{202e}gnp.exe" display as "c1exe.png"
    assert_eq!(
        hostile("bidi_customer.json").unwrap_err(),
        r#"customer key in field "customer_id" contains the invisible or format character U+202E"#
    );
    // e + combining acute is stored as the one code point é; 1.500 has no extra precision
    let tx = hostile("decomposed_customer.json").unwrap();
    assert_eq!(tx.entity(0).unwrap().as_str(), "Jos\u{e9}");
    assert_eq!(tx.amount.minor(), 150);
}

/// Found by `scripts/fuzz` (json_transaction): a record without its numeric
/// attribute (here `outcome.risk_score`, misspelt) parses with NaN, which was
/// stored as `null` in the decision body and then could not be read back,
/// so a restart could not rebuild the entity state. The input is the
/// fuzzer's, kept as it was found.
#[test]
fn fuzz_a_missing_numeric_attribute_reads_back_from_storage() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/fuzz/json_transaction-missing-numeric.json"
    );
    let record = fraudlens_core::json::parse(&std::fs::read(path).unwrap()).unwrap();
    let tx = stripe_schema().parse_json(&record).unwrap();
    assert!(matches!(tx.attributes[2], AttributeValue::Numeric(value) if value.is_nan()));
    let stored = serde_json::to_string(&tx).unwrap();
    let back: fraudlens_core::Transaction = serde_json::from_str(&stored).unwrap();
    assert_eq!(serde_json::to_string(&back).unwrap(), stored);

    // infinities are values (`parse_number` reads `inf`) and read back as themselves
    for (text, expected) in [("inf", f64::INFINITY), ("-inf", f64::NEG_INFINITY), ("1e3", 1000.0)] {
        let mut record = record.clone();
        record["outcome"] = serde_json::json!({ "risk_score": text });
        let tx = stripe_schema().parse_json(&record).unwrap();
        let back: fraudlens_core::Transaction = serde_json::from_str(&serde_json::to_string(&tx).unwrap()).unwrap();
        assert_eq!(back.attributes[2], AttributeValue::Numeric(expected), "{text}");
    }
}
