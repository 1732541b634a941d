//! The `[train]` table: how a model is fitted around the trees (time split,
//! calibration, thresholds, metrics, the unsupervised shares) and the tree and
//! isolation forest parameters. [`FitParams`] is the table as written;
//! [`FitParams::check`] turns it into [`CheckedFitParams`], the only type the
//! fitting functions take, so a fraction out of range is refused before any
//! data is read.

use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::iforest::{IsolationForestParams, ValidIsolationForestParams};
use crate::threshold::ThresholdObjective;
use crate::train::{CheckedParams, GbdtParams};

/// How raw scores become probabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalibrationMethod {
    /// Isotonic with at least [`ISOTONIC_MIN_FRAUDS`] validation frauds, else Platt.
    Auto,
    /// Isotonic regression (PAVA).
    Isotonic,
    /// Platt scaling.
    Platt,
    /// The logistic of the raw score, uncalibrated.
    #[serde(rename = "none")]
    Identity,
}

/// Validation frauds from which `auto` calibration is isotonic.
pub const ISOTONIC_MIN_FRAUDS: usize = 1000;

/// The `[train]` table as written in a config file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FitParams {
    /// Share of the window's rows, the latest in time, used for early
    /// stopping, calibration, thresholds and validation metrics.
    pub valid_fraction: f64,
    /// After the validation rows chose the rounds, the calibration and the
    /// thresholds, grow the trees again on every row of the window (the
    /// rounds scaled to the larger row count).
    pub refit: bool,
    /// `auto` (isotonic with ≥ 1000 validation frauds, else Platt), `isotonic`, `platt` or `none`.
    pub calibration: CalibrationMethod,
    /// How the review threshold is chosen.
    pub threshold_objective: ThresholdObjective,
    /// Precision the decline threshold must reach on the validation rows.
    pub decline_precision: f64,
    /// Reviews the analysts can do per day. When set, the decline threshold
    /// is the lowest reaching `decline_precision` and the review threshold
    /// opens the band below it to this many transactions per day of the
    /// validation rows ([`ThresholdObjective::ReviewCapacity`]), instead of
    /// `threshold_objective`. Needs transaction times (event mode).
    pub review_capacity_per_day: Option<f64>,
    /// k of the precision@k metrics (alerts an analyst team checks per day).
    pub k: usize,
    /// Share of training rows an unsupervised model (`--unsupervised`) sends
    /// to review: the review threshold is that quantile of anomaly scores.
    pub unsupervised_review_share: f64,
    /// Share an unsupervised model declines.
    pub unsupervised_decline_share: f64,
    /// Gradient-boosted tree parameters.
    pub gbdt: GbdtParams,
    /// Isolation forest parameters (`--anomaly`, `--unsupervised`).
    pub isolation_forest: IsolationForestParams,
}

impl Default for FitParams {
    fn default() -> Self {
        Self {
            valid_fraction: 0.2,
            refit: true,
            calibration: CalibrationMethod::Auto,
            threshold_objective: ThresholdObjective::MaxF1,
            decline_precision: 0.95,
            review_capacity_per_day: None,
            k: 100,
            unsupervised_review_share: 0.01,
            unsupervised_decline_share: 0.001,
            gbdt: GbdtParams::default(),
            isolation_forest: IsolationForestParams::default(),
        }
    }
}

/// Parameters that passed [`FitParams::check`].
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedFitParams {
    params: FitParams,
    gbdt: CheckedParams,
    isolation_forest: ValidIsolationForestParams,
}

impl FitParams {
    /// Checks every fraction, the tree parameters and the isolation forest's.
    pub fn check(self) -> Result<CheckedFitParams, ModelError> {
        let fail = |what: String| Err(ModelError::InvalidParameter(what));
        if !(self.valid_fraction > 0.0 && self.valid_fraction < 1.0) {
            return fail(format!(
                "valid_fraction must be between 0 and 1 (got {})",
                self.valid_fraction
            ));
        }
        if !(self.decline_precision > 0.0 && self.decline_precision <= 1.0) {
            return fail(format!(
                "decline_precision must be in (0, 1] (got {})",
                self.decline_precision
            ));
        }
        if let Some(per_day) = self.review_capacity_per_day {
            if !(per_day.is_finite() && per_day > 0.0) {
                return fail(format!(
                    "review_capacity_per_day must be a positive number (got {per_day})"
                ));
            }
            if self.threshold_objective != ThresholdObjective::MaxF1 {
                return fail(
                    "review_capacity_per_day and threshold_objective both choose the review threshold: set one"
                        .to_owned(),
                );
            }
        }
        let (review, decline) = (self.unsupervised_review_share, self.unsupervised_decline_share);
        if !(review > 0.0 && review < 1.0 && decline > 0.0 && decline <= review) {
            return fail(
                "unsupervised_review_share and unsupervised_decline_share must satisfy 0 < decline ≤ review < 1"
                    .to_owned(),
            );
        }
        let gbdt = self.gbdt.clone().check()?;
        let isolation_forest = self
            .isolation_forest
            .check()
            .map_err(|error| ModelError::InvalidParameter(format!("isolation_forest: {error}")))?;
        Ok(CheckedFitParams {
            params: self,
            gbdt,
            isolation_forest,
        })
    }
}

impl CheckedFitParams {
    /// The parameters.
    pub fn get(&self) -> &FitParams {
        &self.params
    }

    /// How the review threshold is chosen: the capacity when one is set.
    pub fn threshold_objective(&self) -> ThresholdObjective {
        match self.params.review_capacity_per_day {
            Some(per_day) => ThresholdObjective::ReviewCapacity { per_day },
            None => self.params.threshold_objective,
        }
    }

    /// The tree parameters.
    pub fn gbdt(&self) -> &CheckedParams {
        &self.gbdt
    }

    /// The isolation forest parameters.
    pub fn isolation_forest(&self) -> &ValidIsolationForestParams {
        &self.isolation_forest
    }

    /// The time split of `n_rows` rows in time order: rows before this index
    /// train, the rest (the latest `valid_fraction`) validate.
    pub fn n_train(&self, n_rows: usize) -> usize {
        n_rows - ((n_rows as f64) * self.params.valid_fraction).round() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_are_checked_when_read() {
        let bad = [
            FitParams {
                valid_fraction: 1.0,
                ..FitParams::default()
            },
            FitParams {
                decline_precision: 0.0,
                ..FitParams::default()
            },
            FitParams {
                unsupervised_decline_share: 0.5,
                ..FitParams::default()
            },
            FitParams {
                isolation_forest: IsolationForestParams {
                    n_trees: 0,
                    ..IsolationForestParams::default()
                },
                ..FitParams::default()
            },
        ];
        for params in bad {
            assert!(matches!(params.check(), Err(ModelError::InvalidParameter(_))));
        }
        let checked = FitParams::default().check().unwrap();
        assert_eq!(checked.n_train(10), 8);
        assert_eq!(checked.n_train(0), 0);
    }

    #[test]
    fn calibration_methods_read_as_written() {
        for (text, method) in [
            ("auto", CalibrationMethod::Auto),
            ("isotonic", CalibrationMethod::Isotonic),
            ("platt", CalibrationMethod::Platt),
            ("none", CalibrationMethod::Identity),
        ] {
            assert_eq!(
                serde_json::from_str::<CalibrationMethod>(&format!("\"{text}\"")).unwrap(),
                method
            );
            assert_eq!(serde_json::to_string(&method).unwrap(), format!("\"{text}\""));
        }
    }
}
