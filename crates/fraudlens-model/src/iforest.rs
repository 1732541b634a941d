//! Isolation forest (Liu, Ting & Zhou, 2008): an unsupervised anomaly score for
//! unlabeled data, used alone or as the `ml_anomaly_score` input feature of the
//! gradient-boosted trees.
//!
//! Each tree is grown on `sample_size` rows drawn without replacement: a node
//! picks a feature uniformly among those whose values in the node still differ,
//! and a threshold uniformly between their minimum and maximum, until a node
//! holds one row, only identical rows, or reaches `max_depth`. Anomalies are
//! few and different, so they are isolated close to the root. The score of a
//! row is
//!
//! ```text
//! s(x) = 2^(-E[h(x)] / c(ψ)),   c(n) = 2 H(n-1) - 2 (n-1) / n
//! ```
//!
//! where `h(x)` is the depth of the leaf `x` falls in plus `c(size)` for the
//! rows that leaf still held (the expected depth of the subtree that was not
//! grown), the mean is over trees, and `c(ψ)` is the average path length for
//! the sample size `ψ`. Scores are in (0, 1]: close to 1 means anomalous,
//! around 0.5 means no distinct anomalies, well below 0.5 means a normal row.
//!
//! # Missing and infinite values
//!
//! NaN is the missing value. Every split stores, at fit time, the side missing
//! values follow: left with probability `n_left / (n_left + n_right)`, the share
//! of the node's non-missing sample that went left. Training rows with a NaN in
//! the split feature follow that side too, so fitting and scoring agree. Over the
//! forest, a missing value therefore goes where a value drawn from the node's
//! sample would go: missingness alone is not evidence of an anomaly (add an
//! explicit "is missing" feature if it should be). A feature whose values in a
//! node are all missing, or all equal, is never split on there.
//!
//! ±infinity are values, ordered as IEEE orders them. Thresholds are drawn in
//! the node's range clamped to `±f64::MAX`, so they stay finite and an infinite
//! value is isolated quickly, as the extreme value it is.
//!
//! # Determinism
//!
//! Tree `t` draws only from `Rng::new(seed, t)` (xoshiro256++), trees are built
//! in parallel with rayon and collected in order, and each row's path lengths
//! are summed in tree order: the forest and every score are identical bit for
//! bit for a seed whatever the number of threads. The harmonic numbers use
//! [`fraudlens_core::rng::ln`], so the fitted forest does not depend on the
//! platform's libm either.
//!
//! # Layout and storage
//!
//! Each tree is one contiguous array of 16-byte nodes whose children sit side
//! by side. Scoring walks eight (tree, row) pairs at once so their memory loads
//! overlap: [`IsolationForest::score`] walks eight trees for its row, and
//! [`IsolationForest::score_batch`] takes blocks of rows tree by tree (the tree
//! stays in L1), eight rows at a time, in parallel over blocks. Both sum a row's
//! path lengths in tree order, so they give the same bits.
//!
//! The fitted forest (de)serializes with serde as compact per-tree arrays; the
//! crate enables serde_json's `float_roundtrip`, so a JSON artifact reloads every
//! threshold bit for bit. Deserializing checks every index, so a corrupt model is
//! an error, never a panic while scoring.
//!
//! ```
//! use fraudlens_model::iforest::IsolationForestParams;
//!
//! let amount: Vec<f64> = (0..500).map(|i| f64::from(i % 50)).collect();
//! let n_tx_24h: Vec<f64> = (0..500).map(|i| f64::from(i % 7)).collect();
//! let forest = IsolationForestParams::default().check()?.fit(&[amount, n_tx_24h])?;
//! let normal = forest.score(&[25.0, 3.0])?;
//! let odd = forest.score(&[900.0, 40.0])?;
//! assert!(odd > 0.6 && normal < 0.5);
//! # Ok::<(), fraudlens_model::iforest::IsolationForestError>(())
//! ```

use fraudlens_core::rng::{Rng, ln};
use rayon::prelude::*;
use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};

/// Largest accepted `sample_size`: node indices of a tree stay well inside `u32`.
pub const MAX_SAMPLE_SIZE: usize = 1 << 30;

/// Largest accepted number of features: a split packs `2 * feature + 1` in a `u32`
/// next to the leaf marker.
pub const MAX_FEATURES: usize = (u32::MAX / 2) as usize;

/// Hyperparameters as written in a config file. [`IsolationForestParams::check`]
/// turns them into [`ValidIsolationForestParams`], the only type that fits a forest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IsolationForestParams {
    /// Number of trees; scores average their path lengths. Default 200.
    pub n_trees: usize,
    /// Rows drawn without replacement for each tree (ψ in the paper). Default 256.
    /// When the data has fewer rows, every tree uses all of them.
    pub sample_size: usize,
    /// Depth limit of a tree. `None` (the default) is the paper's height limit
    /// `ceil(log2(ψ))`, with ψ the sample size actually used: deeper splits only
    /// tell normal rows apart.
    pub max_depth: Option<usize>,
    /// Seed; tree `t` draws from the stream `Rng::new(seed, t)`. Default 0.
    pub seed: u64,
}

impl Default for IsolationForestParams {
    fn default() -> Self {
        Self {
            n_trees: 200,
            sample_size: 256,
            max_depth: None,
            seed: 0,
        }
    }
}

impl IsolationForestParams {
    /// Checks every value: at least one tree, `sample_size` in `2..=MAX_SAMPLE_SIZE`,
    /// `max_depth` (when set) at least 1.
    pub fn check(&self) -> Result<ValidIsolationForestParams, IsolationForestError> {
        if self.n_trees == 0 {
            return Err(IsolationForestError::ZeroTrees);
        }
        if !(2..=MAX_SAMPLE_SIZE).contains(&self.sample_size) {
            return Err(IsolationForestError::SampleSizeOutOfRange {
                sample_size: self.sample_size,
            });
        }
        if self.max_depth == Some(0) {
            return Err(IsolationForestError::ZeroMaxDepth);
        }
        Ok(ValidIsolationForestParams(*self))
    }
}

/// Checked hyperparameters, built by [`IsolationForestParams::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValidIsolationForestParams(IsolationForestParams);

impl ValidIsolationForestParams {
    /// Number of trees (at least 1).
    pub fn n_trees(&self) -> usize {
        self.0.n_trees
    }

    /// Requested rows per tree (at least 2; capped by the number of rows at fit time).
    pub fn sample_size(&self) -> usize {
        self.0.sample_size
    }

    /// Requested depth limit; `None` means `ceil(log2(ψ))`.
    pub fn max_depth(&self) -> Option<usize> {
        self.0.max_depth
    }

