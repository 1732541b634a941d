//! XGBoost's JSON model format (`Booster.save_model("m.json")`, XGBoost 1.6
//! to 3.x): import of `binary:logistic` and `binary:logitraw` models with a
//! `gbtree` booster.
//!
//! # Conversion
//! - XGBoost reads features as `f32` and sends `x < split_condition` left.
//!   For an `f32` value `x`, that is `x <= t` with `t` the largest `f32` below
//!   the condition, so numeric splits get that threshold and the forest reads
//!   its inputs as [`InputPrecision::F32`]. NaN follows `default_left`
//!   ([`Missing::NaN`]).
//! - A categorical split (`split_type` 1) lists in `categories` the codes that
//!   go to the *right* child; every other code, and values that are no
//!   category (negative, or 2^24 and above), go left. Our categorical set
//!   goes left, so the children (and `default_left`) are swapped.
//! - Leaf values are the `split_conditions` of leaves (the learning rate is
//!   already in them); covers are `sum_hessian`, which XGBoost's
//!   `pred_contribs` weighs branches by.
//! - `learner_model_param.base_score` is a probability for `binary:logistic`
//!   (the base score is its logit, computed in `f32` as XGBoost does) and a
//!   margin for `binary:logitraw`. XGBoost 3 writes it as `"[5E-1]"`, older
//!   versions as `"5E-1"`.
//! - Trees of every iteration and every parallel tree (`num_parallel_tree`,
//!   random forests) are summed, as XGBoost does.
//!
//! XGBoost sums leaf values in `f32` and we sum in `f64`, so raw scores
//! differ in the 7th significant digit at most. XGBoost 3.1+ may store the
//! training categories (`cats`) to re-code a data frame at prediction time;
//! this importer reads category codes, as the trees store them.

use std::collections::{HashMap, VecDeque};

use serde::Deserialize;
use serde_json::Value;

use super::{Format, Imported, InteropError};
use crate::tree::{Condition, Missing, Node, SplitNode, Tree};
use crate::{Forest, ForestData, InputPrecision};

const FORMAT: Format = Format::XgBoost;
/// `split_type` of a categorical split.
const CATEGORICAL_SPLIT: u8 = 1;
/// XGBoost's categories are below 2^24 (larger values are no category).
const MAX_CATEGORY: u32 = 1 << 24;

/// Reads an XGBoost JSON model of a binary logistic objective.
pub fn import_xgboost_json(json: &str) -> Result<Imported, InteropError> {
    let document: Document =
        serde_json::from_str(json).map_err(|source| InteropError::Json { format: FORMAT, source })?;
    let learner = document.learner;
    let objective = learner.objective.name.as_str();
    if !matches!(objective, "binary:logistic" | "binary:logitraw") {
        return Err(FORMAT.unsupported(format!(
            "objective `{objective}`: only binary:logistic and binary:logitraw are supported"
        )));
    }
    let params = &learner.learner_model_param;
    let num_class: u64 = parse_param(&params.num_class, "learner_model_param.num_class")?;
    if num_class > 1 {
        return Err(FORMAT.unsupported(format!("num_class={num_class}: only binary models are supported")));
    }
    if let Some(num_target) = &params.num_target
        && parse_param::<u64>(num_target, "learner_model_param.num_target")? > 1
    {
        return Err(FORMAT.unsupported(format!("num_target={num_target}: only one target is supported")));
    }
    let n_features: usize = parse_param(&params.num_feature, "learner_model_param.num_feature")?;
    let base_score = base_margin(&params.base_score, objective)?;

    let booster = learner.gradient_booster;
    if booster.name != "gbtree" {
        return Err(FORMAT.unsupported(format!("booster `{}`: only gbtree is supported", booster.name)));
    }
    let model = booster
        .model
        .ok_or_else(|| FORMAT.malformed("learner.gradient_booster", "missing field `model`"))?;
    if let Some(group) = model.tree_info.iter().position(|&group| group != 0) {
        return Err(FORMAT.unsupported(format!(
            "tree {group} belongs to output group {}: only binary models (one group) are supported",
            model.tree_info[group]
        )));
    }
    let num_trees: usize = parse_param(&model.gbtree_model_param.num_trees, "gbtree_model_param.num_trees")?;
    if num_trees != model.trees.len() {
        return Err(FORMAT.malformed(
            "gbtree_model_param.num_trees",
            format!("says {num_trees} trees but the model holds {}", model.trees.len()),
        ));
    }
    let trees = model
        .trees
        .into_iter()
        .enumerate()
        .map(|(tree_idx, value)| {
            let tree: XgbTree = serde_json::from_value(value)
                .map_err(|error| FORMAT.malformed(format!("tree {tree_idx}"), error.to_string()))?;
            convert_tree(tree_idx, &tree)
        })
        .collect::<Result<Vec<Tree>, InteropError>>()?;

    let feature_names = if learner.feature_names.is_empty() {
        (0..n_features).map(|idx| format!("f{idx}")).collect()
    } else if learner.feature_names.len() == n_features {
        learner.feature_names
    } else {
        return Err(FORMAT.malformed(
            "learner.feature_names",
            format!("{} names for {n_features} features", learner.feature_names.len()),
        ));
    };
    let forest = Forest::new(ForestData {
        base_score,
        n_features,
        input_precision: InputPrecision::F32,
        trees,
    })
    .map_err(|source| InteropError::InvalidTrees { format: FORMAT, source })?;
    let version = document.version.map_or_else(
        || "unknown version".to_owned(),
        |parts| parts.iter().map(u64::to_string).collect::<Vec<_>>().join("."),
    );
    Ok(Imported {
        forest,
        feature_names,
        source: format!("xgboost json ({version})"),
    })
}

