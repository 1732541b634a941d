use rustc_hash::FxHashSet;

use super::grow::{average_path_length, ceil_log2, sample_rows};
use super::tree::LEAF;
use super::*;
// named: proptest's prelude has an `Rng` trait too
use fraudlens_core::rng::Rng;
use proptest::prelude::*;

/// `n_inliers` points of a standard 2-D Gaussian, then `n_outliers` points at
/// distance 6 to 9 in random directions; column-major, plus the outlier flags.
fn gaussian_cloud(seed: u64, n_inliers: usize, n_outliers: usize) -> (Vec<Vec<f64>>, Vec<bool>) {
    let mut rng = Rng::new(seed, 99);
    let mut columns = vec![Vec::new(), Vec::new()];
    for _ in 0..n_inliers {
        columns[0].push(rng.normal());
        columns[1].push(rng.normal());
    }
    for _ in 0..n_outliers {
        let (dx, dy) = (rng.normal(), rng.normal());
        let radius = rng.range(6.0, 9.0) / (dx * dx + dy * dy).sqrt();
        columns[0].push(dx * radius);
        columns[1].push(dy * radius);
    }
    let is_outlier = (0..n_inliers + n_outliers)
        .map(|row_idx| row_idx >= n_inliers)
        .collect();
    (columns, is_outlier)
}

fn row_major(columns: &[Vec<f64>]) -> Vec<f64> {
    let n_rows = columns[0].len();
    (0..n_rows)
        .flat_map(|row_idx| columns.iter().map(move |column| column[row_idx]))
        .collect()
}

fn batch_scores(forest: &IsolationForest, columns: &[Vec<f64>]) -> Vec<f64> {
    let rows = row_major(columns);
    let mut out = vec![0.0; columns[0].len()];
    forest.score_batch(&rows, &mut out).unwrap();
    out
}

fn fit(params: IsolationForestParams, columns: &[Vec<f64>]) -> IsolationForest {
    params.check().unwrap().fit(columns).unwrap()
}

fn bits(scores: &[f64]) -> Vec<u64> {
    scores.iter().map(|score| score.to_bits()).collect()
}

/// Probability that a random positive outscores a random negative (ties count half).
fn auc(scores: &[f64], positive: &[bool]) -> f64 {
    let mut wins = 0.0;
    let mut pairs = 0.0;
    for (score_pos, _) in scores.iter().zip(positive).filter(|(_, is_pos)| **is_pos) {
        for (score_neg, _) in scores.iter().zip(positive).filter(|(_, is_pos)| !**is_pos) {
            pairs += 1.0;
            if score_pos > score_neg {
                wins += 1.0;
            } else if score_pos == score_neg {
                wins += 0.5;
            }
        }
    }
    wins / pairs
}

fn split_features(forest: &IsolationForest) -> Vec<usize> {
    forest
        .trees
        .iter()
        .flat_map(|tree| tree.nodes.iter())
        .filter(|node| node.code != LEAF)
        .map(|node| (node.code >> 1) as usize)
        .collect()
}

#[test]
fn outliers_score_higher_than_inliers() {
    let (columns, is_outlier) = gaussian_cloud(1, 2000, 20);
    let forest = fit(IsolationForestParams::default(), &columns);
    let scores = batch_scores(&forest, &columns);
    let auc = auc(&scores, &is_outlier);
    assert!(auc > 0.95, "auc {auc}");
    // the documented reading of the scale: anomalies well above 0.5, the bulk below
    let mut inlier_scores: Vec<f64> = scores[..2000].to_vec();
    inlier_scores.sort_by(f64::total_cmp);
    let min_outlier = scores[2000..].iter().copied().fold(f64::INFINITY, f64::min);
    assert!(inlier_scores[1000] < 0.5, "median inlier {}", inlier_scores[1000]);
    assert!(min_outlier > 0.6, "least anomalous outlier {min_outlier}");
}

