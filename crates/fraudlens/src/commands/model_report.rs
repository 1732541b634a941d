//! The model reports for the terminal: what `train` fitted and what
//! `evaluate` measured (and what `evaluate --json` writes).

use std::fmt::Write as _;

use fraudlens_model::artifact::{Manifest, ModelKind};
use fraudlens_model::calibration::Calibration;
use fraudlens_model::fit::{FoldSummary, Tuning, WindowResult};
use fraudlens_model::metrics::Evaluation;
use fraudlens_model::threshold::{ThresholdChoice, ThresholdObjective, Thresholds};
use serde::Serialize;

/// What `evaluate --json` holds.
#[derive(Debug, Serialize)]
pub struct EvaluateReport {
    /// The model evaluated (its parameters, for prequential folds).
    pub model_id: String,
    /// Each window.
    pub windows: Vec<WindowResult>,
    /// Mean ± std over prequential folds.
    pub summary: Option<FoldSummary>,
}

/// The training report.
pub fn render_training(manifest: &Manifest) -> String {
    let training = &manifest.training;
    let mut out = String::new();
    if manifest.kind == ModelKind::IsolationForest {
        let thresholds = &manifest.thresholds;
        out.push_str(&format!(
            "fitted an isolation forest in {:.1}s on {} rows; anomaly score thresholds: review ≥ {:.4}, decline ≥ {}\n",
            training.train_seconds,
            training.train_rows,
            thresholds.review(),
            thresholds
                .decline()
                .map_or_else(|| "never".to_owned(), |d| format!("{d:.4}"))
        ));
        return out;
    }
    let _ = writeln!(out, "{}", training.describe());
    if let Some(refit) = &training.refit {
        let _ = writeln!(out, "  {}", refit.describe());
    }
    if let (Some(train), Some(valid)) = (&training.train_period, &training.valid_period) {
        out.push_str(&format!(
            "  training period {} .. {}; validation period {} .. {}\n",
            train.0, train.1, valid.0, valid.1
        ));
    }
    if let Some(validation) = &manifest.validation {
        out.push_str(&render_evaluation(
            "validation (the same rows chose the round, calibration and thresholds: optimistic; use `evaluate` on later data)",
            validation,
        ));
    }
    if let Some(before) = training.brier_uncalibrated
        && let Some(validation) = &manifest.validation
    {
        out.push_str(&format!(
            "  calibration: {} (Brier {:.5} → {:.5})\n",
            calibration_name(&manifest.calibration),
            before,
            validation.brier
        ));
    }
    out.push_str(&render_thresholds(
        &manifest.thresholds,
        manifest.threshold_choice.as_ref(),
    ));
    out.push_str("  top features by gain:");
    for (name, gain) in manifest.gain_importance.iter().take(8) {
        out.push_str(&format!(" {name} ({gain:.0})"));
    }
    out.push('\n');
    out
}

fn calibration_name(calibration: &Calibration) -> &'static str {
    match calibration {
        Calibration::Identity => "none",
        Calibration::Platt { .. } => "platt",
        Calibration::Isotonic(_) => "isotonic",
    }
}

fn render_thresholds(thresholds: &Thresholds, choice: Option<&ThresholdChoice>) -> String {
    let decline = thresholds.decline().map_or_else(
        || "never (no threshold reaches the decline precision)".to_owned(),
        |d| format!("{d:.4}"),
    );
    let mut out = format!(
        "  thresholds: review ≥ {:.4}, decline ≥ {decline}\n",
        thresholds.review()
    );
    if let Some(choice) = choice {
        let at = &choice.at_review;
        out.push_str(&format!(
            "    at review: precision {:.3}, recall {:.3}, {} flagged\n",
            at.precision, at.recall, at.flagged
        ));
        out.push_str(&render_review_band(choice));
    }
    out
}

/// What the analysts would have received on the validation rows, and a
/// warning when it is nothing.
fn render_review_band(choice: &ThresholdChoice) -> String {
    let band = choice.review_band();
    let mut out = format!(
        "    review band (reviewed, not declined): {} transactions",
        band.flagged
    );
    if let (Some(per_day), Some(days)) = (band.per_day, choice.valid_days) {
        let _ = write!(out, ", {per_day:.1} a day over {days:.1} days");
    }
    if let ThresholdObjective::ReviewCapacity { per_day } = choice.objective {
        let _ = write!(out, " (capacity {per_day} a day)");
    }
    if band.flagged > 0 {
        let _ = write!(
            out,
            "; {} fraud (precision {:.3})",
            band.frauds,
            band.frauds as f64 / band.flagged as f64
        );
    }
    out.push('\n');
    if let Some(declined) = &choice.at_decline {
        let _ = writeln!(
            out,
            "    declined: {} transactions, precision {:.3} (asked {})",
            declined.flagged, declined.precision, choice.decline_precision_target
        );
        if band.flagged == 0 {
            out.push_str(match choice.objective {
                ThresholdObjective::ReviewCapacity { .. } => {
                    "  warning: the review band is empty: the capacity does not hold even the next group of equal \
                     probabilities below the decline threshold\n"
                }
                _ => {
                    "  warning: the review band is empty: everything flagged is declined and the analysts get no \
                     cases; set train.review_capacity_per_day (--review-capacity) to the reviews they can do per day\n"
                }
            });
        }
    }
    if let (ThresholdObjective::ReviewCapacity { per_day }, Some(actual)) = (choice.objective, band.per_day)
        && actual > per_day
    {
        let _ = writeln!(
            out,
            "  warning: {actual:.1} reviews a day exceed the capacity of {per_day}: nothing is declined and the top \
             group of equal probabilities alone is larger"
        );
    }
    out
}

