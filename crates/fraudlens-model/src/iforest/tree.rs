//! The flattened tree: 16-byte nodes whose children sit side by side, and
//! the walk of eight (tree, row) pairs at once that scoring uses.

/// `Node::code` of a leaf.
pub(super) const LEAF: u32 = u32::MAX;

/// One node of a flattened tree; 16 bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Node {
    /// A split: its threshold (a value `<= threshold` goes left). A leaf: the path
    /// length of a row ending here, its depth plus `c(rows it held)`.
    pub(super) value: f64,
    /// A split: index of the left child in the tree's array; the right child is at
    /// `left + 1`, and `left` is greater than the split's own index. A leaf: 0.
    pub(super) left: u32,
    /// [`LEAF`], or `2 * feature + 1` if missing values go left, `2 * feature` if right.
    pub(super) code: u32,
}

impl Node {
    pub(super) fn leaf(path_length: f64) -> Self {
        Self {
            value: path_length,
            left: 0,
            code: LEAF,
        }
    }
}

/// A flattened isolation tree; the root is `nodes[0]`.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Tree {
    pub(super) nodes: Vec<Node>,
}

impl Tree {
    /// Path length of `row` (`row.len()` is the forest's `n_features`, which every
    /// split feature is below: checked at fit and at deserialization).
    pub(super) fn path_length(&self, row: &[f64]) -> f64 {
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
pub(super) fn walk_lanes<'a>(tree: impl Fn(usize) -> &'a Tree, value: impl Fn(usize, usize) -> f64) -> [f64; LANES] {
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
pub(super) const LANES: usize = 8;
