//! Split search: the best split of a leaf from its histogram. Numeric
//! features try every bin boundary with missing values on either side (the
//! better side becomes the learned default); categorical features try
//! one-vs-rest for few categories, else many-vs-many splits of categories
//! ordered by their smoothed gradient ratio (regularised by `cat_l2` and
//! `min_data_per_group`, as in LightGBM).

use rayon::prelude::*;

use super::histogram::{Cell, HIST_STRIDE, Scale, Sums};
use super::partition::{BinRule, BinSet};
use super::trainer::Trainer;

/// The best split found for a leaf: its feature, gain and rule, and the sums of both sides.
#[derive(Clone, Debug)]
pub(super) struct Candidate {
    pub(super) feature: usize,
    pub(super) gain: f64,
    pub(super) rule: BinRule,
    pub(super) left: Cell,
    pub(super) right: Cell,
}

impl Trainer<'_> {
    pub(super) fn best_split(
        &self,
        hist: &[Cell],
        sums: &Cell,
        features: &[usize],
        scale: &Scale,
    ) -> Option<Candidate> {
        if (scale.count(sums) as usize) < 2 * self.params.get().min_data_in_leaf {
            return None;
        }
        features
            .par_iter()
            .filter_map(|&feature| {
                let offset = feature * HIST_STRIDE;
                let cells = &hist[offset..offset + self.mappers[feature].n_bins()];
                if self.mappers[feature].is_categorical() {
                    self.best_categorical(feature, cells, sums, scale)
                } else {
                    self.best_numeric(feature, cells, sums, scale)
                }
            })
            // ties go to the lower feature index, whatever the thread order
            .max_by(|a, b| a.gain.total_cmp(&b.gain).then(b.feature.cmp(&a.feature)))
    }

    /// Gain of a split with L2 `lambda`, or `None` when a side breaks the size limits.
    pub(super) fn gain_with(&self, left: &Sums, right: &Sums, parent: &Sums, lambda: f64) -> Option<f64> {
        let params = self.params.get();
        let enough = |sums: &Sums| sums.n as usize >= params.min_data_in_leaf && sums.h >= params.min_child_weight;
        if !enough(left) || !enough(right) {
            return None;
        }
        let score = |sums: &Sums| sums.g * sums.g / (sums.h + lambda);
        let gain = score(left) + score(right) - score(parent);
        (gain > params.min_split_gain && gain > 1e-12).then_some(gain)
    }

    pub(super) fn best_numeric(&self, feature: usize, cells: &[Cell], sums: &Cell, scale: &Scale) -> Option<Candidate> {
        let min_data = self.params.get().min_data_in_leaf;
        let (parent, n) = (scale.sums(sums), scale.count(sums) as usize);
        let missing = cells[cells.len() - 1];
        let has_missing = scale.count(&missing) > 0;
        let value_cells = &cells[..cells.len() - 1];
        let mut best: Option<Candidate> = None;
        let mut prefix = Cell::default();
        for (bin, cell) in value_cells.iter().enumerate() {
            prefix.add(cell);
            // missing values right, then (if there are any) left
            for missing_left in [false, true] {
                if missing_left && !has_missing {
                    continue;
                }
                let mut left = prefix;
                if missing_left {
                    left.add(&missing);
                }
                // too few rows on a side: no need to look at the sums
                let n_left = scale.count(&left) as usize;
                if n_left < min_data || n - n_left < min_data {
                    continue;
                }
                let right = sums.minus(&left);
                let (left_sums, right_sums) = (scale.sums(&left), scale.sums(&right));
                let Some(gain) = self.gain_with(&left_sums, &right_sums, &parent, self.params.get().lambda_l2) else {
                    continue;
                };
                if best.as_ref().is_none_or(|best| gain > best.gain) {
                    // with no missing values in training, unseen ones follow the heavier side
                    let default_left = if has_missing {
                        missing_left
                    } else {
                        left_sums.h >= right_sums.h
                    };
                    best = Some(Candidate {
                        feature,
                        gain,
                        rule: BinRule::Numeric { bin, default_left },
                        left,
                        right,
                    });
                }
            }
        }
        best
    }

    pub(super) fn best_categorical(
        &self,
        feature: usize,
        cells: &[Cell],
        sums: &Cell,
        scale: &Scale,
    ) -> Option<Candidate> {
        let params = self.params.get();
        let mapper = &self.mappers[feature];
        let parent = scale.sums(sums);
        let count = |bin: usize| scale.count(&cells[bin]);
        let categories: Vec<usize> = (0..cells.len() - 1)
            .filter(|&bin| count(bin) > 0 && mapper.is_splittable_category(bin))
            .collect();
        if categories.len() < 2 && !(categories.len() == 1 && count(categories[0]) < parent.n) {
            return None;
        }
        let mut best: Option<Candidate> = None;
        let consider = |left_bins: &[usize], best: &mut Option<Candidate>| {
            let mut left = Cell::default();
            let mut set = BinSet::default();
            for &bin in left_bins {
                left.add(&cells[bin]);
                set[bin / 64] |= 1 << (bin % 64);
            }
            let right = sums.minus(&left);
            let (left_sums, right_sums) = (scale.sums(&left), scale.sums(&right));
            if let Some(gain) = self.gain_with(&left_sums, &right_sums, &parent, params.lambda_l2 + params.cat_l2)
                && best.as_ref().is_none_or(|best| gain > best.gain)
            {
                *best = Some(Candidate {
                    feature,
                    gain,
                    rule: BinRule::Categorical { left: set },
                    left,
                    right,
                });
            }
        };
        if mapper.n_bins() - 2 <= params.max_cat_to_onehot {
            for &bin in &categories {
                consider(&[bin], &mut best);
            }
            return best;
        }
        // many-vs-many: order categories by smoothed mean gradient, then try
        // prefixes from either end (Fisher 1958, as LightGBM does); categories
        // too rare to judge stay on the right
        let mut ordered: Vec<usize> = categories
            .into_iter()
            .filter(|&bin| count(bin) as usize >= params.min_data_per_group)
            .collect();
        if ordered.len() < 2 {
            return None;
        }
        let ratio = |bin: usize| {
            let sums = scale.sums(&cells[bin]);
            sums.g / (sums.h + params.cat_smooth)
        };
        ordered.sort_by(|&a, &b| ratio(a).total_cmp(&ratio(b)).then(a.cmp(&b)));
        let max_left = params.max_cat_threshold.min(ordered.len().saturating_sub(1)).max(1);
        for size in 1..=max_left {
            consider(&ordered[..size], &mut best);
            consider(&ordered[ordered.len() - size..], &mut best);
        }
        best
    }
}
