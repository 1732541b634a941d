//! LightGBM's text model format (`Booster.save_model("m.txt")`, format `v4`):
//! import of binary models and export of any [`Forest`].
//!
//! # What is read
//! The header (`num_class`, `num_tree_per_iteration`, `max_feature_idx`,
//! `objective`, `feature_names`, `average_output`, `tree_sizes`) and each
//! `Tree=` block up to `end of trees`; the parameters and feature importances
//! after it are ignored. Only `objective=binary sigmoid:S` is accepted: its
//! probability is `1 / (1 + exp(-S * raw))`, so leaf values are multiplied by
//! `S` and our raw score is LightGBM's raw score times `S`. Random-forest models
//! (`average_output`) are read with each leaf divided by the number of trees,
//! which is how LightGBM averages them (its own `pred_contrib` does not divide,
//! so its contributions of such models add up to `n_trees` times the score).
//! Leaf values already include the learning rate (`shrinkage`) and LightGBM's
//! initial score, so the base score is 0, unless the first tree is a single
//! leaf: that tree becomes the base score (this is how [`export_lightgbm_text`]
//! writes it, and how LightGBM writes an initial score it could not split).
//!
//! Covers are the row counts `internal_count` / `leaf_count`: LightGBM's
//! `pred_contrib` weighs branches by counts, not hessians, so contributions
//! match it.
//!
//! # Decision rules
//! Bits of `decision_type`: 1 = categorical, 2 = default left, bits 2–3 = the
//! missing type (0 `None` → [`Missing::AsZero`], 1 `Zero` → [`Missing::Zero`],
//! 2 `NaN` → [`Missing::NaN`]), which are the same rules as ours. A
//! categorical split's `threshold` indexes `cat_boundaries`, which delimits
//! its bitset words in `cat_threshold`; LightGBM sends NaN right at a
//! categorical split whatever its missing type (for missing type `NaN` by
//! its code, otherwise because `static_cast<int>(NaN)` is negative on x86), so
//! categorical splits become [`Missing::NaN`] with `default_left = false`.
//!
//! LightGBM's prediction API reads every value with `|x| <= 1e-35`
//! ([`crate::tree::ZERO_THRESHOLD`]) as 0 before any comparison (its row
//! reader drops zeros); we compare the value itself. The two only differ for
//! such tiny values at a threshold within ±1e-35 of zero: LightGBM's own
//! thresholds near zero are ±1e-35 exactly, so for its models that is the
//! single value -1e-35.
//!
//! One divergence is left: LightGBM truncates a categorical value in (-1, 0)
//! (and reads a tiny negative value as 0) to category 0, while
//! [`crate::tree::category_code`] (like XGBoost) gives negative values no
//! category. Category codes are integers, so real inputs never meet it.
//!
//! # Export
//! [`export_lightgbm_text`] writes a model that `lightgbm.Booster(model_file=…)`
//! loads and scores like the [`Forest`]: the base score becomes a leading
//! single-leaf tree, and rules LightGBM has no direct form for get an
//! equivalent:
//! - a categorical split whose missing values LightGBM would send elsewhere
//!   (NaN left, or zero for [`Missing::Zero`]) gets a guard split in front of
//!   it on the same feature: `x <= inf`, with the missing values going to a
//!   copy of their subtree. That side and its copy get half its cover each,
//!   so neither scores nor contributions change;
//! - for [`InputPrecision::F32`] forests each threshold `t` becomes the largest
//!   `f64` whose `f32` rounding is at most `t`, so LightGBM's `f64` comparison
//!   takes the same branch (categorical values and the zero test are not
//!   rounded: values within `f32` rounding of an integer or of `1e-35` may
//!   differ);
//! - covers are written as counts: leaf covers unchanged when they are
//!   integers, else scaled by a power of two (to about 2^30 in all) and
//!   rounded; internal counts are the sums of their children's, so LightGBM's
//!   child/parent fractions are the same as ours.
//!
//! What LightGBM cannot express: how values within ±1e-35 of zero compare
//! with a threshold in that band, such as `x <= 0` (LightGBM reads them all
//! as 0, see above), categorical values in (-1, 0), and, for `F32` forests,
//! the rounding of categorical values and of the zero test.
//!
//! `import_lightgbm_text(export_lightgbm_text(f))` gives back `f` exactly for
//! an `F64` forest whose covers are integers and whose categorical splits
//! need no guard, and a forest with the same scores in every case.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::str::FromStr;

