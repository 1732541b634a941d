use fraudlens_core::rng::Rng;

use super::grow::leaf_sums;
use super::histogram::{Cell, Scale};
use super::*;
use crate::tree::{Condition, Node, SplitNode};

/// Rows with a numeric signal, a noise column, a column whose missing
/// values mean fraud, and a categorical column whose codes 2, 5 and 7 mean fraud.
fn dataset(n_rows: usize, seed: u64) -> (Vec<f64>, Vec<bool>) {
    let mut rng = Rng::new(seed, 99);
    let mut values = Vec::with_capacity(n_rows * 4);
    let mut labels = Vec::with_capacity(n_rows);
    for _ in 0..n_rows {
        let signal = rng.range(-3.0, 3.0);
        let noise = rng.range(0.0, 1.0);
        let missing_means_fraud = rng.uniform() < 0.1;
        let code = rng.below(10) as f64;
        let score = signal
            + if missing_means_fraud { 2.5 } else { 0.0 }
            + if [2.0, 5.0, 7.0].contains(&code) { 2.0 } else { -1.0 };
        labels.push(rng.uniform() < crate::calibration::logistic(2.0 * score - 3.0));
        values.extend([
            signal,
            noise,
            if missing_means_fraud {
                f64::NAN
            } else {
                rng.range(0.0, 1.0)
            },
            code,
        ]);
    }
    (values, labels)
}

const KINDS: [FeatureKind; 4] = [
    FeatureKind::Numeric,
    FeatureKind::Numeric,
    FeatureKind::Numeric,
    FeatureKind::Categorical { n_codes: 10 },
];

fn fit(params: GbdtParams, values: &[f64], labels: &[bool], valid: Option<(&[f64], &[bool])>) -> Trained {
    let set = TrainSet {
        values,
        n_features: 4,
        labels,
        weights: None,
    };
    let valid = valid.map(|(values, labels)| TrainSet {
        values,
        n_features: 4,
        labels,
        weights: None,
    });
    train(&params.check().unwrap(), &KINDS, &set, valid.as_ref(), &mut |_| {}).unwrap()
}

fn accuracy(forest: &Forest, values: &[f64], labels: &[bool]) -> f64 {
    let correct = values
        .chunks(4)
        .zip(labels)
        .filter(|(row, label)| (forest.predict_raw(row).unwrap() > 0.0) == **label)
        .count();
    correct as f64 / labels.len() as f64
}

#[test]
fn learns_numeric_missing_and_categorical_signal() {
    let (values, labels) = dataset(20_000, 1);
    let (test_values, test_labels) = dataset(5_000, 2);
    let trained = fit(
        GbdtParams {
            n_trees: 100,
            ..GbdtParams::default()
        },
        &values,
        &labels,
        None,
    );
    // the Bayes rate of this data is about 0.84
    let accuracy = accuracy(&trained.forest, &test_values, &test_labels);
    assert!(accuracy > 0.80, "{accuracy}");
    let importance = &trained.gain_importance;
    assert!(
        importance[0] > importance[1] && importance[3] > importance[1],
        "{importance:?}"
    );
    let categorical_splits = trained
        .forest
        .trees()
        .iter()
        .flat_map(|tree| &tree.nodes)
        .filter(|node| {
            matches!(
                node,
                Node::Split(SplitNode {
                    condition: Condition::Categorical { .. },
                    ..
                })
            )
        })
        .count();
    assert!(categorical_splits > 0);
}

#[test]
fn missing_values_learn_their_direction() {
    // fraud exactly when feature 2 is missing: one split must send NaN the fraud way
    let (mut values, _) = dataset(4_000, 3);
    let labels: Vec<bool> = values.chunks(4).map(|row| row[2].is_nan()).collect();
    values.iter_mut().skip(3).step_by(4).for_each(|code| *code = 0.0);
    let trained = fit(
        GbdtParams {
            n_trees: 20,
            // every tree sees the feature, and the classes weigh the same
            subsample: 1.0,
            colsample_bytree: 1.0,
            scale_pos_weight: 1.0,
            ..GbdtParams::default()
        },
        &values,
        &labels,
        None,
    );
    assert_eq!(accuracy(&trained.forest, &values, &labels), 1.0);
    // 20 rounds at learning rate 0.1 bring the two groups to about 0.89 and 0.01
    assert!(trained.forest.predict_proba(&[0.0, 0.5, f64::NAN, 0.0]).unwrap() > 0.85);
    assert!(trained.forest.predict_proba(&[0.0, 0.5, 0.3, 0.0]).unwrap() < 0.02);
}

