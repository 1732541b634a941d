//! The inference benchmarks' model: simulated transactions through the
//! default feature engine (57 features), then fraudlens' trainer with
//! depth-wise growth, max depth 6, 200 trees, no early stopping — the shape
//! of the XGBoost models the scoring goal is stated for.

use std::sync::Arc;

use fraudlens_core::{Label, Schema, SchemaConfig};
use fraudlens_features::{FeatureEngine, FeatureSpec, FeatureSpecConfig, Replay};
use fraudlens_model::Forest;
use fraudlens_model::train::{FeatureKind, GbdtParams, Growth, TrainSet, train};
use fraudlens_sim::{SimConfig, Simulator};

/// Feature rows (row-major) and labels of `days` simulated days.
pub fn simulated_rows(customers: u32, days: u32) -> (Vec<f64>, Vec<bool>, usize) {
    let schema = Schema::new(SchemaConfig::default(), None).expect("default schema");
    let spec = Arc::new(FeatureSpec::new(FeatureSpecConfig::default(), &schema).expect("default spec"));
    let n_features = spec.feature_names().len();
    let config = SimConfig {
        customers,
        terminals: customers * 2,
        days,
        ..SimConfig::default()
    };
    let currency = config.currency;
    let mut replay = Replay::new(FeatureEngine::new(spec));
    let (mut values, mut labels, mut out) = (Vec::new(), Vec::new(), Vec::new());
    for day in Simulator::new(config).expect("simulator config") {
        for record in &day {
            let tx = record.to_transaction(currency);
            replay.push(&tx, &mut out);
            values.extend_from_slice(&out);
            labels.push(tx.label == Some(Label::Fraud));
        }
    }
    (values, labels, n_features)
}

/// The benchmark model: depth-wise, max depth 6, 200 trees, trained on the
/// rows of 2,000 customers over 45 days (about 180,000 rows). Returns the
/// forest and the rows.
pub fn depth6_model() -> (Forest, Vec<f64>, usize) {
    let (values, labels, n_features) = simulated_rows(2000, 45);
    let params = GbdtParams {
        n_trees: 200,
        growth: Growth::DepthWise,
        max_depth: 6,
        early_stopping_rounds: 0,
        ..GbdtParams::default()
    }
    .check()
    .expect("valid parameters");
    let set = TrainSet {
        values: &values,
        n_features,
        labels: &labels,
        weights: None,
    };
    let kinds = vec![FeatureKind::Numeric; n_features];
    let trained = train(&params, &kinds, &set, None, &mut |_| {}).expect("training");
    (trained.forest, values, n_features)
}

/// Trees, leaves and depth of a forest, for the record.
pub fn describe(forest: &Forest) -> String {
    let leaves: usize = forest.trees().iter().map(|tree| tree.n_leaves()).sum();
    format!(
        "{} trees, {} leaves ({:.1} per tree), max depth {}, {} features",
        forest.n_trees(),
        leaves,
        leaves as f64 / forest.n_trees() as f64,
        forest.max_depth(),
        forest.n_features()
    )
}