use super::{Format, Imported, InteropError};
use crate::tree::{Condition, Missing, Node, SplitNode, Tree};
use crate::{Forest, ForestData, InputPrecision};

const FORMAT: Format = Format::LightGbm;
const CATEGORICAL_MASK: i64 = 1;
const DEFAULT_LEFT_MASK: i64 = 2;
const MISSING_NONE: i64 = 0;
const MISSING_ZERO: i64 = 1;
const MISSING_NAN: i64 = 2;
/// Counts are `int` in LightGBM; scaled covers aim for about this at the root.
const COUNT_SCALE_TARGET: f64 = (1u64 << 30) as f64;

/// Reads a LightGBM text model of a binary objective.
pub fn import_lightgbm_text(text: &str) -> Result<Imported, InteropError> {
    let document = Document::split(text)?;
    let header = &document.header;
    let version = header.get("version").copied().unwrap_or("unknown");
    let num_class: i64 = header_value(header, "num_class")?;
    if num_class != 1 {
        return Err(FORMAT.unsupported(format!(
            "num_class={num_class}: only binary models (num_class=1) are supported"
        )));
    }
    if let Some(per_iteration) = header.get("num_tree_per_iteration")
        && parse_scalar::<i64>(per_iteration, "num_tree_per_iteration")? != 1
    {
        return Err(FORMAT.unsupported(format!(
            "num_tree_per_iteration={per_iteration}: only one tree per iteration (binary) is supported"
        )));
    }
    let sigmoid = binary_sigmoid(header.get("objective").copied())?;
    let max_feature_idx: i64 = header_value(header, "max_feature_idx")?;
    if !(-1..i64::from(i32::MAX)).contains(&max_feature_idx) {
        return Err(FORMAT.malformed("max_feature_idx", format!("{max_feature_idx} is out of range")));
    }
    let n_features = (max_feature_idx + 1) as usize;
    let feature_names: Vec<String> = header
        .get("feature_names")
        .ok_or_else(|| FORMAT.malformed("feature_names", "missing"))?
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if feature_names.len() != n_features {
        return Err(FORMAT.malformed(
            "feature_names",
            format!("{} names for {n_features} features", feature_names.len()),
        ));
    }
    if let Some(sizes) = header.get("tree_sizes") {
        let n_sizes = sizes.split_whitespace().count();
        if n_sizes != document.trees.len() {
            return Err(FORMAT.malformed(
                "tree_sizes",
                format!("lists {n_sizes} trees but the file holds {}", document.trees.len()),
            ));
        }
    }
    let mut leaf_scale = sigmoid;
    if header.contains_key("average_output") && !document.trees.is_empty() {
        leaf_scale /= document.trees.len() as f64;
    }
    let mut trees = document
        .trees
        .iter()
        .enumerate()
        .map(|(tree_idx, fields)| read_tree(tree_idx, fields, leaf_scale))
        .collect::<Result<Vec<Tree>, InteropError>>()?;
    let mut base_score = 0.0;
    if let Some(Node::Leaf { value, .. }) = trees
        .first()
        .filter(|tree| tree.nodes.len() == 1)
        .map(|tree| &tree.nodes[0])
    {
        base_score = *value;
        trees.remove(0);
    }
    let forest = Forest::new(ForestData {
        base_score,
        n_features,
        input_precision: InputPrecision::F64,
        trees,
    })
    .map_err(|source| InteropError::InvalidTrees { format: FORMAT, source })?;
    Ok(Imported {
        forest,
        feature_names,
        source: format!("lightgbm text ({version})"),
    })
}