/// The scores the trainer keeps in bin space equal the flattened model's
/// predictions on raw values: thresholds reproduce the bins exactly.
#[test]
fn binned_training_scores_equal_forest_predictions() {
    let (values, labels) = dataset(10_000, 4);
    for growth in [Growth::LeafWise, Growth::DepthWise] {
        let trained = fit(
            GbdtParams {
                n_trees: 30,
                growth,
                early_stopping_rounds: 0,
                ..GbdtParams::default()
            },
            &values,
            &labels,
            Some((&values, &labels)),
        );
        let raw: Vec<f64> = values
            .chunks(4)
            .map(|row| trained.forest.predict_raw(row).unwrap())
            .collect();
        let from_forest = logloss(&raw, &labels);
        let from_training = trained.history.last().and_then(|round| round.valid_logloss).unwrap();
        assert!(
            (from_forest - from_training).abs() < 1e-12,
            "{from_forest} vs {from_training}"
        );
    }
}

#[test]
fn deterministic_for_a_seed_whatever_the_thread_count() {
    let (values, labels) = dataset(80_000, 5);
    let params = |threads, seed| GbdtParams {
        n_trees: 10,
        subsample: 0.7,
        colsample_bytree: 0.5,
        threads,
        seed,
        ..GbdtParams::default()
    };
    let one = fit(params(1, 7), &values, &labels, None).forest;
    let two = fit(params(2, 7), &values, &labels, None).forest;
    let three = fit(params(3, 7), &values, &labels, None).forest;
    assert_eq!(one, two);
    assert_eq!(one, three);
    let other_seed = fit(params(2, 8), &values, &labels, None).forest;
    assert_ne!(one, other_seed);
}

#[test]
fn fixed_point_cells_sum_like_floats_and_count_exactly() {
    // weighted rows (large gradients) and nearly certain rows (tiny hessians)
    let mut rng = Rng::new(3, 0);
    let gradients: Vec<[f64; 2]> = (0..200_000)
        .map(|row| {
            let p = rng.uniform().powi(8);
            let w = if row % 97 == 0 { 250.0 } else { 1.0 };
            let y = if row % 3 == 0 { 1.0 } else { 0.0 };
            [w * (p - y), (w * p * (1.0 - p)).max(MIN_HESSIAN)]
        })
        .collect();
    let scale = Scale::new(&gradients);
    let mut total = Cell::default();
    let mut part = Cell::default();
    for (row, &gh) in gradients.iter().enumerate() {
        total.add(&scale.cell(gh));
        if row % 5 == 0 {
            part.add(&scale.cell(gh));
        }
    }
    let exact = leaf_sums(&(0..gradients.len() as u32).collect::<Vec<_>>(), &gradients);
    let sums = scale.sums(&total);
    assert_eq!(sums.n, 200_000);
    assert!(
        (sums.g - exact.g).abs() <= 1e-9 * exact.g.abs(),
        "{} vs {}",
        sums.g,
        exact.g
    );
    assert!((sums.h - exact.h).abs() <= 1e-9 * exact.h, "{} vs {}", sums.h, exact.h);
    // subtraction is exact: the rest plus the part gives the total back
    let rest = total.minus(&part);
    assert_eq!(scale.count(&rest), 160_000);
    let mut back = rest;
    back.add(&part);
    assert_eq!(back, total);
}

