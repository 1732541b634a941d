//! Per-feature contributions: exact path-dependent TreeSHAP (Lundberg et al.,
//! "Consistent individualized feature attribution for tree ensembles", 2018,
//! algorithm 2), the method behind XGBoost's `pred_contribs` and LightGBM's
//! `pred_contrib`.
//!
//! For a row `x`, the contributions `phi` satisfy
//! `expected_value + sum(phi) == raw score` (up to rounding): each feature's
//! share of how far this row's score is from the model's average score. The
//! "average" uses the training cover of each node, so no background data is
//! needed at serving time. Cost: O(trees × leaves × depth²) per row.

use fraudlens_core::Reason;

use crate::{Forest, ModelError};

#[derive(Clone, Copy, Debug, Default)]
struct PathElement {
    /// Feature index, `usize::MAX` for the root's placeholder.
    feature: usize,
    /// Fraction of "feature unknown" paths that flow through this element.
    zero: f64,
    /// 1 when the row's value follows this element's branch, else 0.
    one: f64,
    /// Permutation weight.
    weight: f64,
}

impl Forest {
    /// The model's expected raw score: the base score plus each tree's
    /// cover-weighted mean leaf value.
    pub fn expected_value(&self) -> f64 {
        self.cached_expected_value()
    }

    pub(crate) fn compute_expected_value(&self) -> f64 {
        self.base_score()
            + self
                .roots()
                .iter()
                .map(|&root| self.node_expectation(root as usize))
                .sum::<f64>()
    }

    fn node_expectation(&self, idx: usize) -> f64 {
        let (is_leaf, _, left, value) = self.node(idx);
        if is_leaf {
            return value;
        }
        let (left_fraction, right_fraction) = self.child_fractions(idx);
        left_fraction * self.node_expectation(left) + right_fraction * self.node_expectation(left + 1)
    }

    /// Share of the node's cover that goes to each child. A node without
    /// cover (possible in imported models) splits it evenly.
    fn child_fractions(&self, idx: usize) -> (f64, f64) {
        let (_, _, left, _) = self.node(idx);
        let cover = self.cover(idx);
        let (left_cover, right_cover) = (self.cover(left), self.cover(left + 1));
        if cover > 0.0 && left_cover >= 0.0 && right_cover >= 0.0 && left_cover + right_cover > 0.0 {
            let total = left_cover + right_cover;
            (left_cover / total, right_cover / total)
        } else {
            (0.5, 0.5)
        }
    }

    /// Per-feature contributions of `row` to its raw score, written into `phi`
    /// (resized to the number of features). Returns the expected value, so that
    /// `expected + phi.iter().sum() == predict_raw(row)`.
    pub fn contributions(&self, row: &[f64], phi: &mut Vec<f64>) -> Result<f64, ModelError> {
        self.check(row)?;
        let mut rounded = Vec::new();
        let row = self.round_if_needed(row, &mut rounded);
        phi.clear();
        phi.resize(self.n_features(), 0.0);
        // the stack of paths: level d (0-based) starts after d + 1 elements of level d - 1
        let levels = self.max_depth() + 2;
        let mut path = vec![PathElement::default(); (levels + 1) * (levels + 2) / 2 + levels + 1];
        for &root in self.roots() {
            self.tree_shap(row, phi, &mut path, root as usize, 0, 0, 1.0, 1.0, usize::MAX);
        }
        Ok(self.expected_value())
    }

    /// The `k` features with the largest absolute contribution, largest first
    /// (ties by feature index); features contributing exactly 0 are left out.
    pub fn top_reasons(&self, row: &[f64], names: &[String], k: usize) -> Result<Vec<Reason>, ModelError> {
        let mut phi = Vec::new();
        self.contributions(row, &mut phi)?;
        Ok(top_reasons(&phi, row, names, k))
    }

