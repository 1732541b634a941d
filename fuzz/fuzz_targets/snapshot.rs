//! Feature snapshots through `FeatureEngine::restore`. The first byte picks
//! the mode: even, the rest is a whole file (magic, version, length, payload,
//! checksum); odd, the rest is a payload that gets a valid frame and checksum,
//! so mutations reach the decoder and the consistency checks behind the
//! checksum. A restored engine must snapshot to the same bytes and observe
//! transactions without panicking.
#![no_main]

use std::sync::{Arc, LazyLock};

use fraudlens_core::{
    Amount, Currency, EntityField, EntityKey, Label, Schema, SchemaConfig, Timestamp, Transaction, TransactionId,
};
use fraudlens_features::{FeatureEngine, FeatureSpec, FeatureSpecConfig, SNAPSHOT_VERSION};
use libfuzzer_sys::fuzz_target;

/// The spec the kept sample `snapshot-v1.bin` was written with.
static SPEC: LazyLock<Arc<FeatureSpec>> = LazyLock::new(|| {
    let mut config = SchemaConfig {
        attributes: Default::default(),
        ..SchemaConfig::default()
    };
    config.entities.insert(
        "terminal".into(),
        EntityField {
            field: "terminal_id".into(),
            card_number: false,
            optional: true,
        },
    );
    let schema = Schema::new(config, None).expect("schema");
    let spec: FeatureSpecConfig = toml::from_str(include_str!(
        "../../crates/fraudlens-features/tests/fixtures/small_windows.toml"
    ))
    .expect("spec fixture");
    Arc::new(FeatureSpec::new(spec, &schema).expect("spec"))
});

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let bytes = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        let mut bytes = b"FLFEAT\0\0".to_vec();
        bytes.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&(rest.len() as u64).to_le_bytes());
        bytes.extend_from_slice(rest);
        bytes.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(rest).to_le_bytes());
        bytes
    };
    let Ok(mut engine) = FeatureEngine::restore(SPEC.clone(), &bytes) else {
        return;
    };
    let again = engine.snapshot();
    let restored = FeatureEngine::restore(SPEC.clone(), &again).expect("a snapshot of a restored engine restores");
    assert_eq!(restored.snapshot(), again);
    let eur = Currency::parse("EUR").expect("currency");
    let mut out = Vec::new();
    for (idx, (customer, terminal, ms)) in [
        ("c0", "t0", 0),
        ("c1", "t1", 1_767_225_600_000),
        ("c2", "t2", i64::MAX / 4),
    ]
    .into_iter()
    .enumerate()
    {
        let tx = Transaction {
            id: TransactionId::parse(&format!("fuzz{idx}")).expect("id"),
            timestamp: Timestamp::from_millis(ms),
            amount: Amount::from_minor(1234, eur).expect("amount"),
            entities: vec![
                Some(EntityKey::parse(customer).expect("key")),
                Some(EntityKey::parse(terminal).expect("key")),
            ],
            attributes: Vec::new(),
            label: None,
        };
        engine.observe(&tx, &mut out);
        engine.apply_label(&tx, Label::Fraud);
    }
});
