//! The inference engine: an ensemble of trees flattened into one contiguous
//! array of 16-byte nodes, with both children of a node stored side by side
//! (`right = left + 1`), so scoring a row is a tight loop over one cache-friendly
//! array per tree.
//!
//! A [`Forest`] is built from [`Tree`] values (from the trainer or an
//! importer), validated once, and from then on cannot fail: predictions only
//! check the length of the row.
//!
//! Scoring walks branch-free: every leaf is its own child with a `+inf`
//! threshold, so a row takes exactly its tree's depth in steps with no
//! data-dependent branch, and 8 trees (one row) or 8 rows (a batch) are
//! walked side by side; categorical and LightGBM zero-rule splits take the
//! general decision out of line. For a forest of plain numeric splits the
//! batch walk reads *doubled* rows (each feature twice: NaN as +inf, and NaN
//! as -inf; a node reads the copy that sends NaN its way; real infinities and
//! infinite thresholds are clamped to the largest finite value, so an "is
//! missing" split at +inf still tells NaN from +inf), so a step is a single
//! comparison; with [`InputPrecision::F32`] and f32 thresholds (XGBoost
//! models) it compares in f32. The doubled rows of 8 lanes are interleaved
//! (column c of lane k at `8c + k`), and a forest of shallow trees (heap
//! layout ≤ 4× its nodes) is also kept in heap order, where a step is
//! `i = 2i + 1 + (x > t)` with no child index to load. Batches run in blocks
//! of `BLOCK_ROWS` rows per tree, rayon-parallel over 1,024-row chunks above
//! `PARALLEL_MIN_ROWS` rows. Validation (`Forest::new`) checks structure,
//! finite values, depth ≤ 256 and category codes < 2^24.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::tree::{Condition, Missing, Node, Tree, ZERO_THRESHOLD, category_code};

/// Rows per block in batch prediction: each tree is walked for a whole block
/// while its nodes are in cache.
const BLOCK_ROWS: usize = 64;
/// Below this many rows a batch is scored on the calling thread.
const PARALLEL_MIN_ROWS: usize = 8 * 1024;

const LEAF: u32 = 1 << 31;
const DEFAULT_LEFT: u32 = 1 << 30;
const CATEGORICAL: u32 = 1 << 29;
const MISSING_ZERO: u32 = 1 << 28;
const MISSING_AS_ZERO: u32 = 1 << 27;
/// Nodes with any of these flags take the general decision path.
const SLOW_PATH: u32 = CATEGORICAL | MISSING_ZERO | MISSING_AS_ZERO;
const FEATURE_MASK: u32 = (1 << 27) - 1;

/// How input values are read before they are compared with thresholds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputPrecision {
    /// As `f64` (our trainer, LightGBM).
    #[default]
    F64,
    /// Rounded to `f32` first (XGBoost reads features as `float`).
    F32,
}

/// A validated, flattened tree ensemble for binary classification: the raw
/// score is `base_score` plus one leaf value per tree, and the uncalibrated
/// probability is its logistic sigmoid.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "ForestData", into = "ForestData")]
pub struct Forest {
    data: ForestData,
    /// All trees' nodes; tree `t` starts at `roots[t]`.
    nodes: Vec<FlatNode>,
    /// Cover of each flat node (for TreeSHAP).
    covers: Vec<f64>,
    roots: Vec<u32>,
    /// Word ranges of categorical sets in `cat_words` (a categorical node's
    /// `value` is its index here).
    cat_ranges: Vec<(u32, u32)>,
    cat_words: Vec<u32>,
    max_depth: usize,
    /// Expected raw score under the training covers (TreeSHAP's base value),
    /// computed once here rather than on every explained row.
    expected_value: f64,
    /// The branch-free walk: one node per flat node, a leaf looping to
    /// itself, so a row takes exactly its tree's depth in steps and several
    /// trees (or rows) can be walked at once. Numeric splits with NaN as the
    /// missing rule (our trainer's and XGBoost's) take no data-dependent
    /// branch; other splits (categorical, LightGBM's zero rules) take the
    /// general decision. `None` only for a forest without features.
    walk: Option<Walk>,
}

/// See [`Forest::walk`].
#[derive(Clone, Debug)]
struct Walk {
    nodes: Vec<WalkNode>,
    /// The batch walk of a forest of plain numeric splits (NaN as the
    /// missing rule) only: see [`ColumnNode`].
    columns: Option<Columns>,
    /// Depth of each tree.
    depths: Vec<u8>,
    /// Deepest tree of each full group of [`LANES`] trees.
    group_depths: Vec<u8>,
}

/// A node of the branch-free walk: `left + !(x <= threshold || (NaN && default_left))`
/// for a plain numeric split. A leaf has threshold +inf, default left, and
/// itself as `left`. Flags are the flat node's (its [`SLOW_PATH`] flags send
/// the step to the general decision of the flat node).
#[derive(Clone, Copy, Debug)]
struct WalkNode {
    threshold: f64,
    /// Feature index and flags, as in the flat node.
    feature_flags: u32,
    left: u32,
}

