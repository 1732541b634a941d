//! Layered configuration: defaults < TOML file < `FRAUDLENS_*` environment <
//! command-line flags, all in one [`Config`]. Nested keys use `__` in the
//! environment: `FRAUDLENS_LOG__LEVEL=debug`,
//! `FRAUDLENS_SECURITY__CARD_HASH_KEY=…`. Unknown keys are refused.
//! `fraudlens.example.toml` documents every key with its default.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use fraudlens_core::{SchemaConfig, Secret};
use fraudlens_features::FeatureSpecConfig;
use fraudlens_model::fit::FitParams;
use fraudlens_sim::SimConfig;
use serde::{Deserialize, Serialize};

/// Everything fraudlens can be configured with.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Logging.
    pub log: LogConfig,
    /// Secrets.
    pub security: SecurityConfig,
    /// Reading input files.
    pub ingest: IngestConfig,
    /// How input records map to transactions.
    pub schema: SchemaConfig,
    /// Which features the engine computes.
    pub features: FeatureSpecConfig,
    /// Defaults of `fraudlens simulate`.
    pub simulate: SimConfig,
    /// Model training (checked by [`FitParams::check`] when a command fits a model).
    pub train: FitParams,
    /// Where decisions, reviews, labels, models and keys are kept.
    pub store: StoreConfig,
    /// `fraudlens serve`.
    pub serve: ServeConfig,
    /// `fraudlens detect`.
    pub detect: DetectConfig,
    /// Which event times are accepted, on every path (API, detector, files).
    pub event_time: EventTimeConfig,
}

/// `[event_time]`: the policy for transactions dated ahead of the clock or
/// far behind the events already seen. The same rules hold for the API, the
/// detector and offline replay (`features`, `train`, `evaluate`, `score`):
/// an event refused online is a bad row offline.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventTimeConfig {
    /// Most an event may be dated ahead of the wall clock (`5m`), or `off`.
    /// Beyond it: 422 `event_time_out_of_range`, a dead letter, or a bad row.
    pub max_future: TimeBound,
    /// Most an event may be dated behind the latest event already accepted
    /// (`7d`), or `off`. Idle entities are kept this much longer than their
    /// feature horizon, so that an accepted late event still finds them.
    pub max_lateness: TimeBound,
}

impl Default for EventTimeConfig {
    fn default() -> Self {
        let policy = fraudlens_features::EventTimePolicy::default();
        Self {
            max_future: TimeBound::from_millis(policy.max_future_ms),
            max_lateness: TimeBound::from_millis(policy.max_lateness_ms),
        }
    }
}

impl EventTimeConfig {
    /// The engine's policy.
    pub fn policy(&self) -> fraudlens_features::EventTimePolicy {
        fraudlens_features::EventTimePolicy {
            max_future_ms: self.max_future.0.map(fraudlens_core::WindowDuration::as_millis),
            max_lateness_ms: self.max_lateness.0.map(fraudlens_core::WindowDuration::as_millis),
        }
    }
}

/// A duration (`5m`, `1d`) or `off` (no bound).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeBound(pub Option<fraudlens_core::WindowDuration>);

impl TimeBound {
    fn from_millis(millis: Option<i64>) -> Self {
        Self(millis.and_then(fraudlens_core::WindowDuration::from_millis))
    }
}

impl Serialize for TimeBound {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(duration) => duration.serialize(serializer),
            None => serializer.serialize_str("off"),
        }
    }
}

impl<'de> Deserialize<'de> for TimeBound {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.trim() == "off" {
            return Ok(Self(None));
        }
        text.parse()
            .map(|duration| Self(Some(duration)))
            .map_err(serde::de::Error::custom)
    }
}

/// `[detect]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
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
}

impl Default for DetectConfig {
    fn default() -> Self {
        let detector = fraudlens_stream::DetectorConfig::default();
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
        }
    }
}

