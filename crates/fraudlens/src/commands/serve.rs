//! `fraudlens serve`: opens the store, chooses the model, starts the
//! pipeline and runs [`fraudlens_server::serve`] until SIGTERM or SIGINT.

use std::time::Duration;

use anyhow::Context as _;
use fraudlens_pipeline::registry;
use fraudlens_pipeline::{Pipeline, PipelineConfig, ServingModel};
use fraudlens_server::transport::{self, TransportConfig};
use fraudlens_server::{AppState, ServeOptions, ServerConfig};
use fraudlens_store::Store;

use super::admin::{block_on, load_model, open_store, redact_url, registry_failure, store_url};
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
        registry::register_and_promote(store, &model, "serve --model")
            .await
            .map_err(|error| registry_failure(error, "registering and promoting the model"))?;
        return Ok(model);
    }
    registry::production(store, config.security.card_hash_key.as_ref())
        .await
        .map_err(|error| registry_failure(error, "listing models"))
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

    let options = ServeOptions {
        transport: TransportConfig {
            header_read_timeout: Duration::from_secs(serve.header_read_timeout_seconds.max(1)),
            body_read_timeout: Duration::from_secs(serve.body_read_timeout_seconds),
            min_body_bytes_per_second: serve.min_body_bytes_per_second,
            max_connections: match serve.max_connections {
                0 => transport::default_max_connections(),
                n => n,
            },
        },
        grace: Duration::from_secs(serve.shutdown_grace_seconds),
    };
    fraudlens_server::serve(listener, state, options, shutdown_signal())
        .await
        .context("flushing and snapshotting")?;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
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
