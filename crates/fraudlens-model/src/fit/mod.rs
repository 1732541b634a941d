//! Fitting a whole model from a [`Table`] of rows: what `fraudlens train`
//! (and each fold of a prequential evaluation) does between reading the
//! rows and writing the artifact.
//!
//! [`gbdt`] cuts the rows *in time* (the latest `valid_fraction` validate,
//! never a random split), trains the trees with early stopping on the later
//! rows, then fits calibration and thresholds and computes the validation
//! metrics on them; with an isolation forest, its score of the training rows
//! becomes one more input. [`isolation_forest`] fits an isolation forest
//! alone, for rows without labels: the review and decline thresholds are
//! quantiles of its scores on those rows.
//!
//! - `params.rs`: the `[train]` table ([`FitParams`] → [`CheckedFitParams`]).
//! - `table.rs`: the rows ([`Table`]): time order, windows, metrics.
//! - `events.rs`: rows of transactions and the attribute encoders fitted on
//!   the training share ([`EventRows`]).
//! - `prequential.rs`: retraining on successive windows, each tested on the
//!   days after a gap ([`prequential()`]).

mod events;
mod params;
mod prequential;
mod table;
mod tune;

use std::error::Error;
use std::time::Instant;

use fraudlens_core::Timestamp;

pub use events::{EventRows, EventTable};
pub use params::{CalibrationMethod, CheckedFitParams, FitParams, ISOTONIC_MIN_FRAUDS};
pub use prequential::{FoldSummary, FoldWindows, Folds, Prequential, WindowResult, prequential, test_window};
pub use table::Table;
pub use tune::{Budget, FOLD_SHARE, Searched, TUNE_FOLDS, Trial, TuneEvent, Tuning, tune};

use crate::artifact::{Artifact, GbdtParts, IsolationForestParts, Refit, TrainingSummary};
use crate::calibration::Calibration;
use crate::drift::Reference;
use crate::iforest::IsolationForest;
use crate::inputs::InputSpec;
use crate::metrics::brier;
use crate::threshold::{Thresholds, choose_thresholds};
use crate::train::{FeatureKind, GbdtParams, Round, train};

/// Why a model could not be fitted.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    /// The time split left no fraud on one side: nothing to learn or to validate on.
    #[error(
        "need fraud rows in both the training part ({train_frauds}) and the validation part ({valid_frauds}) of the window"
    )]
    NoFraudInSplit {
        /// Fraud rows before the split.
        train_frauds: usize,
        /// Fraud rows after it.
        valid_frauds: usize,
    },
    /// A prequential fold reaches outside the rows.
    #[error(
        "fold {}: the data does not cover training {} .. {} and test {} .. {}; use fewer folds or shorter windows",
        .0.fold, .0.train_from, .0.train_to, .0.test_from, .0.test_to
    )]
    FoldNotCovered(FoldWindows),
    /// No rows to evaluate on.
    #[error("no labelled transactions")]
    NoRows,
    /// A tuning fold has no fraud to train on or to score.
    #[error(
        "tuning fold {fold} has {train_frauds} fraud rows to train on and {valid_frauds} to score (the training share holds {rows} rows); tune on a longer window"
    )]
    TuneFold {
        /// The fold, from 1 (the latest).
        fold: usize,
        /// Rows of the training share the folds cut.
        rows: usize,
        /// Fraud rows the fold trains on (before the gap before its validation rows).
        train_frauds: usize,
        /// Fraud rows among them.
        valid_frauds: usize,
    },
    /// The rows do not make a model at this step (training, calibration, thresholds…).
    #[error("{step}")]
    Data {
        /// The step.
        step: &'static str,
        /// Why.
        source: Box<dyn Error + Send + Sync>,
    },
    /// A step that cannot fail on checked rows failed: a bug.
    #[error("{step}")]
    Internal {
        /// The step.
        step: &'static str,
        /// Why.
        source: Box<dyn Error + Send + Sync>,
    },
}

impl FitError {
    /// Whether the data is at fault (rather than the program).
    pub fn is_data_error(&self) -> bool {
        !matches!(self, Self::Internal { .. })
    }
}

