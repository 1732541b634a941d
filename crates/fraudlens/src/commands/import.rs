//! `fraudlens import`: a LightGBM text or XGBoost JSON model trained in
//! Python becomes a fraudlens model directory, so `fraudlens score` (and later
//! the server) can use it. The imported model reads a tabular file whose
//! columns carry the model's feature names; its probabilities are the
//! library's own (no calibration) and its thresholds are given here.

use anyhow::Context as _;
use fraudlens_model::artifact::Artifact;
use fraudlens_model::interop::{Imported, import_lightgbm_text, import_xgboost_json};
use fraudlens_model::threshold::Thresholds;

use crate::cli::ImportArgs;
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
    let (n_trees, n_features, source) = (
        imported.forest.n_trees(),
        imported.forest.n_features(),
        imported.source.clone(),
    );
    let artifact = Artifact::imported(
        imported,
        &bytes,
        format!("{} ({source})", path.display()),
        thresholds,
        fraudlens_pipeline::now(),
    )
    .context("building the model")?;
    artifact
        .save(&args.out, None)
        .with_context(|| format!("writing the model to {}", args.out.display()))?;
    eprintln!(
        "imported {n_trees} trees over {n_features} features from {} ({}) into {}",
        path.display(),
        source,
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
