//! The boosting loop: [`Trainer::new`] bins the training (and validation)
//! rows and fixes the base score; [`Trainer::run`] adds a tree per round —
//! gradients, row and column sampling, growth — tracks the validation loss
//! for early stopping and keeps the best round.

use fraudlens_core::rng::Rng;
use rayon::prelude::*;

use super::grow::leaf_value;
use super::histogram::{Cell, Scale};
use super::row_bins::RowBins;
use super::{CheckedParams, FeatureKind, MIN_HESSIAN, Round, TrainSet, Trained, logloss, row_logloss};
use crate::binning::BinMapper;
use crate::tree::Node;
use crate::{Forest, ForestData, InputPrecision, ModelError};

/// One training run: the binned rows and what every round reads.
pub(super) struct Trainer<'p> {
    pub(super) params: &'p CheckedParams,
    pub(super) mappers: Vec<BinMapper>,
    /// Row-major bins of the training rows (histograms read whole rows).
    pub(super) bins: RowBins,
    /// Column-major bins (partitions read one feature of scattered rows).
    pub(super) column_bins: Vec<u8>,
    pub(super) n_features: usize,
    pub(super) labels: Vec<bool>,
    pub(super) weights: Vec<f64>,
    pub(super) valid: Option<ValidRows>,
    pub(super) base_score: f64,
}

/// The validation rows in bin space, with their running scores.
pub(super) struct ValidRows {
    pub(super) bins: RowBins,
    pub(super) labels: Vec<bool>,
    pub(super) scores: Vec<f64>,
}

impl<'p> Trainer<'p> {
    pub(super) fn new(
        params: &'p CheckedParams,
        kinds: &[FeatureKind],
        train_set: &TrainSet<'_>,
        valid: Option<&TrainSet<'_>>,
    ) -> Result<Self, ModelError> {
        let n_features = train_set.n_features;
        let n_rows = train_set.labels.len();
        let max_bin = params.get().max_bin;
        let mappers: Vec<BinMapper> = (0..n_features)
            .into_par_iter()
            .map(|feature| match kinds[feature] {
                FeatureKind::Numeric => BinMapper::numeric(
                    train_set.values.iter().skip(feature).step_by(n_features).copied(),
                    n_rows,
                    max_bin,
                ),
                FeatureKind::Categorical { n_codes } => BinMapper::categorical(n_codes, max_bin),
            })
            .collect();
        let bins = RowBins::new(train_set.values, n_features, &mappers);
        let mut column_bins = vec![0u8; n_rows * n_features];
        column_bins
            .par_chunks_mut(n_rows.max(1))
            .enumerate()
            .for_each(|(feature, column)| {
                for (row, bin) in column.iter_mut().enumerate() {
                    *bin = bins.row(row)[feature];
                }
            });
        let scale = params.get().scale_pos_weight;
        let weights: Vec<f64> = (0..n_rows).map(|row| train_set.weight(row, scale)).collect();
        let (weight_sum, fraud_weight) = weights
            .iter()
            .zip(train_set.labels)
            .fold((0.0, 0.0), |(all, fraud), (w, &label)| {
                (all + w, if label { fraud + w } else { fraud })
            });
        if weight_sum <= 0.0 {
            return Err(ModelError::InvalidData(
                "training rows have zero total weight".to_owned(),
            ));
        }
        // boost from the (weighted) average: the first tree starts at the base rate
        let rate = (fraud_weight / weight_sum).clamp(1e-12, 1.0 - 1e-12);
        let base_score = (rate / (1.0 - rate)).ln();
        let valid = valid.map(|valid| ValidRows {
            bins: RowBins::new(valid.values, n_features, &mappers),
            labels: valid.labels.to_vec(),
            scores: vec![base_score; valid.labels.len()],
        });
        Ok(Self {
            params,
            mappers,
            bins,
            column_bins,
            n_features,
            labels: train_set.labels.to_vec(),
            weights,
            valid,
            base_score,
        })
    }

