//! `train --tune`: parameters chosen the way fraud teams must choose them —
//! by time, never by random folds.
//!
//! The training share of the window (the rows before the latest
//! `valid_fraction`, which stay untouched for early stopping, calibration,
//! thresholds and the stored metrics of the final model) gives
//! [`TUNE_FOLDS`] prequential folds: fold 1 validates on the latest
//! [`FOLD_SHARE`] of those rows, fold 2 on the share before that, and so on;
//! each fold trains on every row before its validation rows but the
//! [`FOLD_SHARE`] just before them. That gap stands for the label delay: a
//! model in production scores transactions days after the last labelled row
//! it learned from, so parameters that only exploit the rows right before the
//! validated ones should not win the search. It is a share of the rows, not
//! a number of days (about 0.8 days of a 7-day window, 7 of a 60-day one). A
//! trial is one parameter set; its score is the mean average precision of
//! its folds, each trained with early stopping on the fold's own validation
//! rows.
//!
//! Successive halving spends the time budget: every trial of rung 0 is
//! scored on fold 1 alone; the best third go on to rung 1 and are scored on
//! folds 1–2, the best third of those on all folds. Rung 0 draws trials
//! until 60 % of the budget is spent (the later rungs take about 0.4 of
//! rung 0's time), the later rungs stop when it is all spent. Trial 0 is
//! always the parameters given (the defaults), so tuning can only keep or
//! beat them on the folds: it goes through every rung, and another trial is
//! chosen only when it beats trial 0 by more than one standard error of their
//! paired differences over the folds. The others are drawn at random (seeded) from the
//! space below, learning rate, leaves, minimum leaf size, L2 and class weight
//! on log scales.

use std::time::{Duration, Instant};

use fraudlens_core::rng::Rng;
use serde::{Deserialize, Serialize};

use super::{CheckedFitParams, FitError, Step, Table, fit_isolation_forest, with_anomaly_score};
use crate::inputs::InputSpec;
use crate::metrics::average_precision;
use crate::train::{FeatureKind, GbdtParams, train};

/// Prequential folds of the window.
pub const TUNE_FOLDS: usize = 3;

/// Share of the window's rows each fold validates on, and the gap between a
/// fold's training and validation rows.
pub const FOLD_SHARE: f64 = 0.15;

/// Kept per rung: the best 1/`ETA`.
const ETA: usize = 3;

/// Share of the budget rung 0 may take.
const RUNG0_SHARE: f64 = 0.6;

/// What the search may spend.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Wall time; rung 0's size comes from it and the first fold's time.
    pub time: Duration,
    /// Most trials in rung 0 (trial 0 always runs).
    pub max_trials: usize,
}

impl Budget {
    /// `time`, and at most 243 trials (3⁵).
    pub fn time(time: Duration) -> Self {
        Self { time, max_trials: 243 }
    }
}

/// The parameters searched; the rest stay as given.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Searched {
    /// Learning rate.
    pub learning_rate: f64,
    /// Most leaves per tree.
    pub num_leaves: usize,
    /// Deepest a tree may grow (0 = no limit).
    pub max_depth: usize,
    /// Fewest rows in a leaf.
    pub min_data_in_leaf: usize,
    /// L2 regularisation of leaf values.
    pub lambda_l2: f64,
    /// Share of rows sampled per tree.
    pub subsample: f64,
    /// Share of features sampled per tree.
    pub colsample_bytree: f64,
    /// Weight of fraud rows.
    pub scale_pos_weight: f64,
}

impl Searched {
    fn of(params: &GbdtParams) -> Self {
        Self {
            learning_rate: params.learning_rate,
            num_leaves: params.num_leaves,
            max_depth: params.max_depth,
            min_data_in_leaf: params.min_data_in_leaf,
            lambda_l2: params.lambda_l2,
            subsample: params.subsample,
            colsample_bytree: params.colsample_bytree,
            scale_pos_weight: params.scale_pos_weight,
        }
    }