/// Tags a step's error with the step's name.
trait Step<T> {
    fn data(self, step: &'static str) -> Result<T, FitError>;
    fn internal(self, step: &'static str) -> Result<T, FitError>;
}

impl<T, E: Error + Send + Sync + 'static> Step<T> for Result<T, E> {
    fn data(self, step: &'static str) -> Result<T, FitError> {
        self.map_err(|error| FitError::Data {
            step,
            source: Box::new(error),
        })
    }

    fn internal(self, step: &'static str) -> Result<T, FitError> {
        self.map_err(|error| FitError::Internal {
            step,
            source: Box::new(error),
        })
    }
}

/// What the artifact records of where a model comes from.
#[derive(Clone, Debug)]
pub struct Provenance {
    /// The data file, as the user named it.
    pub data_source: String,
    /// When the model is made (the caller reads the clock).
    pub created_at: Timestamp,
}

/// Trains trees (early stopping on the later share of rows), then fits
/// calibration and thresholds and computes metrics on that share. With
/// `with_anomaly`, an isolation forest fitted on the training rows adds its
/// score as the last input. `progress` sees every boosting round.
pub fn gbdt(
    params: &CheckedFitParams,
    inputs: InputSpec,
    table: &Table,
    with_anomaly: bool,
    provenance: &Provenance,
    progress: &mut (dyn FnMut(&Round) + Send),
) -> Result<Artifact, FitError> {
    let config = params.get();
    let n_train = params.n_train(table.len());
    let (train_part, valid_part) = (table.slice(0..n_train), table.slice(n_train..table.len()));
    if train_part.frauds() == 0 || valid_part.frauds() == 0 {
        return Err(FitError::NoFraudInSplit {
            train_frauds: train_part.frauds(),
            valid_frauds: valid_part.frauds(),
        });
    }
    let mut kinds = inputs.feature_kinds().internal("feature kinds")?;
    // the isolation forest learns from the training rows only; its score becomes one more input
    let (anomaly, train_part, valid_part) = if with_anomaly {
        let anomaly = fit_isolation_forest(params, &train_part)?;
        let (train_part, valid_part) = (
            with_anomaly_score(&anomaly, &train_part)?,
            with_anomaly_score(&anomaly, &valid_part)?,
        );
        kinds.push(FeatureKind::Numeric);
        (Some(anomaly), train_part, valid_part)
    } else {
        (None, train_part, valid_part)
    };
    let started = Instant::now();
    let trained = train(
        params.gbdt(),
        &kinds,
        &train_part.train_set(),
        Some(&valid_part.train_set()),
        progress,
    )
    .data("training")?;
    let train_seconds = started.elapsed().as_secs_f64();

    let mut raw = vec![0.0; valid_part.len()];
    trained
        .forest
        .predict_raw_batch(&valid_part.values, &mut raw)
        .internal("scoring the validation rows")?;
    let uncalibrated: Vec<f64> = raw.iter().map(|raw| Calibration::Identity.apply(*raw)).collect();
    let labels = &valid_part.labels;
    let calibration = match config.calibration {
        CalibrationMethod::Identity => Ok(Calibration::Identity),
        CalibrationMethod::Platt => Calibration::fit_platt(&raw, labels),
        CalibrationMethod::Isotonic => Calibration::fit_isotonic(&raw, labels),
        CalibrationMethod::Auto if valid_part.frauds() >= ISOTONIC_MIN_FRAUDS => {
            Calibration::fit_isotonic(&raw, labels)
        }
        CalibrationMethod::Auto => Calibration::fit_platt(&raw, labels),
    }
    .data("calibrating")?;
    let probabilities: Vec<f64> = raw.iter().map(|raw| calibration.apply(*raw)).collect();
    let valid_days = valid_part.span_days();
    let threshold_choice = choose_thresholds(
        &probabilities,
        labels,
        &valid_part.amounts,
        params.threshold_objective(),
        config.decline_precision,
        valid_days,
    )
    .data("choosing thresholds")?;
    let validation = valid_part.evaluate(&probabilities, threshold_choice.thresholds.review(), config.k);
    // The validated trees chose the rounds, the calibration and the thresholds from
    // predictions of rows they never saw; refit grows the same number of rounds per
    // row on the whole window, so the latest days count too.
    let (forest, refit) = if config.refit {
        let whole = match &anomaly {
            Some(anomaly) => std::borrow::Cow::Owned(with_anomaly_score(anomaly, table)?),
            None => std::borrow::Cow::Borrowed(table),
        };
        let rounds = (trained.best_round as f64 * whole.len() as f64 / train_part.len() as f64).round() as usize;
        let refit_params = GbdtParams {
            n_trees: rounds.clamp(1, MAX_TREES),
            ..params.gbdt().get().clone()
        }
        .check()
        .internal("refit parameters")?;
        let started = Instant::now();
        let refitted = train(&refit_params, &kinds, &whole.train_set(), None, progress).data("refitting")?;
        let refit = Refit {
            rows: whole.len(),
            frauds: whole.frauds(),
            rounds: refitted.best_round,
            seconds: started.elapsed().as_secs_f64(),
        };
        (refitted.forest, Some(refit))
    } else {
        (trained.forest, None)
    };
    let training = TrainingSummary {
        data_fingerprint: table.fingerprint(),
        data_source: provenance.data_source.clone(),
        train_rows: train_part.len(),
        train_frauds: train_part.frauds(),
        valid_rows: valid_part.len(),
        valid_frauds: valid_part.frauds(),
        train_period: train_part.period(),
        valid_period: valid_part.period(),
        best_round: trained.best_round,
        rounds: trained.history,
        brier_uncalibrated: Some(brier(&uncalibrated, labels)),
        train_seconds,
        refit,
    };
    let parts = GbdtParts {
        inputs,
        params: params.gbdt().get().clone(),
        forest,
        anomaly,
        calibration,
        threshold_choice,
        training,
        validation,
    };
    let mut artifact = Artifact::gbdt(parts, provenance.created_at).internal("building the artifact")?;
    // what drift is measured against: the latest rows of the window (past the warm-up of
    // the feature windows), scored by the model that is served
    let recent = table.slice(n_train..table.len());
    let scores = artifact
        .ranking_batch(&recent.values)
        .internal("scoring the validation rows")?;
    artifact.manifest.reference = Some(reference(&artifact, &recent, &scores));
    Ok(artifact)
}

/// The drift reference of `artifact`'s inputs in `rows` and of its `scores` of them.
fn reference(artifact: &Artifact, rows: &Table, scores: &[f64]) -> Reference {
    let n = artifact.n_inputs();
    let manifest = &artifact.manifest;
    Reference::fit(
        &manifest.feature_names[..n],
        &manifest.feature_kinds[..n],
        &rows.values,
        Some(scores),
    )
}

/// An isolation forest alone, for data without labels: review and decline
/// the configured shares of the most anomalous rows of `table`.
pub fn isolation_forest(
    params: &CheckedFitParams,
    inputs: InputSpec,
    table: &Table,
    provenance: &Provenance,
) -> Result<Artifact, FitError> {
    let config = params.get();
    let started = Instant::now();
    let anomaly = fit_isolation_forest(params, table)?;
    let mut scores = vec![0.0; table.len()];
    anomaly
        .score_batch(&table.values, &mut scores)
        .internal("anomaly scores")?;
    let train_seconds = started.elapsed().as_secs_f64();
    let mut sorted = scores;
    sorted.sort_by(f64::total_cmp);
    let quantile = |share: f64| sorted[((sorted.len() as f64 * (1.0 - share)) as usize).min(sorted.len() - 1)];
    let thresholds = Thresholds::new(
        quantile(config.unsupervised_review_share),
        Some(quantile(config.unsupervised_decline_share)),
    )
    .data("anomaly thresholds")?;
    let training = TrainingSummary {
        data_fingerprint: table.fingerprint(),
        data_source: provenance.data_source.clone(),
        train_rows: table.len(),
        train_frauds: table.frauds(),
        valid_rows: 0,
        valid_frauds: 0,
        train_period: table.period(),
        valid_period: None,
        best_round: 0,
        rounds: Vec::new(),
        brier_uncalibrated: None,
        train_seconds,
        refit: None,
    };
    let parts = IsolationForestParts {
        inputs,
        params: config.gbdt.clone(),
        anomaly,
        thresholds,
        training,
    };
    let mut artifact = Artifact::isolation_forest(parts, provenance.created_at).internal("building the artifact")?;
    let scores = artifact.ranking_batch(&table.values).internal("scoring the rows")?;
    artifact.manifest.reference = Some(reference(&artifact, table, &scores));
    Ok(artifact)
}

/// An isolation forest fitted on the rows of `table`.
/// Most trees a model may have (`GbdtParams::check`); a refit stops there.
const MAX_TREES: usize = 100_000;

/// `part` with the anomaly score of each row as one more input.
fn with_anomaly_score(anomaly: &IsolationForest, part: &Table) -> Result<Table, FitError> {
    let mut scores = vec![0.0; part.len()];
    anomaly
        .score_batch(&part.values, &mut scores)
        .internal("anomaly scores")?;
    Ok(part.with_column(&scores))
}

/// An isolation forest fitted on `table`'s rows.
fn fit_isolation_forest(params: &CheckedFitParams, table: &Table) -> Result<IsolationForest, FitError> {
    params
        .isolation_forest()
        .fit(&table.columns())
        .data("training the isolation forest")
}

#[cfg(test)]
mod tests {
    use fraudlens_core::rng::Rng;