    pub(super) fn run(mut self, progress: &mut (dyn FnMut(&Round) + Send)) -> Result<Trained, ModelError> {
        let params = self.params.get();
        let n_rows = self.labels.len();
        let mut scores = vec![self.base_score; n_rows];
        let mut gradients = vec![[0.0; 2]; n_rows];
        let mut cells = vec![Cell::default(); n_rows];
        let mut trees = Vec::with_capacity(params.n_trees);
        let mut history = Vec::with_capacity(params.n_trees);
        let mut best = (f64::INFINITY, 0usize);
        for round in 1..=params.n_trees {
            let train_logloss = self.gradients(&scores, &mut gradients);
            let mut rng = Rng::new(params.seed, round as u64);
            let rows = self.sample_rows(&mut rng);
            let features = self.sample_features(&mut rng);
            let scale = Scale::new(&gradients);
            cells
                .par_iter_mut()
                .zip(&gradients)
                .for_each(|(cell, &gh)| *cell = scale.cell(gh));
            let (nodes, indices, leaf_ranges) = self.grow(rows, &features, &gradients, &cells, &scale);
            // training scores: in-bag rows from the partition, the others by traversal
            if params.subsample < 1.0 {
                let nodes = &nodes;
                scores.par_iter_mut().enumerate().for_each(|(row, score)| {
                    *score += leaf_value(nodes, &self.mappers, self.bins.row(row));
                });
            } else {
                for (value, start, end) in leaf_ranges {
                    for &row in &indices[start..end] {
                        scores[row as usize] += value;
                    }
                }
            }
            let valid_logloss = self.valid.as_mut().map(|valid| {
                let (bins, mappers) = (&valid.bins, &self.mappers);
                valid.scores.par_iter_mut().enumerate().for_each(|(row, score)| {
                    *score += leaf_value(&nodes, mappers, bins.row(row));
                });
                logloss(&valid.scores, &valid.labels)
            });
            let tree = self.to_tree(&nodes);
            trees.push(tree);
            let record = Round {
                round,
                train_logloss,
                valid_logloss,
            };
            progress(&record);
            history.push(record);
            if let Some(loss) = valid_logloss {
                if loss < best.0 {
                    best = (loss, round);
                } else if params.early_stopping_rounds > 0 && round - best.1 >= params.early_stopping_rounds {
                    break;
                }
            }
        }
        let best_round = if self.valid.is_some() && params.early_stopping_rounds > 0 {
            best.1.max(1)
        } else {
            trees.len()
        };
        trees.truncate(best_round);
        let forest = Forest::new(ForestData {
            base_score: self.base_score,
            n_features: self.n_features,
            input_precision: InputPrecision::F64,
            trees,
        })?;
        // importance of the trees kept, not of the rounds early stopping dropped
        let mut gain_importance = vec![0.0; self.n_features];
        for tree in forest.trees() {
            for node in &tree.nodes {
                if let Node::Split(split) = node {
                    gain_importance[split.feature as usize] += split.gain;
                }
            }
        }
        Ok(Trained {
            forest,
            best_round,
            history,
            gain_importance,
        })
    }

    /// Logistic-loss gradient and hessian of every row (side by side: one
    /// memory access per row in the histograms); returns the weighted log loss.
    pub(super) fn gradients(&self, scores: &[f64], gradients: &mut [[f64; 2]]) -> f64 {
        let (loss, weight) = gradients
            .par_iter_mut()
            .enumerate()
            .with_min_len(4096)
            .map(|(row, gh)| {
                let p = crate::calibration::logistic(scores[row]);
                let (y, w) = (f64::from(u8::from(self.labels[row])), self.weights[row]);
                *gh = [w * (p - y), (w * p * (1.0 - p)).max(MIN_HESSIAN)];
                (w * row_logloss(p, self.labels[row]), w)
            })
            .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        loss / weight
    }

    pub(super) fn sample_rows(&self, rng: &mut Rng) -> Vec<u32> {
        let n_rows = self.labels.len() as u32;
        let subsample = self.params.get().subsample;
        if subsample >= 1.0 {
            return (0..n_rows).collect();
        }
        (0..n_rows).filter(|_| rng.uniform() < subsample).collect()
    }

    pub(super) fn sample_features(&self, rng: &mut Rng) -> Vec<usize> {
        let colsample = self.params.get().colsample_bytree;
        let mut features: Vec<usize> = (0..self.n_features).collect();
        if colsample < 1.0 {
            let keep = ((self.n_features as f64 * colsample).round() as usize).max(1);
            // partial Fisher-Yates
            for idx in 0..keep {
                let pick = idx + rng.below((self.n_features - idx) as u64) as usize;
                features.swap(idx, pick);
            }
            features.truncate(keep);
            features.sort_unstable();
        }
        features
    }
}
