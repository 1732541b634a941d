//! Batch scoring of an imported XGBoost model on one thread, against
//! XGBoost's own `inplace_predict` with `nthread=1` (`bench/model_vs_peers.sh`).
//!
//! ```sh
//! cargo run --release -p fraudlens-model --example score_xgboost -- \
//!     --model XGB.json --dir MATRIX_DIR [--repeats 5] [--raw OUT.f64] \
//!     [--shap-rows 2000] [--contributions OUT.f64]
//! ```
//!
//! The model is read with `interop::import_xgboost_json`; the rows are the
//! test part of the matrix (row-major f64, as given to XGBoost). Scoring is
//! `Forest::predict_raw_batch` inside a rayon pool of one thread, so the
//! batch path (blocks of rows per tree) runs exactly as in production but on
//! one core. Import and reading the rows are not timed; each repeat scores
//! every row, and the median repeat is reported. Then the TreeSHAP
//! contributions of the first `--shap-rows` (2,000) rows are computed one row
//! at a time (XGBoost's `pred_contribs` is timed on the same rows) and
//! written with `--contributions OUT.f64` (per row: one value per feature,
//! then the expected value). One JSON line goes to stdout.

mod common;

use std::time::Instant;

use anyhow::Context as _;
use fraudlens_model::interop::import_xgboost_json;

fn main() -> anyhow::Result<()> {
    let flags = common::Flags::parse()?;
    let model_path = flags.path("model").context("--model XGB.json is required")?;
    let dir = flags.path("dir").context("--dir MATRIX_DIR is required")?;
    let repeats: usize = flags.get("repeats", 5)?;
    let json = std::fs::read_to_string(&model_path).with_context(|| format!("reading {}", model_path.display()))?;
    let imported = import_xgboost_json(&json)?;
    let forest = imported.forest;
    let test = common::Matrix::open(&dir)?.part("test")?;
    let n_rows = test.labels.len();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let mut raw = vec![0.0; n_rows];
    let mut seconds = Vec::with_capacity(repeats);
    pool.install(|| -> anyhow::Result<()> {
        for _ in 0..repeats.max(1) {
            let started = Instant::now();
            forest.predict_raw_batch(&test.values, &mut raw)?;
            seconds.push(started.elapsed().as_secs_f64());
        }
        Ok(())
    })?;
    // TreeSHAP of the first rows, one at a time (the reasons of a decision)
    let shap_rows: usize = flags.get("shap-rows", 2000)?.min(n_rows);
    let mut phi = Vec::new();
    let mut contributions = Vec::with_capacity(shap_rows * (forest.n_features() + 1));
    let started = Instant::now();
    for row in test.values.chunks_exact(forest.n_features()).take(shap_rows) {
        let expected = forest.contributions(row, &mut phi)?;
        contributions.extend_from_slice(&phi);
        contributions.push(expected);
    }
    let shap_seconds = started.elapsed().as_secs_f64();
    if let Some(path) = flags.path("contributions") {
        common::write_f64(&path, &contributions)?;
    }
    seconds.sort_by(f64::total_cmp);
    let median = seconds[seconds.len() / 2];
    if let Some(path) = flags.path("raw") {
        common::write_f64(&path, &raw)?;
    }
    let summary = serde_json::json!({
        "lib": "fraudlens",
        "source": imported.source,
        "trees": forest.n_trees(),
        "rows": n_rows,
        "seconds_median": median,
        "seconds_min": seconds[0],
        "rows_per_second": n_rows as f64 / median,
        "shap_rows": shap_rows,
        "shap_us_per_row": shap_seconds / shap_rows.max(1) as f64 * 1e6,
    });
    println!("{summary}");
    Ok(())
}