/// `[store]`
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://PATH` (created if missing) or `postgres://USER[:PASSWORD]@HOST:PORT/DB`.
    /// `FRAUDLENS_DATABASE_URL` overrides it (and `FRAUDLENS_STORE__URL`).
    /// May hold a password: print it through [`fraudlens_store::redact_url`].
    pub url: String,
    /// Connections in the pool.
    pub max_connections: u32,
    /// SQLite only. `full`: every acknowledged decision is on disk (fsync per
    /// commit; group commit keeps that cheap). `normal`: survives a crash of the
    /// process but the last commits can be lost on power failure.
    pub sqlite_sync: fraudlens_store::SqliteSync,
}

impl std::fmt::Debug for StoreConfig {
    /// The URL with its password hidden, like every other place the URL is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &fraudlens_store::redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("sqlite_sync", &self.sqlite_sync)
            .finish()
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://fraudlens-data/fraudlens.db".to_owned(),
            max_connections: 8,
            sqlite_sync: fraudlens_store::SqliteSync::Full,
        }
    }
}

/// `[serve]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Address to listen on.
    pub listen: String,
    /// Largest JSON request body, in bytes (413 above).
    pub max_body_bytes: usize,
    /// Largest CSV upload, in bytes.
    pub max_upload_bytes: usize,
    /// Most transactions per batch request.
    pub max_batch: usize,
    /// Requests per second per API key; 0 for no limit.
    pub rate_limit_per_key: u32,
    /// Origins allowed to call the API from a browser (CORS); empty for none.
    pub cors_origins: Vec<String>,
    /// Entity-state snapshot, written at shutdown and read at start.
    pub state_file: PathBuf,
    /// Which decisions carry per-feature reasons: `flagged` (review and decline), `all` or `none`.
    pub explain: fraudlens_pipeline::ExplainPolicy,
    /// Reasons per explained decision.
    pub top_reasons: usize,
    /// Most decisions written in one commit.
    pub max_commit_rows: usize,
    /// Decisions waiting for the writer before requests get 503.
    pub queue_capacity: usize,
    /// Seconds to finish in-flight requests after SIGTERM/SIGINT.
    pub shutdown_grace_seconds: u64,
    /// Transactions scored at once across all scoring requests; a request that
    /// would go over gets 503 with `Retry-After` at once.
    pub max_transactions_in_flight: usize,
    /// Most connections open at once (more get 503 and are closed); 0: the
    /// smaller of 10,000 and the open-file limit minus 256.
    pub max_connections: usize,
    /// Seconds for a connection waiting for a request (new, or idle between
    /// keep-alive requests) to send a complete request head; then it is closed.
    pub header_read_timeout_seconds: u64,
    /// Seconds a request body may keep the server waiting, on top of one second
    /// per `min_body_bytes_per_second` bytes received; then 408 and the connection is closed.
    pub body_read_timeout_seconds: u64,
    /// The slowest body rate accepted past `body_read_timeout_seconds`.
    pub min_body_bytes_per_second: u64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        let pipeline = fraudlens_pipeline::PipelineConfig::default();
        let server = fraudlens_server::ServerConfig::default();
        let transport = fraudlens_server::transport::TransportConfig::default();
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            max_body_bytes: server.max_body_bytes,
            max_upload_bytes: server.max_upload_bytes,
            max_batch: server.max_batch,
            rate_limit_per_key: server.rate_limit_per_key,
            cors_origins: server.cors_origins,
            state_file: PathBuf::from("fraudlens-data/entity-state.bin"),
            explain: pipeline.explain,
            top_reasons: pipeline.top_reasons,
            max_commit_rows: pipeline.max_commit_rows,
            queue_capacity: pipeline.queue_capacity,
            shutdown_grace_seconds: 30,
            max_transactions_in_flight: server.max_transactions_in_flight,
            max_connections: 0,
            header_read_timeout_seconds: transport.header_read_timeout.as_secs(),
            body_read_timeout_seconds: transport.body_read_timeout.as_secs(),
            min_body_bytes_per_second: transport.min_body_bytes_per_second,
        }
    }
}

