//! Growing a tree: rows sampled without replacement (Floyd's algorithm), a
//! feature and a threshold drawn uniformly per node, the side of missing
//! values drawn from the node's split, and the path-length maths (`c(n)`,
//! harmonic numbers) that turns depths into scores.

use fraudlens_core::rng::{Rng, ln};
use rustc_hash::FxHashSet;

use super::tree::{Node, Tree};
use super::{IsolationForestError, MAX_FEATURES};

/// A split being decided while growing a tree.
pub(super) struct Split {
    feature: usize,
    threshold: f64,
    missing_goes_left: bool,
}

/// A node whose rows are known but whose split is not yet drawn.
pub(super) struct PendingNode {
    node_idx: usize,
    /// Its rows: `sample_order[start..end]`.
    start: usize,
    end: usize,
    depth: usize,
}

/// Grows one tree on a column-major sample (`values[feature * sample_size + sample_idx]`).
pub(super) fn build_tree(rng: &mut Rng, values: &[f64], sample_size: usize, max_depth: usize) -> Tree {
    let n_features = values.len() / sample_size;
    // sample indices, partitioned in place so each node's rows are a contiguous range
    let mut sample_order: Vec<u32> = (0..sample_size as u32).collect();
    // scratch permutation for drawing split features without replacement
    let mut features: Vec<usize> = (0..n_features).collect();
    let mut nodes = vec![Node::leaf(0.0)];
    // explicit stack: trees with a large max_depth can be deeper than the call stack allows
    let mut pending = vec![PendingNode {
        node_idx: 0,
        start: 0,
        end: sample_size,
        depth: 0,
    }];
    while let Some(PendingNode {
        node_idx,
        start,
        end,
        depth,
    }) = pending.pop()
    {
        let rows = &mut sample_order[start..end];
        let split = if rows.len() > 1 && depth < max_depth {
            draw_split(rng, values, sample_size, &mut features, rows)
        } else {
            None
        };
        let Some(split) = split else {
            nodes[node_idx] = Node::leaf(depth as f64 + average_path_length(rows.len()));
            continue;
        };
        let column = &values[split.feature * sample_size..(split.feature + 1) * sample_size];
        let n_left = partition(rows, |sample_idx| {
            let value = column[sample_idx as usize];
            if value.is_nan() {
                split.missing_goes_left
            } else {
                value <= split.threshold
            }
        });
        let left = nodes.len();
        nodes[node_idx] = Node {
            value: split.threshold,
            left: left as u32,
            code: 2 * split.feature as u32 + u32::from(split.missing_goes_left),
        };
        nodes.push(Node::leaf(0.0));
        nodes.push(Node::leaf(0.0));
        pending.push(PendingNode {
            node_idx: left + 1,
            start: start + n_left,
            end,
            depth: depth + 1,
        });
        pending.push(PendingNode {
            node_idx: left,
            start,
            end: start + n_left,
            depth: depth + 1,
        });
    }
    Tree { nodes }
}

/// Draws a feature uniformly among those whose non-missing values in `rows` differ
/// (the first such feature of a random permutation), a threshold uniformly in its
/// range, and the side of missing values. `None` if every feature is constant or
/// missing: the node is a leaf.
pub(super) fn draw_split(
    rng: &mut Rng,
    values: &[f64],
    sample_size: usize,
    features: &mut [usize],
    rows: &[u32],
) -> Option<Split> {
    let mut n_candidates = features.len();
    while n_candidates > 0 {
        let pick = rng.below(n_candidates as u64) as usize;
        let feature = features[pick];
        n_candidates -= 1;
        features.swap(pick, n_candidates);
        let column = &values[feature * sample_size..(feature + 1) * sample_size];
        let Some((min, max)) = value_range(column, rows) else {
            continue;
        };
        // clamped so the threshold is finite; infinite values stay beyond it
        let (min, max) = (min.max(-f64::MAX), max.min(f64::MAX));
        if min >= max {
            continue;
        }
        // the interpolation form cannot overflow for a range wider than f64::MAX
        let u = rng.uniform();
        let mut threshold = min * (1.0 - u) + max * u;
        if !(threshold >= min && threshold < max) {
            // rounding reached max (or beyond): the right side would be empty
            threshold = min;
        }
        let (n_left, n_right) = rows.iter().fold((0u64, 0u64), |(n_left, n_right), &sample_idx| {
            let value = column[sample_idx as usize];
            if value.is_nan() {
                (n_left, n_right)
            } else if value <= threshold {
                (n_left + 1, n_right)
            } else {
                (n_left, n_right + 1)
            }
        });
        // both counts are >= 1: min goes left and max goes right
        let missing_goes_left = rng.below(n_left + n_right) < n_left;
        return Some(Split {
            feature,
            threshold,
            missing_goes_left,
        });
    }
    None
}