/// Writes `forest` as a LightGBM text model (`objective=binary sigmoid:1`).
///
/// `feature_names` name the columns; missing names become `Column_<i>` (as
/// LightGBM names unnamed columns) and whitespace inside a name becomes `_`,
/// since the format separates names by spaces. A forest of no features is
/// written with one unused feature, since LightGBM needs at least one.
pub fn export_lightgbm_text(forest: &Forest, feature_names: &[String]) -> String {
    let n_features = forest.n_features().max(1);
    let names: Vec<String> = (0..n_features)
        .map(|idx| match feature_names.get(idx).map(|name| name.trim()) {
            Some(name) if !name.is_empty() => name.split_whitespace().collect::<Vec<_>>().join("_"),
            _ => format!("Column_{idx}"),
        })
        .collect();
    let precision = forest.data().input_precision;
    let mut blocks = vec![tree_block(
        0,
        &LgbTree::from_tree(&Tree::leaf(forest.base_score(), 0.0), precision),
    )];
    for (tree_idx, tree) in forest.trees().iter().enumerate() {
        blocks.push(tree_block(tree_idx + 1, &LgbTree::from_tree(tree, precision)));
    }
    let sizes: Vec<String> = blocks.iter().map(|block| block.len().to_string()).collect();
    let mut text = String::new();
    text.push_str("tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\n");
    let _ = writeln!(text, "max_feature_idx={}", n_features - 1);
    text.push_str("objective=binary sigmoid:1\n");
    let _ = writeln!(text, "feature_names={}", names.join(" "));
    let _ = writeln!(text, "feature_infos={}", vec!["none"; n_features].join(" "));
    let _ = writeln!(text, "tree_sizes={}\n", sizes.join(" "));
    for block in &blocks {
        text.push_str(block);
    }
    text.push_str(
        "end of trees\n\nparameters:\n[boosting: gbdt]\n[objective: binary]\n[sigmoid: 1]\nend of parameters\n\n",
    );
    text.push_str("pandas_categorical:null\n");
    text
}

/// A text model cut into its header fields and the fields of each tree.
struct Document<'a> {
    header: HashMap<&'a str, &'a str>,
    trees: Vec<HashMap<&'a str, &'a str>>,
}

impl<'a> Document<'a> {
    fn split(text: &'a str) -> Result<Self, InteropError> {
        let mut lines = text.lines().map(|line| line.trim_end_matches('\r'));
        match lines.by_ref().find(|line| !line.trim().is_empty()) {
            Some("tree") => {}
            _ => {
                return Err(FORMAT.malformed("first line", "expected `tree` (is this a LightGBM text model?)"));
            }
        }
        let mut header = HashMap::new();
        let mut trees: Vec<HashMap<&str, &str>> = Vec::new();
        let mut in_tree = false;
        for line in lines.by_ref() {
            if line == "end of trees" {
                return Ok(Document { header, trees });
            }
            if line.is_empty() {
                in_tree = false;
                continue;
            }
            if line.starts_with("Tree=") {
                trees.push(HashMap::new());
                in_tree = true;
                continue;
            }
            // a flag such as `average_output` stands alone in the header
            let split = match line.split_once('=') {
                None if trees.is_empty() && !line.contains(char::is_whitespace) => Some((line, "")),
                split => split,
            };
            let (key, value) = split.ok_or_else(|| {
                let location = match trees.len() {
                    0 => "header".to_owned(),
                    n => format!("after tree {}", n - 1),
                };
                FORMAT.malformed(location, format!("line `{}` is not `key=value`", truncate(line)))
            })?;
            if in_tree && let Some(fields) = trees.last_mut() {
                fields.insert(key, value);
            } else if trees.is_empty() {
                header.insert(key, value);
            } else {
                return Err(FORMAT.malformed(
                    format!("after tree {}", trees.len() - 1),
                    format!("line `{}` outside a tree", truncate(line)),
                ));
            }
        }
        Err(FORMAT.malformed(
            "end of file",
            format!(
                "no `end of trees` line after {} trees: the file is truncated",
                trees.len()
            ),
        ))
    }
}

