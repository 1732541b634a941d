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
    pub serve: fraudlens_server::ServeSettings,
    /// `fraudlens detect`.
    pub detect: fraudlens_stream::DetectSettings,
    /// Which event times are accepted, on every path (API, detector, files).
    pub event_time: fraudlens_features::EventTimeSettings,
    /// Where the entity state lives: in each process, or shared (Redis).
    pub state: fraudlens_state::StateSettings,
    /// `fraudlens retrain` and `fraudlens models compare`.
    pub retrain: fraudlens_pipeline::retrain::RetrainSettings,
    /// Drift thresholds (`fraudlens drift`).
    pub drift: fraudlens_model::drift::DriftSettings,
    /// Where `train`, `retrain` and `models compare` log their runs (MLflow).
    pub mlflow: fraudlens_mlflow::MlflowSettings,
    /// Where model directories are uploaded and downloads cached (object storage).
    pub artifacts: fraudlens_pipeline::artifacts::ArtifactSettings,
    /// Ethereum chain data (`fraudlens eth`, `/api/v1/eth/…`).
    pub eth: fraudlens_chain::EthSettings,
    /// Case analysis (`fraudlens analyze`, `/api/v1/transactions/{id}/analysis`).
    pub cases: fraudlens_cases::CaseSettings,
    /// The LLM that writes case narratives (an OpenAI-compatible API).
    pub llm: fraudlens_cases::LlmSettings,
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
    /// PostgreSQL only. `auto`: compare cases through a pgvector index when the
    /// server has the extension; `pgvector`: required; `off`: the exact search.
    pub similar_index: fraudlens_store::SimilarIndex,
}

impl std::fmt::Debug for StoreConfig {
    /// The URL with its password hidden, like every other place the URL is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("url", &fraudlens_store::redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("sqlite_sync", &self.sqlite_sync)
            .field("similar_index", &self.similar_index)
            .finish()
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://fraudlens-data/fraudlens.db".to_owned(),
            max_connections: 8,
            sqlite_sync: fraudlens_store::SqliteSync::Full,
            similar_index: fraudlens_store::SimilarIndex::Auto,
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
const SECTIONS: [&str; 19] = [
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
    "state",
    "retrain",
    "drift",
    "mlflow",
    "artifacts",
    "eth",
    "cases",
    "llm",
];

/// Read as raw text, never as a typed value (a digits-only key must stay a
/// string) and never echoed in an error.
const CARD_HASH_KEY_ENV: &str = "FRAUDLENS_SECURITY__CARD_HASH_KEY";

/// The Ethereum provider's URL (it often carries the provider's key): read as
/// raw text, never echoed; `FRAUDLENS_ETH__RPC_URL` is read the same way.
const ETH_RPC_URL_ENV: [&str; 2] = ["FRAUDLENS_ETH_RPC_URL", "FRAUDLENS_ETH__RPC_URL"];

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
        let eth_rpc_url = config.eth.rpc_url.take();
        let env = Env::prefixed("FRAUDLENS_").split("__").filter(|key| {
            let key = key.as_str().to_ascii_lowercase();
            let section = key.split('.').next().unwrap_or_default();
            SECTIONS.contains(&section) && key != "security.card_hash_key" && key != "eth.rpc_url"
        });
        let mut config: Config = Figment::from(Serialized::defaults(config))
            .merge(env)
            .extract()
            .map_err(|error| anyhow::anyhow!("invalid configuration: {error}"))?;
        config.security.card_hash_key = std::env::var(CARD_HASH_KEY_ENV).ok().map(Secret::new).or(card_hash_key);
        config.eth.rpc_url = ETH_RPC_URL_ENV
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|url| !url.trim().is_empty()))
            .map(Secret::new)
            .or(eth_rpc_url);
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
