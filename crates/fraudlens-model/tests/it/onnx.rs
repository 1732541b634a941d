//! ONNX models exported from scikit-learn (skl2onnx: a scaler and logistic
//! regression behind a ZipMap, a random forest) and written as PyTorch
//! exports them, run by tract, against onnxruntime's probabilities for the
//! same rows (`tests/fixtures/onnx`, made by `tests/parity/onnx_parity.py`;
//! `scripts/parity` also checks freshly generated, larger ones).

use std::path::{Path, PathBuf};

use fraudlens_model::onnx::OnnxModel;

/// onnxruntime and tract both compute in float32: they agree to about 1e-7.
pub const TOLERANCE: f64 = 1e-5;

pub const MODELS: [&str; 3] = ["sklearn_pipeline", "sklearn_forest", "torch_mlp"];

fn fixtures() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/onnx"))
}

fn read_rows(path: &Path) -> (usize, Vec<f64>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let n_features = lines.next().unwrap().split(',').count();
    let values: Vec<f64> = lines
        .flat_map(|line| {
            line.split(',')
                .map(|cell| cell.parse::<f64>().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    (n_features, values)
}

/// The largest difference from onnxruntime's probabilities over the rows of `name` in `dir`.
pub fn max_difference(dir: &Path, name: &str) -> f64 {
    let bytes = std::fs::read(dir.join(format!("{name}.onnx"))).unwrap();
    let (n_features, rows) = read_rows(&dir.join(format!("{name}.rows.csv")));
    let expected: Vec<f64> = std::fs::read_to_string(dir.join(format!("{name}.expected.csv")))
        .unwrap()
        .lines()
        .skip(1)
        .map(|line| line.parse().unwrap())
        .collect();
    let model = OnnxModel::load(&bytes, n_features, None).unwrap();
    let got = model.predict(&rows, expected.len()).unwrap();
    // one at a time gives the same as in a batch
    let one = model.predict(&rows[..n_features], 1).unwrap();
    assert_eq!(
        one[0].to_bits(),
        got[0].to_bits(),
        "{name}: batch and single row differ"
    );
    got.iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

#[test]
fn onnx_models_agree_with_onnxruntime() {
    for name in MODELS {
        let difference = max_difference(&fixtures(), name);
        eprintln!("{name}: max |tract - onnxruntime| = {difference:.2e}");
        assert!(difference <= TOLERANCE, "{name}: {difference}");
    }
}

#[test]
fn occlusion_gives_each_feature_its_change_of_the_log_odds() {
    let dir = fixtures();
    let bytes = std::fs::read(dir.join("sklearn_pipeline.onnx")).unwrap();
    let (n, rows) = read_rows(&dir.join("sklearn_pipeline.rows.csv"));
    let model = OnnxModel::load(&bytes, n, None).unwrap();
    let medians = rows[n..2 * n].to_vec(); // the fixture's second row is the training medians
    let row = &rows[5 * n..6 * n];
    let (p, contributions) = model.occlusion(row, &medians).unwrap();
    assert_eq!(contributions.len(), n);
    let logit = |p: f64| (p / (1.0 - p)).ln();
    for (idx, contribution) in contributions.iter().enumerate() {
        let mut occluded = row.to_vec();
        occluded[idx] = medians[idx];
        let q = model.predict(&occluded, 1).unwrap()[0];
        assert!((contribution - (logit(p) - logit(q))).abs() < 1e-9, "feature {idx}");
    }
    // a logistic regression is additive in the log-odds: occlusion sums to the change from the medians
    let at_medians = model.predict(&medians, 1).unwrap()[0];
    let total: f64 = contributions.iter().sum();
    assert!((total - (logit(p) - logit(at_medians))).abs() < 1e-3, "{total}");
}

#[test]
fn what_cannot_be_served_is_refused_with_the_reason() {
    let dir = fixtures();
    let bytes = std::fs::read(dir.join("torch_mlp.onnx")).unwrap();
    let error = OnnxModel::load(&bytes, 5, None).unwrap_err().to_string();
    assert!(error.contains("ONNX"), "{error}");
    let error = OnnxModel::load(b"not a model", 8, None).unwrap_err().to_string();
    assert!(error.contains("not an ONNX model"), "{error}");
    let error = OnnxModel::load(&bytes, 8, Some("logits")).unwrap_err().to_string();
    assert!(
        error.contains("no output \"logits\"") && error.contains("prob"),
        "{error}"
    );
    let model = OnnxModel::load(&bytes, 8, None).unwrap();
    let error = model.predict(&[1.0; 7], 1).unwrap_err().to_string();
    assert!(error.contains("7 values for 1 rows of 8 features"), "{error}");
}

/// `scripts/parity`: models freshly exported by the pinned scikit-learn,
/// skl2onnx and onnx, with 2,000 rows scored by the pinned onnxruntime
/// (`FRAUDLENS_ONNX_DIR`).
#[test]
#[ignore = "needs FRAUDLENS_ONNX_DIR from scripts/parity"]
fn live_onnx_parity_with_onnxruntime() {
    let dir = PathBuf::from(std::env::var("FRAUDLENS_ONNX_DIR").expect("FRAUDLENS_ONNX_DIR"));
    for name in MODELS {
        let difference = max_difference(&dir, name);
        println!("onnx parity {name}: max |tract - onnxruntime| = {difference:.2e} (tolerance {TOLERANCE:e})");
        assert!(difference <= TOLERANCE, "{name}: {difference}");
    }
}

#[test]
fn a_missing_value_is_refused_not_guessed() {
    let dir = fixtures();
    for name in MODELS {
        let bytes = std::fs::read(dir.join(format!("{name}.onnx"))).unwrap();
        let model = OnnxModel::load(&bytes, 8, None).unwrap();
        let mut row = vec![1.0; 8];
        row[6] = f64::NAN;
        let error = model.predict(&row, 1).unwrap_err().to_string();
        assert!(error.contains("input 6 is missing"), "{name}: {error}");
    }
}
