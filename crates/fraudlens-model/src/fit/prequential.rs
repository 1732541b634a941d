//! Prequential evaluation: a model's parameters retrained on several
//! successive windows of rows, each tested on the days after a gap for the
//! label delay (labels not yet known when the model would have been
//! trained), reported per fold and as mean ± std.
//!
//! Folds go back from the last full day: fold `f` (from 0) tests
//! `[end - (f+1)·fold, end - f·fold)` and trains on `train_days` ending
//! `gap_days` before its test.

use std::num::NonZeroUsize;

use fraudlens_core::Timestamp;
use serde::Serialize;

use super::{CheckedFitParams, FitError, Provenance, Step, Table};
use crate::artifact::{Artifact, ModelKind};
use crate::inputs::InputSpec;
use crate::metrics::{Evaluation, MeanStd, mean_std};
use crate::train::Round;

const DAY_MS: i64 = 86_400_000;

/// How the folds are laid out.
#[derive(Clone, Copy, Debug)]
pub struct Folds {
    /// Number of folds.
    pub n_folds: NonZeroUsize,
    /// Days of each test fold.
    pub fold_days: u32,
    /// Days of training rows before each fold's gap.
    pub train_days: u32,
    /// Days between training and test; `None`: the model's label delay, in whole days.
    pub gap_days: Option<u32>,
    /// k of precision@k and card precision@k per day.
    pub k: usize,
}

/// The windows of one fold, each `[from, to)`.
#[derive(Clone, Debug)]
pub struct FoldWindows {
    /// The fold, from 1.
    pub fold: usize,
    /// Start of the training window.
    pub train_from: Timestamp,
    /// End of the training window.
    pub train_to: Timestamp,
    /// Start of the test window.
    pub test_from: Timestamp,
    /// End of the test window.
    pub test_to: Timestamp,
}

/// `artifact` tested on the rows of `table` in `[from, to)`, as it is (no
/// retraining); `None` when the window has no rows.
pub fn test_window(
    artifact: &Artifact,
    table: &Table,
    from: i64,
    to: i64,
    k: usize,
) -> Result<Option<WindowResult>, crate::ModelError> {
    let test = table.slice(table.rows_between(from, to));
    // event-mode rows all have a time: no period, no rows
    let Some(test_period) = test.period() else {
        return Ok(None);
    };
    let probabilities = artifact.ranking_batch(&test.values)?;
    Ok(Some(WindowResult {
        train: None,
        test: test_period,
        metrics: test.evaluate(&probabilities, artifact.manifest.thresholds.review(), k),
    }))
}

/// One evaluated window.
#[derive(Debug, Serialize)]
pub struct WindowResult {
    /// Training window (prequential folds only).
    #[serde(serialize_with = "crate::artifact::period_text::serialize")]
    pub train: Option<(Timestamp, Timestamp)>,
    /// Tested window (first and last transaction).
    #[serde(serialize_with = "crate::artifact::period_text::serialize_pair")]
    pub test: (Timestamp, Timestamp),
    /// The metrics.
    pub metrics: Evaluation,
}

/// Mean ± std of the main metrics over folds.
#[derive(Debug, Serialize)]
pub struct FoldSummary {
    /// ROC AUC.
    pub roc_auc: MeanStd,
    /// Average precision.
    pub average_precision: MeanStd,
    /// Card precision@k per day.
    pub card_precision_at_k: MeanStd,
    /// Precision@k per day.
    pub precision_at_k: MeanStd,
    /// Brier score.
    pub brier: MeanStd,
}

/// What [`prequential()`] gives.
#[derive(Debug)]
pub struct Prequential {
    /// Each fold, the latest first.
    pub windows: Vec<WindowResult>,
    /// Mean ± std over the folds.
    pub summary: FoldSummary,
}