/// A node of the batch walk over *doubled* rows: each feature `f` appears
/// twice, at `2f` with NaN replaced by +inf and at `2f + 1` with NaN replaced
/// by -inf. A split that sends NaN right reads column `2f`, one that sends it
/// left reads `2f + 1`; no NaN is left, so a step is one comparison:
/// `left + (x > threshold)`. So that NaN stays apart from real infinities,
/// these are stored as the largest finite values, and so are infinite
/// thresholds: a split at +inf that sends NaN right ("is missing", which our
/// trainer makes at its last bin edge) compares against `MAX`, which only
/// the NaN's +inf exceeds. A forest with a finite threshold of `f32::MAX` or
/// more in size does not get this walk. A leaf has threshold `MAX` and
/// itself as `left`.
///
/// A forest that reads its inputs as f32 (XGBoost's) and whose thresholds are
/// all f32 values compares in f32: the same decisions on half the bytes.
#[derive(Clone, Copy, Debug)]
struct ColumnNode<T> {
    threshold: T,
    /// Where the column's values start in a group of [`lanes_of`]: the
    /// doubled column times [`LANES`].
    column: u32,
    left: u32,
}

#[derive(Clone, Debug)]
enum Columns {
    F64(ColumnWalk<f64>),
    F32(ColumnWalk<f32>),
}

/// The batch walk over doubled rows, with thresholds in `T`.
#[derive(Clone, Debug)]
struct ColumnWalk<T> {
    nodes: Vec<ColumnNode<T>>,
    /// The same trees in heap order, when they are shallow enough.
    heap: Option<Heap<T>>,
}

/// Shallow trees in heap order: a tree of depth `d` is `2^d - 1` splits
/// (the children of split `i` are `2i + 1` and `2i + 2`) and `2^d` leaf
/// values; a leaf above depth `d` is pushed down by splits that always go
/// left (threshold +inf). A step is `i = 2i + 1 + (x > threshold)`: no child
/// index to load. Built when it costs at most [`HEAP_MAX_GROWTH`] times the
/// nodes of the trees as they are.
#[derive(Clone, Debug)]
struct Heap<T> {
    splits: Vec<HeapSplit<T>>,
    leaves: Vec<f64>,
    /// Per tree: first split, first leaf, depth.
    trees: Vec<(usize, usize, u8)>,
}

#[derive(Clone, Copy, Debug)]
struct HeapSplit<T> {
    threshold: T,
    /// As in [`ColumnNode::column`].
    column: u32,
}

/// See [`Heap`].
const HEAP_MAX_GROWTH: usize = 4;

/// A value of a doubled row (see [`ColumnNode`]).
trait Doubled: Copy + PartialOrd + Default {
    const INFINITY: Self;
    const NEG_INFINITY: Self;

    /// `x` in this precision (rounded as [`InputPrecision::F32`] rounds),
    /// infinities clamped to the largest finite values.
    fn finite(x: f64) -> Self;

    /// The value, and the two columns it fills.
    #[inline]
    fn double(x: f64) -> [Self; 2] {
        if x.is_nan() {
            [Self::INFINITY, Self::NEG_INFINITY]
        } else {
            let x = Self::finite(x);
            [x, x]
        }
    }
}

impl Doubled for f64 {
    const INFINITY: Self = f64::INFINITY;
    const NEG_INFINITY: Self = f64::NEG_INFINITY;

    fn finite(x: f64) -> Self {
        x.clamp(f64::MIN, f64::MAX)
    }
}

impl Doubled for f32 {
    const INFINITY: Self = f32::INFINITY;
    const NEG_INFINITY: Self = f32::NEG_INFINITY;

    fn finite(x: f64) -> Self {
        (x as f32).clamp(f32::MIN, f32::MAX)
    }
}

/// Trees (single row) or rows (batch) walked side by side: independent
/// chains of loads that the CPU overlaps.
const LANES: usize = 8;

/// Doubles `rows` (`n_features` values each) into `lanes`, [`LANES`] rows at
/// a time with their values interleaved: column `c` of row `k` of a group at
/// `c * LANES + k`. The last group is padded with zeros (lanes whose result
/// is not used).
fn lanes_of<T: Doubled>(rows: &[f64], n_features: usize, lanes: &mut Vec<T>, double: impl Fn(f64) -> [T; 2]) {
    let n_rows = rows.len() / n_features;
    let group_len = 2 * n_features * LANES;
    lanes.clear();
    lanes.resize(n_rows.div_ceil(LANES) * group_len, T::default());
    for (group, rows) in lanes.chunks_exact_mut(group_len).zip(rows.chunks(n_features * LANES)) {
        for (k, row) in rows.chunks_exact(n_features).enumerate() {
            for (feature, &x) in row.iter().enumerate() {
                let [nan_right, nan_left] = double(x);
                group[2 * feature * LANES + k] = nan_right;
                group[(2 * feature + 1) * LANES + k] = nan_left;
            }
        }
    }
}

