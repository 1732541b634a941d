//! Trains fraudlens' GBDT on the matrix of `bench/peers/prepare_matrix.py`
//! and reports what `bench/model_vs_peers.sh` compares with LightGBM and
//! XGBoost: training time, peak memory, trees kept, test predictions.
//!
//! ```sh
//! cargo run --release -p fraudlens-model --example train_matrix -- --dir MATRIX_DIR \
//!     [--growth leaf|depth] [--trees 300] [--num-leaves 31] [--max-depth 0] \
//!     [--learning-rate 0.1] [--min-data-in-leaf 20] [--min-child-weight 0.001] \
//!     [--lambda-l2 1] [--max-bin 255] [--threads 2] [--early-stopping 0] \
//!     [--no-categorical] [--predictions OUT.f64] [--model FOREST.json] [--label NAME]
//! ```
//!
//! The timer covers `train::train` only: binning (bin edges and the binned
//! copy of the rows) and boosting, plus the validation scores each round when
//! `--early-stopping N` (N > 0) gives the validation part to the trainer.
//! Reading the matrix is not timed. The peak RSS is that of training: the
//! high-water mark is reset just before `train` (the matrix already loaded
//! counts, as it does for the Python peers). One JSON line goes to stdout.

mod common;

use std::time::Instant;

use anyhow::Context as _;
use fraudlens_model::metrics::average_precision;
use fraudlens_model::train::{GbdtParams, Growth, TrainSet, train};

fn main() -> anyhow::Result<()> {
    let flags = common::Flags::parse()?;
    let dir = flags.path("dir").context("--dir MATRIX_DIR is required")?;
    let matrix = common::Matrix::open(&dir)?;
    let growth = match flags.get("growth", "leaf".to_owned())?.as_str() {
        "leaf" => Growth::LeafWise,
        "depth" => Growth::DepthWise,
        other => anyhow::bail!("--growth {other:?}: leaf or depth"),
    };
    let early_stopping: usize = flags.get("early-stopping", 0)?;
    let params = GbdtParams {
        n_trees: flags.get("trees", 300)?,
        learning_rate: flags.get("learning-rate", 0.1)?,
        growth,
        num_leaves: flags.get("num-leaves", 31)?,
        max_depth: flags.get("max-depth", 0)?,
        min_data_in_leaf: flags.get("min-data-in-leaf", 20)?,
        min_child_weight: flags.get("min-child-weight", 1e-3)?,
        lambda_l2: flags.get("lambda-l2", 1.0)?,
        max_bin: flags.get("max-bin", 255)?,
        threads: flags.get("threads", 2)?,
        early_stopping_rounds: early_stopping,
        ..GbdtParams::default()
    };
    let checked = params.clone().check()?;
    let kinds = matrix.kinds(!flags.has("no-categorical"));
    let n_features = matrix.n_features();
    let train_part = matrix.part("train")?;
    // the validation part is given to the trainer only for early stopping:
    // with it, fraudlens scores it every round (and keeps the best round)
    let valid_part = if early_stopping > 0 {
        Some(matrix.part("valid")?)
    } else {
        None
    };
    let test_part = matrix.part("test")?;
    let set = |part| train_set(part, n_features);
    let valid_set = valid_part.as_ref().map(set);

    common::reset_peak_rss();
    let rss_before = common::status_mib("VmRSS");
    let cpu_before = common::cpu_seconds();
    let started = Instant::now();
    let trained = train(&checked, &kinds, &set(&train_part), valid_set.as_ref(), &mut |_| {})?;
    let train_seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = common::cpu_seconds() - cpu_before;
    let peak_rss = common::status_mib("VmHWM");

    let mut raw = vec![0.0; test_part.labels.len()];
    trained.forest.predict_raw_batch(&test_part.values, &mut raw)?;
    if let Some(path) = flags.path("predictions") {
        common::write_f64(&path, &raw)?;
    }
    if let Some(path) = flags.path("model") {
        let json = serde_json::to_string(&trained.forest)?;
        std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    let summary = serde_json::json!({
        "lib": "fraudlens",
        "label": flags.get("label", "fraudlens".to_owned())?,
        "version": env!("CARGO_PKG_VERSION"),
        "train_seconds": train_seconds,
        "cpu_seconds": cpu_seconds,
        "trees": trained.forest.n_trees(),
        "rounds": trained.history.len(),
        "rss_before_mib": rss_before,
        "peak_rss_mib": peak_rss,
        "ap_fraudlens_metrics": average_precision(&raw, &test_part.labels),
        "params": params,
    });
    println!("{summary}");
    Ok(())
}

fn train_set(part: &common::Part, n_features: usize) -> TrainSet<'_> {
    TrainSet {
        values: &part.values,
        n_features,
        labels: &part.labels,
        weights: None,
    }
}