/// The trials of `train --tune`, the best first (by the folds scored, then
/// the mean average precision), at most 25 rows.
pub fn render_tuning(tuning: &Tuning) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "tuning: {} trials in {:.0}s (budget {:.0}s); chosen: trial {} (mean AP {:.4} over {} folds{})",
        tuning.trials.len(),
        tuning.seconds,
        tuning.budget_seconds,
        tuning.chosen().id,
        tuning.chosen().mean_ap,
        tuning.chosen().fold_ap.len(),
        if tuning.chosen().id == 0 {
            "; the parameters given"
        } else {
            ""
        }
    );
    if let Some(other) = &tuning.best_other {
        let _ = writeln!(out, "  best other: {}", other.describe());
    }
    let _ = writeln!(
        out,
        "  {:>5} {:>5} {:>8}  {:<26} {:>6} {:>6} {:>5} {:>6} {:>7} {:>5} {:>5} {:>5} {:>6}",
        "trial",
        "folds",
        "mean AP",
        "AP per fold",
        "rounds",
        "lr",
        "leaves",
        "depth",
        "min leaf",
        "L2",
        "rows",
        "cols",
        "w+"
    );
    for trial in tuning.ranked().iter().take(25) {
        let p = &trial.params;
        let folds: Vec<String> = trial.fold_ap.iter().map(|ap| format!("{ap:.4}")).collect();
        let rounds = trial.rounds.iter().sum::<usize>() / trial.rounds.len().max(1);
        let _ = writeln!(
            out,
            "  {:>5} {:>5} {:>8.4}  {:<26} {:>6} {:>6.3} {:>5} {:>6} {:>7} {:>5.2} {:>5.2} {:>5.2} {:>6.1}{}",
            trial.id,
            trial.fold_ap.len(),
            trial.mean_ap,
            folds.join(" "),
            rounds,
            p.learning_rate,
            p.num_leaves,
            p.max_depth,
            p.min_data_in_leaf,
            p.lambda_l2,
            p.subsample,
            p.colsample_bytree,
            p.scale_pos_weight,
            if trial.id == tuning.chosen().id {
                "  ← chosen"
            } else {
                ""
            }
        );
    }
    if tuning.trials.len() > 25 {
        let _ = writeln!(
            out,
            "  … {} more in model.json (tuning.trials)",
            tuning.trials.len() - 25
        );
    }
    out
}

/// The evaluation report: each window, then the mean ± std over prequential folds.
pub fn render_evaluate_report(report: &EvaluateReport) -> String {
    let mut out = String::new();
    for (idx, window) in report.windows.iter().enumerate() {
        let title = if report.summary.is_some() {
            format!("fold {}", idx + 1)
        } else {
            "test".to_owned()
        };
        let _ = writeln!(out, "{title}: transactions {} .. {}", window.test.0, window.test.1);
        if let Some((from, to)) = &window.train {
            let _ = writeln!(out, "  trained on {from} .. {to}");
        }
        out.push_str(&render_evaluation(&title, &window.metrics));
    }
    if let Some(summary) = &report.summary {
        let _ = writeln!(out, "prequential, {} folds (mean ± std):", report.windows.len());
        for (name, value) in [
            ("ROC AUC", &summary.roc_auc),
            ("average precision", &summary.average_precision),
            ("card precision@k", &summary.card_precision_at_k),
            ("precision@k", &summary.precision_at_k),
            ("Brier score", &summary.brier),
        ] {
            let _ = writeln!(out, "  {name:<20} {:.4} ± {:.4}", value.mean, value.std);
        }
    }
    out
}

/// The metrics of one window as a readable table.
fn render_evaluation(title: &str, metrics: &Evaluation) -> String {
    let mut out = String::new();
    let number = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |v| format!("{v:.4}"));
    let _ = writeln!(
        out,
        "  {title}: {} transactions, {} fraud ({:.3}%)",
        metrics.n,
        metrics.n_fraud,
        metrics.fraud_rate * 100.0
    );
    let _ = writeln!(
        out,
        "    ROC AUC {}   average precision {}   Brier {:.5}",
        number(metrics.roc_auc),
        number(metrics.average_precision),
        metrics.brier
    );
    let c = &metrics.confusion;
    let _ = writeln!(
        out,
        "    at threshold {:.4}: precision {:.3}  recall {:.3}  F1 {:.3}   (TP {}  FP {}  FN {}  TN {})",
        metrics.threshold, metrics.precision, metrics.recall, metrics.f1, c.tp, c.fp, c.fn_, c.tn
    );
    if let (Some(p), Some(cp)) = (&metrics.precision_at_k, &metrics.card_precision_at_k) {
        let _ = writeln!(
            out,
            "    per day, k={}: precision@k {:.4}   card precision@k {:.4}   ({} days)",
            p.k,
            p.mean,
            cp.mean,
            p.per_day.len()
        );
    }
    let bins: Vec<String> = metrics
        .reliability
        .iter()
        .map(|bin| {
            format!(
                "{:.1}-{:.1}: {:.3}/{:.3} (n={})",
                bin.lower, bin.upper, bin.mean_predicted, bin.observed_rate, bin.n
            )
        })
        .collect();
    let _ = writeln!(out, "    reliability (predicted/observed): {}", bins.join("  "));
    out
}
