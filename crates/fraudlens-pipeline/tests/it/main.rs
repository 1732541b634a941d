//! In-process tests of the scoring pipeline on a SQLite store in a temporary
//! directory, with the model fixture of `fraudlens-model`: idempotency,
//! racing requests for one id, group commit, shard acquire and release,
//! promotions followed by every pipeline (also on PostgreSQL), two
//! pipelines on one shared entity state (Redis), and retraining rows read
//! from the stored decisions.

// a failed unwrap in a test is a failed test with a backtrace
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod counting;
mod idempotency;
mod registry;
mod retrain;
mod rows;
mod shadow;
mod shards;
mod shared;
mod watch;

use std::path::Path;
use std::sync::Arc;

use fraudlens_pipeline::{Pipeline, PipelineConfig, ServingModel};
use fraudlens_testkit::{Backend, TestDb};
use serde_json::{Value, json};

use crate::counting::CountingStore;

/// An event-mode GBDT artifact (customer and terminal entities).
pub const MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fraudlens-model/tests/fixtures/artifact-v1"
);

/// The model fixture, loaded and checked.
pub fn model() -> ServingModel {
    ServingModel::load(Path::new(MODEL), None).unwrap()
}

/// A started pipeline over a fresh SQLite store that counts its writes.
pub struct Fixture {
    /// The pipeline under test.
    pub pipeline: Arc<Pipeline>,
    /// Its store.
    pub store: Arc<CountingStore>,
    _db: TestDb,
}

impl Fixture {
    /// A fresh store and a pipeline on it (`sharded`: the detector's mode).
    pub async fn new(sharded: bool) -> Self {
        let db = TestDb::new(Backend::Sqlite).await;
        let store = fraudlens_store::connect(&db.url, &fraudlens_store::StoreOptions::default())
            .await
            .unwrap();
        let store = Arc::new(CountingStore::new(store));
        let pipeline = Self::start(&store, sharded).await;
        Self {
            pipeline,
            store,
            _db: db,
        }
    }

    /// Another pipeline on the same store (another process).
    pub async fn start(store: &Arc<CountingStore>, sharded: bool) -> Arc<Pipeline> {
        let config = PipelineConfig {
            sharded,
            ..PipelineConfig::default()
        };
        Pipeline::start(store.clone(), model(), config).await.unwrap()
    }
}

/// A transaction record `offset_s` seconds after a time an hour before the
/// first call (the same arguments make the same record).
pub fn record(id: &str, customer: &str, amount: f64, offset_s: i64) -> Value {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| fraudlens_pipeline::now_ms() - 3_600_000);
    let at = base + offset_s * 1_000;
    json!({
        "transaction_id": id,
        "timestamp": fraudlens_core::Timestamp::from_millis(at).to_string(),
        "customer_id": customer,
        "terminal_id": "term-1",
        "amount": amount,
    })
}