/// The serialized form of a [`Forest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForestData {
    /// Raw score before any tree.
    pub base_score: f64,
    /// Length of the feature vector.
    pub n_features: usize,
    /// How inputs are read.
    #[serde(default)]
    pub input_precision: InputPrecision,
    /// The trees.
    pub trees: Vec<Tree>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct FlatNode {
    /// Threshold (numeric split), leaf value (leaf) or index into `cat_ranges` (categorical split).
    value: f64,
    /// Feature index in the low bits, flags in the high bits.
    feature_flags: u32,
    /// Index of the left child; the right child is `left + 1`.
    left: u32,
}

impl TryFrom<ForestData> for Forest {
    type Error = ModelError;

    fn try_from(data: ForestData) -> Result<Self, ModelError> {
        Forest::new(data)
    }
}

impl From<Forest> for ForestData {
    fn from(forest: Forest) -> Self {
        forest.data
    }
}

impl PartialEq for Forest {
    fn eq(&self, other: &Self) -> bool {
        self.data == other.data
    }
}

impl Forest {
    /// Validates and flattens trees.
    pub fn new(data: ForestData) -> Result<Self, ModelError> {
        if !data.base_score.is_finite() {
            return Err(ModelError::invalid("base score is not finite"));
        }
        if data.n_features == 0 {
            return Err(ModelError::invalid("a model needs at least one feature"));
        }
        if data.n_features > FEATURE_MASK as usize {
            return Err(ModelError::invalid(format!("too many features ({})", data.n_features)));
        }
        let mut depths = Vec::with_capacity(data.trees.len());
        let mut forest = Forest {
            nodes: Vec::new(),
            covers: Vec::new(),
            roots: Vec::with_capacity(data.trees.len()),
            cat_ranges: Vec::new(),
            cat_words: Vec::new(),
            max_depth: 0,
            expected_value: 0.0,
            walk: None,
            data: ForestData {
                trees: Vec::new(),
                ..data.clone()
            },
        };
        for (tree_idx, tree) in data.trees.iter().enumerate() {
            tree.validate(data.n_features)
                .map_err(|reason| ModelError::invalid(format!("tree {tree_idx}: {reason}")))?;
            let depth = tree.depth();
            forest.max_depth = forest.max_depth.max(depth);
            depths.push(depth);
            forest.flatten(tree);
        }
        if forest.nodes.len() > u32::MAX as usize / 2 {
            return Err(ModelError::invalid("too many nodes"));
        }
        forest.walk = forest.build_walk(&depths);
        forest.data.trees = data.trees;
        forest.expected_value = forest.compute_expected_value();
        Ok(forest)
    }

    fn flatten(&mut self, tree: &Tree) {
        let root = self.nodes.len();
        self.roots.push(root as u32);
        self.push_placeholder();
        // (source node, flat slot)
        let mut stack = vec![(0usize, root)];
        while let Some((source, slot)) = stack.pop() {
            let node = match &tree.nodes[source] {
                Node::Leaf { value, cover } => {
                    self.covers[slot] = *cover;
                    FlatNode {
                        value: *value,
                        feature_flags: LEAF,
                        left: 0,
                    }
                }
                Node::Split(split) => {
                    self.covers[slot] = split.cover;
                    let left = self.nodes.len();
                    self.push_placeholder();
                    self.push_placeholder();
                    stack.push((split.left as usize, left));
                    stack.push((split.right as usize, left + 1));
                    let mut flags = split.feature;
                    if split.default_left {
                        flags |= DEFAULT_LEFT;
                    }
                    flags |= match split.missing {
                        Missing::NaN => 0,
                        Missing::Zero => MISSING_ZERO,
                        Missing::AsZero => MISSING_AS_ZERO,
                    };
                    let value = match &split.condition {
                        Condition::Numeric { threshold } => *threshold,
                        Condition::Categorical { left } => {
                            flags |= CATEGORICAL;
                            let n_words = left.last().map_or(0, |max| max / 32 + 1) as usize;
                            let offset = self.cat_words.len();
                            self.cat_words.resize(offset + n_words, 0);
                            for code in left {
                                self.cat_words[offset + (code / 32) as usize] |= 1 << (code % 32);
                            }
                            self.cat_ranges.push((offset as u32, n_words as u32));
                            (self.cat_ranges.len() - 1) as f64
                        }
                    };
                    FlatNode {
                        value,
                        feature_flags: flags,
                        left: left as u32,
                    }
                }
            };
            self.nodes[slot] = node;
        }
    }