    /// Seed of the per-tree random streams.
    pub fn seed(&self) -> u64 {
        self.0.seed
    }

    /// The unchecked form, e.g. to write back to a config file.
    pub fn to_params(&self) -> IsolationForestParams {
        self.0
    }

    /// Fits a forest on column-major data: `columns[feature][row_idx]`, every column
    /// the same length, at least one column and two rows. NaN is missing (see the
    /// module docs); no value makes fitting panic.
    pub fn fit(&self, columns: &[Vec<f64>]) -> Result<IsolationForest, IsolationForestError> {
        let n_rows = check_columns(columns)?;
        let sample_size = self.0.sample_size.min(n_rows);
        let max_depth = self.0.max_depth.unwrap_or_else(|| ceil_log2(sample_size));
        let trees = (0..self.0.n_trees)
            .into_par_iter()
            .map(|tree_idx| {
                let mut rng = Rng::new(self.0.seed, tree_idx as u64);
                let rows = sample_rows(&mut rng, n_rows, sample_size);
                let values = gather(columns, &rows);
                build_tree(&mut rng, &values, sample_size, max_depth)
            })
            .collect();
        Ok(IsolationForest::from_parts(
            *self,
            columns.len(),
            sample_size,
            max_depth,
            trees,
        ))
    }
}

/// Everything that can go wrong configuring, fitting, scoring or loading a forest.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IsolationForestError {
    /// `n_trees` is 0.
    #[error("n_trees must be at least 1")]
    ZeroTrees,
    /// `sample_size` is below 2 or above [`MAX_SAMPLE_SIZE`].
    #[error("sample_size must be between 2 and {MAX_SAMPLE_SIZE}, got {sample_size}")]
    SampleSizeOutOfRange {
        /// The value given.
        sample_size: usize,
    },
    /// `max_depth` is `Some(0)`.
    #[error("max_depth must be at least 1")]
    ZeroMaxDepth,
    /// Fit was given no feature column.
    #[error("training data has no feature columns")]
    NoFeatures,
    /// Fit was given more than [`MAX_FEATURES`] columns.
    #[error("training data has {n_features} feature columns, at most {MAX_FEATURES} are supported")]
    TooManyFeatures {
        /// Number of columns given.
        n_features: usize,
    },
    /// A feature column is not as long as the first one.
    #[error("feature column {feature} has {n_rows} rows but column 0 has {expected}")]
    RaggedColumns {
        /// Index of the first column of another length.
        feature: usize,
        /// Its length.
        n_rows: usize,
        /// Length of column 0.
        expected: usize,
    },
    /// Fewer than two rows: nothing can be isolated from anything.
    #[error("training data needs at least 2 rows, got {n_rows}")]
    TooFewRows {
        /// Number of rows given.
        n_rows: usize,
    },
    /// A row to score does not have one value per feature.
    #[error("row has {found} values but the model has {expected} features")]
    RowLength {
        /// Number of features of the model.
        expected: usize,
        /// Length of the row given.
        found: usize,
    },
    /// A row-major batch is not a whole number of rows.
    #[error("batch of {len} values is not a whole number of {n_features}-feature rows")]
    BatchShape {
        /// Number of values given.
        len: usize,
        /// Number of features of the model.
        n_features: usize,
    },
    /// The output slice does not have one slot per row of the batch.
    #[error("output has {found} slots for a batch of {expected} rows")]
    OutputLength {
        /// Number of rows in the batch.
        expected: usize,
        /// Length of the output slice.
        found: usize,
    },
    /// A stored model is inconsistent (corrupt or edited by hand).
    #[error("invalid stored isolation forest: {reason}")]
    InvalidModel {
        /// What is wrong, and where.
        reason: String,
    },
}

/// A fitted isolation forest: a value saved in the model artifact and applied
/// unchanged at serving time.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "IsolationForestWire", into = "IsolationForestWire")]
pub struct IsolationForest {
    /// The hyperparameters it was fitted with.
    params: ValidIsolationForestParams,
    /// Length of a row to score.
    n_features: usize,
    /// Rows each tree was grown on (ψ): the requested sample size capped by the data.
    sample_size: usize,
    /// Depth limit the trees were grown with.
    max_depth: usize,
    /// `c(sample_size)`, which turns a mean path length into a score; derived, not stored.
    normalizer: f64,
    /// The trees, in seed-stream order.
    trees: Vec<Tree>,
}

impl IsolationForest {
    /// Number of values a row to score must have.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Number of trees.
    pub fn n_trees(&self) -> usize {
        self.trees.len()
    }

    /// Rows each tree was grown on (ψ): the requested sample size capped by the
    /// number of training rows.
    pub fn sample_size(&self) -> usize {
        self.sample_size
    }