/// The sigmoid scale `S` of `objective=binary sigmoid:S`.
fn binary_sigmoid(objective: Option<&str>) -> Result<f64, InteropError> {
    let objective =
        objective.ok_or_else(|| FORMAT.unsupported("no objective (custom objective?): only `binary` is supported"))?;
    let mut tokens = objective.split_whitespace();
    if tokens.next() != Some("binary") {
        return Err(FORMAT.unsupported(format!(
            "objective `{}`: only `binary` is supported",
            truncate(objective)
        )));
    }
    let mut sigmoid: f64 = 1.0;
    for token in tokens {
        if let Some(value) = token.strip_prefix("sigmoid:") {
            sigmoid = parse_scalar(value, "objective sigmoid")?;
        }
    }
    if !(sigmoid.is_finite() && sigmoid > 0.0) {
        return Err(FORMAT.malformed("objective", format!("sigmoid {sigmoid} is not a positive number")));
    }
    Ok(sigmoid)
}

/// Converts one `Tree=` block; `leaf_scale` multiplies every leaf value.
fn read_tree(tree_idx: usize, fields: &HashMap<&str, &str>, leaf_scale: f64) -> Result<Tree, InteropError> {
    let fields = TreeFields { tree_idx, fields };
    let num_leaves: usize = fields.scalar("num_leaves")?;
    if num_leaves == 0 {
        return Err(fields.malformed("num_leaves", "a tree needs at least one leaf"));
    }
    if fields.fields.get("is_linear").is_some_and(|value| value.trim() != "0") {
        return Err(FORMAT.unsupported(format!("tree {tree_idx}: linear trees (is_linear=1)")));
    }
    let leaf_value: Vec<f64> = fields.list("leaf_value", num_leaves)?;
    if num_leaves == 1 {
        let cover = fields
            .optional_list::<f64>("leaf_count", 1)?
            .map_or(0.0, |count| count[0]);
        return Ok(Tree::leaf(leaf_value[0] * leaf_scale, cover));
    }
    let n_internal = num_leaves - 1;
    let split_feature: Vec<u32> = fields.list("split_feature", n_internal)?;
    let threshold: Vec<f64> = fields.list("threshold", n_internal)?;
    let decision_type: Vec<i64> = fields.list("decision_type", n_internal)?;
    let left_child: Vec<i64> = fields.list("left_child", n_internal)?;
    let right_child: Vec<i64> = fields.list("right_child", n_internal)?;
    let internal_count: Vec<f64> = fields.list("internal_count", n_internal)?;
    let leaf_count: Vec<f64> = fields.list("leaf_count", num_leaves)?;
    let split_gain: Vec<f64> = fields
        .optional_list("split_gain", n_internal)?
        .unwrap_or_else(|| vec![0.0; n_internal]);
    let num_cat: usize = fields.scalar("num_cat")?;
    let (cat_boundaries, cat_threshold): (Vec<usize>, Vec<u32>) = if num_cat > 0 {
        let boundaries: Vec<usize> = fields.list("cat_boundaries", num_cat + 1)?;
        if boundaries[0] != 0 || boundaries.windows(2).any(|pair| pair[0] > pair[1]) {
            return Err(fields.malformed("cat_boundaries", "must start at 0 and never decrease"));
        }
        let n_words = boundaries[num_cat];
        (boundaries, fields.list("cat_threshold", n_words)?)
    } else {
        (Vec::new(), Vec::new())
    };

    let mut nodes = vec![Node::Leaf { value: 0.0, cover: 0.0 }];
    let mut seen_internal = vec![false; n_internal];
    let mut seen_leaf = vec![false; num_leaves];
    let mut queue = VecDeque::from([(0i64, 0usize)]);
    while let Some((child, slot)) = queue.pop_front() {
        if child < 0 {
            let leaf = (!child) as usize;
            if leaf >= num_leaves || std::mem::replace(&mut seen_leaf[leaf], true) {
                return Err(fields.malformed(
                    "left_child/right_child",
                    format!("leaf {leaf} is out of range or reached twice"),
                ));
            }
            nodes[slot] = Node::Leaf {
                value: leaf_value[leaf] * leaf_scale,
                cover: leaf_count[leaf],
            };
            continue;
        }
        let node = child as usize;
        if node >= n_internal || std::mem::replace(&mut seen_internal[node], true) {
            return Err(fields.malformed(
                "left_child/right_child",
                format!("node {node} is out of range or reached twice"),
            ));
        }
        let decision = decision_type[node];
        let (condition, missing, default_left) = if decision & CATEGORICAL_MASK != 0 {
            let cat_idx = threshold[node];
            if cat_idx.fract() != 0.0 || !(0.0..num_cat as f64).contains(&cat_idx) {
                return Err(fields.malformed("threshold", format!("node {node}: category set {cat_idx} out of range")));
            }
            let cat_idx = cat_idx as usize;
            let words = &cat_threshold[cat_boundaries[cat_idx]..cat_boundaries[cat_idx + 1]];
            // NaN goes right at every LightGBM categorical split (see the module docs)
            (
                Condition::Categorical {
                    left: bitset_codes(words),
                },
                Missing::NaN,
                false,
            )
        } else {
            let missing = match (decision >> 2) & 3 {
                MISSING_NONE => Missing::AsZero,
                MISSING_ZERO => Missing::Zero,
                MISSING_NAN => Missing::NaN,
                _ => {
                    return Err(fields.malformed(
                        "decision_type",
                        format!("node {node}: unknown missing type in {decision}"),
                    ));
                }
            };
            let condition = Condition::Numeric {
                threshold: threshold[node],
            };
            (condition, missing, decision & DEFAULT_LEFT_MASK != 0)
        };
        let left = nodes.len();
        nodes.push(Node::Leaf { value: 0.0, cover: 0.0 });
        nodes.push(Node::Leaf { value: 0.0, cover: 0.0 });
        queue.push_back((left_child[node], left));
        queue.push_back((right_child[node], left + 1));
        nodes[slot] = Node::Split(SplitNode {
            feature: split_feature[node],
            condition,
            missing,
            default_left,
            left: left as u32,
            right: left as u32 + 1,
            cover: internal_count[node],
            gain: split_gain[node],
        });
    }
    Ok(Tree { nodes })
}

