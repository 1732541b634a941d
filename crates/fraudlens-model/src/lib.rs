//! fraudlens models: everything between a feature matrix and a fraud probability.
//!
//! - [`train`]: the histogram gradient-boosted tree trainer.
//! - [`fit`]: a whole model from rows: time split, trees, calibration,
//!   thresholds, validation metrics; prequential evaluation.
//! - [`inputs`]: how a transaction or tabular row becomes the model's input row.
//! - [`artifact`]: the versioned, checksummed model directory.
//! - [`tree`]: decision trees as plain values, the exchange format.
//! - [`Forest`]: the flattened inference engine, single-row and batch.
//! - [`shap`]: exact path-dependent TreeSHAP per-feature contributions.
//! - [`metrics`]: ROC AUC, average precision, confusion at a threshold,
//!   precision@k and card precision@k per day, Brier score, reliability table.
//! - [`threshold`]: choose `review` / `decline` thresholds (max F1, min expected
//!   cost, target precision or recall).
//! - [`calibration`]: isotonic and Platt calibration of raw scores.
//! - [`iforest`]: isolation forest anomaly scores for unlabeled data.
//! - [`drift`]: the inputs' and the score's distributions at training, and
//!   how far live ones moved (PSI, KS, missing rate).
//! - [`compare`]: champion/challenger — two models on the same rows, metric
//!   differences with bootstrap intervals, the promotion rule.

pub mod artifact;
mod binning;
pub mod calibration;
pub mod compare;
pub mod drift;
pub mod fit;
mod forest;
pub mod iforest;
pub mod inputs;
pub mod interop;
pub mod metrics;
pub mod onnx;
pub mod report;
pub mod shap;
pub mod threshold;
pub mod train;
pub mod tree;

pub use forest::{Forest, ForestData, InputPrecision};

/// Errors of model building, loading and use.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The model itself is malformed (an imported or stored file).
    #[error("invalid model: {0}")]
    InvalidModel(String),
    /// A training parameter is out of range.
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// The training data cannot be used.
    #[error("invalid training data: {0}")]
    InvalidData(String),
}

impl ModelError {
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self::InvalidModel(reason.into())
    }
}
