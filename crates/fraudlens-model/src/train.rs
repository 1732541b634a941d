//! The gradient-boosted tree trainer: binary logistic loss, histogram split
//! search (≤ 255 bins per feature plus a missing bin), leaf-wise or
//! depth-wise growth, L2 and minimum-child regularisation, row and column
//! subsampling, learned default directions for missing values, categorical
//! splits, class weights, and early stopping on a validation set the caller
//! cuts in time order.
//!
//! Determinism: the result depends only on the data, the parameters and the
//! seed — not on the number of threads. Histograms hold fixed-point integer
//! sums (exact in any order, see `Scale`), leaf values are summed in row
//! order, and random choices come from [`fraudlens_core::rng::Rng`] streams
//! keyed by iteration.

use fraudlens_core::rng::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::binning::BinMapper;
use crate::tree::{Condition, Missing, Node, SplitNode, Tree};
use crate::{Forest, ForestData, InputPrecision, ModelError};

/// Nodes with fewer rows get their histogram from one thread.
const PARALLEL_HIST_ROWS: usize = 4096;
/// Scattered rows copied together before they are added to a histogram.
const GATHER_ROWS: usize = 64;
/// Histogram cells per feature: every bin of a feature (≤ 255 values + missing).
const HIST_STRIDE: usize = 260;
/// Ranges larger than this are partitioned in parallel chunks.
const PARTITION_CHUNK_ROWS: usize = 64 * 1024;
/// Smallest hessian of a row, so leaves of perfectly fit rows stay finite.
const MIN_HESSIAN: f64 = 1e-16;

/// How trees grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Growth {
    /// Split the leaf with the largest gain next, up to `num_leaves` (LightGBM).
    LeafWise,
    /// Split level by level, up to `max_depth` (XGBoost's default).
    DepthWise,
}

/// Training parameters as written in a config file or on the command line.
/// [`GbdtParams::check`] turns them into [`CheckedParams`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GbdtParams {
    /// Boosting rounds (the most trees; early stopping may keep fewer).
    pub n_trees: usize,
    /// Shrinkage applied to every leaf value.
    pub learning_rate: f64,
    /// Leaf-wise or depth-wise growth.
    pub growth: Growth,
    /// Most leaves per tree.
    pub num_leaves: usize,
    /// Deepest a tree may grow; 0 = no limit (leaf-wise only; depth-wise uses 6).
    pub max_depth: usize,
    /// Fewest training rows in a leaf.
    pub min_data_in_leaf: usize,
    /// Smallest sum of hessians in a leaf.
    pub min_child_weight: f64,
    /// L2 regularisation of leaf values. The default 1 (XGBoost's) keeps the
    /// first rounds on rare-fraud data from taking huge Newton steps on
    /// leaves with a tiny hessian.
    pub lambda_l2: f64,
    /// Largest absolute leaf value before shrinkage; 0 = no limit.
    pub max_delta_step: f64,
    /// Smallest loss reduction to make a split.
    pub min_split_gain: f64,
    /// Share of rows sampled (without replacement) for each tree.
    pub subsample: f64,
    /// Share of features sampled for each tree.
    pub colsample_bytree: f64,
    /// Most bins per feature (≤ 255).
    pub max_bin: usize,
    /// Weight of fraud rows relative to legitimate ones (class imbalance).
    pub scale_pos_weight: f64,
    /// Stop when the validation loss has not improved for this many rounds; 0 = never.
    pub early_stopping_rounds: usize,
    /// Categorical features with at most this many categories try one-vs-rest splits.
    pub max_cat_to_onehot: usize,
    /// Most categories on the left of a many-vs-many categorical split.
    pub max_cat_threshold: usize,
    /// Smoothing of the gradient ratio that orders categories.
    pub cat_smooth: f64,
    /// Extra L2 regularisation in the gain of categorical splits (rare
    /// categories otherwise overfit; LightGBM's `cat_l2`).
    pub cat_l2: f64,
    /// Fewest rows a category needs to be placed on the left of a
    /// many-vs-many split (LightGBM's `min_data_per_group`).
    pub min_data_per_group: usize,
    /// Seed of row and column sampling.
    pub seed: u64,
    /// Worker threads; 0 = all cores.
    pub threads: usize,
}

impl Default for GbdtParams {
    fn default() -> Self {
        Self {
            n_trees: 300,
            learning_rate: 0.1,
            growth: Growth::LeafWise,
            num_leaves: 31,
            max_depth: 0,
            min_data_in_leaf: 20,
            min_child_weight: 1e-3,
            lambda_l2: 1.0,
            max_delta_step: 0.0,
            min_split_gain: 0.0,
            subsample: 1.0,
            colsample_bytree: 1.0,
            max_bin: 255,
            scale_pos_weight: 1.0,
            early_stopping_rounds: 50,
            max_cat_to_onehot: 4,
            max_cat_threshold: 32,
            cat_smooth: 10.0,
            cat_l2: 10.0,
            min_data_per_group: 100,
            seed: 0,
            threads: 0,
        }
    }
}

/// Parameters that passed [`GbdtParams::check`].
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedParams(GbdtParams);

impl CheckedParams {
    /// The parameters.
    pub fn get(&self) -> &GbdtParams {
        &self.0
    }

    fn max_depth(&self) -> usize {
        match (self.0.max_depth, self.0.growth) {
            (0, Growth::DepthWise) => 6,
            (0, Growth::LeafWise) => crate::tree::MAX_DEPTH,
            (depth, _) => depth.min(crate::tree::MAX_DEPTH),
        }
    }

    fn max_leaves(&self) -> usize {
        match self.0.growth {
            Growth::LeafWise => self.0.num_leaves,
            Growth::DepthWise => 1usize << self.max_depth().min(24),
        }
    }
}

