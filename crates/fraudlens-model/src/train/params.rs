//! The trainer's parameters: [`GbdtParams`] as written in a config file or
//! on the command line, and [`CheckedParams`], the only form the trainer
//! takes, with every range checked.

use serde::{Deserialize, Serialize};

use crate::ModelError;

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

    pub(super) fn max_depth(&self) -> usize {
        match (self.0.max_depth, self.0.growth) {
            (0, Growth::DepthWise) => 6,
            (0, Growth::LeafWise) => crate::tree::MAX_DEPTH,
            (depth, _) => depth.min(crate::tree::MAX_DEPTH),
        }
    }

    pub(super) fn max_leaves(&self) -> usize {
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
