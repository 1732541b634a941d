//! The detector's run loop: its probes and metrics served next to the
//! consumer, and a graceful stop (finish the batches in flight, commit the
//! offsets, leave the group, flush the pipeline).

use std::sync::Arc;

use fraudlens_pipeline::{ModelWatch, WatchConfig};
use fraudlens_server::ops::{self, Probes};
use fraudlens_server::transport::{self, TransportConfig};
use tokio::net::TcpListener;

use crate::{Detector, StreamError};

/// Runs `detector` until `shutdown` resolves, with `/metrics`, `/health`,
/// `/health/live` and `/health/ready` on `probes` (ready when the store
/// answers and the detector's [`crate::Health`] has no complaint). Then it
/// finishes the batches in flight, commits, leaves the group and flushes the
/// pipeline's pending commits. The caller closes the store.
///
/// Meanwhile a [`ModelWatch`] follows the registry with `watch`: a promotion
/// or rollback made through the API or the CLI is scored with here too.
pub async fn run(
    detector: Detector,
    probes: TcpListener,
    watch: WatchConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), StreamError> {
    let detector = Arc::new(detector);
    let pipeline = detector.pipeline().clone();
    let health = detector.health();
    // draining after a stop signal: not ready, so no new traffic is routed here
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let draining = stopping.clone();
    let router = ops::probe_router(Arc::new(Probes {
        pipeline: pipeline.clone(),
        service: "fraudlens-detect",
        metrics: {
            let handle = ops::install_metrics();
            // exported from the start, at 0: an alert on its increase sees the first dead letter
            metrics::counter!("dead_letters_total").increment(0);
            handle
        },
        not_ready: Box::new(move || {
            let mut reasons = health.check().err().unwrap_or_default();
            if draining.load(std::sync::atomic::Ordering::Acquire) {
                reasons.push("shutting down".to_owned());
            }
            reasons
        }),
    }));
    // the same connection timeouts and cap as the API: an idle or slow client
    // cannot hold the probes hostage
    tokio::spawn(transport::serve(
        probes,
        router,
        TransportConfig::default(),
        std::future::pending(),
    ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        stopping.store(true, std::sync::atomic::Ordering::Release);
        tracing::info!("stopping: finishing the batch and committing offsets");
        // no receiver left: the detector has stopped already
        let _ = stop_tx.send(true);
    });
    ops::set_model_info(&pipeline.model());
    let watch = ModelWatch::start(pipeline.clone(), watch);
    let consumed = detector.run(stop_rx).await;
    watch.stop().await;
    // the decisions already queued are stored whatever stopped the consumer
    let flushed = pipeline.shutdown().await;
    consumed?;
    flushed?;
    Ok(())
}
