//! Decision trees as plain values: the exchange format between the trainer,
//! the LightGBM/XGBoost importers and exporter, and the flattened inference
//! engine ([`crate::Forest`]).
//!
//! A tree is a vector of nodes whose root is node 0. A split sends a row left
//! or right from one feature value:
//! - numeric splits send `x <= threshold` left;
//! - categorical splits send the category codes of their set left and every
//!   other code right (negative values have no code; non-integer values are
//!   truncated to their integer part, as LightGBM does);
//! - what a missing value does is the split's [`Missing`] rule, with the
//!   learned `default_left` direction.
//!
//! Each node carries its *cover* — the training weight that reached it (sum
//! of hessians for our trainer and XGBoost, row counts for LightGBM) — which
//! TreeSHAP needs to know how the model behaves when a feature is unknown.

use serde::{Deserialize, Serialize};

/// Deepest tree a model may hold: TreeSHAP needs O(depth²) memory per row
/// and recursion as deep as the tree, so deeper (degenerate) trees are refused.
pub const MAX_DEPTH: usize = 256;
/// Largest category code a categorical split may name (XGBoost's limit too):
/// the inference engine keeps a bitset per split.
pub const MAX_CATEGORY: u32 = 1 << 24;

/// Values with `|x| <= ZERO_THRESHOLD` count as zero for [`Missing::Zero`] (LightGBM's `kZeroThreshold`).
pub const ZERO_THRESHOLD: f64 = 1e-35_f32 as f64;

/// One decision tree; node 0 is the root.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// The nodes; children always come after their parent.
    pub nodes: Vec<Node>,
}

/// A node of a [`Tree`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Node {
    /// An internal node.
    Split(SplitNode),
    /// A leaf.
    Leaf {
        /// Raw score (log-odds) added by this leaf.
        value: f64,
        /// Training weight that reached the leaf.
        cover: f64,
    },
}

/// An internal node of a [`Tree`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitNode {
    /// Feature index (column of the feature vector).
    pub feature: u32,
    /// The condition that sends a row left.
    pub condition: Condition,
    /// What a missing value does.
    pub missing: Missing,
    /// Where missing values go (and zeros, for [`Missing::Zero`]).
    pub default_left: bool,
    /// Index of the left child.
    pub left: u32,
    /// Index of the right child.
    pub right: u32,
    /// Training weight that reached the node.
    pub cover: f64,
    /// Loss reduction of the split (for feature importance).
    pub gain: f64,
}

/// The condition of a split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Condition {
    /// `x <= threshold` goes left.
    Numeric {
        /// The threshold; `+inf` (written `"inf"` in JSON) sends every value
        /// left, so the split separates only missing values.
        #[serde(with = "extended_float")]
        threshold: f64,
    },
    /// A category code in `left` goes left; any other value goes right.
    Categorical {
        /// Category codes (sorted, unique) that go left.
        left: Vec<u32>,
    },
}

/// How a split treats missing values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    /// NaN follows `default_left` (our trainer, XGBoost, LightGBM `missing_type=NaN`).
    NaN,
    /// NaN is read as 0, and 0 follows `default_left` (LightGBM `missing_type=Zero`).
    Zero,
    /// NaN is read as 0 and compared like any value (LightGBM `missing_type=None`).
    AsZero,
}

impl Tree {
    /// A tree that is a single leaf.
    pub fn leaf(value: f64, cover: f64) -> Self {
        Self {
            nodes: vec![Node::Leaf { value, cover }],
        }
    }

    /// Number of leaves.
    pub fn n_leaves(&self) -> usize {
        self.nodes
            .iter()
            .filter(|node| matches!(node, Node::Leaf { .. }))
            .count()
    }

    /// Depth of the deepest leaf (a single leaf has depth 0).
    pub fn depth(&self) -> usize {
        let mut depth = vec![0usize; self.nodes.len()];
        let mut max = 0;
        for (idx, node) in self.nodes.iter().enumerate() {
            if let Node::Split(split) = node {
                let child_depth = depth[idx] + 1;
                for child in [split.left, split.right] {
                    if let Some(slot) = depth.get_mut(child as usize) {
                        *slot = child_depth;
                        max = max.max(child_depth);
                    }
                }
            }
        }
        max
    }