    fn draw(rng: &mut Rng) -> Self {
        let log_uniform = |rng: &mut Rng, low: f64, high: f64| (rng.range(low.ln(), high.ln())).exp();
        let round_to = |value: f64, step: f64| (value / step).round() * step;
        Self {
            learning_rate: round_to(log_uniform(rng, 0.02, 0.3), 0.001),
            num_leaves: log_uniform(rng, 7.0, 255.0).round() as usize,
            max_depth: [0, 0, 6, 8, 12][rng.below(5) as usize],
            min_data_in_leaf: log_uniform(rng, 5.0, 500.0).round() as usize,
            lambda_l2: round_to(log_uniform(rng, 1.0, 101.0) - 1.0, 0.01),
            subsample: round_to(rng.range(0.5, 1.0), 0.05),
            colsample_bytree: round_to(rng.range(0.4, 1.0), 0.05),
            scale_pos_weight: round_to(log_uniform(rng, 1.0, 20.0), 0.1),
        }
    }

    /// `base` with these values.
    pub fn apply(&self, base: &GbdtParams) -> GbdtParams {
        GbdtParams {
            learning_rate: self.learning_rate,
            num_leaves: self.num_leaves,
            max_depth: self.max_depth,
            min_data_in_leaf: self.min_data_in_leaf,
            lambda_l2: self.lambda_l2,
            subsample: self.subsample,
            colsample_bytree: self.colsample_bytree,
            scale_pos_weight: self.scale_pos_weight,
            ..base.clone()
        }
    }
}

/// One parameter set and how it did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// From 0; trial 0 is the parameters given.
    pub id: usize,
    /// The searched values.
    pub params: Searched,
    /// The last rung it reached (0 = fold 1 only).
    pub rung: usize,
    /// Average precision of each fold scored, fold 1 first.
    pub fold_ap: Vec<f64>,
    /// Their mean.
    pub mean_ap: f64,
    /// Rounds early stopping kept, per fold.
    pub rounds: Vec<usize>,
    /// Seconds spent on it.
    pub seconds: f64,
}

/// What the search did, stored in the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tuning {
    /// The folds: validation share and count.
    pub folds: usize,
    /// Share of the rows each fold validates on.
    pub fold_share: f64,
    /// Share of the rows between a fold's training and validation rows (0 in
    /// models tuned before the gap existed).
    #[serde(default)]
    pub gap_share: f64,
    /// The budget, in seconds.
    pub budget_seconds: f64,
    /// Seconds the search took.
    pub seconds: f64,
    /// Every trial, in the order run.
    pub trials: Vec<Trial>,
    /// The index in `trials` (= the id) of the trial chosen: the best mean
    /// over the most folds when it beats trial 0 by more than one standard
    /// error, else trial 0.
    pub chosen: usize,
    /// The best trial other than trial 0, against it.
    #[serde(default)]
    pub best_other: Option<Comparison>,
}

impl Tuning {
    /// The chosen trial.
    pub fn chosen(&self) -> &Trial {
        &self.trials[self.chosen]
    }

    /// The trials, the best first: by the folds scored, then the mean
    /// average precision.
    pub fn ranked(&self) -> Vec<&Trial> {
        let mut order: Vec<&Trial> = self.trials.iter().collect();
        order.sort_by(|a, b| {
            b.fold_ap
                .len()
                .cmp(&a.fold_ap.len())
                .then(b.mean_ap.total_cmp(&a.mean_ap))
        });
        order
    }
}

/// What the caller is told while the search runs.
pub enum TuneEvent<'a> {
    /// A trial scored one more fold (or finished its rung).
    Scored(&'a Trial),
    /// A rung is done; so many go on.
    RungDone {
        /// The rung.
        rung: usize,
        /// Trials promoted to the next rung.
        promoted: usize,
    },
}