    /// Depth limit the trees were grown with.
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }

    /// The hyperparameters it was fitted with.
    pub fn params(&self) -> &ValidIsolationForestParams {
        &self.params
    }

    /// Anomaly score of one row in (0, 1]: close to 1 is anomalous, below 0.5 normal.
    /// NaN values are missing; no value makes scoring panic.
    pub fn score(&self, row: &[f64]) -> Result<f64, IsolationForestError> {
        if row.len() != self.n_features {
            return Err(IsolationForestError::RowLength {
                expected: self.n_features,
                found: row.len(),
            });
        }
        Ok(self.score_row(row))
    }

    /// Scores a row-major batch (`rows[row_idx * n_features + feature]`) into `out`,
    /// one score per row, in parallel over blocks of rows. Each score is bit for bit
    /// what [`IsolationForest::score`] gives for that row.
    pub fn score_batch(&self, rows: &[f64], out: &mut [f64]) -> Result<(), IsolationForestError> {
        if !rows.len().is_multiple_of(self.n_features) {
            return Err(IsolationForestError::BatchShape {
                len: rows.len(),
                n_features: self.n_features,
            });
        }
        let n_rows = rows.len() / self.n_features;
        if out.len() != n_rows {
            return Err(IsolationForestError::OutputLength {
                expected: n_rows,
                found: out.len(),
            });
        }
        if n_rows <= BLOCK_ROWS {
            // one block: not worth handing to the pool
            self.score_block(rows, out);
        } else {
            out.par_chunks_mut(BLOCK_ROWS)
                .zip(rows.par_chunks(BLOCK_ROWS * self.n_features))
                .for_each(|(out_block, rows_block)| self.score_block(rows_block, out_block));
        }
        Ok(())
    }

    /// Scores rows tree by tree, `LANES` rows walked together: the tree stays in L1.
    /// Sums each row's path lengths in tree order from 0.0, exactly as `score_row`.
    fn score_block(&self, rows: &[f64], out: &mut [f64]) {
        let n_features = self.n_features;
        out.fill(0.0);
        for tree in &self.trees {
            let mut row_groups = rows.chunks_exact(LANES * n_features);
            let mut out_groups = out.chunks_exact_mut(LANES);
            for (out_group, row_group) in (&mut out_groups).zip(&mut row_groups) {
                let path_lengths = walk_lanes(|_| tree, |lane, feature| row_group[lane * n_features + feature]);
                for (path_length_sum, path_length) in out_group.iter_mut().zip(path_lengths) {
                    *path_length_sum += path_length;
                }
            }
            let rest = row_groups.remainder().chunks_exact(n_features);
            for (path_length_sum, row) in out_groups.into_remainder().iter_mut().zip(rest) {
                *path_length_sum += tree.path_length(row);
            }
        }
        for value in out.iter_mut() {
            *value = self.score_from_sum(*value);
        }
    }

    /// Score of a row of the right length: `LANES` trees walked together, path lengths
    /// summed in tree order from 0.0.
    fn score_row(&self, row: &[f64]) -> f64 {
        let mut path_length_sum = 0.0;
        let mut tree_groups = self.trees.chunks_exact(LANES);
        for tree_group in &mut tree_groups {
            for path_length in walk_lanes(|lane| &tree_group[lane], |_, feature| row[feature]) {
                path_length_sum += path_length;
            }
        }
        for tree in tree_groups.remainder() {
            path_length_sum += tree.path_length(row);
        }
        self.score_from_sum(path_length_sum)
    }

    fn score_from_sum(&self, path_length_sum: f64) -> f64 {
        let mean_path_length = path_length_sum / self.trees.len() as f64;
        // path lengths are >= 0, so the score is <= 1; the floor keeps it > 0 even for
        // absurdly deep trees (a path longer than ~1000 normalizers would underflow)
        (-mean_path_length / self.normalizer).exp2().max(f64::MIN_POSITIVE)
    }

    fn from_parts(
        params: ValidIsolationForestParams,
        n_features: usize,
        sample_size: usize,
        max_depth: usize,
        trees: Vec<Tree>,
    ) -> Self {
        Self {
            params,
            n_features,
            sample_size,
            max_depth,
            normalizer: average_path_length(sample_size),
            trees,
        }
    }
}

impl std::fmt::Debug for IsolationForest {
    /// A summary: the nodes themselves are thousands of numbers.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("IsolationForest")
            .field("params", &self.params)
            .field("n_features", &self.n_features)
            .field("sample_size", &self.sample_size)
            .field("max_depth", &self.max_depth)
            .field(
                "n_nodes",
                &self.trees.iter().map(|tree| tree.nodes.len()).sum::<usize>(),
            )
            .finish()
    }
}

/// Rows per block in [`IsolationForest::score_batch`]: a block of rows and one tree
/// fit in L1/L2 together, and a block is enough work to be worth a rayon task.
const BLOCK_ROWS: usize = 256;

/// `Node::code` of a leaf.
const LEAF: u32 = u32::MAX;

/// One node of a flattened tree; 16 bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Node {
    /// A split: its threshold (a value `<= threshold` goes left). A leaf: the path
    /// length of a row ending here, its depth plus `c(rows it held)`.
    value: f64,
    /// A split: index of the left child in the tree's array; the right child is at
    /// `left + 1`, and `left` is greater than the split's own index. A leaf: 0.
    left: u32,
    /// [`LEAF`], or `2 * feature + 1` if missing values go left, `2 * feature` if right.
    code: u32,
}

impl Node {
    fn leaf(path_length: f64) -> Self {
        Self {
            value: path_length,
            left: 0,
            code: LEAF,
        }
    }
}

/// A flattened isolation tree; the root is `nodes[0]`.
#[derive(Clone, Debug, PartialEq)]
struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    /// Path length of `row` (`row.len()` is the forest's `n_features`, which every
    /// split feature is below: checked at fit and at deserialization).
    fn path_length(&self, row: &[f64]) -> f64 {
        let mut node = self.nodes[0];
        while node.code != LEAF {
            let value = row[(node.code >> 1) as usize];
            let goes_left = if value.is_nan() {
                node.code & 1 == 1
            } else {
                value <= node.value
            };
            node = self.nodes[node.left as usize + usize::from(!goes_left)];
        }
        node.value
    }
}

/// Path lengths of `LANES` (tree, row) pairs walked together: one tree and `LANES`
/// rows when scoring a batch, `LANES` trees and one row when scoring a row. `tree(lane)`
/// is the lane's tree, `value(lane, feature)` a value of its row (every feature below
/// the forest's `n_features` must be readable). Each result is what `Tree::path_length`
/// gives; the walks are independent, so their memory loads overlap, and a step is a
/// select rather than a branch the CPU would mispredict: about twice as fast as walking
/// the pairs one after the other.
fn walk_lanes<'a>(tree: impl Fn(usize) -> &'a Tree, value: impl Fn(usize, usize) -> f64) -> [f64; LANES] {
    let mut node_idx = [0usize; LANES];
    loop {
        let mut n_moved = 0;
        for (lane, lane_node_idx) in node_idx.iter_mut().enumerate() {
            let node = tree(lane).nodes[*lane_node_idx];
            let is_split = node.code != LEAF;
            // a leaf reads feature 0, which every row has, and stays where it is
            let feature = if is_split { (node.code >> 1) as usize } else { 0 };
            let value = value(lane, feature);
            let goes_left = if value.is_nan() {
                node.code & 1 == 1
            } else {
                value <= node.value
            };
            let child = node.left as usize + usize::from(!goes_left);
            *lane_node_idx = if is_split { child } else { *lane_node_idx };
            n_moved += usize::from(is_split);
        }
        if n_moved == 0 {
            return std::array::from_fn(|lane| tree(lane).nodes[node_idx[lane]].value);
        }
    }
}

/// (tree, row) pairs walked together by [`walk_lanes`].
const LANES: usize = 8;

/// A split being decided while growing a tree.
struct Split {
    feature: usize,
    threshold: f64,
    missing_goes_left: bool,
}

/// A node whose rows are known but whose split is not yet drawn.
struct PendingNode {
    node_idx: usize,
    /// Its rows: `sample_order[start..end]`.
    start: usize,
    end: usize,
    depth: usize,
}