#[derive(Deserialize)]
struct Document {
    learner: Learner,
    version: Option<Vec<u64>>,
}

#[derive(Deserialize)]
struct Learner {
    #[serde(default)]
    feature_names: Vec<String>,
    gradient_booster: GradientBooster,
    learner_model_param: LearnerModelParam,
    objective: Objective,
}

#[derive(Deserialize)]
struct GradientBooster {
    name: String,
    model: Option<GbTreeModel>,
}

#[derive(Deserialize)]
struct GbTreeModel {
    gbtree_model_param: GbTreeModelParam,
    #[serde(default)]
    tree_info: Vec<i64>,
    /// Kept as JSON values so a bad tree is reported with its index.
    trees: Vec<Value>,
}

#[derive(Deserialize)]
struct GbTreeModelParam {
    num_trees: String,
}

#[derive(Deserialize)]
struct LearnerModelParam {
    base_score: String,
    num_class: String,
    num_feature: String,
    num_target: Option<String>,
}

#[derive(Deserialize)]
struct Objective {
    name: String,
}

/// One tree: parallel arrays indexed by node id, root 0, a leaf has left child -1.
#[derive(Deserialize)]
struct XgbTree {
    tree_param: TreeParam,
    left_children: Vec<i64>,
    right_children: Vec<i64>,
    split_indices: Vec<u32>,
    split_conditions: Vec<f64>,
    default_left: Vec<Flag>,
    sum_hessian: Vec<f64>,
    #[serde(default)]
    loss_changes: Vec<f64>,
    #[serde(default)]
    split_type: Vec<u8>,
    #[serde(default)]
    categories: Vec<i64>,
    #[serde(default)]
    categories_nodes: Vec<usize>,
    #[serde(default)]
    categories_segments: Vec<usize>,
    #[serde(default)]
    categories_sizes: Vec<usize>,
}

#[derive(Deserialize)]
struct TreeParam {
    num_nodes: String,
    size_leaf_vector: Option<String>,
}

/// `default_left` entries: 0/1 in current versions, booleans in some older ones.
#[derive(Clone, Copy, Deserialize)]
#[serde(untagged)]
enum Flag {
    Bool(bool),
    Int(i64),
}

impl Flag {
    fn is_set(self) -> bool {
        match self {
            Flag::Bool(flag) => flag,
            Flag::Int(flag) => flag != 0,
        }
    }
}

/// The base score as a margin: `"[5E-1]"` or `"0.5"`.
fn base_margin(base_score: &str, objective: &str) -> Result<f64, InteropError> {
    let field = "learner_model_param.base_score";
    let values: Vec<&str> = base_score
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(str::trim)
        .collect();
    let [value] = values[..] else {
        return Err(FORMAT.unsupported(format!(
            "{field} `{base_score}` has several values: only one target is supported"
        )));
    };
    let value: f32 = value
        .parse()
        .map_err(|_| FORMAT.malformed(field, format!("cannot read `{base_score}`")))?;
    if objective == "binary:logitraw" {
        return Ok(f64::from(value));
    }
    if !(value > 0.0 && value < 1.0) {
        return Err(FORMAT.malformed(field, format!("{value} is not a probability strictly between 0 and 1")));
    }
    // XGBoost's ProbToMargin, in f32
    Ok(f64::from(-(1.0f32 / value - 1.0).ln()))
}