impl GbdtParams {
    /// Checks every parameter's range.
    pub fn check(self) -> Result<CheckedParams, ModelError> {
        let fail = |what: String| Err(ModelError::InvalidParameter(what));
        let unit = |value: f64| value > 0.0 && value <= 1.0;
        if self.n_trees == 0 || self.n_trees > 100_000 {
            return fail(format!("n_trees must be in 1..=100000 (got {})", self.n_trees));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return fail(format!("learning_rate must be > 0 (got {})", self.learning_rate));
        }
        if self.num_leaves < 2 || self.num_leaves > 1 << 17 {
            return fail(format!("num_leaves must be in 2..=131072 (got {})", self.num_leaves));
        }
        if self.growth == Growth::DepthWise && self.max_depth > 24 {
            return fail(format!(
                "max_depth of depth-wise trees must be ≤ 24 (got {})",
                self.max_depth
            ));
        }
        if self.min_data_in_leaf == 0 {
            return fail("min_data_in_leaf must be at least 1".to_owned());
        }
        for (name, value) in [
            ("min_child_weight", self.min_child_weight),
            ("lambda_l2", self.lambda_l2),
            ("max_delta_step", self.max_delta_step),
            ("min_split_gain", self.min_split_gain),
            ("cat_smooth", self.cat_smooth),
            ("cat_l2", self.cat_l2),
        ] {
            if !(value >= 0.0 && value.is_finite()) {
                return fail(format!("{name} must be ≥ 0 (got {value})"));
            }
        }
        if !unit(self.subsample) || !unit(self.colsample_bytree) {
            return fail("subsample and colsample_bytree must be in (0, 1]".to_owned());
        }
        if !(2..=255).contains(&self.max_bin) {
            return fail(format!("max_bin must be in 2..=255 (got {})", self.max_bin));
        }
        if !(self.scale_pos_weight > 0.0 && self.scale_pos_weight.is_finite()) {
            return fail(format!("scale_pos_weight must be > 0 (got {})", self.scale_pos_weight));
        }
        if self.max_cat_threshold == 0 {
            return fail("max_cat_threshold must be at least 1".to_owned());
        }
        Ok(CheckedParams(self))
    }
}

/// The kind of a feature column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeatureKind {
    /// A number; NaN is missing.
    Numeric,
    /// Integer category codes `0..n_codes`; NaN is missing.
    Categorical {
        /// Number of codes.
        n_codes: usize,
    },
}

/// Rows for training or validation: a row-major matrix, labels, optional weights.
#[derive(Clone, Copy, Debug)]
pub struct TrainSet<'a> {
    /// `labels.len()` rows of `n_features` values.
    pub values: &'a [f64],
    /// Features per row.
    pub n_features: usize,
    /// Fraud (true) or legitimate.
    pub labels: &'a [bool],
    /// Row weights (before `scale_pos_weight`); `None` = all 1.
    pub weights: Option<&'a [f64]>,
}

impl TrainSet<'_> {
    fn check(&self, what: &str) -> Result<(), ModelError> {
        let fail = |reason: String| Err(ModelError::InvalidData(format!("{what}: {reason}")));
        if self.labels.is_empty() {
            return fail("no rows".to_owned());
        }
        if self.n_features == 0 {
            return fail("no features (every column was excluded or unusable)".to_owned());
        }
        if self.values.len() != self.labels.len() * self.n_features {
            return fail(format!(
                "{} values are not {} rows of {} features",
                self.values.len(),
                self.labels.len(),
                self.n_features
            ));
        }
        if let Some(weights) = self.weights {
            if weights.len() != self.labels.len() {
                return fail(format!("{} weights for {} rows", weights.len(), self.labels.len()));
            }
            if let Some(weight) = weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
                return fail(format!("weight {weight} is not a finite non-negative number"));
            }
        }
        Ok(())
    }

    fn weight(&self, row: usize, scale_pos_weight: f64) -> f64 {
        let weight = self.weights.map_or(1.0, |weights| weights[row]);
        if self.labels[row] {
            weight * scale_pos_weight
        } else {
            weight
        }
    }
}

/// One boosting round, as reported to the progress callback.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Round {
    /// 1-based round.
    pub round: usize,
    /// Weighted log loss on the training rows.
    pub train_logloss: f64,
    /// Log loss on the validation rows (unweighted), if any.
    pub valid_logloss: Option<f64>,
}

/// What [`train`] returns.
#[derive(Clone, Debug)]
pub struct Trained {
    /// The model, cut at the best round when early stopping applied.
    pub forest: Forest,
    /// Rounds kept.
    pub best_round: usize,
    /// Every round's losses.
    pub history: Vec<Round>,
    /// Total split gain per feature.
    pub gain_importance: Vec<f64>,
}