/// Searches tree parameters around `params`' on the prequential folds of
/// `table` (rows in time order) within `budget`. With `with_anomaly`, an
/// isolation forest fitted on the rows before every fold's validation rows
/// adds its score to every row, as [`super::gbdt`] does.
pub fn tune(
    params: &CheckedFitParams,
    inputs: &InputSpec,
    table: &Table,
    with_anomaly: bool,
    budget: Budget,
    on_event: &mut dyn FnMut(TuneEvent<'_>),
) -> Result<Tuning, FitError> {
    let Budget {
        time: budget,
        max_trials,
    } = budget;
    let started = Instant::now();
    let base = params.gbdt().get();
    let folds = Folds::new(table, params.n_train(table.len()))?;
    let mut kinds = inputs.feature_kinds().internal("feature kinds")?;
    let augmented;
    let table = if with_anomaly {
        let anomaly = fit_isolation_forest(params, &table.slice(folds.train(TUNE_FOLDS - 1)))?;
        augmented = with_anomaly_score(&anomaly, table)?;
        kinds.push(FeatureKind::Numeric);
        &augmented
    } else {
        table
    };
    let kinds = &kinds[..];
    let mut rng = Rng::new(base.seed, 0x7475_6e65);
    let mut trials: Vec<Trial> = Vec::new();
    // Rung 0 draws trials for RUNG0_SHARE of the budget: the later rungs score a third, then a
    // ninth of them on one more (smaller) fold each, about 0.4 of rung 0's time.
    let spent = |started: &Instant| started.elapsed().as_secs_f64();
    let mut mean_fold = 0.0;
    while trials.len() < max_trials.max(1) {
        let id = trials.len();
        if id > 0 && spent(&started) + mean_fold > RUNG0_SHARE * budget.as_secs_f64() {
            break;
        }
        let params = if id == 0 {
            Searched::of(base)
        } else {
            Searched::draw(&mut rng)
        };
        let mut trial = Trial {
            id,
            params,
            rung: 0,
            fold_ap: Vec::new(),
            mean_ap: f64::NAN,
            rounds: Vec::new(),
            seconds: 0.0,
        };
        score_fold(&mut trial, &params.apply(base), kinds, table, &folds, 0)?;
        on_event(TuneEvent::Scored(&trial));
        trials.push(trial);
        mean_fold = spent(&started) / trials.len() as f64;
    }
    let mut alive: Vec<usize> = (0..trials.len()).collect();
    'rungs: for rung in 0..TUNE_FOLDS {
        for &id in &alive {
            let trial = &mut trials[id];
            for fold in trial.fold_ap.len()..=rung {
                if spent(&started) + mean_fold > budget.as_secs_f64() {
                    break 'rungs;
                }
                trial.rung = rung;
                let params = trial.params.apply(base);
                score_fold(trial, &params, kinds, table, &folds, fold)?;
                on_event(TuneEvent::Scored(trial));
            }
        }
        if rung + 1 == TUNE_FOLDS {
            break;
        }
        alive.sort_by(|&a, &b| trials[b].mean_ap.total_cmp(&trials[a].mean_ap).then(a.cmp(&b)));
        alive.truncate(alive.len().div_ceil(ETA));
        // the configuration goes on too, first: every choice is measured against it on the same folds
        alive.retain(|&id| id != 0);
        alive.insert(0, 0);
        on_event(TuneEvent::RungDone {
            rung,
            promoted: alive.len(),
        });
    }
    // The best mean among the trials scored on the most folds (trial 0, scored first in every
    // rung, is among them), kept only when it beats trial 0 by more than one standard error of
    // their paired differences over those folds: a random search's winner on three folds is
    // partly noise, and the configuration is the prior.
    let most = trials.iter().map(|trial| trial.fold_ap.len()).max().unwrap_or(0);
    let best = trials
        .iter()
        .filter(|trial| trial.fold_ap.len() == most)
        .max_by(|a, b| a.mean_ap.total_cmp(&b.mean_ap).then(b.id.cmp(&a.id)))
        .map_or(0, |trial| trial.id);
    let best_other = (best != 0).then(|| Comparison::against(&trials[0], &trials[best]));
    let chosen = match &best_other {
        Some(comparison) if comparison.clear() => best,
        _ => 0,
    };
    Ok(Tuning {
        folds: TUNE_FOLDS,
        fold_share: FOLD_SHARE,
        gap_share: FOLD_SHARE,
        budget_seconds: budget.as_secs_f64(),
        seconds: started.elapsed().as_secs_f64(),
        trials,
        chosen,
        best_other,
    })
}

/// The best trial other than the configuration, against it on the same folds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The trial.
    pub id: usize,
    /// Mean over the folds of its average precision minus trial 0's.
    pub gain: f64,
    /// Standard error of that mean (sample sd / √folds); `None` with one fold.
    pub standard_error: Option<f64>,
}