    /// Checks the structure: children exist and come after their parent (so
    /// there are no cycles), every node but the root has exactly one parent,
    /// features are below `n_features`, values are finite.
    pub fn validate(&self, n_features: usize) -> Result<(), String> {
        if self.nodes.is_empty() {
            return Err("tree has no nodes".to_owned());
        }
        let mut parents = vec![0u32; self.nodes.len()];
        for (idx, node) in self.nodes.iter().enumerate() {
            match node {
                Node::Leaf { value, cover } => {
                    if !value.is_finite() || !cover.is_finite() {
                        return Err(format!("node {idx}: leaf value or cover is not finite"));
                    }
                }
                Node::Split(split) => {
                    if split.feature as usize >= n_features {
                        return Err(format!(
                            "node {idx}: feature {} out of range ({n_features} features)",
                            split.feature
                        ));
                    }
                    match &split.condition {
                        Condition::Numeric { threshold } if threshold.is_nan() => {
                            return Err(format!("node {idx}: threshold is NaN"));
                        }
                        Condition::Categorical { left } => {
                            if left.windows(2).any(|pair| pair[0] >= pair[1]) {
                                return Err(format!("node {idx}: categories are not sorted and unique"));
                            }
                            if left.last().is_some_and(|&max| max >= MAX_CATEGORY) {
                                return Err(format!("node {idx}: category code above {MAX_CATEGORY}"));
                            }
                        }
                        Condition::Numeric { .. } => {}
                    }
                    if !split.gain.is_finite() || !split.cover.is_finite() {
                        return Err(format!("node {idx}: split gain or cover is not finite"));
                    }
                    for child in [split.left, split.right] {
                        let child = child as usize;
                        if child <= idx || child >= self.nodes.len() {
                            return Err(format!("node {idx}: child {child} out of order or out of range"));
                        }
                        parents[child] += 1;
                    }
                }
            }
        }
        if let Some(idx) = (1..self.nodes.len()).find(|&idx| parents[idx] != 1) {
            return Err(format!("node {idx} has {} parents", parents[idx]));
        }
        if self.depth() > MAX_DEPTH {
            return Err(format!("deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }
}

impl SplitNode {
    /// Whether `x` goes left.
    #[inline]
    pub fn goes_left(&self, x: f64) -> bool {
        let x = match (self.missing, x.is_nan()) {
            (Missing::NaN, true) => return self.default_left,
            (Missing::Zero | Missing::AsZero, true) => 0.0,
            _ => x,
        };
        if self.missing == Missing::Zero && x.abs() <= ZERO_THRESHOLD {
            return self.default_left;
        }
        match &self.condition {
            Condition::Numeric { threshold } => x <= *threshold,
            Condition::Categorical { left } => category_code(x).is_some_and(|code| left.binary_search(&code).is_ok()),
        }
    }
}

/// The category code a value stands for: non-negative values truncated like
/// LightGBM's `static_cast<int>`; negative values and values beyond `u32` have none.
#[inline]
pub fn category_code(x: f64) -> Option<u32> {
    (0.0..4_294_967_296.0).contains(&x).then_some(x as u32)
}

/// JSON numbers cannot be infinite: `±inf` are written as the strings `"inf"` / `"-inf"`.
mod extended_float {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        match *value {
            f64::INFINITY => serializer.serialize_str("inf"),
            f64::NEG_INFINITY => serializer.serialize_str("-inf"),
            value => serializer.serialize_f64(value),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Number(f64),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        match Written::deserialize(deserializer)? {
            Written::Number(value) => Ok(value),
            Written::Text(text) => match text.as_str() {
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                other => Err(serde::de::Error::custom(format!(
                    "expected a number, \"inf\" or \"-inf\", got {other:?}"
                ))),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infinite_thresholds_survive_json() {
        for threshold in [f64::INFINITY, f64::NEG_INFINITY, 0.1 + 0.2, -0.0] {
            let condition = Condition::Numeric { threshold };
            let json = serde_json::to_string(&condition).unwrap();
            let back: Condition = serde_json::from_str(&json).unwrap();
            assert_eq!(back, condition, "{json}");
        }
        assert!(serde_json::from_str::<Condition>(r#"{"type":"numeric","threshold":"nan"}"#).is_err());
    }
}
