//! The entity feature engine of fraudlens.
//!
//! A [`FeatureSpec`] (from the `[features]` TOML table, with a default that
//! needs no configuration) declares per-entity sliding-window aggregates of the
//! amount, time since the previous transaction, distinct counts of other keys,
//! label-delayed risk and calendar features. A [`FeatureEngine`] keeps the
//! state and turns each transaction into a feature vector. The engine is pure:
//! no IO, no clock, no async — time comes from the event — so the same code
//! runs in offline [`Replay`] (training) and online scoring, and replaying a
//! history gives bit-identical vectors to feeding it record by record.
//!
//! ```
//! use std::sync::Arc;
//! use fraudlens_core::{Schema, SchemaConfig};
//! use fraudlens_features::{FeatureEngine, FeatureSpec, FeatureSpecConfig};
//!
//! let schema = Schema::new(SchemaConfig::default(), None).unwrap();
//! let spec = Arc::new(FeatureSpec::new(FeatureSpecConfig::default(), &schema).unwrap());
//! let mut engine = FeatureEngine::new(spec.clone());
//!
//! let header = ["transaction_id", "timestamp", "customer_id", "terminal_id", "amount"];
//! let binding = schema.bind_columns(&header).unwrap();
//! let mut features = Vec::new();
//! for (id, amount) in [("t1", "10"), ("t2", "30")] {
//!     let row = [id, "2026-01-01T10:00:00Z", "c1", "term1", amount];
//!     let tx = schema.parse_row(&binding, |idx| row.get(idx).copied()).unwrap();
//!     engine.observe(&tx, &mut features);
//! }
//! let mean_1d = spec.feature_names().iter().position(|name| name == "customer_mean_1d").unwrap();
//! assert_eq!(features[mean_1d], 20.0);
//! ```

mod engine;
mod entity_form;
mod event_time;
mod replay;
mod snapshot;
mod spec;

pub use engine::{EventTimeError, EventTimePolicy, FeatureEngine, LabelOutcome, LabelTarget, Refusal};
pub use event_time::{EventTimeSettings, TimeBound};
pub use replay::Replay;
pub use snapshot::{EntityRef, SNAPSHOT_VERSION, SnapshotError};
pub use spec::{Aggregate, DistinctConfig, EntityFeaturesConfig, FeatureSpec, FeatureSpecConfig, SpecError};
