//! `fraudlens import`: a LightGBM text, XGBoost JSON or ONNX model trained in
//! Python becomes a fraudlens model directory, so `fraudlens score` and
//! `serve` can use it. The imported model reads a tabular file whose columns
//! carry the model's feature names; its probabilities are the library's own
//! (no calibration) and its thresholds are given here. An ONNX model's
//! reasons come from occlusion by the medians of `--reference` rows.

use std::path::Path;

use anyhow::Context as _;
use fraudlens_core::tabular::{ColumnKind, TabularEncoding, TabularFeature};
use fraudlens_ingest::TabularReader;
use fraudlens_model::artifact::Artifact;
use fraudlens_model::interop::{Imported, import_lightgbm_text, import_xgboost_json};
use fraudlens_model::threshold::Thresholds;

use crate::cli::ImportArgs;
use crate::exit::{Classify, CliResult, Failure};

/// Runs `fraudlens import`.
pub fn run(args: ImportArgs) -> CliResult {
    let thresholds = thresholds(&args)?;
    if let Some(path) = &args.onnx {
        return import_onnx(&args, path, thresholds);
    }
    if args.features.is_some() {
        return Err(Failure::Usage(anyhow::anyhow!(
            "--features names an ONNX model's inputs (LightGBM and XGBoost models carry their names)"
        )));
    }
    let (path, format) = match (&args.lightgbm, &args.xgboost) {
        (Some(path), None) => (path, "lightgbm"),
        (None, Some(path)) => (path, "xgboost"),
        _ => {
            return Err(Failure::Usage(anyhow::anyhow!(
                "give one of --lightgbm FILE, --xgboost FILE or --onnx FILE"
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
    print_thresholds(&args);
    Ok(())
}

fn thresholds(args: &ImportArgs) -> CliResult<Thresholds> {
    let in_unit = |p: f64| (0.0..=1.0).contains(&p);
    if !in_unit(args.review_threshold) || !args.decline_threshold.is_none_or(in_unit) {
        return Err(Failure::Usage(anyhow::anyhow!(
            "thresholds are probabilities, between 0 and 1"
        )));
    }
    Thresholds::new(args.review_threshold, args.decline_threshold)
        .context("thresholds")
        .usage()
}

fn print_thresholds(args: &ImportArgs) {
    eprintln!(
        "thresholds: review ≥ {}, decline ≥ {} (probabilities are the library's own, uncalibrated)",
        args.review_threshold,
        args.decline_threshold
            .map_or_else(|| "never".to_owned(), |d| d.to_string())
    );
}

/// `import --onnx`: the model checked by running it, its feature names, the reference medians.
fn import_onnx(args: &ImportArgs, path: &Path, thresholds: Thresholds) -> CliResult {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let features_path = args.features.as_deref().ok_or_else(|| {
        Failure::Usage(anyhow::anyhow!(
            "--onnx needs --features FILE (a JSON list of input names)"
        ))
    })?;
    let names: Vec<String> = serde_json::from_slice(
        &std::fs::read(features_path).with_context(|| format!("reading {}", features_path.display()))?,
    )
    .map_err(|error| {
        anyhow::anyhow!(
            "{}: expected a JSON list of feature names: {error}",
            features_path.display()
        )
    })
    .data()?;
    check_names(&names)
        .map_err(|reason| anyhow::anyhow!("{}: {reason}", features_path.display()))
        .data()?;
    let medians = match &args.reference {
        Some(reference) => medians(reference, &names)?,
        None => {
            eprintln!("warning: no --reference rows: the model's decisions will carry no reasons");
            vec![None; names.len()]
        }
    };
    let n_features = names.len();
    let artifact = Artifact::onnx(
        &bytes,
        names,
        args.onnx_output.as_deref(),
        medians,
        path.display().to_string(),
        thresholds,
        fraudlens_pipeline::now(),
    )
    .with_context(|| format!("importing {}", path.display()))
    .data()?;
    artifact
        .save(&args.out, None)
        .with_context(|| format!("writing the model to {}", args.out.display()))?;
    let output = artifact.manifest.onnx.as_ref().map_or("", |onnx| onnx.output.as_str());
    eprintln!(
        "imported the ONNX model {} ({n_features} features, output {output:?}) into {}",
        path.display(),
        args.out.display()
    );
    print_thresholds(args);
    Ok(())
}

fn check_names(names: &[String]) -> Result<(), String> {
    if names.is_empty() {
        return Err("no feature names".to_owned());
    }
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if name.trim().is_empty() {
            return Err("a blank feature name".to_owned());
        }
        if !seen.insert(name) {
            return Err(format!("feature {name:?} is named twice"));
        }
    }
    Ok(())
}

/// Per feature, the median of its finite values in the `reference` CSV
/// (`None` when the column is absent or has none).
fn medians(reference: &Path, names: &[String]) -> CliResult<Vec<Option<f64>>> {
    let encoding = TabularEncoding {
        format_version: TabularEncoding::FORMAT_VERSION,
        label: None,
        features: names
            .iter()
            .map(|name| TabularFeature {
                name: name.clone(),
                kind: ColumnKind::Numeric,
            })
            .collect(),
        excluded: Vec::new(),
    };
    let mut reader = TabularReader::open(reference, &encoding, false, 5)?;
    let mut columns: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut row = Vec::new();
    while reader.next_row(&mut row)?.is_some() {
        for (column, value) in columns.iter_mut().zip(&row) {
            if value.is_finite() {
                column.push(*value);
            }
        }
    }
    let refused = reader.bad_rows().count();
    if refused > 0 {
        eprintln!(
            "warning: {refused} rows of {} were not numbers and are left out",
            reference.display()
        );
    }
    Ok(columns
        .into_iter()
        .map(|mut values| {
            if values.is_empty() {
                return None;
            }
            values.sort_by(f64::total_cmp);
            let mid = values.len() / 2;
            Some(if values.len() % 2 == 0 {
                (values[mid - 1] + values[mid]) / 2.0
            } else {
                values[mid]
            })
        })
        .collect())
}
