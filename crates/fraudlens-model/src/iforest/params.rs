//! Hyperparameters: [`IsolationForestParams`] as written in a config file,
//! checked into [`ValidIsolationForestParams`], which fits a forest.

use fraudlens_core::rng::Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::grow::{build_tree, ceil_log2, check_columns, gather, sample_rows};
use super::{IsolationForest, IsolationForestError, MAX_SAMPLE_SIZE};

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
