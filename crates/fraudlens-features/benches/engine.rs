//! Feature engine benchmarks, default spec (simulator schema: customer and
//! terminal blocks, 57 features).
//!
//! - `observe/steady_state`: one transaction's update + feature vector (with
//!   labels fed back after the delay), on one engine running through an endless
//!   simulated stream after a 30-day warm-up (5,000 customers, 10,000 terminals;
//!   `FRAUDLENS_BENCH_CUSTOMERS` changes the customer count, terminals are twice that).
//! - `replay/10M`: offline replay of 10,000,000 simulated transactions
//!   (`FRAUDLENS_BENCH_EVENTS` changes the count), labels fed back after the delay.
//!
//! Bytes of state per active entity are printed once after warm-up.
//! Run: `cargo bench -p fraudlens-features --bench engine`.

// a failed unwrap in a benchmark's setup is a bug in the benchmark
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fraudlens_core::{Schema, SchemaConfig, Transaction};
use fraudlens_features::{FeatureEngine, FeatureSpec, FeatureSpecConfig, Replay};
use fraudlens_sim::{SimConfig, Simulator};

fn spec() -> Arc<FeatureSpec> {
    let schema = Schema::new(SchemaConfig::default(), None).unwrap();
    Arc::new(FeatureSpec::new(FeatureSpecConfig::default(), &schema).unwrap())
}

/// Simulated transactions, day by day, from 2026-01-01.
fn days(customers: u32, days: u32) -> impl Iterator<Item = Vec<Transaction>> {
    days_from(customers, days, 2026)
}

fn days_from(customers: u32, days: u32, year: u32) -> impl Iterator<Item = Vec<Transaction>> {
    let config = SimConfig {
        customers,
        terminals: customers * 2,
        days,
        start_date: format!("{year}-01-01"),
        ..SimConfig::default()
    };
    let currency = config.currency;
    Simulator::new(config)
        .unwrap()
        .map(move |day| day.iter().map(|r| r.to_transaction(currency)).collect())
}

fn observe(c: &mut Criterion) {
    let customers = env_number("FRAUDLENS_BENCH_CUSTOMERS", 5000) as u32;
    // one engine runs through an endless simulated stream: no reset between
    // samples, so state size, deque capacities and caches are those of a
    // long-running process; only the feature work is timed, not the simulation
    let mut stream = (0..).flat_map(|decade| days_from(customers, 3650, 2026 + 10 * decade));
    let mut replay = Replay::new(FeatureEngine::new(spec()));
    let mut out = Vec::new();
    for day in stream.by_ref().take(30) {
        for tx in &day {
            replay.push(tx, &mut out);
        }
    }
    let engine = replay.engine();
    eprintln!(
        "warm engine: {} entities, {} bytes of state, {:.0} bytes per entity, {} features",
        engine.n_entities(),
        engine.state_bytes(),
        engine.state_bytes() as f64 / engine.n_entities() as f64,
        out.len()
    );
    let mut day: Vec<Transaction> = Vec::new();
    let mut next = 0;
    let mut group = c.benchmark_group("observe");
    group.throughput(Throughput::Elements(1));
    group.bench_function("steady_state", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            let mut remaining = iters as usize;
            while remaining > 0 {
                if next == day.len() {
                    day = stream.next().unwrap();
                    next = 0;
                }
                let chunk = &day[next..(next + remaining).min(day.len())];
                let started = Instant::now();
                for tx in chunk {
                    replay.push(black_box(tx), &mut out);
                    black_box(&out);
                }
                timed += started.elapsed();
                next += chunk.len();
                remaining -= chunk.len();
            }
            timed
        });
    });
    group.finish();
}

fn replay(c: &mut Criterion) {
    let target = env_number("FRAUDLENS_BENCH_EVENTS", 10_000_000);
    // 50,000 customers make about 100,000 transactions a day
    let mut history: Vec<Transaction> = Vec::with_capacity(target);
    for day in days(50_000, 400) {
        history.extend(day);
        if history.len() >= target {
            break;
        }
    }
    history.truncate(target);
    let spec = spec();
    let mut group = c.benchmark_group("replay");
    group.sample_size(10);
    group.throughput(Throughput::Elements(history.len() as u64));
    group.bench_function(format!("{}M", history.len() / 1_000_000), |b| {
        b.iter(|| {
            let mut replay = Replay::new(FeatureEngine::new(spec.clone()));
            let mut out = Vec::new();
            for tx in &history {
                replay.push(tx, &mut out);
                black_box(&out);
            }
            let engine = replay.finish(None);
            black_box(engine.n_entities())
        });
    });
    group.finish();
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

criterion_group!(benches, observe, replay);
criterion_main!(benches);