/// Grows one tree on a column-major sample (`values[feature * sample_size + sample_idx]`).
fn build_tree(rng: &mut Rng, values: &[f64], sample_size: usize, max_depth: usize) -> Tree {
    let n_features = values.len() / sample_size;
    // sample indices, partitioned in place so each node's rows are a contiguous range
    let mut sample_order: Vec<u32> = (0..sample_size as u32).collect();
    // scratch permutation for drawing split features without replacement
    let mut features: Vec<usize> = (0..n_features).collect();
    let mut nodes = vec![Node::leaf(0.0)];
    // explicit stack: trees with a large max_depth can be deeper than the call stack allows
    let mut pending = vec![PendingNode {
        node_idx: 0,
        start: 0,
        end: sample_size,
        depth: 0,
    }];
    while let Some(PendingNode {
        node_idx,
        start,
        end,
        depth,
    }) = pending.pop()
    {
        let rows = &mut sample_order[start..end];
        let split = if rows.len() > 1 && depth < max_depth {
            draw_split(rng, values, sample_size, &mut features, rows)
        } else {
            None
        };
        let Some(split) = split else {
            nodes[node_idx] = Node::leaf(depth as f64 + average_path_length(rows.len()));
            continue;
        };
        let column = &values[split.feature * sample_size..(split.feature + 1) * sample_size];
        let n_left = partition(rows, |sample_idx| {
            let value = column[sample_idx as usize];
            if value.is_nan() {
                split.missing_goes_left
            } else {
                value <= split.threshold
            }
        });
        let left = nodes.len();
        nodes[node_idx] = Node {
            value: split.threshold,
            left: left as u32,
            code: 2 * split.feature as u32 + u32::from(split.missing_goes_left),
        };
        nodes.push(Node::leaf(0.0));
        nodes.push(Node::leaf(0.0));
        pending.push(PendingNode {
            node_idx: left + 1,
            start: start + n_left,
            end,
            depth: depth + 1,
        });
        pending.push(PendingNode {
            node_idx: left,
            start,
            end: start + n_left,
            depth: depth + 1,
        });
    }
    Tree { nodes }
}

/// Draws a feature uniformly among those whose non-missing values in `rows` differ
/// (the first such feature of a random permutation), a threshold uniformly in its
/// range, and the side of missing values. `None` if every feature is constant or
/// missing: the node is a leaf.
fn draw_split(
    rng: &mut Rng,
    values: &[f64],
    sample_size: usize,
    features: &mut [usize],
    rows: &[u32],
) -> Option<Split> {
    let mut n_candidates = features.len();
    while n_candidates > 0 {
        let pick = rng.below(n_candidates as u64) as usize;
        let feature = features[pick];
        n_candidates -= 1;
        features.swap(pick, n_candidates);
        let column = &values[feature * sample_size..(feature + 1) * sample_size];
        let Some((min, max)) = value_range(column, rows) else {
            continue;
        };
        // clamped so the threshold is finite; infinite values stay beyond it
        let (min, max) = (min.max(-f64::MAX), max.min(f64::MAX));
        if min >= max {
            continue;
        }
        // the interpolation form cannot overflow for a range wider than f64::MAX
        let u = rng.uniform();
        let mut threshold = min * (1.0 - u) + max * u;
        if !(threshold >= min && threshold < max) {
            // rounding reached max (or beyond): the right side would be empty
            threshold = min;
        }
        let (n_left, n_right) = rows.iter().fold((0u64, 0u64), |(n_left, n_right), &sample_idx| {
            let value = column[sample_idx as usize];
            if value.is_nan() {
                (n_left, n_right)
            } else if value <= threshold {
                (n_left + 1, n_right)
            } else {
                (n_left, n_right + 1)
            }
        });
        // both counts are >= 1: min goes left and max goes right
        let missing_goes_left = rng.below(n_left + n_right) < n_left;
        return Some(Split {
            feature,
            threshold,
            missing_goes_left,
        });
    }
    None
}

/// Minimum and maximum of the non-NaN values of `column` at `rows`; `None` if all are NaN.
fn value_range(column: &[f64], rows: &[u32]) -> Option<(f64, f64)> {
    let mut range: Option<(f64, f64)> = None;
    for &sample_idx in rows {
        let value = column[sample_idx as usize];
        if value.is_nan() {
            continue;
        }
        range = Some(match range {
            None => (value, value),
            Some((min, max)) => (min.min(value), max.max(value)),
        });
    }
    range
}

/// Moves the rows for which `goes_left` holds to the front; returns how many there are.
fn partition(rows: &mut [u32], goes_left: impl Fn(u32) -> bool) -> usize {
    let mut n_left = 0;
    for idx in 0..rows.len() {
        if goes_left(rows[idx]) {
            rows.swap(idx, n_left);
            n_left += 1;
        }
    }
    n_left
}

/// Draws `sample_size` distinct row indices below `n_rows` with Floyd's algorithm:
/// time and memory in `sample_size`, however many rows there are.
fn sample_rows(rng: &mut Rng, n_rows: usize, sample_size: usize) -> Vec<usize> {
    let mut chosen = FxHashSet::default();
    chosen.reserve(sample_size);
    let mut rows = Vec::with_capacity(sample_size);
    for upper in n_rows - sample_size..n_rows {
        let candidate = rng.below(upper as u64 + 1) as usize;
        // `upper` was out of reach of every earlier draw, so it is new
        let row = if chosen.contains(&candidate) { upper } else { candidate };
        chosen.insert(row);
        rows.push(row);
    }
    rows
}

/// The sampled rows as a column-major block: `values[feature * rows.len() + sample_idx]`.
fn gather(columns: &[Vec<f64>], rows: &[usize]) -> Vec<f64> {
    let mut values = Vec::with_capacity(columns.len() * rows.len());
    for column in columns {
        values.extend(rows.iter().map(|&row_idx| column[row_idx]));
    }
    values
}

/// Checks the training matrix's shape; returns its number of rows.
fn check_columns(columns: &[Vec<f64>]) -> Result<usize, IsolationForestError> {
    let Some(first) = columns.first() else {
        return Err(IsolationForestError::NoFeatures);
    };
    if columns.len() > MAX_FEATURES {
        return Err(IsolationForestError::TooManyFeatures {
            n_features: columns.len(),
        });
    }
    let n_rows = first.len();
    if let Some((feature, column)) = columns.iter().enumerate().find(|(_, column)| column.len() != n_rows) {
        return Err(IsolationForestError::RaggedColumns {
            feature,
            n_rows: column.len(),
            expected: n_rows,
        });
    }
    if n_rows < 2 {
        return Err(IsolationForestError::TooFewRows { n_rows });
    }
    Ok(n_rows)
}