#[test]
fn fit_and_scores_do_not_depend_on_the_number_of_threads() {
    let (columns, _) = gaussian_cloud(2, 3000, 30);
    let params = IsolationForestParams {
        seed: 7,
        ..IsolationForestParams::default()
    };
    let in_pool = |n_threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(n_threads).build().unwrap();
        pool.install(|| {
            let forest = fit(params, &columns);
            let scores = batch_scores(&forest, &columns);
            (forest, scores)
        })
    };
    let (forest_1, scores_1) = in_pool(1);
    let (forest_4, scores_4) = in_pool(4);
    assert_eq!(forest_1, forest_4);
    assert_eq!(bits(&scores_1), bits(&scores_4));
    let (forest_again, scores_again) = in_pool(4);
    assert_eq!(forest_again, forest_4);
    assert_eq!(bits(&scores_again), bits(&scores_4));
}

#[test]
fn score_batch_is_score_row_by_row() {
    // batches walk rows in lanes, single rows walk trees in lanes: same sums, same order.
    // More than one block, a last block that is not full, and a row count and a tree
    // count that are not multiples of LANES.
    let (mut columns, _) = gaussian_cloud(3, 3 * BLOCK_ROWS + 17, 5);
    columns[0][7] = f64::NAN;
    for n_trees in [200, 13] {
        let forest = fit(
            IsolationForestParams {
                n_trees,
                ..IsolationForestParams::default()
            },
            &columns,
        );
        let batch = batch_scores(&forest, &columns);
        let one_by_one: Vec<f64> = (0..columns[0].len())
            .map(|row_idx| forest.score(&[columns[0][row_idx], columns[1][row_idx]]).unwrap())
            .collect();
        assert_eq!(bits(&batch), bits(&one_by_one));
        // and both are what a plain walk of each tree gives
        let row = [columns[0][7], columns[1][7]];
        let plain_sum = forest.trees.iter().fold(0.0, |sum, tree| sum + tree.path_length(&row));
        assert_eq!(one_by_one[7].to_bits(), forest.score_from_sum(plain_sum).to_bits());
    }
}

#[test]
fn different_seeds_give_different_forests() {
    let (columns, _) = gaussian_cloud(4, 1000, 10);
    let forest_a = fit(IsolationForestParams::default(), &columns);
    let forest_b = fit(
        IsolationForestParams {
            seed: 1,
            ..IsolationForestParams::default()
        },
        &columns,
    );
    assert_ne!(forest_a, forest_b);
    let scores_a = batch_scores(&forest_a, &columns);
    let scores_b = batch_scores(&forest_b, &columns);
    let n_different = scores_a.iter().zip(&scores_b).filter(|(a, b)| a != b).count();
    assert!(n_different > 900, "{n_different} of 1010 scores differ");
}

#[test]
fn constant_and_all_missing_columns_are_never_split_on() {
    let (mut columns, _) = gaussian_cloud(5, 1000, 10);
    columns.insert(0, vec![3.5; 1010]);
    columns.push(vec![f64::NAN; 1010]);
    let forest = fit(IsolationForestParams::default(), &columns);
    let features = split_features(&forest);
    assert!(features.iter().all(|&feature| feature == 1 || feature == 2));
    assert!(features.contains(&1) && features.contains(&2));
    // the useless columns do not hide the outliers either
    let (_, is_outlier) = gaussian_cloud(5, 1000, 10);
    assert!(auc(&batch_scores(&forest, &columns), &is_outlier) > 0.95);
}

#[test]
fn data_without_spread_scores_one_half() {
    // every tree is a root leaf holding ψ rows: h = c(ψ), score = 2^-1
    let columns = vec![vec![1.0; 300], vec![f64::NAN; 300]];
    let forest = fit(IsolationForestParams::default(), &columns);
    assert!(forest.trees.iter().all(|tree| tree.nodes.len() == 1));
    for row in [[1.0, f64::NAN], [-50.0, 2.0], [f64::INFINITY, f64::NAN]] {
        let score = forest.score(&row).unwrap();
        assert!((score - 0.5).abs() < 1e-12, "{score}");
    }
}

