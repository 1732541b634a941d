//! Our scores and contributions of imported models against the libraries' own.
//!
//! `tests/fixtures/interop/` holds small models trained by
//! `tests/parity/parity.py` with the pinned LightGBM and XGBoost, rows to
//! score and the libraries' raw scores, probabilities and contributions for
//! them: every `cargo test` checks the importers against real outputs.
//! `scripts/parity` trains larger models into a fresh directory, runs
//! [`live_parity_with_python`] on it (`FRAUDLENS_PARITY_DIR`), which also
//! writes LightGBM exports of our forests, and has LightGBM score those.

use std::fs;
use std::path::{Path, PathBuf};

use fraudlens_model::Forest;
use fraudlens_model::InputPrecision;
use fraudlens_model::interop::{Imported, export_lightgbm_text, import_lightgbm_text, import_xgboost_json};
use fraudlens_model::tree::ZERO_THRESHOLD;
use serde_json::{Value, json};

use super::random::{random_forest, random_rows, trained_forest};

/// Largest allowed differences, per format: LightGBM computes in `f64` like
/// us; XGBoost sums leaves and contributions in `f32`.
struct Tolerance {
    raw: f64,
    proba: f64,
    contrib: f64,
}

const LIGHTGBM: Tolerance = Tolerance {
    raw: 1e-9,
    proba: 1e-9,
    contrib: 1e-9,
};
const XGBOOST: Tolerance = Tolerance {
    raw: 1e-5,
    proba: 1e-6,
    contrib: 1e-5,
};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/interop")
}

/// A model listed in a parity directory's `manifest.json`.
struct Case {
    name: String,
    imported: Imported,
    /// LightGBM's `raw_score` and `pred_contrib` of a random forest are sums
    /// over trees, ours means: theirs are ours times this.
    sum_scale: f64,
}

fn cases(dir: &Path) -> Vec<Case> {
    let manifest: Value = serde_json::from_str(&fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    manifest["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|model| {
            let text = fs::read_to_string(dir.join(model["file"].as_str().unwrap())).unwrap();
            let imported = match model["format"].as_str().unwrap() {
                "lightgbm" => import_lightgbm_text(&text).unwrap(),
                "xgboost" => import_xgboost_json(&text).unwrap(),
                other => panic!("unknown format {other}"),
            };
            Case {
                name: model["name"].as_str().unwrap().to_owned(),
                imported,
                sum_scale: model["sum_scale"].as_f64().unwrap(),
            }
        })
        .collect()
}

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<f64>>) {
    let text = fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let mut lines = text.lines();
    let header = lines.next().unwrap().split(',').map(str::to_owned).collect();
    let rows = lines
        .map(|line| line.split(',').map(|value| value.parse::<f64>().unwrap()).collect())
        .collect();
    (header, rows)
}

fn write_csv(path: &Path, header: &[String], rows: &[Vec<f64>]) {
    let mut text = header.join(",") + "\n";
    for row in rows {
        text += &row.iter().map(|x| format!("{x:?}")).collect::<Vec<_>>().join(",");
        text += "\n";
    }
    fs::write(path, text).unwrap();
}

/// Our raw score, probability, contributions and expected value of each row,
/// laid out like the `*_expected.csv` files.
fn our_outputs(forest: &Forest, rows: &[Vec<f64>]) -> Vec<Vec<f64>> {
    rows.iter()
        .map(|row| {
            let mut phi = Vec::new();
            let expected = forest.contributions(row, &mut phi).unwrap();
            let mut out = vec![forest.predict_raw(row).unwrap(), forest.predict_proba(row).unwrap()];
            out.extend(phi);
            out.push(expected);
            out
        })
        .collect()
}

/// Checks one model's outputs against the library's; returns the max abs
/// differences (raw, proba, contributions) for the report.
fn check_case(dir: &Path, case: &Case) -> [f64; 3] {
    let forest = &case.imported.forest;
    let (names, rows) = read_csv(&dir.join(format!("{}_rows.csv", case.name)));
    assert_eq!(names, case.imported.feature_names, "{}: feature names", case.name);
    let (_, expected) = read_csv(&dir.join(format!("{}_expected.csv", case.name)));
    assert_eq!(rows.len(), expected.len());
    let tolerance = if case.imported.source.starts_with("lightgbm") {
        LIGHTGBM
    } else {
        XGBOOST
    };
    let ours = our_outputs(forest, &rows);
    let mut max = [0f64; 3];
    for (row_idx, (ours, theirs)) in ours.iter().zip(&expected).enumerate() {
        let diffs = [
            (ours[0] * case.sum_scale - theirs[0]).abs(),
            (ours[1] - theirs[1]).abs(),
            ours[2..]
                .iter()
                .zip(&theirs[2..])
                .map(|(ours, theirs)| (ours * case.sum_scale - theirs).abs())
                .fold(0.0, f64::max),
        ];
        let context = || {
            format!(
                "{} row {row_idx} {:?}: ours {ours:?} theirs {theirs:?}",
                case.name, rows[row_idx]
            )
        };
        assert!(
            diffs[0] <= tolerance.raw,
            "raw score differs by {}: {}",
            diffs[0],
            context()
        );
        assert!(
            diffs[1] <= tolerance.proba,
            "probability differs by {}: {}",
            diffs[1],
            context()
        );
        assert!(
            diffs[2] <= tolerance.contrib,
            "contributions differ by {}: {}",
            diffs[2],
            context()
        );
        for (max, diff) in max.iter_mut().zip(diffs) {
            *max = max.max(diff);
        }
    }
    println!(
        "{:<18} {:<26} {:>4} trees {:>4} rows: max abs diff raw {:.2e}, proba {:.2e}, contrib {:.2e}",
        case.name,
        case.imported.source,
        forest.n_trees(),
        rows.len(),
        max[0],
        max[1],
        max[2]
    );
    max
}