/// `[log]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Level filter: `error`, `warn`, `info`, `debug`, `trace`, or a
    /// `tracing` directive such as `fraudlens=debug`.
    pub level: String,
    /// `text` for people, `json` for log pipelines.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[security]`
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Key for hashing card numbers (HMAC-SHA256), at least 16 bytes. Needed
    /// only when the schema marks a field as a card number. Prefer the
    /// environment (`FRAUDLENS_SECURITY__CARD_HASH_KEY`) over the file.
    pub card_hash_key: Option<Secret>,
}

/// `[ingest]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Stop at the first bad row instead of skipping and reporting it.
    pub strict: bool,
    /// How many bad rows to show in the report (all are counted).
    pub max_error_examples: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            strict: false,
            max_error_examples: 10,
        }
    }
}

/// A schema file (`--schema`): `[schema]` and/or `[features]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaFile {
    schema: Option<SchemaConfig>,
    features: Option<FeatureSpecConfig>,
}

/// Top-level tables: environment variables are read only under these, so
/// other `FRAUDLENS_*` variables (`FRAUDLENS_CONFIG`, `FRAUDLENS_CACHE_DIR` of
/// the test script…) are not mistaken for configuration.
const SECTIONS: [&str; 11] = [
    "log",
    "security",
    "ingest",
    "schema",
    "features",
    "simulate",
    "train",
    "store",
    "serve",
    "detect",
    "event_time",
];

/// Read as raw text, never as a typed value (a digits-only key must stay a
/// string) and never echoed in an error.
const CARD_HASH_KEY_ENV: &str = "FRAUDLENS_SECURITY__CARD_HASH_KEY";

/// The conventional name of a database URL: overrides `store.url` (also
/// `FRAUDLENS_STORE__URL`) for every command; `--database` overrides it.
const DATABASE_URL_ENV: &str = "FRAUDLENS_DATABASE_URL";

impl Config {
    /// Defaults, then `file`, then `schema_file` (its `[schema]`/`[features]`
    /// tables replace those so far), then the environment.
    pub fn load(file: Option<&Path>, schema_file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            anyhow::ensure!(path.is_file(), "config file {} not found", path.display());
            figment = figment.merge(Toml::file_exact(path));
        }
        let mut config: Config = figment
            .extract()
            .map_err(|error| anyhow::anyhow!("invalid configuration: {error}"))?;
        if let Some(path) = schema_file {
            config.apply_schema_file(path)?;
        }
        let card_hash_key = config.security.card_hash_key.take();
        let env = Env::prefixed("FRAUDLENS_").split("__").filter(|key| {
            let key = key.as_str().to_ascii_lowercase();
            let section = key.split('.').next().unwrap_or_default();
            SECTIONS.contains(&section) && key != "security.card_hash_key"
        });
        let mut config: Config = Figment::from(Serialized::defaults(config))
            .merge(env)
            .extract()
            .map_err(|error| anyhow::anyhow!("invalid configuration: {error}"))?;
        config.security.card_hash_key = std::env::var(CARD_HASH_KEY_ENV).ok().map(Secret::new).or(card_hash_key);
        if let Ok(url) = std::env::var(DATABASE_URL_ENV) {
            config.store.url = url;
        }
        Ok(config)
    }

    /// Replaces the schema and/or feature tables with those of a schema file.
    fn apply_schema_file(&mut self, path: &Path) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading schema file {}", path.display()))?;
        let file: SchemaFile =
            toml::from_str(&text).with_context(|| format!("invalid schema file {}", path.display()))?;
        anyhow::ensure!(
            file.schema.is_some() || file.features.is_some(),
            "schema file {} has neither a [schema] nor a [features] table",
            path.display()
        );
        if let Some(schema) = file.schema {
            self.schema = schema;
        }
        if let Some(features) = file.features {
            self.features = features;
        }
        Ok(())
    }
}

/// Where the config file comes from: `--config` or `FRAUDLENS_CONFIG`.
pub fn config_path(flag: Option<PathBuf>) -> Option<PathBuf> {
    flag.or_else(|| std::env::var_os("FRAUDLENS_CONFIG").map(PathBuf::from))
}