#[test]
fn missing_values_take_the_fitted_side_and_are_not_anomalous_by_themselves() {
    let (mut columns, is_outlier) = gaussian_cloud(6, 2000, 20);
    // a third of the inliers miss feature 0
    for row_idx in (0..2000).step_by(3) {
        columns[0][row_idx] = f64::NAN;
    }
    let forest = fit(IsolationForestParams::default(), &columns);
    let scores = batch_scores(&forest, &columns);
    assert!(scores.iter().all(|score| *score > 0.0 && *score <= 1.0));
    assert!(auc(&scores, &is_outlier) > 0.95);

    // scoring: a missing feature 0 neither hides an outlier in feature 1 nor makes a typical row odd
    let typical = forest.score(&[f64::NAN, 0.0]).unwrap();
    let odd = forest.score(&[f64::NAN, 8.0]).unwrap();
    assert!(
        typical < 0.5 && odd > 0.55 && odd > typical + 0.2,
        "typical {typical}, odd {odd}"
    );
    let all_missing = forest.score(&[f64::NAN, f64::NAN]).unwrap();
    assert!(all_missing > 0.0 && all_missing < 0.5, "all missing {all_missing}");

    // the missing side follows the sample: it differs between splits, and training rows
    // with NaN went where the split says (the partition and scoring agree)
    let sides: FxHashSet<u32> = forest
        .trees
        .iter()
        .flat_map(|tree| &tree.nodes)
        .filter(|node| node.code != LEAF)
        .map(|node| node.code & 1)
        .collect();
    assert_eq!(sides.len(), 2);
}

#[test]
fn infinite_values_are_extreme_values() {
    let (mut columns, _) = gaussian_cloud(7, 1000, 0);
    let largest_finite = columns[0].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    columns[0][10] = f64::INFINITY;
    columns[1][20] = f64::NEG_INFINITY;
    let forest = fit(IsolationForestParams::default(), &columns);
    let scores = batch_scores(&forest, &columns);
    assert!(scores.iter().all(|score| *score > 0.0 && *score <= 1.0));
    for row_idx in [10, 20] {
        let n_above = scores.iter().filter(|score| **score > scores[row_idx]).count();
        assert!(
            scores[row_idx] > 0.6 && n_above < 10,
            "row {row_idx}: {n_above} score higher"
        );
    }
    // beyond the largest finite value: isolated earlier in the trees that sampled it
    let at_largest_finite = forest.score(&[largest_finite, 0.0]).unwrap();
    let at_infinity = forest.score(&[f64::INFINITY, 0.0]).unwrap();
    assert!(at_infinity > at_largest_finite && at_infinity > 0.6);
    assert!(forest.score(&[-f64::MAX, f64::MAX]).unwrap() > 0.6);
}

#[test]
fn a_value_equal_to_a_threshold_goes_left_as_in_training() {
    // two adjacent floats: every threshold is the smaller one (the fallback when rounding
    // reaches the larger), so scoring must send it left exactly as the fit partition did
    let low = 1.0f64;
    let high = low.next_up();
    let mut column = vec![high; 100];
    column[0] = low;
    let forest = fit(IsolationForestParams::default(), &[column]);
    // `low` is isolated by the root split of every tree: h = 1
    let expected = (-1.0 / average_path_length(100)).exp2();
    assert_eq!(forest.score(&[low]).unwrap(), expected);
    assert!(forest.score(&[high]).unwrap() < 0.5);
}

#[test]
fn serde_round_trip_keeps_every_score() {
    let (mut columns, _) = gaussian_cloud(8, 1500, 15);
    columns[1][3] = f64::NAN;
    let forest = fit(IsolationForestParams::default(), &columns);
    let json = serde_json::to_string(&forest).unwrap();
    let loaded: IsolationForest = serde_json::from_str(&json).unwrap();
    assert_eq!(loaded, forest);
    assert_eq!(
        bits(&batch_scores(&loaded, &columns)),
        bits(&batch_scores(&forest, &columns))
    );
    assert_eq!(loaded.params(), forest.params());
}