impl Comparison {
    fn against(baseline: &Trial, best: &Trial) -> Self {
        let diffs: Vec<f64> = best
            .fold_ap
            .iter()
            .zip(&baseline.fold_ap)
            .map(|(best, baseline)| best - baseline)
            .collect();
        let k = diffs.len() as f64;
        let gain = diffs.iter().sum::<f64>() / k.max(1.0);
        let standard_error = (diffs.len() > 1).then(|| {
            let variance = diffs.iter().map(|d| (d - gain).powi(2)).sum::<f64>() / (k - 1.0);
            variance.sqrt() / k.sqrt()
        });
        Self {
            id: best.id,
            gain,
            standard_error,
        }
    }

    /// A gain beyond one standard error (never with a single fold).
    pub fn clear(&self) -> bool {
        self.standard_error.is_some_and(|se| self.gain > se)
    }

    /// "trial N, average precision +g ± se (…) against trial 0: verdict", for the reports.
    pub fn describe(&self) -> String {
        format!(
            "trial {}, average precision {:+.4} ± {} (one standard error over the folds) against trial 0: {}",
            self.id,
            self.gain,
            self.standard_error
                .map_or_else(|| "?".to_owned(), |se| format!("{se:.4}")),
            if self.clear() {
                "beyond one standard error, chosen"
            } else {
                "within noise, the configuration is kept"
            }
        )
    }
}

/// Row ranges of the folds within the first `end` rows: fold `f` (from 0)
/// validates on `[cut_f, cut_f + block)` and trains on `[0, cut_f - block)`
/// (the block before the validated rows is the label-delay gap).
struct Folds {
    cuts: Vec<usize>,
    block: usize,
}

impl Folds {
    fn new(table: &Table, end: usize) -> Result<Self, FitError> {
        let block = (end as f64 * FOLD_SHARE) as usize;
        let cuts = (1..=TUNE_FOLDS).map(|fold| end.saturating_sub(fold * block)).collect();
        let folds = Self { cuts, block };
        for fold in 0..TUNE_FOLDS {
            let frauds = |rows: std::ops::Range<usize>| table.labels[rows].iter().filter(|&&label| label).count();
            let (train_frauds, valid_frauds) = (frauds(folds.train(fold)), frauds(folds.valid(fold)));
            if block == 0 || train_frauds == 0 || valid_frauds == 0 {
                return Err(FitError::TuneFold {
                    fold: fold + 1,
                    rows: end,
                    train_frauds,
                    valid_frauds,
                });
            }
        }
        Ok(folds)
    }

    /// The rows fold `fold` (from 0) trains on: all before the gap.
    fn train(&self, fold: usize) -> std::ops::Range<usize> {
        0..self.cuts[fold].saturating_sub(self.block)
    }

    /// The rows it validates on.
    fn valid(&self, fold: usize) -> std::ops::Range<usize> {
        self.cuts[fold]..self.cuts[fold] + self.block
    }
}

fn score_fold(
    trial: &mut Trial,
    params: &GbdtParams,
    kinds: &[FeatureKind],
    table: &Table,
    folds: &Folds,
    fold: usize,
) -> Result<(), FitError> {
    let started = Instant::now();
    let (train_rows, valid_rows) = (folds.train(fold), folds.valid(fold));
    let checked = params.clone().check().data("tuning parameters")?;
    let trained = train(
        &checked,
        kinds,
        &table.rows_set(train_rows),
        Some(&table.rows_set(valid_rows.clone())),
        &mut |_| {},
    )
    .data("tuning")?;
    let valid = table.rows_set(valid_rows);
    let mut raw = vec![0.0; valid.labels.len()];
    trained
        .forest
        .predict_raw_batch(valid.values, &mut raw)
        .internal("scoring a fold")?;
    let ap = average_precision(&raw, valid.labels).unwrap_or(0.0);
    trial.fold_ap.push(ap);
    trial.rounds.push(trained.best_round);
    trial.mean_ap = trial.fold_ap.iter().sum::<f64>() / trial.fold_ap.len() as f64;
    trial.seconds += started.elapsed().as_secs_f64();
    Ok(())
}

#[cfg(test)]
mod tests {
    use fraudlens_core::rng::Rng;

    use super::*;
    use crate::fit::FitParams;

