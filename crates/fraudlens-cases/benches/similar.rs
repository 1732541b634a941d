//! The exact similar-case search: one query against N flagged decisions of
//! 30 inputs and 5 reasons each (the reasons drawn from 30 feature names).
//! `cargo bench -p fraudlens-cases --bench similar`

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use fraudlens_cases::similar::nearest;
use fraudlens_core::{Decision, Reason, ReviewStatus, Timestamp};
use fraudlens_store::{NewDecision, StoredDecision};

const FEATURES: usize = 30;

fn decision(n: u64) -> StoredDecision {
    // a deterministic spread of values and reasons
    let mut state = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let features: Vec<f64> = (0..FEATURES).map(|_| next() * 100.0).collect();
    let reasons: Vec<Reason> = (0..5)
        .map(|_| Reason {
            feature: format!("feature_{}", (next() * FEATURES as f64) as usize),
            value: Some(next()),
            category: None,
            contribution: next() * 4.0 - 1.0,
        })
        .collect();
    StoredDecision {
        seq: n as i64,
        decision: NewDecision {
            transaction_id: format!("tx-{n}"),
            fingerprint: String::new(),
            event_time: Timestamp::from_millis(n as i64),
            received_at: Timestamp::from_millis(n as i64),
            entity: Some(format!("c-{}", n % 5_000)),
            amount_minor: 100,
            currency: "EUR".to_owned(),
            body: String::new(),
            score: next(),
            probability: None,
            raw_score: None,
            anomaly_score: None,
            decision: Decision::Review,
            reasons: serde_json::to_string(&reasons).unwrap_or_default(),
            features,
            model_version: "m1".to_owned(),
            latency_us: 0,
            review_status: Some(ReviewStatus::PendingReview),
            shard: None,
        },
        review_updated_at: None,
        label: None,
    }
}

fn bench(c: &mut Criterion) {
    let query = decision(u64::MAX / 3);
    let mut group = c.benchmark_group("similar cases (exact)");
    group.sample_size(10);
    for n in [2_600u64, 10_000, 50_000, 200_000] {
        let candidates: Vec<StoredDecision> = (0..n).map(decision).collect();
        group.bench_with_input(BenchmarkId::from_parameter(n), &candidates, |b, candidates| {
            b.iter(|| nearest(&query, candidates, 10));
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