/// `ceil(log2(n))` for `n >= 1`.
fn ceil_log2(n: usize) -> usize {
    (usize::BITS - n.saturating_sub(1).leading_zeros()) as usize
}

/// `c(n) = 2 H(n-1) - 2 (n-1) / n`: the average path length of an unsuccessful search
/// in a binary search tree of `n` points, i.e. the expected depth of the subtree a
/// leaf holding `n` rows would have grown. `c(0) = c(1) = 0`, `c(2) = 1`.
fn average_path_length(n: usize) -> f64 {
    if n <= 1 {
        return 0.0;
    }
    let n_f = n as f64;
    2.0 * harmonic(n - 1) - 2.0 * (n_f - 1.0) / n_f
}

/// `H(i) = 1 + 1/2 + … + 1/i`: summed for small `i` (smallest terms first), the
/// asymptotic expansion beyond (its error at `i = 64` is below 1e-13).
fn harmonic(i: usize) -> f64 {
    const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;
    const SUMMED_UP_TO: usize = 64;
    if i <= SUMMED_UP_TO {
        let mut sum = 0.0;
        for k in (1..=i).rev() {
            sum += 1.0 / k as f64;
        }
        return sum;
    }
    let x = i as f64;
    let x2 = x * x;
    ln(x) + EULER_GAMMA + 1.0 / (2.0 * x) - 1.0 / (12.0 * x2) + 1.0 / (120.0 * x2 * x2)
}

/// Stored form of [`IsolationForest`]: compact per-tree arrays, checked when read.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IsolationForestWire {
    params: IsolationForestParams,
    n_features: usize,
    sample_size: usize,
    max_depth: usize,
    trees: Vec<TreeWire>,
}

/// One tree as three parallel arrays, one entry per node (see [`Node`]).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TreeWire {
    /// `u32::MAX` for a leaf, else `2 * feature + 1` (missing goes left) or `2 * feature`.
    code: Vec<u32>,
    /// Left child of a split (the right one is next to it); 0 for a leaf.
    left: Vec<u32>,
    /// Threshold of a split, path length of a leaf.
    value: Vec<f64>,
}

impl From<IsolationForest> for IsolationForestWire {
    fn from(forest: IsolationForest) -> Self {
        let trees = forest
            .trees
            .iter()
            .map(|tree| TreeWire {
                code: tree.nodes.iter().map(|node| node.code).collect(),
                left: tree.nodes.iter().map(|node| node.left).collect(),
                value: tree.nodes.iter().map(|node| node.value).collect(),
            })
            .collect();
        Self {
            params: forest.params.to_params(),
            n_features: forest.n_features,
            sample_size: forest.sample_size,
            max_depth: forest.max_depth,
            trees,
        }
    }
}

impl TryFrom<IsolationForestWire> for IsolationForest {
    type Error = IsolationForestError;

    /// Checks everything scoring relies on: split features below `n_features`, children
    /// in bounds and after their parent (so every path ends), finite values.
    fn try_from(wire: IsolationForestWire) -> Result<Self, Self::Error> {
        let invalid = |reason: String| IsolationForestError::InvalidModel { reason };
        let params = wire.params.check()?;
        if !(1..=MAX_FEATURES).contains(&wire.n_features) {
            return Err(invalid(format!("n_features {} out of range", wire.n_features)));
        }
        if !(2..=params.sample_size()).contains(&wire.sample_size) {
            return Err(invalid(format!(
                "sample_size {} not in 2..={}",
                wire.sample_size,
                params.sample_size()
            )));
        }
        if wire.max_depth == 0 {
            return Err(invalid("max_depth is 0".to_owned()));
        }
        if wire.trees.len() != params.n_trees() {
            return Err(invalid(format!(
                "{} trees stored but n_trees is {}",
                wire.trees.len(),
                params.n_trees()
            )));
        }
        let trees = wire
            .trees
            .into_iter()
            .enumerate()
            .map(|(tree_idx, tree)| {
                tree_from_wire(tree, wire.n_features).map_err(|reason| invalid(format!("tree {tree_idx}: {reason}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_parts(
            params,
            wire.n_features,
            wire.sample_size,
            wire.max_depth,
            trees,
        ))
    }
}

fn tree_from_wire(tree: TreeWire, n_features: usize) -> Result<Tree, String> {
    let n_nodes = tree.code.len();
    if n_nodes == 0 || tree.left.len() != n_nodes || tree.value.len() != n_nodes {
        return Err(format!(
            "node arrays have lengths {}, {}, {} (must be equal and non-zero)",
            n_nodes,
            tree.left.len(),
            tree.value.len()
        ));
    }
    let mut nodes = Vec::with_capacity(n_nodes);
    for (node_idx, ((&code, &left), &value)) in tree.code.iter().zip(&tree.left).zip(&tree.value).enumerate() {
        if code == LEAF {
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!("node {node_idx}: leaf path length {value}"));
            }
        } else {
            let feature = (code >> 1) as usize;
            if feature >= n_features {
                return Err(format!("node {node_idx}: feature {feature} but {n_features} features"));
            }
            if !value.is_finite() {
                return Err(format!("node {node_idx}: threshold {value}"));
            }
            let left = left as usize;
            if left <= node_idx || left + 1 >= n_nodes {
                return Err(format!("node {node_idx}: children {left}, {} out of range", left + 1));
            }
        }
        nodes.push(Node { value, left, code });
    }
    Ok(Tree { nodes })
}

#[cfg(test)]
mod tests {
    use super::*;
    // named: proptest's prelude has an `Rng` trait too
    use fraudlens_core::rng::Rng;
    use proptest::prelude::*;

    /// `n_inliers` points of a standard 2-D Gaussian, then `n_outliers` points at
    /// distance 6 to 9 in random directions; column-major, plus the outlier flags.
    fn gaussian_cloud(seed: u64, n_inliers: usize, n_outliers: usize) -> (Vec<Vec<f64>>, Vec<bool>) {
        let mut rng = Rng::new(seed, 99);
        let mut columns = vec![Vec::new(), Vec::new()];
        for _ in 0..n_inliers {
            columns[0].push(rng.normal());
            columns[1].push(rng.normal());
        }
        for _ in 0..n_outliers {
            let (dx, dy) = (rng.normal(), rng.normal());
            let radius = rng.range(6.0, 9.0) / (dx * dx + dy * dy).sqrt();
            columns[0].push(dx * radius);
            columns[1].push(dy * radius);
        }
        let is_outlier = (0..n_inliers + n_outliers)
            .map(|row_idx| row_idx >= n_inliers)
            .collect();
        (columns, is_outlier)
    }

