//! `[detect]` settings: everything `fraudlens detect` reads from its
//! configuration, with their defaults, turned into the [`DetectorConfig`] and
//! the [`PipelineConfig`] the detector runs with.

use std::time::Duration;

use fraudlens_core::Secret;
use fraudlens_pipeline::{PipelineConfig, WatchConfig};
use serde::{Deserialize, Serialize};

use crate::DetectorConfig;

/// `[detect]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectSettings {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Topic of transactions (JSON, keyed by the primary entity).
    pub topic: String,
    /// Consumer group of the detectors.
    pub group: String,
    /// Where decisions are published, keyed by transaction id.
    pub decisions_topic: String,
    /// Where records that cannot be parsed go (also the dead-letter table).
    pub dead_letter_topic: String,
    /// Most records per batch (one commit to the store).
    pub max_batch: usize,
    /// The group's session timeout: a crashed detector's partitions move after it.
    pub session_timeout_ms: u32,
    /// Where /metrics, /health/live and /health/ready listen.
    pub metrics_listen: String,
    /// A topic of labels (chargebacks) to apply like `POST /api/v1/labels`; empty: none.
    pub labels_topic: String,
    /// Milliseconds between two reads of the registry's production model (a
    /// promotion made elsewhere is served after at most this long; on
    /// PostgreSQL a notification usually brings it sooner).
    pub model_poll_interval_ms: u64,
}

impl Default for DetectSettings {
    fn default() -> Self {
        let detector = DetectorConfig::default();
        Self {
            brokers: detector.brokers,
            topic: detector.topic,
            group: detector.group,
            decisions_topic: detector.decisions_topic,
            dead_letter_topic: detector.dead_letter_topic,
            max_batch: detector.max_batch,
            session_timeout_ms: detector.session_timeout_ms,
            metrics_listen: "127.0.0.1:8001".to_owned(),
            labels_topic: String::new(),
            model_poll_interval_ms: 1_000,
        }
    }
}

impl DetectSettings {
    /// The detector's connection and batching (at least one record per batch).
    pub fn detector_config(&self) -> DetectorConfig {
        DetectorConfig {
            brokers: self.brokers.clone(),
            topic: self.topic.clone(),
            group: self.group.clone(),
            decisions_topic: self.decisions_topic.clone(),
            dead_letter_topic: self.dead_letter_topic.clone(),
            max_batch: self.max_batch.max(1),
            session_timeout_ms: self.session_timeout_ms,
            labels_topic: Some(self.labels_topic.clone()).filter(|topic| !topic.is_empty()),
        }
    }

    /// How the detector follows the registry's production model;
    /// `card_hash_key` comes from `[security]`.
    pub fn watch_config(&self, card_hash_key: Option<Secret>) -> WatchConfig {
        WatchConfig {
            poll_interval: Duration::from_millis(self.model_poll_interval_ms.max(10)),
            card_hash_key,
        }
    }

    /// The detector's pipeline, from the server's (`serve`: reasons and
    /// queue): sharded, one entity state per assigned partition, rebuilt from
    /// the store rows of that partition when it is assigned here, so no
    /// snapshot file; a commit holds at least one batch.
    pub fn pipeline_config(&self, serve: PipelineConfig) -> PipelineConfig {
        PipelineConfig {
            max_commit_rows: serve.max_commit_rows.max(self.max_batch),
            state_file: None,
            sharded: true,
            ..serve
        }
    }
}