/// Retrains a model of `artifact`'s kind and inputs with `params` on each
/// fold of `table` (event rows in time order) and tests it on the fold's
/// test window. `on_fold` sees each fold before it is trained; `progress`
/// sees every boosting round.
pub fn prequential(
    artifact: &Artifact,
    table: &Table,
    params: &CheckedFitParams,
    folds: &Folds,
    provenance: &Provenance,
    on_fold: &mut dyn FnMut(&FoldWindows),
    progress: &mut (dyn FnMut(&Round) + Send),
) -> Result<Prequential, FitError> {
    let Some(&last) = table.times.last() else {
        return Err(FitError::NoRows);
    };
    let manifest = &artifact.manifest;
    let label_delay_days = match &manifest.inputs {
        InputSpec::Events { features, .. } => (features.label_delay.as_millis() + DAY_MS - 1) / DAY_MS,
        InputSpec::Tabular { .. } => 0,
    };
    let gap = i64::from(folds.gap_days.unwrap_or(label_delay_days as u32)) * DAY_MS;
    let fold = i64::from(folds.fold_days) * DAY_MS;
    let train_span = i64::from(folds.train_days) * DAY_MS;
    let end = (last.div_euclid(DAY_MS) + 1) * DAY_MS;
    let mut windows = Vec::new();
    for f in 0..folds.n_folds.get() as i64 {
        let (test_from, test_to) = (end - (f + 1) * fold, end - f * fold);
        let (train_from, train_to) = (test_from - gap - train_span, test_from - gap);
        let fold_windows = FoldWindows {
            fold: f as usize + 1,
            train_from: Timestamp::from_millis(train_from),
            train_to: Timestamp::from_millis(train_to),
            test_from: Timestamp::from_millis(test_from),
            test_to: Timestamp::from_millis(test_to),
        };
        let (train_rows, test_rows) = (
            table.rows_between(train_from, train_to),
            table.rows_between(test_from, test_to),
        );
        if train_rows.is_empty() || test_rows.is_empty() || table.times.first().is_none_or(|&first| first > train_from)
        {
            return Err(FitError::FoldNotCovered(fold_windows));
        }
        on_fold(&fold_windows);
        let train_table = table.slice(train_rows);
        let inputs = manifest.inputs.clone();
        let model = match manifest.kind {
            ModelKind::Gbdt => super::gbdt(
                params,
                inputs,
                &train_table,
                manifest.anomaly_input,
                provenance,
                progress,
            )?,
            ModelKind::IsolationForest => super::isolation_forest(params, inputs, &train_table, provenance)?,
            ModelKind::Onnx => {
                return Err(FitError::Data {
                    step: "an imported ONNX model cannot be retrained by fraudlens",
                    source: "retrain it where it was made".into(),
                });
            }
        };
        let test = table.slice(test_rows);
        // both windows hold rows (checked above)
        let Some(test_period) = test.period() else {
            return Err(FitError::FoldNotCovered(fold_windows));
        };
        let probabilities = model.ranking_batch(&test.values).internal("scoring")?;
        windows.push(WindowResult {
            train: train_table.period(),
            test: test_period,
            metrics: test.evaluate(&probabilities, model.manifest.thresholds.review(), folds.k),
        });
    }
    let collect = |metric: &dyn Fn(&Evaluation) -> Option<f64>| {
        mean_std(&windows.iter().filter_map(|w| metric(&w.metrics)).collect::<Vec<_>>())
    };
    let summary = FoldSummary {
        roc_auc: collect(&|m| m.roc_auc),
        average_precision: collect(&|m| m.average_precision),
        card_precision_at_k: collect(&|m| m.card_precision_at_k.as_ref().map(|p| p.mean)),
        precision_at_k: collect(&|m| m.precision_at_k.as_ref().map(|p| p.mean)),
        brier: collect(&|m| Some(m.brier)),
    };
    Ok(Prequential { windows, summary })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// The rows of the window only, scored as they are; an empty window is `None`.
    #[test]
    fn a_test_window_scores_the_rows_inside_it() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/artifact-v1");
        let artifact = Artifact::load(&dir).unwrap();
        let n = artifact.n_inputs();
        let mut table = Table::new(n);
        for (idx, time) in [1_000, 2_000, 3_000, 4_000].into_iter().enumerate() {
            table.values.extend(std::iter::repeat_n(idx as f64, n));
            table.push_meta(idx % 2 == 1, Some(time), Some(idx as u64), 10.0);
        }
        let tested = test_window(&artifact, &table, 2_000, 4_000, 10).unwrap().unwrap();
        assert_eq!(
            tested.test,
            (Timestamp::from_millis(2_000), Timestamp::from_millis(3_000))
        );
        assert!(tested.train.is_none());
        assert!(test_window(&artifact, &table, 5_000, 6_000, 10).unwrap().is_none());
    }
}