    fn row_major(columns: &[Vec<f64>]) -> Vec<f64> {
        let n_rows = columns[0].len();
        (0..n_rows)
            .flat_map(|row_idx| columns.iter().map(move |column| column[row_idx]))
            .collect()
    }

    fn batch_scores(forest: &IsolationForest, columns: &[Vec<f64>]) -> Vec<f64> {
        let rows = row_major(columns);
        let mut out = vec![0.0; columns[0].len()];
        forest.score_batch(&rows, &mut out).unwrap();
        out
    }

    fn fit(params: IsolationForestParams, columns: &[Vec<f64>]) -> IsolationForest {
        params.check().unwrap().fit(columns).unwrap()
    }

    fn bits(scores: &[f64]) -> Vec<u64> {
        scores.iter().map(|score| score.to_bits()).collect()
    }

    /// Probability that a random positive outscores a random negative (ties count half).
    fn auc(scores: &[f64], positive: &[bool]) -> f64 {
        let mut wins = 0.0;
        let mut pairs = 0.0;
        for (score_pos, _) in scores.iter().zip(positive).filter(|(_, is_pos)| **is_pos) {
            for (score_neg, _) in scores.iter().zip(positive).filter(|(_, is_pos)| !**is_pos) {
                pairs += 1.0;
                if score_pos > score_neg {
                    wins += 1.0;
                } else if score_pos == score_neg {
                    wins += 0.5;
                }
            }
        }
        wins / pairs
    }

    fn split_features(forest: &IsolationForest) -> Vec<usize> {
        forest
            .trees
            .iter()
            .flat_map(|tree| tree.nodes.iter())
            .filter(|node| node.code != LEAF)
            .map(|node| (node.code >> 1) as usize)
            .collect()
    }

    #[test]
    fn outliers_score_higher_than_inliers() {
        let (columns, is_outlier) = gaussian_cloud(1, 2000, 20);
        let forest = fit(IsolationForestParams::default(), &columns);
        let scores = batch_scores(&forest, &columns);
        let auc = auc(&scores, &is_outlier);
        assert!(auc > 0.95, "auc {auc}");
        // the documented reading of the scale: anomalies well above 0.5, the bulk below
        let mut inlier_scores: Vec<f64> = scores[..2000].to_vec();
        inlier_scores.sort_by(f64::total_cmp);
        let min_outlier = scores[2000..].iter().copied().fold(f64::INFINITY, f64::min);
        assert!(inlier_scores[1000] < 0.5, "median inlier {}", inlier_scores[1000]);
        assert!(min_outlier > 0.6, "least anomalous outlier {min_outlier}");
    }

    #[test]
    fn fit_and_scores_do_not_depend_on_the_number_of_threads() {
        let (columns, _) = gaussian_cloud(2, 3000, 30);
        let params = IsolationForestParams {
            seed: 7,
            ..IsolationForestParams::default()
        };
        let in_pool = |n_threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(n_threads).build().unwrap();
            pool.install(|| {
                let forest = fit(params, &columns);
                let scores = batch_scores(&forest, &columns);
                (forest, scores)
            })
        };
        let (forest_1, scores_1) = in_pool(1);
        let (forest_4, scores_4) = in_pool(4);
        assert_eq!(forest_1, forest_4);
        assert_eq!(bits(&scores_1), bits(&scores_4));
        let (forest_again, scores_again) = in_pool(4);
        assert_eq!(forest_again, forest_4);
        assert_eq!(bits(&scores_again), bits(&scores_4));
    }

    #[test]
    fn score_batch_is_score_row_by_row() {
        // batches walk rows in lanes, single rows walk trees in lanes: same sums, same order.
        // More than one block, a last block that is not full, and a row count and a tree
        // count that are not multiples of LANES.
        let (mut columns, _) = gaussian_cloud(3, 3 * BLOCK_ROWS + 17, 5);
        columns[0][7] = f64::NAN;
        for n_trees in [200, 13] {
            let forest = fit(
                IsolationForestParams {
                    n_trees,
                    ..IsolationForestParams::default()
                },
                &columns,
            );
            let batch = batch_scores(&forest, &columns);
            let one_by_one: Vec<f64> = (0..columns[0].len())
                .map(|row_idx| forest.score(&[columns[0][row_idx], columns[1][row_idx]]).unwrap())
                .collect();
            assert_eq!(bits(&batch), bits(&one_by_one));
            // and both are what a plain walk of each tree gives
            let row = [columns[0][7], columns[1][7]];
            let plain_sum = forest.trees.iter().fold(0.0, |sum, tree| sum + tree.path_length(&row));
            assert_eq!(one_by_one[7].to_bits(), forest.score_from_sum(plain_sum).to_bits());
        }
    }

    #[test]
    fn different_seeds_give_different_forests() {
        let (columns, _) = gaussian_cloud(4, 1000, 10);
        let forest_a = fit(IsolationForestParams::default(), &columns);
        let forest_b = fit(
            IsolationForestParams {
                seed: 1,
                ..IsolationForestParams::default()
            },
            &columns,
        );
        assert_ne!(forest_a, forest_b);
        let scores_a = batch_scores(&forest_a, &columns);
        let scores_b = batch_scores(&forest_b, &columns);
        let n_different = scores_a.iter().zip(&scores_b).filter(|(a, b)| a != b).count();
        assert!(n_different > 900, "{n_different} of 1010 scores differ");
    }

    #[test]
    fn constant_and_all_missing_columns_are_never_split_on() {
        let (mut columns, _) = gaussian_cloud(5, 1000, 10);
        columns.insert(0, vec![3.5; 1010]);
        columns.push(vec![f64::NAN; 1010]);
        let forest = fit(IsolationForestParams::default(), &columns);
        let features = split_features(&forest);
        assert!(features.iter().all(|&feature| feature == 1 || feature == 2));
        assert!(features.contains(&1) && features.contains(&2));
        // the useless columns do not hide the outliers either
        let (_, is_outlier) = gaussian_cloud(5, 1000, 10);
        assert!(auc(&batch_scores(&forest, &columns), &is_outlier) > 0.95);
    }

    #[test]
    fn data_without_spread_scores_one_half() {
        // every tree is a root leaf holding ψ rows: h = c(ψ), score = 2^-1
        let columns = vec![vec![1.0; 300], vec![f64::NAN; 300]];
        let forest = fit(IsolationForestParams::default(), &columns);
        assert!(forest.trees.iter().all(|tree| tree.nodes.len() == 1));
        for row in [[1.0, f64::NAN], [-50.0, 2.0], [f64::INFINITY, f64::NAN]] {
            let score = forest.score(&row).unwrap();
            assert!((score - 0.5).abs() < 1e-12, "{score}");
        }
    }