/// The fields of one tree, for parsing with errors that name the tree and field.
struct TreeFields<'f, 'a> {
    tree_idx: usize,
    fields: &'f HashMap<&'a str, &'a str>,
}

impl TreeFields<'_, '_> {
    fn malformed(&self, field: &str, reason: impl Into<String>) -> InteropError {
        FORMAT.malformed(format!("tree {}, field `{field}`", self.tree_idx), reason)
    }

    fn scalar<T: FromStr>(&self, field: &str) -> Result<T, InteropError> {
        let value = self.fields.get(field).ok_or_else(|| self.malformed(field, "missing"))?;
        value
            .trim()
            .parse()
            .map_err(|_| self.malformed(field, format!("cannot read `{}`", truncate(value))))
    }

    fn list<T: FromStr>(&self, field: &str, len: usize) -> Result<Vec<T>, InteropError> {
        self.optional_list(field, len)?
            .ok_or_else(|| self.malformed(field, "missing"))
    }

    fn optional_list<T: FromStr>(&self, field: &str, len: usize) -> Result<Option<Vec<T>>, InteropError> {
        let Some(value) = self.fields.get(field) else {
            return Ok(None);
        };
        let values = value
            .split_whitespace()
            .map(|token| {
                token
                    .parse()
                    .map_err(|_| self.malformed(field, format!("cannot read `{}`", truncate(token))))
            })
            .collect::<Result<Vec<T>, InteropError>>()?;
        if values.len() != len {
            return Err(self.malformed(field, format!("expected {len} values, found {}", values.len())));
        }
        Ok(Some(values))
    }
}

/// The category codes whose bits are set.
fn bitset_codes(words: &[u32]) -> Vec<u32> {
    let mut codes = Vec::new();
    for (word_idx, &word) in words.iter().enumerate() {
        for bit in 0..32 {
            if word & (1 << bit) != 0 {
                codes.push(word_idx as u32 * 32 + bit);
            }
        }
    }
    codes
}

