//! Kafka for fraudlens: the detector ([`Detector`], a consumer-group member on
//! the shared scoring pipeline, run with its probes by [`run`]) and the
//! transaction producer ([`Producer`], behind `fraudlens simulate --to kafka://…`).
//!
//! The `fault-injection` feature (off by default; enabled by the tests of the
//! `fraudlens` binary) adds the crash hook `FRAUDLENS_TEST_CRASH_AFTER_BATCHES`.

mod detector;
mod health;
mod producer;
mod run;
mod settings;

pub use detector::{Detector, DetectorConfig};
pub use health::Health;
pub use producer::{KafkaTarget, Producer};
pub use run::run;
pub use settings::DetectSettings;

/// Why the detector or producer failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The Kafka client failed.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] fraudlens_store::StoreError),
    /// The pipeline could not flush at shutdown.
    #[error(transparent)]
    Pipeline(#[from] fraudlens_pipeline::PipelineError),
    /// Decisions could not be stored or published now (the batch is retried).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Serialising a message failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// A `kafka://HOST:PORT/TOPIC` target that does not parse.
    #[error("invalid Kafka target {0:?}: expected kafka://HOST:PORT/TOPIC")]
    Target(String),
}