    fn build_walk(&self, depths: &[usize]) -> Option<Walk> {
        if self.data.n_features == 0 || depths.iter().any(|&depth| depth > usize::from(u8::MAX)) {
            return None;
        }
        let mut nodes = Vec::with_capacity(self.nodes.len());
        for (idx, node) in self.nodes.iter().enumerate() {
            let flags = node.feature_flags;
            nodes.push(if flags & LEAF != 0 {
                WalkNode {
                    threshold: f64::INFINITY,
                    feature_flags: DEFAULT_LEFT,
                    left: idx as u32,
                }
            } else {
                WalkNode {
                    threshold: node.value,
                    feature_flags: flags,
                    left: node.left,
                }
            });
        }
        // the column's first lane in a group of interleaved doubled rows (see `lanes_of`)
        let column = |node: &WalkNode| {
            (2 * (node.feature_flags & FEATURE_MASK) + u32::from(node.feature_flags & DEFAULT_LEFT != 0)) * LANES as u32
        };
        let f32_exact = |node: &WalkNode| f64::from(node.threshold as f32) == node.threshold;
        // see `ColumnNode`: a finite threshold this large would meet a clamped infinity
        let huge = |node: &WalkNode| node.threshold.is_finite() && node.threshold.abs() >= f64::from(f32::MAX);
        let columns = if !nodes.iter().all(|node| node.feature_flags & SLOW_PATH == 0) || nodes.iter().any(huge) {
            None
        } else if self.data.input_precision == InputPrecision::F32 && nodes.iter().all(f32_exact) {
            Some(Columns::F32(self.column_walk(&nodes, depths, column)))
        } else {
            Some(Columns::F64(self.column_walk(&nodes, depths, column)))
        };
        let depths: Vec<u8> = depths.iter().map(|&depth| depth as u8).collect();
        let group_depths = depths
            .chunks_exact(LANES)
            .map(|group| group.iter().copied().max().unwrap_or(0))
            .collect();
        Some(Walk {
            nodes,
            columns,
            depths,
            group_depths,
        })
    }

    fn column_walk<T: Doubled>(
        &self,
        nodes: &[WalkNode],
        depths: &[usize],
        column: impl Fn(&WalkNode) -> u32,
    ) -> ColumnWalk<T> {
        ColumnWalk {
            nodes: nodes
                .iter()
                .map(|node| ColumnNode {
                    threshold: T::finite(node.threshold),
                    column: column(node),
                    left: node.left,
                })
                .collect(),
            heap: self.heap(nodes, depths, column),
        }
    }

    /// The trees in heap order (see [`Heap`]), if they are shallow enough.
    fn heap<T: Doubled>(
        &self,
        nodes: &[WalkNode],
        depths: &[usize],
        column: impl Fn(&WalkNode) -> u32,
    ) -> Option<Heap<T>> {
        if depths.iter().any(|&depth| depth > 16) {
            return None;
        }
        let size: usize = depths.iter().map(|&depth| 1usize << depth).sum();
        if size > HEAP_MAX_GROWTH * nodes.len() {
            return None;
        }
        let mut heap = Heap {
            splits: Vec::with_capacity(size),
            leaves: Vec::with_capacity(size),
            trees: Vec::with_capacity(depths.len()),
        };
        for (&root, &depth) in self.roots.iter().zip(depths) {
            let (first_split, first_leaf) = (heap.splits.len(), heap.leaves.len());
            heap.splits.resize(
                first_split + (1 << depth) - 1,
                HeapSplit {
                    threshold: T::default(),
                    column: 0,
                },
            );
            heap.leaves.resize(first_leaf + (1 << depth), 0.0);
            let splits = &mut heap.splits[first_split..];
            let leaves = &mut heap.leaves[first_leaf..];
            // (node, heap position, level)
            let mut stack = vec![(root as usize, 0usize, 0usize)];
            while let Some((idx, pos, level)) = stack.pop() {
                let node = &nodes[idx];
                let is_leaf = node.left as usize == idx;
                if level == depth {
                    leaves[pos + 1 - (1 << depth)] = self.nodes[idx].value;
                    continue;
                }
                let (threshold, left, right) = if is_leaf {
                    (T::finite(f64::INFINITY), idx, idx)
                } else {
                    (T::finite(node.threshold), node.left as usize, node.left as usize + 1)
                };
                splits[pos] = HeapSplit {
                    threshold,
                    // a leaf reads feature 0's NaN-as-−inf column: always left
                    column: if is_leaf { LANES as u32 } else { column(node) },
                };
                stack.push((left, 2 * pos + 1, level + 1));
                stack.push((right, 2 * pos + 2, level + 1));
            }
            heap.trees.push((first_split, first_leaf, depth as u8));
        }
        Some(heap)
    }

    fn push_placeholder(&mut self) {
        self.nodes.push(FlatNode {
            value: 0.0,
            feature_flags: LEAF,
            left: 0,
        });
        self.covers.push(0.0);
    }

    /// The serialized form (trees in their exchange format).
    pub fn data(&self) -> &ForestData {
        &self.data
    }

    /// The trees.
    pub fn trees(&self) -> &[Tree] {
        &self.data.trees
    }

    /// Number of trees.
    pub fn n_trees(&self) -> usize {
        self.roots.len()
    }

    /// Length of the feature vector.
    pub fn n_features(&self) -> usize {
        self.data.n_features
    }

    /// Raw score before any tree.
    pub fn base_score(&self) -> f64 {
        self.data.base_score
    }

