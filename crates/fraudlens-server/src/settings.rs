//! `[serve]` settings: everything `fraudlens serve` reads from its
//! configuration, with their defaults, turned into the [`ServerConfig`], the
//! [`PipelineConfig`] and the [`ServeOptions`] the server runs with.

use std::path::PathBuf;
use std::time::Duration;

use fraudlens_core::Secret;
use fraudlens_pipeline::{ExplainPolicy, PipelineConfig};
use serde::{Deserialize, Serialize};

use crate::tls::{Tls, TlsError};
use crate::transport::{self, TransportConfig};
use crate::{ServeOptions, ServerConfig};

/// `[serve]`
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeSettings {
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
    pub explain: ExplainPolicy,
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
    /// Milliseconds between two reads of the registry's production model (a
    /// promotion made elsewhere is served after at most this long; on
    /// PostgreSQL a notification usually brings it sooner).
    pub model_poll_interval_ms: u64,
    /// PEM certificate chain (leaf first) for HTTPS; with `tls_key`. Unset: plain HTTP.
    /// Both files are read again on SIGHUP.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert` (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// `Strict-Transport-Security: max-age=…` on every response over TLS; 0 for none.
    pub hsts_max_age_seconds: u64,
}

impl Default for ServeSettings {
    fn default() -> Self {
        let pipeline = PipelineConfig::default();
        let server = ServerConfig::default();
        let transport = TransportConfig::default();
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
            model_poll_interval_ms: 1_000,
            tls_cert: None,
            tls_key: None,
            // a year: what browsers' preload lists ask for
            hsts_max_age_seconds: 31_536_000,
        }
    }
}

impl ServeSettings {
    /// The API's limits; `card_hash_key` comes from `[security]`.
    pub fn server_config(&self, card_hash_key: Option<Secret>) -> ServerConfig {
        ServerConfig {
            max_body_bytes: self.max_body_bytes,
            max_upload_bytes: self.max_upload_bytes,
            max_batch: self.max_batch,
            rate_limit_per_key: self.rate_limit_per_key,
            cors_origins: self.cors_origins.clone(),
            card_hash_key,
            max_transactions_in_flight: self.max_transactions_in_flight,
            mlflow: None,
            chain: None,
            cases: fraudlens_cases::CaseSettings::default(),
            llm: None,
            secure_cookies: self.tls_cert.is_some(),
        }
    }

    /// The pipeline of one server: one entity state, snapshotted to
    /// `state_file`. Its `time_policy` is the engine's default: the caller
    /// sets the one of `[event_time]`.
    pub fn pipeline_config(&self) -> PipelineConfig {
        PipelineConfig {
            top_reasons: self.top_reasons,
            explain: self.explain,
            max_commit_rows: self.max_commit_rows,
            queue_capacity: self.queue_capacity,
            state_file: Some(self.state_file.clone()),
            sharded: false,
            ..PipelineConfig::default()
        }
    }

    /// The server's TLS, if `tls_cert` and `tls_key` are set (one without the
    /// other is an error).
    pub fn tls(&self) -> Result<Option<Tls>, TlsError> {
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Tls::load(cert, key, self.hsts_max_age_seconds).map(Some),
            _ => Err(TlsError::Incomplete),
        }
    }

    /// How [`serve`](crate::serve) runs its connections and stops
    /// (`max_connections = 0`: [`transport::default_max_connections`]; TLS is
    /// set by the caller, from [`Self::tls`]).
    pub fn serve_options(&self) -> ServeOptions {
        ServeOptions {
            transport: TransportConfig {
                header_read_timeout: Duration::from_secs(self.header_read_timeout_seconds.max(1)),
                body_read_timeout: Duration::from_secs(self.body_read_timeout_seconds),
                min_body_bytes_per_second: self.min_body_bytes_per_second,
                max_connections: match self.max_connections {
                    0 => transport::default_max_connections(),
                    n => n,
                },
                tls: None,
            },
            grace: Duration::from_secs(self.shutdown_grace_seconds),
            model_poll_interval: Duration::from_millis(self.model_poll_interval_ms.max(10)),
        }
    }
}
