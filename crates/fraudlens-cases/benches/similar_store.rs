//! Similar cases at scale on PostgreSQL: the pgvector index next to the exact
//! search, on `FLAGGED` (default 1,000,000) flagged decisions of twelve
//! scenarios (each flagged for its own handful of reasons, with noise).
//!
//! `cargo bench -p fraudlens-cases --bench similar_store` (PostgreSQL with
//! pgvector: `scripts/pgvector`; `FRAUDLENS_BENCH_POSTGRES` names the server,
//! default `postgres://postgres@127.0.0.1:5432/postgres`). It prints:
//! - the time to store them and to build the index over them;
//! - the write cost of the index: storing flagged decisions (indexed by the
//!   trigger) next to approved ones (not indexed), in batches of 500;
//! - per case, the time of the similar-case search (store read + ranking),
//!   through the index asked for `INDEX_CANDIDATES` (default 100, 200 and
//!   500) and exactly over the newest 50,000, in turn;
//! - how many of the exact top 10 over *every* flagged decision before the
//!   case each finds, and how many of their cases share the case's scenario.
//!
//! Not a timed test: it measures, and bench/README.md records the run.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use fraudlens_cases::similar::nearest;
use fraudlens_core::{Decision, Reason, ReviewStatus, Timestamp};
use fraudlens_store::{NewDecision, SimilarIndex, StoreOptions, StoredDecision, connect};
use sqlx::Connection;

const FEATURES: usize = 30;
const SCENARIOS: u64 = 12;
const DATABASE: &str = "fraudlens_similar_bench";

/// A deterministic generator (xorshift).
struct Draw(u64);

impl Draw {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        ((self.unit() * n as f64) as usize).min(n - 1)
    }
}

/// The scenario of decision `n`, and its decision: four of the scenario's six
/// features and one at random as reasons, inputs around the scenario's means.
fn decision(n: u64, flagged: bool) -> (u64, NewDecision) {
    let scenario = n.wrapping_mul(0x2545_f491_4f6c_dd1d) % SCENARIOS;
    let mut draw = Draw::new(n);
    let mut profile = Draw::new(1_000 + scenario);
    let own: Vec<usize> = (0..6).map(|_| profile.below(FEATURES)).collect();
    let mut reasons: Vec<Reason> = Vec::with_capacity(5);
    for pick in 0..5 {
        let feature = if pick < 4 {
            own[draw.below(own.len())]
        } else {
            draw.below(FEATURES)
        };
        let name = format!("feature_{feature:02}");
        if reasons.iter().any(|r| r.feature == name) {
            continue;
        }
        reasons.push(Reason {
            feature: name,
            value: Some(draw.unit()),
            category: None,
            contribution: (0.3 + 2.0 * draw.unit()) * if pick < 4 { 1.0 } else { 0.5 },
        });
    }
    let features: Vec<f64> = (0..FEATURES)
        .map(|f| if own.contains(&f) { 5.0 } else { 0.0 } + draw.unit() * 4.0)
        .collect();
    let decision = NewDecision {
        transaction_id: format!("tx-{n:08}"),
        fingerprint: format!("fp-{n}"),
        event_time: Timestamp::from_millis(n as i64 * 1_000),
        received_at: Timestamp::from_millis(n as i64 * 1_000),
        entity: Some(format!("c-{}", n % 50_000)),
        amount_minor: 1_000,
        currency: "EUR".to_owned(),
        body: String::new(),
        score: if flagged { 0.8 } else { 0.1 },
        probability: Some(if flagged { 0.8 } else { 0.1 }),
        raw_score: None,
        anomaly_score: None,
        decision: if flagged { Decision::Review } else { Decision::Approve },
        reasons: serde_json::to_string(&reasons).unwrap(),
        features,
        model_version: "bench".to_owned(),
        latency_us: 100,
        review_status: flagged.then_some(ReviewStatus::PendingReview),
        shard: None,
    };
    (scenario, decision)
}

fn scenario_of(id: &str) -> u64 {
    let n: u64 = id.trim_start_matches("tx-").parse().unwrap();
    decision(n, true).0
}