/// Trains a binary classifier. `valid` (rows later in time than `train`)
/// drives early stopping; `progress` sees every round.
pub fn train(
    params: &CheckedParams,
    kinds: &[FeatureKind],
    train_set: &TrainSet<'_>,
    valid: Option<&TrainSet<'_>>,
    progress: &mut (dyn FnMut(&Round) + Send),
) -> Result<Trained, ModelError> {
    train_set.check("training set")?;
    if let Some(valid) = valid {
        valid.check("validation set")?;
        if valid.n_features != train_set.n_features {
            return Err(ModelError::InvalidData(format!(
                "validation rows have {} features, training rows {}",
                valid.n_features, train_set.n_features
            )));
        }
    }
    if kinds.len() != train_set.n_features {
        return Err(ModelError::InvalidData(format!(
            "{} feature kinds for {} features",
            kinds.len(),
            train_set.n_features
        )));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(params.0.threads)
        .build()
        .map_err(|error| ModelError::InvalidParameter(format!("threads: {error}")))?;
    pool.install(|| Trainer::new(params, kinds, train_set, valid)?.run(progress))
}

/// Histogram cell: the gradient sum, and the hessian sum with the row
/// count in its low bits, of the rows whose value falls in a bin — both
/// fixed-point integers (see [`Scale`]). Integer sums are exact, so they do
/// not depend on the order rows are added in (any split of the work between
/// threads gives the same model), a subtraction of histograms is exact, and
/// a row adds to a cell with one 16-byte integer add.
#[derive(Clone, Copy, Debug, Default)]
struct Cell([u64; 2]);

impl Cell {
    fn add(&mut self, other: &Cell) {
        let [g, hn] = &mut self.0;
        *g = g.wrapping_add(other.0[0]);
        *hn = hn.wrapping_add(other.0[1]);
    }

    fn minus(&self, other: &Cell) -> Cell {
        Cell([self.0[0].wrapping_sub(other.0[0]), self.0[1].wrapping_sub(other.0[1])])
    }
}

/// Sums in real numbers: what split gains and leaf values are computed from.
#[derive(Clone, Copy, Debug, Default)]
struct Sums {
    g: f64,
    h: f64,
    n: u32,
}

/// The fixed-point scales of one round's gradients: powers of two chosen so
/// no sum over the training rows can overflow. The hessian shares its word
/// with the count (`count_bits` low bits, enough for every training row), so
/// its resolution is the round's total hessian over 2^(61 − count_bits):
/// about 5e-7 of the mean row hessian with a million rows (rounded to
/// nearest, so sums stay unbiased), 3e-2 with 2^28 rows. A decoded hessian
/// is never below `n · MIN_HESSIAN`, as a float sum would not be. Leaf
/// values are summed in `f64` from the gradients themselves, not from cells.
#[derive(Clone, Copy, Debug)]
struct Scale {
    g: f64,
    h: f64,
    count_bits: u32,
}

impl Scale {
    fn new(gradients: &[[f64; 2]]) -> Self {
        let n_rows = gradients.len().max(1);
        let count_bits = usize::BITS - n_rows.leading_zeros();
        // the largest |g| and the total hessian, summed in fixed chunks so
        // the scale (and the model) does not depend on the thread count
        let max_g = gradients.par_iter().map(|gh| gh[0].abs()).reduce(|| 0.0, f64::max);
        let partial: Vec<f64> = gradients
            .par_chunks(4096)
            .map(|chunk| chunk.iter().map(|gh| gh[1]).sum())
            .collect();
        let total_h: f64 = partial.iter().sum();
        // |sum of g| ≤ 2^62 and sum of h ≤ 2^(61 - count_bits), plus < 1 of
        // rounding per row; in logarithms, so huge or tiny totals (extreme
        // weights) still get a finite, non-zero power of two
        let power = |limit_log2: f64, total_log2: f64| {
            let exponent = limit_log2 - total_log2;
            if exponent.is_finite() {
                exponent.floor().clamp(-1022.0, 1023.0).exp2()
            } else {
                1.0
            }
        };
        let rows_log2 = (n_rows as f64).log2();
        Self {
            g: power(62.0, rows_log2 + max_g.log2()),
            h: power(f64::from(61 - count_bits), total_h.log2()),
            count_bits,
        }
    }

    /// One row's cell.
    fn cell(&self, [g, h]: [f64; 2]) -> Cell {
        // rounded half away from zero (`as` truncates; `round` is a libm call here)
        let g = (g * self.g + 0.5f64.copysign(g)) as i64 as u64;
        let h = (h * self.h + 0.5) as u64;
        Cell([g, (h << self.count_bits) | 1])
    }

    fn count(&self, cell: &Cell) -> u32 {
        (cell.0[1] & ((1 << self.count_bits) - 1)) as u32
    }

    fn sums(&self, cell: &Cell) -> Sums {
        let n = self.count(cell);
        Sums {
            g: cell.0[0] as i64 as f64 / self.g,
            h: ((cell.0[1] >> self.count_bits) as f64 / self.h).max(f64::from(n) * MIN_HESSIAN),
            n,
        }
    }
}

/// Bitset over the (at most 256) bins of a categorical feature.
type BinSet = [u64; 4];

fn set_contains(set: &BinSet, bin: usize) -> bool {
    set[bin / 64] & (1 << (bin % 64)) != 0
}

/// How a split sends binned rows.
#[derive(Clone, Debug)]
enum BinRule {
    /// Bins `<= bin` go left; the missing bin follows `default_left`.
    Numeric { bin: usize, default_left: bool },
    /// Bins in the set go left; everything else (missing too) goes right.
    Categorical { left: BinSet },
}

#[derive(Clone, Debug)]
struct Candidate {
    feature: usize,
    gain: f64,
    rule: BinRule,
    left: Cell,
    right: Cell,
}

/// A tree while it grows, in bin space.
enum BuildNode {
    Leaf {
        value: f64,
        cover: f64,
    },
    Split {
        candidate: Candidate,
        left: usize,
        right: usize,
        cover: f64,
    },
}

/// Row-major bins, each row padded to a power of two (≥ 16) or a multiple
/// of 64 bytes and the first row aligned to 64 bytes, so a row never
/// straddles more cache lines than it must and copies in whole 16-byte pieces.
struct RowBins {
    data: Vec<u8>,
    start: usize,
    stride: usize,
}

impl RowBins {
    fn new(values: &[f64], n_features: usize, mappers: &[BinMapper]) -> Self {
        let stride = if n_features <= 64 {
            n_features.next_power_of_two().max(16)
        } else {
            n_features.next_multiple_of(64)
        };
        let n_rows = values.len() / n_features.max(1);
        let mut data = vec![0u8; n_rows * stride + 63];
        let start = data.as_ptr().align_offset(64).min(63);
        data[start..start + n_rows * stride]
            .par_chunks_mut(stride * 4096)
            .zip(values.par_chunks(n_features.max(1) * 4096))
            .for_each(|(rows, values)| {
                for (row, values) in rows
                    .chunks_exact_mut(stride)
                    .zip(values.chunks_exact(n_features.max(1)))
                {
                    for ((bin, value), mapper) in row.iter_mut().zip(values).zip(mappers) {
                        *bin = mapper.bin(*value);
                    }
                }
            });
        Self { data, start, stride }
    }

    /// The padded bins of one row (its features first).
    fn row(&self, row: usize) -> &[u8] {
        let at = self.start + row * self.stride;
        &self.data[at..at + self.stride]
    }

    /// Consecutive rows, padded.
    fn rows(&self, rows: std::ops::Range<usize>) -> std::slice::ChunksExact<'_, u8> {
        self.data[self.start + rows.start * self.stride..self.start + rows.end * self.stride].chunks_exact(self.stride)
    }
}

