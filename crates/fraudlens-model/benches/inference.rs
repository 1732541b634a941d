//! Inference benchmarks on a model shaped like the scoring goal's: trained by
//! fraudlens on simulated transactions (2,000 customers, 45 days, default 57
//! features), depth-wise, max depth 6, 200 trees, no early stopping.
//!
//! - `predict_raw/single_row`: one row's raw score (rows taken in turn from
//!   4,096 distinct rows, so the branch predictor cannot learn one path);
//! - `contributions/single_row`: one row's TreeSHAP contributions (the reasons
//!   of a decision), the same rows;
//! - `predict_raw_batch/4096_rows_1_thread`: the batch path on one thread.
//!
//! Criterion reports means; `cargo run --release -p fraudlens-model --example
//! latency` gives the percentiles of individually timed calls.
//! Run: `cargo bench -p fraudlens-model --bench inference`.

// a failed unwrap in a benchmark's setup is a bug in the benchmark
#![allow(clippy::unwrap_used)]

#[path = "../examples/common/sim_model.rs"]
mod sim_model;

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const ROWS: usize = 4096;

fn inference(c: &mut Criterion) {
    let (forest, values, n_features) = sim_model::depth6_model();
    eprintln!("model: {}", sim_model::describe(&forest));
    // the last rows of the simulation: later than most training rows
    let rows: Vec<f64> = values[values.len() - ROWS * n_features..].to_vec();
    let row_slices: Vec<&[f64]> = rows.chunks_exact(n_features).collect();

    let mut next = 0usize;
    c.bench_function("predict_raw/single_row", |b| {
        b.iter(|| {
            next = (next + 1) % ROWS;
            black_box(forest.predict_raw(black_box(row_slices[next])).unwrap())
        })
    });

    let mut phi = Vec::with_capacity(n_features);
    c.bench_function("contributions/single_row", |b| {
        b.iter(|| {
            next = (next + 1) % ROWS;
            black_box(forest.contributions(black_box(row_slices[next]), &mut phi).unwrap())
        })
    });

    let mut group = c.benchmark_group("predict_raw_batch");
    group.throughput(Throughput::Elements(ROWS as u64));
    let mut out = vec![0.0; ROWS];
    // below the parallel threshold: the batch path runs on the calling thread
    group.bench_function("4096_rows_1_thread", |b| {
        b.iter(|| forest.predict_raw_batch(black_box(&rows), &mut out).unwrap())
    });
    group.finish();
}

criterion_group!(benches, inference);
criterion_main!(benches);
