//! A JSON body or Kafka record through `json::parse` and `Schema::parse_json`
//! (the default schema, and the Stripe schema with dotted paths and a hashed
//! card number), as the API and the detector read them.
#![no_main]

use std::sync::LazyLock;

use fraudlens_core::json::JsonError;
use fraudlens_core::{EntityKey, Schema, SchemaConfig, Secret, Transaction, TransactionId};
use libfuzzer_sys::fuzz_target;

static SCHEMAS: LazyLock<[Schema; 2]> = LazyLock::new(|| {
    let stripe: SchemaConfig = toml::from_str(include_str!(
        "../../crates/fraudlens-core/tests/fixtures/stripe_schema.toml"
    ))
    .expect("stripe schema fixture");
    [
        Schema::new(SchemaConfig::default(), None).expect("default schema"),
        Schema::new(stripe, Some(&Secret::new("fuzz-key-0123456789abcdef"))).expect("stripe schema"),
    ]
});

fuzz_target!(|data: &[u8]| {
    let strict = fraudlens_core::json::parse(data);
    let lenient = serde_json::from_slice::<serde_json::Value>(data);
    match &strict {
        // what the strict parse accepts, serde_json reads the same way
        Ok(value) => assert_eq!(Some(value), lenient.as_ref().ok()),
        Err(JsonError::Syntax { .. }) => assert!(lenient.is_err()),
        Err(JsonError::DuplicateKey { .. } | JsonError::TooDeep { .. }) => {}
    }
    let Ok(record) = strict else { return };
    for schema in SCHEMAS.iter() {
        let Ok(tx) = schema.parse_json(&record) else { continue };
        check(&tx);
        let _ = schema.json_passthrough(&record);
    }
});

/// What every parsed transaction must satisfy.
fn check(tx: &Transaction) {
    // ids are fixed points of their own parser
    assert_eq!(TransactionId::parse(tx.id.as_str()).as_ref(), Ok(&tx.id));
    for key in tx.entities.iter().flatten() {
        assert_eq!(EntityKey::parse(key.as_str()).as_ref(), Ok(key));
    }
    assert!(tx.amount.minor() >= 0);
    let _ = tx.amount.micros();
    // the stored form (decision bodies) reads back as the same transaction
    let stored = serde_json::to_string(tx).expect("a transaction serialises");
    let back: Transaction = serde_json::from_str(&stored).expect("a stored transaction reads back");
    assert_eq!(serde_json::to_string(&back).expect("serialises"), stored);
}