#[test]
fn corrupt_models_are_rejected_when_read() {
    let (columns, _) = gaussian_cloud(9, 200, 2);
    let forest = fit(
        IsolationForestParams {
            n_trees: 3,
            sample_size: 16,
            ..IsolationForestParams::default()
        },
        &columns,
    );
    let good = serde_json::to_value(&forest).unwrap();
    let check = |edit: &dyn Fn(&mut serde_json::Value), expected: &str| {
        let mut json = good.clone();
        edit(&mut json);
        let error = serde_json::from_value::<IsolationForest>(json).unwrap_err().to_string();
        assert!(error.contains(expected), "{error:?} should contain {expected:?}");
    };
    check(
        &|json| json["trees"][0]["left"][0] = 0.into(),
        "children 0, 1 out of range",
    );
    check(
        &|json| json["trees"][1]["code"][0] = 4.into(),
        "feature 2 but 2 features",
    );
    check(
        &|json| {
            json["trees"][2]["value"]
                .as_array_mut()
                .unwrap()
                .pop()
                .map(drop)
                .unwrap()
        },
        "lengths",
    );
    check(
        &|json| json["trees"].as_array_mut().unwrap().pop().map(drop).unwrap(),
        "2 trees stored",
    );
    check(
        &|json| json["params"]["n_trees"] = 0.into(),
        "n_trees must be at least 1",
    );
    check(&|json| json["sample_size"] = 17.into(), "sample_size 17 not in 2..=16");
    check(&|json| json["extra"] = 1.into(), "unknown field");
    assert!(serde_json::from_value::<IsolationForest>(good).is_ok());
}

