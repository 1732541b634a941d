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
//!
//! # Modules
//!
//! - `params.rs`: [`IsolationForestParams`] → [`ValidIsolationForestParams`], which fits.
//! - `grow.rs`: growing one tree, sampling rows, path-length maths.
//! - `tree.rs`: the flattened tree and the eight-lane walk.
//! - `wire.rs`: the stored form and its checks.

mod grow;
mod params;
mod tree;
mod wire;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use grow::average_path_length;
pub use params::{IsolationForestParams, ValidIsolationForestParams};
use tree::{LANES, Tree, walk_lanes};
use wire::IsolationForestWire;

/// Largest accepted `sample_size`: node indices of a tree stay well inside `u32`.
pub const MAX_SAMPLE_SIZE: usize = 1 << 30;

/// Largest accepted number of features: a split packs `2 * feature + 1` in a `u32`
/// next to the leaf marker.
pub const MAX_FEATURES: usize = (u32::MAX / 2) as usize;

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

#[cfg(test)]
mod tests;