/// Every committed fixture model scores like the library that trained it.
#[test]
fn imports_match_library_outputs_on_fixtures() {
    let dir = fixtures_dir();
    let cases = cases(&dir);
    let names: Vec<&str> = cases.iter().map(|case| case.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "lightgbm",
            "lightgbm_zero",
            "lightgbm_rf",
            "xgboost",
            "xgboost_logitraw",
            "xgboost_forest"
        ]
    );
    for case in &cases {
        check_case(&dir, case);
    }
}

/// The fixtures exercise what the importers convert: every missing rule,
/// categorical splits, XGBoost's f32 inputs.
#[test]
fn fixtures_cover_the_conversions() {
    use fraudlens_model::tree::{Condition, Missing, Node};
    let cases = cases(&fixtures_dir());
    let splits = |name: &str| {
        let case = cases.iter().find(|case| case.name == name).unwrap();
        case.imported
            .forest
            .trees()
            .iter()
            .flat_map(|tree| tree.nodes.clone())
            .filter_map(|node| match node {
                Node::Split(split) => Some(split),
                Node::Leaf { .. } => None,
            })
            .collect::<Vec<_>>()
    };
    let lightgbm = [splits("lightgbm"), splits("lightgbm_zero")].concat();
    for missing in [Missing::NaN, Missing::Zero, Missing::AsZero] {
        assert!(lightgbm.iter().any(|split| split.missing == missing), "{missing:?}");
    }
    for splits in [lightgbm, splits("xgboost")] {
        assert!(
            splits
                .iter()
                .any(|split| matches!(split.condition, Condition::Categorical { .. }))
        );
        assert!(splits.iter().any(|split| split.default_left) && splits.iter().any(|split| !split.default_left));
    }
    let xgboost = cases.iter().find(|case| case.name == "xgboost").unwrap();
    assert_eq!(xgboost.imported.forest.data().input_precision, InputPrecision::F32);
}

/// The live check: `scripts/parity` sets `FRAUDLENS_PARITY_DIR` to a directory
/// of freshly trained models. Checks them like the fixtures, then writes
/// LightGBM exports of them and of random forests (with our outputs) for the
/// script to score with LightGBM.
#[test]
#[ignore = "needs freshly trained LightGBM/XGBoost models: run by scripts/parity, which sets FRAUDLENS_PARITY_DIR"]
fn live_parity_with_python() {
    let dir = std::env::var_os("FRAUDLENS_PARITY_DIR")
        .map(PathBuf::from)
        .expect("FRAUDLENS_PARITY_DIR is unset: run scripts/parity, which trains fresh models with the pinned LightGBM/XGBoost (the committed fixtures are checked by imports_match_library_outputs_on_fixtures)");
    println!("live parity check in {}", dir.display());
    let mut exports = Vec::new();
    for case in cases(&dir) {
        check_case(&dir, &case);
        let (names, rows) = read_csv(&dir.join(format!("{}_rows.csv", case.name)));
        exports.push(write_export(
            &dir,
            &format!("export_{}", case.name),
            &case.imported.forest,
            &names,
            &rows,
        ));
    }
    let names: Vec<String> = (0..super::random::N_FEATURES).map(|idx| format!("x{idx}")).collect();
    for (name, precision, integral) in [
        ("export_random", InputPrecision::F64, true),
        ("export_random_fractional", InputPrecision::F64, false),
        ("export_random_f32", InputPrecision::F32, false),
    ] {
        let forest = random_forest(11, 60, precision, integral);
        exports.push(write_export(&dir, name, &forest, &names, &random_rows(12, 2000)));
    }
    // our trainer splits at 0.0; LightGBM reads values within 1e-35 of zero as 0 (see the lightgbm module docs)
    let mut rows = random_rows(14, 2000);
    for value in rows.iter_mut().flatten().filter(|value| value.abs() <= ZERO_THRESHOLD) {
        *value = 0.0;
    }
    exports.push(write_export(
        &dir,
        "export_trained",
        &trained_forest(13, 60),
        &names,
        &rows,
    ));
    let manifest = json!({ "exports": exports });
    fs::write(
        dir.join("exports.json"),
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();
}

/// Writes `forest` as LightGBM text with rows and our outputs, after checking
/// that importing the export scores the rows the same.
fn write_export(dir: &Path, name: &str, forest: &Forest, names: &[String], rows: &[Vec<f64>]) -> String {
    let text = export_lightgbm_text(forest, names);
    let reimported = import_lightgbm_text(&text).unwrap();
    for row in rows {
        assert_eq!(
            reimported.forest.predict_raw(row).unwrap(),
            forest.predict_raw(row).unwrap(),
            "{name}: {row:?}"
        );
    }
    fs::write(dir.join(format!("{name}.txt")), text).unwrap();
    write_csv(&dir.join(format!("{name}_rows.csv")), names, rows);
    let n_features = forest.n_features();
    let header: Vec<String> = ["raw".to_owned(), "proba".to_owned()]
        .into_iter()
        .chain((0..n_features).map(|idx| format!("contrib_{idx}")))
        .chain(["bias".to_owned()])
        .collect();
    write_csv(
        &dir.join(format!("{name}_expected.csv")),
        &header,
        &our_outputs(forest, rows),
    );
    name.to_owned()
}