/// A tree laid out as LightGBM's parallel arrays: internal nodes are numbered
/// from the root (0) in pre-order, so children come after their parent,
/// leaves are numbered separately, and a child `c < 0` is leaf `!c`.
#[derive(Default)]
struct LgbTree {
    split_feature: Vec<u32>,
    split_gain: Vec<f64>,
    threshold: Vec<f64>,
    decision_type: Vec<i64>,
    left_child: Vec<i64>,
    right_child: Vec<i64>,
    internal_weight: Vec<f64>,
    internal_count: Vec<i64>,
    leaf_value: Vec<f64>,
    leaf_weight: Vec<f64>,
    leaf_count: Vec<i64>,
    cat_boundaries: Vec<usize>,
    cat_threshold: Vec<u32>,
    precision: InputPrecision,
}

impl LgbTree {
    fn from_tree(tree: &Tree, precision: InputPrecision) -> Self {
        let mut out = LgbTree {
            cat_boundaries: vec![0],
            precision,
            ..LgbTree::default()
        };
        out.emit(tree, 0, 1.0);
        out.fill_covers();
        out
    }

    /// Writes node `idx` of `tree` and its subtree, with leaf covers
    /// multiplied by `weight`, and returns its LightGBM child reference.
    fn emit(&mut self, tree: &Tree, idx: usize, weight: f64) -> i64 {
        let split = match &tree.nodes[idx] {
            Node::Leaf { value, cover } => {
                self.leaf_value.push(*value);
                self.leaf_weight.push(cover * weight);
                return !(self.leaf_value.len() as i64 - 1);
            }
            Node::Split(split) => split,
        };
        let (left, right) = (split.left as usize, split.right as usize);
        let codes = match &split.condition {
            Condition::Numeric { threshold } => {
                let threshold = match self.precision {
                    InputPrecision::F64 => *threshold,
                    InputPrecision::F32 => f32_rounding_threshold(*threshold),
                };
                let missing = match split.missing {
                    Missing::NaN => MISSING_NAN,
                    Missing::Zero => MISSING_ZERO,
                    Missing::AsZero => MISSING_NONE,
                };
                let decision = (missing << 2) | if split.default_left { DEFAULT_LEFT_MASK } else { 0 };
                let node = self.push_internal(split.feature, split.gain, threshold, decision);
                self.left_child[node] = self.emit(tree, left, weight);
                self.right_child[node] = self.emit(tree, right, weight);
                return node as i64;
            }
            Condition::Categorical { left: codes } => codes,
        };
        // LightGBM's categorical rule sends NaN right and reads 0 as category 0; when ours
        // differs, a guard `x <= inf` sends the missing values (its missing type) to a copy of
        // their side. The side and its copy get half the weight each, so every cover-weighted
        // expectation, and so every contribution, stays the same.
        let zero_in_set = codes.first() == Some(&0);
        let guard = match split.missing {
            Missing::NaN => split.default_left.then_some((MISSING_NAN, left)),
            Missing::AsZero => zero_in_set.then_some((MISSING_NAN, left)),
            Missing::Zero => (split.default_left || zero_in_set)
                .then_some((MISSING_ZERO, if split.default_left { left } else { right })),
        };
        let guard_node = guard.map(|(missing, _)| self.push_internal(split.feature, 0.0, f64::INFINITY, missing << 2));
        let mut words = vec![0u32; codes.last().map_or(0, |max| *max as usize / 32 + 1)];
        for code in codes {
            words[*code as usize / 32] |= 1 << (code % 32);
        }
        let cat_idx = self.cat_boundaries.len() - 1;
        self.cat_threshold.extend(words);
        self.cat_boundaries.push(self.cat_threshold.len());
        let decision = CATEGORICAL_MASK | (MISSING_NAN << 2);
        let node = self.push_internal(split.feature, split.gain, cat_idx as f64, decision);
        let side_weight = |child: usize| match guard {
            Some((_, side)) if side == child => weight / 2.0,
            _ => weight,
        };
        self.left_child[node] = self.emit(tree, left, side_weight(left));
        self.right_child[node] = self.emit(tree, right, side_weight(right));
        match (guard_node, guard) {
            (Some(guard_node), Some((_, side))) => {
                self.left_child[guard_node] = node as i64;
                self.right_child[guard_node] = self.emit(tree, side, weight / 2.0);
                guard_node as i64
            }
            _ => node as i64,
        }
    }