/// Minimum and maximum of the non-NaN values of `column` at `rows`; `None` if all are NaN.
pub(super) fn value_range(column: &[f64], rows: &[u32]) -> Option<(f64, f64)> {
    let mut range: Option<(f64, f64)> = None;
    for &sample_idx in rows {
        let value = column[sample_idx as usize];
        if value.is_nan() {
            continue;
        }
        range = Some(match range {
            None => (value, value),
            Some((min, max)) => (min.min(value), max.max(value)),
        });
    }
    range
}

/// Moves the rows for which `goes_left` holds to the front; returns how many there are.
pub(super) fn partition(rows: &mut [u32], goes_left: impl Fn(u32) -> bool) -> usize {
    let mut n_left = 0;
    for idx in 0..rows.len() {
        if goes_left(rows[idx]) {
            rows.swap(idx, n_left);
            n_left += 1;
        }
    }
    n_left
}

/// Draws `sample_size` distinct row indices below `n_rows` with Floyd's algorithm:
/// time and memory in `sample_size`, however many rows there are.
pub(super) fn sample_rows(rng: &mut Rng, n_rows: usize, sample_size: usize) -> Vec<usize> {
    let mut chosen = FxHashSet::default();
    chosen.reserve(sample_size);
    let mut rows = Vec::with_capacity(sample_size);
    for upper in n_rows - sample_size..n_rows {
        let candidate = rng.below(upper as u64 + 1) as usize;
        // `upper` was out of reach of every earlier draw, so it is new
        let row = if chosen.contains(&candidate) { upper } else { candidate };
        chosen.insert(row);
        rows.push(row);
    }
    rows
}

/// The sampled rows as a column-major block: `values[feature * rows.len() + sample_idx]`.
pub(super) fn gather(columns: &[Vec<f64>], rows: &[usize]) -> Vec<f64> {
    let mut values = Vec::with_capacity(columns.len() * rows.len());
    for column in columns {
        values.extend(rows.iter().map(|&row_idx| column[row_idx]));
    }
    values
}

/// Checks the training matrix's shape; returns its number of rows.
pub(super) fn check_columns(columns: &[Vec<f64>]) -> Result<usize, IsolationForestError> {
    let Some(first) = columns.first() else {
        return Err(IsolationForestError::NoFeatures);
    };
    if columns.len() > MAX_FEATURES {
        return Err(IsolationForestError::TooManyFeatures {
            n_features: columns.len(),
        });
    }
    let n_rows = first.len();
    if let Some((feature, column)) = columns.iter().enumerate().find(|(_, column)| column.len() != n_rows) {
        return Err(IsolationForestError::RaggedColumns {
            feature,
            n_rows: column.len(),
            expected: n_rows,
        });
    }
    if n_rows < 2 {
        return Err(IsolationForestError::TooFewRows { n_rows });
    }
    Ok(n_rows)
}

/// `ceil(log2(n))` for `n >= 1`.
pub(super) fn ceil_log2(n: usize) -> usize {
    (usize::BITS - n.saturating_sub(1).leading_zeros()) as usize
}

/// `c(n) = 2 H(n-1) - 2 (n-1) / n`: the average path length of an unsuccessful search
/// in a binary search tree of `n` points, i.e. the expected depth of the subtree a
/// leaf holding `n` rows would have grown. `c(0) = c(1) = 0`, `c(2) = 1`.
pub(super) fn average_path_length(n: usize) -> f64 {
    if n <= 1 {
        return 0.0;
    }
    let n_f = n as f64;
    2.0 * harmonic(n - 1) - 2.0 * (n_f - 1.0) / n_f
}

/// `H(i) = 1 + 1/2 + … + 1/i`: summed for small `i` (smallest terms first), the
/// asymptotic expansion beyond (its error at `i = 64` is below 1e-13).
pub(super) fn harmonic(i: usize) -> f64 {
    const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;
    const SUMMED_UP_TO: usize = 64;
    if i <= SUMMED_UP_TO {
        let mut sum = 0.0;
        for k in (1..=i).rev() {
            sum += 1.0 / k as f64;
        }
        return sum;
    }
    let x = i as f64;
    let x2 = x * x;
    ln(x) + EULER_GAMMA + 1.0 / (2.0 * x) - 1.0 / (12.0 * x2) + 1.0 / (120.0 * x2 * x2)
}
