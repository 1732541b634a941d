//! `fraudlens import`: a LightGBM text or XGBoost JSON model trained in
//! Python becomes a fraudlens model directory, so `fraudlens score` (and later
//! the server) can use it. The imported model reads a tabular file whose
//! columns carry the model's feature names; its probabilities are the
//! library's own (no calibration) and its thresholds are given here.

use anyhow::Context as _;
use fraudlens_core::tabular::{ColumnKind, TabularEncoding, TabularFeature};
use fraudlens_model::artifact::{Artifact, FORMAT_VERSION, Manifest, ModelKind, TrainingSummary, sha256_hex};
use fraudlens_model::calibration::Calibration;
use fraudlens_model::inputs::InputSpec;
use fraudlens_model::interop::{Imported, import_lightgbm_text, import_xgboost_json};
use fraudlens_model::threshold::Thresholds;
use fraudlens_model::train::{FeatureKind, GbdtParams};
use fraudlens_model::tree::Node;

use crate::cli::ImportArgs;
use crate::commands::train::now_rfc3339;
use crate::exit::{Classify, CliResult, Failure};

/// Runs `fraudlens import`.
pub fn run(args: ImportArgs) -> CliResult {
    let (path, format) = match (&args.lightgbm, &args.xgboost) {
        (Some(path), None) => (path, "lightgbm"),
        (None, Some(path)) => (path, "xgboost"),
        _ => {
            return Err(Failure::Usage(anyhow::anyhow!(
                "give one of --lightgbm FILE or --xgboost FILE"
            )));
        }
    };
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text = String::from_utf8(bytes.clone())
        .map_err(|_| anyhow::anyhow!("{}: not UTF-8 text", path.display()))
        .data()?;
    let imported: Imported = match format {
        "lightgbm" => import_lightgbm_text(&text),
        _ => import_xgboost_json(&text),
    }
    .with_context(|| format!("importing {}", path.display()))
    .data()?;
    let in_unit = |p: f64| (0.0..=1.0).contains(&p);
    if !in_unit(args.review_threshold) || !args.decline_threshold.is_none_or(in_unit) {
        return Err(Failure::Usage(anyhow::anyhow!(
            "thresholds are probabilities, between 0 and 1"
        )));
    }
    let thresholds = Thresholds::new(args.review_threshold, args.decline_threshold)
        .context("thresholds")
        .usage()?;
    let n_features = imported.forest.n_features();
    let features = imported
        .feature_names
        .iter()
        .map(|name| TabularFeature {
            name: name.clone(),
            kind: ColumnKind::Numeric,
        })
        .collect();
    let mut importance = vec![0.0; n_features];
    for tree in imported.forest.trees() {
        for node in &tree.nodes {
            if let Node::Split(split) = node {
                importance[split.feature as usize] += split.gain;
            }
        }
    }
    let mut gain_importance: Vec<(String, f64)> = imported.feature_names.iter().cloned().zip(importance).collect();
    gain_importance.sort_by(|a, b| b.1.total_cmp(&a.1));
    let digest = sha256_hex(&bytes);
    let n_trees = imported.forest.n_trees();
    let artifact = Artifact {
        manifest: Manifest {
            format_version: FORMAT_VERSION,
            fraudlens_version: env!("CARGO_PKG_VERSION").to_owned(),
            created_at: now_rfc3339(),
            model_id: format!("imported-{}", &digest[..12]),
            kind: ModelKind::Gbdt,
            inputs: InputSpec::Tabular {
                encoding: TabularEncoding {
                    format_version: TabularEncoding::FORMAT_VERSION,
                    label: None,
                    features,
                    excluded: Vec::new(),
                },
            },
            feature_names: imported.feature_names.clone(),
            feature_kinds: vec![FeatureKind::Numeric; n_features],
            params: GbdtParams {
                n_trees,
                ..GbdtParams::default()
            },
            calibration: Calibration::Identity,
            thresholds,
            threshold_choice: None,
            training: TrainingSummary {
                data_fingerprint: digest,
                data_source: format!("{} ({})", path.display(), imported.source),
                train_rows: 0,
                train_frauds: 0,
                valid_rows: 0,
                valid_frauds: 0,
                train_period: None,
                valid_period: None,
                best_round: n_trees,
                rounds: Vec::new(),
                brier_uncalibrated: None,
                train_seconds: 0.0,
            },
            validation: None,
            gain_importance,
            anomaly_input: false,
        },
        forest: Some(imported.forest),
        anomaly: None,
    };
    artifact
        .save(&args.out, None)
        .with_context(|| format!("writing the model to {}", args.out.display()))?;
    eprintln!(
        "imported {n_trees} trees over {n_features} features from {} ({}) into {}",
        path.display(),
        imported.source,
        args.out.display()
    );
    eprintln!(
        "thresholds: review ≥ {}, decline ≥ {} (probabilities are the library's own, uncalibrated)",
        args.review_threshold,
        args.decline_threshold
            .map_or_else(|| "never".to_owned(), |d| d.to_string())
    );
    Ok(())
}