#[test]
fn params_are_checked() {
    let check = |params: IsolationForestParams, expected: Result<(), IsolationForestError>| {
        assert_eq!(params.check().map(|_| ()), expected, "{params:?}");
    };
    let default = IsolationForestParams::default();
    check(default, Ok(()));
    check(
        IsolationForestParams {
            sample_size: 2,
            max_depth: Some(1),
            n_trees: 1,
            seed: u64::MAX,
        },
        Ok(()),
    );
    check(
        IsolationForestParams { n_trees: 0, ..default },
        Err(IsolationForestError::ZeroTrees),
    );
    for sample_size in [0, 1, MAX_SAMPLE_SIZE + 1] {
        check(
            IsolationForestParams { sample_size, ..default },
            Err(IsolationForestError::SampleSizeOutOfRange { sample_size }),
        );
    }
    check(
        IsolationForestParams {
            max_depth: Some(0),
            ..default
        },
        Err(IsolationForestError::ZeroMaxDepth),
    );
    // config files: defaults fill in, unknown keys are refused
    let parsed: IsolationForestParams = serde_json::from_str(r#"{"n_trees": 50}"#).unwrap();
    assert_eq!(parsed, IsolationForestParams { n_trees: 50, ..default });
    assert!(serde_json::from_str::<IsolationForestParams>(r#"{"trees": 50}"#).is_err());
}

#[test]
fn badly_shaped_data_is_rejected() {
    let params = IsolationForestParams::default().check().unwrap();
    let check = |columns: &[Vec<f64>], expected: IsolationForestError| {
        assert_eq!(params.fit(columns).unwrap_err(), expected);
    };
    check(&[], IsolationForestError::NoFeatures);
    check(
        &[vec![1.0, 2.0, 3.0], vec![1.0, 2.0]],
        IsolationForestError::RaggedColumns {
            feature: 1,
            n_rows: 2,
            expected: 3,
        },
    );
    check(&[vec![1.0], vec![2.0]], IsolationForestError::TooFewRows { n_rows: 1 });
    check(&[vec![]], IsolationForestError::TooFewRows { n_rows: 0 });
    assert!(params.fit(&[vec![1.0, 2.0]]).is_ok());
}

#[test]
fn scoring_checks_shapes() {
    let (columns, _) = gaussian_cloud(10, 100, 0);
    let forest = fit(IsolationForestParams::default(), &columns);
    assert_eq!(
        forest.score(&[1.0]),
        Err(IsolationForestError::RowLength { expected: 2, found: 1 })
    );
    assert_eq!(
        forest.score_batch(&[1.0, 2.0, 3.0], &mut [0.0]),
        Err(IsolationForestError::BatchShape { len: 3, n_features: 2 })
    );
    assert_eq!(
        forest.score_batch(&[1.0, 2.0, 3.0, 4.0], &mut [0.0; 3]),
        Err(IsolationForestError::OutputLength { expected: 2, found: 3 })
    );
    assert_eq!(forest.score_batch(&[], &mut []), Ok(()));
}

#[test]
fn depth_and_sample_size_follow_the_data() {
    let (columns, _) = gaussian_cloud(11, 1000, 0);
    let forest = fit(IsolationForestParams::default(), &columns);
    assert_eq!(
        (forest.sample_size(), forest.max_depth(), forest.n_features()),
        (256, 8, 2)
    );
    assert_eq!(forest.n_trees(), 200);
    let small: Vec<Vec<f64>> = columns.iter().map(|column| column[..100].to_vec()).collect();
    let forest = fit(IsolationForestParams::default(), &small);
    assert_eq!((forest.sample_size(), forest.max_depth()), (100, 7));
    // a leaf at depth d of a tree with n nodes: no node lies deeper than max_depth
    let forest = fit(
        IsolationForestParams {
            max_depth: Some(3),
            ..IsolationForestParams::default()
        },
        &columns,
    );
    for tree in &forest.trees {
        let mut depth = vec![0usize; tree.nodes.len()];
        for (node_idx, node) in tree.nodes.iter().enumerate() {
            if node.code != LEAF {
                depth[node.left as usize] = depth[node_idx] + 1;
                depth[node.left as usize + 1] = depth[node_idx] + 1;
            }
        }
        assert!(depth.iter().all(|&d| d <= 3));
    }
}

#[test]
fn samples_are_distinct_rows() {
    let mut rng = Rng::new(0, 0);
    for (n_rows, sample_size) in [(10, 10), (1000, 256), (300, 299), (2, 2)] {
        let rows = sample_rows(&mut rng, n_rows, sample_size);
        let distinct: FxHashSet<usize> = rows.iter().copied().collect();
        assert_eq!((rows.len(), distinct.len()), (sample_size, sample_size));
        assert!(rows.iter().all(|&row_idx| row_idx < n_rows));
    }
}

#[test]
fn average_path_length_matches_its_definition() {
    assert_eq!(average_path_length(0), 0.0);
    assert_eq!(average_path_length(1), 0.0);
    assert_eq!(average_path_length(2), 1.0);
    for n in [3usize, 10, 64, 65, 66, 100, 256, 1000, 100_000] {
        let harmonic_sum: f64 = (1..n).rev().map(|k| 1.0 / k as f64).sum();
        let expected = 2.0 * harmonic_sum - 2.0 * (n - 1) as f64 / n as f64;
        let relative_error = (average_path_length(n) - expected).abs() / expected;
        assert!(
            relative_error < 1e-13,
            "c({n}): {} vs {expected}",
            average_path_length(n)
        );
    }
    assert_eq!(ceil_log2(2), 1);
    assert_eq!(ceil_log2(3), 2);
    assert_eq!(ceil_log2(256), 8);
    assert_eq!(ceil_log2(257), 9);
}

fn cell() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => -100.0..100.0f64,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(0.0),
        1 => Just(f64::MAX),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the data, params and query, a score is in (0, 1].
    #[test]
    fn scores_are_in_the_unit_interval(
        (n_features, cells) in (1usize..4).prop_flat_map(|n_features| {
            (Just(n_features), proptest::collection::vec(cell(), n_features * 2..n_features * 40))
        }),
        query in proptest::collection::vec(cell(), 4),
        n_trees in 1usize..8,
        sample_size in 2usize..64,
        max_depth in proptest::option::of(1usize..12),
        seed in any::<u64>(),
    ) {
        let n_rows = cells.len() / n_features;
        let columns: Vec<Vec<f64>> = (0..n_features)
            .map(|feature| (0..n_rows).map(|row_idx| cells[row_idx * n_features + feature]).collect())
            .collect();
        let params = IsolationForestParams { n_trees, sample_size, max_depth, seed };
        let forest = params.check().unwrap().fit(&columns).unwrap();
        let mut scores = vec![0.0; n_rows];
        forest.score_batch(&row_major(&columns), &mut scores).unwrap();
        scores.push(forest.score(&query[..n_features]).unwrap());
        for score in scores {
            prop_assert!(score > 0.0 && score <= 1.0, "score {}", score);
        }
    }
}
