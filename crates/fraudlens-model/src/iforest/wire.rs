//! The stored form: compact per-tree arrays, every index checked when read,
//! so a corrupt model is an error, never a panic while scoring.

use serde::{Deserialize, Serialize};

use super::tree::{LEAF, Node, Tree};
use super::{IsolationForest, IsolationForestError, IsolationForestParams, MAX_FEATURES};

/// Stored form of [`IsolationForest`]: compact per-tree arrays, checked when read.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IsolationForestWire {
    params: IsolationForestParams,
    n_features: usize,
    sample_size: usize,
    max_depth: usize,
    trees: Vec<TreeWire>,
}

/// One tree as three parallel arrays, one entry per node (see [`Node`]).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TreeWire {
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

pub(super) fn tree_from_wire(tree: TreeWire, n_features: usize) -> Result<Tree, String> {
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