    fn push_internal(&mut self, feature: u32, gain: f64, threshold: f64, decision: i64) -> usize {
        self.split_feature.push(feature);
        self.split_gain.push(gain);
        self.threshold.push(threshold);
        self.decision_type.push(decision);
        self.left_child.push(0);
        self.right_child.push(0);
        self.split_feature.len() - 1
    }

    /// Leaf counts from leaf covers (unchanged when they are integers, else
    /// scaled by a power of two to about [`COUNT_SCALE_TARGET`] in all and
    /// rounded), and internal counts and weights as the sums of their
    /// children's, so LightGBM's child/parent fractions are exactly ours.
    fn fill_covers(&mut self) {
        let total: f64 = self.leaf_weight.iter().sum();
        let integral = self
            .leaf_weight
            .iter()
            .all(|cover| *cover >= 0.0 && cover.fract() == 0.0);
        let scale = if (integral && total <= f64::from(i32::MAX)) || total <= 0.0 || !total.is_finite() {
            1.0
        } else {
            2f64.powi((COUNT_SCALE_TARGET / total).log2().floor() as i32)
        };
        let max_count = f64::from(i32::MAX);
        self.leaf_count = self
            .leaf_weight
            .iter()
            .map(|cover| (cover * scale).round().clamp(0.0, max_count) as i64)
            .collect();
        let n_internal = self.split_feature.len();
        self.internal_weight = vec![0.0; n_internal];
        self.internal_count = vec![0; n_internal];
        for node in (0..n_internal).rev() {
            let (mut weight, mut count) = (0.0, 0);
            for child in [self.left_child[node], self.right_child[node]] {
                let (child_weight, child_count) = if child < 0 {
                    (self.leaf_weight[!child as usize], self.leaf_count[!child as usize])
                } else {
                    (
                        self.internal_weight[child as usize],
                        self.internal_count[child as usize],
                    )
                };
                weight += child_weight;
                count += child_count;
            }
            self.internal_weight[node] = weight;
            self.internal_count[node] = count.min(i64::from(i32::MAX));
        }
    }
}

/// The largest `f64` threshold `t'` with `x <= t'` exactly when the `f32`
/// rounding of `x` is at most `t`, for every non-NaN `x`.
fn f32_rounding_threshold(t: f64) -> f64 {
    // ±inf stand for ±2^128 (the rounding boundary to infinity is MAX + ulp/2)
    const TWO_128: f64 = 340_282_366_920_938_463_463_374_607_431_768_211_456.0;
    let nearest = t as f32;
    // the largest f32 not above t
    let low = if f64::from(nearest) > t {
        nearest.next_down()
    } else {
        nearest
    };
    if low == f32::INFINITY {
        return f64::INFINITY;
    }
    let high = low.next_up();
    let as_f64 = |x: f32| {
        if x.is_infinite() {
            TWO_128.copysign(f64::from(x))
        } else {
            f64::from(x)
        }
    };
    let midpoint = (as_f64(low) + as_f64(high)) / 2.0;
    // a tie rounds to the even one: low when its last mantissa bit is 0 (infinity counts as even)
    if low.to_bits() & 1 == 0 {
        midpoint
    } else {
        midpoint.next_down()
    }
}