    /// Depth of the deepest tree.
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }

    /// A copy keeping only the first `n_trees` trees (early stopping).
    pub fn truncated(&self, n_trees: usize) -> Result<Self, ModelError> {
        let mut data = self.data.clone();
        data.trees.truncate(n_trees);
        Forest::new(data)
    }

    /// Raw score (log-odds) of one row.
    pub fn predict_raw(&self, row: &[f64]) -> Result<f64, ModelError> {
        self.check_row(row)?;
        let mut rounded = Vec::new();
        Ok(self.raw_unchecked(self.round_if_needed(row, &mut rounded)))
    }

    /// Uncalibrated probability of one row: the sigmoid of the raw score.
    pub fn predict_proba(&self, row: &[f64]) -> Result<f64, ModelError> {
        Ok(crate::calibration::logistic(self.predict_raw(row)?))
    }

    /// Raw scores of `rows` (row-major, `n_features` values per row) into `out`.
    /// Large batches are split across the rayon thread pool.
    pub fn predict_raw_batch(&self, rows: &[f64], out: &mut [f64]) -> Result<(), ModelError> {
        let n_features = self.n_features().max(1);
        if rows.len() != out.len() * self.n_features() {
            return Err(ModelError::invalid(format!(
                "batch of {} values does not hold {} rows of {} features",
                rows.len(),
                out.len(),
                self.n_features()
            )));
        }
        let chunk_rows = 1024;
        if out.len() >= PARALLEL_MIN_ROWS {
            out.par_chunks_mut(chunk_rows)
                .zip(rows.par_chunks(chunk_rows * n_features))
                .for_each(|(out, rows)| self.block_predict(rows, out));
        } else {
            self.block_predict(rows, out);
        }
        Ok(())
    }

    fn block_predict(&self, rows: &[f64], out: &mut [f64]) {
        let n_features = self.n_features().max(1);
        let mut rounded = Vec::new();
        let (mut doubled, mut doubled32) = (Vec::new(), Vec::new());
        for (rows, out) in rows.chunks(BLOCK_ROWS * n_features).zip(out.chunks_mut(BLOCK_ROWS)) {
            out.fill(self.data.base_score);
            if let Some(walk) = &self.walk {
                match &walk.columns {
                    Some(Columns::F32(columns)) => {
                        lanes_of(rows, n_features, &mut doubled32, f32::double);
                        self.walk_columns(walk, columns, &doubled32, out);
                        continue;
                    }
                    Some(Columns::F64(columns)) => {
                        match self.data.input_precision {
                            InputPrecision::F64 => lanes_of(rows, n_features, &mut doubled, f64::double),
                            InputPrecision::F32 => {
                                lanes_of(rows, n_features, &mut doubled, |x| f64::double(f64::from(x as f32)));
                            }
                        }
                        self.walk_columns(walk, columns, &doubled, out);
                        continue;
                    }
                    None => {}
                }
            }
            let rows = match self.data.input_precision {
                InputPrecision::F64 => rows,
                InputPrecision::F32 => {
                    rounded.clear();
                    rounded.extend(rows.iter().map(|&x| f64::from(x as f32)));
                    &rounded[..]
                }
            };
            if let Some(walk) = &self.walk {
                self.walk_block(walk, rows, out);
                continue;
            }
            for &root in &self.roots {
                for (row, score) in rows.chunks_exact(n_features).zip(out.iter_mut()) {
                    *score += self.nodes[self.leaf(root, row)].value;
                }
            }
        }
    }

    /// Adds every tree's leaf value to `out` (one score per row), walking
    /// [`LANES`] rows through a tree side by side; trees are added in order,
    /// so the sums equal the single-row path bit for bit.
    fn walk_block(&self, walk: &Walk, rows: &[f64], out: &mut [f64]) {
        let n_features = self.n_features();
        let rest_rows = rows.chunks_exact(n_features * LANES).remainder();
        for (&root, &depth) in self.roots.iter().zip(&walk.depths) {
            let mut lane_out = out.chunks_exact_mut(LANES);
            for (rows, out) in rows.chunks_exact(n_features * LANES).zip(lane_out.by_ref()) {
                let rows: [&[f64]; LANES] = std::array::from_fn(|k| &rows[k * n_features..(k + 1) * n_features]);
                let mut idx = [root as usize; LANES];
                for _ in 0..depth {
                    for k in 0..LANES {
                        idx[k] = self.walk_step(&walk.nodes, idx[k], rows[k]);
                    }
                }
                for k in 0..LANES {
                    out[k] += self.nodes[idx[k]].value;
                }
            }
            for (row, score) in rest_rows.chunks_exact(n_features).zip(lane_out.into_remainder()) {
                let mut idx = root as usize;
                for _ in 0..depth {
                    idx = self.walk_step(&walk.nodes, idx, row);
                }
                *score += self.nodes[idx].value;
            }
        }
    }

    /// [`Forest::walk_block`] on doubled rows (see [`ColumnNode`]) laid out
    /// by [`lanes_of`]: the same leaves, one comparison per step, and each
    /// lane's value at a fixed distance from the node's column — no row
    /// pointer per lane to keep in a register.
    fn walk_columns<T: Doubled>(&self, walk: &Walk, columns: &ColumnWalk<T>, lanes: &[T], out: &mut [f64]) {
        let group_len = 2 * self.n_features() * LANES;
        if let Some(heap) = &columns.heap {
            for &(first_split, first_leaf, depth) in &heap.trees {
                let splits = &heap.splits[first_split..];
                let leaves = &heap.leaves[first_leaf..];
                let first_leaf_pos = (1usize << depth) - 1;
                for (group, out) in lanes.chunks_exact(group_len).zip(out.chunks_mut(LANES)) {
                    let mut pos = [0usize; LANES];
                    for _ in 0..depth {
                        for (k, pos) in pos.iter_mut().enumerate() {
                            let split = &splits[*pos];
                            *pos = 2 * *pos + 1 + usize::from(group[split.column as usize + k] > split.threshold);
                        }
                    }
                    for (score, pos) in out.iter_mut().zip(pos) {
                        *score += leaves[pos - first_leaf_pos];
                    }
                }
            }
            return;
        }
        for (&root, &depth) in self.roots.iter().zip(&walk.depths) {
            for (group, out) in lanes.chunks_exact(group_len).zip(out.chunks_mut(LANES)) {
                let mut idx = [root as usize; LANES];
                for _ in 0..depth {
                    for (k, idx) in idx.iter_mut().enumerate() {
                        let node = &columns.nodes[*idx];
                        *idx = node.left as usize + usize::from(group[node.column as usize + k] > node.threshold);
                    }
                }
                for (score, idx) in out.iter_mut().zip(idx) {
                    *score += self.nodes[idx].value;
                }
            }
        }
    }

    /// Raw score of one row by the walk, [`LANES`] trees side by side, trees
    /// added in order.
    fn walk_row(&self, walk: &Walk, row: &[f64]) -> f64 {
        let mut score = self.data.base_score;
        let groups = self.roots.chunks_exact(LANES);
        let rest = groups.remainder();
        for (roots, &depth) in groups.zip(&walk.group_depths) {
            let mut idx: [usize; LANES] = std::array::from_fn(|k| roots[k] as usize);
            for _ in 0..depth {
                for slot in &mut idx {
                    *slot = self.walk_step(&walk.nodes, *slot, row);
                }
            }
            for slot in idx {
                score += self.nodes[slot].value;
            }
        }
        let first_rest = self.roots.len() - rest.len();
        for (&root, &depth) in rest.iter().zip(&walk.depths[first_rest..]) {
            let mut idx = root as usize;
            for _ in 0..depth {
                idx = self.walk_step(&walk.nodes, idx, row);
            }
            score += self.nodes[idx].value;
        }
        score
    }

    fn check_row(&self, row: &[f64]) -> Result<(), ModelError> {
        if row.len() != self.n_features() {
            return Err(ModelError::invalid(format!(
                "row has {} features, the model expects {}",
                row.len(),
                self.n_features()
            )));
        }
        Ok(())
    }

    /// Raw score of a row already checked and rounded.
    #[inline]
    fn raw_unchecked(&self, row: &[f64]) -> f64 {
        if let Some(walk) = &self.walk {
            return self.walk_row(walk, row);
        }
        let mut score = self.data.base_score;
        for &root in &self.roots {
            score += self.nodes[self.leaf(root, row)].value;
        }
        score
    }

    /// Index of the leaf `row` reaches from `root`.
    #[inline]
    fn leaf(&self, root: u32, row: &[f64]) -> usize {
        let mut idx = root as usize;
        loop {
            let node = &self.nodes[idx];
            if node.feature_flags & LEAF != 0 {
                return idx;
            }
            let x = row[(node.feature_flags & FEATURE_MASK) as usize];
            idx = node.left as usize + usize::from(!self.goes_left_flat(node, x));
        }
    }

    /// One step of the walk (a leaf stays where it is).
    #[inline(always)]
    fn walk_step(&self, nodes: &[WalkNode], idx: usize, row: &[f64]) -> usize {
        let node = &nodes[idx];
        let flags = node.feature_flags;
        let x = row[(flags & FEATURE_MASK) as usize];
        let left = if flags & SLOW_PATH == 0 {
            // `|` and `&`, not `||` and `&&`: no branch on the data
            (x <= node.threshold) | (x.is_nan() & (flags & DEFAULT_LEFT != 0))
        } else {
            self.goes_left_slow(idx, x)
        };
        node.left as usize + usize::from(!left)
    }

    /// The general decision, kept out of line so the walk's loop stays small
    /// enough to unroll (categorical and zero-rule splits are the rare ones).
    #[cold]
    #[inline(never)]
    fn goes_left_slow(&self, idx: usize, x: f64) -> bool {
        self.goes_left_flat(&self.nodes[idx], x)
    }

    #[inline]
    fn goes_left_flat(&self, node: &FlatNode, x: f64) -> bool {
        let flags = node.feature_flags;
        if flags & SLOW_PATH == 0 {
            // NaN compares false: it goes left only by default
            return x <= node.value || (x.is_nan() && flags & DEFAULT_LEFT != 0);
        }
        let default_left = flags & DEFAULT_LEFT != 0;
        let x = match (x.is_nan(), flags & (MISSING_ZERO | MISSING_AS_ZERO) != 0) {
            (true, false) => return default_left,
            (true, true) => 0.0,
            (false, _) => x,
        };
        if flags & MISSING_ZERO != 0 && x.abs() <= ZERO_THRESHOLD {
            return default_left;
        }
        if flags & CATEGORICAL == 0 {
            return x <= node.value;
        }
        let (offset, n_words) = self.cat_ranges[node.value as usize];
        category_code(x).is_some_and(|code| {
            let word = (code / 32) as usize;
            word < n_words as usize && self.cat_words[offset as usize + word] & (1 << (code % 32)) != 0
        })
    }

    /// For TreeSHAP: `(is_leaf, feature, left child, leaf value)` of a flat node.
    #[inline]
    pub(crate) fn node(&self, idx: usize) -> (bool, usize, usize, f64) {
        let node = &self.nodes[idx];
        (
            node.feature_flags & LEAF != 0,
            (node.feature_flags & FEATURE_MASK) as usize,
            node.left as usize,
            node.value,
        )
    }

    /// For TreeSHAP: whether `row` goes left at flat node `idx`.
    #[inline]
    pub(crate) fn goes_left_at(&self, idx: usize, row: &[f64]) -> bool {
        let node = &self.nodes[idx];
        self.goes_left_flat(node, row[(node.feature_flags & FEATURE_MASK) as usize])
    }

    pub(crate) fn cover(&self, idx: usize) -> f64 {
        self.covers[idx]
    }

    pub(crate) fn roots(&self) -> &[u32] {
        &self.roots
    }

    pub(crate) fn round_if_needed<'r>(&self, row: &'r [f64], buffer: &'r mut Vec<f64>) -> &'r [f64] {
        match self.data.input_precision {
            InputPrecision::F64 => row,
            InputPrecision::F32 => {
                buffer.clear();
                buffer.extend(row.iter().map(|&x| f64::from(x as f32)));
                buffer
            }
        }
    }

    pub(crate) fn cached_expected_value(&self) -> f64 {
        self.expected_value
    }

    pub(crate) fn check(&self, row: &[f64]) -> Result<(), ModelError> {
        self.check_row(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::SplitNode;

    fn split(feature: u32, condition: Condition, missing: Missing, default_left: bool, left: u32) -> Node {
        Node::Split(SplitNode {
            feature,
            condition,
            missing,
            default_left,
            left,
            right: left + 1,
            cover: 10.0,
            gain: 1.0,
        })
    }

    fn leaf(value: f64) -> Node {
        Node::Leaf { value, cover: 5.0 }
    }

    fn forest(trees: Vec<Tree>, n_features: usize) -> Forest {
        Forest::new(ForestData {
            base_score: 0.5,
            n_features,
            input_precision: InputPrecision::F64,
            trees,
        })
        .unwrap()
    }

    /// The flat engine takes the same path as [`SplitNode::goes_left`] for every rule.
    #[test]
    fn flat_decisions_match_tree_semantics() {
        let conditions = [
            Condition::Numeric { threshold: 1.5 },
            Condition::Numeric { threshold: 0.0 },
            Condition::Categorical { left: vec![0, 3, 40] },
        ];
        let values = [
            f64::NAN,
            0.0,
            -0.0,
            1e-40,
            1.5,
            1.6,
            -3.0,
            3.0,
            3.7,
            40.0,
            41.0,
            1e12,
            f64::INFINITY,
        ];
        for condition in &conditions {
            for missing in [Missing::NaN, Missing::Zero, Missing::AsZero] {
                for default_left in [false, true] {
                    let node = split(0, condition.clone(), missing, default_left, 1);
                    let tree = Tree {
                        nodes: vec![node.clone(), leaf(-1.0), leaf(1.0)],
                    };
                    let forest = forest(vec![tree], 1);
                    let Node::Split(split) = node else { unreachable!() };
                    for x in values {
                        let expected = if split.goes_left(x) { -0.5 } else { 1.5 };
                        assert_eq!(
                            forest.predict_raw(&[x]).unwrap(),
                            expected,
                            "{condition:?} {missing:?} default_left={default_left} x={x}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn batch_equals_single_rows() {
        let tree = Tree {
            nodes: vec![
                split(0, Condition::Numeric { threshold: 0.5 }, Missing::NaN, true, 1),
                split(1, Condition::Numeric { threshold: -1.0 }, Missing::NaN, false, 3),
                leaf(0.25),
                leaf(-0.5),
                leaf(0.75),
            ],
        };
        // "is missing": every value left (a real +inf too), NaN right — the
        // split our trainer makes at the last bin's edge
        let is_missing = Tree {
            nodes: vec![
                split(
                    1,
                    Condition::Numeric {
                        threshold: f64::INFINITY,
                    },
                    Missing::NaN,
                    false,
                    1,
                ),
                leaf(1.5),
                leaf(-1.5),
            ],
        };
        let shallow = forest(vec![tree.clone(), is_missing.clone(), tree.clone()], 2);
        // missing values (each split sends them its own way) and infinities among them
        let rows: Vec<f64> = (0..20_000)
            .map(|idx| match idx {
                _ if idx % 13 == 0 => f64::NAN,
                _ if idx % 17 == 0 => f64::INFINITY,
                _ if idx % 19 == 0 => f64::NEG_INFINITY,
                _ => ((idx * 7919) % 1000) as f64 / 250.0 - 2.0,
            })
            .collect();
        let mut out = vec![0.0; 10_000];
        shallow.predict_raw_batch(&rows, &mut out).unwrap();
        for (row, score) in rows.chunks(2).zip(&out) {
            assert_eq!(shallow.predict_raw(row).unwrap(), *score);
        }
        assert!(shallow.predict_raw_batch(&rows, &mut out[..3]).is_err());
        assert!(shallow.predict_raw(&[1.0]).is_err());
        let heap_built = |forest: &Forest| matches!(&forest.walk.as_ref().unwrap().columns, Some(Columns::F64(walk)) if walk.heap.is_some());
        assert!(heap_built(&shallow));

        // a deep chain: too deep for the heap layout, walked by child indices
        let depth = 12;
        let mut nodes = vec![split(0, Condition::Numeric { threshold: -1.5 }, Missing::NaN, true, 1)];
        for level in 1..depth {
            let threshold = level as f64 * 0.3 - 1.5;
            nodes.push(split(
                level % 2,
                Condition::Numeric { threshold },
                Missing::NaN,
                level % 3 == 0,
                2 * level + 1,
            ));
            nodes.push(leaf(level as f64));
        }
        nodes.extend([leaf(-1.0), leaf(-2.0)]);
        let deep = forest(vec![Tree { nodes }, is_missing, tree], 2);
        assert!(!heap_built(&deep));
        deep.predict_raw_batch(&rows, &mut out).unwrap();
        for (row, score) in rows.chunks(2).zip(&out) {
            assert_eq!(deep.predict_raw(row).unwrap(), *score);
        }
    }

    #[test]
    fn invalid_trees_are_refused() {
        let cycle = Tree {
            nodes: vec![
                split(0, Condition::Numeric { threshold: 0.5 }, Missing::NaN, true, 0),
                leaf(1.0),
            ],
        };
        let bad_feature = Tree {
            nodes: vec![
                split(7, Condition::Numeric { threshold: 0.5 }, Missing::NaN, true, 1),
                leaf(1.0),
                leaf(2.0),
            ],
        };
        let no_features = ForestData {
            base_score: 0.0,
            n_features: 0,
            input_precision: InputPrecision::F64,
            trees: vec![Tree::leaf(1.0, 1.0)],
        };
        assert!(Forest::new(no_features).is_err());
        let unsorted = Tree {
            nodes: vec![
                split(0, Condition::Categorical { left: vec![3, 1] }, Missing::NaN, false, 1),
                leaf(1.0),
                leaf(2.0),
            ],
        };
        let huge_category = Tree {
            nodes: vec![
                split(
                    0,
                    Condition::Categorical { left: vec![u32::MAX] },
                    Missing::NaN,
                    false,
                    1,
                ),
                leaf(1.0),
                leaf(2.0),
            ],
        };
        for tree in [cycle, bad_feature, Tree { nodes: vec![] }, unsorted, huge_category] {
            let data = ForestData {
                base_score: 0.0,
                n_features: 2,
                input_precision: InputPrecision::F64,
                trees: vec![tree],
            };
            assert!(Forest::new(data).is_err());
        }
    }

    #[test]
    fn f32_inputs_are_rounded_before_comparison() {
        // 0.1f32 is slightly above 0.1f64: XGBoost sends 0.1 right of a 0.1f32 threshold with `<`
        let threshold = f64::from(0.1f32);
        let tree = Tree {
            nodes: vec![
                split(0, Condition::Numeric { threshold }, Missing::NaN, true, 1),
                leaf(-1.0),
                leaf(1.0),
            ],
        };
        let mut data = ForestData {
            base_score: 0.0,
            n_features: 1,
            input_precision: InputPrecision::F64,
            trees: vec![tree],
        };
        let x = 0.100000003;
        assert!(x > threshold);
        assert_eq!(Forest::new(data.clone()).unwrap().predict_raw(&[x]).unwrap(), 1.0);
        data.input_precision = InputPrecision::F32;
        assert_eq!(Forest::new(data.clone()).unwrap().predict_raw(&[x]).unwrap(), -1.0);

        // the batch path compares in f32 when every threshold is an f32 value (here), and in
        // f64 otherwise: both agree with the single-row path, out-of-range inputs included
        for threshold in [threshold, 0.1] {
            data.trees[0].nodes[0] = split(0, Condition::Numeric { threshold }, Missing::NaN, true, 1);
            let forest = Forest::new(data.clone()).unwrap();
            let rows: Vec<f64> = [x, 0.1, f64::NAN, 1e39, -1e39, 0.05, f64::INFINITY]
                .into_iter()
                .cycle()
                .take(700)
                .collect();
            let mut out = vec![0.0; rows.len()];
            forest.predict_raw_batch(&rows, &mut out).unwrap();
            for (row, score) in rows.iter().zip(&out) {
                assert_eq!(forest.predict_raw(&[*row]).unwrap(), *score, "{row} at {threshold}");
            }
        }
    }
}