    /// One step of the recursion at flat node `node`. `path[parent..]` holds
    /// the parent's path of `depth` elements; this node's path is written
    /// right after it, so the buffer works as a stack.
    #[allow(clippy::too_many_arguments)] // the recursion state of the published algorithm
    fn tree_shap(
        &self,
        row: &[f64],
        phi: &mut [f64],
        path: &mut [PathElement],
        node: usize,
        parent: usize,
        mut depth: usize,
        zero: f64,
        one: f64,
        feature: usize,
    ) {
        let own = parent + depth + 1;
        path.copy_within(parent..parent + depth + 1, own);
        extend(&mut path[own..], depth, zero, one, feature);
        let (is_leaf, split_feature, left, value) = self.node(node);
        if is_leaf {
            let unique = &path[own..];
            for i in 1..=depth {
                let element = unique[i];
                phi[element.feature] += unwound_sum(unique, depth, i) * (element.one - element.zero) * value;
            }
            return;
        }
        let (left_fraction, right_fraction) = self.child_fractions(node);
        let (hot, cold, hot_fraction, cold_fraction) = if self.goes_left_at(node, row) {
            (left, left + 1, left_fraction, right_fraction)
        } else {
            (left + 1, left, right_fraction, left_fraction)
        };
        // a feature split on before: undo that split, its fractions carry over
        let (mut incoming_zero, mut incoming_one) = (1.0, 1.0);
        if let Some(path_index) = (0..=depth).find(|&idx| path[own + idx].feature == split_feature) {
            incoming_zero = path[own + path_index].zero;
            incoming_one = path[own + path_index].one;
            unwind(&mut path[own..], depth, path_index);
            depth -= 1;
        }
        let child_zero = |fraction: f64| fraction * incoming_zero;
        self.tree_shap(
            row,
            phi,
            path,
            hot,
            own,
            depth + 1,
            child_zero(hot_fraction),
            incoming_one,
            split_feature,
        );
        self.tree_shap(
            row,
            phi,
            path,
            cold,
            own,
            depth + 1,
            child_zero(cold_fraction),
            0.0,
            split_feature,
        );
    }
}

/// The `k` largest contributions by absolute value.
pub fn top_reasons(phi: &[f64], row: &[f64], names: &[String], k: usize) -> Vec<Reason> {
    let mut order: Vec<usize> = (0..phi.len()).filter(|&idx| phi[idx] != 0.0).collect();
    order.sort_by(|&a, &b| phi[b].abs().total_cmp(&phi[a].abs()).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|idx| Reason {
            feature: names.get(idx).cloned().unwrap_or_else(|| format!("f{idx}")),
            value: row.get(idx).copied().filter(|value| !value.is_nan()),
            category: None,
            contribution: phi[idx],
        })
        .collect()
}

/// Adds an element to the path and updates the permutation weights.
fn extend(path: &mut [PathElement], depth: usize, zero: f64, one: f64, feature: usize) {
    path[depth] = PathElement {
        feature,
        zero,
        one,
        weight: if depth == 0 { 1.0 } else { 0.0 },
    };
    let inv_n = RECIPROCALS[depth + 1];
    let (one_n, zero_n) = (one * inv_n, zero * inv_n);
    for i in (0..depth).rev() {
        path[i + 1].weight += one_n * path[i].weight * (i + 1) as f64;
        path[i].weight = zero_n * path[i].weight * (depth - i) as f64;
    }
}

/// `1 / k` for the path lengths a tree can have: divisions by small integers
/// are the hot loop's cost, multiplications are cheap.
const RECIPROCALS: [f64; crate::tree::MAX_DEPTH + 3] = {
    let mut table = [0.0; crate::tree::MAX_DEPTH + 3];
    let mut k = 1;
    while k < table.len() {
        table[k] = 1.0 / k as f64;
        k += 1;
    }
    table
};