fn percentile(times: &mut [Duration], q: f64) -> f64 {
    times.sort_unstable();
    times[((times.len() as f64 * q) as usize).min(times.len() - 1)].as_secs_f64() * 1_000.0
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let flagged = env("FLAGGED", 1_000_000);
    let queries = env("QUERIES", 200) as usize;
    let truths = env("TRUTHS", 20) as usize;
    let admin = std::env::var("FRAUDLENS_BENCH_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
    let url = format!("{base}/{DATABASE}");
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {DATABASE}")))
        .execute(&mut conn)
        .await
        .unwrap();

    // the decisions, stored without the index (as a store had them before it)
    let off = StoreOptions {
        similar_index: SimilarIndex::Off,
        ..StoreOptions::default()
    };
    let store = connect(&url, &off).await.unwrap();
    let started = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    for n in 1..=flagged {
        batch.push(decision(n, true).1);
        if batch.len() == 10_000 || n == flagged {
            store.put_decisions(&batch).await.unwrap();
            batch.clear();
        }
    }
    let stored = started.elapsed();
    sqlx::raw_sql("VACUUM (ANALYZE) transactions")
        .execute(&mut sqlx::PgConnection::connect(&url).await.unwrap())
        .await
        .unwrap();
    store.close().await;

    // the index, made and filled when a process opens the store with it on
    let required = StoreOptions {
        similar_index: SimilarIndex::Pgvector,
        maintain_similar_index: true,
        ..StoreOptions::default()
    };
    let started = Instant::now();
    let store = connect(&url, &required).await.unwrap();
    let probe = decision(flagged, true).1;
    while store
        .nearest_flagged(probe.event_time, &probe.reasons, 10, 0)
        .await
        .unwrap()
        .is_none()
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let built = started.elapsed();
    println!(
        "{flagged} flagged decisions stored in {:.0} s; the index made over them in {:.0} s",
        stored.as_secs_f64(),
        built.as_secs_f64()
    );

    // the write cost: flagged decisions (indexed) next to approved ones (not), alternating batches
    let rows = env("WRITE_ROWS", 20_000);
    let (mut indexed, mut plain) = (Duration::ZERO, Duration::ZERO);
    let mut next = flagged + 1;
    for round in 0..rows / 500 {
        for flag in [round % 2 == 0, round % 2 == 1] {
            let batch: Vec<NewDecision> = (next..next + 500).map(|n| decision(n, flag).1).collect();
            next += 500;
            let started = Instant::now();
            store.put_decisions(&batch).await.unwrap();
            *if flag { &mut indexed } else { &mut plain } += started.elapsed();
        }
    }
    println!(
        "write: {:.0} µs per flagged decision (indexed), {:.0} µs per approved one (batches of 500): the index costs {:.0} µs per flagged decision",
        indexed.as_secs_f64() * 1e6 / rows as f64,
        plain.as_secs_f64() * 1e6 / rows as f64,
        (indexed.as_secs_f64() - plain.as_secs_f64()) * 1e6 / rows as f64
    );

    // cases from the latest fifth, searched every way; the truth for some
    let settings = fraudlens_cases::CaseSettings::default();
    let sizes: Vec<u32> = std::env::var("INDEX_CANDIDATES")
        .unwrap_or_else(|_| "100 200 500".to_owned())
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    // per way (each index size, then the exact search): times, found of the truth, same scenario, listed
    let ways = sizes.len() + 1;
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); ways];
    let (mut found, mut same, mut listed) = (vec![0usize; ways], vec![0usize; ways], vec![0usize; ways]);
    let mut truth_total = 0usize;
    let mut draw = Draw::new(7);
    let rank = |candidates: Vec<StoredDecision>, case: StoredDecision| {
        let k = settings.similar_cases;
        tokio::task::spawn_blocking(move || {
            let found = nearest(&case, &candidates, k);
            found
                .iter()
                .map(|n| candidates[n.index].decision.transaction_id.clone())
                .collect::<Vec<String>>()
        })
    };
    for q in 0..queries {
        let n = flagged - (draw.unit() * flagged as f64 * 0.2) as u64;
        let case = store.transaction(&format!("tx-{n:08}")).await.unwrap().unwrap();
        let own = scenario_of(&case.decision.transaction_id);
        let at = case.decision.event_time;
        let mut answers: Vec<Vec<String>> = Vec::with_capacity(ways);
        for (way, size) in sizes.iter().enumerate() {
            let started = Instant::now();
            let candidates = store
                .nearest_flagged(at, &case.decision.reasons, *size, 0)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(candidates.len(), *size as usize, "the index returned fewer than asked");
            answers.push(rank(candidates, case.clone()).await.unwrap());
            times[way].push(started.elapsed());
        }
        let started = Instant::now();
        let candidates = store.flagged_before(at, settings.max_candidates).await.unwrap();
        answers.push(rank(candidates, case.clone()).await.unwrap());
        times[ways - 1].push(started.elapsed());
        let truth = if q < truths {
            let all = store.flagged_before(at, u32::MAX).await.unwrap();
            Some(rank(all, case).await.unwrap())
        } else {
            None
        };
        truth_total += truth.as_ref().map_or(0, Vec::len);
        for (way, answer) in answers.iter().enumerate() {
            same[way] += answer.iter().filter(|id| scenario_of(id) == own).count();
            listed[way] += answer.len();
            if let Some(truth) = &truth {
                found[way] += answer.iter().filter(|id| truth.contains(id)).count();
            }
        }
    }
    println!(
        "| search | candidates ranked | p50 ms | p95 ms | p99 ms | of the exact top 10 over all ({truths} cases) | share of the case's scenario |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (way, times) in times.iter_mut().enumerate() {
        let (name, ranked) = match sizes.get(way) {
            Some(size) => ("pgvector index (HNSW, cosine of reasons)".to_owned(), *size),
            None => (
                format!("exact, newest {}", settings.max_candidates),
                settings.max_candidates,
            ),
        };
        println!(
            "| {name} | {ranked} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |",
            percentile(times, 0.5),
            percentile(times, 0.95),
            percentile(times, 0.99),
            found[way] as f64 / truth_total.max(1) as f64,
            same[way] as f64 / listed[way].max(1) as f64
        );
    }
    store.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
}