fn tree_block(tree_idx: usize, tree: &LgbTree) -> String {
    fn join<T>(values: &[T], format: impl Fn(&T) -> String) -> String {
        values.iter().map(format).collect::<Vec<_>>().join(" ")
    }
    let int = |value: &i64| value.to_string();
    let mut block = String::new();
    let _ = writeln!(block, "Tree={tree_idx}");
    let _ = writeln!(block, "num_leaves={}", tree.leaf_value.len());
    let _ = writeln!(block, "num_cat={}", tree.cat_boundaries.len() - 1);
    let _ = writeln!(block, "split_feature={}", join(&tree.split_feature, u32::to_string));
    let _ = writeln!(block, "split_gain={}", join(&tree.split_gain, |x| number(*x)));
    let _ = writeln!(block, "threshold={}", join(&tree.threshold, |x| number(*x)));
    let _ = writeln!(block, "decision_type={}", join(&tree.decision_type, int));
    let _ = writeln!(block, "left_child={}", join(&tree.left_child, int));
    let _ = writeln!(block, "right_child={}", join(&tree.right_child, int));
    let _ = writeln!(block, "leaf_value={}", join(&tree.leaf_value, |x| number(*x)));
    let _ = writeln!(block, "leaf_weight={}", join(&tree.leaf_weight, |x| number(*x)));
    let _ = writeln!(block, "leaf_count={}", join(&tree.leaf_count, int));
    let _ = writeln!(
        block,
        "internal_value={}",
        join(&tree.internal_weight, |_| "0".to_owned())
    );
    let _ = writeln!(block, "internal_weight={}", join(&tree.internal_weight, |x| number(*x)));
    let _ = writeln!(block, "internal_count={}", join(&tree.internal_count, int));
    if tree.cat_boundaries.len() > 1 {
        let _ = writeln!(block, "cat_boundaries={}", join(&tree.cat_boundaries, usize::to_string));
        let _ = writeln!(block, "cat_threshold={}", join(&tree.cat_threshold, u32::to_string));
    }
    block.push_str("is_linear=0\nshrinkage=1\n\n\n");
    block
}

/// Shortest text that reads back as the same `f64` (exponent form outside
/// the range where plain digits stay short).
fn number(x: f64) -> String {
    if x == 0.0 || (1e-5..1e16).contains(&x.abs()) || !x.is_finite() {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

fn header_value<T: FromStr>(header: &HashMap<&str, &str>, field: &str) -> Result<T, InteropError> {
    let value = header.get(field).ok_or_else(|| FORMAT.malformed(field, "missing"))?;
    parse_scalar(value, field)
}

fn parse_scalar<T: FromStr>(value: &str, field: &str) -> Result<T, InteropError> {
    value
        .trim()
        .parse()
        .map_err(|_| FORMAT.malformed(field, format!("cannot read `{}`", truncate(value))))
}

/// At most 60 characters of `text`, for error messages.
fn truncate(text: &str) -> String {
    match text.char_indices().nth(60) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The threshold is exactly the boundary of the f32 rounding.
    #[test]
    fn f32_rounding_threshold_matches_rounding() {
        let thresholds = [
            0.1,
            f64::from(0.1f32),
            -f64::from(0.1f32),
            0.0,
            -0.0,
            1.5,
            f64::from(16_777_217f32),
            1e-40,
            f64::from(f32::MAX),
            1e39,
            -1e39,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        for t in thresholds {
            let boundary = f32_rounding_threshold(t);
            let rounds_below = |x: f64| f64::from(x as f32) <= t;
            if boundary.is_finite() {
                assert!(rounds_below(boundary), "t={t} boundary={boundary}");
                assert!(!rounds_below(boundary.next_up()), "t={t} boundary={boundary}");
            } else {
                assert_eq!(boundary, t, "t={t}");
            }
        }
    }

    #[test]
    fn numbers_read_back_exactly() {
        for x in [
            0.0,
            -0.0,
            1.0,
            0.1,
            -2.5e-7,
            1e300,
            123_456_789.125,
            f64::MIN_POSITIVE,
            5e-324,
        ] {
            assert_eq!(number(x).parse::<f64>().unwrap().to_bits(), x.to_bits(), "{x}");
        }
        assert_eq!(number(f64::INFINITY), "inf");
    }

    #[test]
    fn bitsets_list_their_codes() {
        assert_eq!(bitset_codes(&[0b101, 0, 1 << 31]), vec![0, 2, 95]);
    }
}
