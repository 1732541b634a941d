//! The serve loop: the API on a bound listener, with graceful shutdown
//! (stop accepting, drain in-flight requests within a grace period, flush
//! pending commits, snapshot the entity state).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fraudlens_pipeline::{ModelWatch, PipelineError, WatchConfig};
use tokio::net::TcpListener;

use crate::AppState;
use crate::transport::{self, TransportConfig};

/// How [`serve`] runs its connections and stops.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Connection timeouts and cap.
    pub transport: TransportConfig,
    /// After shutdown begins, how long in-flight requests may take before
    /// the remaining connections are closed.
    pub grace: Duration,
    /// How often the registry's production model is read (promotions made
    /// by other processes; [`ModelWatch`]).
    pub model_poll_interval: Duration,
}

/// Serves the API on `listener` until `shutdown` resolves; then readiness
/// turns 503, new connections are refused, in-flight requests get
/// `options.grace` to finish, and the pipeline flushes its pending commits
/// and snapshots the entity state. The caller closes the store.
///
/// Meanwhile a [`ModelWatch`] follows the registry: a promotion or rollback
/// made through another process is served here too (notified on
/// PostgreSQL, else within `options.model_poll_interval`). The caller
/// handles SIGHUP ([`crate::tls::reload_on_hangup`]).
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), PipelineError> {
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let signal_state = state.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: draining in-flight requests");
        signal_state.shutting_down.store(true, Ordering::Release);
        // no receiver left: the server has stopped already
        let _ = stop_tx.send(true);
    });
    let watch = ModelWatch::start(
        state.pipeline.clone(),
        WatchConfig {
            poll_interval: options.model_poll_interval,
            card_hash_key: state.config.card_hash_key.clone(),
        },
    );
    let mut stopped = stop_rx.clone();
    tracing::info!(
        max_connections = options.transport.max_connections,
        open_file_limit = transport::open_file_limit(),
        "connection limits"
    );
    let server = transport::serve(listener, crate::app(state.clone()), options.transport, async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    });
    let grace = options.grace;
    tokio::select! {
        () = server => {}
        () = async {
            let _ = stop_rx.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!(seconds = grace.as_secs(), "grace period over; closing remaining connections"),
    }
    watch.stop().await;
    state.pipeline.shutdown().await
}
