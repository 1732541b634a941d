//! `fraudlens detect`: opens the store, chooses the model, starts the sharded
//! pipeline and runs [`fraudlens_stream::run`] (a Kafka consumer-group
//! member with its probes and metrics on their own port) until SIGTERM or
//! SIGINT.

use anyhow::Context as _;
use fraudlens_pipeline::{Pipeline, PipelineConfig};
use fraudlens_stream::{Detector, DetectorConfig};

use super::admin::{block_on, open_store, redact_url, store_url};
use super::serve::{serving_model, shutdown_signal};
use crate::cli::DetectArgs;
use crate::config::Config;
use crate::exit::{Classify, CliResult};

/// Runs the detector until SIGTERM or SIGINT.
pub fn run(config: &Config, args: DetectArgs) -> CliResult {
    block_on(detect(config, args))
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

    fraudlens_stream::run(detector, listener, shutdown_signal())
        .await
        .context("consuming")?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}
