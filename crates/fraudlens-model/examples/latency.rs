//! Single-row latency percentiles of `Forest::predict_raw` and of
//! `Forest::contributions` (TreeSHAP), each call timed on its own, which a
//! criterion mean cannot show (the goal is p99 ≤ 5 µs for scoring).
//!
//! ```sh
//! cargo run --release -p fraudlens-model --example latency -- \
//!     [--model FOREST.json --dir MATRIX_DIR] [--calls 200000] [--shap-calls 100000]
//! ```
//!
//! Without `--model`, the model is the criterion bench's: simulated
//! transactions (2,000 customers, 45 days) through the default feature
//! engine, fraudlens' trainer, depth-wise, max depth 6, 200 trees. With
//! `--model` (a forest saved by `train_matrix --model`), rows are the test
//! part of `--dir`. Rows are taken in turn from the whole set (not one row
//! again and again, which would train the branch predictor), on one thread,
//! after a warm-up of 10,000 calls. The timer's own cost (two `Instant::now`)
//! is measured and printed; it is included in the percentiles.

mod common;
#[path = "common/sim_model.rs"]
mod sim_model;

use std::hint::black_box;
use std::time::Instant;

use anyhow::Context as _;
use fraudlens_model::Forest;

const WARM_UP: usize = 10_000;

fn main() -> anyhow::Result<()> {
    let flags = common::Flags::parse()?;
    let calls: usize = flags.get("calls", 200_000)?;
    let shap_calls: usize = flags.get("shap-calls", 100_000)?;
    let (forest, rows, source) = match flags.path("model") {
        Some(path) => {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let forest: Forest = serde_json::from_str(&text).context("parsing the forest")?;
            let dir = flags
                .path("dir")
                .context("--model needs --dir MATRIX_DIR for the rows")?;
            let test = common::Matrix::open(&dir)?.part("test")?;
            (
                forest,
                test.values,
                format!("{} on the test rows of {}", path.display(), dir.display()),
            )
        }
        None => {
            let (forest, rows, _) = sim_model::depth6_model();
            (
                forest,
                rows,
                "trained on simulated rows (2,000 customers, 45 days)".to_owned(),
            )
        }
    };
    let n_features = forest.n_features();
    let rows: Vec<&[f64]> = rows.chunks_exact(n_features).collect();
    println!("model: {} — {source}", sim_model::describe(&forest));
    println!("rows: {} distinct, taken in turn", rows.len());

    let mut timer = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        timer.push(started.elapsed().as_nanos() as f64);
    }
    summarize("timer alone", timer);

    let mut nanos = Vec::with_capacity(calls);
    for idx in 0..WARM_UP + calls {
        let row = rows[idx % rows.len()];
        let started = Instant::now();
        black_box(forest.predict_raw(black_box(row))?);
        let elapsed = started.elapsed().as_nanos() as f64;
        if idx >= WARM_UP {
            nanos.push(elapsed);
        }
    }
    let predict = summarize("predict_raw", nanos);

    let mut phi = Vec::with_capacity(n_features);
    let mut nanos = Vec::with_capacity(shap_calls);
    for idx in 0..WARM_UP.min(shap_calls) + shap_calls {
        let row = rows[idx % rows.len()];
        let started = Instant::now();
        black_box(forest.contributions(black_box(row), &mut phi)?);
        let elapsed = started.elapsed().as_nanos() as f64;
        if idx >= WARM_UP.min(shap_calls) {
            nanos.push(elapsed);
        }
    }
    let shap = summarize("contributions (TreeSHAP)", nanos);
    let summary = serde_json::json!({ "predict_raw": predict, "contributions": shap });
    println!("{summary}");
    Ok(())
}

/// Prints and returns the percentiles (µs) of nanosecond timings.
fn summarize(what: &str, mut nanos: Vec<f64>) -> serde_json::Value {
    nanos.sort_by(f64::total_cmp);
    let us = |q: f64| common::quantile(&nanos, q) / 1000.0;
    let mean = nanos.iter().sum::<f64>() / nanos.len() as f64 / 1000.0;
    println!(
        "{what:26} {:>7} calls  mean {mean:8.3} µs  p50 {:8.3}  p99 {:8.3}  p99.9 {:8.3}  max {:9.3}",
        nanos.len(),
        us(0.5),
        us(0.99),
        us(0.999),
        us(1.0)
    );
    serde_json::json!({
        "calls": nanos.len(),
        "mean_us": mean,
        "p50_us": us(0.5),
        "p99_us": us(0.99),
        "p999_us": us(0.999),
        "max_us": us(1.0),
    })
}
