//! fraudlens models: everything between a feature matrix and a fraud probability.
//!
//! - [`metrics`]: ROC AUC, average precision, confusion at a threshold,
//!   precision@k and card precision@k per day, Brier score, reliability table.
//! - [`threshold`]: choose `review` / `decline` thresholds (max F1, min expected
//!   cost, target precision or recall).
//! - [`calibration`]: isotonic and Platt calibration of raw scores.
//! - [`iforest`]: isolation forest anomaly scores for unlabeled data.

pub mod calibration;
pub mod iforest;
pub mod metrics;
pub mod threshold;