    use super::*;

    /// Two numeric inputs in tabular mode (no times): legitimate rows near
    /// the origin, fraud rows far from it.
    fn rows(n_rows: usize) -> (InputSpec, Table) {
        let mut rng = Rng::new(5, 0);
        let mut table = Table::new(2);
        for row in 0..n_rows {
            let fraud = row % 10 == 0;
            let spread = if fraud { 8.0 } else { 1.0 };
            table.values.push(rng.range(-spread, spread));
            table
                .values
                .push(rng.range(-spread, spread) + if fraud { 3.0 } else { 0.0 });
            table.push_meta(fraud, None, None, 1.0);
        }
        let inputs = InputSpec::numeric(&["x", "y"]);
        (inputs, table)
    }

    fn provenance() -> Provenance {
        Provenance {
            data_source: "rows".to_owned(),
            created_at: Timestamp::from_millis(0),
        }
    }

    #[test]
    fn a_gbdt_is_split_in_order_and_validated_on_the_later_rows() {
        let (inputs, table) = rows(2_000);
        let params = FitParams {
            gbdt: GbdtParams {
                n_trees: 20,
                ..Default::default()
            },
            ..FitParams::default()
        }
        .check()
        .unwrap();
        let mut rounds = 0;
        let artifact = gbdt(&params, inputs, &table, true, &provenance(), &mut |_| rounds += 1).unwrap();
        let training = &artifact.manifest.training;
        assert_eq!((training.train_rows, training.valid_rows), (1_600, 400));
        // progress sees the validated rounds, then the refit's
        let refit = training.refit.as_ref().map_or(0, |refit| refit.rounds);
        assert!(refit > 0, "refit is the default");
        assert_eq!(rounds, training.rounds.len() + refit);
        assert!(artifact.manifest.anomaly_input && artifact.anomaly.is_some());
        assert_eq!(
            artifact.manifest.feature_names.last().map(String::as_str),
            Some(crate::artifact::ANOMALY_FEATURE)
        );
        let validation = artifact.manifest.validation.as_ref().unwrap();
        assert!(validation.roc_auc.unwrap() > 0.8, "{validation:?}");
    }

