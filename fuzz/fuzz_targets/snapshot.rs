//! Feature snapshots through `FeatureEngine::restore`, and one entity's
//! stored form (what a shared state in Redis holds) through
//! `FeatureEngine::import_entity`. The first byte picks the mode (mod 3): 0,
//! the rest is a whole file (magic, version, length, payload, checksum); 1,
//! the rest is a payload that gets a valid frame and checksum, so mutations
//! reach the decoder and the consistency checks behind the checksum; 2, the
//! rest is a block number and an entity's stored form. A restored engine
//! must snapshot to the same bytes (an imported entity export to bytes that
//! import again to the same), and observe transactions without panicking.
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

/// The transactions observed after a restore (customer, terminal, time).
fn transactions() -> Vec<Transaction> {
    let eur = Currency::parse("EUR").expect("currency");
    [
        ("c0", "t0", 0),
        ("c1", "t1", 1_767_225_600_000),
        ("c2", "t2", i64::MAX / 4),
    ]
    .into_iter()
    .enumerate()
    .map(|(idx, (customer, terminal, ms))| Transaction {
        id: TransactionId::parse(&format!("fuzz{idx}")).expect("id"),
        timestamp: Timestamp::from_millis(ms),
        amount: Amount::from_minor(1234, eur).expect("amount"),
        entities: vec![
            Some(EntityKey::parse(customer).expect("key")),
            Some(EntityKey::parse(terminal).expect("key")),
        ],
        attributes: Vec::new(),
        label: None,
    })
    .collect()
}

fn observe_all(engine: &mut FeatureEngine) {
    let mut out = Vec::new();
    for tx in transactions() {
        engine.observe(&tx, &mut out);
        engine.apply_label(&tx, Label::Fraud);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 3 == 2 {
        let Some((&block, form)) = rest.split_first() else {
            return;
        };
        let mut engine = FeatureEngine::new(SPEC.clone());
        // the entity of the first transaction's customer or terminal
        let refs = engine.entity_refs(&transactions()[0]);
        let at = refs[usize::from(block) % refs.len()];
        if engine.import_entity(at, Some(form)).is_err() {
            assert!(engine.export_entity(at).is_none(), "a refused form leaves no state");
            return;
        }
        let exported = engine.export_entity(at).expect("an imported entity exports");
        let mut again = FeatureEngine::new(SPEC.clone());
        again
            .import_entity(at, Some(&exported))
            .expect("an exported entity imports");
        assert_eq!(again.export_entity(at), Some(exported));
        observe_all(&mut engine);
        return;
    }
    let bytes = if mode % 3 == 0 {
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
    observe_all(&mut engine);
});