#[test]
fn growth_limits_hold() {
    let (values, labels) = dataset(20_000, 6);
    let leaf_wise = fit(
        GbdtParams {
            n_trees: 5,
            num_leaves: 7,
            min_data_in_leaf: 1,
            ..GbdtParams::default()
        },
        &values,
        &labels,
        None,
    );
    assert!(leaf_wise.forest.trees().iter().all(|tree| tree.n_leaves() <= 7));
    assert!(leaf_wise.forest.trees().iter().any(|tree| tree.n_leaves() == 7));
    let depth_wise = fit(
        GbdtParams {
            n_trees: 5,
            growth: Growth::DepthWise,
            max_depth: 3,
            min_data_in_leaf: 1,
            ..GbdtParams::default()
        },
        &values,
        &labels,
        None,
    );
    assert!(depth_wise.forest.trees().iter().all(|tree| tree.depth() <= 3));
    assert!(depth_wise.forest.trees().iter().any(|tree| tree.n_leaves() == 8));
}

#[test]
fn early_stopping_keeps_the_best_round() {
    let (values, _) = dataset(5_000, 7);
    let mut rng = Rng::new(1, 1);
    let noise: Vec<bool> = (0..5_000).map(|_| rng.uniform() < 0.3).collect();
    let (valid_values, _) = dataset(2_000, 8);
    let valid_noise: Vec<bool> = (0..2_000).map(|_| rng.uniform() < 0.3).collect();
    let trained = fit(
        GbdtParams {
            n_trees: 500,
            early_stopping_rounds: 10,
            ..GbdtParams::default()
        },
        &values,
        &noise,
        Some((&valid_values, &valid_noise)),
    );
    assert!(trained.history.len() < 100, "{}", trained.history.len());
    assert_eq!(trained.forest.n_trees(), trained.best_round);
    // importance describes the kept trees only
    let kept: f64 = trained
        .forest
        .trees()
        .iter()
        .flat_map(|tree| &tree.nodes)
        .map(|node| if let Node::Split(split) = node { split.gain } else { 0.0 })
        .sum();
    assert!((trained.gain_importance.iter().sum::<f64>() - kept).abs() < 1e-9 * kept.max(1.0));
    let best = trained.history[trained.best_round - 1].valid_logloss.unwrap();
    assert!(trained.history.iter().all(|round| round.valid_logloss.unwrap() >= best));
}

#[test]
fn class_weight_raises_fraud_probabilities() {
    let (values, labels) = dataset(5_000, 9);
    let mean = |params: GbdtParams| {
        let forest = fit(params, &values, &labels, None).forest;
        values
            .chunks(4)
            .map(|row| forest.predict_proba(row).unwrap())
            .sum::<f64>()
            / labels.len() as f64
    };
    let plain = mean(GbdtParams {
        n_trees: 20,
        ..GbdtParams::default()
    });
    let weighted = mean(GbdtParams {
        n_trees: 20,
        scale_pos_weight: 5.0,
        ..GbdtParams::default()
    });
    assert!(weighted > plain + 0.05, "{plain} {weighted}");
}

#[test]
fn bad_parameters_and_data_are_refused() {
    for params in [
        GbdtParams {
            learning_rate: 0.0,
            ..GbdtParams::default()
        },
        GbdtParams {
            max_bin: 256,
            ..GbdtParams::default()
        },
        GbdtParams {
            subsample: 1.5,
            ..GbdtParams::default()
        },
    ] {
        assert!(matches!(params.check(), Err(ModelError::InvalidParameter(_))));
    }
    let params = GbdtParams::default().check().unwrap();
    let set = TrainSet {
        values: &[1.0, 2.0, 3.0],
        n_features: 4,
        labels: &[true],
        weights: None,
    };
    assert!(matches!(
        train(&params, &KINDS, &set, None, &mut |_| {}),
        Err(ModelError::InvalidData(_))
    ));
    let no_features = TrainSet {
        values: &[],
        n_features: 0,
        labels: &[true, false],
        weights: None,
    };
    assert!(matches!(
        train(&params, &[], &no_features, None, &mut |_| {}),
        Err(ModelError::InvalidData(_))
    ));
}