/// Removes element `path_index` from the path (undoes [`extend`]).
fn unwind(path: &mut [PathElement], depth: usize, path_index: usize) {
    let PathElement { zero, one, .. } = path[path_index];
    let n = (depth + 1) as f64;
    let mut next_one = path[depth].weight;
    if one != 0.0 {
        let (scale, zero_n) = (n / one, zero / n);
        for i in (0..depth).rev() {
            let tmp = path[i].weight;
            path[i].weight = next_one * scale * RECIPROCALS[i + 1];
            next_one = tmp - path[i].weight * zero_n * (depth - i) as f64;
        }
    } else {
        let scale = n / zero;
        for i in (0..depth).rev() {
            path[i].weight *= scale * RECIPROCALS[depth - i];
        }
    }
    for i in path_index..depth {
        path[i].feature = path[i + 1].feature;
        path[i].zero = path[i + 1].zero;
        path[i].one = path[i + 1].one;
    }
}

/// Total permutation weight of the path with element `path_index` removed.
fn unwound_sum(path: &[PathElement], depth: usize, path_index: usize) -> f64 {
    let PathElement { zero, one, .. } = path[path_index];
    let n = (depth + 1) as f64;
    let mut total = 0.0;
    if one != 0.0 {
        let (scale, zero_n) = (n / one, zero / n);
        let mut next_one = path[depth].weight;
        for i in (0..depth).rev() {
            let tmp = next_one * scale * RECIPROCALS[i + 1];
            total += tmp;
            next_one = path[i].weight - tmp * zero_n * (depth - i) as f64;
        }
    } else if zero != 0.0 {
        let scale = n / zero;
        for i in (0..depth).rev() {
            total += path[i].weight * scale * RECIPROCALS[depth - i];
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use fraudlens_core::rng::Rng;
    use proptest::prelude::*;

    use super::*;
    use crate::tree::{Condition, Missing, Node, SplitNode, Tree};
    use crate::{ForestData, InputPrecision};

    /// A random tree over `n_features` features whose covers add up, with
    /// repeated features on a path, missing-value rules and categorical splits.
    fn random_tree(rng: &mut Rng, n_features: usize, max_depth: usize) -> Tree {
        fn grow(rng: &mut Rng, nodes: &mut Vec<Node>, slot: usize, cover: f64, depth: usize, n_features: usize) {
            if depth == 0 || rng.uniform() < 0.2 {
                nodes[slot] = Node::Leaf {
                    value: rng.range(-2.0, 2.0),
                    cover,
                };
                return;
            }
            let left = nodes.len() as u32;
            nodes.push(Node::Leaf { value: 0.0, cover: 0.0 });
            nodes.push(Node::Leaf { value: 0.0, cover: 0.0 });
            let share = rng.range(0.05, 0.95);
            let condition = if rng.uniform() < 0.2 {
                Condition::Categorical { left: vec![0, 2] }
            } else {
                Condition::Numeric {
                    threshold: rng.range(-1.0, 1.0),
                }
            };
            let missing = [Missing::NaN, Missing::Zero, Missing::AsZero][rng.below(3) as usize];
            nodes[slot] = Node::Split(SplitNode {
                feature: rng.below(n_features as u64) as u32,
                condition,
                missing,
                default_left: rng.uniform() < 0.5,
                left,
                right: left + 1,
                cover,
                gain: 1.0,
            });
            grow(rng, nodes, left as usize, cover * share, depth - 1, n_features);
            grow(
                rng,
                nodes,
                left as usize + 1,
                cover * (1.0 - share),
                depth - 1,
                n_features,
            );
        }
        let mut nodes = vec![Node::Leaf { value: 0.0, cover: 0.0 }];
        grow(rng, &mut nodes, 0, 100.0, max_depth, n_features);
        Tree { nodes }
    }

    fn random_forest(seed: u64, n_features: usize, n_trees: usize, max_depth: usize) -> Forest {
        let mut rng = Rng::new(seed, 0);
        let trees = (0..n_trees)
            .map(|_| random_tree(&mut rng, n_features, max_depth))
            .collect();
        Forest::new(ForestData {
            base_score: rng.range(-1.0, 1.0),
            n_features,
            input_precision: InputPrecision::F64,
            trees,
        })
        .unwrap()
    }

    fn random_row(seed: u64, n_features: usize) -> Vec<f64> {
        let mut rng = Rng::new(seed, 1);
        (0..n_features)
            .map(|_| match rng.below(6) {
                0 => f64::NAN,
                1 => 0.0,
                2 => rng.below(4) as f64,
                _ => rng.range(-1.5, 1.5),
            })
            .collect()
    }

    /// E[f(x) | x_S]: features in `known` follow the row, the others split by cover.
    fn conditional_expectation(tree: &Tree, row: &[f64], known: u32, idx: usize) -> f64 {
        match &tree.nodes[idx] {
            Node::Leaf { value, .. } => *value,
            Node::Split(split) => {
                let (left, right) = (split.left as usize, split.right as usize);
                if known & (1 << split.feature) != 0 {
                    let next = if split.goes_left(row[split.feature as usize]) {
                        left
                    } else {
                        right
                    };
                    conditional_expectation(tree, row, known, next)
                } else {
                    let cover = |idx: usize| match &tree.nodes[idx] {
                        Node::Leaf { cover, .. } => *cover,
                        Node::Split(split) => split.cover,
                    };
                    let total = cover(left) + cover(right);
                    (cover(left) * conditional_expectation(tree, row, known, left)
                        + cover(right) * conditional_expectation(tree, row, known, right))
                        / total
                }
            }
        }
    }

    /// Shapley values by enumerating every coalition.
    fn brute_force(forest: &Forest, row: &[f64]) -> Vec<f64> {
        let m = forest.n_features();
        let factorial = |n: usize| (1..=n).map(|k| k as f64).product::<f64>();
        let value = |known: u32| {
            forest
                .trees()
                .iter()
                .map(|tree| conditional_expectation(tree, row, known, 0))
                .sum::<f64>()
        };
        (0..m)
            .map(|feature| {
                (0u32..1 << m)
                    .filter(|set| set & (1 << feature) == 0)
                    .map(|set| {
                        let size = set.count_ones() as usize;
                        let weight = factorial(size) * factorial(m - size - 1) / factorial(m);
                        weight * (value(set | (1 << feature)) - value(set))
                    })
                    .sum()
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Contributions plus the expected value add up to the raw score.
        #[test]
        fn contributions_sum_to_raw_score(seed in any::<u64>(), n_features in 1usize..12, depth in 1usize..9) {
            let forest = random_forest(seed, n_features, 8, depth);
            let row = random_row(seed, n_features);
            let mut phi = Vec::new();
            let expected = forest.contributions(&row, &mut phi).unwrap();
            let raw = forest.predict_raw(&row).unwrap();
            prop_assert!((expected + phi.iter().sum::<f64>() - raw).abs() < 1e-9, "{expected} {phi:?} {raw}");
        }

        /// They are the exact Shapley values of the cover-weighted conditional expectation.
        #[test]
        fn contributions_are_exact_shapley_values(seed in any::<u64>(), n_features in 1usize..6, depth in 1usize..6) {
            let forest = random_forest(seed, n_features, 3, depth);
            let row = random_row(seed, n_features);
            let mut phi = Vec::new();
            forest.contributions(&row, &mut phi).unwrap();
            let exact = brute_force(&forest, &row);
            for (fast, exact) in phi.iter().zip(&exact) {
                prop_assert!((fast - exact).abs() < 1e-9, "{phi:?} vs {exact:?}");
            }
        }
    }

    #[test]
    fn top_reasons_rank_by_absolute_contribution() {
        let names: Vec<String> = ["a", "b", "c", "d"].map(str::to_owned).to_vec();
        let reasons = top_reasons(&[0.1, -0.7, 0.0, 0.3], &[1.0, f64::NAN, 3.0, 4.0], &names, 3);
        let got: Vec<(&str, Option<f64>)> = reasons.iter().map(|r| (r.feature.as_str(), r.value)).collect();
        assert_eq!(got, [("b", None), ("d", Some(4.0)), ("a", Some(1.0))]);
    }
}