    #[test]
    fn missing_values_take_the_fitted_side_and_are_not_anomalous_by_themselves() {
        let (mut columns, is_outlier) = gaussian_cloud(6, 2000, 20);
        // a third of the inliers miss feature 0
        for row_idx in (0..2000).step_by(3) {
            columns[0][row_idx] = f64::NAN;
        }
        let forest = fit(IsolationForestParams::default(), &columns);
        let scores = batch_scores(&forest, &columns);
        assert!(scores.iter().all(|score| *score > 0.0 && *score <= 1.0));
        assert!(auc(&scores, &is_outlier) > 0.95);

        // scoring: a missing feature 0 neither hides an outlier in feature 1 nor makes a typical row odd
        let typical = forest.score(&[f64::NAN, 0.0]).unwrap();
        let odd = forest.score(&[f64::NAN, 8.0]).unwrap();
        assert!(
            typical < 0.5 && odd > 0.55 && odd > typical + 0.2,
            "typical {typical}, odd {odd}"
        );
        let all_missing = forest.score(&[f64::NAN, f64::NAN]).unwrap();
        assert!(all_missing > 0.0 && all_missing < 0.5, "all missing {all_missing}");

        // the missing side follows the sample: it differs between splits, and training rows
        // with NaN went where the split says (the partition and scoring agree)
        let sides: FxHashSet<u32> = forest
            .trees
            .iter()
            .flat_map(|tree| &tree.nodes)
            .filter(|node| node.code != LEAF)
            .map(|node| node.code & 1)
            .collect();
        assert_eq!(sides.len(), 2);
    }

    #[test]
    fn infinite_values_are_extreme_values() {
        let (mut columns, _) = gaussian_cloud(7, 1000, 0);
        let largest_finite = columns[0].iter().copied().fold(f64::NEG_INFINITY, f64::max);
        columns[0][10] = f64::INFINITY;
        columns[1][20] = f64::NEG_INFINITY;
        let forest = fit(IsolationForestParams::default(), &columns);
        let scores = batch_scores(&forest, &columns);
        assert!(scores.iter().all(|score| *score > 0.0 && *score <= 1.0));
        for row_idx in [10, 20] {
            let n_above = scores.iter().filter(|score| **score > scores[row_idx]).count();
            assert!(
                scores[row_idx] > 0.6 && n_above < 10,
                "row {row_idx}: {n_above} score higher"
            );
        }
        // beyond the largest finite value: isolated earlier in the trees that sampled it
        let at_largest_finite = forest.score(&[largest_finite, 0.0]).unwrap();
        let at_infinity = forest.score(&[f64::INFINITY, 0.0]).unwrap();
        assert!(at_infinity > at_largest_finite && at_infinity > 0.6);
        assert!(forest.score(&[-f64::MAX, f64::MAX]).unwrap() > 0.6);
    }

    #[test]
    fn a_value_equal_to_a_threshold_goes_left_as_in_training() {
        // two adjacent floats: every threshold is the smaller one (the fallback when rounding
        // reaches the larger), so scoring must send it left exactly as the fit partition did
        let low = 1.0f64;
        let high = low.next_up();
        let mut column = vec![high; 100];
        column[0] = low;
        let forest = fit(IsolationForestParams::default(), &[column]);
        // `low` is isolated by the root split of every tree: h = 1
        let expected = (-1.0 / average_path_length(100)).exp2();
        assert_eq!(forest.score(&[low]).unwrap(), expected);
        assert!(forest.score(&[high]).unwrap() < 0.5);
    }

    #[test]
    fn serde_round_trip_keeps_every_score() {
        let (mut columns, _) = gaussian_cloud(8, 1500, 15);
        columns[1][3] = f64::NAN;
        let forest = fit(IsolationForestParams::default(), &columns);
        let json = serde_json::to_string(&forest).unwrap();
        let loaded: IsolationForest = serde_json::from_str(&json).unwrap();
        assert_eq!(loaded, forest);
        assert_eq!(
            bits(&batch_scores(&loaded, &columns)),
            bits(&batch_scores(&forest, &columns))
        );
        assert_eq!(loaded.params(), forest.params());
    }

    #[test]
    fn corrupt_models_are_rejected_when_read() {
        let (columns, _) = gaussian_cloud(9, 200, 2);
        let forest = fit(
            IsolationForestParams {
                n_trees: 3,
                sample_size: 16,
                ..IsolationForestParams::default()
            },
            &columns,
        );
        let good = serde_json::to_value(&forest).unwrap();
        let check = |edit: &dyn Fn(&mut serde_json::Value), expected: &str| {
            let mut json = good.clone();
            edit(&mut json);
            let error = serde_json::from_value::<IsolationForest>(json).unwrap_err().to_string();
            assert!(error.contains(expected), "{error:?} should contain {expected:?}");
        };
        check(
            &|json| json["trees"][0]["left"][0] = 0.into(),
            "children 0, 1 out of range",
        );
        check(
            &|json| json["trees"][1]["code"][0] = 4.into(),
            "feature 2 but 2 features",
        );
        check(
            &|json| {
                json["trees"][2]["value"]
                    .as_array_mut()
                    .unwrap()
                    .pop()
                    .map(drop)
                    .unwrap()
            },
            "lengths",
        );
        check(
            &|json| json["trees"].as_array_mut().unwrap().pop().map(drop).unwrap(),
            "2 trees stored",
        );
        check(
            &|json| json["params"]["n_trees"] = 0.into(),
            "n_trees must be at least 1",
        );
        check(&|json| json["sample_size"] = 17.into(), "sample_size 17 not in 2..=16");
        check(&|json| json["extra"] = 1.into(), "unknown field");
        assert!(serde_json::from_value::<IsolationForest>(good).is_ok());
    }

