//! Tree growth: a tree is grown in bin space ([`BuildNode`]) by splitting
//! open leaves — the one with the best gain (leaf-wise) or the shallowest
//! (depth-wise) — up to the leaf and depth limits; the smaller child's
//! histogram is built and the larger's is the parent's minus it. Leaf values
//! are summed in row order, then the tree is turned into thresholds and
//! category sets in value space.

use super::histogram::{Cell, HIST_STRIDE, Scale, Sums};
use super::params::Growth;
use super::partition::{BinRule, bin_goes_left, set_contains};
use super::split::Candidate;
use super::trainer::Trainer;
use crate::binning::BinMapper;
use crate::tree::{Condition, Missing, Node, SplitNode, Tree};

/// A tree while it grows, in bin space.
pub(super) enum BuildNode {
    Leaf {
        value: f64,
        cover: f64,
    },
    Split {
        candidate: Candidate,
        left: usize,
        right: usize,
        cover: f64,
    },
}

/// A leaf that may still be split.
struct OpenLeaf {
    node: usize,
    start: usize,
    end: usize,
    depth: usize,
    sums: Cell,
    hist: Vec<Cell>,
    best: Option<Candidate>,
}

impl Trainer<'_> {
    /// Grows one tree over `indices`; returns its nodes, the partitioned
    /// indices and `(leaf value, start, end)` of every leaf.
    #[allow(clippy::type_complexity)]
    pub(super) fn grow(
        &self,
        mut indices: Vec<u32>,
        features: &[usize],
        gradients: &[[f64; 2]],
        cells: &[Cell],
        scale: &Scale,
    ) -> (Vec<BuildNode>, Vec<u32>, Vec<(f64, usize, usize)>) {
        let params = self.params.get();
        let (max_leaves, max_depth) = (self.params.max_leaves(), self.params.max_depth());
        let root_hist = self.histogram(&indices, features, cells);
        // every row is in one bin of each feature: one feature's cells add up to the node
        let mut sums = Cell::default();
        let first = features[0] * HIST_STRIDE;
        for cell in &root_hist[first..first + HIST_STRIDE] {
            sums.add(cell);
        }
        let mut nodes = vec![BuildNode::Leaf {
            value: 0.0,
            cover: scale.sums(&sums).h,
        }];
        let mut open: Vec<OpenLeaf> = Vec::new();
        let mut done: Vec<(usize, usize, usize)> = Vec::new(); // (node, start, end)
        let mut root = OpenLeaf {
            node: 0,
            start: 0,
            end: indices.len(),
            depth: 0,
            sums,
            hist: root_hist,
            best: None,
        };
        if max_depth > 0 {
            root.best = self.best_split(&root.hist, &root.sums, features, scale);
        }
        open.push(root);
        let mut n_leaves = 1;
        while n_leaves < max_leaves {
            // leaf-wise: the best gain; depth-wise: the shallowest (first) splittable leaf
            let pick = match params.growth {
                Growth::LeafWise => open
                    .iter()
                    .enumerate()
                    .filter_map(|(idx, leaf)| leaf.best.as_ref().map(|best| (idx, best.gain)))
                    .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
                    .map(|(idx, _)| idx),
                Growth::DepthWise => open.iter().position(|leaf| leaf.best.is_some()),
            };
            let Some(pick) = pick else { break };
            let leaf = open.remove(pick);
            let Some(candidate) = leaf.best.clone() else { break };
            let mid = self.partition(&mut indices[leaf.start..leaf.end], &candidate) + leaf.start;
            let (left_node, right_node) = (nodes.len(), nodes.len() + 1);
            nodes.push(BuildNode::Leaf {
                value: 0.0,
                cover: scale.sums(&candidate.left).h,
            });
            nodes.push(BuildNode::Leaf {
                value: 0.0,
                cover: scale.sums(&candidate.right).h,
            });
            nodes[leaf.node] = BuildNode::Split {
                candidate: candidate.clone(),
                left: left_node,
                right: right_node,
                cover: scale.sums(&leaf.sums).h,
            };
            n_leaves += 1;
            let depth = leaf.depth + 1;
            let can_split = depth < max_depth;
            let (left_range, right_range) = ((leaf.start, mid), (mid, leaf.end));
            if can_split {
                // histogram of the smaller child, the other by subtraction
                let left_smaller = mid - leaf.start <= leaf.end - mid;
                let small_range = if left_smaller { left_range } else { right_range };
                let small = self.histogram(&indices[small_range.0..small_range.1], features, cells);
                let mut large = leaf.hist;
                for (large, small) in large.iter_mut().zip(&small) {
                    *large = large.minus(small);
                }
                let (left_hist, right_hist) = if left_smaller { (small, large) } else { (large, small) };
                for (node, range, sums, hist) in [
                    (left_node, left_range, candidate.left, left_hist),
                    (right_node, right_range, candidate.right, right_hist),
                ] {
                    let best = self.best_split(&hist, &sums, features, scale);
                    // a leaf that cannot split needs no histogram
                    let hist = if best.is_some() { hist } else { Vec::new() };
                    open.push(OpenLeaf {
                        node,
                        start: range.0,
                        end: range.1,
                        depth,
                        sums,
                        hist,
                        best,
                    });
                }
            } else {
                done.push((left_node, left_range.0, left_range.1));
                done.push((right_node, right_range.0, right_range.1));
            }
        }
        done.extend(open.iter().map(|leaf| (leaf.node, leaf.start, leaf.end)));
        let lambda = params.lambda_l2;
        let mut leaf_ranges = Vec::with_capacity(done.len());
        for (node, start, end) in done {
            let sums = match &nodes[node] {
                BuildNode::Leaf { .. } => leaf_sums(&indices[start..end], gradients),
                BuildNode::Split { .. } => continue,
            };
            // an empty leaf (possible only with an empty row sample) adds nothing
            let mut value = if sums.n == 0 { 0.0 } else { -sums.g / (sums.h + lambda) };
            if params.max_delta_step > 0.0 {
                value = value.clamp(-params.max_delta_step, params.max_delta_step);
            }
            let value = value * params.learning_rate;
            nodes[node] = BuildNode::Leaf { value, cover: sums.h };
            leaf_ranges.push((value, start, end));
        }
        (nodes, indices, leaf_ranges)
    }

    /// The finished tree in value space.
    pub(super) fn to_tree(&self, nodes: &[BuildNode]) -> Tree {
        let nodes = nodes
            .iter()
            .map(|node| match node {
                BuildNode::Leaf { value, cover } => Node::Leaf {
                    value: *value,
                    cover: *cover,
                },
                BuildNode::Split {
                    candidate,
                    left,
                    right,
                    cover,
                } => {
                    let mapper = &self.mappers[candidate.feature];
                    let (condition, default_left) = match &candidate.rule {
                        BinRule::Numeric { bin, default_left } => (
                            Condition::Numeric {
                                threshold: mapper.threshold(*bin),
                            },
                            *default_left,
                        ),
                        BinRule::Categorical { left } => (
                            Condition::Categorical {
                                left: (0..256)
                                    .filter(|&bin| set_contains(left, bin))
                                    .map(|bin| bin as u32)
                                    .collect(),
                            },
                            false,
                        ),
                    };
                    Node::Split(SplitNode {
                        feature: candidate.feature as u32,
                        condition,
                        missing: Missing::NaN,
                        default_left,
                        left: *left as u32,
                        right: *right as u32,
                        cover: *cover,
                        gain: candidate.gain,
                    })
                }
            })
            .collect();
        Tree { nodes }
    }
}

/// The leaf value a binned row reaches in a tree under construction.
pub(super) fn leaf_value(nodes: &[BuildNode], mappers: &[BinMapper], bins: &[u8]) -> f64 {
    let mut idx = 0;
    loop {
        match &nodes[idx] {
            BuildNode::Leaf { value, .. } => return *value,
            BuildNode::Split {
                candidate, left, right, ..
            } => {
                let feature = candidate.feature;
                let bin = usize::from(bins[feature]);
                idx = if bin_goes_left(&candidate.rule, bin, mappers[feature].missing_bin()) {
                    *left
                } else {
                    *right
                };
            }
        }
    }
}

/// Sums of a leaf's rows in `f64`, in row order: its value and cover.
pub(super) fn leaf_sums(indices: &[u32], gradients: &[[f64; 2]]) -> Sums {
    let mut sums = Sums::default();
    for &row in indices {
        let [g, h] = gradients[row as usize];
        sums.g += g;
        sums.h += h;
    }
    sums.n = indices.len() as u32;
    sums
}
