//! `fraudlens detect`: opens the store, chooses the model, starts the sharded
//! pipeline and runs [`fraudlens_stream::run`] (a Kafka consumer-group
//! member with its probes and metrics on their own port) until SIGTERM or
//! SIGINT.

use anyhow::Context as _;
use fraudlens_pipeline::{Pipeline, PipelineConfig};
use fraudlens_stream::{Detector, DetectorConfig};

use super::admin::{block_on, close_store, open_service_store, redact_url, store_url};
use super::serve::{serving_model, shared_state, shutdown_signal};
use crate::cli::DetectArgs;
use crate::config::Config;
use crate::exit::{Classify, CliResult};

/// Runs the detector until SIGTERM or SIGINT.
pub fn run(config: &Config, args: DetectArgs) -> CliResult {
    block_on(detect(config, args))
}

async fn detect(config: &Config, args: DetectArgs) -> CliResult {
    // before the pipeline starts: its startup rebuild is counted
    fraudlens_server::ops::install_metrics();
    let url = store_url(config, &args.store);
    let store = open_service_store(config, &url).await?;
    let model = serving_model(config, store.as_ref(), args.model.as_deref()).await?;
    let settings = &config.detect;
    config.drift.check().map_err(anyhow::Error::msg).usage()?;
    let shared_state = shared_state(config, &model).await?;
    let pipeline = Pipeline::start(
        store.clone(),
        model,
        PipelineConfig {
            time_policy: config.event_time.policy(),
            shared_state,
            drift: config.drift.clone(),
            ..settings.pipeline_config(config.serve.pipeline_config())
        },
    )
    .await
    .context("starting the scoring pipeline")?;
    let defaults = settings.detector_config();
    let detector_config = DetectorConfig {
        brokers: args.brokers.unwrap_or(defaults.brokers),
        topic: args.topic.unwrap_or(defaults.topic),
        group: args.group.unwrap_or(defaults.group),
        ..defaults
    };
    let detector = Detector::new(pipeline.clone(), detector_config.clone())
        .context("creating the Kafka clients")
        .usage()?;
    let listen = args.metrics_listen.as_deref().unwrap_or(&settings.metrics_listen);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))
        .usage()?;
    let address = listener.local_addr().context("reading the bound address")?;
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

    let watch = settings.watch_config(config.security.card_hash_key.clone());
    fraudlens_stream::run(detector, listener, watch, shutdown_signal())
        .await
        .context("consuming")?;
    close_store(store.as_ref()).await;
    tracing::info!("stopped");
    Ok(())
}
