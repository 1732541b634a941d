//! Which concurrency mechanism for the shared entity state, measured on a real
//! Redis: many writers updating batches of entities drawn from a skewed set
//! (half of each batch from a hot set — 20, then 2,000 entities — half from
//! 20,000 cold ones), each update a
//! read-modify-write of the entity's bytes, as a batch of the pipeline does.
//!
//! - `cas`: what fraudlens does — one pipelined fetch, one pipelined
//!   compare-and-set script per entity; a conflicting entity is fetched and
//!   redone alone.
//! - `lock`: per-entity leases — one pipelined `SET NX PX` per entity plus the
//!   fetch; a batch that misses a lock releases what it took and retries
//!   after a pause; then one pipelined write-and-unlock.
//!
//! Both must lose no update (checked: each entity's counter equals the
//! updates applied to it). Prints updates/s, round trips per batch and
//! retries per batch.
//!
//! ```sh
//! cargo run --release -p fraudlens-state --example mechanisms [-- redis://127.0.0.1:6379]
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

const WRITERS: usize = 8;
const BATCHES: usize = 300;
const PER_BATCH: usize = 20;
const COLD: u64 = 20_000;

/// A small deterministic generator: the same batches for both mechanisms.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

/// One batch: half its entities hot (shared by every writer), half cold.
fn batches(writer: usize, hot: u64) -> Vec<Vec<u64>> {
    let mut rng = Rng(writer as u64 + 1);
    (0..BATCHES)
        .map(|_| {
            let mut batch: Vec<u64> = (0..PER_BATCH)
                .map(|idx| {
                    if idx % 2 == 0 {
                        rng.next() % hot
                    } else {
                        hot + rng.next() % COLD
                    }
                })
                .collect();
            batch.sort_unstable();
            batch.dedup();
            batch
        })
        .collect()
}

#[derive(Default)]
struct Counts {
    round_trips: AtomicU64,
    retries: AtomicU64,
    updates: AtomicU64,
}

const CAS: &str = r"
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if current ~= tonumber(ARGV[1]) then return -1 end
redis.call('HSET', KEYS[1], 'v', current + 1, 's', ARGV[2])
return current + 1
";

const WRITE_UNLOCK: &str = r"
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return -1 end
redis.call('HSET', KEYS[1], 's', ARGV[1])
redis.call('DEL', KEYS[2])
return 1
";

fn key(run: &str, entity: u64) -> String {
    format!("mech:{run}:{{{entity}}}")
}

fn lock_key(run: &str, entity: u64) -> String {
    format!("mech:{run}:{{{entity}}}:lock")
}

fn count_of(bytes: Option<Vec<u8>>) -> u64 {
    bytes.map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()))
}

async fn cas_batch(con: &mut ConnectionManager, script: &redis::Script, run: &str, batch: &[u64], counts: &Counts) {
    let mut pending: Vec<u64> = batch.to_vec();
    loop {
        let mut fetch = redis::pipe();
        for entity in &pending {
            fetch.cmd("HMGET").arg(key(run, *entity)).arg("v").arg("s");
        }
        let read: Vec<(Option<u64>, Option<Vec<u8>>)> = fetch.query_async(con).await.unwrap();
        let mut write = redis::pipe();
        for (entity, (version, bytes)) in pending.iter().zip(read) {
            write
                .cmd("EVALSHA")
                .arg(script.get_hash())
                .arg(1)
                .arg(key(run, *entity))
                .arg(version.unwrap_or(0))
                .arg((count_of(bytes) + 1).to_le_bytes().to_vec());
        }
        let written: Vec<i64> = write.query_async(con).await.unwrap();
        counts.round_trips.fetch_add(2, Ordering::Relaxed);
        let conflicts: Vec<u64> = pending
            .iter()
            .zip(&written)
            .filter(|(_, w)| **w < 0)
            .map(|(e, _)| *e)
            .collect();
        counts
            .updates
            .fetch_add((pending.len() - conflicts.len()) as u64, Ordering::Relaxed);
        if conflicts.is_empty() {
            return;
        }
        counts.retries.fetch_add(1, Ordering::Relaxed);
        pending = conflicts;
    }
}

