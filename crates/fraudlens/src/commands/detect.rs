//! `fraudlens detect`: a Kafka consumer-group member on the shared scoring
//! pipeline, with `/metrics`, `/health/live` and `/health/ready` on their own
//! port, and a graceful stop on SIGTERM/SIGINT (finish the batch, commit the
//! offsets, leave the group, flush the store).

use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use fraudlens_pipeline::{Pipeline, PipelineConfig};
use fraudlens_stream::{Detector, DetectorConfig, Health};

use super::admin::{block_on, open_store, redact_url, store_url};
use super::serve::{serving_model, shutdown_signal};
use crate::cli::DetectArgs;
use crate::config::Config;
use crate::exit::{Classify, CliResult};

/// Runs the detector until SIGTERM or SIGINT.
pub fn run(config: &Config, args: DetectArgs) -> CliResult {
    block_on(detect(config, args))
}

struct Probe {
    pipeline: Arc<Pipeline>,
    health: Arc<Health>,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
}

/// How long readiness waits for the store before answering 503.
const STORE_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

async fn metrics(State(probe): State<Arc<Probe>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        probe.metrics.render(),
    )
}

async fn live() -> impl IntoResponse {
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({"status": "healthy", "service": "fraudlens-detect"})),
    )
}

/// Ready when the store answers (within a second), a broker is up, this
/// member holds partitions of the transactions topic, and no batch is stuck
/// past its retry bound; else 503 with every reason.
async fn ready(State(probe): State<Arc<Probe>>) -> impl IntoResponse {
    let mut reasons = match probe.health.check() {
        Ok(()) => Vec::new(),
        Err(reasons) => reasons,
    };
    match tokio::time::timeout(STORE_PING_TIMEOUT, probe.pipeline.store().ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => reasons.push(format!("store: {error}")),
        Err(_) => reasons.push(format!("store: no answer within {} ms", STORE_PING_TIMEOUT.as_millis())),
    }
    if reasons.is_empty() {
        (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ready", "model": probe.pipeline.model().version()})),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "not_ready", "reasons": reasons})),
        )
    }
}

async fn detect(config: &Config, args: DetectArgs) -> CliResult {
    let url = store_url(config, &args.store);
    let store = open_store(config, &url).await?;
    let model = serving_model(config, store.as_ref(), args.model.as_deref()).await?;
    let settings = &config.detect;
    let pipeline = Pipeline::start(
        store.clone(),
        model,
        PipelineConfig {
            top_reasons: config.serve.top_reasons,
            explain: config.serve.explain,
            max_commit_rows: config.serve.max_commit_rows.max(settings.max_batch),
            queue_capacity: config.serve.queue_capacity,
            // one entity state per assigned partition, rebuilt from the store rows of
            // that partition when it is assigned here: no snapshot file
            state_file: None,
            sharded: true,
            time_policy: config.event_time.policy(),
        },
    )
    .await
    .context("starting the scoring pipeline")?;
    let detector_config = DetectorConfig {
        brokers: args.brokers.unwrap_or_else(|| settings.brokers.clone()),
        topic: args.topic.unwrap_or_else(|| settings.topic.clone()),
        group: args.group.unwrap_or_else(|| settings.group.clone()),
        decisions_topic: settings.decisions_topic.clone(),
        dead_letter_topic: settings.dead_letter_topic.clone(),
        max_batch: settings.max_batch.max(1),
        session_timeout_ms: settings.session_timeout_ms,
        labels_topic: Some(settings.labels_topic.clone()).filter(|topic| !topic.is_empty()),
        // fault injection for the crash test only
        crash_after_batches: std::env::var("FRAUDLENS_TEST_CRASH_AFTER_BATCHES")
            .ok()
            .and_then(|n| n.parse().ok()),
    };
    let detector = Arc::new(
        Detector::new(pipeline.clone(), detector_config.clone())
            .context("creating the Kafka clients")
            .usage()?,
    );

    let probe = Arc::new(Probe {
        pipeline: pipeline.clone(),
        health: detector.health(),
        metrics: fraudlens_server::ops::install_metrics(),
    });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .with_state(probe);
    let listen = args.metrics_listen.as_deref().unwrap_or(&settings.metrics_listen);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))
        .usage()?;
    let address = listener.local_addr().context("reading the bound address")?;
    // the same connection timeouts and cap as the API: an idle or slow client
    // cannot hold the probes hostage
    tokio::spawn(fraudlens_server::transport::serve(
        listener,
        app,
        fraudlens_server::transport::TransportConfig::default(),
        std::future::pending(),
    ));
    tracing::info!(
        brokers = detector_config.brokers,
        topic = detector_config.topic,
        group = detector_config.group,
        store = %redact_url(&url),
        model = pipeline.model().version(),
        "detecting"
    );
    println!(
        "fraudlens detect: topic {} in group {} (decisions to {}, dead letters to {}); metrics on http://{address}/metrics",
        detector_config.topic,
        detector_config.group,
        detector_config.decisions_topic,
        detector_config.dead_letter_topic
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("stopping: finishing the batch and committing offsets");
        let _ = stop_tx.send(true);
    });
    detector.clone().run(stop_rx).await.context("consuming")?;
    drop(detector);
    pipeline.shutdown().await.context("flushing")?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}