    /// With `refit`, the served trees are grown again on every row with the
    /// kept rounds scaled to the row count, while the calibration, the
    /// thresholds and the validation metrics stay those of the validated
    /// trees' predictions (the same as without refit).
    #[test]
    fn refit_grows_the_kept_rounds_again_on_every_row() {
        let (inputs, table) = rows(2_000);
        let fit = |refit: bool| {
            let params = FitParams {
                refit,
                gbdt: GbdtParams {
                    n_trees: 40,
                    early_stopping_rounds: 5,
                    ..Default::default()
                },
                ..FitParams::default()
            }
            .check()
            .unwrap();
            gbdt(&params, inputs.clone(), &table, false, &provenance(), &mut |_| {}).unwrap()
        };
        let (validated, refitted) = (fit(false), fit(true));
        assert_eq!(validated.manifest.training.refit, None);
        let refit = refitted.manifest.training.refit.clone().unwrap();
        let kept = validated.manifest.training.best_round;
        assert_eq!((refit.rows, refit.frauds), (2_000, 200));
        assert_eq!(refit.rounds, (kept as f64 * 2_000.0 / 1_600.0).round() as usize);
        assert_eq!(refitted.forest.as_ref().unwrap().trees().len(), refit.rounds);
        assert_eq!(validated.forest.as_ref().unwrap().trees().len(), kept);
        // chosen from the validated trees' predictions: identical with and without refit
        assert_eq!(refitted.manifest.validation, validated.manifest.validation);
        assert_eq!(refitted.manifest.thresholds, validated.manifest.thresholds);
        assert_eq!(refitted.manifest.calibration, validated.manifest.calibration);
        // the served trees differ: they saw the validation rows too
        let row = &table.values[..2];
        let score = |artifact: &Artifact| artifact.forest.as_ref().unwrap().predict_raw(row).unwrap();
        assert_ne!(score(&refitted), score(&validated));
    }

    #[test]
    fn a_split_without_fraud_on_one_side_is_a_data_error() {
        let (inputs, mut table) = rows(100);
        table.labels.iter_mut().skip(50).for_each(|label| *label = false);
        let params = FitParams::default().check().unwrap();
        let error = gbdt(&params, inputs, &table, false, &provenance(), &mut |_| {}).unwrap_err();
        assert!(
            matches!(error, FitError::NoFraudInSplit { valid_frauds: 0, .. }),
            "{error}"
        );
        assert!(error.is_data_error());
    }

    /// Regression: the anomaly score of a row the forest cannot read was
    /// dropped, and an unsupervised model approved the row.
    #[test]
    fn an_isolation_forest_flags_the_configured_shares_and_refuses_short_rows() {
        let (inputs, table) = rows(1_000);
        let params = FitParams::default().check().unwrap();
        let artifact = isolation_forest(&params, inputs, &table, &provenance()).unwrap();
        let scores = artifact.score_batch(&table.values).unwrap();
        let flagged = scores
            .iter()
            .filter(|score| score.decision != fraudlens_core::Decision::Approve)
            .count();
        // the review threshold is the 99th percentile of the training scores
        assert!((5..=20).contains(&flagged), "{flagged}");
        assert!(artifact.score(&[0.0, 0.0]).is_ok());
        assert!(artifact.score(&[0.0]).is_err());
    }
}