    #[test]
    fn params_are_checked() {
        let check = |params: IsolationForestParams, expected: Result<(), IsolationForestError>| {
            assert_eq!(params.check().map(|_| ()), expected, "{params:?}");
        };
        let default = IsolationForestParams::default();
        check(default, Ok(()));
        check(
            IsolationForestParams {
                sample_size: 2,
                max_depth: Some(1),
                n_trees: 1,
                seed: u64::MAX,
            },
            Ok(()),
        );
        check(
            IsolationForestParams { n_trees: 0, ..default },
            Err(IsolationForestError::ZeroTrees),
        );
        for sample_size in [0, 1, MAX_SAMPLE_SIZE + 1] {
            check(
                IsolationForestParams { sample_size, ..default },
                Err(IsolationForestError::SampleSizeOutOfRange { sample_size }),
            );
        }
        check(
            IsolationForestParams {
                max_depth: Some(0),
                ..default
            },
            Err(IsolationForestError::ZeroMaxDepth),
        );
        // config files: defaults fill in, unknown keys are refused
        let parsed: IsolationForestParams = serde_json::from_str(r#"{"n_trees": 50}"#).unwrap();
        assert_eq!(parsed, IsolationForestParams { n_trees: 50, ..default });
        assert!(serde_json::from_str::<IsolationForestParams>(r#"{"trees": 50}"#).is_err());
    }

    #[test]
    fn badly_shaped_data_is_rejected() {
        let params = IsolationForestParams::default().check().unwrap();
        let check = |columns: &[Vec<f64>], expected: IsolationForestError| {
            assert_eq!(params.fit(columns).unwrap_err(), expected);
        };
        check(&[], IsolationForestError::NoFeatures);
        check(
            &[vec![1.0, 2.0, 3.0], vec![1.0, 2.0]],
            IsolationForestError::RaggedColumns {
                feature: 1,
                n_rows: 2,
                expected: 3,
            },
        );
        check(&[vec![1.0], vec![2.0]], IsolationForestError::TooFewRows { n_rows: 1 });
        check(&[vec![]], IsolationForestError::TooFewRows { n_rows: 0 });
        assert!(params.fit(&[vec![1.0, 2.0]]).is_ok());
    }

    #[test]
    fn scoring_checks_shapes() {
        let (columns, _) = gaussian_cloud(10, 100, 0);
        let forest = fit(IsolationForestParams::default(), &columns);
        assert_eq!(
            forest.score(&[1.0]),
            Err(IsolationForestError::RowLength { expected: 2, found: 1 })
        );
        assert_eq!(
            forest.score_batch(&[1.0, 2.0, 3.0], &mut [0.0]),
            Err(IsolationForestError::BatchShape { len: 3, n_features: 2 })
        );
        assert_eq!(
            forest.score_batch(&[1.0, 2.0, 3.0, 4.0], &mut [0.0; 3]),
            Err(IsolationForestError::OutputLength { expected: 2, found: 3 })
        );
        assert_eq!(forest.score_batch(&[], &mut []), Ok(()));
    }

    #[test]
    fn depth_and_sample_size_follow_the_data() {
        let (columns, _) = gaussian_cloud(11, 1000, 0);
        let forest = fit(IsolationForestParams::default(), &columns);
        assert_eq!(
            (forest.sample_size(), forest.max_depth(), forest.n_features()),
            (256, 8, 2)
        );
        assert_eq!(forest.n_trees(), 200);
        let small: Vec<Vec<f64>> = columns.iter().map(|column| column[..100].to_vec()).collect();
        let forest = fit(IsolationForestParams::default(), &small);
        assert_eq!((forest.sample_size(), forest.max_depth()), (100, 7));
        // a leaf at depth d of a tree with n nodes: no node lies deeper than max_depth
        let forest = fit(
            IsolationForestParams {
                max_depth: Some(3),
                ..IsolationForestParams::default()
            },
            &columns,
        );
        for tree in &forest.trees {
            let mut depth = vec![0usize; tree.nodes.len()];
            for (node_idx, node) in tree.nodes.iter().enumerate() {
                if node.code != LEAF {
                    depth[node.left as usize] = depth[node_idx] + 1;
                    depth[node.left as usize + 1] = depth[node_idx] + 1;
                }
            }
            assert!(depth.iter().all(|&d| d <= 3));
        }
    }

    #[test]
    fn samples_are_distinct_rows() {
        let mut rng = Rng::new(0, 0);
        for (n_rows, sample_size) in [(10, 10), (1000, 256), (300, 299), (2, 2)] {
            let rows = sample_rows(&mut rng, n_rows, sample_size);
            let distinct: FxHashSet<usize> = rows.iter().copied().collect();
            assert_eq!((rows.len(), distinct.len()), (sample_size, sample_size));
            assert!(rows.iter().all(|&row_idx| row_idx < n_rows));
        }
    }

    #[test]
    fn average_path_length_matches_its_definition() {
        assert_eq!(average_path_length(0), 0.0);
        assert_eq!(average_path_length(1), 0.0);
        assert_eq!(average_path_length(2), 1.0);
        for n in [3usize, 10, 64, 65, 66, 100, 256, 1000, 100_000] {
            let harmonic_sum: f64 = (1..n).rev().map(|k| 1.0 / k as f64).sum();
            let expected = 2.0 * harmonic_sum - 2.0 * (n - 1) as f64 / n as f64;
            let relative_error = (average_path_length(n) - expected).abs() / expected;
            assert!(
                relative_error < 1e-13,
                "c({n}): {} vs {expected}",
                average_path_length(n)
            );
        }
        assert_eq!(ceil_log2(2), 1);
        assert_eq!(ceil_log2(3), 2);
        assert_eq!(ceil_log2(256), 8);
        assert_eq!(ceil_log2(257), 9);
    }

    fn cell() -> impl Strategy<Value = f64> {
        prop_oneof![
            6 => -100.0..100.0f64,
            1 => Just(f64::NAN),
            1 => Just(f64::INFINITY),
            1 => Just(f64::NEG_INFINITY),
            1 => Just(0.0),
            1 => Just(f64::MAX),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the data, params and query, a score is in (0, 1].
        #[test]
        fn scores_are_in_the_unit_interval(
            (n_features, cells) in (1usize..4).prop_flat_map(|n_features| {
                (Just(n_features), proptest::collection::vec(cell(), n_features * 2..n_features * 40))
            }),
            query in proptest::collection::vec(cell(), 4),
            n_trees in 1usize..8,
            sample_size in 2usize..64,
            max_depth in proptest::option::of(1usize..12),
            seed in any::<u64>(),
        ) {
            let n_rows = cells.len() / n_features;
            let columns: Vec<Vec<f64>> = (0..n_features)
                .map(|feature| (0..n_rows).map(|row_idx| cells[row_idx * n_features + feature]).collect())
                .collect();
            let params = IsolationForestParams { n_trees, sample_size, max_depth, seed };
            let forest = params.check().unwrap().fit(&columns).unwrap();
            let mut scores = vec![0.0; n_rows];
            forest.score_batch(&row_major(&columns), &mut scores).unwrap();
            scores.push(forest.score(&query[..n_features]).unwrap());
            for score in scores {
                prop_assert!(score > 0.0 && score <= 1.0, "score {}", score);
            }
        }
    }
}