fn convert_tree(tree_idx: usize, tree: &XgbTree) -> Result<Tree, InteropError> {
    let location = |field: &str| format!("tree {tree_idx}, field `{field}`");
    let n_nodes: usize = parse_param(&tree.tree_param.num_nodes, &location("tree_param.num_nodes"))?;
    if let Some(size) = &tree.tree_param.size_leaf_vector
        && parse_param::<u64>(size, &location("tree_param.size_leaf_vector"))? > 1
    {
        return Err(FORMAT.unsupported(format!("tree {tree_idx}: vector leaves (multi-target trees)")));
    }
    let lengths = [
        ("left_children", tree.left_children.len()),
        ("right_children", tree.right_children.len()),
        ("split_indices", tree.split_indices.len()),
        ("split_conditions", tree.split_conditions.len()),
        ("default_left", tree.default_left.len()),
        ("sum_hessian", tree.sum_hessian.len()),
    ];
    if n_nodes == 0 {
        return Err(FORMAT.malformed(location("tree_param.num_nodes"), "a tree needs at least one node"));
    }
    for (field, len) in lengths {
        if len != n_nodes {
            return Err(FORMAT.malformed(location(field), format!("expected {n_nodes} values, found {len}")));
        }
    }
    for (field, len) in [
        ("split_type", tree.split_type.len()),
        ("loss_changes", tree.loss_changes.len()),
    ] {
        if len != 0 && len != n_nodes {
            return Err(FORMAT.malformed(location(field), format!("expected {n_nodes} values, found {len}")));
        }
    }
    let categories = categorical_sets(tree).map_err(|reason| FORMAT.malformed(location("categories"), reason))?;

    let mut nodes = vec![Node::Leaf { value: 0.0, cover: 0.0 }];
    let mut seen = vec![false; n_nodes];
    let mut queue = VecDeque::from([(0i64, 0usize)]);
    while let Some((node, slot)) = queue.pop_front() {
        let Some(idx) = usize::try_from(node).ok().filter(|&idx| idx < n_nodes) else {
            return Err(FORMAT.malformed(
                location("left_children/right_children"),
                format!("child {node} is out of range"),
            ));
        };
        if std::mem::replace(&mut seen[idx], true) {
            return Err(FORMAT.malformed(
                location("left_children/right_children"),
                format!("node {idx} is reached twice"),
            ));
        }
        let cover = tree.sum_hessian[idx];
        if tree.left_children[idx] == -1 {
            nodes[slot] = Node::Leaf {
                value: tree.split_conditions[idx],
                cover,
            };
            continue;
        }
        let (xgb_left, xgb_right) = (tree.left_children[idx], tree.right_children[idx]);
        let xgb_default_left = tree.default_left[idx].is_set();
        let (condition, first, second, default_left) = if tree.split_type.get(idx) == Some(&CATEGORICAL_SPLIT) {
            let codes = categories.get(&idx).ok_or_else(|| {
                FORMAT.malformed(
                    location("categories_nodes"),
                    format!("categorical node {idx} has no categories"),
                )
            })?;
            // XGBoost's listed categories go right: make them our left set and swap the children
            (
                Condition::Categorical { left: codes.clone() },
                xgb_right,
                xgb_left,
                !xgb_default_left,
            )
        } else {
            let split_condition = tree.split_conditions[idx] as f32;
            if split_condition.is_nan() {
                return Err(FORMAT.malformed(location("split_conditions"), format!("node {idx}: NaN split condition")));
            }
            let threshold = f64::from(split_condition.next_down());
            (Condition::Numeric { threshold }, xgb_left, xgb_right, xgb_default_left)
        };
        let left = nodes.len();
        nodes.push(Node::Leaf { value: 0.0, cover: 0.0 });
        nodes.push(Node::Leaf { value: 0.0, cover: 0.0 });
        queue.push_back((first, left));
        queue.push_back((second, left + 1));
        nodes[slot] = Node::Split(SplitNode {
            feature: tree.split_indices[idx],
            condition,
            missing: Missing::NaN,
            default_left,
            left: left as u32,
            right: left as u32 + 1,
            cover,
            gain: tree.loss_changes.get(idx).copied().unwrap_or(0.0),
        });
    }
    Ok(Tree { nodes })
}

/// The sorted category codes of each categorical node.
fn categorical_sets(tree: &XgbTree) -> Result<HashMap<usize, Vec<u32>>, String> {
    let n_sets = tree.categories_nodes.len();
    if tree.categories_segments.len() != n_sets || tree.categories_sizes.len() != n_sets {
        return Err(format!(
            "{n_sets} categories_nodes but {} segments and {} sizes",
            tree.categories_segments.len(),
            tree.categories_sizes.len()
        ));
    }
    let mut sets = HashMap::with_capacity(n_sets);
    for ((&node, &segment), &size) in tree
        .categories_nodes
        .iter()
        .zip(&tree.categories_segments)
        .zip(&tree.categories_sizes)
    {
        let codes = segment
            .checked_add(size)
            .and_then(|end| tree.categories.get(segment..end))
            .ok_or_else(|| format!("node {node}: segment {segment}+{size} is out of range"))?;
        let mut codes = codes
            .iter()
            .map(|&code| {
                u32::try_from(code)
                    .ok()
                    .filter(|&code| code < MAX_CATEGORY)
                    .ok_or_else(|| format!("node {node}: category {code} is not a code below 2^24"))
            })
            .collect::<Result<Vec<u32>, String>>()?;
        codes.sort_unstable();
        codes.dedup();
        sets.insert(node, codes);
    }
    Ok(sets)
}

fn parse_param<T: std::str::FromStr>(value: &str, field: &str) -> Result<T, InteropError> {
    value
        .trim()
        .parse()
        .map_err(|_| FORMAT.malformed(field, format!("cannot read `{value}`")))
}
