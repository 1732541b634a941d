//! `fraudlens serve`: opens the store, chooses the model, starts the
//! pipeline and runs [`fraudlens_server::serve`] until SIGTERM or SIGINT.

use std::sync::Arc;

use anyhow::Context as _;
use fraudlens_pipeline::registry;
use fraudlens_pipeline::{Pipeline, PipelineConfig, ServingModel};
use fraudlens_server::AppState;
use fraudlens_store::Store;

use super::admin::{block_on, close_store, load_model, open_service_store, redact_url, registry_failure, store_url};
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

/// The entity state shared with the other processes of the store (`[state]
/// backend = "redis://…"`), for the model's feature spec; `None` for `memory`.
/// Entities expire when no accepted event could still see them: the
/// features' longest horizon plus `max_lateness` (7 days when it is off).
/// A model of feature rows keeps no entity state: `None` too.
pub(crate) async fn shared_state(
    config: &Config,
    model: &ServingModel,
) -> CliResult<Option<fraudlens_state::SharedState>> {
    let Some(spec) = model.spec() else {
        return Ok(None);
    };
    let lateness = config.event_time.policy().max_lateness_ms.unwrap_or(7 * 86_400_000);
    let ttl = std::time::Duration::from_millis(u64::try_from(spec.horizon_ms() + lateness).unwrap_or(u64::MAX));
    Ok(config
        .state
        .connect(spec.fingerprint(), ttl)
        .await
        .with_context(|| format!("connecting to the shared entity state {}", config.state.shown().backend))?)
}

/// Serves until SIGTERM or SIGINT; `on_listen` runs once the port is bound,
/// with the address and the store.
pub async fn serve(
    config: &Config,
    args: ServeArgs,
    on_listen: impl AsyncFnOnce(std::net::SocketAddr, &dyn Store),
) -> CliResult {
    // before the pipeline starts: its startup rebuild is counted
    fraudlens_server::ops::install_metrics();
    // before anything else: a certificate that cannot serve fails the start at
    // once, and SIGHUP (whose default ends the process) reloads it from now on
    let tls = config.serve.tls().map(|tls| tls.map(Arc::new)).usage()?;
    #[cfg(unix)]
    let hangups = fraudlens_server::tls::reload_on_hangup(tls.clone()).context("listening for SIGHUP")?;
    let url = store_url(config, &args.store);
    let store = open_service_store(config, &url).await?;
    config.drift.check().map_err(anyhow::Error::msg).usage()?;
    let model = serving_model(config, store.as_ref(), args.model.as_deref()).await?;
    let serve = &config.serve;
    let shared_state = shared_state(config, &model).await?;
    let pipeline = Pipeline::start(
        store.clone(),
        model,
        PipelineConfig {
            time_policy: config.event_time.policy(),
            shared_state,
            drift: config.drift.clone(),
            ..serve.pipeline_config()
        },
    )
    .await
    .context("starting the scoring pipeline")?;
    let state = AppState::new(
        pipeline.clone(),
        fraudlens_server::ServerConfig {
            mlflow: super::tracking::client(config)?,
            chain: chain(config)?,
            cases: config.cases.clone(),
            llm: fraudlens_cases::Llm::from_settings(&config.llm)
                .map_err(anyhow::Error::msg)
                .usage()?
                .map(Arc::new),
            ..serve.server_config(config.security.card_hash_key.clone())
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
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("fraudlens listening on {scheme}://{address} (API docs: {scheme}://{address}/docs)");
    on_listen(address, store.as_ref()).await;

    let mut options = serve.serve_options();
    options.transport.tls = tls;
    fraudlens_server::serve(listener, state, options, shutdown_signal())
        .await
        .context("flushing and snapshotting")?;
    close_store(store.as_ref()).await;
    #[cfg(unix)]
    hangups.abort();
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

/// The Ethereum provider, when `[eth]` names one.
fn chain(config: &Config) -> CliResult<Option<Arc<fraudlens_chain::Chain>>> {
    if config.eth.rpc_url.is_none() {
        return Ok(None);
    }
    let chain = fraudlens_chain::Chain::new(&config.eth).usage()?;
    tracing::info!(
        provider = chain.provider(),
        source = config.eth.source.name(),
        "Ethereum addresses are scored from chain data"
    );
    Ok(Some(Arc::new(chain)))
}
