//! `import_lightgbm_text(export_lightgbm_text(forest))` scores like `forest`.

use fraudlens_model::interop::{export_lightgbm_text, import_lightgbm_text};
use fraudlens_model::{Forest, InputPrecision};

use super::random::{N_FEATURES, random_forest, random_rows, trained_forest};

fn names() -> Vec<String> {
    (0..N_FEATURES).map(|idx| format!("feature {idx}")).collect()
}

/// Same raw scores exactly; contributions within `contrib_tolerance` (covers
/// that are not integers are rounded to LightGBM's integer counts).
fn assert_same_scores(forest: &Forest, seed: u64, contrib_tolerance: f64) -> Forest {
    let imported = import_lightgbm_text(&export_lightgbm_text(forest, &names())).unwrap();
    assert_eq!(imported.feature_names[3], "feature_3");
    let back = imported.forest;
    let (mut phi, mut phi_back) = (Vec::new(), Vec::new());
    for row in random_rows(seed, 500) {
        assert_eq!(
            back.predict_raw(&row).unwrap(),
            forest.predict_raw(&row).unwrap(),
            "{row:?}"
        );
        let expected = forest.contributions(&row, &mut phi).unwrap();
        let expected_back = back.contributions(&row, &mut phi_back).unwrap();
        assert!(
            (expected - expected_back).abs() <= contrib_tolerance,
            "{expected} {expected_back}"
        );
        for (ours, back) in phi.iter().zip(&phi_back) {
            assert!(
                (ours - back).abs() <= contrib_tolerance,
                "{row:?}: {phi:?} vs {phi_back:?}"
            );
        }
    }
    back
}

/// Integer covers and no rule that needs a guard: the very same forest comes back.
#[test]
fn lightgbm_like_forests_come_back_unchanged() {
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/interop/lightgbm.txt"
    ))
    .unwrap();
    let forest = import_lightgbm_text(&fixture).unwrap().forest;
    let back = assert_same_scores(&forest, 1, 1e-12);
    assert_eq!(back, forest);
}

/// Every rule (guards, fractional covers, f32 inputs) keeps scores and contributions.
#[test]
fn random_forests_keep_their_scores() {
    let n_nodes = |forest: &Forest| forest.trees().iter().map(|tree| tree.nodes.len()).sum::<usize>();
    for seed in 0..12 {
        let precision = if seed % 3 == 2 {
            InputPrecision::F32
        } else {
            InputPrecision::F64
        };
        let integral = seed % 2 == 0;
        let forest = random_forest(seed, 20, precision, integral);
        let back = assert_same_scores(&forest, seed + 100, if integral { 1e-12 } else { 1e-6 });
        // categorical splits whose missing values LightGBM sends elsewhere got guards
        assert!(n_nodes(&back) > n_nodes(&forest), "seed {seed}: no guard was needed");
    }
}

/// Exporting is deterministic, and a LightGBM model exported after import is
/// the same text as its first export.
#[test]
fn export_is_deterministic_and_stable() {
    let fixture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/interop/lightgbm.txt"
    ))
    .unwrap();
    let imported = import_lightgbm_text(&fixture).unwrap();
    let text = export_lightgbm_text(&imported.forest, &imported.feature_names);
    let random = random_forest(5, 10, InputPrecision::F64, false);
    assert!(export_lightgbm_text(&random, &names()) == export_lightgbm_text(&random, &names()));
    let again = import_lightgbm_text(&text).unwrap();
    assert!(export_lightgbm_text(&again.forest, &again.feature_names) == text);
}

/// A forest of our own trainer keeps its scores and contributions.
#[test]
fn trained_forests_keep_their_scores() {
    let forest = trained_forest(3, 15);
    assert!(forest.trees().iter().any(|tree| tree.nodes.iter().any(|node| matches!(
        node,
        fraudlens_model::tree::Node::Split(fraudlens_model::tree::SplitNode {
            condition: fraudlens_model::tree::Condition::Categorical { .. },
            ..
        })
    ))));
    assert_same_scores(&forest, 7, 1e-6);
}
