//! Random transaction histories for property tests, and the schemas/specs they use.

use std::sync::Arc;

use fraudlens_core::{
    Amount, Currency, EntityField, EntityKey, Label, Schema, SchemaConfig, Timestamp, Transaction, TransactionId,
};
use fraudlens_features::{FeatureSpec, FeatureSpecConfig};
use proptest::prelude::*;

/// customer (required) and terminal (optional) entities, no attributes.
pub fn schema() -> Schema {
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
    Schema::new(config, None).unwrap()
}

pub fn small_spec() -> Arc<FeatureSpec> {
    let config: FeatureSpecConfig = toml::from_str(include_str!("../fixtures/small_windows.toml")).unwrap();
    Arc::new(FeatureSpec::new(config, &schema()).unwrap())
}

pub fn default_spec() -> Arc<FeatureSpec> {
    Arc::new(FeatureSpec::new(FeatureSpecConfig::default(), &schema()).unwrap())
}

pub fn tx(idx: usize, ms: i64, customer: u8, terminal: Option<u8>, cents: i64, fraud: bool) -> Transaction {
    Transaction {
        id: TransactionId::parse(&format!("tx{idx}")).unwrap(),
        timestamp: Timestamp::from_millis(ms),
        amount: Amount::from_minor(cents, Currency::parse("EUR").unwrap()).unwrap(),
        entities: vec![
            Some(EntityKey::parse(&format!("c{customer}")).unwrap()),
            terminal.map(|t| EntityKey::parse(&format!("t{t}")).unwrap()),
        ],
        attributes: Vec::new(),
        label: Some(if fraud { Label::Fraud } else { Label::Legit }),
    }
}

const START_MS: i64 = 1_767_225_600_000; // 2026-01-01

/// Gaps between consecutive transactions: bursts, minutes, hours, days and
/// weeks (past every window and the state horizon), and a few steps back in
/// time (late events).
fn gap() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => Just(0i64),
        // exact window and delay lengths, so events land precisely on window edges
        3 => prop::sample::select(vec![1i64, 1_800_000, 3_600_000, 7_200_000, 10_800_000, 21_600_000, 86_400_000, 604_800_000]),
        4 => 0i64..120_000,
        4 => 0i64..7_200_000,
        2 => 0i64..172_800_000,
        1 => 0i64..3_456_000_000,
        1 => -7_200_000i64..0,
    ]
}

/// A history of 1–80 transactions over few customers and terminals.
pub fn history() -> impl Strategy<Value = Vec<Transaction>> {
    prop::collection::vec(
        (
            gap(),
            0u8..4,
            prop::option::weighted(0.85, 0u8..4),
            prop_oneof![1 => Just(0i64), 9 => 1i64..100_000],
            prop::bool::weighted(0.25),
        ),
        1..80,
    )
    .prop_map(|steps| {
        let mut ms = START_MS;
        steps
            .into_iter()
            .enumerate()
            .map(|(idx, (gap, customer, terminal, cents, fraud))| {
                ms += gap;
                tx(idx, ms, customer, terminal, cents, fraud)
            })
            .collect()
    })
}

/// Bitwise equality, with every NaN equal to every other NaN.
pub fn same_bits(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
}