    /// Rows in time order whose fraud depends on both inputs, so parameters matter.
    fn rows(n_rows: usize) -> (InputSpec, Table) {
        let mut rng = Rng::new(9, 0);
        let mut table = Table::new(3);
        for row in 0..n_rows {
            let (x, y, noise) = (rng.range(-2.0, 2.0), rng.range(-2.0, 2.0), rng.range(-1.0, 1.0));
            let fraud = x * y + 0.5 * noise > 1.6;
            table.values.extend([x, y, noise]);
            table.push_meta(fraud, Some(row as i64 * 60_000), Some(row as u64 % 97), 1.0);
        }
        let inputs = InputSpec::numeric(&["x", "y", "noise"]);
        (inputs, table)
    }

    fn params() -> CheckedFitParams {
        FitParams {
            gbdt: GbdtParams {
                n_trees: 60,
                early_stopping_rounds: 10,
                ..GbdtParams::default()
            },
            ..FitParams::default()
        }
        .check()
        .unwrap()
    }

    #[test]
    fn successive_halving_scores_a_third_of_each_rung_on_one_more_fold() {
        let (inputs, table) = rows(4_000);
        let budget = Budget {
            time: Duration::from_secs(3_600),
            max_trials: 9,
        };
        let mut rungs = Vec::new();
        let tuning = tune(&params(), &inputs, &table, false, budget, &mut |event| {
            if let TuneEvent::RungDone { rung, promoted } = event {
                rungs.push((rung, promoted));
            }
        })
        .unwrap();
        assert_eq!(tuning.trials.len(), 9);
        // rung 0 promotes its best three on fold 1 and trial 0 (the configuration, whatever it
        // scored); rung 1 the best third of those on folds 1-2, and trial 0 again
        assert_eq!(
            tuning.trials[0].fold_ap.len(),
            TUNE_FOLDS,
            "trial 0 goes through every rung"
        );
        let best_of = |ids: &[usize], folds: usize, keep: usize| -> Vec<usize> {
            let mean = |id: usize| tuning.trials[id].fold_ap[..folds].iter().sum::<f64>() / folds as f64;
            let mut ids = ids.to_vec();
            ids.sort_by(|&a, &b| mean(b).total_cmp(&mean(a)).then(a.cmp(&b)));
            ids.truncate(keep);
            ids
        };
        let with_baseline = |mut ids: Vec<usize>| {
            ids.retain(|&id| id != 0);
            ids.insert(0, 0);
            ids
        };
        let rung1 = with_baseline(best_of(&(0..9).collect::<Vec<_>>(), 1, 3));
        let rung2 = with_baseline(best_of(&rung1, 2, rung1.len().div_ceil(3)));
        let scored_on = |n: usize| -> Vec<usize> {
            tuning
                .trials
                .iter()
                .filter(|t| t.fold_ap.len() >= n)
                .map(|t| t.id)
                .collect()
        };
        let sorted = |mut ids: Vec<usize>| {
            ids.sort_unstable();
            ids
        };
        assert_eq!(scored_on(2), sorted(rung1.clone()));
        assert_eq!(scored_on(3), sorted(rung2.clone()));
        assert_eq!(rungs, [(0, rung1.len()), (1, rung2.len())]);
        // the best other trial against trial 0, and the rule that chose
        let best = &tuning.trials[best_of(&rung2, 3, 1)[0]];
        let chosen = tuning.chosen();
        match tuning.best_other.clone() {
            // the configuration was the best on all folds
            None => assert_eq!((best.id, chosen.id), (0, 0)),
            Some(comparison) => {
                assert_eq!(comparison.id, best.id);
                let diffs: Vec<f64> = (0..3).map(|f| best.fold_ap[f] - tuning.trials[0].fold_ap[f]).collect();
                assert!((comparison.gain - diffs.iter().sum::<f64>() / 3.0).abs() < 1e-12);
                let expected = if comparison.clear() { best.id } else { 0 };
                assert_eq!(chosen.id, expected);
            }
        }
        assert!((chosen.mean_ap - chosen.fold_ap.iter().sum::<f64>() / 3.0).abs() < 1e-12);
        // trial 0 is the parameters given
        assert_eq!(tuning.trials[0].params, Searched::of(params().gbdt().get()));
        // the same seed draws the same trials
        let again = tune(&params(), &inputs, &table, false, budget, &mut |_| {}).unwrap();
        let drawn = |tuning: &Tuning| tuning.trials.iter().map(|t| t.params).collect::<Vec<_>>();
        assert_eq!(drawn(&again), drawn(&tuning));
        assert_eq!(again.chosen, tuning.chosen);
    }