/// A leaf that may still be split.
struct OpenLeaf {
    node: usize,
    start: usize,
    end: usize,
    depth: usize,
    sums: Cell,
    hist: Vec<Cell>,
    best: Option<Candidate>,
}

struct Trainer<'p> {
    params: &'p CheckedParams,
    mappers: Vec<BinMapper>,
    /// Row-major bins of the training rows (histograms read whole rows).
    bins: RowBins,
    /// Column-major bins (partitions read one feature of scattered rows).
    column_bins: Vec<u8>,
    n_features: usize,
    labels: Vec<bool>,
    weights: Vec<f64>,
    valid: Option<ValidRows>,
    base_score: f64,
}

struct ValidRows {
    bins: RowBins,
    labels: Vec<bool>,
    scores: Vec<f64>,
}

impl<'p> Trainer<'p> {
    fn new(
        params: &'p CheckedParams,
        kinds: &[FeatureKind],
        train_set: &TrainSet<'_>,
        valid: Option<&TrainSet<'_>>,
    ) -> Result<Self, ModelError> {
        let n_features = train_set.n_features;
        let n_rows = train_set.labels.len();
        let max_bin = params.0.max_bin;
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
        let scale = params.0.scale_pos_weight;
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

    fn run(mut self, progress: &mut (dyn FnMut(&Round) + Send)) -> Result<Trained, ModelError> {
        let params = &self.params.0;
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
    fn gradients(&self, scores: &[f64], gradients: &mut [[f64; 2]]) -> f64 {
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

    fn sample_rows(&self, rng: &mut Rng) -> Vec<u32> {
        let n_rows = self.labels.len() as u32;
        let subsample = self.params.0.subsample;
        if subsample >= 1.0 {
            return (0..n_rows).collect();
        }
        (0..n_rows).filter(|_| rng.uniform() < subsample).collect()
    }

    fn sample_features(&self, rng: &mut Rng) -> Vec<usize> {
        let colsample = self.params.0.colsample_bytree;
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

    /// Grows one tree over `indices`; returns its nodes, the partitioned
    /// indices and `(leaf value, start, end)` of every leaf.
    #[allow(clippy::type_complexity)]
    fn grow(
        &self,
        mut indices: Vec<u32>,
        features: &[usize],
        gradients: &[[f64; 2]],
        cells: &[Cell],
        scale: &Scale,
    ) -> (Vec<BuildNode>, Vec<u32>, Vec<(f64, usize, usize)>) {
        let params = &self.params.0;
        let (max_leaves, max_depth) = (self.params.max_leaves(), self.params.max_depth());
        let root_hist = self.histogram(&indices, features, cells);
        // every row is in one bin of each feature: one feature's cells add up to the node
        let mut sums = Cell::default();
        let first = features[0] * HIST_STRIDE;
        for cell in &root_hist[first..first + HIST_STRIDE] {
            sums.add(cell);
        }
        let mut nodes = vec![BuildNode::Leaf {
            value: 0.0,
            cover: scale.sums(&sums).h,
        }];
        let mut open: Vec<OpenLeaf> = Vec::new();
        let mut done: Vec<(usize, usize, usize)> = Vec::new(); // (node, start, end)
        let mut root = OpenLeaf {
            node: 0,
            start: 0,
            end: indices.len(),
            depth: 0,
            sums,
            hist: root_hist,
            best: None,
        };
        if max_depth > 0 {
            root.best = self.best_split(&root.hist, &root.sums, features, scale);
        }
        open.push(root);
        let mut n_leaves = 1;
        while n_leaves < max_leaves {
            // leaf-wise: the best gain; depth-wise: the shallowest (first) splittable leaf
            let pick = match params.growth {
                Growth::LeafWise => open
                    .iter()
                    .enumerate()
                    .filter_map(|(idx, leaf)| leaf.best.as_ref().map(|best| (idx, best.gain)))
                    .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
                    .map(|(idx, _)| idx),
                Growth::DepthWise => open.iter().position(|leaf| leaf.best.is_some()),
            };
            let Some(pick) = pick else { break };
            let leaf = open.remove(pick);
            let Some(candidate) = leaf.best.clone() else { break };
            let mid = self.partition(&mut indices[leaf.start..leaf.end], &candidate) + leaf.start;
            let (left_node, right_node) = (nodes.len(), nodes.len() + 1);
            nodes.push(BuildNode::Leaf {
                value: 0.0,
                cover: scale.sums(&candidate.left).h,
            });
            nodes.push(BuildNode::Leaf {
                value: 0.0,
                cover: scale.sums(&candidate.right).h,
            });
            nodes[leaf.node] = BuildNode::Split {
                candidate: candidate.clone(),
                left: left_node,
                right: right_node,
                cover: scale.sums(&leaf.sums).h,
            };
            n_leaves += 1;
            let depth = leaf.depth + 1;
            let can_split = depth < max_depth;
            let (left_range, right_range) = ((leaf.start, mid), (mid, leaf.end));
            if can_split {
                // histogram of the smaller child, the other by subtraction
                let left_smaller = mid - leaf.start <= leaf.end - mid;
                let small_range = if left_smaller { left_range } else { right_range };
                let small = self.histogram(&indices[small_range.0..small_range.1], features, cells);
                let mut large = leaf.hist;
                for (large, small) in large.iter_mut().zip(&small) {
                    *large = large.minus(small);
                }
                let (left_hist, right_hist) = if left_smaller { (small, large) } else { (large, small) };
                for (node, range, sums, hist) in [
                    (left_node, left_range, candidate.left, left_hist),
                    (right_node, right_range, candidate.right, right_hist),
                ] {
                    let best = self.best_split(&hist, &sums, features, scale);
                    // a leaf that cannot split needs no histogram
                    let hist = if best.is_some() { hist } else { Vec::new() };
                    open.push(OpenLeaf {
                        node,
                        start: range.0,
                        end: range.1,
                        depth,
                        sums,
                        hist,
                        best,
                    });
                }
            } else {
                done.push((left_node, left_range.0, left_range.1));
                done.push((right_node, right_range.0, right_range.1));
            }
        }
        done.extend(open.iter().map(|leaf| (leaf.node, leaf.start, leaf.end)));
        let lambda = params.lambda_l2;
        let mut leaf_ranges = Vec::with_capacity(done.len());
        for (node, start, end) in done {
            let sums = match &nodes[node] {
                BuildNode::Leaf { .. } => leaf_sums(&indices[start..end], gradients),
                BuildNode::Split { .. } => continue,
            };
            // an empty leaf (possible only with an empty row sample) adds nothing
            let mut value = if sums.n == 0 { 0.0 } else { -sums.g / (sums.h + lambda) };
            if params.max_delta_step > 0.0 {
                value = value.clamp(-params.max_delta_step, params.max_delta_step);
            }
            let value = value * params.learning_rate;
            nodes[node] = BuildNode::Leaf { value, cover: sums.h };
            leaf_ranges.push((value, start, end));
        }
        (nodes, indices, leaf_ranges)
    }

    /// The histogram of `indices` over `features`. Every feature owns
    /// [`HIST_STRIDE`] cells, so a `u8` bin indexes its feature's cells with
    /// no bounds check and no offset table. Large nodes are split between
    /// threads; the integer sums make the split invisible in the result.
    fn histogram(&self, indices: &[u32], features: &[usize], row_cells: &[Cell]) -> Vec<Cell> {
        let n_features = self.n_features;
        let n_cells = n_features * HIST_STRIDE;
        let all_features = features.len() == n_features;
        let stride = self.bins.stride;
        let accumulate = |mut hist: Vec<Cell>, chunk: &[u32]| {
            let (per_feature, _) = hist.as_chunks_mut::<HIST_STRIDE>();
            let mut add_row = |bins: &[u8], row_cell: &Cell| {
                if all_features {
                    for (cells, &bin) in per_feature.iter_mut().zip(bins) {
                        cells[usize::from(bin)].add(row_cell);
                    }
                } else {
                    for &feature in features {
                        per_feature[feature][usize::from(bins[feature])].add(row_cell);
                    }
                }
            };
            // Rows of a split node are scattered: copying a block of them
            // first lets their cache misses overlap (a tight loop of
            // independent loads) instead of stalling each row of the
            // accumulation loop in turn.
            let mut block_bins = vec![0u8; GATHER_ROWS * stride];
            let mut block_cells = [Cell::default(); GATHER_ROWS];
            for block in chunk.chunks(GATHER_ROWS) {
                let (first, last) = (block[0] as usize, block[block.len() - 1] as usize);
                if last >= first && last - first + 1 == block.len() {
                    // consecutive rows (the root): read them in place
                    for (bins, row_cell) in self.bins.rows(first..last + 1).zip(&row_cells[first..=last]) {
                        add_row(bins, row_cell);
                    }
                    continue;
                }
                for ((&row, copy), cell) in block
                    .iter()
                    .zip(block_bins.chunks_exact_mut(stride))
                    .zip(&mut block_cells)
                {
                    let row = row as usize;
                    *cell = row_cells[row];
                    // whole 16-byte pieces: a few moves, not a memcpy call
                    let (to, _) = copy.as_chunks_mut::<16>();
                    let (from, _) = self.bins.row(row).as_chunks::<16>();
                    for (to, from) in to.iter_mut().zip(from) {
                        *to = *from;
                    }
                }
                for (bins, row_cell) in block_bins.chunks_exact(stride).zip(&block_cells[..block.len()]) {
                    add_row(bins, row_cell);
                }
            }
            hist
        };
        let empty = || vec![Cell::default(); n_cells];
        if indices.len() < PARALLEL_HIST_ROWS {
            return accumulate(empty(), indices);
        }
        indices
            .par_chunks(GATHER_ROWS * 16)
            .fold(empty, accumulate)
            .reduce_with(|mut hist, other| {
                for (cell, other) in hist.iter_mut().zip(&other) {
                    cell.add(other);
                }
                hist
            })
            .unwrap_or_else(empty)
    }

    fn best_split(&self, hist: &[Cell], sums: &Cell, features: &[usize], scale: &Scale) -> Option<Candidate> {
        if (scale.count(sums) as usize) < 2 * self.params.0.min_data_in_leaf {
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
    fn gain_with(&self, left: &Sums, right: &Sums, parent: &Sums, lambda: f64) -> Option<f64> {
        let params = &self.params.0;
        let enough = |sums: &Sums| sums.n as usize >= params.min_data_in_leaf && sums.h >= params.min_child_weight;
        if !enough(left) || !enough(right) {
            return None;
        }
        let score = |sums: &Sums| sums.g * sums.g / (sums.h + lambda);
        let gain = score(left) + score(right) - score(parent);
        (gain > params.min_split_gain && gain > 1e-12).then_some(gain)
    }

    fn best_numeric(&self, feature: usize, cells: &[Cell], sums: &Cell, scale: &Scale) -> Option<Candidate> {
        let min_data = self.params.0.min_data_in_leaf;
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
                let Some(gain) = self.gain_with(&left_sums, &right_sums, &parent, self.params.0.lambda_l2) else {
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

    fn best_categorical(&self, feature: usize, cells: &[Cell], sums: &Cell, scale: &Scale) -> Option<Candidate> {
        let params = &self.params.0;
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

    /// Stable partition of a leaf's rows: left rows first. Returns the number of left rows.
    fn partition(&self, indices: &mut [u32], candidate: &Candidate) -> usize {
        let feature = candidate.feature;
        let missing = self.mappers[feature].missing_bin();
        let n_rows = self.labels.len();
        let column = &self.column_bins[feature * n_rows..(feature + 1) * n_rows];
        let mut goes_left = [false; 256];
        for (bin, left) in goes_left.iter_mut().enumerate() {
            *left = bin_goes_left(&candidate.rule, bin, missing);
        }
        // branch-free: each row is written to both sides, and one side's
        // length grows (the direction of a row is not predictable)
        let split = |chunk: &[u32]| {
            let (mut left, mut right) = (vec![0; chunk.len()], vec![0; chunk.len()]);
            let (mut n_left, mut n_right) = (0, 0);
            for &row in chunk {
                let is_left = goes_left[usize::from(column[row as usize])];
                left[n_left] = row;
                right[n_right] = row;
                n_left += usize::from(is_left);
                n_right += usize::from(!is_left);
            }
            left.truncate(n_left);
            right.truncate(n_right);
            (left, right)
        };
        let parts: Vec<(Vec<u32>, Vec<u32>)> = if indices.len() > PARTITION_CHUNK_ROWS {
            indices.par_chunks(PARTITION_CHUNK_ROWS).map(split).collect()
        } else {
            vec![split(indices)]
        };
        let mut pos = 0;
        for (left, _) in &parts {
            indices[pos..pos + left.len()].copy_from_slice(left);
            pos += left.len();
        }
        let n_left = pos;
        for (_, right) in &parts {
            indices[pos..pos + right.len()].copy_from_slice(right);
            pos += right.len();
        }
        n_left
    }

    /// The finished tree in value space.
    fn to_tree(&self, nodes: &[BuildNode]) -> Tree {
        let nodes = nodes
            .iter()
            .map(|node| match node {
                BuildNode::Leaf { value, cover } => Node::Leaf {
                    value: *value,
                    cover: *cover,
                },
                BuildNode::Split {
                    candidate,
                    left,
                    right,
                    cover,
                } => {
                    let mapper = &self.mappers[candidate.feature];
                    let (condition, default_left) = match &candidate.rule {
                        BinRule::Numeric { bin, default_left } => (
                            Condition::Numeric {
                                threshold: mapper.threshold(*bin),
                            },
                            *default_left,
                        ),
                        BinRule::Categorical { left } => (
                            Condition::Categorical {
                                left: (0..256)
                                    .filter(|&bin| set_contains(left, bin))
                                    .map(|bin| bin as u32)
                                    .collect(),
                            },
                            false,
                        ),
                    };
                    Node::Split(SplitNode {
                        feature: candidate.feature as u32,
                        condition,
                        missing: Missing::NaN,
                        default_left,
                        left: *left as u32,
                        right: *right as u32,
                        cover: *cover,
                        gain: candidate.gain,
                    })
                }
            })
            .collect();
        Tree { nodes }
    }
}

fn bin_goes_left(rule: &BinRule, bin: usize, missing: usize) -> bool {
    match rule {
        BinRule::Numeric {
            bin: threshold,
            default_left,
        } => {
            if bin == missing {
                *default_left
            } else {
                bin <= *threshold
            }
        }
        BinRule::Categorical { left } => bin != missing && set_contains(left, bin),
    }
}

/// The leaf value a binned row reaches in a tree under construction.
fn leaf_value(nodes: &[BuildNode], mappers: &[BinMapper], bins: &[u8]) -> f64 {
    let mut idx = 0;
    loop {
        match &nodes[idx] {
            BuildNode::Leaf { value, .. } => return *value,
            BuildNode::Split {
                candidate, left, right, ..
            } => {
                let feature = candidate.feature;
                let bin = usize::from(bins[feature]);
                idx = if bin_goes_left(&candidate.rule, bin, mappers[feature].missing_bin()) {
                    *left
                } else {
                    *right
                };
            }
        }
    }
}

/// Sums of a leaf's rows in `f64`, in row order: its value and cover.
fn leaf_sums(indices: &[u32], gradients: &[[f64; 2]]) -> Sums {
    let mut sums = Sums::default();
    for &row in indices {
        let [g, h] = gradients[row as usize];
        sums.g += g;
        sums.h += h;
    }
    sums.n = indices.len() as u32;
    sums
}

fn row_logloss(p: f64, label: bool) -> f64 {
    let p = p.clamp(1e-15, 1.0 - 1e-15);
    if label { -p.ln() } else { -(1.0 - p).ln() }
}

/// Mean log loss of raw scores.
pub fn logloss(raw_scores: &[f64], labels: &[bool]) -> f64 {
    let total: f64 = raw_scores
        .iter()
        .zip(labels)
        .map(|(raw, &label)| row_logloss(crate::calibration::logistic(*raw), label))
        .sum();
    total / raw_scores.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows with a numeric signal, a noise column, a column whose missing
    /// values mean fraud, and a categorical column whose codes 2, 5 and 7 mean fraud.
    fn dataset(n_rows: usize, seed: u64) -> (Vec<f64>, Vec<bool>) {
        let mut rng = Rng::new(seed, 99);
        let mut values = Vec::with_capacity(n_rows * 4);
        let mut labels = Vec::with_capacity(n_rows);
        for _ in 0..n_rows {
            let signal = rng.range(-3.0, 3.0);
            let noise = rng.range(0.0, 1.0);
            let missing_means_fraud = rng.uniform() < 0.1;
            let code = rng.below(10) as f64;
            let score = signal
                + if missing_means_fraud { 2.5 } else { 0.0 }
                + if [2.0, 5.0, 7.0].contains(&code) { 2.0 } else { -1.0 };
            labels.push(rng.uniform() < crate::calibration::logistic(2.0 * score - 3.0));
            values.extend([
                signal,
                noise,
                if missing_means_fraud {
                    f64::NAN
                } else {
                    rng.range(0.0, 1.0)
                },
                code,
            ]);
        }
        (values, labels)
    }

    const KINDS: [FeatureKind; 4] = [
        FeatureKind::Numeric,
        FeatureKind::Numeric,
        FeatureKind::Numeric,
        FeatureKind::Categorical { n_codes: 10 },
    ];

    fn fit(params: GbdtParams, values: &[f64], labels: &[bool], valid: Option<(&[f64], &[bool])>) -> Trained {
        let set = TrainSet {
            values,
            n_features: 4,
            labels,
            weights: None,
        };
        let valid = valid.map(|(values, labels)| TrainSet {
            values,
            n_features: 4,
            labels,
            weights: None,
        });
        train(&params.check().unwrap(), &KINDS, &set, valid.as_ref(), &mut |_| {}).unwrap()
    }

    fn accuracy(forest: &Forest, values: &[f64], labels: &[bool]) -> f64 {
        let correct = values
            .chunks(4)
            .zip(labels)
            .filter(|(row, label)| (forest.predict_raw(row).unwrap() > 0.0) == **label)
            .count();
        correct as f64 / labels.len() as f64
    }

    #[test]
    fn learns_numeric_missing_and_categorical_signal() {
        let (values, labels) = dataset(20_000, 1);
        let (test_values, test_labels) = dataset(5_000, 2);
        let trained = fit(
            GbdtParams {
                n_trees: 100,
                ..GbdtParams::default()
            },
            &values,
            &labels,
            None,
        );
        // the Bayes rate of this data is about 0.84
        let accuracy = accuracy(&trained.forest, &test_values, &test_labels);
        assert!(accuracy > 0.80, "{accuracy}");
        let importance = &trained.gain_importance;
        assert!(
            importance[0] > importance[1] && importance[3] > importance[1],
            "{importance:?}"
        );
        let categorical_splits = trained
            .forest
            .trees()
            .iter()
            .flat_map(|tree| &tree.nodes)
            .filter(|node| {
                matches!(
                    node,
                    Node::Split(SplitNode {
                        condition: Condition::Categorical { .. },
                        ..
                    })
                )
            })
            .count();
        assert!(categorical_splits > 0);
    }

    #[test]
    fn missing_values_learn_their_direction() {
        // fraud exactly when feature 2 is missing: one split must send NaN the fraud way
        let (mut values, _) = dataset(4_000, 3);
        let labels: Vec<bool> = values.chunks(4).map(|row| row[2].is_nan()).collect();
        values.iter_mut().skip(3).step_by(4).for_each(|code| *code = 0.0);
        let trained = fit(
            GbdtParams {
                n_trees: 20,
                ..GbdtParams::default()
            },
            &values,
            &labels,
            None,
        );
        assert_eq!(accuracy(&trained.forest, &values, &labels), 1.0);
        // 20 rounds at learning rate 0.1 bring the two groups to about 0.89 and 0.01
        assert!(trained.forest.predict_proba(&[0.0, 0.5, f64::NAN, 0.0]).unwrap() > 0.85);
        assert!(trained.forest.predict_proba(&[0.0, 0.5, 0.3, 0.0]).unwrap() < 0.02);
    }

    /// The scores the trainer keeps in bin space equal the flattened model's
    /// predictions on raw values: thresholds reproduce the bins exactly.
    #[test]
    fn binned_training_scores_equal_forest_predictions() {
        let (values, labels) = dataset(10_000, 4);
        for growth in [Growth::LeafWise, Growth::DepthWise] {
            let trained = fit(
                GbdtParams {
                    n_trees: 30,
                    growth,
                    early_stopping_rounds: 0,
                    ..GbdtParams::default()
                },
                &values,
                &labels,
                Some((&values, &labels)),
            );
            let raw: Vec<f64> = values
                .chunks(4)
                .map(|row| trained.forest.predict_raw(row).unwrap())
                .collect();
            let from_forest = logloss(&raw, &labels);
            let from_training = trained.history.last().and_then(|round| round.valid_logloss).unwrap();
            assert!(
                (from_forest - from_training).abs() < 1e-12,
                "{from_forest} vs {from_training}"
            );
        }
    }

    #[test]
    fn deterministic_for_a_seed_whatever_the_thread_count() {
        let (values, labels) = dataset(80_000, 5);
        let params = |threads, seed| GbdtParams {
            n_trees: 10,
            subsample: 0.7,
            colsample_bytree: 0.5,
            threads,
            seed,
            ..GbdtParams::default()
        };
        let one = fit(params(1, 7), &values, &labels, None).forest;
        let two = fit(params(2, 7), &values, &labels, None).forest;
        let three = fit(params(3, 7), &values, &labels, None).forest;
        assert_eq!(one, two);
        assert_eq!(one, three);
        let other_seed = fit(params(2, 8), &values, &labels, None).forest;
        assert_ne!(one, other_seed);
    }

    #[test]
    fn fixed_point_cells_sum_like_floats_and_count_exactly() {
        // weighted rows (large gradients) and nearly certain rows (tiny hessians)
        let mut rng = Rng::new(3, 0);
        let gradients: Vec<[f64; 2]> = (0..200_000)
            .map(|row| {
                let p = rng.uniform().powi(8);
                let w = if row % 97 == 0 { 250.0 } else { 1.0 };
                let y = if row % 3 == 0 { 1.0 } else { 0.0 };
                [w * (p - y), (w * p * (1.0 - p)).max(MIN_HESSIAN)]
            })
            .collect();
        let scale = Scale::new(&gradients);
        let mut total = Cell::default();
        let mut part = Cell::default();
        for (row, &gh) in gradients.iter().enumerate() {
            total.add(&scale.cell(gh));
            if row % 5 == 0 {
                part.add(&scale.cell(gh));
            }
        }
        let exact = leaf_sums(&(0..gradients.len() as u32).collect::<Vec<_>>(), &gradients);
        let sums = scale.sums(&total);
        assert_eq!(sums.n, 200_000);
        assert!(
            (sums.g - exact.g).abs() <= 1e-9 * exact.g.abs(),
            "{} vs {}",
            sums.g,
            exact.g
        );
        assert!((sums.h - exact.h).abs() <= 1e-9 * exact.h, "{} vs {}", sums.h, exact.h);
        // subtraction is exact: the rest plus the part gives the total back
        let rest = total.minus(&part);
        assert_eq!(scale.count(&rest), 160_000);
        let mut back = rest;
        back.add(&part);
        assert_eq!(back.0, total.0);
    }

    #[test]
    fn growth_limits_hold() {
        let (values, labels) = dataset(20_000, 6);
        let leaf_wise = fit(
            GbdtParams {
                n_trees: 5,
                num_leaves: 7,
                min_data_in_leaf: 1,
                ..GbdtParams::default()
            },
            &values,
            &labels,
            None,
        );
        assert!(leaf_wise.forest.trees().iter().all(|tree| tree.n_leaves() <= 7));
        assert!(leaf_wise.forest.trees().iter().any(|tree| tree.n_leaves() == 7));
        let depth_wise = fit(
            GbdtParams {
                n_trees: 5,
                growth: Growth::DepthWise,
                max_depth: 3,
                min_data_in_leaf: 1,
                ..GbdtParams::default()
            },
            &values,
            &labels,
            None,
        );
        assert!(depth_wise.forest.trees().iter().all(|tree| tree.depth() <= 3));
        assert!(depth_wise.forest.trees().iter().any(|tree| tree.n_leaves() == 8));
    }

    #[test]
    fn early_stopping_keeps_the_best_round() {
        let (values, _) = dataset(5_000, 7);
        let mut rng = Rng::new(1, 1);
        let noise: Vec<bool> = (0..5_000).map(|_| rng.uniform() < 0.3).collect();
        let (valid_values, _) = dataset(2_000, 8);
        let valid_noise: Vec<bool> = (0..2_000).map(|_| rng.uniform() < 0.3).collect();
        let trained = fit(
            GbdtParams {
                n_trees: 500,
                early_stopping_rounds: 10,
                ..GbdtParams::default()
            },
            &values,
            &noise,
            Some((&valid_values, &valid_noise)),
        );
        assert!(trained.history.len() < 100, "{}", trained.history.len());
        assert_eq!(trained.forest.n_trees(), trained.best_round);
        // importance describes the kept trees only
        let kept: f64 = trained
            .forest
            .trees()
            .iter()
            .flat_map(|tree| &tree.nodes)
            .map(|node| if let Node::Split(split) = node { split.gain } else { 0.0 })
            .sum();
        assert!((trained.gain_importance.iter().sum::<f64>() - kept).abs() < 1e-9 * kept.max(1.0));
        let best = trained.history[trained.best_round - 1].valid_logloss.unwrap();
        assert!(trained.history.iter().all(|round| round.valid_logloss.unwrap() >= best));
    }

    #[test]
    fn class_weight_raises_fraud_probabilities() {
        let (values, labels) = dataset(5_000, 9);
        let mean = |params: GbdtParams| {
            let forest = fit(params, &values, &labels, None).forest;
            values
                .chunks(4)
                .map(|row| forest.predict_proba(row).unwrap())
                .sum::<f64>()
                / labels.len() as f64
        };
        let plain = mean(GbdtParams {
            n_trees: 20,
            ..GbdtParams::default()
        });
        let weighted = mean(GbdtParams {
            n_trees: 20,
            scale_pos_weight: 5.0,
            ..GbdtParams::default()
        });
        assert!(weighted > plain + 0.05, "{plain} {weighted}");
    }

    #[test]
    fn bad_parameters_and_data_are_refused() {
        for params in [
            GbdtParams {
                learning_rate: 0.0,
                ..GbdtParams::default()
            },
            GbdtParams {
                max_bin: 256,
                ..GbdtParams::default()
            },
            GbdtParams {
                subsample: 1.5,
                ..GbdtParams::default()
            },
        ] {
            assert!(matches!(params.check(), Err(ModelError::InvalidParameter(_))));
        }
        let params = GbdtParams::default().check().unwrap();
        let set = TrainSet {
            values: &[1.0, 2.0, 3.0],
            n_features: 4,
            labels: &[true],
            weights: None,
        };
        assert!(matches!(
            train(&params, &KINDS, &set, None, &mut |_| {}),
            Err(ModelError::InvalidData(_))
        ));
        let no_features = TrainSet {
            values: &[],
            n_features: 0,
            labels: &[true, false],
            weights: None,
        };
        assert!(matches!(
            train(&params, &[], &no_features, None, &mut |_| {}),
            Err(ModelError::InvalidData(_))
        ));
    }
}
