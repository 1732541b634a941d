//! Random forests and rows that exercise every rule of the exchange format:
//! numeric and categorical splits, the three missing rules in both default
//! directions, repeated features on a path, integer and fractional covers.

use fraudlens_core::rng::Rng;
use fraudlens_model::tree::{Condition, Missing, Node, SplitNode, Tree};
use fraudlens_model::{Forest, ForestData, InputPrecision};

/// Features below this index may have categorical splits (and get category-like row values).
pub const N_CATEGORICAL: usize = 2;
pub const N_FEATURES: usize = 6;
/// Numeric thresholds come from this grid, so rows can sit exactly on them.
/// None lies within ±1e-35 of zero, where LightGBM reads every value as 0
/// (see the lightgbm module docs).
const THRESHOLDS: [f64; 9] = [-2.0, -0.75, -0.1, -1e-30, 0.1, 0.3, 1.0, 2.5, 1e10];

pub fn random_forest(seed: u64, n_trees: usize, precision: InputPrecision, integral_covers: bool) -> Forest {
    let mut rng = Rng::new(seed, 0);
    let trees = (0..n_trees)
        .map(|_| {
            let mut nodes = vec![Node::Leaf { value: 0.0, cover: 0.0 }];
            let root_cover = if integral_covers {
                1000.0
            } else {
                rng.range(50.0, 500.0)
            };
            grow(&mut rng, &mut nodes, 0, root_cover, 6, integral_covers);
            Tree { nodes }
        })
        .collect();
    Forest::new(ForestData {
        base_score: rng.range(-1.0, 1.0),
        n_features: N_FEATURES,
        input_precision: precision,
        trees,
    })
    .unwrap()
}

fn grow(rng: &mut Rng, nodes: &mut Vec<Node>, slot: usize, cover: f64, depth: usize, integral: bool) {
    if depth == 0 || rng.chance(0.15) || (integral && cover < 2.0) {
        nodes[slot] = Node::Leaf {
            value: rng.range(-1.0, 1.0),
            cover,
        };
        return;
    }
    let left = nodes.len() as u32;
    nodes.push(Node::Leaf { value: 0.0, cover: 0.0 });
    nodes.push(Node::Leaf { value: 0.0, cover: 0.0 });
    let feature = rng.below(N_FEATURES as u64) as u32;
    let condition = if (feature as usize) < N_CATEGORICAL && rng.chance(0.7) {
        let mut codes: Vec<u32> = (0..45).filter(|_| rng.chance(0.3)).collect();
        if codes.is_empty() {
            codes.push(rng.below(45) as u32);
        }
        Condition::Categorical { left: codes }
    } else {
        Condition::Numeric {
            threshold: THRESHOLDS[rng.below(THRESHOLDS.len() as u64) as usize],
        }
    };
    let mut left_cover = cover * rng.range(0.1, 0.9);
    if integral {
        left_cover = left_cover.round().clamp(1.0, cover - 1.0);
    }
    nodes[slot] = Node::Split(SplitNode {
        feature,
        condition,
        missing: [Missing::NaN, Missing::Zero, Missing::AsZero][rng.below(3) as usize],
        default_left: rng.chance(0.5),
        left,
        right: left + 1,
        cover,
        gain: rng.range(0.0, 10.0),
    });
    grow(rng, nodes, left as usize, left_cover, depth - 1, integral);
    grow(rng, nodes, left as usize + 1, cover - left_cover, depth - 1, integral);
}

/// Rows with NaN, signed zeros, tiny values, exact thresholds and their `f64`
/// and `f32` neighbours, infinities, and category codes in and out of range.
/// Category-like features get codes and special values only: none in
/// (-1, 0), where LightGBM's truncation and ours differ, and none just below
/// an integer, where `f32` rounding changes the code (see the lightgbm module docs).
pub fn random_rows(seed: u64, n_rows: usize) -> Vec<Vec<f64>> {
    let mut rng = Rng::new(seed, 1);
    (0..n_rows)
        .map(|_| {
            (0..N_FEATURES)
                .map(|feature| {
                    if feature < N_CATEGORICAL {
                        let specials = [f64::NAN, 0.0, -0.0, 1e-40, 0.3, 2.5, -1.0, -3.0, 1e9, f64::INFINITY];
                        return if rng.chance(0.5) {
                            specials[rng.below(specials.len() as u64) as usize]
                        } else {
                            rng.below(50) as f64
                        };
                    }
                    let threshold = THRESHOLDS[rng.below(THRESHOLDS.len() as u64) as usize];
                    // where f32 rounding flips between the two f32 values around the threshold
                    let near = threshold as f32;
                    let midpoint = (f64::from(near) + f64::from(near.next_up())) / 2.0;
                    match rng.below(11) {
                        0 => [
                            f64::NAN,
                            0.0,
                            -0.0,
                            1e-40,
                            -1e-40,
                            1e-36,
                            f64::INFINITY,
                            f64::NEG_INFINITY,
                        ][rng.below(8) as usize],
                        1 => threshold,
                        2 => threshold.next_up(),
                        3 => threshold.next_down(),
                        4 => f64::from((threshold as f32).next_up()),
                        5 => f64::from((threshold as f32).next_down()),
                        6 => midpoint,
                        7 => midpoint.next_up(),
                        8 => midpoint.next_down(),
                        _ => rng.range(-3.0, 3.0),
                    }
                })
                .collect()
        })
        .collect()
}

/// A forest from our own trainer, on rows like [`random_rows`] with a label
/// that depends on a categorical and numeric features and on missingness.
pub fn trained_forest(seed: u64, n_trees: usize) -> Forest {
    use fraudlens_model::train::{FeatureKind, GbdtParams, TrainSet, train};
    let mut rng = Rng::new(seed, 2);
    let rows: Vec<Vec<f64>> = random_rows(seed, 3000)
        .into_iter()
        .map(|row| {
            // category-like features hold codes 0..50 or NaN, as the trainer expects
            let mut row = row;
            for value in &mut row[..N_CATEGORICAL] {
                if !value.is_nan() {
                    *value = rng.below(50) as f64;
                }
            }
            row
        })
        .collect();
    let labels: Vec<bool> = rows
        .iter()
        .map(|row| {
            let score = if row[0].is_nan() {
                1.0
            } else {
                f64::from((row[0] as u32).is_multiple_of(3))
            } + if row[2].is_nan() { -0.5 } else { row[2].clamp(-3.0, 3.0) }
                + row[3].abs().min(2.0) * 0.5;
            rng.uniform() < 1.0 / (1.0 + (-(score - 1.0)).exp())
        })
        .collect();
    let values: Vec<f64> = rows.concat();
    let mut kinds = vec![FeatureKind::Numeric; N_FEATURES];
    for kind in &mut kinds[..N_CATEGORICAL] {
        *kind = FeatureKind::Categorical { n_codes: 50 };
    }
    let params = GbdtParams {
        n_trees,
        num_leaves: 24,
        max_depth: 6,
        // 3000 rows over 50 categories: let small groups split, so the forest has categorical splits
        min_data_per_group: 10,
        seed,
        threads: 1,
        ..GbdtParams::default()
    }
    .check()
    .unwrap();
    let train_set = TrainSet {
        values: &values,
        n_features: N_FEATURES,
        labels: &labels,
        weights: None,
    };
    train(&params, &kinds, &train_set, None, &mut |_| {}).unwrap().forest
}