    #[test]
    fn another_trial_is_chosen_only_beyond_one_standard_error() {
        let trial = |id: usize, fold_ap: Vec<f64>| Trial {
            id,
            params: Searched::of(&GbdtParams::default()),
            rung: 2,
            mean_ap: fold_ap.iter().sum::<f64>() / fold_ap.len() as f64,
            rounds: vec![10; fold_ap.len()],
            fold_ap,
            seconds: 0.0,
        };
        let baseline = trial(0, vec![0.80, 0.70, 0.75]);
        // +0.02 on every fold: sd 0, a clear gain
        let steady = Comparison::against(&baseline, &trial(4, vec![0.82, 0.72, 0.77]));
        assert!(steady.clear() && (steady.gain - 0.02).abs() < 1e-12);
        // +0.06, -0.03, +0.03: mean +0.02, se 0.0265: not clear
        let noisy = Comparison::against(&baseline, &trial(5, vec![0.86, 0.67, 0.78]));
        assert!((noisy.gain - 0.02).abs() < 1e-12 && !noisy.clear(), "{noisy:?}");
        // one fold tells nothing about the noise
        let single = Comparison::against(&trial(0, vec![0.5]), &trial(6, vec![0.9]));
        assert_eq!(single.standard_error, None);
        assert!(!single.clear());
    }

    #[test]
    fn no_budget_keeps_the_parameters_given() {
        let (inputs, table) = rows(2_000);
        let budget = Budget {
            time: Duration::ZERO,
            max_trials: 9,
        };
        let tuning = tune(&params(), &inputs, &table, true, budget, &mut |_| {}).unwrap();
        assert_eq!(tuning.trials.len(), 1);
        assert_eq!((tuning.chosen().id, tuning.chosen().fold_ap.len()), (0, 1));
        assert_eq!(tuning.best_other, None);
    }

    /// The folds cut only the training share: the latest `valid_fraction`
    /// (for the final model's early stopping, calibration and thresholds)
    /// never reaches the search.
    #[test]
    fn the_validation_share_is_never_seen_by_the_search() {
        let (inputs, table) = rows(3_000);
        let budget = Budget {
            time: Duration::from_secs(3_600),
            max_trials: 4,
        };
        let tuned = tune(&params(), &inputs, &table, false, budget, &mut |_| {}).unwrap();
        let mut changed = table.clone();
        for (label, value) in changed.labels[2_400..]
            .iter_mut()
            .zip(changed.values[2_400 * 3..].chunks_mut(3))
        {
            *label = !*label;
            value[0] = -value[0];
        }
        let again = tune(&params(), &inputs, &changed, false, budget, &mut |_| {}).unwrap();
        let scores = |tuning: &Tuning| tuning.trials.iter().map(|t| t.fold_ap.clone()).collect::<Vec<_>>();
        assert_eq!(scores(&again), scores(&tuned));
        // and the rows just before it are: changing them changes the scores
        let mut before = table.clone();
        for label in &mut before.labels[2_100..2_400] {
            *label = !*label;
        }
        let moved = tune(&params(), &inputs, &before, false, budget, &mut |_| {}).unwrap();
        assert_ne!(scores(&moved), scores(&tuned));
    }

    #[test]
    fn each_fold_trains_before_a_gap_of_one_block() {
        let (_, table) = rows(1_000);
        let folds = Folds::new(&table, 1_000).unwrap();
        let ranges: Vec<_> = (0..TUNE_FOLDS)
            .map(|fold| (folds.train(fold), folds.valid(fold)))
            .collect();
        assert_eq!(ranges, [(0..700, 850..1_000), (0..550, 700..850), (0..400, 550..700)]);
    }

    #[test]
    fn a_fold_without_fraud_is_a_data_error() {
        let (inputs, mut table) = rows(2_000);
        // the training share is the first 1,600 rows: no fraud in its latest 15 % (fold 1)
        for label in &mut table.labels[1_360..1_600] {
            *label = false;
        }
        let budget = Budget::time(Duration::from_secs(1));
        let error = tune(&params(), &inputs, &table, false, budget, &mut |_| {}).unwrap_err();
        assert!(
            matches!(
                error,
                FitError::TuneFold {
                    fold: 1,
                    rows: 1_600,
                    valid_frauds: 0,
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("tuning fold 1"), "{error}");
    }
}
