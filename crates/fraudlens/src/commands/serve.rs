//! `fraudlens serve`: the scoring API on the shared pipeline, with graceful
//! shutdown (stop accepting, drain in-flight requests, flush pending commits,
//! snapshot the entity state).

use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context as _;
use fraudlens_pipeline::{Pipeline, PipelineConfig, ServingModel};
use fraudlens_server::transport::{self, TransportConfig};
use fraudlens_server::{AppState, ServerConfig};
use fraudlens_store::{ModelStage, Store};

use super::admin::{block_on, load_model, load_registered, model_entry, now_ms, open_store, redact_url, store_url};
use crate::cli::ServeArgs;
use crate::config::Config;
use crate::exit::{Classify, CliResult};

/// Runs the server until SIGTERM or SIGINT.
pub fn run(config: &Config, args: ServeArgs) -> CliResult {
    block_on(serve(config, args, async |_, _| {}))
}

/// The model to serve: `--model` (registered and promoted), else the registry's production model.
pub(crate) async fn serving_model(
    config: &Config,
    store: &dyn Store,
    dir: Option<&std::path::Path>,
) -> CliResult<ServingModel> {
    if let Some(dir) = dir {
        let model = load_model(config, dir)?;
        store
            .register_model(&model_entry(&model)?)
            .await
            .context("registering the model")?;
        let production = store.models().await.context("listing models")?;
        let is_production = production
            .iter()
            .any(|m| m.version == model.version() && m.stage == ModelStage::Production);
        if !is_production {
            store
                .promote_model(model.version(), now_ms(), "serve --model")
                .await
                .context("promoting the model")?;
        }
        return Ok(model);
    }
    let models = store.models().await.context("listing models")?;
    let production = models
        .iter()
        .find(|m| m.stage == ModelStage::Production)
        .ok_or_else(|| {
            anyhow::anyhow!("no production model in the registry: pass --model DIR (or `fraudlens models promote`)")
        })
        .usage()?;
    load_registered(config, production)
}

/// Serves until SIGTERM or SIGINT; `on_listen` runs once the port is bound,
/// with the address and the store.
pub async fn serve(
    config: &Config,
    args: ServeArgs,
    on_listen: impl AsyncFnOnce(std::net::SocketAddr, &dyn Store),
) -> CliResult {
    let url = store_url(config, &args.store);
    let store = open_store(config, &url).await?;
    let model = serving_model(config, store.as_ref(), args.model.as_deref()).await?;
    let serve = &config.serve;
    let pipeline = Pipeline::start(
        store.clone(),
        model,
        PipelineConfig {
            top_reasons: serve.top_reasons,
            explain: serve.explain,
            max_commit_rows: serve.max_commit_rows,
            queue_capacity: serve.queue_capacity,
            state_file: Some(serve.state_file.clone()),
            sharded: false,
            time_policy: config.event_time.policy(),
        },
    )
    .await
    .context("starting the scoring pipeline")?;
    let state = AppState::new(
        pipeline.clone(),
        ServerConfig {
            max_body_bytes: serve.max_body_bytes,
            max_upload_bytes: serve.max_upload_bytes,
            max_batch: serve.max_batch,
            rate_limit_per_key: serve.rate_limit_per_key,
            cors_origins: serve.cors_origins.clone(),
            card_hash_key: config.security.card_hash_key.clone(),
            max_transactions_in_flight: serve.max_transactions_in_flight,
        },
    );
    let listen = args.listen.as_deref().unwrap_or(&serve.listen);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))
        .usage()?;
    let address = listener.local_addr().context("reading the bound address")?;
    tracing::info!(
        %address,
        store = %redact_url(&url),
        model = pipeline.model().version(),
        entities = pipeline.n_entities(),
        "serving"
    );
    println!("fraudlens listening on http://{address} (API docs: http://{address}/docs)");
    on_listen(address, store.as_ref()).await;

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let signal_state = state.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down: draining in-flight requests");
        signal_state.shutting_down.store(true, Ordering::Release);
        let _ = stop_tx.send(true);
    });
    let mut stopped = stop_rx.clone();
    let transport = TransportConfig {
        header_read_timeout: Duration::from_secs(serve.header_read_timeout_seconds.max(1)),
        body_read_timeout: Duration::from_secs(serve.body_read_timeout_seconds),
        min_body_bytes_per_second: serve.min_body_bytes_per_second,
        max_connections: match serve.max_connections {
            0 => transport::default_max_connections(),
            n => n,
        },
    };
    tracing::info!(
        max_connections = transport.max_connections,
        open_file_limit = transport::open_file_limit(),
        "connection limits"
    );
    let server = transport::serve(listener, fraudlens_server::app(state.clone()), transport, async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    });
    let grace = Duration::from_secs(serve.shutdown_grace_seconds);
    tokio::select! {
        () = server => {}
        () = async {
            let _ = stop_rx.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!(seconds = grace.as_secs(), "grace period over; closing remaining connections"),
    }
    pipeline.shutdown().await.context("flushing and snapshotting")?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

pub(crate) async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {},
                    _ = terminate.recv() => {},
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