async fn lock_batch(
    con: &mut ConnectionManager,
    script: &redis::Script,
    run: &str,
    batch: &[u64],
    token: &str,
    counts: &Counts,
) {
    let mut attempt = 0u64;
    loop {
        let mut take = redis::pipe();
        for entity in batch {
            take.cmd("SET")
                .arg(lock_key(run, *entity))
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(5_000);
            take.cmd("HGET").arg(key(run, *entity)).arg("s");
        }
        let replies: Vec<redis::Value> = take.query_async(con).await.unwrap();
        counts.round_trips.fetch_add(1, Ordering::Relaxed);
        let taken: Vec<bool> = replies
            .iter()
            .step_by(2)
            .map(|v| !matches!(v, redis::Value::Nil))
            .collect();
        if taken.iter().all(|t| *t) {
            let mut write = redis::pipe();
            for (idx, entity) in batch.iter().enumerate() {
                let bytes: Option<Vec<u8>> = redis::from_redis_value(replies[idx * 2 + 1].clone()).unwrap();
                write
                    .cmd("EVALSHA")
                    .arg(script.get_hash())
                    .arg(2)
                    .arg(key(run, *entity))
                    .arg(lock_key(run, *entity))
                    .arg((count_of(bytes) + 1).to_le_bytes().to_vec())
                    .arg(token);
            }
            let written: Vec<i64> = write.query_async(con).await.unwrap();
            counts.round_trips.fetch_add(1, Ordering::Relaxed);
            assert!(written.iter().all(|w| *w == 1), "a lease expired under a writer");
            counts.updates.fetch_add(batch.len() as u64, Ordering::Relaxed);
            return;
        }
        // release what was taken, back off, try again
        let mut release = redis::pipe();
        for (entity, taken) in batch.iter().zip(&taken) {
            if *taken {
                release.cmd("DEL").arg(lock_key(run, *entity)).ignore();
            }
        }
        let _: () = release.query_async(con).await.unwrap();
        counts.round_trips.fetch_add(1, Ordering::Relaxed);
        counts.retries.fetch_add(1, Ordering::Relaxed);
        attempt += 1;
        tokio::time::sleep(Duration::from_micros(
            100 * attempt.min(20) + (token.len() as u64 * 37) % 200,
        ))
        .await;
    }
}

async fn measure(url: &str, mechanism: &'static str, hot: u64) {
    let run = format!("{mechanism}-{}", std::process::id());
    let client = redis::Client::open(url).unwrap();
    let mut tasks = Vec::new();
    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    for writer in 0..WRITERS {
        let mut con = ConnectionManager::new(client.clone()).await.unwrap();
        let (run, counts) = (run.clone(), counts.clone());
        tasks.push(tokio::spawn(async move {
            let source = if mechanism == "cas" { CAS } else { WRITE_UNLOCK };
            let script = redis::Script::new(source);
            script.prepare_invoke().load_async(&mut con).await.unwrap();
            let token = format!("writer-{writer}");
            let mut applied = std::collections::HashMap::<u64, u64>::new();
            for batch in batches(writer, hot) {
                match mechanism {
                    "cas" => cas_batch(&mut con, &script, &run, &batch, &counts).await,
                    _ => lock_batch(&mut con, &script, &run, &batch, &token, &counts).await,
                }
                for entity in batch {
                    *applied.entry(entity).or_default() += 1;
                }
            }
            applied
        }));
    }
    let mut expected = std::collections::HashMap::<u64, u64>::new();
    for task in tasks {
        for (entity, n) in task.await.unwrap() {
            *expected.entry(entity).or_default() += n;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut con = ConnectionManager::new(client).await.unwrap();
    let mut lost = 0;
    for (entity, n) in &expected {
        let bytes: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(key(&run, *entity))
            .arg("s")
            .query_async(&mut con)
            .await
            .unwrap();
        lost += n - count_of(bytes).min(*n);
    }
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("mech:{run}:*"))
        .query_async(&mut con)
        .await
        .unwrap();
    for chunk in keys.chunks(1_000) {
        let _: () = redis::cmd("DEL").arg(chunk).query_async(&mut con).await.unwrap();
    }
    let batches = (WRITERS * BATCHES) as f64;
    let updates = counts.updates.load(Ordering::Relaxed) as f64;
    println!(
        "{mechanism:<5} {WRITERS} writers x {BATCHES} batches of ~{PER_BATCH} entities ({hot} hot, {COLD} cold): \
         {:.0} entity updates/s, {:.2} round trips per batch, {:.3} retries per batch, lost updates {lost}",
        updates / seconds,
        counts.round_trips.load(Ordering::Relaxed) as f64 / batches,
        counts.retries.load(Ordering::Relaxed) as f64 / batches,
    );
    assert_eq!(lost, 0, "{mechanism} lost updates");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
    // a few hot terminals shared by every writer, then a wider spread
    for hot in [20, 2_000] {
        for _ in 0..2 {
            measure(&url, "cas", hot).await;
            measure(&url, "lock", hot).await;
        }
    }
}
